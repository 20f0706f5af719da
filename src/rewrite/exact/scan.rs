//! Placing a name the parse tree gives without a position: PostgreSQL's
//! own scanner reads the statement's identifier chains (so literals and
//! comments are never read as names), and a name is placed only where it
//! occurs exactly once.

use pg_query::protobuf::{KeywordKind, Token};

use super::ExactError;
use crate::rewrite::quote::{fold_identifier, is_identifier_byte};

/// The identifier at `location` of `text` as written (without quotes), if
/// it spells `relname` as PostgreSQL reads it (quoted: exactly; unquoted:
/// folded to lower case).
pub(super) fn written_name(text: &str, location: usize, relname: &str) -> Option<String> {
    let rest = text.get(location..)?;
    let (value, quoted) = read_identifier(rest)?;
    (fold_identifier(&value, quoted) == relname).then_some(value)
}

/// The identifier at the start of `s`: (its value, whether quoted).
pub(super) fn read_identifier(s: &str) -> Option<(String, bool)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if body[i + 1..].starts_with('"') {
                    value.push('"');
                    chars.next();
                } else {
                    return Some((value, true));
                }
            } else {
                value.push(c);
            }
        }
        return None;
    }
    let end = s
        .bytes()
        .position(|b| !is_identifier_byte(b))
        .unwrap_or(s.len());
    (end > 0 && !s.as_bytes()[0].is_ascii_digit() && s.as_bytes()[0] != b'$')
        .then(|| (s[..end].to_owned(), false))
}

/// In `schema . name` at `at` of `text`: the offset of `name` (after the
/// qualifier, the dot and any whitespace around it).
pub(super) fn name_after_qualifier(text: &str, at: usize) -> Option<usize> {
    let rest = text.get(at..)?;
    let (_, quoted) = read_identifier(rest)?;
    let qualifier_len = if quoted {
        // The closing quote: the first `"` not doubled.
        let body = &rest[1..];
        let mut i = 0;
        loop {
            let q = body[i..].find('"')? + i;
            if body[q + 1..].starts_with('"') {
                i = q + 2;
            } else {
                break q + 2;
            }
        }
    } else {
        rest.bytes()
            .position(|b| !is_identifier_byte(b))
            .unwrap_or(rest.len())
    };
    let after = &rest[qualifier_len..];
    let dot = after.trim_start();
    let after_dot = dot.strip_prefix('.')?;
    let name = after_dot.trim_start();
    Some(at + rest.len() - name.len())
}

/// A maximal `name(.name)*` chain of the scanner's tokens.
pub(super) struct Chain {
    pub(super) start: usize,
    pub(super) parts: Vec<String>,
}

/// Every identifier chain of the statement, by PostgreSQL's scanner (so
/// literals and comments are never read as names).
pub(super) fn scan_chains(text: &str) -> Result<Vec<Chain>, ExactError> {
    let tokens = pg_query::scan(text)
        .map_err(|e| ExactError::Syntax(e.to_string()))?
        .tokens;
    let mut chains: Vec<Chain> = Vec::new();
    // The previous token was a name (the last chain's), or a `.` after one.
    let (mut after_name, mut after_dot) = (false, false);
    for t in &tokens {
        let (Ok(start), Ok(end)) = (usize::try_from(t.start), usize::try_from(t.end)) else {
            return Err(ExactError::Unresolved(
                "scanner token without a location".into(),
            ));
        };
        let token = Token::try_from(t.token).unwrap_or(Token::Nul);
        let is_name = token == Token::Ident || t.keyword_kind != KeywordKind::NoKeyword as i32;
        if is_name {
            let identity = text
                .get(start..end)
                .and_then(read_identifier)
                .map(|(v, quoted)| fold_identifier(&v, quoted))
                // U&"..." and the like: never equal to a name looked for.
                .unwrap_or_default();
            match chains.last_mut() {
                Some(chain) if after_dot => chain.parts.push(identity),
                _ => chains.push(Chain {
                    start,
                    parts: vec![identity],
                }),
            }
            (after_name, after_dot) = (true, false);
        } else if token == Token::Ascii46 && after_name {
            (after_name, after_dot) = (false, true);
        } else {
            if after_dot && let Some(chain) = chains.last_mut() {
                // `t.*` and the like: not a plain name.
                chain.parts.push(String::new());
            }
            (after_name, after_dot) = (false, false);
        }
    }
    chains.retain(|c| !c.parts.is_empty());
    Ok(chains)
}

/// The offset of the one chain that begins with the relation `parts` and
/// continues with at most the object-name part after it.
pub(super) fn locate(chains: &[Chain], parts: &[String]) -> Result<usize, ExactError> {
    let hits: Vec<usize> = chains
        .iter()
        .filter(|c| c.parts.starts_with(parts) && c.parts.len() <= parts.len() + 1)
        .map(|c| c.start)
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(ExactError::Unresolved(format!(
            "`{}` has no location in the parse tree and is not found in the text",
            parts.join(".")
        ))),
        _ => Err(ExactError::Unresolved(format!(
            "`{}` has no location in the parse tree and occurs {} times in the text",
            parts.join("."),
            hits.len()
        ))),
    }
}
