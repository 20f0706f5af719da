//! Tests of the API around the golden tables: the per-name report, error
//! positions, identifier quoting, deep nesting and the defensive checks.

use sqlparser::ast::Ident;
use sqlparser::tokenizer::{Location, Span};

use super::test_map;
use crate::rewrite::Outcome::*;
use crate::rewrite::split::TextIndex;
use crate::rewrite::statement::{RECURSION_LIMIT, resolve};
use crate::rewrite::walk::{Creates, Namespace, TableMention};
use crate::rewrite::*;

fn decisions(sql: &str) -> Vec<(String, usize, Decision)> {
    rewrite_sql(sql, &test_map(), OnParseError::Tokens)
        .names
        .into_iter()
        .map(|n| (n.name.to_string(), n.offset, n.decision))
        .collect()
}

fn by_map(schema: &str) -> Decision {
    Decision::QualifiedByMap {
        schema: schema.into(),
    }
}

#[test]
fn names_report_every_reference_in_text_order_with_its_decision() {
    let sql = "WITH c AS (SELECT 1) SELECT * FROM users JOIN archive.attachments ON true JOIN c ON true JOIN orders ON true";
    assert_eq!(
        decisions(sql),
        vec![
            ("users".into(), 35, by_map("shared_common")),
            ("archive.attachments".into(), 46, Decision::AlreadyQualified),
            ("c".into(), sql.find(" c ON").unwrap() + 1, Decision::Cte),
            (
                "orders".into(),
                sql.find("orders").unwrap(),
                Decision::NotInMap
            ),
        ]
    );
}

#[test]
fn names_report_fallback_decisions() {
    assert_eq!(
        decisions("TABLE users"),
        vec![(
            "users".into(),
            6,
            Decision::QualifiedByFallback {
                schema: "shared_common".into()
            }
        )]
    );
}

#[test]
fn name_offset_of_a_quoted_name_is_its_opening_quote() {
    let sql = "SELECT * FROM \"users\"";
    let r = rewrite_sql(sql, &test_map(), OnParseError::Tokens);
    assert_eq!(r.names[0].offset, 14);
    assert_eq!(&*r.names[0].name, "users");
    assert_eq!(
        r.edits,
        vec![Edit {
            offset: 14,
            replaced: 0,
            insert: "shared_common.".into()
        }]
    );
}

#[test]
fn names_across_statements_carry_offsets_in_the_whole_text() {
    let sql = "SELECT '한글' FROM users; DELETE FROM kasi_cache";
    let r = rewrite_sql(sql, &test_map(), OnParseError::Tokens);
    let offsets: Vec<usize> = r.names.iter().map(|n| n.offset).collect();
    assert_eq!(
        offsets,
        vec![sql.find("users").unwrap(), sql.find("kasi_cache").unwrap()]
    );
}

#[test]
fn map_without_tables_never_parses() {
    let r = rewrite_sql(
        "SELECT * FROM users",
        &SchemaMap::default(),
        OnParseError::Tokens,
    );
    assert_eq!(r.outcome, NoParseNeeded);
    assert!(!r.changed());
}

#[test]
fn changed_says_whether_the_text_differs() {
    let map = test_map();
    assert!(rewrite_sql("SELECT * FROM users", &map, OnParseError::Tokens).changed());
    assert!(!rewrite_sql("SELECT * FROM archive.users", &map, OnParseError::Tokens).changed());
}

#[test]
fn original_position_maps_back_through_inserts_with_korean_text() {
    // Korean before the first edit, between the edits and after the last.
    let sql = "SELECT '가나' FROM users, '다' , attachments WHERE x = '라마바'";
    let map = test_map();
    let r = rewrite_sql(sql, &map, OnParseError::Tokens);
    let sent = r.apply(sql);
    let char_pos =
        |text: &str, needle: &str| text[..text.find(needle).unwrap()].chars().count() + 1;
    // Before any edit: unchanged.
    assert_eq!(r.original_position(sql, 1), 1);
    assert_eq!(
        r.original_position(sql, char_pos(&sent, "가나")),
        char_pos(sql, "가나")
    );
    // The table names themselves.
    assert_eq!(
        r.original_position(sql, char_pos(&sent, "users")),
        char_pos(sql, "users")
    );
    assert_eq!(
        r.original_position(sql, char_pos(&sent, "attachments")),
        char_pos(sql, "attachments")
    );
    // Inside an inserted schema: the start of the name it qualifies.
    let inside_insert = char_pos(&sent, "shared_common.users") + 3;
    assert_eq!(
        r.original_position(sql, inside_insert),
        char_pos(sql, "users")
    );
    // Between and after the edits, Korean included.
    assert_eq!(
        r.original_position(sql, char_pos(&sent, "'다'")),
        char_pos(sql, "'다'")
    );
    assert_eq!(
        r.original_position(sql, char_pos(&sent, "라마바")),
        char_pos(sql, "라마바")
    );
    let sent_len = sent.chars().count();
    assert_eq!(r.original_position(sql, sent_len), sql.chars().count());
}

