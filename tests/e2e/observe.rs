//! What operators read: per-database and per-schema metrics, latency
//! histograms, the unmapped-name report and SHOW CLIENTS state move with
//! real traffic.

use std::sync::atomic::Ordering;

use heal7_proxy::metrics::{Metrics, StatementOutcome};

use crate::harness::{simple_value, start_proxy, try_simple_rows};

fn outcome(label: &str) -> usize {
    StatementOutcome::ALL
        .iter()
        .position(|o| o.as_str() == label)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_the_unmapped_report_follow_traffic() {
    let proxy = start_proxy("tokens").await;
    let mut config = proxy.config("heal7");
    config.application_name("svc-8003");
    let client = crate::harness::connect(&config).await.unwrap();
    let m = &proxy.state.metrics;

    assert_eq!(
        simple_value(&client, "SELECT name FROM users WHERE id = 1").await,
        "fresh-alice"
    );
    // A statement that names a table the map does not list (beside a mapped
    // one: statements naming no mapped table are not parsed at all).
    let _ = try_simple_rows(
        &client,
        "SELECT count(*) FROM legacy_audit_log l JOIN users u ON true",
    )
    .await;
    // A server error on a rewritten statement (division by zero).
    let _ = try_simple_rows(&client, "SELECT 1/0 FROM kasi_cache").await;
    // Extended protocol: Parse is rewritten, its result counted.
    let row = client
        .query_one("SELECT title FROM kasi_cache LIMIT $1", &[&1i64])
        .await;
    assert!(row.is_err(), "kasi_cache has no column title");

    let db = m.database("heal7");
    assert_eq!(Metrics::get(&db.clients_active), 1);
    assert!(Metrics::get(&db.clients_total) >= 1);
    assert!(Metrics::get(&db.statements[outcome("rewritten")]) >= 3);
    assert_eq!(
        Metrics::get(&db.statements[StatementOutcome::DryRun as usize]),
        0
    );

    let shared = m.schema("shared_common");
    assert!(Metrics::get(&shared.tables_qualified) >= 1);
    assert!(Metrics::get(&shared.results_ok) >= 1);
    let saju = m.schema("saju_service");
    assert!(
        Metrics::get(&saju.results_error) >= 1,
        "the division by zero on kasi_cache counts as an error for saju_service"
    );

    let (buckets, _) = m.statement_seconds.snapshot();
    assert!(*buckets.last().unwrap() >= 3, "{buckets:?}");
    let (buckets, _) = m.rewrite_seconds.snapshot();
    assert!(*buckets.last().unwrap() >= 3, "{buckets:?}");

    let rows = proxy.state.unmapped.rows();
    let legacy = rows
        .iter()
        .find(|(k, _)| k.table == "legacy_audit_log")
        .expect("the unmapped name is reported");
    assert_eq!(legacy.0.database, "heal7");
    assert_eq!(legacy.0.application_name, "svc-8003");
    assert_eq!(legacy.1.count, 1);
    assert!(legacy.1.example.contains("legacy_audit_log"));
    assert!(!rows.iter().any(|(k, _)| k.table == "users"));

    // SHOW CLIENTS data: this session is idle with its statements counted.
    let entries = proxy.state.clients.list();
    let me = entries
        .iter()
        .find(|e| e.info.identity.application_name == "svc-8003")
        .expect("registered");
    // The client may still be finishing its last exchange (tokio-postgres
    // closes statements in the background): wait, bounded.
    assert!(
        crate::harness::wait_until(std::time::Duration::from_secs(5), || async {
            me.state().as_str() == "idle"
        })
        .await,
        "state {}",
        me.state().as_str()
    );
    assert!(me.statements() >= 4);

    drop(client);
    assert!(
        crate::harness::wait_until(std::time::Duration::from_secs(5), || async {
            db.clients_active.load(Ordering::Relaxed) == 0
        })
        .await
    );
}

/// In dry_run (the staged cut-over) the report sees every statement, also
/// those that name no mapped table at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_unmapped_names_of_every_statement() {
    let pg = crate::harness::pg().await;
    let yaml = crate::harness::proxy_yaml(pg, "tokens").replace(
        "    database: heal7\n",
        "    database: heal7\n    mode: dry_run\n",
    );
    assert!(yaml.contains("mode: dry_run"));
    let proxy = crate::harness::start_proxy_yaml(&yaml).await;
    let client = proxy.connect("heal7").await;
    // legacy_fortunes is mapped (to public) for the main name, not for the
    // alias: "Users" is in no map.
    let _ = try_simple_rows(&client, "SELECT count(*) FROM \"Users\"").await;
    let rows = proxy.state.unmapped.rows();
    assert!(rows.iter().any(|(k, _)| k.table == "Users"), "{rows:?}");
}

/// Issue 10, finding 5: the unmapped report (SHOW UNMAPPED, /unmapped)
/// returned example statements verbatim, literals included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmapped_report_never_shows_a_literal() {
    let proxy = crate::harness::start_proxy("tokens").await;
    let client = proxy.connect("heal7").await;
    let _ = try_simple_rows(
        &client,
        "SELECT count(*) FROM legacy_audit_log JOIN users ON note = 'Hunter2-secret' OR id = 9001011234567",
    )
    .await;
    // Does not parse: masked by PostgreSQL's scanner instead.
    let _ = try_simple_rows(
        &client,
        "SELECT FROM legacy_audit_log, users WHERE WHERE note = '4111-1111-1111-1111'",
    )
    .await;
    let rows = proxy.state.unmapped.rows();
    let example = &rows
        .iter()
        .find(|(k, _)| k.table == "legacy_audit_log")
        .expect("the unmapped name is reported")
        .1
        .example;
    assert!(example.contains("legacy_audit_log"), "{example}");
    for (_, entry) in &rows {
        for secret in ["Hunter2-secret", "9001011234567", "4111-1111-1111-1111"] {
            assert!(!entry.example.contains(secret), "{}", entry.example);
        }
    }
}
