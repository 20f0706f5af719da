//! Errors of the admin console. Fatal ones end the console session; the
//! others answer one command and the session stays usable.
//!
//! pgwire carries them as `PgWireError::ApiError` (see [`ConsoleError::into_pgwire`])
//! so the session loop gets the `ConsoleError` back and picks the SQLSTATE here,
//! never in pgwire.

use std::time::Duration;

use pgwire::error::{ErrorInfo, PgWireError};

use crate::auth::scram::ScramError;
use crate::config::ConfigError;
use crate::protocol::{ClientFacing, ProtocolError, SqlState};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Wrong password, unknown user, or a user not in `proxy.admin_users`:
    /// one message for all, so the console does not reveal who exists.
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    #[error("{0}")]
    Scram(ScramError),
    /// Bytes that do not frame (our size bounds, checked before pgwire decodes).
    #[error("{0}")]
    Protocol(ProtocolError),
    /// A frame pgwire's codec could not decode.
    #[error("{0}")]
    Decode(PgWireError),
    #[error("expected {expected}, got {got}")]
    UnexpectedMessage {
        expected: &'static str,
        got: &'static str,
    },
    #[error("authentication did not finish within {0:?}")]
    AuthTimeout(Duration),
    #[error("terminating connection because heal7-proxy is shutting down")]
    Shutdown,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown command `{0}`; the console knows: {help}", help = super::command::HELP)]
    UnknownCommand(String),
    /// Console commands have no placeholders: a Bind with values is refused.
    #[error("console commands take no parameters (got {0})")]
    Parameters(usize),
    /// An extended-protocol step pgwire refused (unknown statement or
    /// portal, a second Execute of a finished portal, ...).
    #[error("{0}")]
    Extended(PgWireError),
    #[error("database \"{0}\" is not in the config")]
    UnknownDatabase(String),
    /// The config error, with its file position when there is one.
    #[error("reload refused, the old mapping stays: {0}")]
    Reload(#[source] ConfigError),
    /// The reload task itself failed (it panicked or was cancelled).
    #[error("internal error: {0}")]
    Internal(#[from] tokio::task::JoinError),
}

impl ClientFacing for ConsoleError {
    /// The one place a console error picks its SQLSTATE.
    fn sqlstate(&self) -> SqlState {
        match self {
            ConsoleError::AuthFailed(_) | ConsoleError::Scram(ScramError::Failed) => {
                SqlState::InvalidPassword
            }
            ConsoleError::Scram(_)
            | ConsoleError::Protocol(_)
            | ConsoleError::Decode(_)
            | ConsoleError::UnexpectedMessage { .. }
            | ConsoleError::AuthTimeout(_) => SqlState::ProtocolViolation,
            ConsoleError::Extended(PgWireError::StatementNotFound(_)) => {
                SqlState::InvalidStatementName
            }
            ConsoleError::Extended(PgWireError::PortalNotFound(_)) => SqlState::InvalidCursorName,
            ConsoleError::Extended(_) => SqlState::ProtocolViolation,
            ConsoleError::Shutdown => SqlState::AdminShutdown,
            ConsoleError::Io(_) | ConsoleError::Internal(_) => SqlState::Internal,
            ConsoleError::UnknownCommand(_) => SqlState::SyntaxError,
            ConsoleError::Parameters(_) => SqlState::FeatureNotSupported,
            ConsoleError::UnknownDatabase(_) => SqlState::InvalidCatalogName,
            ConsoleError::Reload(_) => SqlState::ConfigFileError,
        }
    }

    fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConsoleError::AuthFailed(_)
                | ConsoleError::Scram(_)
                | ConsoleError::Protocol(_)
                | ConsoleError::Decode(_)
                | ConsoleError::UnexpectedMessage { .. }
                | ConsoleError::AuthTimeout(_)
                | ConsoleError::Shutdown
                | ConsoleError::Io(_)
        )
    }

    fn reaches_client(&self) -> bool {
        !matches!(self, ConsoleError::Io(_))
    }
}

impl ConsoleError {
    /// How a handler hands this error to pgwire: boxed whole, so the session
    /// loop can take it back out ([`ConsoleError::from_pgwire`]).
    pub fn into_pgwire(self) -> PgWireError {
        PgWireError::ApiError(Box::new(self))
    }

    /// The console error behind what pgwire's `process_message` returned:
    /// ours unboxed, pgwire's own (socket, extended-protocol bookkeeping)
    /// wrapped.
    pub fn from_pgwire(e: PgWireError) -> ConsoleError {
        match e {
            PgWireError::ApiError(boxed) => match boxed.downcast::<ConsoleError>() {
                Ok(ours) => *ours,
                Err(other) => ConsoleError::Extended(PgWireError::ApiError(other)),
            },
            PgWireError::IoError(io) => ConsoleError::Io(io),
            other => ConsoleError::Extended(other),
        }
    }

    /// The ErrorResponse fields pgwire writes for this error.
    pub fn error_info(&self) -> ErrorInfo {
        let severity = if self.is_fatal() { "FATAL" } else { "ERROR" };
        ErrorInfo::new(
            severity.to_owned(),
            self.sqlstate().code().to_owned(),
            self.to_string(),
        )
    }
}
