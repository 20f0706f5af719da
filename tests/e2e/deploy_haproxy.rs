//! deploy/haproxy/haproxy.cfg, run by a real HAProxy (Debian's `haproxy`)
//! in front of two proxies, with only addresses and ports changed: clients
//! are spread round robin, and an instance whose `/readyz` fails (its
//! upstream gone) is taken out of rotation by the health check. Skips
//! (loudly) only where `haproxy` is not installed; CI installs it.

use std::sync::Arc;
use std::time::Duration;

use heal7_proxy::metrics::Metrics;
use heal7_proxy::reload::ConfigStore;
use heal7_proxy::state::ProxyState;
use heal7_proxy::{http, server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::harness::{connect, pg, pg_started, proxy_yaml, simple_value};

struct Instance {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<ConfigStore>,
    state: ProxyState,
    port: u16,
    admin: u16,
    shutdown: CancellationToken,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn instance() -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, proxy_yaml(pg().await, "tokens")).unwrap();
    let store = Arc::new(ConfigStore::from_file(&path).unwrap());
    let state = ProxyState::with_store(store.clone());
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (st, sd) = (state.clone(), shutdown.clone());
    tokio::spawn(async move { server::run(listener, st, sd).await });
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap().port();
    tokio::spawn(http::run(admin_listener, state.clone(), shutdown.clone()));
    Instance {
        _dir: dir,
        path,
        store,
        state,
        port,
        admin,
        shutdown,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The example config with this test's addresses: the frontend on
/// `front`, each server at its instance's ports (the example's instances
/// share one admin port number on two hosts; here they are on one host),
/// fewer connections.
fn config_for(front: u16, a: &Instance, b: &Instance) -> String {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/haproxy/haproxy.cfg"
    ))
    .unwrap();
    let replace = |text: String, from: &str, to: String| {
        assert!(text.contains(from), "the example no longer has {from:?}");
        text.replace(from, &to)
    };
    let text = replace(example, "bind :5432", format!("bind 127.0.0.1:{front}"));
    // 20000 connections need twice as many descriptors as a test may have.
    let text = replace(text, "maxconn 20000", "maxconn 1000".into());
    let text = replace(text, "check port 9930", "check".into());
    let text = replace(
        text,
        "server heal7-proxy-1 10.0.0.11:6432",
        format!("server heal7-proxy-1 127.0.0.1:{} port {}", a.port, a.admin),
    );
    replace(
        text,
        "server heal7-proxy-2 10.0.0.12:6432",
        format!("server heal7-proxy-2 127.0.0.1:{} port {}", b.port, b.admin),
    )
}

fn config_through(front: u16) -> tokio_postgres::Config {
    let pg = pg_started();
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(front)
        .user(&pg.superuser)
        .dbname("heal7")
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = &pg.password {
        c.password(p);
    }
    c
}

fn accepted(i: &Instance) -> u64 {
    Metrics::get(&i.state.metrics.database("heal7").clients_total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_haproxy_config_balances_and_drops_an_unready_instance() {
    match std::process::Command::new("haproxy").arg("-v").output() {
        Ok(out) if out.status.success() => {}
        _ => {
            eprintln!(
                "SKIPPED: haproxy is not installed: deploy/haproxy/haproxy.cfg was not run (CI installs Debian's haproxy)"
            );
            return;
        }
    }
    let (a, b) = (instance().await, instance().await);
    let front = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, config_for(front, &a, &b)).unwrap();
    let mut haproxy = tokio::process::Command::new("haproxy")
        .args(["-db", "-f", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let through = config_through(front);
    let first = {
        let mut got = None;
        for _ in 0..100 {
            if let Ok(c) = connect(&through).await {
                got = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        got.expect("HAProxy accepts and forwards")
    };
    assert_eq!(
        simple_value(&first, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    drop(first);

    // Round robin: ten more clients, five on each.
    let before = (accepted(&a), accepted(&b));
    for _ in 0..10 {
        let c = connect(&through).await.expect("through HAProxy");
        assert_eq!(
            simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
            "fresh-alice"
        );
    }
    assert_eq!(accepted(&a) - before.0, 5);
    assert_eq!(accepted(&b) - before.1, 5);

    // B's upstream goes away: its /readyz fails and the health check (3
    // failures, 2 s apart) takes it out; then every client reaches A.
    let closed = free_port();
    std::fs::write(
        &b.path,
        std::fs::read_to_string(&b.path).unwrap().replace(
            &format!("port: {}", pg_started().port),
            &format!("port: {closed}"),
        ),
    )
    .unwrap();
    b.store.reload().unwrap();
    let mut in_a_row = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while in_a_row < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HAProxy kept sending clients to the instance that is not ready"
        );
        match connect(&through).await {
            Ok(_) => in_a_row += 1,
            Err(_) => {
                in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let b_accepted = accepted(&b);
    for _ in 0..6 {
        connect(&through).await.expect("every client reaches A");
    }
    assert_eq!(accepted(&b), b_accepted, "B is out of rotation");
    haproxy.kill().await.unwrap();
}
