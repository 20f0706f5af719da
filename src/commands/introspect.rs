//! `heal7-proxy introspect`: read a live catalog and print the schema map
//! that describes it, in the config's YAML shape (the `schemas:` key of a
//! database entry, ready to paste under `databases.<name>:`).
//!
//! Per non-system schema other than `public`: its tables (partitioned and
//! foreign ones too), views (materialized ones too), sequences not owned by
//! a table, types (enums, stand-alone composites, domains, ranges) and
//! functions (by name; procedures and aggregates too). Objects that belong
//! to an extension are left out: the extension owns them, not the service.
//!
//! Then a `public:` entry for the names that exist in `public` and, not
//! listed, in another schema (an extension's object): with the default
//! search_path (mapped schemas first) that other object would shadow the
//! legacy one. A sequence owned by a table is not listed either, but it
//! moved with its table, so public's same-named one counts as a stale copy,
//! not as a name to keep. And, as YAML comments, the names whose resolution
//! deserves a look: a stale copy in `public` of a listed (or owned) object,
//! and a name in two non-public schemas (the map can send a name to one
//! schema only; it is listed under the first).
//!
//! Rendering is a pure function of the catalog rows ([`render`]), so the
//! output is deterministic and testable without a server.

use std::collections::{BTreeMap, BTreeSet};

use super::check::{CheckError, Credentials, connect};
use crate::config::{ObjectKind, PUBLIC, check_name};

/// One object as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CatalogObject {
    pub schema: String,
    pub kind: ObjectKind,
    pub name: String,
    pub listing: Listing,
}

/// Whether a map lists an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Listing {
    Listed,
    /// A sequence owned by a table (serial, identity): not listed, it
    /// moved with its table (OWNED BY needs the same schema).
    OwnedSequence,
    /// An object of an extension: the extension's, not the service's.
    Extension,
}

/// What [`render`] reads: the schemas (non-system, not owned by an
/// extension; `public` may be among them) and their objects.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub schemas: Vec<String>,
    pub objects: Vec<CatalogObject>,
}

/// Schemas never listed: the system's own, and temporary ones.
const SCHEMAS_SQL: &str = "\
SELECT n.nspname::text FROM pg_catalog.pg_namespace n \
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
  AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%' \
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                  WHERE d.classid = 'pg_catalog.pg_namespace'::regclass \
                    AND d.objid = n.oid AND d.deptype = 'e')";

/// Every relation, type and function of those schemas, with whether a map
/// would list it. Functions a type made for itself (a range's
/// constructors: internal dependencies) are not the service's.
const OBJECTS_SQL: &str = "\
WITH ns AS ( \
  SELECT n.oid, n.nspname::text AS nspname FROM pg_catalog.pg_namespace n \
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
    AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%' \
), ext AS ( \
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d WHERE d.deptype = 'e' \
) \
SELECT ns.nspname, \
       CASE WHEN c.relkind IN ('r', 'p', 'f') THEN 'table' \
            WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'sequence' END, \
       c.relname::text, \
       CASE WHEN EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_catalog.pg_class'::regclass \
                                             AND ext.objid = c.oid) THEN 'extension' \
            WHEN c.relkind = 'S' AND EXISTS ( \
              SELECT 1 FROM pg_catalog.pg_depend d \
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid \
                AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')) \
            THEN 'owned' ELSE 'listed' END \
FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') \
UNION ALL \
SELECT ns.nspname, 'type', t.typname::text, \
       CASE WHEN EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_catalog.pg_type'::regclass \
                                             AND ext.objid = t.oid) \
            THEN 'extension' ELSE 'listed' END \
FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace \
WHERE t.typtype IN ('e', 'd', 'r') \
   OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
                                   WHERE c.oid = t.typrelid AND c.relkind = 'c')) \
UNION ALL \
SELECT ns.nspname, 'function', p.proname::text, \
       CASE WHEN EXISTS (SELECT 1 FROM ext WHERE ext.classid = 'pg_catalog.pg_proc'::regclass \
                                             AND ext.objid = p.oid) \
            THEN 'extension' ELSE 'listed' END \
FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace \
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                  WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid \
                    AND d.deptype = 'i')";

/// Read the catalog of `database` on `host:port`.
pub async fn read_catalog(
    host: &str,
    port: u16,
    database: &str,
    credentials: &Credentials,
) -> Result<Catalog, CheckError> {
    let (client, driver) =
        connect(host, port, database, credentials, "heal7-proxy introspect").await?;
    let query = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query(sql, &[])
                .await
                .map_err(|source| CheckError::Query {
                    database: database.to_owned(),
                    source,
                })
        }
    };
    let schemas = query(SCHEMAS_SQL).await;
    let objects = query(OBJECTS_SQL).await;
    drop(client);
    let _ = driver.await;
    let schemas: Vec<String> = schemas?.iter().map(|r| r.get(0)).collect();
    let objects = objects?
        .iter()
        .filter_map(|r| {
            let kind = match r.get::<_, &str>(1) {
                "table" => ObjectKind::Table,
                "view" => ObjectKind::View,
                "sequence" => ObjectKind::Sequence,
                "type" => ObjectKind::Type,
                _ => ObjectKind::Function,
            };
            let schema: String = r.get(0);
            // Objects of an extension-owned schema: not the service's.
            schemas.contains(&schema).then(|| CatalogObject {
                schema,
                kind,
                name: r.get(2),
                listing: match r.get::<_, &str>(3) {
                    "listed" => Listing::Listed,
                    "owned" => Listing::OwnedSequence,
                    _ => Listing::Extension,
                },
            })
        })
        .collect();
    Ok(Catalog { schemas, objects })
}

/// Relations share one namespace; types and functions have their own.
fn namespace(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::Table | ObjectKind::View | ObjectKind::Sequence => 0,
        ObjectKind::Type => 1,
        ObjectKind::Function => 2,
    }
}

type Entry = BTreeMap<ObjectKind, BTreeSet<String>>;

