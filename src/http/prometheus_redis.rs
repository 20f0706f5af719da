//! The Redis side's families in `/metrics` (names start
//! `heal7_proxy_redis_`; per-namespace ones carry `namespace="from@db"`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::redis::RedisMetrics;

pub(super) fn render(out: &mut String, m: &RedisMetrics) {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP heal7_proxy_redis_{name} {help}");
        let _ = writeln!(out, "# TYPE heal7_proxy_redis_{name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "heal7_proxy_redis_{name} {value}");
            } else {
                let _ = writeln!(out, "heal7_proxy_redis_{name}{{{labels}}} {value}");
            }
        }
    };
    let one = |c: &AtomicU64| vec![(String::new(), get(c))];
    metric(
        "clients_active",
        "gauge",
        "Redis client connections open now.",
        &one(&m.clients_active),
    );
    metric(
        "clients_total",
        "counter",
        "Redis client connections accepted.",
        &one(&m.clients_total),
    );
    metric(
        "commands_total",
        "counter",
        "Redis commands received.",
        &one(&m.commands),
    );
    metric(
        "refused_total",
        "counter",
        "Redis commands refused by the proxy before anything ran, by reason.",
        &[
            (
                "reason=\"cross_database\"".into(),
                get(&m.refused_cross_database),
            ),
            ("reason=\"unmatched\"".into(), get(&m.refused_unmatched)),
            ("reason=\"names_database\"".into(), get(&m.refused_other)),
        ],
    );
    metric(
        "protocol_errors_total",
        "counter",
        "Malformed or oversized Redis requests (the client was closed).",
        &one(&m.protocol_errors),
    );
    metric(
        "scripts_total",
        "counter",
        "EVAL/EVALSHA/FCALL calls: keys built inside scripts are not rewritten.",
        &one(&m.scripts),
    );
    metric(
        "upstream_errors_total",
        "counter",
        "Failed connections to the Redis server.",
        &one(&m.upstream_errors),
    );
    metric(
        "keys_unmatched_total",
        "counter",
        "Keys no namespace rule matched.",
        &one(&m.keys_unmatched),
    );
    metric(
        "replies_rewritten_total",
        "counter",
        "Replies whose key names were mapped back (KEYS, SCAN, BLPOP...).",
        &one(&m.replies_rewritten),
    );
    metric(
        "command_table_loads_total",
        "counter",
        "Reads of the server's command table (at start and after reloads).",
        &one(&m.command_table_loads),
    );
    metric(
        "client_tls_total",
        "counter",
        "Redis client connections on a redis.tls listener, by result: TLS handshake ok or failed, plain text refused (mode require).",
        &[
            ("result=\"ok\"".into(), get(&m.tls_clients_ok)),
            ("result=\"failed\"".into(), get(&m.tls_clients_failed)),
            (
                "result=\"plain_refused\"".into(),
                get(&m.tls_clients_plain_refused),
            ),
        ],
    );
    metric(
        "shared_connections",
        "gauge",
        "Server connections shared by several Redis clients (multiplexing), open now.",
        &one(&m.shared_connections),
    );
    metric(
        "multiplexed_commands_total",
        "counter",
        "Redis commands sent on a shared server connection.",
        &one(&m.multiplexed_commands),
    );
    metric(
        "clients_dedicated_total",
        "counter",
        "Redis clients that left the shared server connections for their own, by reason.",
        &crate::metrics::redis::DedicatedReason::ALL
            .iter()
            .map(|r| {
                (
                    format!("reason=\"{}\"", r.as_str()),
                    get(&m.clients_dedicated[*r as usize]),
                )
            })
            .collect::<Vec<_>>(),
    );
    let namespaces = m.namespaces();
    let per = |f: fn(&crate::metrics::redis::NamespaceMetrics) -> &AtomicU64| {
        namespaces
            .iter()
            .map(|(label, ns)| (format!("namespace=\"{}\"", escape(label)), get(f(ns))))
            .collect::<Vec<_>>()
    };
    metric(
        "namespace_commands_total",
        "counter",
        "Redis commands that touched a key of this namespace.",
        &per(|n| &n.commands),
    );
    metric(
        "namespace_keys_rewritten_total",
        "counter",
        "Keys rewritten to this namespace's new prefix and database.",
        &per(|n| &n.keys_rewritten),
    );
    metric(
        "namespace_keys_dry_run_total",
        "counter",
        "Keys that would have been rewritten (mode dry_run).",
        &per(|n| &n.keys_dry_run),
    );
    metric(
        "namespace_errors_total",
        "counter",
        "Error replies to commands that touched this namespace.",
        &per(|n| &n.errors),
    );
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
