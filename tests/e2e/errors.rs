//! Server errors pass through with their SQLSTATE and with the error
//! position moved back to the client's own text; statements sqlparser
//! cannot read follow the configured policy.

use std::sync::atomic::Ordering;

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
    let sql = "SELECT name FROM users WHERE nosuchcol = $1";
    let e = c.prepare(sql).await.expect_err("undefined column");
    assert_eq!(sqlstate(&e), "42703");
    assert_eq!(
        position(&e),
        Some(char_position(sql, "nosuchcol")),
        "extended protocol (Parse)"
    );
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
            .statements_fallback_tokens
            .load(Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_policy_answers_0a000_and_keeps_the_session_usable() {
    let proxy = start_proxy("reject").await;
    let c = proxy.connect("heal7").await;
    for sql in [
        "TABLE users",
        "VACUUM ANALYZE users",
        "SELECT name FROM users WHERE id = 1 FOR NO KEY UPDATE",
        "CREATE TEMP TABLE t_like (LIKE users INCLUDING ALL)",
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
            "SELECT name FROM users WHERE id = $1 FOR NO KEY UPDATE",
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
            .statements_rejected
            .load(Ordering::Relaxed)
            >= 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_policy_forwards_unparsable_statements_unchanged() {
    let proxy = start_proxy("passthrough").await;
    let c = proxy.connect("heal7").await;
    // Forwarded as written: the server resolves the bare name by search_path
    // and reads the stale copy, which is what passthrough means.
    let rows = simple_rows(&c, "TABLE users").await;
    let mut names: Vec<String> = rows.into_iter().map(|r| r[1].clone().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["STALE-alice", "STALE-bob", "김민수"]);
    // Parsable statements are still rewritten.
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    assert!(
        proxy
            .state
            .metrics
            .statements_passthrough_unparsed
            .load(Ordering::Relaxed)
            >= 1
    );
}
