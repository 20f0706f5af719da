//! Pooled databases (`pool.mode: session`): the proxy authenticates clients
//! itself (auth_query as an auth user, SCRAM and md5 pass-through), reuses
//! server connections between clients of one (database, user), resets them
//! in between, applies each client's startup parameters, keeps cancel
//! working, and bounds the wait for a connection per pool.

use std::time::Duration;

use crate::harness::{
    ProxyHandle, SCHEMAS_YAML, assert_no_sessions_counted, connect, pg, simple_value, sqlstate,
    start_proxy_on, start_proxy_yaml, wait_until,
};
use heal7_proxy::workers::Workers;

const AUTH_QUERY: &str = "SELECT usename, passwd FROM public.heal7_proxy_lookup($1)";

/// A temporary folder holding the auth user's password file.
pub(crate) fn auth_password_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auth-password"), "auth-secret\n").unwrap();
    dir
}

/// A proxy whose `heal7` entry pools with `pool` (YAML flow-map body).
pub async fn pooled_proxy(pool: &str) -> (ProxyHandle, tempfile::TempDir) {
    pg().await;
    let dir = auth_password_dir();
    let yaml = pooled_yaml(pool, &dir.path().join("auth-password"), true);
    (start_proxy_yaml(&yaml).await, dir)
}

