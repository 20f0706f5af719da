//! The admin console (the PgBouncer habit): a client that connects through
//! the proxy port to the virtual database [`DATABASE`] talks to the proxy
//! itself, never to an upstream.
//!
//! The session runs on pgwire's server API: pgwire's codec decodes the
//! frames (after our size bound), `process_message` drives its connection
//! state machine, and our handlers answer. Login: only `proxy.admin_users`,
//! by SCRAM-SHA-256 against the stored verifier ([`auth`]). Then the simple
//! and the extended query protocol ([`queries`]), one command per statement
//! ([`command`]), each answered as a normal result set ([`report`]) so psql
//! prints a table.
//!
//! Owns: the session loop (timeouts, drain, frame bounds, SHOW CLIENTS
//! bookkeeping). Must not touch the relay: a console session never reaches
//! it, and the relay keeps its own hand codec.

mod auth;
pub mod command;
mod error;
mod queries;
mod redis_report;
pub mod report;
mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI32;

use crate::stream::Stream;
use bytes::BytesMut;
use futures_util::SinkExt;
use pgwire::api::{ClientInfo as _, DefaultClient, NoopHandler, PgWireConnectionState};
use pgwire::error::PgWireError;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::io::AsyncReadExt;
use tokio_util::codec::{Decoder, Framed};

use crate::auth::scram::ScramError;
use crate::clients::{ClientIdentity, ClientInfo, ClientState};
use crate::farewell::{FAREWELL_TIMEOUT, farewell};
use crate::protocol::{ClientFacing, ProtocolError, StartupMessage};
use crate::shutdown::Shutdown;
use crate::state::ProxyState;
use auth::ScramLogin;
use command::Command;
pub use error::ConsoleError;
use queries::ConsoleQueries;
use throttle::LoginThrottle;

/// Console frames are commands, not data: cap them well below the proxy's
/// (pgwire's own cap for Query, Parse and Bind is 1 GiB).
const MAX_FRAME: usize = 1 << 20;
/// Before login a client may only send small SASL messages; an
/// unauthenticated peer must not make the proxy buffer a megabyte.
const MAX_AUTH_FRAME: usize = crate::protocol::MAX_STARTUP_PACKET;

/// State the console keeps across sessions. The mock salt of unknown users
/// is keyed by the config (`Config::console_mock_secret`), not kept here,
/// so it is the same after a restart.
#[derive(Debug)]
pub struct ConsoleState {
    /// BackendKeyData pids: the console has no backend, but clients expect
    /// one; cancel requests for these keys are simply unknown.
    next_pid: AtomicI32,
    /// Failed logins per client address, to answer them progressively later.
    logins: LoginThrottle,
}

impl Default for ConsoleState {
    fn default() -> Self {
        ConsoleState {
            next_pid: AtomicI32::new(1),
            logins: LoginThrottle::default(),
        }
    }
}

/// Serve one console client after its StartupMessage. `buf` holds whatever
/// the client sent after it. Errors are logged here.
pub async fn serve(
    client: Stream,
    buf: BytesMut,
    startup: StartupMessage,
    peer: SocketAddr,
    state: &ProxyState,
    console: &ConsoleState,
    shutdown: &Shutdown,
) {
    let user = startup.get_str("user").unwrap_or_default().into_owned();
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(peer, false));
    let mut conn = Conn {
        socket: Framed::new(client, codec),
        buf,
    };
    conn.socket
        .set_state(PgWireConnectionState::AwaitingStartup);
    let result = run(&mut conn, &startup, &user, peer, state, console, shutdown).await;
    match result {
        Ok(()) => tracing::info!(client = %peer, user = %user, "console session closed"),
        Err(e) => {
            if e.is_fatal() {
                conn.goodbye(&e).await;
            }
            match e {
                ConsoleError::AuthFailed(_) | ConsoleError::Scram(_) => tracing::warn!(
                    client = %peer,
                    user = %user,
                    error = %e,
                    "console login refused"
                ),
                ConsoleError::Io(_) => {
                    tracing::debug!(client = %peer, error = %e, "console i/o error")
                }
                _ => tracing::warn!(client = %peer, error = %e, "console session ended"),
            }
        }
    }
}

/// pgwire's framed socket (its codec and connection state; we read, it
/// writes) and our read buffer.
type Socket = Framed<Stream, PgWireMessageServerCodec<Command>>;

/// The handlers pgwire calls, for one session.
struct Handlers<'a> {
    login: Arc<ScramLogin<'a>>,
    queries: Arc<ConsoleQueries<'a>>,
    /// COPY and CancelRequest never reach a console session.
    none: Arc<NoopHandler>,
}

struct Conn {
    socket: Socket,
    /// Read here rather than in `Framed`, so the size bound is checked on
    /// the header before pgwire's codec waits for (and buffers) the body.
    buf: BytesMut,
}

