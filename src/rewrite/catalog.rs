//! Catalog listings without the stale copies: a FROM reference to one of
//! the catalog views that list objects by schema and name
//! (`information_schema.tables`, `pg_tables`, `pg_sequences`, ...) becomes
//! a subquery that leaves out what the map says moved: `public.X` for every
//! `X` the map lists under another schema, and (for the sequence views) the
//! sequences owned by such a table. The reference keeps the name it was
//! written with as its alias, so the rest of the statement reads the same
//! columns under the same name:
//!
//! ```text
//! FROM information_schema.tables
//! -> FROM (SELECT * FROM information_schema.tables
//!          WHERE NOT (table_schema = 'public' AND table_name IN ('users', ...))) AS tables
//! ```
//!
//! Only under `public_qualified: rewrite` (with `keep`, tools must reach the
//! stale copies) and only in statements that read (SELECT, INSERT ...
//! SELECT, DECLARE ... CURSOR FOR). A statement that names a view through a
//! three-part column reference (`pg_catalog.pg_tables.tablename`), which an
//! alias cannot answer to, is left as written.

use std::collections::HashSet;

use sqlparser::ast::{Ident, ObjectNamePart, Query, Statement, TableFactor};

use super::split::TextIndex;
use super::walk::{TableMention, normalized};
use super::{Decision, Edit, NameUse, SchemaMap};

/// The words that send a statement naming no mapped table to the parser
/// anyway, when the map hides stale copies: every view below is named
/// through one of them.
pub(crate) const PREFILTER_WORDS: [&str; 7] = [
    "information_schema",
    "pg_tables",
    "pg_views",
    "pg_matviews",
    "pg_indexes",
    "pg_sequences",
    "pg_proc",
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

/// (schema, view, schema column, name column, what it lists). The schema
/// "column" is an expression for a catalog keyed by namespace oid.
type Listing = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Lists,
);

#[rustfmt::skip]
const VIEWS: &[Listing] = &[
    ("information_schema", "tables", "table_schema", "table_name", Lists::Relations),
    ("information_schema", "columns", "table_schema", "table_name", Lists::Relations),
    ("information_schema", "views", "table_schema", "table_name", Lists::Relations),
    ("information_schema", "table_constraints", "table_schema", "table_name", Lists::Relations),
    ("information_schema", "key_column_usage", "table_schema", "table_name", Lists::Relations),
    ("information_schema", "constraint_column_usage", "table_schema", "table_name", Lists::Relations),
    ("information_schema", "table_privileges", "table_schema", "table_name", Lists::Relations),
    ("information_schema", "triggers", "event_object_schema", "event_object_table", Lists::Relations),
    ("information_schema", "sequences", "sequence_schema", "sequence_name", Lists::Sequences),
    ("information_schema", "routines", "routine_schema", "routine_name", Lists::Routines),
    ("pg_catalog", "pg_tables", "schemaname", "tablename", Lists::Relations),
    ("pg_catalog", "pg_views", "schemaname", "viewname", Lists::Relations),
    ("pg_catalog", "pg_matviews", "schemaname", "matviewname", Lists::Relations),
    ("pg_catalog", "pg_indexes", "schemaname", "tablename", Lists::Relations),
    ("pg_catalog", "pg_sequences", "schemaname", "sequencename", Lists::Sequences),
    // `oid` is an ordinary column since PostgreSQL 12, so `SELECT *` keeps
    // it (`pg_function_is_visible(oid)`).
    ("pg_catalog", "pg_proc", "pronamespace::pg_catalog.regnamespace::pg_catalog.text", "proname", Lists::Routines),
];

/// The catalog view a name written as `parts` denotes, if one of [`VIEWS`]:
/// `schema.view`, or a bare `pg_...` view (pg_catalog comes first on every
/// search_path that does not name it).
fn listing(parts: &[Ident]) -> Option<&'static Listing> {
    let (schema, view) = match parts {
        [view] => (None, normalized(view)),
        [schema, view] => (Some(normalized(schema)), normalized(view)),
        _ => return None,
    };
    VIEWS.iter().find(|(s, v, ..)| {
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
            || map.routines.values().any(|s| s != "public"))
}

/// Rewrite each catalog listing read in `statement` (whose table mentions
/// the walk found: `mentions`) so it leaves out the stale copies; the
/// edits and decisions go to `edits` and `names` (kept in text order).
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
                .any(|(_, view, ..)| last.value.eq_ignore_ascii_case(view))
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
        let insert = format!("({}){alias}", subquery(view, map));
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

/// `(SELECT * FROM schema.view WHERE NOT (...))` for one listing.
fn subquery(
    &(schema, view, schema_column, name_column, lists): &Listing,
    map: &SchemaMap,
) -> String {
    let moved = |names: &std::collections::HashMap<String, String>| {
        let mut moved: Vec<&str> = names
            .iter()
            .filter(|(name, s)| *s != "public" && !name.contains('\\'))
            .map(|(name, _)| name.as_str())
            .collect();
        moved.sort_unstable();
        moved
            .iter()
            .map(|n| format!("'{}'", n.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let relations = moved(&map.tables);
    let list = |names: &str| {
        if names.is_empty() {
            "NULL".to_owned()
        } else {
            names.to_owned()
        }
    };
    let hidden = match lists {
        Lists::Relations => format!("{name_column} IN ({})", list(&relations)),
        Lists::Routines => format!("{name_column} IN ({})", list(&moved(&map.routines))),
        // A sequence a moved table owns (serial, identity) moved with it:
        // its stale copy is owned by the table's stale copy.
        Lists::Sequences => format!(
            "({name_column} IN ({relations}) OR {name_column} IN (SELECT s.relname \
             FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid \
             JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND d.deptype IN ('a', 'i') AND s.relkind = 'S' \
             AND s.relnamespace = t.relnamespace AND n.nspname = 'public' \
             AND t.relname IN ({relations})))",
            relations = list(&relations)
        ),
    };
    format!("SELECT * FROM {schema}.{view} WHERE NOT ({schema_column} = 'public' AND {hidden})")
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
