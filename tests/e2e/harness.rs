//! Test harness: one private PostgreSQL 15 cluster per run of this binary,
//! and heal7-proxy instances started in-process on 127.0.0.1:0.
//!
//! The cluster: `initdb` (binaries from `pg_config --bindir`, else
//! /usr/lib/postgresql/15/bin) into a temp dir, listening on 127.0.0.1 and a
//! free port only, its unix socket inside the temp dir. As root (CI) every
//! server program runs as the `postgres` OS user, since Postgres refuses root.
//! It is stopped and its directory removed when this process exits, however
//! it exits: a watchdog shell (its own process group, so Ctrl-C does not
//! reach it) blocks reading a pipe whose only writer is this process; when the
//! kernel closes that pipe at exit, it runs `pg_ctl stop -m immediate`.
//!
//! `HEAL7_TEST_PG`: a libpq-style `key=value` list naming a superuser on an
//! existing server (e.g. `HEAL7_TEST_PG="host=127.0.0.1 port=5432
//! user=postgres password=secret"`) makes the harness use that server instead
//! of starting one. It then DROPS and recreates the fixture databases
//! (heal7, heal7_plain) and roles (trust_user, md5_user, scram_user,
//! clear_user) there; the auth tests pass only if that server's pg_hba.conf
//! gives those roles the methods their names say for 127.0.0.1.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use heal7_proxy::config::Config;
use heal7_proxy::server;
use heal7_proxy::state::ProxyState;
use heal7_proxy::workers::Workers;
use tokio::net::TcpListener;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_util::sync::CancellationToken;

/// Passwords of the password-authenticated roles (pg_hba methods in their names).
pub const MD5_PASSWORD: &str = "md5-secret";
pub const SCRAM_PASSWORD: &str = "scram-secret";
pub const CLEAR_PASSWORD: &str = "clear-secret";

/// Where the test Postgres is, and how to reach it as superuser.
pub struct Pg {
    pub host: String,
    pub port: u16,
    pub superuser: String,
    pub password: Option<String>,
    /// Directory holding psql & co.
    pub bindir: PathBuf,
    /// Owns the private cluster, if the harness started one. Never dropped:
    /// the watchdog stops the cluster when the process exits.
    _cluster: Option<Cluster>,
}

struct Cluster {
    #[allow(dead_code)]
    dir: PathBuf,
    /// The watchdog's stdin: closed by the kernel at our exit.
    _watchdog_stdin: Mutex<ChildStdin>,
    _watchdog: Mutex<Child>,
}

static PG: OnceLock<Result<Pg, String>> = OnceLock::new();

/// The shared test server, from async code (init runs on a blocking thread,
/// so the proxy tasks on the test's runtime keep running).
pub async fn pg() -> &'static Pg {
    if let Some(Ok(pg)) = PG.get() {
        return pg;
    }
    match tokio::task::spawn_blocking(|| PG.get_or_init(init).as_ref().map_err(Clone::clone))
        .await
        .expect("harness init thread")
    {
        Ok(pg) => pg,
        Err(e) => panic!("test PostgreSQL unavailable: {e}"),
    }
}

/// The shared test server, once a test has started it (via [`pg`] or a proxy).
pub fn pg_started() -> &'static Pg {
    PG.get()
        .and_then(|r| r.as_ref().ok())
        .expect("the test server is started (call harness::pg first)")
}

fn init() -> Result<Pg, String> {
    let bindir = find_bindir();
    let pg = match std::env::var("HEAL7_TEST_PG") {
        Ok(conninfo) if !conninfo.trim().is_empty() => external(&conninfo, bindir)?,
        _ => start_cluster(bindir)?,
    };
    load_fixture(&pg)?;
    Ok(pg)
}

fn find_bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

fn external(conninfo: &str, bindir: PathBuf) -> Result<Pg, String> {
    let mut pg = Pg {
        host: "127.0.0.1".into(),
        port: 5432,
        superuser: "postgres".into(),
        password: None,
        bindir,
        _cluster: None,
    };
    for pair in conninfo.split_whitespace() {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("HEAL7_TEST_PG: `{pair}` is not key=value"));
        };
        match k {
            "host" => pg.host = v.into(),
            "port" => pg.port = v.parse().map_err(|e| format!("HEAL7_TEST_PG port: {e}"))?,
            "user" => pg.superuser = v.into(),
            "password" => pg.password = Some(v.into()),
            other => return Err(format!("HEAL7_TEST_PG: unsupported key `{other}`")),
        }
    }
    Ok(pg)
}

