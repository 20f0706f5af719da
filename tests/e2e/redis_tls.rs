//! TLS on the Redis side: toward the server (`redis.upstream.tls`) against
//! redis-servers of their own that listen only on `--tls-port` with
//! certificates made here with rcgen (tls.rs's `Pki`), one of them asking
//! for client certificates (`--tls-auth-clients yes`); and toward clients
//! (`redis.tls`) with a RESP client over tokio-rustls and `redis-cli --tls`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use heal7_proxy::config::Config;
use heal7_proxy::reload::ConfigStore;
use heal7_proxy::resp::{self, Value};
use heal7_proxy::state::ProxyState;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::harness::{unique, wait_until};
use crate::redis_harness::{
    RedisServer, Resp, free_port, launch, redis_server, redis_yaml, start_redis_proxy,
    start_redis_proxy_with, text, with_fixed_ports,
};
use crate::tls::Pki;

/// The TLS redis-servers and the CA of their certificates. The servers'
/// certificate names `redis.example` and `localhost` only, so verify-full
/// against 127.0.0.1 needs `server_name: redis.example`.
struct TlsServers {
    /// `ca.crt`; `redis.*` (the servers'), `proxy.*` (the proxy's listener,
    /// for localhost and 127.0.0.1), `client.*` (a client certificate).
    pki: Pki,
    /// A CA that signed none of them.
    other: Pki,
    /// `--tls-auth-clients no`.
    open: RedisServer,
    /// `--tls-auth-clients yes`: a client certificate from `pki` needed.
    mutual: RedisServer,
}

static SERVERS: OnceLock<Result<TlsServers, String>> = OnceLock::new();

async fn servers() -> &'static TlsServers {
    tokio::task::spawn_blocking(|| {
        SERVERS
            .get_or_init(start_servers)
            .as_ref()
            .unwrap_or_else(|e| panic!("TLS redis-server: {e}"))
    })
    .await
    .unwrap()
}

fn start_servers() -> Result<TlsServers, String> {
    let pki = Pki::new();
    pki.issue_for(
        "redis",
        "redis test server",
        &["redis.example", "localhost"],
    );
    pki.issue("proxy", "heal7 proxy");
    pki.issue_client("client", "heal7 proxy");
    let path = |name: &str| pki.path(name).display().to_string();
    let server = |auth_clients: &str| {
        let port = free_port()?;
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path("redis.crt"),
            "--tls-key-file",
            &path("redis.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            auth_clients,
        ]
        .map(String::from);
        launch(&args, port, |log| {
            log.contains("Ready to accept connections")
        })
    };
    Ok(TlsServers {
        open: server("no")?,
        mutual: server("yes")?,
        other: Pki::new(),
        pki,
    })
}

/// The harness's rules with `redis.upstream` on a TLS server, `tls` its
/// `tls:` value; `extra` as [`redis_yaml`]'s.
fn upstream_yaml(port: u16, tls: &str, extra: &str) -> String {
    redis_yaml(extra).replace(
        &format!(
            "upstream: {{host: 127.0.0.1, port: {}}}",
            redis_server().port
        ),
        &format!("upstream: {{host: 127.0.0.1, port: {port}, tls: {tls}}}"),
    )
}

/// A RESP client over any stream (the harness's `Resp` is plain TCP).
struct Client<S> {
    io: S,
    buf: BytesMut,
}

type TlsClient = Client<TlsStream<TcpStream>>;

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, args: &[&str]) {
        let mut out = BytesMut::new();
        resp::encode_command(&mut out, args);
        self.io.write_all(&out).await.expect("send");
        self.io.flush().await.expect("flush");
    }

    /// The next reply, or `None` at a close.
    async fn read(&mut self) -> Option<Value> {
        loop {
            if let Some(n) = resp::reply_len(&self.buf, 1 << 30).expect("valid reply") {
                return Some(Value::decode(&self.buf.split_to(n).freeze()).expect("decodes"));
            }
            let read = self.io.read_buf(&mut self.buf);
            let n = tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("a reply within 10 s")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    async fn call(&mut self, args: &[&str]) -> String {
        self.send(args).await;
        text(&self.read().await.expect("a reply, not a close"))
    }
}

impl TlsClient {
    /// A TLS connection to 127.0.0.1:`port` that trusts `pki`'s CA and
    /// expects the name `name`.
    async fn connect(port: u16, pki: &Pki, name: &str) -> std::io::Result<TlsClient> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let io = tokio_rustls::TlsConnector::from(pki.client_config(false))
            .connect(name, tcp)
            .await?;
        Ok(Client {
            io,
            buf: BytesMut::new(),
        })
    }

    fn peer_certificate(&self) -> CertificateDer<'static> {
        self.io.get_ref().1.peer_certificates().unwrap()[0].clone()
    }
}

