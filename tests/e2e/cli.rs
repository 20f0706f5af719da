//! The `heal7-proxy` binary itself: `serve`, `rewrite`, `check` and
//! `introspect`, as operators and migration scripts call them.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use heal7_proxy::config::Config;

use crate::harness::{Pg, connect, pg, proxy_yaml, simple_value, unique, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_heal7-proxy");

fn write_config(dir: &tempfile::TempDir, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn run_bin(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn heal7-proxy");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("heal7-proxy finished within 60 s")
        .expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_command_prints_what_the_proxy_would_send() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &proxy_yaml(pg, "tokens"));
    let config = config.to_str().unwrap();
    let sql = "SELECT u.name, '사용자' /* users */ FROM users u JOIN \"Users\" q ON q.id = u.id";
    let (ok, out, err) = run_bin(&["rewrite", "--config", config], sql.as_bytes(), &[]).await;
    assert!(ok, "rewrite failed: {err}");
    assert!(
        out.contains(
            "SELECT u.name, '사용자' /* users */ FROM shared_common.users u JOIN \"Users\" q ON q.id = u.id"
        ),
        "{out}"
    );
    let (ok, out, err) = run_bin(
        &["rewrite", "--config", config, "--database", "heal7_saju"],
        b"SELECT body FROM old_dreams",
        &[],
    )
    .await;
    assert!(ok, "rewrite --database failed: {err}");
    assert!(
        out.contains("SELECT body FROM \"Dream Archive\".old_dreams"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command_reports_mapped_tables_and_fails_on_a_missing_one() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![("PGUSER", pg.superuser.as_str())];
    if let Some(p) = &pg.password {
        env.push(("PGPASSWORD", p.as_str()));
    }
    let config = write_config(&dir, &proxy_yaml(pg, "tokens"));
    let (ok, out, err) = run_bin(&["check", "--config", config.to_str().unwrap()], b"", &env).await;
    assert!(ok, "check failed on the fixture: {out}{err}");
    for table in [
        "users",
        "attachments",
        "saju_charts",
        "kasi_cache",
        "dream_categories",
        "dream_interpretations",
        "old_dreams",
    ] {
        assert!(out.contains(table), "{table} not reported: {out}");
    }
    // The fixture's stale copies in public make every table ambiguous.
    assert!(
        out.contains("heal7 shared_common.users: ok, also present in public"),
        "{out}"
    );
    // The name kept in public for the main name.
    assert!(
        out.contains("heal7 public.legacy_fortunes: ok, also present in saju_service"),
        "{out}"
    );
    // The search_path of each client database name.
    assert!(
        out.contains(
            "heal7 search_path: shared_common, saju_service, dream_service, \"Dream Archive\", public\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "heal7_saju (alias of heal7) search_path: saju_service, shared_common, dream_service, \"Dream Archive\", public\n"
        ),
        "{out}"
    );

    let yaml = proxy_yaml(pg, "tokens").replace(
        "shared_common: {tables: [users, attachments]}",
        "shared_common: {tables: [users, attachments, no_such_table]}",
    );
    let dir2 = tempfile::tempdir().unwrap();
    let config = write_config(&dir2, &yaml);
    let (ok, out, err) = run_bin(&["check", "--config", config.to_str().unwrap()], b"", &env).await;
    assert!(!ok, "check passed with a missing table: {out}{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("no_such_table") && l.contains("missing")),
        "{out}{err}"
    );
}

/// `heal7-proxy serve` on a free port over the test cluster, its stderr
/// as given; the config's folder lives as long as the returned guard.
async fn spawn_serve(
    pg: &crate::harness::Pg,
    stderr: Stdio,
) -> (tokio::process::Child, u16, tempfile::TempDir) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = proxy_yaml(pg, "tokens")
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let config = write_config(&dir, &yaml);
    let child = tokio::process::Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn heal7-proxy serve");
    (child, port, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_command_relays_and_rewrites() {
    let pg = pg().await;
    let (mut child, port, _dir) = spawn_serve(pg, Stdio::null()).await;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(&pg.superuser)
        .dbname("heal7");
    if let Some(p) = &pg.password {
        cfg.password(p);
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await,
        "heal7-proxy serve never listened on {port}"
    );
    let c = connect(&cfg).await.expect("connect to heal7-proxy serve");
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    drop(c);
    child.kill().await.expect("stop heal7-proxy");
}

/// A proxy whose stderr reader has gone (a closed log pipe) still serves
/// and still stops on SIGTERM: a failed log write used to panic the task
/// that waits for the signal, so the proxy never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_pipe_neither_crashes_nor_ignores_sigterm() {
    let pg = pg().await;
    let (mut child, port, _dir) = spawn_serve(pg, Stdio::piped()).await;
    drop(child.stderr.take());
    assert!(
        wait_until(Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await,
        "heal7-proxy serve never listened on {port}"
    );
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("heal7-proxy stops within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// The rewrite command takes the session's own path: non-UTF-8 input in
/// the client's encoding is rewritten with its bytes kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_command_keeps_the_bytes_of_a_client_encoding() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &proxy_yaml(pg, "tokens"));
    let config = config.to_str().unwrap();
    // Shift-JIS ソ (0x83 0x5C: a backslash-looking trail byte) in an E'' literal.
    let sql = b"SELECT E'\x83\x5c' FROM users";
    let (ok, out, err) = run_bin(
        &["rewrite", "--config", config, "--client-encoding", "SJIS"],
        sql,
        &[],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out.as_bytes(),
        String::from_utf8_lossy(b"SELECT E'\x83\x5c' FROM shared_common.users").as_bytes()
    );
}

fn pg_env(pg: &Pg, database: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PGHOST", pg.host.clone()),
        ("PGPORT", pg.port.to_string()),
        ("PGUSER", pg.superuser.clone()),
        ("PGDATABASE", database.to_owned()),
    ];
    if let Some(p) = &pg.password {
        env.push(("PGPASSWORD", p.clone()));
    }
    env
}

async fn introspect(pg: &Pg, database: &str) -> String {
    let env = pg_env(pg, database);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out, err) = run_bin(&["introspect"], b"", &env).await;
    assert!(ok, "introspect {database} failed: {out}{err}");
    out
}

/// The printed map, pasted under a database entry, is a valid config.
fn under_database(pg: &Pg, database: &str, map: &str) -> String {
    let indented: String = map.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "databases:\n  {database}:\n    host: {}\n    port: {}\n{indented}",
        pg.host, pg.port
    )
}

/// Every kind of object, the `public` entry, and the warnings, on a
/// database of the test's own (the fixture's is shared with other tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspect_prints_every_kind_and_what_public_would_shadow() {
    let pg = pg().await;
    let database = unique("e2e_introspect");
    let admin = pg.direct("postgres").await;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let db = pg.direct(&database).await;
    db.batch_execute(
        r#"
        CREATE SCHEMA svc;
        CREATE SCHEMA "Other Svc";
        CREATE TABLE svc.items (id serial PRIMARY KEY, label text);
        CREATE TABLE svc.events (at date, n int) PARTITION BY RANGE (at);
        CREATE TABLE svc.events_2026 PARTITION OF svc.events
            FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE TABLE svc.tickets (id int GENERATED ALWAYS AS IDENTITY, body text);
        CREATE VIEW svc.item_labels AS SELECT label FROM svc.items;
        CREATE MATERIALIZED VIEW svc.item_count AS SELECT count(*) FROM svc.items;
        CREATE SEQUENCE svc.invoice_no;
        CREATE TYPE svc.mood AS ENUM ('calm', 'wild');
        CREATE TYPE svc.point2 AS (x int, y int);
        CREATE DOMAIN svc.positive AS int CHECK (VALUE > 0);
        CREATE TYPE svc.span AS RANGE (subtype = int4);
        CREATE FUNCTION svc.touch(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
        CREATE FUNCTION svc.touch(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
        CREATE PROCEDURE svc.purge() LANGUAGE sql AS 'SELECT 1';
        CREATE TABLE "Other Svc".notes (id int);
        CREATE TABLE "Other Svc".mood_log (id int);
        CREATE VIEW "Other Svc".item_labels AS SELECT 1 AS one;
        -- Left behind in public: stale copies, and a serial whose sequence
        -- (owned, so not listed under svc) has its twin in svc.
        CREATE TABLE public.items (id serial PRIMARY KEY);
        CREATE FUNCTION public.touch(int) RETURNS int LANGUAGE sql AS 'SELECT 0';
        CREATE TABLE public.only_public (id int);
        "#,
    )
    .await
    .unwrap();
    // An extension's objects are not the service's: never listed, and a
    // legacy function in public that one of them would shadow is kept there.
    let extension = simple_value(
        &db,
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgcrypto'",
    )
    .await
        == "1";
    if extension {
        db.batch_execute(
            "CREATE EXTENSION pgcrypto SCHEMA svc; \
             CREATE FUNCTION public.digest(text, text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
        )
        .await
        .unwrap();
    } else {
        eprintln!("pgcrypto is not available: the extension case is not tested");
    }

    let out = introspect(pg, &database).await;
    let body: String = out
        .lines()
        .filter(|l| !l.starts_with("# heal7-proxy introspect:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (public, kept) = if extension {
        (
            "  public:\n    functions: [digest]\n",
            "# kept in public: digest (also in svc, where an extension owns it)\n",
        )
    } else {
        ("", "")
    };
    assert_eq!(
        body,
        format!(
            r#"schemas:
  "Other Svc":
    tables: [mood_log, notes]
    views: [item_labels]
  svc:
    tables: [events, events_2026, items, tickets]
    views: [item_count]
    sequences: [invoice_no]
    types: [mood, point2, positive, span]
    functions: [purge, touch]
{public}# ambiguous: item_labels exists in Other Svc, svc; listed under Other Svc only (first on the search_path)
# stale copy? public.items (table) has the name of svc.items, where the map and the search_path send it
# stale copy? public.items_id_seq (sequence) has the name of svc.items_id_seq, owned by a table there (not listed: it moves with its table)
{kept}# stale copy? public.touch (function) has the name of svc.touch, where the map and the search_path send it
"#
        ),
        "{out}"
    );
    let yaml = under_database(pg, &database, &out);
    let config =
        Config::from_yaml(&yaml, "introspected.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let route = config.route(&database);
    assert_eq!(
        route.search_path.as_deref(),
        Some("\"Other Svc\", svc, public")
    );
    let map = route.map.unwrap();
    assert_eq!(map.schema_of("invoice_no", false), Some("svc"));
    assert_eq!(map.schema_of("items", false), Some("svc"));
    // Owned sequences follow their table; public-only names stay unmapped.
    assert_eq!(map.schema_of("items_id_seq", false), None);
    assert_eq!(map.schema_of("tickets_id_seq", false), None);
    assert_eq!(map.schema_of("only_public", false), None);

    // check agrees that every object is where the printed map says.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &yaml);
    let env = pg_env(pg, &database);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out, err) = run_bin(&["check", "--config", config.to_str().unwrap()], b"", &env).await;
    assert!(ok, "check refused the introspected map: {out}{err}");
    for line in [
        "svc.mood (type): ok",
        "svc.touch() (function): ok, also present in public",
        "svc.invoice_no (sequence): ok",
        "svc.item_count (view): ok",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    // A type the database does not have fails the check.
    let yaml = yaml.replace("types: [mood,", "types: [no_such_type, mood,");
    let config = write_config(&dir, &yaml);
    let (ok, out, _) = run_bin(&["check", "--config", config.to_str().unwrap()], b"", &env).await;
    assert!(!ok, "{out}");
    assert!(out.contains("svc.no_such_type (type): missing"), "{out}");

    drop(db);
    admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await
        .unwrap();
}

/// On the fixture: every service schema, the stale copies in public named,
/// and a map the proxy accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspect_on_the_fixture_prints_a_map_the_proxy_accepts() {
    let pg = pg().await;
    let out = introspect(pg, "heal7").await;
    let yaml = under_database(pg, "heal7", &out);
    let config =
        Config::from_yaml(&yaml, "introspected.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let db = &config.databases[0];
    let names: Vec<&str> = db.schemas.iter().map(|s| s.name.as_str()).collect();
    for schema in [
        "Dream Archive",
        "dream_service",
        "saju_service",
        "shared_common",
    ] {
        assert!(names.contains(&schema), "{schema}: {out}");
    }
    let map = config.route("heal7").map.unwrap();
    assert_eq!(map.schema_of("users", false), Some("shared_common"));
    assert_eq!(map.schema_of("old_dreams", false), Some("Dream Archive"));
    assert_eq!(
        map.schema_of("legacy_fortunes", false),
        Some("saju_service")
    );
    assert!(
        out.contains("# stale copy? public.users (table) has the name of shared_common.users"),
        "{out}"
    );
    assert!(
        !out.contains("\"Users\""),
        "public-only names are not listed: {out}"
    );
}
