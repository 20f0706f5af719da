//! TLS between the proxy and an upstream (`databases.*.tls`), against a
//! second private cluster with `ssl = on` whose pg_hba.conf has only
//! `hostssl` lines; and SCRAM channel binding through a TLS proxy to it.

use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{
    ClusterSetup, Pg, ProxyHandle, SCRAM_PASSWORD, connect, pg, simple_value, sqlstate,
    start_private_cluster, start_proxy_yaml,
};
use crate::tls::Pki;

/// Shows whether the session's backend speaks TLS.
const SSL_IN_USE: &str = "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// The TLS-only cluster and the CA its certificate comes from. Its
/// certificate names `db.example` and `localhost` only, so verify-ca passes
/// against 127.0.0.1 and verify-full does not (it does against localhost).
struct SslCluster {
    pg: Pg,
    pki: Pki,
    /// A CA that did not sign the server's certificate.
    other: Pki,
}

static SSL_CLUSTER: OnceLock<Result<SslCluster, String>> = OnceLock::new();

async fn ssl_cluster() -> &'static SslCluster {
    tokio::task::spawn_blocking(|| {
        SSL_CLUSTER
            .get_or_init(start_ssl_cluster)
            .as_ref()
            .unwrap_or_else(|e| panic!("TLS test cluster: {e}"))
    })
    .await
    .unwrap()
}

fn start_ssl_cluster() -> Result<SslCluster, String> {
    let pki = Pki::new();
    pki.issue_for("upstream", "db.example", &["db.example", "localhost"]);
    pki.issue("proxy", "heal7 proxy");
    let read = |name: &str| std::fs::read_to_string(pki.path(name)).unwrap();
    let pg = start_private_cluster(&ClusterSetup {
        hba: "local all all trust\n\
              hostssl all postgres 127.0.0.1/32 trust\n\
              hostssl all scram_user 127.0.0.1/32 scram-sha-256\n\
              hostssl all heal7_auth 127.0.0.1/32 scram-sha-256\n"
            .into(),
        conf: "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n".into(),
        files: vec![
            ("server.crt".into(), read("upstream.crt")),
            ("server.key".into(), read("upstream.key")),
        ],
    })?;
    let out = std::process::Command::new(pg.bindir.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require",
            pg.port
        ))
        .args([
            "-c",
            &format!("CREATE ROLE scram_user LOGIN PASSWORD '{SCRAM_PASSWORD}'"),
            "-c",
            "CREATE ROLE heal7_auth LOGIN PASSWORD 'auth-secret'",
            "-c",
            "CREATE FUNCTION public.heal7_proxy_lookup(p_user text, OUT usename name, OUT passwd text) \
             RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS \
             $$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_user $$",
            "-c",
            "REVOKE ALL ON FUNCTION public.heal7_proxy_lookup(text) FROM PUBLIC",
            "-c",
            "GRANT EXECUTE ON FUNCTION public.heal7_proxy_lookup(text) TO heal7_auth",
        ])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(SslCluster {
        pg,
        pki,
        other: Pki::new(),
    })
}

/// A proxy (TLS allowed toward clients) with one database per upstream
/// TLS setting, all on the TLS-only cluster's `postgres` database.
async fn proxy() -> ProxyHandle {
    let c = ssl_cluster().await;
    let entry_on = |name: &str, host: &str, port: u16, tls: &str| {
        format!(
            "  {name}:\n    host: {host}\n    port: {port}\n    database: postgres\n    tls: {tls}\n"
        )
    };
    let entry = |name: &str, tls: &str| entry_on(name, "127.0.0.1", c.pg.port, tls);
    // The shared cluster has no SSL: it answers the SSLRequest `N`.
    let clear = pg().await;
    let ca = c.pki.path("ca.crt");
    let other_ca = c.other.path("ca.crt");
    let databases = [
        entry("ssl_disable", "{mode: disable}"),
        entry("ssl_prefer", "{mode: prefer}"),
        entry("ssl_require", "{mode: require}"),
        entry(
            "ssl_verify_ca",
            &format!("{{mode: verify-ca, ca_file: {}}}", ca.display()),
        ),
        entry(
            "ssl_verify_ca_wrong_root",
            &format!("{{mode: verify-ca, ca_file: {}}}", other_ca.display()),
        ),
        entry(
            "ssl_verify_full",
            &format!("{{mode: verify-full, ca_file: {}}}", ca.display()),
        ),
        entry_on(
            "ssl_verify_full_localhost",
            "localhost",
            c.pg.port,
            &format!("{{mode: verify-full, ca_file: {}}}", ca.display()),
        ),
        // 127.0.0.1 is not in the certificate; server_name names what is.
        entry(
            "ssl_verify_full_server_name",
            &format!(
                "{{mode: verify-full, ca_file: {}, server_name: db.example}}",
                ca.display()
            ),
        ),
        entry_on("clear_prefer", &clear.host, clear.port, "{mode: prefer}"),
        // Pooled: the proxy authenticates clients itself (auth_query), so
        // the client's SCRAM exchange ends at the proxy.
        entry("ssl_pooled", "{mode: require}")
            + &format!(
                "    pool: {{mode: session, auth_user: heal7_auth, auth_password_file: {}, \
                 auth_query: \"SELECT usename, passwd FROM public.heal7_proxy_lookup($1)\"}}\n",
                auth_password_file().display()
            ),
        entry_on("clear_require", &clear.host, clear.port, "{mode: require}"),
    ]
    .concat();
    let yaml = format!(
        "proxy:\n  listen: 127.0.0.1:0\n  tls: {{mode: allow, cert_file: {}, key_file: {}}}\ndatabases:\n{databases}",
        c.pki.path("proxy.crt").display(),
        c.pki.path("proxy.key").display(),
    );
    start_proxy_yaml(&yaml).await
}

