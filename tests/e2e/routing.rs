//! Routing by the database name the client connects with: a mapped
//! database, an alias with its search_path, an unknown name forwarded
//! unchanged, and an unreachable upstream.

use crate::harness::{
    connect, simple_value, sqlstate, start_proxy, start_proxy_yaml, try_simple_rows,
    yaml_for_upstream,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_gets_its_search_path_and_the_same_map() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7_saju").await;
    assert_eq!(
        simple_value(&c, "SHOW search_path").await,
        "saju_service, public"
    );
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
async fn database_key_session_keeps_the_default_search_path() {
    let proxy = start_proxy("tokens").await;
    let c = proxy.connect("heal7").await;
    assert_eq!(
        simple_value(&c, "SHOW search_path").await,
        "\"$user\", public"
    );
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
            "\"$user\", public"
        } else {
            "saju_service, public"
        };
        assert_eq!(
            simple_value(&c, "SHOW search_path").await,
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
            "saju_service, public",
            "after {reset}"
        );
        assert_eq!(
            simple_value(&c, "SELECT label FROM legacy_fortunes WHERE id = 1").await,
            "fresh-fortune",
            "after {reset}"
        );
    }
}
