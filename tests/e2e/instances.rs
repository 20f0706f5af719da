//! Several `heal7-proxy serve` processes in front of one server: behind
//! HAProxy (Debian's `haproxy`, TCP mode, round robin; relayed and pooled
//! sessions) and sharing one port through `reuse_port`, every long query
//! started through the shared address is cancelled through it (the cancel
//! lands on either instance, which forwards it to the owner); a
//! ConfigMap-style `..data` symlink swap reloads two instances, which then
//! report the same new mapping hash.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_postgres::NoTls;

use crate::harness::{
    Pg, SCHEMAS_YAML, connect, pg, simple_rows, simple_value, sqlstate, unique, wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_heal7-proxy");
/// Long queries started and cancelled through the shared address.
const QUERIES: usize = 20;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The `proxy:` lines of one instance (indented), then the test map.
fn yaml(pg: &Pg, proxy: &str) -> String {
    pooled_yaml(pg, proxy, "")
}

/// [`yaml`] with `entry` (indented lines, such as a `pool:`) added to the
/// `heal7` entry.
fn pooled_yaml(pg: &Pg, proxy: &str, entry: &str) -> String {
    format!(
        "proxy:\n{proxy}databases:\n  heal7:\n    host: {host}\n    port: {port}\n    database: heal7\n{entry}{SCHEMAS_YAML}",
        host = pg.host,
        port = pg.port,
    )
}

/// A user and password of the test cluster; `None`: the superuser.
type Login = Option<(&'static str, &'static str)>;

/// `peers:` naming each (id, port) on 127.0.0.1.
fn peers(entries: &[(u8, u16)]) -> String {
    let list: Vec<String> = entries
        .iter()
        .map(|(id, port)| format!("{id}: \"127.0.0.1:{port}\""))
        .collect();
    format!("  peers: {{{}}}\n", list.join(", "))
}

/// One `heal7-proxy serve` process; killed when dropped. Its log is kept
/// in `log` and printed when a check fails.
struct Instance {
    child: Child,
    log: PathBuf,
    /// Its admin HTTP port.
    admin: u16,
}

impl Instance {
    /// Start the binary on `config` with `args` and `env`; returns once
    /// its admin endpoint answers.
    async fn start(config: &Path, admin: u16, args: &[&str], env: &[(&str, &str)]) -> Instance {
        let log = config.with_extension(format!("{admin}.log"));
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", config.to_str().unwrap()])
            .args(args)
            .env_remove("HEAL7_PEER_ID")
            .env_remove("HEAL7_ADMIN_LISTEN")
            .env("RUST_LOG", "heal7_proxy=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn heal7-proxy serve");
        let mut instance = Instance { child, log, admin };
        let up = wait_until(Duration::from_secs(30), || async {
            TcpStream::connect(("127.0.0.1", admin)).await.is_ok()
        })
        .await;
        if !up || instance.child.try_wait().unwrap().is_some() {
            panic!("heal7-proxy did not start:\n{}", instance.log_text());
        }
        instance
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
            .await
            .expect("admin answered")
            .unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
        out.split_once("\r\n\r\n").unwrap().1.to_owned()
    }

    /// The value of one sample line of /metrics (`name{labels}`), 0 if absent.
    async fn metric(&self, sample: &str) -> u64 {
        let text = self.get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0, |v| v.parse().unwrap())
    }

    async fn mapping(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/mapping").await).unwrap()
    }
}

fn client_config(port: u16, app: &str) -> tokio_postgres::Config {
    login_config(port, app, None)
}

fn login_config(port: u16, app: &str, login: Login) -> tokio_postgres::Config {
    let pg = crate::harness::pg_started();
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .dbname("heal7")
        .application_name(app)
        .connect_timeout(Duration::from_secs(10));
    match login {
        Some((user, password)) => {
            c.user(user).password(password);
        }
        None => {
            c.user(&pg.superuser);
            if let Some(p) = &pg.password {
                c.password(p);
            }
        }
    }
    c
}

