//! `scripts/demo.sh`, run as a new user runs it (with the test build of the
//! proxy instead of a release build): a taken port or a server that does
//! not start ends it with a clear message and a non-zero exit; a taken
//! default port is replaced by a free one, and the lines it prints work.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_heal7-proxy");

fn demo() -> Command {
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh"));
    cmd.env("HEAL7_PROXY_BIN", BIN)
        .env_remove("PROXY_PORT")
        .env_remove("ADMIN_PORT")
        .env_remove("PG_PORT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Run the demo to its end; (exit code, stdout, stderr).
async fn run_to_end(mut cmd: Command) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("demo.sh ends within 120 s")
        .expect("run demo.sh");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn held_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_proxy_port_asked_for_exits_1_saying_so() {
    let taken = held_port();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = demo();
    cmd.env("PROXY_PORT", port.to_string());
    let (code, out, err) = run_to_end(cmd).await;
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(&format!(
            "demo.sh: 127.0.0.1:{port} (proxy) is already in use"
        )),
        "{err}"
    );
    assert!(!out.contains("is listening"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_that_cannot_start_exits_1_saying_so() {
    let taken = held_port();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = demo();
    cmd.env("PG_PORT", port.to_string())
        .env("PROXY_PORT", "0")
        .env("ADMIN_PORT", "0");
    // Port 0 is not a port a user can be told to connect to.
    let (code, _, err) = run_to_end(cmd).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("proxy port '0' is not a port number"), "{err}");

    let mut cmd = demo();
    cmd.env("PG_PORT", port.to_string());
    let (code, out, err) = run_to_end(cmd).await;
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(&format!(
            "demo.sh: PostgreSQL did not start on 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!out.contains("is listening"), "{out}");
}

type Stdout = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Reads the demo's stdout up to the end of its instructions; the rest of
/// stdout is returned for reading on (a closed stdout would end the demo by
/// SIGPIPE).
async fn instructions(child: &mut Child) -> (String, Stdout) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Ctrl-C stops") {
                return true;
            }
        }
        false
    };
    let done = tokio::time::timeout(Duration::from_secs(120), read).await;
    if done != Ok(true) {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
        panic!("demo.sh did not print its instructions:\n{text}\nstderr:\n{err}");
    }
    (text, lines)
}

/// The line of `text` that contains `needle`, trimmed (a command to run).
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
        .trim()
}

async fn shell(line: &str) -> (bool, String, String) {
    let out = Command::new("sh")
        .args(["-c", line])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_default_port_is_replaced_and_the_printed_lines_work() {
    // 6432 taken (by this test, or already by something else: PgBouncer's
    // default). Held only until the demo has chosen.
    let holder = std::net::TcpListener::bind("127.0.0.1:6432").ok();
    let mut child = demo().spawn().expect("spawn demo.sh");
    let (text, mut rest) = instructions(&mut child).await;
    drop(holder);
    let port: u16 = line_with(&text, "heal7-proxy is listening on 127.0.0.1:")
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(port, 6432, "{text}");

    // The printed lines, run as printed.
    let (ok, out, err) = shell(line_with(&text, "SELECT id, name FROM users")).await;
    assert!(
        ok && out.contains("김하늘") && !out.contains("STALE"),
        "{out}{err}"
    );
    let (ok, out, err) = shell(line_with(&text, "'SHOW MAPPING'")).await;
    assert!(
        ok && out.contains("shared_common") && out.contains("kasi_cache"),
        "{out}{err}"
    );
    let (ok, out, err) = shell(line_with(&text, "EXPLAIN REWRITE")).await;
    assert!(
        ok && out.contains("qualified by map -> saju_service"),
        "{out}{err}"
    );
    let (ok, out, err) = shell(line_with(&text, "/metrics | grep statements_total")).await;
    assert!(
        ok && out.contains("heal7_proxy_statements_total{outcome=\"rewritten\"}"),
        "{out}{err}"
    );
    // The live reload: edit the printed config path, the mapping follows.
    let generation = line_with(&text, "grep -o '\"generation\"");
    let (ok, out, _) = shell(generation).await;
    assert!(ok && out.trim() == "\"generation\":1", "{out}");
    let (ok, _, err) = shell(line_with(&text, "sed -i")).await;
    assert!(ok, "{err}");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            shell(generation).await.1.trim() == "\"generation\":2"
        })
        .await,
        "the edited file was not reloaded"
    );
    let (ok, out, err) = shell(line_with(&text, "now reads public's STALE copy")).await;
    assert!(ok && out.contains("STALE"), "{out}{err}");

    // Its log is a file it names, not its stdout.
    let log = line_with(&text, "Its log: ")
        .trim_start_matches("Its log: ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("heal7-proxy listening"), "{logged}");
    assert!(!text.contains("heal7-proxy listening"), "{text}");

    // Ctrl-C (SIGINT to the script): stops both, removes its directory.
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (status, last) = tokio::time::timeout(Duration::from_secs(60), async {
        let mut last = String::new();
        while let Some(line) = rest.next_line().await.unwrap() {
            last = line;
        }
        (child.wait().await.unwrap(), last)
    })
    .await
    .expect("demo.sh stops on SIGINT");
    assert_eq!(last, "stopping...");
    assert!(status.success(), "{status}");
    let dir = std::path::Path::new(&log).parent().unwrap();
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the proxy still listens"
    );
}
