//! TLS between clients and the proxy (`proxy.tls`): a CA and certificates
//! made in the test with rcgen; clients are tokio-postgres over a TLS
//! stream the test opens itself (SSLRequest or direct TLS with ALPN), raw
//! sockets, and psql.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use heal7_proxy::config::Config;
use heal7_proxy::reload::ConfigStore;
use heal7_proxy::server;
use heal7_proxy::state::ProxyState;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use crate::harness::{Pg, SCHEMAS_YAML, connect, pg, pg_started, psql, simple_value, sqlstate};

/// What a session on `heal7` reads only when `users` is qualified.
const READ_USER_1: &str = "SELECT name FROM users WHERE id = 1";

/// A CA and the files of the proxy's certificates, in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    pub ca_der: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "heal7 test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        Pki {
            dir,
            ca_der: ca.der().clone(),
            ca_params,
            ca_key,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issue a server certificate for localhost and 127.0.0.1 with common
    /// name `cn`, written to `<file>.crt` and `<file>.key`; returns its DER.
    pub fn issue(&self, file: &str, cn: &str) -> CertificateDer<'static> {
        self.issue_for(file, cn, &["localhost", "127.0.0.1"])
    }

    /// As [`Pki::issue`], for the given DNS names and IP addresses.
    pub fn issue_for(&self, file: &str, cn: &str, names: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(self.path(&format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    /// Issue a client certificate (extended key usage clientAuth, which
    /// OpenSSL servers check) with common name `cn`, written to
    /// `<file>.crt` and `<file>.key`.
    pub fn issue_client(&self, file: &str, cn: &str) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(self.path(&format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
    }

    /// A client config that trusts this CA (ALPN `postgresql` if `alpn`).
    pub fn client_config(&self, alpn: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        if alpn {
            config.alpn_protocols = vec![b"postgresql".to_vec()];
        }
        Arc::new(config)
    }
}

/// The proxy config with `proxy.tls` in `mode` using `<file>.crt/.key`.
pub fn yaml(pg: &Pg, pki: &Pki, mode: &str, file: &str) -> String {
    format!(
        "proxy:\n  listen: 127.0.0.1:0\n  tls:\n    mode: {mode}\n    cert_file: {cert}\n    key_file: {key}\n\
         databases:\n  heal7:\n    host: {host}\n    port: {port}\n{SCHEMAS_YAML}",
        cert = pki.path(&format!("{file}.crt")).display(),
        key = pki.path(&format!("{file}.key")).display(),
        host = pg.host,
        port = pg.port,
    )
}

/// A proxy around a store read from `path`, so the test can reload it.
struct TlsProxy {
    port: u16,
    store: Arc<ConfigStore>,
    shutdown: CancellationToken,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(path: &Path) -> TlsProxy {
    let store = Arc::new(ConfigStore::from_file(path).expect("valid config"));
    let state = ProxyState::with_store(store.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let sd = shutdown.clone();
    tokio::spawn(async move { server::run(listener, state, sd).await });
    TlsProxy {
        port,
        store,
        shutdown,
    }
}

/// A proxy with `proxy.tls.mode: mode` and a fresh CA and certificate.
async fn tls_proxy(mode: &str) -> (Pki, TlsProxy) {
    let pki = Pki::new();
    pki.issue("server", "heal7 proxy");
    let path = pki.path("heal7.yaml");
    std::fs::write(&path, yaml(pg().await, &pki, mode, "server")).unwrap();
    let proxy = start(&path).await;
    (pki, proxy)
}

pub fn client_config(port: u16) -> tokio_postgres::Config {
    let pg = pg_started();
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(&pg.superuser)
        .dbname("heal7")
        .ssl_mode(SslMode::Disable)
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = &pg.password {
        c.password(p);
    }
    c
}

/// Open TLS to the proxy (after an SSLRequest, or `direct`ly) and log in
/// over it with tokio-postgres; returns the client and the certificate the
/// proxy presented.
pub async fn connect_tls(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    direct: bool,
) -> Result<(Client, CertificateDer<'static>), String> {
    connect_tls_as(client_config(port), port, tls, direct).await
}

/// [`connect_tls`] with the caller's tokio-postgres settings.
async fn connect_tls_as(
    config: tokio_postgres::Config,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    direct: bool,
) -> Result<(Client, CertificateDer<'static>), String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    if !direct {
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .unwrap();
        let answer = tcp.read_u8().await.unwrap();
        if answer != b'S' {
            return Err(format!("SSLRequest answered {:?}", answer as char));
        }
    }
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let peer = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (client, connection) =
        config
            .connect_raw(stream, NoTls)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(d) => format!("login over TLS: {} {}", d.code().code(), d.message()),
                None => format!("login over TLS: {e}"),
            })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, peer))
}

