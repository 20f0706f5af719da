//! The search_path a client sees: `current_schema()` and
//! `current_schemas(b)` answer the path the client had before the move (the
//! database's `client_search_path`, PostgreSQL's default `"$user", public`
//! unless configured), not the path the proxy sets on its sessions (the
//! mapped schemas first). `current_schema()` is the schema objects created
//! without a schema land in, which the proxy keeps where it was
//! (`create_schema`); tools take their default schema from it (SQLAlchemy,
//! Alembic) and find objects on the path with `current_schemas` (pgbench
//! looks its tables up with `array_position(current_schemas(true),
//! nspname)`, Rails lists tables with `nspname = ANY
//! (current_schemas(false))`): the catalogs show the moved objects in
//! `public` (see `catalog`), so those lookups find them there.
//!
//! Each call becomes a scalar subquery that evaluates that path as
//! PostgreSQL's `recomputeNamespacePath` does: `$user` is the current
//! role's name, a schema counts only if it exists and the current role may
//! use it, the first in path order wins; `current_schemas(true)` puts the
//! session's temporary schema (once it has one) and `pg_catalog` (unless
//! the path names it) first. The subquery names its column like the call,
//! so a result column keeps its name.
//!
//! Only while the session runs the route's path: after the client's own
//! `SET search_path`, `SessionFacts` leaves the call as written (the server
//! then answers the client's own path). `SHOW search_path` is answered in
//! the session layer (a SHOW's command tag cannot come from a SELECT).

use sqlparser::ast::{Expr, Function, FunctionArguments, Ident, ObjectNamePart, Statement};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::quote::quote_identifier;
use super::split::TextIndex;
use super::walk::normalized;
use super::{Decision, Edit, NameUse, SchemaMap};

/// The word that sends a statement naming no mapped table to the parser
/// anyway, when the map answers the client's schema (`current_schemas`
/// is no match: the prefilter counts words at identifier boundaries).
pub(crate) const PREFILTER_WORDS: [&str; 2] = ["current_schema", "current_schemas"];

/// Replace every `current_schema()` and `current_schemas(true|false)` call
/// of `statement`, or the statement `SHOW search_path`, by the client's
/// path, when `map` has one.
pub(crate) fn show_client_path(
    sql: &str,
    index: &TextIndex<'_>,
    tokens: &[TokenWithSpan],
    statement: &Statement,
    map: &SchemaMap,
    names: &mut Vec<NameUse>,
    edits: &mut Vec<Edit>,
) {
    let Some(path) = map.client_search_path() else {
        return;
    };
    if let Statement::ShowVariable { variable } = statement {
        return show_search_path(sql, index, tokens, variable, path, names, edits);
    }
    // The tokens answer the common case (no such call) without a visit.
    let named = tokens.iter().any(|t| {
        matches!(&t.token, Token::Word(w)
            if w.value.eq_ignore_ascii_case("current_schema")
                || w.value.eq_ignore_ascii_case("current_schemas"))
    });
    if !named {
        return;
    }
    let mut finder = CallFinder::default();
    super::hooks::visit(statement, &mut finder);
    let before = edits.len();
    for call in finder.calls {
        let Some((range, implicit)) = call_range(sql, index, &call) else {
            continue;
        };
        let (name, insert) = match implicit {
            None => ("current_schema", client_schema_query(path)),
            Some(implicit) => ("current_schemas", client_schemas_query(path, implicit)),
        };
        names.push(NameUse {
            name: name.into(),
            offset: range.start,
            decision: Decision::ClientSearchPathShown,
        });
        edits.push(Edit {
            offset: range.start,
            replaced: range.len(),
            insert: insert.into(),
        });
    }
    if edits.len() != before {
        names.sort_by_key(|n| n.offset);
        edits.sort_by_key(|e| e.offset);
    }
}

/// The name under which a `SHOW search_path` answered from the client's
/// path is reported; the session layer gives its answer the command tag
/// `SHOW` (see `Rewrite::search_path_shown_at`).
pub(crate) const SHOW_SEARCH_PATH: &str = "SHOW search_path";

/// Replace `SHOW search_path` (the variable `SHOW` names) by a SELECT of
/// `path` as PostgreSQL shows it.
fn show_search_path(
    sql: &str,
    index: &TextIndex<'_>,
    tokens: &[TokenWithSpan],
    variable: &[Ident],
    path: &[String],
    names: &mut Vec<NameUse>,
    edits: &mut Vec<Edit>,
) {
    if !matches!(variable, [v] if normalized(v) == "search_path") {
        return;
    }
    let mut words = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon));
    let (Some(first), Some(last)) = (words.next(), words.next_back()) else {
        return;
    };
    let (Some(start), Some(end)) = (
        index.byte_offset(first.span.start),
        index.byte_offset(last.span.end),
    ) else {
        return;
    };
    if sql.get(start..end).is_none() {
        return;
    }
    // PostgreSQL prints a path it was SET to with each schema spelled as
    // an identifier (its default reads `"$user", public`).
    let shown: Vec<String> = path.iter().map(|s| quote_identifier(s)).collect();
    names.push(NameUse {
        name: SHOW_SEARCH_PATH.into(),
        offset: start,
        decision: Decision::ClientSearchPathShown,
    });
    edits.push(Edit {
        offset: start,
        replaced: end - start,
        insert: format!(
            "SELECT '{}'::pg_catalog.text AS search_path",
            shown.join(", ").replace('\'', "''")
        )
        .into(),
    });
}

