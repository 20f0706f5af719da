//! The pure rewriter: SQL text + [`SchemaMap`] in, SQL text + a report of
//! what was done out. No I/O, no sockets, no wire protocol.
//!
//! The original text is edited in place (an insertion of `schema.` before each
//! bare mapped table name); the AST is never re-printed, so comments, literals,
//! quoting, whitespace and letter case are kept byte for byte.
//!
//! CONTRACT (other modules rely on this API; keep it stable):
//! - [`SchemaMap`]: which bare table name belongs to which schema.
//! - [`rewrite_sql`]: the one entry point the session and the CLI call.
//! - [`Rewrite`]: the result: the outcome, the edits, the per-name decisions,
//!   and [`Rewrite::original_position`] to map a server error position back.
//!
//! The steps, in order:
//! 1. `prefilter`: no mapped name at an identifier boundary -> done, no parse.
//!    Then `cache`: the same text, or the same shape (literals masked, see
//!    `shape`), rewritten before with this map -> the stored result.
//! 2. `split`: tokenize once (sqlparser's Postgres tokenizer), cut at
//!    top-level `;`, map token locations (chars) to byte offsets.
//! 3. `statement`: parse each statement alone; `walk` finds every table
//!    name with its CTE scope; each insertion point is verified against the
//!    text; a keyword cross-check on the tokens catches names the walk did
//!    not see. `strings` reads the string literals PostgreSQL takes as
//!    relation names (`nextval('public.users_id_seq')`, `'x'::regclass`)
//!    for a legacy `public.` spelling.
//!    A text over 64 KiB goes through `large` first: a streaming lexer
//!    finds whether any identifier names a mapped object and cuts long
//!    literal lists; steps 2-3 run on that skeleton. Past
//!    [`SchemaMap::with_max_parse_bytes`] nothing larger is ever parsed.
//! 4. `exact`: statements sqlparser cannot parse, or whose names the walk
//!    missed (the keyword cross-check of `fallback`), are qualified by
//!    PostgreSQL's own grammar (libpg_query); [`OnParseError`] decides only
//!    for statements PostgreSQL's parser rejects too.

use std::cell::RefCell;

mod cache;
mod catalog;
mod deallocate;
mod encoding;
mod escapes;
mod exact;
mod facts;
mod fallback;
mod hooks;
mod large;
mod map;
mod names;
mod outcome;
mod prefilter;
mod quote;
mod redact;
mod search_path;
mod shape;
mod splice;
mod split;
mod sql_prepare;
mod statement;
mod strings;
mod walk;

#[cfg(test)]
mod tests;

pub use cache::{CacheStats, DEFAULT_CACHE_BYTES};
pub use deallocate::{Deallocation, deallocation};
pub use encoding::{EncodingClass, LexableText, lexable_text, mask_for_lexing};
pub use escapes::mask_backslash_escapes;
pub use facts::{SessionFacts, TempRelations};
pub use map::{DEFAULT_MAX_PARSE_BYTES, SchemaMap};
pub use names::table_names;
pub use outcome::{Decision, Edit, FallbackCause, NameUse, Outcome, PositionShift, Rewrite};
pub use quote::quote_identifier;
pub use redact::mask_literals;
pub use splice::{splice, splice_into};
pub use split::statement_ordinals;
pub use sql_prepare::{
    SqlPrepared, Use as SqlPreparedUse, may_be_sql_prepared, prepare_statements, sql_prepared,
};

use cache::{Cached, KeyKind, ShapeRewrite};

use prefilter::MappedNamePrefilter;
use split::{TextIndex, split_statements, tokenize};
use statement::rewrite_statement;

/// What to do with a statement that names a mapped table (per the
/// tokenizer) and that sqlparser cannot parse. Such a statement is first
/// qualified exactly by PostgreSQL's own grammar (libpg_query), whatever the
/// policy; the policy decides only when that parser rejects it too (a
/// syntax error the server will report) or parses it but cannot place a
/// mapped name in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnParseError {
    /// Forward a syntax error unchanged (the server rejects it); refuse a
    /// statement whose mapped name cannot be placed exactly.
    #[default]
    Tokens,
    /// Refuse the statement (the session answers 0A000).
    Reject,
    /// Forward the statement unchanged.
    Passthrough,
}

