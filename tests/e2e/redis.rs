//! The Redis side against a real redis-server (see redis_harness.rs): for
//! each command family, data lands under the new prefix and database
//! (checked on a direct connection), reads come back under the old names,
//! and nothing is written under the old names.

use std::sync::atomic::Ordering;

use heal7_proxy::reload::ConfigStore;
use heal7_proxy::state::ProxyState;

use crate::harness::unique;
use crate::redis_harness::{
    Resp, redis_yaml, sorted, start_redis_proxy, start_redis_proxy_with, text, with_fixed_ports,
};

/// The value of `key` read directly on `db`.
async fn direct_get(db: u16, args: &[&str]) -> String {
    let mut c = Resp::direct(db).await;
    text(&c.call(args).await)
}

#[tokio::test]
async fn every_command_family_lands_in_the_new_namespace_and_database() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("fam");
    let k = |s: &str| format!("saju:{u}:{s}");
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &k("s"), "v1"]).await;
    assert_eq!(text(&c.call(&["HSET", &k("h"), "f", "hv"]).await), "1");
    assert_eq!(text(&c.call(&["RPUSH", &k("l"), "a", "b"]).await), "2");
    assert_eq!(text(&c.call(&["SADD", &k("set"), "m"]).await), "1");
    assert_eq!(text(&c.call(&["ZADD", &k("z"), "1", "zm"]).await), "1");
    let id = text(&c.call(&["XADD", &k("x"), "*", "f", "xv"]).await);
    assert!(id.contains('-'), "{id}");
    assert_eq!(text(&c.call(&["EXPIRE", &k("s"), "1000"]).await), "1");
    c.ok(&["SET", &format!("session:{u}"), "tok"]).await;

    // Directly: under the new names, on the new databases.
    let n = |s: &str| format!("saju_service:{u}:{s}");
    assert_eq!(direct_get(1, &["GET", &n("s")]).await, "v1");
    assert_eq!(direct_get(1, &["HGET", &n("h"), "f"]).await, "hv");
    assert_eq!(
        direct_get(1, &["LRANGE", &n("l"), "0", "-1"]).await,
        "[a, b]"
    );
    assert_eq!(direct_get(1, &["SMEMBERS", &n("set")]).await, "[m]");
    assert_eq!(direct_get(1, &["ZRANGE", &n("z"), "0", "-1"]).await, "[zm]");
    assert_eq!(direct_get(1, &["XLEN", &n("x")]).await, "1");
    let ttl: i64 = direct_get(1, &["TTL", &n("s")]).await.parse().unwrap();
    assert!((900..=1000).contains(&ttl), "{ttl}");
    assert_eq!(
        direct_get(0, &["GET", &format!("shared_common:session:{u}")]).await,
        "tok"
    );
    // Nothing under the old names, on either database.
    for db in [0, 1] {
        let mut d = Resp::direct(db).await;
        let old = d.call(&["KEYS", &format!("saju:{u}:*")]).await;
        assert_eq!(text(&old), "[]", "db {db}");
        assert_eq!(
            text(&d.call(&["EXISTS", &format!("session:{u}")]).await),
            "0"
        );
    }

    // Reads through the proxy, under the old names.
    assert_eq!(text(&c.call(&["GET", &k("s")]).await), "v1");
    assert_eq!(text(&c.call(&["TYPE", &k("z")]).await), "zset");
    assert_eq!(
        text(&c.call(&["XRANGE", &k("x"), "-", "+"]).await),
        format!("[[{id}, [f, xv]]]")
    );
    assert_eq!(
        text(&c.call(&["GET", &format!("session:{u}")]).await),
        "tok"
    );
    let read = c.call(&["XREAD", "STREAMS", &k("x"), "0"]).await;
    assert_eq!(
        text(&read),
        format!("[[{}, [[{id}, [f, xv]]]]]", k("x")),
        "stream names come back"
    );
    let m = &proxy.state.metrics.redis;
    let ns = m.namespace("saju:@0");
    // 7 writes and 4 reads above.
    assert_eq!(ns.keys_rewritten.load(Ordering::Relaxed), 11);
}

