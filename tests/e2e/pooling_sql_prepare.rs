//! SQL-level PREPARE / EXECUTE / DEALLOCATE in transaction mode (issue 11),
//! driven by real psql 15 (which has no `\bind`: scripts prepare with SQL).
//! Statements are carried across server connections under names of the
//! proxy's own, follow a reload that moves a table, and answer errors as
//! PostgreSQL itself does: the same script run directly against the server
//! and through the proxy prints the same output and the same errors.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::{connect, pg, sqlstate, wait_until};
use crate::pooling::{ReloadablePooled, pooled_proxy, user_config};

/// Run psql as `scram_user` on `host:port`/heal7 with `script` on stdin
/// (quiet, unaligned, tuples only; errors do not stop it unless the
/// script says so). Returns (exit ok, stdout, stderr).
async fn psql_script(host: &str, port: u16, script: &str, dir: &Path) -> (bool, String, String) {
    psql_script_in(host, port, script.as_bytes(), None, dir).await
}

/// [`psql_script`] with the script's bytes in `client_encoding`
/// (PGCLIENTENCODING; `None`: psql's default).
async fn psql_script_in(
    host: &str,
    port: u16,
    script: &[u8],
    client_encoding: Option<&str>,
    dir: &Path,
) -> (bool, String, String) {
    let pg = pg().await;
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let file = dir.join(format!("script-{run}.sql"));
    std::fs::write(&file, script).unwrap();
    let mut cmd = tokio::process::Command::new(pg.bindir.join("psql"));
    cmd.args(["-X", "-q", "-A", "-t", "-h", host, "-p"])
        .arg(port.to_string())
        .args(["-U", "scram_user", "-d", "heal7"])
        .env("PGPASSWORD", "scram-secret")
        .env_remove("PGOPTIONS")
        .env_remove("PGCLIENTENCODING")
        .envs(client_encoding.map(|e| ("PGCLIENTENCODING", e)))
        .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
        .stdout(Stdio::from(
            std::fs::File::create(dir.join(format!("out-{run}"))).unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(dir.join(format!("err-{run}"))).unwrap(),
        ))
        .current_dir(dir)
        .kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(240), cmd.status())
        .await
        .expect("psql finished within 240 s")
        .expect("run psql");
    let read = |name: &str| {
        String::from_utf8_lossy(&std::fs::read(dir.join(format!("{name}-{run}"))).unwrap())
            .into_owned()
    };
    (status.success(), read("out"), read("err"))
}

/// The statements every script client prepares, over bare mapped names
/// (rows other tests do not write: they share the database).
const PREPARES: &str = "\
PREPARE q_user (int) AS SELECT name FROM users WHERE id = $1;
PREPARE \"Q Join\" AS SELECT u.name || '/' || a.filename FROM users u JOIN attachments a ON a.user_id = u.id WHERE a.id = 1;
PREPARE q_chart(integer) AS SELECT chart FROM saju_charts WHERE id = $1;
";

/// One round of executions: in a transaction block and in autocommit, and
/// a statement dropped and prepared again under its name.
const ROUND: &str = "\
BEGIN;
EXECUTE q_user(1);
EXECUTE q_chart(1);
COMMIT;
EXECUTE q_user(2);
EXECUTE \"Q Join\";
DEALLOCATE q_chart;
PREPARE q_chart(integer) AS SELECT chart FROM saju_charts WHERE id = $1;
BEGIN;
EXECUTE q_user(1);
EXECUTE q_chart(2);
ROLLBACK;
";

/// What one round prints with `users` in `shared_common` (true) or back in
/// `public` (false).
fn round_output(users_mapped: bool) -> String {
    let (alice, bob) = if users_mapped {
        ("fresh-alice", "fresh-bob")
    } else {
        ("STALE-alice", "STALE-bob")
    };
    format!(
        "{alice}\nfresh-chart 갑자\n{bob}\n{alice}/fresh-photo.png\n{alice}\nfresh-chart 을축\n"
    )
}

