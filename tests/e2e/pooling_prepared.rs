//! Transaction pooling and clients that prepare with a blocking call
//! (issue 11): a Parse (+ Describe) + Sync between transactions of a
//! statement some server connection of the pool has already accepted is
//! answered by the proxy itself, so a client program that prepares on one
//! thread while its other connections hold every server connection inside
//! a transaction (pgbench `-M prepared`) is not stalled until
//! `query_wait_timeout_ms`.

use std::time::Duration;

use crate::harness::{ProxyHandle, connect, pg, simple_value, sqlstate, start_proxy_yaml, unique};
use crate::pooling::{auth_password_dir, pooled_proxy, pooled_yaml, user_config};

/// pgbench's tables (`pgbench -i -s 1`, made directly on the server) in a
/// schema of their own in `heal7`, usable by `scram_user`.
async fn pgbench_schema() -> String {
    let pg = pg().await;
    let schema = unique("pgbench");
    let admin = pg.direct("heal7").await;
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let mut cmd = tokio::process::Command::new(pg.bindir.join("pgbench"));
    cmd.args(["-i", "-s", "1", "-q", "-h", &pg.host, "-p"])
        .arg(pg.port.to_string())
        .args(["-U", &pg.superuser, "heal7"])
        // pgbench -i creates its tables unqualified: in the first schema.
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .kill_on_drop(true);
    if let Some(p) = &pg.password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().await.expect("run pgbench -i");
    assert!(
        out.status.success(),
        "pgbench -i failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {schema} TO scram_user;
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO scram_user"
        ))
        .await
        .unwrap();
    schema
}

/// A pooled proxy whose map also sends pgbench's bare table names to
/// `schema`.
async fn pooled_pgbench_proxy(pool: &str, schema: &str) -> (ProxyHandle, tempfile::TempDir) {
    let dir = auth_password_dir();
    let yaml = pooled_yaml(pool, &dir.path().join("auth-password"), true).replace(
        "    schemas:\n",
        &format!(
            "    schemas:\n      {schema}: {{tables: [pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history]}}\n"
        ),
    );
    (start_proxy_yaml(&yaml).await, dir)
}

/// Issue 11: pgbench `-M prepared`, tpcb-like, 30 clients on one thread
/// and a pool of 3. Each client prepares `BEGIN` with a blocking PQprepare
/// outside a transaction while others hold all 3 server connections
/// inside one; before the fix those waited `query_wait_timeout_ms`, got
/// 53300 and pgbench aborted them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_tpcb_does_not_stall_on_a_small_pool() {
    let schema = pgbench_schema().await;
    let (proxy, _dir) = pooled_pgbench_proxy(
        "mode: transaction, size: 3, query_wait_timeout_ms: 5000",
        &schema,
    )
    .await;
    let pg = pg().await;
    let run = tokio::process::Command::new(pg.bindir.join("pgbench"))
        .args(["-n", "-h", "127.0.0.1", "-p"])
        .arg(proxy.port().to_string())
        .args(["-U", "scram_user", "-c", "30", "-j", "1", "-t", "20"])
        .args(["-M", "prepared", "-b", "tpcb-like", "heal7"])
        .env("PGPASSWORD", "scram-secret")
        .env_remove("PGOPTIONS")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("pgbench finished")
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pgbench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("number of transactions actually processed: 600/600"),
        "{stdout}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0 "),
        "{stdout}"
    );
    // Every transaction went through the mapped schema.
    let admin = pg.direct("heal7").await;
    assert_eq!(
        simple_value(
            &admin,
            &format!("SELECT count(*) FROM {schema}.pgbench_history")
        )
        .await,
        "600"
    );
}

