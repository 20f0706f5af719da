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

use indexmap::IndexMap;
use serde::Deserialize;

use crate::console::scram::Verifier;
use crate::rewrite::{OnParseError, SchemaMap, quote_identifier};

/// Postgres truncates identifiers to NAMEDATALEN - 1 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Errors found while reading or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
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

// ---------------------------------------------------------------------------
// Raw shape of the file.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Settings of the proxy process itself.
    #[serde(default)]
    proxy: RawProxy,
    /// Client-facing database name -> upstream and schema map. Order matters:
    /// the first entry's host/port receive clients of unknown databases.
    databases: IndexMap<String, RawDatabase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    /// Address legacy services connect to.
    #[serde(default = "default_listen")]
    listen: String,
    /// HTTP admin address (metrics, reload); optional.
    #[serde(default)]
    admin_listen: Option<String>,
    /// What to do with statements sqlparser cannot read.
    #[serde(default)]
    on_parse_error: RawOnParseError,
    /// Largest frame accepted from either side, in bytes (Postgres' own cap
    /// for a message is 1 GiB).
    #[serde(default = "default_max_message_size")]
    max_message_size: usize,
    /// How long a client may take to send its startup packet.
    #[serde(default = "default_startup_timeout_ms")]
    startup_timeout_ms: u64,
    /// How long connecting to an upstream may take.
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    /// Bound of each database's rewrite cache, in bytes (0 turns it off).
    /// Default: HEAL7_REWRITE_CACHE_BYTES, else 16 MiB.
    #[serde(default)]
    rewrite_cache_bytes: Option<usize>,
    /// Users allowed into the admin console (database `heal7_proxy`):
    /// user -> SCRAM-SHA-256 verifier from `heal7-proxy hash-password`.
    #[serde(default)]
    admin_users: IndexMap<String, String>,
    /// Event loops (threads) sessions are spread over. Default: one per
    /// core.
    #[serde(default)]
    worker_threads: Option<usize>,
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
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:6432".to_owned()
}
fn default_max_message_size() -> usize {
    1 << 30
}
fn default_startup_timeout_ms() -> u64 {
    30_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawOnParseError {
    #[default]
    Tokens,
    Reject,
    Passthrough,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    /// Upstream host.
    #[serde(default = "default_host")]
    host: String,
    /// Upstream port.
    #[serde(default = "default_port")]
    port: u16,
    /// Upstream database name; defaults to the entry's key.
    #[serde(default)]
    database: Option<String>,
    /// schema -> tables, the shape of the team's config/database.yaml.
    #[serde(default)]
    schemas: IndexMap<String, RawSchema>,
    /// Legacy database names routed to this entry.
    #[serde(default)]
    aliases: IndexMap<String, RawAlias>,
    /// rewrite | dry_run | off: the staged cut-over switch.
    #[serde(default)]
    mode: Mode,
    /// The search_path set on sessions of the main name (default: every
    /// mapped schema in file order, then `public`).
    #[serde(default)]
    search_path: Option<Vec<String>>,
    /// What to do with a name the client qualified with `public.`.
    #[serde(default)]
    public_qualified: PublicQualified,
    /// Where objects created without a schema land (default `public`).
    #[serde(default)]
    create_schema: Option<String>,
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

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    5432
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    /// Tables (also partitioned and foreign ones) that live in this schema,
    /// named as the catalog stores them.
    #[serde(default)]
    tables: Vec<String>,
    /// Views and materialized views.
    #[serde(default)]
    views: Vec<String>,
    /// Sequences not owned by a table.
    #[serde(default)]
    sequences: Vec<String>,
    /// Types: enums, composites, domains, ranges.
    #[serde(default)]
    types: Vec<String>,
    /// Functions and procedures, by name (all overloads).
    #[serde(default)]
    functions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlias {
    /// Schema put first on the session's search_path.
    default_schema: String,
    /// The search_path of this alias' sessions (default: the default
    /// schema, the other mapped schemas in file order, then `public`).
    #[serde(default)]
    search_path: Option<Vec<String>>,
    /// Where objects created without a schema land (default: the default
    /// schema).
    #[serde(default)]
    create_schema: Option<String>,
}

// ---------------------------------------------------------------------------
// Validated form.

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (a path, or a label for in-memory text).
    pub source: String,
    pub listen: String,
    pub admin_listen: Option<String>,
    pub on_parse_error: OnParseError,
    pub max_message_size: usize,
    pub startup_timeout: Duration,
    pub connect_timeout: Duration,
    /// Event loops sessions are spread over; `None`: one per core.
    pub worker_threads: Option<usize>,
    /// Admin console users -> their SCRAM-SHA-256 verifiers.
    pub admin_users: HashMap<String, Verifier>,
    /// In file order.
    pub databases: Vec<Database>,
    /// client-facing name (database key or alias) -> index into `databases`
    /// and, for an alias, its index into that entry's `aliases`.
    routes: HashMap<String, (usize, Option<usize>)>,
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
}

impl Route {
    pub fn upstream_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_yaml(&text, &path.display().to_string())
    }

    /// Parse and validate YAML text; `source_name` labels error messages.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
            let loc = e.location();
            ConfigError::Syntax {
                source_name: source_name.to_owned(),
                message: e.to_string(),
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
            }
        })?;
        validate(raw, source_name)
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
                }
            }
        }
    }
}

