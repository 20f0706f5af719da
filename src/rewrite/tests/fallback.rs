//! Golden tests: statements sqlparser 0.64 cannot parse, qualified by the
//! exact fallback (PostgreSQL's grammar via libpg_query); each parse-error
//! policy (which now only decides for syntax errors PostgreSQL rejects
//! too); names the AST walk does not reach; and several statements in one
//! string.

use super::{check, check_with, test_map};
use crate::rewrite::Outcome::*;
use crate::rewrite::*;

#[test]
fn known_unparsable_statements_by_the_exact_parser() {
    check(&[
        (
            "TABLE users does not parse in sqlparser: qualified by PostgreSQL's grammar",
            "TABLE users",
            "TABLE shared_common.users",
            FallbackTokens,
        ),
        (
            "FOR NO KEY UPDATE does not parse in sqlparser: the FROM table is qualified",
            "SELECT * FROM users FOR NO KEY UPDATE",
            "SELECT * FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "FOR KEY SHARE does not parse in sqlparser: both joined tables are qualified",
            "SELECT * FROM users u JOIN attachments a ON true FOR KEY SHARE",
            "SELECT * FROM shared_common.users u JOIN shared_common.attachments a ON true FOR KEY SHARE",
            FallbackTokens,
        ),
        (
            "VACUUM ANALYZE stops sqlparser before its table: qualified exactly",
            "VACUUM ANALYZE users",
            "VACUUM ANALYZE shared_common.users",
            FallbackTokens,
        ),
        (
            "VACUUM with options and a table list",
            "VACUUM (VERBOSE, ANALYZE) users, attachments (id)",
            "VACUUM (VERBOSE, ANALYZE) shared_common.users, shared_common.attachments (id)",
            FallbackTokens,
        ),
        (
            "LIKE ... INCLUDING ALL does not parse in sqlparser: the LIKE source is qualified",
            "CREATE TABLE t (LIKE users INCLUDING ALL)",
            "CREATE TABLE t (LIKE shared_common.users INCLUDING ALL)",
            FallbackTokens,
        ),
        (
            "DO body is one dollar-quoted token: nothing outside names a table",
            "DO $$ BEGIN PERFORM 1 FROM users; END $$",
            "DO $$ BEGIN PERFORM 1 FROM users; END $$",
            Unchanged,
        ),
        (
            "unparsable statement naming a mapped table only in a comment is forwarded",
            "CLUSTER orders USING idx -- users",
            "CLUSTER orders USING idx -- users",
            Unchanged,
        ),
        (
            "the exact fallback does not touch qualified names",
            "TABLE shared_common.users",
            "TABLE shared_common.users",
            FallbackTokens,
        ),
        (
            "a function in FROM is no table",
            "SELECT * FROM users(1) FOR NO KEY UPDATE",
            "SELECT * FROM users(1) FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "the exact fallback does not touch a column qualifier",
            "SELECT users.id FROM users FOR NO KEY UPDATE",
            "SELECT users.id FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "the exact fallback leaves comments and literals alone",
            "SELECT '사주 FROM users' /* FROM users */ FROM users FOR NO KEY UPDATE",
            "SELECT '사주 FROM users' /* FROM users */ FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "the exact fallback quotes the schema",
            "TABLE old_table",
            "TABLE \"Legacy Schema\".old_table",
            FallbackTokens,
        ),
        (
            "a quoted name matches exactly",
            "TABLE \"Users\"",
            "TABLE \"Users\"",
            Unchanged,
        ),
        (
            "unterminated literal does not tokenize: forwarded",
            "SELECT 'abc FROM users",
            "SELECT 'abc FROM users",
            PassthroughUnparsed,
        ),
    ]);
}

#[test]
fn names_the_walk_does_not_reach() {
    check(&[
        (
            "SHOW CREATE TABLE parses in sqlparser only: PostgreSQL rejects it, forwarded as is",
            "SHOW CREATE TABLE users",
            "SHOW CREATE TABLE users",
            PassthroughUnparsed,
        ),
        (
            "IS DISTINCT FROM a column named like a table is no table",
            "SELECT x IS DISTINCT FROM users FROM t",
            "SELECT x IS DISTINCT FROM users FROM t",
            Unchanged,
        ),
        (
            "EXTRACT FROM a column named like a table is no table",
            "SELECT extract(day FROM kasi_cache) FROM t",
            "SELECT extract(day FROM kasi_cache) FROM t",
            Unchanged,
        ),
        (
            "SUBSTRING FROM a column is no table",
            "SELECT substring(s FROM users) FROM users",
            "SELECT substring(s FROM users) FROM shared_common.users",
            Rewritten,
        ),
    ]);
}