/// Rewrite every statement in `sql` (one simple-Query string may hold
/// several) by `map`, following `policy` for statements that do not parse.
///
/// Statements are rewritten one by one, so one that does not parse does not
/// stop the others. The combined outcome is the worst of the statements',
/// in this order: `Rejected` > `FallbackTokens` > `PassthroughUnparsed` >
/// `Rewritten` > `Unchanged` > `NoParseNeeded`. A string in which no mapped
/// name occurs at an identifier boundary is `NoParseNeeded` (not even
/// tokenized); a string that only holds comments or whitespace, or whose
/// unparsable statements name no mapped table, is `Unchanged` (with the
/// parser's message in `parse_error` in the latter case). `parse_error`
/// holds the first statement's error; it also explains a `FallbackTokens`
/// outcome for a statement that parsed but named a table where the AST walk
/// does not look (the keyword cross-check).
pub fn rewrite_sql(sql: &str, map: &SchemaMap, policy: OnParseError) -> Rewrite {
    let Some(prefilter) = &map.prefilter else {
        return Rewrite::untouched();
    };
    let cache = &map.cache;
    // Past max_parse_bytes a text is not worth a cache key of its size.
    if !cache.enabled() || sql.len() > map.max_parse_bytes() {
        return rewrite_filtered(sql, map, policy, prefilter);
    }
    SCRATCH.with(|scratch| {
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            // Only if a rewrite ever re-entered this one.
            return rewrite_filtered(sql, map, policy, prefilter);
        };
        let result = rewrite_cached(sql, map, policy, prefilter, &mut scratch);
        scratch.trim();
        result
    })
}

thread_local! {
    /// Key and word buffers reused by every lookup on this thread, so a
    /// cache hit allocates nothing to find its entry.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    word_starts: Vec<u32>,
}

impl Scratch {
    /// Give back what a huge statement made the buffers grow to.
    fn trim(&mut self) {
        const KEEP: usize = 64 * 1024;
        if self.key.capacity() > KEEP {
            self.key = Vec::new();
        }
        if self.word_starts.capacity() > KEEP / 4 {
            self.word_starts = Vec::new();
        }
    }
}

fn rewrite_cached(
    sql: &str,
    map: &SchemaMap,
    policy: OnParseError,
    prefilter: &MappedNamePrefilter,
    scratch: &mut Scratch,
) -> Rewrite {
    let cache = &map.cache;
    // A shape when the scanner is sure of one (simple-protocol statements
    // with literals inline); the exact text otherwise (Parse with `$n`,
    // comments, dollar quotes, ...). Never both: a text key per literal
    // value would only churn the cache.
    //
    // The cache is looked up before the prefilter, so a statement that
    // names a mapped table, the common case, skips the prefilter's scan
    // (one that names none pays a lookup first). A hit must be a text the
    // prefilter would pass: a text key is the text itself, and a shape is
    // cached only when its words pass with the literals masked (a mapped
    // name or `public.` inside a string is not a property of the shape).
    let Scratch { key, word_starts } = scratch;
    key.clear();
    key.extend_from_slice(&cache::key_prefix(KeyKind::Shape, policy));
    if shape::scan_into(sql, key, word_starts) {
        if let Some(hit) = cache.get(key, KeyKind::Shape)
            && let Cached::Shape(s) = &*hit
            && let Some(r) = s.instantiate(word_starts)
        {
            return r;
        }
        if !prefilter.may_name_mapped_table(sql) {
            return Rewrite::untouched();
        }
        cache.count_miss();
        let r = rewrite_parsed(sql, map, policy, prefilter);
        if prefilter.names_a_listed_word(&key[cache::KEY_PREFIX_LEN..])
            && let Some(anchored) = ShapeRewrite::anchor(&r, word_starts)
        {
            cache.insert(key, Cached::Shape(anchored));
        }
        return r;
    }
    key.clear();
    key.extend_from_slice(&cache::key_prefix(KeyKind::Text, policy));
    key.extend_from_slice(sql.as_bytes());
    if let Some(hit) = cache.get(key, KeyKind::Text)
        && let Cached::Text(r) = &*hit
    {
        return r.clone();
    }
    if !prefilter.may_name_mapped_table(sql) {
        return Rewrite::untouched();
    }
    cache.count_miss();
    let r = rewrite_parsed(sql, map, policy, prefilter);
    cache.insert(key, Cached::Text(r.clone()));
    r
}

/// [`rewrite_sql`] without the cache: what a miss costs. For benches and
/// the tests that prove a cache hit equals a fresh rewrite.
#[doc(hidden)]
pub fn rewrite_sql_uncached(sql: &str, map: &SchemaMap, policy: OnParseError) -> Rewrite {
    match &map.prefilter {
        Some(prefilter) => rewrite_filtered(sql, map, policy, prefilter),
        None => Rewrite::untouched(),
    }
}

