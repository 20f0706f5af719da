//! scripts/perf/overhead.py's chart: README's docs/overhead.svg is what the
//! script draws from the figures it saved beside it (docs/overhead.json),
//! so the picture cannot drift from the numbers. Needs python3 (as the
//! script does); skips loudly without it.

use std::path::Path;
use std::process::Command;

#[test]
fn the_committed_chart_is_drawn_from_its_figures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("overhead.svg");
    let out = match Command::new("python3")
        .arg(root.join("scripts/perf/overhead.py"))
        .arg("--chart-only")
        .arg(root.join("docs/overhead.json"))
        .arg("--svg")
        .arg(&svg)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: python3 is not installed: the chart was not redrawn");
            return;
        }
        Err(e) => panic!("python3: {e}"),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let committed = std::fs::read_to_string(root.join("docs/overhead.svg")).unwrap();
    assert_eq!(
        drawn, committed,
        "docs/overhead.svg is not what overhead.py draws from docs/overhead.json"
    );
    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/overhead.json")).unwrap())
            .unwrap();
    let rows = figures["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        for (target, stats) in row["targets"].as_object().unwrap() {
            let (p50, p90, p99) = (
                stats["p50"].as_f64().unwrap(),
                stats["p90"].as_f64().unwrap(),
                stats["p99"].as_f64().unwrap(),
            );
            assert!(0.0 < p50 && p50 <= p90 && p90 <= p99, "{target}: {stats}");
            // Every bar carries its value as a tooltip.
            assert!(
                drawn.contains(&format!("{target} p99: {p99:.3} ms")),
                "{target}"
            );
        }
        assert_eq!(row["targets"]["direct"]["ratio"].as_f64(), Some(1.0));
    }
    assert!(drawn.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(drawn.trim_end().ends_with("</svg>"));
}
