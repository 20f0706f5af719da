//! The deployment files (docker-compose.yml, deploy/): every proxy config
//! they carry loads, and the Prometheus config and alert rules pass
//! `promtool check` and their unit tests (`promtool test rules`). A tool
//! that is missing skips its check loudly; CI (`.ci/run`) installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use heal7_proxy::config::Config;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `tool args` in the repository; `None` (after saying so on stderr)
/// when the tool is not installed.
fn run(tool: &str, args: &[&str]) -> Option<(bool, String)> {
    match Command::new(tool)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED: {tool} is not installed, `{tool} {}` did not run (CI installs it)",
                args.join(" ")
            );
            None
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

#[test]
fn the_example_configs_load() {
    for path in ["config/heal7.yaml", "config/heal7-compose.yaml"] {
        Config::from_yaml(&read(path), path).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let compose = Config::from_yaml(
        &read("config/heal7-compose.yaml"),
        "config/heal7-compose.yaml",
    )
    .unwrap();
    assert_eq!(
        compose.start.admin_listen.as_deref(),
        Some("0.0.0.0:9930"),
        "Prometheus in docker-compose.yml scrapes heal7-proxy:9930"
    );
}

#[test]
fn compose_runs_prometheus_on_the_rules_of_deploy_prometheus() {
    let compose: serde_yaml::Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    let services = &compose["services"];
    for name in ["postgres", "heal7-proxy", "prometheus"] {
        assert!(services[name].is_mapping(), "service {name} missing");
    }
    let volumes = services["prometheus"]["volumes"].as_sequence().unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v.as_str() == Some("./deploy/prometheus:/etc/prometheus:ro")),
        "{volumes:?}"
    );
    let scrape: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/prometheus.yml")).unwrap();
    let targets = &scrape["scrape_configs"][0]["static_configs"][0]["targets"][0];
    assert_eq!(targets.as_str(), Some("heal7-proxy:9930"));
    let ports = services["heal7-proxy"]["ports"].as_sequence().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p.as_str() == Some("127.0.0.1:9930:9930"))
    );
}

#[test]
fn promtool_checks_the_config_and_the_rules_and_runs_their_tests() {
    for args in [
        &["check", "config", "deploy/prometheus/prometheus.yml"][..],
        &["check", "rules", "deploy/prometheus/alerts.yml"],
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
    ] {
        let Some((ok, out)) = run("promtool", args) else {
            return;
        };
        assert!(ok, "promtool {}:\n{out}", args.join(" "));
    }
}

/// Every metric an alert rule reads is one the proxy exports (a renamed
/// metric would leave an alert that never fires).
#[test]
fn the_alert_rules_read_metrics_the_proxy_exports() {
    let rules = read("deploy/prometheus/alerts.yml");
    let exported = read("src/http/prometheus.rs");
    let mut checked = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if word.starts_with("heal7_proxy_") {
            assert!(
                exported.contains(&format!("\"{word}\""))
                    || exported.contains(&format!("{word}{{")),
                "{word} is not exported by src/http/prometheus.rs"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
}
