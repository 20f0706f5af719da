//! Why a session ended early. Each variant names the SQLSTATE the client is
//! told (when the client can still be told anything).

use crate::pool::PoolError;
use crate::protocol::{ClientFacing, ProtocolError, SqlState};
use crate::upstream::UpstreamFailure;

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
    /// A StartupMessage without a user, on a pooled database.
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
    /// The pool's `max_client_connections` is reached.
    #[error("too many clients in pool {database}/{user} (pool.max_client_connections {limit})")]
    PoolClients {
        database: String,
        user: String,
        limit: usize,
    },
    /// Wrong password, or no such user (the same answer on purpose, as
    /// PostgreSQL gives).
    #[error("password authentication failed for user \"{user}\"")]
    AuthFailed { user: String },
    /// The client's SCRAM messages do not follow the protocol.
    #[error("{0}")]
    Scram(crate::auth::scram::ScramError),
    /// auth_query could not run (the auth user cannot log in, the query
    /// fails).
    #[error("cannot look up the user's password (pool.auth_user / auth_query): {0}")]
    AuthQuery(PoolError),
    /// No server connection for the client.
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// Transaction pooling: the server refused a BEGIN the proxy had
    /// already answered (`DeferredBegin`); the client gets the server's
    /// ErrorResponse, and the session ends.
    #[error("the server refused the transaction's BEGIN, which heal7-proxy had answered")]
    BeginFailed(bytes::BytesMut),
    /// A startup `options` value other than `-c name=value` pairs.
    #[error("unsupported startup options for a pooled database: {0} (only -c name=value)")]
    UnsupportedOption(String),
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
            SessionError::ReplicationRefused | SessionError::NoUser => {
                SqlState::InvalidAuthorization
            }
            SessionError::PoolClients { .. } => SqlState::TooManyConnections,
            SessionError::AuthFailed { .. } => SqlState::InvalidPassword,
            SessionError::Scram(_) | SessionError::UnsupportedOption(_) => {
                SqlState::ProtocolViolation
            }
            SessionError::AuthQuery(_) => SqlState::ConnectionFailure,
            // Only if its frame could not be sent as it came.
            SessionError::BeginFailed(_) => SqlState::Internal,
            SessionError::Pool(e) => e.sqlstate(),
        }
    }

    fn is_fatal(&self) -> bool {
        true
    }

    fn reaches_client(&self) -> bool {
        !matches!(self, SessionError::Io(_))
    }

    fn server_frame(&self) -> Option<&[u8]> {
        match self {
            SessionError::Pool(e) => e.server_frame(),
            SessionError::BeginFailed(frame) => Some(frame),
            _ => None,
        }
    }
}
