//! Catalog listings leave out the stale copies in `public` of what the map
//! moved: a FROM reference to one becomes a subquery under the name (or
//! alias) it was written with.

use super::test_map_with;
use crate::rewrite::{
    Decision, OnParseError, Outcome, SchemaMap, rewrite_sql, rewrite_sql_uncached,
};

/// The test map, plus `settings` kept in public and a mapped function.
fn map() -> SchemaMap {
    test_map_with(&[("shared_common", "user_count")], &[])
}

/// The moved relation names of [`map`], as the subquery lists them.
const MOVED: &str = "'MixedCase', 'attachments', 'dream_categories', 'dream_interpretations', \
                     'kasi_cache', 'old_table', 'saju_charts', 'users'";

fn sent(sql: &str) -> String {
    rewrite_sql(sql, &map(), OnParseError::Tokens).apply(sql)
}

#[test]
fn a_listing_becomes_a_subquery_under_its_own_name() {
    let sql = "SELECT table_name FROM information_schema.tables WHERE table_name = 'x'";
    assert_eq!(
        sent(sql),
        format!(
            "SELECT table_name FROM (SELECT * FROM information_schema.tables WHERE NOT \
             (table_schema = 'public' AND table_name IN ({MOVED}))) AS tables WHERE table_name = 'x'"
        )
    );
    // An alias (with columns) stays the statement's own.
    let sql = "SELECT t.a FROM pg_catalog.pg_tables AS t(a) JOIN pg_indexes i ON i.tablename = t.a";
    assert_eq!(
        sent(sql),
        format!(
            "SELECT t.a FROM (SELECT * FROM pg_catalog.pg_tables WHERE NOT (schemaname = 'public' \
             AND tablename IN ({MOVED}))) AS t(a) JOIN (SELECT * FROM pg_catalog.pg_indexes WHERE \
             NOT (schemaname = 'public' AND tablename IN ({MOVED}))) i ON i.tablename = t.a"
        )
    );
    // Written quoted or in upper case: the alias is the name as written.
    let sql = "SELECT \"pg_tables\".tablename FROM \"pg_tables\"";
    assert!(sent(sql).ends_with(") AS \"pg_tables\""), "{}", sent(sql));
    let sql = "SELECT count(*) FROM PG_MATVIEWS";
    assert!(sent(sql).ends_with(") AS PG_MATVIEWS"), "{}", sent(sql));
}

#[test]
fn sequences_owned_by_a_moved_table_are_left_out_too() {
    let out = sent("SELECT sequencename FROM pg_sequences");
    assert!(out.contains("sequencename IN (SELECT s.relname"), "{out}");
    assert!(out.contains("d.deptype IN ('a', 'i')"), "{out}");
    assert!(out.ends_with(") AS pg_sequences"), "{out}");
    let out = sent("SELECT routine_name FROM information_schema.routines");
    assert!(out.contains("routine_name IN ('user_count')"), "{out}");
    // pg_proc is keyed by namespace oid; `oid` stays a column of it.
    let sql = "SELECT count(*) FROM pg_proc WHERE proname = 'f' AND pg_function_is_visible(oid)";
    assert_eq!(
        sent(sql),
        "SELECT count(*) FROM (SELECT * FROM pg_catalog.pg_proc WHERE NOT \
         (pronamespace::pg_catalog.regnamespace::pg_catalog.text = 'public' AND proname IN \
         ('user_count'))) AS pg_proc WHERE proname = 'f' AND pg_function_is_visible(oid)"
    );
}

#[test]
fn a_statement_naming_only_a_listing_is_parsed() {
    let map = map();
    let sql = "SELECT * FROM information_schema.columns";
    let r = rewrite_sql_uncached(sql, &map, OnParseError::Tokens);
    assert_eq!(r.outcome, Outcome::Rewritten);
    assert_eq!(r.names.len(), 1);
    assert_eq!(r.names[0].decision, Decision::CatalogStaleHidden);
    assert_eq!(
        Decision::LABELS[r.names[0].decision.index()],
        "catalog_stale_hidden"
    );
    // Other catalog relations and words stay unparsed.
    for sql in [
        "SELECT * FROM pg_class",
        "SELECT 1 AS tables",
        "SELECT * FROM pg_stat_activity",
    ] {
        let r = rewrite_sql_uncached(sql, &map, OnParseError::Tokens);
        assert_eq!(r.outcome, Outcome::NoParseNeeded, "{sql}");
    }
}

#[test]
fn what_cannot_be_an_alias_or_is_not_read_stays_as_written() {
    for sql in [
        // A three-part column reference names the view, not an alias.
        "SELECT pg_catalog.pg_tables.tablename FROM pg_catalog.pg_tables",
        "SELECT information_schema.tables.* FROM information_schema.tables",
        // ... and then no listing of the statement changes (edits stay sorted).
        "SELECT 1 FROM pg_indexes, pg_catalog.pg_tables WHERE pg_catalog.pg_tables.tablename = ''",
        // A CTE of that name.
        "WITH pg_tables AS (SELECT 1 AS tablename) SELECT * FROM pg_tables",
        // Not a listing, or not read.
        "SELECT * FROM information_schema.schemata, information_schema.tables_x",
        "SELECT * FROM other.pg_tables",
        "CREATE VIEW v AS SELECT * FROM pg_tables",
    ] {
        assert_eq!(sent(sql), sql);
    }
    // No listing is hidden under `public_qualified: keep`.
    let keep = map().with_public_requalified(false);
    let sql = "SELECT * FROM pg_tables WHERE tablename = 'users'";
    assert_eq!(
        rewrite_sql(sql, &keep, OnParseError::Tokens).apply(sql),
        sql
    );
    // Nor when nothing moved out of public.
    let public_only = SchemaMap::new([("public", "settings")]);
    let sql = "SELECT * FROM pg_tables WHERE tablename = 'settings'";
    assert_eq!(
        rewrite_sql(sql, &public_only, OnParseError::Tokens).apply(sql),
        sql
    );
}

#[test]
fn a_cache_hit_sends_the_same_subquery() {
    let map = map();
    let one = "SELECT count(*) FROM pg_tables WHERE tablename = 'users'";
    let two = "SELECT count(*) FROM pg_tables WHERE tablename = 'kasi_cache'";
    let first = rewrite_sql(one, &map, OnParseError::Tokens).apply(one);
    for _ in 0..2 {
        assert_eq!(
            rewrite_sql(one, &map, OnParseError::Tokens).apply(one),
            first
        );
        assert_eq!(
            rewrite_sql(two, &map, OnParseError::Tokens).apply(two),
            format!("{}'kasi_cache'", first.strip_suffix("'users'").unwrap())
        );
    }
}
