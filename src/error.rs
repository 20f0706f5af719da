//! Errors of each layer and the SQLSTATE a client sees for each.
//!
//! Every error that reaches a client becomes an ErrorResponse; the mapping
//! lives in one place ([`SqlState`]) so a new variant must pick a code.

/// The SQLSTATE codes the proxy itself answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// 08P01 protocol_violation: a malformed or oversized frame.
    ProtocolViolation,
    /// 08006 connection_failure: the upstream cannot be reached.
    ConnectionFailure,
    /// 0A000 feature_not_supported: a statement the policy refuses.
    FeatureNotSupported,
    /// 57P01 admin_shutdown: the proxy is shutting down.
    AdminShutdown,
    /// 53300 too_many_connections.
    TooManyConnections,
    /// 08004 sqlserver_rejected_establishment_of_sqlconnection.
    RejectedConnection,
    /// 28P01 invalid_password.
    InvalidPassword,
    /// XX000 internal_error.
    Internal,
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::ProtocolViolation => "08P01",
            SqlState::ConnectionFailure => "08006",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::AdminShutdown => "57P01",
            SqlState::TooManyConnections => "53300",
            SqlState::RejectedConnection => "08004",
            SqlState::InvalidPassword => "28P01",
            SqlState::Internal => "XX000",
        }
    }
}

use std::time::Duration;

use crate::protocol::ProtocolError;

/// Why a session ended early. Each variant names the SQLSTATE the client
/// is told (when the client can still be told anything).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client broke the protocol (bad length, unknown startup code, ...).
    #[error("{0}")]
    Client(ProtocolError),
    /// The upstream server broke the protocol (e.g. a frame over the cap).
    #[error("upstream server sent an invalid message: {0}")]
    Server(ProtocolError),
    #[error("no startup packet received within {0:?}")]
    StartupTimeout(Duration),
    #[error("cannot connect to upstream {addr}: {reason}")]
    UpstreamUnreachable { addr: String, reason: String },
    /// The proxy is shutting down.
    #[error("terminating connection because heal7-proxy is shutting down")]
    Shutdown,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl SessionError {
    /// The one place a session error picks its SQLSTATE.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            SessionError::Client(_) | SessionError::StartupTimeout(_) => {
                SqlState::ProtocolViolation
            }
            SessionError::Server(_) | SessionError::UpstreamUnreachable { .. } => {
                SqlState::ConnectionFailure
            }
            SessionError::Shutdown => SqlState::AdminShutdown,
            SessionError::Io(_) => SqlState::Internal,
        }
    }

    /// Whether telling the client makes sense (a broken socket cannot hear).
    pub fn reaches_client(&self) -> bool {
        !matches!(self, SessionError::Io(_))
    }
}
