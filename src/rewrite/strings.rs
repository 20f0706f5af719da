//! `public.` inside string literals that PostgreSQL reads as a relation
//! name: `nextval('public.users_id_seq')`, `'public.users'::regclass`,
//! `to_regclass('public.users')`, the relation argument of
//! `has_table_privilege`, ... (see [`relation_argument`] and
//! [`string_kind_of_cast`]).
//!
//! A bare name the map lists gets its schema inside the literal
//! (`to_regclass('users')` -> `to_regclass('shared_common.users')`), as a
//! bare identifier does: the lookup then never falls through the
//! search_path to a stale copy in `public` (once the moved object is
//! dropped) and ignores a session's own `SET search_path`, whatever
//! `public_qualified` says. A temporary relation of that name keeps it bare
//! (`SessionFacts`). Any other bare name is left to the search_path. A
//! `public.` spelling gets the meaning it has for identifiers under
//! `public_qualified: rewrite`:
//! - a name the map lists -> `'schema.name'`;
//! - a name listed under the map's `public:` entry -> as written;
//! - any other relation name -> `'name'`: `public.` is dropped, so the
//!   server resolves the string exactly as it resolves the bare spelling
//!   (an owned sequence moved with its table and is found in the mapped
//!   schema first; a name only `public` holds is found there). Names
//!   starting with `pg_` keep `public.`: pg_catalog comes before the
//!   search_path, and its relations are all called `pg_...`.
//!
//! Only a plain `'...'` literal whose content needs no unescaping (no
//! quote, no backslash) is read, and only the spellings
//! PostgreSQL's `SplitIdentifierString` reads the same way for certain
//! (`[ws] public|"public" [ws] . [ws] name|"name" [ws]`, the name ASCII
//! when unquoted and at most 63 bytes). Anything else, E-strings and
//! dollar-quoted strings included, is left as written.

use std::sync::Arc;

use sqlparser::ast::{
    DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart,
    Value,
};
use sqlparser::tokenizer::Location;

use super::quote::quote_identifier;
use super::split::TextIndex;
use super::walk::normalized;
use super::{Decision, Edit, NameUse, Rewrite, SchemaMap};

/// PostgreSQL's longest identifier (NAMEDATALEN - 1): a longer name would
/// be truncated, which this module does not follow.
const MAX_NAME_BYTES: usize = 63;

/// What a string names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringKind {
    /// A table, view, sequence (regclass and the functions taking one).
    Relation,
    /// A type (regtype): only a mapped one is requalified.
    Type,
    /// A function (regproc, regprocedure): only a mapped one is
    /// requalified; `with_args` when the name is followed by its argument
    /// types (`'f(int)'`).
    Routine { with_args: bool },
}

/// A string literal in a position PostgreSQL reads as a name.
#[derive(Debug, Clone)]
pub(crate) struct StringMention {
    /// Where the literal's opening quote stands.
    pub(crate) start: Location,
    /// The literal's value as the tokenizer read it.
    pub(crate) value: String,
    pub(crate) kind: StringKind,
}

/// The argument of `function` (lower case, without `pg_catalog.`) called
/// with `args` arguments that PostgreSQL reads as a relation name.
pub(crate) fn relation_argument(function: &str, args: usize) -> Option<(usize, StringKind)> {
    let index = match function {
        "nextval"
        | "currval"
        | "setval"
        | "pg_get_serial_sequence"
        | "to_regclass"
        | "pg_relation_size"
        | "pg_total_relation_size"
        | "pg_table_size"
        | "pg_indexes_size" => Some(0),
        // (table, privilege) or (user, table, privilege).
        "has_table_privilege" | "has_sequence_privilege" | "has_any_column_privilege" => {
            args.checked_sub(2)
        }
        // (table, column, privilege) or (user, table, column, privilege).
        "has_column_privilege" => args.checked_sub(3),
        "to_regtype" => return (args == 1).then_some((0, StringKind::Type)),
        "to_regproc" => {
            return (args == 1).then_some((0, StringKind::Routine { with_args: false }));
        }
        "to_regprocedure" => {
            return (args == 1).then_some((0, StringKind::Routine { with_args: true }));
        }
        _ => None,
    }?;
    (index < args).then_some((index, StringKind::Relation))
}