/// Issue 11's psql test: several psql clients prepare statements over bare
/// names and execute them across many transactions on a pool of 2, while
/// other clients keep taking and giving back the server connections; a
/// reload then moves `users` back to `public` and the same clients go on.
/// No "does not exist/already exists" error, and every row comes from the
/// schema the mapping in force names (the stale copies say STALE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_scripts_prepare_and_execute_across_transactions_and_a_reload() {
    const CLIENTS: usize = 3;
    const ROUNDS: usize = 12;
    let proxy = ReloadablePooled::start("mode: transaction, size: 2").await;
    let port = proxy.handle.port();
    let dir = tempfile::tempdir().unwrap();

    // Other clients of the same pool hold and rotate the two connections.
    let stop = Arc::new(AtomicBool::new(false));
    let config = user_config(&proxy.handle, "scram_user", "scram-secret");
    let mut rotators = Vec::new();
    // The scripts start once both rotators are logged in.
    let started = Arc::new(tokio::sync::Barrier::new(3));
    for _ in 0..2 {
        let (config, stop, started) = (config.clone(), stop.clone(), started.clone());
        rotators.push(tokio::spawn(async move {
            let client = connect(&config).await.expect("login");
            started.wait().await;
            let mut transactions = 0u32;
            while !stop.load(Ordering::Relaxed) {
                client
                    .batch_execute(
                        "BEGIN; SELECT name FROM users WHERE id = 3; SELECT pg_sleep(0.005); COMMIT",
                    )
                    .await
                    .expect("a rotating transaction");
                transactions += 1;
            }
            transactions
        }));
    }

    started.wait().await;
    let mut scripts = Vec::new();
    for i in 0..CLIENTS {
        let mut script = String::from("\\set ON_ERROR_STOP 1\n");
        script.push_str(PREPARES);
        for _ in 0..ROUNDS {
            script.push_str(ROUND);
        }
        // Wait for the reload (psql runs the shell and waits for it).
        script.push_str(&format!(
            "\\echo RELOAD\n\\! touch ready-{i}; while [ ! -e go ]; do sleep 0.05; done\n"
        ));
        for _ in 0..ROUNDS {
            script.push_str(ROUND);
        }
        // Prepared under the new mapping, too.
        script
            .push_str("PREPARE q_late AS SELECT name FROM users WHERE id = 1;\nEXECUTE q_late;\n");
        let dir = dir.path().to_owned();
        scripts.push(tokio::spawn(async move {
            psql_script("127.0.0.1", port, &script, &dir).await
        }));
    }
    let all_ready = wait_until(Duration::from_secs(180), || async {
        (0..CLIENTS).all(|i| dir.path().join(format!("ready-{i}")).exists())
            || scripts.iter().any(|s| s.is_finished())
    })
    .await;
    if let Some(early) = scripts.iter().position(|s| s.is_finished()) {
        let (ok, stdout, stderr) = scripts.remove(early).await.unwrap();
        panic!("client {early} ended before the reload (ok {ok}):\n{stderr}\n{stdout}");
    }
    if !all_ready {
        let mut partial = String::new();
        for run in 0..CLIENTS {
            for name in ["out", "err"] {
                let text =
                    std::fs::read(dir.path().join(format!("{name}-{run}"))).unwrap_or_default();
                partial.push_str(&format!(
                    "--- {name} {run}:\n{}\n",
                    String::from_utf8_lossy(&text)
                ));
            }
        }
        panic!("not every psql client reached the reload:\n{partial}");
    }
    proxy.remap(false);
    std::fs::write(dir.path().join("go"), "").unwrap();

    let expected = format!(
        "{}RELOAD\n{}STALE-alice\n",
        round_output(true).repeat(ROUNDS),
        round_output(false).repeat(ROUNDS)
    );
    for (i, script) in scripts.into_iter().enumerate() {
        let (ok, stdout, stderr) = script.await.unwrap();
        assert!(
            !stderr.contains("does not exist") && !stderr.contains("already exists"),
            "client {i}: {stderr}"
        );
        assert!(ok, "client {i} failed:\n{stderr}\n{stdout}");
        assert_eq!(stdout, expected, "client {i}: rows from the mapped schema");
    }
    stop.store(true, Ordering::Relaxed);
    for r in rotators {
        assert!(r.await.unwrap() > 0, "the rotators ran");
    }
    let pools = proxy.handle.state.pools.all();
    let pool = pools.iter().find(|p| p.user == "scram_user").unwrap();
    assert!(
        pool.stats.servers_opened.load(Ordering::Relaxed) <= 2,
        "a pool of 2"
    );
    assert!(
        pool.stats.prepared_misses.load(Ordering::Relaxed) > 0,
        "some EXECUTE found its statement missing on the connection it got"
    );
}

