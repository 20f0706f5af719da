//! The qualify step: one Query or Parse text in, what to send out, with
//! the route's mode, the parse-error policy and the session's facts, and
//! every outcome counted (metrics, the unmapped-name report). The pure work
//! is the rewriter's ([`crate::rewrite`]); this layer adds counting,
//! logging, dry runs and containing a rewriter panic to its statement.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use smallvec::SmallVec;

use crate::clients::ClientIdentity;
use crate::config::Mode;
use crate::metrics::{DatabaseMetrics, Metrics, SchemaMetrics, StatementOutcome};
use crate::protocol::SqlState;
use crate::rewrite::{
    Edit, OnParseError, Outcome, PositionShift, Rewrite, SchemaMap, SessionFacts, lexable_text,
    mask_literals, splice,
};
use crate::unmapped::UnmappedReport;

/// The rewriter's entry point ([`crate::rewrite::rewrite_sql`] in service;
/// tests substitute a scripted one).
pub type Rewriter = fn(&str, &SchemaMap, OnParseError) -> Rewrite;

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
    /// `SHOW search_path` statements sent as a SELECT: for the text's
    /// statements in order (up to the last such one), whether its
    /// CommandComplete must read `SHOW`. Only a Query's answers are
    /// corrected; an Execute's keeps the SELECT's tag.
    pub show_tags: Option<Box<[bool]>>,
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
    /// Log what a dry run would have sent (not for EXPLAIN REWRITE, which
    /// sends nothing).
    pub log_dry_run: bool,
}

impl<'a> Observer<'a> {
    /// Only the process-wide counters.
    pub fn global(metrics: &'a Metrics) -> Self {
        Observer {
            metrics,
            database: None,
            unmapped: None,
            log_dry_run: true,
        }
    }

    /// Counts into `metrics` only, and logs nothing: for EXPLAIN REWRITE.
    pub fn quiet(metrics: &'a Metrics) -> Self {
        Observer {
            log_dry_run: false,
            ..Observer::global(metrics)
        }
    }

    fn outcome(&self, outcome: StatementOutcome) {
        self.metrics.count(outcome);
        if let Some(db) = self.database {
            db.statements[outcome as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn dry_run(&self) {
        self.outcome(StatementOutcome::DryRun);
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

/// The qualify step: what the proxy sends for one statement text on a
/// route with `map` and `mode`. Sessions, the `rewrite` command and
/// EXPLAIN REWRITE all go through here, so "what the proxy would send"
/// exists once. No map, or mode `off`: the text as it came, uncounted.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn qualify(
    text: &[u8],
    map: Option<&SchemaMap>,
    mode: Mode,
    policy: OnParseError,
    facts: &mut SessionFacts,
    rewriter: Rewriter,
    observer: &Observer<'_>,
) -> TextRewrite {
    match (map, mode) {
        (Some(map), Mode::Rewrite | Mode::DryRun) => rewrite_text(
            text,
            map,
            policy,
            facts,
            rewriter,
            observer,
            mode == Mode::DryRun,
        ),
        _ => TextRewrite::Unchanged,
    }
}

/// Rewrite one statement text by `map`. Counts every outcome.
///
/// With `dry_run`, the text is rewritten only to log and count what would
/// have changed ([`StatementOutcome::DryRun`]); the client's text is sent.
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
    if !dry_run || matches!(result, TextRewrite::Unchanged) {
        return result;
    }
    observer.dry_run();
    if observer.log_dry_run {
        // Literals masked: a dry run logs every statement at INFO.
        let original = mask_literals(&String::from_utf8_lossy(text));
        match &result {
            TextRewrite::Changed { edits, .. } => tracing::info!(
                %original,
                would_send = %mask_literals(&String::from_utf8_lossy(&splice(text, edits))),
                "dry_run: forwarded unchanged"
            ),
            TextRewrite::Rejected { message, .. } => tracing::info!(
                %original,
                would_refuse = %message,
                "dry_run: forwarded unchanged"
            ),
            TextRewrite::Unchanged => {}
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
            observer.outcome(StatementOutcome::from(outcome))
        }
    };
    let text_read = lexable_text(text, facts.encoding, facts.standard_conforming_strings);
    let utf8 = text_read.utf8;
    if utf8.is_none() {
        metrics.statements_non_utf8.fetch_add(1, Ordering::Relaxed);
    }
    let sql = &*text_read.lexed;
    let Some(mut rewrite) = call(rewriter, sql, map, policy, metrics) else {
        return internal_error();
    };
    facts.apply(&mut rewrite, sql);
    if let std::borrow::Cow::Owned(lexed) = &text_read.lexed {
        // A name read inside a masked literal is not the server's.
        rewrite.keep_masked_strings(lexed, text);
    }
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
    let show_tags = rewrite
        .search_path_shown_at()
        .and_then(|at| show_tags(sql, &at));
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            original = %String::from_utf8_lossy(text),
            sent = %String::from_utf8_lossy(&splice(text, &rewrite.edits)),
            "rewrite"
        );
    }
    TextRewrite::Changed {
        edits: rewrite.edits,
        context: Rewritten {
            position,
            schemas,
            show_tags,
        },
    }
}

/// Which statements of `sql` get the `SHOW` tag: those holding the
/// offsets `at`.
#[cold]
fn show_tags(sql: &str, at: &[usize]) -> Option<Box<[bool]>> {
    let ordinals = crate::rewrite::statement_ordinals(sql, at)?;
    let mut tags = vec![false; ordinals.iter().max()? + 1];
    for o in ordinals {
        tags[o] = true;
    }
    Some(tags.into_boxed_slice())
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
mod tests;
