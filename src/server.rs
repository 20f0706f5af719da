//! The accept loop: one task per client, which runs the startup phase and
//! then hands the connection to the admin console or a session; graceful
//! shutdown.
//!
//! CONTRACT used by the CLI and the integration tests:
//! `pub async fn run(listener: tokio::net::TcpListener, state: ProxyState, shutdown: CancellationToken) -> std::io::Result<()>`

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::CONSOLE_DATABASE;
use crate::console::{self, ConsoleState};
use crate::listener;
use crate::metrics::Metrics;
use crate::session;
use crate::shutdown::Shutdown;
use crate::startup::{self, Handshake};
use crate::state::ProxyState;
use crate::stream::Stream;

/// How long busy sessions may finish their work after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accept clients until `shutdown`, then stop accepting, close idle
/// sessions (57P01), give busy ones [`SHUTDOWN_GRACE`] and close the rest.
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
    tracing::info!(sessions = tasks.len(), "shutting down");
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::info!(
            sessions = tasks.len(),
            "grace period over, closing busy sessions"
        );
        signals.abort.cancel();
        tasks.wait().await;
    }
    Ok(())
}

/// One connection: the startup phase, then the console or a session.
async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    state: ProxyState,
    console: Arc<ConsoleState>,
    signals: Shutdown,
) {
    state.metrics.clients_total.fetch_add(1, Ordering::Relaxed);
    state.metrics.clients_active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(Arc::clone(&state.metrics));
    // One snapshot for the whole connection: a reload never changes a live
    // session's routing or map halfway.
    let config = state.config.load_full();
    let Handshake::Startup(stream, startup, buf) =
        startup::handshake(stream, peer, &config, &state, &signals).await
    else {
        return;
    };
    if startup.database().as_deref() == Some(CONSOLE_DATABASE) {
        match stream {
            Stream::Plain(stream) => {
                console::serve(stream, buf, startup, peer, &state, &console, &signals).await
            }
            mut stream => console_over_tls(&mut stream, peer).await,
        }
    } else {
        session::serve(stream, buf, startup, peer, config, state, signals).await;
    }
}

/// The console speaks only plain TCP for now: tell a TLS client so.
async fn console_over_tls(stream: &mut Stream, peer: std::net::SocketAddr) {
    let refusal = ConsoleOverTls;
    crate::farewell::farewell(stream, &refusal).await;
    tracing::warn!(client = %peer, "{refusal}");
}

#[derive(Debug, thiserror::Error)]
#[error("the admin console is not available over TLS; connect to it with sslmode=disable")]
struct ConsoleOverTls;

impl crate::protocol::ClientFacing for ConsoleOverTls {
    fn sqlstate(&self) -> crate::protocol::SqlState {
        crate::protocol::SqlState::FeatureNotSupported
    }

    fn is_fatal(&self) -> bool {
        true
    }
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
