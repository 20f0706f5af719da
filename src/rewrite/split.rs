//! Tokenizing a query string, cutting it into statements, and turning the
//! tokenizer's line/column locations into byte offsets of the original text.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, TokenizerError};

/// Byte offsets of line starts, to turn a 1-based (line, column-in-chars)
/// location into a byte offset. sqlparser counts only `\n` as a line break
/// and every `char` (Korean syllables included) as one column, so must we.
pub(crate) struct TextIndex<'t> {
    text: &'t str,
    line_starts: Vec<usize>,
    /// All-ASCII text: a column is a byte count, no walk over the line
    /// (a long one-line generated query would make every lookup linear).
    ascii: bool,
}

impl<'t> TextIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        TextIndex {
            text,
            line_starts,
            ascii: text.is_ascii(),
        }
    }

    /// The byte offset of `loc`, or `None` if it lies outside the text (an
    /// empty span is line 0).
    pub(crate) fn byte_offset(&self, loc: Location) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(line)?;
        let rest = &self.text[start..];
        if self.ascii {
            let line_len = rest.find('\n').unwrap_or(rest.len());
            return (col <= line_len).then_some(start + col);
        }
        let mut chars = rest.char_indices();
        for _ in 0..col {
            let (_, c) = chars.next()?;
            if c == '\n' {
                return None;
            }
        }
        let within = chars.next().map_or(rest.len(), |(i, _)| i);
        Some(start + within)
    }
}

/// One statement of a query string: its tokens (whitespace and comments
/// included, the terminating `;` excluded).
pub(crate) struct StatementTokens {
    pub(crate) tokens: Vec<TokenWithSpan>,
}

impl StatementTokens {
    /// Whether the statement holds anything but whitespace and comments.
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens
            .iter()
            .all(|t| matches!(t.token, Token::Whitespace(_)))
    }
}

pub(crate) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, TokenizerError> {
    Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location()
}

/// Cut the tokens at top-level `;`. Literals, dollar quotes and comments are
/// single tokens already; the one place a `;` does not end a statement is a
/// SQL-standard function body `BEGIN ATOMIC ... END`, whose `BEGIN`/`CASE`
/// ... `END` nesting is tracked.
pub(crate) fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<StatementTokens> {
    let mut statements = Vec::new();
    let mut current = Vec::new();
    let mut atomic_depth = 0usize;
    let mut previous_word: Option<Keyword> = None;
    for t in tokens {
        match &t.token {
            Token::SemiColon if atomic_depth == 0 => {
                statements.push(StatementTokens {
                    tokens: std::mem::take(&mut current),
                });
                previous_word = None;
                continue;
            }
            Token::Word(w) => {
                match w.keyword {
                    Keyword::ATOMIC
                        if atomic_depth == 0 && previous_word == Some(Keyword::BEGIN) =>
                    {
                        atomic_depth = 1
                    }
                    Keyword::BEGIN | Keyword::CASE if atomic_depth > 0 => atomic_depth += 1,
                    Keyword::END if atomic_depth > 0 => atomic_depth -= 1,
                    _ => {}
                }
                previous_word = Some(w.keyword);
            }
            Token::Whitespace(_) => {}
            _ => previous_word = None,
        }
        current.push(t);
    }
    statements.push(StatementTokens { tokens: current });
    statements
}

/// For each byte offset of `offsets` (ascending), the index of the
/// statement of `sql` it lies in, counting only statements that hold more
/// than whitespace and comments (PostgreSQL answers each of those with one
/// CommandComplete or an error, and skips the others). Cut at top-level
/// `;` as [`split_statements`] does, and also not inside parentheses (a
/// rule's action list). `None` if the text does not tokenize.
pub fn statement_ordinals(sql: &str, offsets: &[usize]) -> Option<Vec<usize>> {
    let tokens = tokenize(sql).ok()?;
    let index = TextIndex::new(sql);
    let mut ordinals = Vec::with_capacity(offsets.len());
    let mut wanted = offsets.iter().peekable();
    let (mut ordinal, mut filled) = (0usize, false);
    let (mut depth, mut atomic_depth) = (0usize, 0usize);
    let mut previous_word: Option<Keyword> = None;
    for t in &tokens {
        if let Some(&&offset) = wanted.peek()
            && index
                .byte_offset(t.span.start)
                .is_some_and(|at| at >= offset)
        {
            ordinals.push(ordinal);
            wanted.next();
        }
        match &t.token {
            Token::SemiColon if depth == 0 && atomic_depth == 0 => {
                if std::mem::take(&mut filled) {
                    ordinal += 1;
                }
                previous_word = None;
                continue;
            }
            Token::Whitespace(_) => continue,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) => match w.keyword {
                Keyword::ATOMIC if atomic_depth == 0 && previous_word == Some(Keyword::BEGIN) => {
                    atomic_depth = 1
                }
                Keyword::BEGIN | Keyword::CASE if atomic_depth > 0 => atomic_depth += 1,
                Keyword::END if atomic_depth > 0 => atomic_depth -= 1,
                _ => {}
            },
            _ => {}
        }
        previous_word = match &t.token {
            Token::Word(w) => Some(w.keyword),
            _ => None,
        };
        filled = true;
    }
    (ordinals.len() == offsets.len()).then_some(ordinals)
}
