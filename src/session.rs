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
use crate::config::{Route, UpstreamTls, UpstreamTlsMode};
use crate::metrics::DatabaseMetrics;
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
    // Counted per database name until this function returns.
    let database_metrics = state.metrics.database(&client_database);
    let _connected = DatabaseConnection::open(Arc::clone(&database_metrics));
    let route = config.route(&client_database);
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
    let upstream_startup = rebuild_startup(startup, &client_database, &route);

    let server = match connect(&route.host, route.port, config.connect_timeout).await {
        Ok(s) => s,
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
    let _ = server.set_nodelay(true);
    let upstream_addr = server.peer_addr()?;
    let mut server = match secure(server, &route.host, &route.tls, config.connect_timeout).await {
        Ok(s) => s,
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
    let sent = async {
        server.write_all(&upstream_startup).await?;
        server.flush().await
    };
    if let Err(e) = sent.await {
        let e = SessionError::UpstreamUnreachable {
            addr: upstream,
            reason: UpstreamFailure::Io(e),
        };
        return Err(farewell(&mut client, e, state).await);
    }

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
    relay::relay(client, server, buf, &ctx).await
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

async fn connect(host: &str, port: u16, limit: Duration) -> Result<TcpStream, UpstreamFailure> {
    match tokio::time::timeout(limit, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(UpstreamFailure::Io(e)),
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