#[tokio::test]
async fn tls_require_refuses_a_clear_client_with_fatal() {
    let (_pki, proxy) = tls_proxy("require").await;
    let Err(e) = connect(&client_config(proxy.port)).await else {
        panic!("a clear client is refused");
    };
    assert_eq!(sqlstate(&e), "08P01");
    let db = e.as_db_error().unwrap();
    assert_eq!(db.severity(), "FATAL");
    assert!(db.message().contains("requires TLS"), "{}", db.message());
}

#[tokio::test]
async fn tls_require_serves_a_client_after_ssl_request() {
    let (pki, proxy) = tls_proxy("require").await;
    let (client, _) = connect_tls(proxy.port, pki.client_config(false), false)
        .await
        .unwrap();
    assert_eq!(simple_value(&client, READ_USER_1).await, "fresh-alice");
}

#[tokio::test]
async fn tls_allow_serves_clear_and_tls_clients() {
    let (pki, proxy) = tls_proxy("allow").await;
    let clear = connect(&client_config(proxy.port)).await.unwrap();
    assert_eq!(simple_value(&clear, READ_USER_1).await, "fresh-alice");
    let (tls, _) = connect_tls(proxy.port, pki.client_config(false), false)
        .await
        .unwrap();
    assert_eq!(simple_value(&tls, READ_USER_1).await, "fresh-alice");
}

#[tokio::test]
async fn tls_disable_answers_n_as_before() {
    let pki = Pki::new();
    pki.issue("server", "heal7 proxy");
    let path = pki.path("heal7.yaml");
    std::fs::write(&path, yaml(pg().await, &pki, "disable", "server")).unwrap();
    let proxy = start(&path).await;
    let e = connect_tls(proxy.port, pki.client_config(false), false)
        .await
        .err()
        .unwrap();
    assert!(e.contains("answered 'N'"), "{e}");
}

#[tokio::test]
async fn direct_tls_with_alpn_postgresql_is_accepted() {
    let (pki, proxy) = tls_proxy("require").await;
    let (client, _) = connect_tls(proxy.port, pki.client_config(true), true)
        .await
        .unwrap();
    assert_eq!(simple_value(&client, READ_USER_1).await, "fresh-alice");
}

#[tokio::test]
async fn direct_tls_without_alpn_is_refused() {
    let (pki, proxy) = tls_proxy("require").await;
    let refused = connect_tls(proxy.port, pki.client_config(false), true).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn gssenc_request_is_still_refused_with_n() {
    let (_pki, proxy) = tls_proxy("allow").await;
    let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .await
        .unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'N');
}

