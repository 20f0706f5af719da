//! Catalogs as before the move: a FROM reference to a catalog that lists
//! objects by schema and name (`pg_class`, `pg_type`, `pg_proc`,
//! `information_schema.tables`, `pg_tables`, ...) becomes a subquery that
//! shows the moved objects in `public` and leaves out their stale copies
//! there, so a tool reading the catalogs finds what it found before the
//! move (psql's `\d`, SQLAlchemy and Django introspection, asyncpg's codec
//! lookup by `nspname = 'public'`). The reference keeps the name it was
//! written with as its alias, so the rest of the statement reads the same
//! columns under the same name:
//!
//! ```text
//! FROM information_schema.tables
//! -> FROM (SELECT * FROM information_schema.tables
//!          WHERE (table_schema, table_name) IN (<moved>, <stale copies>) IS NOT TRUE
//!          UNION ALL
//!          SELECT r.* FROM information_schema.tables AS v CROSS JOIN LATERAL
//!            json_populate_record(v, '{"table_schema": "public"}') AS r
//!          WHERE (v.table_schema, v.table_name) IN (<moved>)) AS tables
//! ```
//!
//! Only under `public_qualified: rewrite` (with `keep`, tools must reach the
//! stale copies) and only in statements that read (SELECT, INSERT ...
//! SELECT, DECLARE ... CURSOR FOR). A statement that names a catalog
//! through a three-part column reference (`pg_catalog.pg_tables.tablename`),
//! which an alias cannot answer to, is left as written.

use std::collections::HashSet;

use sqlparser::ast::{Ident, ObjectNamePart, Query, Statement, TableFactor};

use super::split::TextIndex;
use super::walk::{TableMention, normalized};
use super::{Decision, Edit, NameUse, SchemaMap};

/// The words that send a statement naming no mapped table to the parser
/// anyway, when the map hides stale copies: every catalog below is named
/// through one of them.
pub(crate) const PREFILTER_WORDS: [&str; 16] = [
    "information_schema",
    "pg_tables",
    "pg_views",
    "pg_matviews",
    "pg_indexes",
    "pg_sequences",
    "pg_proc",
    "pg_class",
    "pg_type",
    "pg_constraint",
    "pg_stat_user_tables",
    "pg_stat_all_tables",
    "pg_statio_user_tables",
    "pg_stat_user_indexes",
    "pg_stat_all_indexes",
    "pg_statio_user_indexes",
];

/// What a listing's rows are keyed by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lists {
    /// Relations (and what hangs on one: columns, constraints, indexes).
    Relations,
    /// Sequences: the map's relations and the sequences tables own.
    Sequences,
    /// Functions.
    Routines,
}

/// How a catalog is presented as it was before the move.
#[derive(Clone, Copy)]
enum Source {
    /// A view keyed by a schema and a name column: `swapped` are its
    /// schema columns that show `public` on a moved object's rows.
    View {
        key: &'static str,
        name: &'static str,
        swapped: &'static [&'static str],
        lists: Lists,
    },
    /// `pg_class`: relations, with their indexes and owned sequences.
    Class,
    /// `pg_type`: the map's types, with the row types of its relations
    /// and the array types of both.
    Type,
    /// `pg_proc`: the map's functions.
    Proc,
    /// `pg_constraint`: the constraints of the map's relations and types.
    Constraint,
}

/// (schema, catalog, how it is presented).
type Listing = (&'static str, &'static str, Source);

const fn view(
    key: &'static str,
    name: &'static str,
    swapped: &'static [&'static str],
    lists: Lists,
) -> Source {
    Source::View {
        key,
        name,
        swapped,
        lists,
    }
}

const TABLE_SCHEMA: &[&str] = &["table_schema"];
const CONSTRAINT_AND_TABLE_SCHEMA: &[&str] = &["constraint_schema", "table_schema"];
const SCHEMANAME: &[&str] = &["schemaname"];

