//! Large statements: the skeleton's cuts, offsets moved back, and a defined
//! outcome for whatever cannot be placed.

use std::time::{Duration, Instant};

use super::*;
use crate::rewrite::DEFAULT_MAX_PARSE_BYTES;
use crate::rewrite::tests::test_map;
use crate::rewrite::{rewrite_sql, rewrite_sql_uncached};

fn skeleton(sql: &str) -> Skeleton {
    Skeleton::of(sql, &test_map()).unwrap()
}

/// `n` comma-separated numbers.
fn numbers(n: usize) -> String {
    (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

#[test]
fn literal_lists_are_cut_after_two_items() {
    for (sql, want) in [
        ("x IN (1, 2, 3, 4)", "x IN (1, 2)"),
        ("x IN (-1, +2.5, 3e-4, .5, 0x1F)", "x IN (-1, +2.5)"),
        (
            "x IN ('a', E'b\\'', 'c''d', X'1f', U&'e')",
            "x IN ('a', E'b\\'')",
        ),
        ("x = ANY(ARRAY[1, 2, 3])", "x = ANY(ARRAY[1, 2])"),
        ("x IN ($1, $2, $3, $4)", "x IN ($1, $2)"),
        // Rows are items too; the first row (after VALUES) is cut inside.
        (
            "(VALUES (1, 'a', 2), (2, 'b', 3), (3, /* c */ 'c', 4), (4, 'd', 5))",
            "(VALUES (1, 'a'), (2, 'b', 3), (3, /* c */ 'c', 4))",
        ),
        ("f(a, 1, 2, 3)", "f(a, 1, 2)"),
        ("(1, 2, 3, x, 4, 5, 6)", "(1, 2, x, 4, 5)"),
    ] {
        assert_eq!(skeleton(sql).text, want, "{sql}");
    }
}

#[test]
fn anything_but_a_whole_literal_item_stays() {
    for sql in [
        "x IN (1, 2)",
        "x IN (1, 2, 3 * a, 4)",
        "x IN (a, b, c, d)",
        "x IN (1, 2, 3::int)",
        "x IN (1, 2, 3 -- c\n",
        "x IN (1users, 2users, 3users, 4users)",
        "x IN ($$a$$, $$b$$, $$c$$)",
        "x IN ('a' 'b', 'c', 'd')",
        "x IN (1, 2, 3",
    ] {
        assert_eq!(skeleton(sql).text, sql);
    }
    // The items after a non-literal one are a list of their own.
    assert_eq!(
        skeleton("(1, 2, 3 * a, 4, 5, 6)").text,
        "(1, 2, 3 * a, 4, 5)"
    );
}

#[test]
fn mapped_names_are_found_outside_literals_and_comments_only() {
    for (sql, mapped) in [
        ("SELECT * FROM users", true),
        ("SELECT * FROM USERS", true),
        ("SELECT * FROM \"MixedCase\"", true),
        ("SELECT * FROM \"mixedcase\"", false),
        (
            "SELECT 'users', $$users$$, E'\\'users' /* users */ -- users\n",
            false,
        ),
        ("SELECT \"users\"\"x\"", false),
        ("SELECT 1users", true),
        ("SELECT x FROM users_archive", false),
    ] {
        assert_eq!(skeleton(sql).names_mapped, mapped, "{sql}");
    }
}

#[test]
fn unterminated_text_does_not_lex() {
    for sql in [
        "SELECT 'a",
        "SELECT \"a",
        "SELECT /* /* */",
        "SELECT $q$ a $q",
        "SELECT E'\\",
    ] {
        assert!(Skeleton::of(sql, &test_map()).is_err(), "{sql}");
    }
}

#[test]
fn offsets_move_back_past_every_cut() {
    let sql = format!(
        "SELECT * FROM attachments WHERE id IN ({}) AND user_id IN (SELECT id FROM users WHERE id IN ({})) -- {}\n",
        numbers(50_000),
        numbers(30_000),
        "x".repeat(10)
    );
    let r = rewrite_sql(&sql, &test_map(), OnParseError::Tokens);
    assert_eq!(r.outcome, Outcome::Rewritten);
    let want = sql
        .replace("FROM attachments", "FROM shared_common.attachments")
        .replace("FROM users", "FROM shared_common.users");
    assert_eq!(r.apply(&sql), want);
    let offsets: Vec<usize> = r.names.iter().map(|n| n.offset).collect();
    assert_eq!(
        offsets,
        vec![sql.find("attachments").unwrap(), sql.find("users").unwrap()]
    );
}

/// Regression (issue 10, finding 2): a 5 MB IN-list naming a mapped table
/// made sqlparser hold 1.5 GB; 7 MB failed, 50 MB aborted the process.
#[test]
fn a_5_mb_in_list_naming_a_mapped_table_is_rewritten_promptly() {
    let sql = format!("SELECT name FROM users WHERE id IN ({})", numbers(700_000));
    assert!(sql.len() > 5_000_000);
    let started = Instant::now();
    let r = rewrite_sql(&sql, &test_map(), OnParseError::Tokens);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.outcome, Outcome::Rewritten, "{:?}", r.parse_error);
    assert_eq!(r.edits.len(), 1);
    assert_eq!(r.edits[0].offset, sql.find("users").unwrap());
    assert_eq!(&*r.edits[0].insert, "shared_common.");

    // A multi-row insert of the same size.
    let rows: Vec<String> = (0..200_000).map(|i| format!("({i}, 'name {i}')")).collect();
    let sql = format!("INSERT INTO users (id, name) VALUES {}", rows.join(", "));
    assert!(sql.len() > 4_000_000);
    let r = rewrite_sql(&sql, &test_map(), OnParseError::Reject);
    assert_eq!(r.outcome, Outcome::Rewritten, "{:?}", r.parse_error);
    assert!(
        r.apply(&sql)
            .starts_with("INSERT INTO shared_common.users (id, name) VALUES (0, ")
    );
}

#[test]
fn past_the_bound_an_unplaceable_mapped_name_is_refused_per_policy() {
    let map = test_map().with_max_parse_bytes(1000);
    // Column names, not literals: nothing to cut.
    let columns: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
    let sql = format!("SELECT {} FROM users", columns.join(", "));
    assert!(sql.len() > 1000);
    for policy in [OnParseError::Tokens, OnParseError::Reject] {
        let r = rewrite_sql(&sql, &map, policy);
        assert_eq!(r.outcome, Outcome::Rejected, "{policy:?}");
        assert_eq!(r.rejected_table.as_deref(), Some("users"));
        assert!(
            r.parse_error
                .as_deref()
                .unwrap()
                .contains("proxy.max_parse_bytes (1000)"),
            "{:?}",
            r.parse_error
        );
    }
    let r = rewrite_sql(&sql, &map, OnParseError::Passthrough);
    assert_eq!(r.outcome, Outcome::PassthroughUnparsed);
    assert!(r.edits.is_empty());

    // The same statement within the bound is parsed whole.
    let r = rewrite_sql_uncached(&sql, &test_map(), OnParseError::Tokens);
    assert_eq!(r.outcome, Outcome::Rewritten);
}

#[test]
fn past_the_bound_a_name_only_in_literals_is_unchanged_without_a_parse() {
    let map = test_map().with_max_parse_bytes(1000);
    let words: Vec<String> = (0..200).map(|i| format!("'users {i}'")).collect();
    let sql = format!("SELECT {} FROM other /* users */", words.join(" || "));
    let r = rewrite_sql(&sql, &map, OnParseError::Reject);
    assert_eq!(r.outcome, Outcome::Unchanged);
    assert!(r.edits.is_empty());

    let sql = format!("SELECT * FROM users WHERE x = '{}", "y".repeat(2000));
    let r = rewrite_sql(&sql, &map, OnParseError::Reject);
    assert_eq!(r.outcome, Outcome::Rejected);
    let r = rewrite_sql(&sql, &map, OnParseError::Tokens);
    assert_eq!(r.outcome, Outcome::PassthroughUnparsed);
}

/// Between 64 KiB and the bound, a skeleton sqlparser cannot read (an
/// OVERLAPS of rows cut short is fine; this one needs the exact parser)
/// sends the statement the usual way, whole.
#[test]
fn within_the_bound_an_unclean_skeleton_falls_back_to_the_whole_statement() {
    let sql = format!(
        "SELECT * FROM users WHERE id BETWEEN SYMMETRIC 0 AND 2 AND id IN ({})",
        numbers(20_000)
    );
    assert!(sql.len() > COLLAPSE_ABOVE && sql.len() < DEFAULT_MAX_PARSE_BYTES);
    let r = rewrite_sql(&sql, &test_map(), OnParseError::Tokens);
    assert_eq!(r.outcome, Outcome::FallbackTokens, "{:?}", r.parse_error);
    assert!(
        r.apply(&sql)
            .starts_with("SELECT * FROM shared_common.users WHERE")
    );
}

#[test]
fn creating_words_count_when_created_objects_get_a_schema() {
    let map = test_map().with_create_schema(Some("public"));
    for (sql, mapped) in [
        ("CREATE TABLE t (a int)", true),
        ("SELECT 1 INTO t", true),
        ("SET search_path = x", true),
        ("SELECT 'create', \"into\"", false),
    ] {
        assert_eq!(
            Skeleton::of(sql, &map).unwrap().names_mapped,
            mapped,
            "{sql}"
        );
    }
    assert!(!skeleton("CREATE TABLE t (a int)").names_mapped);
}
