//! Routing by the database name the client connects with: a mapped
//! database and an alias, each with its search_path, an unknown name
//! forwarded unchanged, and an unreachable upstream.

use crate::harness::{
    connect, pg, proxy_yaml, psql, simple_value, sqlstate, start_proxy, start_proxy_yaml,
    try_simple_rows, unique, yaml_for_upstream,
};

/// The search_path of sessions on `heal7`: the mapped schemas in file
/// order, then public.
const MAIN_PATH: &str = "shared_common, saju_service, dream_service, \"Dream Archive\", public";
/// The alias': its default schema, the other mapped schemas, then public.
const ALIAS_PATH: &str = "saju_service, shared_common, dream_service, \"Dream Archive\", public";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_gets_its_search_path_and_the_same_map() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7_saju").await;
    assert_eq!(simple_value(&c, "SHOW search_path").await, ALIAS_PATH);
    assert_eq!(simple_value(&c, "SELECT current_database()").await, "heal7");
    // Not in the map: found through the search_path, saju_service first.
    assert_eq!(
        simple_value(&c, "SELECT label FROM legacy_fortunes WHERE id = 1").await,
        "fresh-fortune"
    );
    // In the map: still qualified, even outside the alias' default schema.
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    assert_eq!(
        simple_value(&c, "SELECT chart FROM saju_charts WHERE id = 2").await,
        "fresh-chart 을축"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_key_session_gets_the_mapped_schemas_before_public() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    // The session's real path (SHOW answers the client's old one).
    assert_eq!(
        simple_value(&c, "SELECT current_setting('search_path')").await,
        MAIN_PATH
    );
    // Mapped names are qualified whatever the search_path says.
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
}

