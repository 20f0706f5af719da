//! Raw-socket helpers shared by the unit tests (`src/server/tests.rs`) and
//! the e2e suite (`tests/e2e/`), which both include this file by path. Plain
//! bytes and tokio only, no crate types, so it reads the same in both.

// Each includer uses a subset.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub const PROTOCOL_3_0: u32 = 196_608;
/// The request code of an SSLRequest.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;

/// A StartupMessage (protocol 3.0) with `params` in order.
pub fn startup_packet(params: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v);
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// One tagged message, or None at EOF (a reset counts as EOF).
pub async fn read_message(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let fut = async {
        let mut header = [0u8; 5];
        s.read_exact(&mut header).await.ok()?;
        let len = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
        assert!((4..1 << 24).contains(&len), "frame length {len}");
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await.ok()?;
        Some((header[0], body))
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("a message (or EOF) within 20 s")
}

/// ErrorResponse/NoticeResponse fields by their one-byte code.
pub fn error_fields(body: &[u8]) -> HashMap<u8, String> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

/// Read until an ErrorResponse; panic if the socket closes first.
pub async fn expect_error(s: &mut TcpStream, what: &str) -> HashMap<u8, String> {
    loop {
        match read_message(s).await {
            Some((b'E', body)) => return error_fields(&body),
            Some(_) => continue,
            None => panic!("{what}: connection closed without an ErrorResponse"),
        }
    }
}

/// Exactly `n` bytes within 5 s.
pub async fn read_exact_vec(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut v))
        .await
        .expect("bytes within 5 s")
        .expect("read");
    v
}
