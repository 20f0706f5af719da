//! The raw shape of the file: serde structs that refuse unknown keys, with
//! the defaults in one place. [`super::build`] validates them into a
//! [`super::Config`].

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// Settings of the proxy process itself.
    #[serde(default)]
    pub(super) proxy: RawProxy,
    /// Client-facing database name -> upstream and schema map. Order matters:
    /// the first entry's host/port receive clients of unknown databases.
    pub(super) databases: IndexMap<String, RawDatabase>,
    /// The Redis side (optional): see `config/redis.rs`.
    #[serde(default)]
    pub(super) redis: Option<super::redis::RawRedis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    /// Address legacy services connect to.
    #[serde(default = "default_listen")]
    pub(super) listen: String,
    /// HTTP admin address (metrics, reload); optional.
    #[serde(default)]
    pub(super) admin_listen: Option<String>,
    /// What to do with statements sqlparser cannot read.
    #[serde(default)]
    pub(super) on_parse_error: RawOnParseError,
    /// Largest frame accepted from either side, in bytes (Postgres' own cap
    /// for a message is 1 GiB).
    #[serde(default = "default_max_message_size")]
    pub(super) max_message_size: usize,
    /// How long a client may take to send its startup packet.
    #[serde(default = "default_startup_timeout_ms")]
    pub(super) startup_timeout_ms: u64,
    /// How long connecting to an upstream may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub(super) connect_timeout_ms: u64,
    /// Bound of each database's rewrite cache, in bytes (0 turns it off).
    /// Default: HEAL7_REWRITE_CACHE_BYTES, else 16 MiB.
    #[serde(default)]
    pub(super) rewrite_cache_bytes: Option<usize>,
    /// Users allowed into the admin console (database `heal7_proxy`):
    /// user -> SCRAM-SHA-256 verifier from `heal7-proxy hash-password`.
    #[serde(default)]
    pub(super) admin_users: IndexMap<String, String>,
    /// Event loops (threads) sessions are spread over. Default: one per
    /// core.
    #[serde(default)]
    pub(super) worker_threads: Option<usize>,
    /// TLS between clients and the proxy (default: off).
    #[serde(default)]
    pub(super) tls: super::tls::RawProxyTls,
    /// How long after a stop signal sessions may finish their transaction
    /// before the rest are closed with 57P01.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub(super) shutdown_timeout_ms: u64,
    /// Longest statement handed whole to the SQL parser, in bytes; a longer
    /// one is rewritten with its long literal lists cut, or refused per
    /// `on_parse_error` when a mapped name cannot be placed without a parse.
    #[serde(default = "default_max_parse_bytes")]
    pub(super) max_parse_bytes: usize,
    /// forward | refuse: what a client that names a database the config
    /// does not list gets (default forward: the first entry's upstream,
    /// unchanged).
    #[serde(default)]
    pub(super) other_databases: OtherDatabases,
    /// Let replication connections (startup parameter `replication`)
    /// through to the upstream (default false: refused).
    #[serde(default)]
    pub(super) allow_replication: bool,
    /// Client connections served at once (console ones included); a new
    /// client beyond it gets FATAL 53300 at once.
    #[serde(default = "default_max_client_connections")]
    pub(super) max_client_connections: usize,
    /// A file of at least 16 bytes of secret (e.g. `openssl rand -hex 32`)
    /// that keys the console's mock salts for unknown users. Default: keyed
    /// by the admin_users verifiers, which changes every mock salt when a
    /// verifier changes.
    #[serde(default)]
    pub(super) admin_secret_file: Option<std::path::PathBuf>,
    /// Who may use the admin HTTP endpoint.
    #[serde(default)]
    pub(super) admin_http: RawAdminHttp,
    /// Bind `listen` with SO_REUSEPORT, so several processes on one host
    /// share the port (default false).
    #[serde(default)]
    pub(super) reuse_port: bool,
    /// This instance's id (0..=15), carried in the cancel keys it hands
    /// clients; `--peer-id` / HEAL7_PEER_ID win over it.
    #[serde(default)]
    pub(super) peer_id: Option<u32>,
    /// Peer id -> HOST:PORT every instance of the group forwards cancel
    /// requests for that peer's keys to (this instance's own included).
    #[serde(default)]
    pub(super) peers: std::collections::BTreeMap<u32, String>,
}

/// Access rules of the admin HTTP endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdminHttp {
    /// File holding the bearer token (`Authorization: Bearer <token>`)
    /// every path not in `open_paths` requires. Unset: no token asked
    /// (keep `admin_listen` on loopback then).
    #[serde(default)]
    pub(super) token_file: Option<std::path::PathBuf>,
    /// Paths served without the token (of /metrics, /healthz, /readyz, and
    /// `/`, the dashboard page, which holds no data itself).
    #[serde(default = "default_admin_open_paths")]
    pub(super) open_paths: Vec<String>,
    /// Host names the endpoint answers to besides IP addresses and
    /// `localhost` (a request naming any other host, or with an Origin of
    /// another host, is refused: DNS rebinding and cross-site requests).
    #[serde(default)]
    pub(super) hosts: Vec<String>,
}

impl Default for RawAdminHttp {
    fn default() -> Self {
        RawAdminHttp {
            token_file: None,
            open_paths: default_admin_open_paths(),
            hosts: Vec::new(),
        }
    }
}

