//! Multiplexing on the Redis side (`redis.multiplex`, on by default):
//! plain clients share one server connection per database, clients that
//! change their connection move to their own, and a shared connection that
//! fails answers what it carried with an error and is opened again. Against
//! the harness' real redis-server (see redis_harness.rs).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use heal7_proxy::metrics::redis::DedicatedReason;
use heal7_proxy::resp::Value;

use crate::harness::unique;
use heal7_proxy::reload::ConfigStore;
use heal7_proxy::state::ProxyState;

use crate::redis_harness::{Resp, redis_yaml, start_redis_proxy, start_redis_proxy_with, text};

/// The server's `CLIENT LIST` lines of the shared connections of the
/// proxy listening on `port`, as (id, db).
async fn shared_on_server(port: u16) -> Vec<(String, String)> {
    let mut d = Resp::direct(0).await;
    let list = text(&d.call(&["CLIENT", "LIST"]).await);
    let name = format!("name=heal7-proxy-mux-{port}-");
    list.lines()
        .filter(|l| l.contains(&name))
        .map(|l| {
            let field = |f: &str| {
                l.split(' ')
                    .find_map(|kv| kv.strip_prefix(f))
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("id="), field("db="))
        })
        .collect()
}

#[tokio::test]
async fn many_clients_share_a_few_server_connections_and_each_gets_its_own_values() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("mux");
    const CLIENTS: usize = 20;
    const N: usize = 200;
    let mut tasks = Vec::new();
    // Every client connects first, then all run at once.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
    for t in 0..CLIENTS {
        let u = u.clone();
        let port = proxy.port;
        let start = std::sync::Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            let mut c = Resp::connect(port).await;
            // Served before the others start: no client is alone (a lone
            // one would use a connection of its own).
            assert_eq!(text(&c.call(&["PING"]).await), "PONG");
            start.wait().await;
            let key = |i: usize| format!("saju:{u}:{t}:{i}");
            let value = |i: usize| format!("v{t}-{i}");
            if t % 2 == 0 {
                // Pipelined: all the SETs, then all the GETs.
                for i in 0..N {
                    c.send(&["SET", &key(i), &value(i)]).await;
                }
                for _ in 0..N {
                    assert_eq!(text(&c.read().await.unwrap()), "OK");
                }
                for i in 0..N {
                    c.send(&["GET", &key(i)]).await;
                }
                for i in 0..N {
                    assert_eq!(text(&c.read().await.unwrap()), value(i), "client {t}");
                }
            } else {
                for i in 0..N {
                    c.ok(&["SET", &key(i), &value(i)]).await;
                    assert_eq!(text(&c.call(&["GET", &key(i)]).await), value(i));
                }
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("client task"));
    }
    // While the 20 are connected: a single shared connection to db 1 (one
    // event loop here) carried them all.
    let shared = shared_on_server(proxy.port).await;
    assert_eq!(
        shared.iter().filter(|(_, db)| db == "1").count(),
        1,
        "{shared:?}"
    );
    assert!(shared.len() < CLIENTS, "{shared:?}");
    let m = &proxy.state.metrics.redis;
    assert!(m.multiplexed_commands.load(Ordering::Relaxed) >= (CLIENTS * N * 2) as u64);
    assert!(m.shared_connections.load(Ordering::Relaxed) >= 1);
    assert_eq!(dedicated_total(m), 0);
    // On the server: each client's values under the new prefix, on db 1.
    let mut d = Resp::direct(1).await;
    for t in 0..CLIENTS {
        let keys: Vec<String> = (0..N)
            .map(|i| format!("saju_service:{u}:{t}:{i}"))
            .collect();
        let mut args = vec!["MGET"];
        args.extend(keys.iter().map(String::as_str));
        let got = d.call(&args).await;
        let want: Vec<String> = (0..N).map(|i| format!("v{t}-{i}")).collect();
        assert_eq!(text(&got), format!("[{}]", want.join(", ")), "client {t}");
    }
    drop(clients);
}

