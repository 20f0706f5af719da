//! Large statements: never handed whole to sqlparser, whose tokens and AST
//! take some 300 times the text (a 5 MB IN-list peaked at 1.5 GB, 50 MB
//! aborted the process).
//!
//! A statement over [`COLLAPSE_ABOVE`] is read once by a streaming lexer that
//! keeps no tokens (a word is only looked up in the map). It answers two
//! questions:
//! - does any identifier name a mapped object? If not, there is nothing to
//!   qualify and the text is `Unchanged` without any parse;
//! - where are the long lists of plain literals (`IN (1, 2, ...)`,
//!   `VALUES (1, 'a'), (2, 'b'), ...`)? Each is cut to its first two items.
//!   Literals never name a table, so the cut text (the *skeleton*) has the
//!   same table references at the same places, moved by the bytes cut.
//!
//! The skeleton is rewritten by the usual path, and its edits and names are
//! moved back onto the original. Only a clean result is taken (sqlparser
//! read it: `Rewritten` or `Unchanged`); otherwise a statement within
//! `max_parse_bytes` goes the usual way whole, and a larger one, which
//! cannot be placed without a parse, is refused per the policy.

use super::exact::EXACT_MAX_BYTES;
use super::prefilter::MappedNamePrefilter;
use super::{OnParseError, Outcome, Rewrite, SchemaMap};

/// Statements up to this size take the usual path directly: their parse
/// costs at most a few tens of MB.
pub(super) const COLLAPSE_ABOVE: usize = 64 * 1024;

/// Items of a literal list kept in the skeleton (two, so a row keeps being
/// a row: `(1, 2) OVERLAPS (3, 4)`).
const KEEP_ITEMS: usize = 2;
/// How deep parenthesized literal tuples nest before the lexer stops
/// looking (bounds its recursion and its re-reading).
const MAX_TUPLE_DEPTH: usize = 4;
/// Items a tuple may hold and still count as one literal item.
const MAX_TUPLE_ITEMS: usize = 4096;

/// Rewrite `sql`, larger than [`COLLAPSE_ABOVE`] or than the map's
/// `max_parse_bytes`, through its skeleton. `whole` is the usual path.
pub(super) fn rewrite_large(
    sql: &str,
    map: &SchemaMap,
    policy: OnParseError,
    prefilter: &MappedNamePrefilter,
    whole: fn(&str, &SchemaMap, OnParseError) -> Rewrite,
) -> Rewrite {
    let max = map.max_parse_bytes();
    let within_bound = sql.len() <= max;
    let skeleton = match Skeleton::of(sql, map) {
        Ok(s) => s,
        // An unterminated quote or comment: the server rejects the text
        // too. The usual path decides within the bound; beyond it only
        // Reject refuses it, as for a text that does not tokenize.
        Err(Unlexable) if within_bound => return whole(sql, map, policy),
        Err(Unlexable) => {
            let mut r = refused(sql, policy, prefilter, "it does not lex".into());
            if policy != OnParseError::Reject {
                r.outcome = Outcome::PassthroughUnparsed;
            }
            return r;
        }
    };
    if !skeleton.names_mapped {
        let mut r = Rewrite::untouched();
        r.outcome = Outcome::Unchanged;
        return r;
    }
    if skeleton.text.len() <= max && skeleton.text.len() < sql.len() {
        let mut r = whole(&skeleton.text, map, policy);
        if matches!(r.outcome, Outcome::Rewritten | Outcome::Unchanged) {
            for e in &mut r.edits {
                e.offset = skeleton.original_offset(e.offset);
            }
            for n in &mut r.names {
                n.offset = skeleton.original_offset(n.offset);
            }
            return r;
        }
    }
    if within_bound {
        return whole(sql, map, policy);
    }
    let why = if sql.len() > EXACT_MAX_BYTES {
        format!(
            "a {} byte statement is larger than the exact parser takes ({EXACT_MAX_BYTES}) \
             and than proxy.max_parse_bytes ({max}); its mapped names cannot be placed without a parse",
            sql.len()
        )
    } else {
        format!(
            "a {} byte statement is larger than proxy.max_parse_bytes ({max}); \
             its mapped names cannot be placed without a parse",
            sql.len()
        )
    };
    refused(sql, policy, prefilter, why)
}

