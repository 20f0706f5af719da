//! The admin endpoint's JSON views (`/mapping`, `/unmapped`, the answer to
//! `POST /reload`) and the readiness check (`/readyz`): what they show, not
//! how it is served.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;

use crate::config::{ConfigError, ObjectKind, host_port};
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

/// Every upstream reachable (200) or not (503), one line per database.
pub(super) async fn readyz(state: &AdminState) -> (u16, String) {
    let snapshot = state.config.load_full();
    let mut body = String::new();
    let mut ready = true;
    for db in &snapshot.databases {
        let addr = host_port(&db.host, db.port);
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
    (if ready { 200 } else { 503 }, body)
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
