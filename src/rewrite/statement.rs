//! Rewriting one statement: parse, walk, check, and fall back when the AST
//! cannot be trusted.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sqlparser::ast::Ident;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use super::exact::{ExactError, qualify_exact};
use super::fallback::{first_mapped_word, names_in_table_positions, text_is_word};
use super::quote::qualifier;
use super::split::TextIndex;
use super::strings::{contains_public_string, may_name_mapped, resolve_strings};
use super::walk::{Creates, Namespace, TableMention, normalized, walk_statement};
use super::{
    Decision, Edit, FallbackCause, NameUse, OnParseError, Outcome, SchemaMap, quote_identifier,
};

/// Deeply nested reporting queries need more than sqlparser's default of
/// 50; its `recursive-protection` feature keeps growing the stack on the
/// heap, so a high limit cannot overflow the thread's stack while parsing.
pub(crate) const RECURSION_LIMIT: usize = 1000;

/// What happened to one statement.
pub(crate) struct StatementRewrite {
    pub(crate) outcome: Outcome,
    /// Why the statement went to the exact parser, when it did.
    pub(crate) fallback_cause: Option<FallbackCause>,
    pub(crate) names: Vec<NameUse>,
    pub(crate) edits: Vec<Edit>,
    pub(crate) parse_error: Option<String>,
    pub(crate) rejected_table: Option<String>,
}

impl StatementRewrite {
    fn parsed(names: Vec<NameUse>, edits: Vec<Edit>) -> Self {
        let outcome = if edits.is_empty() {
            Outcome::Unchanged
        } else {
            Outcome::Rewritten
        };
        StatementRewrite {
            fallback_cause: None,
            outcome,
            names,
            edits,
            parse_error: None,
            rejected_table: None,
        }
    }
}

/// Stack to have left before parsing, per token. The AST can be as deep as
/// the statement has tokens: sqlparser builds operator chains (`a OR b OR
/// ...`) in a loop that its recursion limit does not count, but the visitor
/// and `Drop` walk them recursively; nested subqueries and CTEs recurse in
/// the parser itself (100 nested CTEs, ~1,600 tokens, took more than a
/// 2 MiB thread stack in a debug build). Generous for debug builds.
const STACK_BYTES_PER_TOKEN: usize = 2048;

/// Stack always wanted before a parse, however short the statement.
const MIN_STACK_LEFT: usize = 256 * 1024;

pub(crate) fn rewrite_statement(
    sql: &str,
    index: &TextIndex<'_>,
    tokens: Vec<TokenWithSpan>,
    map: &SchemaMap,
    policy: OnParseError,
) -> StatementRewrite {
    // Parse, walk and drop the AST where there is stack for its worst
    // depth: on the caller's stack when enough is left (the common case
    // costs one look at the stack pointer), else on a fresh segment sized
    // for it, so a long generated query cannot overflow the thread and
    // abort the process. A fresh segment is reserved, and only committed
    // where touched.
    let wanted = tokens
        .len()
        .saturating_mul(STACK_BYTES_PER_TOKEN)
        .max(MIN_STACK_LEFT);
    stacker::maybe_grow(wanted, wanted.saturating_mul(2), || {
        rewrite_statement_here(sql, index, tokens, map, policy)
    })
}

