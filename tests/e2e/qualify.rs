//! Bare names are qualified end to end: reads see the fresh rows, writes land
//! in the mapped schema, and every case the rules leave alone keeps its
//! meaning against the real server.

use std::sync::atomic::Ordering;

use heal7_proxy::metrics::StatementOutcome;

use crate::harness::{
    pg, proxy_yaml, simple_rows, simple_value, start_proxy, start_proxy_yaml, unique,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_names_read_fresh_rows_via_simple_protocol() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    for (sql, want) in [
        ("SELECT name FROM users WHERE id = 1", "fresh-alice"),
        ("select name from USERS where id = 2", "fresh-bob"),
        (
            "SELECT filename FROM attachments WHERE id = 1",
            "fresh-photo.png",
        ),
        (
            "SELECT chart FROM saju_charts WHERE id = 1",
            "fresh-chart 갑자",
        ),
        ("SELECT payload FROM kasi_cache", "fresh-kasi 입춘"),
        (
            "SELECT name FROM dream_categories WHERE id = 1",
            "fresh-꿈 동물",
        ),
        (
            "SELECT body FROM dream_interpretations WHERE id = 1",
            "fresh-호랑이 꿈은 길몽",
        ),
        // The schema name needs quoting: the proxy must insert "Dream Archive".
        ("SELECT body FROM old_dreams WHERE id = 1", "fresh-archived"),
    ] {
        assert_eq!(simple_value(&c, sql).await, want, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_names_read_fresh_rows_via_extended_protocol() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let rows = c
        .query("SELECT name FROM users WHERE id = $1", &[&1i32])
        .await
        .expect("extended query");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "fresh-alice");

    // A named prepared statement reused with different parameters.
    let stmt = c
        .prepare("SELECT u.name, c.chart FROM users u JOIN saju_charts c ON c.user_id = u.id WHERE u.id = $1")
        .await
        .expect("prepare");
    for (id, name, chart) in [
        (1i32, "fresh-alice", "fresh-chart 갑자"),
        (2, "fresh-bob", "fresh-chart 을축"),
        (1, "fresh-alice", "fresh-chart 갑자"),
    ] {
        let row = c.query_one(&stmt, &[&id]).await.expect("execute prepared");
        assert_eq!(row.get::<_, String>(0), name);
        assert_eq!(row.get::<_, String>(1), chart);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_in_the_mapped_schema() {
    let pg = pg().await;
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let direct = pg.direct("heal7").await;

    c.simple_query(
        "INSERT INTO attachments (id, user_id, filename) VALUES (101, 1, 'insert-simple.txt')",
    )
    .await
    .expect("insert simple");
    c.execute(
        "INSERT INTO attachments (id, user_id, filename) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        &[&102i32, &1i32, &"insert-extended.txt"],
    )
    .await
    .expect("insert extended");
    let returned = c
        .query_one(
            "INSERT INTO attachments AS a (id, user_id, filename) VALUES (103, 2, '첨부.txt') RETURNING a.filename",
            &[],
        )
        .await
        .expect("insert returning");
    assert_eq!(returned.get::<_, String>(0), "첨부.txt");
    let n = c
        .execute(
            "UPDATE attachments SET filename = 'updated.txt' FROM users WHERE attachments.user_id = users.id AND users.name = 'fresh-alice' AND attachments.id = 102",
            &[],
        )
        .await
        .expect("update from");
    assert_eq!(n, 1, "UPDATE .. FROM users matched the fresh user");
    let n = c
        .execute(
            "DELETE FROM attachments USING users WHERE attachments.user_id = users.id AND users.name = 'fresh-bob' AND attachments.id = 103",
            &[],
        )
        .await
        .expect("delete using");
    assert_eq!(n, 1, "DELETE .. USING users matched the fresh user");

    let in_schema = simple_rows(
        &direct,
        "SELECT id, filename FROM shared_common.attachments WHERE id BETWEEN 100 AND 199 ORDER BY id",
    )
    .await;
    assert_eq!(
        in_schema,
        vec![
            vec![Some("101".into()), Some("insert-simple.txt".into())],
            vec![Some("102".into()), Some("updated.txt".into())],
        ]
    );
    let in_public = simple_rows(
        &direct,
        "SELECT id FROM public.attachments WHERE id BETWEEN 100 AND 199",
    )
    .await;
    assert!(
        in_public.is_empty(),
        "writes leaked into public: {in_public:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back_in_the_mapped_schema() {
    let pg = pg().await;
    let proxy = start_proxy("tokens").await;
    let mut c = proxy.connect("heal7").await;
    let direct = pg.direct("heal7").await;

    let tx = c.transaction().await.expect("begin");
    tx.execute(
        "INSERT INTO kasi_cache (key, payload) VALUES ($1, $2)",
        &[&"tx-rolled-back", &"x"],
    )
    .await
    .expect("insert in tx");
    let seen = tx
        .query_one(
            "SELECT count(*) FROM kasi_cache WHERE key = 'tx-rolled-back'",
            &[],
        )
        .await
        .expect("read own write");
    assert_eq!(seen.get::<_, i64>(0), 1);
    tx.rollback().await.expect("rollback");

    let tx = c.transaction().await.expect("begin");
    tx.execute(
        "INSERT INTO kasi_cache (key, payload) VALUES ($1, $2)",
        &[&"tx-committed", &"보관"],
    )
    .await
    .expect("insert in tx");
    tx.commit().await.expect("commit");

    let rows = simple_rows(
        &direct,
        "SELECT key, payload FROM saju_service.kasi_cache WHERE key LIKE 'tx-%' ORDER BY key",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![Some("tx-committed".into()), Some("보관".into())]]
    );
    let public = simple_rows(
        &direct,
        "SELECT key FROM public.kasi_cache WHERE key LIKE 'tx-%'",
    )
    .await;
    assert!(public.is_empty(), "{public:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_simple_query_rewrites_each_statement() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let rows = simple_rows(
        &c,
        "SELECT name FROM users WHERE id = 1; SELECT 'two'; \
         SELECT name FROM dream_categories WHERE id = 2;SELECT chart FROM saju_charts WHERE id = 2",
    )
    .await;
    let got: Vec<_> = rows.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(
        got,
        ["fresh-alice", "two", "fresh-water", "fresh-chart 을축"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untouched_cases_keep_their_meaning() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    for (sql, want) in [
        // Already qualified with the database: left as written.
        (
            "SELECT name FROM heal7.public.users WHERE id = 1",
            "STALE-alice",
        ),
        // A public. spelling of a moved table means the moved table.
        ("SELECT name FROM public.users WHERE id = 1", "fresh-alice"),
        // String literal: 'users'::regclass still resolves by search_path.
        ("SELECT 'users'::regclass::text", "users"),
        ("SELECT 'FROM users'", "FROM users"),
        // Dollar-quoted text is a literal too.
        ("SELECT $$SELECT * FROM users$$", "SELECT * FROM users"),
        // A quoted mixed-case name is a different table, not in the map.
        ("SELECT name FROM \"Users\" WHERE id = 1", "quoted-Users"),
        // Column qualifiers and aliases stay; the FROM item gets the schema.
        (
            "SELECT users.name FROM users WHERE users.id = 1",
            "fresh-alice",
        ),
        ("SELECT u.name FROM users AS u WHERE u.id = 2", "fresh-bob"),
        // Comments keep their bytes and do not confuse the insertion point.
        (
            "SELECT /* users */ name -- from users\n FROM users /* 사용자 */ WHERE id = 1",
            "fresh-alice",
        ),
        // Korean text before the name must not shift the insertion.
        (
            "SELECT '한글 텍스트' || name FROM users WHERE id = 2",
            "한글 텍스트fresh-bob",
        ),
        // A table function named like nothing in the map.
        (
            "SELECT count(*)::text FROM generate_series(1, 3) AS users",
            "3",
        ),
        // A CTE named like a mapped table shadows it in the statement after it.
        (
            "WITH users AS (SELECT 'cte-row'::text AS name) SELECT name FROM users",
            "cte-row",
        ),
        // ...but not inside its own (non-recursive) body: that is the table.
        (
            "WITH users AS (SELECT name FROM users WHERE id = 1) SELECT name FROM users",
            "fresh-alice",
        ),
        // A CTE body reading a mapped table.
        (
            "WITH u AS (SELECT name, id FROM users) SELECT name FROM u WHERE id = 2",
            "fresh-bob",
        ),
        // Subquery, set operation, LATERAL.
        (
            "SELECT name FROM users WHERE id = (SELECT max(user_id) FROM saju_charts)",
            "fresh-bob",
        ),
        (
            "SELECT string_agg(n, ',' ORDER BY n) FROM (SELECT name AS n FROM users WHERE id = 1 UNION ALL SELECT name FROM dream_categories WHERE id = 2) s",
            "fresh-alice,fresh-water",
        ),
        (
            "SELECT c.chart FROM users u, LATERAL (SELECT chart FROM saju_charts WHERE user_id = u.id) c WHERE u.id = 1",
            "fresh-chart 갑자",
        ),
    ] {
        assert_eq!(simple_value(&c, sql).await, want, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_counter_moves_only_for_rewritten_statements() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let m = &proxy.state.metrics;
    let before = m
        .statements(StatementOutcome::Rewritten)
        .load(Ordering::Relaxed);
    simple_value(&c, "SELECT 1").await;
    simple_value(&c, "SELECT name FROM heal7.public.users WHERE id = 1").await;
    assert_eq!(
        m.statements(StatementOutcome::Rewritten)
            .load(Ordering::Relaxed),
        before,
        "statements that need no schema are not counted as rewritten"
    );
    simple_value(&c, "SELECT name FROM users WHERE id = 1").await;
    c.query("SELECT name FROM users WHERE id = $1", &[&2i32])
        .await
        .expect("extended");
    assert!(
        m.statements(StatementOutcome::Rewritten)
            .load(Ordering::Relaxed)
            >= before + 2,
        "one simple and one extended rewrite counted, got {}",
        m.statements(StatementOutcome::Rewritten)
            .load(Ordering::Relaxed)
    );
    assert!(m.clients_total.load(Ordering::Relaxed) >= 1);
}

/// One statement of each kind that names a table, run through the proxy in
/// a transaction that is rolled back, each checked by its effect on the
/// mapped table (never the stale public copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_kind_acts_on_the_mapped_table() {
    let proxy = start_proxy("tokens").await;
    let mut c = proxy.connect("heal7").await;
    let tx = c.transaction().await.expect("begin");
    let value = |sql: &'static str| {
        let tx = &tx;
        async move {
            let rows = tx
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            rows.into_iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{sql}: no row"))
        }
    };
    let exec = |sql: &'static str| {
        let tx = &tx;
        async move {
            tx.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    };

    // EXPLAIN VERBOSE names the relation with its schema.
    let plan = tx
        .simple_query("EXPLAIN (VERBOSE, COSTS OFF) SELECT name FROM users")
        .await
        .expect("explain");
    let plan: String = plan
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("shared_common.users"), "{plan}");

    // PREPARE / EXECUTE (SQL-level).
    exec("PREPARE kinds_p(int) AS SELECT name FROM users WHERE id = $1").await;
    assert_eq!(value("EXECUTE kinds_p(2)").await, "fresh-bob");

    // SELECT ... INTO.
    exec("SELECT name INTO TEMP kinds_into FROM users WHERE id = 1").await;
    assert_eq!(value("SELECT name FROM kinds_into").await, "fresh-alice");

    // CREATE VIEW.
    exec("CREATE TEMP VIEW kinds_view AS SELECT name FROM users WHERE id = 1").await;
    assert_eq!(value("SELECT name FROM kinds_view").await, "fresh-alice");

    // MERGE.
    exec(
        "MERGE INTO attachments a USING users u ON a.user_id = u.id AND a.id = 1 \
         WHEN MATCHED THEN UPDATE SET filename = u.name",
    )
    .await;
    assert_eq!(
        value("SELECT filename FROM shared_common.attachments WHERE id = 1").await,
        "fresh-alice"
    );
    assert_eq!(
        value("SELECT filename FROM heal7.public.attachments WHERE id = 1").await,
        "STALE-photo.png"
    );

    // CREATE TABLE ... REFERENCES, ALTER TABLE ... ADD FOREIGN KEY. (The
    // catalogs read through the proxy show the moved tables in public, as
    // before the move: where an object really is comes from
    // pg_identify_object, which reads the server's own catalog.)
    exec("CREATE TABLE public.kinds_ref (id int REFERENCES users (id), chart_id int)").await;
    exec("ALTER TABLE public.kinds_ref ADD FOREIGN KEY (chart_id) REFERENCES saju_charts (id)")
        .await;
    assert_eq!(
        value(
            "SELECT string_agg(o.identity, ',' ORDER BY o.identity) \
             FROM pg_constraint k CROSS JOIN LATERAL \
             pg_identify_object('pg_class'::regclass, k.confrelid, 0) o \
             WHERE k.conrelid = 'public.kinds_ref'::regclass AND k.contype = 'f'"
        )
        .await,
        "saju_service.saju_charts,shared_common.users"
    );

    // CREATE INDEX ON.
    exec("CREATE INDEX kinds_idx ON saju_charts (chart)").await;
    assert_eq!(
        value("SELECT (pg_identify_object('pg_class'::regclass, 'kinds_idx'::regclass, 0)).schema")
            .await,
        "saju_service"
    );

    // COMMENT ON TABLE / COLUMN.
    exec("COMMENT ON TABLE users IS 'kinds-comment'").await;
    exec("COMMENT ON COLUMN users.name IS 'kinds-column'").await;
    assert_eq!(
        value("SELECT obj_description('shared_common.users'::regclass, 'pg_class')").await,
        "kinds-comment"
    );
    assert_eq!(
        value("SELECT col_description('shared_common.users'::regclass, 2)").await,
        "kinds-column"
    );

    // GRANT / REVOKE ON TABLE.
    exec("REVOKE ALL ON TABLE dream_categories FROM PUBLIC").await;
    assert_eq!(
        value("SELECT has_table_privilege('trust_user', 'dream_service.dream_categories', 'SELECT')::text")
            .await,
        "false"
    );
    exec("GRANT SELECT ON TABLE dream_categories TO trust_user").await;
    assert_eq!(
        value("SELECT has_table_privilege('trust_user', 'dream_service.dream_categories', 'SELECT')::text")
            .await,
        "true"
    );

    // LOCK.
    exec("LOCK TABLE kasi_cache IN SHARE MODE").await;
    assert_eq!(
        value(
            "SELECT string_agg(o.identity, ',' ORDER BY o.identity) \
             FROM pg_locks l CROSS JOIN LATERAL \
             pg_identify_object('pg_class'::regclass, l.relation, 0) o \
             WHERE l.pid = pg_backend_pid() AND l.mode = 'ShareLock' AND l.locktype = 'relation' \
             AND o.schema NOT LIKE 'pg\\_%'"
        )
        .await,
        // saju_charts: from CREATE INDEX above.
        "saju_service.kasi_cache,saju_service.saju_charts"
    );

    // TRUNCATE.
    exec("TRUNCATE dream_interpretations").await;
    assert_eq!(
        value("SELECT count(*) FROM dream_service.dream_interpretations").await,
        "0"
    );
    assert_eq!(
        value("SELECT count(*) FROM heal7.public.dream_interpretations").await,
        "1"
    );

    // DROP TABLE IF EXISTS.
    exec("DROP TABLE IF EXISTS old_dreams").await;
    assert_eq!(
        value("SELECT (to_regclass('\"Dream Archive\".old_dreams') IS NULL)::text").await,
        "true"
    );
    assert_eq!(
        // `'public.old_dreams'` would mean the moved table (public_qualified).
        value("SELECT (to_regclass('heal7.public.old_dreams') IS NULL)::text").await,
        "false"
    );

    tx.rollback().await.expect("rollback");
    // The rollback undid it all.
    assert_eq!(
        simple_value(&c, "SELECT body FROM old_dreams WHERE id = 1").await,
        "fresh-archived"
    );
}

/// Lexical corners where a tokenizer that disagrees with Postgres would put
/// `schema.` in the wrong place or miss a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lexical_corner_cases_keep_their_meaning() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    for (sql, want) in [
        // A quoted name that matches the map exactly is the mapped table.
        ("SELECT name FROM \"users\" WHERE id = 1", "fresh-alice"),
        (
            "SELECT name FROM \"public\".\"users\" WHERE id = 1",
            "fresh-alice",
        ),
        // standard_conforming_strings: a backslash does not escape the quote.
        (
            "SELECT 'a\\' || name FROM users WHERE id = 1",
            "a\\fresh-alice",
        ),
        // E'' strings: here it does.
        (
            "SELECT E'it\\'s FROM users ' || name FROM users WHERE id = 1",
            "it's FROM users fresh-alice",
        ),
        // Doubled quotes inside literals and identifiers.
        (
            "SELECT 'it''s FROM users ' || name AS \"a \"\"quoted\"\" alias\" FROM users WHERE id = 2",
            "it's FROM users fresh-bob",
        ),
        // Tagged dollar quotes.
        (
            "SELECT $fn$ FROM users $fn$ || name FROM users WHERE id = 1",
            " FROM users fresh-alice",
        ),
        // Nested block comments (Postgres nests them).
        (
            "/* outer /* inner */ FROM users */ SELECT name FROM users WHERE id = 1",
            "fresh-alice",
        ),
        // Whole-row reference and a column named like a table.
        ("SELECT (users).name FROM users WHERE id = 2", "fresh-bob"),
        ("SELECT users FROM (SELECT 'col'::text AS users) s", "col"),
        // Self-join: both items qualified.
        (
            "SELECT b.name FROM users a JOIN users b ON b.id = a.id + 1 WHERE a.id = 1",
            "fresh-bob",
        ),
        // EXISTS / IN subqueries inside expressions.
        (
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE name = 'fresh-alice') THEN 'yes' ELSE 'no' END",
            "yes",
        ),
        (
            "SELECT count(*)::text FROM attachments WHERE user_id IN (SELECT id FROM users WHERE name LIKE 'fresh-%') AND id = 1",
            "1",
        ),
        // A CTE shadows only within its own statement.
        (
            "WITH users AS (SELECT 'cte'::text AS name) SELECT name FROM users; SELECT name FROM users WHERE id = 1",
            "fresh-alice",
        ),
        // RECURSIVE: the CTE is visible in its own body.
        (
            "WITH RECURSIVE users(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM users WHERE n < 5) SELECT max(n)::text FROM users",
            "5",
        ),
        // Keywords in odd case and layout.
        (
            "select\n\tname\nfrom\n\tUsers\nwhere\n\tid=1",
            "fresh-alice",
        ),
        (
            "SELECT name FROM users/*no space*/WHERE id = 1",
            "fresh-alice",
        ),
    ] {
        let rows = simple_rows(&c, sql).await;
        let last = rows.last().and_then(|r| r[0].clone());
        assert_eq!(last.as_deref(), Some(want), "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_survives_a_failed_copy() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    let sink = c
        .copy_in("COPY attachments (id, user_id, filename) FROM STDIN")
        .await
        .expect("copy in");
    futures_util::pin_mut!(sink);
    futures_util::SinkExt::send(
        &mut sink,
        bytes::Bytes::from_static(b"not-a-number\t1\tx\n"),
    )
    .await
    .ok();
    let e = sink.finish().await.expect_err("bad data");
    assert_eq!(crate::harness::sqlstate(&e), "22P02");
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
}

/// Statements sqlparser cannot parse whose table follows no FROM-like
/// keyword still reach the mapped table (PostgreSQL's grammar, and its
/// scanner for the OWNED BY name), checked by what the server did: the
/// sequence's owner and the table clustered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_by_and_cluster_reach_the_mapped_table() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    // Postgres wants the sequence in the table's schema: an unqualified
    // `users` (public's stale copy) would fail with 55000.
    c.batch_execute(
        "BEGIN; CREATE SEQUENCE shared_common.e2e_owned_seq; \
         ALTER SEQUENCE shared_common.e2e_owned_seq OWNED BY users.id",
    )
    .await
    .unwrap();
    let owner = simple_value(
        &c,
        "SELECT o.identity FROM pg_depend d CROSS JOIN LATERAL \
         pg_identify_object('pg_class'::regclass, d.refobjid, 0) o \
         WHERE d.objid = 'shared_common.e2e_owned_seq'::regclass AND d.deptype = 'a'",
    )
    .await;
    assert_eq!(owner, "shared_common.users");
    c.batch_execute("CLUSTER users USING users_pkey")
        .await
        .unwrap();
    let clustered = simple_value(
        &c,
        "SELECT indisclustered::text FROM pg_index WHERE indexrelid = 'shared_common.users_pkey'::regclass",
    )
    .await;
    assert_eq!(clustered, "true");
    c.batch_execute("ROLLBACK").await.unwrap();
}

/// `ON CONFLICT (expression)` is beyond sqlparser: the exact fallback
/// qualifies the INSERT target, so the upsert hits the moved table's row
/// (and its unique index), not the stale copy; `RETURNING t.col` and
/// `excluded.col` keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_on_an_expression_lands_in_the_mapped_table() {
    let pg = pg().await;
    let direct = pg.direct("heal7").await;
    let t = unique("fb_upsert");
    direct
        .batch_execute(&format!(
            "CREATE TABLE shared_common.{t} (id serial PRIMARY KEY, email text, name text);
             CREATE UNIQUE INDEX ON shared_common.{t} (lower(email));
             CREATE TABLE public.{t} (LIKE shared_common.{t} INCLUDING ALL);
             INSERT INTO shared_common.{t} (email, name) VALUES ('A@heal7.kr', 'fresh');
             INSERT INTO public.{t} (email, name) VALUES ('A@heal7.kr', 'stale');"
        ))
        .await
        .expect("fixture");
    let yaml = proxy_yaml(pg, "reject").replace(
        "shared_common: {tables: [users, attachments]}",
        &format!("shared_common: {{tables: [users, attachments, {t}]}}"),
    );
    let proxy = start_proxy_yaml(&yaml).await;
    let c = proxy.connect("heal7").await;
    let returned = simple_value(
        &c,
        &format!(
            "INSERT INTO {t} (email, name) VALUES ('a@heal7.kr', '갱신') \
             ON CONFLICT (lower(email)) DO UPDATE SET name = excluded.name RETURNING {t}.name"
        ),
    )
    .await;
    assert_eq!(returned, "갱신");
    let fresh = simple_rows(
        &direct,
        &format!("SELECT email, name FROM shared_common.{t}"),
    )
    .await;
    assert_eq!(
        fresh,
        vec![vec![Some("A@heal7.kr".into()), Some("갱신".into())]],
        "the upsert updated the moved table's row"
    );
    let stale = simple_rows(&direct, &format!("SELECT name FROM public.{t}")).await;
    assert_eq!(
        stale,
        vec![vec![Some("stale".into())]],
        "the stale copy is untouched"
    );
    direct
        .batch_execute(&format!("DROP TABLE shared_common.{t}, public.{t}"))
        .await
        .expect("cleanup");
}

/// `FOR UPDATE OF a, b` names FROM items: the FROM list is qualified, the
/// OF list stays as written (PostgreSQL refuses a qualified name there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_update_of_keeps_its_names_and_locks_the_mapped_tables() {
    let proxy = start_proxy("tokens").await;
    let mut c = proxy.connect("heal7").await;
    let tx = c.transaction().await.expect("begin");
    let rows = tx
        .simple_query(
            "SELECT users.name, attachments.filename FROM users, attachments \
             WHERE users.id = attachments.user_id AND attachments.id = 1 \
             FOR UPDATE OF users, attachments",
        )
        .await
        .expect("FOR UPDATE OF through the proxy");
    let row = rows
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).unwrap().to_owned(), r.get(1).unwrap().to_owned()))
            }
            _ => None,
        })
        .expect("one row");
    assert_eq!(row.0, "fresh-alice");
    assert!(!row.1.starts_with("STALE"), "{row:?}");
    let locked = tx
        .simple_query(
            "SELECT string_agg(o.identity, ',' ORDER BY o.identity) \
             FROM pg_locks l CROSS JOIN LATERAL \
             pg_identify_object('pg_class'::regclass, l.relation, 0) o \
             WHERE l.pid = pg_backend_pid() AND l.mode = 'RowShareLock' AND o.type = 'table'",
        )
        .await
        .expect("locks");
    let locked = locked
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("lock row");
    assert_eq!(locked, "shared_common.attachments,shared_common.users");
    tx.rollback().await.expect("rollback");
}

