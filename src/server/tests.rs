//! The server and a session against a scripted fake upstream: no Postgres
//! needed.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use std::net::SocketAddr;

use super::*;
use crate::config::Config;
use raw_wire::read_exact_vec;

#[path = "../../tests/support/raw_wire.rs"]
mod raw_wire;
use crate::metrics::StatementOutcome;
use crate::protocol::{self, ErrorFields, Frame, StartupMessage, StartupPacket};

const MAX: usize = 1 << 20;

fn config(upstream_port: u16) -> Config {
    let yaml = format!(
        "proxy:\n  max_message_size: 4096\ndatabases:\n  heal7:\n    host: 127.0.0.1\n    port: {upstream_port}\n    schemas:\n      shared_common: {{tables: [users]}}\n    aliases:\n      heal7_saju: {{default_schema: shared_common}}\n"
    );
    Config::from_yaml(&yaml, "test").unwrap()
}

async fn start_proxy(config: Config) -> (SocketAddr, ProxyState, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ProxyState::new(config);
    let shutdown = CancellationToken::new();
    tokio::spawn(run(listener, state.clone(), shutdown.clone()));
    (addr, state, shutdown)
}

/// A StartupMessage of text parameters.
fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let params: Vec<(&str, &[u8])> = params.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    raw_wire::startup_packet(&params)
}

/// AuthenticationOk, BackendKeyData(42, 7), ParameterStatus, ReadyForQuery.
fn server_hello() -> Vec<u8> {
    let mut b = BytesMut::new();
    b.extend_from_slice(b"R\0\0\0\x08\0\0\0\0");
    b.extend_from_slice(b"K\0\0\0\x0c\0\0\0\x2a\0\0\0\x07");
    b.extend_from_slice(b"S\0\0\0\x1bclient_encoding\0EUC_KR\0");
    protocol::encode_ready_for_query(&mut b, b'I');
    b.to_vec()
}

async fn read_startup(s: &mut TcpStream) -> StartupMessage {
    let mut buf = BytesMut::new();
    loop {
        if let Some(StartupPacket::Startup(m)) = protocol::decode_startup(&mut buf).unwrap() {
            return m;
        }
        assert!(s.read_buf(&mut buf).await.unwrap() > 0, "eof in startup");
    }
}

async fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Frame {
    loop {
        if let Some(f) = Frame::decode(buf, MAX).unwrap() {
            return f;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_buf(buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "eof");
    }
}

#[tokio::test]
async fn alias_startup_is_rebuilt_and_frames_relay_byte_for_byte() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (proxy, state, shutdown) = start_proxy(config(upstream.local_addr().unwrap().port())).await;

    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(&startup_packet(&[
            ("user", "app"),
            ("database", "heal7_saju"),
            ("options", "-c work_mem=8MB"),
            ("application_name", "t"),
        ]))
        .await
        .unwrap();
    let (mut server, _) = upstream.accept().await.unwrap();
    let startup = read_startup(&mut server).await;
    let keys: Vec<&[u8]> = startup.params.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(
        keys,
        [&b"user"[..], b"database", b"options", b"application_name"]
    );
    assert_eq!(startup.get("database"), Some(&b"heal7"[..]));
    assert_eq!(
        startup.get("options"),
        Some(&br"-c work_mem=8MB -c search_path=shared_common,\ public"[..])
    );

    let hello = server_hello();
    server.write_all(&hello).await.unwrap();
    assert_eq!(read_exact_vec(&mut client, hello.len()).await, hello);
    assert_eq!(
        state.cancel_keys.lookup((42, 7)).map(|t| t.addr.port()),
        Some(upstream.local_addr().unwrap().port())
    );

    // Frames the proxy does not rewrite arrive unchanged, in order,
    // including FunctionCall, COPY data and non-UTF-8 text.
    let mut frames = BytesMut::new();
    protocol::encode_query(&mut frames, b"select '\xbb\xe7' from legacy_log");
    frames.extend_from_slice(b"F\0\0\0\x0e\0\0\x05\x75\0\0\0\0\0\0");
    frames.extend_from_slice(b"d\0\0\0\x07abc");
    frames.extend_from_slice(b"c\0\0\0\x04");
    frames.extend_from_slice(b"H\0\0\0\x04");
    client.write_all(&frames).await.unwrap();
    assert_eq!(
        read_exact_vec(&mut server, frames.len()).await,
        frames.to_vec()
    );
    assert_eq!(Metrics::get(&state.metrics.statements_non_utf8), 1);

    // Server answers pass back unchanged.
    let mut answer = BytesMut::new();
    answer.extend_from_slice(b"C\0\0\0\x0dSELECT 1\0");
    protocol::encode_ready_for_query(&mut answer, b'T');
    server.write_all(&answer).await.unwrap();
    assert_eq!(
        read_exact_vec(&mut client, answer.len()).await,
        answer.to_vec()
    );

    // A client that leaves closes its server connection and its key.
    drop(client);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(state.cancel_keys.is_empty());
    shutdown.cancel();
}

