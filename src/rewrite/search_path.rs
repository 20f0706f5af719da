//! The search_path a client sees: `current_schema()` and
//! `current_schemas(b)` answer the path the client had before the move
//! (the database's `client_search_path`, PostgreSQL's default `"$user",
//! public` unless configured), not the one the proxy sets on its sessions
//! (the mapped schemas first). Tools take their default schema from these
//! (SQLAlchemy, Alembic), and catalog filters use them (`schemaname =
//! current_schema()`).
//!
//! Each call becomes a scalar subquery that evaluates that path as
//! PostgreSQL's `recomputeNamespacePath` does: `$user` is the current
//! role's name, a schema counts only if it exists and the current role may
//! use it, each once, in path order; with `true`, the session's temporary
//! schema (once it exists) and `pg_catalog` come first. The subquery names
//! its column like the call, so a result column keeps its name.
//!
//! Only while the session runs the route's path: after the client's own
//! `SET search_path`, `SessionFacts` leaves the call as written (the server
//! then answers the client's own path). `SHOW search_path` is not answered
//! (its command tag cannot come from a SELECT): it shows the route's path.

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart,
    Statement, Value, Visit, Visitor,
};
use sqlparser::tokenizer::{Token, TokenWithSpan};
use std::ops::ControlFlow;

use super::split::TextIndex;
use super::walk::normalized;
use super::{Decision, Edit, NameUse, SchemaMap};

/// The words that send a statement naming no mapped table to the parser
/// anyway, when the map answers the client's search_path.
pub(crate) const PREFILTER_WORDS: [&str; 2] = ["current_schema", "current_schemas"];

/// Replace every `current_schema()`/`current_schemas(true|false)` call of
/// `statement` by the client's path, when `map` has one.
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
    let named = tokens.iter().any(|t| {
        matches!(&t.token, Token::Word(w) if w.value.len() >= 14
            && w.value[..14].eq_ignore_ascii_case("current_schema"))
    });
    if !named {
        return;
    }
    let mut finder = CallFinder::default();
    let _ = statement.visit(&mut finder);
    let before = edits.len();
    for call in finder.calls {
        let Some(range) = call_range(sql, index, &call) else {
            continue;
        };
        let Some(insert) = client_path_query(path, call.implicit) else {
            continue;
        };
        names.push(NameUse {
            name: if call.implicit.is_some() {
                "current_schemas".into()
            } else {
                "current_schema".into()
            },
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

/// One call found: its name parts and, for `current_schemas`, the literal
/// argument.
struct Call {
    parts: Vec<Ident>,
    /// `Some(include_implicit)` for `current_schemas`, `None` for
    /// `current_schema`.
    implicit: Option<bool>,
    /// Written without parentheses (`current_schema` is a keyword).
    bare: bool,
}

#[derive(Default)]
struct CallFinder {
    calls: Vec<Call>,
}

impl Visitor for CallFinder {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            // An unquoted `current_schema` in an expression is always the
            // function: PostgreSQL reserves the word for it.
            Expr::Identifier(i)
                if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("current_schema") =>
            {
                self.calls.push(Call {
                    parts: vec![i.clone()],
                    implicit: None,
                    bare: true,
                })
            }
            Expr::Function(f) => self.calls.extend(call_of(f)),
            _ => {}
        }
        ControlFlow::Continue(())
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
    let implicit = match (name.as_str(), &list.args[..]) {
        ("current_schema", []) => None,
        ("current_schemas", [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))]) => {
            match v.value {
                Value::Boolean(b) => Some(b),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Call {
        parts,
        implicit,
        bare: false,
    })
}

/// The bytes of a call in `sql`, checked against the text: the name as
/// the parser located it, then exactly `()` or `(true|false)` with
/// whitespace only (anything else is left as written).
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
    if let Some(b) = call.implicit {
        let word = if b { "true" } else { "false" };
        if !sql.get(at..at + word.len())?.eq_ignore_ascii_case(word) {
            return None;
        }
        at = skip(at + word.len());
    }
    (bytes.get(at) == Some(&b')')).then_some(start..at + 1)
}

/// The scalar subquery answering `current_schema()` (`implicit: None`)
/// or `current_schemas(implicit)` on `path`. `None` when the path names
/// `pg_catalog` or `pg_temp` and implicit schemas are asked for (their
/// place then depends on the path; left to the server).
fn client_path_query(path: &[String], implicit: Option<bool>) -> Option<String> {
    if implicit == Some(true) && path.iter().any(|s| s == "pg_catalog" || s == "pg_temp") {
        return None;
    }
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
    let explicit = format!(
        "SELECT n.nspname, pg_catalog.min(p.i) AS i FROM pg_catalog.pg_namespace n \
         JOIN (VALUES {}) AS p(i, s) ON n.nspname = p.s \
         WHERE pg_catalog.has_schema_privilege(n.oid, 'USAGE') GROUP BY n.nspname",
        rows.join(", ")
    );
    Some(match implicit {
        None => format!(
            "(SELECT x.nspname AS current_schema FROM ({explicit}) AS x ORDER BY x.i LIMIT 1)"
        ),
        Some(with_implicit) => {
            let implicit = if with_implicit {
                " UNION ALL SELECT n.nspname, -1 FROM pg_catalog.pg_namespace n \
                 WHERE n.oid = pg_catalog.pg_my_temp_schema() \
                 UNION ALL SELECT 'pg_catalog'::pg_catalog.name, 0"
            } else {
                ""
            };
            format!(
                "(SELECT COALESCE(pg_catalog.array_agg(x.nspname ORDER BY x.i), \
                 '{{}}') AS current_schemas FROM ({explicit}{implicit}) AS x)"
            )
        }
    })
}