fn rewrite_statement_here(
    sql: &str,
    index: &TextIndex<'_>,
    tokens: Vec<TokenWithSpan>,
    map: &SchemaMap,
    policy: OnParseError,
) -> StatementRewrite {
    let unparsed = |tokens: &[TokenWithSpan], cause: FallbackCause, error: String| {
        let mut r = unparsed(sql, index, tokens, map, policy, error);
        if r.parse_error.is_some() && r.outcome != Outcome::Unchanged {
            r.fallback_cause = Some(cause);
        }
        r
    };
    let (parsed, tokens) = parse_one(tokens);
    let statement = match parsed {
        Ok(s) => s,
        Err(error) => return unparsed(&tokens, FallbackCause::SqlparserSyntax, error),
    };
    let walk = walk_statement(&statement);
    if let Some(reason) = walk.unsupported {
        return unparsed(&tokens, FallbackCause::UnsupportedForm, reason);
    }
    let (mut names, mut edits) = match resolve(sql, index, &walk.mentions, map) {
        Ok(found) => found,
        Err(reason) => return unparsed(&tokens, FallbackCause::UnplacedName, reason),
    };
    if !walk.strings.is_empty() {
        resolve_strings(sql, index, &walk.strings, map, &mut names, &mut edits);
    }
    super::catalog::hide_stale_copies(
        sql,
        index,
        &statement,
        &walk.mentions,
        map,
        &mut names,
        &mut edits,
    );
    super::search_path::show_client_path(
        sql, index, &tokens, &statement, map, &mut names, &mut edits,
    );

    // Cross-check: every mapped bare name after a table keyword must have
    // been seen by the walk. A miss is an AST form the walk does not know.
    let expected = match names_in_table_positions(&tokens, map, index, sql) {
        Ok(w) => w,
        Err(reason) => return unparsed(&tokens, FallbackCause::UnplacedName, reason),
    };
    let seen: HashSet<usize> = names.iter().map(|n| n.offset).collect();
    let mut missed: Vec<_> = expected
        .into_iter()
        .filter(|w| !seen.contains(&w.offset))
        .collect();
    if !missed.is_empty() {
        // Same tokens, same locations: compare them without converting.
        let columns: HashSet<(u64, u64)> = walk
            .column_locations
            .iter()
            .map(|l| (l.line, l.column))
            .collect();
        missed.retain(|w| !columns.contains(&(w.location.line, w.location.column)));
    }
    if missed.is_empty() {
        let mut names = names;
        if let (Some(own), Some(first)) = (walk.search_path, tokens.first())
            && let Some(offset) = index.byte_offset(first.span.start)
        {
            // Reported at the statement's first word (SET, RESET, DISCARD),
            // which no name shares.
            names.insert(
                0,
                NameUse {
                    name: "search_path".into(),
                    offset,
                    decision: Decision::SessionSearchPath { own },
                },
            );
        }
        return StatementRewrite::parsed(names, edits);
    }
    let error = format!(
        "the rewriter does not know where `{}` stands in this statement",
        missed[0].word.value
    );
    tracing::debug!(%error, "table name outside the AST walk");
    unparsed(&tokens, FallbackCause::CrossCheck, error)
}

/// Parse one statement's tokens. The parser owns the tokens while it parses
/// and hands them back after: cloning every token for it cost about a
/// third as much as the parse itself. Kept out of line: inlined, its
/// temporaries enlarge the caller's frame, and deep ASTs are walked and
/// dropped recursively below that frame.
#[inline(never)]
fn parse_one(
    tokens: Vec<TokenWithSpan>,
) -> (
    Result<sqlparser::ast::Statement, String>,
    Vec<TokenWithSpan>,
) {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let parsed = match parser.parse_statement() {
        Ok(s) if parser.peek_token().token == Token::EOF => Ok(s),
        Ok(_) => {
            let extra = parser.peek_token();
            Err(format!(
                "unexpected {} after a complete statement{}",
                extra.token, extra.span.start
            ))
        }
        Err(e) => Err(e.to_string()),
    };
    (parsed, parser.into_tokens())
}

/// Reject or pass through a statement that names `table`.
fn apply_strict_policy(
    policy: OnParseError,
    table: Option<String>,
    error: String,
) -> StatementRewrite {
    let (outcome, rejected_table) = match policy {
        OnParseError::Reject => (Outcome::Rejected, table),
        _ => (Outcome::PassthroughUnparsed, None),
    };
    StatementRewrite {
        fallback_cause: None,
        outcome,
        names: Vec::new(),
        edits: Vec::new(),
        parse_error: Some(error),
        rejected_table,
    }
}

/// A statement the sqlparser AST cannot answer for: PostgreSQL's own
/// grammar decides (see `exact`). Only a statement PostgreSQL's parser
/// rejects too is left to `policy`: the server will reject it, so `Tokens`
/// and `Passthrough` forward it unchanged and `Reject` refuses it. A parsed
/// statement whose mapped name cannot be located exactly is refused unless
/// the policy is `Passthrough`.
pub(crate) fn unparsed(
    sql: &str,
    index: &TextIndex<'_>,
    tokens: &[TokenWithSpan],
    map: &SchemaMap,
    policy: OnParseError,
    error: String,
) -> StatementRewrite {
    tracing::debug!(%error, ?policy, "statement not rewritten from its AST");
    let table = first_mapped_word(tokens, map);
    let creates = map.create_schema().is_some() && creates_objects(tokens);
    // `nextval('public.users_id_seq')` names no mapped word.
    let public_string = || {
        map.requalify_public()
            && statement_bounds(sql, index, tokens).is_ok_and(|b| contains_public_string(&sql[b]))
    };
    // `to_regclass('users')` names no mapped word either.
    let mapped_string = || {
        tokens
            .iter()
            .any(|t| matches!(&t.token, Token::SingleQuotedString(v) if may_name_mapped(v, map)))
    };
    if table.is_none() && !creates && !public_string() && !mapped_string() {
        // No word names a mapped table: nothing to do whatever the policy.
        return StatementRewrite {
            parse_error: Some(error),
            ..StatementRewrite::parsed(Vec::new(), Vec::new())
        };
    }
    // The text lexes with standard strings: the session hands a copy with
    // its backslash escapes masked when the setting is off.
    let exact = statement_bounds(sql, index, tokens)
        .and_then(|bounds| qualify_exact(sql, bounds, map, true));
    match exact {
        Ok(exact) => {
            tracing::debug!(temp_created = ?exact.temp_created, "qualified by PostgreSQL's grammar");
            StatementRewrite {
                fallback_cause: None,
                // A statement that names no mapped table and creates
                // nothing outside its schema was not a fallback at all.
                outcome: if table.is_none() && exact.edits.is_empty() {
                    Outcome::Unchanged
                } else {
                    Outcome::FallbackTokens
                },
                names: exact.names,
                edits: exact.edits,
                parse_error: Some(error),
                rejected_table: None,
            }
        }
        // Names no mapped table, and PostgreSQL rejects it too: forwarded,
        // the server answers its own syntax error.
        Err(ExactError::Syntax(_)) if table.is_none() => StatementRewrite {
            parse_error: Some(error),
            ..StatementRewrite::parsed(Vec::new(), Vec::new())
        },
        Err(ExactError::Syntax(reason)) => {
            apply_strict_policy(policy, table, format!("{error}; {reason}"))
        }
        Err(ExactError::Unresolved(reason)) => {
            let policy = match policy {
                OnParseError::Passthrough => OnParseError::Passthrough,
                OnParseError::Tokens | OnParseError::Reject => OnParseError::Reject,
            };
            apply_strict_policy(policy, table, format!("{error}; {reason}"))
        }
    }
}

