//! The accept loop (to be written).
//!
//! CONTRACT used by the CLI and the integration tests:
//! `pub async fn run(listener: tokio::net::TcpListener, state: ProxyState, shutdown: CancellationToken) -> std::io::Result<()>`

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::metrics::Metrics;

/// Everything a session needs that outlives it. Cheap to clone.
#[derive(Clone)]
pub struct ProxyState {
    /// The live config; a reload swaps it (a later issue).
    pub config: Arc<ArcSwap<Config>>,
    pub metrics: Arc<Metrics>,
}

impl ProxyState {
    pub fn new(config: Config) -> Self {
        ProxyState {
            config: Arc::new(ArcSwap::from_pointee(config)),
            metrics: Arc::new(Metrics::default()),
        }
    }
}

pub async fn run(
    listener: tokio::net::TcpListener,
    state: ProxyState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let _ = (listener, state);
    shutdown.cancelled().await;
    Ok(())
}