/// The error cases, compared with PostgreSQL itself: the same psql script
/// (errors do not stop it; `\echo :SQLSTATE` after each) run directly
/// against the server and through the proxy prints the same output and
/// the same error messages, positions (psql's `LINE 1:` caret) included.
/// Through the proxy another client's `DEALLOCATE ALL` on the pool's one
/// connection drops the server's statements mid-script, so statements are
/// prepared again before their EXECUTE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_prepared_statement_errors_match_the_servers_own() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    // `other` runs as a second client of the same target.
    let psql = pg.bindir.join("psql");
    let script = |host: &str, port: u16| {
        let other = format!(
            "\\! {} -X -q -h {host} -p {port} -U scram_user -d heal7 -c 'DEALLOCATE ALL'\n",
            psql.display()
        );
        format!(
            "\
\\set VERBOSITY default
PREPARE q (int) AS SELECT $1::int + 1;
PREPARE q AS SELECT 2;
\\echo 1 :SQLSTATE
EXECUTE q(41);
{other}EXECUTE q(1);
EXECUTE nope;
\\echo 2 :SQLSTATE
EXECUTE nope(1, 2);
\\echo 3 :SQLSTATE
DEALLOCATE nope;
\\echo 4 :SQLSTATE
PREPARE bad AS SELEC 1;
\\echo 5 :SQLSTATE
PREPARE missing AS SELECT x FROM no_such_table WHERE x = 1;
\\echo 6 :SQLSTATE
EXECUTE bad;
\\echo 7 :SQLSTATE
EXECUTE q('x');
\\echo 8 :SQLSTATE
{other}EXECUTE q('y');
\\echo 9 :SQLSTATE
BEGIN;
SELECT 1/0;
EXECUTE q(1);
\\echo 10 :SQLSTATE
DEALLOCATE q;
\\echo 11 :SQLSTATE
ROLLBACK;
EXECUTE q(1);
DEALLOCATE PREPARE q;
EXECUTE q(1);
\\echo 12 :SQLSTATE
PREPARE q AS SELECT 'again';
EXECUTE q;
PREPARE a1 AS SELECT 'a1';
PREPARE a2 AS SELECT 'a2';
DEALLOCATE ALL;
EXECUTE a1;
\\echo 13 :SQLSTATE
PREPARE a1 AS SELECT 'a1 again';
EXECUTE a1;
DISCARD ALL;
EXECUTE a2;
\\echo 14 :SQLSTATE
PREPARE e (int) AS SELECT $1 * 2 AS doubled;
EXPLAIN (COSTS OFF) EXECUTE e(3);
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE e(4);
BEGIN;
CREATE TEMP TABLE t ON COMMIT DROP AS EXECUTE e(21);
SELECT doubled FROM t;
COMMIT;
{other}EXECUTE e(5);
PREPARE \"Mixed Case\" (text) AS SELECT upper($1);
EXECUTE \"Mixed Case\"('ok');
EXECUTE mixed;
\\echo 15 :SQLSTATE
"
        )
    };
    let direct = psql_script(&pg.host, pg.port, &script(&pg.host, pg.port), dir.path()).await;
    let proxied = psql_script(
        "127.0.0.1",
        proxy.port(),
        &script("127.0.0.1", proxy.port()),
        dir.path(),
    )
    .await;
    assert!(direct.0, "direct run: {}", direct.2);
    assert!(proxied.0, "proxied run: {}", proxied.2);
    // Sanity: the script did meet every error it means to.
    for code in [
        "1 42P05", "2 26000", "3 26000", "4 26000", "5 42601", "6 42P01", "7 26000", "8 22P02",
        "9 22P02", "10 25P02", "11 25P02", "12 26000", "13 26000", "14 26000", "15 26000",
    ] {
        assert!(direct.1.contains(code), "{code} directly: {}", direct.1);
    }
    assert!(direct.1.contains("\n42\n") && direct.1.contains("\n2\n"));
    assert!(direct.1.contains("\n42\n") && direct.1.contains("OK\n"));
    assert_eq!(proxied.1, direct.1, "stdout");
    assert_eq!(proxied.2, direct.2, "stderr");
}

