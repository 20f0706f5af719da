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

/// deploy/kubernetes: every document of every manifest.
fn manifests() -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for file in ["configmap.yaml", "deployment.yaml", "service.yaml"] {
        let text = read(&format!("deploy/kubernetes/{file}"));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("deploy/kubernetes/{file}: {e}"));
            assert!(value["kind"].is_string(), "{file}: a document without kind");
            assert!(value["apiVersion"].is_string(), "{file}");
            docs.push(value);
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn port_of(address: &str) -> u64 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

/// The Kubernetes manifests agree with the proxy: the ConfigMap's config
/// loads, the Deployment runs 2 replicas on it mounted as a directory (so
/// its updates reach the file watch), probes /readyz and /healthz on the
/// admin port, and gives the drain its time before SIGKILL.
#[test]
fn the_kubernetes_manifests_fit_the_proxy() {
    let docs = manifests();
    let configmap = of_kind(&docs, "ConfigMap", "heal7-proxy-config");
    let deployment = of_kind(&docs, "Deployment", "heal7-proxy");
    let service = of_kind(&docs, "Service", "heal7-proxy");

    // The config, with its token file made real.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    let yaml = configmap["data"]["heal7.yaml"].as_str().unwrap();
    assert!(yaml.contains("token_file: /etc/heal7-proxy/secret/admin-token"));
    let config = Config::from_yaml(
        &yaml.replace(
            "/etc/heal7-proxy/secret/admin-token",
            token.to_str().unwrap(),
        ),
        "configmap.yaml",
    )
    .unwrap_or_else(|e| panic!("the ConfigMap's heal7.yaml: {e}"));

    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(2));
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(spec["selector"]["matchLabels"], *labels);
    assert_eq!(service["spec"]["selector"], *labels);
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];

    // --config names a file in the directory the ConfigMap is mounted on.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == "heal7-proxy-config")
        .expect("the ConfigMap is a volume");
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap volume is mounted");
    assert!(
        mount["subPath"].is_null(),
        "a subPath mount never sees ConfigMap updates"
    );
    assert_eq!(
        format!("{}/heal7.yaml", mount["mountPath"].as_str().unwrap()),
        config_path
    );

    // Ports: the container's named ports are the config's.
    let ports = container["ports"].as_sequence().unwrap();
    let named = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(named("postgres"), port_of(&config.start.listen));
    assert_eq!(
        named("admin"),
        port_of(config.start.admin_listen.as_deref().unwrap())
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "postgres");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe}");
        assert!(
            config.admin_http.open_paths.iter().any(|p| p == path),
            "{path} must need no token: the kubelet sends none"
        );
    }

    // The kubelet's SIGKILL comes after the preStop pause and the drain.
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .unwrap();
    assert_eq!(pre_stop[0], "sleep");
    let pause_ms = pre_stop[1].as_str().unwrap().parse::<u64>().unwrap() * 1000;
    let grace_ms = pod["terminationGracePeriodSeconds"].as_u64().unwrap() * 1000;
    let drain_ms = config.start.shutdown_timeout.as_millis() as u64;
    assert!(
        grace_ms >= pause_ms + drain_ms + 2000,
        "grace {grace_ms} ms < preStop {pause_ms} ms + shutdown_timeout_ms {drain_ms} + 2 s"
    );
    assert!(config.start.shutdown_timeout < std::time::Duration::from_secs(60));
}

#[test]
fn haproxy_accepts_the_example_config() {
    let cfg = read("deploy/haproxy/haproxy.cfg");
    assert!(cfg.contains("mode tcp") && cfg.contains("balance roundrobin"));
    assert!(cfg.contains("uri /readyz"));
    let Some((ok, out)) = run("haproxy", &["-c", "-f", "deploy/haproxy/haproxy.cfg"]) else {
        return;
    };
    assert!(ok, "haproxy -c:\n{out}");
}

/// The per-instance config in haproxy.cfg's header comment (peering over
/// the VMs' fixed addresses) is one the proxy accepts.
#[test]
fn the_instance_config_in_the_haproxy_example_loads() {
    let cfg = read("deploy/haproxy/haproxy.cfg");
    let block: String = cfg
        .lines()
        .skip_while(|l| !l.starts_with("# Each heal7-proxy's config:"))
        .skip(1)
        .take_while(|l| l.starts_with("#   "))
        .map(|l| format!("{}\n", &l["#   ".len()..]))
        .collect();
    assert!(
        block.contains("peer_id: 1") && block.contains("peers:"),
        "{block}"
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    let yaml = format!(
        "{}databases:\n  heal7:\n    host: 10.0.0.5\n    schemas: {{s: {{tables: [t]}}}}\n",
        block.replace("/etc/heal7-proxy/admin-token", token.to_str().unwrap())
    );
    Config::from_yaml(&yaml, "haproxy.cfg").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}
