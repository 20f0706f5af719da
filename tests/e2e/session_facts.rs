//! What the session knows changes how a name or a literal reads: its
//! temporary tables shadow mapped names (pg_temp is searched first), its
//! `standard_conforming_strings` decides where a literal ends, and legacy
//! `public.` spellings of moved tables mean the moved table.

use heal7_proxy::rewrite::Decision;

use crate::harness::{pg, simple_rows, simple_value, start_proxy};

/// The schema a relation was created in, read directly.
async fn schema_of_relation(relation: &str) -> String {
    direct_value(&format!(
        "SELECT relnamespace::regnamespace::text FROM pg_class WHERE relname = '{relation}'"
    ))
    .await
}

/// Rows of `sql` run directly on the moved database (no proxy).
async fn direct_value(sql: &str) -> String {
    let direct = pg().await.direct("heal7").await;
    simple_value(&direct, sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_table_shadows_the_mapped_table_and_never_reaches_it() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    simple_rows(
        &c,
        "CREATE TEMP TABLE users (id int, name text); INSERT INTO users VALUES (90, 'temp-row')",
    )
    .await;
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 90").await,
        "temp-row"
    );
    assert_eq!(
        simple_value(&c, "SELECT count(*) FROM users").await,
        "1",
        "the session reads its temporary table"
    );
    // Dropping it drops the temporary table, never the moved one.
    simple_rows(&c, "DROP TABLE users").await;
    for table in ["shared_common.users", "public.users"] {
        assert_eq!(
            direct_value(&format!(
                "SELECT count(*) FROM {table} WHERE id IN (1, 2, 3)"
            ))
            .await,
            "3",
            "{table} is intact"
        );
    }
    // Without the temporary table the name is the moved table again.
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );

    // A temporary table created in a rolled back transaction: gone, and the
    // name reads the moved table.
    simple_rows(
        &c,
        "BEGIN; CREATE TEMP TABLE kasi_cache AS SELECT * FROM kasi_cache; ROLLBACK",
    )
    .await;
    assert_eq!(
        simple_value(
            &c,
            "SELECT payload FROM kasi_cache WHERE key = '2024-01-01'"
        )
        .await,
        "fresh-kasi 입춘"
    );

    // CREATE TEMP TABLE ... AS reads the moved table, DELETE hits the copy.
    simple_rows(
        &c,
        "CREATE TEMP TABLE saju_charts AS SELECT * FROM saju_charts; DELETE FROM saju_charts",
    )
    .await;
    assert_eq!(
        simple_value(&c, "SELECT count(*) FROM saju_charts").await,
        "0"
    );
    assert_eq!(
        direct_value("SELECT count(*) FROM saju_service.saju_charts").await,
        "2",
        "the moved table keeps its rows"
    );
    // Counted by what resolved them.
    let count = |d: Decision| {
        proxy.state.metrics.names_by_decision[d.index()].load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(count(Decision::TempCreated) >= 3);
    assert!(count(Decision::TempShadowed) >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literals_follow_the_sessions_standard_conforming_strings() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    simple_rows(&c, "SET standard_conforming_strings = off").await;
    let rows = simple_rows(
        &c,
        r"BEGIN;
          INSERT INTO users (id, name, note) VALUES (91, 'x', 'You\'ve been removed from users list');
          SELECT note FROM shared_common.users WHERE id = 91;
          ROLLBACK",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![Some("You've been removed from users list".to_owned())]],
        "the row lands in the moved table with its literal intact"
    );
    // Back on: a backslash is an ordinary character again.
    simple_rows(&c, "SET standard_conforming_strings = on").await;
    assert_eq!(
        simple_value(&c, r"SELECT 'a\' || name FROM users WHERE id = 1").await,
        r"a\fresh-alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_spellings_of_moved_tables_mean_the_moved_table() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    for (sql, want) in [
        ("SELECT name FROM public.users WHERE id = 1", "fresh-alice"),
        (
            "SELECT u.name FROM \"public\".users u JOIN public.attachments a ON a.user_id = u.id WHERE a.id = 1",
            "fresh-alice",
        ),
        // A glued keyword keeps its separator.
        ("SELECT name FROM\"users\"WHERE id = 2", "fresh-bob"),
    ] {
        assert_eq!(simple_value(&c, sql).await, want, "{sql}");
    }
    // An unmapped public name is left alone.
    assert_eq!(
        simple_value(&c, "SELECT name FROM public.\"Users\"").await,
        "quoted-Users"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_created_without_a_schema_land_where_they_did_before_the_move() {
    let proxy = start_proxy("tokens").await;
    let table = crate::harness::unique("created");
    let function = crate::harness::unique("made_fn");
    let main = proxy.connect("heal7").await;
    simple_rows(
        &main,
        &format!(
            "CREATE TABLE {table} (id int REFERENCES users (id)); \
             CREATE FUNCTION {function}() RETURNS int LANGUAGE sql AS 'SELECT 7'; \
             INSERT INTO {table} VALUES (1)"
        ),
    )
    .await;
    // The search_path starts with the mapped schemas, but a bare CREATE on
    // the main name still lands in public, as it did before the move.
    assert_eq!(schema_of_relation(&table).await, "public");
    assert_eq!(
        direct_value(&format!(
            "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.proname = '{function}'"
        ))
        .await,
        "public"
    );
    assert_eq!(
        simple_value(
            &main,
            &format!("SELECT {function}() + count(*) FROM {table}")
        )
        .await,
        "8"
    );
    // On an alias, the default schema, first on its search_path.
    let alias = proxy.connect("heal7_saju").await;
    let in_saju = crate::harness::unique("saju_made");
    simple_rows(&alias, &format!("CREATE TABLE {in_saju} (id int)")).await;
    assert_eq!(schema_of_relation(&in_saju).await, "saju_service");
    // A session that sets its own search_path creates where it says, as it
    // did before the move.
    let own = crate::harness::unique("own_path");
    simple_rows(
        &main,
        &format!(
            "SET search_path = saju_service, public; CREATE TABLE {own} (id int); \
             RESET search_path"
        ),
    )
    .await;
    assert_eq!(schema_of_relation(&own).await, "saju_service");
    simple_rows(
        &main,
        &format!(
            "DROP TABLE {table}; DROP FUNCTION {function}(); DROP TABLE saju_service.{in_saju}; \
             DROP TABLE saju_service.{own}"
        ),
    )
    .await;
}

/// A WARNING about a rewritten statement points into the client's text,
/// as an error does (found by PostgreSQL's regression suite: CREATE TYPE's
/// warnings after the create schema was inserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_positions_point_into_the_clients_text() {
    let proxy = start_proxy("tokens").await;
    let (c, mut messages, _task) = crate::harness::connect_with_messages(&proxy.config("heal7"))
        .await
        .expect("connect");
    let name = crate::harness::unique("bogus_type");
    // A shell type, then its definition: rolled back together, as int4in
    // cannot be its input function (an error after the warning).
    let sql = format!(
        "CREATE TYPE {name}; \
         CREATE TYPE {name} (\"Internallength\" = 4, INPUT = int4in, OUTPUT = int4out)"
    );
    c.simple_query(&sql).await.expect_err("invalid type");
    let want = sql.find("\"Internallength\"").unwrap() + 1;
    let mut positions = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), messages.recv()).await
    {
        if let tokio_postgres::AsyncMessage::Notice(n) = m
            && n.message().contains("Internallength")
        {
            positions.push(n.position().cloned());
            break;
        }
    }
    assert_eq!(
        positions,
        vec![Some(tokio_postgres::error::ErrorPosition::Original(
            want as u32
        ))]
    );
}

/// A view over a temporary table is temporary: PostgreSQL refuses it in a
/// named schema, so the create schema must not be added (found by the
/// regression suite's groupingsets test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_a_temporary_table_is_created_as_postgresql_would() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    simple_rows(
        &c,
        "CREATE TEMP TABLE gtmp (a int); INSERT INTO gtmp VALUES (7)",
    )
    .await;
    simple_rows(&c, "CREATE VIEW gview AS SELECT a FROM gtmp").await;
    assert_eq!(
        simple_value(
            &c,
            "SELECT relpersistence::text || (SELECT a FROM gview)::text \
             FROM pg_class WHERE relname = 'gview'"
        )
        .await,
        "t7"
    );
}
