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