/// uid/gid of the `postgres` OS user when we are root, else None.
fn run_as() -> Result<Option<(u32, u32)>, String> {
    let me = std::fs::metadata("/proc/self").map_err(|e| format!("/proc/self: {e}"))?;
    if me.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            let uid = f[2].parse().map_err(|e| format!("postgres uid: {e}"))?;
            let gid = f[3].parse().map_err(|e| format!("postgres gid: {e}"))?;
            return Ok(Some((uid, gid)));
        }
    }
    Err("running as root but there is no `postgres` OS user (install postgresql-15)".into())
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start_cluster(bindir: PathBuf) -> Result<Pg, String> {
    start_cluster_with(
        bindir,
        &ClusterSetup {
            hba: "local all all trust\n\
                  host all postgres 127.0.0.1/32 trust\n\
                  host all trust_user 127.0.0.1/32 trust\n\
                  host all md5_user 127.0.0.1/32 md5\n\
                  host all scram_user 127.0.0.1/32 scram-sha-256\n\
                  host all clear_user 127.0.0.1/32 password\n\
                  host all heal7_auth 127.0.0.1/32 scram-sha-256\n"
                .into(),
            ..ClusterSetup::default()
        },
    )
}

/// What sets one private cluster apart.
#[derive(Default)]
pub struct ClusterSetup {
    /// The whole pg_hba.conf.
    pub hba: String,
    /// Lines appended to postgresql.conf.
    pub conf: String,
    /// Files written into the data directory (mode 0600, owned by the
    /// server's user): name -> content.
    pub files: Vec<(String, String)>,
}

/// Start another private cluster (stopped at exit like the shared one),
/// without the fixture.
pub fn start_private_cluster(setup: &ClusterSetup) -> Result<Pg, String> {
    start_cluster_with(find_bindir(), setup)
}

