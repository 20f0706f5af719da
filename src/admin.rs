//! The admin HTTP endpoint (`proxy.admin_listen`, loopback by default):
//! `GET /metrics` (Prometheus text), `GET /healthz`, `GET /readyz`,
//! `GET /mapping` (JSON), `POST /reload`.
//!
//! A deliberately small HTTP/1.1 server: one request per connection, no
//! bodies read, bounded header size. It never touches a client session.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::reload::ConfigStore;

/// Requests larger than this are refused (only a request line and headers).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the admin endpoint reads.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
}

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
        ("POST", "/reload") => match state.store.reload() {
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
                    "generation": state.store.load().generation,
                    "error": e.to_string(),
                })
                .to_string(),
            ),
        },
        (_, "/metrics" | "/healthz" | "/readyz" | "/mapping" | "/reload") => {
            (405, TEXT, "method not allowed\n".into())
        }
        _ => (404, TEXT, "not found\n".into()),
    }
}

async fn readyz(state: &AdminState) -> (u16, &'static str, String) {
    let snapshot = state.store.load_full();
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
    let snapshot = state.store.load_full();
    let databases: Vec<_> = snapshot
        .databases
        .iter()
        .map(|db| {
            serde_json::json!({
                "name": db.name,
                "upstream": format!("{}:{}", db.host, db.port),
                "database": db.database,
                "schemas": db.schemas.iter().map(|(s, t)| (s.clone(), serde_json::json!(t))).collect::<serde_json::Map<_, _>>(),
                "aliases": db.aliases.iter().map(|(a, s)| (a.clone(), serde_json::json!({"default_schema": s}))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    let last_error = state
        .store
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
    metric(
        "heal7_proxy_statements_total",
        "counter",
        "Query and Parse texts by what the rewriter did.",
        &[
            (
                "outcome=\"no_parse_needed\"",
                get(&m.statements_no_parse_needed),
            ),
            ("outcome=\"unchanged\"", get(&m.statements_unchanged)),
            ("outcome=\"rewritten\"", get(&m.statements_rewritten)),
            (
                "outcome=\"fallback_tokens\"",
                get(&m.statements_fallback_tokens),
            ),
            ("outcome=\"rejected\"", get(&m.statements_rejected)),
            (
                "outcome=\"passthrough_unparsed\"",
                get(&m.statements_passthrough_unparsed),
            ),
        ],
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
            ("result=\"ok\"", get(&state.store.reloads_ok)),
            ("result=\"refused\"", get(&state.store.reloads_failed)),
        ],
    );
    metric(
        "heal7_proxy_config_generation",
        "gauge",
        "Generation of the mapping in force (1 at start, +1 per reload).",
        &[("", state.store.load().generation)],
    );
    out
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
