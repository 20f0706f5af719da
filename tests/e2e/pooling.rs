//! Pooled databases (`pool.mode: session`): the proxy authenticates clients
//! itself (auth_query as an auth user, SCRAM and md5 pass-through), reuses
//! server connections between clients of one (database, user), resets them
//! in between, applies each client's startup parameters, keeps cancel
//! working, and bounds the wait for a connection per pool.

use std::time::Duration;

use crate::harness::{
    ProxyHandle, SCHEMAS_YAML, connect, pg, simple_value, sqlstate, start_proxy_yaml,
};

const AUTH_QUERY: &str = "SELECT usename, passwd FROM public.heal7_proxy_lookup($1)";

/// A proxy whose `heal7` entry pools with `pool` (YAML flow-map body).
pub async fn pooled_proxy(pool: &str) -> (ProxyHandle, tempfile::TempDir) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("auth-password");
    std::fs::write(&password, "auth-secret\n").unwrap();
    let yaml = format!(
        "proxy:\n  listen: 127.0.0.1:0\n\
         databases:\n  heal7:\n    host: {host}\n    port: {port}\n    database: heal7\n\
         \x20   pool: {{{pool}, auth_user: heal7_auth, auth_password_file: {password}, auth_query: \"{AUTH_QUERY}\"}}\n{SCHEMAS_YAML}",
        host = pg.host,
        port = pg.port,
        password = password.display(),
    );
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
