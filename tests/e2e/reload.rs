//! Hot reload: by file change, SIGHUP and POST /reload; open connections
//! follow the new map from their next statement, a transaction keeps the
//! mapping it started with, an invalid file changes nothing; per-database
//! modes dry_run and off.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use heal7_proxy::metrics::StatementOutcome;
use heal7_proxy::reload::{self, ConfigStore};
use heal7_proxy::server;
use heal7_proxy::state::ProxyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::harness::{Pg, connect, pg, pg_started, simple_value, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_heal7-proxy");
const READ_USER_1: &str = "SELECT name FROM users WHERE id = 1";

/// A config whose map sends `users` to shared_common (`users_mapped`) or
/// keeps it in public, where it was before the move (the `public` entry: the
/// session's search_path puts shared_common first, so a name merely left out
/// of the map would find shared_common's table).
fn yaml(pg: &Pg, listen: &str, admin: Option<&str>, users_mapped: bool, mode: &str) -> String {
    let schemas = if users_mapped {
        "      shared_common: {tables: [users, attachments]}\n"
    } else {
        "      shared_common: {tables: [attachments]}\n      public: {tables: [users]}\n"
    };
    let admin = admin
        .map(|a| format!("  admin_listen: {a}\n"))
        .unwrap_or_default();
    format!(
        "proxy:\n  listen: {listen}\n{admin}databases:\n  heal7:\n    host: {host}\n    port: {port}\n    mode: {mode}\n    schemas:\n{schemas}",
        host = pg.host,
        port = pg.port,
    )
}

/// A proxy in-process around a reloadable store read from `path`.
struct ReloadableProxy {
    /// Holds the config file.
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    addr: std::net::SocketAddr,
    store: Arc<ConfigStore>,
    state: ProxyState,
    shutdown: CancellationToken,
}

impl Drop for ReloadableProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A reloadable proxy whose file maps (`users_mapped`) or not `users`, in
/// `mode`, and one client connected through it.
async fn reloadable(
    users_mapped: bool,
    mode: &str,
    watch: bool,
) -> (ReloadableProxy, tokio_postgres::Client) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    std::fs::write(
        &path,
        yaml(pg().await, "127.0.0.1:0", None, users_mapped, mode),
    )
    .unwrap();
    let proxy = start_reloadable(dir, path, watch).await;
    let client = connect(&client_config(proxy.addr.port())).await.unwrap();
    (proxy, client)
}

impl ReloadableProxy {
    /// Rewrite the config file in place (no reload by itself).
    fn write_config(&self, users_mapped: bool, mode: &str) {
        let text = yaml(pg_started(), "127.0.0.1:0", None, users_mapped, mode);
        std::fs::write(&self.path, text).unwrap();
    }
}

async fn start_reloadable(
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
    watch: bool,
) -> ReloadableProxy {
    let store = Arc::new(ConfigStore::from_file(&path).expect("valid config"));
    let state = ProxyState::with_store(store.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    if watch {
        let (s, sd) = (store.clone(), shutdown.clone());
        tokio::spawn(async move {
            reload::reload_on_file_change(s, Duration::from_millis(50), sd)
                .await
                .expect("watch config");
        });
        // The watcher must be registered before the test writes the file.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, sd) = (state.clone(), shutdown.clone());
    tokio::spawn(async move { server::run(listener, st, sd).await });
    ReloadableProxy {
        _dir: dir,
        path,
        addr,
        store,
        state,
        shutdown,
    }
}

fn client_config(port: u16) -> tokio_postgres::Config {
    let pg = pg_started();
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(&pg.superuser)
        .dbname("heal7")
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = &pg.password {
        c.password(p);
    }
    c
}

/// Write a file the way editors do: a new file renamed over the old one.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_change_reaches_an_open_connection_at_its_next_statement() {
    let (proxy, client) = reloadable(false, "rewrite", true).await;
    // Not moved yet: the bare name reads the copy in public.
    assert_eq!(simple_value(&client, READ_USER_1).await, "STALE-alice");

    let written = Instant::now();
    replace_file(
        &proxy.path,
        &yaml(pg_started(), "127.0.0.1:0", None, true, "rewrite"),
    );
    let reloaded = wait_until(Duration::from_secs(10), || async {
        simple_value(&client, READ_USER_1).await == "fresh-alice"
    })
    .await;
    assert!(reloaded, "the same connection never saw the new map");
    eprintln!(
        "file write -> first statement using the new map: {:?}",
        written.elapsed()
    );
    assert_eq!(proxy.store.load().generation, 2);
    assert_eq!(proxy.store.reloads_ok.load(Ordering::Relaxed), 1);
}

/// Reading the file (the proxy's own read during a reload, an operator's
/// `cat`) and touching its metadata change nothing: they must not start a
/// reload, let alone one that starts the next (it used to, every 200 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_or_touching_the_file_does_not_reload() {
    let (proxy, _client) = reloadable(true, "rewrite", true).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&proxy.path).unwrap().permissions().mode();
    for _ in 0..5 {
        std::fs::read_to_string(&proxy.path).unwrap();
        std::fs::set_permissions(&proxy.path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // A real change is seen: one read.
    proxy.write_config(false, "rewrite");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            proxy.store.load().generation == 2
        })
        .await
    );
    // ...and its own read does not start another (the debounce is 50 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(proxy.store.reads.load(Ordering::Relaxed), 1);
}