#[tokio::test]
async fn cancel_request_reaches_the_sessions_server_and_unknown_keys_are_dropped() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (proxy, state, shutdown) = start_proxy(config(upstream.local_addr().unwrap().port())).await;
    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let (mut server, _) = upstream.accept().await.unwrap();
    read_startup(&mut server).await;
    let hello = server_hello();
    server.write_all(&hello).await.unwrap();
    read_exact_vec(&mut client, hello.len()).await;

    let mut cancel = BytesMut::new();
    cancel.put_i32(16);
    cancel.put_i32(protocol::CANCEL_REQUEST_CODE);
    cancel.put_i32(42);
    cancel.put_i32(7);
    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(&cancel).await.unwrap();
    let (mut cancel_conn, _) = tokio::time::timeout(Duration::from_secs(5), upstream.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_exact_vec(&mut cancel_conn, 16).await, cancel.to_vec());
    assert_eq!(Metrics::get(&state.metrics.cancels_forwarded), 1);

    let mut unknown = cancel.clone();
    unknown[12..16].copy_from_slice(&8i32.to_be_bytes());
    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(&unknown).await.unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(Metrics::get(&state.metrics.cancels_unknown), 1);
    shutdown.cancel();
}

/// With a peer id, the client gets the server's pid and a secret of the
/// proxy's own; a cancel with it reaches the server with the server's
/// secret, and another peer's key is sent to that peer, marked forwarded.
#[tokio::test]
async fn with_a_peer_id_clients_get_the_proxys_key_and_other_peers_keys_go_to_them() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let yaml = format!(
        "proxy:\n  peer_id: 1\n  peers: {{1: \"127.0.0.1:1\", 2: \"{}\"}}\ndatabases:\n  heal7:\n    host: 127.0.0.1\n    port: {}\n",
        peer.local_addr().unwrap(),
        upstream.local_addr().unwrap().port()
    );
    let (proxy, state, shutdown) = start_proxy(Config::from_yaml(&yaml, "test").unwrap()).await;
    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let (mut server, _) = upstream.accept().await.unwrap();
    read_startup(&mut server).await;
    let hello = server_hello();
    server.write_all(&hello).await.unwrap();
    let got = read_exact_vec(&mut client, hello.len()).await;
    let key = protocol::BackendKeyData::parse(&got[9..22]).unwrap();
    assert_eq!(key.pid, 42, "the server's pid is kept");
    assert_ne!(key.secret, 7, "the server's secret stays with the proxy");
    assert_eq!((key.secret as u32) >> 27, 1, "the secret carries peer id 1");
    assert_eq!((&got[..9], &got[22..]), (&hello[..9], &hello[22..]));

    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(&protocol::encode_cancel_request(42, key.secret))
        .await
        .unwrap();
    let (mut cancel_conn, _) = tokio::time::timeout(Duration::from_secs(5), upstream.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read_exact_vec(&mut cancel_conn, 16).await,
        protocol::encode_cancel_request(42, 7)
    );

    let theirs = (2u32 << 27 | 12345) as i32;
    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(&protocol::encode_cancel_request(42, theirs))
        .await
        .unwrap();
    let (mut at_peer, _) = tokio::time::timeout(Duration::from_secs(5), peer.accept())
        .await
        .unwrap()
        .unwrap();
    let forwarded = (theirs as u32 | 1 << 31) as i32;
    assert_eq!(
        read_exact_vec(&mut at_peer, 16).await,
        protocol::encode_cancel_request(42, forwarded)
    );
    // Sent back to us as forwarded, a key that is not ours stops here.
    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(&protocol::encode_cancel_request(42, forwarded))
        .await
        .unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert_eq!(Metrics::get(&state.metrics.cancels_forwarded), 1);
    assert_eq!(Metrics::get(&state.metrics.cancels_to_peer), 1);
    assert_eq!(Metrics::get(&state.metrics.cancels_unknown_peer), 1);
    shutdown.cancel();
}

