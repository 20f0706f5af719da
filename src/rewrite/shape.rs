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

/// A statement's shape: the cache key, and where each word starts in this
/// particular text.
#[derive(Debug)]
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

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Punctuation and operator bytes passed through verbatim. `-` and `/` are
/// checked for comment starts separately.
fn is_punct(b: u8) -> bool {
    matches!(
        b,
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
    )
}

/// The shape of `sql`, or `None` when the scanner is not sure of it.
pub(crate) fn scan(sql: &str) -> Option<Shape> {
    let text = sql.as_bytes();
    // Offsets are stored as u32; a text beyond that is not worth caching.
    if text.len() > u32::MAX as usize {
        return None;
    }
    let mut key = Vec::with_capacity(text.len());
    let mut word_starts = Vec::with_capacity(16);
    #[cfg(test)]
    let mut literals = Vec::new();
    let mut i = 0;
    // Copy the verbatim run [run_start, i) lazily, at each literal.
    let mut run_start = 0;
    while i < text.len() {
        let b = text[i];
        if is_word_start(b) {
            word_starts.push(i as u32);
            i += 1;
            while i < text.len() && is_word_byte(text[i]) {
                i += 1;
            }
            // E'..', B'..', X'..', N'..', a word glued to a quoted name:
            // prefixes change how the literal lexes.
            if i < text.len() && matches!(text[i], b'\'' | b'"') {
                return None;
            }
        } else if b.is_ascii_digit() {
            let start = i;
            while i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            }
            if i < text.len() && text[i] == b'.' {
                i += 1;
                while i < text.len() && text[i].is_ascii_digit() {
                    i += 1;
                }
            }
            // Exponents, hex/octal/binary prefixes, `1_000`, `1..2`,
            // trailing junk: not ours to judge.
            if i < text.len() && (is_word_byte(text[i]) || matches!(text[i], b'.' | b'\'' | b'"')) {
                return None;
            }
            key.extend_from_slice(&text[run_start..start]);
            key.push(NUMBER);
            #[cfg(test)]
            literals.push((start, i, NUMBER));
            run_start = i;
        } else if b == b'\'' {
            let start = i;
            i += 1;
            loop {
                match text.get(i) {
                    None => return None,
                    Some(b'\\') => return None,
                    Some(b'\'') if text.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            if i < text.len() && (is_word_byte(text[i]) || matches!(text[i], b'\'' | b'"')) {
                return None;
            }
            key.extend_from_slice(&text[run_start..start]);
            key.push(STRING);
            #[cfg(test)]
            literals.push((start, i, STRING));
            run_start = i;
        } else if b == b'"' {
            // A quoted identifier is a word: kept verbatim.
            word_starts.push(i as u32);
            i += 1;
            loop {
                match text.get(i) {
                    None => return None,
                    Some(b'"') if text.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) if c < 0x20 => return None,
                    Some(_) => i += 1,
                }
            }
            if i < text.len() && (is_word_byte(text[i]) || matches!(text[i], b'\'' | b'"')) {
                return None;
            }
        } else if b == b' ' || b == b'\n' || b == b'\t' || b == b'\r' {
            i += 1;
        } else if is_punct(b) {
            let next = text.get(i + 1).copied();
            if (b == b'-' && next == Some(b'-')) || (b == b'/' && next == Some(b'*')) {
                return None;
            }
            // `.5` is a number sqlparser and Postgres may read differently
            // from `. 5`; leave it to the full path.
            if b == b'.' && next.is_some_and(|n| n.is_ascii_digit()) {
                return None;
            }
            i += 1;
        } else {
            // `$`, `\`, backquote, braces, control bytes, non-ASCII.
            return None;
        }
    }
    key.extend_from_slice(&text[run_start..]);
    Some(Shape {
        key,
        word_starts,
        #[cfg(test)]
        literals,
    })
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