/// Issue 10, finding 3: a Kubernetes ConfigMap volume updates by swapping
/// a `..data` symlink (the config file itself is a symlink through it and
/// never changes); the watcher must see that swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_reloads() {
    use std::os::unix::fs::symlink;
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let version = |name: &str, users_mapped: bool| {
        let v = dir.path().join(name);
        std::fs::create_dir(&v).unwrap();
        std::fs::write(
            v.join("heal7.yaml"),
            yaml(pg, "127.0.0.1:0", None, users_mapped, "rewrite"),
        )
        .unwrap();
    };
    version("..2026_11_29_v1", false);
    symlink("..2026_11_29_v1", dir.path().join("..data")).unwrap();
    symlink("..data/heal7.yaml", dir.path().join("heal7.yaml")).unwrap();
    let path = dir.path().join("heal7.yaml");
    let root = dir.path().to_owned();
    let proxy = start_reloadable(dir, path, true).await;
    assert_eq!(proxy.store.load().generation, 1);

    // What the kubelet does: a new version folder, a new `..data_tmp`
    // symlink to it, renamed over `..data`.
    let v2 = root.join("..2026_11_29_v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("heal7.yaml"),
        yaml(pg, "127.0.0.1:0", None, true, "rewrite"),
    )
    .unwrap();
    symlink("..2026_11_29_v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            proxy.store.load().generation == 2
        })
        .await,
        "the swap was not seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_spans_a_reload_keeps_its_mapping() {
    let (proxy, client) = reloadable(false, "rewrite", false).await;

    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(simple_value(&client, READ_USER_1).await, "STALE-alice");
    proxy.write_config(true, "rewrite");
    assert_eq!(proxy.store.reload().unwrap().generation, 2);
    // Still inside the transaction: the old mapping, for both protocols.
    assert_eq!(simple_value(&client, READ_USER_1).await, "STALE-alice");
    let row = client.query_one(READ_USER_1, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "STALE-alice");
    client.batch_execute("COMMIT").await.unwrap();
    // The next statement after the transaction uses the new map.
    assert_eq!(simple_value(&client, READ_USER_1).await, "fresh-alice");
    let row = client.query_one(READ_USER_1, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "fresh-alice");
}

/// A named statement prepared under one mapping reads the next mapping's
/// table after a reload, under the same name (asyncpg, JDBC and psycopg 3
/// keep such statements for the connection's life): it is prepared again
/// at the first transaction boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_follows_a_reload_under_its_own_name() {
    let (proxy, client) = reloadable(true, "rewrite", false).await;
    let prepared = client.prepare(READ_USER_1).await.unwrap();
    let row = client.query_one(&prepared, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "fresh-alice");
    proxy.write_config(false, "rewrite");
    proxy.store.reload().unwrap();
    let row = client.query_one(&prepared, &[]).await.unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "STALE-alice",
        "the prepared statement kept the old mapping"
    );
    assert_eq!(
        proxy
            .state
            .metrics
            .prepared_reprepared
            .load(Ordering::Relaxed),
        1
    );
    // And back: the same name follows every reload.
    proxy.write_config(true, "rewrite");
    proxy.store.reload().unwrap();
    let row = client.query_one(&prepared, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "fresh-alice");
}

/// A transaction that spans a reload keeps its mapping for prepared
/// statements too: no transaction reads two generations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_inside_a_transaction_keeps_the_transactions_mapping() {
    let (proxy, client) = reloadable(false, "rewrite", false).await;
    let prepared = client.prepare(READ_USER_1).await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let row = client.query_one(&prepared, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "STALE-alice");
    proxy.write_config(true, "rewrite");
    proxy.store.reload().unwrap();
    let row = client.query_one(&prepared, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "STALE-alice", "mid-transaction");
    assert_eq!(simple_value(&client, READ_USER_1).await, "STALE-alice");
    client.batch_execute("COMMIT").await.unwrap();
    let row = client.query_one(&prepared, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "fresh-alice", "after COMMIT");
}