/// What a cast to `data_type` reads its string as, if a name.
pub(crate) fn string_kind_of_cast(data_type: &DataType) -> Option<StringKind> {
    match data_type {
        DataType::Regclass => Some(StringKind::Relation),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(normalized(i)),
                    ObjectNamePart::Function(_) => None,
                })
                .collect::<Option<_>>()?;
            let type_name = match &parts[..] {
                [t] => t,
                [schema, t] if schema == "pg_catalog" => t,
                _ => return None,
            };
            match type_name.as_str() {
                "regclass" => Some(StringKind::Relation),
                "regtype" => Some(StringKind::Type),
                "regproc" => Some(StringKind::Routine { with_args: false }),
                "regprocedure" => Some(StringKind::Routine { with_args: true }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A plain `'...'` literal expression: its value and where it starts.
/// Parentheses and a cast to text around it are looked through (old
/// dumps spell defaults `nextval(('public.t_id_seq'::text)::regclass)`).
fn plain_literal(expr: &Expr) -> Option<(&str, Location)> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some((s, v.span.start)),
            _ => None,
        },
        Expr::Nested(inner) => plain_literal(inner),
        Expr::Cast {
            expr: inner,
            data_type: DataType::Text | DataType::Varchar(_) | DataType::CharacterVarying(_),
            ..
        } => plain_literal(inner),
        _ => None,
    }
}

/// The name-reading string literals of one expression node (a call, a
/// cast, a typed string), appended to `out`.
pub(crate) fn strings_of(expr: &Expr, out: &mut Vec<StringMention>) {
    let mut push = |inner: &Expr, kind| {
        if let Some((value, start)) = plain_literal(inner) {
            out.push(StringMention {
                start,
                value: value.to_owned(),
                kind,
            });
        }
    };
    match expr {
        Expr::Function(function) => {
            if let Some((arg, kind)) = function_argument(function) {
                push(arg, kind);
            }
        }
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => {
            if let Some(kind) = string_kind_of_cast(data_type) {
                push(inner, kind);
            }
        }
        Expr::TypedString(typed) => {
            if let (Some(kind), Value::SingleQuotedString(s)) =
                (string_kind_of_cast(&typed.data_type), &typed.value.value)
            {
                out.push(StringMention {
                    start: typed.value.span.start,
                    value: s.clone(),
                    kind,
                });
            }
        }
        _ => {}
    }
}

/// The argument of a call that names a relation, if the function is one
/// of [`relation_argument`]'s (optionally `pg_catalog.`-qualified).
fn function_argument(function: &Function) -> Option<(&Expr, StringKind)> {
    let name = match &function.name.0[..] {
        [ObjectNamePart::Identifier(f)] => normalized(f),
        [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(f)]
            if normalized(s) == "pg_catalog" =>
        {
            normalized(f)
        }
        _ => return None,
    };
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let (index, kind) = relation_argument(&name, list.args.len())?;
    match &list.args[index] {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some((e, kind)),
        _ => None,
    }
}

/// A `public.NAME` spelling inside a literal's content.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PublicSpelling {
    /// Bytes of the content from the start of `public` to the start of the
    /// name: what a rewrite replaces.
    pub(crate) qualifier: std::ops::Range<usize>,
    /// The name as PostgreSQL stores it (folded unless quoted).
    pub(crate) name: String,
}

