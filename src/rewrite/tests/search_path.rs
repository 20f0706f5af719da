//! `current_schema()`, `current_schemas(b)` and `SHOW search_path` answer
//! the search_path the client had before the move, not the route's, until
//! the session sets its own.

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
        (
            "SELECT current_schema()".to_owned(),
            format!("SELECT {SCHEMA}"),
        ),
        (
            "SELECT current_schema".to_owned(),
            format!("SELECT {SCHEMA}"),
        ),
        (
            "select PG_CATALOG.Current_Schema ( ) AS s".to_owned(),
            format!("select {SCHEMA} AS s"),
        ),
        (
            "SELECT count(*) FROM pg_namespace WHERE nspname = current_schema()".to_owned(),
            format!("SELECT count(*) FROM pg_namespace WHERE nspname = {SCHEMA}"),
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
        "SELECT current_schemas(b) FROM users",
        "SELECT current_schemas(false, true) FROM users",
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

/// `current_schemas(false)` on the test map's client path.
const SCHEMAS: &str = "((SELECT COALESCE(pg_catalog.array_agg(s.nspname ORDER BY s.i), \
    '{}'::pg_catalog.name[]) AS current_schemas FROM (SELECT n.nspname, min(p.i) AS i \
    FROM pg_catalog.pg_namespace n JOIN (VALUES (1, CURRENT_USER::text), (2, 'public'::text)) \
    AS p(i, s) ON n.nspname = p.s WHERE pg_catalog.has_schema_privilege(n.oid, 'USAGE') \
    GROUP BY n.nspname) AS s)::pg_catalog.name[])";

#[test]
fn current_schemas_answers_the_client_path_with_or_without_implicit_schemas() {
    let map = map();
    let sql = "SELECT current_schemas(false) FROM users";
    assert_eq!(
        rewrite_sql(sql, &map, OnParseError::Tokens).apply(sql),
        format!("SELECT {SCHEMAS} FROM shared_common.users")
    );
    // With implicit schemas: the session's temporary schema, then
    // pg_catalog, before the path.
    let sql = "SELECT pg_catalog.current_schemas( TRUE )";
    let sent = rewrite_sql(sql, &map, OnParseError::Tokens).apply(sql);
    assert_eq!(
        sent,
        format!(
            "SELECT {}",
            SCHEMAS.replace(
                "GROUP BY n.nspname)",
                "GROUP BY n.nspname UNION ALL SELECT n.nspname, -1 FROM pg_catalog.pg_namespace n \
                 WHERE n.oid = pg_catalog.pg_my_temp_schema() UNION ALL \
                 SELECT 'pg_catalog'::pg_catalog.name, 0)"
            )
        )
    );
    // A path that names pg_catalog puts it where it names it.
    let own = test_map()
        .with_create_schema(Some("public"))
        .with_client_search_path(&["public".into(), "pg_catalog".into()]);
    let sent = rewrite_sql(sql, &own, OnParseError::Tokens).apply(sql);
    assert!(sent.contains("(2, 'pg_catalog'::text)"), "{sent}");
    assert!(!sent.contains("SELECT 'pg_catalog'"), "{sent}");
}

#[test]
fn show_search_path_alone_is_answered_with_the_show_tag() {
    let map = map();
    for sql in [
        "SHOW search_path",
        "show SEARCH_PATH ;",
        "  SHOW \"search_path\"\n",
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(
            r.search_path_shown_at().map(|at| at.len()),
            Some(1),
            "{sql}"
        );
        assert_eq!(
            r.apply(sql).trim_end_matches([' ', ';', '\n']).trim_start(),
            "SELECT '\"$user\", public'::pg_catalog.text AS search_path",
            "{sql}"
        );
    }
    // Several statements: each SHOW is answered, and the session gives the
    // tag to its statement's answer.
    let sql = "SELECT 1; SHOW search_path; ; SELECT 2;SHOW search_path";
    let r = rewrite_sql(sql, &map, OnParseError::Tokens);
    let at = r.search_path_shown_at().expect("shown");
    assert_eq!(
        crate::rewrite::statement_ordinals(sql, &at),
        Some(vec![1, 3])
    );
    assert_eq!(
        r.apply(sql),
        "SELECT 1; SELECT '\"$user\", public'::pg_catalog.text AS search_path; ; SELECT 2;\
         SELECT '\"$user\", public'::pg_catalog.text AS search_path"
    );
    // Another setting, or a session with its own path.
    let sql = "SHOW work_mem";
    assert_eq!(rewrite_sql(sql, &map, OnParseError::Tokens).apply(sql), sql);
    let mut facts = SessionFacts::default();
    let set = "SET search_path = app";
    let mut r = rewrite_sql(set, &map, OnParseError::Tokens);
    facts.apply(&mut r, set);
    let sql = "SHOW search_path";
    let mut r = rewrite_sql(sql, &map, OnParseError::Tokens);
    facts.apply(&mut r, sql);
    assert_eq!(r.apply(sql), sql);
    assert_eq!(r.search_path_shown_at(), None);
    // A schema that is not a plain lower-case name is shown quoted.
    let odd = test_map()
        .with_create_schema(Some("public"))
        .with_client_search_path(&["App".into(), "it's".into()]);
    let sql = "SHOW search_path";
    assert_eq!(
        rewrite_sql(sql, &odd, OnParseError::Tokens).apply(sql),
        "SELECT '\"App\", \"it''s\"'::pg_catalog.text AS search_path"
    );
}

#[test]
fn statements_are_counted_as_the_server_answers_them() {
    use crate::rewrite::statement_ordinals;
    // Empty and comment-only statements get no answer; a rule's action
    // list and a BEGIN ATOMIC body hold semicolons of their own.
    let sql = "; /* c */ ; SELECT 1; CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2); \
               CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END; SHOW x";
    let show = sql.rfind("SHOW").unwrap();
    let rule = sql.find("CREATE RULE").unwrap();
    assert_eq!(
        statement_ordinals(sql, &[0, rule, show]),
        Some(vec![0, 1, 3])
    );
    assert_eq!(statement_ordinals("SELECT 'x", &[0]), None);
}