/// One call found: its name parts.
struct Call {
    parts: Vec<Ident>,
    /// Written without parentheses (`current_schema` is a keyword).
    bare: bool,
    /// `current_schemas(b)`, not `current_schema()`.
    plural: bool,
}

#[derive(Default)]
struct CallFinder {
    calls: Vec<Call>,
}

impl super::hooks::Hooks for CallFinder {
    fn expr(&mut self, expr: &Expr) {
        match expr {
            // An unquoted `current_schema` in an expression is always the
            // function: PostgreSQL reserves the word for it.
            Expr::Identifier(i)
                if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("current_schema") =>
            {
                self.calls.push(Call {
                    parts: vec![i.clone()],
                    bare: true,
                    plural: false,
                })
            }
            Expr::Function(f) => self.calls.extend(call_of(f)),
            _ => {}
        }
    }
}

fn call_of(f: &Function) -> Option<Call> {
    let parts: Vec<Ident> = f
        .name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.clone()),
            ObjectNamePart::Function(_) => None,
        })
        .collect::<Option<_>>()?;
    let name = match &parts[..] {
        [n] => normalized(n),
        [s, n] if normalized(s) == "pg_catalog" => normalized(n),
        _ => return None,
    };
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match (name.as_str(), list.args.len()) {
        ("current_schema", 0) => Some(Call {
            parts,
            bare: false,
            plural: false,
        }),
        ("current_schemas", 1) => Some(Call {
            parts,
            bare: false,
            plural: true,
        }),
        _ => None,
    }
}

/// The bytes of a call in `sql`, checked against the text: the name as
/// the parser located it, then exactly `()`, or `(true)` or `(false)` for
/// `current_schemas` (that argument as the second value), with whitespace
/// only (anything else is left as written).
fn call_range(
    sql: &str,
    index: &TextIndex<'_>,
    call: &Call,
) -> Option<(std::ops::Range<usize>, Option<bool>)> {
    let first = call.parts.first()?;
    let last = call.parts.last()?;
    let start = index.byte_offset(first.span.start)?;
    let name_at = index.byte_offset(last.span.start)?;
    let bytes = sql.as_bytes();
    let name_end = name_at + last.value.len();
    if last.quote_style.is_some()
        || !sql
            .get(name_at..name_end)?
            .eq_ignore_ascii_case(&last.value)
        || (call.parts.len() == 1 && start != name_at)
    {
        return None;
    }
    if call.bare {
        let after = bytes.get(name_end).copied();
        return (!after.is_some_and(super::quote::is_identifier_byte))
            .then_some((start..name_end, None));
    }
    let skip = |mut at: usize| {
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        at
    };
    let mut at = skip(name_end);
    if bytes.get(at) != Some(&b'(') {
        return None;
    }
    at = skip(at + 1);
    let mut implicit = None;
    if call.plural {
        let word = |w: &str| {
            sql.get(at..at + w.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(w))
                && !bytes
                    .get(at + w.len())
                    .is_some_and(|b| super::quote::is_identifier_byte(*b))
        };
        let value = if word("true") {
            true
        } else if word("false") {
            false
        } else {
            return None;
        };
        at = skip(at + if value { 4 } else { 5 });
        implicit = Some(value);
    }
    (bytes.get(at) == Some(&b')')).then_some((start..at + 1, implicit))
}

/// `(1, 'first'::text), ...` for `path`, `$user` the current role.
fn path_rows(path: &[String]) -> String {
    let rows: Vec<String> = path
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let schema = if s == "$user" {
                "CURRENT_USER::text".to_owned()
            } else {
                format!("'{}'::text", s.replace('\'', "''"))
            };
            format!("({}, {schema})", i + 1)
        })
        .collect();
    rows.join(", ")
}

/// The scalar subquery answering `current_schema()` on `path`.
fn client_schema_query(path: &[String]) -> String {
    format!(
        "(SELECT n.nspname AS current_schema FROM pg_catalog.pg_namespace n \
         JOIN (VALUES {}) AS p(i, s) ON n.nspname = p.s \
         WHERE pg_catalog.has_schema_privilege(n.oid, 'USAGE') ORDER BY p.i LIMIT 1)",
        path_rows(path)
    )
}

/// The scalar subquery answering `current_schemas(implicit)` on `path`:
/// each usable schema once, in path order; with `implicit`, the session's
/// temporary schema and `pg_catalog` (unless the path names it) first.
/// The cast makes it an array expression where a bare subquery would be
/// read as a set (`x = ANY ((SELECT ...))`); the column keeps its name.
fn client_schemas_query(path: &[String], implicit: bool) -> String {
    let mut implicit_rows = String::new();
    if implicit {
        implicit_rows.push_str(
            " UNION ALL SELECT n.nspname, -1 FROM pg_catalog.pg_namespace n \
             WHERE n.oid = pg_catalog.pg_my_temp_schema()",
        );
        if !path.iter().any(|s| s == "pg_catalog") {
            implicit_rows.push_str(" UNION ALL SELECT 'pg_catalog'::pg_catalog.name, 0");
        }
    }
    format!(
        "((SELECT COALESCE(pg_catalog.array_agg(s.nspname ORDER BY s.i), \
         '{{}}'::pg_catalog.name[]) AS current_schemas FROM (\
         SELECT n.nspname, min(p.i) AS i FROM pg_catalog.pg_namespace n \
         JOIN (VALUES {}) AS p(i, s) ON n.nspname = p.s \
         WHERE pg_catalog.has_schema_privilege(n.oid, 'USAGE') GROUP BY n.nspname{implicit_rows}) AS s)\
         ::pg_catalog.name[])",
        path_rows(path)
    )
}
