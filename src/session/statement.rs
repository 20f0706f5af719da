//! Rewriting the SQL text of one Query or Parse, whatever its encoding.
//!
//! The rewriter works on `&str`. Text that is not UTF-8 (a client on EUC_KR,
//! say) is never decoded: when the client encoding keeps ASCII bytes for
//! ASCII only, a masked copy (every byte >= 0x80 replaced by an ASCII letter,
//! same length) is rewritten and the edits are spliced into the original
//! bytes at the same offsets. Postgres' lexer takes high-bit bytes as
//! identifier characters, so masking does not change how the text lexes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BufMut;
use smallvec::SmallVec;

use crate::error::SqlState;
use crate::metrics::{DRY_RUN_INDEX, DatabaseMetrics, Metrics, SchemaMetrics, outcome_index};
use crate::rewrite::{
    Decision, Edit, OnParseError, Outcome, PositionShift, Rewrite, SchemaMap,
    mask_backslash_escapes,
};
use crate::unmapped::{ClientIdentity, UnmappedReport};

/// The rewriter's entry point ([`crate::rewrite::rewrite_sql`] in service).
pub type Rewriter = fn(&str, &SchemaMap, OnParseError) -> Rewrite;

/// The letter high-bit bytes become in the masked copy.
const MASK: u8 = b'x';

/// How the client's encoding lays out a character, as far as lexing the
/// text needs: Postgres converts the text to the server encoding before its
/// lexer runs, so a character's trail byte never acts as ASCII (a 0x5C in
/// Shift-JIS is no backslash). The proxy masks whole characters to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingClass {
    /// UTF8, SQL_ASCII, EUC_*, LATIN*, ISO_8859_*, WIN*, KOI8*,
    /// MULE_INTERNAL: every byte of a multibyte character is >= 0x80.
    AsciiSafe,
    /// SJIS, SHIFT_JIS_2004: 0xA1-0xDF is a one-byte katakana; any other
    /// high byte leads a two-byte character whose trail may be ASCII.
    ShiftJis,
    /// BIG5, GBK, UHC, JOHAB: a high byte leads a two-byte character whose
    /// trail may be ASCII.
    DoubleByte,
    /// GB18030: a high byte leads two bytes, or four when the second is a
    /// digit.
    Gb18030,
}

impl EncodingClass {
    /// Classify a `client_encoding` value as the server reports it.
    pub fn of(name: &[u8]) -> EncodingClass {
        match &name.to_ascii_uppercase()[..] {
            b"SJIS" | b"SHIFT_JIS_2004" => EncodingClass::ShiftJis,
            b"BIG5" | b"GBK" | b"UHC" | b"JOHAB" => EncodingClass::DoubleByte,
            b"GB18030" => EncodingClass::Gb18030,
            _ => EncodingClass::AsciiSafe,
        }
    }

    /// Bytes of the character that starts with high byte `lead` at `text[0]`.
    fn char_len(self, text: &[u8]) -> usize {
        let lead = text[0];
        let len = match self {
            EncodingClass::AsciiSafe => 1,
            EncodingClass::ShiftJis if (0xA1..=0xDF).contains(&lead) => 1,
            EncodingClass::ShiftJis | EncodingClass::DoubleByte => 2,
            EncodingClass::Gb18030 => {
                if text.get(1).is_some_and(|b| b.is_ascii_digit()) {
                    4
                } else {
                    2
                }
            }
        };
        len.min(text.len())
    }
}

/// A copy of `text` the rewriter can lex as Postgres would: every byte of a
/// non-ASCII character becomes an ASCII letter (Postgres' lexer takes
/// non-ASCII characters as identifier characters), so the copy has the
/// same length and every edit's byte offset holds in the original.
fn mask_for_lexing(text: &[u8], encoding: EncodingClass) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] < 0x80 {
            out.push(text[i] as char);
            i += 1;
            continue;
        }
        let len = encoding.char_len(&text[i..]);
        out.extend(std::iter::repeat_n(MASK as char, len));
        i += len;
    }
    out
}

