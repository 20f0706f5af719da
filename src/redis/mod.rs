//! The Redis connection handler (L3, beside `session`): one client, its
//! virtual `SELECT`, and one server connection per database it touches.
//!
//! Each command is routed by [`crate::keyspace::route`] with the rules of
//! the config snapshot in force when it arrives (a reload applies from the
//! next command, no connection dropped). Pipelined commands that go to the
//! same database are sent together; replies come back in request order.
//! MULTI...EXEC is queued here and sent whole to the one database its keys
//! live in, or refused before anything runs; WATCH pins that database.
//! After SUBSCRIBE the connection is relayed as it is.
//!
//! With `redis.tls` the client speaks TLS from its first byte (as to a
//! Redis server with `tls-port`); in mode allow a first byte that does not
//! start a TLS record keeps the connection in clear.

mod mux;
mod pubsub;
mod session;
mod subscriptions;
mod table;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::{ClientTlsMode, RedisConfig};
use crate::state::ProxyState;
use crate::stream::Stream;

pub use mux::SharedConnections;
pub use table::{CommandTables, LoadedTable, TableReadError};
pub use upstream::{Setup, Upstream, UpstreamError};

/// Serve one Redis client until it leaves or `shutdown` fires.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: ProxyState,
    tables: Arc<CommandTables>,
    shared: Arc<SharedConnections>,
    shutdown: CancellationToken,
) {
    let m = &state.metrics.redis;
    m.clients_total.fetch_add(1, Ordering::Relaxed);
    let active = m.clients_active.fetch_add(1, Ordering::Relaxed) + 1;
    let _active = Active(Arc::clone(&state.metrics));
    let (config, limit, handshake_limit) = {
        let snapshot = state.config.load();
        (
            snapshot.redis.clone(),
            snapshot.max_client_connections,
            snapshot.startup_timeout,
        )
    };
    let Some(config) = config else {
        return;
    };
    // proxy.max_client_connections bounds each side; Redis' own words.
    if active > limit as u64 {
        tracing::warn!(client = %peer, limit, "redis client refused: proxy.max_client_connections reached");
        let mut stream = stream;
        let _ = tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            b"-ERR max number of clients reached\r\n",
        )
        .await;
        return;
    }
    let _ = stream.set_nodelay(true);
    let stream = tokio::select! {
        s = secure(stream, &config, handshake_limit) => s,
        () = shutdown.cancelled() => return,
    };
    let stream = match stream {
        Ok(Some(s)) => {
            if s.is_tls() {
                m.tls_clients_ok.fetch_add(1, Ordering::Relaxed);
            }
            s
        }
        Ok(None) => return,
        Err(why) => {
            let counter = match why {
                Refused::Plain => &m.tls_clients_plain_refused,
                Refused::Handshake(_) => &m.tls_clients_failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::info!(client = %peer, error = %why, "redis client refused: TLS");
            return;
        }
    };
    tracing::debug!(client = %peer, tls = stream.is_tls(), "redis client connected");
    let result = session::Session::new(
        &state,
        &tables,
        peer,
        config,
        shutdown.clone(),
        Some(shared),
    )
    .run(stream, &shutdown)
    .await;
    match result {
        Ok(()) => tracing::debug!(client = %peer, "redis client left"),
        Err(e) => tracing::info!(client = %peer, error = %e, "redis client closed"),
    }
}

/// Why `redis.tls` turned a client away.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("plain text on a port that requires TLS")]
    Plain,
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

/// The client's stream as `redis.tls` wants it: plain, or TLS after a
/// handshake that must end within `limit`. Waiting for the first byte is
/// not bounded: a Redis client may connect long before its first command,
/// as it may on a plain port. `Ok(None)`: the client left before sending
/// anything.
async fn secure(
    stream: TcpStream,
    config: &RedisConfig,
    limit: Duration,
) -> Result<Option<Stream>, Refused> {
    let Some(server_config) = config.tls.acceptor_config() else {
        return Ok(Some(Stream::Plain(stream)));
    };
    let mut first = [0u8; 1];
    if stream
        .peek(&mut first)
        .await
        .map_err(|e| Refused::Handshake(e.to_string()))?
        == 0
    {
        return Ok(None);
    }
    // 0x16: a TLS handshake record; a RESP request starts with `*` or an
    // inline command's letters.
    if first[0] != 0x16 {
        if config.tls.mode == ClientTlsMode::Allow {
            return Ok(Some(Stream::Plain(stream)));
        }
        let mut stream = stream;
        let _ = stream
            .write_all(b"-ERR heal7-proxy: this port requires TLS (redis.tls.mode require)\r\n")
            .await;
        return Err(Refused::Plain);
    }
    let accept = tokio_rustls::TlsAcceptor::from(Arc::clone(server_config)).accept(stream);
    let tls = tokio::time::timeout(limit, accept)
        .await
        .map_err(|_| {
            Refused::Handshake(format!(
                "not finished within {} ms (proxy.startup_timeout_ms)",
                limit.as_millis()
            ))
        })?
        .map_err(|e| Refused::Handshake(e.to_string()))?;
    Ok(Some(Stream::Tls(Box::new(tls))))
}

/// Keeps `clients_active` right even if the task panics.
struct Active(Arc<crate::metrics::Metrics>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.redis.clients_active.fetch_sub(1, Ordering::Relaxed);
    }
}
