//! Server errors pass through with their SQLSTATE and with the error
//! position moved back to the client's own text; statements sqlparser
//! cannot read follow the configured policy.

use std::sync::atomic::Ordering;

use heal7_proxy::metrics::StatementOutcome;

use tokio_postgres::error::ErrorPosition;

use crate::harness::{simple_rows, simple_value, sqlstate, start_proxy, try_simple_rows};

/// 1-based character position of `needle` in `sql`, as Postgres reports it.
fn char_position(sql: &str, needle: &str) -> u32 {
    let byte = sql.find(needle).expect("needle in sql");
    sql[..byte].chars().count() as u32 + 1
}

fn position(e: &tokio_postgres::Error) -> Option<u32> {
    match e.as_db_error()?.position()? {
        ErrorPosition::Original(p) => Some(*p),
        ErrorPosition::Internal { .. } => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_keep_their_sqlstate() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let e = try_simple_rows(&c, "SELECT * FROM no_such_table")
        .await
        .expect_err("missing table");
    assert_eq!(sqlstate(&e), "42P01");

    let e = c
        .execute("INSERT INTO users (id, name) VALUES (1, 'duplicate')", &[])
        .await
        .expect_err("duplicate key");
    assert_eq!(sqlstate(&e), "23505");
    let db = e.as_db_error().unwrap();
    // The violated constraint is the one of the mapped table.
    assert_eq!(db.schema(), Some("shared_common"));
    assert_eq!(db.table(), Some("users"));

    let e = c
        .query("SELECT 1 / $1::int FROM users", &[&0i32])
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&e), "22012");
    // The session survives all of that.
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_position_points_into_the_clients_text() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    for sql in [
        "SELECT * FROM users WHERE nosuchcol = 1",
        // Before any insertion: unchanged.
        "SELECT nosuchcol FROM users",
        // Two insertions before the error, and multi-byte text before it.
        "SELECT '사용자 목록' AS k, a.filename FROM users JOIN attachments a ON a.user_id = users.id WHERE nosuchcol = 1",
        // The position is relative to the whole simple Query string.
        "SELECT name FROM users WHERE id = 1; SELECT * FROM dream_categories, users WHERE nosuchcol = 1",
    ] {
        let e = try_simple_rows(&c, sql)
            .await
            .expect_err("undefined column");
        assert_eq!(sqlstate(&e), "42703", "{sql}");
        assert_eq!(
            position(&e),
            Some(char_position(sql, "nosuchcol")),
            "simple query: {sql}"
        );
    }
    for sql in [
        "SELECT name FROM users WHERE nosuchcol = $1",
        "SELECT '꿈 해몽' AS k, body FROM dream_interpretations JOIN dream_categories c ON c.id = category_id WHERE nosuchcol = $1",
    ] {
        let e = c.prepare(sql).await.expect_err("undefined column");
        assert_eq!(sqlstate(&e), "42703");
        assert_eq!(
            position(&e),
            Some(char_position(sql, "nosuchcol")),
            "extended protocol (Parse): {sql}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_statements_use_the_token_fallback_by_default() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let rows = simple_rows(&c, "TABLE users").await;
    let mut names: Vec<String> = rows.into_iter().map(|r| r[1].clone().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["fresh-alice", "fresh-bob", "김민수"]);
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1 FOR NO KEY UPDATE").await,
        "fresh-alice"
    );
    let row = c
        .query_one(
            "SELECT name FROM users WHERE id = $1 FOR NO KEY UPDATE",
            &[&2i32],
        )
        .await
        .expect("extended protocol fallback");
    assert_eq!(row.get::<_, String>(0), "fresh-bob");
    c.batch_execute("VACUUM ANALYZE users")
        .await
        .expect("vacuum");
    assert!(
        proxy
            .state
            .metrics
            .statements(StatementOutcome::FallbackTokens)
            .load(Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_policy_answers_0a000_and_keeps_the_session_usable() {
    let proxy = start_proxy("reject").await;
    let c = proxy.connect("heal7").await;
    // What PostgreSQL's grammar parses is qualified exactly, whatever the
    // policy; the policy only decides for what it rejects too.
    assert_eq!(simple_rows(&c, "TABLE users").await.len(), 3);
    for sql in [
        "TABLE users WHERE id = 1",
        "VACUUM ANALYZE users users",
        "SELECT name FROM users WHERE id = 1 FOR NO KEY UPDAT",
        // Parses, but `users` (constraint and table) cannot be placed exactly.
        "COMMENT ON CONSTRAINT users ON users IS 'x'",
    ] {
        let e = try_simple_rows(&c, sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "0A000", "{sql}");
        assert_eq!(
            simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
            "fresh-alice",
            "session usable after rejecting {sql}"
        );
    }
    // Extended protocol: the rejected Parse must not wedge the session.
    let e = c
        .query(
            "SELECT name FROM users WHERE id = $1 FOR NO KEY UPDAT",
            &[&1i32],
        )
        .await
        .expect_err("rejected parse");
    assert_eq!(sqlstate(&e), "0A000");
    let row = c
        .query_one("SELECT name FROM users WHERE id = $1", &[&2i32])
        .await
        .expect("extended protocol usable after a rejection");
    assert_eq!(row.get::<_, String>(0), "fresh-bob");
    // A statement that does not parse but names no mapped table is forwarded.
    assert_eq!(
        simple_rows(&c, "TABLE \"Users\"").await,
        vec![vec![Some("1".into()), Some("quoted-Users".into())]]
    );
    assert!(
        proxy
            .state
            .metrics
            .statements(StatementOutcome::Rejected)
            .load(Ordering::Relaxed)
            >= 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_policy_forwards_unparsable_statements_unchanged() {
    let proxy = start_proxy("passthrough").await;
    let c = proxy.connect("heal7").await;
    // A syntax error for PostgreSQL too is forwarded as written: the
    // server's own error comes back, not the proxy's 0A000.
    let e = try_simple_rows(&c, "SELECT name FROM users WHERE")
        .await
        .expect_err("syntax error");
    assert_eq!(sqlstate(&e), "42601");
    // What PostgreSQL's grammar parses is qualified exactly under every
    // policy: the fresh rows.
    let rows = simple_rows(&c, "TABLE users").await;
    let mut names: Vec<String> = rows.into_iter().map(|r| r[1].clone().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["fresh-alice", "fresh-bob", "김민수"]);
    // Parsable statements are still rewritten.
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    assert!(
        proxy
            .state
            .metrics
            .statements(StatementOutcome::PassthroughUnparsed)
            .load(Ordering::Relaxed)
            >= 1
    );
}

/// Postgres aborts a transaction on any error: later statements fail with
/// 25P02 and COMMIT rolls back. A rejection answered by the proxy alone
/// would leave the server's transaction open and let COMMIT keep the writes
/// made before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_statement_inside_a_transaction_aborts_it_like_a_server_error() {
    let pg = crate::harness::pg().await;
    let proxy = start_proxy("reject").await;
    let c = proxy.connect("heal7").await;
    c.batch_execute("BEGIN").await.expect("begin");
    c.batch_execute(
        "INSERT INTO kasi_cache (key, payload) VALUES ('reject-in-tx', 'must not commit')",
    )
    .await
    .expect("insert");
    let e = try_simple_rows(&c, "TABLE users WHERE id = 1")
        .await
        .expect_err("rejected");
    assert_eq!(sqlstate(&e), "0A000");
    let e = try_simple_rows(&c, "SELECT 1")
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("COMMIT")
        .await
        .expect("commit (rolls back)");
    let direct = pg.direct("heal7").await;
    let rows = simple_rows(
        &direct,
        "SELECT key FROM saju_service.kasi_cache WHERE key = 'reject-in-tx' \
         UNION ALL SELECT key FROM public.kasi_cache WHERE key = 'reject-in-tx'",
    )
    .await;
    assert!(
        rows.is_empty(),
        "the write before the rejection was committed"
    );
    assert_eq!(simple_value(&c, "SELECT 1").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_parse_in_a_pipeline_answers_in_order() {
    let proxy = start_proxy("reject").await;
    let c = proxy.connect("heal7").await;
    let ok1 = c.query_one("SELECT name FROM users WHERE id = $1", &[&1i32]);
    let bad = c.query(
        "SELECT name FROM users WHERE id = $1 FOR NO KEY UPDAT",
        &[&1i32],
    );
    let ok2 = c.query_one("SELECT chart FROM saju_charts WHERE id = $1", &[&2i32]);
    let ok3 = c.query_one("SELECT name FROM users WHERE id = $1", &[&2i32]);
    let (ok1, bad, ok2, ok3) = tokio::join!(ok1, bad, ok2, ok3);
    assert_eq!(ok1.expect("first").get::<_, String>(0), "fresh-alice");
    assert_eq!(sqlstate(&bad.expect_err("rejected")), "0A000");
    assert_eq!(ok2.expect("third").get::<_, String>(0), "fresh-chart 을축");
    assert_eq!(ok3.expect("fourth").get::<_, String>(0), "fresh-bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_comment_only_queries_pass_through() {
    let proxy = start_proxy("reject").await;
    let c = proxy.connect("heal7").await;
    for sql in [
        "",
        "   ",
        "-- users only in a comment",
        "/* FROM users */",
        ";",
    ] {
        let rows = try_simple_rows(&c, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql:?}: {e:?}"));
        assert!(rows.is_empty(), "{sql:?}");
    }
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
}
