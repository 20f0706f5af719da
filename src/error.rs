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
    /// 42601 syntax_error: an unknown admin console command.
    SyntaxError,
    /// F0000 config_file_error: a reload refused the config file.
    ConfigFileError,
    /// 3D000 invalid_catalog_name: a database the config does not know.
    InvalidCatalogName,
    /// 22021 character_not_in_repertoire: a console command not in UTF-8.
    CharacterNotInRepertoire,
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
            SqlState::SyntaxError => "42601",
            SqlState::ConfigFileError => "F0000",
            SqlState::InvalidCatalogName => "3D000",
            SqlState::CharacterNotInRepertoire => "22021",
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

/// Errors of the admin console. `Fatal` ones end the console session; the
/// others answer one command and the session stays usable.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Wrong password, unknown user, or a user not in `proxy.admin_users`:
    /// one message for all, so the console does not reveal who exists.
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    #[error("{0}")]
    Scram(crate::console::scram::ScramError),
    #[error("{0}")]
    Protocol(ProtocolError),
    #[error("expected {expected}, got a message of type '{}'", char::from(*.tag))]
    UnexpectedMessage { expected: &'static str, tag: u8 },
    #[error("authentication did not finish within {0:?}")]
    AuthTimeout(Duration),
    #[error("terminating connection because heal7-proxy is shutting down")]
    Shutdown,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown command `{0}`; the console knows: {help}", help = crate::console::command::HELP)]
    UnknownCommand(String),
    #[error("extended protocol not supported on the admin console")]
    ExtendedProtocol,
    #[error("console commands must be UTF-8")]
    NotUtf8,
    #[error("database \"{0}\" is not in the config")]
    UnknownDatabase(String),
    /// The config error, with its file position when there is one.
    #[error("reload refused, the old mapping stays: {0}")]
    Reload(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConsoleError {
    /// The one place a console error picks its SQLSTATE.
    pub fn sqlstate(&self) -> SqlState {
        use crate::console::scram::ScramError;
        match self {
            ConsoleError::AuthFailed(_) | ConsoleError::Scram(ScramError::Failed) => {
                SqlState::InvalidPassword
            }
            ConsoleError::Scram(_)
            | ConsoleError::Protocol(_)
            | ConsoleError::UnexpectedMessage { .. }
            | ConsoleError::AuthTimeout(_) => SqlState::ProtocolViolation,
            ConsoleError::Shutdown => SqlState::AdminShutdown,
            ConsoleError::Io(_) | ConsoleError::Internal(_) => SqlState::Internal,
            ConsoleError::UnknownCommand(_) => SqlState::SyntaxError,
            ConsoleError::ExtendedProtocol => SqlState::FeatureNotSupported,
            ConsoleError::NotUtf8 => SqlState::CharacterNotInRepertoire,
            ConsoleError::UnknownDatabase(_) => SqlState::InvalidCatalogName,
            ConsoleError::Reload(_) => SqlState::ConfigFileError,
        }
    }

    /// Whether the session ends with this error (FATAL) or goes on (ERROR).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConsoleError::AuthFailed(_)
                | ConsoleError::Scram(_)
                | ConsoleError::Protocol(_)
                | ConsoleError::UnexpectedMessage { .. }
                | ConsoleError::AuthTimeout(_)
                | ConsoleError::Shutdown
                | ConsoleError::Io(_)
        )
    }
}
