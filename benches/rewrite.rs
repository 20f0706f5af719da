//! Rewriter cost, the parts that sit on the hot path: the pre-filter that
//! decides a statement needs nothing; a miss (tokenize, parse, qualify) and
//! its splice, each timed alone, for a short OLTP statement and a ~2 KB
//! reporting statement; and cache hits, by text and by shape. Off the hot
//! path: a miss that takes the exact fallback (sqlparser fails, PostgreSQL's
//! grammar via libpg_query qualifies), for statements of the same sizes.
//!
//! cargo bench --bench rewrite
//! cargo bench --bench rewrite -- 'exact fallback'   (the fallback alone)

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use heal7_proxy::rewrite::{OnParseError, SchemaMap, parts, rewrite_sql, rewrite_sql_uncached};

fn heal7_map() -> SchemaMap {
    SchemaMap::new([
        ("shared_common", "users"),
        ("shared_common", "user_profiles"),
        ("shared_common", "attachments"),
        ("shared_common", "notifications"),
        ("shared_common", "audit_logs"),
        ("saju_service", "saju_charts"),
        ("saju_service", "saju_readings"),
        ("saju_service", "kasi_cache"),
        ("saju_service", "solar_terms"),
        ("dream_service", "dream_categories"),
        ("dream_service", "dream_interpretations"),
        ("dream_service", "dream_keywords"),
        ("tarot_service", "tarot_cards"),
        ("tarot_service", "tarot_readings"),
        ("fortune_service", "daily_fortunes"),
        ("fortune_service", "zodiac_signs"),
        ("crawler_service", "crawl_jobs"),
        ("crawler_service", "crawl_results"),
        ("admin_service", "admin_users"),
        ("admin_service", "site_settings"),
    ])
}

const OLTP: &str = "SELECT id, email, name FROM users WHERE id = 12345";
const NO_MAPPED_NAME: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213 AND bid = 3";

fn report_statement() -> String {
    let mut sql = String::from(
        "/* monthly reading report */\nWITH recent AS (\n  SELECT r.chart_id, count(*) AS n, max(r.id) AS last_id\n  FROM saju_readings r\n  WHERE r.reading <> '' \n  GROUP BY r.chart_id\n)\n",
    );
    sql.push_str("SELECT u.id, u.name, p.birth_date, c.year_pillar, c.month_pillar, c.day_pillar, recent.n,\n");
    sql.push_str("  (SELECT count(*) FROM notifications nt WHERE nt.user_id = u.id AND NOT nt.read) AS unread,\n");
    sql.push_str(
        "  (SELECT string_agg(a.path, ',') FROM attachments a WHERE a.user_id = u.id) AS files\n",
    );
    sql.push_str("FROM users u\n  JOIN user_profiles p ON p.user_id = u.id\n  JOIN saju_charts c ON c.user_id = u.id\n  LEFT JOIN recent ON recent.chart_id = c.id\n");
    sql.push_str("WHERE u.created_at > now() - interval '30 days'\n  AND EXISTS (SELECT 1 FROM kasi_cache k WHERE k.solar_date = p.birth_date)\n");
    while sql.len() < 1900 {
        sql.push_str("  AND u.email NOT LIKE '%@test.heal7.example' -- exclude test accounts\n");
    }
    sql.push_str("ORDER BY recent.n DESC NULLS LAST, u.id\nLIMIT 100");
    sql
}

fn bench_rewrite(c: &mut Criterion) {
    let map = heal7_map();
    let report = report_statement();
    let policy = OnParseError::Tokens;
    c.bench_function("prefilter: no mapped name", |b| {
        b.iter(|| rewrite_sql(black_box(NO_MAPPED_NAME), &map, policy))
    });
    for (name, sql) in [("short OLTP", OLTP), ("2 KB report", report.as_str())] {
        // A miss, step by step: tokenize; tokenize + parse; the whole
        // rewrite (qualify = whole - parse); the splice of its edits.
        c.bench_function(&format!("miss {name}: tokenize"), |b| {
            b.iter(|| parts::tokenize(black_box(sql)))
        });
        c.bench_function(&format!("miss {name}: tokenize + parse"), |b| {
            b.iter(|| parts::parse(black_box(sql)))
        });
        c.bench_function(&format!("miss {name}: tokenize + parse + qualify"), |b| {
            b.iter(|| rewrite_sql_uncached(black_box(sql), &map, policy))
        });
        let done = rewrite_sql_uncached(sql, &map, policy);
        c.bench_function(&format!("miss {name}: splice"), |b| {
            b.iter(|| black_box(&done).apply(black_box(sql)))
        });
        // The cached path: rewrite_sql keyed by text or shape, plus splice.
        let _ = rewrite_sql(sql, &map, policy);
        c.bench_function(&format!("hit {name}: lookup + splice"), |b| {
            b.iter(|| rewrite_sql(black_box(sql), &map, policy).apply(sql))
        });
    }
    // pgbench -S under the simple protocol: a new literal every time.
    let texts: Vec<String> = (0..4096)
        .map(|i| {
            format!(
                "SELECT id, email, name FROM users WHERE id = {}",
                i * 7919 % 100_000
            )
        })
        .collect();
    let _ = rewrite_sql(&texts[0], &map, policy);
    let mut i = 0;
    c.bench_function(
        "shape hit short OLTP, new literal each time: lookup + splice",
        |b| {
            b.iter(|| {
                i = (i + 1) % texts.len();
                rewrite_sql(black_box(&texts[i]), &map, policy).apply(&texts[i])
            })
        },
    );
    c.bench_function("shape scan short OLTP", |b| {
        b.iter(|| parts::shape(black_box(OLTP)))
    });
}

/// A miss sqlparser cannot parse (`BETWEEN SYMMETRIC`): tokenize, the failed
/// sqlparser parse, then libpg_query's parse, the walk of its tree and the
/// qualification. Compare with `miss ...: tokenize + parse + qualify`.
fn bench_exact_fallback(c: &mut Criterion) {
    let map = heal7_map();
    let policy = OnParseError::Tokens;
    let short = "SELECT id, email, name FROM users WHERE id BETWEEN SYMMETRIC 12345 AND 12300";
    let report = report_statement().replace(
        "ORDER BY recent.n",
        "  AND u.id BETWEEN SYMMETRIC 1 AND 100000\nORDER BY recent.n",
    );
    for (name, sql) in [("short OLTP", short), ("2 KB report", report.as_str())] {
        let done = rewrite_sql_uncached(sql, &map, policy);
        assert!(done.changed(), "{name}: the exact fallback qualifies it");
        c.bench_function(&format!("exact fallback {name}: whole miss"), |b| {
            b.iter(|| rewrite_sql_uncached(black_box(sql), &map, policy))
        });
    }
}

criterion_group!(benches, bench_rewrite, bench_exact_fallback);
criterion_main!(benches);
