//! Process-wide counters. Plain atomics: the hot path only ever increments.
//! The admin endpoint renders them (Prometheus text); tests read them directly.
//!
//! Labelled families (per database, per schema) live in small registries: a
//! session looks its database's counters up once, at startup; per-schema
//! counters are found under a read lock, uncontended on the hot path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::rewrite::{Decision, FallbackCause, Outcome};

/// The one database label of every name the config does not know: the
/// name in a startup packet is the client's free text, sent before any
/// login, so a series per name would let anyone grow `/metrics` at will.
pub const OTHER_DATABASE: &str = "(other)";

#[derive(Debug, Default)]
pub struct Metrics {
    pub clients_active: AtomicU64,
    pub clients_total: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    /// Frames refused for a bad length (under 4 or over the cap; a startup
    /// packet under 8 or over its cap).
    pub frames_rejected: AtomicU64,
    /// Clients turned away before reaching an upstream, indexed by
    /// [`Refusal`]; read them with [`Metrics::refused`].
    refused: [AtomicU64; Refusal::ALL.len()],
    /// TLS handshakes by side and result, indexed by [`TlsHandshake`].
    tls_handshakes: [AtomicU64; TlsHandshake::ALL.len()],
    /// Cancel requests forwarded / dropped for an unknown key.
    pub cancels_forwarded: AtomicU64,
    pub cancels_unknown: AtomicU64,
    /// Cancel requests for another peer's key, sent on to that peer.
    pub cancels_to_peer: AtomicU64,
    /// Cancel requests dropped for a peer id without an address in
    /// `proxy.peers`, or forwarded to this instance by a peer that took it
    /// for another one.
    pub cancels_unknown_peer: AtomicU64,
    /// Named prepared statements prepared again after a reload changed
    /// their rewritten text, and those that could not be (dropped instead,
    /// so a later Bind fails loudly rather than reading a stale table).
    pub prepared_reprepared: AtomicU64,
    pub prepared_reprepare_failed: AtomicU64,
    /// Query/Parse texts that were not valid UTF-8 (forwarded unchanged).
    pub statements_non_utf8: AtomicU64,
    /// Query/Parse texts by what the proxy did, indexed by
    /// [`StatementOutcome`]; read them with [`Metrics::statements`].
    statements: [AtomicU64; StatementOutcome::ALL.len()],
    /// Error positions moved back to the client's text.
    pub error_positions_corrected: AtomicU64,
    /// Names found in rewritten statements, by what was decided for them
    /// (indexed by `Decision::index`).
    pub names_by_decision: [AtomicU64; Decision::LABELS.len()],
    /// Statements sent to the exact parser, by why (indexed by
    /// `FallbackCause::index`).
    pub fallbacks: [AtomicU64; FallbackCause::LABELS.len()],
    /// Time the rewriter took per Query/Parse text that it looked at.
    pub rewrite_seconds: Histogram,
    /// Client request (Query, or the Sync ending an extended batch) to the
    /// server's ReadyForQuery: the statement round trip the client sees.
    pub statement_seconds: Histogram,
    databases: RwLock<Registry<DatabaseMetrics>>,
    schemas: RwLock<Registry<SchemaMetrics>>,
}

/// Counters of one client-facing database name.
#[derive(Debug, Default)]
pub struct DatabaseMetrics {
    pub clients_active: AtomicU64,
    pub clients_total: AtomicU64,
    /// Indexed by [`StatementOutcome`].
    pub statements: [AtomicU64; StatementOutcome::ALL.len()],
}

/// Counters of one schema of the map.
#[derive(Debug, Default)]
pub struct SchemaMetrics {
    /// Table names qualified with this schema.
    pub tables_qualified: AtomicU64,
    /// Statements that touched this schema, by the server's answer.
    pub results_ok: AtomicU64,
    pub results_error: AtomicU64,
}

/// A TLS handshake's side and result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsHandshake {
    ClientOk,
    ClientFailed,
    UpstreamOk,
    UpstreamFailed,
}

impl TlsHandshake {
    /// Every kind, in counter-slot order.
    pub const ALL: [TlsHandshake; 4] = [
        TlsHandshake::ClientOk,
        TlsHandshake::ClientFailed,
        TlsHandshake::UpstreamOk,
        TlsHandshake::UpstreamFailed,
    ];

    /// The `side` and `result` labels in `/metrics`.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            TlsHandshake::ClientOk => ("client", "ok"),
            TlsHandshake::ClientFailed => ("client", "failed"),
            TlsHandshake::UpstreamOk => ("upstream", "ok"),
            TlsHandshake::UpstreamFailed => ("upstream", "failed"),
        }
    }
}

/// Why a client was turned away before reaching an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over `proxy.max_client_connections` (53300).
    MaxClientConnections,
    /// A database name the config does not list, with `other_databases:
    /// refuse` (3D000).
    OtherDatabase,
    /// A replication connection without `allow_replication` (28000).
    Replication,
    /// No TLS while `proxy.tls.mode` is `require` (08P01).
    TlsRequired,
}

impl Refusal {
    /// Every reason, in counter-slot and label order.
    pub const ALL: [Refusal; 4] = [
        Refusal::MaxClientConnections,
        Refusal::OtherDatabase,
        Refusal::Replication,
        Refusal::TlsRequired,
    ];

    /// The `reason` label in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxClientConnections => "max_client_connections",
            Refusal::OtherDatabase => "other_database",
            Refusal::Replication => "replication",
            Refusal::TlsRequired => "tls_required",
        }
    }
}