/// A direct TLS connection to the open server on `db`.
async fn direct(db: u16) -> TlsClient {
    let s = servers().await;
    let mut c = TlsClient::connect(s.open.port, &s.pki, "localhost")
        .await
        .expect("direct TLS connection");
    assert_eq!(c.call(&["SELECT", &db.to_string()]).await, "OK");
    c
}

/// verify-full with `server_name`: keys land under the new prefix and
/// database on a TLS-only server (the command table is read over TLS too,
/// and a second database gets its own TLS connection); without
/// `server_name` the certificate does not name 127.0.0.1 and the client
/// gets `-ERR` saying so, while verify-ca (chain only) accepts it.
#[tokio::test]
async fn upstream_verify_full_moves_keys_over_tls_and_checks_the_name() {
    let s = servers().await;
    let ca = s.pki.path("ca.crt");
    let tls = format!(
        "{{mode: verify-full, ca_file: {}, server_name: redis.example}}",
        ca.display()
    );
    let proxy = start_redis_proxy(&upstream_yaml(s.open.port, &tls, "")).await;
    let u = unique("tlsup");
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &format!("saju:{u}"), "v1"]).await;
    c.send(&["HSET", &format!("session:{u}"), "f", "v2"]).await;
    c.send(&["GET", &format!("saju:{u}")]).await;
    assert_eq!(text(&c.read().await.unwrap()), "1");
    assert_eq!(text(&c.read().await.unwrap()), "v1");
    c.ok(&["SELECT", "2"]).await;
    c.ok(&["SET", &format!("dream:{u}"), "v3"]).await;

    let mut d1 = direct(1).await;
    assert_eq!(d1.call(&["GET", &format!("saju_service:{u}")]).await, "v1");
    let mut d0 = direct(0).await;
    assert_eq!(d0.call(&["EXISTS", &format!("saju:{u}")]).await, "0");
    assert_eq!(
        d0.call(&["HGET", &format!("shared_common:session:{u}"), "f"])
            .await,
        "v2"
    );
    let mut d3 = direct(3).await;
    assert_eq!(d3.call(&["GET", &format!("dream_service:{u}")]).await, "v3");

    let tls = format!("{{mode: verify-full, ca_file: {}}}", ca.display());
    let proxy = start_redis_proxy(&upstream_yaml(s.open.port, &tls, "")).await;
    let mut c = Resp::connect(proxy.port).await;
    let e = text(&c.call(&["GET", &format!("saju:{u}")]).await);
    assert!(
        e.starts_with("-ERR heal7-proxy") && e.contains("TLS handshake") && e.contains("name"),
        "{e}"
    );
    let tls = format!("{{mode: verify-ca, ca_file: {}}}", ca.display());
    let proxy = start_redis_proxy(&upstream_yaml(s.open.port, &tls, "")).await;
    let mut c = Resp::connect(proxy.port).await;
    assert_eq!(text(&c.call(&["GET", &format!("saju:{u}")]).await), "v1");
}

/// A CA that did not sign the server's certificate: the client gets
/// `-ERR` naming the failed handshake, and the proxy's log (the real
/// binary's stderr) says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_gives_the_client_err_and_the_log_says_why() {
    let s = servers().await;
    let (pg_port, redis_port) = (free_port().unwrap(), free_port().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let tls = format!(
        "{{mode: verify-full, ca_file: {}, server_name: redis.example}}",
        s.other.path("ca.crt").display()
    );
    let yaml = with_fixed_ports(&upstream_yaml(s.open.port, &tls, ""), pg_port, redis_port);
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let log_path = dir.path().join("stderr");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_heal7-proxy"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            TcpStream::connect(("127.0.0.1", redis_port)).await.is_ok()
        })
        .await,
        "redis.listen never bound"
    );
    let mut c = Resp::connect(redis_port).await;
    let e = text(&c.call(&["SET", "saju:wrong-ca", "v"]).await);
    assert!(
        e.starts_with("-ERR heal7-proxy")
            && e.contains("TLS handshake with the Redis server at 127.0.0.1:")
            && e.contains("invalid peer certificate"),
        "{e}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("serve stops on SIGTERM")
        .unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains("TLS handshake with the Redis server")
                && l.contains("invalid peer certificate"))
            .count()
            >= 2,
        "{log}"
    );
    assert_eq!(
        direct(0).await.call(&["EXISTS", "saju:wrong-ca"]).await,
        "0"
    );
}