/// A statement client A prepared is prepared by client B while every
/// server connection is held inside a transaction: answered at once
/// (ParseComplete, and the Describe tokio-postgres asks for, from the
/// first server's answer); B's execution then waits for a connection and
/// returns the mapped table's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_statement_is_prepared_while_every_server_connection_is_held() {
    let (proxy, _dir) =
        pooled_proxy("mode: transaction, size: 2, query_wait_timeout_ms: 3000").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let a = connect(&config).await.unwrap();
    let b = connect(&config).await.unwrap();
    let holders = [
        connect(&config).await.unwrap(),
        connect(&config).await.unwrap(),
    ];
    const SQL: &str = "SELECT name, id FROM users WHERE id = $1";
    let first = a.prepare(SQL).await.expect("A prepares on a server");
    for h in &holders {
        h.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    let second = tokio::time::timeout(Duration::from_millis(1500), b.prepare(SQL))
        .await
        .expect("answered without waiting for a server connection")
        .expect("prepared");
    assert_eq!(second.params(), first.params());
    let columns = |s: &tokio_postgres::Statement| {
        s.columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(columns(&second), columns(&first));

    let execution = tokio::spawn(async move {
        let row = b.query_one(&second, &[&1i32]).await?;
        Ok::<_, tokio_postgres::Error>(row.get::<_, String>(0))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    holders[0].batch_execute("COMMIT").await.unwrap();
    let name = tokio::time::timeout(Duration::from_secs(10), execution)
        .await
        .expect("executed once a connection was free")
        .unwrap()
        .expect("B's execution");
    assert_eq!(name, "fresh-alice", "read from the mapped schema");
    holders[1].batch_execute("COMMIT").await.unwrap();
}

/// A statement no server of the pool has accepted still goes to a server,
/// so its error comes at prepare, every time (a refused statement is not
/// remembered as accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_statement_still_fails_at_prepare() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    for _ in 0..2 {
        let client = connect(&config).await.unwrap();
        let e = client
            .prepare("SELECT * FROM no_such_table_anywhere")
            .await
            .expect_err("refused by the server");
        assert_eq!(sqlstate(&e), "42P01", "{e}");
        let e = client
            .prepare("SELEC 1")
            .await
            .expect_err("refused by the server");
        assert_eq!(sqlstate(&e), "42601", "{e}");
        assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    }
}

/// The documented difference: a statement a server accepted before a DDL
/// change that now makes it fail is answered at prepare by the proxy, and
/// fails at its execution instead (with the server's error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_broken_by_ddl_meanwhile_fails_at_execution() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let pg = pg().await;
    let admin = pg.direct("heal7").await;
    let table = unique("ddl_gone");
    admin
        .batch_execute(&format!(
            "CREATE TABLE public.{table} (x int); GRANT SELECT ON public.{table} TO scram_user"
        ))
        .await
        .unwrap();
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let a = connect(&config).await.unwrap();
    let sql = format!("SELECT x FROM {table}");
    a.prepare(&sql).await.expect("the table exists");
    admin
        .batch_execute(&format!("DROP TABLE public.{table}"))
        .await
        .unwrap();
    let b = connect(&config).await.unwrap();
    let statement = b.prepare(&sql).await.expect("answered from the pool");
    let e = b
        .query(&statement, &[])
        .await
        .expect_err("the table is gone");
    assert_eq!(sqlstate(&e), "42P01", "{e}");
    assert_eq!(
        simple_value(&b, "SELECT 1").await,
        "1",
        "the session goes on"
    );
}

/// Close, DISCARD ALL and a re-prepare under the same name keep their
/// meaning for statements the proxy answered itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_answered_by_the_proxy_close_and_discard_as_usual() {
    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let config = user_config(&proxy, "scram_user", "scram-secret");
    let a = connect(&config).await.unwrap();
    const SQL: &str = "SELECT name FROM users WHERE id = $1";
    a.prepare(SQL).await.unwrap();
    let b = connect(&config).await.unwrap();
    for round in 0..3 {
        // Dropped at the end of the round: tokio-postgres sends Close.
        let statement = b.prepare(SQL).await.unwrap();
        let row = b.query_one(&statement, &[&2i32]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "fresh-bob", "round {round}");
    }
    let statement = b.prepare(SQL).await.unwrap();
    b.batch_execute("DISCARD ALL").await.unwrap();
    let e = b
        .query_one(&statement, &[&2i32])
        .await
        .expect_err("DISCARD ALL dropped it");
    assert_eq!(sqlstate(&e), "26000", "{e}");
    let statement = b.prepare(SQL).await.unwrap();
    let row = b.query_one(&statement, &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "fresh-alice");
}

