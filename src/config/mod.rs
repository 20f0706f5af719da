//! Configuration: the YAML file -> a validated [`Config`] with one
//! [`SchemaMap`] per upstream database and a routing table for the names
//! clients connect with.
//!
//! Two steps, as in ripgrep and PgDog: a raw serde shape that refuses unknown
//! keys, then validation that builds the indexed form the proxy uses. Nothing
//! here opens a socket; the proxy loads and validates before binding a port.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::scram::Verifier;
use crate::rewrite::{OnParseError, SchemaMap, quote_identifier};

/// Postgres truncates identifiers to NAMEDATALEN - 1 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Errors found while reading or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        /// Shown in the message itself, so not a `source` (printing the
        /// chain would say it twice).
        error: std::io::Error,
    },
    /// YAML syntax, an unknown key, or a value of the wrong type. serde_yaml's
    /// message carries the line and column.
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    /// A value that parses but is not allowed; `key` is the dotted path.
    #[error("{source_name}: {key}: {message}")]
    Invalid {
        source_name: String,
        key: String,
        message: String,
    },
}

mod build;
mod hash;
mod peering;
mod pool;
mod raw;
mod tls;

pub(crate) use build::check_name;
use raw::RawConfig;
#[cfg(test)]
mod tests;

pub use peering::{MAX_PEER_ID, Overrides, Peering};
pub use pool::{AuthLookup, DEFAULT_AUTH_QUERY, PoolMode, PoolSettings};
pub use raw::{Mode, OtherDatabases, PublicQualified};
pub use tls::{ALPN_POSTGRESQL, ClientTls, ClientTlsMode, UpstreamTls, UpstreamTlsMode};

/// The database name that selects the admin console instead of an upstream.
pub const CONSOLE_DATABASE: &str = "heal7_proxy";

/// The environment variable that bounds each map's rewrite cache (bytes; 0
/// turns it off) when the file sets no `proxy.rewrite_cache_bytes`.
pub const CACHE_BYTES_ENV: &str = "HEAL7_REWRITE_CACHE_BYTES";

/// Settings that apply only when the proxy starts: a reload that changes
/// them keeps the ones in force and says a restart is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSettings {
    pub listen: String,
    pub admin_listen: Option<String>,
    /// Event loops sessions are spread over; `None`: one per core.
    pub worker_threads: Option<usize>,
    /// How long sessions may finish their transaction after a stop signal.
    pub shutdown_timeout: Duration,
    /// reuse_port, peer_id and peers: keys already handed out carry the
    /// peer id, so none of it changes live.
    pub peering: Peering,
}

impl StartSettings {
    /// One line per setting that differs from `in_force`, for the reload
    /// report.
    pub fn changes_from(&self, in_force: &StartSettings) -> Vec<String> {
        let mut changes = Vec::new();
        if self.listen != in_force.listen {
            changes.push(format!(
                "proxy.listen: {} -> {} (needs restart; still {})",
                in_force.listen, self.listen, in_force.listen
            ));
        }
        if self.admin_listen != in_force.admin_listen {
            changes.push(format!(
                "proxy.admin_listen: {:?} -> {:?} (needs restart)",
                in_force.admin_listen, self.admin_listen
            ));
        }
        if self.worker_threads != in_force.worker_threads {
            changes.push(format!(
                "proxy.worker_threads: {:?} -> {:?} (needs restart)",
                in_force.worker_threads, self.worker_threads
            ));
        }
        if self.peering != in_force.peering {
            changes.push(
                "proxy.reuse_port, proxy.peer_id or proxy.peers changed (needs restart)".into(),
            );
        }
        if self.shutdown_timeout != in_force.shutdown_timeout {
            changes.push(format!(
                "proxy.shutdown_timeout_ms: {} -> {} (needs restart)",
                in_force.shutdown_timeout.as_millis(),
                self.shutdown_timeout.as_millis()
            ));
        }
        changes
    }
}

