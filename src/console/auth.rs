//! Console login as a pgwire [`StartupHandler`]: SCRAM-SHA-256 against the
//! stored verifiers of `proxy.admin_users`, run by our pure
//! [`crate::auth::scram`]. pgwire's own SCRAM (`api/auth/sasl`) needs a TLS
//! crypto backend and wants salted passwords; the console only has
//! StoredKey/ServerKey verifiers, and no TLS.
//!
//! pgwire drives the state machine (AwaitingStartup, then
//! AuthenticationInProgress until ReadyForQuery) and writes the messages;
//! this handler decides what each step answers.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt};
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily, SecretKey, Startup};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{ConsoleError, ConsoleState, report};
use crate::auth::scram::{self, ScramServer, Verifier};
use crate::protocol::StartupMessage;
use crate::protocol::sasl::parse_sasl_initial;
use crate::state::ProxyState;

/// Where one console login stands.
enum Step {
    /// Waiting for the StartupMessage (already read by the startup phase).
    Start,
    /// AuthenticationSASL sent; the client-first-message comes next.
    Offered { verifier: Verifier, known: bool },
    /// server-first-message sent; the client-final-message comes next.
    Challenged { server: ScramServer, known: bool },
    /// Logged in, or failed: nothing more to answer.
    Done,
}

/// One connection's login. pgwire calls it once per message while the
/// connection authenticates; the step in between lives here.
pub(super) struct ScramLogin<'a> {
    state: &'a ProxyState,
    console: &'a ConsoleState,
    user: &'a str,
    step: Mutex<Step>,
}

impl<'a> ScramLogin<'a> {
    pub(super) fn new(state: &'a ProxyState, console: &'a ConsoleState, user: &'a str) -> Self {
        ScramLogin {
            state,
            console,
            user,
            step: Mutex::new(Step::Start),
        }
    }

    fn take_step(&self) -> Step {
        let mut step = self.step.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *step, Step::Done)
    }

    fn set_step(&self, next: Step) {
        *self.step.lock().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// Answer one message; the next step, or why the login fails.
    async fn answer<C>(
        &self,
        client: &mut C,
        step: Step,
        message: PgWireFrontendMessage,
    ) -> Result<Step, ConsoleError>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<C::Error>,
    {
        match (step, message) {
            (Step::Start, PgWireFrontendMessage::Startup(startup)) => {
                protocol_negotiation(client, &startup)
                    .await
                    .map_err(ConsoleError::from_pgwire)?;
                save_startup_parameters_to_metadata(client, &startup);
                // An unknown user runs the whole exchange against a mock
                // verifier and fails like a wrong password: no enumeration.
                let config = self.state.config.load();
                let known = config.admin_users.get(self.user).cloned();
                let verifier = match &known {
                    Some(v) => v.clone(),
                    None => Verifier::mock(self.user, &config.console_mock_secret.0),
                };
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                send(
                    client,
                    Authentication::SASL(vec![scram::MECHANISM.to_owned()]),
                )
                .await?;
                Ok(Step::Offered {
                    verifier,
                    known: known.is_some(),
                })
            }
            (
                Step::Offered { verifier, known },
                PgWireFrontendMessage::PasswordMessageFamily(p),
            ) => {
                let body = raw_body(p)?;
                let (mechanism, client_first) =
                    parse_sasl_initial(&body).map_err(ConsoleError::Protocol)?;
                if mechanism != scram::MECHANISM {
                    return Err(ConsoleError::Scram(scram::ScramError::Malformed(
                        "the client chose a mechanism that was not offered",
                    )));
                }
                let (server, server_first) =
                    ScramServer::start(verifier, client_first).map_err(ConsoleError::Scram)?;
                send(
                    client,
                    Authentication::SASLContinue(Bytes::from(server_first)),
                )
                .await?;
                Ok(Step::Challenged { server, known })
            }
            (
                Step::Challenged { server, known },
                PgWireFrontendMessage::PasswordMessageFamily(p),
            ) => {
                let body = raw_body(p)?;
                let server_final = match server.finish(&body) {
                    Ok(v) if known => v,
                    Ok(_) | Err(scram::ScramError::Failed) => {
                        return Err(ConsoleError::AuthFailed(self.user.to_owned()));
                    }
                    Err(e) => return Err(ConsoleError::Scram(e)),
                };
                client
                    .feed(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(Bytes::from(server_final)),
                    ))
                    .await
                    .map_err(sink_error)?;
                // The console has no backend, but clients expect a key;
                // cancel requests for it are simply unknown.
                let pid = self.console.next_pid.fetch_add(1, Ordering::Relaxed);
                client.set_pid_and_secret_key(pid, SecretKey::I32(rand::random()));
                // AuthenticationOk, ParameterStatus, BackendKeyData,
                // ReadyForQuery; the state becomes ReadyForQuery.
                finish_authentication(client, &ConsoleParameters)
                    .await
                    .map_err(ConsoleError::from_pgwire)?;
                Ok(Step::Done)
            }
            (_, other) => Err(ConsoleError::UnexpectedMessage {
                expected: "a SASL response",
                got: message_name(&other),
            }),
        }
    }
}

