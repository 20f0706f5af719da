//! `public.` inside strings PostgreSQL reads as relation names
//! (`nextval('public.users_id_seq')`, `'public.users'::regclass`, ...): a
//! mapped name gets its schema, a `public:`-listed one stays, any other
//! loses `public.` so the search_path resolves it as the bare spelling.

use super::test_map_with;
use crate::rewrite::{
    Decision, OnParseError, Outcome, Rewrite, SchemaMap, SessionFacts, rewrite_sql,
    rewrite_sql_uncached,
};

/// The test map, plus `settings` kept in public and a mapped type.
fn map() -> SchemaMap {
    test_map_with(&[], &[("shared_common", "user_status")])
}

fn sent(map: &SchemaMap, sql: &str) -> (String, Rewrite) {
    let r = rewrite_sql(sql, map, OnParseError::Tokens);
    (r.apply(sql), r)
}

/// (input, expected) pairs on [`map`]: every one must be sent as expected,
/// and a second rewrite (a cache hit) must send the same.
fn check(cases: &[(&str, &str)]) {
    let map = map();
    for (input, expected) in cases {
        for round in ["miss", "hit"] {
            let (out, r) = sent(&map, input);
            assert_eq!(&out, expected, "{round}: {input}");
            let want = if out == *input {
                [Outcome::Unchanged, Outcome::NoParseNeeded].as_slice()
            } else {
                [Outcome::Rewritten].as_slice()
            };
            assert!(want.contains(&r.outcome), "{round}: {input}: {r:?}");
        }
    }
}

#[test]
fn every_relation_position_is_read() {
    check(&[
        (
            "SELECT nextval('public.users')",
            "SELECT nextval('shared_common.users')",
        ),
        (
            "SELECT currval('public.users')",
            "SELECT currval('shared_common.users')",
        ),
        (
            "SELECT setval('public.users', 50)",
            "SELECT setval('shared_common.users', 50)",
        ),
        (
            "SELECT setval('public.users', 50, false)",
            "SELECT setval('shared_common.users', 50, false)",
        ),
        (
            "SELECT pg_get_serial_sequence('public.users', 'id')",
            "SELECT pg_get_serial_sequence('shared_common.users', 'id')",
        ),
        (
            "SELECT to_regclass('public.users')::text",
            "SELECT to_regclass('shared_common.users')::text",
        ),
        (
            "SELECT pg_relation_size('public.users'), pg_total_relation_size('public.users'), \
             pg_table_size('public.users'), pg_indexes_size('public.users')",
            "SELECT pg_relation_size('shared_common.users'), pg_total_relation_size('shared_common.users'), \
             pg_table_size('shared_common.users'), pg_indexes_size('shared_common.users')",
        ),
        (
            "SELECT 'public.users'::regclass::text",
            "SELECT 'shared_common.users'::regclass::text",
        ),
        (
            "SELECT CAST('public.users' AS regclass)",
            "SELECT CAST('shared_common.users' AS regclass)",
        ),
        (
            "SELECT regclass 'public.users'",
            "SELECT regclass 'shared_common.users'",
        ),
        (
            "SELECT 'public.users'::pg_catalog.regclass",
            "SELECT 'shared_common.users'::pg_catalog.regclass",
        ),
        (
            "SELECT obj_description('public.users'::regclass, 'pg_class'), col_description('public.users'::regclass, 2)",
            "SELECT obj_description('shared_common.users'::regclass, 'pg_class'), col_description('shared_common.users'::regclass, 2)",
        ),
        (
            "SELECT has_table_privilege('public.users', 'SELECT'), has_table_privilege(current_user, 'public.users', 'SELECT')",
            "SELECT has_table_privilege('shared_common.users', 'SELECT'), has_table_privilege(current_user, 'shared_common.users', 'SELECT')",
        ),
        (
            "SELECT has_sequence_privilege('public.users', 'USAGE'), has_sequence_privilege('postgres', 'public.users', 'USAGE')",
            "SELECT has_sequence_privilege('shared_common.users', 'USAGE'), has_sequence_privilege('postgres', 'shared_common.users', 'USAGE')",
        ),
        (
            "SELECT has_column_privilege('public.users', 'id', 'SELECT'), has_column_privilege('postgres', 'public.users', 'id', 'SELECT')",
            "SELECT has_column_privilege('shared_common.users', 'id', 'SELECT'), has_column_privilege('postgres', 'shared_common.users', 'id', 'SELECT')",
        ),
        (
            "SELECT pg_catalog.nextval('public.users'), NEXTVAL('public.users'), \"nextval\"('public.users')",
            "SELECT pg_catalog.nextval('shared_common.users'), NEXTVAL('shared_common.users'), \"nextval\"('shared_common.users')",
        ),
        // Casts to text and parentheses around the literal (old dumps).
        (
            "SELECT nextval(('public.users_id_seq'::text)::regclass), nextval('public.users'::text), \
             nextval(('public.users')::varchar)",
            "SELECT nextval(('users_id_seq'::text)::regclass), nextval('shared_common.users'::text), \
             nextval(('shared_common.users')::varchar)",
        ),
        // Inside DML and DDL, next to identifiers that are qualified too.
        (
            "INSERT INTO users (id) VALUES (nextval('public.users_id_seq'))",
            "INSERT INTO shared_common.users (id) VALUES (nextval('users_id_seq'))",
        ),
        (
            "ALTER TABLE users ALTER COLUMN id SET DEFAULT nextval('public.users_id_seq')",
            "ALTER TABLE shared_common.users ALTER COLUMN id SET DEFAULT nextval('users_id_seq')",
        ),
    ]);
}