/// The admin HTTP endpoint's bearer token. Its Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Box<[u8]>);

impl AdminToken {
    pub fn new(token: &[u8]) -> AdminToken {
        AdminToken(token.into())
    }

    /// Whether `presented` is the token, in time that depends only on the
    /// lengths (no early exit on the first differing byte).
    pub fn matches(&self, presented: &[u8]) -> bool {
        presented.len() == self.0.len()
            && presented
                .iter()
                .zip(self.0.iter())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Who may use the admin HTTP endpoint (reloads with the config).
#[derive(Debug, Clone, Default)]
pub struct AdminHttp {
    /// Required on every path not in `open_paths`; `None`: no token.
    pub token: Option<AdminToken>,
    pub open_paths: Vec<String>,
    /// Host names answered besides IP addresses and `localhost`.
    pub hosts: Vec<String>,
}

/// A validated configuration: the settings fixed at start, and the rest,
/// which a reload replaces.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (a path, or a label for in-memory text).
    pub source: String,
    pub start: StartSettings,
    pub on_parse_error: OnParseError,
    pub max_message_size: usize,
    pub startup_timeout: Duration,
    pub connect_timeout: Duration,
    /// Access rules of the admin HTTP endpoint.
    pub admin_http: AdminHttp,
    /// Admin console users -> their SCRAM-SHA-256 verifiers.
    pub admin_users: HashMap<String, Verifier>,
    /// In file order.
    pub databases: Vec<Database>,
    /// client-facing name (database key or alias) -> index into `databases`
    /// and, for an alias, its index into that entry's `aliases`.
    routes: HashMap<String, (usize, Option<usize>)>,
    /// `proxy.tls`: TLS toward clients, with the certificate loaded.
    pub tls: ClientTls,
    /// What clients of database names not in `routes` get.
    pub other_databases: OtherDatabases,
    /// Whether replication connections may pass.
    pub allow_replication: bool,
    /// Client connections served at once; more are refused (53300).
    pub max_client_connections: usize,
    /// Keys the console's mock verifiers of unknown users.
    pub console_mock_secret: MockSecret,
    /// Hash of the validated `databases` section (see `hash.rs`): equal on
    /// every instance that maps names the same way.
    pub mapping_hash: String,
}

/// The key of the admin console's mock verifiers for unknown users: a
/// login as a user that does not exist runs against a verifier derived
/// from it, with a salt as stable as a real user's (across restarts too),
/// so the salt does not tell who exists. Debug never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct MockSecret(pub [u8; 32]);

impl std::fmt::Debug for MockSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockSecret(..)")
    }
}

/// The kinds of object a schema entry lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Table,
    View,
    Sequence,
    Type,
    Function,
}

impl ObjectKind {
    /// Every kind, in the order a schema entry lists them.
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Table,
        ObjectKind::View,
        ObjectKind::Sequence,
        ObjectKind::Type,
        ObjectKind::Function,
    ];

    /// The singular word for messages and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Type => "type",
            ObjectKind::Function => "function",
        }
    }

    /// The key of a schema entry that lists this kind.
    pub fn key(self) -> &'static str {
        match self {
            ObjectKind::Table => "tables",
            ObjectKind::View => "views",
            ObjectKind::Sequence => "sequences",
            ObjectKind::Type => "types",
            ObjectKind::Function => "functions",
        }
    }

    /// Tables, views and sequences are relations: they share one namespace
    /// per schema (pg_class) and go into the rewriter's [`SchemaMap`].
    pub fn is_relation(self) -> bool {
        matches!(
            self,
            ObjectKind::Table | ObjectKind::View | ObjectKind::Sequence
        )
    }

    /// Names of one namespace must be unique across the map: relations
    /// share one, types and functions have their own.
    fn namespace(self) -> u8 {
        match self {
            ObjectKind::Table | ObjectKind::View | ObjectKind::Sequence => 0,
            ObjectKind::Type => 1,
            ObjectKind::Function => 2,
        }
    }
}