fn validate(raw: RawConfig, source_name: &str) -> Result<Config, ConfigError> {
    let invalid = |key: String, message: String| ConfigError::Invalid {
        source_name: source_name.to_owned(),
        key,
        message,
    };
    let proxy = raw.proxy;
    if !looks_like_host_port(&proxy.listen) {
        return Err(invalid(
            "proxy.listen".into(),
            format!("`{}` is not HOST:PORT", proxy.listen),
        ));
    }
    if let Some(admin) = &proxy.admin_listen
        && !looks_like_host_port(admin)
    {
        return Err(invalid(
            "proxy.admin_listen".into(),
            format!("`{admin}` is not HOST:PORT"),
        ));
    }
    if let Some(n) = proxy.worker_threads
        && !(1..=1024).contains(&n)
    {
        return Err(invalid(
            "proxy.worker_threads".into(),
            format!("{n} is outside 1..=1024"),
        ));
    }
    // A frame must at least hold a length; anything past 1 GiB Postgres itself refuses.
    if !(1024..=(1 << 30)).contains(&proxy.max_message_size) {
        return Err(invalid(
            "proxy.max_message_size".into(),
            format!(
                "{} is outside 1024..=1073741824 bytes",
                proxy.max_message_size
            ),
        ));
    }
    let mut admin_users = HashMap::new();
    for (user, verifier) in &proxy.admin_users {
        let key = format!("proxy.admin_users.{user}");
        if user.is_empty() {
            return Err(invalid(key, "user name must not be empty".into()));
        }
        // The error never echoes the value: it may be a password typed in
        // by mistake.
        let verifier: Verifier = verifier
            .parse()
            .map_err(|e: crate::console::scram::VerifierError| invalid(key, e.to_string()))?;
        admin_users.insert(user.clone(), verifier);
    }
    if raw.databases.is_empty() {
        return Err(invalid(
            "databases".into(),
            "at least one database is required".into(),
        ));
    }

    let mut routes: HashMap<String, (usize, Option<usize>)> = HashMap::new();
    for name in raw.databases.keys() {
        check_name(name).map_err(|m| invalid(format!("databases.{name}"), m))?;
        if name == crate::console::DATABASE {
            return Err(invalid(
                format!("databases.{name}"),
                "this name is reserved for the admin console".into(),
            ));
        }
        // Registered up front so an alias of an earlier entry cannot shadow a
        // later key; the index is set when the entry is built below.
        routes.insert(name.clone(), (0, None));
    }

    let mut databases = Vec::with_capacity(raw.databases.len());
    for (index, (name, db)) in raw.databases.into_iter().enumerate() {
        routes.insert(name.clone(), (index, None));
        let key = format!("databases.{name}");
        if db.host.trim().is_empty() {
            return Err(invalid(format!("{key}.host"), "must not be empty".into()));
        }
        if db.port == 0 {
            return Err(invalid(format!("{key}.port"), "must not be 0".into()));
        }
        let database = db.database.unwrap_or_else(|| name.clone());
        check_name(&database).map_err(|m| invalid(format!("{key}.database"), m))?;

        // name -> (schema, kind) per namespace: relations share one.
        let mut listed: [HashMap<&str, (&str, ObjectKind)>; 3] = Default::default();
        let mut schemas = Vec::with_capacity(db.schemas.len());
        for (schema, s) in &db.schemas {
            check_name(schema).map_err(|m| invalid(format!("{key}.schemas.{schema}"), m))?;
            let entry = MappedSchema {
                name: schema.clone(),
                tables: s.tables.clone(),
                views: s.views.clone(),
                sequences: s.sequences.clone(),
                types: s.types.clone(),
                functions: s.functions.clone(),
            };
            schemas.push(entry);
        }
        for entry in &schemas {
            let schema = entry.name.as_str();
            for (kind, name) in entry.objects() {
                let okey = format!("{key}.schemas.{schema}.{}", kind.key());
                check_name(name).map_err(|m| invalid(okey.clone(), format!("`{name}`: {m}")))?;
                let namespace = &mut listed[kind.namespace() as usize];
                if let Some((other, other_kind)) = namespace.insert(name, (schema, kind)) {
                    let what = kind.as_str();
                    let message = match (other == schema, other_kind == kind) {
                        (true, true) => format!("{what} `{name}` is listed twice"),
                        (true, false) => format!(
                            "{what} `{name}` is already listed as a {} (tables, views and sequences share one namespace)",
                            other_kind.as_str()
                        ),
                        (false, true) => {
                            format!("{what} `{name}` is already listed under schema `{other}`")
                        }
                        (false, false) => format!(
                            "{what} `{name}` is already listed under schema `{other}` as a {} (tables, views and sequences share one namespace)",
                            other_kind.as_str()
                        ),
                    };
                    return Err(invalid(okey, message));
                }
            }
        }
        let relations = |with_public: bool| {
            schemas
                .iter()
                .filter(|s| with_public || !s.is_public())
                .flat_map(|s| {
                    ObjectKind::ALL
                        .into_iter()
                        .filter(|k| k.is_relation())
                        .flat_map(|k| s.names(k).iter().map(|n| (s.name.clone(), n.clone())))
                })
                .collect::<Vec<_>>()
        };
        let public_requalified = db.public_qualified == PublicQualified::Rewrite;
        // One map (and cache) per distinct rewriting rule set of the entry.
        let mut maps: Vec<(MapRules, Arc<SchemaMap>)> = Vec::new();
        let mut map_for = |with_public: bool, create: Option<&str>| -> Arc<SchemaMap> {
            let key = (with_public, create.map(str::to_owned));
            if let Some((_, m)) = maps.iter().find(|(k, _)| *k == key) {
                return m.clone();
            }
            let listed = |s: &&MappedSchema| with_public || !s.is_public();
            let routines = schemas.iter().filter(listed).flat_map(|s| {
                s.functions
                    .iter()
                    .map(move |f| (s.name.as_str(), f.as_str()))
            });
            let types = schemas
                .iter()
                .filter(listed)
                .flat_map(|s| s.types.iter().map(move |t| (s.name.as_str(), t.as_str())));
            let map = SchemaMap::new(relations(with_public))
                .with_routines_and_types(routines, types)
                .with_public_requalified(public_requalified)
                .with_create_schema(create);
            let map = Arc::new(match proxy.rewrite_cache_bytes {
                Some(bytes) => map.with_cache_bytes(bytes),
                None => map,
            });
            maps.push((key, map.clone()));
            map
        };
        let has_public_relations = schemas
            .iter()
            .any(|s| s.is_public() && s.objects().any(|(k, _)| k.is_relation()));
        let mapped_schemas: Vec<String> = schemas
            .iter()
            .filter(|s| !s.is_public())
            .map(|s| s.name.clone())
            .collect();

        let search_path = match &db.search_path {
            Some(path) => check_search_path(path, &format!("{key}.search_path"), &invalid)?,
            None => mapped_schemas
                .iter()
                .cloned()
                .chain([PUBLIC.to_owned()])
                .collect(),
        };
        let create_schema = db.create_schema.clone().unwrap_or_else(|| PUBLIC.into());
        check_create_schema(
            &create_schema,
            &schemas,
            &search_path,
            &format!("{key}.create_schema"),
            &invalid,
        )?;
        let map = map_for(
            true,
            creation_qualifier(&search_path, &create_schema, db.mode),
        );

        let mut aliases = Vec::new();
        let mut alias_maps = Vec::new();
        for (alias, a) in &db.aliases {
            let akey = format!("{key}.aliases.{alias}");
            check_name(alias).map_err(|m| invalid(akey.clone(), m))?;
            if alias == crate::console::DATABASE {
                return Err(invalid(
                    akey,
                    "this name is reserved for the admin console".into(),
                ));
            }
            match routes.get(alias) {
                Some((_, None)) => {
                    return Err(invalid(
                        akey,
                        format!("alias `{alias}` is also a database key"),
                    ));
                }
                Some(_) => {
                    return Err(invalid(akey, format!("alias `{alias}` is defined twice")));
                }
                None => {}
            }
            if !db.schemas.contains_key(&a.default_schema) {
                return Err(invalid(
                    format!("{akey}.default_schema"),
                    format!(
                        "schema `{}` is not listed under {key}.schemas",
                        a.default_schema
                    ),
                ));
            }
            let search_path = match &a.search_path {
                Some(path) => check_search_path(path, &format!("{akey}.search_path"), &invalid)?,
                None => {
                    let mut path = vec![a.default_schema.clone()];
                    for s in mapped_schemas.iter().chain([&PUBLIC.to_owned()]) {
                        if !path.contains(s) {
                            path.push(s.clone());
                        }
                    }
                    path
                }
            };
            let create_schema = a
                .create_schema
                .clone()
                .unwrap_or_else(|| a.default_schema.clone());
            check_create_schema(
                &create_schema,
                &schemas,
                &search_path,
                &format!("{akey}.create_schema"),
                &invalid,
            )?;
            routes.insert(alias.clone(), (index, Some(aliases.len())));
            // Aliases resolve unmapped names in their default schema first,
            // so the names kept in `public` for the main name do not apply.
            alias_maps.push(map_for(
                !has_public_relations,
                creation_qualifier(&search_path, &create_schema, db.mode),
            ));
            aliases.push(Alias {
                name: alias.clone(),
                default_schema: a.default_schema.clone(),
                search_path,
                create_schema,
            });
        }

        databases.push(Database {
            name,
            host: db.host,
            port: db.port,
            database,
            schemas,
            map,
            alias_maps,
            search_path,
            public_qualified: db.public_qualified,
            create_schema,
            aliases,
            mode: db.mode,
        });
    }

    Ok(Config {
        source: source_name.to_owned(),
        listen: proxy.listen,
        admin_listen: proxy.admin_listen,
        on_parse_error: match proxy.on_parse_error {
            RawOnParseError::Tokens => OnParseError::Tokens,
            RawOnParseError::Reject => OnParseError::Reject,
            RawOnParseError::Passthrough => OnParseError::Passthrough,
        },
        max_message_size: proxy.max_message_size,
        startup_timeout: Duration::from_millis(proxy.startup_timeout_ms),
        connect_timeout: Duration::from_millis(proxy.connect_timeout_ms),
        worker_threads: proxy.worker_threads,
        admin_users,
        databases,
        routes,
    })
}

