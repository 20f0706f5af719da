//! One connection to the Redis server on one database: connect, TLS as
//! `redis.upstream.tls` says, log in, select, and exchange pipelined
//! commands for whole replies.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{RedisUpstream, host_port};
use crate::resp::{self, RespError, Value};
use crate::stream::Stream;

/// Why the Redis server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach the Redis server at {addr}: {error}")]
    Connect { addr: String, error: std::io::Error },
    #[error("the Redis server at {addr} did not answer within {ms} ms")]
    Timeout { addr: String, ms: u128 },
    /// The TLS handshake failed: a certificate that does not verify, a
    /// server without TLS on that port, a client certificate refused.
    #[error("TLS handshake with the Redis server at {addr} failed: {error}")]
    Tls { addr: String, error: std::io::Error },
    /// The server refused a setup command (AUTH, SELECT...): its own error.
    #[error("{0}")]
    Refused(String),
    #[error("connection to the Redis server lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad reply from the Redis server: {0}")]
    Protocol(#[from] RespError),
    /// One reply past `max_reply_bytes`, its bytes dropped: that command
    /// fails, the connection goes on.
    #[error("bad reply from the Redis server: {0}")]
    ReplySkipped(RespError),
    #[error("the proxy is shutting down")]
    ShuttingDown,
}

/// A server connection on one database.
pub struct Upstream {
    stream: Stream,
    buf: BytesMut,
    max_reply: usize,
}

/// What a new server connection replays so that it behaves like the
/// client's others: the proxy's login, then the client's own AUTH, HELLO
/// and CLIENT SETNAME, then SELECT.
pub struct Setup<'a> {
    pub upstream: &'a RedisUpstream,
    pub client_commands: &'a [Vec<Bytes>],
    pub db: u16,
    pub timeout: Duration,
    pub max_reply: usize,
}

impl Upstream {
    pub async fn connect(setup: Setup<'_>) -> Result<Upstream, UpstreamError> {
        let addr = host_port(&setup.upstream.host, setup.upstream.port);
        let timeout = setup.timeout;
        let work = async {
            let stream = TcpStream::connect((setup.upstream.host.as_str(), setup.upstream.port))
                .await
                .map_err(|error| UpstreamError::Connect {
                    addr: addr.clone(),
                    error,
                })?;
            let _ = stream.set_nodelay(true);
            let stream = match &setup.upstream.tls.client_config {
                None => Stream::Plain(stream),
                Some(config) => {
                    let name = setup.upstream.tls.server_name(&setup.upstream.host);
                    tokio_rustls::TlsConnector::from(Arc::clone(config))
                        .connect(name, stream)
                        .await
                        .map(|tls| Stream::Tls(Box::new(tls)))
                        .map_err(|error| UpstreamError::Tls {
                            addr: addr.clone(),
                            error,
                        })?
                }
            };
            let mut up = Upstream {
                stream,
                buf: BytesMut::with_capacity(16 * 1024),
                max_reply: setup.max_reply,
            };
            let mut commands: Vec<Vec<Bytes>> = Vec::new();
            if let Some(pw) = &setup.upstream.password {
                let mut auth = vec![Bytes::from_static(b"AUTH")];
                if let Some(user) = &setup.upstream.username {
                    auth.push(Bytes::copy_from_slice(user.as_bytes()));
                }
                auth.push(Bytes::copy_from_slice(pw.0.as_bytes()));
                commands.push(auth);
            }
            commands.extend(setup.client_commands.iter().cloned());
            if setup.db != 0 {
                commands.push(vec![
                    Bytes::from_static(b"SELECT"),
                    Bytes::from(setup.db.to_string()),
                ]);
            }
            let tls = up.stream.is_tls();
            if commands.is_empty() {
                if !tls {
                    return Ok(up);
                }
                // TLS 1.3 servers refuse a client certificate (or its
                // absence) after the handshake: a PING makes that known
                // here, as a TLS error, not at the client's first command.
                commands.push(vec![Bytes::from_static(b"PING")]);
            }
            let mut out = BytesMut::new();
            for c in &commands {
                resp::encode_command(&mut out, c);
            }
            let replies = async {
                up.send(&out).await?;
                up.replies(commands.len()).await
            }
            .await
            .map_err(|e| match e {
                UpstreamError::Io(error) if tls && is_tls_alert(&error) => UpstreamError::Tls {
                    addr: addr.clone(),
                    error,
                },
                other => other,
            })?;
            for reply in replies.0 {
                let value = Value::decode(&reply)?;
                if value.is_error() {
                    let text = match &value {
                        Value::Line(_, t) | Value::Bulk(_, t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        Value::Aggregate(..) => "error".into(),
                    };
                    return Err(UpstreamError::Refused(text));
                }
            }
            Ok(up)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                addr,
                ms: timeout.as_millis(),
            }),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.stream.write_all(bytes).await?;
        // rustls holds ciphertext it could not write yet until a flush (a
        // no-op on a plain socket).
        self.stream.flush().await?;
        Ok(())
    }