/// Whether the statement creates objects by name: CREATE ..., or an INTO
/// (SELECT INTO; INSERT INTO names an existing table, which is harmless).
fn creates_objects(tokens: &[TokenWithSpan]) -> bool {
    tokens.iter().any(|t| {
        matches!(
            &t.token,
            Token::Word(w) if matches!(w.keyword, Keyword::CREATE | Keyword::INTO)
        )
    })
}

/// The byte range of the statement made of `tokens` (whitespace and
/// comments around it included, the `;` after it excluded). The range must
/// end where the text does or at that `;`.
fn statement_bounds(
    sql: &str,
    index: &TextIndex<'_>,
    tokens: &[TokenWithSpan],
) -> Result<std::ops::Range<usize>, ExactError> {
    let start = tokens.first().and_then(|t| index.byte_offset(t.span.start));
    let end = tokens.last().and_then(|t| index.byte_offset(t.span.end));
    match (start, end) {
        (Some(start), Some(end))
            if start <= end
                && sql
                    .get(end..)
                    .is_some_and(|r| r.is_empty() || r.starts_with(';')) =>
        {
            Ok(start..end)
        }
        _ => Err(ExactError::Unresolved(
            "the statement's bounds in the text are not known".into(),
        )),
    }
}

/// Turn the walk's mentions into decisions and edits at verified offsets.
pub(crate) fn resolve(
    sql: &str,
    index: &TextIndex<'_>,
    mentions: &[TableMention],
    map: &SchemaMap,
) -> Result<(Vec<NameUse>, Vec<Edit>), String> {
    // One entry per offset: the same name can be reached twice (a DML
    // target marked by its statement and visited as a relation).
    let mut by_offset: BTreeMap<usize, (NameUse, Option<Edit>)> = BTreeMap::new();
    for mention in mentions {
        let Some((decision, edit_at)) = decide(sql, index, mention, map)? else {
            continue;
        };
        let first = &mention.parts[0];
        let offset = word_offset(sql, index, first)?;
        let edit = match (&decision, edit_at) {
            (Decision::CreatedIn { schema }, Some(EditAt::ExtensionSchema(at))) => Some(
                Edit::insertion(at, format!(" SCHEMA {}", quote_identifier(schema)).into()),
            ),
            (_, Some(EditAt::ReplaceUpTo(name_offset))) => Some(Edit {
                offset,
                replaced: name_offset - offset,
                insert: format!(
                    "{}.",
                    quote_identifier(decision.qualified_schema().expect("a schema"))
                )
                .into(),
            }),
            (_, Some(EditAt::Before)) => Some(Edit::insertion(
                offset,
                qualifier(sql, offset, decision.qualified_schema().expect("a schema")).into(),
            )),
            _ => None,
        };
        let name = mention
            .parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(".");
        by_offset.entry(offset).or_insert((
            NameUse {
                name: name.into(),
                offset,
                decision,
            },
            edit,
        ));
    }
    let mut names = Vec::with_capacity(by_offset.len());
    let mut edits = Vec::new();
    for (name, edit) in by_offset.into_values() {
        names.push(name);
        edits.extend(edit);
    }
    Ok((names, edits))
}