/// The peer cancel address serves a forwarded CancelRequest and closes
/// anything else unanswered.
#[tokio::test]
async fn the_peer_cancel_address_serves_cancels_only() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let yaml = format!(
        "proxy:\n  peer_id: 3\ndatabases:\n  heal7:\n    port: {}\n",
        upstream.local_addr().unwrap().port()
    );
    let state = ProxyState::new(Config::from_yaml(&yaml, "test").unwrap());
    let key = state
        .cancel_keys
        .register((42, 7), upstream.local_addr().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(run_cancel_listener(
        listener,
        state.clone(),
        shutdown.clone(),
    ));

    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "no answer to a startup packet");

    let forwarded = (key.1 as u32 | 1 << 31) as i32;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&protocol::encode_cancel_request(42, forwarded))
        .await
        .unwrap();
    let (mut at_server, _) = tokio::time::timeout(Duration::from_secs(5), upstream.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read_exact_vec(&mut at_server, 16).await,
        protocol::encode_cancel_request(42, 7)
    );
    shutdown.cancel();
}

async fn fatal_of(client: &mut TcpStream) -> (String, String) {
    let mut buf = BytesMut::new();
    let f = read_frame(client, &mut buf).await;
    assert_eq!(f.tag, b'E');
    let e = ErrorFields::parse(&f.bytes).unwrap();
    assert_eq!(e.get(b'S'), Some(&b"FATAL"[..]));
    (
        String::from_utf8_lossy(e.code().unwrap()).into_owned(),
        String::from_utf8_lossy(e.get(b'M').unwrap()).into_owned(),
    )
}

#[tokio::test]
async fn unreachable_upstream_is_08006_naming_the_address() {
    // A port nobody listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (proxy, state, shutdown) = start_proxy(config(port)).await;
    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let (code, message) = fatal_of(&mut client).await;
    assert_eq!(code, "08006");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert_eq!(Metrics::get(&state.metrics.upstream_connect_failures), 1);
    shutdown.cancel();
}

#[tokio::test]
async fn bad_frames_are_08p01_and_other_sessions_go_on() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (proxy, state, shutdown) = start_proxy(config(upstream.local_addr().unwrap().port())).await;

    // Garbage instead of a startup packet.
    let mut garbage = TcpStream::connect(proxy).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(fatal_of(&mut garbage).await.0, "08P01");

    // SSLRequest is refused with 'N', then the session goes on.
    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    assert_eq!(read_exact_vec(&mut client, 1).await, b"N");
    client
        .write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let (mut server, _) = upstream.accept().await.unwrap();
    read_startup(&mut server).await;
    let hello = server_hello();
    server.write_all(&hello).await.unwrap();
    read_exact_vec(&mut client, hello.len()).await;

    // A frame over the cap (4096 here), from the header alone.
    client.write_all(b"Q\0\x01\0\0").await.unwrap();
    assert_eq!(fatal_of(&mut client).await.0, "08P01");
    // The garbage startup above counts too (7e1cfba), then this frame.
    assert_eq!(Metrics::get(&state.metrics.frames_rejected), 2);

    // The proxy still serves others; a server frame over the cap ends
    // that session with a FATAL to the client.
    let mut other = TcpStream::connect(proxy).await.unwrap();
    other
        .write_all(&startup_packet(&[
            ("user", "app"),
            ("database", "postgres"),
        ]))
        .await
        .unwrap();
    let (mut server2, _) = upstream.accept().await.unwrap();
    let s2 = read_startup(&mut server2).await;
    assert_eq!(s2.get("database"), Some(&b"postgres"[..]));
    server2.write_all(&hello).await.unwrap();
    read_exact_vec(&mut other, hello.len()).await;
    server2.write_all(b"D\0\x01\0\0").await.unwrap();
    let (code, message) = fatal_of(&mut other).await;
    assert_eq!(code, "08006");
    assert!(message.contains("upstream"), "{message}");
    shutdown.cancel();
}