/// `--tls-auth-clients yes`: with `client_cert_file`/`client_key_file`
/// the proxy's connections are accepted; without, the client gets `-ERR`.
#[tokio::test]
async fn mutual_tls_works_with_a_client_certificate_and_fails_without() {
    let s = servers().await;
    let u = unique("mtls");
    let p = |name: &str| s.pki.path(name).display().to_string();
    let tls = format!(
        "{{mode: verify-ca, ca_file: {}, client_cert_file: {}, client_key_file: {}}}",
        p("ca.crt"),
        p("client.crt"),
        p("client.key")
    );
    let proxy = start_redis_proxy(&upstream_yaml(s.mutual.port, &tls, "")).await;
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &format!("saju:{u}"), "v"]).await;
    assert_eq!(text(&c.call(&["GET", &format!("saju:{u}")]).await), "v");
    assert_eq!(text(&c.call(&["PING"]).await), "PONG");

    let tls = format!("{{mode: verify-ca, ca_file: {}}}", p("ca.crt"));
    let proxy = start_redis_proxy(&upstream_yaml(s.mutual.port, &tls, "")).await;
    let mut c = Resp::connect(proxy.port).await;
    let e = text(&c.call(&["GET", &format!("saju:{u}")]).await);
    assert!(
        e.starts_with("-ERR heal7-proxy")
            && e.contains("TLS handshake with the Redis server")
            && e.contains("CertificateRequired"),
        "{e}"
    );
}

/// `redis.tls: {mode: require}`: a TLS client (rustls, redis-cli,
/// redis-py) is served, keys move as usual, long replies and pub/sub messages come
/// whole; a plain-text client gets `-ERR` and a close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_require_serves_tls_clients_and_refuses_plain_text() {
    let s = servers().await;
    let p = |name: &str| s.pki.path(name).display().to_string();
    let proxy = start_redis_proxy(&redis_yaml(&format!(
        "  tls: {{mode: require, cert_file: {}, key_file: {}}}\n",
        p("proxy.crt"),
        p("proxy.key")
    )))
    .await;
    let u = unique("ctls");
    let mut c = TlsClient::connect(proxy.port, &s.pki, "localhost")
        .await
        .unwrap();
    assert_eq!(c.call(&["SET", &format!("saju:{u}"), "v"]).await, "OK");
    let big = "x".repeat(3 << 20);
    assert_eq!(c.call(&["SET", &format!("saju:{u}:big"), &big]).await, "OK");
    assert_eq!(
        c.call(&["STRLEN", &format!("saju:{u}:big")]).await,
        "3145728"
    );
    assert_eq!(
        c.call(&["GET", &format!("saju:{u}:big")]).await.len(),
        3 << 20
    );
    let mut d1 = Resp::direct(1).await;
    assert_eq!(
        text(&d1.call(&["GET", &format!("saju_service:{u}")]).await),
        "v"
    );

    // Pub/sub over TLS: the relay flushes each message.
    let mut sub = TlsClient::connect(proxy.port, &s.pki, "127.0.0.1")
        .await
        .unwrap();
    sub.send(&["SUBSCRIBE", &format!("chan:{u}")]).await;
    assert!(text(&sub.read().await.unwrap()).contains("subscribe"));
    assert_eq!(
        c.call(&["PUBLISH", &format!("chan:{u}"), "hello"]).await,
        "1"
    );
    assert_eq!(
        text(&sub.read().await.unwrap()),
        format!("[message, chan:{u}, hello]")
    );

    // Plain text on the TLS port.
    let mut plain = Resp::connect(proxy.port).await;
    let e = text(&plain.call(&["PING"]).await);
    assert!(
        e.starts_with("-ERR heal7-proxy: this port requires TLS"),
        "{e}"
    );
    assert!(plain.read().await.is_none(), "closed after the error");
    // A handshake with a client that trusts another CA fails.
    let e = TlsClient::connect(proxy.port, &s.other, "localhost").await;
    assert!(e.is_err(), "the proxy's certificate is not from that CA");
    let m = &proxy.state.metrics.redis;
    let counted = || {
        [
            &m.tls_clients_ok,
            &m.tls_clients_failed,
            &m.tls_clients_plain_refused,
        ]
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    };
    assert!(
        crate::harness::wait_until(Duration::from_secs(5), || async { counted() == [2, 1, 1] })
            .await,
        "{:?}",
        counted()
    );

    // redis-cli (hiredis over OpenSSL).
    let cli = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string()])
        .args(["--tls", "--cacert", &p("ca.crt")])
        .args(["SET", &format!("saju:{u}:cli"), "from-cli"])
        .output()
        .await
        .expect("redis-cli");
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout).trim(),
        "OK",
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let got = d1.call(&["GET", &format!("saju_service:{u}:cli")]).await;
    assert_eq!(text(&got), "from-cli");
    // redis-py, the legacy services' client (Debian's python3-redis).
    let script = format!(
        "import redis\n\
         r = redis.Redis(host='127.0.0.1', port={}, ssl=True, ssl_ca_certs='{}')\n\
         r.set('saju:{u}:py', 'from-py')\n\
         print(r.get('saju:{u}:py').decode())\n",
        proxy.port,
        p("ca.crt")
    );
    let py = tokio::process::Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .await
        .expect("run python3");
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "from-py",
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let got = d1.call(&["GET", &format!("saju_service:{u}:py")]).await;
    assert_eq!(text(&got), "from-py");
    // Without --tls, redis-cli gets the refusal.
    let cli = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string(), "PING"])
        .output()
        .await
        .expect("redis-cli");
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(out.contains("requires TLS"), "{out}");
}

