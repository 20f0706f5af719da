//! `heal7-proxy check`: does every mapped object exist where the map says?
//!
//! Connects to each upstream database with libpq-style credentials and looks
//! each mapped name up in the catalog: tables, views and sequences in
//! pg_class, types in pg_type, functions in pg_proc. An object that also
//! exists in another schema is reported: a client that relies on search_path
//! (a string lookup such as `'users'::regclass`, or a statement the proxy
//! cannot parse under `passthrough`) may reach that copy.

use std::collections::BTreeMap;

use crate::config::{Database, ObjectKind};

/// Where one mapped object was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCheck {
    pub kind: ObjectKind,
    pub schema: String,
    pub name: String,
    /// Present in the schema the map names, as an object of its kind.
    pub present: bool,
    /// For a relation absent as its kind: the kind of relation that has its
    /// name there instead (a view listed under `tables`, ...).
    pub found_as: Option<String>,
    /// Other schemas that hold an object of the same name (for relations:
    /// any relation).
    pub also_in: Vec<String>,
}

impl ObjectCheck {
    pub fn status(&self) -> String {
        let missing = match &self.found_as {
            Some(other) => format!("missing (a {other} has this name there)"),
            None => "missing".to_owned(),
        };
        match (self.present, self.also_in.is_empty()) {
            (true, true) => "ok".to_owned(),
            (true, false) => format!(
                "ok, also present in {} (ambiguous for search_path users)",
                self.also_in.join(", ")
            ),
            (false, true) => missing,
            (false, false) => format!("{missing} (but present in {})", self.also_in.join(", ")),
        }
    }

    /// `schema.name`, with the kind for anything but a table.
    pub fn label(&self) -> String {
        match self.kind {
            ObjectKind::Table => format!("{}.{}", self.schema, self.name),
            ObjectKind::Function => format!("{}.{}() (function)", self.schema, self.name),
            kind => format!("{}.{} ({})", self.schema, self.name, kind.as_str()),
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

    /// The user libpq would connect as: the given one, else the OS user.
    pub fn effective_user(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "postgres".to_owned())
    }
}

/// A catalog connection (no TLS) and the task driving it; drop the client,
/// then await the task.
pub async fn connect(
    host: &str,
    port: u16,
    database: &str,
    credentials: &Credentials,
    application_name: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), CheckError> {
    if let Some(mode) = &credentials.sslmode
        && matches!(mode.as_str(), "require" | "verify-ca" | "verify-full")
    {
        return Err(CheckError::TlsRequired(mode.clone()));
    }
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .port(port)
        .dbname(database)
        .application_name(application_name)
        .user(credentials.effective_user());
    if let Some(password) = &credentials.password {
        pg.password(password);
    }
    let (client, connection) =
        pg.connect(tokio_postgres::NoTls)
            .await
            .map_err(|source| CheckError::Connect {
                addr: crate::config::host_port(host, port),
                database: database.to_owned(),
                source,
            })?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

/// Every schema holding an object of the given names, per kind: relations
/// (with their kind as found), types (enums, domains, ranges, stand-alone
/// composites, base types) and functions (any overload, procedures too).
const LOOKUP_SQL: &str = "\
SELECT 'relation', c.relname::text, n.nspname::text, \
       CASE WHEN c.relkind IN ('r', 'p', 'f') THEN 'table' \
            WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'sequence' END \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND c.relname = ANY($1) \
UNION ALL \
SELECT DISTINCT 'type', t.typname::text, n.nspname::text, 'type' \
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
WHERE t.typname = ANY($2) AND t.typcategory <> 'A' \
  AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c') \
UNION ALL \
SELECT DISTINCT 'function', p.proname::text, n.nspname::text, 'function' \
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
WHERE p.proname = ANY($3) \
ORDER BY 3";

/// Check every mapped object of `db`, in map order (schema by schema,
/// kinds in [`ObjectKind::ALL`] order).
pub async fn check_database(
    db: &Database,
    credentials: &Credentials,
) -> Result<Vec<ObjectCheck>, CheckError> {
    let (client, driver) = connect(
        &db.host,
        db.port,
        &db.database,
        credentials,
        "heal7-proxy check",
    )
    .await?;
    let names = |pick: &dyn Fn(ObjectKind) -> bool| -> Vec<&str> {
        db.schemas
            .iter()
            .flat_map(|s| s.objects())
            .filter(|(k, _)| pick(*k))
            .map(|(_, n)| n)
            .collect()
    };
    let relations = names(&|k| k.is_relation());
    let types = names(&|k| k == ObjectKind::Type);
    let functions = names(&|k| k == ObjectKind::Function);
    let rows = client
        .query(LOOKUP_SQL, &[&relations, &types, &functions])
        .await
        .map_err(|source| CheckError::Query {
            database: db.database.clone(),
            source,
        });
    drop(client);
    let _ = driver.await;
    let rows = rows?;

    // (namespace, name) -> [(schema, kind found)]
    let mut found: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for row in rows {
        found
            .entry((row.get(0), row.get(1)))
            .or_default()
            .push((row.get(2), row.get(3)));
    }
    let mut out = Vec::new();
    for schema in &db.schemas {
        for (kind, name) in schema.objects() {
            let namespace = if kind.is_relation() {
                "relation"
            } else {
                kind.as_str()
            };
            let hits = found
                .get(&(namespace.to_owned(), name.to_owned()))
                .cloned()
                .unwrap_or_default();
            let here = hits.iter().find(|(s, _)| *s == schema.name);
            let present = here.is_some_and(|(_, k)| k == kind.as_str());
            let mut also_in: Vec<String> = hits
                .iter()
                .filter(|(s, _)| *s != schema.name)
                .map(|(s, _)| s.clone())
                .collect();
            also_in.dedup();
            out.push(ObjectCheck {
                kind,
                schema: schema.name.clone(),
                name: name.to_owned(),
                present,
                found_as: here.filter(|_| !present).map(|(_, k)| k.clone()),
                also_in,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: ObjectKind, present: bool, found_as: Option<&str>, also: &[&str]) -> String {
        let c = ObjectCheck {
            kind,
            schema: "s".into(),
            name: "n".into(),
            present,
            found_as: found_as.map(str::to_owned),
            also_in: also.iter().map(|s| s.to_string()).collect(),
        };
        format!("{}: {}", c.label(), c.status())
    }

    #[test]
    fn statuses_name_the_kind_and_the_other_schemas() {
        assert_eq!(check(ObjectKind::Table, true, None, &[]), "s.n: ok");
        assert_eq!(
            check(ObjectKind::View, true, None, &["public"]),
            "s.n (view): ok, also present in public (ambiguous for search_path users)"
        );
        assert_eq!(
            check(ObjectKind::Sequence, false, Some("table"), &[]),
            "s.n (sequence): missing (a table has this name there)"
        );
        assert_eq!(
            check(ObjectKind::Function, false, None, &["public"]),
            "s.n() (function): missing (but present in public)"
        );
    }
}