#[tokio::test]
async fn keys_and_scan_answer_with_the_old_names() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("scan");
    let mut c = Resp::connect(proxy.port).await;
    let names: Vec<String> = (0..5).map(|i| format!("saju:{u}:{i}")).collect();
    for n in &names {
        c.ok(&["SET", n, "x"]).await;
    }
    let pattern = format!("saju:{u}:*");
    assert_eq!(sorted(&c.call(&["KEYS", &pattern]).await), names);
    let mut cursor = "0".to_owned();
    let mut seen = Vec::new();
    loop {
        let r = c
            .call(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "2"])
            .await;
        let items = r.elements().unwrap();
        cursor = text(&items[0]);
        seen.extend(items[1].elements().unwrap().iter().map(text));
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, names);
    let random = c.call(&["RANDOMKEY"]).await;
    assert!(
        !text(&random).starts_with("saju_service:"),
        "{}",
        text(&random)
    );
}

#[tokio::test]
async fn transactions_run_on_their_database_and_cross_database_ones_are_refused() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("tx");
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["MULTI"]).await;
    assert_eq!(
        text(&c.call(&["SET", &format!("saju:{u}:a"), "1"]).await),
        "QUEUED"
    );
    assert_eq!(
        text(&c.call(&["INCR", &format!("saju:{u}:a")]).await),
        "QUEUED"
    );
    assert_eq!(text(&c.call(&["EXEC"]).await), "[OK, 2]");
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}:a")]).await,
        "2"
    );

    // Keys on db 1 and db 0 in one transaction: nothing runs.
    c.ok(&["MULTI"]).await;
    c.call(&["SET", &format!("saju:{u}:b"), "1"]).await;
    c.call(&["SET", &format!("session:{u}:b"), "1"]).await;
    let exec = text(&c.call(&["EXEC"]).await);
    assert!(
        exec.starts_with("-EXECABORT") && exec.contains("different databases"),
        "{exec}"
    );
    assert_eq!(
        direct_get(1, &["EXISTS", &format!("saju_service:{u}:b")]).await,
        "0"
    );
    assert_eq!(
        direct_get(0, &["EXISTS", &format!("shared_common:session:{u}:b")]).await,
        "0"
    );

    // What the server refuses while queueing, the proxy refuses too, and
    // EXEC aborts as Redis would.
    c.ok(&["MULTI"]).await;
    c.call(&["SET", &format!("saju:{u}:q"), "1"]).await;
    let arity = text(&c.call(&["GET"]).await);
    assert_eq!(arity, "-ERR wrong number of arguments for 'get' command");
    assert!(text(&c.call(&["NOSUCH", "x"]).await).starts_with("-ERR unknown command 'nosuch'"));
    assert!(text(&c.call(&["EXEC"]).await).starts_with("-EXECABORT Transaction discarded"));
    assert_eq!(
        direct_get(1, &["EXISTS", &format!("saju_service:{u}:q")]).await,
        "0"
    );

    // One multi-key command across databases: refused, nothing deleted.
    c.ok(&["SET", &format!("session:{u}:c"), "keep"]).await;
    let del = text(
        &c.call(&["DEL", &format!("saju:{u}:a"), &format!("session:{u}:c")])
            .await,
    );
    assert!(
        del.starts_with("-ERR heal7-proxy") && del.contains("different databases"),
        "{del}"
    );
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}:a")]).await,
        "2"
    );
    assert_eq!(
        direct_get(0, &["GET", &format!("shared_common:session:{u}:c")]).await,
        "keep"
    );

    // WATCH pins the database: a change from elsewhere aborts EXEC.
    let key = format!("saju:{u}:w");
    c.ok(&["WATCH", &key]).await;
    let mut other = Resp::connect(proxy.port).await;
    other.ok(&["SET", &key, "theirs"]).await;
    c.ok(&["MULTI"]).await;
    c.call(&["SET", &key, "mine"]).await;
    assert_eq!(
        text(&c.call(&["EXEC"]).await),
        "nil",
        "the watched key changed"
    );
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}:w")]).await,
        "theirs"
    );
    assert!(
        proxy
            .state
            .metrics
            .redis
            .refused_cross_database
            .load(Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn select_is_virtual_and_chooses_the_rules() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("sel");
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SELECT", "2"]).await;
    c.ok(&["SET", &format!("dream:{u}"), "d"]).await;
    c.ok(&["SET", &format!("plain:{u}"), "p"]).await;
    assert_eq!(
        direct_get(3, &["GET", &format!("dream_service:{u}")]).await,
        "d"
    );
    assert_eq!(direct_get(2, &["GET", &format!("plain:{u}")]).await, "p");
    assert_eq!(text(&c.call(&["GET", &format!("dream:{u}")]).await), "d");
    c.ok(&["SELECT", "0"]).await;
    assert_eq!(text(&c.call(&["GET", &format!("dream:{u}")]).await), "nil");
    assert!(text(&c.call(&["SELECT", "x"]).await).starts_with("-ERR"));
}

#[tokio::test]
async fn pipelines_across_databases_answer_in_order() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("pipe");
    let mut c = Resp::connect(proxy.port).await;
    let mut raw = bytes::BytesMut::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let (a, b) = (format!("saju:{u}:{i}"), format!("session:{u}:{i}"));
        for (cmd, want) in [
            (
                vec!["SET".to_owned(), a.clone(), format!("a{i}")],
                "OK".to_owned(),
            ),
            (vec!["SET".into(), b.clone(), format!("b{i}")], "OK".into()),
            (vec!["GET".into(), a], format!("a{i}")),
            (vec!["PING".into()], "PONG".into()),
            (vec!["GET".into(), b], format!("b{i}")),
        ] {
            heal7_proxy::resp::encode_command(&mut raw, &cmd);
            expected.push(want);
        }
    }
    c.send_raw(&raw).await;
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&text(&c.read().await.unwrap()), want, "reply {i}");
    }
}