/// A statement whose mapped names cannot be placed: refused (0A000), or
/// forwarded unchanged under `passthrough`.
fn refused(
    sql: &str,
    policy: OnParseError,
    prefilter: &MappedNamePrefilter,
    why: String,
) -> Rewrite {
    tracing::debug!(bytes = sql.len(), reason = %why, "large statement not parsed");
    let mut r = Rewrite::untouched();
    r.parse_error = Some(why);
    if policy == OnParseError::Passthrough {
        r.outcome = Outcome::PassthroughUnparsed;
    } else {
        r.outcome = Outcome::Rejected;
        r.rejected_table = prefilter.first_mapped_name(sql);
    }
    r
}

/// The lexer met an unterminated quote, identifier or comment.
#[derive(Debug)]
pub(super) struct Unlexable;

/// A statement with its long literal lists cut.
#[derive(Debug)]
pub(super) struct Skeleton {
    pub(super) text: String,
    /// (offset in `text`, offset in the original) where each kept piece
    /// starts, in order.
    pieces: Vec<(usize, usize)>,
    /// Some identifier names a mapped object (or, when created objects get
    /// a schema, a creating word).
    pub(super) names_mapped: bool,
}

impl Skeleton {
    pub(super) fn of(sql: &str, map: &SchemaMap) -> Result<Skeleton, Unlexable> {
        let mut lexer = Lexer {
            text: sql.as_bytes(),
            pos: 0,
        };
        let mut skeleton = Skeleton {
            text: String::new(),
            pieces: vec![(0, 0)],
            names_mapped: false,
        };
        // The original is copied lazily from `copied` on, at each cut.
        let mut copied = 0;
        // A word folded to lower case, reused for every word.
        let mut folded = String::new();
        while let Some(token) = lexer.next()? {
            match token.kind {
                Kind::Word | Kind::QuotedWord | Kind::UnicodeWord
                    if !skeleton.names_mapped
                        && names_mapped(
                            &sql[token.start..token.end],
                            token.kind,
                            map,
                            &mut folded,
                        ) =>
                {
                    skeleton.names_mapped = true;
                }
                Kind::Open | Kind::Comma => {
                    if let Some((cut_from, cut_to)) = lexer.literal_list()? {
                        skeleton.text.push_str(&sql[copied..cut_from]);
                        copied = cut_to;
                        skeleton.pieces.push((skeleton.text.len(), cut_to));
                    }
                }
                _ => {}
            }
        }
        skeleton.text.push_str(&sql[copied..]);
        Ok(skeleton)
    }

    /// The original offset of `offset` in the skeleton's text.
    pub(super) fn original_offset(&self, offset: usize) -> usize {
        let i = self.pieces.partition_point(|&(at, _)| at <= offset) - 1;
        let (at, original) = self.pieces[i];
        original + (offset - at)
    }
}

