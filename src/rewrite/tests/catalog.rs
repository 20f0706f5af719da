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

/// The moved relations of [`map`] where they are now, then also with their
/// stale copies in `public`, as the subqueries list them.
const MOVED: &str = "('Legacy Schema', 'old_table'), ('dream_service', 'dream_categories'), \
    ('dream_service', 'dream_interpretations'), ('saju_service', 'kasi_cache'), \
    ('saju_service', 'saju_charts'), ('shared_common', 'MixedCase'), ('shared_common', \
    'attachments'), ('shared_common', 'users')";
const STALE: &str = "('public', 'old_table'), ('public', 'dream_categories'), \
    ('public', 'dream_interpretations'), ('public', 'kasi_cache'), ('public', 'saju_charts'), \
    ('public', 'MixedCase'), ('public', 'attachments'), ('public', 'users')";

fn sent(sql: &str) -> String {
    rewrite_sql(sql, &map(), OnParseError::Tokens).apply(sql)
}

/// The subquery a view keyed by `key` and `name` becomes, its `swapped`
/// JSON showing `public`.
fn view(from: &str, key: &str, name: &str, swapped: &str) -> String {
    format!(
        "SELECT * FROM {from} WHERE ({key}, {name}) IN ({MOVED}, {STALE}) IS NOT TRUE UNION ALL \
         SELECT r.* FROM {from} AS v CROSS JOIN LATERAL pg_catalog.json_populate_record(v, \
         '{{{swapped}}}'::pg_catalog.json) AS r WHERE (v.{key}, v.{name}) IN ({MOVED})"
    )
}

#[test]
fn a_listing_becomes_a_subquery_under_its_own_name() {
    let sql = "SELECT table_name FROM information_schema.tables WHERE table_name = 'x'";
    assert_eq!(
        sent(sql),
        format!(
            "SELECT table_name FROM ({}) AS tables WHERE table_name = 'x'",
            view(
                "information_schema.tables",
                "table_schema",
                "table_name",
                "\"table_schema\": \"public\""
            )
        )
    );
    // An alias (with columns) stays the statement's own.
    let sql = "SELECT t.a FROM pg_catalog.pg_tables AS t(a) JOIN pg_indexes i ON i.tablename = t.a";
    assert_eq!(
        sent(sql),
        format!(
            "SELECT t.a FROM ({}) AS t(a) JOIN ({}) i ON i.tablename = t.a",
            view(
                "pg_catalog.pg_tables",
                "schemaname",
                "tablename",
                "\"schemaname\": \"public\""
            ),
            view(
                "pg_catalog.pg_indexes",
                "schemaname",
                "tablename",
                "\"schemaname\": \"public\""
            )
        )
    );
    // Written quoted or in upper case: the alias is the name as written.
    let sql = "SELECT \"pg_tables\".tablename FROM \"pg_tables\"";
    assert!(sent(sql).ends_with(") AS \"pg_tables\""), "{}", sent(sql));
    let sql = "SELECT count(*) FROM PG_MATVIEWS";
    assert!(sent(sql).ends_with(") AS PG_MATVIEWS"), "{}", sent(sql));
    // Every schema column of a constraint's row shows public.
    let out = sent("SELECT * FROM information_schema.key_column_usage");
    assert!(
        out.contains("'{\"constraint_schema\": \"public\", \"table_schema\": \"public\"}'"),
        "{out}"
    );
}

#[test]
fn sequences_owned_by_a_moved_table_are_left_out_too() {
    let out = sent("SELECT sequencename FROM pg_sequences");
    assert!(
        out.contains("(schemaname, sequencename) IN (SELECT n.nspname, s.relname"),
        "{out}"
    );
    assert!(
        out.contains("(v.schemaname, v.sequencename) IN (SELECT n.nspname, s.relname"),
        "{out}"
    );
    assert!(out.contains("d.deptype IN ('a', 'i')"), "{out}");
    assert!(out.ends_with(") AS pg_sequences"), "{out}");
    let out = sent("SELECT routine_name FROM information_schema.routines");
    assert!(
        out.contains(
            "(routine_schema, routine_name) IN (('shared_common', 'user_count'), \
             ('public', 'user_count')) IS NOT TRUE"
        ),
        "{out}"
    );
}

#[test]
fn base_catalogs_show_the_moved_objects_in_public() {
    // pg_class: the moved relations with their indexes and owned
    // sequences; keyed by namespace oid, `c.*` keeps every column.
    let sql = "SELECT c.oid FROM pg_class c WHERE relname = 'users'";
    let out = sent(sql);
    assert!(
        out.starts_with("SELECT c.oid FROM (SELECT c.* FROM pg_catalog.pg_class AS c WHERE (c.relnamespace IN (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname IN ('Legacy Schema', 'dream_service', 'saju_service', 'shared_common', 'public')) AND EXISTS"),
        "{out}"
    );
    assert!(out.contains("pg_catalog.json_populate_record(c, pg_catalog.json_build_object('relnamespace', (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'public')))"), "{out}");
    assert!(
        out.contains("i.indexrelid = c.oid AND i.indrelid = t.oid"),
        "{out}"
    );
    assert!(out.ends_with(") c WHERE relname = 'users'"), "{out}");
    // pg_type: row types of the moved relations, and array types.
    let out = sent("SELECT oid FROM pg_catalog.pg_type WHERE typname = 'users'");
    assert!(
        out.contains("(e.oid = c.oid OR e.typarray = c.oid)"),
        "{out}"
    );
    assert!(out.contains("'typnamespace', (SELECT oid"), "{out}");
    assert!(
        out.ends_with(") AS pg_type WHERE typname = 'users'"),
        "{out}"
    );
    // pg_constraint: the constraints of the moved relations and domains.
    let out = sent("SELECT conname FROM pg_constraint WHERE conname = 'users_pkey'");
    assert!(
        out.contains("WHERE t.oid = c.conrelid AND t.relnamespace = c.connamespace"),
        "{out}"
    );
    assert!(out.contains("WHERE e.oid = c.contypid"), "{out}");
    assert!(
        out.ends_with(") AS pg_constraint WHERE conname = 'users_pkey'"),
        "{out}"
    );
    // The statistics views, keyed by the table's name.
    let out = sent("SELECT relname FROM pg_stat_user_tables");
    assert!(out.contains("'{\"schemaname\": \"public\"}'"), "{out}");
    // pg_proc: the map's functions; `oid` stays a column of it.
    let sql = "SELECT count(*) FROM pg_proc WHERE proname = 'f' AND pg_function_is_visible(oid)";
    let out = sent(sql);
    assert!(
        out.contains("(pn.nspname::pg_catalog.text, c.proname::pg_catalog.text) IN (('shared_common', 'user_count'))"),
        "{out}"
    );
    assert!(
        out.ends_with(") AS pg_proc WHERE proname = 'f' AND pg_function_is_visible(oid)"),
        "{out}"
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
        "SELECT * FROM pg_attribute",
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
