//! The cancel-key registry: the BackendKeyData each live session's client
//! holds -> the server that must get the cancel and the server's own key,
//! so a CancelRequest (which arrives on a new connection) finds its way.
//! In the 1:1 relay the client holds its server's own key; a pooled client
//! holds a key the proxy made, mapped to whichever server connection it
//! has at the moment.
//!
//! Without a peer id the 1:1 relay hands out the server's key as is.
//! With one (several instances behind a balancer, PgBouncer's peering
//! model) the client gets the server's pid and a secret of the proxy's own
//! that carries the peer id, laid out as
//! `[forwarded: 1 bit][peer id: 4 bits][random: 27 bits]`. A request for
//! another peer's key is sent on to that peer with the forwarded bit set;
//! a request with the bit set is never sent on again, so two instances
//! whose `peers` disagree cannot bounce one between them.
//!
//! The pid stays the server's: clients compare it with a notification's
//! sender pid (to skip their own NOTIFYs) and with `pg_backend_pid()`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::config::MAX_PEER_ID;

/// Set on a cancel request a peer forwarded.
const FORWARDED: u32 = 1 << 31;
/// The peer id's place in the secret.
const PEER_SHIFT: u32 = 27;
/// Bits of the secret left random.
const RANDOM_BITS: u32 = (1 << PEER_SHIFT) - 1;
const _: () = assert!((MAX_PEER_ID as u32) < (1 << (31 - PEER_SHIFT)));

/// Where a cancel goes: the server's address and its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelTarget {
    pub addr: SocketAddr,
    pub key: (i32, i32),
}

/// What to do with a CancelRequest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRoute {
    /// A key of this instance: send the server's own key to the server.
    Upstream(CancelTarget),
    /// Another peer's key, from a client: send the request to that peer
    /// with this secret (the forwarded bit set).
    Peer { peer: u8, secret: i32 },
    /// A key this instance does not hold (a finished session, a guess).
    UnknownKey,
    /// A peer forwarded a key that is not this instance's: the instances'
    /// `peers` disagree. Dropped, never sent on.
    NotOurs { peer: u8 },
}

/// Where a transaction-pooled client's cancel goes: the server of its
/// current transaction, none between transactions. The client's session
/// sets it at each transaction; the key stays registered for the session.
#[derive(Debug, Default)]
pub struct PooledTarget(Mutex<Option<CancelTarget>>);

impl PooledTarget {
    pub fn set(&self, target: Option<CancelTarget>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }

    fn get(&self) -> Option<CancelTarget> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a client-held key points to.
#[derive(Debug, Clone)]
enum Held {
    Fixed(CancelTarget),
    Pooled(Arc<PooledTarget>),
}

impl Held {
    fn target(&self) -> Option<CancelTarget> {
        match self {
            Held::Fixed(t) => Some(*t),
            Held::Pooled(p) => p.get(),
        }
    }
}

type KeyMap = HashMap<(i32, i32), Held, foldhash::fast::RandomState>;

/// Client-held key -> where its cancel goes, for every live session.
#[derive(Debug, Default)]
pub struct CancelKeys {
    /// This instance's peer id; `None`: the server's keys are handed out.
    peer_id: Option<u8>,
    /// foldhash, not SipHash: a transaction-pooled client's key is
    /// registered and forgotten at every transaction. The keys are the
    /// proxy's own random draws, so a client cannot choose colliding ones.
    keys: Mutex<KeyMap>,
}

impl CancelKeys {
    /// A registry that hands out keys carrying `peer_id` (at most
    /// [`MAX_PEER_ID`]), or the server's own keys without one.
    pub fn new(peer_id: Option<u8>) -> CancelKeys {
        assert!(peer_id.is_none_or(|id| id <= MAX_PEER_ID));
        CancelKeys {
            peer_id,
            keys: Mutex::default(),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, KeyMap> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The 1:1 relay: register a session whose server sent `server_key`;
    /// returns the key to hand its client (`server_key` itself without a
    /// peer id; with one, the server's pid and a secret of the proxy's).
    pub fn register(&self, server_key: (i32, i32), upstream: SocketAddr) -> (i32, i32) {
        let target = CancelTarget {
            addr: upstream,
            key: server_key,
        };
        if self.peer_id.is_none() {
            self.register_target(server_key, target);
            return server_key;
        }
        self.fresh(|| server_key.0, Some(Held::Fixed(target)))
    }

    pub fn register_target(&self, key: (i32, i32), target: CancelTarget) {
        self.locked().insert(key, Held::Fixed(target));
    }

    /// A fresh key for a transaction-pooled client, whose server changes
    /// with each transaction: set the returned target at each one (no
    /// registry lock, no hashing per transaction).
    pub fn issue_pooled(&self) -> ((i32, i32), Arc<PooledTarget>) {
        let target = Arc::new(PooledTarget::default());
        let key = self.fresh(
            || (rand::random::<u32>() >> 1).max(1) as i32,
            Some(Held::Pooled(Arc::clone(&target))),
        );
        (key, target)
    }

    /// A fresh key no live session holds, for a pooled client (the server
    /// behind it changes; see [`CancelKeys::register_target`]).
    pub fn issue(&self, target: Option<CancelTarget>) -> (i32, i32) {
        // A positive pid, as a server's.
        self.fresh(
            || (rand::random::<u32>() >> 1).max(1) as i32,
            target.map(Held::Fixed),
        )
    }

    /// A key no live session holds: `pid()`'s pid and a random secret
    /// (carrying the peer id when there is one), registered to `target`.
    fn fresh(&self, pid: impl Fn() -> i32, target: Option<Held>) -> (i32, i32) {
        let mut keys = self.locked();
        loop {
            let random = rand::random::<u32>();
            let secret = match self.peer_id {
                Some(peer) => ((u32::from(peer) << PEER_SHIFT) | (random & RANDOM_BITS)) as i32,
                None => random as i32,
            };
            // Two live sessions with one pid (two upstreams) and the same
            // random bits: draw again rather than steal the key.
            if let Entry::Vacant(slot) = keys.entry((pid(), secret)) {
                let key = *slot.key();
                if let Some(t) = target {
                    slot.insert(t);
                }
                return key;
            }
        }
    }

    /// Remove the client-held `key`, unless another session has since
    /// registered it with another server.
    pub fn remove(&self, key: (i32, i32), upstream: SocketAddr) {
        let mut keys = self.locked();
        if keys
            .get(&key)
            .is_some_and(|t| matches!(t, Held::Fixed(t) if t.addr == upstream))
        {
            keys.remove(&key);
        }
    }

    /// Remove a key the proxy issued, whatever it points to.
    pub fn forget(&self, key: (i32, i32)) {
        self.locked().remove(&key);
    }

    pub fn lookup(&self, key: (i32, i32)) -> Option<CancelTarget> {
        self.locked().get(&key).and_then(Held::target)
    }

    /// Where a CancelRequest carrying (pid, secret) goes.
    pub fn route(&self, pid: i32, secret: i32) -> CancelRoute {
        let local = |secret: i32| match self.lookup((pid, secret)) {
            Some(t) => CancelRoute::Upstream(t),
            None => CancelRoute::UnknownKey,
        };
        let Some(own) = self.peer_id else {
            return local(secret);
        };
        let bits = secret as u32;
        let forwarded = bits & FORWARDED != 0;
        let owner = ((bits & !FORWARDED) >> PEER_SHIFT) as u8;
        match (owner == own, forwarded) {
            (true, _) => local((bits & !FORWARDED) as i32),
            (false, true) => CancelRoute::NotOurs { peer: owner },
            (false, false) => CancelRoute::Peer {
                peer: owner,
                secret: (bits | FORWARDED) as i32,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The server at `port` whose own key is (42, 7).
    fn target(port: u16) -> CancelTarget {
        CancelTarget {
            addr: addr(port),
            key: (42, 7),
        }
    }

    #[test]
    fn without_a_peer_id_the_servers_key_is_handed_out() {
        let keys = CancelKeys::new(None);
        assert_eq!(keys.register((42, 7), addr(5432)), (42, 7));
        assert_eq!(keys.route(42, 7), CancelRoute::Upstream(target(5432)));
        assert_eq!(keys.route(42, 8), CancelRoute::UnknownKey);
        keys.remove((42, 7), addr(5432));
        assert!(keys.is_empty());
    }

    #[test]
    fn a_peer_id_is_carried_in_the_secret_and_the_pid_kept() {
        let keys = CancelKeys::new(Some(5));
        let (pid, secret) = keys.register((42, 7), addr(5432));
        assert_eq!(pid, 42, "the server's pid is kept");
        assert_ne!(secret, 7, "the server's secret never reaches the client");
        assert_eq!((secret as u32) >> PEER_SHIFT, 5);
        assert_eq!(keys.route(pid, secret), CancelRoute::Upstream(target(5432)));
        // A peer forwarding our own key back (forwarded bit set) is served.
        assert_eq!(
            keys.route(pid, (secret as u32 | FORWARDED) as i32),
            keys.route(pid, secret)
        );
        assert_eq!(keys.route(pid, secret ^ 1), CancelRoute::UnknownKey);
    }

    #[test]
    fn another_peers_key_goes_to_that_peer_once() {
        let keys = CancelKeys::new(Some(1));
        let theirs = CancelKeys::new(Some(2));
        let (pid, secret) = theirs.register((42, 7), addr(5432));
        let CancelRoute::Peer { peer, secret: sent } = keys.route(pid, secret) else {
            panic!("{:?}", keys.route(pid, secret));
        };
        assert_eq!(peer, 2);
        // The owner serves the forwarded request...
        assert_eq!(theirs.route(pid, sent), CancelRoute::Upstream(target(5432)));
        // ...and an instance that does not own it never sends it on.
        assert_eq!(keys.route(pid, sent), CancelRoute::NotOurs { peer: 2 });
    }

    #[test]
    fn pooled_keys_carry_the_peer_id_too() {
        let keys = CancelKeys::new(Some(9));
        let (pid, secret) = keys.issue(Some(target(5432)));
        assert!(pid > 0);
        assert_eq!((secret as u32) >> PEER_SHIFT, 9);
        assert_eq!(keys.route(pid, secret), CancelRoute::Upstream(target(5432)));
        keys.forget((pid, secret));
        assert!(keys.is_empty());
        // Without a peer id a pooled key is random all through.
        let plain = CancelKeys::new(None);
        let key = plain.issue(None);
        assert!(key.0 > 0);
        assert!(
            plain.is_empty(),
            "issued without a target: nothing registered"
        );
    }

    #[test]
    fn keys_stay_distinct_and_removal_is_per_session() {
        let keys = CancelKeys::new(Some(15));
        let a = keys.register((42, 7), addr(1));
        let b = keys.register((42, 7), addr(2));
        assert_ne!(a, b);
        assert_eq!(keys.len(), 2);
        keys.remove(a, addr(2));
        assert_eq!(
            keys.len(),
            2,
            "another session's upstream does not remove it"
        );
        keys.remove(a, addr(1));
        assert_eq!(keys.len(), 1);
    }
}
