//! The named statements of transaction pooling, by server name: what one
//! server connection holds, and what any connection of a pool has
//! accepted (so the proxy can answer a Parse itself). Both bounded with
//! least-recently-used eviction (a tick per use and a scan for the oldest
//! when full: eviction is rare, and this keeps the crate free of an LRU
//! dependency for two small maps).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Statements prepared on one server connection, at most
/// [`SERVER_STATEMENTS_CAP`].
#[derive(Debug, Default)]
pub struct ServerStatementNames {
    /// foldhash: the keys are the proxy's own names (a SHA-256 digest of
    /// the statement), so no one can choose colliding ones, and SipHash
    /// was ~250 instructions per lookup (one per Bind).
    names: HashMap<Box<[u8]>, u64, foldhash::fast::RandomState>,
    tick: u64,
    /// Names evicted since the last batch, to close on the server.
    pub evicted: Vec<Box<[u8]>>,
    /// While lent in transaction mode: the pool's record of accepted
    /// statements, and the mapping generation of the client's transaction.
    pub pool: Option<(Arc<PoolStatements>, u64)>,
}

/// Statements one server connection keeps prepared.
pub const SERVER_STATEMENTS_CAP: usize = 512;

impl ServerStatementNames {
    pub fn contains(&mut self, name: &[u8]) -> bool {
        self.tick += 1;
        match self.names.get_mut(name) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    pub fn insert(&mut self, name: Box<[u8]>) {
        self.tick += 1;
        self.names.insert(name, self.tick);
        if self.names.len() > SERVER_STATEMENTS_CAP
            && let Some(oldest) = self
                .names
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| n.clone())
        {
            self.names.remove(&oldest);
            self.evicted.push(oldest);
        }
    }

    pub fn remove(&mut self, name: &[u8]) {
        self.names.remove(name);
    }

    pub fn clear(&mut self) {
        self.names.clear();
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The server accepted statement `name` (its ParseComplete), or has it
    /// already: the pool knows it from now on. `client`: the client's text
    /// and parameter types it was sent for, when known.
    pub fn accepted(&self, name: &[u8], client: Option<(&[u8], &[u8])>) {
        if let Some((pool, generation)) = &self.pool {
            pool.accepted(*generation, name, client);
        }
    }

    /// The server described statement `name`: its ParameterDescription
    /// and RowDescription (or NoData) frames.
    pub fn described(&self, name: &[u8], frames: Bytes) {
        if let Some((pool, generation)) = &self.pool {
            pool.described(*generation, name, frames);
        }
    }
}

/// Accepted statements a pool remembers, at most.
pub const POOL_STATEMENTS_CAP: usize = 4096;

/// The statements some server connection of one pool has accepted (by
/// server name: a digest of the sent text and parameter types), each with
/// the server's answer to a Describe of it once one was seen, under one
/// mapping generation (a newer generation starts afresh). A client's Parse
/// (and Describe) + Sync of such a statement between transactions can be
/// answered without a server connection.
#[derive(Debug, Default)]
pub struct PoolStatements {
    known: Mutex<Known>,
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Known {
    generation: u64,
    tick: u64,
    statements: HashMap<Box<[u8]>, Accepted>,
    /// Hashes of the client texts (and parameter types) of accepted
    /// statements: a cheap test before a text is rewritten to find its
    /// server name.
    texts: HashMap<u64, u64>,
}

#[derive(Debug)]
struct Accepted {
    tick: u64,
    /// ParameterDescription + RowDescription/NoData, as a server sent them.
    description: Option<Bytes>,
}

/// What the pool knows of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownStatement {
    pub description: Option<Bytes>,
}

impl PoolStatements {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The generation's record, started afresh for a newer generation;
    /// `None` for an older one (a transaction that began before a reload).
    fn at(&self, generation: u64) -> Option<std::sync::MutexGuard<'_, Known>> {
        let mut known = self.known();
        if generation > known.generation {
            *known = Known {
                generation,
                ..Known::default()
            };
        }
        (generation == known.generation).then_some(known)
    }

    fn text_key(&self, text: &[u8], param_types: &[u8]) -> u64 {
        self.hasher.hash_one((text, param_types))
    }

