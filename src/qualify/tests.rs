//! The qualify step against the real rewriter: encodings, literals,
//! session facts, and a rewriter that panics.

use super::*;
use crate::rewrite::{EncodingClass, splice};

#[test]
fn a_panicking_rewriter_refuses_the_statement() {
    fn boom(_: &str, _: &SchemaMap, _: OnParseError) -> Rewrite {
        panic!("scripted rewriter panic")
    }
    let metrics = Metrics::default();
    let map = SchemaMap::new([("s", "users")]);
    match rewrite_text(
        b"select 1",
        &map,
        OnParseError::Tokens,
        &mut SessionFacts::default(),
        boom,
        &Observer::global(&metrics),
        false,
    ) {
        TextRewrite::Rejected { code, .. } => assert_eq!(code, SqlState::Internal),
        other => panic!("{other:?}"),
    }
}

/// Trail bytes that look like a quote, a backslash or a letter must not
/// change how the text lexes, nor hide a table name after them.
#[test]
fn double_byte_text_is_masked_by_whole_characters() {
    let metrics = Metrics::default();
    let map = SchemaMap::new([("shared_common", "users")]);
    for (class, text) in [
        // Shift-JIS 'ソ' is 0x83 0x5C: its trail is a backslash.
        (
            EncodingClass::ShiftJis,
            &b"select E'\x83\x5c' , '\x83\x5c' from users"[..],
        ),
        // UHC '갂' is 0x81 0x41: its trail is the letter A.
        (EncodingClass::DoubleByte, b"select '\x81\x41' from users"),
        // GB18030 four-byte character 0x81 0x30 0x81 0x30.
        (
            EncodingClass::Gb18030,
            b"select '\x81\x30\x81\x30' from users",
        ),
    ] {
        let text = text.to_vec();
        match rewrite_text(
            &text,
            &map,
            OnParseError::Tokens,
            &mut SessionFacts {
                encoding: class,
                ..SessionFacts::default()
            },
            crate::rewrite::rewrite_sql,
            &Observer::global(&metrics),
            false,
        ) {
            TextRewrite::Changed { edits, .. } => {
                let sent = splice(&text, &edits);
                let mut expected = text.clone();
                let at = text.len() - "users".len();
                expected.splice(at..at, b"shared_common.".iter().copied());
                assert_eq!(sent, expected, "{class:?}");
            }
            other => panic!("{class:?}: {other:?}"),
        }
    }
}

#[test]
fn non_utf8_text_is_counted_and_never_corrupted() {
    let metrics = Metrics::default();
    let map = SchemaMap::new([("s", "users")]);
    let text = b"select '\xbb\xe7' from users";
    for class in [EncodingClass::AsciiSafe, EncodingClass::ShiftJis] {
        match rewrite_text(
            text,
            &map,
            OnParseError::Tokens,
            &mut SessionFacts {
                encoding: class,
                ..SessionFacts::default()
            },
            crate::rewrite::rewrite_sql,
            &Observer::global(&metrics),
            false,
        ) {
            TextRewrite::Unchanged => {}
            TextRewrite::Changed { edits, context } => {
                let sent = splice(text, &edits);
                assert!(context.position.is_none());
                assert!(sent.windows(2).any(|w| w == b"\xbb\xe7"));
            }
            TextRewrite::Rejected { .. } => panic!("rejected"),
        }
    }
    assert_eq!(Metrics::get(&metrics.statements_non_utf8), 2);
}

fn send(facts: &mut SessionFacts, sql: &str) -> String {
    let map = SchemaMap::new([("shared_common", "users"), ("saju_service", "kasi_cache")]);
    send_on(&map, facts, sql)
}

