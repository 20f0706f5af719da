//! Bare mapped names inside strings PostgreSQL reads as names
//! (`to_regclass('users')`, `'user_status'::regtype`,
//! `'user_count()'::regprocedure`, ...): the map's schema goes inside the
//! literal, so the lookup never falls through the search_path to a stale
//! copy in `public` (once the moved object is dropped, say) and the map
//! stays authoritative under a session's own `SET search_path`.

use super::test_map_with;
use crate::rewrite::{
    Decision, OnParseError, Outcome, Rewrite, SchemaMap, SessionFacts, rewrite_sql,
    rewrite_sql_uncached,
};

/// The test map, plus `settings` kept in public, a mapped type and a
/// mapped function.
fn map() -> SchemaMap {
    test_map_with(
        &[("shared_common", "user_count")],
        &[("shared_common", "user_status")],
    )
}

fn sent(map: &SchemaMap, sql: &str) -> (String, Rewrite) {
    let r = rewrite_sql(sql, map, OnParseError::Tokens);
    (r.apply(sql), r)
}

/// Every case sent as expected, on a cache miss and on a hit.
fn check(map: &SchemaMap, cases: &[(&str, &str)]) {
    for (input, expected) in cases {
        for round in ["miss", "hit"] {
            let (out, r) = sent(map, input);
            assert_eq!(&out, expected, "{round}: {input}");
            if out != *input {
                let rewritten = [Outcome::Rewritten, Outcome::FallbackTokens];
                assert!(rewritten.contains(&r.outcome), "{round}: {input}: {r:?}");
            }
        }
    }
}

#[test]
fn every_name_reading_position_gets_the_schema() {
    check(
        &map(),
        &[
            (
                "SELECT to_regclass('dream_interpretations') IS NULL",
                "SELECT to_regclass('dream_service.dream_interpretations') IS NULL",
            ),
            (
                "SELECT 'users'::regclass, CAST('kasi_cache' AS regclass), regclass 'attachments'",
                "SELECT 'shared_common.users'::regclass, CAST('saju_service.kasi_cache' AS regclass), \
                 regclass 'shared_common.attachments'",
            ),
            (
                "SELECT nextval('users'), currval('users'), setval('users', 5)",
                "SELECT nextval('shared_common.users'), currval('shared_common.users'), \
                 setval('shared_common.users', 5)",
            ),
            (
                "SELECT setval(pg_get_serial_sequence('\"users\"', 'id'), 1)",
                "SELECT setval(pg_get_serial_sequence('shared_common.\"users\"', 'id'), 1)",
            ),
            (
                "SELECT has_table_privilege('users', 'SELECT'), \
                 has_column_privilege(current_user, 'users', 'id', 'SELECT'), pg_relation_size('users')",
                "SELECT has_table_privilege('shared_common.users', 'SELECT'), \
                 has_column_privilege(current_user, 'shared_common.users', 'id', 'SELECT'), \
                 pg_relation_size('shared_common.users')",
            ),
            (
                "SELECT obj_description('users'::regclass, 'pg_class')",
                "SELECT obj_description('shared_common.users'::regclass, 'pg_class')",
            ),
            (
                "SELECT 'user_status'::regtype, to_regtype('user_status')",
                "SELECT 'shared_common.user_status'::regtype, to_regtype('shared_common.user_status')",
            ),
            (
                "SELECT 'user_count'::regproc, to_regproc('user_count'), \
                 'user_count()'::regprocedure, to_regprocedure('user_count ( )')",
                "SELECT 'shared_common.user_count'::regproc, to_regproc('shared_common.user_count'), \
                 'shared_common.user_count()'::regprocedure, to_regprocedure('shared_common.user_count ( )')",
            ),
            (
                "SELECT 'public.user_count'::regproc",
                "SELECT 'shared_common.user_count'::regproc",
            ),
        ],
    );
}

#[test]
fn quoting_is_read_as_postgresql_reads_it() {
    check(
        &map(),
        &[
            // Unquoted folds; quoted matches exactly.
            (
                "SELECT 'USERS'::regclass, ' users '::regclass",
                "SELECT 'shared_common.USERS'::regclass, ' shared_common.users '::regclass",
            ),
            (
                "SELECT '\"Users\"'::regclass, '\"MixedCase\"'::regclass, 'MixedCase'::regclass",
                "SELECT '\"Users\"'::regclass, 'shared_common.\"MixedCase\"'::regclass, \
                 'MixedCase'::regclass",
            ),
            // A schema that needs quotes is inserted quoted.
            (
                "SELECT to_regclass('old_table')",
                "SELECT to_regclass('\"Legacy Schema\".old_table')",
            ),
            // Kept in public by the map: `public.` so a same-named object
            // in a mapped schema never comes first.
            (
                "SELECT 'settings'::regclass",
                "SELECT 'public.settings'::regclass",
            ),
        ],
    );
}

#[test]
fn what_is_not_one_mapped_name_stays_as_written() {
    let map = map();
    for sql in [
        // Not a name position.
        "SELECT 'users' FROM legacy_log",
        "SELECT lower('users'), format('%s', 'users')",
        // Unlisted, or not one name.
        "SELECT 'users_id_seq'::regclass, 'legacy_log'::regclass",
        "SELECT 'users x'::regclass, 'users.id'::regclass, '\"users'::regclass",
        "SELECT 'us''ers'::regclass, E'users'::regclass, $$users$$::regclass",
        "SELECT 'user_status[]'::regtype, 'users'::regtype, 'user_status'::regproc",
        "SELECT 'user_count'::regprocedure",
        // Already qualified.
        "SELECT 'saju_service.users'::regclass",
    ] {
        let (out, r) = sent(&map, sql);
        assert_eq!(out, sql, "{r:?}");
    }
}