#[tokio::test]
async fn psql_with_sslmode_require_and_verify_full_logs_in() {
    let (pki, proxy) = tls_proxy("require").await;
    let ca = pki.path("ca.crt");
    for env in [
        vec![("PGSSLMODE", "require")],
        vec![
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", ca.to_str().unwrap()),
        ],
    ] {
        let (ok, out, err) = psql(proxy.port, "heal7", &["-c", READ_USER_1], &env).await;
        assert!(ok, "{env:?}: {err}");
        assert_eq!(String::from_utf8_lossy(&out).trim(), "fresh-alice");
    }
    // And a clear psql is told why it cannot come in.
    let (ok, _, err) = psql(
        proxy.port,
        "heal7",
        &["-c", "SELECT 1"],
        &[("PGSSLMODE", "disable")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("requires TLS"), "{err}");
}

#[tokio::test]
async fn reload_swaps_the_certificate_and_keeps_running_tls_sessions() {
    let pki = Pki::new();
    let first = pki.issue("server", "first");
    let path = pki.path("heal7.yaml");
    std::fs::write(&path, yaml(pg().await, &pki, "require", "server")).unwrap();
    let proxy = start(&path).await;
    let (old_session, seen) = connect_tls(proxy.port, pki.client_config(false), false)
        .await
        .unwrap();
    assert_eq!(seen, first);

    // Same config text, new files under the same names: still a change.
    let second = pki.issue("server", "second");
    let report = proxy.store.reload().unwrap();
    assert!(!report.unchanged);
    let (new_session, seen) = connect_tls(proxy.port, pki.client_config(false), false)
        .await
        .unwrap();
    assert_eq!(seen, second);
    assert_eq!(simple_value(&new_session, READ_USER_1).await, "fresh-alice");
    assert_eq!(simple_value(&old_session, READ_USER_1).await, "fresh-alice");

    // A key that does not go with the certificate keeps the old pair.
    let other_key = KeyPair::generate().unwrap();
    std::fs::write(pki.path("server.key"), other_key.serialize_pem()).unwrap();
    let e = proxy.store.reload().unwrap_err().to_string();
    assert!(e.contains("proxy.tls.key_file"), "{e}");
    let (_, seen) = connect_tls(proxy.port, pki.client_config(false), false)
        .await
        .unwrap();
    assert_eq!(seen, second);
}

#[tokio::test]
async fn bad_tls_settings_are_config_errors_naming_the_key() {
    let pki = Pki::new();
    pki.issue("server", "heal7 proxy");
    let pg = pg().await;
    let load = |yaml: String| Config::from_yaml(&yaml, "t.yaml").unwrap_err().to_string();
    std::fs::write(pki.path("bad.crt"), "not a certificate").unwrap();
    std::fs::copy(pki.path("server.key"), pki.path("bad.key")).unwrap();
    let e = load(yaml(pg, &pki, "require", "bad"));
    assert!(e.contains("proxy.tls.cert_file"), "{e}");
    let e = load(yaml(pg, &pki, "require", "missing"));
    assert!(
        e.contains("proxy.tls.cert_file") && e.contains("cannot read"),
        "{e}"
    );
    let e = load(format!(
        "proxy: {{tls: {{mode: allow}}}}\ndatabases: {{heal7: {{port: {}}}}}\n",
        pg.port
    ));
    assert!(e.contains("proxy.tls.cert_file: required"), "{e}");
    let e = load("databases: {heal7: {tls: {mode: verify-full}}}\n".to_owned());
    assert!(e.contains("databases.heal7.tls.ca_file: required"), "{e}");
}

/// The admin console speaks TLS like every other database name: a client
/// that asked for TLS logs in over it with SCRAM and runs commands.
#[tokio::test]
async fn admin_console_over_tls_logs_in_and_answers() {
    let pki = Pki::new();
    pki.issue("server", "heal7 proxy");
    let path = pki.path("heal7.yaml");
    let verifier = heal7_proxy::auth::scram::hash_password(b"console-secret");
    let text = yaml(pg().await, &pki, "require", "server").replacen(
        "proxy:\n",
        &format!("proxy:\n  admin_users:\n    ops: \"{verifier}\"\n"),
        1,
    );
    std::fs::write(&path, text).unwrap();
    let proxy = start(&path).await;
    let mut config = client_config(proxy.port);
    config
        .dbname("heal7_proxy")
        .user("ops")
        .password("console-secret");
    let (client, _) = connect_tls_as(config, proxy.port, pki.client_config(false), false)
        .await
        .expect("console login over TLS");
    let version = simple_value(&client, "SHOW VERSION").await;
    assert!(version.starts_with("heal7-proxy"), "{version}");
    // The extended protocol too, over the same TLS session.
    let row = client.query_one("SHOW VERSION", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_handshake() {
    let (pki, proxy) = tls_proxy("require").await;
    let pki = Arc::new(pki);
    let stop = CancellationToken::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (tls, stop, port) = (pki.client_config(false), stop.clone(), proxy.port);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.is_cancelled() {
                match connect_tls(port, Arc::clone(&tls), false).await {
                    Ok((client, _)) => match client.simple_query(READ_USER_1).await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    },
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }));
    }
    let mut seen = Vec::new();
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        seen.push(pki.issue("server", &format!("round {round}")));
        proxy.store.reload().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.cancel();
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(ok > 20, "only {ok} logins");
    let (_, last) = connect_tls(proxy.port, pki.client_config(false), false)
        .await
        .unwrap();
    assert_eq!(&last, seen.last().unwrap());
}