#[tokio::test]
async fn scripts_get_their_keys_rewritten_and_are_counted() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("eval");
    let mut c = Resp::connect(proxy.port).await;
    let key = format!("saju:{u}:e");
    let r = c
        .call(&[
            "EVAL",
            "return redis.call('SET', KEYS[1], ARGV[1])",
            "1",
            &key,
            "ev",
        ])
        .await;
    assert_eq!(text(&r), "OK");
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}:e")]).await,
        "ev"
    );
    assert_eq!(proxy.state.metrics.redis.scripts.load(Ordering::Relaxed), 1);
    // Blocking pops name the key that answered, under the client's name.
    c.call(&["RPUSH", &format!("saju:{u}:q"), "job"]).await;
    let popped = c.call(&["BLPOP", &format!("saju:{u}:q"), "1"]).await;
    assert_eq!(text(&popped), format!("[saju:{u}:q, job]"));
}

#[tokio::test]
async fn pubsub_messages_are_relayed() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let channel = unique("chan");
    let mut sub = Resp::connect(proxy.port).await;
    assert_eq!(
        text(&sub.call(&["SUBSCRIBE", &channel]).await),
        format!("[subscribe, {channel}, 1]")
    );
    let mut publisher = Resp::connect(proxy.port).await;
    assert_eq!(
        text(&publisher.call(&["PUBLISH", &channel, "hi"]).await),
        "1"
    );
    assert_eq!(
        text(&sub.read().await.unwrap()),
        format!("[message, {channel}, hi]")
    );
}

#[tokio::test]
async fn unmatched_reject_refuses_keys_outside_every_namespace() {
    let proxy = start_redis_proxy(&redis_yaml("  unmatched: reject\n")).await;
    let mut c = Resp::connect(proxy.port).await;
    let e = text(&c.call(&["SET", "legacy_other_key", "x"]).await);
    assert!(
        e.starts_with("-ERR heal7-proxy: key 'legacy_other_key' matches no namespace rule"),
        "{e}"
    );
    assert_eq!(direct_get(0, &["EXISTS", "legacy_other_key"]).await, "0");
    c.ok(&["SET", &format!("saju:{}", unique("rej")), "x"])
        .await;
    assert_eq!(
        text(&c.call(&["PING"]).await),
        "PONG",
        "keyless commands pass"
    );
    assert_eq!(
        proxy
            .state
            .metrics
            .redis
            .refused_unmatched
            .load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn bad_input_gets_an_error_or_a_close_and_others_go_on() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let mut bystander = Resp::connect(proxy.port).await;
    assert_eq!(text(&bystander.call(&["PING"]).await), "PONG");

    let cases: [&[u8]; 4] = [
        b"*1\r\n+PING\r\n",
        // A bulk length of 2^40: refused from the header alone.
        b"*2\r\n$3\r\nGET\r\n$1099511627776\r\n",
        b"*-\r\n",
        // A 512 MB value: past redis.max_request_bytes (64 MiB by default).
        b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$536870912\r\n",
    ];
    for case in cases {
        let mut c = Resp::connect(proxy.port).await;
        c.send_raw(case).await;
        let e = text(&c.read().await.expect("an error before the close"));
        assert!(e.starts_with("-ERR Protocol error"), "{case:?}: {e}");
        assert!(c.read().await.is_none(), "{case:?}: closed after the error");
    }
    assert_eq!(
        proxy
            .state
            .metrics
            .redis
            .protocol_errors
            .load(Ordering::Relaxed),
        4
    );

    // An unknown command is the server's error; the connection goes on.
    let mut c = Resp::connect(proxy.port).await;
    let e = text(&c.call(&["NOSUCHCOMMAND", "x"]).await);
    assert!(e.starts_with("-ERR unknown command"), "{e}");
    // A large value under the bound passes whole.
    let big = "v".repeat(8 << 20);
    let key = format!("saju:{}", unique("big"));
    c.ok(&["SET", &key, &big]).await;
    assert_eq!(
        text(&c.call(&["STRLEN", &key]).await),
        (8 << 20).to_string()
    );
    assert_eq!(text(&bystander.call(&["PING"]).await), "PONG");
}

#[tokio::test]
async fn a_reload_applies_new_rules_to_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, redis_yaml("")).unwrap();
    let store = std::sync::Arc::new(ConfigStore::from_file(&path).unwrap());
    let proxy = start_redis_proxy_with(ProxyState::with_store(store.clone())).await;
    let u = unique("reload");
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &format!("saju:{u}"), "before"]).await;
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}")]).await,
        "before"
    );

    let moved = redis_yaml("").replace(
        "to: \"saju_service:\", to_db: 1",
        "to: \"saju_v2:\", to_db: 4",
    );
    std::fs::write(&path, moved).unwrap();
    assert_eq!(store.reload().unwrap().generation, 2);
    c.ok(&["SET", &format!("saju:{u}"), "after"]).await;
    assert_eq!(
        direct_get(4, &["GET", &format!("saju_v2:{u}")]).await,
        "after"
    );
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}")]).await,
        "before"
    );
    assert!(
        proxy
            .state
            .metrics
            .redis
            .command_table_loads
            .load(Ordering::Relaxed)
            >= 2,
        "re-read on reload"
    );
}