/// What distinguishes one route's map from another's of the same entry:
/// whether the `public` entry applies, and the create schema to add.
type MapRules = (bool, Option<String>);

/// The schema the rewriter must add to objects created without one: the
/// create schema, unless the session's search_path already puts it first
/// (or the mode sets no search_path).
fn creation_qualifier<'a>(
    search_path: &[String],
    create_schema: &'a str,
    mode: Mode,
) -> Option<&'a str> {
    let first = search_path.first().map(String::as_str);
    (mode == Mode::Rewrite && first != Some(create_schema)).then_some(create_schema)
}

/// A configured search_path: valid names (`$user` included), no repeats,
/// not empty.
fn check_search_path(
    path: &[String],
    key: &str,
    invalid: &impl Fn(String, String) -> ConfigError,
) -> Result<Vec<String>, ConfigError> {
    if path.is_empty() {
        return Err(invalid(
            key.to_owned(),
            "must list at least one schema (leave it out for the default)".into(),
        ));
    }
    for (i, schema) in path.iter().enumerate() {
        check_name(schema).map_err(|m| invalid(key.to_owned(), m))?;
        if path[..i].contains(schema) {
            return Err(invalid(
                key.to_owned(),
                format!("schema `{schema}` is listed twice"),
            ));
        }
    }
    Ok(path.to_vec())
}

