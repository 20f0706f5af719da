//! The shape of a statement: its text with every literal masked, so that
//! `... WHERE aid = 48213` and `... WHERE aid = 7` share one cache entry.
//!
//! Under the simple protocol the literals are inside the text (pgbench -S
//! sends a new number each time), so a cache keyed by text never hits. Two
//! texts with the same shape differ only inside literals, which decide
//! nothing about table names; the rewrite of one is the rewrite of the other
//! with the offsets moved, and the words (identifiers and keywords) are
//! what the edits are anchored to.
//!
//! This scanner is deliberately narrower than Postgres' lexer: anything it is
//! not sure to cut exactly where sqlparser and Postgres cut (comments,
//! backslashes, dollar quotes and `$n`, prefixed strings like `E'..'`,
//! exponents, non-ASCII outside a string literal, control characters) makes
//! it give up, and the statement takes the text-keyed path instead. Giving
//! up is always safe; a wrong cut is not.

/// Replaces a numeric literal in the key.
const NUMBER: u8 = 0x01;
/// Replaces a string literal (quotes included) in the key.
const STRING: u8 = 0x02;

/// A statement's shape, owned (tests and benches; the rewriter scans into
/// reused buffers with [`scan_into`]).
#[derive(Debug, Default)]
pub(crate) struct Shape {
    /// The text with each literal replaced by one marker byte (which the
    /// scanner never accepts in the text itself).
    pub(crate) key: Vec<u8>,
    /// Byte offset of each word (identifier, keyword or quoted identifier,
    /// the opening quote for the latter), in text order.
    pub(crate) word_starts: Vec<u32>,
    /// (start, end, marker) of each literal, for tests that vary them.
    #[cfg(test)]
    pub(crate) literals: Vec<(usize, usize, u8)>,
}

/// What a byte starts, for the scanner's dispatch (one table lookup per
/// token instead of a chain of tests).
const OTHER: u8 = 0;
const WORD: u8 = 1;
const DIGIT: u8 = 2;
const QUOTE: u8 = 3;
const DQUOTE: u8 = 4;
const SPACE: u8 = 5;
/// Punctuation and operator bytes passed through verbatim. `-` and `/` are
/// checked for comment starts separately, `.` for `.5`.
const PUNCT: u8 = 6;

const CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphabetic() || c == b'_' {
            WORD
        } else if c.is_ascii_digit() {
            DIGIT
        } else if c == b'\'' {
            QUOTE
        } else if c == b'"' {
            DQUOTE
        } else if matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
            SPACE
        } else if matches!(
            c,
            b'(' | b')'
                | b','
                | b';'
                | b'.'
                | b'='
                | b'<'
                | b'>'
                | b'!'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'^'
                | b'|'
                | b'&'
                | b'~'
                | b'?'
                | b'@'
                | b'#'
                | b':'
                | b'['
                | b']'
        ) {
            PUNCT
        } else {
            // `$`, `\`, backquote, braces, control bytes, non-ASCII.
            OTHER
        };
        b += 1;
    }
    t
};

/// Bytes that continue a word.
const WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
        b += 1;
    }
    t
};

fn is_word_byte(b: u8) -> bool {
    WORD_BYTE[b as usize]
}

/// Whether the byte after a literal or name glues onto it (a prefix,
/// a suffix, another quote): not ours to judge.
fn glued(next: Option<&u8>) -> bool {
    next.is_some_and(|&c| is_word_byte(c) || matches!(c, b'\'' | b'"'))
}

/// Whether a literal's content may start with a `public.` spelling
/// (whitespace, an optional `"`, then `public` in any case).
#[inline]
fn starts_like_public(content: &[u8]) -> bool {
    let mut at = 0;
    while content
        .get(at)
        .is_some_and(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    {
        at += 1;
    }
    if content.get(at) == Some(&b'"') {
        at += 1;
    }
    content
        .get(at..at + 6)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"public"))
}

/// The shape of `sql`, or `None` when the scanner is not sure of it.
pub(crate) fn scan(sql: &str) -> Option<Shape> {
    let mut shape = Shape::default();
    let mut literals = Vec::new();
    let sure = scan_literals(sql, &mut shape.key, &mut shape.word_starts, |s, e, m| {
        literals.push((s, e, m))
    });
    #[cfg(test)]
    {
        shape.literals = literals;
    }
    sure.then_some(shape)
}

/// Append the shape key of `sql` to `key` and put the offset of each word
/// in `word_starts` (cleared first). False when the scanner is not sure of
/// the shape; the buffers then hold garbage.
pub(crate) fn scan_into(sql: &str, key: &mut Vec<u8>, word_starts: &mut Vec<u32>) -> bool {
    scan_literals(sql, key, word_starts, |_, _, _| {})
}