#[tokio::test]
async fn clients_that_change_their_connection_leave_and_get_exact_answers() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("leave");
    let m = &proxy.state.metrics.redis;
    let dedicated = |r: DedicatedReason| m.clients_dedicated[r as usize].load(Ordering::Relaxed);
    let key = |s: &str| format!("saju:{u}:{s}");

    // CLIENT SETNAME after shared commands: its own name, not the shared one's.
    let mut named = Resp::connect(proxy.port).await;
    named.ok(&["SET", &key("a"), "1"]).await;
    assert_eq!(text(&named.call(&["GET", &key("a")]).await), "1");
    named.ok(&["CLIENT", "SETNAME", "legacy-worker"]).await;
    assert_eq!(
        text(&named.call(&["CLIENT", "GETNAME"]).await),
        "legacy-worker"
    );
    // And on db 1 too (its own connection there replays the name).
    assert_eq!(text(&named.call(&["GET", &key("a")]).await), "1");
    assert_eq!(dedicated(DedicatedReason::Client), 1);

    // HELLO 3 after shared commands: RESP3 shapes from then on.
    let mut r3 = Resp::connect(proxy.port).await;
    assert_eq!(text(&r3.call(&["HSET", &key("h"), "f", "v"]).await), "1");
    assert!(matches!(
        r3.call(&["HGETALL", &key("h")]).await,
        Value::Aggregate(b'*', _)
    ));
    let hello = r3.call(&["HELLO", "3"]).await;
    assert!(matches!(hello, Value::Aggregate(b'%', _)), "{hello:?}");
    let all = r3.call(&["HGETALL", &key("h")]).await;
    assert!(matches!(all, Value::Aggregate(b'%', _)), "{all:?}");
    assert_eq!(text(&all), "[f, v]");
    assert_eq!(dedicated(DedicatedReason::Hello), 1);

    // AUTH: the server's own answer, and the client goes on.
    let mut auth = Resp::connect(proxy.port).await;
    auth.ok(&["SET", &key("b"), "2"]).await;
    let said = text(&auth.call(&["AUTH", "not-the-password"]).await);
    assert!(said.starts_with("-ERR AUTH"), "{said}");
    assert_eq!(text(&auth.call(&["GET", &key("b")]).await), "2");
    assert_eq!(dedicated(DedicatedReason::Auth), 1);

    // MULTI after shared commands: a transaction on its own connection.
    let mut tx = Resp::connect(proxy.port).await;
    tx.ok(&["SET", &key("c"), "1"]).await;
    tx.ok(&["MULTI"]).await;
    assert_eq!(text(&tx.call(&["INCR", &key("c")]).await), "QUEUED");
    assert_eq!(text(&tx.call(&["EXEC"]).await), "[2]");
    assert_eq!(dedicated(DedicatedReason::Transaction), 1);

    // BLPOP that waits: other clients' shared commands go on meanwhile.
    let mut blocked = Resp::connect(proxy.port).await;
    assert_eq!(text(&blocked.call(&["PING"]).await), "PONG");
    blocked.send(&["BLPOP", &key("q"), "5"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut other = Resp::connect(proxy.port).await;
    let t0 = Instant::now();
    for i in 0..20 {
        other.ok(&["SET", &key("o"), &i.to_string()]).await;
        assert_eq!(text(&other.call(&["GET", &key("o")]).await), i.to_string());
    }
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "not held by the BLPOP: {:?}",
        t0.elapsed()
    );
    assert_eq!(text(&other.call(&["RPUSH", &key("q"), "x"]).await), "1");
    assert_eq!(
        text(&blocked.read().await.unwrap()),
        format!("[{}, x]", key("q")),
        "the name comes back old"
    );
    assert_eq!(dedicated(DedicatedReason::Blocking), 1);
    // The plain clients never left.
    assert_eq!(dedicated_total(m), 5);
}

