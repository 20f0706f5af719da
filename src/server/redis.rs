//! The Redis side's accept loop: started beside the Postgres one when the
//! config has a `redis:` section.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::listener;
use crate::redis::{self, CommandTables, SharedConnections};
use crate::state::ProxyState;

/// Serve Redis clients from `listener` until `shutdown`; then each client
/// is closed at its next read (Redis has no transaction to finish between
/// requests) and this returns once all are gone.
pub async fn run_redis(
    listener: TcpListener,
    state: ProxyState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tables = Arc::new(CommandTables::default());
    // Read the command table now, so the first client does not wait for
    // it; a server that is down is retried at the first command.
    let snapshot = state.config.load_full();
    if let Some(cfg) = &snapshot.redis
        && cfg.mode != crate::config::Mode::Off
        && let Err(e) = tables
            .for_generation(
                snapshot.generation,
                cfg,
                snapshot.connect_timeout,
                &state.metrics,
            )
            .await
    {
        tracing::warn!(error = %e, "cannot read the redis command table yet; retried at the first command");
    }
    drop(snapshot);
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "accepting redis clients");
    }
    // Multiplexing (redis.multiplex): the shared server connections.
    let shared = Arc::new(SharedConnections::new(
        port,
        Arc::clone(&state.metrics),
        shutdown.clone(),
    ));
    let tasks = TaskTracker::new();
    while let Some((stream, peer)) = listener::accept(&listener, &shutdown, "redis clients").await {
        let state = state.clone();
        let tables = Arc::clone(&tables);
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        state
            .workers
            .clone()
            .spawn_session(&tasks, stream, move |stream| {
                redis::serve(stream, peer, state, tables, shared, shutdown)
            });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}