/// [`scan_into`], telling `literal` where each literal is.
fn scan_literals(
    sql: &str,
    key: &mut Vec<u8>,
    word_starts: &mut Vec<u32>,
    mut literal: impl FnMut(usize, usize, u8),
) -> bool {
    let text = sql.as_bytes();
    // Offsets are stored as u32; a text beyond that is not worth caching.
    if text.len() > u32::MAX as usize {
        return false;
    }
    key.reserve(text.len());
    word_starts.clear();
    let mut i = 0;
    // Copy the verbatim run [run_start, i) lazily, at each literal.
    let mut run_start = 0;
    while i < text.len() {
        let b = text[i];
        match CLASS[b as usize] {
            WORD => {
                word_starts.push(i as u32);
                i += 1;
                while i < text.len() && is_word_byte(text[i]) {
                    i += 1;
                }
                // E'..', B'..', X'..', N'..', a word glued to a quoted name:
                // prefixes change how the literal lexes.
                if matches!(text.get(i), Some(b'\'' | b'"')) {
                    return false;
                }
            }
            SPACE => i += 1,
            DIGIT => {
                let start = i;
                while i < text.len() && text[i].is_ascii_digit() {
                    i += 1;
                }
                if text.get(i) == Some(&b'.') {
                    i += 1;
                    while i < text.len() && text[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                // Exponents, hex/octal/binary prefixes, `1_000`, `1..2`,
                // trailing junk: not ours to judge.
                if glued(text.get(i)) || text.get(i) == Some(&b'.') {
                    return false;
                }
                key.extend_from_slice(&text[run_start..start]);
                key.push(NUMBER);
                literal(start, i, NUMBER);
                run_start = i;
            }
            QUOTE => {
                let start = i;
                i += 1;
                // `nextval('public.users_id_seq')`: such a literal may
                // decide an edit (see `strings`), so it is no mere value.
                if starts_like_public(&text[i..]) {
                    return false;
                }
                loop {
                    match text.get(i) {
                        None => return false,
                        Some(b'\\') => return false,
                        Some(b'\'') if text.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                if glued(text.get(i)) {
                    return false;
                }
                key.extend_from_slice(&text[run_start..start]);
                key.push(STRING);
                literal(start, i, STRING);
                run_start = i;
            }
            DQUOTE => {
                // A quoted identifier is a word: kept verbatim.
                word_starts.push(i as u32);
                i += 1;
                loop {
                    match text.get(i) {
                        None => return false,
                        Some(b'"') if text.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) if c < 0x20 => return false,
                        Some(_) => i += 1,
                    }
                }
                if glued(text.get(i)) {
                    return false;
                }
            }
            PUNCT => {
                let next = text.get(i + 1).copied();
                if (b == b'-' && next == Some(b'-')) || (b == b'/' && next == Some(b'*')) {
                    return false;
                }
                // `.5` is a number sqlparser and Postgres may read differently
                // from `. 5`; leave it to the full path.
                if b == b'.' && next.is_some_and(|n| n.is_ascii_digit()) {
                    return false;
                }
                i += 1;
            }
            _ => return false,
        }
    }
    key.extend_from_slice(&text[run_start..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str) -> Option<Vec<u8>> {
        scan(sql).map(|s| s.key)
    }

    #[test]
    fn literals_are_masked_words_are_kept() {
        let a = scan("SELECT abalance FROM pgbench_accounts WHERE aid = 48213").unwrap();
        let b = scan("SELECT abalance FROM pgbench_accounts WHERE aid = 7").unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.word_starts, b.word_starts);
        assert_eq!(a.word_starts, vec![0, 7, 16, 21, 38, 44]);
        assert_eq!(key("select 'it''s', 1.5").unwrap(), b"select \x02, \x01");
        assert_ne!(key("select 'a'"), key("select 1"));
        assert_ne!(key("select a"), key("select b"));
    }

    #[test]
    fn anything_unsure_gives_up() {
        for sql in [
            "select 1 -- c",
            "select /* c */ 1",
            "select E'a'",
            "select X'1f'",
            "select U&'d\\0061t'",
            "select 'a\\'",
            "select $1",
            "select $$a$$",
            "select 1e5",
            "select 0x1f",
            "select 1_000",
            "select .5",
            "select 1..2",
            "select 'unterminated",
            "select \"unterminated",
            "select 한",
            "select `a`",
            "select '1'a",
            "select \u{1}",
            // A literal that may name a relation in public decides edits.
            "select nextval('public.users_id_seq')",
            "select ' \"PUBLIC\".x'::regclass",
        ] {
            assert!(scan(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn non_ascii_inside_a_string_literal_is_masked() {
        assert_eq!(key("select '사주'").unwrap(), b"select \x02");
        assert!(scan("select \"사주\" from t").is_some());
    }
}