#[tokio::test]
async fn dry_run_forwards_unchanged_and_counts_what_would_move() {
    let proxy = start_redis_proxy(&redis_yaml("  mode: dry_run\n")).await;
    let u = unique("dry");
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &format!("saju:{u}"), "v"]).await;
    assert_eq!(direct_get(0, &["GET", &format!("saju:{u}")]).await, "v");
    assert_eq!(
        direct_get(1, &["EXISTS", &format!("saju_service:{u}")]).await,
        "0"
    );
    let ns = proxy.state.metrics.redis.namespace("saju:@0");
    assert_eq!(ns.keys_dry_run.load(Ordering::Relaxed), 1);
    assert_eq!(ns.keys_rewritten.load(Ordering::Relaxed), 0);
    let text = heal7_proxy::http::render_metrics(&proxy.state);
    assert!(
        text.contains("heal7_proxy_redis_namespace_keys_dry_run_total{namespace=\"saju:@0\"} 1"),
        "{text}"
    );
    // The exposition stays valid with the Redis families (Debian's promtool).
    if std::path::Path::new("/usr/bin/promtool").exists() {
        let mut child = tokio::process::Command::new("/usr/bin/promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use tokio::io::AsyncWriteExt;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .await
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!said.contains("heal7_proxy_redis"), "promtool: {said}");
    }
}

/// The legacy services are Python: redis-py through the proxy, plain
/// calls and a pipeline (Debian's python3-redis).
#[tokio::test]
async fn redis_py_through_the_proxy() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("py");
    let script = format!(
        r#"
import redis
r = redis.Redis(host="127.0.0.1", port={port}, db=0)
r.set("saju:{u}:a", "1")
r.hset("saju:{u}:h", mapping={{"f": "v"}})
p = r.pipeline(transaction=False)
p.incr("saju:{u}:a"); p.get("saju:{u}:a"); p.set("session:{u}", "s")
print(p.execute())
t = r.pipeline()
t.incr("saju:{u}:a"); t.get("saju:{u}:a")
print(t.execute())
try:
    t = r.pipeline(); t.incr("saju:{u}:a"); t.get("session:{u}"); t.execute()
except redis.exceptions.ResponseError as e:
    print("refused:", "different databases" in str(e))
print(sorted(k.decode() for k in r.scan_iter(match="saju:{u}:*")))
print(r.hgetall("saju:{u}:h"))
"#,
        port = proxy.port
    );
    // Debian's interpreter, where python3-redis is installed.
    let out = tokio::process::Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .await
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "[2, b'2', True]\n[3, b'3']\nrefused: True\n['saju:{u}:a', 'saju:{u}:h']\n{{b'f': b'v'}}\n"
        )
    );
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}:a")]).await,
        "3"
    );
    assert_eq!(
        direct_get(0, &["GET", &format!("shared_common:session:{u}")]).await,
        "s"
    );
}

