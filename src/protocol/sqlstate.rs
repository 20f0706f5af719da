//! The SQLSTATE codes the proxy answers with, and the one trait every
//! layer's client-facing error implements, so a new error variant must pick
//! a code and say whether it ends the session.

use bytes::BytesMut;

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
    /// 28P01 invalid_password.
    InvalidPassword,
    /// XX000 internal_error.
    Internal,
    /// 42601 syntax_error: an unknown admin console command.
    SyntaxError,
    /// F0000 config_file_error: a reload refused the config file.
    ConfigFileError,
    /// 3D000 invalid_catalog_name: a database the config does not know.
    InvalidCatalogName,
    /// 26000 invalid_sql_statement_name: Bind or Describe of a statement
    /// the console never prepared.
    InvalidStatementName,
    /// 34000 invalid_cursor_name: Execute or Describe of an unknown portal.
    InvalidCursorName,
    /// 28000 invalid_authorization_specification: a connection the config
    /// does not allow (replication).
    InvalidAuthorization,
    /// 53300 too_many_connections: over `proxy.max_client_connections`.
    TooManyConnections,
    /// 42P05 duplicate_prepared_statement: a Parse under a name in use
    /// (transaction pooling, where the proxy keeps the client's names).
    DuplicatePreparedStatement,
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::ProtocolViolation => "08P01",
            SqlState::ConnectionFailure => "08006",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::AdminShutdown => "57P01",
            SqlState::InvalidPassword => "28P01",
            SqlState::Internal => "XX000",
            SqlState::SyntaxError => "42601",
            SqlState::ConfigFileError => "F0000",
            SqlState::InvalidCatalogName => "3D000",
            SqlState::InvalidStatementName => "26000",
            SqlState::InvalidCursorName => "34000",
            SqlState::InvalidAuthorization => "28000",
            SqlState::TooManyConnections => "53300",
            SqlState::DuplicatePreparedStatement => "42P05",
        }
    }
}

/// An error a client can be told about: each layer's error implements it,
/// and [`encode_client_error`] is the one place that turns it into bytes.
pub trait ClientFacing: std::error::Error {
    /// The SQLSTATE the client sees.
    fn sqlstate(&self) -> SqlState;
    /// Whether the session ends with this error (FATAL) or goes on (ERROR).
    fn is_fatal(&self) -> bool;
    /// Whether telling the client makes sense (a broken socket cannot hear).
    fn reaches_client(&self) -> bool {
        true
    }
    /// A server's own ErrorResponse frame to relay as it came (SQLSTATE and
    /// all) instead of the proxy's words; e.g. a pool's login refused.
    fn server_frame(&self) -> Option<&[u8]> {
        None
    }
}

/// The ErrorResponse for `error`: FATAL or ERROR as the error says.
pub fn encode_client_error(out: &mut BytesMut, error: &dyn ClientFacing) {
    if let Some(frame) = error.server_frame() {
        out.extend_from_slice(frame);
        return;
    }
    let severity = if error.is_fatal() { "FATAL" } else { "ERROR" };
    super::encode_error_response(out, severity, error.sqlstate().code(), &error.to_string());
}
