//! The state shared by every connection handler: cheap to clone, built once
//! by the server (or a test) and passed down, never global.

use std::sync::Arc;

use crate::cancel::CancelKeys;
use crate::clients::ClientRegistry;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::qualify::Rewriter;
use crate::reload::ConfigStore;
use crate::unmapped::UnmappedReport;
use crate::workers::Workers;

/// Everything a session needs that outlives it. Cheap to clone.
#[derive(Clone)]
pub struct ProxyState {
    /// The live config; a reload swaps it and bumps its generation.
    pub config: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    /// Keys handed to live sessions' clients -> their upstream server.
    pub cancel_keys: Arc<CancelKeys>,
    /// The rewriter sessions call: [`crate::rewrite::rewrite_sql`]; relay
    /// tests substitute a scripted one to drive refusals and position
    /// correction without depending on the real rewriter's rules.
    pub rewriter: Rewriter,
    /// Bare names clients use that the map does not list.
    pub unmapped: Arc<UnmappedReport>,
    /// Live client sessions, for the console's SHOW CLIENTS.
    pub clients: Arc<ClientRegistry>,
    /// The event loops sessions run on.
    pub workers: Workers,
    /// Server connection pools of databases with `pool.mode` session or
    /// transaction.
    pub pools: Arc<Pools>,
}

impl ProxyState {
    /// State around a config built in memory (reloads are refused).
    pub fn new(config: Config) -> Self {
        Self::with_store(Arc::new(ConfigStore::in_memory(config)))
    }

    /// State around a live, reloadable config.
    pub fn with_store(config: Arc<ConfigStore>) -> Self {
        // Fixed at start, as every key handed out carries it.
        let peer_id = config.load().start.peering.peer_id;
        ProxyState {
            config,
            metrics: Arc::new(Metrics::default()),
            cancel_keys: Arc::new(CancelKeys::new(peer_id)),
            rewriter: crate::rewrite::rewrite_sql,
            unmapped: Arc::new(UnmappedReport::default()),
            clients: Arc::new(ClientRegistry::default()),
            workers: Workers::current(),
            pools: Arc::new(Pools::default()),
        }
    }
}