fn start_cluster_with(bindir: PathBuf, setup: &ClusterSetup) -> Result<Pg, String> {
    if !bindir.join("initdb").exists() {
        return Err(format!(
            "no initdb in {} (install postgresql-15, or set HEAL7_TEST_PG)",
            bindir.display()
        ));
    }
    let as_user = run_as()?;
    let dir = tempfile::Builder::new()
        .prefix("heal7-e2e-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?
        .keep();
    let data = dir.join("data");
    let sock = dir.join("sock");
    std::fs::create_dir(&sock).map_err(|e| format!("mkdir sock: {e}"))?;
    if let Some((uid, gid)) = as_user {
        for p in [&dir, &sock] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", p.display()))?;
        }
    }
    let server_cmd = |prog: &Path| {
        let mut c = Command::new(prog);
        c.current_dir(&dir).env("HOME", &dir).env_remove("PGDATA");
        if let Some((uid, gid)) = as_user {
            c.uid(uid).gid(gid);
        }
        c
    };
    let pg_ctl = bindir.join("pg_ctl");

    // The watchdog first, so a failure below still cleans up.
    let mut watchdog = server_cmd(Path::new("/bin/sh"))
        .args([
            "-c",
            r#"cat >/dev/null; "$0" -D "$1" stop -m immediate -w >/dev/null 2>&1; rm -rf "$2""#,
        ])
        .arg(&pg_ctl)
        .arg(&data)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn watchdog: {e}"))?;
    let watchdog_stdin = watchdog.stdin.take().expect("piped stdin");

    run(server_cmd(&bindir.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]))?;

    let port = free_port()?;
    let conf = format!(
        "\n# heal7-proxy e2e harness\n\
         port = {port}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         max_connections = 200\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         shared_buffers = 32MB\n\
         client_connection_check_interval = 100ms\n\
         log_min_messages = warning\n",
        sock.display()
    );
    append(&data.join("postgresql.conf"), &conf)?;
    append(&data.join("postgresql.conf"), &setup.conf)?;
    std::fs::write(data.join("pg_hba.conf"), &setup.hba)
        .map_err(|e| format!("write pg_hba.conf: {e}"))?;
    for (name, content) in &setup.files {
        use std::os::unix::fs::PermissionsExt;
        let path = data.join(name);
        std::fs::write(&path, content).map_err(|e| format!("write {name}: {e}"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {name}: {e}"))?;
        if let Some((uid, gid)) = as_user {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|e| format!("chown {name}: {e}"))?;
        }
    }

    run(server_cmd(&pg_ctl)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .args(["-w", "-t", "60", "start"]))
    .map_err(|e| {
        let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
        format!("{e}\npostgres.log:\n{log}")
    })?;

    Ok(Pg {
        host: "127.0.0.1".into(),
        port,
        superuser: "postgres".into(),
        password: None,
        bindir,
        _cluster: Some(Cluster {
            dir,
            _watchdog_stdin: Mutex::new(watchdog_stdin),
            _watchdog: Mutex::new(watchdog),
        }),
    })
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("append {}: {e}", path.display()))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn load_fixture(pg: &Pg) -> Result<(), String> {
    let mut cmd = Command::new(pg.bindir.join("psql"));
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(pg.conninfo("postgres"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = &pg.password {
        cmd.env("PGPASSWORD", p);
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn psql: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(FIXTURE_SQL.as_bytes())
        .map_err(|e| format!("write fixture: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "loading the fixture failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The fixture. Every mapped table exists in its schema with fresh rows AND in
/// `public` with STALE rows, so a name the proxy fails to qualify reads the
/// wrong data and the test fails instead of passing silently.
const FIXTURE_SQL: &str = r#"
SET client_min_messages = warning;
DROP DATABASE IF EXISTS heal7 WITH (FORCE);
DROP DATABASE IF EXISTS heal7_plain WITH (FORCE);
DROP ROLE IF EXISTS trust_user;
DROP ROLE IF EXISTS md5_user;
DROP ROLE IF EXISTS scram_user;
DROP ROLE IF EXISTS clear_user;
DROP ROLE IF EXISTS heal7_auth;
CREATE ROLE trust_user LOGIN;
-- The pools' auth_user: may only call the lookup function below.
CREATE ROLE heal7_auth LOGIN PASSWORD 'auth-secret';
SET password_encryption = 'md5';
CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret';
SET password_encryption = 'scram-sha-256';
CREATE ROLE scram_user LOGIN PASSWORD 'scram-secret';
CREATE ROLE clear_user LOGIN PASSWORD 'clear-secret';
RESET password_encryption;

-- A database the proxy config does not know: reached unchanged, never rewritten.
CREATE DATABASE heal7_plain;
\connect heal7_plain
CREATE TABLE public.users (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO public.users VALUES (1, 'plain-alice');

CREATE DATABASE heal7;
\connect heal7
CREATE SCHEMA shared_common;
CREATE SCHEMA saju_service;
CREATE SCHEMA dream_service;
CREATE SCHEMA "Dream Archive";

CREATE TABLE shared_common.users (id int PRIMARY KEY, name text NOT NULL, email text UNIQUE, note text);
CREATE TABLE shared_common.attachments (id int PRIMARY KEY, user_id int, filename text);
CREATE TABLE saju_service.saju_charts (id int PRIMARY KEY, user_id int, chart text);
CREATE TABLE saju_service.kasi_cache (key text PRIMARY KEY, payload text);
CREATE TABLE dream_service.dream_categories (id int PRIMARY KEY, name text);
CREATE TABLE dream_service.dream_interpretations (id int PRIMARY KEY, category_id int, body text);
CREATE TABLE "Dream Archive".old_dreams (id int PRIMARY KEY, body text);
-- Not in the map: reached through the alias' search_path only.
CREATE TABLE saju_service.legacy_fortunes (id int PRIMARY KEY, label text);

-- The stale copies in public, same shapes, different rows.
CREATE TABLE public.users (LIKE shared_common.users INCLUDING ALL);
CREATE TABLE public.attachments (LIKE shared_common.attachments INCLUDING ALL);
CREATE TABLE public.saju_charts (LIKE saju_service.saju_charts INCLUDING ALL);
CREATE TABLE public.kasi_cache (LIKE saju_service.kasi_cache INCLUDING ALL);
CREATE TABLE public.dream_categories (LIKE dream_service.dream_categories INCLUDING ALL);
CREATE TABLE public.dream_interpretations (LIKE dream_service.dream_interpretations INCLUDING ALL);
CREATE TABLE public.old_dreams (LIKE "Dream Archive".old_dreams INCLUDING ALL);
CREATE TABLE public.legacy_fortunes (LIKE saju_service.legacy_fortunes INCLUDING ALL);
-- A quoted mixed-case name that only exists in public: "Users" is not users.
CREATE TABLE public."Users" (id int PRIMARY KEY, name text);

INSERT INTO shared_common.users VALUES
  (1, 'fresh-alice', 'alice@heal7.test', 'fresh'),
  (2, 'fresh-bob', 'bob@heal7.test', 'fresh'),
  (3, '김민수', 'minsu@heal7.test', 'fresh');
INSERT INTO public.users VALUES
  (1, 'STALE-alice', 'alice@heal7.test', 'STALE'),
  (2, 'STALE-bob', 'bob@heal7.test', 'STALE'),
  (3, '김민수', 'minsu@heal7.test', 'STALE');
INSERT INTO shared_common.attachments VALUES (1, 1, 'fresh-photo.png');
INSERT INTO public.attachments VALUES (1, 1, 'STALE-photo.png');
INSERT INTO saju_service.saju_charts VALUES (1, 1, 'fresh-chart 갑자'), (2, 2, 'fresh-chart 을축');
INSERT INTO public.saju_charts VALUES (1, 1, 'STALE-chart'), (2, 2, 'STALE-chart');
INSERT INTO saju_service.kasi_cache VALUES ('2024-01-01', 'fresh-kasi 입춘');
INSERT INTO public.kasi_cache VALUES ('2024-01-01', 'STALE-kasi');
INSERT INTO dream_service.dream_categories VALUES (1, 'fresh-꿈 동물'), (2, 'fresh-water');
INSERT INTO public.dream_categories VALUES (1, 'STALE-dream'), (2, 'STALE-water');
INSERT INTO dream_service.dream_interpretations VALUES (1, 1, 'fresh-호랑이 꿈은 길몽');
INSERT INTO public.dream_interpretations VALUES (1, 1, 'STALE-interpretation');
INSERT INTO "Dream Archive".old_dreams VALUES (1, 'fresh-archived');
INSERT INTO public.old_dreams VALUES (1, 'STALE-archived');
INSERT INTO saju_service.legacy_fortunes VALUES (1, 'fresh-fortune');
INSERT INTO public.legacy_fortunes VALUES (1, 'STALE-fortune');
INSERT INTO public."Users" VALUES (1, 'quoted-Users');

-- auth_query for pooled databases (README "Pooling"): the auth user reads
-- verifiers only through this function, never pg_shadow itself.
CREATE FUNCTION public.heal7_proxy_lookup(p_user text, OUT usename name, OUT passwd text)
RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_user $$;
REVOKE ALL ON FUNCTION public.heal7_proxy_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.heal7_proxy_lookup(text) TO heal7_auth;
GRANT USAGE ON SCHEMA shared_common, saju_service, dream_service, "Dream Archive" TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA shared_common, saju_service, dream_service, "Dream Archive", public TO PUBLIC;
"#;

impl Pg {
    /// A libpq conninfo string for `database` as the superuser (for psql).
    pub fn conninfo(&self, database: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host, self.port, self.superuser, database
        )
    }

    /// A tokio-postgres config for a DIRECT connection (no proxy).
    pub fn direct_config(&self, database: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.superuser)
            .dbname(database)
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    /// A direct superuser connection to `database`, bypassing the proxy.
    pub async fn direct(&self, database: &str) -> Client {
        connect(&self.direct_config(database))
            .await
            .unwrap_or_else(|e| panic!("direct connection to {database}: {e}"))
    }
}

/// The schema map every test proxy uses (the example config's shape plus a
/// schema whose name needs quoting). `legacy_fortunes` is not mapped: it
/// exists in saju_service and in public, and a session on `heal7` must keep
/// reading public's copy (as before the move) although its search_path puts
/// saju_service first, so the `public` entry pins it there; the alias
/// `heal7_saju` reads saju_service's.
pub const SCHEMAS_YAML: &str = r#"    schemas:
      shared_common: {tables: [users, attachments]}
      saju_service: {tables: [saju_charts, kasi_cache]}
      dream_service: {tables: [dream_categories, dream_interpretations]}
      "Dream Archive": {tables: [old_dreams]}
      public: {tables: [legacy_fortunes]}
    aliases:
      heal7_saju: {default_schema: saju_service}
"#;

/// Config YAML for a proxy in front of the test server.
pub fn proxy_yaml(pg: &Pg, on_parse_error: &str) -> String {
    yaml_for_upstream(&pg.host, pg.port, on_parse_error)
}

pub fn yaml_for_upstream(host: &str, port: u16, on_parse_error: &str) -> String {
    format!(
        "proxy:\n  listen: 127.0.0.1:0\n  on_parse_error: {on_parse_error}\n\
         databases:\n  heal7:\n    host: {host}\n    port: {port}\n    database: heal7\n{SCHEMAS_YAML}"
    )
}

/// A proxy running on the current test's runtime. Dropping it shuts it down.
pub struct ProxyHandle {
    pub addr: SocketAddr,
    pub state: ProxyState,
    pub shutdown: CancellationToken,
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A proxy in front of the test server with the given parse-error policy.
pub async fn start_proxy(on_parse_error: &str) -> ProxyHandle {
    let pg = pg().await;
    start_proxy_yaml(&proxy_yaml(pg, on_parse_error)).await
}

/// A proxy with a config of the caller's own.
pub async fn start_proxy_yaml(yaml: &str) -> ProxyHandle {
    start_proxy_on(yaml, Workers::current()).await
}

/// A proxy whose sessions run on `workers`.
pub async fn start_proxy_on(yaml: &str, workers: Workers) -> ProxyHandle {
    // Clients of the proxy take the superuser's name from the started server.
    pg().await;
    let config = Config::from_yaml(yaml, "e2e.yaml").expect("test config is valid");
    let mut state = ProxyState::new(config);
    state.workers = workers;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let shutdown = CancellationToken::new();
    let (st, sd) = (state.clone(), shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = server::run(listener, st, sd).await {
            eprintln!("proxy on {addr} stopped with an error: {e}");
        }
    });
    ProxyHandle {
        addr,
        state,
        shutdown,
    }
}

impl ProxyHandle {
    /// A tokio-postgres config for the superuser through this proxy.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        let pg = pg_started();
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.addr.port())
            .user(&pg.superuser)
            .dbname(database)
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &pg.password {
            c.password(p);
        }
        c
    }

    /// A superuser connection through this proxy.
    pub async fn connect(&self, database: &str) -> Client {
        connect(&self.config(database))
            .await
            .unwrap_or_else(|e| panic!("connect through proxy to {database}: {e}"))
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Connect and drive the connection on a spawned task; notices and
/// notifications are dropped.
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Connect and hand every asynchronous message (notices, notifications) to
/// the returned channel. Also returns the connection task, so a test can
/// abort it to drop the socket abruptly.
pub async fn connect_with_messages(
    config: &tokio_postgres::Config,
) -> Result<
    (
        Client,
        tokio::sync::mpsc::UnboundedReceiver<AsyncMessage>,
        tokio::task::JoinHandle<()>,
    ),
    tokio_postgres::Error,
> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(Ok(m)) = messages.next().await {
            let _ = tx.send(m);
        }
    });
    Ok((client, rx, task))
}

/// Rows of a simple query's results, all columns as text (NULL -> None).
pub async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    try_simple_rows(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn try_simple_rows(
    client: &Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).map(str::to_owned))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .collect())
}

/// The single text value of a one-row, one-column simple query.
pub async fn simple_value(client: &Client, sql: &str) -> String {
    let rows = simple_rows(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: expected one row, got {rows:?}");
    rows[0][0].clone().unwrap_or_else(|| panic!("{sql}: NULL"))
}

/// The SQLSTATE of a failed call.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(c) => c.code().to_owned(),
        None => panic!("expected a server error with a SQLSTATE, got: {e:?}"),
    }
}

/// Run psql against `port` (the proxy), returning (exit ok, stdout, stderr).
pub async fn psql(
    port: u16,
    database: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, Vec<u8>, String) {
    let pg = pg().await;
    let mut cmd = tokio::process::Command::new(pg.bindir.join("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-U")
        .arg(&pg.superuser)
        .arg("-d")
        .arg(database)
        .args(args)
        .env_remove("PGCLIENTENCODING")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(p) = &pg.password {
        cmd.env("PGPASSWORD", p);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("psql finished within 60 s")
        .expect("run psql");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Poll `check` every 100 ms until it returns true or `limit` passes.
/// Wait (up to 10 s) until no event loop of `workers` counts a session:
/// every session ended and gave back its count, wherever it ran.
pub async fn assert_no_sessions_counted(workers: &heal7_proxy::workers::Workers) {
    assert!(
        wait_until(Duration::from_secs(10), || async {
            workers.sessions().iter().all(|&n| n == 0)
        })
        .await,
        "sessions still counted: {:?}",
        workers.sessions()
    );
}

pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A name unique within this test run (application_name, channel names...).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