/// One schema entry of the map, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappedSchema {
    pub name: String,
    pub tables: Vec<String>,
    pub views: Vec<String>,
    pub sequences: Vec<String>,
    pub types: Vec<String>,
    pub functions: Vec<String>,
}

impl MappedSchema {
    /// The names listed under `kind`.
    pub fn names(&self, kind: ObjectKind) -> &[String] {
        match kind {
            ObjectKind::Table => &self.tables,
            ObjectKind::View => &self.views,
            ObjectKind::Sequence => &self.sequences,
            ObjectKind::Type => &self.types,
            ObjectKind::Function => &self.functions,
        }
    }

    /// Every listed object, kinds in [`ObjectKind::ALL`] order.
    pub fn objects(&self) -> impl Iterator<Item = (ObjectKind, &str)> {
        ObjectKind::ALL
            .into_iter()
            .flat_map(move |k| self.names(k).iter().map(move |n| (k, n.as_str())))
    }

    /// The `public` entry: legacy names kept in `public` for the main name.
    pub fn is_public(&self) -> bool {
        self.name == PUBLIC
    }
}

/// The schema Postgres creates in every database.
pub const PUBLIC: &str = "public";

/// A legacy database name routed to a [`Database`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub name: String,
    /// Where names outside the map resolve first.
    pub default_schema: String,
    /// The search_path its sessions get in mode rewrite (unquoted names).
    pub search_path: Vec<String>,
    /// Where objects created without a schema land.
    pub create_schema: String,
}

/// One upstream database and its schema map.
#[derive(Debug, Clone)]
pub struct Database {
    /// The name clients connect with.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// The upstream database name.
    pub database: String,
    /// The schema entries in file order (for reports and `check`),
    /// `public`'s included.
    pub schemas: Vec<MappedSchema>,
    /// The relations (tables, views, sequences) of every entry, `public`'s
    /// included: the map of sessions on the main name.
    pub map: Arc<SchemaMap>,
    /// Per alias (in `aliases` order): the map without the `public`
    /// entry's names (alias sessions find unmapped names in their default
    /// schema first), with the alias' create schema. Aliases (and the main
    /// name) with the same rules share one map and cache.
    pub alias_maps: Vec<Arc<SchemaMap>>,
    /// The search_path of sessions on the main name in mode rewrite
    /// (unquoted names).
    pub search_path: Vec<String>,
    /// What the rewriter does with `public.name` for a mapped `name`.
    pub public_qualified: PublicQualified,
    /// Where objects created without a schema land on the main name.
    pub create_schema: String,
    /// In file order.
    pub aliases: Vec<Alias>,
    pub mode: Mode,
    /// TLS toward this upstream.
    pub tls: UpstreamTls,
    /// `None`: pool mode none.
    pub pool: Option<Arc<PoolSettings>>,
}

impl Database {
    /// Types listed in the map: type name -> schema (`public`'s included).
    pub fn types(&self) -> impl Iterator<Item = (&str, &str)> {
        self.schemas
            .iter()
            .flat_map(|s| s.types.iter().map(move |t| (t.as_str(), s.name.as_str())))
    }

    /// Functions listed in the map: function name -> schema.
    pub fn functions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.schemas.iter().flat_map(|s| {
            s.functions
                .iter()
                .map(move |f| (f.as_str(), s.name.as_str()))
        })
    }

    /// The search_path a session on `client_database` (this entry's name or
    /// one of its aliases) gets, as set through the startup `options`;
    /// `None` in modes dry_run and off, which must not change how the
    /// server resolves names.
    pub fn session_search_path(&self, client_database: &str) -> Option<String> {
        if self.mode != Mode::Rewrite {
            return None;
        }
        let path = match self.aliases.iter().find(|a| a.name == client_database) {
            Some(alias) => &alias.search_path,
            None => &self.search_path,
        };
        Some(render_search_path(path))
    }
}