/// The first value of each row a simple query returns.
async fn first_values(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// A transaction that began before a reload keeps reading the mapping it
/// began with through its SQL-level statement, also on the statement's
/// first use on that connection; the next transaction reads the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_never_mixes_two_mappings_through_sql_prepare() {
    let proxy = ReloadablePooled::start("mode: transaction, size: 2").await;
    let config = user_config(&proxy.handle, "scram_user", "scram-secret");
    let client = connect(&config).await.unwrap();
    client
        .batch_execute("PREPARE q AS SELECT name FROM users WHERE id = 1")
        .await
        .unwrap();
    client
        .batch_execute("PREPARE r AS SELECT name FROM users WHERE id = 2")
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(first_values(&client, "EXECUTE q").await, ["fresh-alice"]);
    proxy.remap(false);
    assert_eq!(
        first_values(&client, "EXECUTE q").await,
        ["fresh-alice"],
        "the transaction's own mapping"
    );
    assert_eq!(first_values(&client, "EXECUTE r").await, ["fresh-bob"]);
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(first_values(&client, "EXECUTE q").await, ["STALE-alice"]);
    assert_eq!(first_values(&client, "EXECUTE r").await, ["STALE-bob"]);
    proxy.remap(true);
    assert_eq!(first_values(&client, "EXECUTE r").await, ["fresh-bob"]);
}

/// A client whose client_encoding is EUC-KR (legacy Korean services):
/// names and literals in its own bytes, rewritten and carried as UTF-8
/// clients' are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_euc_kr_client_prepares_and_executes_in_its_own_bytes() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let dir = tempfile::tempdir().unwrap();
    // 김민수 and the statement name 이름, in EUC-KR.
    let (kim, name) = (&b"\xb1\xe8\xb9\xce\xbc\xf6"[..], &b"\xc0\xcc\xb8\xa7"[..]);
    let mut script = b"\\set ON_ERROR_STOP 1\nPREPARE \"".to_vec();
    script.extend_from_slice(name);
    script.extend_from_slice(
        b"\" (int, text) AS SELECT note || ':' || name FROM users WHERE id = $1 AND name = $2;\n",
    );
    for _ in 0..2 {
        script.extend_from_slice(b"EXECUTE \"");
        script.extend_from_slice(name);
        script.extend_from_slice(b"\"(3, '");
        script.extend_from_slice(kim);
        script.extend_from_slice(b"');\n");
        // Another client drops the server's statements: the next EXECUTE
        // prepares the EUC-KR text again before it runs.
        script.extend_from_slice(
            format!(
                "\\! {} -X -q -h 127.0.0.1 -p {} -U scram_user -d heal7 -c 'DEALLOCATE ALL'\n",
                pg().await.bindir.join("psql").display(),
                proxy.port()
            )
            .as_bytes(),
        );
    }
    let (ok, stdout, stderr) = psql_script_in(
        "127.0.0.1",
        proxy.port(),
        &script,
        Some("EUC_KR"),
        dir.path(),
    )
    .await;
    assert!(ok, "{stderr}");
    let mut expected = b"fresh:".to_vec();
    expected.extend_from_slice(kim);
    expected.push(b'\n');
    let expected = String::from_utf8_lossy(&expected).repeat(2);
    assert_eq!(stdout, expected, "the mapped schema's row, in EUC-KR");
    let pools = proxy.state.pools.all();
    let pool = pools.iter().find(|p| p.user == "scram_user").unwrap();
    assert!(
        pool.stats.prepared_misses.load(Ordering::Relaxed) > 0,
        "prepared again after DEALLOCATE ALL"
    );
}

