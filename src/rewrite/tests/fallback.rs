//! Golden tests: statements sqlparser 0.64 cannot parse, qualified by the
//! exact fallback (PostgreSQL's grammar via libpg_query); each parse-error
//! policy (which now only decides for syntax errors PostgreSQL rejects
//! too); names the AST walk does not reach; and several statements in one
//! string. The tables are in `data/<test name>.golden`.

use super::{check_data, test_map};
use crate::rewrite::Outcome::*;
use crate::rewrite::*;

#[test]
fn known_unparsable_statements_by_the_exact_parser() {
    assert!(check_data!("known_unparsable_statements_by_the_exact_parser") > 0);
}

#[test]
fn names_the_walk_does_not_reach() {
    assert!(check_data!("names_the_walk_does_not_reach") > 0);
}

#[test]
fn reject_policy() {
    assert!(check_data!("reject_policy") > 0);
    let r = rewrite_sql(
        "SELECT 1; VACUUM ANALYZE Users WHERE",
        &test_map(),
        OnParseError::Reject,
    );
    assert_eq!(r.outcome, Rejected);
    assert_eq!(r.rejected_table.as_deref(), Some("users"));
    assert!(r.edits.is_empty());
    assert!(r.parse_error.is_some());
    let r = rewrite_sql(
        "SELECT * FROM users FOR NO KEY UPDATE",
        &test_map(),
        OnParseError::Reject,
    );
    assert_eq!(r.outcome, FallbackTokens);
    assert!(
        r.parse_error.unwrap().contains("NO"),
        "the parser's message is kept"
    );
}

#[test]
fn passthrough_policy() {
    assert!(check_data!("passthrough_policy") > 0);
    let r = rewrite_sql("SELEC * FROM users", &test_map(), OnParseError::Passthrough);
    assert!(r.edits.is_empty() && r.rejected_table.is_none() && r.parse_error.is_some());
}

#[test]
fn several_statements() {
    assert!(check_data!("several_statements") > 0);
}

/// Known forms sqlparser cannot read: PostgreSQL's grammar reads them, so
/// comma lists, subqueries and CTEs are handled as in a parsed statement.
#[test]
fn known_forms_sqlparser_trips_on() {
    assert!(check_data!("known_forms_sqlparser_trips_on") > 0);
}

/// Statements sqlparser cannot parse whose table follows no FROM-like
/// keyword: PostgreSQL's grammar (and its scanner for OWNED BY, whose
/// name has no location in the tree) places it.
#[test]
fn cluster_and_owned_by_are_qualified_exactly() {
    assert!(check_data!("cluster_and_owned_by_are_qualified_exactly") > 0);
}

/// What the session facts work added to the exact path: `public.`
/// spellings, temporary creations and objects created without a schema.
#[test]
fn exact_parser_requalifies_public_reports_temps_and_places_creations() {
    let map = test_map()
        .with_routines_and_types(
            [("shared_common", "user_count")],
            [("shared_common", "mood")],
        )
        .with_create_schema(Some("public"));
    for (sql, want) in [
        (
            "INSERT INTO public.users (name) SELECT 'x' WHERE 1 BETWEEN SYMMETRIC 2 AND 0",
            "INSERT INTO shared_common.users (name) SELECT 'x' WHERE 1 BETWEEN SYMMETRIC 2 AND 0",
        ),
        (
            "SELECT * FROM \"public\" . users WHERE 1 BETWEEN SYMMETRIC 2 AND 0",
            "SELECT * FROM shared_common.users WHERE 1 BETWEEN SYMMETRIC 2 AND 0",
        ),
        (
            "CREATE PROCEDURE bump(uid int) LANGUAGE sql AS $$ UPDATE users SET x = 1 $$",
            "CREATE PROCEDURE public.bump(uid int) LANGUAGE sql AS $$ UPDATE users SET x = 1 $$",
        ),
        (
            "CREATE OR REPLACE PROCEDURE user_count() LANGUAGE sql AS $$ SELECT 1 $$",
            "CREATE OR REPLACE PROCEDURE shared_common.user_count() LANGUAGE sql AS $$ SELECT 1 $$",
        ),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS SELECT * FROM users WITH NO DATA",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS public.mv AS SELECT * FROM shared_common.users WITH NO DATA",
        ),
        (
            "CREATE RECURSIVE VIEW v (n) AS SELECT 1",
            "CREATE RECURSIVE VIEW public.v (n) AS SELECT 1",
        ),
        (
            "CREATE STATISTICS st ON a, b FROM t",
            "CREATE STATISTICS public.st ON a, b FROM t",
        ),
        (
            "CREATE CONVERSION cv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
            "CREATE CONVERSION public.cv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
        ),
        (
            "CREATE TEMP TABLE users AS SELECT 1 BETWEEN SYMMETRIC 0 AND 2",
            "CREATE TEMP TABLE users AS SELECT 1 BETWEEN SYMMETRIC 0 AND 2",
        ),
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(r.apply(sql), want, "{sql}: {:?}", r.parse_error);
    }
    let r = rewrite_sql(
        "CREATE TEMP TABLE users AS SELECT 1 BETWEEN SYMMETRIC 0 AND 2",
        &map,
        OnParseError::Tokens,
    );
    assert_eq!(r.names[0].decision, Decision::TempCreated);
}