#[tokio::test]
async fn shutdown_ends_a_client_blocked_in_blpop() {
    let config =
        heal7_proxy::config::Config::from_yaml(&redis_yaml(""), "t").expect("valid config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(heal7_proxy::server::run_redis(
        listener,
        ProxyState::new(config),
        shutdown.clone(),
    ));
    let mut c = Resp::connect(port).await;
    assert_eq!(text(&c.call(&["PING"]).await), "PONG");
    c.send(&["BLPOP", &format!("saju:{}", unique("never")), "0"])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), running)
        .await
        .expect("run_redis returns although a client is blocked")
        .unwrap()
        .unwrap();
    let said = text(&c.read().await.expect("an error first"));
    assert!(said.contains("shutting down"), "{said}");
    assert!(
        c.read().await.is_none(),
        "then the blocked client is closed"
    );
}

#[tokio::test]
async fn resp3_clients_keep_their_protocol_on_every_database() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("r3");
    let mut c = Resp::connect(proxy.port).await;
    let hello = c.call(&["HELLO", "3"]).await;
    assert!(
        matches!(hello, heal7_proxy::resp::Value::Aggregate(b'%', _)),
        "{hello:?}"
    );
    // db 1's connection opens after HELLO: it speaks RESP3 too.
    c.call(&["HSET", &format!("saju:{u}:h"), "f", "v"]).await;
    let all = c.call(&["HGETALL", &format!("saju:{u}:h")]).await;
    assert!(
        matches!(all, heal7_proxy::resp::Value::Aggregate(b'%', _)),
        "{all:?}"
    );
    assert_eq!(text(&all), "[f, v]");
    c.call(&["XADD", &format!("saju:{u}:x"), "1-1", "f", "v"])
        .await;
    let read = c
        .call(&["XREAD", "STREAMS", &format!("saju:{u}:x"), "0"])
        .await;
    assert_eq!(
        text(&read),
        format!("[saju:{u}:x, [[1-1, [f, v]]]]"),
        "a RESP3 map, names mapped back"
    );
}