/// Whether an identifier as written names a mapped object (or is a
/// creating word when created objects get a schema).
fn names_mapped(written: &str, kind: Kind, map: &SchemaMap, folded: &mut String) -> bool {
    folded.clear();
    match kind {
        // Escapes in a U&"..." name: not worth decoding; assume it may.
        Kind::UnicodeWord => return true,
        Kind::QuotedWord => {
            let inner = &written[1..written.len() - 1];
            folded.push_str(inner);
            if inner.contains("\"\"") {
                *folded = inner.replace("\"\"", "\"");
            }
        }
        _ => {
            folded.push_str(written);
            folded.make_ascii_lowercase();
        }
    }
    // Folded already: looked up as written.
    let name = folded.as_str();
    if map.schema_of(name, true).is_some()
        || map.routine_schema(name, true).is_some()
        || map.type_schema(name, true).is_some()
    {
        return true;
    }
    map.create_schema().is_some()
        && kind == Kind::Word
        && super::prefilter::CREATING_WORDS.contains(&name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An unquoted identifier or keyword.
    Word,
    /// `"..."`.
    QuotedWord,
    /// `U&"..."`.
    UnicodeWord,
    /// A number, a string literal (plain or prefixed), a `$n` parameter.
    Literal,
    /// A number glued to what follows (`1abc`): never cut.
    GluedNumber,
    /// `$tag$...$tag$`.
    DollarString,
    /// `(` or `[`.
    Open,
    /// `)` or `]`.
    Close,
    Comma,
    /// `+` or `-`.
    Sign,
    /// Any other operator or punctuation byte.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// PostgreSQL's lexical rules, as far as they decide where literals,
/// identifiers and comments begin and end; nothing is allocated per token.
struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

impl Lexer<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.text.get(i).copied()
    }

    /// The next token, skipping whitespace and comments.
    fn next(&mut self) -> Result<Option<Token>, Unlexable> {
        loop {
            let Some(b) = self.at(self.pos) else {
                return Ok(None);
            };
            let start = self.pos;
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'-' if self.at(start + 1) == Some(b'-') => {
                    while self.at(self.pos).is_some_and(|c| c != b'\n' && c != b'\r') {
                        self.pos += 1;
                    }
                }
                b'/' if self.at(start + 1) == Some(b'*') => self.block_comment()?,
                b'\'' => {
                    self.quoted(b'\'', false)?;
                    return Ok(Some(self.literal_from(start)));
                }
                b'"' => {
                    self.quoted(b'"', false)?;
                    return Ok(Some(self.token(Kind::QuotedWord, start)));
                }
                b'0'..=b'9' => return Ok(Some(self.number(start))),
                b'.' if self.at(start + 1).is_some_and(|c| c.is_ascii_digit()) => {
                    return Ok(Some(self.number(start)));
                }
                b'$' => return self.dollar(start).map(Some),
                _ if is_word_start(b) => return self.word(start).map(Some),
                _ => {
                    self.pos += 1;
                    let kind = match b {
                        b'(' | b'[' => Kind::Open,
                        b')' | b']' => Kind::Close,
                        b',' => Kind::Comma,
                        b'+' | b'-' => Kind::Sign,
                        _ => Kind::Other,
                    };
                    return Ok(Some(self.token(kind, start)));
                }
            }
        }
    }

    fn token(&self, kind: Kind, start: usize) -> Token {
        Token {
            kind,
            start,
            end: self.pos,
        }
    }

    /// A literal ending at `pos`, unless something glues onto it.
    fn literal_from(&self, start: usize) -> Token {
        self.token(Kind::Literal, start)
    }

    /// `/* ... */`, nested as PostgreSQL nests them.
    fn block_comment(&mut self) -> Result<(), Unlexable> {
        let mut depth = 0usize;
        loop {
            match (self.at(self.pos), self.at(self.pos + 1)) {
                (Some(b'/'), Some(b'*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                (Some(b'*'), Some(b'/')) => {
                    depth -= 1;
                    self.pos += 2;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => self.pos += 1,
                (None, _) => return Err(Unlexable),
            }
        }
    }

    /// From an opening `quote` at `pos` past its closing one; a doubled
    /// quote is one quote inside. `backslash`: a backslash escapes the next
    /// byte (E'...').
    fn quoted(&mut self, quote: u8, backslash: bool) -> Result<(), Unlexable> {
        self.pos += 1;
        loop {
            match self.at(self.pos) {
                None => return Err(Unlexable),
                Some(b'\\') if backslash => self.pos += 2,
                Some(c) if c == quote => {
                    if self.at(self.pos + 1) == Some(quote) {
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn number(&mut self, start: usize) -> Token {
        let digits = |l: &mut Self, ok: fn(u8) -> bool| {
            while l.at(l.pos).is_some_and(|c| ok(c) || c == b'_') {
                l.pos += 1;
            }
        };
        let radix = self.at(start) == Some(b'0')
            && matches!(
                self.at(start + 1),
                Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
            );
        if radix {
            self.pos = start + 2;
            digits(self, |c| c.is_ascii_hexdigit());
        } else {
            digits(self, |c| c.is_ascii_digit());
            if self.at(self.pos) == Some(b'.') && self.at(self.pos + 1) != Some(b'.') {
                self.pos += 1;
                digits(self, |c| c.is_ascii_digit());
            }
            if matches!(self.at(self.pos), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(self.at(self.pos + 1), Some(b'+' | b'-')));
                if self
                    .at(self.pos + 1 + sign)
                    .is_some_and(|c| c.is_ascii_digit())
                {
                    self.pos += 1 + sign;
                    digits(self, |c| c.is_ascii_digit());
                }
            }
        }
        // `1abc`, `1.2.3`: the rest lexes on its own, and this number is
        // never cut.
        let glued = self
            .at(self.pos)
            .is_some_and(|c| is_word_byte(c) || c == b'.' || c == b'\'' || c == b'"');
        self.token(
            if glued {
                Kind::GluedNumber
            } else {
                Kind::Literal
            },
            start,
        )
    }

    /// `$n`, `$tag$...$tag$`, or a lone `$`.
    fn dollar(&mut self, start: usize) -> Result<Token, Unlexable> {
        let text = self.text;
        let mut i = start + 1;
        if self.at(i).is_some_and(|c| c.is_ascii_digit()) {
            while self.at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
            self.pos = i;
            let glued = self.at(i).is_some_and(is_word_byte);
            return Ok(self.token(
                if glued {
                    Kind::GluedNumber
                } else {
                    Kind::Literal
                },
                start,
            ));
        }
        if self.at(i).is_some_and(is_word_start) {
            while self.at(i).is_some_and(|c| is_word_byte(c) && c != b'$') {
                i += 1;
            }
        }
        if self.at(i) != Some(b'$') {
            self.pos = start + 1;
            return Ok(self.token(Kind::Other, start));
        }
        let tag = &text[start..=i];
        let body = i + 1;
        let Some(close) = find(&text[body..], tag) else {
            return Err(Unlexable);
        };
        self.pos = body + close + tag.len();
        Ok(self.token(Kind::DollarString, start))
    }

    /// An identifier, keyword, or the prefix of a string or name
    /// (`E'..'`, `B'..'`, `X'..'`, `N'..'`, `U&'..'`, `U&".."`).
    fn word(&mut self, start: usize) -> Result<Token, Unlexable> {
        let mut i = start + 1;
        while self.at(i).is_some_and(is_word_byte) {
            i += 1;
        }
        self.pos = i;
        let word = &self.text[start..i];
        match (word, self.at(i), self.at(i + 1)) {
            ([b'e' | b'E'], Some(b'\''), _) => {
                self.quoted(b'\'', true)?;
                Ok(self.literal_from(start))
            }
            ([b'b' | b'B' | b'x' | b'X' | b'n' | b'N'], Some(b'\''), _) => {
                self.quoted(b'\'', false)?;
                Ok(self.literal_from(start))
            }
            ([b'u' | b'U'], Some(b'&'), Some(b'\'')) => {
                self.pos = i + 1;
                self.quoted(b'\'', false)?;
                Ok(self.literal_from(start))
            }
            ([b'u' | b'U'], Some(b'&'), Some(b'"')) => {
                self.pos = i + 1;
                self.quoted(b'"', false)?;
                Ok(self.token(Kind::UnicodeWord, start))
            }
            _ => Ok(self.token(Kind::Word, start)),
        }
    }

    /// Right after a `(`, `[` or `,`: a list of at least three literal
    /// items (`1`, `-2`, `'a'`, `$3`, or a tuple of such) each ended by
    /// `,`, `)` or `]` is cut after its second item. Returns the byte
    /// range cut; the lexer is left after the last item cut, or where it
    /// was when there is nothing to cut.
    fn literal_list(&mut self) -> Result<Option<(usize, usize)>, Unlexable> {
        let begin = self.pos;
        let mut items = 0usize;
        let mut kept_end = 0;
        let mut cut_end = None;
        loop {
            let before_item = self.pos;
            let Some(end) = self.item(0)? else {
                self.pos = before_item;
                break;
            };
            // An item counts only when a `,`, `)` or `]` ends it.
            let after_item = self.pos;
            let next = self.next()?;
            self.pos = after_item;
            let ended = next.is_some_and(|t| matches!(t.kind, Kind::Comma | Kind::Close));
            if !ended {
                self.pos = before_item;
                break;
            }
            items += 1;
            if items == KEEP_ITEMS {
                kept_end = end;
            } else if items > KEEP_ITEMS {
                cut_end = Some(end);
            }
            if next.is_some_and(|t| t.kind == Kind::Close) {
                break;
            }
            // Past the comma, on to the next item.
            self.next()?;
        }
        match cut_end {
            Some(end) => {
                self.pos = end;
                Ok(Some((kept_end, end)))
            }
            None => {
                self.pos = begin;
                Ok(None)
            }
        }
    }

    /// One literal item from `pos`: its end, with the lexer after it.
    fn item(&mut self, depth: usize) -> Result<Option<usize>, Unlexable> {
        let Some(t) = self.next()? else {
            return Ok(None);
        };
        match t.kind {
            Kind::Literal => Ok(Some(t.end)),
            // A signed number.
            Kind::Sign => match self.next()? {
                Some(n)
                    if n.kind == Kind::Literal
                        && (self.text[n.start].is_ascii_digit() || self.text[n.start] == b'.') =>
                {
                    Ok(Some(n.end))
                }
                _ => Ok(None),
            },
            Kind::Open if self.text[t.start] == b'(' && depth < MAX_TUPLE_DEPTH => {
                for _ in 0..MAX_TUPLE_ITEMS {
                    if self.item(depth + 1)?.is_none() {
                        return Ok(None);
                    }
                    match self.next()? {
                        Some(t) if t.kind == Kind::Comma => continue,
                        Some(t) if self.text[t.start] == b')' => return Ok(Some(t.end)),
                        _ => return Ok(None),
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// The first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