#[test]
fn reject_policy() {
    check_with(
        OnParseError::Reject,
        &[
            (
                "Reject: a statement only PostgreSQL's grammar parses is qualified exactly",
                "TABLE users",
                "TABLE shared_common.users",
                FallbackTokens,
            ),
            (
                "Reject: a syntax error naming a mapped table",
                "SELECT * FROM users WHERE",
                "SELECT * FROM users WHERE",
                Rejected,
            ),
            (
                "Reject: nothing mapped named, forwarded",
                "DO $$ BEGIN PERFORM 1 FROM users; END $$",
                "DO $$ BEGIN PERFORM 1 FROM users; END $$",
                Unchanged,
            ),
            (
                "Reject: one bad statement rejects the whole string",
                "SELECT * FROM users; SELEC * FROM attachments",
                "SELECT * FROM users; SELEC * FROM attachments",
                Rejected,
            ),
            (
                "Reject: parsable statements are rewritten as usual",
                "SELECT * FROM users",
                "SELECT * FROM shared_common.users",
                Rewritten,
            ),
            (
                "Reject: a name outside the walk in a statement PostgreSQL rejects",
                "SHOW CREATE TABLE users",
                "SHOW CREATE TABLE users",
                Rejected,
            ),
            (
                "Reject: text that does not tokenize",
                "SELECT 'abc FROM users",
                "SELECT 'abc FROM users",
                Rejected,
            ),
        ],
    );
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
    check_with(
        OnParseError::Passthrough,
        &[
            (
                "Passthrough: a syntax error is forwarded unchanged",
                "SELECT * FROM users WHERE",
                "SELECT * FROM users WHERE",
                PassthroughUnparsed,
            ),
            (
                "Passthrough: a statement only PostgreSQL's grammar parses is qualified exactly",
                "TABLE users",
                "TABLE shared_common.users",
                FallbackTokens,
            ),
            (
                "Passthrough: the other statements are still rewritten",
                "SELECT * FROM users; SELEC * FROM users",
                "SELECT * FROM shared_common.users; SELEC * FROM users",
                PassthroughUnparsed,
            ),
            (
                "Passthrough: nothing mapped named",
                "DO $$ BEGIN PERFORM 1 FROM users; END $$",
                "DO $$ BEGIN PERFORM 1 FROM users; END $$",
                Unchanged,
            ),
        ],
    );
    let r = rewrite_sql("SELEC * FROM users", &test_map(), OnParseError::Passthrough);
    assert!(r.edits.is_empty() && r.rejected_table.is_none() && r.parse_error.is_some());
}

#[test]
fn several_statements() {
    check(&[
        (
            "each statement is rewritten",
            "SELECT * FROM users; SELECT * FROM attachments;",
            "SELECT * FROM shared_common.users; SELECT * FROM shared_common.attachments;",
            Rewritten,
        ),
        (
            "a CTE of one statement does not shadow in the next",
            "WITH users AS (SELECT 1) SELECT * FROM users; SELECT * FROM users",
            "WITH users AS (SELECT 1) SELECT * FROM users; SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "one unparsable statement does not stop the others",
            "SELECT * FROM users; TABLE attachments; DELETE FROM kasi_cache",
            "SELECT * FROM shared_common.users; TABLE shared_common.attachments; DELETE FROM saju_service.kasi_cache",
            FallbackTokens,
        ),
        (
            "semicolon inside a literal, comment and dollar quote does not split",
            "SELECT ';' FROM users /* ; */; SELECT $$;$$ FROM attachments -- ;\n",
            "SELECT ';' FROM shared_common.users /* ; */; SELECT $$;$$ FROM shared_common.attachments -- ;\n",
            Rewritten,
        ),
        (
            "empty statements between semicolons",
            ";; SELECT * FROM users ;;",
            ";; SELECT * FROM shared_common.users ;;",
            Rewritten,
        ),
        (
            "transaction around statements",
            "BEGIN; UPDATE users SET n = 1; COMMIT;",
            "BEGIN; UPDATE shared_common.users SET n = 1; COMMIT;",
            Rewritten,
        ),
        (
            "BEGIN ATOMIC body is one statement",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 FROM users; SELECT 2; END; SELECT * FROM attachments",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 FROM shared_common.users; SELECT 2; END; SELECT * FROM shared_common.attachments",
            Rewritten,
        ),
        (
            "Korean text across statements",
            "SELECT '첫째' FROM users; SELECT '둘째' FROM attachments",
            "SELECT '첫째' FROM shared_common.users; SELECT '둘째' FROM shared_common.attachments",
            Rewritten,
        ),
        (
            "unchanged statements around a rewritten one",
            "SET x = 1; SELECT * FROM users; SHOW x",
            "SET x = 1; SELECT * FROM shared_common.users; SHOW x",
            Rewritten,
        ),
    ]);
}