#[rustfmt::skip]
const VIEWS: &[Listing] = &[
    ("information_schema", "tables", view("table_schema", "table_name", TABLE_SCHEMA, Lists::Relations)),
    ("information_schema", "columns", view("table_schema", "table_name", TABLE_SCHEMA, Lists::Relations)),
    ("information_schema", "views", view("table_schema", "table_name", TABLE_SCHEMA, Lists::Relations)),
    ("information_schema", "table_constraints", view("table_schema", "table_name", CONSTRAINT_AND_TABLE_SCHEMA, Lists::Relations)),
    ("information_schema", "key_column_usage", view("table_schema", "table_name", CONSTRAINT_AND_TABLE_SCHEMA, Lists::Relations)),
    // The constraint's own schema is its table's, which this view does
    // not name: left as it is.
    ("information_schema", "constraint_column_usage", view("table_schema", "table_name", TABLE_SCHEMA, Lists::Relations)),
    ("information_schema", "table_privileges", view("table_schema", "table_name", TABLE_SCHEMA, Lists::Relations)),
    ("information_schema", "triggers", view("event_object_schema", "event_object_table", &["trigger_schema", "event_object_schema"], Lists::Relations)),
    ("information_schema", "sequences", view("sequence_schema", "sequence_name", &["sequence_schema"], Lists::Sequences)),
    ("information_schema", "routines", view("routine_schema", "routine_name", &["specific_schema", "routine_schema"], Lists::Routines)),
    ("pg_catalog", "pg_tables", view("schemaname", "tablename", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_views", view("schemaname", "viewname", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_matviews", view("schemaname", "matviewname", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_indexes", view("schemaname", "tablename", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_sequences", view("schemaname", "sequencename", SCHEMANAME, Lists::Sequences)),
    ("pg_catalog", "pg_stat_user_tables", view("schemaname", "relname", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_stat_all_tables", view("schemaname", "relname", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_statio_user_tables", view("schemaname", "relname", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_stat_user_indexes", view("schemaname", "relname", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_stat_all_indexes", view("schemaname", "relname", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_statio_user_indexes", view("schemaname", "relname", SCHEMANAME, Lists::Relations)),
    ("pg_catalog", "pg_class", Source::Class),
    ("pg_catalog", "pg_constraint", Source::Constraint),
    ("pg_catalog", "pg_type", Source::Type),
    ("pg_catalog", "pg_proc", Source::Proc),
];

/// The catalog a name written as `parts` denotes, if one of [`VIEWS`]:
/// `schema.view`, or a bare `pg_...` one (pg_catalog comes first on every
/// search_path that does not name it).
fn listing(parts: &[Ident]) -> Option<&'static Listing> {
    let (schema, view) = match parts {
        [view] => (None, normalized(view)),
        [schema, view] => (Some(normalized(schema)), normalized(view)),
        _ => return None,
    };
    VIEWS.iter().find(|(s, v, _)| {
        *v == view
            && schema
                .as_deref()
                .map_or(*s == "pg_catalog", |written| written == *s)
    })
}

/// Whether `map` hides anything: `public.` spellings are rewritten and
/// some name moved out of `public`.
pub(crate) fn hides_stale_copies(map: &SchemaMap) -> bool {
    map.requalify_public()
        && (map.tables.values().any(|s| s != "public")
            || map.routines.values().any(|s| s != "public")
            || map.types.values().any(|s| s != "public"))
}

/// Rewrite each catalog read in `statement` (whose table mentions the walk
/// found: `mentions`) so it shows the world before the move: the stale
/// copies left out, the moved objects in `public`. The edits and decisions
/// go to `edits` and `names` (kept in text order).
pub(crate) fn hide_stale_copies(
    sql: &str,
    index: &TextIndex<'_>,
    statement: &Statement,
    mentions: &[TableMention],
    map: &SchemaMap,
    names: &mut Vec<NameUse>,
    edits: &mut Vec<Edit>,
) {
    // The walk's mentions answer the common case (no listing) for free.
    // A look at the last part first: no allocation for the common case.
    let may_list = |m: &TableMention| {
        m.parts.last().is_some_and(|last| {
            VIEWS
                .iter()
                .any(|(_, view, _)| last.value.eq_ignore_ascii_case(view))
        })
    };
    if !mentions
        .iter()
        .any(|m| !m.names_cte && may_list(m) && listing(&m.parts).is_some())
        || !hides_stale_copies(map)
        || !matches!(
            statement,
            Statement::Query(_) | Statement::Insert(_) | Statement::Declare { .. }
        )
    {
        return;
    }
    let mut finder = ListingFinder::default();
    super::hooks::visit(statement, &mut finder);
    let listings: Vec<(&Found, &Listing)> = finder
        .found
        .iter()
        .filter(|f| f.parts.len() > 1 || !finder.cte_names.contains(&normalized(&f.parts[0])))
        .filter_map(|f| Some((f, listing(&f.parts)?)))
        .collect();
    if listings
        .iter()
        .any(|(_, view)| referenced_by_three_parts(sql, view.1))
    {
        return;
    }
    let moved = Moved::of(map);
    let mut changed = false;
    for (found, view) in listings {
        let Some(range) = name_range(sql, index, &found.parts) else {
            continue;
        };
        let alias = if found.aliased {
            String::new()
        } else {
            match last_part_range(sql, index, &found.parts) {
                Some(last) => format!(" AS {}", &sql[last]),
                None => continue,
            }
        };
        let insert = format!("({}){alias}", subquery(view, &moved));
        let offset = range.start;
        edits.push(Edit {
            offset,
            replaced: range.len(),
            insert: insert.into(),
        });
        let decision = Decision::CatalogStaleHidden;
        match names.iter_mut().find(|n| n.offset == offset) {
            Some(name) => name.decision = decision,
            None => names.push(NameUse {
                name: format!("{}.{}", view.0, view.1).into(),
                offset,
                decision,
            }),
        }
        changed = true;
    }
    if changed {
        names.sort_by_key(|n| n.offset);
        edits.sort_by_key(|e| e.offset);
    }
}

/// What the map moved out of `public`, as SQL row lists
/// `('schema', 'name'), ...` (a never-matching `(NULL, NULL)` when empty):
/// `*_moved` name the objects where they are now, `*_both` add their
/// stale copies in `public`.
struct Moved {
    relations_moved: String,
    relations_both: String,
    /// Relations and types: a composite type has a `pg_class` row too.
    classes_moved: String,
    classes_both: String,
    types_moved: String,
    types_both: String,
    routines_moved: String,
    routines_both: String,
    /// The schemas the moved objects are in, and with `public`.
    schemas_moved: String,
    schemas_both: String,
}

impl Moved {
    fn of(map: &SchemaMap) -> Moved {
        fn moved(names: &std::collections::HashMap<String, String>) -> Vec<(&str, &str)> {
            let mut moved: Vec<(&str, &str)> = names
                .iter()
                .filter(|(name, s)| *s != "public" && !name.contains('\\') && !s.contains('\\'))
                .map(|(name, s)| (s.as_str(), name.as_str()))
                .collect();
            moved.sort_unstable();
            moved
        }
        let relations = moved(&map.tables);
        let types = moved(&map.types);
        let routines = moved(&map.routines);
        let classes: Vec<(&str, &str)> = relations.iter().chain(&types).copied().collect();
        let mut schemas: Vec<&str> = relations
            .iter()
            .chain(&types)
            .chain(&routines)
            .map(|(s, _)| *s)
            .collect();
        schemas.sort_unstable();
        schemas.dedup();
        let schemas_moved = literal_list(schemas.iter().copied());
        let schemas_both = literal_list(schemas.iter().copied().chain(["public"]));
        Moved {
            relations_moved: pairs(&relations, false),
            relations_both: pairs(&relations, true),
            classes_moved: pairs(&classes, false),
            classes_both: pairs(&classes, true),
            types_moved: pairs(&types, false),
            types_both: pairs(&types, true),
            routines_moved: pairs(&routines, false),
            routines_both: pairs(&routines, true),
            schemas_moved,
            schemas_both,
        }
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn literal_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<String> = items.map(literal).collect();
    if list.is_empty() {
        "NULL".to_owned()
    } else {
        list.join(", ")
    }
}

/// `('schema', 'name'), ...` for `objects`, and with `stale` their copies
/// in `public` too.
fn pairs(objects: &[(&str, &str)], stale: bool) -> String {
    let mut rows: Vec<String> = objects
        .iter()
        .map(|(s, n)| format!("({}, {})", literal(s), literal(n)))
        .collect();
    if stale {
        rows.extend(
            objects
                .iter()
                .map(|(_, n)| format!("('public', {})", literal(n))),
        );
    }
    if rows.is_empty() {
        "(NULL, NULL)".to_owned()
    } else {
        rows.join(", ")
    }
}

/// The public schema's oid, which a moved object's row shows.
const PUBLIC_OID: &str = "(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'public')";

/// The catalog as it was before the move, for one listing: its rows but
/// the moved objects' and their stale copies', then the moved objects'
/// rows showing `public` (`json_populate_record` replaces one column of a
/// row of the catalog's own type and keeps the others, so the subquery
/// has the catalog's columns in order, whatever the server version).
fn subquery(&(schema, catalog, source): &Listing, moved: &Moved) -> String {
    let from = format!("{schema}.{catalog}");
    match source {
        Source::View {
            key,
            name,
            swapped,
            lists,
        } => {
            let (rows_moved, rows_both) = match lists {
                Lists::Relations | Lists::Sequences => {
                    (&moved.relations_moved, &moved.relations_both)
                }
                Lists::Routines => (&moved.routines_moved, &moved.routines_both),
            };
            let member = |alias: &str, rows: &str| {
                let own = format!("({alias}{key}, {alias}{name}) IN ({rows})");
                match lists {
                    // A sequence a moved table owns (serial, identity)
                    // moved with it; its stale copy is the stale table's.
                    Lists::Sequences => format!(
                        "({own} OR ({alias}{key}, {alias}{name}) IN (SELECT n.nspname, s.relname \
                         FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid \
                         JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
                         JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
                         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                         AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                         AND d.deptype IN ('a', 'i') AND s.relkind = 'S' \
                         AND s.relnamespace = t.relnamespace \
                         AND (n.nspname::pg_catalog.text, t.relname::pg_catalog.text) IN ({rows})))"
                    ),
                    _ => own,
                }
            };
            let json: Vec<String> = swapped
                .iter()
                .map(|column| format!("\"{column}\": \"public\""))
                .collect();
            format!(
                "SELECT * FROM {from} WHERE {hidden} IS NOT TRUE UNION ALL \
                 SELECT r.* FROM {from} AS v CROSS JOIN LATERAL \
                 pg_catalog.json_populate_record(v, '{{{json}}}'::pg_catalog.json) AS r \
                 WHERE {shown}",
                hidden = member("", rows_both),
                json = json.join(", "),
                shown = member("v.", rows_moved),
            )
        }
        Source::Class => {
            let member = |rows: &str| {
                format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_class t \
                     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
                     WHERE t.relnamespace = c.relnamespace \
                     AND (tn.nspname::pg_catalog.text, t.relname::pg_catalog.text) IN ({rows}) \
                     AND (t.oid = c.oid OR EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                     WHERE i.indexrelid = c.oid AND i.indrelid = t.oid) \
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid \
                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                     AND d.refobjid = t.oid AND d.deptype IN ('a', 'i'))))"
                )
            };
            base(&from, "relnamespace", moved, |both| {
                member(pick(both, &moved.classes_moved, &moved.classes_both))
            })
        }
        Source::Type => {
            let member = |types: &str, relations: &str| {
                format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_type e \
                     JOIN pg_catalog.pg_namespace en ON en.oid = e.typnamespace \
                     WHERE e.typnamespace = c.typnamespace AND (e.oid = c.oid OR e.typarray = c.oid) \
                     AND ((en.nspname::pg_catalog.text, e.typname::pg_catalog.text) IN ({types}) \
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_class t WHERE t.oid = e.typrelid \
                     AND (en.nspname::pg_catalog.text, t.relname::pg_catalog.text) IN ({relations}))))"
                )
            };
            base(&from, "typnamespace", moved, |both| {
                member(
                    pick(both, &moved.types_moved, &moved.types_both),
                    pick(both, &moved.relations_moved, &moved.relations_both),
                )
            })
        }
        Source::Constraint => {
            let member = |relations: &str, types: &str| {
                format!(
                    "(EXISTS (SELECT 1 FROM pg_catalog.pg_class t \
                     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
                     WHERE t.oid = c.conrelid AND t.relnamespace = c.connamespace \
                     AND (tn.nspname::pg_catalog.text, t.relname::pg_catalog.text) IN ({relations})) \
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_type e \
                     JOIN pg_catalog.pg_namespace en ON en.oid = e.typnamespace \
                     WHERE e.oid = c.contypid AND e.typnamespace = c.connamespace \
                     AND (en.nspname::pg_catalog.text, e.typname::pg_catalog.text) IN ({types})))"
                )
            };
            base(&from, "connamespace", moved, |both| {
                member(
                    pick(both, &moved.relations_moved, &moved.relations_both),
                    pick(both, &moved.types_moved, &moved.types_both),
                )
            })
        }
        Source::Proc => {
            let member = |rows: &str| {
                format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace pn WHERE pn.oid = c.pronamespace \
                     AND (pn.nspname::pg_catalog.text, c.proname::pg_catalog.text) IN ({rows}))"
                )
            };
            base(&from, "pronamespace", moved, |both| {
                member(pick(both, &moved.routines_moved, &moved.routines_both))
            })
        }
    }
}

