//! The Prometheus text exposition of the proxy's counters (`GET /metrics`).
//! Metric names, labels and HELP texts are an interface: dashboards and
//! alerts read them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::{BUCKET_BOUNDS_US, Histogram, Refusal, StatementOutcome, TlsHandshake};
use crate::rewrite::{CacheStats, Decision, FallbackCause};

use super::AdminState;

/// One `key="label"` sample per counter of a family indexed by label.
fn labelled(key: &str, labels: &[&str], counters: &[AtomicU64]) -> Vec<(String, u64)> {
    labels
        .iter()
        .zip(counters)
        .map(|(label, n)| (format!("{key}=\"{label}\""), n.load(Ordering::Relaxed)))
        .collect()
}

fn samples(labelled: &[(String, u64)]) -> Vec<(&str, u64)> {
    labelled.iter().map(|(l, n)| (l.as_str(), *n)).collect()
}

/// Prometheus text exposition of every counter.
pub fn render_metrics(state: &AdminState) -> String {
    let m = &state.metrics;
    let mut out = String::with_capacity(4096);
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    metric(
        "heal7_proxy_client_connections_active",
        "gauge",
        "Client connections open now.",
        &[("", get(&m.clients_active))],
    );
    metric(
        "heal7_proxy_client_connections_total",
        "counter",
        "Client connections accepted.",
        &[("", get(&m.clients_total))],
    );
    let loops: Vec<(String, u64)> = state
        .workers
        .sessions()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (format!("worker=\"{i}\""), n as u64))
        .collect();
    let loops: Vec<(&str, u64)> = loops.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        "heal7_proxy_worker_sessions",
        "gauge",
        "Sessions (client connections past accept) on each event loop; worker 0 also accepts.",
        &loops,
    );
    // Dry runs are exported per database only.
    let outcomes: Vec<(String, u64)> = StatementOutcome::ALL
        .into_iter()
        .filter(|&o| o != StatementOutcome::DryRun)
        .map(|o| (format!("outcome=\"{}\"", o.as_str()), get(m.statements(o))))
        .collect();
    metric(
        "heal7_proxy_statements_total",
        "counter",
        "Query and Parse texts by what the rewriter did.",
        &samples(&outcomes),
    );
    let decisions = labelled("decision", &Decision::LABELS, &m.names_by_decision);
    metric(
        "heal7_proxy_names_total",
        "counter",
        "Names in table and created-object positions of parsed statements, by what the proxy decided: qualified by the map or the fallback parser, public. replaced, created in the create schema, left bare for a temporary relation, or left to the search_path.",
        &samples(&decisions),
    );
    let causes = labelled("cause", &FallbackCause::LABELS, &m.fallbacks);
    metric(
        "heal7_proxy_fallbacks_total",
        "counter",
        "Statements read with PostgreSQL's grammar (libpg_query) because sqlparser could not parse them, parsed them into a form the walk does not read, left a name unplaced, or missed a mapped name the keyword cross-check saw.",
        &samples(&causes),
    );
    metric(
        "heal7_proxy_statements_non_utf8_total",
        "counter",
        "Query and Parse texts that were not valid UTF-8 (never altered byte-wise except for inserted schemas).",
        &[("", get(&m.statements_non_utf8))],
    );
    metric(
        "heal7_proxy_upstream_connect_failures_total",
        "counter",
        "Failed connections to an upstream server.",
        &[("", get(&m.upstream_connect_failures))],
    );
    metric(
        "heal7_proxy_frames_rejected_total",
        "counter",
        "Frames refused for a length under 4 or over max_message_size.",
        &[("", get(&m.frames_rejected))],
    );
    let refused: Vec<(String, u64)> = Refusal::ALL
        .into_iter()
        .map(|r| (format!("reason=\"{}\"", r.as_str()), get(m.refused(r))))
        .collect();
    metric(
        "heal7_proxy_clients_refused_total",
        "counter",
        "Clients turned away before reaching an upstream, by reason.",
        &samples(&refused),
    );
    let handshakes: Vec<(String, u64)> = TlsHandshake::ALL
        .into_iter()
        .map(|k| {
            let (side, result) = k.labels();
            (
                format!("side=\"{side}\",result=\"{result}\""),
                get(m.tls_handshakes(k)),
            )
        })
        .collect();
    metric(
        "heal7_proxy_tls_handshakes_total",
        "counter",
        "TLS handshakes with clients and with upstreams, by result.",
        &samples(&handshakes),
    );
    metric(
        "heal7_proxy_cancel_requests_total",
        "counter",
        "Cancel requests by result: forwarded to the session's server, unknown_key, to_peer (sent on to the instance whose key it is), unknown_peer (no address for that peer id, or forwarded here by a peer that took this instance for another).",
        &[
            ("result=\"forwarded\"", get(&m.cancels_forwarded)),
            ("result=\"unknown_key\"", get(&m.cancels_unknown)),
            ("result=\"to_peer\"", get(&m.cancels_to_peer)),
            ("result=\"unknown_peer\"", get(&m.cancels_unknown_peer)),
        ],
    );
    metric(
        "heal7_proxy_prepared_statements_reprepared_total",
        "counter",
        "Named prepared statements prepared again under their name after a reload changed their rewritten text, by result.",
        &[
            ("result=\"ok\"", get(&m.prepared_reprepared)),
            ("result=\"failed\"", get(&m.prepared_reprepare_failed)),
        ],
    );
    metric(
        "heal7_proxy_error_positions_corrected_total",
        "counter",
        "Server error positions moved back to the client's text.",
        &[("", get(&m.error_positions_corrected))],
    );
    metric(
        "heal7_proxy_reloads_total",
        "counter",
        "Config reloads by result.",
        &[
            ("result=\"ok\"", get(&state.config.reloads_ok)),
            ("result=\"refused\"", get(&state.config.reloads_failed)),
        ],
    );
    metric(
        "heal7_proxy_config_generation",
        "gauge",
        "Generation of the mapping in force (1 at start, +1 per reload).",
        &[("", state.config.load().generation)],
    );
    let mapping = format!(
        "mapping_hash=\"{}\"",
        escape_label(&state.config.load().mapping_hash)
    );
    metric(
        "heal7_proxy_mapping_info",
        "gauge",
        "Always 1; mapping_hash is the hash of the databases section in force, equal on every instance that maps names the same way.",
        &[(&mapping, 1)],
    );

    let databases = m.databases();
    let mut per_db =
        |name: &str,
         kind: &str,
         help: &str,
         value: &dyn Fn(&crate::metrics::DatabaseMetrics) -> Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (db, counters) in &databases {
                for (labels, v) in value(counters) {
                    let sep = if labels.is_empty() { "" } else { "," };
                    let _ = writeln!(
                        out,
                        "{name}{{database=\"{}\"{sep}{labels}}} {v}",
                        escape_label(db)
                    );
                }
            }
        };
    per_db(
        "heal7_proxy_database_client_connections_active",
        "gauge",
        "Client connections open now, per database name clients used.",
        &|d| vec![(String::new(), d.clients_active.load(Ordering::Relaxed))],
    );
    per_db(
        "heal7_proxy_database_client_connections_total",
        "counter",
        "Client connections accepted, per database name clients used.",
        &|d| vec![(String::new(), d.clients_total.load(Ordering::Relaxed))],
    );
    per_db(
        "heal7_proxy_database_statements_total",
        "counter",
        "Query and Parse texts per database by what the proxy did.",
        &|d| {
            StatementOutcome::ALL
                .iter()
                .zip(&d.statements)
                .map(|(o, c)| {
                    (
                        format!("outcome=\"{}\"", o.as_str()),
                        c.load(Ordering::Relaxed),
                    )
                })
                .collect()
        },
    );

    let schemas = m.schemas();
    let _ = writeln!(
        out,
        "# HELP heal7_proxy_tables_qualified_total Table names qualified, per schema."
    );
    let _ = writeln!(out, "# TYPE heal7_proxy_tables_qualified_total counter");
    for (schema, c) in &schemas {
        let _ = writeln!(
            out,
            "heal7_proxy_tables_qualified_total{{schema=\"{}\"}} {}",
            escape_label(schema),
            c.tables_qualified.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP heal7_proxy_schema_statement_results_total Statements that touched a schema, by the server's answer."
    );
    let _ = writeln!(
        out,
        "# TYPE heal7_proxy_schema_statement_results_total counter"
    );
    for (schema, c) in &schemas {
        for (result, v) in [("ok", &c.results_ok), ("error", &c.results_error)] {
            let _ = writeln!(
                out,
                "heal7_proxy_schema_statement_results_total{{schema=\"{}\",result=\"{result}\"}} {}",
                escape_label(schema),
                v.load(Ordering::Relaxed)
            );
        }
    }
    rewrite_cache(&mut out, state);
    pools(&mut out, state);
    histogram(
        &mut out,
        "heal7_proxy_rewrite_seconds",
        "Time the rewriter spent per statement text it examined.",
        &m.rewrite_seconds,
    );
    histogram(
        &mut out,
        "heal7_proxy_statement_seconds",
        "Client request to the server's ReadyForQuery, per Query or extended-protocol batch.",
        &m.statement_seconds,
    );
    super::prometheus_redis::render(&mut out, &m.redis);
    out
}

