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
    /// Tables that live in this schema, named as the catalog stores them.
    #[serde(default)]
    tables: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlias {
    /// Schema put first on the session's search_path.
    default_schema: String,
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
    /// and the alias' default schema, if it is one.
    routes: HashMap<String, (usize, Option<String>)>,
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
    /// schema -> tables, in file order (for reports and `check`).
    pub schemas: Vec<(String, Vec<String>)>,
    pub map: Arc<SchemaMap>,
    /// alias name -> default schema, in file order.
    pub aliases: Vec<(String, String)>,
    pub mode: Mode,
}

/// Where a client's connection goes and how its queries are treated.
#[derive(Debug, Clone)]
pub struct Route {
    pub host: String,
    pub port: u16,
    /// Database name to put in the upstream StartupMessage.
    pub database: String,
    /// The schema map, or `None` for databases the config does not know
    /// (forwarded unchanged, no rewriting).
    pub map: Option<Arc<SchemaMap>>,
    /// For an alias: the search_path to set on the session.
    pub search_path: Option<String>,
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
            Some((index, alias_schema)) => {
                let db = &self.databases[*index];
                Route {
                    host: db.host.clone(),
                    port: db.port,
                    database: db.database.clone(),
                    map: Some(db.map.clone()),
                    search_path: alias_schema
                        .as_ref()
                        .map(|s| format!("{}, public", quote_identifier(s))),
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

    let mut routes: HashMap<String, (usize, Option<String>)> = HashMap::new();
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

        let mut table_schema: HashMap<&str, &str> = HashMap::new();
        for (schema, s) in &db.schemas {
            check_name(schema).map_err(|m| invalid(format!("{key}.schemas.{schema}"), m))?;
            for table in &s.tables {
                let tkey = format!("{key}.schemas.{schema}.tables");
                check_name(table).map_err(|m| invalid(tkey.clone(), format!("`{table}`: {m}")))?;
                if let Some(other) = table_schema.insert(table, schema) {
                    let message = if other == schema {
                        format!("table `{table}` is listed twice")
                    } else {
                        format!("table `{table}` is already listed under schema `{other}`")
                    };
                    return Err(invalid(tkey, message));
                }
            }
        }
        let map = SchemaMap::new(
            table_schema
                .iter()
                .map(|(t, s)| (s.to_string(), t.to_string())),
        );
        let map = match proxy.rewrite_cache_bytes {
            Some(bytes) => map.with_cache_bytes(bytes),
            None => map,
        };

        let mut aliases = Vec::new();
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
            routes.insert(alias.clone(), (index, Some(a.default_schema.clone())));
            aliases.push((alias.clone(), a.default_schema.clone()));
        }

        databases.push(Database {
            name,
            host: db.host,
            port: db.port,
            database,
            schemas: db
                .schemas
                .iter()
                .map(|(s, t)| (s.clone(), t.tables.clone()))
                .collect(),
            map: Arc::new(map),
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

fn looks_like_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// A name the catalog can hold: non-empty, at most 63 bytes, no control
/// characters, no surrounding blanks, and no dot (a dot means someone wrote
/// `schema.table` where a bare name belongs).
fn check_name(name: &str) -> Result<(), String> {
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
        assert!(r.search_path.is_none());
        let map = r.map.unwrap();
        assert_eq!(map.schema_of("users", false), Some("shared_common"));
        assert_eq!(map.schema_of("USERS", false), Some("shared_common"));
        assert_eq!(map.schema_of("USERS", true), None);

        let alias = c.route("heal7_saju");
        assert_eq!(alias.database, "heal7");
        assert_eq!(alias.search_path.as_deref(), Some("saju_service, public"));
        assert!(alias.map.is_some());

        let other = c.route("postgres");
        assert_eq!(other.database, "postgres");
        assert!(other.map.is_none());
        assert_eq!(other.upstream_addr(), "127.0.0.1:5432");
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