/// HAProxy in TCP mode, round robin over `servers`, on a free port of its
/// own; stopped when dropped. `None` when haproxy is not installed. One
/// thread, so connections opened one after another alternate strictly
/// (with several, 2 of 20 cancels once went to the owner directly).
struct Balancer {
    _child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    async fn start(servers: &[u16]) -> Option<Balancer> {
        let installed = std::process::Command::new("haproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let backends: String = servers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("  server p{i} 127.0.0.1:{p}\n"))
            .collect();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 256\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n\
                 frontend postgres\n  bind 127.0.0.1:{port}\n  default_backend proxies\n\
                 backend proxies\n  balance roundrobin\n{backends}"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f", cfg.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn haproxy");
        assert!(
            wait_until(Duration::from_secs(10), || async {
                TcpStream::connect(("127.0.0.1", port)).await.is_ok()
            })
            .await,
            "haproxy never listened on {port}"
        );
        Some(Balancer {
            _child: child,
            port,
            _dir: dir,
        })
    }
}

/// Start `QUERIES` sessions through `port` as `login`, one long query on
/// each, wait until the server runs them all, then cancel each through
/// `port` (after `between` has run once, so a round robin sends cancels to
/// the other instance) and check every query ends with 57014 within 20 s.
async fn cancel_all_through<F, Fut>(port: u16, login: Login, between: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let app = unique("e2e_instances");
    let mut tokens = Vec::new();
    let mut running = Vec::new();
    for i in 0..QUERIES {
        let c = connect(&login_config(port, &format!("{app}_{i}"), login))
            .await
            .expect("connect through the shared address");
        tokens.push(c.cancel_token());
        running.push(tokio::spawn(async move {
            let r = c.simple_query("SELECT pg_sleep(30)").await;
            drop(c);
            r
        }));
    }
    let direct = pg().await.direct("heal7").await;
    let q = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '{app}%' AND state = 'active' AND query LIKE '%pg_sleep%'"
    );
    let want = QUERIES.to_string();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            simple_value(&direct, &q).await == want
        })
        .await,
        "the {QUERIES} queries never all showed up as active"
    );
    between().await;
    for token in &tokens {
        token
            .cancel_query(NoTls)
            .await
            .expect("send cancel through the shared address");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for (i, task) in running.into_iter().enumerate() {
        let result = tokio::time::timeout_at(deadline, task)
            .await
            .unwrap_or_else(|_| panic!("query {i} still running 20 s after its cancel"))
            .expect("task");
        let e = result.expect_err("the query was cancelled");
        assert_eq!(sqlstate(&e), "57014", "query {i}: {e}");
    }
}

