//! Raw-socket clients: malformed frames get a FATAL 08P01 ErrorResponse, and
//! text that is not UTF-8 (client_encoding EUC_KR) crosses the proxy
//! byte for byte.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{pg, simple_value, start_proxy};
use crate::raw_wire::{
    PROTOCOL_3_0, error_fields as fields, expect_error, read_message, startup_packet,
};

/// Log in (trust) and read up to the first ReadyForQuery.
async fn login(addr: SocketAddr, params: &[(&str, &[u8])]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&startup_packet(params)).await.unwrap();
    loop {
        match read_message(&mut s).await {
            Some((b'Z', _)) => return s,
            Some((b'E', body)) => panic!("login failed: {:?}", fields(&body)),
            Some((b'R', body)) => assert_eq!(&body[..4], &[0, 0, 0, 0], "trust: AuthenticationOk"),
            Some(_) => {}
            None => panic!("closed during login"),
        }
    }
}

type RawRows = Vec<Vec<Option<Vec<u8>>>>;

/// A simple Query of raw bytes: the DataRows, or the error's fields.
async fn raw_query(s: &mut TcpStream, sql: &[u8]) -> Result<RawRows, HashMap<u8, String>> {
    let mut frame = vec![b'Q'];
    frame.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    frame.extend_from_slice(sql);
    frame.push(0);
    s.write_all(&frame).await.unwrap();
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let (tag, body) = read_message(s).await.expect("query answered");
        match tag {
            b'D' => {
                let n = u16::from_be_bytes([body[0], body[1]]) as usize;
                let mut at = 2;
                let mut row = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
                    at += 4;
                    if len < 0 {
                        row.push(None);
                    } else {
                        row.push(Some(body[at..at + len as usize].to_vec()));
                        at += len as usize;
                    }
                }
                rows.push(row);
            }
            b'E' => error = Some(fields(&body)),
            b'Z' => return error.map_or(Ok(rows), Err),
            _ => {}
        }
    }
}

/// Startup parameters for the superuser (trust auth, as the harness sets it up).
fn superuser_params(database: &str) -> Vec<(&'static str, Vec<u8>)> {
    let pg = crate::harness::pg_started();
    vec![
        ("user", pg.superuser.as_bytes().to_vec()),
        ("database", database.as_bytes().to_vec()),
    ]
}

fn as_refs<'a>(p: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    p.iter().map(|(k, v)| (*k, v.as_slice())).collect()
}

fn assert_fatal_08p01(f: &HashMap<u8, String>, what: &str) {
    assert_eq!(
        f.get(&b'C').map(String::as_str),
        Some("08P01"),
        "{what}: {f:?}"
    );
    assert_eq!(
        f.get(&b'S').map(String::as_str),
        Some("FATAL"),
        "{what}: {f:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_packet_with_bogus_length_gets_fatal_08p01() {
    let proxy = start_proxy("tokens").await;
    for (what, bytes) in [
        ("length under 4", {
            let mut b = 3u32.to_be_bytes().to_vec();
            b.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
            b
        }),
        ("length under a startup packet's minimum of 8", {
            let mut b = 6u32.to_be_bytes().to_vec();
            b.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
            b
        }),
        ("length over the cap", {
            let mut b = 0x7fff_fff0u32.to_be_bytes().to_vec();
            b.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
            b
        }),
    ] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let f = expect_error(&mut s, what).await;
        assert_fatal_08p01(&f, what);
        assert!(read_message(&mut s).await.is_none(), "{what}: closed after");
    }
}

/// Postgres checks a startup packet's length as soon as its 4 bytes are in;
/// a proxy that waits for more leaves the client hanging until the startup
/// timeout (30 s by default) instead of answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_startup_length_is_refused_before_more_bytes_arrive() {
    let proxy = start_proxy("tokens").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&3u32.to_be_bytes()).await.unwrap();
    let f = expect_error(&mut s, "4-byte length 3 alone").await;
    assert_fatal_08p01(&f, "4-byte length 3 alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_undersize_frames_after_login_get_fatal_08p01() {
    let proxy = start_proxy("tokens").await;
    let params = superuser_params("heal7");
    for (what, header) in [
        ("Query over the cap", {
            let mut h = vec![b'Q'];
            h.extend_from_slice(&0x7fff_fff0u32.to_be_bytes());
            h
        }),
        ("Query length under 4", {
            let mut h = vec![b'Q'];
            h.extend_from_slice(&2u32.to_be_bytes());
            h
        }),
    ] {
        let mut s = login(proxy.addr, &as_refs(&params)).await;
        s.write_all(&header).await.unwrap();
        let f = expect_error(&mut s, what).await;
        assert_fatal_08p01(&f, what);
        assert!(read_message(&mut s).await.is_none(), "{what}: closed after");
    }
    assert!(proxy.state.metrics.frames_rejected.load(Ordering::Relaxed) >= 2);
    // One bad session never affects another.
    let c = proxy.connect("heal7").await;
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
}

