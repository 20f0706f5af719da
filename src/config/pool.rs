//! `databases.<name>.pool`: server connections kept and shared per (client
//! database name, user), and the proxy-side authentication pooling needs.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How long a client keeps its server connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// No pool: each client gets its own server connection for its whole
    /// life, and authentication is relayed to the server.
    #[default]
    None,
    /// A server connection for the client's life, then reset and kept.
    Session,
    /// A server connection per transaction.
    Transaction,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::None => "none",
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// PgBouncer's default auth_query.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    #[serde(default)]
    pub(super) mode: PoolMode,
    /// Server connections per (database name, user) at most.
    #[serde(default = "default_size")]
    pub(super) size: usize,
    /// Idle server connections kept open (once a client of the pair has
    /// logged in, so the proxy holds what it needs to log in).
    #[serde(default)]
    pub(super) min_idle: usize,
    /// Extra connections for a pool whose clients have waited
    /// `reserve_timeout_ms`.
    #[serde(default)]
    pub(super) reserve_size: usize,
    #[serde(default = "default_reserve_timeout_ms")]
    pub(super) reserve_timeout_ms: u64,
    /// Clients of one pool at once; beyond it 53300.
    #[serde(default = "default_max_client_connections")]
    pub(super) max_client_connections: usize,
    /// An idle server connection is closed after this long.
    #[serde(default = "default_idle_timeout_ms")]
    pub(super) idle_timeout_ms: u64,
    /// A server connection is closed once this old, when next idle.
    #[serde(default = "default_server_lifetime_ms")]
    pub(super) server_lifetime_ms: u64,
    /// How long a client waits for a server connection before 53300.
    #[serde(default = "default_query_wait_timeout_ms")]
    pub(super) query_wait_timeout_ms: u64,
    /// Run on a server connection before another client gets it.
    #[serde(default = "default_server_reset_query")]
    pub(super) server_reset_query: String,
    /// The role that looks up clients' password verifiers.
    #[serde(default)]
    pub(super) auth_user: Option<String>,
    /// A file holding the auth user's password (trailing newline ignored).
    #[serde(default)]
    pub(super) auth_password_file: Option<PathBuf>,
    /// An environment variable holding it, instead of a file.
    #[serde(default)]
    pub(super) auth_password_env: Option<String>,
    /// Returns (user name, verifier) for `$1`.
    #[serde(default = "default_auth_query")]
    pub(super) auth_query: String,
}

impl Default for RawPool {
    fn default() -> Self {
        RawPool {
            mode: PoolMode::None,
            size: default_size(),
            min_idle: 0,
            reserve_size: 0,
            reserve_timeout_ms: default_reserve_timeout_ms(),
            max_client_connections: default_max_client_connections(),
            idle_timeout_ms: default_idle_timeout_ms(),
            server_lifetime_ms: default_server_lifetime_ms(),
            query_wait_timeout_ms: default_query_wait_timeout_ms(),
            server_reset_query: default_server_reset_query(),
            auth_user: None,
            auth_password_file: None,
            auth_password_env: None,
            auth_query: default_auth_query(),
        }
    }
}

fn default_size() -> usize {
    20
}
fn default_reserve_timeout_ms() -> u64 {
    5_000
}
fn default_max_client_connections() -> usize {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    600_000
}
fn default_server_lifetime_ms() -> u64 {
    3_600_000
}
fn default_query_wait_timeout_ms() -> u64 {
    30_000
}
fn default_server_reset_query() -> String {
    "DISCARD ALL".to_owned()
}
fn default_auth_query() -> String {
    DEFAULT_AUTH_QUERY.to_owned()
}

/// A database entry's pool, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub mode: PoolMode,
    pub size: usize,
    pub min_idle: usize,
    pub reserve_size: usize,
    pub reserve_timeout: Duration,
    pub max_client_connections: usize,
    pub idle_timeout: Duration,
    pub server_lifetime: Duration,
    pub query_wait_timeout: Duration,
    /// Empty: none.
    pub server_reset_query: String,
    pub auth: AuthLookup,
}

/// How the proxy learns a client's verifier.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AuthLookup {
    pub user: String,
    pub password: String,
    pub query: String,
}

// The password stays out of Debug output (config dumps, logs).
impl std::fmt::Debug for AuthLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLookup")
            .field("user", &self.user)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// Validate `raw`; `None` for mode none. Errors: (key under `pool`, message).
pub(super) fn pool_settings(raw: RawPool) -> Result<Option<PoolSettings>, (String, String)> {
    if raw.mode == PoolMode::None {
        return Ok(None);
    }
    let bad = |k: &str, m: &str| Err((k.to_owned(), m.to_owned()));
    if raw.size == 0 {
        return bad("size", "must be at least 1");
    }
    if raw.min_idle > raw.size {
        return bad("min_idle", "must not exceed size");
    }
    if raw.max_client_connections == 0 {
        return bad("max_client_connections", "must be at least 1");
    }
    if raw.query_wait_timeout_ms == 0 {
        return bad("query_wait_timeout_ms", "must be at least 1");
    }
    let Some(user) = raw.auth_user else {
        return bad(
            "auth_user",
            "pooling needs the proxy to authenticate clients itself: set auth_user (a role that may run auth_query; see README \"Pooling\")",
        );
    };
    let password = match (&raw.auth_password_file, &raw.auth_password_env) {
        (Some(_), Some(_)) => {
            return bad(
                "auth_password_file",
                "set auth_password_file or auth_password_env, not both",
            );
        }
        (Some(path), None) => std::fs::read_to_string(path)
            .map_err(|e| {
                (
                    "auth_password_file".to_owned(),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            (
                "auth_password_env".to_owned(),
                format!("environment variable {var} is not set"),
            )
        })?,
        // A trust or peer rule for the auth user needs no password.
        (None, None) => String::new(),
    };
    if !raw.auth_query.contains("$1") {
        return bad(
            "auth_query",
            "must take the user name as $1 and return (name, password verifier)",
        );
    }
    Ok(Some(PoolSettings {
        mode: raw.mode,
        size: raw.size,
        min_idle: raw.min_idle,
        reserve_size: raw.reserve_size,
        reserve_timeout: Duration::from_millis(raw.reserve_timeout_ms),
        max_client_connections: raw.max_client_connections,
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
        server_lifetime: Duration::from_millis(raw.server_lifetime_ms),
        query_wait_timeout: Duration::from_millis(raw.query_wait_timeout_ms),
        server_reset_query: raw.server_reset_query.trim().to_owned(),
        auth: AuthLookup {
            user,
            password,
            query: raw.auth_query,
        },
    }))
}
