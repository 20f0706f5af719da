//! The named statements one server connection holds under transaction
//! pooling (server names), bounded with least-recently-used eviction.

use std::collections::HashMap;

/// Statements prepared on one server connection, at most
/// [`SERVER_STATEMENTS_CAP`].
#[derive(Debug, Default)]
pub struct ServerStatementNames {
    names: HashMap<Box<[u8]>, u64>,
    tick: u64,
    /// Names evicted since the last batch, to close on the server.
    pub evicted: Vec<Box<[u8]>>,
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
}