/// Per instance: (cancels sent to the server, cancels sent on to a peer).
async fn cancel_counts(instances: &[&Instance]) -> Vec<(u64, u64)> {
    let mut counts = Vec::new();
    for i in instances {
        counts.push((
            i.metric("heal7_proxy_cancel_requests_total{result=\"forwarded\"}")
                .await,
            i.metric("heal7_proxy_cancel_requests_total{result=\"to_peer\"}")
                .await,
        ));
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_every_cancel_reaches_its_query() {
    behind_haproxy("behind_haproxy_every_cancel_reaches_its_query", "", None).await;
}

/// The same with pooled sessions: the key a pooled client holds is one the
/// proxy made, and it carries the peer id just as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_every_pooled_cancel_reaches_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("auth-password");
    std::fs::write(&password, "auth-secret\n").unwrap();
    let pool = format!(
        "    pool: {{mode: session, size: {QUERIES}, auth_user: heal7_auth, auth_password_file: {}, auth_query: \"SELECT usename, passwd FROM public.heal7_proxy_lookup($1)\"}}\n",
        password.display()
    );
    behind_haproxy(
        "behind_haproxy_every_pooled_cancel_reaches_its_query",
        &pool,
        Some(("scram_user", "scram-secret")),
    )
    .await;
}

/// Two instances (peer ids 1 and 2, each other's peers, `entry` added to
/// their `heal7` entry) behind HAProxy: every cancel through the balancer
/// reaches its query, each through the instance that does not hold the key.
async fn behind_haproxy(test: &str, entry: &str, login: Login) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2, a1, a2) = (free_port(), free_port(), free_port(), free_port());
    let group = peers(&[(1, p1), (2, p2)]);
    let mut configs = Vec::new();
    for (port, admin) in [(p1, a1), (p2, a2)] {
        let path = dir.path().join(format!("proxy-{port}.yaml"));
        let proxy =
            format!("  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n{group}");
        std::fs::write(&path, pooled_yaml(pg, &proxy, entry)).unwrap();
        configs.push(path);
    }
    // The peer id from the flag on one, from the environment on the other.
    let one = Instance::start(&configs[0], a1, &["--peer-id", "1"], &[]).await;
    let two = Instance::start(&configs[1], a2, &[], &[("HEAL7_PEER_ID", "2")]).await;
    let Some(balancer) = Balancer::start(&[p1, p2]).await else {
        eprintln!("SKIPPED {test}: haproxy is not installed (apt-get install haproxy)");
        return;
    };
    // One more session between the queries and their cancels: round robin
    // then sends every cancel to the instance that does not hold the key.
    let port = balancer.port;
    cancel_all_through(port, login, || async move {
        let c = connect(&login_config(port, "e2e_instances_probe", login))
            .await
            .unwrap();
        assert_eq!(simple_value(&c, "SELECT 1").await, "1");
    })
    .await;
    let counts = cancel_counts(&[&one, &two]).await;
    let (sent_to_server, sent_to_peer): (u64, u64) = (
        counts.iter().map(|c| c.0).sum(),
        counts.iter().map(|c| c.1).sum(),
    );
    assert_eq!(
        sent_to_server,
        QUERIES as u64,
        "{counts:?}\n{}\n{}",
        one.log_text(),
        two.log_text()
    );
    assert_eq!(
        sent_to_peer, QUERIES as u64,
        "round robin sends each cancel to the other instance: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_one_port_with_reuse_port_every_cancel_reaches_its_query() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, c1, c2, a1, a2) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    // One file for both processes: the peer id and the admin address come
    // from the command line and the environment.
    let path = dir.path().join("proxy.yaml");
    let proxy = format!(
        "  listen: 127.0.0.1:{port}\n  reuse_port: true\n{}",
        peers(&[(1, c1), (2, c2)])
    );
    std::fs::write(&path, yaml(pg, &proxy)).unwrap();
    let admin1 = format!("127.0.0.1:{a1}");
    let admin2 = format!("127.0.0.1:{a2}");
    let one = Instance::start(
        &path,
        a1,
        &["--peer-id", "1", "--admin-listen", &admin1],
        &[],
    )
    .await;
    let two = Instance::start(
        &path,
        a2,
        &[],
        &[("HEAL7_PEER_ID", "2"), ("HEAL7_ADMIN_LISTEN", &admin2)],
    )
    .await;
    cancel_all_through(port, None, || async {}).await;
    let counts = cancel_counts(&[&one, &two]).await;
    assert_eq!(
        counts.iter().map(|c| c.0).sum::<u64>(),
        QUERIES as u64,
        "{counts:?}\n{}\n{}",
        one.log_text(),
        two.log_text()
    );
    // The kernel spread the 40 connections over both processes (all on
    // one: a 2^-39 chance), and some cancels landed on the other one.
    let mut sessions = Vec::new();
    for i in [&one, &two] {
        sessions.push(i.metric("heal7_proxy_client_connections_total").await);
    }
    assert!(sessions.iter().all(|&n| n > 0), "{sessions:?}");
    assert!(counts.iter().map(|c| c.1).sum::<u64>() > 0, "{counts:?}");
}

/// A Kubernetes ConfigMap volume: `config.yaml -> ..data/config.yaml`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped
/// directory and renames a new `..data` link over the old one.
struct ConfigMapVolume {
    dir: PathBuf,
    version: u32,
}

