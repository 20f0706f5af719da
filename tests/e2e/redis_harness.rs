//! The Redis side's harness: one private `redis-server` per run of this
//! binary (Debian's package; `REDIS_SERVER` names another binary), on
//! 127.0.0.1 and a free port, no persistence, stopped when this process
//! exits however it exits (the same watchdog pipe as the Postgres harness:
//! the shell that starts the server kills it when our end of its stdin
//! closes). Plus a small raw RESP client and heal7-proxy's Redis side
//! started in-process on 127.0.0.1:0.

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use heal7_proxy::config::Config;
use heal7_proxy::resp::{self, Value};
use heal7_proxy::server;
use heal7_proxy::state::ProxyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct RedisServer {
    pub port: u16,
    _watchdog_stdin: Mutex<ChildStdin>,
    _watchdog: Mutex<Child>,
    _dir: tempfile::TempDir,
}

static SERVER: OnceLock<Result<RedisServer, String>> = OnceLock::new();

/// The run's redis-server, started on first use.
pub fn redis_server() -> &'static RedisServer {
    SERVER
        .get_or_init(start)
        .as_ref()
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

fn start() -> Result<RedisServer, String> {
    let port = free_port()?;
    launch(
        &[
            "--port".into(),
            port.to_string(),
            "--notify-keyspace-events".into(),
            "KEA".into(),
        ],
        port,
        |_| ping(port),
    )
}

/// A free port on 127.0.0.1.
pub fn free_port() -> Result<u16, String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port())
}

/// Whether a plain redis-server on `port` answers PING.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut got = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut got).is_ok() && &got == b"+PONG\r\n"
}

/// Start a redis-server of its own: on 127.0.0.1, no persistence, 16
/// databases, then `args` (its port among them), stopped as the run's
/// server is; `port` is the one it serves, and it is up once `ready`
/// (given its log) says so.
pub fn launch(
    args: &[String],
    port: u16,
    ready: impl Fn(&str) -> bool,
) -> Result<RedisServer, String> {
    let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut watchdog = Command::new("/bin/sh")
        .args([
            "-c",
            r#"dir=$1; shift; "$0" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --databases 16 "$@" </dev/null >"$dir/log" 2>&1 & pid=$!; cat >/dev/null; kill $pid; wait $pid"#,
        ])
        .arg(&bin)
        .arg(dir.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn {bin}: {e}"))?;
    let stdin = watchdog.stdin.take().expect("piped stdin");
    let log_path = dir.path().join("log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    for _ in 0..100 {
        if ready(&log()) {
            return Ok(RedisServer {
                port,
                _watchdog_stdin: Mutex::new(stdin),
                _watchdog: Mutex::new(watchdog),
                _dir: dir,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = log();
    Err(format!("{bin} did not get ready on port {port}: {log}"))
}

use std::os::unix::process::CommandExt;

/// heal7-proxy's Redis side, in-process. Dropping it stops it.
pub struct RedisProxy {
    pub port: u16,
    pub state: ProxyState,
    pub shutdown: CancellationToken,
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The usual test rules: `saju:` on db 0 -> `saju_service:` on db 1,
/// `session:` -> `shared_common:session:` on db 0. Each test uses its own
/// key prefix below these (see [`unique`]).
pub fn redis_yaml(extra: &str) -> String {
    format!(
        "databases: {{heal7: {{}}}}\nredis:\n  listen: 127.0.0.1:0\n  upstream: {{host: 127.0.0.1, port: {}}}\n  namespaces:\n    - {{from: \"saju:\", from_db: 0, to: \"saju_service:\", to_db: 1}}\n    - {{from: \"session:\", from_db: 0, to: \"shared_common:session:\", to_db: 0}}\n    - {{from: \"dream:\", from_db: 2, to: \"dream_service:\", to_db: 3}}\n{extra}",
        redis_server().port
    )
}

/// `yaml` for the real binary, which cannot report the ports it bound:
/// fixed free ports for the Postgres listener and `redis.listen`.
pub fn with_fixed_ports(yaml: &str, pg_port: u16, redis_port: u16) -> String {
    yaml.replace(
        "databases:",
        &format!("proxy: {{listen: 127.0.0.1:{pg_port}}}\ndatabases:"),
    )
    .replace(
        "listen: 127.0.0.1:0",
        &format!("listen: 127.0.0.1:{redis_port}"),
    )
}

pub async fn start_redis_proxy(yaml: &str) -> RedisProxy {
    let config = Config::from_yaml(yaml, "e2e-redis.yaml").expect("test config is valid");
    start_redis_proxy_with(ProxyState::new(config)).await
}

pub async fn start_redis_proxy_with(state: ProxyState) -> RedisProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    tokio::spawn(server::run_redis(listener, state.clone(), shutdown.clone()));
    RedisProxy {
        port,
        state,
        shutdown,
    }
}

/// A raw RESP client.
pub struct Resp {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Resp {
    pub async fn connect(port: u16) -> Resp {
        Resp {
            stream: TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
            buf: BytesMut::new(),
        }
    }

    /// A direct connection to the test redis-server on `db`.
    pub async fn direct(db: u16) -> Resp {
        let mut c = Resp::connect(redis_server().port).await;
        c.ok(&["SELECT", &db.to_string()]).await;
        c
    }

    pub async fn send(&mut self, args: &[&str]) {
        let mut out = BytesMut::new();
        resp::encode_command(&mut out, args);
        self.stream.write_all(&out).await.expect("send");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next reply, or `None` at a close.
    pub async fn read(&mut self) -> Option<Value> {
        loop {
            if let Some(n) = resp::reply_len(&self.buf, 1 << 30).expect("valid reply") {
                let reply = self.buf.split_to(n).freeze();
                return Some(Value::decode(&reply).expect("decodes"));
            }
            let n =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("a reply within 10 s")
                    .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn call(&mut self, args: &[&str]) -> Value {
        self.send(args).await;
        self.read().await.expect("a reply, not a close")
    }

    /// A call whose reply must be +OK.
    pub async fn ok(&mut self, args: &[&str]) {
        let v = self.call(args).await;
        assert_eq!(text(&v), "OK", "{args:?}");
    }
}

/// A reply as text: a string's bytes, an integer, an error line (`-...`),
/// `nil`, or an aggregate's elements in brackets.
pub fn text(v: &Value) -> String {
    match v {
        Value::Line(b'-', t) => format!("-{}", String::from_utf8_lossy(t)),
        Value::Line(b'$' | b'*', _) | Value::Line(b'_', _) => "nil".into(),
        Value::Line(_, t) | Value::Bulk(_, t) => String::from_utf8_lossy(t).into_owned(),
        Value::Aggregate(_, items) => {
            format!(
                "[{}]",
                items.iter().map(text).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// The sorted elements of an array reply, as text.
pub fn sorted(v: &Value) -> Vec<String> {
    let mut items: Vec<String> = v.elements().expect("an array").iter().map(text).collect();
    items.sort();
    items
}