async fn euc_kr(text: &str) -> Vec<u8> {
    encode(text, "EUC_KR").await
}

/// `text` in a server-supported client encoding, converted by Postgres.
async fn encode(text: &str, encoding: &str) -> Vec<u8> {
    let direct = pg().await.direct("heal7").await;
    let row = direct
        .query_one("SELECT convert_to($1, $2)", &[&text, &encoding])
        .await
        .expect("convert_to");
    let bytes: Vec<u8> = row.get(0);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "EUC-KR bytes are not UTF-8"
    );
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn euc_kr_text_crosses_the_proxy_byte_for_byte_and_is_counted() {
    let name = euc_kr("김민수").await;
    let literal = euc_kr("한글 텍스트").await;
    let proxy = start_proxy("tokens").await;
    let mut params = superuser_params("heal7");
    params.push(("client_encoding", b"EUC_KR".to_vec()));
    let mut s = login(proxy.addr, &as_refs(&params)).await;

    let mut sql = b"SELECT name, '".to_vec();
    sql.extend_from_slice(&literal);
    sql.extend_from_slice(b"' FROM shared_common.users WHERE name = '");
    sql.extend_from_slice(&name);
    sql.extend_from_slice(b"'");
    let rows = raw_query(&mut s, &sql).await.expect("query succeeds");
    assert_eq!(rows.len(), 1, "the EUC-KR literal matched the row");
    assert_eq!(rows[0][0].as_deref(), Some(name.as_slice()));
    assert_eq!(rows[0][1].as_deref(), Some(literal.as_slice()));
    assert!(
        proxy
            .state
            .metrics
            .statements_non_utf8
            .load(Ordering::Relaxed)
            >= 1
    );
}

/// EUC-KR keeps every byte under 0x80 ASCII, so the names around a Korean
/// literal can still be qualified: a legacy EUC-KR service must not read
/// the stale copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn euc_kr_query_with_bare_table_name_reads_fresh_rows() {
    let name = euc_kr("김민수").await;
    let proxy = start_proxy("tokens").await;
    let mut params = superuser_params("heal7");
    params.push(("client_encoding", b"EUC_KR".to_vec()));
    let mut s = login(proxy.addr, &as_refs(&params)).await;
    let mut sql = b"SELECT note, name FROM users WHERE name = '".to_vec();
    sql.extend_from_slice(&name);
    sql.extend_from_slice(b"'");
    let rows = raw_query(&mut s, &sql).await.expect("query succeeds");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][1].as_deref(), Some(name.as_slice()), "bytes intact");
    assert_eq!(
        rows[0][0].as_deref(),
        Some(&b"fresh"[..]),
        "bare `users` read the stale public copy"
    );
}