#[tokio::test]
async fn migrate_keys_copies_the_old_layout_with_ttls_and_resumes() {
    let u = unique("mig");
    let yaml = format!(
        "databases: {{heal7: {{}}}}\nredis:\n  upstream: {{host: 127.0.0.1, port: {}}}\n  namespaces:\n    - {{from: \"old{u}:\", from_db: 6, to: \"new{u}:\", to_db: 7}}\n",
        crate::redis_harness::redis_server().port
    );
    let config = heal7_proxy::config::Config::from_yaml(&yaml, "t").unwrap();
    let mut old = Resp::direct(6).await;
    for i in 0..30 {
        old.ok(&["SET", &format!("old{u}:{i}"), &i.to_string()])
            .await;
    }
    old.ok(&["SET", &format!("old{u}:ttl"), "t", "EX", "1000"])
        .await;
    old.call(&["HSET", &format!("old{u}:h"), "f", "v"]).await;
    let mut new = Resp::direct(7).await;
    // One destination already there (live traffic got it first): kept.
    new.ok(&["SET", &format!("new{u}:0"), "newer"]).await;

    let mut log = Vec::new();
    let dry = heal7_proxy::commands::migrate_keys(&config, true, 7, &mut log)
        .await
        .unwrap();
    assert_eq!((dry[0].scanned, dry[0].copied, dry[0].present), (32, 31, 1));
    assert_eq!(
        text(&new.call(&["EXISTS", &format!("new{u}:1")]).await),
        "0",
        "dry run copies nothing"
    );

    let done = heal7_proxy::commands::migrate_keys(&config, false, 7, &mut log)
        .await
        .unwrap();
    assert_eq!((done[0].copied, done[0].present), (31, 1));
    assert_eq!(text(&new.call(&["GET", &format!("new{u}:5")]).await), "5");
    assert_eq!(
        text(&new.call(&["GET", &format!("new{u}:0")]).await),
        "newer"
    );
    assert_eq!(
        text(&new.call(&["HGET", &format!("new{u}:h"), "f"]).await),
        "v"
    );
    let ttl: i64 = text(&new.call(&["TTL", &format!("new{u}:ttl")]).await)
        .parse()
        .unwrap();
    assert!((900..=1000).contains(&ttl), "the TTL comes along: {ttl}");
    assert_eq!(
        text(&old.call(&["GET", &format!("old{u}:5")]).await),
        "5",
        "copied, not moved"
    );

    // Again: nothing left to copy.
    let again = heal7_proxy::commands::migrate_keys(&config, false, 7, &mut log)
        .await
        .unwrap();
    assert_eq!((again[0].copied, again[0].present), (0, 32));
    let log = String::from_utf8(log).unwrap();
    assert!(
        log.contains(&format!(
            "done old{u}:@6 -> new{u}:@7: 32 scanned, 31 copied, 1 already there"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn a_pipeline_of_large_replies_streams_through_whole_and_in_order() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("bigpipe");
    let mut c = Resp::connect(proxy.port).await;
    let value = "x".repeat(1 << 20);
    for i in 0..4 {
        c.ok(&["SET", &format!("saju:{u}:{i}"), &format!("{i}{value}")])
            .await;
    }
    let mut raw = bytes::BytesMut::new();
    for i in 0..40 {
        heal7_proxy::resp::encode_command(&mut raw, &["GET", &format!("saju:{u}:{}", i % 4)]);
    }
    c.send_raw(&raw).await;
    for i in 0..40 {
        let got = text(&c.read().await.unwrap());
        assert_eq!(got.len(), (1 << 20) + 1, "reply {i}");
        assert!(got.starts_with(&(i % 4).to_string()), "reply {i} in order");
    }
}

#[tokio::test]
async fn clients_past_max_client_connections_are_told_so() {
    let proxy = start_redis_proxy(&redis_yaml("").replace(
        "databases:",
        "proxy: {max_client_connections: 1}\ndatabases:",
    ))
    .await;
    let mut first = Resp::connect(proxy.port).await;
    assert_eq!(text(&first.call(&["PING"]).await), "PONG");
    let mut second = Resp::connect(proxy.port).await;
    assert_eq!(
        text(&second.read().await.unwrap()),
        "-ERR max number of clients reached"
    );
    assert!(second.read().await.is_none());
    assert_eq!(text(&first.call(&["PING"]).await), "PONG");
}

#[tokio::test]
async fn channel_rules_translate_pubsub_both_ways() {
    let proxy = start_redis_proxy(&redis_yaml(
        "  channels:\n    - {from: \"events:\", to: \"shared_common:events:\"}\n",
    ))
    .await;
    let u = unique("ev");
    let old = format!("events:{u}");
    let new = format!("shared_common:events:{u}");
    let mut sub = Resp::connect(proxy.port).await;
    assert_eq!(
        text(&sub.call(&["SUBSCRIBE", &old]).await),
        format!("[subscribe, {old}, 1]")
    );
    let pattern = format!("events:{u}*");
    assert_eq!(
        text(&sub.call(&["PSUBSCRIBE", &pattern]).await),
        format!("[psubscribe, {pattern}, 2]")
    );
    // On the server, under the new name.
    let mut direct = Resp::direct(0).await;
    assert_eq!(
        text(&direct.call(&["SUBSCRIBE", &new]).await),
        format!("[subscribe, {new}, 1]")
    );

    let mut publisher = Resp::connect(proxy.port).await;
    assert_eq!(
        text(&publisher.call(&["PUBLISH", &old, "hi"]).await),
        "3",
        "two on the proxy's subscriber, one direct"
    );
    let mut got = vec![
        text(&sub.read().await.unwrap()),
        text(&sub.read().await.unwrap()),
    ];
    got.sort();
    assert_eq!(
        got,
        [
            format!("[message, {old}, hi]"),
            format!("[pmessage, {pattern}, {old}, hi]")
        ]
    );
    assert_eq!(
        text(&direct.read().await.unwrap()),
        format!("[message, {new}, hi]")
    );
}

#[tokio::test]
async fn keyspace_notifications_follow_the_database_move() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("notify");
    let pattern = format!("__keyspace@0__:saju:{u}:*");
    let mut sub = Resp::connect(proxy.port).await;
    assert_eq!(
        text(&sub.call(&["PSUBSCRIBE", &pattern]).await),
        format!("[psubscribe, {pattern}, 1]")
    );
    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &format!("saju:{u}:a"), "v"]).await;
    assert_eq!(
        text(&sub.read().await.unwrap()),
        format!("[pmessage, {pattern}, __keyspace@0__:saju:{u}:a, set]"),
        "the server said __keyspace@1__:saju_service:...; the client reads its own names"
    );
}