pub fn user_config(proxy: &ProxyHandle, user: &str, password: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(proxy.port())
        .user(user)
        .password(password)
        .dbname("heal7")
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn backend_pid(client: &tokio_postgres::Client) -> String {
    simple_value(client, "SELECT pg_backend_pid()").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_reuses_one_server_connection_and_rewrites() {
    let (proxy, _dir) = pooled_proxy("mode: session, size: 2").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let first = connect(&config)
        .await
        .expect("SCRAM login through the pool");
    assert_eq!(
        simple_value(&first, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice",
        "bare names are qualified on pooled sessions too"
    );
    let pid = backend_pid(&first).await;
    drop(first);
    // The server connection goes back after DISCARD ALL (in the background).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let again = connect(&config).await.expect("login again");
        assert_eq!(backend_pid(&again).await, pid, "the pooled connection");
        drop(again);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pools = proxy.state.pools.all();
    let user_pool = pools
        .iter()
        .find(|p| p.user == "scram_user")
        .expect("a scram_user pool");
    assert_eq!(
        user_pool
            .stats
            .servers_opened
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_users_log_in_by_pass_through_too() {
    let (proxy, _dir) = pooled_proxy("mode: session").await;
    let client = connect(&user_config(&proxy, "md5_user", "md5-secret"))
        .await
        .expect("md5 login through the pool");
    assert_eq!(
        simple_value(&client, "SELECT current_user").await,
        "md5_user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_get_postgres_own_answer() {
    let (proxy, _dir) = pooled_proxy("mode: session").await;
    for (user, password) in [
        ("scram_user", "wrong"),
        ("md5_user", "wrong"),
        ("nobody", "x"),
    ] {
        let e = connect(&user_config(&proxy, user, password))
            .await
            .expect_err("refused");
        assert_eq!(sqlstate(&e), "28P01", "{user}: {e}");
        let db = e.as_db_error().expect("an ErrorResponse");
        assert_eq!(
            db.message(),
            format!("password authentication failed for user \"{user}\"")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_its_own_parameters_and_nothing_of_the_previous_one() {
    let (proxy, _dir) = pooled_proxy("mode: session, size: 1").await;
    let mut config = user_config(&proxy, "scram_user", "scram-secret");
    config.application_name("first-app");
    config.options("-c statement_timeout=1234");
    let first = connect(&config).await.unwrap();
    assert_eq!(
        simple_value(&first, "SHOW application_name").await,
        "first-app"
    );
    assert_eq!(
        simple_value(&first, "SHOW statement_timeout").await,
        "1234ms"
    );
    first
        .batch_execute("SET work_mem = '7MB'; CREATE TEMP TABLE leftover (x int)")
        .await
        .unwrap();
    let pid = backend_pid(&first).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut config = user_config(&proxy, "scram_user", "scram-secret");
    config.application_name("second-app");
    let second = connect(&config).await.unwrap();
    assert_eq!(backend_pid(&second).await, pid, "same server connection");
    assert_eq!(
        simple_value(&second, "SHOW application_name").await,
        "second-app"
    );
    assert_eq!(simple_value(&second, "SHOW statement_timeout").await, "0");
    assert_ne!(simple_value(&second, "SHOW work_mem").await, "7MB");
    assert_eq!(
        simple_value(
            &second,
            "SELECT count(*) FROM pg_class WHERE relname = 'leftover'"
        )
        .await,
        "0",
        "DISCARD ALL dropped the temporary table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_transaction_does_not_hand_its_transaction_on() {
    let (proxy, _dir) = pooled_proxy("mode: session, size: 1").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let first = connect(&config).await.unwrap();
    first.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let pid = backend_pid(&first).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = connect(&config).await.unwrap();
    assert_ne!(backend_pid(&second).await, pid, "a new server connection");
    // Outside any transaction: COMMIT warns, it does not commit anything.
    second.batch_execute("BEGIN").await.unwrap();
    second.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_pooled_server_connection() {
    let (proxy, _dir) = pooled_proxy("mode: session").await;
    let client = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .unwrap();
    let token = client.cancel_token();
    cancel_a_sleep(client, token).await;
}

/// Run `SELECT pg_sleep(30)` on `client`, cancel it with `token`, and
/// check it ends with 57014 at once.
async fn cancel_a_sleep(client: tokio_postgres::Client, token: tokio_postgres::CancelToken) {
    let sleeper = tokio::spawn(async move {
        let r = client.batch_execute("SELECT pg_sleep(30)").await;
        drop(client);
        r
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let e = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("cancelled promptly")
        .unwrap()
        .expect_err("cancelled");
    assert_eq!(sqlstate(&e), "57014", "{e}");
}

/// Transaction mode: the key the client got at login follows it to the
/// server of its current transaction, whichever that is; between
/// transactions it cancels nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_server_of_the_current_transaction() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 2").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let client = connect(&config).await.unwrap();
    // Another client holds one server connection in a transaction, so the
    // first client's transactions use the other one.
    let other = connect(&config).await.unwrap();
    other.batch_execute("BEGIN; SELECT 1").await.unwrap();
    for _ in 0..3 {
        client.batch_execute("SELECT 1").await.unwrap();
    }
    let token = client.cancel_token();
    // Idle: the key points nowhere, and the client is unaffected.
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    client
        .batch_execute("SELECT 1")
        .await
        .expect("nothing to cancel");
    cancel_a_sleep(client, token).await;
    // The other client's transaction was not touched.
    other.batch_execute("SELECT 1; COMMIT").await.unwrap();
}

/// A pool saturated by one client makes the next wait
/// `query_wait_timeout_ms`, then fail with 53300 naming the pool; another
/// pool (another user) is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_times_out_its_waiters_and_spares_other_pools() {
    let (proxy, _dir) = pooled_proxy("mode: session, size: 1, query_wait_timeout_ms: 300").await;
    let holder = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .unwrap();
    let e = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .expect_err("no connection left");
    assert_eq!(sqlstate(&e), "53300", "{e}");
    let message = e.as_db_error().expect("an ErrorResponse").message();
    assert!(message.contains("heal7/scram_user"), "{message}");
    let other = connect(&user_config(&proxy, "md5_user", "md5-secret"))
        .await
        .expect("another pool has its own connections");
    assert_eq!(simple_value(&other, "SELECT 1").await, "1");
    drop(holder);
}

/// Transaction mode: every session of one pool relays on the pool's event
/// loop, whichever loop accepted it, so a server connection handed from
/// client to client never changes threads; another pool gets the next
/// loop. Moved sessions keep working, cancel included, and are counted
/// where they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pool_relays_its_sessions_on_one_event_loop() {
    pg().await;
    let dir = auth_password_dir();
    let yaml = pooled_yaml(
        "mode: transaction, size: 2",
        &dir.path().join("auth-password"),
        true,
    );
    let workers = Workers::spawn(&tokio::runtime::Handle::current(), 2).expect("worker threads");
    let proxy = start_proxy_on(&yaml, workers.clone()).await;
    let mut scram = Vec::new();
    for _ in 0..6 {
        let c = connect(&user_config(&proxy, "scram_user", "scram-secret"))
            .await
            .expect("login");
        assert_eq!(
            simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
            "fresh-alice"
        );
        scram.push(c);
    }
    // Accepted round the three loops by fewest sessions, all moved to one.
    let counts = workers.sessions();
    assert_eq!(counts.iter().sum::<usize>(), 6, "{counts:?}");
    let home = counts
        .iter()
        .position(|&n| n == 6)
        .unwrap_or_else(|| panic!("one loop runs all six sessions of the pool: {counts:?}"));

    let mut md5 = Vec::new();
    for _ in 0..3 {
        let c = connect(&user_config(&proxy, "md5_user", "md5-secret"))
            .await
            .expect("login");
        assert_eq!(simple_value(&c, "SELECT 1").await, "1");
        md5.push(c);
    }
    let counts = workers.sessions();
    assert_eq!(counts[home], 6, "{counts:?}");
    assert!(
        counts.contains(&3),
        "the second pool's sessions share another loop: {counts:?}"
    );

    // Transactions of the moved sessions interleave on the pool's two
    // connections.
    for (i, c) in scram.iter().enumerate().skip(1) {
        c.batch_execute("BEGIN; SELECT name FROM users WHERE id = 1; SELECT 1; COMMIT")
            .await
            .unwrap_or_else(|e| panic!("client {i}: {e:?}"));
    }
    let last = scram.pop().unwrap();
    let token = last.cancel_token();
    cancel_a_sleep(last, token).await;

    drop(scram);
    drop(md5);
    assert_no_sessions_counted(&workers).await;
}

/// YAML of a pooled proxy; `users_schema`: where the map sends `users`.
pub(crate) fn pooled_yaml(
    pool: &str,
    password_file: &std::path::Path,
    users_mapped: bool,
) -> String {
    let pg = crate::harness::pg_started();
    let schemas = if users_mapped {
        SCHEMAS_YAML.to_owned()
    } else {
        // Kept in public, where it was before the move.
        SCHEMAS_YAML
            .replace(
                "      shared_common: {tables: [users, attachments]}\n",
                "      shared_common: {tables: [attachments]}\n",
            )
            .replace(
                "public: {tables: [legacy_fortunes]}",
                "public: {tables: [legacy_fortunes, users]}",
            )
    };
    format!(
        "proxy:\n  listen: 127.0.0.1:0\n\
         databases:\n  heal7:\n    host: {host}\n    port: {port}\n    database: heal7\n\
         \x20   pool: {{{pool}, auth_user: heal7_auth, auth_password_file: {password}, auth_query: \"{AUTH_QUERY}\"}}\n{schemas}",
        host = pg.host,
        port = pg.port,
        password = password_file.display(),
    )
}

/// A pooled proxy whose config file can be rewritten and reloaded.
pub(crate) struct ReloadablePooled {
    dir: tempfile::TempDir,
    store: std::sync::Arc<heal7_proxy::reload::ConfigStore>,
    pub(crate) handle: ProxyHandle,
    pool: String,
}

impl ReloadablePooled {
    pub(crate) async fn start(pool: &str) -> ReloadablePooled {
        pg().await;
        let dir = auth_password_dir();
        let password = dir.path().join("auth-password");
        let path = dir.path().join("heal7.yaml");
        std::fs::write(&path, pooled_yaml(pool, &password, true)).unwrap();
        let store = std::sync::Arc::new(
            heal7_proxy::reload::ConfigStore::from_file(&path).expect("valid config"),
        );
        let state = heal7_proxy::state::ProxyState::with_store(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (st, sd) = (state.clone(), shutdown.clone());
        tokio::spawn(async move { heal7_proxy::server::run(listener, st, sd).await });
        ReloadablePooled {
            dir,
            store,
            handle: ProxyHandle {
                addr,
                state,
                shutdown,
            },
            pool: pool.to_owned(),
        }
    }

    pub(crate) fn remap(&self, users_mapped: bool) {
        let password = self.dir.path().join("auth-password");
        std::fs::write(
            self.dir.path().join("heal7.yaml"),
            pooled_yaml(&self.pool, &password, users_mapped),
        )
        .unwrap();
        self.store.reload().expect("reload");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_serves_many_clients_on_few_connections() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 2").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&config).await.expect("login");
            let statement = client
                .prepare("SELECT name FROM users WHERE id = $1")
                .await
                .expect("prepare");
            for round in 0..10 {
                let row = client
                    .query_one(&statement, &[&1i32])
                    .await
                    .expect("execute");
                assert_eq!(row.get::<_, String>(0), "fresh-alice");
                let tx_value = simple_value(&client, &format!("SELECT {i} + {round}")).await;
                assert_eq!(tx_value, (i + round).to_string());
            }
            client
                .batch_execute("BEGIN; SELECT name FROM users WHERE id = 1; COMMIT")
                .await
                .expect("a transaction");
        }));
    }
    for t in tasks {
        t.await.expect("no client failed");
    }
    let pools = proxy.state.pools.all();
    let pool = pools.iter().find(|p| p.user == "scram_user").unwrap();
    let opened = pool
        .stats
        .servers_opened
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(opened <= 2, "{opened} server connections for a pool of 2");
    assert!(
        pool.stats
            .prepared_hits
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_prepared_statements_follow_a_reload() {
    let proxy = ReloadablePooled::start("mode: transaction, size: 2").await;
    let config = user_config(&proxy.handle, "scram_user", "scram-secret");
    let client = connect(&config).await.unwrap();
    let other = connect(&config).await.unwrap();
    let statement = client
        .prepare("SELECT name FROM users WHERE id = 1")
        .await
        .unwrap();
    for _ in 0..5 {
        let row = client.query_one(&statement, &[]).await.expect("before");
        assert_eq!(row.get::<_, String>(0), "fresh-alice");
        assert_eq!(simple_value(&other, "SELECT 1").await, "1");
    }
    proxy.remap(false);
    for _ in 0..5 {
        let row = client
            .query_one(&statement, &[])
            .await
            .expect("after the reload");
        assert_eq!(
            row.get::<_, String>(0),
            "STALE-alice",
            "the statement follows the new map"
        );
        assert_eq!(simple_value(&other, "SELECT 1").await, "1");
    }
}

/// A prepare the proxy answers itself (issue 11) after a reload that
/// moves `users`: the pool's record starts afresh with the new mapping, so
/// the answer names the statement's new text and its execution reads the
/// new schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_prepares_answered_by_the_proxy_follow_a_reload() {
    let proxy =
        ReloadablePooled::start("mode: transaction, size: 1, query_wait_timeout_ms: 3000").await;
    let config = user_config(&proxy.handle, "scram_user", "scram-secret");
    let (a, b, c) = (
        connect(&config).await.unwrap(),
        connect(&config).await.unwrap(),
        connect(&config).await.unwrap(),
    );
    let holder = connect(&config).await.unwrap();
    const SQL: &str = "SELECT name FROM users WHERE id = 1";
    let before = a.prepare(SQL).await.unwrap();
    assert_eq!(
        a.query_one(&before, &[]).await.unwrap().get::<_, String>(0),
        "fresh-alice"
    );
    proxy.remap(false);
    // Under the new mapping the text is new to the pool: C's prepare goes
    // to the server, which the pool then remembers.
    c.prepare(SQL).await.unwrap();
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let after = tokio::time::timeout(Duration::from_millis(1500), b.prepare(SQL))
        .await
        .expect("answered by the proxy while the only connection is held")
        .unwrap();
    let execution = tokio::spawn(async move {
        let row = b.query_one(&after, &[]).await?;
        Ok::<_, tokio_postgres::Error>(row.get::<_, String>(0))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        execution.await.unwrap().expect("executed"),
        "STALE-alice",
        "the new mapping's table"
    );
    assert_eq!(
        a.query_one(&before, &[]).await.unwrap().get::<_, String>(0),
        "STALE-alice",
        "A's statement follows too"
    );
    let text = heal7_proxy::http::render_metrics(&proxy.handle.state);
    assert!(
        text.contains("heal7_proxy_pool_prepared_statements_total{database=\"heal7\",user=\"scram_user\",result=\"answered_by_proxy\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_carries_session_settings_and_refuses_session_state() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let client = connect(&config).await.unwrap();
    let other = connect(&config).await.unwrap();
    client
        .batch_execute("SET statement_timeout = '1234ms'")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(simple_value(&other, "SHOW statement_timeout").await, "0");
        assert_eq!(
            simple_value(&client, "SHOW statement_timeout").await,
            "1234ms",
            "carried to every server connection"
        );
    }
    client
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
    assert_eq!(simple_value(&client, "SHOW statement_timeout").await, "0");
    let e = client
        .batch_execute("LISTEN jobs")
        .await
        .expect_err("refused");
    assert_eq!(sqlstate(&e), "0A000");
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("pool.mode transaction"), "{message}");
    // The session goes on.
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
}

/// The pool's numbers in /metrics and in the console, and a reload that
/// changes its size applies at once (no restart, no dropped session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_observable_and_resized_by_a_reload() {
    let proxy = ReloadablePooled::start("mode: session, size: 1, query_wait_timeout_ms: 300").await;
    let config = user_config(&proxy.handle, "scram_user", "scram-secret");
    let holder = connect(&config).await.unwrap();
    let e = connect(&config).await.expect_err("size 1 is taken");
    assert_eq!(sqlstate(&e), "53300");

    let text = heal7_proxy::http::render_metrics(&proxy.handle.state);
    for line in [
        "heal7_proxy_pool_clients{database=\"heal7\",user=\"scram_user\",state=\"active\"} 1",
        "heal7_proxy_pool_servers{database=\"heal7\",user=\"scram_user\",state=\"active\"} 1",
        "heal7_proxy_pool_size{database=\"heal7\",user=\"scram_user\"} 1",
        "heal7_proxy_pool_wait_timeouts_total{database=\"heal7\",user=\"scram_user\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}");
    }
    assert!(
        !text.contains("user=\"nobody\""),
        "no series for unauthenticated names"
    );
    let pools = heal7_proxy::console::report::pools(&proxy.handle.state);
    let row = pools
        .rows
        .iter()
        .find(|r| r[1].as_deref() == Some("scram_user"))
        .expect("a SHOW POOLS row");
    assert_eq!(row[2].as_deref(), Some("session"));
    assert_eq!(row[6].as_deref(), Some("1"), "servers_active");

    // size 2 by reload: the second client gets in while the first stays.
    std::fs::write(
        proxy.dir.path().join("heal7.yaml"),
        pooled_yaml(
            "mode: session, size: 2, query_wait_timeout_ms: 300",
            &proxy.dir.path().join("auth-password"),
            true,
        ),
    )
    .unwrap();
    proxy.store.reload().expect("reload");
    let second = connect(&config).await.expect("room after the reload");
    assert_eq!(simple_value(&second, "SELECT 1").await, "1");
    assert_eq!(simple_value(&holder, "SELECT 2").await, "2", "untouched");
}

/// A reload that changes the pool's upstream (host, port, database, TLS,
/// startup options, auth settings) closes the idle connections opened
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_upstream_setting_drains_idle_connections() {
    let proxy = ReloadablePooled::start("mode: session, size: 2").await;
    let config = user_config(&proxy.handle, "scram_user", "scram-secret");
    let client = connect(&config).await.unwrap();
    let before = backend_pid(&client).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = connect(&config).await.unwrap();
    assert_eq!(backend_pid(&client).await, before, "reused while unchanged");
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The same server under another name: a changed upstream to the pool.
    let pg = crate::harness::pg_started();
    let yaml = pooled_yaml(
        "mode: session, size: 2",
        &proxy.dir.path().join("auth-password"),
        true,
    )
    .replace(&format!("host: {}", pg.host), "host: localhost");
    std::fs::write(proxy.dir.path().join("heal7.yaml"), yaml).unwrap();
    proxy.store.reload().expect("reload");
    let client = connect(&config).await.unwrap();
    assert_ne!(
        backend_pid(&client).await,
        before,
        "a connection opened to the old upstream is not lent again"
    );
    let pools = proxy.handle.state.pools.all();
    let pool = pools.iter().find(|p| p.user == "scram_user").unwrap();
    assert!(
        pool.stats
            .servers_closed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

/// A startup setting the server refuses reaches the client as the server's
/// own error (its SQLSTATE, not the proxy's 08006).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_startup_setting_is_the_servers_own_error() {
    let (proxy, _dir) = pooled_proxy("mode: session").await;
    let mut config = user_config(&proxy, "scram_user", "scram-secret");
    config.options("-c statement_timeout=soon");
    let e = connect(&config).await.expect_err("refused");
    assert_eq!(sqlstate(&e), "22023", "{e:?}");
}

/// A server connection whose backend ended while it sat idle in the pool
/// (terminated, restarted, timed out) is never lent: the client's next
/// transactions run whole on a new connection. Transaction mode keeps an
/// idle connection in its two socket halves, checked as the whole socket
/// was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_whose_backend_ended_is_never_lent() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let client = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .expect("login");
    let direct = pg().await.direct("heal7").await;
    for round in 0..3 {
        let pid = backend_pid(&client).await;
        let ended = simple_value(&direct, &format!("SELECT pg_terminate_backend({pid})")).await;
        assert_eq!(ended, "t", "round {round}");
        let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}");
        assert!(
            wait_until(Duration::from_secs(10), || async {
                simple_value(&direct, &gone).await == "0"
            })
            .await,
            "backend {pid} still there"
        );
        client
            .batch_execute("BEGIN; SELECT name FROM users WHERE id = 1; COMMIT")
            .await
            .expect("the transaction after the backend ended runs whole");
        let next = backend_pid(&client).await;
        assert_ne!(next, pid, "round {round}: the ended backend was lent again");
    }
    let pools = proxy.state.pools.all();
    let pool = pools.iter().find(|p| p.user == "scram_user").unwrap();
    let closed = pool
        .stats
        .servers_closed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(closed >= 3, "{closed} connections closed, 3 backends ended");
}

/// The pools' maintenance runs every second without an event loop timer
/// (a thread of its own ticks it): `min_idle` connections are opened once
/// a client logged in, and idle ones past `idle_timeout_ms` are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_keeps_min_idle_and_closes_idle_connections() {
    use std::sync::atomic::Ordering::Relaxed;
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 3, min_idle: 2").await;
    let client = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .expect("login");
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    let pool = |proxy: &ProxyHandle| {
        let pools = proxy.state.pools.all();
        pools.into_iter().find(|p| p.user == "scram_user").unwrap()
    };
    let kept = pool(&proxy);
    assert!(
        wait_until(Duration::from_secs(10), || async { kept.idle_count() >= 2 }).await,
        "min_idle 2: {} idle",
        kept.idle_count()
    );

    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 2, idle_timeout_ms: 300").await;
    let client = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .expect("login");
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    let timed_out = pool(&proxy);
    // Not asserted here that the connection is idle yet: it goes back to
    // the pool after the client has its answer, and a loaded machine may
    // let the 300 ms pass before the next look. A closed connection and
    // none idle is the point.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            timed_out.idle_count() == 0
        })
        .await,
        "idle_timeout_ms 300: {} still idle",
        timed_out.idle_count()
    );
    assert!(timed_out.stats.servers_closed.load(Relaxed) >= 1);
    // The client goes on with a new connection.
    assert_eq!(simple_value(&client, "SELECT 2").await, "2");
}
