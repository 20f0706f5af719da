//! `heal7-proxy check`: does every mapped table exist where the map says?
//!
//! Connects to each upstream database with libpq-style credentials and looks
//! each mapped name up in the catalog. A table that also exists in another
//! schema is reported: a client that relies on search_path (an alias, or a
//! statement the proxy cannot parse under `passthrough`) may read that copy.

use std::collections::BTreeMap;

use crate::config::Database;

/// Where one mapped table was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub schema: String,
    pub table: String,
    /// Present in the schema the map names.
    pub present: bool,
    /// Other schemas that hold a relation of the same name.
    pub also_in: Vec<String>,
}

impl TableCheck {
    pub fn status(&self) -> String {
        match (self.present, self.also_in.is_empty()) {
            (true, true) => "ok".to_owned(),
            (true, false) => format!(
                "ok, also present in {} (ambiguous for search_path users)",
                self.also_in.join(", ")
            ),
            (false, true) => "missing".to_owned(),
            (false, false) => format!("missing (but present in {})", self.also_in.join(", ")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot connect to {addr}/{database}: {source}")]
    Connect {
        addr: String,
        database: String,
        source: tokio_postgres::Error,
    },
    #[error("catalog query on {database} failed: {source}")]
    Query {
        database: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "PGSSLMODE={0} needs TLS, which `check` does not support yet; use disable, allow or prefer"
    )]
    TlsRequired(String),
}

/// Credentials as libpq would take them from the environment.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Option<String>,
    pub sslmode: Option<String>,
}

impl Credentials {
    /// PGUSER, PGPASSWORD, PGSSLMODE; `user` (the `--user` flag) wins over PGUSER.
    pub fn from_env(user: Option<String>) -> Self {
        Credentials {
            user: user.or_else(|| std::env::var("PGUSER").ok()),
            password: std::env::var("PGPASSWORD").ok(),
            sslmode: std::env::var("PGSSLMODE").ok(),
        }
    }
}

/// Check every mapped table of `db`, in map order.
pub async fn check_database(
    db: &Database,
    credentials: &Credentials,
) -> Result<Vec<TableCheck>, CheckError> {
    if let Some(mode) = &credentials.sslmode
        && matches!(mode.as_str(), "require" | "verify-ca" | "verify-full")
    {
        return Err(CheckError::TlsRequired(mode.clone()));
    }
    let mut pg = tokio_postgres::Config::new();
    pg.host(&db.host)
        .port(db.port)
        .dbname(&db.database)
        .application_name("heal7-proxy check");
    // libpq's default user is the OS user.
    let user = credentials
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".to_owned());
    pg.user(&user);
    if let Some(password) = &credentials.password {
        pg.password(password);
    }
    let (client, connection) =
        pg.connect(tokio_postgres::NoTls)
            .await
            .map_err(|source| CheckError::Connect {
                addr: format!("{}:{}", db.host, db.port),
                database: db.database.clone(),
                source,
            })?;
    let driver = tokio::spawn(connection);

    let names: Vec<&str> = db
        .schemas
        .iter()
        .flat_map(|(_, tables)| tables.iter().map(String::as_str))
        .collect();
    let rows = client
        .query(
            "SELECT c.relname::text, n.nspname::text \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname = ANY($1) \
             ORDER BY 2",
            &[&names],
        )
        .await
        .map_err(|source| CheckError::Query {
            database: db.database.clone(),
            source,
        })?;
    drop(client);
    let _ = driver.await;

    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        found.entry(row.get(0)).or_default().push(row.get(1));
    }
    let mut out = Vec::new();
    for (schema, tables) in &db.schemas {
        for table in tables {
            let schemas = found.get(table).cloned().unwrap_or_default();
            out.push(TableCheck {
                schema: schema.clone(),
                table: table.clone(),
                present: schemas.iter().any(|s| s == schema),
                also_in: schemas.into_iter().filter(|s| s != schema).collect(),
            });
        }
    }
    Ok(out)
}