#[test]
fn original_position_with_a_quoted_schema_insert() {
    let sql = "SELECT '한' FROM old_table WHERE '끝' = x";
    let r = rewrite_sql(sql, &test_map(), OnParseError::Tokens);
    let sent = r.apply(sql);
    assert_eq!(
        sent,
        "SELECT '한' FROM \"Legacy Schema\".old_table WHERE '끝' = x"
    );
    let char_pos =
        |text: &str, needle: &str| text[..text.find(needle).unwrap()].chars().count() + 1;
    assert_eq!(
        r.original_position(sql, char_pos(&sent, "'끝'")),
        char_pos(sql, "'끝'")
    );
    assert_eq!(
        r.original_position(sql, char_pos(&sent, "Legacy")),
        char_pos(sql, "old_table")
    );
}

#[test]
fn quote_identifier_quotes_only_when_needed() {
    for (name, expected) in [
        ("shared_common", "shared_common"),
        ("s1", "s1"),
        ("_x", "_x"),
        ("a$b", "a$b"),
        ("Legacy Schema", "\"Legacy Schema\""),
        ("Upper", "\"Upper\""),
        ("1abc", "\"1abc\""),
        ("$abc", "\"$abc\""),
        ("with-dash", "\"with-dash\""),
        ("say\"hi", "\"say\"\"hi\""),
        ("select", "\"select\""),
        ("user", "\"user\""),
        ("table", "\"table\""),
        ("스키마", "\"스키마\""),
        ("", "\"\""),
    ] {
        assert_eq!(quote_identifier(name), expected, "{name}");
    }
}

fn nested_subselects(depth: usize) -> String {
    let mut sql = String::from("SELECT * FROM users");
    for i in 0..depth {
        sql = format!("SELECT * FROM ({sql}) s{i}");
    }
    sql
}

#[test]
fn deeply_nested_subselects_parse_and_are_rewritten() {
    let sql = nested_subselects(200);
    let r = rewrite_sql(&sql, &test_map(), OnParseError::Tokens);
    assert_eq!(r.outcome, Rewritten, "{:?}", r.parse_error);
    assert_eq!(
        r.apply(&sql),
        sql.replace("FROM users", "FROM shared_common.users")
    );
}

#[test]
fn deeply_nested_ctes_keep_their_scopes() {
    // 100 levels of `WITH users AS (<level below>) SELECT * FROM users`.
    // Each main query reads its own CTE; the innermost `FROM users` lies in
    // the body of every level's CTE, none of which sees itself (not
    // RECURSIVE): it is the one real table.
    let mut sql = String::from("SELECT * FROM users");
    for _ in 0..100 {
        sql = format!("WITH users AS ({sql}) SELECT * FROM users");
    }
    let r = rewrite_sql(&sql, &test_map(), OnParseError::Tokens);
    assert_eq!(r.outcome, Rewritten, "{:?}", r.parse_error);
    assert_eq!(r.edits.len(), 1);
    assert_eq!(r.edits[0].offset, sql.find("FROM users)").unwrap() + 5);
    let ctes = r
        .names
        .iter()
        .filter(|n| n.decision == Decision::Cte)
        .count();
    assert_eq!(ctes, 100);
}

#[test]
fn nesting_beyond_the_recursion_limit_is_a_parse_error_not_a_crash() {
    let sql = nested_subselects(RECURSION_LIMIT);
    let r = rewrite_sql(&sql, &test_map(), OnParseError::Reject);
    assert_eq!(r.outcome, Rejected);
    assert!(r.parse_error.is_some());
}

