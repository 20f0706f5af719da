//! The admin console on the virtual database `heal7_proxy`: SCRAM login
//! against `proxy.admin_users` (tokio-postgres and psql), every command's
//! result set, refusals with 28P01 that do not reveal who exists, RELOAD on
//! an in-memory and a file-backed config, EXPLAIN REWRITE.

use std::sync::Arc;
use std::time::Duration;

use heal7_proxy::auth::scram::hash_password;
use heal7_proxy::clients::ClientIdentity;
use heal7_proxy::reload::ConfigStore;
use heal7_proxy::rewrite::{Decision, NameUse};
use heal7_proxy::server;
use heal7_proxy::state::ProxyState;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::harness::{
    Pg, ProxyHandle, SCHEMAS_YAML, SCRAM_PASSWORD, connect, pg, pg_started, psql, simple_rows,
    simple_value, sqlstate, start_proxy_yaml, try_simple_rows, unique,
};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "console-secret";
const OTHER_ADMIN: &str = "ops";
const OTHER_PASSWORD: &str = "ops-secret";

fn console_yaml(pg: &Pg, listen: &str) -> String {
    format!(
        "proxy:\n  listen: {listen}\n  admin_users:\n    {ADMIN}: \"{}\"\n    {OTHER_ADMIN}: \"{}\"\n\
         databases:\n  heal7:\n    host: {host}\n    port: {port}\n    database: heal7\n{SCHEMAS_YAML}",
        hash_password(ADMIN_PASSWORD.as_bytes()),
        hash_password(OTHER_PASSWORD.as_bytes()),
        host = pg.host,
        port = pg.port,
    )
}

async fn start_console_proxy() -> ProxyHandle {
    let pg = pg().await;
    start_proxy_yaml(&console_yaml(pg, "127.0.0.1:0")).await
}

fn console_config(port: u16, user: &str, password: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname("heal7_proxy")
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn admin(port: u16) -> Client {
    connect(&console_config(port, ADMIN, ADMIN_PASSWORD))
        .await
        .expect("admin logs into the console")
}

/// The rows whose column `col` holds `value`.
fn rows_with(rows: &[Vec<Option<String>>], col: usize, value: &str) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .filter(|r| r[col].as_deref() == Some(value))
        .cloned()
        .collect()
}