/// What the proxy did with one Query/Parse text, as counted and exported:
/// the rewriter's [`Outcome`], plus the dry runs (forwarded unchanged
/// although a rewrite would have changed or refused them). Written once:
/// every exporter iterates [`StatementOutcome::ALL`], so a new outcome
/// cannot compile while one of them misses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementOutcome {
    NoParseNeeded,
    Unchanged,
    Rewritten,
    FallbackTokens,
    Rejected,
    PassthroughUnparsed,
    DryRun,
}

impl StatementOutcome {
    /// Every outcome, in counter-slot and label order.
    pub const ALL: [StatementOutcome; 7] = [
        StatementOutcome::NoParseNeeded,
        StatementOutcome::Unchanged,
        StatementOutcome::Rewritten,
        StatementOutcome::FallbackTokens,
        StatementOutcome::Rejected,
        StatementOutcome::PassthroughUnparsed,
        StatementOutcome::DryRun,
    ];

    /// The label in `/metrics` and the column in SHOW STATS.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementOutcome::NoParseNeeded => "no_parse_needed",
            StatementOutcome::Unchanged => "unchanged",
            StatementOutcome::Rewritten => "rewritten",
            StatementOutcome::FallbackTokens => "fallback_tokens",
            StatementOutcome::Rejected => "rejected",
            StatementOutcome::PassthroughUnparsed => "passthrough_unparsed",
            StatementOutcome::DryRun => "dry_run",
        }
    }
}

impl From<Outcome> for StatementOutcome {
    #[inline]
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::NoParseNeeded => StatementOutcome::NoParseNeeded,
            Outcome::Unchanged => StatementOutcome::Unchanged,
            Outcome::Rewritten => StatementOutcome::Rewritten,
            Outcome::FallbackTokens => StatementOutcome::FallbackTokens,
            Outcome::Rejected => StatementOutcome::Rejected,
            Outcome::PassthroughUnparsed => StatementOutcome::PassthroughUnparsed,
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`).
pub const BUCKET_BOUNDS_US: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000,
];

/// A fixed-bucket latency histogram; recording is two relaxed adds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; BUCKET_BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let us = elapsed.as_micros() as u64;
        let slot = BUCKET_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKET_BOUNDS_US.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf), and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        (cumulative, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

impl Metrics {
    /// The process-wide counter of `outcome`.
    #[inline]
    pub fn statements(&self, outcome: StatementOutcome) -> &AtomicU64 {
        &self.statements[outcome as usize]
    }

    /// The counter of TLS handshakes of `kind`.
    pub fn tls_handshakes(&self, kind: TlsHandshake) -> &AtomicU64 {
        &self.tls_handshakes[kind as usize]
    }

    /// The counter of clients turned away for `reason`.
    pub fn refused(&self, reason: Refusal) -> &AtomicU64 {
        &self.refused[reason as usize]
    }

    pub fn count(&self, outcome: StatementOutcome) {
        self.statements(outcome).fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters of one client-facing database name (created on first
    /// use). Callers pass only configured names, else [`OTHER_DATABASE`].
    pub fn database(&self, name: &str) -> Arc<DatabaseMetrics> {
        registry_entry(&self.databases, name)
    }

    /// The counters of one schema (created on first use).
    pub fn schema(&self, name: &str) -> Arc<SchemaMetrics> {
        registry_entry(&self.schemas, name)
    }

    /// Every database's counters, sorted by name.
    pub fn databases(&self) -> Vec<(String, Arc<DatabaseMetrics>)> {
        registry_rows(&self.databases)
    }

    /// Every schema's counters, sorted by name.
    pub fn schemas(&self) -> Vec<(String, Arc<SchemaMetrics>)> {
        registry_rows(&self.schemas)
    }
}

/// Counters by name. foldhash: a schema's counters are looked up for every
/// rewritten statement.
type Registry<T> = HashMap<String, Arc<T>, foldhash::fast::RandomState>;

fn registry_entry<T: Default>(registry: &RwLock<Registry<T>>, name: &str) -> Arc<T> {
    if let Some(found) = registry.read().unwrap_or_else(|p| p.into_inner()).get(name) {
        return Arc::clone(found);
    }
    let mut map = registry.write().unwrap_or_else(|p| p.into_inner());
    Arc::clone(map.entry(name.to_owned()).or_default())
}

fn registry_rows<T>(registry: &RwLock<Registry<T>>) -> Vec<(String, Arc<T>)> {
    let map = registry.read().unwrap_or_else(|p| p.into_inner());
    let mut rows: Vec<_> = map
        .iter()
        .map(|(k, v)| (k.clone(), Arc::clone(v)))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.record(Duration::from_micros(3));
        h.record(Duration::from_micros(40));
        h.record(Duration::from_secs(5));
        let (cumulative, sum) = h.snapshot();
        assert_eq!(cumulative[0], 1); // <= 5 us
        assert_eq!(cumulative[3], 2); // <= 50 us
        assert_eq!(cumulative[BUCKET_BOUNDS_US.len() - 1], 2); // <= 1 s
        assert_eq!(*cumulative.last().unwrap(), 3); // +Inf
        assert!((sum - 5.000043).abs() < 1e-6);
    }

    #[test]
    fn registries_hand_out_one_entry_per_name() {
        let m = Metrics::default();
        m.database("heal7")
            .clients_total
            .fetch_add(1, Ordering::Relaxed);
        m.database("heal7")
            .clients_total
            .fetch_add(1, Ordering::Relaxed);
        m.schema("shared_common");
        let dbs = m.databases();
        assert_eq!(dbs.len(), 1);
        assert_eq!(Metrics::get(&dbs[0].1.clients_total), 2);
        assert_eq!(m.schemas()[0].0, "shared_common");
    }
}
