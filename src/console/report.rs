//! The console's answers: one [`ResultSet`] per command, built from the
//! shared state the session was handed. No I/O except RELOAD's file read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ConsoleError;
use super::command::Command;
use crate::config::Mode;
use crate::metrics::Metrics;
use crate::metrics::StatementOutcome;
use crate::qualify::{Observer, TextRewrite, qualify};
use crate::reload::{ConfigStore, Snapshot};
use crate::rewrite::{Outcome, SessionFacts, rewrite_sql, splice};
use crate::state::ProxyState;

/// The proxy's version as `SHOW VERSION` and `server_version` report it.
pub const VERSION: &str = concat!("heal7-proxy ", env!("CARGO_PKG_VERSION"));

/// A whole result set of text columns, as the console answers every
/// command. Pure: the session turns it into pgwire messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Option<String>>>,
    /// The CommandComplete word; the row count is appended on the wire
    /// (`SHOW 3`), as Postgres does for `SELECT`.
    pub tag: &'static str,
}

impl ResultSet {
    /// A result set tagged `SHOW`, as PgBouncer's console answers.
    pub fn show(columns: Vec<&'static str>, rows: Vec<Vec<Option<String>>>) -> ResultSet {
        ResultSet {
            columns,
            rows,
            tag: "SHOW",
        }
    }
}

const MAPPING_COLUMNS: [&str; 7] = [
    "database",
    "schema",
    "table",
    "mode",
    "generation",
    "note",
    "mapping_hash",
];
const CLIENTS_COLUMNS: [&str; 7] = [
    "address",
    "user",
    "database",
    "application_name",
    "state",
    "statements",
    "since",
];
const UNMAPPED_COLUMNS: [&str; 8] = [
    "database",
    "user",
    "application_name",
    "table",
    "count",
    "first_seen",
    "last_seen",
    "example",
];
const POOLS_COLUMNS: [&str; 15] = [
    "database",
    "user",
    "mode",
    "size",
    "clients_active",
    "clients_waiting",
    "servers_active",
    "servers_idle",
    "servers_opened",
    "servers_closed",
    "servers_lent",
    "wait_timeouts",
    "wait_seconds_total",
    "prepared_hits",
    "prepared_misses",
];
const SERVERS_COLUMNS: [&str; 7] = [
    "database",
    "user",
    "address",
    "pid",
    "state",
    "age_seconds",
    "idle_seconds",
];
const RELOAD_COLUMNS: [&str; 3] = ["result", "generation", "needs_restart"];
const EXPLAIN_COLUMNS: [&str; 4] = ["item", "name", "offset", "detail"];

fn stats_columns() -> Vec<&'static str> {
    let mut columns = vec![
        "database",
        "clients_connected",
        "clients_active",
        "clients_total",
    ];
    columns.extend(StatementOutcome::ALL.map(StatementOutcome::as_str));
    columns
}

/// The columns `command` answers with, known before it runs: the extended
/// protocol describes a statement without executing it (RELOAD must not
/// run on Describe).
pub fn columns(command: &Command) -> Vec<&'static str> {
    match command {
        Command::ShowMapping => MAPPING_COLUMNS.to_vec(),
        Command::ShowClients => CLIENTS_COLUMNS.to_vec(),
        Command::ShowStats => stats_columns(),
        Command::ShowUnmapped => UNMAPPED_COLUMNS.to_vec(),
        Command::ShowVersion => vec!["version"],
        Command::ShowPools => POOLS_COLUMNS.to_vec(),
        Command::ShowServers => SERVERS_COLUMNS.to_vec(),
        Command::Reload => RELOAD_COLUMNS.to_vec(),
        Command::ExplainRewrite { .. } => EXPLAIN_COLUMNS.to_vec(),
        Command::Empty => Vec::new(),
    }
}

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// `SHOW MAPPING`: one row per mapped object (the note names the kind of
/// anything but a table, and marks the names kept in `public` for the main
/// name), one row per client database name with the search_path its
/// sessions get, and a last row naming the last refused reload while it
/// stands. Every row carries the mapping hash (equal on every instance
/// that maps names the same way).
pub fn mapping(store: &ConfigStore) -> ResultSet {
    let snap = store.load_full();
    let mut rows = Vec::new();
    for db in &snap.databases {
        for schema in &db.schemas {
            for (kind, name) in schema.objects() {
                let note = match (schema.is_public(), kind) {
                    (true, _) => Some(format!(
                        "{} kept in public for {} (not for its aliases)",
                        kind.as_str(),
                        db.name
                    )),
                    (false, crate::config::ObjectKind::Table) => None,
                    (false, kind) => s(kind.as_str()),
                };
                rows.push(vec![
                    s(&db.name),
                    s(&schema.name),
                    s(name),
                    s(db.mode.as_str()),
                    s(snap.generation),
                    note,
                    s(&snap.mapping_hash),
                ]);
            }
        }
        let search_path = |name: &str| match db.session_search_path(name) {
            Some(path) => format!("search_path {path}"),
            None => format!("no search_path set (mode {})", db.mode.as_str()),
        };
        rows.push(vec![
            s(&db.name),
            None,
            None,
            s(db.mode.as_str()),
            s(snap.generation),
            s(search_path(&db.name)),
            s(&snap.mapping_hash),
        ]);
        for alias in &db.aliases {
            rows.push(vec![
                s(&alias.name),
                s(&alias.default_schema),
                None,
                s(db.mode.as_str()),
                s(snap.generation),
                s(format!(
                    "alias of {}: {}",
                    db.name,
                    search_path(&alias.name)
                )),
                s(&snap.mapping_hash),
            ]);
        }
    }
    if let Some(failure) = store.last_error() {
        rows.push(vec![
            None,
            None,
            None,
            None,
            s(snap.generation),
            s(format!(
                "last reload refused at {}: {}",
                utc(failure.at),
                failure.message
            )),
            s(&snap.mapping_hash),
        ]);
    }
    ResultSet::show(MAPPING_COLUMNS.to_vec(), rows)
}

