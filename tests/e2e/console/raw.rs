//! A raw-socket console client, for what tokio-postgres cannot show: the
//! proxy's unsolicited FATAL at shutdown, refusals of odd SASL messages and
//! of frames pgwire's decoder would trip over.

use bytes::{BufMut, Bytes, BytesMut};
use heal7_proxy::protocol::{
    BackendKeyData, ErrorFields, Frame, PROTOCOL_3_0, ParameterStatus, StartupMessage,
};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A logged-out or logged-in console connection, byte by byte.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    /// Connect and send the StartupMessage for the console as `user`.
    pub async fn start(port: u16, user: &str) -> Raw {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let startup = StartupMessage {
            version: PROTOCOL_3_0,
            params: vec![
                (
                    Bytes::from_static(b"user"),
                    Bytes::copy_from_slice(user.as_bytes()),
                ),
                (
                    Bytes::from_static(b"database"),
                    Bytes::from_static(b"heal7_proxy"),
                ),
            ],
        };
        stream.write_all(&startup.encode()).await.unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// The next frame (tag, whole frame); `None` at end of stream.
    pub async fn frame(&mut self) -> Option<(u8, Bytes)> {
        loop {
            if let Some(f) = Frame::decode(&mut self.buf, 1 << 20).unwrap() {
                return Some((f.tag, f.bytes));
            }
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.stream.read_buf(&mut self.buf),
            )
            .await
            .expect("an answer within 10 s")
            .unwrap();
            if read == 0 {
                return None;
            }
        }
    }

    /// The SQLSTATE of the next frame, which must be an ErrorResponse.
    pub async fn error_code(&mut self) -> String {
        let (tag, frame) = self.frame().await.expect("an ErrorResponse");
        assert_eq!(tag, b'E', "{frame:?}");
        let fields = ErrorFields::parse(&frame).unwrap();
        String::from_utf8(fields.code().unwrap().to_vec()).unwrap()
    }

    /// Frame of 'p' carrying `body`.
    pub async fn send_p(&mut self, body: &[u8]) {
        let mut out = BytesMut::new();
        out.put_u8(b'p');
        out.put_i32(4 + body.len() as i32);
        out.extend_from_slice(body);
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn send_initial(&mut self, client_first: &[u8]) {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
        body.extend_from_slice(client_first);
        self.send_p(&body).await;
    }

    /// Log in with SCRAM and read up to the first ReadyForQuery; the
    /// frames after SASLFinal (AuthenticationOk to ReadyForQuery).
    pub async fn login(&mut self, password: &str) -> Vec<(u8, Bytes)> {
        assert_eq!(self.frame().await.unwrap().0, b'R'); // AuthenticationSASL
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        self.send_initial(scram.message()).await;
        let (_, cont) = self.frame().await.unwrap();
        scram.update(&cont[9..]).unwrap();
        self.send_p(scram.message()).await;
        let (_, last) = self.frame().await.unwrap();
        scram.finish(&last[9..]).unwrap();
        let mut frames = Vec::new();
        loop {
            let frame = self.frame().await.unwrap();
            let done = frame.0 == b'Z';
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }
}

use super::{ADMIN, ADMIN_PASSWORD, admin, console_yaml, start_console_proxy};
use crate::harness::{pg, simple_value, start_proxy_yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_console_session_is_told_57p01_at_shutdown() {
    let proxy = start_console_proxy().await;
    let mut c = Raw::start(proxy.port(), ADMIN).await;
    c.login(ADMIN_PASSWORD).await;
    proxy.shutdown.cancel();
    assert_eq!(c.error_code().await, "57P01");
    assert!(c.frame().await.is_none(), "then the proxy closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_sasl_messages_are_refused_before_any_password_check() {
    let proxy = start_console_proxy().await;
    // Channel binding is not offered: a client that insists is refused.
    let mut c = Raw::start(proxy.port(), ADMIN).await;
    assert_eq!(c.frame().await.unwrap().0, b'R');
    c.send_initial(b"p=tls-server-end-point,,n=,r=abcdef").await;
    assert_eq!(c.error_code().await, "08P01");

    // A query before logging in is a protocol violation, not a way in.
    let mut c = Raw::start(proxy.port(), ADMIN).await;
    assert_eq!(c.frame().await.unwrap().0, b'R');
    c.stream
        .write_all(b"Q\0\0\0\x11SHOW VERSION\0")
        .await
        .unwrap();
    assert_eq!(c.error_code().await, "08P01");

    // A SASL message over the pre-login cap is refused from its header.
    let mut c = Raw::start(proxy.port(), ADMIN).await;
    assert_eq!(c.frame().await.unwrap().0, b'R');
    c.stream.write_all(b"p\0\x10\0\0").await.unwrap();
    assert_eq!(c.error_code().await, "08P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_whose_value_overruns_its_frame_ends_the_session_with_08p01() {
    let proxy = start_console_proxy().await;
    let mut c = Raw::start(proxy.port(), ADMIN).await;
    c.login(ADMIN_PASSWORD).await;
    // Portal "", statement "", no formats, one value claiming 100 bytes.
    c.stream
        .write_all(b"B\0\0\0\x0e\0\0\0\0\0\x01\0\0\0\x64")
        .await
        .unwrap();
    assert_eq!(c.error_code().await, "08P01");
    assert!(c.frame().await.is_none(), "then the proxy closes");
    // The proxy itself goes on.
    assert!(
        simple_value(&admin(proxy.port()).await, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_announces_the_parameters_and_a_fresh_backend_key() {
    let proxy = start_console_proxy().await;
    let mut pids = Vec::new();
    for _ in 0..2 {
        let mut c = Raw::start(proxy.port(), ADMIN).await;
        let frames = c.login(ADMIN_PASSWORD).await;
        assert_eq!(
            frames[0].1[..],
            b"R\0\0\0\x08\0\0\0\0"[..],
            "AuthenticationOk first"
        );
        let params: std::collections::BTreeMap<String, String> = frames
            .iter()
            .filter(|(tag, _)| *tag == b'S')
            .map(|(_, f)| {
                let p = ParameterStatus::parse(f).unwrap();
                (
                    String::from_utf8(p.name.to_vec()).unwrap(),
                    String::from_utf8(p.value.to_vec()).unwrap(),
                )
            })
            .collect();
        let want = [
            ("DateStyle", "ISO, MDY".to_owned()),
            ("client_encoding", "UTF8".to_owned()),
            ("integer_datetimes", "on".to_owned()),
            (
                "server_version",
                format!("15.0 (heal7-proxy {})", env!("CARGO_PKG_VERSION")),
            ),
            ("server_encoding", "UTF8".to_owned()),
            ("standard_conforming_strings", "on".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(params, want);
        let key = frames
            .iter()
            .find(|(tag, _)| *tag == b'K')
            .expect("BackendKeyData");
        pids.push(BackendKeyData::parse(&key.1).unwrap().pid);
        assert_eq!(frames.last().unwrap().1[..], b"Z\0\0\0\x05I"[..]);
    }
    assert_ne!(pids[0], pids[1], "each session gets its own pid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_stalls_is_told_08p01_after_the_startup_timeout() {
    let yaml = console_yaml(pg().await, "127.0.0.1:0").replace(
        "  admin_users:\n",
        "  startup_timeout_ms: 300\n  admin_users:\n",
    );
    let proxy = start_proxy_yaml(&yaml).await;
    let mut c = Raw::start(proxy.port(), ADMIN).await;
    assert_eq!(c.frame().await.unwrap().0, b'R');
    // No SASL answer: the proxy gives up on its own.
    assert_eq!(c.error_code().await, "08P01");
    assert!(c.frame().await.is_none(), "then the proxy closes");
}

/// The salt the console offers `user`, from its server-first-message.
async fn offered_salt(port: u16, user: &str) -> String {
    let mut c = Raw::start(port, user).await;
    assert_eq!(c.frame().await.unwrap().0, b'R'); // AuthenticationSASL
    let scram = ScramSha256::new(b"any password", ChannelBinding::unsupported());
    c.send_initial(scram.message()).await;
    let (tag, cont) = c.frame().await.unwrap();
    assert_eq!(tag, b'R', "SASLContinue");
    let server_first = String::from_utf8(cont[9..].to_vec()).unwrap();
    server_first
        .split(',')
        .find_map(|f| f.strip_prefix("s="))
        .unwrap_or_else(|| panic!("no salt in {server_first}"))
        .to_owned()
}

/// Finding 10: an unknown user's mock salt comes from the config, not from
/// a secret drawn at start: two proxies (two ProxyStates and
/// ConsoleStates, as after a restart) with one config offer the same salt,
/// as they would for a real user, so a restart does not tell who exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_users_mock_salt_is_the_same_after_a_restart() {
    let pg = pg().await;
    let yaml = console_yaml(pg, "127.0.0.1:0");
    let first = start_proxy_yaml(&yaml).await;
    let second = start_proxy_yaml(&yaml).await;
    for user in ["nobody", ADMIN] {
        let a = offered_salt(first.port(), user).await;
        assert_eq!(a, offered_salt(first.port(), user).await, "{user}: stable");
        assert_eq!(
            a,
            offered_salt(second.port(), user).await,
            "{user}: across restarts"
        );
    }
    assert_ne!(
        offered_salt(first.port(), "nobody").await,
        offered_salt(first.port(), "nobody_else").await,
        "each unknown user has a salt of its own"
    );
}

/// Finding 10: failed console logins from one address are answered
/// progressively later (0, 200 ms, 400 ms, ...); a success resets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_console_logins_are_answered_progressively_later() {
    let proxy = start_console_proxy().await;
    let port = proxy.port();
    let wrong = super::console_config(port, ADMIN, "wrong");
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let Err(e) = crate::harness::connect(&wrong).await else {
            panic!("a wrong password is refused");
        };
        took.push(started.elapsed());
        assert_eq!(crate::harness::sqlstate(&e), "28P01");
    }
    // 200 ms more each time; asserted with a wide margin for slow machines.
    let margin = std::time::Duration::from_millis(50);
    assert!(took[1] > took[0] + margin, "second not slower: {took:?}");
    assert!(took[2] > took[1] + margin, "third not slower: {took:?}");

    admin(port).await;
    let started = std::time::Instant::now();
    assert!(crate::harness::connect(&wrong).await.is_err());
    let after_success = started.elapsed();
    assert!(
        after_success < took[2],
        "a success resets the delay: {after_success:?} vs {took:?}"
    );
}
