//! The accept loop: one task per client, which runs the startup phase and
//! then hands the connection to the admin console or a session; graceful
//! shutdown.
//!
//! CONTRACT used by the CLI and the integration tests:
//! `pub async fn run(listener: tokio::net::TcpListener, state: ProxyState, shutdown: CancellationToken) -> std::io::Result<()>`

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::CONSOLE_DATABASE;
use crate::console::{self, ConsoleState};
use crate::farewell::{FAREWELL_TIMEOUT, farewell};
use crate::listener;
use crate::metrics::{Metrics, Refusal};
use crate::protocol::{ClientFacing, SqlState};
use crate::session;
use crate::shutdown::Shutdown;
use crate::startup::{self, Handshake};
use crate::state::ProxyState;

/// Accept clients until `shutdown`, then stop accepting: each session ends
/// (57P01) at its first ReadyForQuery(idle), so it finishes its transaction;
/// after `proxy.shutdown_timeout_ms` the rest are closed.
/// A session's error is logged by the session, never returned from here.
/// Serve clients from `listener` until `shutdown`, each session on one of
/// `state.workers`.
pub async fn run(
    listener: TcpListener,
    state: ProxyState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let workers = state.workers.clone();
    let console = Arc::new(ConsoleState::default());
    let tasks = TaskTracker::new();
    let signals = Shutdown {
        drain: shutdown.child_token(),
        abort: CancellationToken::new(),
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "accepting clients");
    }
    // Idle timeouts, lifetimes and min_idle of the pools.
    tokio::spawn(Arc::clone(&state.pools).maintain(Arc::clone(&state.metrics), shutdown.clone()));
    loop {
        let Some((stream, peer)) = listener::accept(&listener, &shutdown, "clients").await else {
            break;
        };
        let state = state.clone();
        let signals = signals.clone();
        let console = Arc::clone(&console);
        // The connection's future is the task itself: one state machine
        // fewer to step through on every wake-up.
        workers.spawn_session(&tasks, stream, move |stream| {
            serve_connection(stream, peer, state, console, signals)
        });
    }
    drop(listener);
    tasks.close();
    // The setting in force since start (a reload does not change it).
    let grace = state.config.load().start.shutdown_timeout;
    tracing::info!(
        sessions = tasks.len(),
        grace_ms = grace.as_millis() as u64,
        "shutting down"
    );
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::info!(
            sessions = tasks.len(),
            "grace period over, closing busy sessions"
        );
        signals.abort.cancel();
        tasks.wait().await;
    }
    Ok(())
}

/// Serve the address peers forward cancel requests to (with
/// `proxy.reuse_port`, this instance's own entry in `proxy.peers`) until
/// `shutdown`: one CancelRequest per connection, nothing else.
pub async fn run_cancel_listener(
    listener: TcpListener,
    state: ProxyState,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "accepting cancel requests from peers");
    }
    // Each connection may wait `startup_timeout` for its 16 bytes: a bound
    // keeps a flood of idle ones from taking every file descriptor.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PEER_CANCEL_CONNECTIONS));
    while let Some((stream, peer)) = listener::accept(&listener, &shutdown, "peer cancels").await {
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(client = %peer, "too many connections on the peer cancel address: closed");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            startup::serve_forwarded_cancel(stream, peer, &state).await;
            drop(slot);
        });
    }
}

/// Connections served at once on the peer cancel address.
const MAX_PEER_CANCEL_CONNECTIONS: usize = 1024;

/// One connection: the startup phase, then the console or a session.
async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    state: ProxyState,
    console: Arc<ConsoleState>,
    signals: Shutdown,
) {
    state.metrics.clients_total.fetch_add(1, Ordering::Relaxed);
    let active = state.metrics.clients_active.fetch_add(1, Ordering::Relaxed) + 1;
    let _active = ActiveGuard(Arc::clone(&state.metrics));
    // One snapshot for the whole connection: a reload never changes a live
    // session's routing or map halfway.
    let config = state.config.load_full();
    if active > config.max_client_connections as u64 {
        state
            .metrics
            .refused(Refusal::MaxClientConnections)
            .fetch_add(1, Ordering::Relaxed);
        refuse_over_limit(stream, peer, config.max_client_connections).await;
        return;
    }
    let Handshake::Startup(stream, startup, buf) =
        startup::handshake(stream, peer, &config, &state, &signals).await
    else {
        return;
    };
    if startup.database().as_deref() == Some(CONSOLE_DATABASE) {
        console::serve(stream, buf, startup, peer, &state, &console, &signals).await;
    } else {
        session::serve(stream, buf, startup, peer, config, state, signals).await;
    }
}

/// A client over `proxy.max_client_connections`.
#[derive(Debug, thiserror::Error)]
#[error("sorry, too many clients already (proxy.max_client_connections is {0})")]
struct TooManyClients(usize);

impl ClientFacing for TooManyClients {
    fn sqlstate(&self) -> SqlState {
        SqlState::TooManyConnections
    }

    fn is_fatal(&self) -> bool {
        true
    }
}

/// Tell a client over the limit at once (before its startup packet, so a
/// flood of them holds nothing), then read what it already sent before
/// closing: a close with unread input resets the connection, and the reset
/// can destroy the error before the client reads it.
async fn refuse_over_limit(mut stream: TcpStream, peer: std::net::SocketAddr, limit: usize) {
    tracing::warn!(client = %peer, limit, "client refused: proxy.max_client_connections reached");
    farewell(&mut stream, &TooManyClients(limit)).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Keeps `clients_active` right even if a session task panics.
struct ActiveGuard(Arc<Metrics>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.clients_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The relay against a scripted fake upstream: no Postgres needed.
#[cfg(test)]
mod tests;