impl ConfigMapVolume {
    fn new(dir: PathBuf, text: &str) -> ConfigMapVolume {
        std::fs::create_dir_all(&dir).unwrap();
        let mut v = ConfigMapVolume { dir, version: 0 };
        v.swap_in(text);
        std::os::unix::fs::symlink("..data/config.yaml", v.dir.join("config.yaml")).unwrap();
        v
    }

    fn path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// Publish `text` as the kubelet does: new directory, new link,
    /// atomic rename over `..data`, old directory removed.
    fn swap_in(&mut self, text: &str) {
        let old = format!("..2026_11_29_{}", self.version);
        self.version += 1;
        let new = format!("..2026_11_29_{}", self.version);
        std::fs::create_dir(self.dir.join(&new)).unwrap();
        std::fs::write(self.dir.join(&new).join("config.yaml"), text).unwrap();
        std::os::unix::fs::symlink(&new, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        let _ = std::fs::remove_dir_all(self.dir.join(old));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_reloads_both_instances_to_one_mapping_hash() {
    use heal7_proxy::auth::scram::hash_password;
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let verifier = hash_password(b"console-secret");
    // Each pod's kubelet keeps its own copy of the volume. The two files
    // differ in per-instance lines and in comments and key order, never in
    // what the map says.
    let text = |port: u16, admin: u16, id: u8, extra_table: bool| {
        let schemas = if extra_table {
            SCHEMAS_YAML.replace("[users, attachments]", "[users, attachments, dream_log]")
        } else {
            SCHEMAS_YAML.to_owned()
        };
        let comment = if id == 1 { "# pod proxy-0\n" } else { "" };
        format!(
            "{comment}proxy:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n  peer_id: {id}\n  admin_users: {{admin: \"{verifier}\"}}\n\
             databases:\n  heal7:\n    port: {}\n    host: {}\n{schemas}",
            pg.port, pg.host,
        )
    };
    let (p1, p2, a1, a2) = (free_port(), free_port(), free_port(), free_port());
    let mut v1 = ConfigMapVolume::new(dir.path().join("pod-0"), &text(p1, a1, 1, false));
    let mut v2 = ConfigMapVolume::new(dir.path().join("pod-1"), &text(p2, a2, 2, false));
    let one = Instance::start(&v1.path(), a1, &[], &[]).await;
    let two = Instance::start(&v2.path(), a2, &[], &[]).await;
    let (m1, m2) = (one.mapping().await, two.mapping().await);
    let before = m1["mapping_hash"].as_str().unwrap().to_owned();
    assert_eq!(before.len(), 16, "{m1}");
    assert_eq!(m2["mapping_hash"], before.as_str(), "{m1}\n{m2}");

    v1.swap_in(&text(p1, a1, 1, true));
    v2.swap_in(&text(p2, a2, 2, true));
    for instance in [&one, &two] {
        assert!(
            wait_until(Duration::from_secs(10), || async {
                instance.mapping().await["generation"] == 2
            })
            .await,
            "no reload after the ..data swap:\n{}",
            instance.log_text()
        );
    }
    let after = one.mapping().await["mapping_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(after, before);
    assert_eq!(two.mapping().await["mapping_hash"], after.as_str());
    for (instance, port) in [(&one, p1), (&two, p2)] {
        let sample = format!("heal7_proxy_mapping_info{{mapping_hash=\"{after}\"}}");
        assert_eq!(instance.metric(&sample).await, 1);
        // The console shows it too.
        let mut cfg = client_config(port, "e2e_instances_console");
        cfg.user("admin")
            .password("console-secret")
            .dbname("heal7_proxy");
        let c = connect(&cfg).await.expect("console login");
        let rows = simple_rows(&c, "SHOW MAPPING").await;
        assert!(
            rows.iter().all(|r| r[6].as_deref() == Some(after.as_str())),
            "{rows:?}"
        );
        assert!(
            rows.iter().any(|r| r[2].as_deref() == Some("dream_log")),
            "{rows:?}"
        );
    }
}