/// `mode: allow` serves TLS and plain-text clients on one port, and
/// `redis.tls` without files takes proxy.tls's certificate.
#[tokio::test]
async fn client_tls_allow_serves_both_and_reuses_proxy_tls_certificate() {
    let s = servers().await;
    let p = |name: &str| s.pki.path(name).display().to_string();
    let yaml = redis_yaml("  tls: {mode: allow}\n").replace(
        "databases:",
        &format!(
            "proxy: {{tls: {{mode: allow, cert_file: {}, key_file: {}}}}}\ndatabases:",
            p("proxy.crt"),
            p("proxy.key")
        ),
    );
    let proxy = start_redis_proxy(&yaml).await;
    let mut tls = TlsClient::connect(proxy.port, &s.pki, "localhost")
        .await
        .unwrap();
    assert_eq!(tls.call(&["PING"]).await, "PONG");
    let proxy_der = CertificateDer::pem_file_iter(s.pki.path("proxy.crt"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(tls.peer_certificate(), proxy_der);
    let mut plain = Resp::connect(proxy.port).await;
    assert_eq!(text(&plain.call(&["PING"]).await), "PONG");
}

/// `redis.tls.client_ca_file`: a client with a certificate from that CA is
/// served (rustls, redis-cli), one without is not.
#[tokio::test]
async fn client_certificates_are_required_with_client_ca_file() {
    let s = servers().await;
    let p = |name: &str| s.pki.path(name).display().to_string();
    let proxy = start_redis_proxy(&redis_yaml(&format!(
        "  tls: {{mode: require, cert_file: {}, key_file: {}, client_ca_file: {}}}\n",
        p("proxy.crt"),
        p("proxy.key"),
        p("ca.crt")
    )))
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.pki.ca_der.clone()).unwrap();
    let certs = CertificateDer::pem_file_iter(s.pki.path("client.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(s.pki.path("client.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    let io = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut with_cert = Client {
        io,
        buf: BytesMut::new(),
    };
    assert_eq!(with_cert.call(&["PING"]).await, "PONG");

    // TLS 1.3: the handshake ends on the client's side before the server
    // has checked; the refusal arrives as the first read.
    let refused = match TlsClient::connect(proxy.port, &s.pki, "localhost").await {
        Err(_) => true,
        Ok(mut c) => {
            let _ = c.io.write_all(b"*1\r\n$4\r\nPING\r\n").await;
            let _ = c.io.flush().await;
            let mut buf = [0u8; 64];
            !matches!(c.io.read(&mut buf).await, Ok(n) if n > 0)
        }
    };
    assert!(refused, "a client without a certificate must not be served");

    let cli = |with_cert: bool| {
        let mut cmd = tokio::process::Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &proxy.port.to_string()])
            .args(["--tls", "--cacert", &p("ca.crt")]);
        if with_cert {
            cmd.args(["--cert", &p("client.crt"), "--key", &p("client.key")]);
        }
        cmd.arg("PING");
        cmd
    };
    let out = cli(true).output().await.expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
    let out = cli(false).output().await.expect("redis-cli");
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
}

/// The handshake, not the wait for a first byte, is bounded by
/// `proxy.startup_timeout_ms`: in mode allow a plain client idle past it is
/// served; a client that starts a TLS record and stalls is cut off.
#[tokio::test]
async fn a_stalled_handshake_is_cut_off_and_an_idle_client_is_not() {
    let s = servers().await;
    let p = |name: &str| s.pki.path(name).display().to_string();
    let yaml = redis_yaml(&format!(
        "  tls: {{mode: allow, cert_file: {}, key_file: {}}}\n",
        p("proxy.crt"),
        p("proxy.key")
    ))
    .replace(
        "databases:",
        "proxy: {listen: 127.0.0.1:0, startup_timeout_ms: 300}\ndatabases:",
    );
    let proxy = start_redis_proxy(&yaml).await;
    let mut idle = Resp::connect(proxy.port).await;
    let mut stalled = Resp::connect(proxy.port).await;
    stalled.send_raw(&[0x16, 0x03, 0x01]).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(text(&idle.call(&["PING"]).await), "PONG");
    assert!(stalled.read().await.is_none(), "closed");
    let failed = &proxy.state.metrics.redis.tls_clients_failed;
    assert_eq!(failed.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// A reload applies a changed `redis.upstream.tls` (here a CA file
/// rewritten under the same config text) to new server connections, on a
/// client connection that stays open; and a rotated listener certificate
/// to new clients, old ones keeping theirs.
#[tokio::test]
async fn reload_applies_new_upstream_tls_and_a_rotated_listener_certificate() {
    let s = servers().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::copy(s.other.path("ca.crt"), &ca).unwrap();
    let (crt, key) = (dir.path().join("l.crt"), dir.path().join("l.key"));
    std::fs::copy(s.pki.path("proxy.crt"), &crt).unwrap();
    std::fs::copy(s.pki.path("proxy.key"), &key).unwrap();
    let yaml = upstream_yaml(
        s.open.port,
        &format!(
            "{{mode: verify-full, ca_file: {}, server_name: redis.example}}",
            ca.display()
        ),
        &format!(
            "  tls: {{mode: require, cert_file: {}, key_file: {}}}\n",
            crt.display(),
            key.display()
        ),
    );
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, yaml).unwrap();
    let store = Arc::new(ConfigStore::from_file(&path).unwrap());
    let proxy = start_redis_proxy_with(ProxyState::with_store(Arc::clone(&store))).await;
    let u = unique("tlsreload");
    let mut c = TlsClient::connect(proxy.port, &s.pki, "localhost")
        .await
        .unwrap();
    let e = c.call(&["SET", &format!("saju:{u}"), "v"]).await;
    assert!(e.contains("invalid peer certificate"), "{e}");

    std::fs::copy(s.pki.path("ca.crt"), &ca).unwrap();
    let report = store.reload().unwrap();
    assert!(!report.unchanged, "a rewritten CA file is a change");
    assert_eq!(c.call(&["SET", &format!("saju:{u}"), "v"]).await, "OK");
    assert_eq!(
        direct(1)
            .await
            .call(&["GET", &format!("saju_service:{u}")])
            .await,
        "v"
    );

    let old_der = c.peer_certificate();
    let new_der = s.pki.issue("rotated", "heal7 proxy rotated");
    std::fs::copy(s.pki.path("rotated.crt"), &crt).unwrap();
    std::fs::copy(s.pki.path("rotated.key"), &key).unwrap();
    assert!(!store.reload().unwrap().unchanged);
    let mut fresh = TlsClient::connect(proxy.port, &s.pki, "localhost")
        .await
        .unwrap();
    assert_eq!(fresh.peer_certificate(), new_der);
    assert_ne!(old_der, new_der);
    assert_eq!(fresh.call(&["GET", &format!("saju:{u}")]).await, "v");
    assert_eq!(c.call(&["PING"]).await, "PONG", "the open client stays");
}

/// `migrate-keys` connects with `redis.upstream.tls` too.
#[tokio::test]
async fn migrate_keys_runs_over_tls() {
    let s = servers().await;
    let u = unique("tlsmig");
    let mut d0 = direct(0).await;
    assert_eq!(d0.call(&["SET", &format!("saju:{u}"), "old"]).await, "OK");
    let tls = format!(
        "{{mode: verify-full, ca_file: {}, server_name: redis.example}}",
        s.pki.path("ca.crt").display()
    );
    let config = Config::from_yaml(&upstream_yaml(s.open.port, &tls, ""), "t.yaml").unwrap();
    let mut log = Vec::new();
    heal7_proxy::commands::migrate_keys(&config, false, 50, &mut log)
        .await
        .unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("done saju:@0 -> saju_service:@1"), "{log}");
    assert_eq!(
        direct(1)
            .await
            .call(&["GET", &format!("saju_service:{u}")])
            .await,
        "old"
    );
}
