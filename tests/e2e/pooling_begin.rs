//! Transaction pooling answers a bare BEGIN itself and sends it ahead of
//! the transaction's first request: the client holds no server connection
//! until its transaction has something to run, and what runs is the same
//! transaction it would have been.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use heal7_proxy::protocol;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_postgres::Client;

use crate::harness::{ProxyHandle, connect, pg, simple_value, sqlstate, start_proxy_yaml, unique};
use crate::pooling::{auth_password_dir, pooled_proxy, pooled_yaml, user_config};
use crate::raw_wire::{read_message, startup_packet};

fn begins_deferred(proxy: &ProxyHandle) -> u64 {
    proxy
        .state
        .pools
        .all()
        .iter()
        .find(|p| p.user == "scram_user")
        .map_or(0, |p| p.stats.begins_deferred.load(Ordering::Relaxed))
}

/// A table of its own that scram_user may write, in `public` (unmapped).
async fn writable_table(prefix: &str) -> String {
    let table = unique(prefix);
    pg().await
        .direct("heal7")
        .await
        .batch_execute(&format!(
            "CREATE TABLE public.{table} (n int); GRANT ALL ON public.{table} TO scram_user"
        ))
        .await
        .unwrap();
    table
}

async fn rows(table: &str) -> String {
    simple_value(
        &pg().await.direct("heal7").await,
        &format!("SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM public.{table}"),
    )
    .await
}

/// The statements after a BEGIN run in one transaction: one transaction id.
async fn in_one_transaction(client: &Client) -> bool {
    let first = simple_value(client, "SELECT txid_current()").await;
    first == simple_value(client, "SELECT txid_current()").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_begin_holds_no_server_connection_until_its_transaction_runs() {
    let (proxy, _dir) =
        pooled_proxy("mode: transaction, size: 1, query_wait_timeout_ms: 3000").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let first = connect(&config).await.unwrap();
    let second = connect(&config).await.unwrap();
    first.batch_execute("BEGIN").await.unwrap();
    // SHOW CLIENTS tells it as the server's answer would have.
    let states: Vec<_> = proxy
        .state
        .clients
        .list()
        .iter()
        .map(|c| c.state())
        .collect();
    assert!(
        states.contains(&heal7_proxy::clients::ClientState::InTransaction),
        "{states:?}"
    );
    // The pool's only connection is free: another client's statement runs
    // at once instead of waiting for the first client's COMMIT.
    let ran = tokio::time::timeout(Duration::from_secs(2), second.simple_query("SELECT 1")).await;
    assert!(
        matches!(ran, Ok(Ok(_))),
        "the second client got the connection: {ran:?}"
    );
    assert!(in_one_transaction(&first).await);
    first.batch_execute("COMMIT").await.unwrap();
    assert!(!in_one_transaction(&first).await, "autocommit again");
    assert_eq!(begins_deferred(&proxy), 1);
    let text = heal7_proxy::http::render_metrics(&proxy.state);
    assert!(
        text.contains(
            "heal7_proxy_pool_begins_deferred_total{database=\"heal7\",user=\"scram_user\"} 1"
        ),
        "{text}"
    );
}

/// What a transaction begun by the proxy does is the server's transaction:
/// rolled back, nothing stays; committed, everything does; for every bare
/// form, as a Query or in the extended protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_begun_by_the_proxy_commits_and_rolls_back_as_the_server_does() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 2").await;
    let table = writable_table("e2e_deferred_begin").await;
    let client = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .unwrap();
    let mut n = 0;
    for begin in [
        "BEGIN",
        "begin;",
        "BEGIN WORK",
        "START TRANSACTION",
        "extended",
    ] {
        for end in ["ROLLBACK", "COMMIT"] {
            n += 1;
            if begin == "extended" {
                // Parse, Bind, Describe and Execute of the unnamed
                // statement, then Sync.
                client.query_typed("BEGIN", &[]).await.unwrap();
            } else {
                client.batch_execute(begin).await.unwrap();
            }
            client
                .batch_execute(&format!("INSERT INTO {table} VALUES ({n})"))
                .await
                .unwrap();
            assert!(in_one_transaction(&client).await, "{begin}");
            client.batch_execute(end).await.unwrap();
        }
    }
    assert_eq!(rows(&table).await, "2,4,6,8,10", "only the committed rows");
    assert_eq!(begins_deferred(&proxy), 10);
    // A BEGIN with options goes to the server as it came.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    assert_eq!(
        simple_value(&client, "SHOW transaction_isolation").await,
        "repeatable read"
    );
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(begins_deferred(&proxy), 10);
}

