//! Config loading, validation and routing.

use super::*;

const EXAMPLE: &str = r#"
proxy:
  listen: 127.0.0.1:6432
  on_parse_error: tokens
databases:
  heal7:
    host: 127.0.0.1
    port: 5432
    database: heal7
    schemas:
      shared_common: {tables: [users, attachments]}
      saju_service: {tables: [saju_charts, kasi_cache]}
    aliases:
      heal7_saju: {default_schema: saju_service}
"#;

fn err(text: &str) -> String {
    Config::from_yaml(text, "test.yaml")
        .unwrap_err()
        .to_string()
}

#[test]
fn example_loads_and_routes() {
    let c = Config::from_yaml(EXAMPLE, "test.yaml").unwrap();
    assert_eq!(c.on_parse_error, OnParseError::Tokens);
    let r = c.route("heal7");
    assert_eq!(r.database, "heal7");
    assert_eq!(
        r.search_path.as_deref(),
        Some("shared_common, saju_service, public")
    );
    assert_eq!(r.create_schema, "public");
    assert_eq!(r.public_qualified, PublicQualified::Rewrite);
    let map = r.map.unwrap();
    assert_eq!(map.schema_of("users", false), Some("shared_common"));
    assert_eq!(map.schema_of("USERS", false), Some("shared_common"));
    assert_eq!(map.schema_of("USERS", true), None);

    let alias = c.route("heal7_saju");
    assert_eq!(alias.database, "heal7");
    assert_eq!(
        alias.search_path.as_deref(),
        Some("saju_service, shared_common, public")
    );
    assert_eq!(alias.create_schema, "saju_service");
    assert!(alias.map.is_some());

    let other = c.route("postgres");
    assert_eq!(other.database, "postgres");
    assert!(other.map.is_none());
    assert!(other.search_path.is_none());
    assert_eq!(other.upstream_addr(), "127.0.0.1:5432");
}

const KINDS: &str = r#"
databases:
  heal7:
    schemas:
      shared_common:
        tables: [users]
        views: [active_users]
        sequences: [invoice_no]
        types: [mood]
        functions: [touch_user]
      "Dream Archive": {tables: [old_dreams], types: [users]}
      public:
        tables: [legacy_fortunes]
        functions: [touch_user_legacy]
    aliases:
      heal7_saju: {default_schema: "Dream Archive"}
"#;

#[test]
fn every_kind_is_mapped_and_relations_reach_the_rewriter() {
    let c = Config::from_yaml(KINDS, "test.yaml").unwrap();
    let db = &c.databases[0];
    let main = c.route("heal7").map.unwrap();
    for name in ["users", "active_users", "invoice_no"] {
        assert_eq!(main.schema_of(name, false), Some("shared_common"), "{name}");
    }
    assert_eq!(main.schema_of("legacy_fortunes", false), Some("public"));
    // Types and functions stay out of the rewriter's map, for now.
    assert_eq!(main.schema_of("mood", false), None);
    assert_eq!(main.schema_of("touch_user", false), None);
    assert_eq!(main.len(), 5);
    assert_eq!(
        db.types().collect::<Vec<_>>(),
        [("mood", "shared_common"), ("users", "Dream Archive")]
    );
    assert_eq!(
        db.functions().collect::<Vec<_>>(),
        [
            ("touch_user", "shared_common"),
            ("touch_user_legacy", "public")
        ]
    );
    assert_eq!(db.schemas[0].views, ["active_users"]);
    assert!(db.schemas[2].is_public());
}