/// Each database's rewrite cache. A reload builds new maps with empty
/// caches, so these counters restart then (Prometheus' rate() handles it).
fn rewrite_cache(out: &mut String, state: &AdminState) {
    type Values = fn(&CacheStats) -> Vec<(&'static str, u64)>;
    let snapshot = state.config.load_full();
    let stats: Vec<_> = snapshot
        .databases
        .iter()
        .map(|db| (escape_label(&db.name), db.map.cache_stats()))
        .collect();
    let families: [(&str, &str, &str, Values); 4] = [
        (
            "heal7_proxy_rewrite_cache_hits_total",
            "counter",
            "Rewrites answered from the cache, by key kind (since the last reload).",
            |c| {
                vec![
                    ("kind=\"text\"", c.text_hits),
                    ("kind=\"shape\"", c.shape_hits),
                ]
            },
        ),
        (
            "heal7_proxy_rewrite_cache_misses_total",
            "counter",
            "Rewrites the cache could not answer (since the last reload).",
            |c| vec![("", c.misses)],
        ),
        (
            "heal7_proxy_rewrite_cache_bytes",
            "gauge",
            "Bytes the rewrite cache holds now (bounded by rewrite_cache_bytes).",
            |c| vec![("", c.bytes as u64)],
        ),
        (
            "heal7_proxy_rewrite_cache_entries",
            "gauge",
            "Entries in the rewrite cache now.",
            |c| vec![("", c.entries as u64)],
        ),
    ];
    for (name, kind, help, values) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (db, c) in &stats {
            for (labels, v) in values(c) {
                let sep = if labels.is_empty() { "" } else { "," };
                let _ = writeln!(out, "{name}{{database=\"{db}\"{sep}{labels}}} {v}");
            }
        }
    }
}