/// What the session knows that changes how its statements read: the
/// server's `client_encoding` and `standard_conforming_strings` (followed
/// from its ParameterStatus messages) and the temporary relations the
/// session created under mapped names.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub encoding: EncodingClass,
    pub standard_conforming_strings: bool,
    pub temp_relations: TempRelations,
    /// The session ran `SET search_path` (and no RESET or DISCARD ALL
    /// since): objects it creates without a schema follow its own path.
    pub own_search_path: bool,
}

impl Default for SessionFacts {
    fn default() -> Self {
        SessionFacts {
            encoding: EncodingClass::AsciiSafe,
            // PostgreSQL's default since 9.1.
            standard_conforming_strings: true,
            temp_relations: TempRelations::default(),
            own_search_path: false,
        }
    }
}

/// Names the session created a temporary relation of. PostgreSQL looks
/// names up in pg_temp before the search_path, so a mapped name among them
/// is left bare from then on: it reaches the temporary relation while one
/// exists, and the mapped schema (first on the route's search_path)
/// otherwise. Never forgotten within a session, so a dropped or rolled
/// back temporary relation cannot leave a name qualified past a new one.
/// Unmapped names are kept too (a view over a temporary relation is
/// temporary), up to [`TempRelations::MAX`].
#[derive(Debug, Clone, Default)]
pub struct TempRelations {
    names: std::collections::HashSet<Box<str>>,
}

impl TempRelations {
    /// The most names one session keeps: a client creating temporary
    /// tables without end must not grow the proxy without end.
    pub const MAX: usize = 4096;

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn contains(&self, folded: &str) -> bool {
        self.names.contains(folded)
    }

    fn insert(&mut self, folded: String) {
        if self.names.len() < Self::MAX {
            self.names.insert(folded.into_boxed_str());
        }
    }
}

impl SessionFacts {
    /// Follow one rewrite in text order: record the temporary relations it
    /// creates and whether the session runs its own search_path, and leave
    /// as written each later name that one of them decides: a name a
    /// temporary relation shadows, an object created under the session's
    /// own search_path.
    #[inline]
    fn apply(&mut self, rewrite: &mut Rewrite, sql: &str) {
        let quiet = self.temp_relations.is_empty()
            && !self.own_search_path
            && !rewrite.names.iter().any(|n| {
                matches!(
                    n.decision,
                    Decision::TempCreated | Decision::SessionSearchPath { .. }
                )
            });
        if !quiet {
            self.follow(rewrite, sql);
        }
    }

    /// [`SessionFacts::apply`] for a rewrite that changes or uses them.
    #[inline(never)]
    fn follow(&mut self, rewrite: &mut Rewrite, sql: &str) {
        let mut dropped = Vec::new();
        for name in &mut rewrite.names {
            match &name.decision {
                Decision::TempCreated => {
                    self.temp_relations
                        .insert(folded_relation(&name.name, sql, name.offset))
                }
                Decision::SessionSearchPath { own } => self.own_search_path = *own,
                Decision::QualifiedByMap { .. } | Decision::QualifiedByFallback { .. }
                    if self.temp_relations.contains(&folded_relation(
                        &name.name,
                        sql,
                        name.offset,
                    )) =>
                {
                    name.decision = Decision::TempShadowed;
                    dropped.push(name.offset);
                }
                Decision::CreatedIn { .. } if self.own_search_path => {
                    name.decision = Decision::CreatedBySessionPath;
                    dropped.push(name.offset);
                }
                _ => {}
            }
        }
        self.views_over_temporary_relations(rewrite, sql, &mut dropped);
        if dropped.is_empty() {
            return;
        }
        // A name's edit is the first at or after it: at the name for a
        // `schema.` prefix, right after it for CREATE EXTENSION's
        // ` SCHEMA s` (edits are sorted, one per name at most).
        for name_offset in dropped {
            let i = rewrite.edits.partition_point(|e| e.offset < name_offset);
            if i < rewrite.edits.len() {
                rewrite.edits.remove(i);
            }
        }
        if rewrite.edits.is_empty() && rewrite.outcome == Outcome::Rewritten {
            rewrite.outcome = Outcome::Unchanged;
        }
    }

