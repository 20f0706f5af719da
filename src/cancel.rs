//! The cancel-key registry: the BackendKeyData each live session's client
//! holds -> the server that must get the cancel, so a CancelRequest (which
//! arrives on a new connection) finds its way. In the 1:1 relay the client
//! holds its server's own key; a pooled client holds a key the proxy made,
//! mapped to whichever server connection it has at the moment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Where a cancel goes: the server's address and its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelTarget {
    pub addr: SocketAddr,
    pub key: (i32, i32),
}

#[derive(Debug, Default)]
pub struct CancelKeys {
    keys: Mutex<HashMap<(i32, i32), CancelTarget>>,
}

impl CancelKeys {
    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), CancelTarget>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client holding the server's own key (the 1:1 relay).
    pub fn register(&self, key: (i32, i32), upstream: SocketAddr) {
        self.register_target(
            key,
            CancelTarget {
                addr: upstream,
                key,
            },
        );
    }

    pub fn register_target(&self, key: (i32, i32), target: CancelTarget) {
        self.locked().insert(key, target);
    }

    /// A fresh key no live session holds, for a pooled client (the server
    /// behind it changes; see [`CancelKeys::register_target`]).
    pub fn issue(&self, target: Option<CancelTarget>) -> (i32, i32) {
        use rand::Rng;
        let mut keys = self.locked();
        loop {
            let mut raw = [0u8; 8];
            rand::rng().fill_bytes(&mut raw);
            // A positive pid, as a server's.
            let pid = i32::from_be_bytes([raw[0] & 0x7f, raw[1], raw[2], raw[3]]).max(1);
            let key = (pid, i32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]));
            if let std::collections::hash_map::Entry::Vacant(e) = keys.entry(key) {
                if let Some(t) = target {
                    e.insert(t);
                }
                return key;
            }
        }
    }

    /// Remove `key`, unless another session has since registered it with
    /// another server.
    pub fn remove(&self, key: (i32, i32), upstream: SocketAddr) {
        let mut keys = self.locked();
        if keys.get(&key).is_some_and(|t| t.addr == upstream) {
            keys.remove(&key);
        }
    }

    /// Remove a key the proxy issued, whatever it points to.
    pub fn forget(&self, key: (i32, i32)) {
        self.locked().remove(&key);
    }

    pub fn lookup(&self, key: (i32, i32)) -> Option<CancelTarget> {
        self.locked().get(&key).copied()
    }

    pub fn len(&self) -> usize {
        self.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