/// A prepare the proxy answers and the requests pipelined after it in the
/// same write keep their order: Parse + Sync (answered by the proxy) then
/// Bind + Execute + Sync (answered by a server) come back as ParseComplete,
/// ReadyForQuery, BindComplete, DataRow, CommandComplete, ReadyForQuery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_answered_by_the_proxy_keeps_the_order_of_a_pipeline() {
    use bytes::{BufMut, BytesMut};
    use heal7_proxy::protocol;
    use tokio::io::AsyncWriteExt;

    use crate::raw_wire::read_message;

    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    const SQL: &str = "SELECT name FROM users WHERE id = $1";
    // Another client of the pool (md5_user's) prepares it on a server.
    let other = connect(&user_config(&proxy, "md5_user", "md5-secret"))
        .await
        .unwrap();
    other.prepare(SQL).await.unwrap();

    let mut s = md5_user_on_the_wire(&proxy).await;

    // One write: Parse + Sync, then Bind + Execute + Sync.
    let mut out = BytesMut::new();
    protocol::encode_parse(&mut out, b"s1", SQL.as_bytes(), &[0, 0]);
    protocol::encode_sync(&mut out);
    out.put_u8(b'B');
    let at = out.len();
    out.put_i32(0);
    out.put_slice(b"\0s1\0");
    out.put_i16(0); // parameter formats: text
    out.put_i16(1);
    out.put_i32(1);
    out.put_slice(b"2");
    out.put_i16(0); // result formats: text
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    protocol::encode_execute(&mut out);
    protocol::encode_sync(&mut out);
    s.write_all(&out).await.unwrap();

    let mut tags = Vec::new();
    let mut row = None;
    loop {
        let (t, body) = read_message(&mut s).await.expect("an answer");
        if t == b'D' {
            row = Some(body);
        }
        tags.push(t);
        if tags.iter().filter(|&&t| t == b'Z').count() == 2 {
            break;
        }
    }
    assert_eq!(tags, b"1Z2DCZ", "{}", String::from_utf8_lossy(&tags));
    let row = row.unwrap();
    assert!(
        row.ends_with(b"fresh-bob"),
        "{}",
        String::from_utf8_lossy(&row)
    );
    let pools = proxy.state.pools.all();
    let pool = pools.iter().find(|p| p.user == "md5_user").unwrap();
    assert_eq!(
        pool.stats
            .prepared_answered
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the Parse was answered by the proxy"
    );
}

/// md5_user logged in through `proxy` on a raw socket, past its first
/// ReadyForQuery.
pub(crate) async fn md5_user_on_the_wire(proxy: &ProxyHandle) -> tokio::net::TcpStream {
    use bytes::BytesMut;
    use heal7_proxy::protocol;
    use md5::{Digest, Md5};
    use tokio::io::AsyncWriteExt;

    use crate::raw_wire::{read_message, startup_packet};

    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&startup_packet(&[
        ("user", b"md5_user"),
        ("database", b"heal7"),
    ]))
    .await
    .unwrap();
    let (t, body) = read_message(&mut s).await.expect("an md5 challenge");
    assert_eq!((t, &body[..4]), (b'R', &5i32.to_be_bytes()[..]));
    let salt: [u8; 4] = body[4..8].try_into().unwrap();
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let stored = format!("md5{}", hex(&Md5::digest(b"md5-secretmd5_user")));
    let mut out = BytesMut::new();
    protocol::encode_password_message(
        &mut out,
        format!("{}\0", heal7_proxy::auth::md5::response(&stored, salt)).as_bytes(),
    );
    s.write_all(&out).await.unwrap();
    while read_message(&mut s).await.expect("login").0 != b'Z' {}
    s
}

/// As PostgreSQL does, a Parse under a name the client already uses fails
/// with 42P05 and leaves the first statement in place (transaction mode
/// used to prepare the new text under the old name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parse_under_a_name_in_use_fails_with_42p05() {
    use bytes::{BufMut, BytesMut};
    use heal7_proxy::protocol;
    use tokio::io::AsyncWriteExt;

    use crate::raw_wire::read_message;

    let (proxy, _dir) = pooled_proxy("mode: transaction, size: 1").await;
    let mut s = md5_user_on_the_wire(&proxy).await;
    let mut answers = Vec::new();
    for sql in ["SELECT 'first'", "SELECT 'second'"] {
        let mut out = BytesMut::new();
        protocol::encode_parse(&mut out, b"s1", sql.as_bytes(), &[0, 0]);
        protocol::encode_sync(&mut out);
        s.write_all(&out).await.unwrap();
        let mut tags = Vec::new();
        loop {
            let (t, body) = read_message(&mut s).await.expect("an answer");
            tags.push(t);
            if t == b'E' {
                answers.push(String::from_utf8_lossy(&body).into_owned());
            }
            if t == b'Z' {
                break;
            }
        }
        answers.push(String::from_utf8_lossy(&tags).into_owned());
    }
    assert_eq!(answers[0], "1Z");
    assert!(
        answers[1].contains("C42P05")
            && answers[1].contains("prepared statement \"s1\" already exists"),
        "{answers:?}"
    );
    assert_eq!(answers[2], "EZ");

    // The first statement still stands.
    let mut out = BytesMut::new();
    out.put_u8(b'B');
    let at = out.len();
    out.put_i32(0);
    out.put_slice(b"\0s1\0");
    out.put_i16(0);
    out.put_i16(0);
    out.put_i16(0);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    protocol::encode_execute(&mut out);
    protocol::encode_sync(&mut out);
    s.write_all(&out).await.unwrap();
    let mut row = None;
    loop {
        let (t, body) = read_message(&mut s).await.expect("an answer");
        assert_ne!(t, b'E', "{}", String::from_utf8_lossy(&body));
        if t == b'D' {
            row = Some(body);
        }
        if t == b'Z' {
            break;
        }
    }
    assert!(row.unwrap().ends_with(b"first"));
}
