//! The admin console (the PgBouncer habit): a client that connects through
//! the proxy port to the virtual database [`DATABASE`] talks to the proxy
//! itself, never to an upstream.
//!
//! Login: only `proxy.admin_users`, by SCRAM-SHA-256 against the stored
//! verifier ([`scram`]). Then the simple Query protocol only, one command
//! per Query ([`command`]), each answered as a normal result set
//! ([`report`]) so psql prints a table.
//!
//! Owns: its own small codec ([`wire`]) and the session loop. Must not touch
//! the relay: a console session never reaches it.

pub mod command;
mod error;
pub mod report;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::scram::{self, ScramServer, Verifier};
use crate::clients::{ClientInfo, ClientState};
use crate::config::CONSOLE_DATABASE as DATABASE;
use crate::farewell::farewell;
use crate::protocol::console as wire;
use crate::protocol::{self, ClientFacing, Frame, QueryView, StartupMessage, tag};
use crate::shutdown::Shutdown;
use crate::state::ProxyState;
use command::Command;
pub use error::ConsoleError;

/// Console frames are commands, not data: cap them well below the proxy's.
const MAX_FRAME: usize = 1 << 20;
/// Before login a client may only send small SASL messages; an
/// unauthenticated peer must not make the proxy buffer a megabyte.
const MAX_AUTH_FRAME: usize = crate::protocol::MAX_STARTUP_PACKET;

/// State the console keeps across sessions.
#[derive(Debug)]
pub struct ConsoleState {
    /// Keys the mock salt of unknown users, so their salt looks as stable
    /// as a real user's without being guessable.
    mock_secret: [u8; 32],
    /// BackendKeyData pids: the console has no backend, but clients expect
    /// one; cancel requests for these keys are simply unknown.
    next_pid: AtomicI32,
}

impl Default for ConsoleState {
    fn default() -> Self {
        use rand::Rng;
        let mut mock_secret = [0u8; 32];
        rand::rng().fill_bytes(&mut mock_secret);
        ConsoleState {
            mock_secret,
            next_pid: AtomicI32::new(1),
        }
    }
}