/// tokio-rustls accepts plaintext whose ciphertext it could not yet write
/// out (it is a `BufWriter`), so the relay flushes each batch toward a TLS
/// peer. A guard for that: a small result written while the socket toward a
/// slow reader is full must still arrive. (It passed before the flush too,
/// on this machine; the flush follows tokio-rustls' documented contract.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tls_reader_gets_the_whole_result() {
    let (pki, proxy) = tls_proxy("require").await;
    let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(pki.client_config(false))
        .connect(name, tcp)
        .await
        .unwrap();
    let user = pg_started().superuser.clone();
    let startup =
        crate::raw_wire::startup_packet(&[("user", user.as_bytes()), ("database", b"heal7")]);
    tls.write_all(&startup).await.unwrap();
    // Until the first ReadyForQuery (trust login).
    while read_frame(&mut tls).await.0 != b'Z' {}
    // A big result, then a small one: the small one is written while the
    // socket toward the client is still full.
    let mut queries = Vec::new();
    for sql in [
        &b"SELECT repeat('x', 100000) || i FROM generate_series(1, 400) i\0"[..],
        b"SELECT pg_sleep(0.2), 'last'\0",
    ] {
        queries.push(b'Q');
        queries.extend_from_slice(&(sql.len() as i32 + 4).to_be_bytes());
        queries.extend_from_slice(sql);
    }
    tls.write_all(&queries).await.unwrap();
    // Let every buffer between the server and here fill up.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut rows = 0;
    let mut ready = 0;
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (tag, body) = read_frame(&mut tls).await;
            match tag {
                b'D' => {
                    rows += 1;
                    // A slow consumer.
                    if rows % 5 == 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                b'Z' => {
                    ready += 1;
                    if ready == 2 {
                        return;
                    }
                }
                b'E' => panic!("error: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "stalled after {rows} rows, {ready} ReadyForQuery"
    );
    assert_eq!(rows, 401);
}

/// One backend message from `s`: tag and body.
async fn read_frame<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Big frames both ways over TLS (the relay's grow-in-steps reads on a
/// TLS stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_flow_over_tls_both_ways() {
    let (pki, proxy) = tls_proxy("require").await;
    let (client, _) = connect_tls(proxy.port, pki.client_config(false), false)
        .await
        .unwrap();
    let sql = "SELECT repeat('x', 100000) || i FROM generate_series(1, 300) i";
    let rows = tokio::time::timeout(Duration::from_secs(30), client.simple_query(sql))
        .await
        .expect("30 MB over TLS within 30 s")
        .unwrap();
    let rows = rows
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 300);
    // And toward the server: a 10 MB statement.
    let big = format!("SELECT length('{}')", "y".repeat(10_000_000));
    let n = tokio::time::timeout(Duration::from_secs(30), simple_value(&client, &big))
        .await
        .expect("10 MB statement over TLS within 30 s");
    assert_eq!(n, "10000000");
}