fn is_space(b: u8) -> bool {
    // PostgreSQL's scanner_isspace (releases differ on \v: not read).
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// One part of a dotted name at `at`: (folded name, end, quoted).
fn part(content: &[u8], at: usize) -> Option<(String, usize, bool)> {
    if content.get(at) == Some(&b'"') {
        let mut name = Vec::new();
        let mut i = at + 1;
        loop {
            match content.get(i)? {
                b'"' if content.get(i + 1) == Some(&b'"') => {
                    name.push(b'"');
                    i += 2;
                }
                b'"' => break,
                &b => {
                    name.push(b);
                    i += 1;
                }
            }
        }
        let name = String::from_utf8(name).ok()?;
        return (!name.is_empty()).then_some((name, i + 1, true));
    }
    let end = content[at..]
        .iter()
        .position(|&b| b == b'.' || is_space(b))
        .map_or(content.len(), |p| at + p);
    let word = &content[at..end];
    let plain = !word.is_empty()
        && word
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    plain.then(|| {
        let name = String::from_utf8_lossy(word).to_ascii_lowercase();
        (name, end, false)
    })
}

fn skip_space(content: &[u8], mut at: usize) -> usize {
    while content.get(at).is_some_and(|&b| is_space(b)) {
        at += 1;
    }
    at
}

/// Read `content` as PostgreSQL's `SplitIdentifierString(.., '.')` would,
/// and answer a two-part name whose schema is `public`.
pub(crate) fn public_spelling(content: &str) -> Option<PublicSpelling> {
    let bytes = content.as_bytes();
    let start = skip_space(bytes, 0);
    let (schema, after_schema, _) = part(bytes, start)?;
    if schema != "public" {
        return None;
    }
    let dot = skip_space(bytes, after_schema);
    if bytes.get(dot) != Some(&b'.') {
        return None;
    }
    let name_at = skip_space(bytes, dot + 1);
    let (name, after_name, _) = part(bytes, name_at)?;
    // Nothing but whitespace after: a third part or trailing text is not ours.
    if skip_space(bytes, after_name) != bytes.len() || name.len() > MAX_NAME_BYTES {
        return None;
    }
    Some(PublicSpelling {
        qualifier: start..name_at,
        name,
    })
}

/// Whether `text` may hold a string that starts with a `public.`
/// spelling: a quote, then `public` or `"public"` (any case, whitespace
/// around allowed as [`public_spelling`] allows it) and a dot. The
/// prefilter's cheap trigger (one `memchr` pass for dots), asked only when
/// no mapped name occurs; [`public_spelling`] decides.
pub(crate) fn contains_public_string(text: &str) -> bool {
    let bytes = text.as_bytes();
    let space_before = |mut at: usize| {
        while at > 0 && is_space(bytes[at - 1]) {
            at -= 1;
        }
        at
    };
    memchr::memchr_iter(b'.', bytes).any(|dot| {
        let mut end = space_before(dot);
        let quoted = end > 0 && bytes[end - 1] == b'"';
        if quoted {
            end -= 1;
        }
        if end < 6 || !bytes[end - 6..end].eq_ignore_ascii_case(b"public") {
            return false;
        }
        let mut start = end - 6;
        if quoted {
            if start == 0 || bytes[start - 1] != b'"' {
                return false;
            }
            start -= 1;
        }
        let start = space_before(start);
        start > 0 && bytes[start - 1] == b'\''
    })
}

/// Decisions and edits for the string mentions of one statement, added to
/// `names` and `edits` in text order. Nothing unless `public.` spellings
/// are rewritten.
pub(crate) fn resolve_strings(
    sql: &str,
    index: &TextIndex<'_>,
    mentions: &[StringMention],
    map: &SchemaMap,
    names: &mut Vec<NameUse>,
    edits: &mut Vec<Edit>,
) {
    let before = (names.len(), edits.len());
    for (i, mention) in mentions.iter().enumerate() {
        // One literal reached twice (a call and a cast around it) counts once.
        if mentions[..i].iter().any(|m| m.start == mention.start) {
            continue;
        }
        let Some(open) = index.byte_offset(mention.start) else {
            continue;
        };
        let (name, edit) = decide(sql, open, &mention.value, mention.kind, map)
            .unwrap_or_else(|| (left_to_search_path(open, &mention.value), None));
        names.push(name);
        edits.extend(edit);
    }
    if (names.len(), edits.len()) != before {
        names.sort_by_key(|n| n.offset);
        edits.sort_by_key(|e| e.offset);
    }
}

/// The decision for a literal whose opening quote is at `open` of `sql`
/// and whose value is `value`; `None` when it is no spelling this module
/// reads exactly (a bare name, or a `public.` one when such spellings are
/// rewritten).
pub(crate) fn decide(
    sql: &str,
    open: usize,
    value: &str,
    kind: StringKind,
    map: &SchemaMap,
) -> Option<(NameUse, Option<Edit>)> {
    // The literal as written must be exactly its value between two quotes:
    // no escapes, no continuation, no prefix.
    let content_at = open + 1;
    let close = content_at + value.len();
    if sql.as_bytes().get(open) != Some(&b'\'')
        || sql.as_bytes().get(close) != Some(&b'\'')
        || sql.get(content_at..close) != Some(value)
        || value.contains(['\'', '\\'])
        || open
            .checked_sub(1)
            .is_some_and(|i| super::quote::is_identifier_byte(sql.as_bytes()[i]))
    {
        return None;
    }
    // A regprocedure string names its function before the argument list.
    let named = match kind {
        StringKind::Routine { with_args: true } => &value[..argument_list_start(value)?],
        _ => value,
    };
    let mapped = |name: &str, quoted: bool| match kind {
        StringKind::Relation => map.schema_of(name, quoted),
        StringKind::Type => map.type_schema(name, quoted),
        StringKind::Routine { .. } => map.routine_schema(name, quoted),
    };
    let Some(spelling) = public_spelling(named) else {
        return decide_bare(content_at, named, mapped);
    };
    if !map.requalify_public() {
        return None;
    }
    let offset = content_at + spelling.qualifier.start;
    let replaced = spelling.qualifier.len();
    let (decision, insert): (Decision, Option<Arc<str>>) = match mapped(&spelling.name, true) {
        Some("public") => (Decision::AlreadyQualified, None),
        Some(schema) if schema.contains('\\') => (Decision::AlreadyQualified, None),
        Some(schema) => (
            Decision::RequalifiedStringFromPublic {
                schema: schema.into(),
            },
            Some(string_qualifier(schema)),
        ),
        None if kind == StringKind::Relation
            && !spelling.name.starts_with("pg_")
            && map.drop_public_in_strings() =>
        {
            (Decision::PublicDroppedFromString, Some("".into()))
        }
        None => (Decision::AlreadyQualified, None),
    };
    let name = NameUse {
        name: named
            .trim_matches(|c: char| c.is_ascii() && is_space(c as u8))
            .into(),
        offset,
        decision,
    };
    let edit = insert.map(|insert| Edit {
        offset,
        replaced,
        insert,
    });
    Some((name, edit))
}

/// `schema.` as it goes inside a literal: quoted as an identifier when it
/// must be, a quote doubled.
fn string_qualifier(schema: &str) -> Arc<str> {
    format!("{}.", quote_identifier(schema).replace('\'', "''")).into()
}

/// A bare name (`'users'`, `' "Users" '`) starting `content_at`: the map's
/// schema goes in front of it, so the server never resolves it through the
/// search_path (which may reach a stale copy in `public`). A name the map
/// lists under `public` gets `public.` (a same-named object in a mapped
/// schema would otherwise come first). `None` for anything but one name.
fn decide_bare<'m>(
    content_at: usize,
    content: &str,
    mapped: impl Fn(&str, bool) -> Option<&'m str>,
) -> Option<(NameUse, Option<Edit>)> {
    let bytes = content.as_bytes();
    let at = skip_space(bytes, 0);
    let (name, after, quoted) = part(bytes, at)?;
    if skip_space(bytes, after) != bytes.len() || name.len() > MAX_NAME_BYTES {
        return None;
    }
    let offset = content_at + at;
    let schema = mapped(&name, quoted).filter(|s| !s.contains('\\'));
    let Some(schema) = schema else {
        return Some((left_to_search_path_named(offset, name), None));
    };
    let name = NameUse {
        name: name.into(),
        offset,
        decision: Decision::QualifiedStringByMap {
            schema: schema.into(),
        },
    };
    let edit = Edit::insertion(offset, string_qualifier(schema));
    Some((name, Some(edit)))
}