/// Serve one console client after its StartupMessage. `buf` holds whatever
/// the client sent after it. Errors are logged here.
pub async fn serve(
    client: TcpStream,
    buf: BytesMut,
    startup: StartupMessage,
    peer: SocketAddr,
    state: &ProxyState,
    console: &ConsoleState,
    shutdown: &Shutdown,
) {
    let user = startup.get_str("user").unwrap_or_default().into_owned();
    let mut conn = Conn {
        stream: client,
        buf,
    };
    let result = run(&mut conn, &startup, &user, peer, state, console, shutdown).await;
    match result {
        Ok(()) => tracing::info!(client = %peer, user = %user, "console session closed"),
        Err(e) => {
            if e.is_fatal() {
                farewell(&mut conn.stream, &e).await;
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

/// The client socket and its read buffer.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// The next whole frame of at most `max` bytes; `None` when the
    /// client closed.
    async fn read_frame(&mut self, max: usize) -> Result<Option<Frame>, ConsoleError> {
        loop {
            if let Some(f) = Frame::decode(&mut self.buf, max).map_err(ConsoleError::Protocol)? {
                return Ok(Some(f));
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn expect_sasl(&mut self) -> Result<Frame, ConsoleError> {
        match self.read_frame(MAX_AUTH_FRAME).await? {
            Some(f) if f.tag == b'p' => Ok(f),
            Some(f) => Err(ConsoleError::UnexpectedMessage {
                expected: "a SASL response",
                tag: f.tag,
            }),
            None => Err(ConsoleError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        }
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
    let limit = state.config.load().startup_timeout;
    tokio::select! {
        r = tokio::time::timeout(limit, authenticate(conn, user, state, console)) => match r {
            Ok(r) => r?,
            Err(_) => return Err(ConsoleError::AuthTimeout(limit)),
        },
        () = shutdown.drain.cancelled() => return Err(ConsoleError::Shutdown),
    }
    let registered = state.clients.register(ClientInfo {
        address: peer,
        user: user.to_owned(),
        database: DATABASE.to_owned(),
        application_name: startup
            .get_str("application_name")
            .unwrap_or_default()
            .into_owned(),
    });
    tracing::info!(client = %peer, user = %user, "console login");

    let mut out = BytesMut::new();
    let server_version = format!("15.0 ({})", report::VERSION);
    for (name, value) in [
        ("server_version", server_version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
    ] {
        wire::parameter_status(&mut out, name, value);
    }
    let pid = console.next_pid.fetch_add(1, Ordering::Relaxed);
    wire::backend_key_data(&mut out, pid, rand::random());
    protocol::encode_ready_for_query(&mut out, b'I');
    conn.stream.write_all(&out).await?;
    let me = registered.entry();
    me.set_state(ClientState::Idle);

    // After an extended-protocol message, everything up to Sync is skipped,
    // as a server does after an error.
    let mut skip_to_sync = false;
    loop {
        let frame = tokio::select! {
            f = conn.read_frame(MAX_FRAME) => f?,
            () = shutdown.drain.cancelled() => return Err(ConsoleError::Shutdown),
        };
        let Some(frame) = frame else { return Ok(()) };
        let mut out = BytesMut::new();
        match frame.tag {
            tag::TERMINATE => return Ok(()),
            tag::QUERY => {
                let query = QueryView::parse(&frame.bytes).map_err(ConsoleError::Protocol)?;
                me.count_statement();
                me.set_state(ClientState::Active);
                match std::str::from_utf8(query.query) {
                    Ok(text) => {
                        tracing::debug!(client = %peer, user = %user, command = %text, "console command");
                        execute(text, user, state, &mut out).await
                    }
                    Err(_) => error(&mut out, &ConsoleError::NotUtf8),
                }
                me.set_state(ClientState::Idle);
                protocol::encode_ready_for_query(&mut out, b'I');
            }
            tag::SYNC => {
                skip_to_sync = false;
                protocol::encode_ready_for_query(&mut out, b'I');
            }
            _ if skip_to_sync => {}
            _ => {
                skip_to_sync = true;
                error(&mut out, &ConsoleError::ExtendedProtocol);
            }
        }
        if !out.is_empty() {
            conn.stream.write_all(&out).await?;
        }
    }
}

/// The SCRAM exchange. An unknown user runs it to the end against a mock
/// verifier and fails like a wrong password: no user enumeration.
async fn authenticate(
    conn: &mut Conn,
    user: &str,
    state: &ProxyState,
    console: &ConsoleState,
) -> Result<(), ConsoleError> {
    let known = state.config.load().admin_users.get(user).cloned();
    let verifier = known
        .clone()
        .unwrap_or_else(|| Verifier::mock(user, &console.mock_secret));

    let mut out = BytesMut::new();
    wire::auth_sasl(&mut out, scram::MECHANISM);
    conn.stream.write_all(&out).await?;

    let first = conn.expect_sasl().await?;
    let (mechanism, client_first) =
        wire::parse_sasl_initial(&first.bytes).map_err(ConsoleError::Protocol)?;
    if mechanism != scram::MECHANISM {
        return Err(ConsoleError::Scram(scram::ScramError::Malformed(
            "the client chose a mechanism that was not offered",
        )));
    }
    let (server, server_first) =
        ScramServer::start(verifier, client_first).map_err(ConsoleError::Scram)?;
    out.clear();
    wire::auth_sasl_continue(&mut out, &server_first);
    conn.stream.write_all(&out).await?;

    let last = conn.expect_sasl().await?;
    let server_final = match server.finish(wire::parse_sasl_response(&last.bytes)) {
        Ok(v) if known.is_some() => v,
        Ok(_) | Err(scram::ScramError::Failed) => {
            return Err(ConsoleError::AuthFailed(user.to_owned()));
        }
        Err(e) => return Err(ConsoleError::Scram(e)),
    };
    out.clear();
    wire::auth_sasl_final(&mut out, &server_final);
    wire::auth_ok(&mut out);
    conn.stream.write_all(&out).await?;
    Ok(())
}

/// Run one command; its result set or its ERROR goes to `out`.
async fn execute(text: &str, user: &str, state: &ProxyState, out: &mut BytesMut) {
    let result = match command::parse(text) {
        Err(unknown) => Err(ConsoleError::UnknownCommand(unknown)),
        Ok(Command::Empty) => {
            wire::empty_query_response(out);
            return;
        }
        Ok(Command::ShowMapping) => Ok(report::mapping(&state.config)),
        Ok(Command::ShowClients) => Ok(report::clients(state)),
        Ok(Command::ShowStats) => Ok(report::stats(state)),
        Ok(Command::ShowUnmapped) => Ok(report::unmapped(state)),
        Ok(Command::ShowVersion) => Ok(report::version()),
        Ok(Command::Reload) => {
            // Who reloaded is worth a line: the other triggers log theirs.
            let r = report::reload(state.config.clone()).await;
            match &r {
                Ok(_) => {
                    tracing::info!(user = %user, generation = state.config.load().generation, "RELOAD from the admin console")
                }
                Err(e) => {
                    tracing::warn!(user = %user, error = %e, "RELOAD from the admin console refused")
                }
            }
            r
        }
        Ok(Command::ExplainRewrite { sql, database }) => {
            report::explain_rewrite(&state.config.load_full(), &sql, database.as_deref())
        }
    };
    match result {
        Ok(set) => set.encode(out),
        Err(e) => error(out, &e),
    }
}

fn error(out: &mut BytesMut, e: &ConsoleError) {
    protocol::encode_client_error(out, e);
}