/// What the proxy cannot carry exactly is refused with 0A000 naming
/// transaction pooling, and the session goes on: several statements in
/// one Query with a PREPARE among them, and SQL EXECUTE of a
/// protocol-level statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepares_mixed_into_other_statements_are_refused() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let client = connect(&config).await.unwrap();
    for sql in [
        "PREPARE p AS SELECT 1; SELECT 2",
        "SELECT 2; PREPARE p AS SELECT 1",
        "EXECUTE p; SELECT 1",
    ] {
        let e = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "0A000", "{sql}: {e}");
        let message = e.as_db_error().unwrap().message().to_owned();
        assert!(message.contains("pool.mode transaction"), "{message}");
    }
    // Nothing of those was prepared under the client's name.
    client
        .batch_execute("PREPARE p AS SELECT name FROM users WHERE id = 1")
        .await
        .expect("p is free");
    let rows = client.simple_query("EXECUTE p").await.unwrap();
    let name = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(name.as_deref(), Some("fresh-alice"));
    let statement = client.prepare("SELECT 1").await.unwrap();
    // Its name, from its Debug form (`Statement { name: "s3", .. }`).
    let debug = format!("{statement:?}");
    let name = debug
        .split('"')
        .nth(1)
        .expect("the statement's name")
        .to_owned();
    let e = client
        .batch_execute(&format!("EXECUTE {name}"))
        .await
        .expect_err("a protocol-level statement");
    assert_eq!(sqlstate(&e), "0A000", "{e}");
}

/// PostgreSQL keeps SQL-level and protocol-level statements in one
/// namespace: a Parse under a name an SQL PREPARE holds fails with 42P05,
/// even when the pool knows the Parse's text (a Parse the proxy would
/// otherwise answer itself), and the SQL statement stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parse_under_a_name_sql_prepare_holds_fails_with_42p05() {
    use bytes::BytesMut;
    use heal7_proxy::protocol;
    use tokio::io::AsyncWriteExt;

    use crate::pooling_prepared::md5_user_on_the_wire;
    use crate::raw_wire::read_message;

    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    // The pool learns `SELECT 1` from another client.
    let other = connect(&user_config(&proxy, "md5_user", "md5-secret"))
        .await
        .unwrap();
    other.prepare("SELECT 1").await.unwrap();
    let mut s = md5_user_on_the_wire(&proxy).await;
    let mut exchange = async |out: BytesMut| {
        s.write_all(&out).await.unwrap();
        let mut answers = Vec::new();
        loop {
            let (t, body) = read_message(&mut s).await.expect("an answer");
            answers.push((t, String::from_utf8_lossy(&body).into_owned()));
            if t == b'Z' {
                return answers;
            }
        }
    };
    let mut out = BytesMut::new();
    protocol::encode_query(&mut out, b"PREPARE s1 AS SELECT 'sql'");
    let answers = exchange(out).await;
    assert_eq!(answers[0].0, b'C', "{answers:?}");

    let mut out = BytesMut::new();
    protocol::encode_parse(&mut out, b"s1", b"SELECT 1", &[0, 0]);
    protocol::encode_sync(&mut out);
    let answers = exchange(out).await;
    assert_eq!(answers[0].0, b'E', "{answers:?}");
    assert!(
        answers[0].1.contains("C42P05")
            && answers[0]
                .1
                .contains("prepared statement \"s1\" already exists"),
        "{answers:?}"
    );

    let mut out = BytesMut::new();
    protocol::encode_query(&mut out, b"EXECUTE s1");
    let answers = exchange(out).await;
    assert!(
        answers
            .iter()
            .any(|(t, body)| *t == b'D' && body.ends_with("sql")),
        "{answers:?}"
    );
}