#[test]
fn public_entries_apply_to_the_main_name_only() {
    let c = Config::from_yaml(KINDS, "test.yaml").unwrap();
    let main = c.route("heal7");
    let alias = c.route("heal7_saju");
    let (main_map, alias_map) = (main.map.unwrap(), alias.map.unwrap());
    assert!(!Arc::ptr_eq(&main_map, &alias_map));
    assert_eq!(alias_map.schema_of("legacy_fortunes", false), None);
    assert_eq!(alias_map.schema_of("users", false), Some("shared_common"));
    assert_eq!(alias_map.len(), 4);
    // The main name sends creations to public (its search_path starts
    // with a mapped schema); an alias' path starts with its create
    // schema: two maps even without a `public` entry.
    let c = Config::from_yaml(EXAMPLE, "test.yaml").unwrap();
    let (main, alias) = (
        c.route("heal7").map.unwrap(),
        c.route("heal7_saju").map.unwrap(),
    );
    assert!(!Arc::ptr_eq(&main, &alias));
    let create = "CREATE TABLE t (id int)";
    let sent =
        |m: &SchemaMap| crate::rewrite::rewrite_sql(create, m, OnParseError::Tokens).apply(create);
    assert_eq!(sent(&main), "CREATE TABLE public.t (id int)");
    assert_eq!(sent(&alias), create);
    // Each map honours the configured cache bound.
    let c = Config::from_yaml(
        &format!("proxy: {{rewrite_cache_bytes: 2048}}\n{KINDS}"),
        "test.yaml",
    )
    .unwrap();
    assert_eq!(c.databases[0].map.cache_stats().limit, 2048);
    assert_eq!(c.databases[0].alias_maps[0].cache_stats().limit, 2048);
}

#[test]
fn default_search_paths_put_mapped_schemas_before_public() {
    let c = Config::from_yaml(KINDS, "test.yaml").unwrap();
    assert_eq!(
        c.route("heal7").search_path.as_deref(),
        Some("shared_common, \"Dream Archive\", public")
    );
    assert_eq!(
        c.route("heal7_saju").search_path.as_deref(),
        Some("\"Dream Archive\", shared_common, public")
    );
    assert_eq!(c.route("heal7_saju").create_schema, "Dream Archive");
    assert_eq!(
        c.databases[0].search_path,
        ["shared_common", "Dream Archive", "public"]
    );
}

#[test]
fn configured_search_path_create_schema_and_public_qualified() {
    let c = Config::from_yaml(
            "databases:\n  heal7:\n    schemas: {a: {tables: [t]}, b: {tables: [u]}}\n    \
             search_path: [b, \"$user\", public]\n    create_schema: a\n    public_qualified: keep\n    \
             aliases:\n      old: {default_schema: a, search_path: [a], create_schema: b}\n",
            "test.yaml",
        )
        .unwrap();
    let r = c.route("heal7");
    assert_eq!(r.search_path.as_deref(), Some("b, \"$user\", public"));
    assert_eq!(r.create_schema, "a");
    assert_eq!(r.public_qualified, PublicQualified::Keep);
    let r = c.route("old");
    assert_eq!(r.search_path.as_deref(), Some("a"));
    assert_eq!(r.create_schema, "b");
    assert_eq!(r.public_qualified, PublicQualified::Keep);

    for (bad, what) in [
        ("search_path: []", "at least one schema"),
        ("search_path: [a, a]", "listed twice"),
        ("search_path: [\"a.b\"]", "contains a dot"),
        ("create_schema: nowhere", "neither public"),
        ("public_qualified: always", "unknown variant `always`"),
    ] {
        let msg = err(&format!(
            "databases:\n  heal7:\n    schemas: {{a: {{tables: [t]}}}}\n    {bad}\n"
        ));
        assert!(msg.contains(what), "{bad}: {msg}");
    }
    let msg = err(
        "databases:\n  heal7:\n    schemas: {a: {tables: [t]}}\n    aliases:\n      old: {default_schema: a, create_schema: z}\n",
    );
    assert!(
        msg.contains("databases.heal7.aliases.old.create_schema"),
        "{msg}"
    );
}

#[test]
fn dry_run_and_off_set_no_search_path() {
    for mode in ["dry_run", "off"] {
        let c = Config::from_yaml(
            &KINDS.replace("    aliases:", &format!("    mode: {mode}\n    aliases:")),
            "t",
        )
        .unwrap();
        assert_eq!(c.databases[0].mode.as_str(), mode);
        assert!(c.route("heal7").search_path.is_none(), "{mode}");
        assert!(c.route("heal7_saju").search_path.is_none(), "{mode}");
    }
}

