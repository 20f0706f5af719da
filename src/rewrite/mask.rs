//! Known Postgres forms sqlparser cannot parse, made parseable by leaving
//! out the words it trips on.
//!
//! The words dropped never name a table (`NO KEY` in `FOR NO KEY UPDATE`,
//! `ANALYZE` in `VACUUM ANALYZE`, `INCLUDING ALL` in `LIKE t INCLUDING ALL`),
//! and every kept token keeps its location, so the AST walk of the masked
//! statement finds the table names at their true offsets in the original
//! text. This is still a fallback (the statement as written did not parse)
//! but a precise one: comma lists, subqueries and CTEs are handled as in any
//! parsed statement, where the keyword rule sees only the name after FROM.

use sqlparser::tokenizer::{Token, TokenWithSpan};

/// Options of `VACUUM` / `ANALYZE` written without parentheses.
const MAINTENANCE_OPTIONS: [&str; 5] = ["FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"];

/// What may follow INCLUDING / EXCLUDING in a LIKE clause.
const LIKE_OPTIONS: [&str; 10] = [
    "ALL",
    "COMMENTS",
    "COMPRESSION",
    "CONSTRAINTS",
    "DEFAULTS",
    "GENERATED",
    "IDENTITY",
    "INDEXES",
    "STATISTICS",
    "STORAGE",
];

fn word_is(token: &TokenWithSpan, word: &str) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn word_in(token: &TokenWithSpan, words: &[&str]) -> bool {
    words.iter().any(|w| word_is(token, w))
}

/// The tokens without the words sqlparser trips on, or `None` when the
/// statement holds none of the known forms.
pub(crate) fn mask_unsupported(tokens: &[TokenWithSpan]) -> Option<Vec<TokenWithSpan>> {
    // Indices of significant tokens (no whitespace or comments).
    let sig: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .collect();
    let at = |k: usize| sig.get(k).map(|&i| &tokens[i]);
    let mut drop = vec![false; tokens.len()];
    let mut any = false;

    // VACUUM / ANALYZE with bare options: `VACUUM FULL ANALYZE users`.
    if let Some(first) = at(0)
        && word_in(first, &["VACUUM", "ANALYZE", "ANALYSE"])
    {
        let mut k = 1;
        while let Some(t) = at(k) {
            if !word_in(t, &MAINTENANCE_OPTIONS) {
                break;
            }
            drop[sig[k]] = true;
            any = true;
            k += 1;
        }
    }

    for k in 0..sig.len() {
        let t = &tokens[sig[k]];
        // FOR NO KEY UPDATE -> FOR UPDATE; FOR KEY SHARE -> FOR SHARE.
        if word_is(t, "FOR") {
            if let (Some(a), Some(b), Some(c)) = (at(k + 1), at(k + 2), at(k + 3))
                && word_is(a, "NO")
                && word_is(b, "KEY")
                && word_is(c, "UPDATE")
            {
                drop[sig[k + 1]] = true;
                drop[sig[k + 2]] = true;
                any = true;
            } else if let (Some(a), Some(b)) = (at(k + 1), at(k + 2))
                && word_is(a, "KEY")
                && word_is(b, "SHARE")
            {
                drop[sig[k + 1]] = true;
                any = true;
            }
        }
        // LIKE name INCLUDING ALL EXCLUDING INDEXES ... -> LIKE name
        if (word_is(t, "INCLUDING") || word_is(t, "EXCLUDING"))
            && let Some(opt) = at(k + 1)
            && word_in(opt, &LIKE_OPTIONS)
        {
            drop[sig[k]] = true;
            drop[sig[k + 1]] = true;
            any = true;
        }
    }
    if !any {
        return None;
    }
    Some(
        tokens
            .iter()
            .zip(drop)
            .filter(|(_, d)| !d)
            .map(|(t, _)| t.clone())
            .collect(),
    )
}
