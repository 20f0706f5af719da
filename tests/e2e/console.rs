//! The admin console on the virtual database `heal7_proxy`: SCRAM login
//! against `proxy.admin_users` (tokio-postgres and psql), every command's
//! result set, refusals with 28P01 that do not reveal who exists, RELOAD on
//! an in-memory and a file-backed config, EXPLAIN REWRITE.

use std::sync::Arc;
use std::time::Duration;

use heal7_proxy::auth::scram::hash_password;
use heal7_proxy::reload::ConfigStore;
use heal7_proxy::rewrite::{Decision, NameUse};
use heal7_proxy::server;
use heal7_proxy::state::ProxyState;
use heal7_proxy::unmapped::ClientIdentity;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::harness::{
    Pg, ProxyHandle, SCHEMAS_YAML, SCRAM_PASSWORD, connect, pg, pg_started, psql, simple_rows,
    simple_value, sqlstate, start_proxy_yaml, try_simple_rows, unique,
};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "console-secret";
const OTHER_ADMIN: &str = "ops";
const OTHER_PASSWORD: &str = "ops-secret";

fn console_yaml(pg: &Pg, listen: &str) -> String {
    format!(
        "proxy:\n  listen: {listen}\n  admin_users:\n    {ADMIN}: \"{}\"\n    {OTHER_ADMIN}: \"{}\"\n\
         databases:\n  heal7:\n    host: {host}\n    port: {port}\n    database: heal7\n{SCHEMAS_YAML}",
        hash_password(ADMIN_PASSWORD.as_bytes()),
        hash_password(OTHER_PASSWORD.as_bytes()),
        host = pg.host,
        port = pg.port,
    )
}

async fn start_console_proxy() -> ProxyHandle {
    let pg = pg().await;
    start_proxy_yaml(&console_yaml(pg, "127.0.0.1:0")).await
}

fn console_config(port: u16, user: &str, password: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname("heal7_proxy")
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn admin(port: u16) -> Client {
    connect(&console_config(port, ADMIN, ADMIN_PASSWORD))
        .await
        .expect("admin logs into the console")
}

/// The rows whose column `col` holds `value`.
fn rows_with(rows: &[Vec<Option<String>>], col: usize, value: &str) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .filter(|r| r[col].as_deref() == Some(value))
        .cloned()
        .collect()
}