/// Where a regprocedure string's argument list starts (its first `(`
/// outside double quotes, as PostgreSQL's `parseNameAndArgTypes` finds
/// it), with the whitespace before it.
fn argument_list_start(value: &str) -> Option<usize> {
    let mut quoted = false;
    let paren = value.bytes().position(|b| {
        if b == b'"' {
            quoted = !quoted;
        }
        b == b'(' && !quoted
    })?;
    let bytes = value.as_bytes();
    let mut end = paren;
    while end > 0 && is_space(bytes[end - 1]) {
        end -= 1;
    }
    Some(end)
}

/// Whether a literal's `value` is a bare name the map lists (of any kind,
/// a function with its argument list too): such a literal sends a
/// statement sqlparser cannot read to PostgreSQL's grammar, which then
/// decides whether it stands where a name is read.
pub(crate) fn may_name_mapped(value: &str, map: &SchemaMap) -> bool {
    let named = argument_list_start(value).map_or(value, |end| &value[..end]);
    let bytes = named.as_bytes();
    let at = skip_space(bytes, 0);
    part(bytes, at).is_some_and(|(name, after, quoted)| {
        skip_space(bytes, after) == bytes.len()
            && (map.schema_of(&name, quoted).is_some()
                || map.type_schema(&name, quoted).is_some()
                || map.routine_schema(&name, quoted).is_some())
    })
}