pub(super) fn default_admin_open_paths() -> Vec<String> {
    ["/metrics", "/healthz", "/readyz"]
        .map(String::from)
        .to_vec()
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            listen: default_listen(),
            admin_listen: None,
            on_parse_error: RawOnParseError::default(),
            max_message_size: default_max_message_size(),
            startup_timeout_ms: default_startup_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            rewrite_cache_bytes: None,
            admin_users: IndexMap::new(),
            worker_threads: None,
            other_databases: OtherDatabases::default(),
            allow_replication: false,
            max_client_connections: default_max_client_connections(),
            admin_secret_file: None,
            admin_http: RawAdminHttp::default(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            max_parse_bytes: default_max_parse_bytes(),
            tls: Default::default(),
            reuse_port: false,
            peer_id: None,
            peers: Default::default(),
        }
    }
}

pub(super) fn default_listen() -> String {
    "127.0.0.1:6432".to_owned()
}
pub(super) fn default_max_message_size() -> usize {
    1 << 30
}
pub(super) fn default_startup_timeout_ms() -> u64 {
    30_000
}
pub(super) fn default_connect_timeout_ms() -> u64 {
    5_000
}
pub(super) fn default_max_client_connections() -> usize {
    10_000
}
pub(super) fn default_shutdown_timeout_ms() -> u64 {
    30_000
}
pub(super) fn default_max_parse_bytes() -> usize {
    crate::rewrite::DEFAULT_MAX_PARSE_BYTES
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawOnParseError {
    #[default]
    Tokens,
    Reject,
    Passthrough,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    /// Upstream host.
    #[serde(default = "default_host")]
    pub(super) host: String,
    /// Upstream port.
    #[serde(default = "default_port")]
    pub(super) port: u16,
    /// Upstream database name; defaults to the entry's key.
    #[serde(default)]
    pub(super) database: Option<String>,
    /// schema -> tables, the shape of the team's config/database.yaml.
    #[serde(default)]
    pub(super) schemas: IndexMap<String, RawSchema>,
    /// Legacy database names routed to this entry.
    #[serde(default)]
    pub(super) aliases: IndexMap<String, RawAlias>,
    /// rewrite | dry_run | off: the staged cut-over switch.
    #[serde(default)]
    pub(super) mode: Mode,
    /// The search_path set on sessions of the main name (default: every
    /// mapped schema in file order, then `public`).
    #[serde(default)]
    pub(super) search_path: Option<Vec<String>>,
    /// What to do with a name the client qualified with `public.`.
    #[serde(default)]
    pub(super) public_qualified: PublicQualified,
    /// Where objects created without a schema land (default `public`).
    #[serde(default)]
    pub(super) create_schema: Option<String>,
    /// The search_path clients had before the move, whose first schema
    /// `current_schema()` answers on the main name (default PostgreSQL's
    /// `["$user", public]`; `[]`: the route's search_path).
    #[serde(default)]
    pub(super) client_search_path: Option<Vec<String>>,
    /// TLS between the proxy and this upstream (default: off).
    #[serde(default)]
    pub(super) tls: super::tls::RawUpstreamTls,
    /// Server connection pooling (default: none, one server connection per
    /// client with relayed authentication).
    #[serde(default)]
    pub(super) pool: super::pool::RawPool,
}

/// What the rewriter does with `public.name` when the map sends `name`
/// elsewhere.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicQualified {
    /// Send it to the mapped schema: legacy code that wrote `public.users`
    /// meant the table that moved, not the stale copy left behind.
    #[default]
    Rewrite,
    /// Send `public.name` as written (the client reads `public`'s copy).
    Keep,
}

impl PublicQualified {
    pub fn as_str(self) -> &'static str {
        match self {
            PublicQualified::Rewrite => "rewrite",
            PublicQualified::Keep => "keep",
        }
    }
}

/// What the proxy does with the statements of one database.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Qualify mapped names.
    #[default]
    Rewrite,
    /// Forward the client's text unchanged; log and count what a rewrite
    /// would have changed.
    DryRun,
    /// Forward unchanged, no parsing at all: the instant rollback.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rewrite => "rewrite",
            Mode::DryRun => "dry_run",
            Mode::Off => "off",
        }
    }
}

pub(super) fn default_host() -> String {
    "127.0.0.1".to_owned()
}
pub(super) fn default_port() -> u16 {
    5432
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchema {
    /// Tables (also partitioned and foreign ones) that live in this schema,
    /// named as the catalog stores them.
    #[serde(default)]
    pub(super) tables: Vec<String>,
    /// Views and materialized views.
    #[serde(default)]
    pub(super) views: Vec<String>,
    /// Sequences not owned by a table.
    #[serde(default)]
    pub(super) sequences: Vec<String>,
    /// Types: enums, composites, domains, ranges.
    #[serde(default)]
    pub(super) types: Vec<String>,
    /// Functions and procedures, by name (all overloads).
    #[serde(default)]
    pub(super) functions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlias {
    /// Schema put first on the session's search_path.
    pub(super) default_schema: String,
    /// The search_path of this alias' sessions (default: the default
    /// schema, the other mapped schemas in file order, then `public`).
    #[serde(default)]
    pub(super) search_path: Option<Vec<String>>,
    /// Where objects created without a schema land (default: the default
    /// schema).
    #[serde(default)]
    pub(super) create_schema: Option<String>,
}

/// What the proxy does with a client that connects to a database name the
/// config does not list.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherDatabases {
    /// Forward unchanged to the first entry's host and port, no rewriting.
    #[default]
    Forward,
    /// Refuse with FATAL 3D000 before any upstream connection: `postgres`,
    /// `template1` and the like stay out of reach through the proxy.
    Refuse,
}

impl OtherDatabases {
    pub fn as_str(self) -> &'static str {
        match self {
            OtherDatabases::Forward => "forward",
            OtherDatabases::Refuse => "refuse",
        }
    }
}
