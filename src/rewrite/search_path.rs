//! The schema a client sees as its own: `current_schema()` answers the
//! first schema of the path the client had before the move (the
//! database's `client_search_path`, PostgreSQL's default `"$user", public`
//! unless configured), not the first of the path the proxy sets on its
//! sessions (a mapped schema). It is the schema objects created without a
//! schema land in, which the proxy keeps where it was (`create_schema`);
//! tools take their default schema from it (SQLAlchemy, Alembic).
//!
//! Each call becomes a scalar subquery that evaluates that path as
//! PostgreSQL's `recomputeNamespacePath` does: `$user` is the current
//! role's name, a schema counts only if it exists and the current role may
//! use it, the first in path order wins. The subquery names its column like
//! the call, so a result column keeps its name.
//!
//! `current_schemas(b)` is left to the server on purpose: tools look
//! objects up on the path with it (pgbench finds its tables with
//! `array_position(current_schemas(true), nspname)`, Rails lists tables
//! with `nspname = ANY (current_schemas(false))`), and the moved objects
//! are on the route's path, not on the old one.
//!
//! Only while the session runs the route's path: after the client's own
//! `SET search_path`, `SessionFacts` leaves the call as written (the server
//! then answers the client's own path). `SHOW search_path` is not answered
//! (its command tag cannot come from a SELECT): it shows the route's path.

use sqlparser::ast::{Expr, Function, FunctionArguments, Ident, ObjectNamePart, Statement};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::split::TextIndex;
use super::walk::normalized;
use super::{Decision, Edit, NameUse, SchemaMap};

/// The word that sends a statement naming no mapped table to the parser
/// anyway, when the map answers the client's schema (`current_schemas`
/// is no match: the prefilter counts words at identifier boundaries).
pub(crate) const PREFILTER_WORDS: [&str; 1] = ["current_schema"];

/// Replace every `current_schema()` call of `statement` by the first
/// schema of the client's path, when `map` has one.
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
    // The tokens answer the common case (no such call) without a visit.
    let named = tokens.iter().any(
        |t| matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case("current_schema")),
    );
    if !named {
        return;
    }
    let mut finder = CallFinder::default();
    super::hooks::visit(statement, &mut finder);
    let before = edits.len();
    for call in finder.calls {
        let Some(range) = call_range(sql, index, &call) else {
            continue;
        };
        let insert = client_schema_query(path);
        names.push(NameUse {
            name: "current_schema".into(),
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

/// One call found: its name parts.
struct Call {
    parts: Vec<Ident>,
    /// Written without parentheses (`current_schema` is a keyword).
    bare: bool,
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
    (name == "current_schema" && list.args.is_empty()).then_some(Call { parts, bare: false })
}

/// The bytes of a call in `sql`, checked against the text: the name as
/// the parser located it, then exactly `()` with whitespace only (anything
/// else is left as written).
fn call_range(sql: &str, index: &TextIndex<'_>, call: &Call) -> Option<std::ops::Range<usize>> {
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
        return (!after.is_some_and(super::quote::is_identifier_byte)).then_some(start..name_end);
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
    (bytes.get(at) == Some(&b')')).then_some(start..at + 1)
}

/// The scalar subquery answering `current_schema()` on `path`.
fn client_schema_query(path: &[String]) -> String {
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
    format!(
        "(SELECT n.nspname AS current_schema FROM pg_catalog.pg_namespace n \
         JOIN (VALUES {}) AS p(i, s) ON n.nspname = p.s \
         WHERE pg_catalog.has_schema_privilege(n.oid, 'USAGE') ORDER BY p.i LIMIT 1)",
        rows.join(", ")
    )
}