#[test]
fn a_span_that_does_not_point_at_the_name_is_refused() {
    let sql = "SELECT * FROM users";
    let index = TextIndex::new(sql);
    let at = |column| Span::new(Location::new(1, column), Location::new(1, column + 5));
    let mention = |column| TableMention {
        parts: vec![Ident::with_span(at(column), "users")],
        names_cte: false,
        keep_bare: false,
        creates: Creates::Nothing,
        namespace: Namespace::Relation,
    };
    assert!(resolve(sql, &index, &[mention(15)], &test_map()).is_ok());
    // One column off: the bytes there are not `users`.
    assert!(resolve(sql, &index, &[mention(14)], &test_map()).is_err());
    // A location past the end of the line.
    assert!(resolve(sql, &index, &[mention(40)], &test_map()).is_err());
    // An empty span (line 0).
    let empty = TableMention {
        parts: vec![Ident::new("users")],
        names_cte: false,
        keep_bare: false,
        creates: Creates::Nothing,
        namespace: Namespace::Relation,
    };
    assert!(resolve(sql, &index, &[empty], &test_map()).is_err());
}

#[test]
fn text_index_counts_columns_in_characters() {
    let sql = "-- 한국어\nSELECT '가' , x";
    let index = TextIndex::new(sql);
    assert_eq!(index.byte_offset(Location::new(1, 1)), Some(0));
    assert_eq!(index.byte_offset(Location::new(1, 4)), Some(3));
    assert_eq!(
        index.byte_offset(Location::new(2, 12)),
        Some(sql.find(',').unwrap())
    );
    assert_eq!(index.byte_offset(Location::new(3, 1)), None);
    assert_eq!(index.byte_offset(Location::new(1, 30)), None);
}

#[test]
fn prefilter_finds_names_only_at_identifier_boundaries() {
    use crate::rewrite::prefilter::MappedNamePrefilter;
    let filter = MappedNamePrefilter::new(["users", "kasi_cache", "MixedCase"], false).unwrap();
    for (text, expected) in [
        ("SELECT * FROM users", true),
        ("SELECT * FROM USERS", true),
        ("SELECT * FROM \"MixedCase\"", true),
        ("users", true),
        ("x.users.y", true),
        ("(users)", true),
        ("SELECT * FROM users_archive", false),
        ("SELECT * FROM my_users", false),
        ("SELECT * FROM users2", false),
        ("SELECT * FROM $users", false),
        ("SELECT * FROM 사용자users", false),
        // An overlapping longer candidate must not hide a real occurrence.
        ("SELECT * FROM saju_kasi_cache_x, kasi_cache", true),
        ("", false),
    ] {
        assert_eq!(filter.may_name_mapped_table(text), expected, "{text}");
    }
    assert!(MappedNamePrefilter::new(std::iter::empty::<&str>(), false).is_none());
}

#[test]
fn several_statements_report_the_worst_outcome_and_the_parsers_message() {
    let map = test_map();
    let sql = "SELECT * FROM users; SELECT * FROM users FOR NO KEY UPDATE; SELECT 1";
    let r = rewrite_sql(sql, &map, OnParseError::Tokens);
    assert_eq!(r.outcome, FallbackTokens);
    assert!(r.parse_error.as_deref().unwrap().contains("NO"));
    assert_eq!(r.edits.len(), 2);
    let decisions: Vec<&Decision> = r.names.iter().map(|n| &n.decision).collect();
    assert_eq!(
        decisions,
        vec![
            &by_map("shared_common"),
            &Decision::QualifiedByFallback {
                schema: "shared_common".into()
            }
        ]
    );
    // PostgreSQL's grammar parses FOR NO KEY UPDATE whatever the policy; a
    // syntax error is left to it. Rejected wins over everything and sends
    // nothing rewritten.
    assert_eq!(
        rewrite_sql(sql, &map, OnParseError::Reject).outcome,
        FallbackTokens
    );
    let sql = "SELECT * FROM users; SELECT * FROM users WHERE; SELECT 1";
    let r = rewrite_sql(sql, &map, OnParseError::Reject);
    assert_eq!(r.outcome, Rejected);
    assert!(r.edits.is_empty());
    assert_eq!(r.rejected_table.as_deref(), Some("users"));
    // Passthrough forwards the bad statement as it is, the others rewritten.
    let r = rewrite_sql(sql, &map, OnParseError::Passthrough);
    assert_eq!(r.outcome, PassthroughUnparsed);
    assert_eq!(
        r.apply(sql),
        "SELECT * FROM shared_common.users; SELECT * FROM users WHERE; SELECT 1"
    );
}