/// `SHOW POOLS`: one row per pool (database name, authenticated user).
pub fn pools(state: &ProxyState) -> ResultSet {
    use std::sync::atomic::Ordering::Relaxed;
    let rows = state
        .pools
        .all()
        .iter()
        .map(|p| {
            let st = &p.stats;
            let settings = p.settings();
            vec![
                s(&p.database),
                s(&p.user),
                s(settings.mode.as_str()),
                s(settings.size),
                s(st.clients_active.load(Relaxed)),
                s(st.clients_waiting.load(Relaxed)),
                s(st.servers_active.load(Relaxed)),
                s(p.idle_count()),
                s(st.servers_opened.load(Relaxed)),
                s(st.servers_closed.load(Relaxed)),
                s(st.servers_used.load(Relaxed)),
                s(st.wait_timeouts.load(Relaxed)),
                s(format!("{:.3}", st.wait_seconds.snapshot().1)),
                s(st.prepared_hits.load(Relaxed)),
                s(st.prepared_misses.load(Relaxed)),
            ]
        })
        .collect();
    ResultSet::show(POOLS_COLUMNS.to_vec(), rows)
}

/// `SHOW SERVERS`: every idle pooled server connection (one lent to a
/// client counts in SHOW POOLS' servers_active).
pub fn servers(state: &ProxyState) -> ResultSet {
    let mut rows = Vec::new();
    for p in state.pools.all() {
        for idle in p.idle_snapshot() {
            rows.push(vec![
                s(&p.database),
                s(&p.user),
                s(idle.addr),
                s(idle.pid),
                s("idle"),
                s(idle.age.as_secs()),
                s(idle.idle.as_secs()),
            ]);
        }
    }
    ResultSet::show(SERVERS_COLUMNS.to_vec(), rows)
}

/// `SHOW CLIENTS`: every live session, oldest first (console ones too).
pub fn clients(state: &ProxyState) -> ResultSet {
    let rows = state
        .clients
        .list()
        .iter()
        .map(|c| {
            vec![
                s(c.info.address),
                s(&c.info.identity.user),
                s(&c.info.identity.database),
                s(&c.info.identity.application_name),
                s(c.state().as_str()),
                s(c.statements()),
                s(utc(c.since)),
            ]
        })
        .collect();
    ResultSet::show(CLIENTS_COLUMNS.to_vec(), rows)
}

/// `SHOW STATS`: one row per client-facing database, then a `*` row with
/// the process-wide totals. Columns: database, clients_connected (live
/// sessions now), clients_active, clients_total, then statements by
/// outcome ([`StatementOutcome::ALL`], the `/metrics` labels).
pub fn stats(state: &ProxyState) -> ResultSet {
    let load = |c: &AtomicU64| s(c.load(Ordering::Relaxed));
    let mut connected: BTreeMap<String, u64> = BTreeMap::new();
    for c in state.clients.list() {
        *connected
            .entry(c.info.identity.database.clone())
            .or_default() += 1;
    }
    let m = &state.metrics;
    let mut per_db: BTreeMap<String, Vec<Option<String>>> = m
        .databases()
        .into_iter()
        .map(|(name, d)| {
            let mut row = vec![load(&d.clients_active), load(&d.clients_total)];
            row.extend(d.statements.iter().map(load));
            (name, row)
        })
        .collect();
    // Databases with live sessions but no counters (the console itself).
    for name in connected.keys() {
        per_db
            .entry(name.clone())
            .or_insert_with(|| vec![s(0); 2 + StatementOutcome::ALL.len()]);
    }
    let mut rows: Vec<Vec<Option<String>>> = per_db
        .into_iter()
        .map(|(name, counters)| {
            let mut row = vec![s(&name), s(connected.get(&name).copied().unwrap_or(0))];
            row.extend(counters);
            row
        })
        .collect();
    let mut total = vec![
        s("*"),
        s(state.clients.len()),
        load(&m.clients_active),
        load(&m.clients_total),
    ];
    for outcome in StatementOutcome::ALL {
        total.push(load(m.statements(outcome)));
    }
    rows.push(total);
    ResultSet::show(stats_columns(), rows)
}

