//! Counters of the Redis side: per namespace rule (labelled `from@db`) and
//! process-wide.

use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

use super::{Registry, registry_entry, registry_rows};

/// The namespace label of keys no rule matched.
pub const UNMATCHED: &str = "(unmatched)";

#[derive(Debug, Default)]
pub struct RedisMetrics {
    pub clients_active: AtomicU64,
    pub clients_total: AtomicU64,
    /// Commands received (transactions' queued ones included).
    pub commands: AtomicU64,
    /// Commands refused by the proxy before anything ran, by reason.
    pub refused_cross_database: AtomicU64,
    pub refused_unmatched: AtomicU64,
    pub refused_other: AtomicU64,
    /// Malformed or oversized requests (the client is closed).
    pub protocol_errors: AtomicU64,
    /// EVAL/EVALSHA/FCALL calls: keys built inside scripts are not seen.
    pub scripts: AtomicU64,
    /// Connections to the Redis server that failed (connect or setup).
    pub upstream_errors: AtomicU64,
    /// Keys that matched no rule (forwarded unchanged or refused).
    pub keys_unmatched: AtomicU64,
    /// Replies whose key names were mapped back.
    pub replies_rewritten: AtomicU64,
    /// Reads of the server's command table, and failed ones.
    pub command_table_loads: AtomicU64,
    pub command_table_failures: AtomicU64,
    /// `redis.tls`: client TLS handshakes that succeeded, that failed, and
    /// plain-text clients refused by mode require.
    pub tls_clients_ok: AtomicU64,
    pub tls_clients_failed: AtomicU64,
    pub tls_clients_plain_refused: AtomicU64,
    /// Multiplexing: server connections shared by clients open now,
    /// commands sent on them, and clients that left them, by reason.
    pub shared_connections: AtomicU64,
    pub multiplexed_commands: AtomicU64,
    pub clients_dedicated: [AtomicU64; DedicatedReason::ALL.len()],
    namespaces: RwLock<Registry<NamespaceMetrics>>,
}

/// Why a client left the shared server connections for its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedicatedReason {
    /// AUTH: its own login.
    Auth,
    /// HELLO: protocol version, login or name.
    Hello,
    /// CLIENT (any subcommand): name, tracking, reply mode, id...
    Client,
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction,
    /// A command that may wait (BLPOP, XREAD BLOCK, WAIT...).
    Blocking,
    /// SUBSCRIBE and the like, MONITOR.
    Pubsub,
    /// Anything else whose effect is per connection (RESET, READONLY,
    /// SCRIPT KILL, replication, server control...).
    Connection,
    /// A command the server's table does not know.
    Unknown,
    /// `redis.multiplex` was turned off by a reload.
    Config,
}

impl DedicatedReason {
    pub const ALL: [DedicatedReason; 9] = [
        DedicatedReason::Auth,
        DedicatedReason::Hello,
        DedicatedReason::Client,
        DedicatedReason::Transaction,
        DedicatedReason::Blocking,
        DedicatedReason::Pubsub,
        DedicatedReason::Connection,
        DedicatedReason::Unknown,
        DedicatedReason::Config,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DedicatedReason::Auth => "auth",
            DedicatedReason::Hello => "hello",
            DedicatedReason::Client => "client",
            DedicatedReason::Transaction => "transaction",
            DedicatedReason::Blocking => "blocking",
            DedicatedReason::Pubsub => "pubsub",
            DedicatedReason::Connection => "connection",
            DedicatedReason::Unknown => "unknown_command",
            DedicatedReason::Config => "config",
        }
    }
}

/// Counters of one namespace rule.
#[derive(Debug, Default)]
pub struct NamespaceMetrics {
    /// Commands that touched a key of this namespace.
    pub commands: AtomicU64,
    /// Keys rewritten (in mode dry_run: that would have been).
    pub keys_rewritten: AtomicU64,
    /// Keys counted in mode dry_run (never rewritten).
    pub keys_dry_run: AtomicU64,
    /// Error replies (the server's or the proxy's) to those commands.
    pub errors: AtomicU64,
}

impl RedisMetrics {
    /// The counters of one rule label (created on first use). Labels come
    /// from the config only, so their number is bounded.
    pub fn namespace(&self, label: &str) -> Arc<NamespaceMetrics> {
        registry_entry(&self.namespaces, label)
    }

    /// Count a client that left the shared connections.
    pub fn dedicated(&self, reason: DedicatedReason) {
        self.clients_dedicated[reason as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every namespace's counters, sorted by label.
    pub fn namespaces(&self) -> Vec<(String, Arc<NamespaceMetrics>)> {
        registry_rows(&self.namespaces)
    }
}