/// What the session sends for `sql` with `map` and `facts`.
fn send_on(map: &SchemaMap, facts: &mut SessionFacts, sql: &str) -> String {
    let metrics = Metrics::default();
    match rewrite_text(
        sql.as_bytes(),
        map,
        OnParseError::Tokens,
        facts,
        crate::rewrite::rewrite_sql,
        &Observer::global(&metrics),
        false,
    ) {
        TextRewrite::Unchanged => sql.to_owned(),
        TextRewrite::Changed { edits, .. } => {
            String::from_utf8(splice(sql.as_bytes(), &edits)).unwrap()
        }
        other => panic!("{sql}: {other:?}"),
    }
}

#[test]
fn a_temporary_table_shadows_its_mapped_name_from_its_creation_on() {
    let mut facts = SessionFacts::default();
    assert_eq!(
        send(&mut facts, "SELECT * FROM users"),
        "SELECT * FROM shared_common.users"
    );
    assert_eq!(
        send(
            &mut facts,
            "SELECT * FROM users; CREATE TEMP TABLE users (id int); INSERT INTO users VALUES (1)"
        ),
        "SELECT * FROM shared_common.users; CREATE TEMP TABLE users (id int); INSERT INTO users VALUES (1)"
    );
    assert_eq!(send(&mut facts, "DROP TABLE users"), "DROP TABLE users");
    assert_eq!(
        send(&mut facts, "SELECT * FROM users, kasi_cache"),
        "SELECT * FROM users, saju_service.kasi_cache"
    );
    // Another session is not affected.
    assert_eq!(
        send(&mut SessionFacts::default(), "DROP TABLE users"),
        "DROP TABLE shared_common.users"
    );
    // pg_temp spelling, quoted: the same relation name.
    let mut facts = SessionFacts::default();
    send(&mut facts, "CREATE TABLE pg_temp.\"kasi_cache\" (k text)");
    assert_eq!(
        send(&mut facts, "DELETE FROM kasi_cache"),
        "DELETE FROM kasi_cache"
    );
}

#[test]
fn literals_follow_standard_conforming_strings() {
    let sql = r"INSERT INTO users (note) VALUES ('You\'ve been removed from users list')";
    let mut off = SessionFacts {
        standard_conforming_strings: false,
        ..SessionFacts::default()
    };
    assert_eq!(
        send(&mut off, sql),
        r"INSERT INTO shared_common.users (note) VALUES ('You\'ve been removed from users list')"
    );
    // Off: one literal up to the last quote, no table at all.
    let sql = r"SELECT 'a\', name FROM users --'";
    assert_eq!(send(&mut off, sql), sql);
    assert_eq!(
        send(&mut SessionFacts::default(), sql),
        r"SELECT 'a\', name FROM shared_common.users --'"
    );
}

#[test]
fn creations_follow_the_sessions_own_search_path() {
    let map = SchemaMap::new([("shared_common", "users")]).with_create_schema(Some("public"));
    let mut facts = SessionFacts::default();
    let mut send = |sql: &str| send_on(&map, &mut facts, sql);
    assert_eq!(
        send("CREATE TABLE a (id int)"),
        "CREATE TABLE public.a (id int)"
    );
    assert_eq!(
        send("SET search_path = alt, public; CREATE TABLE b (id int)"),
        "SET search_path = alt, public; CREATE TABLE b (id int)"
    );
    assert_eq!(
        send("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'"),
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'"
    );
    assert_eq!(
        send("CREATE EXTENSION pgcrypto"),
        "CREATE EXTENSION pgcrypto"
    );
    // Mapped names are still qualified under the session's own path.
    assert_eq!(
        send("SELECT * FROM users"),
        "SELECT * FROM shared_common.users"
    );
    assert_eq!(send("RESET search_path"), "RESET search_path");
    assert_eq!(
        send("CREATE TABLE c (id int)"),
        "CREATE TABLE public.c (id int)"
    );
    send("set SEARCH_PATH to alt");
    assert_eq!(send("CREATE TABLE d (id int)"), "CREATE TABLE d (id int)");
    send("DISCARD ALL");
    assert_eq!(
        send("CREATE TABLE e (id int)"),
        "CREATE TABLE public.e (id int)"
    );
    send("SELECT set_config('search_path', 'alt', false)");
    assert_eq!(send("CREATE TABLE f (id int)"), "CREATE TABLE f (id int)");
}