    /// `CREATE VIEW v AS ... FROM t` over a temporary `t`: PostgreSQL makes
    /// the view temporary itself, and refuses it in any named schema. Such
    /// a view is left bare (and remembered). Only names before the next `;`
    /// count; a `;` inside a literal just keeps the create schema (and the
    /// server's refusal), never the other way round.
    fn views_over_temporary_relations(
        &mut self,
        rewrite: &mut Rewrite,
        sql: &str,
        dropped: &mut Vec<usize>,
    ) {
        if self.temp_relations.is_empty() {
            return;
        }
        for i in 0..rewrite.names.len() {
            let view = &rewrite.names[i];
            if !matches!(view.decision, Decision::CreatedIn { .. })
                || !word_before(sql, view.offset).eq_ignore_ascii_case("view")
            {
                continue;
            }
            let from = view.offset;
            let over_temporary = rewrite.names[i + 1..]
                .iter()
                .take_while(|n| !sql.get(from..n.offset).unwrap_or(";").contains(';'))
                .any(|n| {
                    let may_be_temporary = match &n.decision {
                        Decision::NotInMap | Decision::TempShadowed => true,
                        Decision::AlreadyQualified => n
                            .name
                            .get(..8)
                            .is_some_and(|p| p.eq_ignore_ascii_case("pg_temp.")),
                        _ => false,
                    };
                    may_be_temporary
                        && self
                            .temp_relations
                            .contains(&folded_relation(&n.name, sql, n.offset))
                });
            if over_temporary {
                let folded = folded_relation(&rewrite.names[i].name, sql, from);
                self.temp_relations.insert(folded);
                rewrite.names[i].decision = Decision::TempCreated;
                dropped.push(from);
            }
        }
    }
}

/// The word right before `offset` (after skipping whitespace), or "".
fn word_before(sql: &str, offset: usize) -> &str {
    let before = sql.get(..offset).unwrap_or("").trim_end();
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    &before[start..]
}

/// The relation name of a name use as PostgreSQL stores it: the last part,
/// folded to lower case unless it was quoted.
fn folded_relation(name: &str, sql: &str, offset: usize) -> String {
    let relation = name.rsplit('.').next().unwrap_or(name);
    let quoted = if name.contains('.') {
        // `pg_temp.users`: find how the relation part was written.
        sql.get(offset..)
            .and_then(|rest| {
                rest.find(relation)
                    .map(|p| p > 0 && rest.as_bytes()[p - 1] == b'"')
            })
            .unwrap_or(false)
    } else {
        sql.as_bytes().get(offset) == Some(&b'"')
    };
    if quoted {
        relation.to_owned()
    } else {
        relation.to_ascii_lowercase()
    }
}

/// What to send for one statement text.
#[derive(Debug)]
pub enum TextRewrite {
    /// Forward the frame as it came.
    Unchanged,
    /// Send the original text with `edits` spliced in ([`splice_into`]):
    /// the session writes it straight into the frame it sends.
    Changed {
        edits: Vec<Edit>,
        context: Rewritten,
    },
    /// Not sent: the policy refuses it (0A000), or the rewriter failed
    /// (XX000): a statement the proxy could not check must not reach a
    /// server where a bare name would read a stale table.
    Rejected { code: SqlState, message: String },
}

/// What the session keeps of a rewritten statement until the server has
/// answered it.
#[derive(Debug, Default)]
pub struct Rewritten {
    /// Maps error positions back; absent for non-UTF-8 text, whose
    /// positions are not corrected (the server counts characters of the
    /// converted text, which the proxy does not decode).
    pub position: Option<PositionShift>,
    /// The counters of each schema the statement's names were qualified
    /// with, once each, for the server's answer.
    pub schemas: SchemaCounters,
}

