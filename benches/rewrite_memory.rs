//! The rewriter's peak memory on large statements (issue 10, finding 2): a
//! statement naming a mapped table with an IN-list of 1, 5 and 50 MB. Not
//! timed by criterion: each size runs in a fresh process of its own (this
//! binary re-run with `--one MB`), whose peak resident set (VmHWM) before
//! and after the rewrite is read from /proc/self/status.
//!
//! cargo bench --bench rewrite_memory              (1, 5 and 50 MB)
//! cargo bench --bench rewrite_memory -- 7 20      (other sizes, in MB)

use std::process::Command;
use std::time::Instant;

use heal7_proxy::rewrite::{OnParseError, SchemaMap, rewrite_sql};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `SELECT ... FROM users WHERE id IN (0, 1, 2, ...)` of about `mb` MB.
fn in_list(mb: usize) -> String {
    let target = mb * 1_000_000;
    let mut sql = String::with_capacity(target + 64);
    sql.push_str("SELECT id, name FROM users WHERE id IN (");
    let mut i = 0u64;
    while sql.len() < target {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&i.to_string());
        i += 1;
    }
    sql.push(')');
    sql
}

fn one(mb: usize) {
    let map = SchemaMap::new([("shared_common", "users")]);
    let sql = in_list(mb);
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let r = rewrite_sql(&sql, &map, OnParseError::Tokens);
    let took = started.elapsed();
    let peak = status_kib("VmHWM:");
    let added_mb = peak.saturating_sub(before) as f64 / 1024.0;
    println!(
        "{:>6.1} MB  peak +{:>8.1} MB  ({:>5.2}x the text)  {:>8.1} ms  {:?}",
        sql.len() as f64 / 1e6,
        added_mb,
        added_mb * 1024.0 * 1024.0 / sql.len() as f64,
        took.as_secs_f64() * 1e3,
        r.outcome
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, mb] = args.as_slice()
        && flag == "--one"
    {
        one(mb.parse().expect("--one MB"));
        return;
    }
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![1, 5, 50];
    }
    println!("IN-list naming a mapped table: text size, peak RSS added by the rewrite");
    let me = std::env::current_exe().expect("own path");
    for mb in sizes {
        let status = Command::new(&me)
            .args(["--one", &mb.to_string()])
            .status()
            .expect("run one size");
        if !status.success() {
            println!("{mb:>6} MB  failed: {status}");
        }
    }
}
