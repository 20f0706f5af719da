//! The accept loop: one session task per client, the registry of live
//! sessions' cancel keys, and graceful shutdown.
//!
//! CONTRACT used by the CLI and the integration tests:
//! `pub async fn run(listener: tokio::net::TcpListener, state: ProxyState, shutdown: CancellationToken) -> std::io::Result<()>`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::session::{self, Shutdown};

/// How long busy sessions may finish their work after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything a session needs that outlives it. Cheap to clone.
#[derive(Clone)]
pub struct ProxyState {
    /// The live config; a reload swaps it (a later issue).
    pub config: Arc<ArcSwap<Config>>,
    pub metrics: Arc<Metrics>,
    /// Live sessions' BackendKeyData -> their upstream server.
    pub cancel_keys: Arc<CancelKeys>,
}

impl ProxyState {
    pub fn new(config: Config) -> Self {
        ProxyState {
            config: Arc::new(ArcSwap::from_pointee(config)),
            metrics: Arc::new(Metrics::default()),
            cancel_keys: Arc::new(CancelKeys::default()),
        }
    }
}

/// (pid, secret) of each live session's server -> that server's address,
/// so a CancelRequest (which arrives on a new connection) finds its way.
#[derive(Debug, Default)]
pub struct CancelKeys {
    keys: Mutex<HashMap<(i32, i32), SocketAddr>>,
}

impl CancelKeys {
    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), SocketAddr>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(&self, key: (i32, i32), upstream: SocketAddr) {
        self.locked().insert(key, upstream);
    }

    /// Remove `key`, unless another session has since registered it.
    pub fn remove(&self, key: (i32, i32), upstream: SocketAddr) {
        let mut keys = self.locked();
        if keys.get(&key) == Some(&upstream) {
            keys.remove(&key);
        }
    }

    pub fn lookup(&self, key: (i32, i32)) -> Option<SocketAddr> {
        self.locked().get(&key).copied()
    }

    pub fn len(&self) -> usize {
        self.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Accept clients until `shutdown`, then stop accepting, close idle
/// sessions (57P01), give busy ones [`SHUTDOWN_GRACE`] and close the rest.
/// A session's error is logged by the session, never returned from here.
pub async fn run(
    listener: TcpListener,
    state: ProxyState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tasks = TaskTracker::new();
    let signals = Shutdown {
        drain: shutdown.child_token(),
        abort: CancellationToken::new(),
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "accepting clients");
    }
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let state = state.clone();
                let signals = signals.clone();
                tasks.spawn(async move {
                    state.metrics.clients_total.fetch_add(1, Ordering::Relaxed);
                    state.metrics.clients_active.fetch_add(1, Ordering::Relaxed);
                    let _active = ActiveGuard(Arc::clone(&state.metrics));
                    session::serve(stream, peer, state, signals).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep going.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
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

/// Keeps `clients_active` right even if a session task panics.
struct ActiveGuard(Arc<Metrics>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.clients_active.fetch_sub(1, Ordering::Relaxed);
    }
}