/// The map, as YAML text with comments. Schemas and names in byte order;
/// the `public` entry last.
pub fn render(catalog: &Catalog) -> String {
    let mut comments: Vec<String> = Vec::new();
    let schemas: BTreeSet<&str> = catalog
        .schemas
        .iter()
        .map(String::as_str)
        .filter(|s| *s != PUBLIC)
        .filter(|s| match check_name(s) {
            Ok(()) => true,
            Err(m) => {
                comments.push(format!("skipped schema {}: {m}", yaml_scalar(s)));
                false
            }
        })
        .collect();
    let mut objects: BTreeSet<&CatalogObject> = BTreeSet::new();
    for o in &catalog.objects {
        if o.schema != PUBLIC && !schemas.contains(o.schema.as_str()) {
            continue;
        }
        if let Err(m) = check_name(&o.name) {
            if o.listing == Listing::Listed {
                comments.push(format!(
                    "skipped {} {}.{}: {m}",
                    o.kind.as_str(),
                    o.schema,
                    o.name
                ));
            }
            continue;
        }
        objects.insert(o);
    }

    // (namespace, name) -> the schemas (byte order) where a map would list
    // it, and those where it exists unlisted (with why).
    let mut listable: BTreeMap<(u8, &str), Vec<&str>> = BTreeMap::new();
    let mut unlisted: BTreeMap<(u8, &str), Vec<(&str, Listing)>> = BTreeMap::new();
    for o in objects.iter().filter(|o| o.schema != PUBLIC) {
        let key = (namespace(o.kind), o.name.as_str());
        if o.listing == Listing::Listed {
            let at = listable.entry(key).or_default();
            if !at.contains(&o.schema.as_str()) {
                at.push(&o.schema);
            }
        } else {
            unlisted
                .entry(key)
                .or_default()
                .push((&o.schema, o.listing));
        }
    }

    let mut entries: BTreeMap<&str, Entry> = schemas.iter().map(|s| (*s, Entry::new())).collect();
    for o in objects
        .iter()
        .filter(|o| o.schema != PUBLIC && o.listing == Listing::Listed)
    {
        let at = &listable[&(namespace(o.kind), o.name.as_str())];
        if at[0] == o.schema {
            entries
                .get_mut(o.schema.as_str())
                .expect("schema of a kept object")
                .entry(o.kind)
                .or_default()
                .insert(o.name.clone());
        }
    }
    for ((_, name), at) in &listable {
        if at.len() > 1 {
            comments.push(format!(
                "ambiguous: {name} exists in {}; listed under {} only (first on the search_path)",
                at.join(", "),
                at[0]
            ));
        }
    }

    let mut public = Entry::new();
    for o in objects.iter().filter(|o| o.schema == PUBLIC) {
        let key = (namespace(o.kind), o.name.as_str());
        if let Some(at) = listable.get(&key) {
            comments.push(format!(
                "stale copy? public.{} ({}) has the name of {}.{}, where the map and the search_path send it",
                o.name,
                o.kind.as_str(),
                at[0],
                o.name
            ));
        } else if let Some(at) = unlisted.get(&key) {
            // A sequence owned by a table moved with it: public's is the
            // stale copy, as for the table. Anything else unlisted (an
            // extension's) would shadow public's on the search_path: keep
            // the name in public.
            if let Some((schema, _)) = at.iter().find(|(_, l)| *l == Listing::OwnedSequence) {
                comments.push(format!(
                    "stale copy? public.{} ({}) has the name of {schema}.{}, owned by a table there (not listed: it moves with its table)",
                    o.name,
                    o.kind.as_str(),
                    o.name
                ));
            } else {
                public.entry(o.kind).or_default().insert(o.name.clone());
                let at: Vec<&str> = at.iter().map(|(s, _)| *s).collect();
                comments.push(format!(
                    "kept in public: {} (also in {}, where an extension owns it)",
                    o.name,
                    at.join(", ")
                ));
            }
        }
    }

    let mut out = String::from("schemas:\n");
    for (schema, entry) in &entries {
        render_entry(&mut out, schema, entry);
    }
    if !public.is_empty() {
        render_entry(&mut out, PUBLIC, &public);
    }
    for c in comments {
        out.push_str("# ");
        out.push_str(&c);
        out.push('\n');
    }
    out
}

/// Past this width a name list is written one name a line.
const FLOW_WIDTH: usize = 100;

fn render_entry(out: &mut String, schema: &str, entry: &Entry) {
    out.push_str("  ");
    out.push_str(&yaml_scalar(schema));
    if entry.is_empty() {
        out.push_str(": {}\n");
        return;
    }
    out.push_str(":\n");
    for (kind, names) in entry {
        let names: Vec<String> = names.iter().map(|n| yaml_scalar(n)).collect();
        let flow = format!("    {}: [{}]", kind.key(), names.join(", "));
        if flow.len() <= FLOW_WIDTH {
            out.push_str(&flow);
            out.push('\n');
        } else {
            out.push_str(&format!("    {}:\n", kind.key()));
            for n in names {
                out.push_str(&format!("      - {n}\n"));
            }
        }
    }
}