/// `legacy_fortunes` is in no service's map: on `heal7` it reads public's
/// copy as it did before the move (the `public` entry), although
/// saju_service, which also has one, is earlier on the search_path; on the
/// alias it reads the alias' default schema, as in the old database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_legacy_name_reads_public_on_the_main_name_and_the_default_schema_on_the_alias()
{
    let proxy = start_proxy("tokens").await;
    let main = proxy.connect("heal7").await;
    let alias = proxy.connect("heal7_saju").await;
    let sql = "SELECT label FROM legacy_fortunes WHERE id = 1";
    assert_eq!(simple_value(&main, sql).await, "STALE-fortune");
    assert_eq!(simple_value(&alias, sql).await, "fresh-fortune");
    // The extended protocol takes the same path.
    let row = main
        .query_one("SELECT label FROM legacy_fortunes WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "STALE-fortune");
    let row = alias
        .query_one("SELECT label FROM legacy_fortunes WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "fresh-fortune");
}

/// Bare names in string literals and catalog lookups are never rewritten:
/// they resolve through the search_path, which must find the moved objects,
/// not the stale copies left in public. A `'public.x'` string is read as a
/// legacy spelling of the moved object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_and_catalog_lookups_resolve_to_the_moved_schema() {
    let pg = pg().await;
    let direct = pg.direct("heal7").await;
    let seq = unique("e2e_lookup_seq");
    // Not in the map, and a stale same-named one in public.
    direct
        .batch_execute(&format!(
            "CREATE SEQUENCE shared_common.{seq} START 1; \
             CREATE SEQUENCE public.{seq} START 1000; \
             GRANT USAGE, SELECT ON SEQUENCE shared_common.{seq}, public.{seq} TO PUBLIC"
        ))
        .await
        .unwrap();
    let proxy = start_proxy("tokens").await;
    for database in ["heal7", "heal7_saju"] {
        let c = proxy.connect(database).await;
        // shared_common's counts from 1, public's from 1000.
        let next: i64 = simple_value(&c, &format!("SELECT nextval('{seq}')"))
            .await
            .parse()
            .unwrap();
        assert!(next < 1000, "{database}: nextval reached public's copy");
        assert_eq!(
            simple_value(
                &c,
                &format!("SELECT '{seq}'::regclass = 'shared_common.{seq}'::regclass")
            )
            .await,
            "t",
            "{database}"
        );
        for check in [
            "SELECT 'users'::regclass = 'shared_common.users'::regclass",
            "SELECT to_regclass('users') = 'shared_common.users'::regclass",
            // What SQLAlchemy's reflection and psql's \dt rely on.
            "SELECT pg_table_is_visible('shared_common.users'::regclass)",
            // The stale copy, spelled so that the proxy leaves it there...
            "SELECT NOT pg_table_is_visible('heal7.public.users'::regclass)",
            // ...as `'public.users'` means the moved table (public_qualified).
            "SELECT 'public.users'::regclass = 'shared_common.users'::regclass",
        ] {
            assert_eq!(simple_value(&c, check).await, "t", "{database}: {check}");
        }
        // The extended protocol too.
        let row = c
            .query_one(
                "SELECT $1::text::regclass = 'shared_common.users'::regclass",
                &[&"users"],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "{database}");
    }
    direct
        .batch_execute(&format!(
            "DROP SEQUENCE shared_common.{seq}; DROP SEQUENCE public.{seq}"
        ))
        .await
        .unwrap();
}

/// psql's `\d` and `\dt` read the catalogs as before the move: the moved
/// table, shown in public, and not its stale copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describe_shows_the_moved_table() {
    let proxy = start_proxy("tokens").await;
    for database in ["heal7", "heal7_saju"] {
        // A column only the moved table gets, in a transaction that is
        // rolled back (psql runs every -c in one session).
        let (ok, out, err) = psql(
            proxy.port(),
            database,
            &[
                "-P",
                "tuples_only=off",
                "-c",
                "BEGIN",
                "-c",
                "ALTER TABLE users ADD COLUMN psql_marker int",
                "-c",
                "ALTER TABLE saju_charts ADD COLUMN psql_marker int",
                "-c",
                "\\d users",
                "-c",
                "\\d saju_charts",
                "-c",
                "ROLLBACK",
            ],
            &[],
        )
        .await;
        let out = String::from_utf8_lossy(&out);
        assert!(ok, "{database}: {err}");
        assert!(out.contains("Table \"public.users\""), "{database}: {out}");
        assert!(
            out.contains("Table \"public.saju_charts\""),
            "{database}: {out}"
        );
        // Both tables described are the moved ones, each once.
        assert_eq!(out.matches("psql_marker").count(), 2, "{database}: {out}");
        assert!(!out.contains("shared_common"), "{database}: {out}");

        // \dt lists each moved table once, in public: the stale copies are
        // left out.
        let (ok, out, err) = psql(proxy.port(), database, &["-c", "\\dt"], &[]).await;
        let out = String::from_utf8_lossy(&out);
        assert!(ok, "{database}: {err}");
        for moved in [
            "public|users|",
            "public|kasi_cache|",
            "public|dream_categories|",
        ] {
            assert_eq!(
                out.matches(moved).count(),
                1,
                "{database}: {moved} in {out}"
            );
        }
        for schema in [
            "shared_common|",
            "saju_service|kasi_cache",
            "dream_service|",
        ] {
            assert!(!out.contains(schema), "{database}: {schema} in {out}");
        }
    }
}

