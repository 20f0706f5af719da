//! Properties over generated input: the frame codec, the startup parser and
//! the rewriter never panic, codecs round-trip, and the rewriter's output
//! differs from its input only by schema prefixes. A modest number of cases
//! runs in `cargo test`; `PROPTEST_CASES=20000 cargo test --test properties`
//! is the longer run.

use bytes::BytesMut;
use heal7_proxy::protocol::{self, Frame, PROTOCOL_3_0, StartupMessage, StartupPacket};
use heal7_proxy::rewrite::{OnParseError, SchemaMap, rewrite_sql};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// SQL-ish text: keywords, mapped and unmapped names (bare, quoted,
/// qualified), literals, comments and punctuation, in any order.
fn sqlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("SELECT"),
        Just("FROM"),
        Just("JOIN"),
        Just("WHERE"),
        Just("INSERT INTO"),
        Just("UPDATE"),
        Just("DELETE FROM"),
        Just("WITH"),
        Just("AS"),
        Just("CREATE TEMP TABLE"),
        Just("users"),
        Just("Users"),
        Just("\"users\""),
        Just("public.users"),
        Just("shared_common.users"),
        Just("kasi_cache"),
        Just("attachments"),
        Just("legacy_log"),
        Just("u"),
        Just("'users'"),
        Just("E'a\\'b'"),
        Just("$$users$$"),
        Just("42"),
        Just("*"),
        Just(","),
        Just("("),
        Just(")"),
        Just("="),
        Just("."),
        Just(";"),
        Just("-- users\n"),
        Just("/* users */"),
        Just("\n"),
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.join(" "))
}

fn map() -> SchemaMap {
    SchemaMap::new([
        ("shared_common", "users"),
        ("shared_common", "attachments"),
        ("saju_service", "kasi_cache"),
    ])
}

/// `schema.`: a plain or quoted identifier, then a dot.
fn is_schema_prefix(insert: &str) -> bool {
    let Some(name) = insert.strip_suffix('.') else {
        return false;
    };
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    let quoted = name.len() >= 2
        && name.starts_with('"')
        && name.ends_with('"')
        && !name[1..name.len() - 1].replace("\"\"", "").contains('"');
    plain || quoted
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_decoding_never_panics_and_consumes_whole_frames(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = Frame::decode(&mut buf, 1 << 16) {
            prop_assert!(frame.bytes.len() >= 5);
            prop_assert_eq!(frame.bytes[0], frame.tag);
        }
    }

    #[test]
    fn a_query_frame_round_trips(text in prop::collection::vec(1u8..=255, 0..256)) {
        let mut out = BytesMut::new();
        protocol::encode_query(&mut out, &text);
        let frame = Frame::decode(&mut out, 1 << 16).unwrap().expect("a whole frame");
        prop_assert!(out.is_empty());
        let view = protocol::QueryView::parse(&frame.bytes).unwrap();
        prop_assert_eq!(view.query, &text[..]);
    }

    #[test]
    fn startup_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = protocol::decode_startup(&mut buf);
    }

    #[test]
    fn a_startup_message_round_trips(
        params in prop::collection::vec(("[a-z_]{1,12}", prop::collection::vec(1u8..=255, 0..24)), 0..6)
    ) {
        let message = StartupMessage {
            version: PROTOCOL_3_0,
            params: params
                .iter()
                .map(|(k, v)| (bytes::Bytes::from(k.clone()), bytes::Bytes::from(v.clone())))
                .collect(),
        };
        let mut buf = BytesMut::from(&message.encode()[..]);
        match protocol::decode_startup(&mut buf).unwrap() {
            Some(StartupPacket::Startup(decoded)) => prop_assert_eq!(decoded.params, message.params),
            other => prop_assert!(false, "{other:?}"),
        }
        prop_assert!(buf.is_empty());
    }

    /// The rewriter only ever inserts `schema.` before a name, or replaces
    /// a `public.` qualifier with the mapped schema: removing what it
    /// inserted gives back the input, byte for byte.
    #[test]
    fn the_rewriter_only_adds_schema_prefixes(sql in sqlish()) {
        for policy in [OnParseError::Tokens, OnParseError::Reject, OnParseError::Passthrough] {
            let rewrite = rewrite_sql(&sql, &map(), policy);
            let mut restored = String::new();
            let mut at = 0;
            for edit in &rewrite.edits {
                prop_assert!(edit.offset >= at && sql.is_char_boundary(edit.offset));
                prop_assert!(is_schema_prefix(&edit.insert), "{sql}: inserts {:?}", edit.insert);
                let replaced = &sql[edit.offset..edit.offset + edit.replaced];
                prop_assert!(
                    replaced.is_empty() || replaced.eq_ignore_ascii_case("public."),
                    "{sql}: replaced {replaced:?}"
                );
                restored.push_str(&sql[at..edit.offset]);
                restored.push_str(replaced);
                at = edit.offset + edit.replaced;
            }
            restored.push_str(&sql[at..]);
            prop_assert_eq!(&restored, &sql);
            // What it sends needs nothing more: a second pass changes nothing.
            let sent = rewrite.apply(&sql);
            let again = rewrite_sql(&sent, &map(), policy);
            prop_assert!(again.edits.is_empty(), "{sql}\n -> {sent}\n -> {:?}", again.edits);
        }
    }
}