#[test]
fn text_that_does_not_tokenize_names_the_table_when_rejected() {
    let r = rewrite_sql(
        "SELECT \"users FROM Users",
        &test_map(),
        OnParseError::Reject,
    );
    assert_eq!(r.outcome, Rejected);
    assert_eq!(r.rejected_table.as_deref(), Some("users"));
    assert!(r.parse_error.is_some());
}

#[test]
fn rewriting_the_rewritten_text_changes_nothing() {
    // A client that sends already-rewritten text (or a retry) is stable.
    let map = test_map();
    for sql in [
        "SELECT * FROM users JOIN attachments USING (id)",
        "WITH x AS (SELECT * FROM kasi_cache) DELETE FROM users USING x",
        "SELECT * FROM old_table",
        "COMMENT ON COLUMN users.email IS 'x'",
    ] {
        let once = rewrite_sql(sql, &map, OnParseError::Tokens).apply(sql);
        let twice = rewrite_sql(&once, &map, OnParseError::Tokens);
        assert_eq!(twice.outcome, Unchanged, "{once}");
        assert!(
            twice
                .names
                .iter()
                .all(|n| matches!(n.decision, Decision::AlreadyQualified | Decision::Cte)),
            "{once}"
        );
    }
}

#[test]
fn long_operator_chain_does_not_overflow_a_small_thread_stack() {
    // Regression: 25,000 `AND` terms (a left-deep tree sqlparser builds
    // without counting recursion) overflowed a 2 MiB stack in the visitor
    // and aborted the whole process.
    let sql = format!(
        "SELECT * FROM users WHERE {}",
        vec!["x = 1"; 30_000].join(" AND ")
    );
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || rewrite_sql(&sql, &test_map(), OnParseError::Tokens).outcome)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome, Rewritten);
}

#[test]
fn long_single_line_query_with_korean_text_is_rewritten_exactly() {
    // Non-ASCII text takes the character-counting path of the offsets.
    let terms = vec!["x = '값'"; 2_000].join(" OR ");
    let sql = format!("SELECT '사주' FROM users WHERE {terms} UNION SELECT '꿈' FROM attachments");
    let r = rewrite_sql(&sql, &test_map(), OnParseError::Tokens);
    assert_eq!(
        r.apply(&sql),
        sql.replace("FROM users", "FROM shared_common.users")
            .replace("FROM attachments", "FROM shared_common.attachments")
    );
}

#[test]
fn public_spelling_is_replaced_and_positions_map_back() {
    let map = test_map();
    let sql = "SELECT nope FROM public.users WHERE idd = 1";
    let r = rewrite_sql(sql, &map, OnParseError::Tokens);
    let sent = r.apply(sql);
    assert_eq!(sent, "SELECT nope FROM shared_common.users WHERE idd = 1");
    assert_eq!(
        r.names[0].decision,
        Decision::RequalifiedFromPublic {
            schema: "shared_common".into()
        }
    );
    // `idd` is at 1-based char 44 of the sent text and 37 of the original.
    assert_eq!(sent.find("idd").unwrap() + 1, 44);
    assert_eq!(r.original_position(sql, 44), 37);
    // Inside the replacement: the start of `public`.
    assert_eq!(r.original_position(sql, 20), 18);
    // Before it: unchanged.
    assert_eq!(r.original_position(sql, 8), 8);
}

#[test]
fn public_spelling_can_be_kept() {
    let map = test_map().with_public_requalified(false);
    let sql = "SELECT * FROM public.users, users";
    let r = rewrite_sql(sql, &map, OnParseError::Tokens);
    assert_eq!(
        r.apply(sql),
        "SELECT * FROM public.users, shared_common.users"
    );
    assert_eq!(r.names[0].decision, Decision::AlreadyQualified);
}

#[test]
fn temp_creations_are_reported() {
    let map = test_map();
    for sql in [
        "CREATE TEMP TABLE users (id int)",
        "CREATE TEMPORARY TABLE users AS SELECT 1",
        "CREATE TABLE pg_temp.users (id int)",
        "SELECT 1 AS id INTO TEMP users",
        "CREATE TEMP VIEW users AS SELECT 1",
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert!(!r.changed(), "{sql}");
        assert!(
            r.names
                .iter()
                .any(|n| n.decision == Decision::TempCreated && n.name.ends_with("users")),
            "{sql}: {:?}",
            r.names
        );
    }
}

