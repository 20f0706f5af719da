//! The `heal7-proxy` binary itself: `serve`, `rewrite` and `check`, as
//! operators and migration scripts call them.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::harness::{connect, pg, proxy_yaml, simple_value, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_heal7-proxy");

fn write_config(dir: &tempfile::TempDir, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn run_bin(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn heal7-proxy");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("heal7-proxy finished within 60 s")
        .expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_command_prints_what_the_proxy_would_send() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &proxy_yaml(pg, "tokens"));
    let config = config.to_str().unwrap();
    let sql = "SELECT u.name, '사용자' /* users */ FROM users u JOIN \"Users\" q ON q.id = u.id";
    let (ok, out, err) = run_bin(&["rewrite", "--config", config], sql.as_bytes(), &[]).await;
    assert!(ok, "rewrite failed: {err}");
    assert!(
        out.contains(
            "SELECT u.name, '사용자' /* users */ FROM shared_common.users u JOIN \"Users\" q ON q.id = u.id"
        ),
        "{out}"
    );
    let (ok, out, err) = run_bin(
        &["rewrite", "--config", config, "--database", "heal7_saju"],
        b"SELECT body FROM old_dreams",
        &[],
    )
    .await;
    assert!(ok, "rewrite --database failed: {err}");
    assert!(
        out.contains("SELECT body FROM \"Dream Archive\".old_dreams"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command_reports_mapped_tables_and_fails_on_a_missing_one() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![("PGUSER", pg.superuser.as_str())];
    if let Some(p) = &pg.password {
        env.push(("PGPASSWORD", p.as_str()));
    }
    let config = write_config(&dir, &proxy_yaml(pg, "tokens"));
    let (ok, out, err) = run_bin(&["check", "--config", config.to_str().unwrap()], b"", &env).await;
    assert!(ok, "check failed on the fixture: {out}{err}");
    for table in [
        "users",
        "attachments",
        "saju_charts",
        "kasi_cache",
        "dream_categories",
        "dream_interpretations",
        "old_dreams",
    ] {
        assert!(out.contains(table), "{table} not reported: {out}");
    }
    // The fixture's stale copies in public make every table ambiguous.
    assert!(out.contains("public"), "{out}");

    let yaml = proxy_yaml(pg, "tokens").replace(
        "shared_common: {tables: [users, attachments]}",
        "shared_common: {tables: [users, attachments, no_such_table]}",
    );
    let dir2 = tempfile::tempdir().unwrap();
    let config = write_config(&dir2, &yaml);
    let (ok, out, err) = run_bin(&["check", "--config", config.to_str().unwrap()], b"", &env).await;
    assert!(!ok, "check passed with a missing table: {out}{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("no_such_table") && l.contains("missing")),
        "{out}{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_command_relays_and_rewrites() {
    let pg = pg().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = proxy_yaml(pg, "tokens")
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let config = write_config(&dir, &yaml);
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn heal7-proxy serve");
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(&pg.superuser)
        .dbname("heal7");
    if let Some(p) = &pg.password {
        cfg.password(p);
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await,
        "heal7-proxy serve never listened on {port}"
    );
    let c = connect(&cfg).await.expect("connect to heal7-proxy serve");
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    drop(c);
    child.kill().await.expect("stop heal7-proxy");
}

/// The rewrite command takes the session's own path: non-UTF-8 input in
/// the client's encoding is rewritten with its bytes kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_command_keeps_the_bytes_of_a_client_encoding() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &proxy_yaml(pg, "tokens"));
    let config = config.to_str().unwrap();
    // Shift-JIS ソ (0x83 0x5C: a backslash-looking trail byte) in an E'' literal.
    let sql = b"SELECT E'\x83\x5c' FROM users";
    let (ok, out, err) = run_bin(
        &["rewrite", "--config", config, "--client-encoding", "SJIS"],
        sql,
        &[],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out.as_bytes(),
        String::from_utf8_lossy(b"SELECT E'\x83\x5c' FROM shared_common.users").as_bytes()
    );
}
