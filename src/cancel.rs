//! The cancel-key registry: live sessions' BackendKeyData -> their
//! upstream server, so a CancelRequest (which arrives on a new connection)
//! finds its way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

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
