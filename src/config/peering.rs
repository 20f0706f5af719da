//! Several instances of the proxy: `proxy.reuse_port`, `proxy.peer_id` and
//! `proxy.peers`, validated into [`Peering`]. The peer id and the admin
//! address may come from the command line or the environment instead of
//! the file ([`Overrides`]), so replicas can share one file.

use std::collections::BTreeMap;

use super::raw::RawProxy;

/// The largest peer id: the id takes 4 bits of the cancel secret the proxy
/// hands clients (see `crate::cancel`).
pub const MAX_PEER_ID: u8 = 15;

/// Settings given outside the file, which win over it (at start and on
/// every reload).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--peer-id` / `HEAL7_PEER_ID`.
    pub peer_id: Option<u32>,
    /// `--admin-listen` / `HEAL7_ADMIN_LISTEN`: processes sharing one file
    /// on one host each need an admin port of their own.
    pub admin_listen: Option<String>,
}

impl Overrides {
    pub(super) fn apply(&self, proxy: &mut RawProxy) {
        if let Some(id) = self.peer_id {
            proxy.peer_id = Some(id);
        }
        if let Some(addr) = &self.admin_listen {
            proxy.admin_listen = Some(addr.clone());
        }
    }
}

/// How this instance shares its port and its cancel keys with others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peering {
    /// Bind `listen` with SO_REUSEPORT: several processes on one host
    /// share the port, the kernel spreads connections over them.
    pub reuse_port: bool,
    /// This instance's id, carried in every cancel key it hands out;
    /// `None`: the server's own keys are handed out unchanged.
    pub peer_id: Option<u8>,
    /// Peer id -> the address its forwarded cancel requests go to (this
    /// instance's own entry included).
    pub peers: BTreeMap<u8, String>,
}

impl Peering {
    /// The address this instance listens on for cancel requests forwarded
    /// by peers, besides `listen`: its own `peers` entry when `listen` is
    /// shared through reuse_port (a request sent there could land on any
    /// of the processes).
    pub fn cancel_listen(&self) -> Option<&str> {
        if !self.reuse_port {
            return None;
        }
        self.peers.get(&self.peer_id?).map(String::as_str)
    }

    /// Where to forward a cancel request whose key belongs to `peer`.
    pub fn address_of(&self, peer: u8) -> Option<&str> {
        self.peers.get(&peer).map(String::as_str)
    }
}