/// The prefilter, then a rewrite of what it lets through: every path that
/// does not ask the cache.
fn rewrite_filtered(
    sql: &str,
    map: &SchemaMap,
    policy: OnParseError,
    prefilter: &MappedNamePrefilter,
) -> Rewrite {
    if !prefilter.may_name_mapped_table(sql) {
        return Rewrite::untouched();
    }
    rewrite_parsed(sql, map, policy, prefilter)
}

/// The parts of a rewrite, timed apart by `benches/rewrite.rs`.
#[doc(hidden)]
pub mod parts {
    /// Tokenize with sqlparser's Postgres tokenizer (the first step of a
    /// miss); the number of tokens.
    pub fn tokenize(sql: &str) -> usize {
        super::tokenize(sql).map_or(0, |t| t.len())
    }

    /// Tokenize and parse, as a miss does, without walking the AST.
    pub fn parse(sql: &str) -> usize {
        use sqlparser::dialect::PostgreSqlDialect;
        use sqlparser::parser::Parser;
        Parser::new(&PostgreSqlDialect {})
            .with_recursion_limit(super::statement::RECURSION_LIMIT)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
            .map_or(0, |s| s.len())
    }

    /// The literal-masking scan of a shape-cache lookup; the key length.
    pub fn shape(sql: &str) -> Option<usize> {
        super::shape::scan(sql).map(|s| s.key.len())
    }
}

impl Rewrite {
    /// The result for a text the prefilter clears.
    fn untouched() -> Rewrite {
        Rewrite {
            outcome: Outcome::NoParseNeeded,
            edits: Vec::new(),
            names: Vec::new(),
            parse_error: None,
            fallback_cause: None,
            rejected_table: None,
        }
    }
}

/// Everything after the prefilter: a large text through its skeleton
/// (`large`), any other whole.
fn rewrite_parsed(
    sql: &str,
    map: &SchemaMap,
    policy: OnParseError,
    prefilter: &MappedNamePrefilter,
) -> Rewrite {
    if sql.len() > large::COLLAPSE_ABOVE.min(map.max_parse_bytes()) {
        return large::rewrite_large(sql, map, policy, prefilter, rewrite_whole);
    }
    rewrite_tokens(sql, map, policy, prefilter)
}

/// [`rewrite_tokens`] for `large`, which hands over no prefilter.
fn rewrite_whole(sql: &str, map: &SchemaMap, policy: OnParseError) -> Rewrite {
    match &map.prefilter {
        Some(prefilter) => rewrite_tokens(sql, map, policy, prefilter),
        None => Rewrite::untouched(),
    }
}

/// Tokenize, split, parse, qualify.
fn rewrite_tokens(
    sql: &str,
    map: &SchemaMap,
    policy: OnParseError,
    prefilter: &MappedNamePrefilter,
) -> Rewrite {
    let mut result = Rewrite::untouched();
    let tokens = match tokenize(sql) {
        Ok(tokens) => tokens,
        Err(e) => {
            // Without tokens there is nothing to anchor a fallback on. The
            // text is broken for Postgres too (unterminated literal or
            // quote), so only Reject refuses it; the others forward it.
            tracing::debug!(error = %e, ?policy, "query text does not tokenize");
            result.parse_error = Some(e.to_string());
            if policy == OnParseError::Reject {
                result.outcome = Outcome::Rejected;
                result.rejected_table = prefilter.first_mapped_name(sql);
            } else {
                result.outcome = Outcome::PassthroughUnparsed;
            }
            return result;
        }
    };
    let index = TextIndex::new(sql);
    result.outcome = Outcome::Unchanged;
    for statement in split_statements(tokens) {
        if statement.is_empty() {
            continue;
        }
        let done = rewrite_statement(sql, &index, statement.tokens, map, policy);
        if severity(done.outcome) > severity(result.outcome) {
            result.outcome = done.outcome;
        }
        result.parse_error = result.parse_error.or(done.parse_error);
        result.fallback_cause = result.fallback_cause.or(done.fallback_cause);
        result.rejected_table = result.rejected_table.or(done.rejected_table);
        result.names.extend(done.names);
        result.edits.extend(done.edits);
    }
    if result.outcome == Outcome::Rejected {
        result.edits.clear();
    }
    result
}

/// The order in which outcomes of several statements combine (see
/// [`rewrite_sql`]).
fn severity(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::NoParseNeeded => 0,
        Outcome::Unchanged => 1,
        Outcome::Rewritten => 2,
        Outcome::PassthroughUnparsed => 3,
        Outcome::FallbackTokens => 4,
        Outcome::Rejected => 5,
    }
}