#[tokio::test]
async fn shutdown_tells_idle_clients_57p01_and_run_returns() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let state = ProxyState::new(config(upstream.local_addr().unwrap().port()));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run(listener, state.clone(), shutdown.clone()));

    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let (mut server, _) = upstream.accept().await.unwrap();
    read_startup(&mut server).await;
    let hello = server_hello();
    server.write_all(&hello).await.unwrap();
    read_exact_vec(&mut client, hello.len()).await;
    assert_eq!(Metrics::get(&state.metrics.clients_active), 1);

    shutdown.cancel();
    assert_eq!(fatal_of(&mut client).await.0, "57P01");
    // The server is told to terminate.
    assert_eq!(read_exact_vec(&mut server, 5).await, b"X\0\0\0\x04");
    tokio::time::timeout(Duration::from_secs(2), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(Metrics::get(&state.metrics.clients_active), 0);
    assert_eq!(Metrics::get(&state.metrics.clients_total), 1);
}

/// Qualifies ` users` and refuses any text containing REFUSE, so the
/// relay's side of rewriting is tested apart from the real rules.
fn scripted_rewriter(
    sql: &str,
    _map: &crate::rewrite::SchemaMap,
    _policy: crate::rewrite::OnParseError,
) -> crate::rewrite::Rewrite {
    use crate::rewrite::{Edit, Outcome, Rewrite};
    let mut r = Rewrite {
        outcome: Outcome::NoParseNeeded,
        edits: vec![],
        names: vec![],
        parse_error: None,
        fallback_cause: None,
        rejected_table: None,
    };
    if sql.contains("REFUSE") {
        r.outcome = Outcome::Rejected;
        r.rejected_table = Some("users".into());
        r.parse_error = Some("scripted parse error".into());
    } else if let Some(at) = sql.find(" users") {
        r.outcome = Outcome::Rewritten;
        r.edits.push(Edit {
            offset: at + 1,
            replaced: 0,
            insert: "shared_common.".into(),
        });
    }
    r
}

fn server_error(code: &str, position: &str) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(b'E');
    b.put_i32(0);
    for (c, v) in [
        (b'S', "ERROR"),
        (b'C', code),
        (b'M', "scripted"),
        (b'P', position),
    ] {
        b.put_u8(c);
        b.extend_from_slice(v.as_bytes());
        b.put_u8(0);
    }
    b.put_u8(0);
    let len = (b.len() - 1) as i32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b
}