/// Validate the peering settings; errors are (key, message).
pub(super) fn peering(proxy: &RawProxy) -> Result<Peering, (String, String)> {
    let id_key = "proxy.peer_id";
    let in_range = |id: u32| u8::try_from(id).ok().filter(|id| *id <= MAX_PEER_ID);
    let peer_id = match proxy.peer_id {
        None => None,
        Some(id) => Some(in_range(id).ok_or_else(|| {
            (
                id_key.to_owned(),
                format!("{id} is outside 0..={MAX_PEER_ID} (set in the file, by --peer-id or by HEAL7_PEER_ID)"),
            )
        })?),
    };
    let mut peers = BTreeMap::new();
    for (id, addr) in &proxy.peers {
        let key = format!("proxy.peers.{id}");
        let id = in_range(*id).ok_or_else(|| {
            (
                key.clone(),
                format!("peer id {id} is outside 0..={MAX_PEER_ID}"),
            )
        })?;
        if !super::build::looks_like_host_port(addr) {
            return Err((key, format!("`{addr}` is not HOST:PORT")));
        }
        peers.insert(id, addr.clone());
    }
    if !peers.is_empty() {
        let listed = || {
            peers
                .keys()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(own) = peer_id else {
            return Err((
                id_key.to_owned(),
                format!(
                    "proxy.peers is set ({}), so this instance needs its own id: set proxy.peer_id, --peer-id or HEAL7_PEER_ID",
                    listed()
                ),
            ));
        };
        let Some(own_addr) = peers.get(&own) else {
            return Err((
                id_key.to_owned(),
                format!(
                    "{own} is not a key of proxy.peers ({}): list every instance, this one included",
                    listed()
                ),
            ));
        };
        if proxy.reuse_port && *own_addr == proxy.listen {
            return Err((
                format!("proxy.peers.{own}"),
                format!(
                    "with reuse_port, `{own_addr}` (proxy.listen) is shared by every process on this host, so a cancel forwarded there may land on any of them: give each instance an address of its own here (it listens there for peers' cancel requests)"
                ),
            ));
        }
    }
    Ok(Peering {
        reuse_port: proxy.reuse_port,
        peer_id,
        peers,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};

    fn load(proxy: &str, overrides: Overrides) -> Result<Config, String> {
        let text = format!("proxy: {proxy}\ndatabases: {{a: {{}}}}\n");
        Config::from_yaml_with(&text, "t", &overrides).map_err(|e| e.to_string())
    }

    fn err(proxy: &str) -> String {
        load(proxy, Overrides::default()).unwrap_err()
    }

    #[test]
    fn peers_and_peer_id_load_and_the_override_wins() {
        let proxy = "{peer_id: 1, peers: {1: \"10.0.0.1:5432\", 2: \"proxy-2.proxy:5432\"}}";
        let c = load(proxy, Overrides::default()).unwrap();
        let p = &c.start.peering;
        assert_eq!(p.peer_id, Some(1));
        assert_eq!(p.address_of(2), Some("proxy-2.proxy:5432"));
        assert_eq!(
            p.cancel_listen(),
            None,
            "no extra listener without reuse_port"
        );
        let c = load(
            proxy,
            Overrides {
                peer_id: Some(2),
                admin_listen: Some("127.0.0.1:9931".into()),
            },
        )
        .unwrap();
        assert_eq!(c.start.peering.peer_id, Some(2));
        assert_eq!(c.start.admin_listen.as_deref(), Some("127.0.0.1:9931"));
        // The override is validated like the file's value.
        let three = Overrides {
            peer_id: Some(3),
            ..Overrides::default()
        };
        let e = load(proxy, three).unwrap_err();
        assert!(
            e.contains("proxy.peer_id: 3 is not a key of proxy.peers (1, 2)"),
            "{e}"
        );
    }

    #[test]
    fn bad_peering_is_refused_with_its_key() {
        let e = err("{peer_id: 16}");
        assert!(e.contains("proxy.peer_id: 16 is outside 0..=15"), "{e}");
        let e = err("{peers: {1: \"a:1\"}}");
        assert!(e.contains("proxy.peer_id: proxy.peers is set (1)"), "{e}");
        let e = err("{peer_id: 1, peers: {1: \"a:1\", 99: \"b:1\"}}");
        assert!(e.contains("proxy.peers.99: peer id 99 is outside"), "{e}");
        let e = err("{peer_id: 1, peers: {1: nowhere}}");
        assert!(
            e.contains("proxy.peers.1: `nowhere` is not HOST:PORT"),
            "{e}"
        );
        let e = err(
            "{listen: \"127.0.0.1:6432\", reuse_port: true, peer_id: 1, peers: {1: \"127.0.0.1:6432\"}}",
        );
        assert!(e.contains("proxy.peers.1: with reuse_port"), "{e}");
    }

    #[test]
    fn with_reuse_port_the_own_peers_entry_is_listened_on() {
        let c = load(
            "{reuse_port: true, peer_id: 2, peers: {1: \"127.0.0.1:7001\", 2: \"127.0.0.1:7002\"}}",
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.start.peering.cancel_listen(), Some("127.0.0.1:7002"));
        // A peer id alone (no peers) is allowed: keys carry it, nothing is
        // forwarded.
        let c = load("{peer_id: 0}", Overrides::default()).unwrap();
        assert_eq!(c.start.peering.peer_id, Some(0));
        assert_eq!(c.start.peering.cancel_listen(), None);
    }
}