impl Conn {
    /// The next message, its frame at most `max` bytes; `None` when the
    /// client closed.
    async fn next_message(
        &mut self,
        max: usize,
    ) -> Result<Option<PgWireFrontendMessage>, ConsoleError> {
        loop {
            if let Some(header) = self.buf.get(..5) {
                let tag = header[0];
                let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                if len < 4 {
                    let len = len as i32;
                    return Err(ConsoleError::Protocol(ProtocolError::FrameTooShort {
                        tag,
                        len,
                    }));
                }
                let len = len as usize + 1;
                if len > max {
                    return Err(ConsoleError::Protocol(ProtocolError::FrameTooLarge {
                        tag,
                        len,
                        max,
                    }));
                }
            }
            // Some of pgwire's decoders trust lengths inside the body and
            // panic on a short one (Bind's parameter values): a malformed
            // frame ends this session, not the task with a panic.
            let codec = self.socket.codec_mut();
            let buf = &mut self.buf;
            let decoded =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| codec.decode(buf)))
                    .map_err(|_| {
                        ConsoleError::Protocol(ProtocolError::Malformed {
                            what: "console frontend",
                        })
                    })?;
            if let Some(message) = decoded.map_err(ConsoleError::Decode)? {
                return Ok(Some(message));
            }
            self.buf.reserve(4096);
            if self.socket.get_mut().read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Hand one message to pgwire, which calls the handler its connection
    /// state says.
    async fn dispatch(
        &mut self,
        message: PgWireFrontendMessage,
        handlers: &Handlers<'_>,
    ) -> Result<(), ConsoleError> {
        process_message(
            message,
            &mut self.socket,
            Arc::clone(&handlers.login),
            Arc::clone(&handlers.queries),
            Arc::clone(&handlers.queries),
            Arc::clone(&handlers.none),
            Arc::clone(&handlers.none),
        )
        .await
        .map_err(ConsoleError::from_pgwire)
    }

    /// The login: pgwire's startup state machine, fed the StartupMessage
    /// our startup phase already read, then SASL messages until
    /// ReadyForQuery.
    async fn log_in(
        &mut self,
        startup: &StartupMessage,
        handlers: &Handlers<'_>,
    ) -> Result<(), ConsoleError> {
        let startup = auth::pgwire_startup(startup);
        self.dispatch(PgWireFrontendMessage::Startup(startup), handlers)
            .await?;
        while matches!(
            self.socket.state(),
            PgWireConnectionState::AuthenticationInProgress
        ) {
            let Some(message) = self.next_message(MAX_AUTH_FRAME).await? else {
                return Err(ConsoleError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            };
            self.dispatch(message, handlers).await?;
        }
        Ok(())
    }

    /// Tell the client why the session ends, after what pgwire still holds.
    async fn goodbye(&mut self, e: &ConsoleError) {
        if e.reaches_client() {
            let _ = tokio::time::timeout(FAREWELL_TIMEOUT, self.socket.flush()).await;
        }
        farewell(self.socket.get_mut(), e).await;
    }
}

async fn run(
    conn: &mut Conn,
    startup: &StartupMessage,
    user: &str,
    peer: SocketAddr,
    state: &ProxyState,
    console: &ConsoleState,
    shutdown: &Shutdown,
) -> Result<(), ConsoleError> {
    let handlers = Handlers {
        login: Arc::new(ScramLogin::new(state, console, user)),
        queries: Arc::new(ConsoleQueries::new(state, user)),
        none: Arc::new(NoopHandler),
    };
    let limit = state.config.load().startup_timeout;
    tokio::select! {
        r = tokio::time::timeout(limit, conn.log_in(startup, &handlers)) => match r {
            Ok(Ok(())) => console.logins.succeeded(peer.ip()),
            Ok(Err(e)) => {
                // Only a password that was checked counts: a malformed
                // exchange tests nothing. The wait comes before the answer.
                if matches!(e, ConsoleError::AuthFailed(_) | ConsoleError::Scram(ScramError::Failed)) {
                    let delay = console.logins.failed(peer.ip(), std::time::Instant::now());
                    tokio::time::sleep(delay).await;
                }
                return Err(e);
            }
            Err(_) => return Err(ConsoleError::AuthTimeout(limit)),
        },
        () = shutdown.drain.cancelled() => return Err(ConsoleError::Shutdown),
    }
    let registered = state.clients.register(ClientInfo {
        address: peer,
        identity: ClientIdentity::of(startup),
    });
    tracing::info!(client = %peer, user = %user, "console login");
    let me = registered.entry();
    me.set_state(ClientState::Idle);

    loop {
        let message = tokio::select! {
            m = conn.next_message(MAX_FRAME) => m?,
            () = shutdown.drain.cancelled() => return Err(ConsoleError::Shutdown),
        };
        let Some(message) = message else {
            return Ok(());
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        // After an extended-protocol error pgwire skips to Sync, as a
        // server does.
        let extended = message.is_extended_query();
        if matches!(
            message,
            PgWireFrontendMessage::Query(_) | PgWireFrontendMessage::Parse(_)
        ) {
            me.count_statement();
        }
        let runs = matches!(
            message,
            PgWireFrontendMessage::Query(_) | PgWireFrontendMessage::Execute(_)
        );
        if runs {
            me.set_state(ClientState::Active);
        }
        let result = conn.dispatch(message, &handlers).await;
        if runs {
            me.set_state(ClientState::Idle);
        }
        match result {
            Ok(()) => {}
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                let error = PgWireError::UserError(Box::new(e.error_info()));
                process_error(&mut conn.socket, error, extended).await?;
            }
        }
    }
}
