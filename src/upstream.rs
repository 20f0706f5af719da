//! Opening a connection to an upstream server: TCP connect, TLS as
//! `databases.*.tls` says (libpq's sslmode), the StartupMessage, and the
//! server's first answer, all within one timeout. Used by sessions (1:1
//! relay) and by pools.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{UpstreamTls, UpstreamTlsMode};
use crate::metrics::{Metrics, TlsHandshake};
use crate::stream::Stream;

/// Why the upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no connection and answer within {} ms", .0.as_millis())]
    Timeout(std::time::Duration),
    /// The server answered the SSLRequest `N` and the mode needs TLS.
    #[error("the server does not support TLS (tls.mode {0})")]
    TlsRefused(&'static str),
    /// Neither `S` nor `N` to the SSLRequest.
    #[error("unexpected answer {0:#04x} to the SSL request")]
    TlsAnswer(u8),
    /// The handshake failed (certificate rejected, protocol mismatch).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
}

/// Connect to the upstream, negotiate TLS as `tls` says, send `startup`
/// and wait for the first bytes of its answer, all within `limit`. Returns
/// the stream, the server's address and those bytes (the relay's server
/// buffer starts with them).
pub async fn open_upstream(
    host: &str,
    port: u16,
    tls: &UpstreamTls,
    startup: &[u8],
    limit: Duration,
    metrics: &Metrics,
) -> Result<(Stream, std::net::SocketAddr, BytesMut), UpstreamFailure> {
    let attempt = async {
        let server = TcpStream::connect((host, port)).await?;
        let _ = server.set_nodelay(true);
        let address = server.peer_addr()?;
        let secured = secure(server, host, tls, limit).await;
        let handshake = match &secured {
            Ok(server) if server.is_tls() => Some(TlsHandshake::UpstreamOk),
            Err(UpstreamFailure::Tls(_)) => Some(TlsHandshake::UpstreamFailed),
            _ => None,
        };
        if let Some(kind) = handshake {
            metrics.tls_handshakes(kind).fetch_add(1, Ordering::Relaxed);
        }
        let mut server = match secured {
            Ok(server) => server,
            // libpq's prefer: when the TLS attempt fails (a handshake that
            // breaks, an old server's error to the SSLRequest), try again
            // in clear on a new connection.
            Err(e @ (UpstreamFailure::Tls(_) | UpstreamFailure::TlsAnswer(_)))
                if tls.mode == UpstreamTlsMode::Prefer =>
            {
                tracing::warn!(upstream = %address, error = %e, "TLS to the upstream failed; tls.mode prefer: connecting in clear");
                let server = TcpStream::connect((host, port)).await?;
                let _ = server.set_nodelay(true);
                Stream::Plain(server)
            }
            Err(e) => return Err(e),
        };
        server.write_all(startup).await?;
        server.flush().await?;
        let mut first = BytesMut::with_capacity(8 * 1024);
        if server.read_buf(&mut first).await? == 0 {
            return Err(UpstreamFailure::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection before answering the startup",
            )));
        }
        Ok((server, address, first))
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamFailure::Timeout(limit)),
    }
}

/// Negotiate TLS on a fresh upstream connection as `tls.mode` says
/// (libpq's sslmode): ask with an SSLRequest, then handshake on `S`; on
/// `N` continue in clear only in mode prefer.
async fn secure(
    server: TcpStream,
    host: &str,
    tls: &UpstreamTls,
    limit: Duration,
) -> Result<Stream, UpstreamFailure> {
    let Some(client_config) = &tls.client_config else {
        return Ok(Stream::Plain(server));
    };
    let negotiate = async {
        let mut server = server;
        let mut request = [0u8; 8];
        request[..4].copy_from_slice(&8i32.to_be_bytes());
        request[4..].copy_from_slice(&crate::protocol::SSL_REQUEST_CODE.to_be_bytes());
        server.write_all(&request).await?;
        let answer = server.read_u8().await?;
        match upstream_tls_step(tls.mode, answer)? {
            false => Ok(Stream::Plain(server)),
            true => {
                let name = tls.server_name(host);
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(client_config));
                let tls = connector
                    .connect(name, server)
                    .await
                    .map_err(UpstreamFailure::Tls)?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    };
    match tokio::time::timeout(limit, negotiate).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamFailure::Timeout(limit)),
    }
}

/// What the server's answer to the SSLRequest means in `mode`: handshake
/// (true), continue in clear (false), or fail.
fn upstream_tls_step(mode: UpstreamTlsMode, answer: u8) -> Result<bool, UpstreamFailure> {
    match (answer, mode) {
        (b'S', _) => Ok(true),
        (b'N', UpstreamTlsMode::Prefer | UpstreamTlsMode::Disable) => Ok(false),
        (b'N', mode) => Err(UpstreamFailure::TlsRefused(mode.as_str())),
        (other, _) => Err(UpstreamFailure::TlsAnswer(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_answer_per_mode() {
        use UpstreamTlsMode::*;
        for mode in [Prefer, Require, VerifyCa, VerifyFull] {
            assert!(upstream_tls_step(mode, b'S').unwrap(), "{mode:?}");
        }
        assert!(!upstream_tls_step(Prefer, b'N').unwrap());
        for mode in [Require, VerifyCa, VerifyFull] {
            let e = upstream_tls_step(mode, b'N').unwrap_err();
            assert!(matches!(e, UpstreamFailure::TlsRefused(_)), "{mode:?}");
            assert!(e.to_string().contains(mode.as_str()), "{e}");
        }
        // An ErrorResponse ('E') from a server too old for SSLRequest.
        assert!(matches!(
            upstream_tls_step(Prefer, b'E'),
            Err(UpstreamFailure::TlsAnswer(b'E'))
        ));
    }
}