#[test]
fn a_view_over_a_temporary_relation_is_left_to_pg_temp() {
    let map = SchemaMap::new([("shared_common", "users")]).with_create_schema(Some("public"));
    let mut facts = SessionFacts::default();
    let mut send = |sql: &str| send_on(&map, &mut facts, sql);
    assert_eq!(
        send("CREATE TEMP TABLE gtmp (a int)"),
        "CREATE TEMP TABLE gtmp (a int)"
    );
    assert_eq!(
        send("CREATE VIEW gview AS SELECT a FROM gtmp"),
        "CREATE VIEW gview AS SELECT a FROM gtmp"
    );
    // A view over permanent tables still gets the create schema, also
    // after a statement that named the temporary table.
    assert_eq!(
        send("SELECT * FROM gtmp; CREATE VIEW pview AS SELECT * FROM users"),
        "SELECT * FROM gtmp; CREATE VIEW public.pview AS SELECT * FROM shared_common.users"
    );
    // A table made from a temporary one is permanent: create schema.
    assert_eq!(
        send("CREATE TABLE copy AS SELECT * FROM gtmp"),
        "CREATE TABLE public.copy AS SELECT * FROM gtmp"
    );
}

/// `public.` inside relation-name strings: counted under their own
/// decisions, and never taken from a masked copy of the literal (escapes
/// with standard_conforming_strings off, non-UTF-8 characters).
#[test]
fn public_strings_are_counted_and_never_read_from_a_masked_literal() {
    use crate::rewrite::Decision;
    let metrics = Metrics::default();
    let map = SchemaMap::new([("shared_common", "users")]);
    let sent = |text: &[u8], facts: &mut SessionFacts| match rewrite_text(
        text,
        &map,
        OnParseError::Tokens,
        facts,
        crate::rewrite::rewrite_sql,
        &Observer::global(&metrics),
        false,
    ) {
        TextRewrite::Changed { edits, .. } => splice(text, &edits),
        TextRewrite::Unchanged => text.to_vec(),
        other => panic!("{other:?}"),
    };
    let text = b"select nextval('public.users_id_seq'), 'public.users'::regclass";
    assert_eq!(
        sent(text, &mut SessionFacts::default()),
        b"select nextval('users_id_seq'), 'shared_common.users'::regclass"
    );
    let count = |d: Decision| metrics.names_by_decision[d.index()].load(Ordering::Relaxed);
    assert_eq!(count(Decision::PublicDroppedFromString), 1);
    assert_eq!(
        count(Decision::RequalifiedStringFromPublic { schema: "x".into() }),
        1
    );

    // `\u` is an escape with the setting off: the server reads `public.users`.
    let text = b"select nextval('public.\\users'), nextval('public.users')";
    let mut off = SessionFacts {
        standard_conforming_strings: false,
        ..SessionFacts::default()
    };
    assert_eq!(
        sent(text, &mut off),
        b"select nextval('public.\\users'), nextval('shared_common.users')"
    );
    // The same text with the setting on has no escape: a backslash in a
    // name is not read.
    assert_eq!(
        sent(text, &mut SessionFacts::default()),
        b"select nextval('public.\\users'), nextval('shared_common.users')"
    );

    // EUC-KR '가' (0xB0 0xA1) is masked as letters: left as written.
    let text = b"select nextval('public.\xb0\xa1_seq'), nextval('public.users')";
    assert_eq!(
        sent(text, &mut SessionFacts::default()),
        b"select nextval('public.\xb0\xa1_seq'), nextval('shared_common.users')".to_vec()
    );
}
