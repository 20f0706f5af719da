//! One client session after its StartupMessage: route, connect upstream,
//! then the relay ([`relay`]) until either side closes.
//!
//! The session owns its sockets and buffers; everything shared (config,
//! metrics, the cancel-key registry) comes in through [`ProxyState`]. Every
//! error that can still reach the client is answered with an ErrorResponse.

mod error;
mod pooled;
mod prepared;
mod relay;
mod sql_prepare;
mod tracker;
mod transaction;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::clients::{ClientIdentity, ClientInfo};
use crate::config::{Config, OtherDatabases, Route};
use crate::metrics::{DatabaseMetrics, OTHER_DATABASE, Refusal};
use crate::protocol::{ClientFacing, StartupMessage};
use crate::reload::Snapshot;
use crate::shutdown::Shutdown;
use crate::state::ProxyState;
use crate::stream::Stream;
use crate::upstream::open_upstream;

pub use crate::upstream::UpstreamFailure;
pub use error::SessionError;

/// Serve one client from its StartupMessage until it or its server goes
/// away. `buf` holds what the client sent after the StartupMessage; `config`
/// is the snapshot the connection started with. Errors are logged here (the
/// caller only counts), and the client has been told when possible.
pub async fn serve(
    client: Stream,
    buf: BytesMut,
    startup: StartupMessage,
    peer: SocketAddr,
    config: Arc<Snapshot>,
    state: ProxyState,
    shutdown: Shutdown,
) {
    let started = Instant::now();
    match serve_inner(client, buf, startup, peer, config, &state, &shutdown).await {
        Ok(summary) => tracing::info!(
            client = %peer,
            duration_ms = started.elapsed().as_millis() as u64,
            statements = summary.statements,
            rewritten = summary.rewritten,
            bytes_from_client = summary.bytes_from_client,
            bytes_from_server = summary.bytes_from_server,
            ended = summary.ended,
            "disconnected"
        ),
        Err(SessionError::Io(e)) => {
            tracing::debug!(client = %peer, error = %e, "session i/o error")
        }
        Err(e) => tracing::warn!(
            client = %peer,
            duration_ms = started.elapsed().as_millis() as u64,
            sqlstate = e.sqlstate().code(),
            error = %e,
            "session ended with an error"
        ),
    }
}

/// What the disconnect log line reports.
#[derive(Debug, Default)]
pub struct Summary {
    pub statements: u64,
    pub rewritten: u64,
    pub bytes_from_client: u64,
    pub bytes_from_server: u64,
    pub ended: &'static str,
}

async fn serve_inner(
    mut client: Stream,
    buf: BytesMut,
    startup: StartupMessage,
    peer: SocketAddr,
    config: Arc<Snapshot>,
    state: &ProxyState,
    shutdown: &Shutdown,
) -> Result<Summary, SessionError> {
    let client_database = startup.database().unwrap_or_default().into_owned();
    let identity = ClientIdentity::of(&startup);
    // Listed for SHOW CLIENTS until this function returns, however it does.
    let registered = state.clients.register(ClientInfo {
        address: peer,
        identity: identity.clone(),
    });
    let route = config.route(&client_database);
    // Counted per database name until this function returns.
    let database_metrics = state
        .metrics
        .database(metrics_database(&route, &client_database));
    let _connected = DatabaseConnection::open(Arc::clone(&database_metrics));
    let upstream = route.upstream_addr();
    tracing::info!(
        client = %peer,
        user = %startup.get_str("user").unwrap_or_default(),
        database = %client_database,
        application_name = %startup.get_str("application_name").unwrap_or_default(),
        upstream = %upstream,
        upstream_database = %route.database,
        rewrite = route.map.is_some(),
        "connected"
    );
    if let Some(refused) = refusal(&config, &route, &startup, &client_database) {
        let reason = match refused {
            SessionError::ReplicationRefused => Refusal::Replication,
            _ => Refusal::OtherDatabase,
        };
        state
            .metrics
            .refused(reason)
            .fetch_add(1, Ordering::Relaxed);
        return Err(farewell(&mut client, refused, state).await);
    }
    if let Some(settings) = route.pool.clone() {
        let ctx = relay::RelayContext {
            state: state.clone(),
            config: Arc::clone(&config),
            client_database: client_database.clone(),
            upstream: SocketAddr::from(([0, 0, 0, 0], 0)),
            shutdown: shutdown.clone(),
            client: Arc::clone(registered.entry()),
            database_metrics,
            identity,
            upstream_tls: false,
        };
        let session = pooled::PooledSession {
            route: &route,
            settings: &settings,
            config: &config,
            state,
            client_database: &client_database,
        };
        let mut slot = Some(client);
        // Boxed: the pooled session's state machine stays out of the 1:1
        // relay's future (one allocation per pooled login).
        let result = Box::pin(pooled::serve(&mut slot, buf, session, &startup, ctx)).await;
        return match (result, slot) {
            (Err(e), Some(mut client)) => Err(farewell(&mut client, e, state).await),
            (result, _) => result,
        };
    }
    let upstream_startup = rebuild_startup(startup, &client_database, &route);

    // One bound for the TCP connect, the TLS negotiation and the server's
    // first answer: a server that accepts but never answers (stopped,
    // overloaded) fails the client within connect_timeout_ms.
    let (server, upstream_addr, first) = match open_upstream(
        &route.host,
        route.port,
        &route.tls,
        &upstream_startup,
        config.connect_timeout,
        &state.metrics,
    )
    .await
    {
        Ok(opened) => opened,
        Err(reason) => {
            state
                .metrics
                .upstream_connect_failures
                .fetch_add(1, Ordering::Relaxed);
            let e = SessionError::UpstreamUnreachable {
                addr: upstream,
                reason,
            };
            return Err(farewell(&mut client, e, state).await);
        }
    };

    let ctx = relay::RelayContext {
        state: state.clone(),
        config: Arc::clone(&config),
        client_database: client_database.clone(),
        upstream: upstream_addr,
        shutdown: shutdown.clone(),
        client: Arc::clone(registered.entry()),
        database_metrics,
        identity,
        upstream_tls: server.is_tls(),
    };
    relay::relay::<{ relay::ONE_TO_ONE }>(client, server, buf, first, &ctx)
        .await
        .map(|r| r.summary)
}