    /// The next `n` whole replies, in order, and apart the RESP3 pushes
    /// (client tracking's invalidations) that came in between: they answer
    /// no command.
    pub async fn replies(&mut self, n: usize) -> Result<(Vec<Bytes>, Vec<Bytes>), UpstreamError> {
        let mut got = Vec::with_capacity(n);
        let mut pushes = Vec::new();
        while got.len() < n {
            match resp::reply_len(&self.buf, self.max_reply)? {
                Some(len) => {
                    let reply = self.buf.split_to(len).freeze();
                    if reply.first() == Some(&b'>') {
                        pushes.push(reply);
                    } else {
                        got.push(reply);
                    }
                }
                None => {
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        return Err(UpstreamError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
        Ok((got, pushes))
    }

    /// The next whole reply; RESP3 pushes (client tracking's
    /// invalidations) that come before it are appended to `pushes` as they
    /// came (they answer no command).
    /// A top-level bulk past `max_reply_bytes` is read past and answered
    /// with [`UpstreamError::ReplySkipped`], as on a shared connection.
    pub async fn next_reply(&mut self, pushes: &mut BytesMut) -> Result<Bytes, UpstreamError> {
        loop {
            let found = match resp::reply_len(&self.buf, self.max_reply) {
                Err(RespError::BulkTooLong(len, max)) if self.buf.first() == Some(&b'$') => {
                    return Err(self.skip_bulk(len, max).await);
                }
                other => other?,
            };
            match found {
                Some(len) => {
                    let reply = self.buf.split_to(len).freeze();
                    if reply.first() != Some(&b'>') {
                        return Ok(reply);
                    }
                    pushes.extend_from_slice(&reply);
                }
                None => {
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        return Err(UpstreamError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
            }
        }
    }

    /// Drop the bulk reply at the front of the buffer (header and `len`
    /// bytes, read as they come).
    async fn skip_bulk(&mut self, len: i64, max: usize) -> UpstreamError {
        let Some(header) = self.buf.windows(2).position(|w| w == b"\r\n") else {
            return UpstreamError::Protocol(RespError::Protocol("a bad bulk header"));
        };
        self.buf.advance(header + 2);
        let mut skip = len as usize + 2;
        loop {
            let k = skip.min(self.buf.len());
            self.buf.advance(k);
            skip -= k;
            if skip == 0 {
                return UpstreamError::ReplySkipped(RespError::BulkTooLong(len, max));
            }
            self.buf.clear();
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return UpstreamError::Io(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) => return UpstreamError::Io(e),
            }
        }
    }

    /// One exchange: send `commands`, return their replies.
    pub async fn call(&mut self, commands: &[Vec<Bytes>]) -> Result<Vec<Bytes>, UpstreamError> {
        let mut out = BytesMut::new();
        for c in commands {
            resp::encode_command(&mut out, c);
        }
        self.send(&out).await?;
        Ok(self.replies(commands.len()).await?.0)
    }

    /// Read whatever the server sends next (pub/sub messages).
    pub async fn read_some(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        loop {
            if let Some(len) = resp::reply_len(&self.buf, self.max_reply)? {
                return Ok(Some(self.buf.split_to(len).freeze()));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// The socket and what was read past the last reply, for a shared
    /// connection's reader and writer (see `mux`).
    pub(super) fn into_parts(self) -> (Stream, BytesMut) {
        (self.stream, self.buf)
    }
}

/// Whether an I/O error is rustls' (an alert from the server, a record it
/// could not read) rather than the socket's.
fn is_tls_alert(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}
