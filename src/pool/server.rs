//! One pooled server connection: logging in with what the client's own
//! login revealed (SCRAM ClientKey, md5 hash) or the auth user's password,
//! and the few exchanges the pool runs on it itself (auth_query, the reset
//! query, startup parameters as SET).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::md5;
use crate::auth::scram::{ClientKey, PassThroughClient, Verifier};
use crate::protocol::{self, ErrorFields, ParameterStatus, peek_header, tag};
use crate::stream::Stream;

/// Frames during a pooled login or a pool's own query are small; a larger
/// one is a broken server.
const MAX_FRAME: usize = 1 << 20;

/// What the proxy logs in to the server with, for one user.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Learned from the client's SCRAM exchange: the server holds the same
    /// verifier.
    Scram { key: ClientKey, verifier: Verifier },
    /// The stored `md5...` hash (from auth_query).
    Md5(String),
    /// The auth user's own password (empty: trust/peer only).
    Password { user: String, password: String },
}

/// Why a pooled server connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("i/o error talking to the server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server sent an invalid message: {0}")]
    Protocol(#[from] protocol::ProtocolError),
    /// The server's own ErrorResponse, as it sent it (forwarded to the
    /// client unchanged where one is waiting).
    #[error("{message}")]
    Refused { frame: BytesMut, message: String },
    #[error("the server asks for {0}, which the proxy cannot answer with what it knows")]
    Unsupported(&'static str),
    #[error("SCRAM with the server failed: {0}")]
    Scram(#[from] crate::auth::scram::ScramError),
    #[error("the server closed the connection")]
    Closed,
}

impl ServerError {
    fn refused(frame: BytesMut) -> ServerError {
        let message = ErrorFields::parse(&frame)
            .ok()
            .and_then(|f| f.get(b'M'))
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_else(|| "the server refused the request".to_owned());
        ServerError::Refused { frame, message }
    }
}

/// A logged-in server connection, idle (ReadyForQuery 'I' read).
#[derive(Debug)]
pub struct ServerConn {
    pub stream: Stream,
    pub addr: SocketAddr,
    /// The server's BackendKeyData.
    pub key: (i32, i32),
    /// ParameterStatus values as the server last reported them.
    pub params: Vec<(String, String)>,
    /// Startup parameters the pool has SET on it (not all are reported).
    pub applied: Vec<(String, String)>,
    /// Transaction pooling: which client's settings (a pool's
    /// [`Pool::settings_owner`] draw) the connection was last found or made
    /// to have, so that client's next transaction on it skips the check; 0
    /// once anything may have changed them (every exchange of the pool's
    /// own).
    ///
    /// [`Pool::settings_owner`]: crate::pool::Pool::settings_owner
    pub settled_for: u64,
    /// Transaction pooling: the named statements prepared on it.
    pub statements: crate::pool::ServerStatementNames,
    pub created: Instant,
    pub idle_since: Instant,
    /// Which upstream settings it was opened with (a change drains it).
    pub upstream_signature: u64,
    /// The event loop whose I/O driver the socket is registered with: a
    /// client on another loop is woken across threads at every read.
    pub home: Option<tokio::runtime::Id>,
}

/// The event loop this code runs on (`None` outside a runtime).
pub fn current_loop() -> Option<tokio::runtime::Id> {
    tokio::runtime::Handle::try_current().ok().map(|h| h.id())
}

/// Reads one frame at a time from a server, keeping what follows.
pub(super) struct FrameReader<'a> {
    stream: &'a mut Stream,
    buf: BytesMut,
}

impl<'a> FrameReader<'a> {
    pub(super) fn new(stream: &'a mut Stream, buf: BytesMut) -> Self {
        FrameReader { stream, buf }
    }

    pub(super) async fn next(&mut self) -> Result<BytesMut, ServerError> {
        loop {
            if let Some(h) = peek_header(&self.buf, MAX_FRAME)?
                && self.buf.len() >= h.total_len
            {
                return Ok(self.buf.split_to(h.total_len));
            }
            self.buf.reserve(8 * 1024);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ServerError::Closed);
            }
        }
    }

    /// Bytes read past the last frame returned.
    pub(super) fn leftover(&self) -> usize {
        self.buf.len()
    }

    pub(super) async fn send(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }
}