#[tokio::test]
async fn rewritten_and_refused_statements_in_simple_and_extended_protocol() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let mut state = ProxyState::new(config(upstream.local_addr().unwrap().port()));
    state.rewriter = scripted_rewriter;
    let shutdown = CancellationToken::new();
    tokio::spawn(run(listener, state.clone(), shutdown.clone()));

    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let (mut server, _) = upstream.accept().await.unwrap();
    read_startup(&mut server).await;
    let hello = server_hello();
    server.write_all(&hello).await.unwrap();
    read_exact_vec(&mut client, hello.len()).await;
    let (mut from_client, mut from_server) = (BytesMut::new(), BytesMut::new());

    // Simple Query: rewritten; the server's error position (41 in the
    // sent text) comes back as 27 in the client's.
    let mut q = BytesMut::new();
    protocol::encode_query(&mut q, b"select * from users where idd = 1");
    client.write_all(&q).await.unwrap();
    let f = read_frame(&mut server, &mut from_client).await;
    assert_eq!(
        protocol::QueryView::parse(&f.bytes).unwrap().query,
        b"select * from shared_common.users where idd = 1"
    );
    let mut answer = server_error("42703", "41");
    protocol::encode_ready_for_query(&mut answer, b'I');
    server.write_all(&answer).await.unwrap();
    let e = read_frame(&mut client, &mut from_server).await;
    assert_eq!(ErrorFields::parse(&e.bytes).unwrap().position(), Some(27));
    assert_eq!(read_frame(&mut client, &mut from_server).await.tag, b'Z');

    // Simple Query refused: the server sees SQL that fails to parse, the
    // client gets 0A000 naming the table, then the server's ReadyForQuery.
    let mut q = BytesMut::new();
    protocol::encode_query(&mut q, b"REFUSE users");
    client.write_all(&q).await.unwrap();
    let f = read_frame(&mut server, &mut from_client).await;
    assert_eq!(
        protocol::QueryView::parse(&f.bytes).unwrap().query,
        b"heal7_proxy_refused_this_statement"
    );
    let mut answer = server_error("42601", "1");
    protocol::encode_ready_for_query(&mut answer, b'T');
    server.write_all(&answer).await.unwrap();
    let e = read_frame(&mut client, &mut from_server).await;
    let fields = ErrorFields::parse(&e.bytes).unwrap();
    assert_eq!(fields.code(), Some(&b"0A000"[..]));
    assert!(String::from_utf8_lossy(fields.get(b'M').unwrap()).contains("users"));
    let z = read_frame(&mut client, &mut from_server).await;
    assert_eq!(&z.bytes[..], b"Z\0\0\0\x05T");

    // Extended protocol, pipelined in one write: a rewritten Parse, then
    // a refused named Parse; Bind/Execute/Sync pass byte for byte.
    let types = [0u8, 1, 0, 0, 0, 23];
    let tail = b"B\0\0\0\x0c\0\0\0\0\0\0\0\0E\0\0\0\x09\0\0\0\0\0S\0\0\0\x04";
    let mut batch = BytesMut::new();
    protocol::encode_parse(
        &mut batch,
        b"",
        b"select * from users where idd = $1",
        &types,
    );
    batch.extend_from_slice(tail);
    protocol::encode_parse(&mut batch, b"s1", b"REFUSE users", &types);
    batch.extend_from_slice(tail);
    client.write_all(&batch).await.unwrap();

    let p1 = read_frame(&mut server, &mut from_client).await;
    let v = protocol::ParseView::parse(&p1.bytes).unwrap();
    assert_eq!(v.query, b"select * from shared_common.users where idd = $1");
    assert_eq!(v.param_types, types);
    assert_eq!(
        read_exact_vec_buffered(&mut server, &mut from_client, tail.len()).await,
        tail
    );
    let p2 = read_frame(&mut server, &mut from_client).await;
    let v = protocol::ParseView::parse(&p2.bytes).unwrap();
    assert_eq!(
        (v.name, v.query),
        (&b"s1"[..], &b"heal7_proxy_refused_this_statement"[..])
    );
    assert_eq!(v.param_types, types);
    assert_eq!(
        read_exact_vec_buffered(&mut server, &mut from_client, tail.len()).await,
        tail
    );

    // First batch fails at its Parse (position 41 -> 27), second at the
    // refused Parse (-> 0A000).
    let mut answer = server_error("42703", "41");
    protocol::encode_ready_for_query(&mut answer, b'I');
    answer.extend_from_slice(&server_error("42601", "1"));
    protocol::encode_ready_for_query(&mut answer, b'I');
    server.write_all(&answer).await.unwrap();
    let e = read_frame(&mut client, &mut from_server).await;
    assert_eq!(ErrorFields::parse(&e.bytes).unwrap().position(), Some(27));
    assert_eq!(read_frame(&mut client, &mut from_server).await.tag, b'Z');
    let e = read_frame(&mut client, &mut from_server).await;
    assert_eq!(
        ErrorFields::parse(&e.bytes).unwrap().code(),
        Some(&b"0A000"[..])
    );
    assert_eq!(read_frame(&mut client, &mut from_server).await.tag, b'Z');

    let m = &state.metrics;
    assert_eq!(Metrics::get(m.statements(StatementOutcome::Rewritten)), 2);
    assert_eq!(Metrics::get(m.statements(StatementOutcome::Rejected)), 2);
    assert_eq!(Metrics::get(&m.error_positions_corrected), 2);
    shutdown.cancel();
}

async fn read_exact_vec_buffered(s: &mut TcpStream, buf: &mut BytesMut, n: usize) -> Vec<u8> {
    while buf.len() < n {
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_buf(buf))
            .await
            .unwrap()
            .unwrap();
        assert!(read > 0, "eof");
    }
    buf.split_to(n).to_vec()
}