/// `both` if `with_stale`, else `moved`.
fn pick<'m>(with_stale: bool, moved: &'m str, both: &'m str) -> &'m str {
    if with_stale { both } else { moved }
}

/// A base catalog keyed by namespace oid (`namespace`), its rows aliased
/// `c` in the test `member(with_stale)` writes: the rows in the moved
/// schemas and `public` that `member(true)` matches (the moved objects and
/// their stale copies) are left out, those `member(false)` matches come
/// back in `public`. The schema test first, so the system's own rows cost
/// one hashed lookup each.
fn base(from: &str, namespace: &str, moved: &Moved, member: impl Fn(bool) -> String) -> String {
    let in_schemas = |schemas: &str| {
        format!(
            "c.{namespace} IN (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname IN ({schemas}))"
        )
    };
    format!(
        "SELECT c.* FROM {from} AS c WHERE ({both} AND {hidden}) IS NOT TRUE UNION ALL \
         SELECT r.* FROM {from} AS c CROSS JOIN LATERAL pg_catalog.json_populate_record(c, \
         pg_catalog.json_build_object('{namespace}', {PUBLIC_OID})) AS r \
         WHERE {in_moved} AND {shown}",
        both = in_schemas(&moved.schemas_both),
        hidden = member(true),
        in_moved = in_schemas(&moved.schemas_moved),
        shown = member(false),
    )
}

