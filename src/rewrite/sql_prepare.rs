//! SQL-level prepared statements in a simple-query text: `PREPARE name
//! [(types)] AS statement`, `EXECUTE name [(args)]` (also after `EXPLAIN
//! [options]` and in `CREATE TABLE ... AS EXECUTE name`) and `DEALLOCATE
//! [PREPARE] name`. Transaction pooling carries these across server
//! connections under names of its own, so it needs where the client's name
//! is in the text and where the statement ends; this module finds them
//! (pure: text in, byte spans out).

use std::ops::Range;

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::encoding::{EncodingClass, lexable_text};
use super::split::{TextIndex, split_statements, tokenize};

/// What a simple-query text does with SQL-level prepared statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlPrepared {
    /// `PREPARE name [(types)] AS statement`.
    Prepare(Use),
    /// `EXECUTE name [(args)]`, `EXPLAIN ... EXECUTE name` or `CREATE TABLE
    /// ... AS EXECUTE name`.
    Execute(Use),
    /// `DEALLOCATE [PREPARE] name` (not `ALL`: see [`super::deallocation`]).
    Deallocate(Use),
    /// One of these in a form this module does not take apart exactly
    /// (several statements in one text, text that does not tokenize, a
    /// shape it does not know): the reason, to refuse it.
    Unsupported(&'static str),
}

/// Where a statement's name is, in a text holding one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// The name as the server stores it (an unquoted name folded to lower
    /// case).
    pub name: Vec<u8>,
    /// The name's bytes in the text (quotes included).
    pub span: Range<usize>,
    /// Where the statement's last token ends (before a `;`, blanks and
    /// comments that follow it).
    pub end: usize,
}

/// The first word of a text, after blanks and comments.
pub fn first_word(text: &[u8]) -> &[u8] {
    super::deallocate::word(super::deallocate::skip_blank(text)).map_or(&[], |(w, _)| w)
}

/// Whether a text's first word makes it one of the forms above: a cheap
/// test to run before [`sql_prepared`] on every Query (`CREATE` only with
/// `EXECUTE` somewhere in the text).
#[inline]
pub fn may_be_sql_prepared(text: &[u8]) -> bool {
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(
        first,
        Some(b'p' | b'P' | b'e' | b'E' | b'd' | b'D' | b'c' | b'C' | b'/' | b'-')
    ) {
        return false;
    }
    let word = first_word(text);
    let is = |w: &[u8]| word.eq_ignore_ascii_case(w);
    is(b"prepare")
        || is(b"execute")
        || is(b"deallocate")
        || is(b"explain")
        || is(b"create") && contains_word(text, b"execute")
}

fn contains_word(text: &[u8], w: &[u8]) -> bool {
    text.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w))
}

/// The form of `text`, sent in `encoding` with `standard_conforming_strings`
/// (see [`SqlPrepared`]); `None` when it is none of them (an ordinary
/// EXPLAIN or CREATE, `DEALLOCATE ALL`).
pub fn sql_prepared(
    text: &[u8],
    encoding: EncodingClass,
    standard_conforming_strings: bool,
) -> Option<SqlPrepared> {
    if !may_be_sql_prepared(text) {
        return None;
    }
    // A same-length copy for the lexer: byte offsets hold in `text`.
    let lexable = lexable_text(text, encoding, standard_conforming_strings);
    let lexed = &*lexable.lexed;
    let Ok(tokens) = tokenize(lexed) else {
        return Some(SqlPrepared::Unsupported("text that does not tokenize"));
    };
    let mut statements = split_statements(tokens)
        .into_iter()
        .filter(|s| !s.is_empty());
    let first = statements.next()?;
    let index = TextIndex::new(lexed);
    let form = read_statement(&first.tokens, &index, text)?;
    if statements.next().is_some() {
        return Some(SqlPrepared::Unsupported("several statements in one Query"));
    }
    Some(form)
}

/// Which statements of a text are a `PREPARE` (which would leave a
/// statement under the client's name on a server connection): (the first,
/// one after it).
pub fn prepare_statements(text: &[u8]) -> (bool, bool) {
    let lexable = lexable_text(text, EncodingClass::AsciiSafe, true);
    let Ok(tokens) = tokenize(&lexable.lexed) else {
        return (false, false);
    };
    let mut prepares = split_statements(tokens)
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.tokens
                .iter()
                .find(|t| !matches!(t.token, Token::Whitespace(_)))
                .is_some_and(|t| is_keyword(&t.token, Keyword::PREPARE))
        });
    let first = prepares.next().unwrap_or(false);
    (first, prepares.any(|p| p))
}

