//! Everything besides Query and Parse passes through: COPY both ways,
//! LISTEN/NOTIFY, notices, cancel requests, FunctionCall (psql's
//! `\lo_import`), and a client that disconnects mid-query.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::{AsyncMessage, NoTls};

use heal7_proxy::workers::Workers;

use crate::harness::{
    assert_no_sessions_counted, connect, connect_with_messages, pg, proxy_yaml, psql, simple_rows,
    simple_value, sqlstate, start_proxy, start_proxy_on, unique, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_lands_in_the_mapped_schema() {
    let pg = pg().await;
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let sink = c
        .copy_in("COPY attachments (id, user_id, filename) FROM STDIN")
        .await
        .expect("copy in");
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(
        "201\t1\tcopy-a.txt\n202\t2\t복사-b.txt\n".as_bytes(),
    ))
    .await
    .expect("send copy data");
    let n = sink.finish().await.expect("finish copy");
    assert_eq!(n, 2);

    let direct = pg.direct("heal7").await;
    let rows = simple_rows(
        &direct,
        "SELECT filename FROM shared_common.attachments WHERE id BETWEEN 200 AND 299 ORDER BY id",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            vec![Some("copy-a.txt".into())],
            vec![Some("복사-b.txt".into())]
        ]
    );
    let public = simple_rows(
        &direct,
        "SELECT id FROM public.attachments WHERE id BETWEEN 200 AND 299",
    )
    .await;
    assert!(public.is_empty(), "{public:?}");
    // The session is usable after COPY.
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_out_reads_the_mapped_schema() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    for sql in [
        "COPY users (id, name) TO STDOUT",
        "COPY (SELECT id, name FROM users ORDER BY id) TO STDOUT",
    ] {
        let stream = c.copy_out(sql).await.expect("copy out");
        let chunks: Vec<Bytes> = stream.try_collect().await.expect("copy data");
        let text = String::from_utf8(chunks.concat()).expect("utf-8");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            ["1\tfresh-alice", "2\tfresh-bob", "3\t김민수"],
            "{sql}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_between_two_proxied_sessions() {
    let proxy = start_proxy("tokens").await;
    let (listener, mut messages, _task) = connect_with_messages(&proxy.config("heal7"))
        .await
        .expect("listener connects");
    let notifier = proxy.connect("heal7").await;
    let channel = unique("chan");
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .expect("listen");
    notifier
        .batch_execute(&format!("NOTIFY {channel}, 'payload 알림 users'"))
        .await
        .expect("notify");
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match messages.recv().await {
                Some(AsyncMessage::Notification(n)) => return Some(n),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .expect("notification within 10 s")
    .expect("connection open");
    assert_eq!(got.channel(), channel);
    assert_eq!(got.payload(), "payload 알림 users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_pass_through() {
    let proxy = start_proxy("tokens").await;
    let (c, mut messages, _task) = connect_with_messages(&proxy.config("heal7"))
        .await
        .expect("connect");
    c.batch_execute("DO $$BEGIN RAISE NOTICE 'heal7 notice %', 42; END$$")
        .await
        .expect("do block");
    let notice = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match messages.recv().await {
                Some(AsyncMessage::Notice(n)) => return Some(n),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .expect("notice within 10 s")
    .expect("connection open");
    assert_eq!(notice.code().code(), "00000");
    assert_eq!(notice.severity(), "NOTICE");
    assert_eq!(notice.message(), "heal7 notice 42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_running_query() {
    let proxy = start_proxy("tokens").await;
    let app = unique("e2e_cancel");
    let mut cfg = proxy.config("heal7");
    cfg.application_name(&app);
    let c = connect(&cfg).await.expect("connect");
    cancel_a_running_query(c, &app).await;
}

/// Start a long query on `c` (whose application_name is `app`), wait until
/// the server shows it running, cancel it through the proxy and check it
/// ended with 57014.
async fn cancel_a_running_query(c: tokio_postgres::Client, app: &str) {
    let token = c.cancel_token();
    let running = tokio::spawn(async move {
        // Three rows (fresh users) x 5 s: long enough to be caught running.
        let r = c.simple_query("SELECT pg_sleep(5) FROM users").await;
        drop(c);
        r
    });
    let direct = pg().await.direct("heal7").await;
    let q = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' AND state = 'active' AND query LIKE '%pg_sleep%'"
    );
    assert!(
        wait_until(Duration::from_secs(15), || async {
            simple_value(&direct, &q).await == "1"
        })
        .await,
        "the query never showed up as active"
    );
    token.cancel_query(NoTls).await.expect("send cancel");
    let result = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("query ended within 20 s of the cancel")
        .expect("task");
    let e = result.expect_err("query was cancelled");
    assert_eq!(sqlstate(&e), "57014");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_query_closes_its_server_backend() {
    let pg = pg().await;
    let proxy = start_proxy("tokens").await;
    let app = unique("e2e_disconnect");
    let mut cfg = proxy.config("heal7");
    // So the backend notices a closed socket while pg_sleep runs (also set
    // in the harness' postgresql.conf).
    cfg.application_name(&app)
        .options("-c client_connection_check_interval=100ms");
    let (c, _messages, conn_task) = connect_with_messages(&cfg).await.expect("connect");
    let query = tokio::spawn(async move {
        let _ = c.simple_query("SELECT pg_sleep(30)").await;
    });
    let direct = pg.direct("heal7").await;
    let q = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'");
    assert!(
        wait_until(Duration::from_secs(15), || async {
            simple_value(&direct, &q).await == "1"
        })
        .await,
        "the proxied backend never showed up"
    );
    // Drop the client's socket abruptly, mid-query.
    conn_task.abort();
    query.abort();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            simple_value(&direct, &q).await == "0"
        })
        .await,
        "the server backend outlived its client by 15 s (pg_sleep(30) still running)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reads_fresh_rows_and_copies_with_backslash_copy() {
    let pg = pg().await;
    let proxy = start_proxy("tokens").await;
    let (ok, out, err) = psql(
        proxy.port(),
        "heal7",
        &["-c", "SELECT name FROM users ORDER BY id"],
        &[],
    )
    .await;
    assert!(ok, "psql failed: {err}");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "fresh-alice\nfresh-bob\n김민수\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.tsv");
    std::fs::write(&file, "301\t1\tbackslash-copy.txt\n").unwrap();
    let cmd = format!(
        "\\copy attachments (id, user_id, filename) from '{}'",
        file.display()
    );
    let (ok, _, err) = psql(proxy.port(), "heal7", &["-c", &cmd], &[]).await;
    assert!(ok, "psql \\copy failed: {err}");
    let direct = pg.direct("heal7").await;
    assert_eq!(
        simple_value(
            &direct,
            "SELECT filename FROM shared_common.attachments WHERE id = 301"
        )
        .await,
        "backslash-copy.txt"
    );
    assert!(
        simple_rows(&direct, "SELECT 1 FROM public.attachments WHERE id = 301")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lo_import_uses_function_call_through_the_proxy() {
    let pg = pg().await;
    let proxy = start_proxy("tokens").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob.bin");
    let content: Vec<u8> = (0u8..=255).chain("큰 객체".bytes()).collect();
    std::fs::write(&file, &content).unwrap();
    let cmd = format!("\\lo_import '{}'", file.display());
    let (ok, out, err) = psql(proxy.port(), "heal7", &["-c", &cmd], &[]).await;
    assert!(ok, "psql \\lo_import failed: {err}");
    let out = String::from_utf8(out).unwrap();
    let oid: u32 = out
        .trim()
        .strip_prefix("lo_import ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected psql output {out:?}"));
    let direct = pg.direct("heal7").await;
    let row = direct
        .query_one("SELECT lo_get($1)", &[&oid])
        .await
        .expect("read the large object");
    assert_eq!(row.get::<_, Vec<u8>>(0), content);
    direct
        .execute("SELECT lo_unlink($1)", &[&oid])
        .await
        .expect("unlink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_terminate_closes_its_server_backend() {
    let pg = pg().await;
    let proxy = start_proxy("tokens").await;
    let app = unique("e2e_terminate");
    let mut cfg = proxy.config("heal7");
    cfg.application_name(&app);
    let c = connect(&cfg).await.expect("connect");
    let direct = pg.direct("heal7").await;
    let q = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'");
    assert_eq!(simple_value(&direct, &q).await, "1");
    drop(c); // sends Terminate
    assert!(
        wait_until(Duration::from_secs(15), || async {
            simple_value(&direct, &q).await == "0"
        })
        .await,
        "the server backend outlived its client's Terminate by 15 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_and_their_server_backends() {
    let pg = pg().await;
    let proxy = start_proxy("tokens").await;
    let app = unique("e2e_shutdown");
    let mut cfg = proxy.config("heal7");
    cfg.application_name(&app);
    let c = connect(&cfg).await.expect("connect");
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    let direct = pg.direct("heal7").await;
    let q = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'");
    proxy.shutdown.cancel();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            simple_value(&direct, &q).await == "0"
        })
        .await,
        "an idle session's server backend survived the proxy's shutdown by 30 s"
    );
    assert!(c.simple_query("SELECT 1").await.is_err(), "session closed");
    assert!(
        connect(&proxy.config("heal7")).await.is_err(),
        "no new sessions after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_sessions_each_read_fresh_rows() {
    let proxy = start_proxy("tokens").await;
    let mut tasks = Vec::new();
    for i in 0..40i32 {
        let cfg = proxy.config(if i % 2 == 0 { "heal7" } else { "heal7_saju" });
        tasks.push(tokio::spawn(async move {
            let c = connect(&cfg).await.expect("connect");
            for j in 0..10i32 {
                let id = (i + j) % 2 + 1;
                let row = c
                    .query_one("SELECT name FROM users WHERE id = $1", &[&id])
                    .await
                    .expect("query");
                let want = if id == 1 { "fresh-alice" } else { "fresh-bob" };
                assert_eq!(row.get::<_, String>(0), want);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("all sessions finish within 60 s")
            .expect("session task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_worker_loops_and_cancel_across_them() {
    let pg = pg().await;
    let workers = Workers::spawn(&tokio::runtime::Handle::current(), 2).expect("worker threads");
    let proxy = start_proxy_on(&proxy_yaml(pg, "tokens"), workers.clone()).await;
    let app = unique("e2e_workers");
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut cfg = proxy.config("heal7");
        cfg.application_name(format!("{app}_{i}"));
        let c = connect(&cfg).await.expect("connect");
        let row = c
            .query_one("SELECT name FROM users WHERE id = $1", &[&1i32])
            .await
            .expect("query");
        assert_eq!(row.get::<_, String>(0), "fresh-alice");
        clients.push(c);
    }
    // The accepting loop and two workers, two sessions each.
    assert_eq!(workers.sessions(), vec![2, 2, 2]);

    // The second client's session runs on a worker; its cancel request is
    // accepted by the loop with the fewest sessions, the accepting one.
    cancel_a_running_query(clients.remove(1), &format!("{app}_1")).await;

    drop(clients);
    assert_no_sessions_counted(&workers).await;
}