/// The byte range of a dotted name in `sql`, checked against the text.
fn name_range(sql: &str, index: &TextIndex<'_>, parts: &[Ident]) -> Option<std::ops::Range<usize>> {
    let start = index.byte_offset(parts.first()?.span.start)?;
    let end = last_part_range(sql, index, parts)?.end;
    let first = parts.first()?;
    let text = sql.get(start..end)?;
    let first_ok = match first.quote_style {
        Some(_) => text.starts_with('"'),
        None => text
            .get(..first.value.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(&first.value)),
    };
    first_ok.then_some(start..end)
}

/// The byte range of the last part of a dotted name, checked against the
/// text (its quotes included).
fn last_part_range(
    sql: &str,
    index: &TextIndex<'_>,
    parts: &[Ident],
) -> Option<std::ops::Range<usize>> {
    let last = parts.last()?;
    let start = index.byte_offset(last.span.start)?;
    let len = match last.quote_style {
        Some(_) => last.value.len() + 2 + last.value.matches('"').count(),
        None => last.value.len(),
    };
    let text = sql.get(start..start + len)?;
    let ok = match last.quote_style {
        Some(_) => text.starts_with('"') && text.ends_with('"'),
        None => text.eq_ignore_ascii_case(&last.value),
    };
    ok.then_some(start..start + len)
}

