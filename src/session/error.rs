//! Why a session ended early. Each variant names the SQLSTATE the client is
//! told (when the client can still be told anything).

use crate::protocol::{ClientFacing, ProtocolError, SqlState};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client broke the protocol (bad length, unknown message, ...).
    #[error("{0}")]
    Client(ProtocolError),
    /// The upstream server broke the protocol (e.g. a frame over the cap).
    #[error("upstream server sent an invalid message: {0}")]
    Server(ProtocolError),
    #[error("cannot connect to upstream {addr}: {reason}")]
    UpstreamUnreachable {
        addr: String,
        reason: UpstreamFailure,
    },
    /// The proxy is shutting down.
    #[error("terminating connection because heal7-proxy is shutting down")]
    Shutdown,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A database name the config does not list, with
    /// `proxy.other_databases: refuse`.
    #[error("database \"{0}\" is not in the config")]
    UnknownDatabase(String),
    /// A replication connection, with `proxy.allow_replication` off.
    #[error(
        "replication connections are not allowed through heal7-proxy (proxy.allow_replication)"
    )]
    ReplicationRefused,
    /// The client asked for SCRAM with the GS2 flag `y` while the upstream
    /// link is TLS: the server would refuse it as a downgrade, and the
    /// proxy cannot offer channel binding itself.
    #[error(
        "SCRAM channel binding is not possible through heal7-proxy to a TLS upstream; connect with channel_binding=disable"
    )]
    ChannelBinding,
}

/// Why the upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no connection and answer within {} ms", .0.as_millis())]
    Timeout(std::time::Duration),
    /// The server answered the SSLRequest `N` and the mode needs TLS.
    #[error("the server does not support TLS (tls.mode {0})")]
    TlsRefused(&'static str),
    /// Neither `S` nor `N` to the SSLRequest.
    #[error("unexpected answer {0:#04x} to the SSL request")]
    TlsAnswer(u8),
    /// The handshake failed (certificate rejected, protocol mismatch).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

impl SessionError {
    /// Whether the error is a frame the proxy refused for its size or
    /// length (counted as `frames_rejected`).
    pub fn is_rejected_frame(&self) -> bool {
        matches!(
            self,
            SessionError::Client(
                ProtocolError::FrameTooLarge { .. }
                    | ProtocolError::FrameTooShort { .. }
                    | ProtocolError::StartupLength { .. },
            ) | SessionError::Server(
                ProtocolError::FrameTooLarge { .. } | ProtocolError::FrameTooShort { .. },
            )
        )
    }
}

impl ClientFacing for SessionError {
    /// The one place a session error picks its SQLSTATE.
    fn sqlstate(&self) -> SqlState {
        match self {
            SessionError::Client(_) | SessionError::ChannelBinding => SqlState::ProtocolViolation,
            SessionError::Server(_) | SessionError::UpstreamUnreachable { .. } => {
                SqlState::ConnectionFailure
            }
            SessionError::Shutdown => SqlState::AdminShutdown,
            SessionError::Io(_) => SqlState::Internal,
            SessionError::UnknownDatabase(_) => SqlState::InvalidCatalogName,
            SessionError::ReplicationRefused => SqlState::InvalidAuthorization,
        }
    }

    fn is_fatal(&self) -> bool {
        true
    }

    fn reaches_client(&self) -> bool {
        !matches!(self, SessionError::Io(_))
    }
}