#[test]
fn objects_created_without_a_schema_go_to_the_create_schema() {
    let map = test_map().with_create_schema(Some("public"));
    for (sql, want) in [
        (
            "CREATE TABLE new_thing (id int REFERENCES users)",
            "CREATE TABLE public.new_thing (id int REFERENCES shared_common.users)",
        ),
        (
            "create view v as select 1",
            "create view public.v as select 1",
        ),
        (
            "CREATE MATERIALIZED VIEW mv AS SELECT * FROM users",
            "CREATE MATERIALIZED VIEW public.mv AS SELECT * FROM shared_common.users",
        ),
        (
            "CREATE SEQUENCE s START 5",
            "CREATE SEQUENCE public.s START 5",
        ),
        (
            "CREATE TYPE mood AS ENUM ('a', 'b')",
            "CREATE TYPE public.mood AS ENUM ('a', 'b')",
        ),
        (
            "CREATE DOMAIN email_addr AS text",
            "CREATE DOMAIN public.email_addr AS text",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
            "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        ),
        (
            "CREATE COLLATION c (provider = icu, locale = 'und')",
            "CREATE COLLATION public.c (provider = icu, locale = 'und')",
        ),
        (
            "CREATE FOREIGN TABLE ft (id int) SERVER s",
            "CREATE FOREIGN TABLE public.ft (id int) SERVER s",
        ),
        (
            "CREATE TEXT SEARCH CONFIGURATION tsc (COPY = simple)",
            "CREATE TEXT SEARCH CONFIGURATION public.tsc (COPY = simple)",
        ),
        (
            "CREATE AGGREGATE agg (int) (sfunc = int4pl, stype = int)",
            "CREATE AGGREGATE public.agg (int) (sfunc = int4pl, stype = int)",
        ),
        (
            "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\"",
            "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" SCHEMA public",
        ),
        (
            "create extension pgcrypto with version '1.3' cascade",
            "create extension pgcrypto with SCHEMA public version '1.3' cascade",
        ),
        (
            "CREATE EXTENSION hstore SCHEMA audit",
            "CREATE EXTENSION hstore SCHEMA audit",
        ),
        (
            "SELECT * INTO report FROM users",
            "SELECT * INTO public.report FROM shared_common.users",
        ),
        // Mapped names keep their schema; temporary and qualified ones
        // stay as written; an index lives with its table.
        (
            "CREATE TABLE users (id int)",
            "CREATE TABLE shared_common.users (id int)",
        ),
        (
            "CREATE TEMP TABLE t (id int)",
            "CREATE TEMP TABLE t (id int)",
        ),
        (
            "CREATE TABLE audit.t (id int)",
            "CREATE TABLE audit.t (id int)",
        ),
        ("CREATE INDEX i ON t (id)", "CREATE INDEX i ON t (id)"),
        ("INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)"),
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(r.apply(sql), want, "{sql}");
    }
    // Without a create schema nothing new is parsed.
    let plain = test_map();
    assert_eq!(
        rewrite_sql("CREATE TABLE t (id int)", &plain, OnParseError::Tokens).outcome,
        NoParseNeeded
    );
}

#[test]
fn listed_functions_and_types_are_created_in_and_spelled_to_their_schema() {
    let map = test_map()
        .with_routines_and_types(
            [("shared_common", "user_count")],
            [("shared_common", "user_status")],
        )
        .with_create_schema(Some("public"));
    for (sql, want) in [
        (
            "CREATE OR REPLACE FUNCTION user_count() RETURNS bigint LANGUAGE sql AS 'SELECT 1'",
            "CREATE OR REPLACE FUNCTION shared_common.user_count() RETURNS bigint LANGUAGE sql AS 'SELECT 1'",
        ),
        (
            "CREATE TYPE user_status AS ENUM ('a')",
            "CREATE TYPE shared_common.user_status AS ENUM ('a')",
        ),
        (
            "CREATE FUNCTION other() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE FUNCTION public.other() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        ),
        (
            "SELECT public.user_count(), user_count(), public.now()",
            "SELECT shared_common.user_count(), user_count(), public.now()",
        ),
        (
            "SELECT public.users.name FROM public.users WHERE public.users.id = 1",
            "SELECT shared_common.users.name FROM shared_common.users WHERE shared_common.users.id = 1",
        ),
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(r.apply(sql), want, "{sql}");
    }
    // A bare call is left to the search_path and reports nothing.
    let r = rewrite_sql("SELECT user_count()", &map, OnParseError::Tokens);
    assert!(!r.changed() && r.names.is_empty(), "{:?}", r.names);
}