/// A name as a YAML scalar: plain when that reads back as the same string,
/// double-quoted otherwise.
pub fn yaml_scalar(name: &str) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        return name.to_owned();
    }
    let mut q = String::with_capacity(name.len() + 2);
    q.push('"');
    for c in name.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn obj(schema: &str, kind: ObjectKind, name: &str, listable: bool) -> CatalogObject {
        let listing = match (listable, kind) {
            (true, _) => Listing::Listed,
            (false, ObjectKind::Sequence) => Listing::OwnedSequence,
            (false, _) => Listing::Extension,
        };
        CatalogObject {
            schema: schema.into(),
            kind,
            name: name.into(),
            listing,
        }
    }

    fn catalog() -> Catalog {
        use ObjectKind::*;
        Catalog {
            schemas: ["shared_common", "public", "Dream Archive", "empty", "saju"]
                .map(String::from)
                .to_vec(),
            objects: vec![
                obj("shared_common", Table, "users", true),
                obj("shared_common", Sequence, "users_id_seq", false),
                obj("shared_common", Sequence, "invoice_no", true),
                obj("shared_common", View, "active_users", true),
                obj("shared_common", Type, "mood", true),
                obj("shared_common", Function, "touch", true),
                obj("shared_common", Function, "touch", true),
                obj("shared_common", Function, "uuid_v7", false),
                obj("Dream Archive", Table, "old_dreams", true),
                obj("Dream Archive", Table, "true", true),
                obj("saju", Table, "charts", true),
                obj("saju", View, "users", true),
                obj("saju", Table, "bad.name", true),
                obj("public", Table, "users", true),
                obj("public", Sequence, "users_id_seq", false),
                obj("public", Function, "uuid_v7", true),
                obj("public", Table, "only_public", true),
            ],
        }
    }

    #[test]
    fn renders_the_map_with_public_entries_and_warnings() {
        let yaml = render(&catalog());
        assert_eq!(
            yaml,
            "schemas:
  \"Dream Archive\":
    tables: [old_dreams, \"true\"]
  empty: {}
  saju:
    tables: [charts]
    views: [users]
  shared_common:
    views: [active_users]
    sequences: [invoice_no]
    types: [mood]
    functions: [touch]
  public:
    functions: [uuid_v7]
# skipped table saju.bad.name: `bad.name` contains a dot; list bare names under their schema
# ambiguous: users exists in saju, shared_common; listed under saju only (first on the search_path)
# stale copy? public.users (table) has the name of saju.users, where the map and the search_path send it
# stale copy? public.users_id_seq (sequence) has the name of shared_common.users_id_seq, owned by a table there (not listed: it moves with its table)
# kept in public: uuid_v7 (also in shared_common, where an extension owns it)
"
        );
    }

    #[test]
    fn the_output_is_a_valid_schemas_key() {
        let yaml = render(&catalog());
        let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let config = Config::from_yaml(&format!("databases:\n  heal7:\n{indented}"), "t").unwrap();
        let db = &config.databases[0];
        assert_eq!(
            db.search_path,
            ["Dream Archive", "empty", "saju", "shared_common", "public"]
        );
        let map = config.route("heal7").map.unwrap();
        assert_eq!(map.schema_of("users", false), Some("saju"));
        assert_eq!(map.schema_of("true", false), Some("Dream Archive"));
        assert_eq!(map.schema_of("users_id_seq", false), None);
        assert_eq!(map.schema_of("only_public", false), None);
        assert_eq!(
            db.schemas.last().unwrap().functions,
            ["uuid_v7"],
            "the public entry"
        );
    }

    #[test]
    fn long_lists_go_one_name_a_line() {
        let objects = (0..30)
            .map(|i| obj("s", ObjectKind::Table, &format!("table_{i:02}"), true))
            .collect();
        let yaml = render(&Catalog {
            schemas: vec!["s".into()],
            objects,
        });
        assert!(
            yaml.contains("    tables:\n      - table_00\n      - table_01\n"),
            "{yaml}"
        );
        let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let c = Config::from_yaml(&format!("databases:\n  d:\n{indented}"), "t").unwrap();
        assert_eq!(c.databases[0].schemas[0].tables.len(), 30);
    }

    #[test]
    fn yaml_scalars_read_back_as_written() {
        for (name, want) in [
            ("users", "users"),
            ("Users", "Users"),
            ("Dream Archive", "\"Dream Archive\""),
            ("no", "\"no\""),
            ("1st", "\"1st\""),
            ("사용자", "\"사용자\""),
            ("a\\b", "\"a\\\\b\""),
        ] {
            assert_eq!(yaml_scalar(name), want);
            let back: String = serde_yaml::from_str(&yaml_scalar(name)).unwrap();
            assert_eq!(back, name);
        }
    }
}