/// Known forms sqlparser cannot read: PostgreSQL's grammar reads them, so
/// comma lists, subqueries and CTEs are handled as in a parsed statement.
#[test]
fn known_forms_sqlparser_trips_on() {
    check(&[
        (
            "FOR NO KEY UPDATE: a name after a comma in FROM is qualified too",
            "SELECT * FROM attachments a, users u WHERE a.user_id = u.id FOR NO KEY UPDATE",
            "SELECT * FROM shared_common.attachments a, shared_common.users u WHERE a.user_id = u.id FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "FOR KEY SHARE: names inside a subquery are qualified",
            "SELECT * FROM t WHERE id IN (SELECT user_id FROM kasi_cache) FOR KEY SHARE",
            "SELECT * FROM t WHERE id IN (SELECT user_id FROM saju_service.kasi_cache) FOR KEY SHARE",
            FallbackTokens,
        ),
        (
            "FOR NO KEY UPDATE: a CTE keeps shadowing the table",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM users, attachments FOR NO KEY UPDATE OF attachments",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM users, shared_common.attachments FOR NO KEY UPDATE OF attachments",
            FallbackTokens,
        ),
        (
            "VACUUM with bare options: every table of the list",
            "VACUUM FULL ANALYZE users, kasi_cache",
            "VACUUM FULL ANALYZE shared_common.users, saju_service.kasi_cache",
            FallbackTokens,
        ),
        (
            "LIKE ... INCLUDING / EXCLUDING options are dropped for the parse only",
            "CREATE TABLE t (LIKE users INCLUDING DEFAULTS EXCLUDING INDEXES, note text)",
            "CREATE TABLE t (LIKE shared_common.users INCLUDING DEFAULTS EXCLUDING INDEXES, note text)",
            FallbackTokens,
        ),
        (
            "a literal that looks like the unparsable words is untouched",
            "SELECT 'FOR NO KEY UPDATE users' FROM users FOR NO KEY UPDATE",
            "SELECT 'FOR NO KEY UPDATE users' FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
    ]);
}

/// Statements sqlparser cannot parse whose table follows no FROM-like
/// keyword: PostgreSQL's grammar (and its scanner for OWNED BY, whose
/// name has no location in the tree) places it.
#[test]
fn cluster_and_owned_by_are_qualified_exactly() {
    check(&[
        (
            "CLUSTER table USING index",
            "CLUSTER users USING users_pkey",
            "CLUSTER shared_common.users USING users_pkey",
            FallbackTokens,
        ),
        (
            "CLUSTER VERBOSE table",
            "CLUSTER VERBOSE users",
            "CLUSTER VERBOSE shared_common.users",
            FallbackTokens,
        ),
        (
            "OWNED BY table.column: the table part is qualified",
            "ALTER SEQUENCE users_id_seq OWNED BY users.id",
            "ALTER SEQUENCE users_id_seq OWNED BY shared_common.users.id",
            FallbackTokens,
        ),
        (
            "OWNED BY schema.table.column is already qualified",
            "ALTER SEQUENCE users_id_seq OWNED BY public.users.id",
            "ALTER SEQUENCE users_id_seq OWNED BY public.users.id",
            FallbackTokens,
        ),
    ]);
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