async fn single_byte(s: &mut TcpStream) -> u8 {
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut b))
        .await
        .expect("answer within 10 s")
        .expect("one byte");
    b[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_and_gssenc_requests_are_declined_and_startup_continues() {
    let proxy = start_proxy("tokens").await;
    let params = superuser_params("heal7");
    for (what, code) in [("SSLRequest", 80_877_103u32), ("GSSENCRequest", 80_877_104)] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let mut req = 8u32.to_be_bytes().to_vec();
        req.extend_from_slice(&code.to_be_bytes());
        s.write_all(&req).await.unwrap();
        assert_eq!(single_byte(&mut s).await, b'N', "{what}");
        s.write_all(&startup_packet(&as_refs(&params)))
            .await
            .unwrap();
        loop {
            match read_message(&mut s).await {
                Some((b'Z', _)) => break,
                Some((b'E', body)) => panic!("{what}: {:?}", fields(&body)),
                Some(_) => {}
                None => panic!("{what}: closed during startup"),
            }
        }
        let rows = raw_query(&mut s, b"SELECT name FROM users WHERE id = 1")
            .await
            .expect("query after the declined request");
        assert_eq!(rows[0][0].as_deref(), Some(&b"fresh-alice"[..]), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_with_an_unknown_key_is_dropped() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut req = 16u32.to_be_bytes().to_vec();
    req.extend_from_slice(&80_877_102u32.to_be_bytes());
    req.extend_from_slice(&0x7fff_0001u32.to_be_bytes());
    req.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    s.write_all(&req).await.unwrap();
    // The proxy answers a CancelRequest with nothing and closes.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("closed within 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent back: {rest:?}");
    let m = &proxy.state.metrics;
    assert!(
        crate::harness::wait_until(Duration::from_secs(5), || async {
            m.cancels_unknown.load(Ordering::Relaxed) >= 1
        })
        .await,
        "the unknown key was counted"
    );
    assert_eq!(m.cancels_forwarded.load(Ordering::Relaxed), 0);
    // Other sessions are unaffected.
    assert_eq!(simple_value(&c, "SELECT 1").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_with_euc_kr_client_encoding_gets_its_bytes_back() {
    let name = euc_kr("김민수").await;
    let proxy = start_proxy("tokens").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("query-euc-kr.sql");
    let mut sql = b"SELECT name FROM shared_common.users WHERE name = '".to_vec();
    sql.extend_from_slice(&name);
    sql.extend_from_slice(b"';\n");
    std::fs::write(&file, &sql).unwrap();
    let (ok, out, err) = crate::harness::psql(
        proxy.port(),
        "heal7",
        &["-f", file.to_str().unwrap()],
        &[("PGCLIENTENCODING", "EUC_KR")],
    )
    .await;
    assert!(ok, "psql failed: {err}");
    let mut want = name.clone();
    want.push(b'\n');
    assert_eq!(out, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_writing_one_byte_at_a_time_is_reassembled() {
    let proxy = start_proxy("tokens").await;
    let params = superuser_params("heal7");
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in startup_packet(&as_refs(&params)) {
        s.write_all(&[b]).await.unwrap();
    }
    loop {
        match read_message(&mut s).await {
            Some((b'Z', _)) => break,
            Some((b'E', body)) => panic!("login failed: {:?}", fields(&body)),
            Some(_) => {}
            None => panic!("closed during login"),
        }
    }
    let sql = b"SELECT name FROM users WHERE id = 1";
    let mut frame = vec![b'Q'];
    frame.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    frame.extend_from_slice(sql);
    frame.push(0);
    for b in &frame[..frame.len() - 1] {
        s.write_all(&[*b]).await.unwrap();
        tokio::task::yield_now().await;
    }
    // The last byte, together with a second whole Query in the same write.
    let mut tail = vec![0u8];
    let sql2 = b"SELECT chart FROM saju_charts WHERE id = 2";
    tail.push(b'Q');
    tail.extend_from_slice(&((sql2.len() + 5) as u32).to_be_bytes());
    tail.extend_from_slice(sql2);
    tail.push(0);
    s.write_all(&tail).await.unwrap();
    let mut values = Vec::new();
    let mut ready = 0;
    while ready < 2 {
        match read_message(&mut s).await.expect("answers") {
            (b'D', body) => {
                let len = i32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
                values.push(String::from_utf8(body[6..6 + len].to_vec()).unwrap());
            }
            (b'E', body) => panic!("{:?}", fields(&body)),
            (b'Z', _) => ready += 1,
            _ => {}
        }
    }
    assert_eq!(values, ["fresh-alice", "fresh-chart 을축"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_over_the_configured_message_cap_is_fatal_08p01() {
    let pg = pg().await;
    let yaml = crate::harness::proxy_yaml(pg, "tokens").replace(
        "  on_parse_error: tokens\n",
        "  on_parse_error: tokens\n  max_message_size: 1024\n",
    );
    let proxy = crate::harness::start_proxy_yaml(&yaml).await;
    let params = superuser_params("heal7");
    let mut s = login(proxy.addr, &as_refs(&params)).await;
    let small = raw_query(&mut s, b"SELECT name FROM users WHERE id = 1")
        .await
        .expect("a small query passes");
    assert_eq!(small[0][0].as_deref(), Some(&b"fresh-alice"[..]));
    let big = format!("SELECT '{}'", "x".repeat(2000));
    let mut frame = vec![b'Q'];
    frame.extend_from_slice(&((big.len() + 5) as u32).to_be_bytes());
    frame.extend_from_slice(big.as_bytes());
    frame.push(0);
    s.write_all(&frame).await.unwrap();
    let f = expect_error(&mut s, "2 KB query over a 1 KB cap").await;
    assert_fatal_08p01(&f, "2 KB query over a 1 KB cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_after_the_startup_timeout() {
    let pg = pg().await;
    let yaml = crate::harness::proxy_yaml(pg, "tokens").replace(
        "  on_parse_error: tokens\n",
        "  on_parse_error: tokens\n  startup_timeout_ms: 300\n",
    );
    let proxy = crate::harness::start_proxy_yaml(&yaml).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a client that sends nothing is still connected after 15 s"
    );
    // A client that does speak is served by the same proxy.
    let c = proxy.connect("heal7").await;
    assert_eq!(simple_value(&c, "SELECT 1").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_stall_others() {
    let proxy = start_proxy("tokens").await;
    let params = superuser_params("heal7");
    let mut stuck = login(proxy.addr, &as_refs(&params)).await;
    // About 200 MB of result that this client never reads.
    let sql = b"SELECT repeat('x', 1000) FROM generate_series(1, 200000)";
    let mut frame = vec![b'Q'];
    frame.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    frame.extend_from_slice(sql);
    frame.push(0);
    stuck.write_all(&frame).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = proxy.connect("heal7").await;
    for id in [1i32, 2, 1] {
        let row = tokio::time::timeout(
            Duration::from_secs(10),
            c.query_one("SELECT name FROM users WHERE id = $1", &[&id]),
        )
        .await
        .expect("another session answers within 10 s")
        .expect("query");
        assert!(row.get::<_, String>(0).starts_with("fresh-"));
    }
    drop(stuck);
}

/// In Shift-JIS a character's second byte may be an ASCII byte: ソ is
/// 0x83 0x5C, and 0x5C is a backslash. Such text must cross unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_jis_text_with_ascii_trail_bytes_crosses_byte_for_byte() {
    let text = encode("ソ表示'), E'x", "SJIS").await;
    assert!(text.windows(2).any(|w| w == [0x83, 0x5c]), "ソ is 83 5C");
    let proxy = start_proxy("tokens").await;
    let mut params = superuser_params("heal7");
    params.push(("client_encoding", b"SJIS".to_vec()));
    let mut s = login(proxy.addr, &as_refs(&params)).await;
    // The text as a dollar-quoted literal, so its quotes and backslash are
    // plain characters to the server.
    let mut sql = b"SELECT $q$".to_vec();
    sql.extend_from_slice(&text);
    sql.extend_from_slice(b"$q$, name FROM shared_common.users WHERE id = 1");
    let rows = raw_query(&mut s, &sql).await.expect("query succeeds");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].as_deref(), Some(text.as_slice()), "bytes intact");
    assert_eq!(rows[0][1].as_deref(), Some(&b"fresh-alice"[..]));
    assert!(
        proxy
            .state
            .metrics
            .statements_non_utf8
            .load(Ordering::Relaxed)
            >= 1
    );
}

/// A Shift-JIS client's bare table name is qualified too: the text is
/// masked by whole characters, so the backslash-looking trail byte of ソ
/// inside an E'' literal does not hide the rest of the statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_jis_client_gets_its_bare_names_qualified() {
    let text = encode("ソ", "SJIS").await;
    assert_eq!(text, [0x83, 0x5c]);
    let proxy = start_proxy("tokens").await;
    let mut params = superuser_params("heal7");
    params.push(("client_encoding", b"SJIS".to_vec()));
    let mut s = login(proxy.addr, &as_refs(&params)).await;
    let mut sql = b"SELECT E'".to_vec();
    sql.extend_from_slice(&text);
    sql.extend_from_slice(b"', name FROM users WHERE id = 1");
    let rows = raw_query(&mut s, &sql).await.expect("query succeeds");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].as_deref(), Some(text.as_slice()), "bytes intact");
    assert_eq!(
        rows[0][1].as_deref(),
        Some(&b"fresh-alice"[..]),
        "users was qualified"
    );
}