/// BEGIN then COMMIT with nothing between, a second BEGIN (the server's
/// own warning), and an error inside: answered as PostgreSQL answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_failed_transactions_after_a_begin_the_proxy_answered() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let client = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute("ROLLBACK").await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let e = client
        .batch_execute("SELECT 1/0")
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&e), "22012");
    let e = client
        .batch_execute("SELECT 1")
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(sqlstate(&e), "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
}

/// A drain lets a transaction begun by the proxy finish, as any other:
/// the session is closed only after its COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_a_transaction_begun_by_the_proxy_finish() {
    pg().await;
    let dir = auth_password_dir();
    let yaml = pooled_yaml(
        "mode: transaction, size: 1",
        &dir.path().join("auth-password"),
        true,
    )
    .replacen("proxy:\n", "proxy:\n  shutdown_timeout_ms: 20000\n", 1);
    let proxy = start_proxy_yaml(&yaml).await;
    let table = writable_table("e2e_deferred_drain").await;
    let client = connect(&user_config(&proxy, "scram_user", "scram-secret"))
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    proxy.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .batch_execute(&format!("INSERT INTO {table} VALUES (1)"))
        .await
        .expect("the transaction goes on during the drain");
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(rows(&table).await, "1");
    let e = client
        .batch_execute("SELECT 1")
        .await
        .expect_err("closed after the transaction");
    assert!(e.is_closed() || sqlstate(&e) == "57P01", "{e}");
}

/// Why a deferred BEGIN goes without a Sync of its own, shown on the
/// server alone: once PostgreSQL fails a request of the extended protocol,
/// it skips whatever follows, a simple Query included, up to the next
/// Sync. So should the server refuse a BEGIN the proxy already answered,
/// the client's request behind it never runs outside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_nothing_after_a_failed_extended_request_until_a_sync() {
    let pg = pg().await;
    let table = writable_table("e2e_begin_premise").await;
    let mut s = TcpStream::connect((pg.host.as_str(), pg.port))
        .await
        .unwrap();
    s.write_all(&startup_packet(&[
        ("user", pg.superuser.as_bytes()),
        ("database", b"heal7"),
    ]))
    .await
    .unwrap();
    loop {
        match read_message(&mut s).await {
            Some((b'Z', _)) => break,
            Some((b'E', body)) => panic!("login: {}", String::from_utf8_lossy(&body)),
            Some(_) => {}
            None => panic!("closed during login"),
        }
    }
    let mut out = BytesMut::new();
    // Refused at Parse here; a cancel that reaches a bare BEGIN fails it
    // at Execute, with the same skip.
    protocol::encode_parse(&mut out, b"", b"BEGIN ISOLATION LEVEL SOMETIMES", &[0, 0]);
    protocol::encode_bind_text(&mut out, &[]);
    protocol::encode_execute(&mut out);
    protocol::encode_query(
        &mut out,
        format!("INSERT INTO public.{table} VALUES (1)").as_bytes(),
    );
    s.write_all(&out).await.unwrap();
    let (tag, _) = read_message(&mut s).await.expect("an answer");
    assert_eq!(tag, b'E', "the BEGIN's error");
    let quiet = tokio::time::timeout(Duration::from_millis(500), read_message(&mut s)).await;
    assert!(quiet.is_err(), "nothing more before a Sync: {quiet:?}");
    let mut sync = BytesMut::new();
    protocol::encode_sync(&mut sync);
    s.write_all(&sync).await.unwrap();
    assert_eq!(read_message(&mut s).await, Some((b'Z', b"I".to_vec())));
    assert_eq!(rows(&table).await, "", "the INSERT never ran");
}

/// psql prints each command's tag: the ones the proxy answers read as the
/// server's own, every spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_the_servers_own_command_tags() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let pg = pg().await;
    let run = |port: u16| {
        let mut cmd = tokio::process::Command::new(pg.bindir.join("psql"));
        cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U"])
            .arg("scram_user")
            .args(["-d", "heal7", "-p"])
            .arg(port.to_string())
            .env("PGPASSWORD", "scram-secret")
            .env_remove("PGOPTIONS")
            .stdin(std::process::Stdio::null());
        for sql in [
            "START TRANSACTION",
            "COMMIT",
            "BEGIN TRANSACTION",
            "ROLLBACK",
            "begin work;",
            "END",
            "Begin",
            "BEGIN",
            "COMMIT",
        ] {
            cmd.args(["-c", sql]);
        }
        cmd
    };
    let direct = run(pg.port).output().await.unwrap();
    let through = run(proxy.port()).output().await.unwrap();
    assert!(direct.status.success(), "{direct:?}");
    assert_eq!(
        String::from_utf8_lossy(&through.stdout),
        String::from_utf8_lossy(&direct.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&through.stderr),
        String::from_utf8_lossy(&direct.stderr),
        "the second BEGIN's warning, from the server"
    );
    assert_eq!(begins_deferred(&proxy), 4);
}