/// The auth user's password, in a file that lives as long as the process.
fn auth_password_file() -> std::path::PathBuf {
    static FILE: OnceLock<tempfile::NamedTempFile> = OnceLock::new();
    FILE.get_or_init(|| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "auth-secret\n").unwrap();
        f
    })
    .path()
    .to_owned()
}

fn config(proxy: &ProxyHandle, database: &str, user: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(proxy.port())
        .user(user)
        .dbname(database)
        .connect_timeout(Duration::from_secs(10));
    c
}

#[tokio::test]
async fn upstream_tls_modes_reach_a_hostssl_only_server() {
    let proxy = proxy().await;
    for database in [
        "ssl_prefer",
        "ssl_require",
        "ssl_verify_ca",
        "ssl_verify_full_localhost",
        "ssl_verify_full_server_name",
    ] {
        let client = connect(&config(&proxy, database, "postgres"))
            .await
            .unwrap_or_else(|e| panic!("{database}: {e}"));
        assert_eq!(
            simple_value(&client, SSL_IN_USE).await,
            "true",
            "{database}"
        );
    }
}

#[tokio::test]
async fn upstream_tls_disable_is_refused_by_a_hostssl_only_server() {
    let proxy = proxy().await;
    let Err(e) = connect(&config(&proxy, "ssl_disable", "postgres")).await else {
        panic!("a clear upstream connection is refused by hostssl-only pg_hba");
    };
    // The server's own refusal, relayed: no pg_hba.conf entry.
    assert_eq!(sqlstate(&e), "28000", "{e}");
}

#[tokio::test]
async fn upstream_verification_failures_end_the_session_with_08006() {
    let proxy = proxy().await;
    for database in ["ssl_verify_full", "ssl_verify_ca_wrong_root"] {
        let Err(e) = connect(&config(&proxy, database, "postgres")).await else {
            panic!("{database}: the server's certificate must not be accepted");
        };
        assert_eq!(sqlstate(&e), "08006", "{database}: {e}");
        let message = e.as_db_error().unwrap().message().to_owned();
        assert!(message.contains("TLS handshake failed"), "{message}");
    }
}

#[tokio::test]
async fn upstream_prefer_falls_back_to_clear_and_require_does_not() {
    let proxy = proxy().await;
    let client = connect(&config(&proxy, "clear_prefer", "postgres"))
        .await
        .unwrap();
    assert_eq!(simple_value(&client, SSL_IN_USE).await, "false");
    let Err(e) = connect(&config(&proxy, "clear_require", "postgres")).await else {
        panic!("require must not fall back to clear text");
    };
    assert_eq!(sqlstate(&e), "08006", "{e}");
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("does not support TLS"), "{message}");
}