#[test]
fn spellings_postgresql_reads_as_public_dot_name() {
    check(&[
        (
            "SELECT 'PUBLIC.USERS'::regclass",
            "SELECT 'shared_common.USERS'::regclass",
        ),
        (
            "SELECT '\"public\".users'::regclass",
            "SELECT 'shared_common.users'::regclass",
        ),
        (
            "SELECT 'public.\"users\"'::regclass",
            "SELECT 'shared_common.\"users\"'::regclass",
        ),
        (
            "SELECT ' public . users '::regclass",
            "SELECT ' shared_common.users '::regclass",
        ),
        // Quoted: exact, so "Users" is not users and is left to the path.
        (
            "SELECT 'public.\"Users\"'::regclass",
            "SELECT '\"Users\"'::regclass",
        ),
        (
            "SELECT 'public.\"MixedCase\"'::regclass",
            "SELECT 'shared_common.\"MixedCase\"'::regclass",
        ),
        // A schema that needs quotes is inserted quoted.
        (
            "SELECT 'public.old_table'::regclass",
            "SELECT '\"Legacy Schema\".old_table'::regclass",
        ),
        // Unlisted: public. dropped (an owned sequence moved with its table).
        (
            "SELECT nextval('public.users_id_seq')",
            "SELECT nextval('users_id_seq')",
        ),
        (
            "SELECT nextval('\"public\".\"Odd Seq\"')",
            "SELECT nextval('\"Odd Seq\"')",
        ),
    ]);
}

#[test]
fn what_is_not_read_stays_as_written() {
    let unchanged = [
        // Not a relation position.
        "SELECT 'public.users'",
        "SELECT name FROM legacy_log WHERE name = 'public.users'",
        "SELECT name FROM users WHERE name = 'public.users'",
        "SELECT lower('public.users'), format('%s', 'public.users')",
        "SELECT nextval(x) FROM users ",
        "SELECT setval('x', 1), setval(1, 'public.users')",
        "SELECT has_table_privilege('public.users')",
        // Not public, or not two parts.
        "SELECT '\"PUBLIC\".users'::regclass",
        "SELECT 'publicx.users'::regclass",
        "SELECT 'public.users.id'::regclass",
        "SELECT 'db.public.users'::regclass",
        "SELECT 'public.'::regclass",
        "SELECT 'public.\"\"'::regclass",
        "SELECT 'public.users x'::regclass",
        "SELECT 'public.us-ers'::regclass",
        // A vertical tab is whitespace to some releases only.
        "SELECT '\u{b}public.users'::regclass",
        // Literals that need unescaping, or are no plain literal.
        "SELECT E'public.users'::regclass",
        "SELECT 'public.us''ers'::regclass",
        "SELECT 'public.us\\ers'::regclass",
        "SELECT $$public.users$$::regclass",
        "SELECT U&'public.users'::regclass",
        "SELECT ('public.' || 'users')::regclass",
        // pg_catalog comes before the search_path.
        "SELECT 'public.pg_class'::regclass",
        // Kept in public by the map's public entry.
        "SELECT 'public.settings'::regclass, nextval('public.settings')",
        // Types: only a mapped one.
        "SELECT 'public.other_type'::regtype",
        // A name PostgreSQL would truncate.
        "SELECT 'public.a_name_of_sixty_four_bytes_is_longer_than_namedatalen_allows_xxx'::regclass",
    ];
    let map = map();
    for sql in unchanged {
        let (out, r) = sent(&map, sql);
        // Only identifiers change.
        let expected = sql.replace("FROM users ", "FROM shared_common.users ");
        assert_eq!(out, expected, "{r:?}");
    }
}

#[test]
fn mapped_types_in_regtype_strings_get_their_schema() {
    check(&[
        (
            "SELECT 'public.user_status'::regtype::text",
            "SELECT 'shared_common.user_status'::regtype::text",
        ),
        (
            "SELECT to_regtype('public.user_status')",
            "SELECT to_regtype('shared_common.user_status')",
        ),
    ]);
}