/// `SHOW UNMAPPED`: the cut-over readiness report.
pub fn unmapped(state: &ProxyState) -> ResultSet {
    let rows = state
        .unmapped
        .rows()
        .into_iter()
        .map(|(k, e)| {
            vec![
                s(k.database),
                s(k.user),
                s(k.application_name),
                s(k.table),
                s(e.count),
                s(utc(e.first_seen)),
                s(utc(e.last_seen)),
                s(e.example),
            ]
        })
        .collect();
    ResultSet::show(UNMAPPED_COLUMNS.to_vec(), rows)
}

pub fn version() -> ResultSet {
    ResultSet::show(vec!["version"], vec![vec![s(VERSION)]])
}

/// `RELOAD`: re-read the file now (off the async threads: it is file I/O).
pub async fn reload(store: Arc<ConfigStore>) -> Result<ResultSet, ConsoleError> {
    let report = tokio::task::spawn_blocking(move || store.reload())
        .await?
        .map_err(ConsoleError::Reload)?;
    let result = if report.unchanged {
        "unchanged"
    } else {
        "reloaded"
    };
    let notes = (!report.needs_restart.is_empty()).then(|| report.needs_restart.join("; "));
    Ok(ResultSet {
        columns: RELOAD_COLUMNS.to_vec(),
        rows: vec![vec![s(result), s(report.generation), notes]],
        tag: "RELOAD",
    })
}

/// `EXPLAIN REWRITE`: what the proxy would send for `sql` from a client of
/// `database` (default: the first database), and why, name by name.
///
/// Columns `item, name, offset, detail`; rows in this order:
/// - `sent`: name = database, detail = the text that would go upstream;
/// - `generation`: detail = the mapping generation used;
/// - `outcome`: detail = the rewriter's outcome (and the mode if it is not
///   `rewrite`);
/// - `parse_error` / `rejected`: only when they apply;
/// - `table`: one per table name found: name, byte offset in `sql`, and
///   what was done and why.
pub fn explain_rewrite(
    snap: &Snapshot,
    sql: &str,
    database: Option<&str>,
) -> Result<ResultSet, ConsoleError> {
    let database = database.unwrap_or(&snap.databases[0].name);
    let route = snap.route(database);
    let Some(map) = route.map else {
        return Err(ConsoleError::UnknownDatabase(database.to_owned()));
    };
    // What a new session would send: the qualify step itself.
    let sent = match qualify(
        sql.as_bytes(),
        Some(&map),
        route.mode,
        snap.on_parse_error,
        &mut SessionFacts::default(),
        rewrite_sql,
        &Observer::quiet(&Metrics::default()),
    ) {
        TextRewrite::Changed { edits, .. } => {
            String::from_utf8_lossy(&splice(sql.as_bytes(), &edits)).into_owned()
        }
        TextRewrite::Unchanged | TextRewrite::Rejected { .. } => sql.to_owned(),
    };
    // Why, name by name, with the same session facts applied.
    let mut result = rewrite_sql(sql, &map, snap.on_parse_error);
    SessionFacts::default().apply(&mut result, sql);
    let mode_note = match route.mode {
        Mode::Rewrite => String::new(),
        other => format!(" (mode {}: forwarded unchanged)", other.as_str()),
    };
    let row = |item: &str, name: Option<String>, offset: Option<String>, detail: String| {
        vec![s(item), name, offset, Some(detail)]
    };
    let mut rows = vec![
        row("sent", s(database), None, sent),
        row("generation", None, None, snap.generation.to_string()),
        row(
            "outcome",
            None,
            None,
            format!("{}{mode_note}", outcome_name(result.outcome)),
        ),
    ];
    if let Some(e) = &result.parse_error {
        rows.push(row("parse_error", None, None, e.clone()));
    }
    if let Some(t) = &result.rejected_table {
        rows.push(row(
            "rejected",
            s(t),
            None,
            "does not parse and names a mapped table (on_parse_error: reject): the client gets 0A000".into(),
        ));
    }
    for name in &result.names {
        rows.push(row(
            "table",
            s(&name.name),
            s(name.offset),
            name.decision.describe(),
        ));
    }
    Ok(ResultSet {
        columns: EXPLAIN_COLUMNS.to_vec(),
        rows,
        tag: "SELECT",
    })
}