/// Distinct schemas of one statement (almost always one).
pub type SchemaCounters = SmallVec<[Arc<SchemaMetrics>; 1]>;

/// Where one statement's outcome is recorded.
pub struct Observer<'a> {
    pub metrics: &'a Metrics,
    /// Counters of the database the client connected with.
    pub database: Option<&'a DatabaseMetrics>,
    /// The cut-over report and who is sending.
    pub unmapped: Option<(&'a UnmappedReport, &'a ClientIdentity)>,
}

impl<'a> Observer<'a> {
    /// Only the process-wide counters.
    pub fn global(metrics: &'a Metrics) -> Self {
        Observer {
            metrics,
            database: None,
            unmapped: None,
        }
    }

    fn outcome(&self, outcome: Outcome) {
        self.metrics.count_outcome(outcome);
        if let Some(db) = self.database {
            db.statements[outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn dry_run(&self) {
        self.metrics
            .statements_dry_run
            .fetch_add(1, Ordering::Relaxed);
        if let Some(db) = self.database {
            db.statements[DRY_RUN_INDEX].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tables qualified per schema (not for a dry run, which sends none)
    /// and the unmapped bare names (dry runs included, and there from every
    /// statement: that is the report a staged cut-over reads). Returns the
    /// counters of each schema qualified with.
    fn names(&self, rewrite: &Rewrite, sql: &str, dry_run: bool) -> SchemaCounters {
        let mut found: SmallVec<[(&str, Arc<SchemaMetrics>); 1]> = SmallVec::new();
        if !dry_run {
            for name in &rewrite.names {
                self.metrics.names_by_decision[name.decision.index()]
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(schema) = name.decision.qualified_schema() {
                    // One registry lookup per schema per statement.
                    let i = match found.iter().position(|(s, _)| *s == &**schema) {
                        Some(i) => i,
                        None => {
                            found.push((schema, self.metrics.schema(schema)));
                            found.len() - 1
                        }
                    };
                    found[i].1.tables_qualified.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some((report, who)) = self.unmapped {
            if dry_run && rewrite.outcome == Outcome::NoParseNeeded {
                // A staged cut-over wants every unmapped name, also from
                // statements that name no mapped table (not parsed when
                // rewriting, for speed).
                report.record(who, &crate::rewrite::table_names(sql), sql);
            } else {
                report.record(who, &rewrite.names, sql);
            }
        }
        found.into_iter().map(|(_, counters)| counters).collect()
    }
}

/// Rewrite one statement text by `map`. Counts every outcome.
///
/// With `dry_run`, the text is rewritten only to log and count what would
/// have changed ([`Metrics::statements_dry_run`]); the client's text is sent.
pub fn rewrite_text(
    text: &[u8],
    map: &SchemaMap,
    policy: OnParseError,
    facts: &mut SessionFacts,
    rewriter: Rewriter,
    observer: &Observer<'_>,
    dry_run: bool,
) -> TextRewrite {
    let result = rewrite_text_inner(text, map, policy, facts, rewriter, observer, dry_run);
    if !dry_run {
        return result;
    }
    match result {
        TextRewrite::Unchanged => {}
        TextRewrite::Changed { edits, .. } => {
            observer.dry_run();
            tracing::info!(
                original = %String::from_utf8_lossy(text),
                would_send = %String::from_utf8_lossy(&splice(text, &edits)),
                "dry_run: forwarded unchanged"
            );
        }
        TextRewrite::Rejected { message, .. } => {
            observer.dry_run();
            tracing::info!(
                original = %String::from_utf8_lossy(text),
                would_refuse = %message,
                "dry_run: forwarded unchanged"
            );
        }
    }
    TextRewrite::Unchanged
}

fn rewrite_text_inner(
    text: &[u8],
    map: &SchemaMap,
    policy: OnParseError,
    facts: &mut SessionFacts,
    rewriter: Rewriter,
    observer: &Observer<'_>,
    dry_run: bool,
) -> TextRewrite {
    let metrics = observer.metrics;
    // A dry run is counted by what it would have done, not as a rewrite.
    let count = |outcome| {
        if !dry_run {
            observer.outcome(outcome)
        }
    };
    // Text in an encoding whose trail bytes may be ASCII is never read as
    // UTF-8, even when its bytes happen to form valid UTF-8 (plain ASCII is
    // the same in every encoding).
    let encoding = facts.encoding;
    let utf8 = match encoding {
        EncodingClass::AsciiSafe => std::str::from_utf8(text).ok(),
        _ if text.is_ascii() => std::str::from_utf8(text).ok(),
        _ => None,
    };
    // Otherwise the rewriter reads a same-length masked copy, and its edits
    // go into the original bytes.
    let masked;
    let sql = match utf8 {
        Some(sql) => sql,
        None => {
            metrics.statements_non_utf8.fetch_add(1, Ordering::Relaxed);
            masked = mask_for_lexing(text, encoding);
            &masked
        }
    };
    // With standard_conforming_strings off, a backslash escapes inside
    // literals: lex a copy whose escapes are letters (same length).
    let unescaped;
    let sql = match facts.standard_conforming_strings {
        true => sql,
        false => match mask_backslash_escapes(sql) {
            Some(copy) => {
                unescaped = copy;
                &unescaped
            }
            None => sql,
        },
    };
    let Some(mut rewrite) = call(rewriter, sql, map, policy, metrics) else {
        return internal_error();
    };
    facts.apply(&mut rewrite, sql);
    count(rewrite.outcome);
    if let Some(cause) = rewrite.fallback_cause
        && !dry_run
    {
        metrics.fallbacks[cause.index()].fetch_add(1, Ordering::Relaxed);
    }
    let schemas = match utf8 {
        Some(sql) => observer.names(&rewrite, sql, dry_run),
        None => observer.names(&rewrite, &String::from_utf8_lossy(text), dry_run),
    };
    log_fallback(&rewrite);
    if rewrite.outcome == Outcome::Rejected {
        return TextRewrite::Rejected {
            code: SqlState::FeatureNotSupported,
            message: rejection_message(&rewrite),
        };
    }
    if !rewrite.changed() {
        return TextRewrite::Unchanged;
    }
    // Positions are not corrected for non-UTF-8 text: the server counts
    // characters of the converted text, which the proxy does not decode.
    let position = utf8.map(|sql| rewrite.position_shift(sql));
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            original = %String::from_utf8_lossy(text),
            sent = %String::from_utf8_lossy(&splice(text, &rewrite.edits)),
            "rewrite"
        );
    }
    TextRewrite::Changed {
        edits: rewrite.edits,
        context: Rewritten { position, schemas },
    }
}

/// Run the rewriter, containing a panic to this one statement.
fn call(
    rewriter: Rewriter,
    sql: &str,
    map: &SchemaMap,
    policy: OnParseError,
    metrics: &Metrics,
) -> Option<Rewrite> {
    let started = std::time::Instant::now();
    let rewrite =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rewriter(sql, map, policy))).ok();
    metrics.rewrite_seconds.record(started.elapsed());
    rewrite
}

fn internal_error() -> TextRewrite {
    tracing::error!("the rewriter panicked; the statement was refused");
    TextRewrite::Rejected {
        code: SqlState::Internal,
        message: "heal7-proxy failed to rewrite this statement (internal error); it was not sent"
            .to_owned(),
    }
}

/// Apply edits (sorted, byte offsets) to raw bytes.
pub fn splice(original: &[u8], edits: &[Edit]) -> Vec<u8> {
    let extra: usize = edits.iter().map(|e| e.insert.len()).sum();
    let mut out = Vec::with_capacity(original.len() + extra);
    splice_into(&mut out, original, edits);
    out
}

/// Append `original` with `edits` (sorted, byte offsets) applied to `out`.
pub fn splice_into<B: BufMut>(out: &mut B, original: &[u8], edits: &[Edit]) {
    let mut at = 0;
    for e in edits {
        let offset = e.offset.clamp(at, original.len());
        out.put_slice(&original[at..offset]);
        out.put_slice(e.insert.as_bytes());
        at = (offset + e.replaced).min(original.len());
    }
    out.put_slice(&original[at..]);
}

fn log_fallback(rewrite: &Rewrite) {
    if let Some(error) = &rewrite.parse_error {
        tracing::debug!(outcome = ?rewrite.outcome, parse_error = %error, "statement did not parse");
    }
}

/// Why a statement was refused: the policy refuses what PostgreSQL's
/// grammar rejects too (`reject`), or a name could not be placed exactly
/// (every policy but `passthrough`); the parser's words say which.
fn rejection_message(rewrite: &Rewrite) -> String {
    let why = rewrite.parse_error.as_deref().unwrap_or("parse error");
    match rewrite.rejected_table.as_deref() {
        Some(table) => {
            format!("heal7-proxy refused a statement naming mapped table \"{table}\": {why}")
        }
        None => format!("heal7-proxy refused a statement it cannot rewrite exactly: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_rewriter_refuses_the_statement() {
        fn boom(_: &str, _: &SchemaMap, _: OnParseError) -> Rewrite {
            panic!("scripted rewriter panic")
        }
        let metrics = Metrics::default();
        let map = SchemaMap::new([("s", "users")]);
        match rewrite_text(
            b"select 1",
            &map,
            OnParseError::Tokens,
            &mut SessionFacts::default(),
            boom,
            &Observer::global(&metrics),
            false,
        ) {
            TextRewrite::Rejected { code, .. } => assert_eq!(code, SqlState::Internal),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encoding_classes() {
        for safe in [
            &b"UTF8"[..],
            b"EUC_KR",
            b"LATIN1",
            b"WIN1251",
            b"SQL_ASCII",
            b"KOI8R",
        ] {
            assert_eq!(EncodingClass::of(safe), EncodingClass::AsciiSafe);
        }
        for (name, class) in [
            (&b"SJIS"[..], EncodingClass::ShiftJis),
            (b"sjis", EncodingClass::ShiftJis),
            (b"BIG5", EncodingClass::DoubleByte),
            (b"GBK", EncodingClass::DoubleByte),
            (b"UHC", EncodingClass::DoubleByte),
            (b"JOHAB", EncodingClass::DoubleByte),
            (b"GB18030", EncodingClass::Gb18030),
        ] {
            assert_eq!(EncodingClass::of(name), class);
        }
    }

    /// Trail bytes that look like a quote, a backslash or a letter must not
    /// change how the text lexes, nor hide a table name after them.
    #[test]
    fn double_byte_text_is_masked_by_whole_characters() {
        let metrics = Metrics::default();
        let map = SchemaMap::new([("shared_common", "users")]);
        for (class, text) in [
            // Shift-JIS 'ソ' is 0x83 0x5C: its trail is a backslash.
            (
                EncodingClass::ShiftJis,
                &b"select E'\x83\x5c' , '\x83\x5c' from users"[..],
            ),
            // UHC '갂' is 0x81 0x41: its trail is the letter A.
            (EncodingClass::DoubleByte, b"select '\x81\x41' from users"),
            // GB18030 four-byte character 0x81 0x30 0x81 0x30.
            (
                EncodingClass::Gb18030,
                b"select '\x81\x30\x81\x30' from users",
            ),
        ] {
            let text = text.to_vec();
            match rewrite_text(
                &text,
                &map,
                OnParseError::Tokens,
                &mut SessionFacts {
                    encoding: class,
                    ..SessionFacts::default()
                },
                crate::rewrite::rewrite_sql,
                &Observer::global(&metrics),
                false,
            ) {
                TextRewrite::Changed { edits, .. } => {
                    let sent = splice(&text, &edits);
                    let mut expected = text.clone();
                    let at = text.len() - "users".len();
                    expected.splice(at..at, b"shared_common.".iter().copied());
                    assert_eq!(sent, expected, "{class:?}");
                }
                other => panic!("{class:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn splice_inserts_at_byte_offsets_of_the_original() {
        // EUC-KR bytes before the table name stay as they were.
        let original = b"select '\xbb\xe7' from users";
        let edits = [Edit {
            offset: original.len() - 5,
            replaced: 0,
            insert: "shared_common.".into(),
        }];
        assert_eq!(
            splice(original, &edits),
            b"select '\xbb\xe7' from shared_common.users".to_vec()
        );
    }

    #[test]
    fn non_utf8_text_is_counted_and_never_corrupted() {
        let metrics = Metrics::default();
        let map = SchemaMap::new([("s", "users")]);
        let text = b"select '\xbb\xe7' from users";
        for class in [EncodingClass::AsciiSafe, EncodingClass::ShiftJis] {
            match rewrite_text(
                text,
                &map,
                OnParseError::Tokens,
                &mut SessionFacts {
                    encoding: class,
                    ..SessionFacts::default()
                },
                crate::rewrite::rewrite_sql,
                &Observer::global(&metrics),
                false,
            ) {
                TextRewrite::Unchanged => {}
                TextRewrite::Changed { edits, context } => {
                    let sent = splice(text, &edits);
                    assert!(context.position.is_none());
                    assert!(sent.windows(2).any(|w| w == b"\xbb\xe7"));
                }
                TextRewrite::Rejected { .. } => panic!("rejected"),
            }
        }
        assert_eq!(Metrics::get(&metrics.statements_non_utf8), 2);
    }
}

#[cfg(test)]
mod facts_tests {
    use super::*;

    fn send(facts: &mut SessionFacts, sql: &str) -> String {
        let map = SchemaMap::new([("shared_common", "users"), ("saju_service", "kasi_cache")]);
        send_on(&map, facts, sql)
    }

    /// What the session sends for `sql` with `map` and `facts`.
    fn send_on(map: &SchemaMap, facts: &mut SessionFacts, sql: &str) -> String {
        let metrics = Metrics::default();
        match rewrite_text(
            sql.as_bytes(),
            map,
            OnParseError::Tokens,
            facts,
            crate::rewrite::rewrite_sql,
            &Observer::global(&metrics),
            false,
        ) {
            TextRewrite::Unchanged => sql.to_owned(),
            TextRewrite::Changed { edits, .. } => {
                String::from_utf8(splice(sql.as_bytes(), &edits)).unwrap()
            }
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn a_temporary_table_shadows_its_mapped_name_from_its_creation_on() {
        let mut facts = SessionFacts::default();
        assert_eq!(
            send(&mut facts, "SELECT * FROM users"),
            "SELECT * FROM shared_common.users"
        );
        assert_eq!(
            send(
                &mut facts,
                "SELECT * FROM users; CREATE TEMP TABLE users (id int); INSERT INTO users VALUES (1)"
            ),
            "SELECT * FROM shared_common.users; CREATE TEMP TABLE users (id int); INSERT INTO users VALUES (1)"
        );
        assert_eq!(send(&mut facts, "DROP TABLE users"), "DROP TABLE users");
        assert_eq!(
            send(&mut facts, "SELECT * FROM users, kasi_cache"),
            "SELECT * FROM users, saju_service.kasi_cache"
        );
        // Another session is not affected.
        assert_eq!(
            send(&mut SessionFacts::default(), "DROP TABLE users"),
            "DROP TABLE shared_common.users"
        );
        // pg_temp spelling, quoted: the same relation name.
        let mut facts = SessionFacts::default();
        send(&mut facts, "CREATE TABLE pg_temp.\"kasi_cache\" (k text)");
        assert_eq!(
            send(&mut facts, "DELETE FROM kasi_cache"),
            "DELETE FROM kasi_cache"
        );
    }

    #[test]
    fn literals_follow_standard_conforming_strings() {
        let sql = r"INSERT INTO users (note) VALUES ('You\'ve been removed from users list')";
        let mut off = SessionFacts {
            standard_conforming_strings: false,
            ..SessionFacts::default()
        };
        assert_eq!(
            send(&mut off, sql),
            r"INSERT INTO shared_common.users (note) VALUES ('You\'ve been removed from users list')"
        );
        // Off: one literal up to the last quote, no table at all.
        let sql = r"SELECT 'a\', name FROM users --'";
        assert_eq!(send(&mut off, sql), sql);
        assert_eq!(
            send(&mut SessionFacts::default(), sql),
            r"SELECT 'a\', name FROM shared_common.users --'"
        );
    }

    #[test]
    fn creations_follow_the_sessions_own_search_path() {
        let map = SchemaMap::new([("shared_common", "users")]).with_create_schema(Some("public"));
        let mut facts = SessionFacts::default();
        let mut send = |sql: &str| send_on(&map, &mut facts, sql);
        assert_eq!(
            send("CREATE TABLE a (id int)"),
            "CREATE TABLE public.a (id int)"
        );
        assert_eq!(
            send("SET search_path = alt, public; CREATE TABLE b (id int)"),
            "SET search_path = alt, public; CREATE TABLE b (id int)"
        );
        assert_eq!(
            send("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'"),
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'"
        );
        assert_eq!(
            send("CREATE EXTENSION pgcrypto"),
            "CREATE EXTENSION pgcrypto"
        );
        // Mapped names are still qualified under the session's own path.
        assert_eq!(
            send("SELECT * FROM users"),
            "SELECT * FROM shared_common.users"
        );
        assert_eq!(send("RESET search_path"), "RESET search_path");
        assert_eq!(
            send("CREATE TABLE c (id int)"),
            "CREATE TABLE public.c (id int)"
        );
        send("set SEARCH_PATH to alt");
        assert_eq!(send("CREATE TABLE d (id int)"), "CREATE TABLE d (id int)");
        send("DISCARD ALL");
        assert_eq!(
            send("CREATE TABLE e (id int)"),
            "CREATE TABLE public.e (id int)"
        );
        send("SELECT set_config('search_path', 'alt', false)");
        assert_eq!(send("CREATE TABLE f (id int)"), "CREATE TABLE f (id int)");
    }

    #[test]
    fn a_view_over_a_temporary_relation_is_left_to_pg_temp() {
        let map = SchemaMap::new([("shared_common", "users")]).with_create_schema(Some("public"));
        let mut facts = SessionFacts::default();
        let mut send = |sql: &str| send_on(&map, &mut facts, sql);
        assert_eq!(
            send("CREATE TEMP TABLE gtmp (a int)"),
            "CREATE TEMP TABLE gtmp (a int)"
        );
        assert_eq!(
            send("CREATE VIEW gview AS SELECT a FROM gtmp"),
            "CREATE VIEW gview AS SELECT a FROM gtmp"
        );
        // A view over permanent tables still gets the create schema, also
        // after a statement that named the temporary table.
        assert_eq!(
            send("SELECT * FROM gtmp; CREATE VIEW pview AS SELECT * FROM users"),
            "SELECT * FROM gtmp; CREATE VIEW public.pview AS SELECT * FROM shared_common.users"
        );
        // A table made from a temporary one is permanent: create schema.
        assert_eq!(
            send("CREATE TABLE copy AS SELECT * FROM gtmp"),
            "CREATE TABLE public.copy AS SELECT * FROM gtmp"
        );
    }
}
