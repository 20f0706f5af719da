//! Relay bookkeeping: position mapping, refusals, accounting of server
//! frames, encoding tracking and read buffers.

use bytes::BufMut;

use super::*;
use crate::metrics::Metrics;
use crate::protocol::{ErrorFields, SqlState};
use crate::qualify::Rewritten;
use crate::rewrite::{Edit, EncodingClass, Outcome, Rewrite};

fn tracker() -> Tracker {
    Tracker::new(true)
}

/// `select * from users where idd = 1` sent as
/// `select * from shared_common.users where idd = 1`.
fn rewritten() -> StatementContext {
    let original = "select * from users where idd = 1".to_owned();
    let rewrite = Rewrite {
        outcome: Outcome::Rewritten,
        edits: vec![Edit {
            offset: 14,
            replaced: 0,
            insert: "shared_common.".into(),
        }],
        names: vec![],
        parse_error: None,
        fallback_cause: None,
        rejected_table: None,
    };
    StatementContext::Rewritten(Rewritten {
        position: Some(rewrite.position_shift(&original)),
        schemas: Default::default(),
        show_tags: None,
    })
}

fn server_frame(t: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![t];
    f.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn error_at(position: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    for (c, v) in [
        (b'S', "ERROR"),
        (b'C', "42703"),
        (b'M', "column \"idd\" does not exist"),
        (b'P', position),
    ] {
        body.put_u8(c);
        body.extend_from_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    server_frame(b'E', &body)
}

fn position_of(frame: &[u8]) -> Option<usize> {
    ErrorFields::parse(frame).unwrap().position()
}

#[test]
fn simple_query_error_position_moves_back_to_the_client_text() {
    let metrics = Metrics::default();
    let mut t = tracker();
    t.pending.push_back(Pending::Query(rewritten()));
    // `idd` is at 41 in the sent text, 27 in the client's.
    let fixed = t.on_server_frame(b'E', &error_at("41"), &metrics).unwrap();
    assert_eq!(position_of(&fixed), Some(27));
    assert_eq!(Metrics::get(&metrics.error_positions_corrected), 1);
    // A position before the insertion needs no new frame.
    assert!(t.on_server_frame(b'E', &error_at("3"), &metrics).is_none());
    t.on_server_frame(b'Z', b"Z\0\0\0\x05I", &metrics);
    assert!(t.is_idle());
}

#[test]
fn pipelined_batch_attributes_the_error_to_the_failing_parse() {
    let metrics = Metrics::default();
    let mut t = tracker();
    // P1 B1 E1 P2(rewritten) B2 E2 S, then a simple Query behind it.
    t.pending.extend([
        Pending::Parse(StatementContext::Plain),
        Pending::Bind,
        Pending::Execute,
        Pending::Parse(rewritten()),
        Pending::Bind,
        Pending::Execute,
        Pending::Sync,
        Pending::Query(StatementContext::Plain),
    ]);
    for (tag, body) in [(b'1', &b""[..]), (b'2', b""), (b'C', b"SELECT 1\0")] {
        assert!(
            t.on_server_frame(tag, &server_frame(tag, body), &metrics)
                .is_none()
        );
    }
    let fixed = t.on_server_frame(b'E', &error_at("41"), &metrics).unwrap();
    assert_eq!(position_of(&fixed), Some(27));
    // The server skips B2 E2; ReadyForQuery ends the batch at the Sync.
    t.on_server_frame(b'Z', b"Z\0\0\0\x05I", &metrics);
    assert!(matches!(
        t.pending.front(),
        Some(Pending::Query(StatementContext::Plain))
    ));
    t.on_server_frame(b'Z', b"Z\0\0\0\x05I", &metrics);
    assert!(t.is_idle());
}

#[test]
fn execute_error_after_parse_complete_is_not_corrected() {
    let metrics = Metrics::default();
    let mut t = tracker();
    t.pending.extend([
        Pending::Parse(rewritten()),
        Pending::Bind,
        Pending::Execute,
        Pending::Sync,
    ]);
    t.on_server_frame(b'1', b"1\0\0\0\x04", &metrics);
    t.on_server_frame(b'2', b"2\0\0\0\x04", &metrics);
    assert!(t.on_server_frame(b'E', &error_at("41"), &metrics).is_none());
}

#[test]
fn refused_statement_error_is_replaced_by_0a000() {
    let metrics = Metrics::default();
    let mut t = tracker();
    t.pending
        .push_back(Pending::Query(StatementContext::Refused {
            code: SqlState::FeatureNotSupported,
            message: "no".into(),
        }));
    let ours = t.on_server_frame(b'E', &error_at("1"), &metrics).unwrap();
    let e = ErrorFields::parse(&ours).unwrap();
    assert_eq!(e.code(), Some(&b"0A000"[..]));
    assert_eq!(e.get(b'S'), Some(&b"ERROR"[..]));
    // The server's ReadyForQuery (with its real status) still follows.
    t.on_server_frame(b'Z', b"Z\0\0\0\x05E", &metrics);
    assert_eq!(t.status, Some(b'E'));
    assert!(t.pending.is_empty());
}

#[test]
fn describe_and_function_call_are_tracked() {
    let metrics = Metrics::default();
    let mut t = tracker();
    t.pending
        .extend([Pending::Describe, Pending::Sync, Pending::FunctionCall]);
    t.on_server_frame(b't', b"t\0\0\0\x06\0\0", &metrics);
    assert!(matches!(t.pending.front(), Some(Pending::Describe)));
    t.on_server_frame(b'n', b"n\0\0\0\x04", &metrics);
    t.on_server_frame(b'Z', b"Z\0\0\0\x05I", &metrics);
    assert!(matches!(t.pending.front(), Some(Pending::FunctionCall)));
    t.on_server_frame(b'V', b"V\0\0\0\x08\xff\xff\xff\xff", &metrics);
    t.on_server_frame(b'Z', b"Z\0\0\0\x05I", &metrics);
    assert!(t.is_idle());
}

#[test]
fn client_encoding_is_tracked_from_parameter_status() {
    let metrics = Metrics::default();
    let mut t = tracker();
    t.on_server_frame(
        b'S',
        &server_frame(b'S', b"client_encoding\0SJIS\0"),
        &metrics,
    );
    assert_eq!(t.encoding, EncodingClass::ShiftJis);
    t.on_server_frame(
        b'S',
        &server_frame(b'S', b"client_encoding\0EUC_KR\0"),
        &metrics,
    );
    assert_eq!(t.encoding, EncodingClass::AsciiSafe);
}

#[test]
fn malformed_server_frames_are_forwarded_not_fatal() {
    let metrics = Metrics::default();
    let mut t = tracker();
    t.pending.push_back(Pending::Query(rewritten()));
    assert!(t.on_server_frame(b'E', b"E\0\0\0\x05S", &metrics).is_none());
    assert!(t.on_server_frame(b'Z', b"Z\0\0\0\x05?", &metrics).is_none());
    assert_eq!(t.pending.len(), 1);
}

#[test]
fn prepare_read_grows_in_steps_and_shrinks_when_empty() {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    prepare_read(&mut buf, 100 << 20);
    assert!(buf.capacity() >= GROW_STEP && buf.capacity() < 4 * GROW_STEP);
    prepare_read(&mut buf, 0);
    assert!(buf.capacity() <= SHRINK_ABOVE);
}

#[test]
fn only_authentication_ok_marks_the_session_authenticated() {
    let metrics = Metrics::default();
    let mut t = tracker();
    t.authenticated = false;
    // AuthenticationSASL (10) and SASLFinal (12) are not a login yet.
    for code in [10i32, 12] {
        let frame = server_frame(b'R', &code.to_be_bytes());
        t.on_server_frame(b'R', &frame, &metrics);
        assert!(!t.authenticated, "code {code}");
    }
    let ok = server_frame(b'R', &0i32.to_be_bytes());
    t.on_server_frame(b'R', &ok, &metrics);
    assert!(t.authenticated);
}

/// The answers to a BEGIN the proxy answered itself are dropped; should
/// the server refuse it, the session ends with the server's error instead
/// of relaying the client's request as if a transaction had begun.
#[test]
fn a_deferred_begin_is_answered_silently_or_ends_the_session() {
    let metrics = Metrics::default();
    let mut t = tracker();
    let begin = |t: &mut Tracker| {
        for _ in 0..3 {
            t.pending.push_back(Pending::Silent(Silent::Begin));
        }
        t.pending.push_back(Pending::Query(StatementContext::Plain));
    };
    begin(&mut t);
    for frame in [
        server_frame(b'1', b""),
        server_frame(b'2', b""),
        server_frame(b'C', b"BEGIN\0"),
    ] {
        let dropped = t.on_server_frame(frame[0], &frame, &metrics);
        assert_eq!(dropped.as_deref(), Some(&b""[..]), "dropped: {frame:?}");
    }
    // The client's own answers pass.
    assert!(
        t.on_server_frame(b'C', &server_frame(b'C', b"SELECT 1\0"), &metrics)
            .is_none()
    );
    t.on_server_frame(b'Z', b"Z\0\0\0\x05T", &metrics);
    assert!(t.is_idle() && t.begin_failed.is_none());

    let mut t = tracker();
    begin(&mut t);
    t.on_server_frame(b'1', &server_frame(b'1', b""), &metrics);
    let error = error_at("1");
    assert_eq!(
        t.on_server_frame(b'E', &error, &metrics).as_deref(),
        Some(&b""[..])
    );
    assert_eq!(t.begin_failed.as_deref(), Some(&error[..]));
    assert!(matches!(
        t.pending.front(),
        Some(Pending::Query(StatementContext::Plain))
    ));
}