/// The database label a session is counted under: its own name when the
/// config knows it (a key or an alias), else [`OTHER_DATABASE`].
fn metrics_database<'a>(route: &Route, client_database: &'a str) -> &'a str {
    if route.map.is_some() {
        client_database
    } else {
        OTHER_DATABASE
    }
}

/// Why the config does not let this client reach an upstream at all, if it
/// does not: checked before any upstream connection.
fn refusal(
    config: &Config,
    route: &Route,
    startup: &StartupMessage,
    client_database: &str,
) -> Option<SessionError> {
    if !config.allow_replication && wants_replication(startup) {
        return Some(SessionError::ReplicationRefused);
    }
    if route.map.is_none() && config.other_databases == OtherDatabases::Refuse {
        return Some(SessionError::UnknownDatabase(client_database.to_owned()));
    }
    None
}

/// Whether a StartupMessage asks for a replication connection. Postgres
/// reads `replication` as a boolean (any unique prefix of true/false/yes/no/
/// on/off, or 1/0) or `database`; only a value it reads as false leaves
/// replication off, and a value it would refuse is refused here too.
fn wants_replication(startup: &StartupMessage) -> bool {
    let Some(value) = startup.get_str("replication") else {
        return false;
    };
    let v = value.to_ascii_lowercase();
    let off = v == "0"
        || (!v.is_empty() && ("false".starts_with(&v) || "no".starts_with(&v)))
        || (v.len() >= 2 && "off".starts_with(&v));
    !off
}

/// Holds one of a database's active client connections.
struct DatabaseConnection(Arc<DatabaseMetrics>);

impl DatabaseConnection {
    fn open(metrics: Arc<DatabaseMetrics>) -> Self {
        metrics.clients_total.fetch_add(1, Ordering::Relaxed);
        metrics.clients_active.fetch_add(1, Ordering::Relaxed);
        DatabaseConnection(metrics)
    }
}

impl Drop for DatabaseConnection {
    fn drop(&mut self) {
        self.0.clients_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The StartupMessage to send upstream: the routed database name and, for an
/// alias, the search_path; every other parameter as the client sent it.
fn rebuild_startup(mut msg: StartupMessage, client_database: &str, route: &Route) -> bytes::Bytes {
    // Unknown databases keep the client's raw bytes (even non-UTF-8 ones).
    if route.database != client_database || msg.get("database").is_none() {
        msg.set("database", route.database.as_bytes());
    }
    if let Some(search_path) = &route.search_path {
        msg.append_setting("search_path", search_path);
    }
    msg.encode()
}

/// Tell the client why the session ends (FATAL + SQLSTATE), then hand the
/// error back for logging.
async fn farewell<W: AsyncWriteExt + Unpin>(
    client: &mut W,
    error: SessionError,
    state: &ProxyState,
) -> SessionError {
    if error.is_rejected_frame() {
        state
            .metrics
            .frames_rejected
            .fetch_add(1, Ordering::Relaxed);
    }
    crate::farewell::farewell(client, &error).await;
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&'static str, &str)]) -> StartupMessage {
        StartupMessage {
            version: crate::protocol::PROTOCOL_3_0,
            params: params
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec().into(), v.as_bytes().to_vec().into()))
                .collect(),
        }
    }

    fn startup_with_replication(value: &str) -> StartupMessage {
        startup(&[("user", "u"), ("replication", value)])
    }

    #[test]
    fn replication_is_off_only_for_values_postgres_reads_as_false() {
        for off in ["false", "f", "FALSE", "no", "n", "off", "of", "0"] {
            assert!(!wants_replication(&startup_with_replication(off)), "{off}");
        }
        for on in ["true", "on", "yes", "1", "database", "o", "", "garbage"] {
            assert!(wants_replication(&startup_with_replication(on)), "{on}");
        }
        assert!(!wants_replication(&startup(&[("user", "u")])));
    }
}
