//! The cache must never change an answer: every golden case is run through
//! the cached path (a miss, then a hit) and, when it has a shape, again
//! with every literal replaced, and each result must equal a fresh rewrite
//! of the same text, field for field.

use super::test_map;
use crate::rewrite::*;

/// Every literal of `sql` replaced by one of another length and content.
fn vary_literals(sql: &str) -> Option<String> {
    let s = shape::scan(sql)?;
    if s.literals.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 32);
    let mut at = 0;
    for &(start, end, marker) in &s.literals {
        out.push_str(&sql[at..start]);
        out.push_str(if marker == 0x01 {
            "9876543210.25"
        } else {
            "'a longer ''literal'' with FROM users in it, 사주'"
        });
        at = end;
    }
    out.push_str(&sql[at..]);
    Some(out)
}

fn same(a: &Rewrite, b: &Rewrite) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// `first` is what `rewrite_sql` gave for `input` with `map` (a miss or a
/// hit, depending on the cases before).
pub(super) fn assert_cache_agrees(
    what: &str,
    input: &str,
    map: &SchemaMap,
    policy: OnParseError,
    first: &Rewrite,
) {
    let fresh = rewrite_sql_uncached(input, map, policy);
    assert!(
        same(first, &fresh),
        "{what}: first {first:?} fresh {fresh:?}"
    );
    let again = rewrite_sql(input, map, policy);
    assert!(
        same(&again, &fresh),
        "{what}: hit {again:?} fresh {fresh:?}"
    );
    if let Some(varied) = vary_literals(input) {
        let fresh = rewrite_sql_uncached(&varied, map, policy);
        let cached = rewrite_sql(&varied, map, policy);
        assert!(
            same(&cached, &fresh) && cached.apply(&varied) == fresh.apply(&varied),
            "{what}: shape hit differs for {varied}\n cached {cached:?}\n fresh  {fresh:?}"
        );
    }
}

#[test]
fn pgbench_select_only_hits_the_shape_cache_with_any_aid() {
    let map = SchemaMap::new([("bench", "pgbench_accounts")]).with_cache_bytes(1 << 20);
    for aid in [1u32, 48213, 7, 100000, 99999] {
        let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
        let r = rewrite_sql(&sql, &map, OnParseError::Tokens);
        assert_eq!(
            r.apply(&sql),
            format!("SELECT abalance FROM bench.pgbench_accounts WHERE aid = {aid};")
        );
        assert!(same(
            &r,
            &rewrite_sql_uncached(&sql, &map, OnParseError::Tokens)
        ));
    }
    let s = map.cache_stats();
    assert_eq!((s.misses, s.shape_hits, s.text_hits), (1, 4, 0));
}

#[test]
fn extended_protocol_text_hits_the_text_cache() {
    let map = SchemaMap::new([("bench", "pgbench_accounts")]).with_cache_bytes(1 << 20);
    let sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
    for _ in 0..3 {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(
            r.apply(sql),
            "SELECT abalance FROM bench.pgbench_accounts WHERE aid = $1"
        );
    }
    let s = map.cache_stats();
    assert_eq!((s.misses, s.shape_hits, s.text_hits), (1, 0, 2));
}

#[test]
fn a_new_map_is_a_new_key_space() {
    let sql = "SELECT * FROM users WHERE id = 1";
    let old = SchemaMap::new([("shared_common", "users")]);
    assert_eq!(
        rewrite_sql(sql, &old, OnParseError::Tokens).apply(sql),
        "SELECT * FROM shared_common.users WHERE id = 1"
    );
    let new = SchemaMap::new([("identity", "users")]);
    assert_eq!(
        rewrite_sql(sql, &new, OnParseError::Tokens).apply(sql),
        "SELECT * FROM identity.users WHERE id = 1"
    );
    // The old map, still held by a session in a transaction, answers as before.
    assert_eq!(
        rewrite_sql(sql, &old, OnParseError::Tokens).apply(sql),
        "SELECT * FROM shared_common.users WHERE id = 1"
    );
}

#[test]
fn policies_do_not_share_entries() {
    let map = SchemaMap::new([("shared_common", "users")]);
    let sql = "SELECT * FROM users WHERE ((";
    let tokens = rewrite_sql(sql, &map, OnParseError::Tokens);
    let reject = rewrite_sql(sql, &map, OnParseError::Reject);
    // A syntax error for PostgreSQL too: forwarded, or refused.
    assert_eq!(tokens.outcome, Outcome::PassthroughUnparsed);
    assert_eq!(reject.outcome, Outcome::Rejected);
}

#[test]
fn a_disabled_cache_still_rewrites() {
    let map = SchemaMap::new([("shared_common", "users")]).with_cache_bytes(0);
    let sql = "SELECT * FROM users";
    for _ in 0..2 {
        assert_eq!(
            rewrite_sql(sql, &map, OnParseError::Tokens).apply(sql),
            "SELECT * FROM shared_common.users"
        );
    }
    assert_eq!(map.cache_stats().entries, 0);
}