/// Each pool (database name, authenticated user): clients and servers by
/// state, connections opened/closed/lent, waits and prepared statements.
fn pools(out: &mut String, state: &AdminState) {
    type Values = fn(&crate::pool::Pool) -> Vec<(&'static str, u64)>;
    let pools = state.pools.all();
    let families: [(&str, &str, &str, Values); 7] = [
        (
            "heal7_proxy_pool_clients",
            "gauge",
            "Clients of the pool now, by state (waiting: for a server connection).",
            |p| {
                vec![
                    (
                        "state=\"active\"",
                        p.stats.clients_active.load(Ordering::Relaxed) as u64,
                    ),
                    (
                        "state=\"waiting\"",
                        p.stats.clients_waiting.load(Ordering::Relaxed) as u64,
                    ),
                ]
            },
        ),
        (
            "heal7_proxy_pool_servers",
            "gauge",
            "Server connections of the pool now, by state.",
            |p| {
                vec![
                    (
                        "state=\"active\"",
                        p.stats.servers_active.load(Ordering::Relaxed) as u64,
                    ),
                    ("state=\"idle\"", p.idle_count() as u64),
                ]
            },
        ),
        (
            "heal7_proxy_pool_size",
            "gauge",
            "The pool's configured size (server connections at most, reserve excluded).",
            |p| vec![("", p.settings().size as u64)],
        ),
        (
            "heal7_proxy_pool_server_connections_total",
            "counter",
            "Server connections opened and closed by the pool, and lent to clients (per session or per transaction).",
            |p| {
                vec![
                    (
                        "event=\"opened\"",
                        p.stats.servers_opened.load(Ordering::Relaxed),
                    ),
                    (
                        "event=\"closed\"",
                        p.stats.servers_closed.load(Ordering::Relaxed),
                    ),
                    (
                        "event=\"lent\"",
                        p.stats.servers_used.load(Ordering::Relaxed),
                    ),
                ]
            },
        ),
        (
            "heal7_proxy_pool_wait_timeouts_total",
            "counter",
            "Clients that waited query_wait_timeout_ms without a server connection (53300).",
            |p| vec![("", p.stats.wait_timeouts.load(Ordering::Relaxed))],
        ),
        (
            "heal7_proxy_pool_prepared_statements_total",
            "counter",
            "Transaction pooling: client statements found prepared on the server connection (hit), prepared there first (miss), or parsed between transactions by the proxy alone (answered_by_proxy).",
            |p| {
                vec![
                    (
                        "result=\"hit\"",
                        p.stats.prepared_hits.load(Ordering::Relaxed),
                    ),
                    (
                        "result=\"miss\"",
                        p.stats.prepared_misses.load(Ordering::Relaxed),
                    ),
                    (
                        "result=\"answered_by_proxy\"",
                        p.stats.prepared_answered.load(Ordering::Relaxed),
                    ),
                ]
            },
        ),
        (
            "heal7_proxy_pool_begins_deferred_total",
            "counter",
            "Transaction pooling: bare BEGINs answered by the proxy and sent to the server ahead of the transaction's first request.",
            |p| vec![("", p.stats.begins_deferred.load(Ordering::Relaxed))],
        ),
    ];
    for (name, kind, help, values) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for p in &pools {
            let pool = format!(
                "database=\"{}\",user=\"{}\"",
                escape_label(&p.database),
                escape_label(&p.user)
            );
            for (labels, v) in values(p) {
                let sep = if labels.is_empty() { "" } else { "," };
                let _ = writeln!(out, "{name}{{{pool}{sep}{labels}}} {v}");
            }
        }
    }
    let name = "heal7_proxy_pool_wait_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time a client waited for a server connection, per acquire."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for p in &pools {
        let pool = format!(
            "database=\"{}\",user=\"{}\"",
            escape_label(&p.database),
            escape_label(&p.user)
        );
        histogram_samples(out, name, &pool, &p.stats.wait_seconds);
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    histogram_samples(out, name, "", h);
}

/// The bucket, sum and count lines of one histogram series (`labels`:
/// extra `k="v"` pairs, or empty).
fn histogram_samples(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (cumulative, sum) = h.snapshot();
    let sep = if labels.is_empty() { "" } else { "," };
    let braces = |rest: &str| {
        if labels.is_empty() && rest.is_empty() {
            String::new()
        } else {
            format!(
                "{{{labels}{}{rest}}}",
                if rest.is_empty() { "" } else { sep }
            )
        }
    };
    for (bound, count) in BUCKET_BOUNDS_US.iter().zip(&cumulative) {
        let le = format!("le=\"{}\"", *bound as f64 / 1e6);
        let _ = writeln!(out, "{name}_bucket{} {count}", braces(&le));
    }
    let total = cumulative.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{} {total}", braces("le=\"+Inf\""));
    let _ = writeln!(out, "{name}_sum{} {sum}", braces(""));
    let _ = writeln!(out, "{name}_count{} {total}", braces(""));
}

/// Prometheus label values escape backslash, quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