/// A statement the client closed (Close message or DEALLOCATE) is not
/// recreated by a reload: the client may prepare the name again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_or_deallocated_statement_is_not_recreated_by_a_reload() {
    use crate::raw_wire::{read_message, startup_packet};
    let (proxy, _client) = reloadable(true, "rewrite", false).await;
    let pg = pg_started();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&startup_packet(&[
        ("user", pg.superuser.as_bytes()),
        ("database", b"heal7"),
    ]))
    .await
    .unwrap();
    async fn until_ready(s: &mut TcpStream) -> Vec<u8> {
        let mut tags = Vec::new();
        loop {
            let (t, _) = read_message(s).await.expect("open");
            tags.push(t);
            if t == b'Z' {
                return tags;
            }
        }
    }
    until_ready(&mut s).await;
    let sql = READ_USER_1.as_bytes();
    let mut out = bytes::BytesMut::new();
    for name in [&b"by_close"[..], b"by_deallocate", b"kept"] {
        heal7_proxy::protocol::encode_parse(&mut out, name, sql, &[0, 0]);
    }
    heal7_proxy::protocol::encode_sync(&mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(until_ready(&mut s).await, b"111Z");
    out.clear();
    heal7_proxy::protocol::encode_close(&mut out, b'S', b"by_close");
    heal7_proxy::protocol::encode_sync(&mut out);
    heal7_proxy::protocol::encode_query(&mut out, b"DEALLOCATE by_deallocate");
    s.write_all(&out).await.unwrap();
    until_ready(&mut s).await;
    until_ready(&mut s).await;

    proxy.write_config(false, "rewrite");
    proxy.store.reload().unwrap();
    out.clear();
    for name in [&b"by_close"[..], b"by_deallocate"] {
        heal7_proxy::protocol::encode_parse(&mut out, name, sql, &[0, 0]);
    }
    heal7_proxy::protocol::encode_sync(&mut out);
    s.write_all(&out).await.unwrap();
    assert_eq!(
        until_ready(&mut s).await,
        b"11Z",
        "a dropped name came back (42P05 already exists)"
    );
    assert_eq!(
        proxy
            .state
            .metrics
            .prepared_reprepared
            .load(Ordering::Relaxed),
        1,
        "only `kept` is prepared again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_changes_nothing_and_shows_its_error() {
    let (proxy, client) = reloadable(true, "rewrite", false).await;

    std::fs::write(
        &proxy.path,
        "databases:\n  heal7:\n    schemas:\n      a: {tables: [users]}\n      b: {tables: [users]}\n",
    )
    .unwrap();
    let err = proxy.store.reload().unwrap_err().to_string();
    assert!(err.contains("already listed under schema `a`"), "{err}");
    assert_eq!(proxy.store.load().generation, 1);
    assert!(proxy.store.last_error().is_some());
    assert_eq!(proxy.store.reloads_failed.load(Ordering::Relaxed), 1);
    // The session goes on with the old map.
    assert_eq!(simple_value(&client, READ_USER_1).await, "fresh-alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_forwards_unchanged_and_counts_what_it_would_change() {
    let (proxy, client) = reloadable(true, "dry_run", false).await;
    assert_eq!(simple_value(&client, READ_USER_1).await, "STALE-alice");
    assert_eq!(
        proxy
            .state
            .metrics
            .statements(StatementOutcome::DryRun)
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(
        proxy
            .state
            .metrics
            .statements(StatementOutcome::Rewritten)
            .load(Ordering::Relaxed),
        0
    );
    // Switch to rewrite by reload: the same connection now reads fresh rows.
    proxy.write_config(true, "rewrite");
    proxy.store.reload().unwrap();
    assert_eq!(simple_value(&client, READ_USER_1).await, "fresh-alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_off_is_the_rollback_without_a_restart() {
    let (proxy, client) = reloadable(true, "rewrite", false).await;
    assert_eq!(simple_value(&client, READ_USER_1).await, "fresh-alice");
    proxy.write_config(true, "off");
    proxy.store.reload().unwrap();
    // New sessions get no search_path: the server resolves as without the
    // proxy, so the bare name reads public's copy.
    let fresh_session = connect(&client_config(proxy.addr.port())).await.unwrap();
    assert_eq!(
        simple_value(&fresh_session, READ_USER_1).await,
        "STALE-alice"
    );
    assert_eq!(
        simple_value(&fresh_session, "SHOW search_path").await,
        "\"$user\", public"
    );
    // An open session is no longer rewritten, but keeps the search_path it
    // started with (a startup parameter): its bare name finds shared_common.
    assert_eq!(
        simple_value(&client, "SHOW search_path").await,
        "shared_common, public"
    );
    assert_eq!(simple_value(&client, READ_USER_1).await, "fresh-alice");
    let before = proxy
        .state
        .metrics
        .statements(StatementOutcome::Rewritten)
        .load(Ordering::Relaxed);
    client.query_one(READ_USER_1, &[]).await.unwrap();
    assert_eq!(
        proxy
            .state
            .metrics
            .statements(StatementOutcome::Rewritten)
            .load(Ordering::Relaxed),
        before
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 request to the admin port; returns (status, body).
async fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("admin answered")
        .unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_owned())
}

/// The binary: SIGHUP and POST /reload both reload, /metrics and /mapping
/// show it, and a refused file is reported at /mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_post_reload_on_the_running_binary() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    let (port, admin) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{port}");
    let admin_listen = format!("127.0.0.1:{admin}");
    std::fs::write(
        &path,
        yaml(pg, &listen, Some(&admin_listen), false, "rewrite"),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--config", path.to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let client = {
        let mut got = None;
        for _ in 0..100 {
            if let Ok(c) = connect(&client_config(port)).await {
                got = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        got.expect("the binary accepts connections")
    };
    assert_eq!(simple_value(&client, READ_USER_1).await, "STALE-alice");

    // SIGHUP (written in place; the file watcher may also fire: either way
    // the connection sees the new map).
    std::fs::write(
        &path,
        yaml(pg, &listen, Some(&admin_listen), true, "rewrite"),
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_until(Duration::from_secs(10), || async {
            simple_value(&client, READ_USER_1).await == "fresh-alice"
        })
        .await
    );

    // POST /reload with an invalid file: refused, reported, nothing changes.
    let (_, before) = http(admin, "GET", "/mapping").await;
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    let generation = before["generation"].as_u64().unwrap();
    assert_eq!(before["databases"][0]["mode"], "rewrite");
    assert_eq!(
        before["databases"][0]["schemas"]["shared_common"][0],
        "users"
    );
    std::fs::write(&path, "databases: {heal7: {bogus: 1}}\n").unwrap();
    let (status, body) = http(admin, "POST", "/reload").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("bogus"), "{body}");
    let (_, mapping) = http(admin, "GET", "/mapping").await;
    let mapping: serde_json::Value = serde_json::from_str(&mapping).unwrap();
    assert!(
        mapping["last_reload_error"]["message"]
            .as_str()
            .unwrap()
            .contains("bogus")
    );
    assert_eq!(simple_value(&client, READ_USER_1).await, "fresh-alice");

    // POST /reload with a valid file: one generation more (the watcher may
    // have tried the invalid file too; only successes count).
    std::fs::write(
        &path,
        yaml(pg, &listen, Some(&admin_listen), false, "rewrite"),
    )
    .unwrap();
    let (status, body) = http(admin, "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    let now: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(now["generation"].as_u64().unwrap() > generation);
    assert_eq!(simple_value(&client, READ_USER_1).await, "STALE-alice");

    let (status, metrics) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("heal7_proxy_reloads_total{result=\"refused\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("heal7_proxy_statements_total{outcome=\"rewritten\"}"));
    for family in [
        "heal7_proxy_database_statements_total{database=\"heal7\",outcome=\"rewritten\"}",
        "heal7_proxy_rewrite_cache_misses_total{database=\"heal7\"}",
        "heal7_proxy_statement_seconds_bucket{le=\"+Inf\"}",
        "heal7_proxy_schema_statement_results_total{schema=\"shared_common\",result=\"ok\"}",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }
    // The one client connected now is one session on some event loop.
    let sessions: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("heal7_proxy_worker_sessions{worker=\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sessions, 1, "{metrics}");
    let (status, _) = http(admin, "GET", "/healthz").await;
    assert_eq!(status, 200);
    let (status, ready) = http(admin, "GET", "/readyz").await;
    assert_eq!(status, 200, "{ready}");

    drop(client);
    child.kill().await.unwrap();
}

/// An upstream address change applies to new connections; open sessions
/// keep the server they have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_change_applies_to_new_connections_only() {
    let pg = pg().await;
    let (proxy, open) = reloadable(true, "rewrite", false).await;
    let good = yaml(pg, "127.0.0.1:0", None, true, "rewrite");

    let closed = free_port();
    std::fs::write(
        &proxy.path,
        good.replace(&format!("port: {}", pg.port), &format!("port: {closed}")),
    )
    .unwrap();
    proxy.store.reload().unwrap();
    assert_eq!(simple_value(&open, READ_USER_1).await, "fresh-alice");
    let Err(err) = connect(&client_config(proxy.addr.port())).await else {
        panic!("the new upstream is closed");
    };
    assert_eq!(crate::harness::sqlstate(&err), "08006", "{err}");
    let message = err.as_db_error().unwrap().message();
    assert!(message.contains(&closed.to_string()), "{message}");
}
