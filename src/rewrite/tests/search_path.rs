//! `current_schema()` answers the first schema of the search_path the
//! client had before the move, not the route's, until the session sets its
//! own; `current_schemas(b)` stays the server's (tools find the moved
//! objects on the path with it).

use super::test_map;
use crate::rewrite::{Decision, OnParseError, Outcome, SchemaMap, SessionFacts, rewrite_sql};

/// The test map with creations sent to public (the main database's
/// default, where the route's path starts with the mapped schemas) and
/// PostgreSQL's default path as the client's.
fn map() -> SchemaMap {
    test_map()
        .with_create_schema(Some("public"))
        .with_client_search_path(&["$user".into(), "public".into()])
}

const SCHEMA: &str = "(SELECT n.nspname AS current_schema FROM pg_catalog.pg_namespace n \
    JOIN (VALUES (1, CURRENT_USER::text), (2, 'public'::text)) AS p(i, s) ON n.nspname = p.s \
    WHERE pg_catalog.has_schema_privilege(n.oid, 'USAGE') ORDER BY p.i LIMIT 1)";

#[test]
fn every_spelling_of_the_calls_is_answered() {
    let map = map();
    for (sql, expected) in [
        ("SELECT current_schema()".to_owned(), format!("SELECT {SCHEMA}")),
        ("SELECT current_schema".to_owned(), format!("SELECT {SCHEMA}")),
        (
            "select PG_CATALOG.Current_Schema ( ) AS s".to_owned(),
            format!("select {SCHEMA} AS s"),
        ),
        (
            "SELECT count(*) FROM pg_class WHERE relnamespace::regnamespace::text = current_schema()"
                .to_owned(),
            format!(
                "SELECT count(*) FROM pg_class WHERE relnamespace::regnamespace::text = {SCHEMA}"
            ),
        ),
    ] {
        for _ in 0..2 {
            let r = rewrite_sql(&sql, &map, OnParseError::Tokens);
            assert_eq!(r.apply(&sql), expected);
            assert_eq!(r.outcome, Outcome::Rewritten);
        }
    }
    let sql = "SELECT current_schema(), current_schema";
    let r = rewrite_sql(sql, &map, OnParseError::Tokens);
    assert_eq!(r.names.len(), 2);
    assert!(
        r.names
            .iter()
            .all(|n| n.decision == Decision::ClientSearchPathShown)
    );
    assert_eq!(
        Decision::LABELS[r.names[0].decision.index()],
        "client_search_path_shown"
    );
}

#[test]
fn anything_else_is_left_as_written() {
    let map = map();
    for sql in [
        "SELECT \"current_schema\"()",
        "SELECT current_schemas(false), current_schemas(true) FROM users",
        "SELECT current_schema(/* c */)",
        "SELECT other.current_schema()",
        "SELECT current_setting('search_path')",
        "SELECT 'current_schema()'",
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        // Only the table reference changes.
        assert_eq!(
            r.apply(sql),
            sql.replace("FROM users", "FROM shared_common.users")
        );
    }
    // Off: no client path, or no create schema (the route's path starts
    // where creations go, and a session's own SET is not followed).
    let sql = "SELECT current_schema()";
    for map in [
        test_map().with_create_schema(Some("public")),
        test_map().with_client_search_path(&["$user".into(), "public".into()]),
        map.clone().with_client_search_path(&[]),
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(r.outcome, Outcome::NoParseNeeded);
    }
}

#[test]
fn a_session_with_its_own_path_asks_the_server() {
    let map = map();
    let mut facts = SessionFacts::default();
    let sql = "SELECT current_schema()";
    let mut r = rewrite_sql(sql, &map, OnParseError::Tokens);
    facts.apply(&mut r, sql);
    assert_eq!(r.apply(sql), format!("SELECT {SCHEMA}"));

    let set = "SET search_path = app, public";
    let mut r = rewrite_sql(set, &map, OnParseError::Tokens);
    facts.apply(&mut r, set);
    let mut r = rewrite_sql(sql, &map, OnParseError::Tokens);
    facts.apply(&mut r, sql);
    assert_eq!(r.apply(sql), sql);
    assert_eq!(r.outcome, Outcome::Unchanged);

    let reset = "RESET search_path";
    let mut r = rewrite_sql(reset, &map, OnParseError::Tokens);
    facts.apply(&mut r, reset);
    let mut r = rewrite_sql(sql, &map, OnParseError::Tokens);
    facts.apply(&mut r, sql);
    assert_eq!(r.apply(sql), format!("SELECT {SCHEMA}"));
}