/// A client logged in through the proxy to a scripted upstream; returns the
/// client and the upstream's end of its session.
async fn logged_in(proxy: SocketAddr, upstream: &TcpListener) -> (TcpStream, TcpStream) {
    let mut client = TcpStream::connect(proxy).await.unwrap();
    client
        .write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let (mut server, _) = upstream.accept().await.unwrap();
    read_startup(&mut server).await;
    let hello = server_hello();
    server.write_all(&hello).await.unwrap();
    read_exact_vec(&mut client, hello.len()).await;
    (client, server)
}

/// Regression (issue 10, finding 7): an idle proxy, and one whose sessions
/// are all idle, stops within 100 ms of the signal (asserted loosely).
#[tokio::test]
async fn idle_proxy_run_returns_promptly_after_the_signal() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    for sessions in [0, 2] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let mut state = ProxyState::new(config(upstream.local_addr().unwrap().port()));
        state.workers =
            crate::workers::Workers::spawn(&tokio::runtime::Handle::current(), 1).unwrap();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(run(listener, state, shutdown.clone()));
        let mut clients = Vec::new();
        for _ in 0..sessions {
            clients.push(logged_in(proxy, &upstream).await);
        }
        let signalled = std::time::Instant::now();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let took = signalled.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "{sessions} idle sessions: run took {took:?} after the signal"
        );
        for (client, _) in &mut clients {
            assert_eq!(fatal_of(client).await.0, "57P01");
        }
    }
}

/// Regression (issue 10, finding 7): a session idle inside a transaction
/// is left alone during the drain and closed (57P01) only when
/// `proxy.shutdown_timeout_ms` runs out.
#[tokio::test]
async fn drain_keeps_an_idle_transaction_until_the_grace_period_ends() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let yaml = format!(
        "proxy:\n  shutdown_timeout_ms: 600\ndatabases:\n  heal7:\n    host: 127.0.0.1\n    port: {}\n",
        upstream.local_addr().unwrap().port()
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let state = ProxyState::new(Config::from_yaml(&yaml, "test").unwrap());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run(listener, state, shutdown.clone()));
    let (mut client, mut server) = logged_in(proxy, &upstream).await;
    let mut begin = BytesMut::new();
    protocol::encode_query_with(&mut begin, |b| b.extend_from_slice(b"BEGIN"));
    client.write_all(&begin).await.unwrap();
    read_exact_vec(&mut server, begin.len()).await;
    let mut answer = BytesMut::new();
    answer.extend_from_slice(b"C\0\0\0\x0aBEGIN\0");
    protocol::encode_ready_for_query(&mut answer, b'T');
    server.write_all(&answer).await.unwrap();
    read_exact_vec(&mut client, answer.len()).await;

    let signalled = std::time::Instant::now();
    shutdown.cancel();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), client.peek(&mut byte))
            .await
            .is_err(),
        "a session idle in a transaction is not closed while the grace period lasts"
    );
    assert_eq!(fatal_of(&mut client).await.0, "57P01");
    assert!(signalled.elapsed() >= Duration::from_millis(500));
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Regression (issue 10, finding 8): an upstream that accepts TCP but never
/// answers (a stopped Postgres) fails a new client with 08006 within about
/// `connect_timeout_ms`, which now covers the server's first answer too.
#[tokio::test]
async fn silent_upstream_is_08006_within_the_connect_timeout() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let yaml = format!(
        "proxy:\n  connect_timeout_ms: 300\ndatabases:\n  heal7:\n    host: 127.0.0.1\n    port: {}\n",
        upstream.local_addr().unwrap().port()
    );
    let (proxy, state, shutdown) = start_proxy(Config::from_yaml(&yaml, "test").unwrap()).await;
    // Accept and hold the connection, never answer.
    let silent = tokio::spawn(async move {
        let (mut server, _) = upstream.accept().await.unwrap();
        read_startup(&mut server).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(server);
    });
    let mut client = TcpStream::connect(proxy).await.unwrap();
    let asked = std::time::Instant::now();
    client
        .write_all(&startup_packet(&[("user", "app"), ("database", "heal7")]))
        .await
        .unwrap();
    let (code, message) = fatal_of(&mut client).await;
    let took = asked.elapsed();
    assert_eq!(code, "08006", "{message}");
    assert!(message.contains("300 ms"), "{message}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "failed after {took:?}"
    );
    assert_eq!(Metrics::get(&state.metrics.upstream_connect_failures), 1);
    silent.abort();
    shutdown.cancel();
}