#[test]
fn every_fallback_says_why() {
    let map = test_map();
    for (sql, cause) in [
        (
            "SELECT * FROM users WHERE id BETWEEN SYMMETRIC 1 AND 2",
            Some(FallbackCause::SqlparserSyntax),
        ),
        ("SELECT * FROM users", None),
        ("SELECT 1 BETWEEN SYMMETRIC 1 AND 2", None),
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(r.fallback_cause, cause, "{sql}: {:?}", r.outcome);
    }
}

/// Found by PostgreSQL's regression suite through a proxy whose
/// search_path starts with another schema than the create schema.
#[test]
fn creations_the_regression_suite_makes() {
    let map = test_map().with_create_schema(Some("public"));
    for (sql, want) in [
        // The created name's first occurrence, though the table shares it.
        (
            "CREATE STATISTICS stxdinh ON a, b FROM stxdinh",
            "CREATE STATISTICS public.stxdinh ON a, b FROM stxdinh",
        ),
        (
            "CREATE FUNCTION leakproof(int) RETURNS bool LANGUAGE sql LEAKPROOF AS 'select true'",
            "CREATE FUNCTION public.leakproof(int) RETURNS bool LANGUAGE sql LEAKPROOF AS 'select true'",
        ),
        // An operator is a symbol: left to the search_path, not refused.
        (
            "CREATE OPERATOR === (LEFTARG = boolean, RIGHTARG = boolean, PROCEDURE = booleq)",
            "CREATE OPERATOR === (LEFTARG = boolean, RIGHTARG = boolean, PROCEDURE = booleq)",
        ),
        // CREATE SCHEMA s CREATE ...: the elements are created in s.
        (
            "CREATE SCHEMA s CREATE TABLE t (id int) CREATE VIEW v AS SELECT * FROM t",
            "CREATE SCHEMA s CREATE TABLE t (id int) CREATE VIEW v AS SELECT * FROM t",
        ),
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_ne!(r.outcome, Outcome::Rejected, "{sql}: {:?}", r.parse_error);
        assert_eq!(r.apply(sql), want, "{sql}");
    }
}

/// libpg_query stops at a stack depth far below the server's (whose
/// max_stack_depth is 2 MB by default): a statement that deep is valid for
/// the server, so forwarding it unchanged would read the stale copy. It is
/// refused instead; bison's own limit is the server's too.
#[test]
fn too_deep_for_the_exact_parser_is_refused_not_forwarded() {
    let map = test_map();
    let sql = format!(
        "SELECT {}1{} FROM users WHERE 1 BETWEEN SYMMETRIC 0 AND 2",
        "abs(".repeat(1_000),
        ")".repeat(1_000)
    );
    for policy in [OnParseError::Tokens, OnParseError::Reject] {
        let r = rewrite_sql(&sql, &map, policy);
        assert_eq!(r.outcome, Outcome::Rejected, "{:?}", r.parse_error);
    }
    let r = rewrite_sql(&sql, &map, OnParseError::Passthrough);
    assert_eq!(r.outcome, Outcome::PassthroughUnparsed);
}

/// A statement only the exact parser can read, past its size bound, is
/// refused rather than held in memory many times over.
#[test]
fn a_huge_statement_for_the_exact_parser_is_refused() {
    let map = test_map();
    let sql = format!(
        "SELECT * FROM users WHERE id BETWEEN SYMMETRIC 0 AND 2 AND name IN ({}'x')",
        "'x', ".repeat(300_000)
    );
    let r = rewrite_sql(&sql, &map, OnParseError::Tokens);
    assert_eq!(r.outcome, Outcome::Rejected);
    assert!(
        r.parse_error
            .unwrap()
            .contains("larger than the exact parser takes")
    );
}