#[tokio::test]
async fn a_killed_shared_connection_fails_what_it_carried_and_is_opened_again() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("kill");
    let key = format!("saju:{u}:k");
    // A second plain client, so that `c` is not alone (see the next test).
    let mut bystander = Resp::connect(proxy.port).await;
    assert_eq!(text(&bystander.call(&["PING"]).await), "PONG");
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &key, "v1"]).await;
    let id = |list: &[(String, String)]| {
        list.iter()
            .find(|(_, db)| db == "1")
            .map(|(id, _)| id.clone())
            .expect("a shared connection on db 1")
    };
    let first = id(&shared_on_server(proxy.port).await);

    // Killed while idle: the next command simply gets a new one.
    let mut d = Resp::direct(0).await;
    assert_eq!(text(&d.call(&["CLIENT", "KILL", "ID", &first]).await), "1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(text(&c.call(&["GET", &key]).await), "v1");
    let second = id(&shared_on_server(proxy.port).await);
    assert_ne!(first, second);

    // Killed with a command in flight (held by a write pause): that
    // command gets an error, the client and the others go on.
    d.ok(&["CLIENT", "PAUSE", "2000", "WRITE"]).await;
    c.send(&["SET", &key, "v2"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(text(&d.call(&["CLIENT", "KILL", "ID", &second]).await), "1");
    let said = text(&c.read().await.unwrap());
    d.ok(&["CLIENT", "UNPAUSE"]).await;
    assert!(
        said.starts_with("-ERR heal7-proxy: connection to the Redis server lost"),
        "{said}"
    );
    c.ok(&["SET", &key, "v3"]).await;
    assert_eq!(text(&c.call(&["GET", &key]).await), "v3");
    let m = &proxy.state.metrics.redis;
    assert!(m.upstream_errors.load(Ordering::Relaxed) >= 1);
    drop(bystander);
}

/// A plain client alone on its event loop uses a connection of its own
/// (no task hops), joins the shared one when another plain client
/// arrives, and goes back to its own when it is alone again.
#[tokio::test]
async fn a_lone_client_uses_its_own_connection_until_another_arrives() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("lone");
    let key = format!("saju:{u}:k");
    let m = &proxy.state.metrics.redis;
    let multiplexed = || m.multiplexed_commands.load(Ordering::Relaxed);
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &key, "1"]).await;
    assert_eq!(text(&c.call(&["GET", &key]).await), "1");
    assert_eq!(
        multiplexed(),
        0,
        "alone: nothing went through the shared path"
    );
    assert!(shared_on_server(proxy.port).await.is_empty());

    let mut other = Resp::connect(proxy.port).await;
    assert_eq!(text(&other.call(&["PING"]).await), "PONG");
    let before = multiplexed();
    c.ok(&["SET", &key, "2"]).await;
    assert_eq!(text(&c.call(&["GET", &key]).await), "2");
    assert_eq!(multiplexed(), before + 2, "two plain clients share");
    assert_eq!(
        shared_on_server(proxy.port)
            .await
            .iter()
            .filter(|(_, db)| db == "1")
            .count(),
        1
    );

    drop(other);
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.clients_active.load(Ordering::Relaxed) > 1 {
        assert!(
            Instant::now() < deadline,
            "the other client's session ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = multiplexed();
    c.ok(&["SET", &key, "3"]).await;
    assert_eq!(text(&c.call(&["GET", &key]).await), "3");
    assert_eq!(multiplexed(), before, "alone again: its own connection");
    // On the server, under the new prefix and database all along.
    let mut d = Resp::direct(1).await;
    assert_eq!(
        text(&d.call(&["GET", &format!("saju_service:{u}:k")]).await),
        "3"
    );
    assert_eq!(dedicated_total(m), 0);
}

#[tokio::test]
async fn a_reply_past_max_reply_bytes_fails_alone_on_a_shared_connection() {
    let proxy = start_redis_proxy(&redis_yaml("  max_reply_bytes: 65536\n")).await;
    let u = unique("big");
    let mut d = Resp::direct(1).await;
    d.ok(&[
        "SET",
        &format!("saju_service:{u}:big"),
        &"x".repeat(200_000),
    ])
    .await;
    d.ok(&["SET", &format!("saju_service:{u}:small"), "s"])
        .await;
    let mut bystander = Resp::connect(proxy.port).await;
    let mut c = Resp::connect(proxy.port).await;
    // Both served first: neither is alone (see the lone client's test).
    let small = format!("saju:{u}:small");
    assert_eq!(text(&bystander.call(&["GET", &small]).await), "s");
    assert_eq!(text(&c.call(&["GET", &small]).await), "s");
    for _ in 0..3 {
        c.send(&["GET", &format!("saju:{u}:small")]).await;
        c.send(&["GET", &format!("saju:{u}:big")]).await;
        bystander.send(&["GET", &format!("saju:{u}:small")]).await;
    }
    for _ in 0..3 {
        assert_eq!(text(&c.read().await.unwrap()), "s");
        let said = text(&c.read().await.unwrap());
        assert!(said.contains("invalid bulk length 200000"), "{said}");
        assert_eq!(text(&bystander.read().await.unwrap()), "s");
    }
    // The shared connection went on: still the first one.
    assert_eq!(
        text(&c.call(&["GET", &format!("saju:{u}:small")]).await),
        "s"
    );
    assert_eq!(
        proxy
            .state
            .metrics
            .redis
            .shared_connections
            .load(Ordering::Relaxed),
        1
    );
}

/// The same on a connection of its own (a lone client, `multiplex:
/// false`): the command fails, the connection and the pipeline go on.
#[tokio::test]
async fn a_reply_past_max_reply_bytes_fails_alone_on_a_connection_of_its_own() {
    for extra in ["", "  multiplex: false\n"] {
        let proxy =
            start_redis_proxy(&redis_yaml(&format!("  max_reply_bytes: 65536\n{extra}"))).await;
        let u = unique("bigown");
        let mut d = Resp::direct(1).await;
        d.ok(&[
            "SET",
            &format!("saju_service:{u}:big"),
            &"x".repeat(200_000),
        ])
        .await;
        d.ok(&["SET", &format!("saju_service:{u}:small"), "s"])
            .await;
        let mut c = Resp::connect(proxy.port).await;
        for _ in 0..3 {
            c.send(&["GET", &format!("saju:{u}:small")]).await;
            c.send(&["GET", &format!("saju:{u}:big")]).await;
        }
        for _ in 0..3 {
            assert_eq!(text(&c.read().await.unwrap()), "s", "{extra}");
            let said = text(&c.read().await.unwrap());
            assert!(said.contains("invalid bulk length 200000"), "{said}");
        }
        assert_eq!(
            text(&c.call(&["GET", &format!("saju:{u}:small")]).await),
            "s"
        );
        let m = &proxy.state.metrics.redis;
        assert_eq!(m.multiplexed_commands.load(Ordering::Relaxed), 0);
        assert_eq!(
            m.upstream_errors.load(Ordering::Relaxed),
            0,
            "no connection failed"
        );
    }
}

/// A reload reaches a lone client's own connection as it reaches the
/// shared ones: the next batch goes on a connection with the new settings.
#[tokio::test]
async fn a_reload_gives_a_lone_client_a_new_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, redis_yaml("")).unwrap();
    let store = std::sync::Arc::new(ConfigStore::from_file(&path).unwrap());
    let proxy = start_redis_proxy_with(ProxyState::with_store(store.clone())).await;
    let u = unique("lonereload");
    let big = format!("saju:{u}:big");
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &big, &"x".repeat(100_000)]).await;
    assert_eq!(text(&c.call(&["STRLEN", &big]).await), "100000");
    std::fs::write(&path, redis_yaml("  max_reply_bytes: 65536\n")).unwrap();
    assert_eq!(store.reload().unwrap().generation, 2);
    let said = text(&c.call(&["GET", &big]).await);
    assert!(said.contains("invalid bulk length 100000"), "{said}");
    assert_eq!(text(&c.call(&["STRLEN", &big]).await), "100000");
}

#[tokio::test]
async fn multiplex_false_keeps_a_connection_per_client() {
    let proxy = start_redis_proxy(&redis_yaml("  multiplex: false\n")).await;
    let u = unique("nomux");
    let mut a = Resp::connect(proxy.port).await;
    let mut b = Resp::connect(proxy.port).await;
    a.ok(&["SET", &format!("saju:{u}:a"), "1"]).await;
    b.ok(&["SET", &format!("saju:{u}:b"), "2"]).await;
    assert_eq!(text(&a.call(&["GET", &format!("saju:{u}:b")]).await), "2");
    let m = &proxy.state.metrics.redis;
    assert_eq!(m.multiplexed_commands.load(Ordering::Relaxed), 0);
    assert!(shared_on_server(proxy.port).await.is_empty());
}

/// Clients that left the shared path, for any reason.
fn dedicated_total(m: &heal7_proxy::metrics::redis::RedisMetrics) -> u64 {
    m.clients_dedicated
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
}