#[test]
fn decisions_say_what_was_read() {
    let map = map();
    let sql = "SELECT to_regclass('users'), 'users_id_seq'::regclass FROM users";
    let (_, r) = sent(&map, sql);
    let decisions: Vec<(&str, usize, &Decision)> = r
        .names
        .iter()
        .map(|n| (&*n.name, n.offset, &n.decision))
        .collect();
    assert_eq!(
        decisions,
        [
            (
                "users",
                sql.find("users'").unwrap(),
                &Decision::QualifiedStringByMap {
                    schema: "shared_common".into()
                }
            ),
            (
                "users_id_seq",
                sql.find("users_id_seq").unwrap(),
                &Decision::StringLeftToSearchPath
            ),
            (
                "users",
                sql.rfind("users").unwrap(),
                &Decision::QualifiedByMap {
                    schema: "shared_common".into()
                }
            ),
        ]
    );
    assert_eq!(
        Decision::LABELS[decisions[0].2.index()],
        "qualified_string_by_map"
    );
    assert_eq!(
        Decision::LABELS[decisions[1].2.index()],
        "string_left_to_search_path"
    );
}

#[test]
fn keep_mode_still_qualifies_bare_names() {
    // `public_qualified: keep` is about `public.` spellings only.
    let map = map().with_public_requalified(false);
    check(
        &map,
        &[
            (
                "SELECT to_regclass('users'), to_regclass('public.users')",
                "SELECT to_regclass('shared_common.users'), to_regclass('public.users')",
            ),
            (
                "SELECT 'users'::regclass WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
                "SELECT 'shared_common.users'::regclass WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
            ),
        ],
    );
}

#[test]
fn texts_of_one_shape_never_share_a_bare_string_decision() {
    // The shape cache masks literals: the rewrite of a text whose literal
    // names nothing mapped must not be reused where it names a mapped one.
    let map = map();
    let cases = [
        (
            "SELECT to_regclass('legacy_log'), 1 FROM users",
            "SELECT to_regclass('legacy_log'), 1 FROM shared_common.users",
        ),
        (
            "SELECT to_regclass('users'), 2 FROM users",
            "SELECT to_regclass('shared_common.users'), 2 FROM shared_common.users",
        ),
        (
            "SELECT to_regclass('kasi_cache'), 3 FROM users",
            "SELECT to_regclass('saju_service.kasi_cache'), 3 FROM shared_common.users",
        ),
    ];
    for _ in 0..2 {
        for (sql, expected) in cases {
            assert_eq!(sent(&map, sql).0, expected);
        }
    }
}

#[test]
fn a_temporary_relation_keeps_the_string_bare() {
    // pg_temp comes first for relations: `to_regclass('users')` finds a
    // temporary `users` before the moved table, as before the move.
    let map = map();
    let mut facts = SessionFacts::default();
    let create = "CREATE TEMP TABLE users (id int)";
    let mut r = rewrite_sql(create, &map, OnParseError::Tokens);
    facts.apply(&mut r, create);
    for sql in [
        "SELECT to_regclass('users'), to_regclass('kasi_cache')",
        "SELECT to_regclass('\"users\"'), to_regclass('kasi_cache')",
    ] {
        let mut r = rewrite_sql(sql, &map, OnParseError::Tokens);
        facts.apply(&mut r, sql);
        assert_eq!(
            r.apply(sql),
            sql.replace("'kasi_cache'", "'saju_service.kasi_cache'"),
        );
        assert_eq!(r.names[0].decision, Decision::TempShadowed);
    }
}

#[test]
fn the_exact_fallback_reads_bare_strings_too() {
    // sqlparser cannot parse BETWEEN SYMMETRIC; the only mapped name is in
    // a string, which still sends the statement to PostgreSQL's grammar.
    let map = map();
    for (sql, expected) in [
        (
            "SELECT to_regclass('users') WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
            "SELECT to_regclass('shared_common.users') WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
        ),
        (
            "SELECT 'user_count()'::regprocedure, 'user_status'::pg_catalog.regtype, \
             'users' WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
            "SELECT 'shared_common.user_count()'::regprocedure, \
             'shared_common.user_status'::pg_catalog.regtype, 'users' WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
        ),
    ] {
        let r = rewrite_sql_uncached(sql, &map, OnParseError::Tokens);
        assert!(r.parse_error.is_some(), "{sql}: went to the fallback");
        assert_eq!(r.apply(sql), expected);
    }
}

#[test]
fn a_masked_literal_stays_as_written() {
    // standard_conforming_strings off: the copy the rewriter lexes masks
    // `\u` as `xx`, so its name is not the server's.
    let map = map();
    let original = "SELECT to_regclass('\\users'), to_regclass('users')";
    let lexed = crate::rewrite::mask_backslash_escapes(original).unwrap();
    let mut r = rewrite_sql(&lexed, &map, OnParseError::Tokens);
    r.keep_masked_strings(&lexed, original.as_bytes());
    assert_eq!(
        r.apply(original),
        "SELECT to_regclass('\\users'), to_regclass('shared_common.users')"
    );
}