#[test]
fn decisions_name_the_new_kinds_and_positions_map_back() {
    let map = map();
    let sql = "SELECT nextval('public.users'), nextval('public.users_id_seq'), 'public.settings'::regclass, nope";
    let (out, r) = sent(&map, sql);
    assert_eq!(
        out,
        "SELECT nextval('shared_common.users'), nextval('users_id_seq'), 'public.settings'::regclass, nope"
    );
    let decisions: Vec<(&str, usize, &Decision)> = r
        .names
        .iter()
        .map(|n| (&*n.name, n.offset, &n.decision))
        .collect();
    let at = |s: &str| sql.find(s).unwrap();
    assert_eq!(
        decisions,
        [
            (
                "public.users",
                16,
                &Decision::RequalifiedStringFromPublic {
                    schema: "shared_common".into()
                }
            ),
            (
                "public.users_id_seq",
                at("public.users_id_seq"),
                &Decision::PublicDroppedFromString
            ),
            (
                "public.settings",
                at("public.settings"),
                &Decision::AlreadyQualified
            ),
        ]
    );
    assert_eq!(
        Decision::LABELS[decisions[0].2.index()],
        "requalified_string_from_public"
    );
    assert_eq!(
        Decision::LABELS[decisions[1].2.index()],
        "public_dropped_from_string"
    );
    assert!(decisions[1].2.describe().contains("public. dropped"));
    let sent_at = out.find("nope").unwrap() + 1;
    assert_eq!(
        r.original_position(sql, sent_at),
        sql.find("nope").unwrap() + 1
    );
    // Inside the replaced qualifier: the start of `public`.
    assert_eq!(r.original_position(sql, 18), 17);
}

#[test]
fn keep_mode_changes_no_string() {
    let map = map().with_public_requalified(false);
    for sql in [
        "SELECT nextval('public.users_id_seq')",
        "SELECT 'public.users'::regclass FROM users",
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(
            r.apply(sql),
            sql.replace("FROM users", "FROM shared_common.users")
        );
    }
}

#[test]
fn without_public_on_the_search_path_only_mapped_names_change() {
    let map = map().with_public_on_search_path(false);
    let sql = "SELECT nextval('public.users_id_seq'), nextval('public.users')";
    let (out, _) = sent(&map, sql);
    assert_eq!(
        out,
        "SELECT nextval('public.users_id_seq'), nextval('shared_common.users')"
    );
}

#[test]
fn a_string_alone_sends_the_statement_to_the_parser() {
    // No mapped word at an identifier boundary: only the string's `public.`.
    let map = map();
    for sql in [
        "SELECT nextval('public.users_id_seq')",
        "SELECT nextval( ' \"public\" .users_id_seq')",
        "select currval('PUBLIC.users_id_seq')",
    ] {
        let r = rewrite_sql_uncached(sql, &map, OnParseError::Tokens);
        assert_eq!(r.outcome, Outcome::Rewritten, "{sql}");
    }
    // And nothing else does.
    for sql in [
        "SELECT 1",
        "SELECT * FROM public.other",
        "SELECT 'x.public.y'",
    ] {
        let r = rewrite_sql_uncached(sql, &map, OnParseError::Tokens);
        assert_eq!(r.outcome, Outcome::NoParseNeeded, "{sql}");
    }
}

#[test]
fn texts_of_one_shape_never_share_a_string_decision() {
    // The shape cache masks literals: a `public.` string must not reuse the
    // rewrite of a same-shaped text without one, nor the other way round.
    let map = map();
    let plain = "SELECT nextval('users_id_seq') FROM users WHERE id = 1";
    let public = "SELECT nextval('public.users_id_seq') FROM users WHERE id = 2";
    let other = "SELECT nextval('other_seq') FROM users WHERE id = 3";
    for _ in 0..2 {
        assert_eq!(
            sent(&map, plain).0,
            "SELECT nextval('users_id_seq') FROM shared_common.users WHERE id = 1"
        );
        assert_eq!(
            sent(&map, public).0,
            "SELECT nextval('users_id_seq') FROM shared_common.users WHERE id = 2"
        );
        assert_eq!(
            sent(&map, other).0,
            "SELECT nextval('other_seq') FROM shared_common.users WHERE id = 3"
        );
    }
}