/// Run a Python script with Debian's python3 (psycopg2 and asyncpg come
/// from its packages), libpq's TLS settings taken from the script alone;
/// its stdout and stderr once it succeeded.
async fn run_python(script: &str) -> (String, String) {
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = tokio::process::Command::new(python)
        .args(["-c", script])
        .env_remove("PGSSLMODE")
        .env_remove("PGCHANNELBINDING")
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// psql as `scram_user` through the proxy, with libpq `settings`.
async fn psql_scram(proxy: &ProxyHandle, settings: &str) -> (bool, String, String) {
    psql_scram_to(proxy, "ssl_require", settings).await
}

async fn psql_scram_to(
    proxy: &ProxyHandle,
    database: &str,
    settings: &str,
) -> (bool, String, String) {
    let c = ssl_cluster().await;
    let out = tokio::process::Command::new(c.pg.bindir.join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            SSL_IN_USE,
            "-d",
        ])
        .arg(format!(
            "host=127.0.0.1 port={} user=scram_user dbname={database} {settings}",
            proxy.port()
        ))
        .env("PGPASSWORD", SCRAM_PASSWORD)
        .env_remove("PGSSLMODE")
        .env_remove("PGCHANNELBINDING")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn scram_through_tls_proxy_to_tls_upstream_per_channel_binding_mode() {
    let proxy = proxy().await;

    // Clear client link: libpq's default channel_binding=prefer works
    // (-PLUS is not offered, the client sends `n`).
    let (ok, out, err) = psql_scram(&proxy, "sslmode=disable").await;
    assert!(ok, "{err}");
    assert_eq!(out, "true");

    // TLS client link, channel binding off: works.
    let (ok, out, err) = psql_scram(&proxy, "sslmode=require channel_binding=disable").await;
    assert!(ok, "{err}");
    assert_eq!(out, "true");

    // TLS client link, prefer: libpq sends the `y` flag, which the TLS
    // server would refuse as a downgrade; the proxy says what to set.
    let (ok, _, err) = psql_scram(&proxy, "sslmode=require channel_binding=prefer").await;
    assert!(!ok);
    assert!(err.contains("channel_binding=disable"), "{err}");

    // require: libpq itself stops, since no -PLUS mechanism is offered,
    // before it sends any proof of the password.
    let (ok, _, err) = psql_scram(&proxy, "sslmode=require channel_binding=require").await;
    assert!(!ok);
    assert!(err.contains("did not offer"), "{err}");
    assert!(!err.contains("password authentication failed"), "{err}");

    // tokio-postgres over a clear link, SCRAM with its default binding
    // preference: works.
    let mut c = config(&proxy, "ssl_require", "scram_user");
    c.password(SCRAM_PASSWORD);
    let client = connect(&c).await.unwrap();
    assert_eq!(simple_value(&client, SSL_IN_USE).await, "true");
}

/// On a pooled database the proxy authenticates the client itself: libpq
/// with channel_binding prefer (its default), require and disable logs in
/// through a TLS proxy to a TLS upstream (over TLS the proxy offers
/// SCRAM-SHA-256-PLUS bound to its own certificate), and so do psycopg2
/// with prefer and asyncpg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_scram_logs_in_with_channel_binding_prefer_over_tls_both_ways() {
    let proxy = proxy().await;
    for settings in [
        "sslmode=require",
        "sslmode=require channel_binding=prefer",
        "sslmode=require channel_binding=disable",
        "sslmode=disable",
    ] {
        let (ok, out, err) = psql_scram_to(&proxy, "ssl_pooled", settings).await;
        assert!(ok, "{settings}: {err}");
        assert_eq!(out, "true", "{settings}: the upstream link is TLS");
    }
    // require: the proxy offers SCRAM-SHA-256-PLUS bound to its own
    // certificate, and libpq checks the binding.
    let (ok, out, err) = psql_scram_to(
        &proxy,
        "ssl_pooled",
        "sslmode=require channel_binding=require",
    )
    .await;
    assert!(ok, "channel_binding=require: {err}");
    assert_eq!(out, "true");

    let script = format!(
        r#"
import asyncio, ssl
import psycopg2, asyncpg
common = dict(host="127.0.0.1", port={port}, user="scram_user", password="{password}", dbname="ssl_pooled", sslmode="require")
c = psycopg2.connect(channel_binding="prefer", **common)
cur = c.cursor()
cur.execute("{sql}")
print("psycopg2", cur.fetchone()[0])
async def main():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = await asyncpg.connect(host="127.0.0.1", port={port}, user="scram_user", password="{password}", database="ssl_pooled", ssl=ctx)
    print("asyncpg", await conn.fetchval("{sql}"))
    await conn.close()
asyncio.run(main())
"#,
        port = proxy.port(),
        password = SCRAM_PASSWORD,
        sql = SSL_IN_USE,
    );
    let (stdout, stderr) = run_python(&script).await;
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["psycopg2 true", "asyncpg true"],
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_tls_upstream_session() {
    let proxy = proxy().await;
    let client = connect(&config(&proxy, "ssl_require", "postgres"))
        .await
        .unwrap();
    let token = client.cancel_token();
    let running = tokio::spawn(async move {
        client
            .simple_query("SELECT pg_sleep(30) AS tls_cancel")
            .await
    });
    let watcher = connect(&config(&proxy, "ssl_require", "postgres"))
        .await
        .unwrap();
    let active = "SELECT count(*) FROM pg_stat_activity \
                  WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(30) AS tls_cancel%'";
    assert!(
        crate::harness::wait_until(Duration::from_secs(10), || async {
            simple_value(&watcher, active).await == "1"
        })
        .await,
        "the query never showed up as active"
    );
    // The cancel request goes to the proxy in clear, and on to the server
    // in clear too (as libpq sends it; it carries only the key).
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("cancelled within 10 s")
        .unwrap();
    let Err(e) = result else {
        panic!("the query was not cancelled");
    };
    assert_eq!(sqlstate(&e), "57014");
}

/// The issue's Python drivers through a TLS proxy to a TLS-only upstream,
/// with SCRAM: psycopg2 (libpq) with channel_binding=disable logs in, and
/// with libpq's default `prefer` is refused before any password proof with
/// a message that says what to set; asyncpg (its own protocol code, no
/// channel binding) logs in over TLS. Needs /usr/bin/python3 with psycopg2
/// and asyncpg (Debian's python3-psycopg2 and python3-asyncpg; .ci/run
/// installs them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers_through_a_tls_proxy_to_a_tls_upstream() {
    let proxy = proxy().await;
    let script = format!(
        r#"
import asyncio, ssl
import psycopg2, asyncpg
port = {port}
common = dict(host="127.0.0.1", port=port, user="scram_user", password="{password}", dbname="ssl_require", sslmode="require")
c = psycopg2.connect(channel_binding="disable", **common)
cur = c.cursor()
cur.execute("{sql}")
print("psycopg2", cur.fetchone()[0])
try:
    psycopg2.connect(channel_binding="prefer", **common)
    print("prefer connected")
except psycopg2.OperationalError as e:
    print("prefer refused", "channel_binding=disable" in str(e))
async def main():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="scram_user", password="{password}", database="ssl_require", ssl=ctx)
    print("asyncpg", await conn.fetchval("{sql}"))
    await conn.close()
asyncio.run(main())
"#,
        port = proxy.port(),
        password = SCRAM_PASSWORD,
        sql = SSL_IN_USE,
    );
    let (stdout, stderr) = run_python(&script).await;
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["psycopg2 true", "prefer refused True", "asyncpg true"],
        "{stderr}"
    );
    // Every login above shook hands with TLS on both sides.
    let count = |kind| {
        proxy
            .state
            .metrics
            .tls_handshakes(kind)
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    use heal7_proxy::metrics::TlsHandshake;
    assert!(count(TlsHandshake::ClientOk) >= 3);
    assert!(count(TlsHandshake::UpstreamOk) >= 2);
    assert!(
        heal7_proxy::http::render_metrics(&proxy.state)
            .contains("heal7_proxy_tls_handshakes_total{side=\"client\",result=\"ok\"}")
    );
}