fn cells(row: &[Option<String>]) -> Vec<&str> {
    row.iter().map(|c| c.as_deref().unwrap_or("")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_show_command_answers_a_result_set() {
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;

    assert_eq!(
        simple_value(&c, "SHOW VERSION").await,
        format!("heal7-proxy {}", env!("CARGO_PKG_VERSION"))
    );

    let mapping = simple_rows(&c, "show mapping;").await;
    let kasi = rows_with(&mapping, 2, "kasi_cache");
    assert_eq!(
        cells(&kasi[0]),
        ["heal7", "saju_service", "kasi_cache", "rewrite", "1", ""]
    );
    assert_eq!(
        mapping
            .iter()
            .filter(|r| r[0].as_deref() == Some("heal7") && r[2].is_some())
            .count(),
        8,
        "one row per mapped table (legacy_fortunes kept in public included): {mapping:?}"
    );
    let main = mapping
        .iter()
        .find(|r| r[0].as_deref() == Some("heal7") && r[2].is_none())
        .expect("a row for the main name");
    assert!(
        main[5]
            .as_deref()
            .unwrap()
            .starts_with("search_path shared_common, "),
        "{main:?}"
    );
    let alias = rows_with(&mapping, 0, "heal7_saju");
    assert_eq!(alias.len(), 1, "{mapping:?}");
    assert_eq!(alias[0][1].as_deref(), Some("saju_service"));
    assert!(alias[0][5].as_deref().unwrap().contains("alias of heal7"));

    // A proxied client's statement shows under its database.
    let app = proxy.connect("heal7").await;
    assert_eq!(
        simple_value(&app, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    let stats = simple_rows(&c, "SHOW STATS").await;
    let heal7 = rows_with(&stats, 0, "heal7");
    assert_eq!(heal7.len(), 1, "{stats:?}");
    // database, connected, active, total, then outcomes; `rewritten` is
    // column 6. Per-database counters fill in once sessions feed them.
    assert_eq!(cells(&heal7[0])[..2], ["heal7", "1"], "{stats:?}");
    assert_eq!(
        cells(&rows_with(&stats, 0, "heal7_proxy")[0])[..2],
        ["heal7_proxy", "1"],
        "the console session itself is a client"
    );
    let total = cells(stats.last().unwrap());
    assert_eq!(total[..2], ["*", "2"], "{stats:?}");
    assert!(
        total[6].parse::<u64>().unwrap() >= 1,
        "rewritten: {stats:?}"
    );
    drop(app);

    assert!(simple_rows(&c, "SHOW UNMAPPED").await.is_empty());
    proxy.state.unmapped.record(
        &ClientIdentity {
            database: "heal7".into(),
            user: "crawler".into(),
            application_name: "8006".into(),
        },
        &[NameUse {
            name: "legacy_log".into(),
            offset: 14,
            decision: Decision::NotInMap,
        }],
        "SELECT * FROM legacy_log",
    );
    let unmapped = simple_rows(&c, "SHOW UNMAPPED").await;
    assert_eq!(unmapped.len(), 1);
    let row = cells(&unmapped[0]);
    assert_eq!(
        row[..5],
        ["heal7", "crawler", "8006", "legacy_log", "1"],
        "{row:?}"
    );
    assert_eq!(row[7], "SELECT * FROM legacy_log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_and_the_extended_protocol_are_errors_the_session_survives() {
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;
    let e = try_simple_rows(&c, "SHOW POOLS").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    assert!(e.as_db_error().unwrap().message().contains("SHOW MAPPING"));

    let e = c.query("SHOW VERSION", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");

    let e = try_simple_rows(&c, "EXPLAIN REWRITE SELECT 1 FOR DATABASE nope")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "3D000");

    assert!(
        simple_value(&c, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );
    // An empty query is answered as Postgres does.
    assert!(simple_rows(&c, ";").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unknown_user_and_non_admin_are_all_28p01() {
    let proxy = start_console_proxy().await;
    let port = proxy.port();
    for (user, password, why) in [
        (ADMIN, "wrong", "wrong password"),
        ("nobody", ADMIN_PASSWORD, "unknown user"),
        // A user that exists upstream but is no admin, with an admin's password.
        (
            "scram_user",
            OTHER_PASSWORD,
            "non-admin with another admin's password",
        ),
        (
            OTHER_ADMIN,
            ADMIN_PASSWORD,
            "an admin with another admin's password",
        ),
    ] {
        let e = connect(&console_config(port, user, password))
            .await
            .err()
            .unwrap_or_else(|| panic!("{why}: login accepted"));
        assert_eq!(sqlstate(&e), "28P01", "{why}: {e:?}");
        assert_eq!(
            e.as_db_error().unwrap().message(),
            format!("password authentication failed for user \"{user}\""),
            "{why}: the same message whether or not the user exists"
        );
    }
    // The other admin logs in with its own password.
    let c = connect(&console_config(port, OTHER_ADMIN, OTHER_PASSWORD))
        .await
        .unwrap();
    assert!(
        simple_value(&c, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_clients_lists_a_concurrent_proxied_client() {
    let proxy = start_console_proxy().await;
    let app = unique("billing");
    let mut cfg = proxy.config("heal7");
    cfg.application_name(&app);
    let app_client = connect(&cfg).await.unwrap();
    assert_eq!(
        simple_value(&app_client, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );

    let c = admin(proxy.port()).await;
    let clients = simple_rows(&c, "SHOW CLIENTS").await;
    let mine = rows_with(&clients, 3, &app);
    assert_eq!(mine.len(), 1, "{clients:?}");
    let row = cells(&mine[0]);
    assert!(row[0].starts_with("127.0.0.1:"), "{row:?}");
    assert_eq!(row[1], pg_started().superuser);
    assert_eq!(row[2], "heal7");
    assert!(
        !row[4].is_empty() && row[5].parse::<u64>().is_ok(),
        "{row:?}"
    );
    assert!(row[6].ends_with("+00"), "{row:?}");
    let console = rows_with(&clients, 2, "heal7_proxy");
    assert_eq!(console.len(), 1, "{clients:?}");
    assert_eq!(
        cells(&console[0])[4..6],
        ["active", "1"],
        "the console session, running SHOW CLIENTS"
    );

    drop(app_client);
    let gone = crate::harness::wait_until(Duration::from_secs(5), || async {
        rows_with(&simple_rows(&c, "SHOW CLIENTS").await, 3, &app).is_empty()
    })
    .await;
    assert!(gone, "a closed session is no longer listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_rewrite_shows_the_text_and_each_name_with_why() {
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;
    let rows = simple_rows(
        &c,
        "EXPLAIN REWRITE WITH users AS (SELECT 1) SELECT * FROM users, kasi_cache",
    )
    .await;
    assert_eq!(
        cells(&rows[0]),
        [
            "sent",
            "heal7",
            "",
            "WITH users AS (SELECT 1) SELECT * FROM users, saju_service.kasi_cache"
        ]
    );
    assert_eq!(cells(&rows[1]), ["generation", "", "", "1"]);
    assert_eq!(cells(&rows[2]), ["outcome", "", "", "rewritten"]);
    let users = rows_with(&rows, 1, "users");
    assert!(!users.is_empty(), "{rows:?}");
    assert!(
        users
            .iter()
            .all(|r| r[3].as_deref().unwrap().starts_with("CTE")),
        "{rows:?}"
    );
    let kasi = rows_with(&rows, 1, "kasi_cache");
    assert_eq!(
        cells(&kasi[0]),
        [
            "table",
            "kasi_cache",
            "46",
            "qualified by map -> saju_service"
        ]
    );

    // FOR DATABASE picks the map (an alias shares its database's map).
    let rows = simple_rows(
        &c,
        "explain rewrite SELECT * FROM public.users, legacy FOR DATABASE heal7_saju;",
    )
    .await;
    assert_eq!(rows[0][1].as_deref(), Some("heal7_saju"));
    assert_eq!(
        rows[0][3].as_deref(),
        Some("SELECT * FROM shared_common.users, legacy")
    );
    assert!(
        rows_with(&rows, 1, "public.users")[0][3]
            .as_deref()
            .unwrap()
            .starts_with("public. spelling of a moved name -> shared_common")
    );
    assert!(
        rows_with(&rows, 1, "legacy")[0][3]
            .as_deref()
            .unwrap()
            .starts_with("not in map")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_and_prints_tables() {
    let proxy = start_console_proxy().await;
    let env = [("PGPASSWORD", ADMIN_PASSWORD)];
    let (ok, out, err) = psql(
        proxy.port(),
        "heal7_proxy",
        &["-U", ADMIN, "-c", "SHOW MAPPING"],
        &env,
    )
    .await;
    assert!(ok, "psql: {err}");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.lines()
            .any(|l| l == "heal7|saju_service|kasi_cache|rewrite|1|"),
        "{out}"
    );

    let (ok, out, err) = psql(
        proxy.port(),
        "heal7_proxy",
        &["-U", ADMIN, "-c", "EXPLAIN REWRITE SELECT * FROM users"],
        &env,
    )
    .await;
    assert!(ok, "psql: {err}");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("sent|heal7||SELECT * FROM shared_common.users"),
        "{out}"
    );

    let (ok, _, err) = psql(
        proxy.port(),
        "heal7_proxy",
        &["-U", ADMIN, "-c", "SHOW VERSION"],
        &[("PGPASSWORD", "wrong")],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_is_refused_in_memory_and_bumps_the_generation_from_a_file() {
    // In memory: no file to read, so the reload is refused with F0000.
    let proxy = start_console_proxy().await;
    let c = admin(proxy.port()).await;
    let e = try_simple_rows(&c, "RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&e), "F0000");
    assert!(
        simple_value(&c, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );

    // From a file: a changed file is a new generation.
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, console_yaml(pg, "127.0.0.1:0")).unwrap();
    let store = Arc::new(ConfigStore::from_file(&path).unwrap());
    let state = ProxyState::with_store(store.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(server::run(listener, state, shutdown));
    let c = admin(port).await;

    // Same bytes: nothing to swap.
    assert_eq!(
        cells(&simple_rows(&c, "RELOAD").await[0]),
        ["unchanged", "1", ""]
    );
    std::fs::write(
        &path,
        console_yaml(pg, "127.0.0.1:0").replace("old_dreams", "old_dreams, dream_log"),
    )
    .unwrap();
    assert_eq!(
        cells(&simple_rows(&c, "reload;").await[0]),
        ["reloaded", "2", ""]
    );
    let mapping = simple_rows(&c, "SHOW MAPPING").await;
    assert_eq!(
        cells(&rows_with(&mapping, 2, "dream_log")[0])[..5],
        ["heal7", "Dream Archive", "dream_log", "rewrite", "2"]
    );

    // A broken file is refused, and SHOW MAPPING says so until fixed.
    std::fs::write(&path, "databases: [").unwrap();
    let e = try_simple_rows(&c, "RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&e), "F0000");
    let mapping = simple_rows(&c, "SHOW MAPPING").await;
    let last = cells(mapping.last().unwrap()).join("|");
    assert!(last.contains("last reload refused"), "{last}");
    assert_eq!(store.load().generation, 2);

    // The verifiers are reloaded too: the admin logs in with the same file.
    drop(c);
    admin(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_password_output_is_accepted_by_real_postgres() {
    let pg = pg().await;
    let verifier = hash_password(SCRAM_PASSWORD.as_bytes());
    let direct = pg.direct("heal7").await;
    // Same password, new salt: other tests logging in as scram_user still work.
    direct
        .batch_execute(&format!("ALTER ROLE scram_user PASSWORD '{verifier}'"))
        .await
        .unwrap();
    assert_eq!(
        simple_value(
            &direct,
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'"
        )
        .await,
        verifier,
        "Postgres stored the verifier as given (it recognised the format)"
    );
    let mut cfg = pg.direct_config("heal7");
    cfg.user("scram_user").password(SCRAM_PASSWORD);
    let c = connect(&cfg).await.expect("scram_user logs in against it");
    assert_eq!(simple_value(&c, "SELECT current_user").await, "scram_user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_password_command_prints_a_verifier_the_console_accepts() {
    let run = |stdin: &'static [u8]| async move {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_heal7-proxy"))
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        child.wait_with_output().await.unwrap()
    };
    let out = run(b"from-the-cli\n").await;
    assert!(out.status.success(), "{out:?}");
    let verifier = String::from_utf8(out.stdout).unwrap().trim_end().to_owned();
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    assert!(!verifier.contains("from-the-cli"));

    let pg = pg().await;
    let yaml = console_yaml(pg, "127.0.0.1:0").replacen(
        &format!("    {OTHER_ADMIN}: "),
        &format!("    cli: \"{verifier}\"\n    {OTHER_ADMIN}: "),
        1,
    );
    let proxy = start_proxy_yaml(&yaml).await;
    let c = connect(&console_config(proxy.port(), "cli", "from-the-cli"))
        .await
        .expect("the printed verifier logs in");
    assert!(
        simple_value(&c, "SHOW VERSION")
            .await
            .starts_with("heal7-proxy")
    );

    let out = run(b"").await;
    assert!(!out.status.success(), "an empty password is refused");
}

/// A raw-socket console client, for what tokio-postgres cannot show: the
/// proxy's unsolicited FATAL at shutdown, refusals of odd SASL messages.
mod raw {
    use bytes::{BufMut, Bytes, BytesMut};
    use heal7_proxy::protocol::{ErrorFields, Frame, PROTOCOL_3_0, StartupMessage};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct Raw {
        pub stream: TcpStream,
        buf: BytesMut,
    }

    impl Raw {
        /// Connect and send the StartupMessage for the console as `user`.
        pub async fn start(port: u16, user: &str) -> Raw {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let startup = StartupMessage {
                version: PROTOCOL_3_0,
                params: vec![
                    (
                        Bytes::from_static(b"user"),
                        Bytes::copy_from_slice(user.as_bytes()),
                    ),
                    (
                        Bytes::from_static(b"database"),
                        Bytes::from_static(b"heal7_proxy"),
                    ),
                ],
            };
            stream.write_all(&startup.encode()).await.unwrap();
            Raw {
                stream,
                buf: BytesMut::new(),
            }
        }

        /// The next frame (tag, whole frame); `None` at end of stream.
        pub async fn frame(&mut self) -> Option<(u8, Bytes)> {
            loop {
                if let Some(f) = Frame::decode(&mut self.buf, 1 << 20).unwrap() {
                    return Some((f.tag, f.bytes));
                }
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    self.stream.read_buf(&mut self.buf),
                )
                .await
                .expect("an answer within 10 s")
                .unwrap();
                if read == 0 {
                    return None;
                }
            }
        }

        /// The SQLSTATE of the next frame, which must be an ErrorResponse.
        pub async fn error_code(&mut self) -> String {
            let (tag, frame) = self.frame().await.expect("an ErrorResponse");
            assert_eq!(tag, b'E', "{frame:?}");
            let fields = ErrorFields::parse(&frame).unwrap();
            String::from_utf8(fields.code().unwrap().to_vec()).unwrap()
        }

        /// Frame of 'p' carrying `body`.
        pub async fn send_p(&mut self, body: &[u8]) {
            let mut out = BytesMut::new();
            out.put_u8(b'p');
            out.put_i32(4 + body.len() as i32);
            out.extend_from_slice(body);
            self.stream.write_all(&out).await.unwrap();
        }

        pub async fn send_initial(&mut self, client_first: &[u8]) {
            let mut body = b"SCRAM-SHA-256\0".to_vec();
            body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
            body.extend_from_slice(client_first);
            self.send_p(&body).await;
        }

        /// Log in with SCRAM and read up to the first ReadyForQuery.
        pub async fn login(&mut self, password: &str) {
            assert_eq!(self.frame().await.unwrap().0, b'R'); // AuthenticationSASL
            let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
            self.send_initial(scram.message()).await;
            let (_, cont) = self.frame().await.unwrap();
            scram.update(&cont[9..]).unwrap();
            self.send_p(scram.message()).await;
            let (_, last) = self.frame().await.unwrap();
            scram.finish(&last[9..]).unwrap();
            while self.frame().await.unwrap().0 != b'Z' {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_console_session_is_told_57p01_at_shutdown() {
    let proxy = start_console_proxy().await;
    let mut c = raw::Raw::start(proxy.port(), ADMIN).await;
    c.login(ADMIN_PASSWORD).await;
    proxy.shutdown.cancel();
    assert_eq!(c.error_code().await, "57P01");
    assert!(c.frame().await.is_none(), "then the proxy closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_sasl_messages_are_refused_before_any_password_check() {
    let proxy = start_console_proxy().await;
    // Channel binding is not offered: a client that insists is refused.
    let mut c = raw::Raw::start(proxy.port(), ADMIN).await;
    assert_eq!(c.frame().await.unwrap().0, b'R');
    c.send_initial(b"p=tls-server-end-point,,n=,r=abcdef").await;
    assert_eq!(c.error_code().await, "08P01");

    // A query before logging in is a protocol violation, not a way in.
    let mut c = raw::Raw::start(proxy.port(), ADMIN).await;
    assert_eq!(c.frame().await.unwrap().0, b'R');
    c.stream
        .write_all(b"Q\0\0\0\x11SHOW VERSION\0")
        .await
        .unwrap();
    assert_eq!(c.error_code().await, "08P01");

    // A SASL message over the pre-login cap is refused from its header.
    let mut c = raw::Raw::start(proxy.port(), ADMIN).await;
    assert_eq!(c.frame().await.unwrap().0, b'R');
    c.stream.write_all(b"p\0\x10\0\0").await.unwrap();
    assert_eq!(c.error_code().await, "08P01");
}
