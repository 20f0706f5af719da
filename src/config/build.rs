//! Validation: the raw shape -> the indexed [`Config`] the proxy uses, with
//! every refusal naming its dotted key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::raw::*;
use super::*;
use crate::rewrite::{OnParseError, SchemaMap};

pub(super) fn validate(raw: RawConfig, source_name: &str) -> Result<Config, ConfigError> {
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
    let admin_http = admin_http(&proxy.admin_http).map_err(|(key, m)| invalid(key, m))?;
    let peering = super::peering::peering(&proxy).map_err(|(key, m)| invalid(key, m))?;
    if proxy.max_client_connections == 0 {
        return Err(invalid(
            "proxy.max_client_connections".into(),
            "must be at least 1".into(),
        ));
    }
    // Below a few KB ordinary statements would be refused; past 64 MiB the
    // parser's memory (~300 times the text) is no longer bounded usefully.
    if !((4 << 10)..=(64 << 20)).contains(&proxy.max_parse_bytes) {
        return Err(invalid(
            "proxy.max_parse_bytes".into(),
            format!("{} is outside 4096..=67108864 bytes", proxy.max_parse_bytes),
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
            .map_err(|e: crate::auth::scram::VerifierError| invalid(key, e.to_string()))?;
        admin_users.insert(user.clone(), verifier);
    }
    let console_mock_secret = console_mock_secret(&proxy, &invalid)?;
    if raw.databases.is_empty() {
        return Err(invalid(
            "databases".into(),
            "at least one database is required".into(),
        ));
    }

    let mut routes: HashMap<String, (usize, Option<usize>)> = HashMap::new();
    for name in raw.databases.keys() {
        check_name(name).map_err(|m| invalid(format!("databases.{name}"), m))?;
        if name == super::CONSOLE_DATABASE {
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
        // What current_schema() answers: the path clients had before the move.
        let client_search_path = match &db.client_search_path {
            Some(path) if path.is_empty() => Vec::new(),
            Some(path) => check_search_path(path, &format!("{key}.client_search_path"), &invalid)?,
            None => vec!["$user".to_owned(), PUBLIC.to_owned()],
        };
        // One map (and cache) per distinct rewriting rule set of the entry.
        let mut maps: Vec<(MapRules, Arc<SchemaMap>)> = Vec::new();
        let mut map_for = |with_public: bool,
                           create: Option<&str>,
                           search_path: &[String],
                           client_path: bool|
         -> Arc<SchemaMap> {
            // `'public.x'` strings of unlisted names lose `public.` only
            // where the route's search_path still reaches public.
            let public_on_path = search_path.iter().any(|s| s == PUBLIC);
            let key = (
                with_public,
                create.map(str::to_owned),
                public_on_path,
                client_path,
            );
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
                .with_create_schema(create)
                .with_public_on_search_path(public_on_path)
                .with_max_parse_bytes(proxy.max_parse_bytes)
                // Only the main name: an alias' clients create in
                // its default schema, not in their old path's.
                .with_client_search_path(if client_path {
                    &client_search_path
                } else {
                    &[]
                });
            let map = Arc::new(
                match proxy.rewrite_cache_bytes.or_else(cache_bytes_from_env) {
                    Some(bytes) => map.with_cache_bytes(bytes),
                    None => map,
                },
            );
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
            &search_path,
            true,
        );

        let mut aliases = Vec::new();
        let mut alias_maps = Vec::new();
        for (alias, a) in &db.aliases {
            let akey = format!("{key}.aliases.{alias}");
            check_name(alias).map_err(|m| invalid(akey.clone(), m))?;
            if alias == super::CONSOLE_DATABASE {
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
                &search_path,
                false,
            ));
            aliases.push(Alias {
                name: alias.clone(),
                default_schema: a.default_schema.clone(),
                search_path,
                create_schema,
            });
        }

        let tls = super::tls::upstream_tls(db.tls, &db.host)
            .map_err(|(k, m)| invalid(format!("{key}.tls.{k}"), m))?;
        let pool = super::pool::pool_settings(db.pool)
            .map_err(|(k, m)| invalid(format!("{key}.pool.{k}"), m))?
            .map(Arc::new);
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
            tls,
            pool,
        });
    }

    let redis = match raw.redis {
        Some(r) => Some(Arc::new(
            super::redis::build(r, &proxy.tls).map_err(|(k, m)| invalid(k, m))?,
        )),
        None => None,
    };
    let tls =
        super::tls::client_tls(proxy.tls).map_err(|(k, m)| invalid(format!("proxy.tls.{k}"), m))?;
    let mapping_hash = super::hash::mapping_hash(&databases);
    Ok(Config {
        source: source_name.to_owned(),
        start: StartSettings {
            listen: proxy.listen,
            admin_listen: proxy.admin_listen,
            worker_threads: proxy.worker_threads,
            shutdown_timeout: Duration::from_millis(proxy.shutdown_timeout_ms),
            peering,
            redis_listen: redis.as_ref().map(|r| r.listen.clone()),
        },
        on_parse_error: match proxy.on_parse_error {
            RawOnParseError::Tokens => OnParseError::Tokens,
            RawOnParseError::Reject => OnParseError::Reject,
            RawOnParseError::Passthrough => OnParseError::Passthrough,
        },
        max_message_size: proxy.max_message_size,
        startup_timeout: Duration::from_millis(proxy.startup_timeout_ms),
        connect_timeout: Duration::from_millis(proxy.connect_timeout_ms),
        admin_http,
        admin_users,
        databases,
        routes,
        other_databases: proxy.other_databases,
        allow_replication: proxy.allow_replication,
        max_client_connections: proxy.max_client_connections,
        console_mock_secret,
        tls,
        mapping_hash,
        redis,
    })
}