/// `create_schema` must be a schema the proxy knows of: `public`, a mapped
/// schema, or one on the session's search_path.
fn check_create_schema(
    schema: &str,
    schemas: &[MappedSchema],
    search_path: &[String],
    key: &str,
    invalid: &impl Fn(String, String) -> ConfigError,
) -> Result<(), ConfigError> {
    check_name(schema).map_err(|m| invalid(key.to_owned(), m))?;
    if schema == PUBLIC
        || schemas.iter().any(|s| s.name == schema)
        || search_path.iter().any(|s| s == schema)
    {
        Ok(())
    } else {
        Err(invalid(
            key.to_owned(),
            format!("schema `{schema}` is neither public, a mapped schema nor on the search_path"),
        ))
    }
}

fn looks_like_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// A name the catalog can hold: non-empty, at most 63 bytes, no control
/// characters, no surrounding blanks, and no dot (a dot means someone wrote
/// `schema.table` where a bare name belongs).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "`{name}` is longer than {MAX_IDENTIFIER_BYTES} bytes (Postgres would truncate it)"
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(format!(
            "`{}` contains a control character",
            name.escape_debug()
        ));
    }
    if name.trim() != name {
        return Err(format!("`{name}` has leading or trailing blanks"));
    }
    if name.contains('.') {
        return Err(format!(
            "`{name}` contains a dot; list bare names under their schema"
        ));
    }
    if name.contains('"') {
        return Err(format!("`{name}` contains a double quote"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
proxy:
  listen: 127.0.0.1:6432
  on_parse_error: tokens
databases:
  heal7:
    host: 127.0.0.1
    port: 5432
    database: heal7
    schemas:
      shared_common: {tables: [users, attachments]}
      saju_service: {tables: [saju_charts, kasi_cache]}
    aliases:
      heal7_saju: {default_schema: saju_service}
"#;

    fn err(text: &str) -> String {
        Config::from_yaml(text, "test.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn example_loads_and_routes() {
        let c = Config::from_yaml(EXAMPLE, "test.yaml").unwrap();
        assert_eq!(c.on_parse_error, OnParseError::Tokens);
        let r = c.route("heal7");
        assert_eq!(r.database, "heal7");
        assert_eq!(
            r.search_path.as_deref(),
            Some("shared_common, saju_service, public")
        );
        assert_eq!(r.create_schema, "public");
        assert_eq!(r.public_qualified, PublicQualified::Rewrite);
        let map = r.map.unwrap();
        assert_eq!(map.schema_of("users", false), Some("shared_common"));
        assert_eq!(map.schema_of("USERS", false), Some("shared_common"));
        assert_eq!(map.schema_of("USERS", true), None);

        let alias = c.route("heal7_saju");
        assert_eq!(alias.database, "heal7");
        assert_eq!(
            alias.search_path.as_deref(),
            Some("saju_service, shared_common, public")
        );
        assert_eq!(alias.create_schema, "saju_service");
        assert!(alias.map.is_some());

        let other = c.route("postgres");
        assert_eq!(other.database, "postgres");
        assert!(other.map.is_none());
        assert!(other.search_path.is_none());
        assert_eq!(other.upstream_addr(), "127.0.0.1:5432");
    }

    const KINDS: &str = r#"
databases:
  heal7:
    schemas:
      shared_common:
        tables: [users]
        views: [active_users]
        sequences: [invoice_no]
        types: [mood]
        functions: [touch_user]
      "Dream Archive": {tables: [old_dreams], types: [users]}
      public:
        tables: [legacy_fortunes]
        functions: [touch_user_legacy]
    aliases:
      heal7_saju: {default_schema: "Dream Archive"}
"#;

    #[test]
    fn every_kind_is_mapped_and_relations_reach_the_rewriter() {
        let c = Config::from_yaml(KINDS, "test.yaml").unwrap();
        let db = &c.databases[0];
        let main = c.route("heal7").map.unwrap();
        for name in ["users", "active_users", "invoice_no"] {
            assert_eq!(main.schema_of(name, false), Some("shared_common"), "{name}");
        }
        assert_eq!(main.schema_of("legacy_fortunes", false), Some("public"));
        // Types and functions stay out of the rewriter's map, for now.
        assert_eq!(main.schema_of("mood", false), None);
        assert_eq!(main.schema_of("touch_user", false), None);
        assert_eq!(main.len(), 5);
        assert_eq!(
            db.types().collect::<Vec<_>>(),
            [("mood", "shared_common"), ("users", "Dream Archive")]
        );
        assert_eq!(
            db.functions().collect::<Vec<_>>(),
            [
                ("touch_user", "shared_common"),
                ("touch_user_legacy", "public")
            ]
        );
        assert_eq!(db.schemas[0].views, ["active_users"]);
        assert!(db.schemas[2].is_public());
    }

    #[test]
    fn public_entries_apply_to_the_main_name_only() {
        let c = Config::from_yaml(KINDS, "test.yaml").unwrap();
        let main = c.route("heal7");
        let alias = c.route("heal7_saju");
        let (main_map, alias_map) = (main.map.unwrap(), alias.map.unwrap());
        assert!(!Arc::ptr_eq(&main_map, &alias_map));
        assert_eq!(alias_map.schema_of("legacy_fortunes", false), None);
        assert_eq!(alias_map.schema_of("users", false), Some("shared_common"));
        assert_eq!(alias_map.len(), 4);
        // The main name sends creations to public (its search_path starts
        // with a mapped schema); an alias' path starts with its create
        // schema: two maps even without a `public` entry.
        let c = Config::from_yaml(EXAMPLE, "test.yaml").unwrap();
        let (main, alias) = (
            c.route("heal7").map.unwrap(),
            c.route("heal7_saju").map.unwrap(),
        );
        assert!(!Arc::ptr_eq(&main, &alias));
        let create = "CREATE TABLE t (id int)";
        let sent = |m: &SchemaMap| {
            crate::rewrite::rewrite_sql(create, m, OnParseError::Tokens).apply(create)
        };
        assert_eq!(sent(&main), "CREATE TABLE public.t (id int)");
        assert_eq!(sent(&alias), create);
        // Each map honours the configured cache bound.
        let c = Config::from_yaml(
            &format!("proxy: {{rewrite_cache_bytes: 2048}}\n{KINDS}"),
            "test.yaml",
        )
        .unwrap();
        assert_eq!(c.databases[0].map.cache_stats().limit, 2048);
        assert_eq!(c.databases[0].alias_maps[0].cache_stats().limit, 2048);
    }

    #[test]
    fn default_search_paths_put_mapped_schemas_before_public() {
        let c = Config::from_yaml(KINDS, "test.yaml").unwrap();
        assert_eq!(
            c.route("heal7").search_path.as_deref(),
            Some("shared_common, \"Dream Archive\", public")
        );
        assert_eq!(
            c.route("heal7_saju").search_path.as_deref(),
            Some("\"Dream Archive\", shared_common, public")
        );
        assert_eq!(c.route("heal7_saju").create_schema, "Dream Archive");
        assert_eq!(
            c.databases[0].search_path,
            ["shared_common", "Dream Archive", "public"]
        );
    }

    #[test]
    fn configured_search_path_create_schema_and_public_qualified() {
        let c = Config::from_yaml(
            "databases:\n  heal7:\n    schemas: {a: {tables: [t]}, b: {tables: [u]}}\n    \
             search_path: [b, \"$user\", public]\n    create_schema: a\n    public_qualified: keep\n    \
             aliases:\n      old: {default_schema: a, search_path: [a], create_schema: b}\n",
            "test.yaml",
        )
        .unwrap();
        let r = c.route("heal7");
        assert_eq!(r.search_path.as_deref(), Some("b, \"$user\", public"));
        assert_eq!(r.create_schema, "a");
        assert_eq!(r.public_qualified, PublicQualified::Keep);
        let r = c.route("old");
        assert_eq!(r.search_path.as_deref(), Some("a"));
        assert_eq!(r.create_schema, "b");
        assert_eq!(r.public_qualified, PublicQualified::Keep);

        for (bad, what) in [
            ("search_path: []", "at least one schema"),
            ("search_path: [a, a]", "listed twice"),
            ("search_path: [\"a.b\"]", "contains a dot"),
            ("create_schema: nowhere", "neither public"),
            ("public_qualified: always", "unknown variant `always`"),
        ] {
            let msg = err(&format!(
                "databases:\n  heal7:\n    schemas: {{a: {{tables: [t]}}}}\n    {bad}\n"
            ));
            assert!(msg.contains(what), "{bad}: {msg}");
        }
        let msg = err(
            "databases:\n  heal7:\n    schemas: {a: {tables: [t]}}\n    aliases:\n      old: {default_schema: a, create_schema: z}\n",
        );
        assert!(
            msg.contains("databases.heal7.aliases.old.create_schema"),
            "{msg}"
        );
    }

    #[test]
    fn dry_run_and_off_set_no_search_path() {
        for mode in ["dry_run", "off"] {
            let c = Config::from_yaml(
                &KINDS.replace("    aliases:", &format!("    mode: {mode}\n    aliases:")),
                "t",
            )
            .unwrap();
            assert_eq!(c.databases[0].mode.as_str(), mode);
            assert!(c.route("heal7").search_path.is_none(), "{mode}");
            assert!(c.route("heal7_saju").search_path.is_none(), "{mode}");
        }
    }

    #[test]
    fn a_relation_name_is_unique_across_kinds_and_schemas() {
        let msg = err(
            "databases:\n  heal7:\n    schemas:\n      a: {tables: [users]}\n      b: {views: [users]}\n",
        );
        assert!(msg.contains("databases.heal7.schemas.b.views"), "{msg}");
        assert!(
            msg.contains("view `users` is already listed under schema `a` as a table"),
            "{msg}"
        );
        let msg =
            err("databases:\n  heal7:\n    schemas:\n      a: {tables: [s], sequences: [s]}\n");
        assert!(msg.contains("databases.heal7.schemas.a.sequences"), "{msg}");
        assert!(msg.contains("already listed as a table"), "{msg}");
        let msg = err(
            "databases:\n  heal7:\n    schemas:\n      a: {tables: [users]}\n      public: {tables: [users]}\n",
        );
        assert!(
            msg.contains("databases.heal7.schemas.public.tables"),
            "{msg}"
        );
        let msg = err(
            "databases:\n  heal7:\n    schemas:\n      a: {functions: [f]}\n      b: {functions: [f]}\n",
        );
        assert!(msg.contains("databases.heal7.schemas.b.functions"), "{msg}");
        let msg = err("databases:\n  heal7:\n    schemas:\n      a: {types: [\"x.y\"]}\n");
        assert!(msg.contains("databases.heal7.schemas.a.types"), "{msg}");
        // Separate namespaces: a type, a function and a table may share a name.
        Config::from_yaml(
            "databases:\n  heal7:\n    schemas:\n      a: {tables: [x]}\n      b: {types: [x], functions: [x]}\n",
            "t",
        )
        .unwrap();
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = Config::from_yaml("databases:\n  heal7:\n    hots: x\n", "test.yaml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown field `hots`"), "{msg}");
        match e {
            ConfigError::Syntax { line, .. } => assert_eq!(line, Some(3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn table_under_two_schemas_is_refused() {
        let msg = err(
            "databases:\n  heal7:\n    schemas:\n      a: {tables: [users]}\n      b: {tables: [users]}\n",
        );
        assert!(msg.contains("databases.heal7.schemas.b.tables"), "{msg}");
        assert!(msg.contains("already listed under schema `a`"), "{msg}");
    }

    #[test]
    fn rewrite_cache_bound_comes_from_the_config() {
        let c = Config::from_yaml(
            "proxy: {rewrite_cache_bytes: 4096}\ndatabases: {a: {schemas: {s: {tables: [t]}}}}\n",
            "test.yaml",
        )
        .unwrap();
        assert_eq!(c.databases[0].map.cache_stats().limit, 4096);
    }

    #[test]
    fn table_listed_twice_is_refused() {
        let msg = err("databases:\n  heal7:\n    schemas:\n      a: {tables: [users, users]}\n");
        assert!(msg.contains("listed twice"), "{msg}");
    }

    #[test]
    fn invalid_identifiers_are_refused() {
        for (bad, what) in [
            ("a: {tables: [\"public.users\"]}", "contains a dot"),
            ("a: {tables: [\"\"]}", "must not be empty"),
            ("a: {tables: [\" users\"]}", "blanks"),
            (
                "a: {tables: [aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]}",
                "longer than 63",
            ),
            ("\"bad\\tschema\": {tables: [users]}", "control character"),
        ] {
            let msg = err(&format!(
                "databases:\n  heal7:\n    schemas:\n      {bad}\n"
            ));
            assert!(msg.contains(what), "{bad}: {msg}");
        }
    }

    #[test]
    fn alias_equal_to_database_key_is_refused() {
        let msg = err(
            "databases:\n  heal7:\n    schemas: {s: {tables: [t]}}\n    aliases:\n      heal7: {default_schema: s}\n",
        );
        assert!(msg.contains("also a database key"), "{msg}");
        let msg = err(
            "databases:\n  a:\n    schemas: {s: {tables: [t]}}\n  b:\n    schemas: {s: {tables: [u]}}\n    aliases:\n      a: {default_schema: s}\n",
        );
        assert!(msg.contains("also a database key"), "{msg}");
    }

    #[test]
    fn alias_with_unknown_schema_is_refused() {
        let msg = err(
            "databases:\n  heal7:\n    schemas: {s: {tables: [t]}}\n    aliases:\n      old: {default_schema: nope}\n",
        );
        assert!(msg.contains("schema `nope` is not listed"), "{msg}");
    }

    #[test]
    fn bad_policy_and_listen_are_refused() {
        let msg = err("proxy: {on_parse_error: ignore}\ndatabases: {a: {}}\n");
        assert!(msg.contains("unknown variant `ignore`"), "{msg}");
        let msg = err("proxy: {listen: nowhere}\ndatabases: {a: {}}\n");
        assert!(msg.contains("proxy.listen"), "{msg}");
        let msg = err("databases: {}\n");
        assert!(msg.contains("at least one database"), "{msg}");
        let msg = err("proxy: {worker_threads: 0}\ndatabases: {a: {}}\n");
        assert!(msg.contains("proxy.worker_threads"), "{msg}");
        let c = Config::from_yaml("proxy: {worker_threads: 3}\ndatabases: {a: {}}\n", "t").unwrap();
        assert_eq!(c.worker_threads, Some(3));
    }

    #[test]
    fn admin_users_hold_verifiers_and_refuse_anything_else() {
        let v = crate::console::scram::hash_password(b"pw");
        let c = Config::from_yaml(
            &format!("proxy:\n  admin_users:\n    admin: \"{v}\"\ndatabases: {{a: {{}}}}\n"),
            "t",
        )
        .unwrap();
        assert_eq!(c.admin_users["admin"].to_string(), v);

        let msg = err("proxy:\n  admin_users:\n    admin: hunter2\ndatabases: {a: {}}\n");
        assert!(msg.contains("proxy.admin_users.admin"), "{msg}");
        assert!(msg.contains("SCRAM-SHA-256$"), "{msg}");
        assert!(!msg.contains("hunter2"), "the value is never echoed: {msg}");
    }

    #[test]
    fn the_console_database_name_is_reserved() {
        let msg = err("databases: {heal7_proxy: {}}\n");
        assert!(msg.contains("reserved for the admin console"), "{msg}");
        let msg = err(
            "databases:\n  a:\n    schemas: {s: {tables: [t]}}\n    aliases:\n      heal7_proxy: {default_schema: s}\n",
        );
        assert!(msg.contains("reserved for the admin console"), "{msg}");
    }
}
