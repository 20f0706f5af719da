//! Errors of the admin console. Fatal ones end the console session; the
//! others answer one command and the session stays usable.

use std::time::Duration;

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
    #[error("unknown command `{0}`; the console knows: {help}", help = super::command::HELP)]
    UnknownCommand(String),
    #[error("extended protocol not supported on the admin console")]
    ExtendedProtocol,
    #[error("console commands must be UTF-8")]
    NotUtf8,
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

    fn is_fatal(&self) -> bool {
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

    fn reaches_client(&self) -> bool {
        !matches!(self, ConsoleError::Io(_))
    }
}
