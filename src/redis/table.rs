//! The server's command table, shared by every Redis client: read with
//! `COMMAND` at start and again after each config reload (the first command
//! that sees a newer generation reads it), so key positions follow the
//! server's own version.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;

use super::upstream::{Setup, Upstream, UpstreamError};
use crate::config::RedisConfig;
use crate::keyspace::{CommandTable, TableError};
use crate::metrics::Metrics;
use crate::resp::Value;

/// The table and the config generation it was read for.
pub struct LoadedTable {
    pub table: CommandTable,
    pub generation: u64,
}

/// Shared by the Redis clients of one server.
#[derive(Default)]
pub struct CommandTables {
    current: ArcSwapOption<LoadedTable>,
    /// One read at a time; the others wait for its result.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableReadError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("bad COMMAND reply: {0}")]
    Protocol(#[from] crate::resp::RespError),
}

impl CommandTables {
    pub fn current(&self) -> Option<Arc<LoadedTable>> {
        self.current.load_full()
    }

    /// The table for config `generation`: the one in hand when it is that
    /// recent, else a fresh read (on failure the older table stays in use).
    pub async fn for_generation(
        &self,
        generation: u64,
        config: &RedisConfig,
        timeout: Duration,
        metrics: &Metrics,
    ) -> Result<Arc<LoadedTable>, TableReadError> {
        if let Some(t) = self.current.load_full()
            && t.generation >= generation
        {
            return Ok(t);
        }
        let _one = self.reading.lock().await;
        let old = self.current.load_full();
        if let Some(t) = &old
            && t.generation >= generation
        {
            return Ok(Arc::clone(t));
        }
        metrics
            .redis
            .command_table_loads
            .fetch_add(1, Ordering::Relaxed);
        match read_table(config, timeout).await {
            Ok(table) => {
                tracing::info!(
                    commands = table.len(),
                    source = table.source.as_str(),
                    generation,
                    "redis command table read"
                );
                let loaded = Arc::new(LoadedTable { table, generation });
                self.current.store(Some(Arc::clone(&loaded)));
                Ok(loaded)
            }
            Err(e) => {
                metrics
                    .redis
                    .command_table_failures
                    .fetch_add(1, Ordering::Relaxed);
                match old {
                    Some(t) => {
                        tracing::warn!(error = %e, "cannot re-read the redis command table; keeping the one in use");
                        // Not again for this generation: no read per command.
                        let kept = Arc::new(LoadedTable {
                            table: t.table.clone(),
                            generation,
                        });
                        self.current.store(Some(Arc::clone(&kept)));
                        Ok(kept)
                    }
                    None => {
                        tracing::warn!(error = %e, "cannot read the redis command table");
                        Err(e)
                    }
                }
            }
        }
    }
}

/// `COMMAND` on a connection of its own.
async fn read_table(
    config: &RedisConfig,
    timeout: Duration,
) -> Result<CommandTable, TableReadError> {
    let mut up = Upstream::connect(Setup {
        upstream: &config.upstream,
        client_commands: &[],
        db: 0,
        timeout,
        // The whole table is ~200 KB on Redis 7.
        max_reply: 64 << 20,
    })
    .await?;
    let replies = tokio::time::timeout(timeout, up.call(&[vec![Bytes::from_static(b"COMMAND")]]))
        .await
        .map_err(|_| UpstreamError::Timeout {
            addr: crate::config::host_port(&config.upstream.host, config.upstream.port),
            ms: timeout.as_millis(),
        })??;
    let value = Value::decode(&replies[0])?;
    Ok(CommandTable::from_command_reply(&value)?)
}
