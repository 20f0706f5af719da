//! One client session after its StartupMessage: route, connect upstream,
//! then the relay ([`relay`]) until either side closes.
//!
//! The session owns its sockets and buffers; everything shared (config,
//! metrics, the cancel-key registry) comes in through [`ProxyState`]. Every
//! error that can still reach the client is answered with an ErrorResponse.

mod error;
mod prepared;
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
use crate::config::{Config, OtherDatabases, Route, UpstreamTls, UpstreamTlsMode};
use crate::metrics::{DatabaseMetrics, Metrics, OTHER_DATABASE, Refusal, TlsHandshake};
use crate::protocol::{ClientFacing, StartupMessage};
use crate::reload::Snapshot;
use crate::shutdown::Shutdown;
use crate::state::ProxyState;
use crate::stream::Stream;

pub use error::{SessionError, UpstreamFailure};

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

/// Connect to the upstream, negotiate TLS as `tls` says, send `startup`
/// and wait for the first bytes of its answer, all within `limit`. Returns
/// the stream, the server's address and those bytes (the relay's server
/// buffer starts with them).
async fn open_upstream(
    host: &str,
    port: u16,
    tls: &UpstreamTls,
    startup: &[u8],
    limit: Duration,
    metrics: &Metrics,
) -> Result<(Stream, std::net::SocketAddr, BytesMut), UpstreamFailure> {
    let attempt = async {
        let server = TcpStream::connect((host, port)).await?;
        let _ = server.set_nodelay(true);
        let address = server.peer_addr()?;
        let secured = secure(server, host, tls, limit).await;
        let handshake = match &secured {
            Ok(server) if server.is_tls() => Some(TlsHandshake::UpstreamOk),
            Err(UpstreamFailure::Tls(_)) => Some(TlsHandshake::UpstreamFailed),
            _ => None,
        };
        if let Some(kind) = handshake {
            metrics.tls_handshakes(kind).fetch_add(1, Ordering::Relaxed);
        }
        let mut server = match secured {
            Ok(server) => server,
            // libpq's prefer: when the TLS attempt fails (a handshake that
            // breaks, an old server's error to the SSLRequest), try again
            // in clear on a new connection.
            Err(e @ (UpstreamFailure::Tls(_) | UpstreamFailure::TlsAnswer(_)))
                if tls.mode == UpstreamTlsMode::Prefer =>
            {
                tracing::warn!(upstream = %address, error = %e, "TLS to the upstream failed; tls.mode prefer: connecting in clear");
                let server = TcpStream::connect((host, port)).await?;
                let _ = server.set_nodelay(true);
                Stream::Plain(server)
            }
            Err(e) => return Err(e),
        };
        server.write_all(startup).await?;
        server.flush().await?;
        let mut first = BytesMut::with_capacity(8 * 1024);
        if server.read_buf(&mut first).await? == 0 {
            return Err(UpstreamFailure::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection before answering the startup",
            )));
        }
        Ok((server, address, first))
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamFailure::Timeout(limit)),
    }
}

/// Negotiate TLS on a fresh upstream connection as `tls.mode` says
/// (libpq's sslmode): ask with an SSLRequest, then handshake on `S`; on
/// `N` continue in clear only in mode prefer.
async fn secure(
    server: TcpStream,
    host: &str,
    tls: &UpstreamTls,
    limit: Duration,
) -> Result<Stream, UpstreamFailure> {
    let Some(client_config) = &tls.client_config else {
        return Ok(Stream::Plain(server));
    };
    let negotiate = async {
        let mut server = server;
        let mut request = [0u8; 8];
        request[..4].copy_from_slice(&8i32.to_be_bytes());
        request[4..].copy_from_slice(&crate::protocol::SSL_REQUEST_CODE.to_be_bytes());
        server.write_all(&request).await?;
        let answer = server.read_u8().await?;
        match upstream_tls_step(tls.mode, answer)? {
            false => Ok(Stream::Plain(server)),
            true => {
                let name =
                    rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap_or_else(|_| {
                        // Only verify-full compares names, and it was
                        // checked at load; any name will do for the rest.
                        rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name")
                    });
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(client_config));
                let tls = connector
                    .connect(name, server)
                    .await
                    .map_err(UpstreamFailure::Tls)?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    };
    match tokio::time::timeout(limit, negotiate).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamFailure::Timeout(limit)),
    }
}

/// What the server's answer to the SSLRequest means in `mode`: handshake
/// (true), continue in clear (false), or fail.
fn upstream_tls_step(mode: UpstreamTlsMode, answer: u8) -> Result<bool, UpstreamFailure> {
    match (answer, mode) {
        (b'S', _) => Ok(true),
        (b'N', UpstreamTlsMode::Prefer | UpstreamTlsMode::Disable) => Ok(false),
        (b'N', mode) => Err(UpstreamFailure::TlsRefused(mode.as_str())),
        (other, _) => Err(UpstreamFailure::TlsAnswer(other)),
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

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn upstream_answer_per_mode() {
        use UpstreamTlsMode::*;
        for mode in [Prefer, Require, VerifyCa, VerifyFull] {
            assert!(upstream_tls_step(mode, b'S').unwrap(), "{mode:?}");
        }
        assert!(!upstream_tls_step(Prefer, b'N').unwrap());
        for mode in [Require, VerifyCa, VerifyFull] {
            let e = upstream_tls_step(mode, b'N').unwrap_err();
            assert!(matches!(e, UpstreamFailure::TlsRefused(_)), "{mode:?}");
            assert!(e.to_string().contains(mode.as_str()), "{e}");
        }
        // An ErrorResponse ('E') from a server too old for SSLRequest.
        assert!(matches!(
            upstream_tls_step(Prefer, b'E'),
            Err(UpstreamFailure::TlsAnswer(b'E'))
        ));
    }
}
