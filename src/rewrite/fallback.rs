//! The keyword cross-check on a statement's tokens: where a mapped name
//! stands in a table position that the sqlparser AST walk must have seen.
//!
//! It never qualifies anything itself: a statement whose name the walk
//! missed goes to the exact fallback (`exact`, PostgreSQL's grammar). A
//! table position is a mapped name right after FROM, JOIN, INTO, UPDATE,
//! TABLE, ONLY, TRUNCATE, LOCK, COPY, REFERENCES, ON or USING, a VACUUM /
//! ANALYZE / CLUSTER table, `OWNED BY t.col` or `(LIKE t`, not qualified
//! and not a function call.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Word};

use super::SchemaMap;
use super::split::TextIndex;

/// Keywords after which a mapped name stands in a table position.
const TABLE_KEYWORDS: &[Keyword] = &[
    Keyword::FROM,
    Keyword::JOIN,
    Keyword::INTO,
    Keyword::UPDATE,
    Keyword::TABLE,
    Keyword::ONLY,
    Keyword::TRUNCATE,
    Keyword::LOCK,
    Keyword::COPY,
    Keyword::REFERENCES,
];

/// Keywords whose following name the AST walk must have accounted for: the
/// list plus `ON` and `USING`, which introduce tables in CREATE INDEX,
/// GRANT, CREATE TRIGGER, MERGE and DELETE.
fn is_cross_check_keyword(k: Keyword) -> bool {
    TABLE_KEYWORDS.contains(&k) || matches!(k, Keyword::ON | Keyword::USING)
}

/// A bare word in a table position of the token stream.
pub(crate) struct TableWord<'t> {
    pub(crate) word: &'t Word,
    pub(crate) offset: usize,
    pub(crate) location: Location,
}

/// The map's schema for a word, as Postgres would match it.
pub(crate) fn schema_of_word<'m>(map: &'m SchemaMap, word: &Word) -> Option<&'m str> {
    map.schema_of(&word.value, word.quote_style.is_some())
}

/// The first word of the statement (outside literals and comments: those
/// are never `Word` tokens) that names a mapped table, folded as Postgres
/// folds it.
pub(crate) fn first_mapped_word(tokens: &[TokenWithSpan], map: &SchemaMap) -> Option<String> {
    tokens.iter().find_map(|t| match &t.token {
        Token::Word(w) if schema_of_word(map, w).is_some() => Some(super::quote::fold_identifier(
            &w.value,
            w.quote_style.is_some(),
        )),
        _ => None,
    })
}

/// Mapped bare words right after one of `keywords`, not qualified and not
/// called. `Err` when a location does not point at the word's text.
fn mapped_words_after<'t>(
    tokens: &'t [TokenWithSpan],
    is_table_keyword: fn(Keyword) -> bool,
    map: &SchemaMap,
    index: &TextIndex<'_>,
    sql: &str,
) -> Result<Vec<TableWord<'t>>, String> {
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let mut found = Vec::new();
    for (i, t) in significant.iter().enumerate() {
        let Token::Word(word) = &t.token else {
            continue;
        };
        if schema_of_word(map, word).is_none() {
            continue;
        }
        let after_keyword = i > 0
            && matches!(&significant[i - 1].token,
                Token::Word(k) if k.quote_style.is_none() && is_table_keyword(k.keyword));
        let maintained = is_maintained_table(&significant, i);
        let owner = is_owned_by_column(&significant, i);
        let table_position =
            after_keyword || maintained || owner || is_like_source(&significant, i);
        let next = significant.get(i + 1).map(|n| &n.token);
        // In VACUUM/ANALYZE a `(` after the table opens its column list; in
        // `OWNED BY t.col` the `.` leads to the column, not from a schema.
        let qualified_or_called = match next {
            Some(Token::Period) => !owner,
            Some(Token::LParen) => !maintained,
            _ => false,
        };
        if !table_position || qualified_or_called {
            continue;
        }
        let offset = index
            .byte_offset(t.span.start)
            .filter(|&o| text_is_word(sql, o, word))
            .ok_or_else(|| format!("token `{word}` has no matching location"))?;
        found.push(TableWord {
            word,
            offset,
            location: t.span.start,
        });
    }
    Ok(found)
}

fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.keyword == keyword)
}

/// `CREATE TABLE t (LIKE users INCLUDING ALL)`: `LIKE` right after `(` or
/// `,` only occurs as a table-like clause, never as the LIKE operator.
/// `... OWNED BY t.col` (ALTER/CREATE SEQUENCE, which sqlparser cannot
/// always parse): `t` is a table when exactly `t . col` follows BY, not
/// `schema . t . col`.
fn is_owned_by_column(significant: &[&TokenWithSpan], i: usize) -> bool {
    i >= 2
        && is_keyword(&significant[i - 1].token, Keyword::BY)
        && is_keyword(&significant[i - 2].token, Keyword::OWNED)
        && matches!(
            significant.get(i + 1).map(|t| &t.token),
            Some(Token::Period)
        )
        && matches!(
            significant.get(i + 2).map(|t| &t.token),
            Some(Token::Word(_))
        )
        && !matches!(
            significant.get(i + 3).map(|t| &t.token),
            Some(Token::Period)
        )
}

fn is_like_source(significant: &[&TokenWithSpan], i: usize) -> bool {
    i >= 2
        && is_keyword(&significant[i - 1].token, Keyword::LIKE)
        && matches!(significant[i - 2].token, Token::LParen | Token::Comma)
}

/// `VACUUM [FULL] [FREEZE] [VERBOSE] [ANALYZE] [(options)] t [, t ...]`,
/// `ANALYZE [VERBOSE] t` and `CLUSTER [VERBOSE] t [USING index]`: the table
/// list follows the leading keywords or the option list; only top-level
/// names count (a `(` after a table opens its column list).
fn is_maintained_table(significant: &[&TokenWithSpan], i: usize) -> bool {
    const LEADING: &[Keyword] = &[
        Keyword::VACUUM,
        Keyword::ANALYZE,
        Keyword::CLUSTER,
        Keyword::FULL,
        Keyword::FREEZE,
        Keyword::VERBOSE,
    ];
    let starts_maintenance = significant.first().is_some_and(|t| {
        is_keyword(&t.token, Keyword::VACUUM)
            || is_keyword(&t.token, Keyword::ANALYZE)
            || is_keyword(&t.token, Keyword::CLUSTER)
    });
    if !starts_maintenance || i == 0 {
        return false;
    }
    let mut depth = 0i32;
    for t in &significant[..i] {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
    }
    if depth != 0 {
        return false;
    }
    let previous = &significant[i - 1].token;
    let after_leading = significant[..i].iter().all(|t| {
        matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && LEADING.contains(&w.keyword))
    });
    after_leading || matches!(previous, Token::Comma | Token::RParen)
}

/// Whether `sql` spells `word` at byte `offset` (quoted form for quoted).
pub(crate) fn text_is_word(sql: &str, offset: usize, word: &Word) -> bool {
    let rest = &sql.as_bytes()[offset.min(sql.len())..];
    match word.quote_style {
        None => rest.starts_with(word.value.as_bytes()),
        Some(q) => {
            let quoted = format!("{q}{}{q}", word.value.replace(q, &format!("{q}{q}")));
            rest.starts_with(quoted.as_bytes())
        }
    }
}

/// Mapped names the cross-check expects the AST walk to have seen.
pub(crate) fn names_in_table_positions<'t>(
    tokens: &'t [TokenWithSpan],
    map: &SchemaMap,
    index: &TextIndex<'_>,
    sql: &str,
) -> Result<Vec<TableWord<'t>>, String> {
    mapped_words_after(tokens, is_cross_check_keyword, map, index, sql)
}
