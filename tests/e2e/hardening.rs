//! Hostile input and resource bounds (issue 10): frames before login,
//! metric series per database name, which databases a client may reach,
//! client connection limits, console brute force.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::{pg, proxy_yaml, start_proxy_yaml};
use crate::raw_wire::{expect_error, read_message, startup_packet};

fn assert_fatal(f: &HashMap<u8, String>, code: &str, what: &str) {
    assert_eq!(
        f.get(&b'C').map(String::as_str),
        Some(code),
        "{what}: {f:?}"
    );
    assert_eq!(
        f.get(&b'S').map(String::as_str),
        Some("FATAL"),
        "{what}: {f:?}"
    );
}

/// Finding 1: an unauthenticated client declaring a 100 MB password message
/// is refused on the header, before the proxy reads (or buffers) the body,
/// although `max_message_size` (1 GiB by default) would allow it after login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_password_message_before_login_is_fatal_08p01_at_once() {
    let pg = pg().await;
    let proxy = start_proxy_yaml(&proxy_yaml(pg, "tokens")).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&startup_packet(&[
        ("user", b"scram_user"),
        ("database", b"heal7"),
    ]))
    .await
    .unwrap();
    // The server asks for SASL: the client is now between startup and login.
    match read_message(&mut s).await {
        Some((b'R', body)) => assert_eq!(&body[..4], &10i32.to_be_bytes(), "AuthenticationSASL"),
        other => panic!("expected an authentication request, got {other:?}"),
    }
    let declared: u32 = 100 * 1024 * 1024;
    let mut header = vec![b'p'];
    header.extend_from_slice(&declared.to_be_bytes());
    header.extend_from_slice(b"SCRAM-SHA-256\0");
    s.write_all(&header).await.unwrap();
    let f = tokio::time::timeout(
        Duration::from_secs(5),
        expect_error(&mut s, "100 MB password message"),
    )
    .await
    .expect("refused at once, without waiting for the body");
    assert_fatal(&f, "08P01", "100 MB password message before login");
}

/// Finding 4: database names the config does not know share one series;
/// before, each of these 200 names (sent without any login) added its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_names_share_one_other_series() {
    let pg = pg().await;
    let proxy = start_proxy_yaml(&proxy_yaml(pg, "tokens")).await;
    let prefix = crate::harness::unique("nosuchdb");
    for chunk in (0..200).collect::<Vec<_>>().chunks(25) {
        let clients = chunk.iter().map(|i| {
            let database = format!("{prefix}_{i}");
            let addr = proxy.addr;
            async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let packet = startup_packet(&[
                    ("user", pg.superuser.as_bytes()),
                    ("database", database.as_bytes()),
                ]);
                s.write_all(&packet).await.unwrap();
                // The server's 3D000 (database does not exist), or a close.
                while let Some((tag, _)) = read_message(&mut s).await {
                    if tag == b'E' {
                        break;
                    }
                }
            }
        });
        futures_util::future::join_all(clients).await;
    }
    let text = heal7_proxy::http::render_metrics(&proxy.state);
    let totals: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("heal7_proxy_database_client_connections_total{"))
        .collect();
    assert_eq!(
        totals,
        ["heal7_proxy_database_client_connections_total{database=\"(other)\"} 200"],
        "one series for every unknown name"
    );
    assert!(
        !text.contains(&prefix),
        "no series names an unknown database"
    );
    // A configured name still gets its own.
    let c = proxy.connect("heal7").await;
    drop(c);
    let text = heal7_proxy::http::render_metrics(&proxy.state);
    assert!(
        text.contains("heal7_proxy_database_client_connections_total{database=\"heal7\"} 1"),
        "{text}"
    );
}

/// A raw login: Ok at ReadyForQuery, the ErrorResponse's fields otherwise.
async fn raw_login(
    addr: std::net::SocketAddr,
    params: &[(&str, &[u8])],
) -> Result<TcpStream, HashMap<u8, String>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&startup_packet(params)).await.unwrap();
    loop {
        match read_message(&mut s).await {
            Some((b'Z', _)) => return Ok(s),
            Some((b'E', body)) => return Err(crate::raw_wire::error_fields(&body)),
            Some(_) => {}
            None => panic!("closed during login without an ErrorResponse"),
        }
    }
}

fn yaml_with(pg: &crate::harness::Pg, settings: &str) -> String {
    proxy_yaml(pg, "tokens").replace(
        "  on_parse_error: tokens\n",
        &format!("  on_parse_error: tokens\n{settings}"),
    )
}