/// Where a decision's text goes.
enum EditAt {
    /// `schema.` before the name.
    Before,
    /// `schema.` in place of the qualifier, up to the name at this offset.
    ReplaceUpTo(usize),
    /// ` SCHEMA s` at this offset.
    ExtensionSchema(usize),
}

/// What one mention resolves to, or `None` for one that is not reported
/// (a name outside the relation namespace that needs nothing).
fn decide(
    sql: &str,
    index: &TextIndex<'_>,
    mention: &TableMention,
    map: &SchemaMap,
) -> Result<Option<(Decision, Option<EditAt>)>, String> {
    let relation = mention.namespace == Namespace::Relation;
    let mapped = |name: &Ident| {
        let quoted = name.quote_style.is_some();
        match mention.namespace {
            Namespace::Relation => map.schema_of(&name.value, quoted),
            Namespace::Routine => map.routine_schema(&name.value, quoted),
            Namespace::Type => map.type_schema(&name.value, quoted),
            Namespace::Other => None,
        }
    };
    let qualified = |schema: &str| Arc::<str>::from(schema);
    Ok(match &mention.parts[..] {
        [_] if mention.names_cte => Some((Decision::Cte, None)),
        [name] => match (mapped(name), map.create_schema(), mention.creates) {
            // Any temporary relation, mapped or not: the session remembers
            // it (a view over one is temporary too).
            _ if mention.keep_bare && relation => Some((Decision::TempCreated, None)),
            // Only relations are qualified wherever they stand; other
            // names are created in, or called from, their mapped schema
            // through the search_path.
            (Some(schema), _, _) if relation || mention.creates == Creates::Object => Some((
                Decision::QualifiedByMap {
                    schema: qualified(schema),
                },
                Some(EditAt::Before),
            )),
            // Created without a schema: where it landed before the move,
            // not in the first schema of the route's path.
            (None, Some(schema), Creates::Object) => Some((
                Decision::CreatedIn {
                    schema: qualified(schema),
                },
                Some(EditAt::Before),
            )),
            (None, Some(schema), Creates::ExtensionObjects { with_keyword }) => Some((
                Decision::CreatedIn {
                    schema: qualified(schema),
                },
                Some(EditAt::ExtensionSchema(extension_schema_offset(
                    sql,
                    index,
                    name,
                    with_keyword,
                )?)),
            )),
            _ if relation => Some((Decision::NotInMap, None)),
            _ => None,
        },
        [qualifier_ident, name] => {
            let schema_written = normalized(qualifier_ident);
            match (schema_written.as_str(), mapped(name)) {
                // `CREATE TABLE pg_temp.users`: a temporary table that
                // shadows the moved one from now on.
                ("pg_temp", _) if relation => Some((Decision::TempCreated, None)),
                // A legacy `public.users` means the live object, which
                // moved: the map's schema replaces `public`.
                ("public", Some(schema)) if schema != "public" && map.requalify_public() => Some((
                    Decision::RequalifiedFromPublic {
                        schema: qualified(schema),
                    },
                    Some(EditAt::ReplaceUpTo(word_offset(sql, index, name)?)),
                )),
                _ if relation => Some((Decision::AlreadyQualified, None)),
                _ => None,
            }
        }
        _ if relation => Some((Decision::AlreadyQualified, None)),
        _ => None,
    })
}

/// The verified byte offset of an identifier the parser located.
fn word_offset(sql: &str, index: &TextIndex<'_>, ident: &Ident) -> Result<usize, String> {
    index
        .byte_offset(ident.span.start)
        .filter(|&o| {
            let word = Word {
                value: ident.value.clone(),
                quote_style: ident.quote_style,
                keyword: sqlparser::keywords::Keyword::NoKeyword,
            };
            text_is_word(sql, o, &word)
        })
        .ok_or_else(|| {
            format!(
                "the parser's location of `{}` ({}) does not point at it",
                ident.value, ident.span.start
            )
        })
}

/// Where ` SCHEMA s` goes in `CREATE EXTENSION name [WITH] ...`: right
/// after the name, or after its `WITH`.
fn extension_schema_offset(
    sql: &str,
    index: &TextIndex<'_>,
    name: &Ident,
    with_keyword: bool,
) -> Result<usize, String> {
    let end = index
        .byte_offset(name.span.end)
        .filter(|&e| e <= sql.len())
        .ok_or_else(|| format!("no end location for extension `{}`", name.value))?;
    if !with_keyword {
        return Ok(end);
    }
    let rest = &sql[end..];
    let skipped = rest.len() - rest.trim_start().len();
    let word = rest.trim_start().get(..4);
    if word.is_some_and(|w| w.eq_ignore_ascii_case("with")) {
        Ok(end + skipped + 4)
    } else {
        Err(format!(
            "cannot place SCHEMA in CREATE EXTENSION `{}`",
            name.value
        ))
    }
}