    pub fn accepted(&self, generation: u64, name: &[u8], client: Option<(&[u8], &[u8])>) {
        let key = client.map(|(text, types)| self.text_key(text, types));
        let Some(mut known) = self.at(generation) else {
            return;
        };
        known.tick += 1;
        let tick = known.tick;
        match known.statements.get_mut(name) {
            Some(s) => s.tick = tick,
            None => {
                known.statements.insert(
                    name.into(),
                    Accepted {
                        tick,
                        description: None,
                    },
                );
                if known.statements.len() > POOL_STATEMENTS_CAP
                    && let Some(oldest) = known
                        .statements
                        .iter()
                        .min_by_key(|(_, s)| s.tick)
                        .map(|(n, _)| n.clone())
                {
                    known.statements.remove(&oldest);
                }
            }
        }
        if let Some(key) = key
            && known.texts.insert(key, tick).is_none()
            && known.texts.len() > POOL_STATEMENTS_CAP
            && let Some(oldest) = known.texts.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
        {
            known.texts.remove(&oldest);
        }
    }

    pub fn described(&self, generation: u64, name: &[u8], frames: Bytes) {
        if let Some(mut known) = self.at(generation)
            && let Some(s) = known.statements.get_mut(name)
        {
            s.description = Some(frames);
        }
    }

    /// Whether a statement with this client text and parameter types was
    /// accepted under `generation` (a hint: the text's server name still
    /// has to be looked up).
    pub fn seen_text(&self, generation: u64, text: &[u8], param_types: &[u8]) -> bool {
        let key = self.text_key(text, param_types);
        let known = self.known();
        known.generation == generation && known.texts.contains_key(&key)
    }

    /// Statement `name`, if a server accepted it under `generation`.
    pub fn lookup(&self, generation: u64, name: &[u8]) -> Option<KnownStatement> {
        let mut known = self.known();
        if known.generation != generation {
            return None;
        }
        known.tick += 1;
        let tick = known.tick;
        let s = known.statements.get_mut(name)?;
        s.tick = tick;
        Some(KnownStatement {
            description: s.description.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.known().statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_evicts_the_least_recently_used() {
        let mut s = ServerStatementNames::default();
        for i in 0..SERVER_STATEMENTS_CAP + 1 {
            s.insert(format!("s{i}").into_bytes().into());
            if i == 10 {
                assert!(s.contains(b"s0"));
            }
        }
        assert_eq!(s.len(), SERVER_STATEMENTS_CAP);
        assert_eq!(s.evicted, vec![Box::from(&b"s1"[..])]);
        assert!(s.contains(b"s0"));
    }

    #[test]
    fn the_pool_knows_a_statement_under_its_generation_only() {
        let pool = PoolStatements::default();
        pool.accepted(3, b"heal7_a", Some((b"SELECT 1", b"\0\0")));
        assert!(pool.seen_text(3, b"SELECT 1", b"\0\0"));
        assert!(!pool.seen_text(3, b"SELECT 2", b"\0\0"));
        assert_eq!(
            pool.lookup(3, b"heal7_a"),
            Some(KnownStatement { description: None })
        );
        pool.described(3, b"heal7_a", Bytes::from_static(b"t..."));
        assert_eq!(
            pool.lookup(3, b"heal7_a").unwrap().description.as_deref(),
            Some(&b"t..."[..])
        );
        // An older transaction's answer is not kept; a newer generation
        // starts afresh.
        pool.accepted(2, b"heal7_b", None);
        assert_eq!(pool.lookup(3, b"heal7_b"), None);
        pool.accepted(4, b"heal7_c", None);
        assert_eq!(pool.lookup(4, b"heal7_a"), None);
        assert_eq!(pool.lookup(3, b"heal7_c"), None);
        assert!(!pool.seen_text(4, b"SELECT 1", b"\0\0"));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn the_pool_evicts_the_least_recently_used_statement() {
        let pool = PoolStatements::default();
        for i in 0..POOL_STATEMENTS_CAP + 1 {
            pool.accepted(1, format!("s{i}").as_bytes(), None);
            if i == 10 {
                assert!(pool.lookup(1, b"s0").is_some());
            }
        }
        assert_eq!(pool.len(), POOL_STATEMENTS_CAP);
        assert!(pool.lookup(1, b"s0").is_some());
        assert!(pool.lookup(1, b"s1").is_none());
    }
}