fn outcome_name(outcome: Outcome) -> &'static str {
    StatementOutcome::from(outcome).as_str()
}

/// `YYYY-MM-DD HH:MM:SS+00`, the shape psql shows for timestamptz in UTC.
pub fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;

    #[test]
    fn described_columns_are_the_columns_each_command_answers_with() {
        let config = Config::from_yaml(
            "databases:\n  heal7:\n    schemas:\n      s: {tables: [t]}\n",
            "t",
        )
        .unwrap();
        let state = ProxyState::new(config);
        let snap = state.config.load_full();
        for (command, answer) in [
            (Command::ShowMapping, mapping(&state.config)),
            (Command::ShowClients, clients(&state)),
            (Command::ShowStats, stats(&state)),
            (Command::ShowUnmapped, unmapped(&state)),
            (Command::ShowVersion, version()),
            (Command::ShowPools, pools(&state)),
            (Command::ShowServers, servers(&state)),
            (
                Command::ExplainRewrite {
                    sql: "SELECT 1".into(),
                    database: None,
                },
                explain_rewrite(&snap, "SELECT 1", None).unwrap(),
            ),
        ] {
            assert_eq!(columns(&command), answer.columns, "{command:?}");
        }
        assert_eq!(columns(&Command::Reload), RELOAD_COLUMNS);
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00+00");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // leap day
        assert_eq!(utc(t), "2024-02-29 12:34:56+00");
    }

    #[test]
    fn show_mapping_names_every_kind_and_each_search_path() {
        let config = Config::from_yaml(
            "databases:\n  heal7:\n    schemas:\n      s: {tables: [t], views: [v], sequences: [q], types: [y], functions: [f]}\n      \
             public: {tables: [legacy]}\n    aliases:\n      old: {default_schema: s}\n  \
             quiet:\n    mode: off\n    schemas: {a: {tables: [u]}}\n",
            "t",
        )
        .unwrap();
        let r = mapping(&ConfigStore::in_memory(config));
        let rows: Vec<Vec<String>> = r
            .rows
            .iter()
            .map(|row| {
                [0, 1, 2, 5]
                    .iter()
                    .map(|&i| row[i].clone().unwrap_or_default())
                    .collect()
            })
            .collect();
        let want: Vec<Vec<String>> = [
            ["heal7", "s", "t", ""],
            ["heal7", "s", "v", "view"],
            ["heal7", "s", "q", "sequence"],
            ["heal7", "s", "y", "type"],
            ["heal7", "s", "f", "function"],
            [
                "heal7",
                "public",
                "legacy",
                "table kept in public for heal7 (not for its aliases)",
            ],
            ["heal7", "", "", "search_path s, public"],
            ["old", "s", "", "alias of heal7: search_path s, public"],
            ["quiet", "a", "u", ""],
            ["quiet", "", "", "no search_path set (mode off)"],
        ]
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
        assert_eq!(rows, want);
    }

    #[test]
    fn explain_rewrite_names_cte_and_qualified_tables() {
        let config = Config::from_yaml(
            "databases:\n  heal7:\n    schemas:\n      saju_service: {tables: [kasi_cache, users]}\n",
            "t",
        )
        .unwrap();
        let store = ConfigStore::in_memory(config);
        let sql = "WITH users AS (SELECT 1) SELECT * FROM users, kasi_cache";
        let r = explain_rewrite(&store.load_full(), sql, None).unwrap();
        let cell = |i: usize, j: usize| r.rows[i][j].clone().unwrap_or_default();
        assert_eq!(cell(0, 0), "sent");
        assert_eq!(
            cell(0, 3),
            "WITH users AS (SELECT 1) SELECT * FROM users, saju_service.kasi_cache"
        );
        assert_eq!((cell(1, 0), cell(1, 3)), ("generation".into(), "1".into()));
        assert_eq!(cell(2, 3), "rewritten");
        let tables: Vec<_> = r.rows[3..]
            .iter()
            .map(|row| (row[1].clone().unwrap(), row[3].clone().unwrap()))
            .collect();
        assert!(
            tables
                .iter()
                .any(|(n, d)| n == "users" && d.starts_with("CTE"))
        );
        assert!(
            tables
                .iter()
                .any(|(n, d)| n == "kasi_cache" && d == "qualified by map -> saju_service")
        );
        assert!(matches!(
            explain_rewrite(&store.load_full(), sql, Some("nope")),
            Err(ConsoleError::UnknownDatabase(_))
        ));
    }
}
