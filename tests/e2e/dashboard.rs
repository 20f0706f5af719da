//! The cut-over dashboard (`GET /` on the admin port) in a real headless
//! Chromium: after real traffic through the proxy, the numbers the page
//! shows are those of `/metrics`, the modes and generation those of
//! `/mapping`, the unmapped names come with masked examples, and a refused
//! reload is on the page. Behind a token, the page asks for it and works
//! with it. Skips (loudly) only where `chromium` is not installed; CI
//! installs it. Saves a screenshot (`target/tmp/dashboard.png`;
//! `HEAL7_SAVE_SCREENSHOT=1` also writes README's `docs/dashboard.png`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use heal7_proxy::reload::ConfigStore;
use heal7_proxy::state::ProxyState;
use heal7_proxy::{http, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::harness::{Pg, SCHEMAS_YAML, connect, pg, try_simple_rows};

const TOKEN: &str = "dashboard-test-token-0123456789";

fn chromium() -> Option<String> {
    let name = std::env::var("HEAL7_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    match std::process::Command::new(&name).arg("--version").output() {
        Ok(out) if out.status.success() => Some(name),
        _ => {
            eprintln!(
                "SKIPPED: {name} is not installed: the dashboard was not tested in a browser (CI installs Debian's chromium)"
            );
            None
        }
    }
}

/// Two databases (heal7 rewriting, heal7_plain in dry run), the admin
/// endpoint on, a token file when `token` says so (with `/` opened).
fn yaml(pg: &Pg, dir: &Path, token: bool) -> String {
    let admin_http = if token {
        let file = dir.join("admin-token");
        std::fs::write(&file, TOKEN).unwrap();
        format!(
            "  admin_http:\n    token_file: {}\n    open_paths: [/, /metrics]\n",
            file.display()
        )
    } else {
        String::new()
    };
    format!(
        "proxy:\n  listen: 127.0.0.1:0\n{admin_http}databases:\n  heal7:\n    host: {host}\n    port: {port}\n{SCHEMAS_YAML}  heal7_plain:\n    host: {host}\n    port: {port}\n    mode: dry_run\n    schemas:\n      shared_common: {{tables: [users]}}\n",
        host = pg.host,
        port = pg.port,
    )
}

struct Running {
    dir: tempfile::TempDir,
    store: Arc<ConfigStore>,
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A proxy over a config file (so a reload can be refused) and its admin
/// endpoint, both in-process.
async fn start(token: bool) -> Running {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heal7.yaml");
    std::fs::write(&path, yaml(pg, dir.path(), token)).unwrap();
    let store = Arc::new(ConfigStore::from_file(&path).unwrap());
    let state = ProxyState::with_store(store.clone());
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let (st, sd) = (state.clone(), shutdown.clone());
    tokio::spawn(async move { server::run(listener, st, sd).await });
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    tokio::spawn(http::run(admin_listener, state, shutdown.clone()));
    Running {
        dir,
        store,
        proxy,
        admin,
        shutdown,
    }
}

fn client_config(port: u16, database: &str) -> tokio_postgres::Config {
    let pg = crate::harness::pg_started();
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(&pg.superuser)
        .dbname(database)
        .application_name("billing-svc")
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = &pg.password {
        c.password(p);
    }
    c
}

/// GET `path` on the admin port; the body.
async fn get(admin: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(admin).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The value of a sample line of `/metrics`.
fn metric(metrics: &str, sample: &str) -> u64 {
    let line = metrics
        .lines()
        .find(|l| l.rsplit_once(' ').is_some_and(|(name, _)| name == sample))
        .unwrap_or_else(|| panic!("{sample} not in /metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Loads `url` in headless Chromium and returns the DOM after its script
/// has run (virtual time: the page polls every 2 s; 6 s of it pass).
async fn dump_dom(chromium: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(chromium)
        .args(browser_args(profile.path()))
        .args(["--virtual-time-budget=6000", "--dump-dom", url])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("chromium finished within 120 s")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn browser_args(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        // Root in CI: Chromium's sandbox needs user namespaces it may lack.
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

/// The rendered page without its script (whose source holds the messages
/// the page may show).
fn rendered(dom: &str) -> &str {
    &dom[..dom.find("<script>").expect("the page's script")]
}

/// Every `data-k="key"` element's text: what the page shows.
fn shown(dom: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let mut rest = dom;
    while let Some(at) = rest.find("data-k=\"") {
        rest = &rest[at + 8..];
        let key = &rest[..rest.find('"').unwrap()];
        let open = rest.find('>').unwrap();
        let text = &rest[open + 1..];
        let text = &text[..text.find('<').unwrap()];
        values.insert(key.to_owned(), text.replace("&amp;", "&"));
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_metrics_and_mapping_say() {
    let Some(chromium) = chromium() else {
        return;
    };
    let run = start(false).await;
    let client = connect(&client_config(run.proxy.port(), "heal7"))
        .await
        .unwrap();
    for _ in 0..5 {
        let rows = try_simple_rows(&client, "SELECT name FROM users WHERE id = 1")
            .await
            .unwrap();
        assert_eq!(rows[0][0].as_deref(), Some("fresh-alice"));
    }
    for _ in 0..2 {
        let _ = try_simple_rows(&client, "SELECT 1/0 FROM kasi_cache").await;
    }
    let _ = try_simple_rows(
        &client,
        "SELECT count(*) FROM legacy_audit_log JOIN users ON note = 'Hunter2-secret'",
    )
    .await;
    let plain = connect(&client_config(run.proxy.port(), "heal7_plain"))
        .await
        .unwrap();
    let _ = try_simple_rows(&plain, "SELECT name FROM users").await;
    // A client may see an error before the proxy has relayed (and counted)
    // the ReadyForQuery after it: one more round trip on each connection
    // makes sure every answer above is counted.
    for c in [&client, &plain] {
        try_simple_rows(c, "SELECT 1").await.unwrap();
    }
    // A refused reload: the file no longer validates.
    std::fs::write(
        run.dir.path().join("heal7.yaml"),
        "databases: {heal7: {bogus_key: 1}}\n",
    )
    .unwrap();
    assert!(run.store.reload().is_err());

    let metrics = get(run.admin, "/metrics").await;
    let mapping: serde_json::Value =
        serde_json::from_str(&get(run.admin, "/mapping").await).unwrap();
    let dom = dump_dom(&chromium, &format!("http://{}/", run.admin)).await;
    let dom = rendered(&dom);
    assert!(
        dom.contains("<body data-ready="),
        "the page never rendered a poll:\n{dom}"
    );
    assert!(
        dom.contains("id=\"status\" class=\"muted\">updated "),
        "{dom}"
    );
    let page = shown(dom);
    let at = |key: &str| {
        page.get(key)
            .unwrap_or_else(|| panic!("{key} not on the page: {page:?}"))
            .clone()
    };

    // Per schema: the server's answers, as /metrics counts them.
    let mut schemas = 0;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("heal7_proxy_schema_statement_results_total{schema=\"")
        else {
            continue;
        };
        let schema = &rest[..rest.find('"').unwrap()];
        let result = if rest.contains("result=\"ok\"") {
            "ok"
        } else {
            "error"
        };
        let value = line.rsplit(' ').next().unwrap();
        assert_eq!(at(&format!("schema_{result}:{schema}")), value, "{schema}");
        schemas += 1;
    }
    assert!(schemas >= 4, "{metrics}");
    let ok = metric(
        &metrics,
        "heal7_proxy_schema_statement_results_total{schema=\"shared_common\",result=\"ok\"}",
    );
    assert!(ok >= 5, "{metrics}");
    assert_eq!(
        at("schema_error:saju_service"),
        metric(
            &metrics,
            "heal7_proxy_schema_statement_results_total{schema=\"saju_service\",result=\"error\"}"
        )
        .to_string()
    );
    assert_eq!(at("schema_success:saju_service"), "0%");
    // Rewrite outcomes and totals.
    let mut total = 0;
    for outcome in [
        "no_parse_needed",
        "unchanged",
        "rewritten",
        "fallback_tokens",
        "rejected",
        "passthrough_unparsed",
    ] {
        let value = metric(
            &metrics,
            &format!("heal7_proxy_statements_total{{outcome=\"{outcome}\"}}"),
        );
        assert_eq!(at(&format!("outcome:{outcome}")), value.to_string());
        total += value;
    }
    assert!(total >= 8);
    assert_eq!(at("statements_all"), total.to_string());
    assert_eq!(
        at("db_rewritten:heal7"),
        metric(
            &metrics,
            "heal7_proxy_database_statements_total{database=\"heal7\",outcome=\"rewritten\"}"
        )
        .to_string()
    );
    assert_eq!(
        at("db_dry_run:heal7_plain"),
        metric(
            &metrics,
            "heal7_proxy_database_statements_total{database=\"heal7_plain\",outcome=\"dry_run\"}"
        )
        .to_string()
    );
    assert_eq!(
        at("clients_active"),
        metric(&metrics, "heal7_proxy_client_connections_active").to_string()
    );
    // The mapping in force: generation and per-database modes.
    assert_eq!(at("generation"), mapping["generation"].to_string());
    // What every instance must agree on (README, Running several instances).
    assert_eq!(
        at("mapping_hash"),
        mapping["mapping_hash"].as_str().unwrap()
    );
    assert_eq!(at("mode:heal7"), "rewrite");
    assert_eq!(at("mode:heal7_plain"), "dry_run");
    // The refused reload.
    assert_eq!(at("reloads:refused"), "1");
    assert!(dom.contains("bogus_key"), "the refused reload is not shown");
    assert!(dom.contains("stays in force"), "{dom}");
    // Unmapped names, examples masked.
    assert_eq!(at("unmapped_count:heal7:legacy_audit_log"), "1");
    assert!(dom.contains("billing-svc"));
    assert!(
        dom.contains("JOIN users ON note = $1"),
        "masked example missing"
    );
    assert!(!dom.contains("Hunter2-secret"));
    // Latency percentiles from the histogram's buckets.
    for q in ["p50", "p90", "p99"] {
        let value = at(&format!("latency:{q}"));
        assert!(
            value.ends_with("µs") || value.ends_with("ms") || value.ends_with(" s"),
            "{q}: {value}"
        );
    }

    screenshot(&chromium, &run, &client).await;
}

/// A screenshot of the page while statements flow.
async fn screenshot(chromium: &str, run: &Running, client: &tokio_postgres::Client) {
    let traffic = async {
        for i in 0..1_000_000u32 {
            let sql = if i % 97 == 0 {
                "SELECT 1/0 FROM kasi_cache"
            } else if i % 2 == 0 {
                "SELECT name FROM users WHERE id = 1"
            } else {
                "SELECT count(*) FROM dream_categories"
            };
            let _ = try_simple_rows(client, sql).await;
        }
    };
    let profile = tempfile::tempdir().unwrap();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&target);
    let shot = tokio::process::Command::new(chromium)
        .args(browser_args(profile.path()))
        .args([
            "--window-size=1280,1400",
            "--virtual-time-budget=30000",
            &format!("--screenshot={}", target.display()),
            &format!("http://{}/", run.admin),
        ])
        .kill_on_drop(true)
        .output();
    // Statements flow until the screenshot is taken.
    let out = tokio::select! {
        out = tokio::time::timeout(Duration::from_secs(120), shot) => out,
        () = traffic => panic!("the screenshot took longer than the traffic"),
    };
    let out = out.expect("chromium finished within 120 s").unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&target).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    eprintln!("dashboard screenshot: {}", target.display());
    if std::env::var_os("HEAL7_SAVE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(&docs, &png).unwrap();
        eprintln!("saved {}", docs.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_token_the_page_asks_for_it_and_works_with_it() {
    let Some(chromium) = chromium() else {
        return;
    };
    let run = start(true).await;
    let client = connect(&client_config(run.proxy.port(), "heal7"))
        .await
        .unwrap();
    let _ = try_simple_rows(&client, "SELECT name FROM users").await;

    let without = dump_dom(&chromium, &format!("http://{}/", run.admin)).await;
    let without = rendered(&without);
    assert!(
        without.contains("this endpoint asks for the admin token"),
        "{without}"
    );
    assert!(without.contains("id=\"token-form\" class=\"shown\""));
    assert_eq!(shown(without)["generation"], "-");

    let with = dump_dom(&chromium, &format!("http://{}/#token={TOKEN}", run.admin)).await;
    let with = rendered(&with);
    assert!(
        with.contains("id=\"status\" class=\"muted\">updated "),
        "{with}"
    );
    let page = shown(with);
    assert_eq!(page["generation"], "1");
    assert_eq!(page["mode:heal7"], "rewrite");
    let metrics = get(run.admin, "/metrics").await;
    assert_eq!(
        page["outcome:rewritten"],
        metric(
            &metrics,
            "heal7_proxy_statements_total{outcome=\"rewritten\"}"
        )
        .to_string()
    );
}