/// `__keyevent@N__:<event>` carries the key as its payload: through the
/// proxy a client on db 0 hears of its keys under its own names, wherever
/// their rules moved them, and of nothing it could not have named.
#[tokio::test]
async fn keyevent_notifications_carry_the_clients_key_names() {
    let proxy = start_redis_proxy(&redis_yaml("")).await;
    let u = unique("keyevent");
    let mut sub = Resp::connect(proxy.port).await;
    // Other tests share the server: their events are skipped by name.
    async fn next_of(sub: &mut Resp, u: &str) -> String {
        loop {
            let v = text(&sub.read().await.expect("a message"));
            if v.contains(u) || !v.contains("message") {
                return v;
            }
        }
    }
    assert_eq!(
        text(&sub.call(&["SUBSCRIBE", "__keyevent@0__:set"]).await),
        "[subscribe, __keyevent@0__:set, 1]",
        "one confirmation, though the proxy listens on db 0 and db 1"
    );
    sub.send(&["PSUBSCRIBE", "__keyevent@0__:de*"]).await;
    assert_eq!(
        next_of(&mut sub, &u).await,
        "[psubscribe, __keyevent@0__:de*, 2]"
    );

    let mut c = Resp::connect(proxy.port).await;
    c.ok(&["SET", &format!("saju:{u}:a"), "v"]).await;
    c.ok(&["SET", &format!("session:{u}:b"), "v"]).await;
    c.ok(&["SET", &format!("plain:{u}"), "v"]).await;
    assert_eq!(text(&c.call(&["DEL", &format!("saju:{u}:a")]).await), "1");
    // Keys a client on db 0 never names: another database's rule, an
    // unmatched key of db 1, an old name left on db 0.
    c.ok(&["SELECT", "2"]).await;
    c.ok(&["SET", &format!("dream:{u}:c"), "v"]).await;
    Resp::direct(1)
        .await
        .ok(&["SET", &format!("other:{u}"), "v"])
        .await;
    Resp::direct(0)
        .await
        .ok(&["SET", &format!("saju:{u}:old"), "v"])
        .await;
    c.ok(&["SELECT", "0"]).await;
    c.ok(&["SET", &format!("plain:{u}:end"), "v"]).await;

    let mut got = Vec::new();
    loop {
        let m = next_of(&mut sub, &u).await;
        let end = m.contains(&format!("plain:{u}:end"));
        got.push(m);
        if end {
            break;
        }
    }
    assert_eq!(
        got,
        [
            format!("[message, __keyevent@0__:set, saju:{u}:a]"),
            format!("[message, __keyevent@0__:set, session:{u}:b]"),
            format!("[message, __keyevent@0__:set, plain:{u}]"),
            format!("[pmessage, __keyevent@0__:de*, __keyevent@0__:del, saju:{u}:a]"),
            format!("[message, __keyevent@0__:set, plain:{u}:end]"),
        ],
        "the server said __keyevent@1__ and saju_service:...; the client reads its own names"
    );

    sub.send(&["UNSUBSCRIBE"]).await;
    assert_eq!(
        next_of(&mut sub, &u).await,
        "[unsubscribe, __keyevent@0__:set, 1]",
        "one confirmation for the client's one channel"
    );
    sub.send(&["PUNSUBSCRIBE", "__keyevent@0__:de*"]).await;
    assert_eq!(
        next_of(&mut sub, &u).await,
        "[punsubscribe, __keyevent@0__:de*, 0]"
    );
    // Nothing is left on the server's side either.
    c.ok(&["SET", &format!("saju:{u}:after"), "v"]).await;
    assert_eq!(
        text(&sub.call(&["PING"]).await),
        "PONG",
        "out of subscribed mode: no server channel was left behind"
    );
}

/// SHOW REDIS on the admin console of a proxy that serves both sides
/// (one ProxyState: the console reads the Redis side's counters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_redis_on_the_console_counts_per_namespace() {
    let pg = crate::harness::pg().await;
    let verifier = heal7_proxy::auth::scram::hash_password(b"console-secret");
    let yaml = redis_yaml("").replace(
        "databases: {heal7: {}}",
        &format!(
            "proxy:\n  admin_users:\n    admin: \"{verifier}\"\ndatabases:\n  heal7: {{host: {}, port: {}}}",
            pg.host, pg.port
        ),
    );
    let pg_side = crate::harness::start_proxy_yaml(&yaml).await;
    let redis_side = start_redis_proxy_with(pg_side.state.clone()).await;
    let mut c = Resp::connect(redis_side.port).await;
    let u = unique("show");
    c.ok(&["SET", &format!("saju:{u}"), "v"]).await;
    c.ok(&[
        "MSET",
        &format!("saju:{u}:1"),
        "a",
        &format!("saju:{u}:2"),
        "b",
    ])
    .await;

    let mut console = tokio_postgres::Config::new();
    console
        .host("127.0.0.1")
        .port(pg_side.port())
        .user("admin")
        .password("console-secret")
        .dbname("heal7_proxy");
    let admin = crate::harness::connect(&console)
        .await
        .expect("console login");
    let rows = crate::harness::simple_rows(&admin, "SHOW REDIS").await;
    let saju = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("saju:@0"))
        .expect("a row per rule");
    let cells: Vec<&str> = saju.iter().map(|c| c.as_deref().unwrap_or("")).collect();
    assert_eq!(
        cells[..6],
        ["saju:@0", "saju:", "0", "saju_service:", "1", "rewrite"]
    );
    assert_eq!(cells[6], "2", "commands");
    assert_eq!(cells[7], "3", "keys rewritten");
    assert_eq!(rows.last().unwrap()[0].as_deref(), Some("(unmatched)"));
}

