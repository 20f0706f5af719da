//! Rewriter cost, the parts that sit on the hot path: the pre-filter that
//! decides a statement needs nothing, and whole rewrites of a short OLTP
//! statement and a ~2 KB reporting statement.
//!
//! cargo bench --bench rewrite

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use heal7_proxy::rewrite::{OnParseError, SchemaMap, rewrite_sql};

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
    c.bench_function("rewrite: short OLTP statement", |b| {
        b.iter(|| {
            let r = rewrite_sql(black_box(OLTP), &map, policy);
            r.apply(OLTP)
        })
    });
    c.bench_function("rewrite: 2 KB reporting statement", |b| {
        b.iter(|| {
            let r = rewrite_sql(black_box(&report), &map, policy);
            r.apply(&report)
        })
    });
}

criterion_group!(benches, bench_rewrite);
criterion_main!(benches);
