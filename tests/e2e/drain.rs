//! Graceful drain (issue 10, finding 7): after the stop signal every session
//! finishes its transaction and is closed (57P01) at its next
//! ReadyForQuery(idle); only the grace period's end cuts a transaction.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::harness::{ProxyHandle, pg, proxy_yaml, simple_value, start_proxy_yaml, unique};

/// A proxy in front of the test server whose grace period is `grace_ms`.
async fn proxy_with_grace(grace_ms: u64) -> ProxyHandle {
    let pg = pg().await;
    let yaml = proxy_yaml(pg, "tokens").replacen(
        "proxy:\n",
        &format!("proxy:\n  shutdown_timeout_ms: {grace_ms}\n"),
        1,
    );
    start_proxy_yaml(&yaml).await
}

/// A client whose connection task is kept, to see how the connection ended.
async fn connect_watched(
    proxy: &ProxyHandle,
) -> (
    Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, connection) = proxy
        .config("heal7")
        .connect(NoTls)
        .await
        .expect("connect through the proxy");
    (client, tokio::spawn(connection))
}

fn code(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_an_open_transaction_commit_then_says_57p01() {
    let pg = pg().await;
    let table = unique("e2e_drain_commit");
    let direct = pg.direct("heal7").await;
    direct
        .simple_query(&format!("CREATE TABLE {table} (n int)"))
        .await
        .unwrap();
    let proxy = proxy_with_grace(20_000).await;
    let (c, connection) = connect_watched(&proxy).await;
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query(&format!("INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();

    proxy.shutdown.cancel();
    // Idle inside the transaction: not closed while the grace period lasts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.simple_query(&format!("INSERT INTO {table} VALUES (2)"))
        .await
        .expect("a statement inside the open transaction still runs");
    c.simple_query("COMMIT")
        .await
        .expect("the open transaction commits during the drain");
    // Closed at the COMMIT's ReadyForQuery(idle), told why.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the session is closed right after its transaction")
        .unwrap();
    let e = ended.expect_err("the session ends with an error");
    assert_eq!(code(&e).as_deref(), Some("57P01"), "{e}");
    assert_eq!(
        simple_value(&direct, &format!("SELECT count(*) FROM {table}")).await,
        "2"
    );
}

/// A client that runs BEGIN / INSERT / COMMIT back to back is never idle
/// when polled; it must still be closed between two transactions, and only
/// there: the first failing call is a BEGIN, each earlier transaction
/// committed, and the grace period (20 s) has not run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_back_to_back_clients_between_transactions() {
    let pg = pg().await;
    let table = unique("e2e_drain_loop");
    let direct = pg.direct("heal7").await;
    direct
        .simple_query(&format!("CREATE TABLE {table} (client int, n int)"))
        .await
        .unwrap();
    let proxy = proxy_with_grace(20_000).await;
    let mut loops = Vec::new();
    for client in 0..4 {
        let (c, connection) = connect_watched(&proxy).await;
        let table = table.clone();
        loops.push(tokio::spawn(async move {
            let mut committed = 0u32;
            let failed = loop {
                let steps = [
                    "BEGIN".to_owned(),
                    format!("INSERT INTO {table} VALUES ({client}, {committed})"),
                    "COMMIT".to_owned(),
                ];
                let mut failed = None;
                for (step, sql) in steps.iter().enumerate() {
                    if let Err(e) = c.simple_query(sql).await {
                        failed = Some((step, e));
                        break;
                    }
                }
                match failed {
                    Some(f) => break f,
                    None => committed += 1,
                }
            };
            let ended = tokio::time::timeout(Duration::from_secs(5), connection)
                .await
                .expect("the connection ends")
                .unwrap();
            (client, committed, failed, ended)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    proxy.shutdown.cancel();
    for handle in loops {
        let (client, committed, (step, error), ended) =
            tokio::time::timeout(Duration::from_secs(15), handle)
                .await
                .expect("every loop is closed well before the grace period")
                .unwrap();
        assert_eq!(
            step, 0,
            "client {client} was cut inside a transaction (step {step}): {error}"
        );
        // The FATAL reaches the client either as the answer to its next
        // BEGIN or on the connection, when it arrived before the BEGIN left.
        let told = code(&error).or_else(|| ended.as_ref().err().and_then(code));
        assert_eq!(told.as_deref(), Some("57P01"), "client {client}: {error}");
        assert!(committed > 0, "client {client} ran before the drain");
        assert_eq!(
            simple_value(
                &direct,
                &format!("SELECT count(*) FROM {table} WHERE client = {client}")
            )
            .await,
            committed.to_string(),
            "client {client}: every transaction it saw commit is there, no other"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed by the drain, not by the grace period"
    );
}