/// dry_run and off forward statements unchanged: they must not change how
/// the server resolves names either, so no search_path is set, on the main
/// name or an alias.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_off_databases_get_no_search_path() {
    let pg = pg().await;
    for mode in ["dry_run", "off"] {
        let yaml = proxy_yaml(pg, "tokens").replace(
            "    database: heal7\n",
            &format!("    database: heal7\n    mode: {mode}\n"),
        );
        assert!(yaml.contains(&format!("mode: {mode}")));
        let proxy = start_proxy_yaml(&yaml).await;
        for database in ["heal7", "heal7_saju"] {
            let c = proxy.connect(database).await;
            assert_eq!(
                simple_value(&c, "SHOW search_path").await,
                "\"$user\", public",
                "{mode} {database}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_is_forwarded_unchanged_without_rewriting() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("postgres").await;
    assert_eq!(
        simple_value(&c, "SELECT current_database()").await,
        "postgres"
    );
    // heal7_plain has only public.users: a rewrite to shared_common.users
    // would fail with 42P01.
    let c = proxy.connect("heal7_plain").await;
    assert_eq!(
        simple_value(&c, "SELECT name FROM users WHERE id = 1").await,
        "plain-alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_fatal_08006_naming_the_address() {
    // A port nobody listens on: bind one, then close it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = start_proxy_yaml(&yaml_for_upstream("127.0.0.1", port, "tokens")).await;
    let e = connect(&proxy.config("heal7"))
        .await
        .map(|_| ())
        .expect_err("connecting to a dead upstream fails");
    assert_eq!(sqlstate(&e), "08006", "{e:?}");
    let db = e
        .as_db_error()
        .expect("an ErrorResponse, not a dropped socket");
    assert_eq!(db.severity(), "FATAL");
    assert!(
        db.message().contains(&format!("127.0.0.1:{port}")),
        "message names the upstream: {}",
        db.message()
    );
    // The proxy itself stays up and answers the next client the same way.
    let e = connect(&proxy.config("heal7"))
        .await
        .map(|_| ())
        .expect_err("fails");
    assert_eq!(sqlstate(&e), "08006");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_one_proxy_are_independent() {
    let proxy = start_proxy("reject").await;
    let a = proxy.connect("heal7").await;
    let b = proxy.connect("heal7_saju").await;
    let e = try_simple_rows(&a, "SELECT * FROM no_such_table_at_all")
        .await
        .expect_err("missing table");
    assert_eq!(sqlstate(&e), "42P01");
    assert_eq!(
        simple_value(&b, "SELECT name FROM users WHERE id = 2").await,
        "fresh-bob"
    );
    assert_eq!(
        simple_value(&a, "SELECT name FROM users WHERE id = 2").await,
        "fresh-bob"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_are_kept_and_combine_with_the_alias_search_path() {
    let proxy = start_proxy("tokens").await;
    for database in ["heal7", "heal7_saju"] {
        let mut cfg = proxy.config(database);
        cfg.application_name("e2e-startup-params")
            .options("-c statement_timeout=4321 -c work_mem=4321kB");
        let c = connect(&cfg).await.expect("connect");
        assert_eq!(
            simple_value(&c, "SHOW application_name").await,
            "e2e-startup-params",
            "{database}"
        );
        assert_eq!(
            simple_value(&c, "SHOW statement_timeout").await,
            "4321ms",
            "{database}"
        );
        assert_eq!(
            simple_value(&c, "SHOW work_mem").await,
            "4321kB",
            "{database}"
        );
        let want_path = if database == "heal7" {
            MAIN_PATH
        } else {
            ALIAS_PATH
        };
        assert_eq!(
            simple_value(&c, "SELECT current_setting('search_path')").await,
            want_path,
            "{database}"
        );
    }
}

/// Poolers and ORMs run DISCARD ALL / RESET ALL between uses; the alias'
/// search_path must be the session's default, not a SET that they undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_search_path_survives_reset_all_and_discard_all() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7_saju").await;
    for reset in ["RESET ALL", "DISCARD ALL", "RESET search_path"] {
        c.batch_execute(reset).await.expect(reset);
        assert_eq!(
            simple_value(&c, "SHOW search_path").await,
            ALIAS_PATH,
            "after {reset}"
        );
        assert_eq!(
            simple_value(&c, "SELECT label FROM legacy_fortunes WHERE id = 1").await,
            "fresh-fortune",
            "after {reset}"
        );
    }
}