/// Secret files shorter than this are refused: too guessable to key
/// anything.
const MIN_ADMIN_SECRET_BYTES: usize = 16;

/// The console's mock secret. From `proxy.admin_secret_file` when set (it
/// then survives verifier rotations); else a hash of the admin_users
/// verifiers: as secret as the verifiers themselves, stable across
/// restarts, and with no admin users there is no one to enumerate. Nothing
/// public (such as the file's path) goes in: changing it would change
/// every mock salt while real users' salts stay, which tells them apart.
fn console_mock_secret(
    proxy: &RawProxy,
    invalid: &impl Fn(String, String) -> ConfigError,
) -> Result<MockSecret, ConfigError> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"heal7-proxy console mock secret v1\0");
    match &proxy.admin_secret_file {
        Some(path) => {
            let key = "proxy.admin_secret_file".to_owned();
            // The error names the file, never its content.
            let secret = std::fs::read(path).map_err(|e| {
                invalid(key.clone(), format!("cannot read {}: {e}", path.display()))
            })?;
            if secret.trim_ascii().len() < MIN_ADMIN_SECRET_BYTES {
                return Err(invalid(
                    key,
                    format!(
                        "{} holds fewer than {MIN_ADMIN_SECRET_BYTES} bytes of secret",
                        path.display()
                    ),
                ));
            }
            hash.update(b"file\0");
            hash.update(secret.trim_ascii());
        }
        None => {
            hash.update(b"verifiers");
            let mut users: Vec<_> = proxy.admin_users.iter().collect();
            users.sort();
            for (user, verifier) in users {
                hash.update(b"\0");
                hash.update(user.as_bytes());
                hash.update(b"\0");
                hash.update(verifier.as_bytes());
            }
        }
    }
    Ok(MockSecret(hash.finalize().into()))
}

/// What distinguishes one route's map from another's of the same entry:
/// whether the `public` entry applies, the create schema to add, and
/// whether the search_path holds `public`.
type MapRules = (bool, Option<String>, bool, bool);

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

pub(super) fn looks_like_host_port(s: &str) -> bool {
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

/// The cache bound from [`CACHE_BYTES_ENV`], when set.
fn cache_bytes_from_env() -> Option<usize> {
    std::env::var(CACHE_BYTES_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// The admin HTTP rules, the token read from its file.
fn admin_http(raw: &RawAdminHttp) -> Result<AdminHttp, (String, String)> {
    // `/` is the dashboard page: it holds no data (its script asks for the
    // token to read the other routes), so it may be opened to browsers.
    let open = ["/", "/metrics", "/healthz", "/readyz"];
    for path in &raw.open_paths {
        if !open.contains(&path.as_str()) {
            return Err((
                "proxy.admin_http.open_paths".into(),
                format!("`{path}` is not one of {}", open.join(", ")),
            ));
        }
    }
    let token = match &raw.token_file {
        None => None,
        Some(path) => {
            let key = "proxy.admin_http.token_file".to_owned();
            let text = std::fs::read(path)
                .map_err(|e| (key.clone(), format!("cannot read {}: {e}", path.display())))?;
            let token = text.trim_ascii();
            if token.len() < 16 {
                return Err((
                    key,
                    format!("the token in {} is shorter than 16 bytes", path.display()),
                ));
            }
            Some(AdminToken::new(token))
        }
    };
    Ok(AdminHttp {
        token,
        open_paths: raw.open_paths.clone(),
        hosts: raw.hosts.clone(),
    })
}
