//! The crate's layering, read from its own source: every file's `crate::`
//! paths must point at its own layer or below, the connection handlers
//! (L3) never import each other, the pure layer (L0) uses no tokio, and the
//! top-level modules import each other without a cycle. `src/lib.rs` says
//! what each layer owns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> layer. A module missing here fails the test, so a
/// new module must choose its layer.
const LAYERS: &[(&str, u8)] = &[
    ("protocol", 0),
    ("auth", 0),
    ("rewrite", 0),
    ("config", 1),
    ("cancel", 2),
    ("clients", 2),
    ("farewell", 2),
    ("listener", 2),
    ("metrics", 2),
    ("pool", 2),
    ("qualify", 2),
    ("reload", 2),
    ("shutdown", 2),
    ("state", 2),
    ("stream", 2),
    ("unmapped", 2),
    ("upstream", 2),
    ("workers", 2),
    ("startup", 3),
    ("session", 3),
    ("console", 3),
    ("http", 4),
    ("server", 4),
    ("cli", 5),
    ("commands", 5),
    ("main", 5),
];

/// The layer of connection handlers, which must not import each other.
const HANDLERS: u8 = 3;

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a source file belongs to (`None` for lib.rs).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix("src").ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_owned())
}

/// The top-level modules a file's code names through `crate::` (and, in
/// main.rs, through the library's name). Comment lines are skipped: a doc
/// link is not an import.
fn imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for prefix in ["crate::", "heal7_proxy::"] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let after = &rest[at + prefix.len()..];
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
                rest = after;
            }
        }
        // `use crate::{a, b::c}` names several modules at once.
        if let Some(at) = line.find("crate::{") {
            let list = &line[at + "crate::{".len()..];
            for part in list.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// Whether a file uses tokio (the pure layer must not).
fn uses_tokio(source: &str) -> bool {
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .any(|l| l.contains("tokio::") || l.contains("use tokio"))
}

/// Every rule broken by `files` (path, source), one line each.
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut broken = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, source) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let Some(own) = layer(&module) else {
            broken.push(format!(
                "{}: module `{module}` has no layer in tests/layers.rs",
                path.display()
            ));
            continue;
        };
        if own == 0 && uses_tokio(source) {
            broken.push(format!(
                "{}: the pure layer (L0) uses tokio",
                path.display()
            ));
        }
        for target in imports(source) {
            if target == module {
                continue;
            }
            let Some(theirs) = layer(&target) else {
                continue;
            };
            if theirs > own {
                broken.push(format!(
                    "{}: L{own} `{module}` imports L{theirs} `{target}` (a layer above)",
                    path.display()
                ));
            } else if own == HANDLERS && theirs == HANDLERS {
                broken.push(format!(
                    "{}: handler `{module}` imports sibling handler `{target}`",
                    path.display()
                ));
            }
            graph.entry(module.clone()).or_default().insert(target);
        }
    }
    broken.extend(cycles(&graph));
    broken
}

/// One line per import cycle among modules (depth-first search).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            found.push(format!("import cycle: {}", cycle.join(" -> ")));
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, found);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn source_files(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            let rel = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap()
                .to_path_buf();
            out.push((rel, source));
        }
    }
}

#[test]
fn every_import_points_down_and_handlers_stay_apart() {
    let mut files = Vec::new();
    source_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "found only {} source files", files.len());
    let broken = violations(&files);
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn wrong_way_imports_are_caught() {
    let file = |path: &str, source: &str| (PathBuf::from(path), source.to_owned());
    let broken = violations(&[
        file("src/rewrite/walk.rs", "use crate::session::SessionError;\n"),
        file("src/session/relay.rs", "use crate::{console, metrics};\n"),
        file("src/protocol/frame.rs", "use tokio::net::TcpStream;\n"),
        file("src/metrics.rs", "use crate::unmapped::X;\n"),
        file("src/unmapped.rs", "use crate::metrics::Y;\n"),
        file("src/newthing.rs", "\n"),
        file("src/state.rs", "/// see [`crate::server::run`]\n"),
    ]);
    let has = |needle: &str| broken.iter().any(|b| b.contains(needle));
    assert!(has("L0 `rewrite` imports L3 `session`"), "{broken:#?}");
    assert!(has("handler `session` imports sibling handler `console`"));
    assert!(has("src/protocol/frame.rs: the pure layer (L0) uses tokio"));
    assert!(has("import cycle: metrics -> unmapped -> metrics"));
    assert!(has("module `newthing` has no layer"));
    assert!(!has("src/state.rs"), "a doc link is not an import");
    assert_eq!(broken.len(), 5, "{broken:#?}");
}