/// Cursor names are no tables: a cursor called `users` is declared over
/// the mapped table and fetched, moved and closed by its own name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_named_like_a_table_is_left_alone() {
    let proxy = start_proxy("reject").await;
    let c = proxy.connect("heal7").await;
    c.batch_execute(
        "BEGIN; DECLARE users CURSOR FOR SELECT name FROM users WHERE id = 1 FOR UPDATE",
    )
    .await
    .expect("declare");
    assert_eq!(simple_value(&c, "FETCH 1 FROM users").await, "fresh-alice");
    c.batch_execute("MOVE 0 IN users").await.expect("move");
    assert_eq!(
        simple_value(
            &c,
            "UPDATE users SET note = 'fb-cursor' WHERE CURRENT OF users RETURNING name"
        )
        .await,
        "fresh-alice"
    );
    c.batch_execute("CLOSE users; ROLLBACK")
        .await
        .expect("close");
}

/// `COMMENT ON CONSTRAINT c ON t`: the tree gives `t` no location; the
/// scanner places it, and the comment lands on the moved table's
/// constraint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_on_a_constraint_reaches_the_mapped_table() {
    let proxy = start_proxy("reject").await;
    let c = proxy.connect("heal7").await;
    c.batch_execute("BEGIN; COMMENT ON CONSTRAINT users_pkey ON users IS 'fb-pkey'")
        .await
        .expect("comment on constraint");
    let comment = simple_value(
        &c,
        "SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint \
         WHERE conname = 'users_pkey' AND conrelid = 'shared_common.users'::regclass",
    )
    .await;
    assert_eq!(comment, "fb-pkey");
    c.batch_execute("ROLLBACK").await.unwrap();
}