/// Statements built from templates with literals of every form the scanner
/// accepts or refuses, in many combinations, through one map so that shapes
/// hit across variants: each cached answer must equal a fresh rewrite.
#[test]
fn shape_hits_equal_fresh_rewrites_across_literal_forms() {
    let templates = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
        "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = {}",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({}, {}, {}, {}, CURRENT_TIMESTAMP)",
        "SELECT * FROM users u JOIN attachments a ON a.user_id = u.id WHERE u.name = {} LIMIT {}",
        "SELECT {} AS users FROM kasi_cache WHERE solar_date > now() - interval {}",
        "WITH users AS (SELECT {} AS id) SELECT * FROM users, saju_charts WHERE saju_charts.id = {}",
        "SELECT * FROM users WHERE id IN ({}, {}, {}) OR name LIKE {}",
        "SELECT count(*) FROM \"MixedCase\" m WHERE m.x = {}::int AND m.y <> {}",
        "DELETE FROM old_table WHERE created < {} RETURNING {}",
        "SELECT ({} + {}) * {} FROM dream_categories ORDER BY 1 OFFSET {}",
    ];
    let literals = [
        "1",
        "48213",
        "-7",
        "3.25",
        "0.5",
        "'x'",
        "''",
        "'it''s'",
        "'users'",
        "'FROM users'",
        "'사주 풀이'",
        "'1 day'",
        "E'a\\'b'",
        "B'101'",
        "1e5",
        ".5",
        "$1",
        "'a' 'b'",
        "NULL",
    ];
    let map = test_map();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..600 {
        let template = templates[round % templates.len()];
        let mut sql = String::new();
        let mut parts = template.split("{}").peekable();
        while let Some(part) = parts.next() {
            sql.push_str(part);
            if parts.peek().is_some() {
                sql.push_str(literals[(next() % literals.len() as u64) as usize]);
            }
        }
        for policy in [OnParseError::Tokens, OnParseError::Reject] {
            let fresh = rewrite_sql_uncached(&sql, &map, policy);
            let cached = rewrite_sql(&sql, &map, policy);
            assert!(
                same(&cached, &fresh) && cached.apply(&sql) == fresh.apply(&sql),
                "{sql}\n cached {cached:?}\n fresh  {fresh:?}"
            );
        }
    }
    let s = map.cache_stats();
    assert!(s.shape_hits > 100, "{s:?}");
}

#[test]
fn a_text_naming_no_mapped_table_is_looked_up_but_no_miss() {
    let map = SchemaMap::new([("bench", "pgbench_accounts")]).with_cache_bytes(1 << 20);
    for _ in 0..3 {
        for sql in [
            "BEGIN;",
            "END;",
            "SELECT 1",
            "SELECT abalance FROM t WHERE aid = $1",
        ] {
            let r = rewrite_sql(sql, &map, OnParseError::Tokens);
            assert_eq!(r.outcome, Outcome::NoParseNeeded, "{sql}");
        }
    }
    let s = map.cache_stats();
    assert_eq!(
        (s.misses, s.shape_hits, s.text_hits, s.entries),
        (0, 0, 0, 0)
    );
}

/// The cache is asked before the prefilter, so a shape must not remember
/// what a string of one text made the prefilter say: another text of the
/// same shape names no mapped table and must stay unparsed.
#[test]
fn what_a_string_holds_does_not_decide_for_its_shape() {
    let map = SchemaMap::new([("bench", "pgbench_accounts")]).with_cache_bytes(1 << 20);
    for (first, then) in [
        ("SELECT 'pgbench_accounts' FROM t", "SELECT 'zzz' FROM t"),
        ("SELECT 'x '' public.y' FROM t", "SELECT 'abc' FROM t"),
    ] {
        for sql in [first, first, then, then] {
            let cached = rewrite_sql(sql, &map, OnParseError::Tokens);
            let fresh = rewrite_sql_uncached(sql, &map, OnParseError::Tokens);
            assert!(
                same(&cached, &fresh),
                "{sql}: cached {cached:?} fresh {fresh:?}"
            );
        }
        let r = rewrite_sql(then, &map, OnParseError::Tokens);
        assert_eq!(r.outcome, Outcome::NoParseNeeded, "{then}");
    }
}

/// A relation name inside a string (`to_regclass('users')`) is rewritten
/// like an identifier; a text of the same shape whose string names
/// nothing, cached or not, must never answer for it.
#[test]
fn a_relation_name_in_a_string_is_never_answered_from_a_shape() {
    let map = SchemaMap::new([("shared_common", "users")]).with_cache_bytes(1 << 20);
    for sql in [
        "SELECT to_regclass('zzz') FROM users",
        "SELECT to_regclass('users') FROM users",
        "SELECT 'zzz'::regclass FROM users",
        "SELECT 'users'::regclass FROM users",
        "SELECT to_regclass('zzz')",
        "SELECT to_regclass('users')",
    ] {
        let cached = rewrite_sql(sql, &map, OnParseError::Tokens);
        let fresh = rewrite_sql_uncached(sql, &map, OnParseError::Tokens);
        assert!(
            same(&cached, &fresh),
            "{sql}: cached {cached:?} fresh {fresh:?}"
        );
    }
}
