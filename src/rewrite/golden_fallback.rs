//! Golden tests: statements sqlparser 0.64 cannot parse (the known cases
//! from the issue, checked against the real parser), each parse-error
//! policy, names the AST walk does not reach, and several statements in one
//! string.

use super::Outcome::*;
use super::golden::{check, check_with, test_map};
use super::*;

#[test]
fn known_unparsable_statements_by_tokens() {
    check(&[
        (
            "TABLE users does not parse: qualified after TABLE",
            "TABLE users",
            "TABLE shared_common.users",
            FallbackTokens,
        ),
        (
            "FOR NO KEY UPDATE does not parse: qualified after FROM",
            "SELECT * FROM users FOR NO KEY UPDATE",
            "SELECT * FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "FOR KEY SHARE does not parse: qualified after FROM",
            "SELECT * FROM users u JOIN attachments a ON true FOR KEY SHARE",
            "SELECT * FROM shared_common.users u JOIN shared_common.attachments a ON true FOR KEY SHARE",
            FallbackTokens,
        ),
        (
            "VACUUM ANALYZE stops parsing before its table: the maintenance rule qualifies it",
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
            "LIKE ... INCLUDING ALL does not parse: LIKE after ( is a table position",
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
            "fallback does not touch qualified names",
            "TABLE shared_common.users",
            "TABLE shared_common.users",
            FallbackTokens,
        ),
        (
            "fallback does not touch a name followed by (",
            "SELECT * FROM users(1) FOR NO KEY UPDATE",
            "SELECT * FROM users(1) FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "fallback does not touch a column qualifier",
            "SELECT users.id FROM users FOR NO KEY UPDATE",
            "SELECT users.id FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "fallback leaves comments and literals alone",
            "SELECT '사주 FROM users' /* FROM users */ FROM users FOR NO KEY UPDATE",
            "SELECT '사주 FROM users' /* FROM users */ FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "fallback quotes the schema",
            "TABLE old_table",
            "TABLE \"Legacy Schema\".old_table",
            FallbackTokens,
        ),
        (
            "fallback matches quoted names exactly",
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
            "SHOW CREATE TABLE parses but the walk does not know it: the cross-check qualifies the name",
            "SHOW CREATE TABLE users",
            "SHOW CREATE TABLE shared_common.users",
            FallbackTokens,
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
                "Reject: unparsable statement naming a mapped table",
                "TABLE users",
                "TABLE users",
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
                "SELECT * FROM users; TABLE attachments",
                "SELECT * FROM users; TABLE attachments",
                Rejected,
            ),
            (
                "Reject: parsable statements are rewritten as usual",
                "SELECT * FROM users",
                "SELECT * FROM shared_common.users",
                Rewritten,
            ),
            (
                "Reject: a name outside the walk rejects",
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
        "SELECT 1; VACUUM ANALYZE Users",
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
                "Passthrough: unparsable statement forwarded unchanged",
                "TABLE users",
                "TABLE users",
                PassthroughUnparsed,
            ),
            (
                "Passthrough: the other statements are still rewritten",
                "SELECT * FROM users; TABLE users",
                "SELECT * FROM shared_common.users; TABLE users",
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
    let r = rewrite_sql("TABLE users", &test_map(), OnParseError::Passthrough);
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

/// Known forms sqlparser cannot read are re-parsed without the words it
/// trips on, so the fallback is as precise as a parsed statement.
#[test]
fn known_forms_reparsed_without_the_words_sqlparser_trips_on() {
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
            "a literal that looks like the masked words is untouched",
            "SELECT 'FOR NO KEY UPDATE users' FROM users FOR NO KEY UPDATE",
            "SELECT 'FOR NO KEY UPDATE users' FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
    ]);
}

/// Statements sqlparser cannot parse whose table follows no FROM-like
/// keyword: the token rule knows where their table stands.
#[test]
fn cluster_and_owned_by_are_qualified_by_tokens() {
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