#[async_trait]
impl StartupHandler for ScramLogin<'_> {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let step = self.take_step();
        let next = self
            .answer(client, step, message)
            .await
            .map_err(ConsoleError::into_pgwire)?;
        self.set_step(next);
        Ok(())
    }
}

/// The startup phase's StartupMessage as pgwire's type, so pgwire's startup
/// handling sees exactly what our phase read (nothing is read twice).
pub(super) fn pgwire_startup(startup: &StartupMessage) -> Startup {
    let mut message = Startup::new();
    message.protocol_number_major = (startup.version >> 16) as u16;
    message.protocol_number_minor = (startup.version & 0xffff) as u16;
    message.parameters = startup
        .params
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    message
}

/// The ParameterStatus values a console session starts with.
struct ConsoleParameters;

impl ServerParameterProvider for ConsoleParameters {
    fn server_parameters<C: ClientInfo>(&self, _client: &C) -> Option<HashMap<String, String>> {
        let server_version = format!("15.0 ({})", report::VERSION);
        Some(
            [
                ("server_version", server_version.as_str()),
                ("server_encoding", "UTF8"),
                ("client_encoding", "UTF8"),
                ("standard_conforming_strings", "on"),
                ("DateStyle", "ISO, MDY"),
                ("integer_datetimes", "on"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        )
    }
}

async fn send<C>(client: &mut C, message: Authentication) -> Result<(), ConsoleError>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<C::Error>,
{
    client
        .send(PgWireBackendMessage::Authentication(message))
        .await
        .map_err(sink_error)
}

fn sink_error<E>(e: E) -> ConsoleError
where
    PgWireError: From<E>,
{
    ConsoleError::from_pgwire(PgWireError::from(e))
}

/// A 'p' message's body. pgwire hands them over undecoded, since only the
/// authentication step knows which of the family it is.
fn raw_body(message: PasswordMessageFamily) -> Result<BytesMut, ConsoleError> {
    match message {
        PasswordMessageFamily::Raw(body) => Ok(body),
        _ => Err(ConsoleError::UnexpectedMessage {
            expected: "a SASL response",
            got: "an already decoded password message",
        }),
    }
}

/// What a client sent instead of a SASL response, for the error message.
fn message_name(message: &PgWireFrontendMessage) -> &'static str {
    match message {
        PgWireFrontendMessage::Startup(_) => "a second StartupMessage",
        PgWireFrontendMessage::PasswordMessageFamily(_) => "a password message out of turn",
        PgWireFrontendMessage::Query(_) => "a Query",
        PgWireFrontendMessage::Terminate(_) => "a Terminate",
        m if m.is_extended_query() => "an extended-protocol message",
        _ => "another message",
    }
}