/// The real binary: `serve` binds `redis.listen` beside the Postgres port,
/// serves, and stops on SIGTERM; `migrate-keys --dry-run` prints its plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_redis_and_stops_on_sigterm() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (pg_port, redis_port) = (free(), free());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    let yaml = with_fixed_ports(&redis_yaml(""), pg_port, redis_port);
    std::fs::write(&path, &yaml).unwrap();
    let bin = env!("CARGO_BIN_EXE_heal7-proxy");
    let mut child = tokio::process::Command::new(bin)
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(
        crate::harness::wait_until(std::time::Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", redis_port))
                .await
                .is_ok()
        })
        .await,
        "redis.listen never bound"
    );
    let u = unique("bin");
    let mut c = Resp::connect(redis_port).await;
    c.ok(&["SET", &format!("saju:{u}"), "v"]).await;
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}")]).await,
        "v"
    );

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("serve stops on SIGTERM with a Redis client connected")
        .unwrap();
    assert!(status.success(), "{status:?}");

    let out = tokio::process::Command::new(bin)
        .args([
            "migrate-keys",
            "--dry-run",
            "--config",
            path.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("dry-run saju:@0 -> saju_service:@1: "),
        "{stdout}"
    );
}

/// MOVE runs when the key has one server name from both client databases
/// (their rules give the same new name, or no rule matches on either), and
/// is refused, nothing moved, when it does not.
#[tokio::test]
async fn move_runs_where_both_databases_name_one_server_key_and_is_refused_elsewhere() {
    // saju: is saju_service: on server db 1 from db 0, on server db 5 from db 4.
    let extra = "    - {from: \"saju:\", from_db: 4, to: \"saju_service:\", to_db: 5}\n";
    let proxy = start_redis_proxy(&redis_yaml(extra)).await;
    let u = unique("move");
    let mut c = Resp::connect(proxy.port).await;
    let moved = format!("saju:{u}:m");
    c.ok(&["SET", &moved, "v"]).await;
    assert_eq!(text(&c.call(&["MOVE", &moved, "4"]).await), "1");
    let new = format!("saju_service:{u}:m");
    assert_eq!(direct_get(5, &["GET", &new]).await, "v");
    assert_eq!(direct_get(1, &["EXISTS", &new]).await, "0");
    c.ok(&["SELECT", "4"]).await;
    assert_eq!(text(&c.call(&["GET", &moved]).await), "v");
    c.ok(&["SELECT", "0"]).await;
    assert_eq!(text(&c.call(&["EXISTS", &moved]).await), "0");

    // An unmatched key is itself from every database.
    let plain = format!("plain:{u}");
    c.ok(&["SET", &plain, "p"]).await;
    assert_eq!(text(&c.call(&["MOVE", &plain, "6"]).await), "1");
    assert_eq!(direct_get(6, &["GET", &plain]).await, "p");
    assert_eq!(direct_get(0, &["EXISTS", &plain]).await, "0");

    // From db 0 to db 2, saju:...:r would be saju_service: on db 1 and
    // saju: on db 2: refused, nothing moved.
    let refused = format!("saju:{u}:r");
    c.ok(&["SET", &refused, "r"]).await;
    let said = text(&c.call(&["MOVE", &refused, "2"]).await);
    assert!(
        said.starts_with("-ERR heal7-proxy: MOVE cannot be exact")
            && said.contains("nothing was executed"),
        "{said}"
    );
    assert_eq!(
        direct_get(1, &["GET", &format!("saju_service:{u}:r")]).await,
        "r"
    );
    assert_eq!(direct_get(2, &["EXISTS", &refused]).await, "0");
    assert_eq!(text(&c.call(&["GET", &refused]).await), "r");
}