/// The record of a name-reading literal left as written (see
/// [`Decision::StringLeftToSearchPath`]), at the literal's content.
fn left_to_search_path(open: usize, value: &str) -> NameUse {
    left_to_search_path_named(open + 1, value.into())
}

fn left_to_search_path_named(offset: usize, name: String) -> NameUse {
    NameUse {
        name: name.into(),
        offset,
        decision: Decision::StringLeftToSearchPath,
    }
}

/// The relation a `PublicDroppedFromString` name at `offset` of `sql`
/// names (as stored), for the session's temporary relations.
pub(crate) fn dropped_relation(sql: &str, offset: usize) -> Option<String> {
    let rest = sql.get(offset..)?;
    let content = &rest[..rest.find('\'')?];
    public_spelling(content).map(|s| s.name)
}

impl Rewrite {
    /// Leave as written every string this rewrite read from a copy that
    /// differs from the text sent over the literal (`lexed` masks backslash
    /// escapes and non-UTF-8 characters with letters, so a name read there
    /// may not be the name the server reads). `original` is the text sent.
    pub fn keep_masked_strings(&mut self, lexed: &str, original: &[u8]) {
        let lexed = lexed.as_bytes();
        let mut undone = Vec::new();
        for name in &mut self.names {
            if !matches!(
                name.decision,
                Decision::RequalifiedStringFromPublic { .. }
                    | Decision::PublicDroppedFromString
                    | Decision::QualifiedStringByMap { .. }
            ) {
                continue;
            }
            let literal = literal_around(lexed, name.offset);
            let same = literal.is_some_and(|r| lexed.get(r.clone()) == original.get(r));
            if !same {
                name.decision = Decision::AlreadyQualified;
                undone.push(name.offset);
            }
        }
        self.undo_edits_at(&undone);
    }

    /// Remove the edits at these offsets (a string decision's edit starts
    /// where its name does).
    pub(crate) fn undo_edits_at(&mut self, offsets: &[usize]) {
        if offsets.is_empty() {
            return;
        }
        self.edits.retain(|e| !offsets.contains(&e.offset));
        if self.edits.is_empty() && self.outcome == super::Outcome::Rewritten {
            self.outcome = super::Outcome::Unchanged;
        }
    }
}

/// The bytes of the literal (quotes included) holding `offset`: from the
/// last quote before it to the first after it (the literal holds none).
fn literal_around(text: &[u8], offset: usize) -> Option<std::ops::Range<usize>> {
    let open = text.get(..offset)?.iter().rposition(|&b| b == b'\'')?;
    let close = offset + text.get(offset..)?.iter().position(|&b| b == b'\'')?;
    Some(open..close + 1)
}