/// libpq's `prefer`: when the TLS attempt itself fails (here a server that
/// answers the SSLRequest `S` and then breaks the handshake), the proxy
/// connects again in clear; `require` does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_prefer_retries_in_clear_after_a_broken_handshake() {
    let clear = pg().await;
    let (host, port) = (clear.host.clone(), clear.port);
    // In front of the clear server: every connection that starts with an
    // SSLRequest gets `S` and then garbage; any other is relayed.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_port = front.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = front.accept().await else {
                return;
            };
            let (host, port) = (host.clone(), port);
            tokio::spawn(async move {
                let mut head = [0u8; 8];
                if socket.read_exact(&mut head).await.is_err() {
                    return;
                }
                if head[4..] == crate::raw_wire::SSL_REQUEST_CODE.to_be_bytes() {
                    let _ = socket.write_all(b"Snot a TLS server hello\n").await;
                    return;
                }
                let mut upstream = tokio::net::TcpStream::connect((host.as_str(), port))
                    .await
                    .unwrap();
                upstream.write_all(&head).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
            });
        }
    });
    let entry = |name: &str, mode: &str| {
        format!(
            "  {name}:\n    host: 127.0.0.1\n    port: {front_port}\n    database: postgres\n    tls: {{mode: {mode}}}\n"
        )
    };
    let yaml = format!(
        "proxy:\n  listen: 127.0.0.1:0\ndatabases:\n{}{}",
        entry("broken_prefer", "prefer"),
        entry("broken_require", "require")
    );
    let proxy = start_proxy_yaml(&yaml).await;
    let client = connect(&config(&proxy, "broken_prefer", "postgres"))
        .await
        .expect("prefer connects in clear after the broken handshake");
    assert_eq!(simple_value(&client, SSL_IN_USE).await, "false");
    let Err(e) = connect(&config(&proxy, "broken_require", "postgres")).await else {
        panic!("require must not fall back to clear text");
    };
    assert_eq!(sqlstate(&e), "08006", "{e}");
    // Both broken handshakes are counted.
    let failed = proxy
        .state
        .metrics
        .tls_handshakes(heal7_proxy::metrics::TlsHandshake::UpstreamFailed)
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failed, 2);
}
