//! The registry of live client sessions, for the console's `SHOW CLIENTS`.
//!
//! A session registers once after its StartupMessage and holds the returned
//! [`ClientGuard`]; dropping the guard (however the session ends, panics
//! included) removes the entry. The hot path only touches atomics in the
//! entry the session already holds: no lock per statement.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::protocol::StartupMessage;

/// What a session is doing, as far as the proxy can tell cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Connected; no ReadyForQuery seen yet (or not tracked).
    Connected = 0,
    /// Between statements, outside a transaction.
    Idle = 1,
    /// A request is in flight.
    Active = 2,
    /// Between statements, inside a transaction block.
    InTransaction = 3,
    /// Inside a failed transaction block.
    InFailedTransaction = 4,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Connected => "connected",
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::InTransaction => "idle in transaction",
            ClientState::InFailedTransaction => "idle in transaction (aborted)",
        }
    }

    /// The state a ReadyForQuery status byte (I, T, E) stands for.
    pub fn from_ready_status(status: u8) -> ClientState {
        match status {
            b'T' => ClientState::InTransaction,
            b'E' => ClientState::InFailedTransaction,
            _ => ClientState::Idle,
        }
    }

    fn from_u8(v: u8) -> ClientState {
        match v {
            1 => ClientState::Idle,
            2 => ClientState::Active,
            3 => ClientState::InTransaction,
            4 => ClientState::InFailedTransaction,
            _ => ClientState::Connected,
        }
    }
}

/// Who a client says it is in its StartupMessage (fixed for a session):
/// what SHOW CLIENTS lists and what the unmapped-name report is keyed by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    /// The database name the client connected with (before routing).
    pub database: String,
    pub user: String,
    pub application_name: String,
}

impl ClientIdentity {
    pub fn of(startup: &StartupMessage) -> ClientIdentity {
        let text = |name| startup.get_str(name).unwrap_or_default().into_owned();
        ClientIdentity {
            database: startup.database().unwrap_or_default().into_owned(),
            user: text("user"),
            application_name: text("application_name"),
        }
    }
}

/// A live client: where it connects from, and who it is.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub address: SocketAddr,
    pub identity: ClientIdentity,
}

/// One live session.
#[derive(Debug)]
pub struct ClientEntry {
    pub info: ClientInfo,
    pub since: SystemTime,
    statements: AtomicU64,
    state: AtomicU8,
}

impl ClientEntry {
    /// One more Query or Parse from this client.
    pub fn count_statement(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub fn set_state(&self, state: ClientState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// Every live session, by registration order.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
}

impl ClientRegistry {
    /// Add a session; it stays listed while the guard lives.
    pub fn register(self: &Arc<Self>, info: ClientInfo) -> ClientGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(ClientEntry {
            info,
            since: SystemTime::now(),
            statements: AtomicU64::new(0),
            state: AtomicU8::new(ClientState::Connected as u8),
        });
        self.locked().insert(id, Arc::clone(&entry));
        ClientGuard {
            registry: Arc::clone(self),
            id,
            entry,
        }
    }

    /// The live sessions, oldest first.
    pub fn list(&self) -> Vec<Arc<ClientEntry>> {
        self.locked().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientEntry>>> {
        // A panic elsewhere while holding the lock leaves a valid map.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A session's registration; removes the entry when dropped.
#[derive(Debug)]
pub struct ClientGuard {
    registry: Arc<ClientRegistry>,
    id: u64,
    entry: Arc<ClientEntry>,
}

impl ClientGuard {
    /// The entry, for the session to count statements and set its state.
    pub fn entry(&self) -> &Arc<ClientEntry> {
        &self.entry
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.registry.locked().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: &str) -> ClientInfo {
        ClientInfo {
            address: "127.0.0.1:5000".parse().unwrap(),
            identity: ClientIdentity {
                user: user.into(),
                database: "heal7".into(),
                application_name: "app".into(),
            },
        }
    }

    #[test]
    fn sessions_are_listed_while_their_guard_lives() {
        let r = Arc::new(ClientRegistry::default());
        let a = r.register(info("a"));
        let b = r.register(info("b"));
        a.entry().count_statement();
        a.entry().set_state(ClientState::from_ready_status(b'T'));
        let list = r.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].info.identity.user, "a");
        assert_eq!(list[0].statements(), 1);
        assert_eq!(list[0].state().as_str(), "idle in transaction");
        assert_eq!(list[1].state(), ClientState::Connected);
        drop(a);
        assert_eq!(r.list()[0].info.identity.user, "b");
        drop(b);
        assert!(r.is_empty());
    }
}