/// Whether `view` is followed by a dot after a dot somewhere in `sql`
/// (`pg_catalog.pg_tables.tablename`, `information_schema.tables.*`): an
/// alias cannot answer such a reference. Over-approximate on purpose.
fn referenced_by_three_parts(sql: &str, view: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(view) {
        let start = from + at;
        let end = start + view.len();
        from = end;
        let before = lower[..start].trim_end_matches([' ', '\t', '\n', '\r', '"']);
        let after = lower[end..].trim_start_matches([' ', '\t', '\n', '\r', '"']);
        if before.ends_with('.') && after.starts_with('.') {
            return true;
        }
    }
    false
}

/// A FROM item that names a relation.
struct Found {
    parts: Vec<Ident>,
    aliased: bool,
}

#[derive(Default)]
struct ListingFinder {
    found: Vec<Found>,
    /// Every CTE name of the statement: a bare `pg_tables` one of them may
    /// answer to is left alone.
    cte_names: HashSet<String>,
}

impl super::hooks::Hooks for ListingFinder {
    fn query(&mut self, query: &Query) {
        if let Some(with) = &query.with {
            self.cte_names
                .extend(with.cte_tables.iter().map(|c| normalized(&c.alias.name)));
        }
    }

    fn table_factor(&mut self, factor: &TableFactor) {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            inheritance: None,
            sample: None,
            ..
        } = factor
        {
            let parts: Option<Vec<Ident>> = name
                .0
                .iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(i.clone()),
                    ObjectNamePart::Function(_) => None,
                })
                .collect();
            if let Some(parts) = parts {
                self.found.push(Found {
                    parts,
                    aliased: alias.is_some(),
                });
            }
        }
    }
}
