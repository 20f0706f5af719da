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

mod mux;
mod pubsub;
mod session;
mod table;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::state::ProxyState;

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
    let (config, limit) = {
        let snapshot = state.config.load();
        (snapshot.redis.clone(), snapshot.max_client_connections)
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
    tracing::debug!(client = %peer, "redis client connected");
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

/// Keeps `clients_active` right even if the task panics.
struct Active(Arc<crate::metrics::Metrics>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.redis.clients_active.fetch_sub(1, Ordering::Relaxed);
    }
}