fn cells(row: &[Option<String>]) -> Vec<&str> {
    row.iter().map(|c| c.as_deref().unwrap_or("")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_show_command_answers_a_result_set() {
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;

    assert_eq!(
        simple_value(&c, "SHOW VERSION").await,
        format!("heal7-proxy {}", env!("CARGO_PKG_VERSION"))
    );

    let mapping = simple_rows(&c, "show mapping;").await;
    let kasi = rows_with(&mapping, 2, "kasi_cache");
    let hash = proxy.state.config.load().mapping_hash.clone();
    assert_eq!(
        cells(&kasi[0]),
        [
            "heal7",
            "saju_service",
            "kasi_cache",
            "rewrite",
            "1",
            "",
            &hash
        ]
    );
    assert_eq!(
        mapping
            .iter()
            .filter(|r| r[0].as_deref() == Some("heal7") && r[2].is_some())
            .count(),
        8,
        "one row per mapped table (legacy_fortunes kept in public included): {mapping:?}"
    );
    let main = mapping
        .iter()
        .find(|r| r[0].as_deref() == Some("heal7") && r[2].is_none())
        .expect("a row for the main name");
    assert!(
        main[5]
            .as_deref()
            .unwrap()
            .starts_with("search_path shared_common, "),
        "{main:?}"
    );
    let alias = rows_with(&mapping, 0, "heal7_saju");
    assert_eq!(alias.len(), 1, "{mapping:?}");
    assert_eq!(alias[0][1].as_deref(), Some("saju_service"));
    assert!(alias[0][5].as_deref().unwrap().contains("alias of heal7"));

    // A proxied client's statement shows under its database.
    let app = proxy.connect("heal7").await;
    assert_eq!(
        simple_value(&app, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    let stats = simple_rows(&c, "SHOW STATS").await;
    let heal7 = rows_with(&stats, 0, "heal7");
    assert_eq!(heal7.len(), 1, "{stats:?}");
    // database, connected, active, total, then outcomes; `rewritten` is
    // column 6. Per-database counters fill in once sessions feed them.
    assert_eq!(cells(&heal7[0])[..2], ["heal7", "1"], "{stats:?}");
    assert_eq!(
        cells(&rows_with(&stats, 0, "heal7_proxy")[0])[..2],
        ["heal7_proxy", "1"],
        "the console session itself is a client"
    );
    let total = cells(stats.last().unwrap());
    assert_eq!(total[..2], ["*", "2"], "{stats:?}");
    assert!(
        total[6].parse::<u64>().unwrap() >= 1,
        "rewritten: {stats:?}"
    );
    drop(app);

    assert!(simple_rows(&c, "SHOW UNMAPPED").await.is_empty());
    proxy.state.unmapped.record(
        &ClientIdentity {
            database: "heal7".into(),
            user: "crawler".into(),
            application_name: "8006".into(),
        },
        &[NameUse {
            name: "legacy_log".into(),
            offset: 14,
            decision: Decision::NotInMap,
        }],
        "SELECT * FROM legacy_log",
    );
    let unmapped = simple_rows(&c, "SHOW UNMAPPED").await;
    assert_eq!(unmapped.len(), 1);
    let row = cells(&unmapped[0]);
    assert_eq!(
        row[..5],
        ["heal7", "crawler", "8006", "legacy_log", "1"],
        "{row:?}"
    );
    assert_eq!(row[7], "SELECT * FROM legacy_log");
}

/// Rows of an extended-protocol query, as text cells like `simple_rows`.
fn text_rows(rows: &[tokio_postgres::Row]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_are_errors_the_extended_protocol_works_the_session_survives() {
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;
    let e = try_simple_rows(&c, "SHOW NONSENSE").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    assert!(e.as_db_error().unwrap().message().contains("SHOW MAPPING"));

    // The extended protocol answers the same rows as the simple one.
    for command in ["SHOW VERSION", "SHOW MAPPING", "show unmapped;"] {
        let extended = text_rows(&c.query(command, &[]).await.unwrap());
        assert_eq!(extended, simple_rows(&c, command).await, "{command}");
    }
    // Described before it runs: the column names come with Parse/Describe.
    let statement = c.prepare("SHOW CLIENTS").await.unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "address",
            "user",
            "database",
            "application_name",
            "state",
            "statements",
            "since"
        ]
    );
    assert_eq!(c.query(&statement, &[]).await.unwrap().len(), 1);
    // An unknown command fails at Parse, like a syntax error in Postgres.
    let e = c.prepare("SHOW NONSENSE").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    // Console commands take no parameters: a Bind with values is refused.
    let typed = c
        .prepare_typed(
            "EXPLAIN REWRITE SELECT $1",
            &[tokio_postgres::types::Type::TEXT],
        )
        .await
        .unwrap();
    let e = c.query(&typed, &[&"x"]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");
    assert!(e.as_db_error().unwrap().message().contains("parameters"));

    let e = try_simple_rows(&c, "EXPLAIN REWRITE SELECT 1 FOR DATABASE nope")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "3D000");
    let e = c
        .query("EXPLAIN REWRITE SELECT 1 FOR DATABASE nope", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "3D000");

    assert!(
        simple_value(&c, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );
    // An empty query is answered as Postgres does.
    assert!(simple_rows(&c, ";").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_one_runs_show_version_over_the_extended_protocol() {
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;
    let row = c.query_one("SHOW VERSION", &[]).await.unwrap();
    assert_eq!(
        row.get::<_, String>("version"),
        format!("heal7-proxy {}", env!("CARGO_PKG_VERSION"))
    );
    // The console session counts its statements and is idle between them.
    let clients = text_rows(&c.query("SHOW CLIENTS", &[]).await.unwrap());
    let me = rows_with(&clients, 2, "heal7_proxy");
    assert_eq!(me.len(), 1, "{clients:?}");
    assert_eq!(cells(&me[0])[4..6], ["active", "2"], "{clients:?}");
    let clients = simple_rows(&c, "SHOW CLIENTS").await;
    assert_eq!(
        cells(&rows_with(&clients, 2, "heal7_proxy")[0])[4..6],
        ["active", "3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unknown_user_and_non_admin_are_all_28p01() {
    let proxy = start_console_proxy().await;
    let port = proxy.port();
    for (user, password, why) in [
        (ADMIN, "wrong", "wrong password"),
        ("nobody", ADMIN_PASSWORD, "unknown user"),
        // A user that exists upstream but is no admin, with an admin's password.
        (
            "scram_user",
            OTHER_PASSWORD,
            "non-admin with another admin's password",
        ),
        (
            OTHER_ADMIN,
            ADMIN_PASSWORD,
            "an admin with another admin's password",
        ),
    ] {
        let e = connect(&console_config(port, user, password))
            .await
            .err()
            .unwrap_or_else(|| panic!("{why}: login accepted"));
        assert_eq!(sqlstate(&e), "28P01", "{why}: {e:?}");
        assert_eq!(
            e.as_db_error().unwrap().message(),
            format!("password authentication failed for user \"{user}\""),
            "{why}: the same message whether or not the user exists"
        );
    }
    // The other admin logs in with its own password.
    let c = connect(&console_config(port, OTHER_ADMIN, OTHER_PASSWORD))
        .await
        .unwrap();
    assert!(
        simple_value(&c, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_clients_lists_a_concurrent_proxied_client() {
    let proxy = start_console_proxy().await;
    let app = unique("billing");
    let mut cfg = proxy.config("heal7");
    cfg.application_name(&app);
    let app_client = connect(&cfg).await.unwrap();
    assert_eq!(
        simple_value(&app_client, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );

    let c = admin(proxy.port()).await;
    let clients = simple_rows(&c, "SHOW CLIENTS").await;
    let mine = rows_with(&clients, 3, &app);
    assert_eq!(mine.len(), 1, "{clients:?}");
    let row = cells(&mine[0]);
    assert!(row[0].starts_with("127.0.0.1:"), "{row:?}");
    assert_eq!(row[1], pg_started().superuser);
    assert_eq!(row[2], "heal7");
    assert!(
        !row[4].is_empty() && row[5].parse::<u64>().is_ok(),
        "{row:?}"
    );
    assert!(row[6].ends_with("+00"), "{row:?}");
    let console = rows_with(&clients, 2, "heal7_proxy");
    assert_eq!(console.len(), 1, "{clients:?}");
    assert_eq!(
        cells(&console[0])[4..6],
        ["active", "1"],
        "the console session, running SHOW CLIENTS"
    );

    drop(app_client);
    let gone = crate::harness::wait_until(Duration::from_secs(5), || async {
        rows_with(&simple_rows(&c, "SHOW CLIENTS").await, 3, &app).is_empty()
    })
    .await;
    assert!(gone, "a closed session is no longer listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_rewrite_shows_the_text_and_each_name_with_why() {
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;
    let rows = simple_rows(
        &c,
        "EXPLAIN REWRITE WITH users AS (SELECT 1) SELECT * FROM users, kasi_cache",
    )
    .await;
    assert_eq!(
        cells(&rows[0]),
        [
            "sent",
            "heal7",
            "",
            "WITH users AS (SELECT 1) SELECT * FROM users, saju_service.kasi_cache"
        ]
    );
    assert_eq!(cells(&rows[1]), ["generation", "", "", "1"]);
    assert_eq!(cells(&rows[2]), ["outcome", "", "", "rewritten"]);
    let users = rows_with(&rows, 1, "users");
    assert!(!users.is_empty(), "{rows:?}");
    assert!(
        users
            .iter()
            .all(|r| r[3].as_deref().unwrap().starts_with("CTE")),
        "{rows:?}"
    );
    let kasi = rows_with(&rows, 1, "kasi_cache");
    assert_eq!(
        cells(&kasi[0]),
        [
            "table",
            "kasi_cache",
            "46",
            "qualified by map -> saju_service"
        ]
    );

    // FOR DATABASE picks the map (an alias shares its database's map).
    let rows = simple_rows(
        &c,
        "explain rewrite SELECT * FROM public.users, legacy FOR DATABASE heal7_saju;",
    )
    .await;
    assert_eq!(rows[0][1].as_deref(), Some("heal7_saju"));
    assert_eq!(
        rows[0][3].as_deref(),
        Some("SELECT * FROM shared_common.users, legacy")
    );
    assert!(
        rows_with(&rows, 1, "public.users")[0][3]
            .as_deref()
            .unwrap()
            .starts_with("public. spelling of a moved name -> shared_common")
    );
    assert!(
        rows_with(&rows, 1, "legacy")[0][3]
            .as_deref()
            .unwrap()
            .starts_with("not in map")
    );
}

/// `public.` inside strings read as relation names has its own decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_rewrite_shows_public_strings() {
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;
    let rows = simple_rows(
        &c,
        "EXPLAIN REWRITE SELECT nextval('public.users_id_seq'), 'public.users'::regclass",
    )
    .await;
    assert_eq!(
        rows[0][3].as_deref(),
        Some("SELECT nextval('users_id_seq'), 'shared_common.users'::regclass")
    );
    let detail = |name: &str| {
        rows_with(&rows, 1, name)
            .first()
            .and_then(|r| r[3].clone())
            .unwrap_or_default()
    };
    assert!(
        detail("public.users_id_seq")
            .starts_with("public. spelling of an unlisted name inside a string"),
        "{rows:?}"
    );
    assert_eq!(
        detail("public.users"),
        "public. spelling of a moved name inside a string -> shared_common",
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_and_prints_tables() {
    let proxy = start_console_proxy().await;
    let env = [("PGPASSWORD", ADMIN_PASSWORD)];
    let (ok, out, err) = psql(
        proxy.port(),
        "heal7_proxy",
        &["-U", ADMIN, "-c", "SHOW MAPPING"],
        &env,
    )
    .await;
    assert!(ok, "psql: {err}");
    let out = String::from_utf8(out).unwrap();
    let hash = proxy.state.config.load().mapping_hash.clone();
    assert!(
        out.lines()
            .any(|l| l == format!("heal7|saju_service|kasi_cache|rewrite|1||{hash}")),
        "{out}"
    );

    let (ok, out, err) = psql(
        proxy.port(),
        "heal7_proxy",
        &["-U", ADMIN, "-c", "EXPLAIN REWRITE SELECT * FROM users"],
        &env,
    )
    .await;
    assert!(ok, "psql: {err}");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("sent|heal7||SELECT * FROM shared_common.users"),
        "{out}"
    );

    let (ok, _, err) = psql(
        proxy.port(),
        "heal7_proxy",
        &["-U", ADMIN, "-c", "SHOW VERSION"],
        &[("PGPASSWORD", "wrong")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_is_refused_in_memory_and_bumps_the_generation_from_a_file() {
    // In memory: no file to read, so the reload is refused with F0000.
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;
    let e = try_simple_rows(&c, "RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&e), "F0000");
    assert!(
        simple_value(&c, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );

    // From a file: a changed file is a new generation.
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, console_yaml(pg, "127.0.0.1:0")).unwrap();
    let store = Arc::new(ConfigStore::from_file(&path).unwrap());
    let state = ProxyState::with_store(store.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(server::run(listener, state, shutdown));
    let c = admin(port).await;

    // Same bytes: nothing to swap.
    assert_eq!(
        cells(&simple_rows(&c, "RELOAD").await[0]),
        ["unchanged", "1", ""]
    );
    std::fs::write(
        &path,
        console_yaml(pg, "127.0.0.1:0").replace("old_dreams", "old_dreams, dream_log"),
    )
    .unwrap();
    assert_eq!(
        cells(&simple_rows(&c, "reload;").await[0]),
        ["reloaded", "2", ""]
    );
    let mapping = simple_rows(&c, "SHOW MAPPING").await;
    assert_eq!(
        cells(&rows_with(&mapping, 2, "dream_log")[0])[..5],
        ["heal7", "Dream Archive", "dream_log", "rewrite", "2"]
    );

    // A broken file is refused, and SHOW MAPPING says so until fixed.
    std::fs::write(&path, "databases: [").unwrap();
    let e = try_simple_rows(&c, "RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&e), "F0000");
    let mapping = simple_rows(&c, "SHOW MAPPING").await;
    let last = cells(mapping.last().unwrap()).join("|");
    assert!(last.contains("last reload refused"), "{last}");
    assert_eq!(store.load().generation, 2);

    // The verifiers are reloaded too: the admin logs in with the same file.
    drop(c);
    admin(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_password_output_is_accepted_by_real_postgres() {
    let pg = pg().await;
    let verifier = hash_password(SCRAM_PASSWORD.as_bytes());
    let direct = pg.direct("heal7").await;
    // Same password, new salt: other tests logging in as scram_user still work.
    direct
        .batch_execute(&format!("ALTER ROLE scram_user PASSWORD '{verifier}'"))
        .await
        .unwrap();
    assert_eq!(
        simple_value(
            &direct,
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'"
        )
        .await,
        verifier,
        "Postgres stored the verifier as given (it recognised the format)"
    );
    let mut cfg = pg.direct_config("heal7");
    cfg.user("scram_user").password(SCRAM_PASSWORD);
    let c = connect(&cfg).await.expect("scram_user logs in against it");
    assert_eq!(simple_value(&c, "SELECT current_user").await, "scram_user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_password_command_prints_a_verifier_the_console_accepts() {
    let run = |stdin: &'static [u8]| async move {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_heal7-proxy"))
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        child.wait_with_output().await.unwrap()
    };
    let out = run(b"from-the-cli\n").await;
    assert!(out.status.success(), "{out:?}");
    let verifier = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    assert!(!verifier.contains("from-the-cli"));

    let pg = pg().await;
    let yaml = console_yaml(pg, "127.0.0.1:0").replacen(
        &format!("    {OTHER_ADMIN}: "),
        &format!("    cli: \"{verifier}\"\n    {OTHER_ADMIN}: "),
        1,
    );
    let proxy = start_proxy_yaml(&yaml).await;
    let c = connect(&console_config(proxy.port(), "cli", "from-the-cli"))
        .await
        .expect("the printed verifier logs in");
    assert!(
        simple_value(&c, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );

    let out = run(b"").await;
    assert!(!out.status.success(), "an empty password is refused");
}

mod raw;