#[test]
fn a_session_path_or_a_temporary_relation_keeps_public() {
    // The session learns temporary relations of unlisted names from the
    // statements it parses: all CREATEs where a create schema applies (the
    // main database's default).
    let map = map().with_create_schema(Some("public"));
    let sql = "SELECT nextval('public.tmp_seq'), nextval('public.users')";
    let after = "SELECT nextval('public.tmp_seq'), nextval('shared_common.users')";

    // A temporary relation of that name: pg_temp would come first.
    let mut facts = SessionFacts::default();
    let create = "CREATE TEMP TABLE tmp_seq (id int)";
    let mut r = rewrite_sql(create, &map, OnParseError::Tokens);
    facts.apply(&mut r, create);
    let mut r = rewrite_sql(sql, &map, OnParseError::Tokens);
    facts.apply(&mut r, sql);
    assert_eq!(r.apply(sql), after);
    assert_eq!(r.names[0].decision, Decision::AlreadyQualified);

    // The session's own search_path may not hold public.
    let mut facts = SessionFacts {
        own_search_path: true,
        ..SessionFacts::default()
    };
    let mut r = rewrite_sql(sql, &map, OnParseError::Tokens);
    facts.apply(&mut r, sql);
    assert_eq!(r.apply(sql), after);

    // Neither: dropped.
    let mut facts = SessionFacts::default();
    let mut r = rewrite_sql(sql, &map, OnParseError::Tokens);
    facts.apply(&mut r, sql);
    assert_eq!(
        r.apply(sql),
        "SELECT nextval('tmp_seq'), nextval('shared_common.users')"
    );
}

#[test]
fn a_string_read_from_a_masked_copy_stays_as_written() {
    // With standard_conforming_strings off, `\u` is an escape: the session
    // lexes a copy with `xx` in its place, whose name is not the server's.
    let map = map();
    let original = "SELECT nextval('public.\\users'), nextval('public.users')";
    let lexed = crate::rewrite::mask_backslash_escapes(original).unwrap();
    assert_eq!(
        lexed,
        "SELECT nextval('public.xxsers'), nextval('public.users')"
    );
    let mut r = rewrite_sql(&lexed, &map, OnParseError::Tokens);
    assert_eq!(r.edits.len(), 2);
    r.keep_masked_strings(&lexed, original.as_bytes());
    assert_eq!(
        r.apply(original),
        "SELECT nextval('public.\\users'), nextval('shared_common.users')"
    );
}

#[test]
fn the_exact_fallback_reads_the_same_positions() {
    // sqlparser cannot parse BETWEEN SYMMETRIC: PostgreSQL's grammar reads
    // these, with or without a mapped word in the statement.
    let map = map();
    for (sql, expected) in [
        (
            "SELECT nextval('public.users_id_seq') WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
            "SELECT nextval('users_id_seq') WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
        ),
        (
            "INSERT INTO users (id) SELECT pg_catalog.nextval('public.users') WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
            "INSERT INTO shared_common.users (id) SELECT pg_catalog.nextval('shared_common.users') WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
        ),
        (
            "SELECT nextval(('public.users_id_seq'::text)::regclass), nextval('public.users'::varchar) \
             WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
            "SELECT nextval(('users_id_seq'::text)::regclass), nextval('shared_common.users'::varchar) \
             WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
        ),
        (
            "SELECT 'public.users'::regclass, CAST('public.kasi_cache' AS pg_catalog.regclass), \
             'public.user_status'::regtype, has_table_privilege(current_user, 'public.users', 'SELECT') \
             WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
            "SELECT 'shared_common.users'::regclass, CAST('saju_service.kasi_cache' AS pg_catalog.regclass), \
             'shared_common.user_status'::regtype, has_table_privilege(current_user, 'shared_common.users', 'SELECT') \
             WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
        ),
        // Not read: no relation position, an E-string, a typmod, a setting.
        (
            "SELECT 'public.users', E'public.users'::regclass, lower('public.users'), \
             'public.settings'::regclass WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
            "SELECT 'public.users', E'public.users'::regclass, lower('public.users'), \
             'public.settings'::regclass WHERE 2 BETWEEN SYMMETRIC 3 AND 1",
        ),
    ] {
        let r = rewrite_sql(sql, &map, OnParseError::Tokens);
        assert_eq!(r.apply(sql), expected);
        assert!(r.parse_error.is_some(), "{sql}: went to the fallback");
        let kinds = r
            .names
            .iter()
            .filter(|n| {
                matches!(
                    n.decision,
                    Decision::RequalifiedStringFromPublic { .. }
                        | Decision::PublicDroppedFromString
                )
            })
            .count();
        assert_eq!(
            kinds,
            r.edits.len() - usize::from(sql.starts_with("INSERT"))
        );
    }
    // keep: nothing.
    let keep = map.with_public_requalified(false);
    let sql = "SELECT nextval('public.users_id_seq') WHERE 2 BETWEEN SYMMETRIC 3 AND 1";
    assert!(!rewrite_sql(sql, &keep, OnParseError::Tokens).changed());
}