#[test]
fn a_relation_name_is_unique_across_kinds_and_schemas() {
    let msg = err(
        "databases:\n  heal7:\n    schemas:\n      a: {tables: [users]}\n      b: {views: [users]}\n",
    );
    assert!(msg.contains("databases.heal7.schemas.b.views"), "{msg}");
    assert!(
        msg.contains("view `users` is already listed under schema `a` as a table"),
        "{msg}"
    );
    let msg = err("databases:\n  heal7:\n    schemas:\n      a: {tables: [s], sequences: [s]}\n");
    assert!(msg.contains("databases.heal7.schemas.a.sequences"), "{msg}");
    assert!(msg.contains("already listed as a table"), "{msg}");
    let msg = err(
        "databases:\n  heal7:\n    schemas:\n      a: {tables: [users]}\n      public: {tables: [users]}\n",
    );
    assert!(
        msg.contains("databases.heal7.schemas.public.tables"),
        "{msg}"
    );
    let msg = err(
        "databases:\n  heal7:\n    schemas:\n      a: {functions: [f]}\n      b: {functions: [f]}\n",
    );
    assert!(msg.contains("databases.heal7.schemas.b.functions"), "{msg}");
    let msg = err("databases:\n  heal7:\n    schemas:\n      a: {types: [\"x.y\"]}\n");
    assert!(msg.contains("databases.heal7.schemas.a.types"), "{msg}");
    // Separate namespaces: a type, a function and a table may share a name.
    Config::from_yaml(
            "databases:\n  heal7:\n    schemas:\n      a: {tables: [x]}\n      b: {types: [x], functions: [x]}\n",
            "t",
        )
        .unwrap();
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = Config::from_yaml("databases:\n  heal7:\n    hots: x\n", "test.yaml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("unknown field `hots`"), "{msg}");
    match e {
        ConfigError::Syntax { line, .. } => assert_eq!(line, Some(3)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn table_under_two_schemas_is_refused() {
    let msg = err(
        "databases:\n  heal7:\n    schemas:\n      a: {tables: [users]}\n      b: {tables: [users]}\n",
    );
    assert!(msg.contains("databases.heal7.schemas.b.tables"), "{msg}");
    assert!(msg.contains("already listed under schema `a`"), "{msg}");
}

#[test]
fn rewrite_cache_bound_comes_from_the_config() {
    let c = Config::from_yaml(
        "proxy: {rewrite_cache_bytes: 4096}\ndatabases: {a: {schemas: {s: {tables: [t]}}}}\n",
        "test.yaml",
    )
    .unwrap();
    assert_eq!(c.databases[0].map.cache_stats().limit, 4096);
}

#[test]
fn table_listed_twice_is_refused() {
    let msg = err("databases:\n  heal7:\n    schemas:\n      a: {tables: [users, users]}\n");
    assert!(msg.contains("listed twice"), "{msg}");
}

#[test]
fn invalid_identifiers_are_refused() {
    for (bad, what) in [
        ("a: {tables: [\"public.users\"]}", "contains a dot"),
        ("a: {tables: [\"\"]}", "must not be empty"),
        ("a: {tables: [\" users\"]}", "blanks"),
        (
            "a: {tables: [aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]}",
            "longer than 63",
        ),
        ("\"bad\\tschema\": {tables: [users]}", "control character"),
    ] {
        let msg = err(&format!(
            "databases:\n  heal7:\n    schemas:\n      {bad}\n"
        ));
        assert!(msg.contains(what), "{bad}: {msg}");
    }
}

#[test]
fn alias_equal_to_database_key_is_refused() {
    let msg = err(
        "databases:\n  heal7:\n    schemas: {s: {tables: [t]}}\n    aliases:\n      heal7: {default_schema: s}\n",
    );
    assert!(msg.contains("also a database key"), "{msg}");
    let msg = err(
        "databases:\n  a:\n    schemas: {s: {tables: [t]}}\n  b:\n    schemas: {s: {tables: [u]}}\n    aliases:\n      a: {default_schema: s}\n",
    );
    assert!(msg.contains("also a database key"), "{msg}");
}

#[test]
fn alias_with_unknown_schema_is_refused() {
    let msg = err(
        "databases:\n  heal7:\n    schemas: {s: {tables: [t]}}\n    aliases:\n      old: {default_schema: nope}\n",
    );
    assert!(msg.contains("schema `nope` is not listed"), "{msg}");
}

#[test]
fn bad_policy_and_listen_are_refused() {
    let msg = err("proxy: {on_parse_error: ignore}\ndatabases: {a: {}}\n");
    assert!(msg.contains("unknown variant `ignore`"), "{msg}");
    let msg = err("proxy: {listen: nowhere}\ndatabases: {a: {}}\n");
    assert!(msg.contains("proxy.listen"), "{msg}");
    let msg = err("databases: {}\n");
    assert!(msg.contains("at least one database"), "{msg}");
    let msg = err("proxy: {worker_threads: 0}\ndatabases: {a: {}}\n");
    assert!(msg.contains("proxy.worker_threads"), "{msg}");
    let c = Config::from_yaml("proxy: {worker_threads: 3}\ndatabases: {a: {}}\n", "t").unwrap();
    assert_eq!(c.start.worker_threads, Some(3));
}

#[test]
fn admin_users_hold_verifiers_and_refuse_anything_else() {
    let v = crate::auth::scram::hash_password(b"pw");
    let c = Config::from_yaml(
        &format!("proxy:\n  admin_users:\n    admin: \"{v}\"\ndatabases: {{a: {{}}}}\n"),
        "t",
    )
    .unwrap();
    assert_eq!(c.admin_users["admin"].to_string(), v);

    let msg = err("proxy:\n  admin_users:\n    admin: hunter2\ndatabases: {a: {}}\n");
    assert!(msg.contains("proxy.admin_users.admin"), "{msg}");
    assert!(msg.contains("SCRAM-SHA-256$"), "{msg}");
    assert!(!msg.contains("hunter2"), "the value is never echoed: {msg}");
}

#[test]
fn the_console_database_name_is_reserved() {
    let msg = err("databases: {heal7_proxy: {}}\n");
    assert!(msg.contains("reserved for the admin console"), "{msg}");
    let msg = err(
        "databases:\n  a:\n    schemas: {s: {tables: [t]}}\n    aliases:\n      heal7_proxy: {default_schema: s}\n",
    );
    assert!(msg.contains("reserved for the admin console"), "{msg}");
}

#[test]
fn reach_settings_default_to_forward_and_no_replication() {
    let c = Config::from_yaml(EXAMPLE, "test.yaml").unwrap();
    assert_eq!(c.other_databases, OtherDatabases::Forward);
    assert!(!c.allow_replication);
    let text = EXAMPLE.replace(
        "  on_parse_error: tokens\n",
        "  on_parse_error: tokens\n  other_databases: refuse\n  allow_replication: true\n",
    );
    let c = Config::from_yaml(&text, "test.yaml").unwrap();
    assert_eq!(c.other_databases, OtherDatabases::Refuse);
    assert!(c.allow_replication);
    let bad = EXAMPLE.replace(
        "  on_parse_error: tokens\n",
        "  on_parse_error: tokens\n  other_databases: drop\n",
    );
    assert!(err(&bad).contains("other_databases"), "{}", err(&bad));
}

#[test]
fn max_client_connections_defaults_to_10000_and_is_at_least_1() {
    let c = Config::from_yaml(EXAMPLE, "test.yaml").unwrap();
    assert_eq!(c.max_client_connections, 10_000);
    let zero = EXAMPLE.replace(
        "  on_parse_error: tokens\n",
        "  on_parse_error: tokens\n  max_client_connections: 0\n",
    );
    assert!(
        err(&zero).contains("proxy.max_client_connections: must be at least 1"),
        "{}",
        err(&zero)
    );
}

const VERIFIER_A: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$uTdqEMzJoHk3SlFkyFtIRvjnKrBlzuC0hEpZJpcXf8M=:d1sQdBRr4WhYHI6ueDxfv3VzYxMhBcZdV7szeBIUGnI=";

fn with_admin(verifier: &str, extra: &str) -> String {
    EXAMPLE.replace(
        "  on_parse_error: tokens\n",
        &format!("  on_parse_error: tokens\n  admin_users:\n    admin: \"{verifier}\"\n{extra}"),
    )
}

#[test]
fn console_mock_secret_is_stable_for_a_config_and_follows_its_secrets() {
    let load = |text: &str, name: &str| Config::from_yaml(text, name).unwrap().console_mock_secret;
    let a = with_admin(VERIFIER_A, "");
    // The same config read twice (two starts), even from another path.
    assert_eq!(load(&a, "one.yaml"), load(&a, "two.yaml"));
    // Another verifier, another secret.
    let b = with_admin(&VERIFIER_A.replace("c2FsdHNh", "b3RoZXJz"), "");
    assert_ne!(load(&a, "x"), load(&b, "x"));
    assert_eq!(format!("{:?}", load(&a, "x")), "MockSecret(..)");

    // A secret file keys it alone: verifier rotations leave it alone.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let extra = format!("  admin_secret_file: {}\n", file.display());
    let with_file_a = with_admin(VERIFIER_A, &extra);
    let with_file_b = b.replace("  admin_users:\n", &format!("{extra}  admin_users:\n"));
    assert_eq!(load(&with_file_a, "x"), load(&with_file_b, "x"));
    assert_ne!(load(&with_file_a, "x"), load(&a, "x"));

    std::fs::write(&file, "short\n").unwrap();
    let e = err(&with_file_a);
    assert!(
        e.contains("proxy.admin_secret_file") && e.contains("fewer than 16 bytes"),
        "{e}"
    );
    assert!(!e.contains("short\n"), "{e}");
    let missing = with_admin(
        VERIFIER_A,
        "  admin_secret_file: /nonexistent/heal7-secret\n",
    );
    assert!(err(&missing).contains("cannot read /nonexistent/heal7-secret"));
}

#[test]
fn shutdown_timeout_defaults_to_30_s_and_is_fixed_at_start() {
    let c = Config::from_yaml("databases: {a: {}}\n", "t").unwrap();
    assert_eq!(c.start.shutdown_timeout, Duration::from_secs(30));
    let c = Config::from_yaml(
        "proxy: {shutdown_timeout_ms: 250}\ndatabases: {a: {}}\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.start.shutdown_timeout, Duration::from_millis(250));
    let changes = c.start.changes_from(
        &Config::from_yaml("databases: {a: {}}\n", "t")
            .unwrap()
            .start,
    );
    assert!(
        changes[0].contains("proxy.shutdown_timeout_ms"),
        "{changes:?}"
    );
}

#[test]
fn max_parse_bytes_reaches_every_map_and_is_bounded() {
    let yaml = "databases:\n  a:\n    schemas: {s: {tables: [t]}}\n    aliases: {b: {default_schema: s}}\n";
    let c = Config::from_yaml(yaml, "t").unwrap();
    assert_eq!(
        c.route("a").map.unwrap().max_parse_bytes(),
        crate::rewrite::DEFAULT_MAX_PARSE_BYTES
    );
    let c = Config::from_yaml(&format!("proxy: {{max_parse_bytes: 65536}}\n{yaml}"), "t").unwrap();
    for name in ["a", "b"] {
        assert_eq!(c.route(name).map.unwrap().max_parse_bytes(), 65536);
    }
    let msg = err(&format!("proxy: {{max_parse_bytes: 100}}\n{yaml}"));
    assert!(msg.contains("proxy.max_parse_bytes"), "{msg}");
}

#[test]
fn client_search_path_answers_current_schema_on_the_main_name_only() {
    use crate::rewrite::{OnParseError, rewrite_sql};
    let yaml = |extra: &str| {
        format!(
            "databases:\n  heal7:\n    schemas: {{a: {{tables: [t]}}}}\n{extra}    \
             aliases:\n      old: {{default_schema: a}}\n"
        )
    };
    let sent = |c: &Config, db: &str| {
        let map = c.route(db).map.unwrap();
        let sql = "SELECT current_schema()";
        rewrite_sql(sql, &map, OnParseError::Tokens).apply(sql)
    };
    // Default: PostgreSQL's `"$user", public`, on the main name.
    let c = Config::from_yaml(&yaml(""), "test.yaml").unwrap();
    let main = sent(&c, "heal7");
    assert!(
        main.contains("(1, CURRENT_USER::text), (2, 'public'::text)"),
        "{main}"
    );
    assert_eq!(sent(&c, "old"), "SELECT current_schema()");
    // Configured, or off.
    let c = Config::from_yaml(&yaml("    client_search_path: [app, public]\n"), "t.yaml").unwrap();
    assert!(sent(&c, "heal7").contains("(1, 'app'::text), (2, 'public'::text)"));
    let c = Config::from_yaml(&yaml("    client_search_path: []\n"), "t.yaml").unwrap();
    assert_eq!(sent(&c, "heal7"), "SELECT current_schema()");
    let msg = err(&yaml("    client_search_path: [a, a]\n"));
    assert!(msg.contains("databases.heal7.client_search_path"), "{msg}");
}
