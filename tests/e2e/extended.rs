//! Extended-protocol shapes beyond a plain prepare/execute: unnamed
//! statements, portals fetched in chunks, pipelined requests, and frames
//! large enough to span many socket reads.

use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio_postgres::types::Type;

use crate::harness::{simple_value, sqlstate, start_proxy, try_simple_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statement_with_explicit_types() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    // query_typed sends Parse with the unnamed statement.
    let rows = c
        .query_typed(
            "SELECT name FROM users WHERE id = $1",
            &[(&2i32, Type::INT4)],
        )
        .await
        .expect("unnamed statement");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "fresh-bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_is_fetched_in_chunks() {
    let proxy = start_proxy("tokens").await;
    let mut c = proxy.connect("heal7").await;
    let tx = c.transaction().await.expect("begin");
    let stmt = tx
        .prepare("SELECT name FROM users ORDER BY id")
        .await
        .expect("prepare");
    let portal = tx.bind(&stmt, &[]).await.expect("bind portal");
    let mut names = Vec::new();
    for _ in 0..4 {
        let rows = tx.query_portal(&portal, 1).await.expect("execute portal");
        assert!(rows.len() <= 1);
        names.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    assert_eq!(names, ["fresh-alice", "fresh-bob", "김민수"]);
    tx.commit().await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_with_an_error_in_the_middle() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    // tokio-postgres pipelines concurrent requests on one connection: the
    // proxy sees several Parse/Bind/Execute/Sync groups back to back.
    let ok1 = c.query_one("SELECT name FROM users WHERE id = $1", &[&1i32]);
    let bad = c.query("SELECT nosuchcol FROM users WHERE id = $1", &[&1i32]);
    let ok2 = c.query_one("SELECT chart FROM saju_charts WHERE id = $1", &[&2i32]);
    let ok3 = c.query_one("SELECT name FROM dream_categories WHERE id = $1", &[&1i32]);
    let (ok1, bad, ok2, ok3) = tokio::join!(ok1, bad, ok2, ok3);
    assert_eq!(ok1.expect("first").get::<_, String>(0), "fresh-alice");
    assert_eq!(sqlstate(&bad.expect_err("undefined column")), "42703");
    assert_eq!(ok2.expect("third").get::<_, String>(0), "fresh-chart 을축");
    assert_eq!(ok3.expect("fourth").get::<_, String>(0), "fresh-꿈 동물");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_statements_parameters_and_results_cross_intact() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    // A 300 KB simple query that must be rewritten.
    let filler = "가나다".repeat(35_000);
    let sql = format!(
        "SELECT name || length('{filler}')::text FROM users WHERE id = 1 AND '{filler}' <> ''"
    );
    assert_eq!(
        simple_value(&c, &sql).await,
        format!("fresh-alice{}", filler.chars().count())
    );
    // A 2 MB parameter.
    let big = "x".repeat(2 << 20);
    let row = c
        .query_one(
            "SELECT length($1::text), (SELECT name FROM users WHERE id = 2)",
            &[&big],
        )
        .await
        .expect("big parameter");
    assert_eq!(row.get::<_, i32>(0), 2 << 20);
    assert_eq!(row.get::<_, String>(1), "fresh-bob");
    // A multi-megabyte result, via COPY OUT and via rows.
    let chunks: Vec<Bytes> = c
        .copy_out(
            "COPY (SELECT g, repeat('데이터', 20) FROM generate_series(1, 50000) g) TO STDOUT",
        )
        .await
        .expect("copy out")
        .try_collect()
        .await
        .expect("copy data");
    let text = String::from_utf8(chunks.concat()).expect("utf-8");
    assert_eq!(text.lines().count(), 50_000);
    assert!(text.ends_with(&format!("50000\t{}\n", "데이터".repeat(20))));
    let rows = try_simple_rows(&c, "SELECT g FROM generate_series(1, 100000) g")
        .await
        .expect("many rows");
    assert_eq!(rows.len(), 100_000);
    assert_eq!(rows[99_999][0].as_deref(), Some("100000"));
}