/// A search_path value: each schema quoted as needed, `, `-separated.
pub fn render_search_path(schemas: &[String]) -> String {
    schemas
        .iter()
        .map(|s| quote_identifier(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a client's connection goes and how its queries are treated.
#[derive(Debug, Clone)]
pub struct Route {
    pub host: String,
    pub port: u16,
    /// Database name to put in the upstream StartupMessage.
    pub database: String,
    /// The schema map, or `None` for databases the config does not know
    /// (forwarded unchanged, no rewriting). The main name's map holds the
    /// `public` entry's names; an alias' map does not.
    pub map: Option<Arc<SchemaMap>>,
    /// The search_path to set on the session (startup `options`), already
    /// quoted; `None` in modes dry_run and off and for unknown databases.
    /// A session keeps the one it started with across reloads.
    pub search_path: Option<String>,
    /// What the rewriter does with `public.name` when the map sends `name`
    /// to another schema ([`PublicQualified::Keep`] for unknown databases,
    /// where nothing is rewritten). Built into `map`; here for reports.
    pub public_qualified: PublicQualified,
    /// The schema where objects created without a schema land: `public` for
    /// a main name unless configured, the default schema for an alias.
    /// `map` qualifies such creations with it when the session's
    /// search_path does not start with it; here for reports.
    pub create_schema: String,
    /// What to do with statements ([`Mode::Off`] for unknown databases).
    pub mode: Mode,
    /// TLS toward the upstream (the first entry's for unknown databases).
    pub tls: UpstreamTls,
    /// The entry's pool; `None` in mode none and for unknown databases.
    pub pool: Option<Arc<PoolSettings>>,
}

impl Route {
    pub fn upstream_addr(&self) -> String {
        host_port(&self.host, self.port)
    }
}

/// `host:port` as logs, errors and the admin views print an upstream.
pub fn host_port(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_yaml(&text, &path.display().to_string())
    }

    /// Parse and validate YAML text; `source_name` labels error messages.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_with(text, source_name, &Overrides::default())
    }

    /// [`Config::from_yaml`] with settings from the command line or the
    /// environment winning over the file's.
    pub fn from_yaml_with(
        text: &str,
        source_name: &str,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
            let loc = e.location();
            ConfigError::Syntax {
                source_name: source_name.to_owned(),
                message: e.to_string(),
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
            }
        })?;
        overrides.apply(&mut raw.proxy);
        build::validate(raw, source_name)
    }

    /// Route a client's database name. Unknown names go unchanged to the
    /// first entry's host and port, without rewriting.
    pub fn route(&self, client_database: &str) -> Route {
        match self.routes.get(client_database) {
            Some((index, alias)) => {
                let db = &self.databases[*index];
                let (map, create_schema) = match alias {
                    Some(a) => (&db.alias_maps[*a], &db.aliases[*a].create_schema),
                    None => (&db.map, &db.create_schema),
                };
                Route {
                    host: db.host.clone(),
                    port: db.port,
                    database: db.database.clone(),
                    map: Some(map.clone()),
                    search_path: db.session_search_path(client_database),
                    public_qualified: db.public_qualified,
                    create_schema: create_schema.clone(),
                    mode: db.mode,
                    tls: db.tls.clone(),
                    pool: db.pool.clone(),
                }
            }
            None => {
                let first = &self.databases[0];
                Route {
                    host: first.host.clone(),
                    port: first.port,
                    database: client_database.to_owned(),
                    map: None,
                    search_path: None,
                    public_qualified: PublicQualified::Keep,
                    create_schema: PUBLIC.to_owned(),
                    mode: Mode::Off,
                    tls: first.tls.clone(),
                    pool: None,
                }
            }
        }
    }
}