fn is_keyword(token: &Token, k: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.keyword == k)
}

/// One statement's form; `None`: not one of them.
fn read_statement(
    tokens: &[TokenWithSpan],
    index: &TextIndex<'_>,
    original: &[u8],
) -> Option<SqlPrepared> {
    let words: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let end = index.byte_offset(words.last()?.span.end)?;
    let is = |i: usize, k: Keyword| words.get(i).is_some_and(|t| is_keyword(&t.token, k));
    let name_at = |i: usize| -> Option<Use> {
        let t = words.get(i)?;
        let Token::Word(w) = &t.token else {
            return None;
        };
        let span = index.byte_offset(t.span.start)?..index.byte_offset(t.span.end)?;
        // From the original bytes (the lexed copy masks non-ASCII ones).
        let written = original.get(span.clone())?;
        let name = match w.quote_style {
            Some('"') => {
                let inner = written.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
                let mut name = Vec::with_capacity(inner.len());
                let mut i = 0;
                while i < inner.len() {
                    name.push(inner[i]);
                    i += if inner[i] == b'"' { 2 } else { 1 };
                }
                name
            }
            None => written.to_ascii_lowercase(),
            Some(_) => return None,
        };
        Some(Use { name, span, end })
    };
    let unsupported = |what| Some(SqlPrepared::Unsupported(what));
    // The index after a parenthesized list starting at `i` (or `i`).
    let after_parens = |i: usize| -> Option<usize> {
        if !matches!(words.get(i)?.token, Token::LParen) {
            return Some(i);
        }
        let mut depth = 0usize;
        for (j, t) in words.iter().enumerate().skip(i) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j + 1);
                    }
                }
                _ => {}
            }
        }
        None
    };
    if is(0, Keyword::PREPARE) {
        let Some(name) = name_at(1) else {
            return unsupported("a PREPARE without a statement name");
        };
        let Some(after) = words.get(2).map_or(Some(2), |_| after_parens(2)) else {
            return unsupported("a PREPARE whose parameter types do not close");
        };
        if !is(after, Keyword::AS) || words.len() <= after + 1 {
            return unsupported("a PREPARE without AS and a statement");
        }
        return Some(SqlPrepared::Prepare(name));
    }
    if is(0, Keyword::DEALLOCATE) {
        let at = if is(1, Keyword::PREPARE) { 2 } else { 1 };
        if is(at, Keyword::ALL) && words.len() == at + 1 {
            return None;
        }
        return match name_at(at) {
            Some(name) if words.len() == at + 1 => Some(SqlPrepared::Deallocate(name)),
            _ => unsupported("a DEALLOCATE of this form"),
        };
    }
    let execute_at = if is(0, Keyword::EXECUTE) {
        0
    } else if is(0, Keyword::EXPLAIN) {
        let mut i = after_parens(1)?;
        let analyse = |i: usize| {
            words.get(i).is_some_and(
                |t| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("analyse")),
            )
        };
        while is(i, Keyword::ANALYZE) || analyse(i) || is(i, Keyword::VERBOSE) {
            i += 1;
        }
        if !is(i, Keyword::EXECUTE) {
            return None;
        }
        i
    } else if is(0, Keyword::CREATE) {
        // `CREATE [...] TABLE name [...] AS EXECUTE name [(args)] [WITH [NO] DATA]`
        let mut depth = 0usize;
        let mut found = None;
        for (i, t) in words.iter().enumerate() {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                _ if depth == 0 && is(i, Keyword::AS) && is(i + 1, Keyword::EXECUTE) => {
                    found = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        found?
    } else {
        return None;
    };
    let Some(name) = name_at(execute_at + 1) else {
        return unsupported("an EXECUTE without a statement name");
    };
    // EXECUTE alone must end with its arguments; EXPLAIN and CREATE may
    // have more after them (WITH DATA), which the server reads.
    if execute_at == 0 {
        let rest = execute_at + 2;
        if words.len() > rest && after_parens(rest) != Some(words.len()) {
            return unsupported("an EXECUTE of this form");
        }
    }
    Some(SqlPrepared::Execute(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(text: &str) -> (String, String, String) {
        let form = sql_prepared(text.as_bytes(), EncodingClass::AsciiSafe, true).expect("a form");
        let (kind, u) = match form {
            SqlPrepared::Prepare(u) => ("prepare", u),
            SqlPrepared::Execute(u) => ("execute", u),
            SqlPrepared::Deallocate(u) => ("deallocate", u),
            SqlPrepared::Unsupported(why) => panic!("{text}: unsupported: {why}"),
        };
        (
            kind.to_owned(),
            String::from_utf8(u.name).unwrap(),
            format!("{}|{}", &text[u.span.clone()], &text[u.end..]),
        )
    }

    #[test]
    fn finds_the_name_and_the_end_of_each_form() {
        let cases = [
            (
                "PREPARE q1 (int, text) AS SELECT * FROM users WHERE id = $1;",
                ("prepare", "q1", "q1|;"),
            ),
            (
                "prepare \"My Q\" as select 1 -- note",
                ("prepare", "My Q", "\"My Q\"| -- note"),
            ),
            (
                "PREPARE Q2 AS INSERT INTO t VALUES ($1)",
                ("prepare", "q2", "Q2|"),
            ),
            (
                "/* c */ EXECUTE q1 (1, 'a''b');  ",
                ("execute", "q1", "q1|;  "),
            ),
            ("execute Q1", ("execute", "q1", "Q1|")),
            (
                "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE q1(1)",
                ("execute", "q1", "q1|"),
            ),
            (
                "explain analyze verbose execute q1",
                ("execute", "q1", "q1|"),
            ),
            (
                "CREATE TABLE t2 AS EXECUTE q1(2) WITH NO DATA",
                ("execute", "q1", "q1|"),
            ),
            ("DEALLOCATE PREPARE q1;", ("deallocate", "q1", "q1|;")),
            ("deallocate \"My Q\"", ("deallocate", "My Q", "\"My Q\"|")),
            ("execute \"a\"\"b\"", ("execute", "a\"b", "\"a\"\"b\"|")),
        ];
        for (text, (kind, name, rest)) in cases {
            assert_eq!(
                used(text),
                (kind.to_owned(), name.to_owned(), rest.to_owned()),
                "{text}"
            );
        }
    }

    #[test]
    fn leaves_other_statements_alone() {
        for text in [
            "SELECT 1",
            "EXPLAIN SELECT * FROM users",
            "CREATE TABLE t (x int)",
            "CREATE FUNCTION f() RETURNS void AS $$ BEGIN EXECUTE 'x'; END $$ LANGUAGE plpgsql",
            "DEALLOCATE ALL",
            "deallocate prepare all;",
            "COMMIT",
            "DELETE FROM users",
            "",
        ] {
            assert_eq!(
                sql_prepared(text.as_bytes(), EncodingClass::AsciiSafe, true),
                None,
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_take_apart() {
        for text in [
            "PREPARE a AS SELECT 1; EXECUTE a",
            "EXECUTE a; SELECT 1",
            "PREPARE a SELECT 1",
            "PREPARE a (int AS SELECT 1",
            "PREPARE",
            "EXECUTE a b",
            "DEALLOCATE a b",
            "PREPARE a AS SELECT 'unterminated",
        ] {
            let form = sql_prepared(text.as_bytes(), EncodingClass::AsciiSafe, true);
            assert!(
                matches!(form, Some(SqlPrepared::Unsupported(_))),
                "{text}: {form:?}"
            );
        }
    }

    #[test]
    fn reads_text_in_the_clients_encoding() {
        // EUC-KR: a Korean literal and a quoted Korean name.
        let text = b"EXECUTE \"\xc0\xcc\xb8\xa7\"('\xb1\xe8')";
        let Some(SqlPrepared::Execute(u)) = sql_prepared(text, EncodingClass::of(b"EUC_KR"), true)
        else {
            panic!("an EXECUTE");
        };
        assert_eq!(u.name, b"\xc0\xcc\xb8\xa7");
        assert_eq!(&text[u.span.clone()], b"\"\xc0\xcc\xb8\xa7\"");
        // A backslash escape with standard_conforming_strings off.
        let text = br"PREPARE p AS SELECT 'it\'s; x'";
        assert!(matches!(
            sql_prepared(text, EncodingClass::AsciiSafe, false),
            Some(SqlPrepared::Prepare(_))
        ));
    }

    #[test]
    fn finds_which_statements_prepare() {
        let cases: [(&[u8], (bool, bool)); 6] = [
            (b"SELECT 1; PREPARE a AS SELECT 1", (false, true)),
            (b"SELECT prepare FROM t", (false, false)),
            (b"SELECT 'x; prepare a as select 1'", (false, false)),
            (b"PREPARE a AS SELECT 1", (true, false)),
            (b"\x0bPREPARE a AS SELECT 1", (true, false)),
            (
                b"/* c */ prepare a AS SELECT '\xb1\xe8'; prepare b AS SELECT 1",
                (true, true),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                prepare_statements(text),
                expected,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