fn auth_code(frame: &[u8]) -> i32 {
    frame
        .get(5..9)
        .map_or(-1, |c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// Log in on a stream whose StartupMessage was sent (`first`: the bytes the
/// server has answered so far), up to ReadyForQuery.
pub async fn login(
    mut stream: Stream,
    first: BytesMut,
    addr: SocketAddr,
    credentials: &Credentials,
    upstream_signature: u64,
) -> Result<ServerConn, ServerError> {
    let mut reader = FrameReader::new(&mut stream, first);
    let mut scram: Option<PassThroughClient> = None;
    let mut password_scram: Option<postgres_protocol::authentication::sasl::ScramSha256> = None;
    let mut params = Vec::new();
    let mut key = (0, 0);
    loop {
        let frame = reader.next().await?;
        let mut out = BytesMut::new();
        match frame[0] {
            tag::AUTHENTICATION => match auth_code(&frame) {
                0 => {}
                3 => match credentials {
                    Credentials::Password { password, .. } => {
                        let mut p = password.as_bytes().to_vec();
                        p.push(0);
                        protocol::encode_password_message(&mut out, &p);
                    }
                    _ => return Err(ServerError::Unsupported("a cleartext password")),
                },
                5 => {
                    let salt: [u8; 4] = frame
                        .get(9..13)
                        .and_then(|s| s.try_into().ok())
                        .ok_or(ServerError::Unsupported("md5 without a salt"))?;
                    let answer = match credentials {
                        Credentials::Md5(hash) => md5::response(hash, salt),
                        Credentials::Password { user, password } => {
                            postgres_protocol::authentication::md5_hash(
                                user.as_bytes(),
                                password.as_bytes(),
                                salt,
                            )
                        }
                        Credentials::Scram { .. } => {
                            return Err(ServerError::Unsupported(
                                "md5, but the user's verifier is SCRAM",
                            ));
                        }
                    };
                    let mut p = answer.into_bytes();
                    p.push(0);
                    protocol::encode_password_message(&mut out, &p);
                }
                10 => match credentials {
                    Credentials::Scram { key, verifier } => {
                        let (client, first) = PassThroughClient::start(key, verifier);
                        scram = Some(client);
                        protocol::encode_sasl_initial(&mut out, "SCRAM-SHA-256", first.as_bytes());
                    }
                    Credentials::Password { password, .. } => {
                        use postgres_protocol::authentication::sasl::{
                            ChannelBinding, ScramSha256,
                        };
                        let s =
                            ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        protocol::encode_sasl_initial(&mut out, "SCRAM-SHA-256", s.message());
                        password_scram = Some(s);
                    }
                    Credentials::Md5(_) => {
                        return Err(ServerError::Unsupported(
                            "SCRAM, but the user's stored password is an md5 hash",
                        ));
                    }
                },
                11 => {
                    let data = &frame[9..];
                    if let Some(client) = scram.as_mut() {
                        let last = client.respond(data)?;
                        protocol::encode_password_message(&mut out, last.as_bytes());
                    } else if let Some(s) = password_scram.as_mut() {
                        s.update(data).map_err(ServerError::Io)?;
                        protocol::encode_password_message(&mut out, s.message());
                    } else {
                        return Err(ServerError::Unsupported("SASLContinue out of order"));
                    }
                }
                12 => {
                    let data = &frame[9..];
                    if let Some(client) = scram.as_ref() {
                        client.verify(data)?;
                    } else if let Some(s) = password_scram.as_mut() {
                        s.finish(data).map_err(ServerError::Io)?;
                    }
                }
                _ => return Err(ServerError::Unsupported("this authentication method")),
            },
            tag::PARAMETER_STATUS => {
                if let Ok(p) = ParameterStatus::parse(&frame) {
                    set_param(
                        &mut params,
                        &String::from_utf8_lossy(p.name),
                        &String::from_utf8_lossy(p.value),
                    );
                }
            }
            tag::BACKEND_KEY_DATA => {
                if let Ok(k) = protocol::BackendKeyData::parse(&frame) {
                    key = (k.pid, k.secret);
                }
            }
            tag::ERROR_RESPONSE => return Err(ServerError::refused(frame)),
            tag::READY_FOR_QUERY => {
                let now = Instant::now();
                return Ok(ServerConn {
                    stream,
                    addr,
                    key,
                    params,
                    applied: Vec::new(),
                    settled_for: 0,
                    statements: Default::default(),
                    created: now,
                    idle_since: now,
                    upstream_signature,
                    home: current_loop(),
                });
            }
            _ => {}
        }
        if !out.is_empty() {
            reader.send(&out).await?;
        }
    }
}

pub fn set_param(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    match params.iter_mut().find(|(n, _)| n == name) {
        Some(p) => p.1 = value.to_owned(),
        None => params.push((name.to_owned(), value.to_owned())),
    }
}

impl ServerConn {
    /// Move the socket to the caller's event loop (see [`Stream::rehome`]).
    /// On an error the connection is unusable.
    pub fn rehome(&mut self, here: Option<tokio::runtime::Id>) -> std::io::Result<()> {
        let stream = std::mem::replace(&mut self.stream, Stream::Closed);
        self.stream = stream.rehome()?;
        if matches!(self.stream, Stream::Plain(_)) {
            self.home = here;
        }
        Ok(())
    }

    /// Run `sql` (simple query) to its ReadyForQuery; the server's
    /// ParameterStatus reports are kept. An ErrorResponse is returned as
    /// the error, after the ReadyForQuery.
    pub async fn simple(&mut self, sql: &str) -> Result<(), ServerError> {
        let mut out = BytesMut::new();
        protocol::encode_query(&mut out, sql.as_bytes());
        self.exchange(&out, |_| {}).await
    }

    /// Run `query` with one text parameter; the DataRows' columns (text,
    /// `None` for NULL).
    pub async fn query_one_param(
        &mut self,
        query: &str,
        param: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        let mut out = BytesMut::new();
        protocol::encode_parse(&mut out, b"", query.as_bytes(), &[0, 0]);
        protocol::encode_bind_text(&mut out, &[Some(param.as_bytes())]);
        protocol::encode_execute(&mut out);
        protocol::encode_sync(&mut out);
        let mut rows = Vec::new();
        self.exchange(&out, |frame| {
            if frame[0] == tag::DATA_ROW {
                rows.push(data_row(frame));
            }
        })
        .await?;
        Ok(rows)
    }

    async fn exchange(
        &mut self,
        request: &[u8],
        mut on_frame: impl FnMut(&[u8]),
    ) -> Result<(), ServerError> {
        self.settled_for = 0;
        let mut reader = FrameReader::new(&mut self.stream, BytesMut::new());
        reader.send(request).await?;
        let mut error = None;
        loop {
            let frame = reader.next().await?;
            match frame[0] {
                tag::ERROR_RESPONSE => error = Some(ServerError::refused(frame)),
                tag::PARAMETER_STATUS => {
                    if let Ok(p) = ParameterStatus::parse(&frame) {
                        set_param(
                            &mut self.params,
                            &String::from_utf8_lossy(p.name),
                            &String::from_utf8_lossy(p.value),
                        );
                    }
                }
                tag::READY_FOR_QUERY => {
                    if reader.leftover() > 0 {
                        return Err(ServerError::Unsupported("data after ReadyForQuery"));
                    }
                    let idle = frame.get(5) == Some(&b'I');
                    return match error {
                        Some(e) => Err(e),
                        None if idle => Ok(()),
                        None => Err(ServerError::Unsupported(
                            "a transaction left open by the pool's own query",
                        )),
                    };
                }
                _ => on_frame(&frame),
            }
        }
    }
}

/// The columns of a DataRow, as text.
fn data_row(frame: &[u8]) -> Vec<Option<String>> {
    let mut body = &frame[5..];
    let mut columns = Vec::new();
    if body.len() < 2 {
        return columns;
    }
    let n = body.get_i16();
    for _ in 0..n {
        if body.len() < 4 {
            break;
        }
        let len = body.get_i32();
        if len < 0 {
            columns.push(None);
            continue;
        }
        let len = (len as usize).min(body.len());
        columns.push(Some(String::from_utf8_lossy(&body[..len]).into_owned()));
        body.advance(len);
    }
    columns
}
