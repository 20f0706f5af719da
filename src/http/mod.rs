//! The admin HTTP endpoint (`proxy.admin_listen`, loopback by default):
//! `GET /metrics` (Prometheus text), `GET /healthz`, `GET /readyz`,
//! `GET /mapping` (JSON), `POST /reload`.
//!
//! A deliberately small HTTP/1.1 server: one request per connection, no
//! bodies read, bounded header size. It never touches a client session.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::ObjectKind;
use crate::metrics::{BUCKET_BOUNDS_US, Histogram, StatementOutcome};
use crate::rewrite::{CacheStats, Decision, FallbackCause};
use crate::state::ProxyState;

/// Requests larger than this are refused (only a request line and headers).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the admin endpoint reads: the proxy's shared state.
pub type AdminState = ProxyState;

/// Serve admin requests until `shutdown`.
pub async fn run(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, &state)).await {
                tracing::debug!(error = %e, "admin request timed out");
            }
        });
    }
}

async fn serve(mut stream: TcpStream, state: &AdminState) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_REQUEST_BYTES {
            let _ = respond(&mut stream, 431, "text/plain", "request too large\n").await;
            return;
        }
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = route(method, path, state).await;
    let _ = respond(&mut stream, status, content_type, &body).await;
}

async fn route(method: &str, path: &str, state: &AdminState) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    match (method, path) {
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(state),
        ),
        ("GET", "/healthz") => (200, TEXT, "ok\n".into()),
        ("GET", "/readyz") => readyz(state).await,
        ("GET", "/mapping") => (200, JSON, mapping_json(state)),
        ("GET", "/unmapped") => (200, JSON, unmapped_json(state)),
        ("POST", "/reload") => match state.config.reload() {
            Ok(report) => (
                200,
                JSON,
                serde_json::json!({
                    "result": "ok",
                    "generation": report.generation,
                    "unchanged": report.unchanged,
                    "needs_restart": report.needs_restart,
                })
                .to_string(),
            ),
            Err(e) => (
                422,
                JSON,
                serde_json::json!({
                    "result": "refused",
                    "generation": state.config.load().generation,
                    "error": e.to_string(),
                })
                .to_string(),
            ),
        },
        (_, "/metrics" | "/healthz" | "/readyz" | "/mapping" | "/unmapped" | "/reload") => {
            (405, TEXT, "method not allowed\n".into())
        }
        _ => (404, TEXT, "not found\n".into()),
    }
}

async fn readyz(state: &AdminState) -> (u16, &'static str, String) {
    let snapshot = state.config.load_full();
    let mut body = String::new();
    let mut ready = true;
    for db in &snapshot.databases {
        let addr = format!("{}:{}", db.host, db.port);
        let result =
            tokio::time::timeout(snapshot.connect_timeout, TcpStream::connect(&addr)).await;
        let status = match result {
            Ok(Ok(_)) => "ok".to_owned(),
            Ok(Err(e)) => {
                ready = false;
                format!("unreachable: {e}")
            }
            Err(_) => {
                ready = false;
                "unreachable: connect timed out".to_owned()
            }
        };
        let _ = writeln!(body, "{} {addr}: {status}", db.name);
    }
    (
        if ready { 200 } else { 503 },
        "text/plain; charset=utf-8",
        body,
    )
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn mapping_json(state: &AdminState) -> String {
    let snapshot = state.config.load_full();
    let databases: Vec<_> = snapshot
        .databases
        .iter()
        .map(|db| {
            serde_json::json!({
                "name": db.name,
                "upstream": format!("{}:{}", db.host, db.port),
                "database": db.database,
                "mode": db.mode.as_str(),
                // schema -> tables, as before the other kinds existed.
                "schemas": db.schemas.iter().map(|s| (s.name.clone(), serde_json::json!(s.tables))).collect::<serde_json::Map<_, _>>(),
                // schema -> kind -> names, every kind (`public` included).
                "objects": db.schemas.iter().map(|s| {
                    let kinds = ObjectKind::ALL
                        .into_iter()
                        .filter(|k| !s.names(*k).is_empty())
                        .map(|k| (k.key().to_owned(), serde_json::json!(s.names(k))))
                        .collect::<serde_json::Map<_, _>>();
                    (s.name.clone(), serde_json::Value::Object(kinds))
                }).collect::<serde_json::Map<_, _>>(),
                "search_path": db.session_search_path(&db.name),
                "public_qualified": db.public_qualified.as_str(),
                "create_schema": db.create_schema,
                "aliases": db.aliases.iter().map(|a| (a.name.clone(), serde_json::json!({
                    "default_schema": a.default_schema,
                    "search_path": db.session_search_path(&a.name),
                    "create_schema": a.create_schema,
                }))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    let last_error = state
        .config
        .last_error()
        .map(|f| serde_json::json!({"message": f.message, "at_unix": unix_seconds(f.at)}));
    serde_json::json!({
        "generation": snapshot.generation,
        "source": snapshot.source,
        "loaded_at_unix": unix_seconds(snapshot.loaded_at),
        "on_parse_error": format!("{:?}", snapshot.on_parse_error).to_lowercase(),
        "databases": databases,
        "last_reload_error": last_error,
    })
    .to_string()
}

fn unmapped_json(state: &AdminState) -> String {
    let rows: Vec<_> = state
        .unmapped
        .rows()
        .into_iter()
        .map(|(k, v)| {
            serde_json::json!({
                "database": k.database,
                "user": k.user,
                "application_name": k.application_name,
                "table": k.table,
                "count": v.count,
                "first_seen_unix": unix_seconds(v.first_seen),
                "last_seen_unix": unix_seconds(v.last_seen),
                "example": v.example,
            })
        })
        .collect();
    serde_json::json!({
        "unmapped": rows,
        "dropped": state.unmapped.dropped.load(Ordering::Relaxed),
    })
    .to_string()
}

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
    metric(
        "heal7_proxy_cancel_requests_total",
        "counter",
        "Cancel requests by result.",
        &[
            ("result=\"forwarded\"", get(&m.cancels_forwarded)),
            ("result=\"unknown_key\"", get(&m.cancels_unknown)),
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

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let (cumulative, sum) = h.snapshot();
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, count) in BUCKET_BOUNDS_US.iter().zip(&cumulative) {
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {count}",
            *bound as f64 / 1e6
        );
    }
    let total = cumulative.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {total}");
}

/// Prometheus label values escape backslash, quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn mapping_shows_every_kind_and_the_search_paths() {
        let config = Config::from_yaml(
            "databases:\n  heal7:\n    schemas:\n      s: {tables: [t], views: [v], functions: [f]}\n      \
             public: {tables: [legacy]}\n    aliases:\n      old: {default_schema: s}\n",
            "t",
        )
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&mapping_json(&ProxyState::new(config))).unwrap();
        let db = &json["databases"][0];
        assert_eq!(db["schemas"]["s"], serde_json::json!(["t"]));
        assert_eq!(
            db["objects"]["s"],
            serde_json::json!({"tables": ["t"], "views": ["v"], "functions": ["f"]})
        );
        assert_eq!(
            db["objects"]["public"],
            serde_json::json!({"tables": ["legacy"]})
        );
        assert_eq!(db["search_path"], "s, public");
        assert_eq!(db["create_schema"], "public");
        assert_eq!(db["public_qualified"], "rewrite");
        assert_eq!(db["aliases"]["old"]["search_path"], "s, public");
        assert_eq!(db["aliases"]["old"]["create_schema"], "s");
    }
}
