//! Process-wide counters. Plain atomics: the hot path only ever increments.
//! The admin endpoint (a later issue) renders them; tests read them directly.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::rewrite::Outcome;

#[derive(Debug, Default)]
pub struct Metrics {
    pub clients_active: AtomicU64,
    pub clients_total: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    /// Frames refused for a bad length (under 4 or over the cap).
    pub frames_rejected: AtomicU64,
    /// Cancel requests forwarded / dropped for an unknown key.
    pub cancels_forwarded: AtomicU64,
    pub cancels_unknown: AtomicU64,
    /// Query/Parse texts that were not valid UTF-8 (forwarded unchanged).
    pub statements_non_utf8: AtomicU64,
    pub statements_no_parse_needed: AtomicU64,
    pub statements_unchanged: AtomicU64,
    pub statements_rewritten: AtomicU64,
    pub statements_fallback_tokens: AtomicU64,
    pub statements_rejected: AtomicU64,
    pub statements_passthrough_unparsed: AtomicU64,
    /// Statements a `dry_run` database forwarded unchanged although a
    /// rewrite would have changed (or refused) them.
    pub statements_dry_run: AtomicU64,
    /// Error positions moved back to the client's text.
    pub error_positions_corrected: AtomicU64,
}

impl Metrics {
    pub fn count_outcome(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::NoParseNeeded => &self.statements_no_parse_needed,
            Outcome::Unchanged => &self.statements_unchanged,
            Outcome::Rewritten => &self.statements_rewritten,
            Outcome::FallbackTokens => &self.statements_fallback_tokens,
            Outcome::Rejected => &self.statements_rejected,
            Outcome::PassthroughUnparsed => &self.statements_passthrough_unparsed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