/// Finding 6: with `other_databases: refuse` a name outside the config is
/// refused (3D000) by the proxy itself, before any upstream connection:
/// the refusing proxy's upstream port is closed, so a connection attempt
/// would answer 08006 instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_databases_refuse_answers_3d000_without_connecting() {
    let pg = pg().await;
    let proxy = start_proxy_yaml(&yaml_with(pg, "  other_databases: refuse\n")).await;
    let Err(e) = crate::harness::connect(&proxy.config("heal7_plain")).await else {
        panic!("heal7_plain is refused");
    };
    assert_eq!(crate::harness::sqlstate(&e), "3D000", "{e:?}");
    let message = e.as_db_error().map(|d| d.message().to_owned());
    assert_eq!(
        message.as_deref(),
        Some("database \"heal7_plain\" is not in the config")
    );
    let refused = |reason| {
        proxy
            .state
            .metrics
            .refused(reason)
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(refused(heal7_proxy::metrics::Refusal::OtherDatabase), 1);
    assert!(
        heal7_proxy::http::render_metrics(&proxy.state)
            .contains("heal7_proxy_clients_refused_total{reason=\"other_database\"} 1\n")
    );
    // Configured names (key and alias) still pass.
    for database in ["heal7", "heal7_saju"] {
        let c = proxy.connect(database).await;
        assert_eq!(crate::harness::simple_value(&c, "SELECT 1").await, "1");
    }

    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = crate::harness::yaml_for_upstream("127.0.0.1", closed_port, "tokens").replace(
        "  on_parse_error: tokens\n",
        "  on_parse_error: tokens\n  other_databases: refuse\n",
    );
    let unreachable = start_proxy_yaml(&yaml).await;
    for database in ["postgres", "template1"] {
        let e = raw_login(
            unreachable.addr,
            &[
                ("user", pg.superuser.as_bytes()),
                ("database", database.as_bytes()),
            ],
        )
        .await
        .expect_err("refused");
        assert_fatal(&e, "3D000", database);
    }
    // Without the setting, the same name goes upstream (today's behaviour).
    let forwarding = start_proxy_yaml(&proxy_yaml(pg, "tokens")).await;
    let c = forwarding.connect("heal7_plain").await;
    assert_eq!(
        crate::harness::simple_value(&c, "SELECT name FROM users").await,
        "plain-alice"
    );
}

/// Finding 6: a replication connection (physical or logical) is refused
/// (28000) unless `allow_replication: true`; `replication=off` is a normal
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_connections_are_refused_unless_allowed() {
    let pg = pg().await;
    let user = pg.superuser.as_bytes();
    let proxy = start_proxy_yaml(&proxy_yaml(pg, "tokens")).await;
    for value in ["database", "true", "on", "1"] {
        let e = raw_login(
            proxy.addr,
            &[
                ("user", user),
                ("database", b"heal7"),
                ("replication", value.as_bytes()),
            ],
        )
        .await
        .expect_err("replication is refused");
        assert_fatal(&e, "28000", &format!("replication={value}"));
    }
    raw_login(
        proxy.addr,
        &[
            ("user", user),
            ("database", b"heal7"),
            ("replication", b"off"),
        ],
    )
    .await
    .expect("replication=off is an ordinary session");

    let allowing = start_proxy_yaml(&yaml_with(pg, "  allow_replication: true\n")).await;
    // A logical replication connection to heal7: the server's pg_hba lets
    // the superuser in (trust on `all` covers logical replication).
    raw_login(
        allowing.addr,
        &[
            ("user", user),
            ("database", b"heal7"),
            ("replication", b"database"),
        ],
    )
    .await
    .expect("allowed replication connection reaches the server");
}

/// Finding 9: beyond `max_client_connections` a new client gets FATAL
/// 53300 at once; a freed slot serves the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_max_client_connections_gets_53300() {
    let pg = pg().await;
    let proxy = start_proxy_yaml(&yaml_with(pg, "  max_client_connections: 2\n")).await;
    let first = proxy.connect("heal7").await;
    let second = proxy.connect("heal7").await;
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        crate::harness::connect(&proxy.config("heal7")),
    )
    .await
    .expect("the third client is answered at once");
    let Err(e) = third else {
        panic!("a third client is refused");
    };
    assert_eq!(crate::harness::sqlstate(&e), "53300", "{e:?}");
    let refused = proxy
        .state
        .metrics
        .refused(heal7_proxy::metrics::Refusal::MaxClientConnections)
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 1);
    assert_eq!(
        crate::harness::simple_value(&first, "SELECT 1").await,
        "1",
        "the clients within the limit are untouched"
    );
    drop(second);
    let served = crate::harness::wait_until(Duration::from_secs(10), || async {
        crate::harness::connect(&proxy.config("heal7"))
            .await
            .is_ok()
    })
    .await;
    assert!(served, "a freed slot serves a new client");
}
