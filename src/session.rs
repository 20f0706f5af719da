//! One client session after its StartupMessage: route, connect upstream,
//! then the relay ([`relay`]) until either side closes.
//!
//! The session owns its sockets and buffers; everything shared (config,
//! metrics, the cancel-key registry) comes in through [`ProxyState`]. Every
//! error that can still reach the client is answered with an ErrorResponse.

mod error;
mod relay;
mod tracker;
mod wake_gate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::{ClientIdentity, ClientInfo};
use crate::config::{Config, OtherDatabases, Route};
use crate::metrics::{DatabaseMetrics, OTHER_DATABASE};
use crate::protocol::{ClientFacing, StartupMessage};
use crate::reload::Snapshot;
use crate::shutdown::Shutdown;
use crate::state::ProxyState;

pub use error::{SessionError, UpstreamFailure};

/// Serve one client from its StartupMessage until it or its server goes
/// away. `buf` holds what the client sent after the StartupMessage; `config`
/// is the snapshot the connection started with. Errors are logged here (the
/// caller only counts), and the client has been told when possible.
pub async fn serve(
    client: TcpStream,
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
    mut client: TcpStream,
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
        return Err(farewell(&mut client, refused, state).await);
    }
    let upstream_startup = rebuild_startup(startup, &client_database, &route);

    // One bound for the TCP connect and the server's first answer: a
    // server that accepts but never answers (stopped, overloaded) fails
    // the client within connect_timeout_ms, not when TCP gives up.
    let (server, first) = match open_upstream(
        &route.host,
        route.port,
        &upstream_startup,
        config.connect_timeout,
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
    let upstream_addr = server.peer_addr()?;

    let ctx = relay::RelayContext {
        state: state.clone(),
        config: Arc::clone(&config),
        client_database: client_database.clone(),
        upstream: upstream_addr,
        shutdown: shutdown.clone(),
        client: Arc::clone(registered.entry()),
        database_metrics,
        identity,
    };
    relay::relay(client, server, buf, first, &ctx).await
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

/// Connect to the upstream, send `startup` and wait for the first bytes of
/// its answer, all within `limit`. Returns the stream and those bytes (the
/// relay's server buffer starts with them).
async fn open_upstream(
    host: &str,
    port: u16,
    startup: &[u8],
    limit: Duration,
) -> Result<(TcpStream, BytesMut), UpstreamFailure> {
    let attempt = async {
        let mut server = TcpStream::connect((host, port)).await?;
        let _ = server.set_nodelay(true);
        server.write_all(startup).await?;
        let mut first = BytesMut::with_capacity(8 * 1024);
        if server.read_buf(&mut first).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection before answering the startup",
            ));
        }
        Ok((server, first))
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(e)) => Err(UpstreamFailure::Io(e)),
        Err(_) => Err(UpstreamFailure::Timeout(limit)),
    }
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
