//! One client connection: the startup phase (SSL/GSSENC refusal, cancel
//! forwarding, routing, the rebuilt StartupMessage), the upstream connect,
//! then the relay ([`relay`]) until either side closes.
//!
//! The session owns its sockets and buffers; everything shared (config,
//! metrics, the cancel-key registry) comes in through [`ProxyState`]. Every
//! error that can still reach the client is answered with an ErrorResponse.

mod relay;
mod statement;
mod wake_gate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::clients::ClientInfo;
use crate::config::Config;
use crate::console;
use crate::error::SessionError;
use crate::metrics::DatabaseMetrics;
use crate::protocol::{self, ProtocolError, StartupMessage, StartupPacket};
use crate::server::ProxyState;
use crate::unmapped::ClientIdentity;

pub use statement::{
    EncodingClass, Observer, Rewriter, SessionFacts, TempRelations, TextRewrite, rewrite_text,
    splice,
};

/// How long the proxy keeps trying to tell a client why it is closing.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// The shutdown signals a session watches.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Stop accepting work: close the session as soon as it is idle.
    pub drain: CancellationToken,
    /// The grace period is over: close now.
    pub abort: CancellationToken,
}

/// Serve one client until it or its server goes away. Errors are logged
/// here (the caller only counts), and the client has been told when possible.
pub async fn serve(client: TcpStream, peer: SocketAddr, state: ProxyState, shutdown: Shutdown) {
    let started = Instant::now();
    match serve_inner(client, peer, &state, &shutdown).await {
        Ok(Some(summary)) => tracing::info!(
            client = %peer,
            duration_ms = started.elapsed().as_millis() as u64,
            statements = summary.statements,
            rewritten = summary.rewritten,
            bytes_from_client = summary.bytes_from_client,
            bytes_from_server = summary.bytes_from_server,
            ended = summary.ended,
            "disconnected"
        ),
        Ok(None) => {}
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
    peer: SocketAddr,
    state: &ProxyState,
    shutdown: &Shutdown,
) -> Result<Option<Summary>, SessionError> {
    let _ = client.set_nodelay(true);
    // One snapshot for the whole session: a reload never changes a live
    // session's routing or map halfway.
    let config = state.config.load_full();
    let mut buf = BytesMut::with_capacity(1024);

    let startup = tokio::select! {
        r = tokio::time::timeout(config.startup_timeout, read_startup(&mut client, &mut buf, state, &config)) => match r {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) => return Err(farewell(&mut client, e, state).await),
            Err(_) => {
                let e = SessionError::StartupTimeout(config.startup_timeout);
                return Err(farewell(&mut client, e, state).await);
            }
        },
        _ = shutdown.drain.cancelled() => {
            return Err(farewell(&mut client, SessionError::Shutdown, state).await);
        }
    };

    let client_database = startup.database().unwrap_or_default().into_owned();
    if client_database == console::DATABASE {
        console::serve(client, buf, startup, peer, state, shutdown).await;
        return Ok(None);
    }
    let identity = ClientIdentity {
        database: client_database.clone(),
        user: startup.get_str("user").unwrap_or_default().into_owned(),
        application_name: startup
            .get_str("application_name")
            .unwrap_or_default()
            .into_owned(),
    };
    // Listed for SHOW CLIENTS until this function returns, however it does.
    let registered = state.clients.register(ClientInfo {
        address: peer,
        user: identity.user.clone(),
        database: client_database.clone(),
        application_name: identity.application_name.clone(),
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

    let mut server = match connect(&route.host, route.port, config.connect_timeout).await {
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
    if let Err(e) = server.write_all(&upstream_startup).await {
        let e = SessionError::UpstreamUnreachable {
            addr: upstream,
            reason: e.to_string(),
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
    };
    relay::relay(client, server, buf, &ctx).await.map(Some)
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

/// Read startup packets until a StartupMessage. `Ok(None)`: nothing more to
/// do (a cancel request was handled, or the client left).
async fn read_startup(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    state: &ProxyState,
    config: &Config,
) -> Result<Option<StartupMessage>, SessionError> {
    loop {
        match protocol::decode_startup(buf).map_err(SessionError::Client)? {
            Some(StartupPacket::SslRequest | StartupPacket::GssEncRequest) => {
                // TLS is another issue: refuse, the client continues in clear.
                client.write_all(b"N").await?;
            }
            Some(StartupPacket::CancelRequest { pid, secret, raw }) => {
                forward_cancel(pid, secret, &raw, state, config).await;
                return Ok(None);
            }
            Some(StartupPacket::Startup(msg)) => return Ok(Some(msg)),
            None => {
                buf.reserve(1024);
                if client.read_buf(buf).await? == 0 {
                    return Ok(None);
                }
            }
        }
    }
}

/// Send a cancel request on to the server of the session holding the key.
/// Unknown keys are dropped: the client gets no answer either way, as from
/// Postgres itself.
async fn forward_cancel(pid: i32, secret: i32, raw: &[u8], state: &ProxyState, config: &Config) {
    let Some(addr) = state.cancel_keys.lookup((pid, secret)) else {
        state
            .metrics
            .cancels_unknown
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pid, "cancel request with an unknown key dropped");
        return;
    };
    state
        .metrics
        .cancels_forwarded
        .fetch_add(1, Ordering::Relaxed);
    let sent = tokio::time::timeout(config.connect_timeout, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(raw).await?;
        s.shutdown().await
    })
    .await;
    match sent {
        Ok(Ok(())) => tracing::debug!(pid, upstream = %addr, "cancel request forwarded"),
        Ok(Err(e)) => {
            tracing::warn!(pid, upstream = %addr, error = %e, "cannot forward cancel request")
        }
        Err(_) => tracing::warn!(pid, upstream = %addr, "forwarding cancel request timed out"),
    }
}

/// The StartupMessage to send upstream: the routed database name and, for an
/// alias, the search_path; every other parameter as the client sent it.
fn rebuild_startup(
    mut msg: StartupMessage,
    client_database: &str,
    route: &crate::config::Route,
) -> bytes::Bytes {
    // Unknown databases keep the client's raw bytes (even non-UTF-8 ones).
    if route.database != client_database || msg.get("database").is_none() {
        msg.set("database", route.database.as_bytes());
    }
    if let Some(search_path) = &route.search_path {
        msg.append_setting("search_path", search_path);
    }
    msg.encode()
}

async fn connect(host: &str, port: u16, limit: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(limit, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {} ms", limit.as_millis())),
    }
}

/// Tell the client why the session ends (FATAL + SQLSTATE), then hand the
/// error back for logging.
async fn farewell<W: AsyncWriteExt + Unpin>(
    client: &mut W,
    error: SessionError,
    state: &ProxyState,
) -> SessionError {
    if let SessionError::Client(
        ProtocolError::FrameTooLarge { .. }
        | ProtocolError::FrameTooShort { .. }
        | ProtocolError::StartupLength { .. },
    )
    | SessionError::Server(
        ProtocolError::FrameTooLarge { .. } | ProtocolError::FrameTooShort { .. },
    ) = &error
    {
        state
            .metrics
            .frames_rejected
            .fetch_add(1, Ordering::Relaxed);
    }
    if error.reaches_client() {
        let mut out = BytesMut::new();
        protocol::encode_error_response(
            &mut out,
            "FATAL",
            error.sqlstate().code(),
            &error.to_string(),
        );
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
            client.write_all(&out).await?;
            client.flush().await
        })
        .await;
    }
    error
}
