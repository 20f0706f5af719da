//! The startup phase of a new connection: answer SSLRequest (TLS per
//! `proxy.tls`, PostgreSQL 17's direct TLS too) and GSSENCRequest (always
//! `N`), forward a CancelRequest to the session that holds its key, and read
//! the StartupMessage within the startup timeout. The server then
//! decides where the connection goes (console or session); this handler
//! never dispatches into a sibling.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cancel::CancelRoute;
use crate::config::{ALPN_POSTGRESQL, ClientTlsMode, Config};
use crate::farewell::farewell;
use crate::metrics::{Metrics, Refusal, TlsHandshake};
use crate::protocol::{self, ClientFacing, ProtocolError, SqlState, StartupMessage, StartupPacket};
use crate::shutdown::Shutdown;
use crate::state::ProxyState;
use crate::stream::Stream;

/// The first byte of a TLS handshake record: a client using direct TLS.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How a connection's startup phase ended.
#[derive(Debug)]
pub enum Handshake {
    /// The client (over TLS if it asked), its StartupMessage, and whatever
    /// it sent after it.
    Startup(Stream, StartupMessage, BytesMut),
    /// Nothing more to do: a cancel request was handled, the client left,
    /// or it was told why it cannot go on.
    Done,
}

/// Why the startup phase failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The client broke the protocol (bad length, unknown request code).
    #[error("{0}")]
    Client(ProtocolError),
    #[error("no startup packet received within {0:?}")]
    Timeout(std::time::Duration),
    #[error("terminating connection because heal7-proxy is shutting down")]
    Shutdown,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// `proxy.tls.mode: require` and the client did not ask for TLS.
    #[error("heal7-proxy requires TLS: connect with sslmode=require (or stronger)")]
    TlsRequired,
    /// The client sent bytes after its SSLRequest, before the handshake
    /// (they would be read as if they had come encrypted: CVE-2021-23222).
    #[error("received unencrypted data after SSL request")]
    DataAfterSslRequest,
    /// A second SSLRequest over TLS, or direct TLS without the
    /// `postgresql` ALPN protocol.
    #[error("{0}")]
    TlsNegotiation(&'static str),
    /// The TLS handshake failed; the client cannot read a clear answer.
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

impl ClientFacing for StartupError {
    fn sqlstate(&self) -> SqlState {
        match self {
            StartupError::Client(_)
            | StartupError::Timeout(_)
            | StartupError::TlsRequired
            | StartupError::DataAfterSslRequest
            | StartupError::TlsNegotiation(_)
            | StartupError::Handshake(_) => SqlState::ProtocolViolation,
            StartupError::Shutdown => SqlState::AdminShutdown,
            StartupError::Io(_) => SqlState::Internal,
        }
    }

    fn is_fatal(&self) -> bool {
        true
    }

    fn reaches_client(&self) -> bool {
        !matches!(self, StartupError::Io(_) | StartupError::Handshake(_))
    }
}

/// Run the startup phase on `client` with the config in force. Errors are
/// logged here, and the client has been told when possible.
pub async fn handshake(
    client: TcpStream,
    peer: SocketAddr,
    config: &Config,
    state: &ProxyState,
    shutdown: &Shutdown,
) -> Handshake {
    let started = std::time::Instant::now();
    let _ = client.set_nodelay(true);
    let mut client = Stream::Plain(client);
    let mut buf = BytesMut::with_capacity(1024);
    let result = tokio::select! {
        r = tokio::time::timeout(config.startup_timeout, read_startup(&mut client, &mut buf, state, config)) => match r {
            Ok(r) => r,
            Err(_) => Err(StartupError::Timeout(config.startup_timeout)),
        },
        _ = shutdown.drain.cancelled() => Err(StartupError::Shutdown),
    };
    match result {
        Ok(Some(startup)) => Handshake::Startup(client, startup, buf),
        Ok(None) => Handshake::Done,
        Err(e) => {
            if let StartupError::Client(
                ProtocolError::FrameTooLarge { .. }
                | ProtocolError::FrameTooShort { .. }
                | ProtocolError::StartupLength { .. },
            ) = &e
            {
                state
                    .metrics
                    .frames_rejected
                    .fetch_add(1, Ordering::Relaxed);
            }
            farewell(&mut client, &e).await;
            match e {
                StartupError::Io(e) => {
                    tracing::debug!(client = %peer, error = %e, "session i/o error")
                }
                e => tracing::warn!(
                    client = %peer,
                    duration_ms = started.elapsed().as_millis() as u64,
                    sqlstate = e.sqlstate().code(),
                    error = %e,
                    "session ended with an error"
                ),
            }
            Handshake::Done
        }
    }
}

/// Read startup packets until a StartupMessage. `Ok(None)`: nothing more to
/// do (a cancel request was handled, or the client left).
async fn read_startup(
    client: &mut Stream,
    buf: &mut BytesMut,
    state: &ProxyState,
    config: &Config,
) -> Result<Option<StartupMessage>, StartupError> {
    let tls = config.tls.acceptor_config();
    if let (Some(tls), Stream::Plain(tcp)) = (tls, &*client) {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 1 && first[0] == TLS_HANDSHAKE_RECORD {
            accept_tls(client, tls, true, &state.metrics).await?;
        }
    }
    loop {
        match protocol::decode_startup(buf).map_err(StartupError::Client)? {
            Some(StartupPacket::SslRequest) => match tls {
                Some(tls) if !client.is_tls() => {
                    if !buf.is_empty() {
                        return Err(StartupError::DataAfterSslRequest);
                    }
                    client.write_all(b"S").await?;
                    accept_tls(client, tls, false, &state.metrics).await?;
                }
                Some(_) => {
                    return Err(StartupError::TlsNegotiation(
                        "SSL request received over an encrypted connection",
                    ));
                }
                None => client.write_all(b"N").await?,
            },
            Some(StartupPacket::GssEncRequest) => {
                // No GSSAPI: refuse, the client continues (or asks for TLS).
                client.write_all(b"N").await?;
            }
            Some(StartupPacket::CancelRequest { pid, secret, .. }) => {
                forward_cancel(pid, secret, state, config).await;
                return Ok(None);
            }
            Some(StartupPacket::Startup(_))
                if config.tls.mode == ClientTlsMode::Require && !client.is_tls() =>
            {
                state
                    .metrics
                    .refused(Refusal::TlsRequired)
                    .fetch_add(1, Ordering::Relaxed);
                return Err(StartupError::TlsRequired);
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

/// Run the server side of a TLS handshake on the plain `client`, which
/// then becomes the TLS stream. `direct`: the client opened with a
/// ClientHello (no SSLRequest), allowed only with ALPN `postgresql`.
async fn accept_tls(
    client: &mut Stream,
    tls: &std::sync::Arc<rustls::ServerConfig>,
    direct: bool,
    metrics: &Metrics,
) -> Result<(), StartupError> {
    let result = tls_handshake(client, tls, direct).await;
    let kind = match result {
        Ok(()) => TlsHandshake::ClientOk,
        Err(_) => TlsHandshake::ClientFailed,
    };
    metrics.tls_handshakes(kind).fetch_add(1, Ordering::Relaxed);
    result
}

async fn tls_handshake(
    client: &mut Stream,
    tls: &std::sync::Arc<rustls::ServerConfig>,
    direct: bool,
) -> Result<(), StartupError> {
    let Some(tcp) = client.take_plain() else {
        return Err(StartupError::TlsNegotiation("TLS requested twice"));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::clone(tls));
    let tls = acceptor
        .accept(tcp)
        .await
        .map_err(StartupError::Handshake)?;
    if direct && tls.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
        // The stream is left closed: PostgreSQL too drops such a client.
        return Err(StartupError::Handshake(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "direct TLS without the ALPN protocol `postgresql`",
        )));
    }
    *client = Stream::Tls(Box::new(tls));
    Ok(())
}

/// Send a cancel request on to the server of the session holding the key.
/// Unknown keys are dropped: the client gets no answer either way, as from
/// Postgres itself.
async fn forward_cancel(pid: i32, secret: i32, state: &ProxyState, config: &Config) {
    let m = &state.metrics;
    let (to, packet) = match state.cancel_keys.route(pid, secret) {
        // A client may hold a key of the proxy's (pooled, or carrying a
        // peer id): the server gets its own.
        CancelRoute::Upstream(target) => {
            m.cancels_forwarded.fetch_add(1, Ordering::Relaxed);
            (
                target.addr.to_string(),
                protocol::encode_cancel_request(target.key.0, target.key.1),
            )
        }
        CancelRoute::Peer { peer, secret } => match config.start.peering.address_of(peer) {
            Some(addr) => {
                m.cancels_to_peer.fetch_add(1, Ordering::Relaxed);
                (
                    addr.to_owned(),
                    protocol::encode_cancel_request(pid, secret),
                )
            }
            None => {
                m.cancels_unknown_peer.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    pid,
                    peer,
                    "cancel request for a peer not in proxy.peers dropped"
                );
                return;
            }
        },
        CancelRoute::NotOurs { peer } => {
            m.cancels_unknown_peer.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                pid,
                peer,
                "a peer forwarded a cancel request for another peer's key (the instances' proxy.peers disagree): dropped"
            );
            return;
        }
        CancelRoute::UnknownKey => {
            m.cancels_unknown.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(pid, "cancel request with an unknown key dropped");
            return;
        }
    };
    let sent = tokio::time::timeout(config.connect_timeout, async {
        // A peer's address may be a name (a Kubernetes pod's DNS name).
        let mut s = TcpStream::connect(to.as_str()).await?;
        s.write_all(&packet).await?;
        s.shutdown().await
    })
    .await;
    match sent {
        Ok(Ok(())) => tracing::debug!(pid, to = %to, "cancel request forwarded"),
        Ok(Err(e)) => {
            tracing::warn!(pid, to = %to, error = %e, "cannot forward cancel request")
        }
        Err(_) => tracing::warn!(pid, to = %to, "forwarding cancel request timed out"),
    }
}

/// A connection on the address peers forward cancel requests to (with
/// `reuse_port`, each instance's own): one CancelRequest is served,
/// anything else is closed unanswered.
pub async fn serve_forwarded_cancel(mut client: TcpStream, peer: SocketAddr, state: &ProxyState) {
    let config = state.config.load_full();
    let mut buf = BytesMut::with_capacity(16);
    let read = async {
        loop {
            match protocol::decode_startup(&mut buf) {
                Ok(Some(StartupPacket::CancelRequest { pid, secret, .. })) => {
                    return Some((pid, secret));
                }
                Ok(None) => {
                    if client.read_buf(&mut buf).await.ok()? == 0 {
                        return None;
                    }
                }
                Ok(Some(_)) | Err(_) => return None,
            }
        }
    };
    match tokio::time::timeout(config.startup_timeout, read).await {
        Ok(Some((pid, secret))) => forward_cancel(pid, secret, state, &config).await,
        _ => {
            tracing::debug!(client = %peer, "not a cancel request on the peer cancel address: closed")
        }
    }
}
