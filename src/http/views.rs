//! The admin endpoint's JSON views (`/mapping`, `/unmapped`, the answer to
//! `POST /reload`) and the readiness check (`/readyz`): what they show, not
//! how it is served.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{ConfigError, ObjectKind, host_port};
use crate::protocol::SSL_REQUEST_CODE;
use crate::reload::ReloadReport;

use super::AdminState;

/// `POST /reload`'s status and JSON body, for the reload's outcome.
pub(super) fn reload_answer(
    state: &AdminState,
    outcome: Result<ReloadReport, ConfigError>,
) -> (u16, String) {
    match outcome {
        Ok(report) => (
            200,
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
            serde_json::json!({
                "result": "refused",
                "generation": state.config.load().generation,
                "error": e.to_string(),
            })
            .to_string(),
        ),
    }
}

/// How long one readiness probe may take (connect, SSLRequest, answer):
/// well under the admin request's bound, as the probes run concurrently.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Every upstream answering the protocol (200) or not (503), one line per
/// database. The upstreams are probed concurrently, each within
/// [`PROBE_TIMEOUT`] (or `connect_timeout_ms` if shorter).
pub(super) async fn readyz(state: &AdminState) -> (u16, String) {
    let snapshot = state.config.load_full();
    let limit = PROBE_TIMEOUT.min(snapshot.connect_timeout);
    let probes = snapshot.databases.iter().map(|db| async move {
        let addr = host_port(&db.host, db.port);
        let status = match tokio::time::timeout(limit, probe(&addr)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("unreachable: {e}")),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        };
        (db.name.as_str(), addr, status)
    });
    let mut body = String::new();
    let mut ready = true;
    for (name, addr, status) in futures_util::future::join_all(probes).await {
        let _ = match status {
            Ok(()) => writeln!(body, "{name} {addr}: ok"),
            Err(e) => {
                ready = false;
                writeln!(body, "{name} {addr}: {e}")
            }
        };
    }
    (if ready { 200 } else { 503 }, body)
}

/// A protocol exchange that only a live server completes: TCP accept alone
/// (a stopped or hung server's kernel still accepts) is not enough. The
/// server answers an SSLRequest with one byte, `S` or `N`; the probe then
/// closes, before any startup packet (Postgres logs nothing for that after
/// an `N`).
async fn probe(addr: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = [0u8; 8];
    request[..4].copy_from_slice(&8i32.to_be_bytes());
    request[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    stream.write_all(&request).await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' | b'N' => Ok(()),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("answered an SSLRequest with {other:#04x}, not S or N"),
        )),
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(super) fn mapping_json(state: &AdminState) -> String {
    let snapshot = state.config.load_full();
    let databases: Vec<_> = snapshot
        .databases
        .iter()
        .map(|db| {
            serde_json::json!({
                "name": db.name,
                "upstream": host_port(&db.host, db.port),
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
        "mapping_hash": snapshot.mapping_hash,
        "source": snapshot.source,
        "loaded_at_unix": unix_seconds(snapshot.loaded_at),
        "on_parse_error": format!("{:?}", snapshot.on_parse_error).to_lowercase(),
        "databases": databases,
        "last_reload_error": last_error,
    })
    .to_string()
}

pub(super) fn unmapped_json(state: &AdminState) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::ProxyState;
    use tokio::net::TcpListener;

    /// A state whose databases are at `ports` on 127.0.0.1.
    fn state_for(ports: &[u16]) -> ProxyState {
        let mut yaml = String::from("databases:\n");
        for (i, port) in ports.iter().enumerate() {
            yaml.push_str(&format!(
                "  db{i}:\n    host: 127.0.0.1\n    port: {port}\n"
            ));
        }
        ProxyState::new(Config::from_yaml(&yaml, "t").unwrap())
    }

    /// An upstream that accepts and reads but never answers (a stopped
    /// server still completes TCP handshakes), or answers SSLRequests `N`.
    async fn upstream(answers: bool) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut request = [0u8; 8];
                    if s.read_exact(&mut request).await.is_ok() && answers {
                        let _ = s.write_all(b"N").await;
                    }
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        port
    }

    /// Regression (issue 10, finding 8): TCP accept alone is not ready.
    #[tokio::test]
    async fn readyz_is_503_for_an_upstream_that_accepts_but_never_answers() {
        let (live, silent, also_silent) = (
            upstream(true).await,
            upstream(false).await,
            upstream(false).await,
        );
        let (status, body) = readyz(&state_for(&[live])).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("db0 127.0.0.1:"), "{body}");
        assert!(body.ends_with(": ok\n"), "{body}");

        let started = std::time::Instant::now();
        let (status, body) = readyz(&state_for(&[live, silent, also_silent])).await;
        let took = started.elapsed();
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            body.matches("no answer within 1000 ms").count(),
            2,
            "{body}"
        );
        // Probed concurrently: one probe's bound, not the sum.
        assert!(took < Duration::from_millis(1800), "took {took:?}");
    }

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
