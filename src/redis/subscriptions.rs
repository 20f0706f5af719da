//! A translating pub/sub relay's view of the client's subscriptions.
//!
//! Most channels map one to one (`channels:` rules, `__keyspace@N__:key`).
//! A `__keyevent@N__:<event>` channel does not: its payload is a key name,
//! and the keys a client on database N sees live on N and on every
//! database its rules move keys to, so one client channel is one server
//! channel per such database ([`Namespaces::keyevent_dbs`]). The server
//! then confirms more (or, for a server channel that two client channels
//! share, fewer) subscriptions than the client asked for, with its own
//! counts. This tracker keeps the client's own set of channels and
//! patterns, sends each client channel as the server channels it needs
//! (reference-counted), and turns the server's confirmations back into
//! exactly one per client channel, in order, with the client's count.
//! Keyevent messages come back on the client's channel with the key under
//! the client's name, and only when that name reaches the key
//! ([`Namespaces::keyevent_key_back`]).
//!
//! Pure: requests and replies in, requests and replies out.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::keyspace::rules::{keyevent_channel, split_keyevent_channel};
use crate::keyspace::{Channels, Namespaces};
use crate::resp::{Args, Value};

/// Unsubscribed when a client's UNSUBSCRIBE changes nothing on the server
/// but still needs the server's confirmation at that point of the stream.
const NOOP_CHANNEL: &[u8] = b"__heal7-proxy:noop__";

/// What to make of the next subscribe-family confirmation of the server.
enum Expect {
    /// The client's confirmation: its channel name (`None`: the server's
    /// own, a bare UNSUBSCRIBE's null) and its subscription count.
    Emit { name: Option<Bytes>, count: usize },
    /// A server channel the client did not name: nothing to the client.
    Swallow,
}

pub(super) struct Subscriptions<'a> {
    channels_rules: &'a Channels,
    namespaces: &'a Namespaces,
    /// `unmatched: forward`: keys no rule matches are the client's too.
    unmatched_visible: bool,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
    /// Server channels (`false`) and patterns (`true`) subscribed, and how
    /// many client subscriptions need each.
    server: HashMap<(bool, Bytes), usize>,
    expected: VecDeque<Expect>,
}

impl<'a> Subscriptions<'a> {
    pub(super) fn new(
        channels_rules: &'a Channels,
        namespaces: &'a Namespaces,
        unmatched_visible: bool,
    ) -> Self {
        Subscriptions {
            channels_rules,
            namespaces,
            unmatched_visible,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            server: HashMap::new(),
            expected: VecDeque::new(),
        }
    }

    /// The request to send for the client's `args`.
    pub(super) fn request(&mut self, args: &Args) -> Args {
        let name = args
            .first()
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_default();
        let (subscribe, pattern) = match name.as_slice() {
            b"subscribe" => (true, false),
            b"psubscribe" => (true, true),
            b"unsubscribe" => (false, false),
            b"punsubscribe" => (false, true),
            b"reset" => {
                // The server drops every subscription (confirming none).
                self.channels.clear();
                self.patterns.clear();
                self.server.clear();
                return args.clone();
            }
            _ => return super::pubsub::forward(args, self.channels_rules, self.namespaces),
        };
        let mut names: Vec<Bytes> = args[1..].to_vec();
        if names.is_empty() {
            if subscribe {
                // The server's arity error.
                return args.clone();
            }
            let set = self.set(pattern);
            if set.is_empty() {
                // `[unsubscribe, nil, count]`.
                self.expected.push_back(Expect::Emit {
                    name: None,
                    count: self.count(),
                });
                return args.clone();
            }
            names = set.iter().cloned().collect();
            names.sort();
        }
        let mut out = vec![args[0].clone()];
        for name in names {
            let sent = if subscribe {
                self.subscribe(name.clone(), pattern)
            } else {
                self.unsubscribe(&name, pattern)
            };
            self.expected.push_back(Expect::Emit {
                name: Some(name),
                count: self.count(),
            });
            for _ in 1..sent.len() {
                self.expected.push_back(Expect::Swallow);
            }
            out.extend(sent);
        }
        out
    }

    fn set(&mut self, pattern: bool) -> &mut HashSet<Bytes> {
        if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        }
    }

    fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// The server channels (or patterns) a client channel needs, the one
    /// named as the client's database first.
    fn expand(&self, name: &[u8], pattern: bool) -> Vec<Bytes> {
        if let Some((db, event)) = split_keyevent_channel(name) {
            return self
                .namespaces
                .keyevent_dbs(db)
                .into_iter()
                .map(|d| Bytes::from(keyevent_channel(d, event)))
                .collect();
        }
        let mapped = self.namespaces.keyspace_channel(name, pattern).or_else(|| {
            if pattern {
                self.channels_rules.pattern(name)
            } else {
                self.channels_rules.forward(name)
            }
        });
        vec![mapped.map_or_else(|| Bytes::copy_from_slice(name), Bytes::from)]
    }

    /// The server names to subscribe for one client name (at least one:
    /// the client's confirmation hangs on the first).
    fn subscribe(&mut self, name: Bytes, pattern: bool) -> Vec<Bytes> {
        let wanted = self.expand(&name, pattern);
        let mut sent = Vec::new();
        if self.set(pattern).insert(name) {
            for w in &wanted {
                let refs = self.server.entry((pattern, w.clone())).or_insert(0);
                *refs += 1;
                if *refs == 1 {
                    sent.push(w.clone());
                }
            }
        }
        if sent.is_empty() {
            // Subscribed already: the server confirms again, changing
            // nothing.
            sent.push(wanted[0].clone());
        }
        sent
    }

    /// The server names to unsubscribe for one client name (at least one).
    fn unsubscribe(&mut self, name: &Bytes, pattern: bool) -> Vec<Bytes> {
        let wanted = self.expand(name, pattern);
        let mut sent = Vec::new();
        if self.set(pattern).remove(name) {
            for w in wanted.iter() {
                let key = (pattern, w.clone());
                if let Some(refs) = self.server.get_mut(&key) {
                    *refs -= 1;
                    if *refs == 0 {
                        self.server.remove(&key);
                        sent.push(w.clone());
                    }
                }
            }
        }
        if sent.is_empty() {
            // Nothing to drop on the server, or what there is still serves
            // another client name: a name subscribed by no one.
            let first = &wanted[0];
            sent.push(if self.server.contains_key(&(pattern, first.clone())) {
                Bytes::from_static(NOOP_CHANNEL)
            } else {
                first.clone()
            });
        }
        sent
    }

    /// What the client gets for one server message or confirmation
    /// (`None`: nothing).
    pub(super) fn reply(&mut self, message: Bytes) -> Option<Bytes> {
        let Ok(mut value) = Value::decode(&message) else {
            return Some(message);
        };
        let Some(items) = value.elements_mut() else {
            return Some(message);
        };
        let kind = items
            .first()
            .and_then(Value::as_bytes)
            .map(|k| k.to_ascii_lowercase())
            .unwrap_or_default();
        let changed = match kind.as_slice() {
            b"subscribe" | b"unsubscribe" | b"psubscribe" | b"punsubscribe" if items.len() == 3 => {
                match self.expected.pop_front() {
                    Some(Expect::Swallow) => return None,
                    Some(Expect::Emit { name, count }) => {
                        if let Some(name) = name {
                            items[1] = Value::Bulk(b'$', name);
                        }
                        items[2] = Value::Line(b':', Bytes::from(count.to_string()));
                        true
                    }
                    None => super::pubsub::back(&mut value, self.channels_rules, self.namespaces),
                }
            }
            b"message" if items.len() == 3 => match split_keyevent_channel(channel(&items[1])) {
                Some((db, event)) => {
                    let (client_db, key) = self.keyevent_key(db, &items[2])?;
                    let client_channel = Bytes::from(keyevent_channel(client_db, event));
                    if !self.channels.contains(&client_channel) {
                        return None;
                    }
                    items[1] = Value::Bulk(b'$', client_channel);
                    items[2] = Value::Bulk(b'$', key);
                    true
                }
                None => super::pubsub::back(&mut value, self.channels_rules, self.namespaces),
            },
            b"pmessage" if items.len() == 4 => {
                match (
                    split_keyevent_channel(channel(&items[1])),
                    split_keyevent_channel(channel(&items[2])),
                ) {
                    (Some((_, glob)), Some((db, event))) => {
                        let (client_db, key) = self.keyevent_key(db, &items[3])?;
                        let client_pattern = Bytes::from(keyevent_channel(client_db, glob));
                        if !self.patterns.contains(&client_pattern) {
                            return None;
                        }
                        let client_channel = Bytes::from(keyevent_channel(client_db, event));
                        items[1] = Value::Bulk(b'$', client_pattern);
                        items[2] = Value::Bulk(b'$', client_channel);
                        items[3] = Value::Bulk(b'$', key);
                        true
                    }
                    _ => super::pubsub::back(&mut value, self.channels_rules, self.namespaces),
                }
            }
            _ => super::pubsub::back(&mut value, self.channels_rules, self.namespaces),
        };
        if !changed {
            return Some(message);
        }
        let mut out = BytesMut::with_capacity(message.len() + 16);
        value.encode(&mut out);
        Some(out.freeze())
    }

    /// A keyevent payload's client database and key name.
    fn keyevent_key(&self, server_db: u16, payload: &Value) -> Option<(u16, Bytes)> {
        let key = payload.as_bytes()?;
        let (db, name) =
            self.namespaces
                .keyevent_key_back(server_db, key, self.unmatched_visible)?;
        Some((db, Bytes::from(name)))
    }
}

fn channel(v: &Value) -> &[u8] {
    v.as_bytes().map(|b| b.as_ref()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::Rule;

    fn rules() -> (Channels, Namespaces) {
        let rule = |from: &str, from_db, to: &str, to_db| Rule {
            from: from.into(),
            from_db,
            to: to.into(),
            to_db,
        };
        (
            Channels::new(vec![(b"events:".to_vec(), b"shared:events:".to_vec())]).unwrap(),
            Namespaces::new(vec![
                rule("saju:", 0, "saju_service:", 1),
                rule("session:", 0, "shared_common:session:", 0),
            ])
            .unwrap(),
        )
    }

    fn args(words: &str) -> Args {
        words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn words(a: &Args) -> String {
        a.iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A server push as RESP2 bulk strings (`:n` for a trailing number).
    fn push(parts: &[&str]) -> Bytes {
        let items = parts
            .iter()
            .map(|p| match p.strip_prefix(':') {
                Some(n) => Value::Line(b':', Bytes::copy_from_slice(n.as_bytes())),
                None => Value::Bulk(b'$', Bytes::copy_from_slice(p.as_bytes())),
            })
            .collect();
        let mut out = BytesMut::new();
        Value::Aggregate(b'*', items).encode(&mut out);
        out.freeze()
    }

    fn shown(reply: Option<Bytes>) -> Option<String> {
        let v = Value::decode(&reply?).unwrap();
        Some(
            v.elements()
                .unwrap()
                .iter()
                .map(|e| match e {
                    Value::Bulk(_, b) | Value::Line(_, b) => {
                        String::from_utf8_lossy(b).into_owned()
                    }
                    Value::Aggregate(..) => "?".into(),
                })
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    #[test]
    fn a_keyevent_channel_is_one_server_channel_per_database_and_one_confirmation() {
        let (ch, ns) = rules();
        let mut s = Subscriptions::new(&ch, &ns, true);
        let sent = s.request(&args("SUBSCRIBE __keyevent@0__:set events:a"));
        assert_eq!(
            words(&sent),
            "SUBSCRIBE __keyevent@0__:set __keyevent@1__:set shared:events:a"
        );
        let confirm =
            |s: &mut Subscriptions, c: &str, n: &str| shown(s.reply(push(&["subscribe", c, n])));
        assert_eq!(
            confirm(&mut s, "__keyevent@0__:set", ":1").as_deref(),
            Some("subscribe __keyevent@0__:set 1")
        );
        assert_eq!(confirm(&mut s, "__keyevent@1__:set", ":2"), None);
        assert_eq!(
            confirm(&mut s, "shared:events:a", ":3").as_deref(),
            Some("subscribe events:a 2"),
            "the client's count, not the server's"
        );

        // Keys come back under the client's names, on its channel.
        let msg =
            |s: &mut Subscriptions, c: &str, k: &str| shown(s.reply(push(&["message", c, k])));
        assert_eq!(
            msg(&mut s, "__keyevent@1__:set", "saju_service:x").as_deref(),
            Some("message __keyevent@0__:set saju:x")
        );
        assert_eq!(
            msg(&mut s, "__keyevent@0__:set", "shared_common:session:y").as_deref(),
            Some("message __keyevent@0__:set session:y")
        );
        assert_eq!(
            msg(&mut s, "__keyevent@0__:set", "plain").as_deref(),
            Some("message __keyevent@0__:set plain")
        );
        assert_eq!(
            msg(&mut s, "__keyevent@1__:set", "plain"),
            None,
            "an unmatched key of db 1 is not db 0's"
        );
        assert_eq!(
            msg(&mut s, "__keyevent@0__:set", "saju:old"),
            None,
            "an old name left on db 0 is no client name"
        );

        // Unsubscribing the keyevent channel drops both server channels.
        let sent = s.request(&args("UNSUBSCRIBE __keyevent@0__:set"));
        assert_eq!(
            words(&sent),
            "UNSUBSCRIBE __keyevent@0__:set __keyevent@1__:set"
        );
        assert_eq!(
            shown(s.reply(push(&["unsubscribe", "__keyevent@0__:set", ":2"]))).as_deref(),
            Some("unsubscribe __keyevent@0__:set 1")
        );
        assert_eq!(
            s.reply(push(&["unsubscribe", "__keyevent@1__:set", ":1"])),
            None
        );
    }

    #[test]
    fn shared_server_channels_are_counted_and_unsubscribe_all_answers_per_client_channel() {
        let (ch, ns) = rules();
        let mut s = Subscriptions::new(&ch, &ns, true);
        // db 1's channel is also needed by db 0's.
        assert_eq!(
            words(&s.request(&args("SUBSCRIBE __keyevent@1__:del __keyevent@0__:del"))),
            "SUBSCRIBE __keyevent@1__:del __keyevent@0__:del"
        );
        for (server, want) in [
            ("__keyevent@1__:del", Some("subscribe __keyevent@1__:del 1")),
            ("__keyevent@0__:del", Some("subscribe __keyevent@0__:del 2")),
        ] {
            assert_eq!(
                shown(s.reply(push(&["subscribe", server, ":9"]))).as_deref(),
                want
            );
        }
        // An event on db 1 goes to the channel whose name reaches the key.
        assert_eq!(
            shown(s.reply(push(&["message", "__keyevent@1__:del", "saju_service:k"]))).as_deref(),
            Some("message __keyevent@0__:del saju:k")
        );
        assert_eq!(
            shown(s.reply(push(&["message", "__keyevent@1__:del", "other"]))).as_deref(),
            Some("message __keyevent@1__:del other")
        );
        // Subscribing again changes nothing but is confirmed.
        assert_eq!(
            words(&s.request(&args("SUBSCRIBE __keyevent@0__:del"))),
            "SUBSCRIBE __keyevent@0__:del"
        );
        assert_eq!(
            shown(s.reply(push(&["subscribe", "__keyevent@0__:del", ":2"]))).as_deref(),
            Some("subscribe __keyevent@0__:del 2")
        );
        // Dropping db 0's keeps the server channel db 1's still needs.
        assert_eq!(
            words(&s.request(&args("UNSUBSCRIBE __keyevent@0__:del"))),
            "UNSUBSCRIBE __keyevent@0__:del"
        );
        assert_eq!(
            shown(s.reply(push(&["unsubscribe", "__keyevent@0__:del", ":1"]))).as_deref(),
            Some("unsubscribe __keyevent@0__:del 1")
        );
        // Not subscribed, its first server channel in use: a no-op name.
        assert_eq!(
            words(&s.request(&args("UNSUBSCRIBE __keyevent@2__:x __keyevent@0__:del"))),
            "UNSUBSCRIBE __keyevent@2__:x __keyevent@0__:del"
        );
        s.reply(push(&["unsubscribe", "__keyevent@2__:x", ":1"]));
        s.reply(push(&["unsubscribe", "__keyevent@0__:del", ":1"]));
        assert_eq!(
            words(&s.request(&args("UNSUBSCRIBE __keyevent@1__:del"))),
            "UNSUBSCRIBE __keyevent@1__:del"
        );
        s.reply(push(&["unsubscribe", "__keyevent@1__:del", ":0"]));
        s.request(&args("SUBSCRIBE __keyevent@0__:del"));
        s.reply(push(&["subscribe", "__keyevent@0__:del", ":1"]));
        s.reply(push(&["subscribe", "__keyevent@1__:del", ":2"]));
        assert_eq!(
            words(&s.request(&args("UNSUBSCRIBE __keyevent@1__:del"))),
            format!("UNSUBSCRIBE {}", String::from_utf8_lossy(NOOP_CHANNEL)),
            "db 0's channel still needs the server's db 1 channel"
        );
        assert_eq!(
            shown(s.reply(push(&["unsubscribe", "__heal7-proxy:noop__", ":2"]))).as_deref(),
            Some("unsubscribe __keyevent@1__:del 1")
        );
        // A bare UNSUBSCRIBE: one confirmation per client channel.
        assert_eq!(
            words(&s.request(&args("UNSUBSCRIBE"))),
            "UNSUBSCRIBE __keyevent@0__:del __keyevent@1__:del"
        );
        assert_eq!(
            shown(s.reply(push(&["unsubscribe", "__keyevent@0__:del", ":1"]))).as_deref(),
            Some("unsubscribe __keyevent@0__:del 0")
        );
        assert_eq!(
            s.reply(push(&["unsubscribe", "__keyevent@1__:del", ":0"])),
            None
        );
    }

    #[test]
    fn keyevent_patterns_follow_the_database_move_and_others_pass() {
        let (ch, ns) = rules();
        let mut s = Subscriptions::new(&ch, &ns, false);
        assert_eq!(
            words(&s.request(&args("PSUBSCRIBE __keyevent@0__:* __keyevent@*__:del"))),
            "PSUBSCRIBE __keyevent@0__:* __keyevent@1__:* __keyevent@*__:del"
        );
        s.reply(push(&["psubscribe", "__keyevent@0__:*", ":1"]));
        s.reply(push(&["psubscribe", "__keyevent@1__:*", ":2"]));
        assert_eq!(
            shown(s.reply(push(&["psubscribe", "__keyevent@*__:del", ":3"]))).as_deref(),
            Some("psubscribe __keyevent@*__:del 2")
        );
        assert_eq!(
            shown(s.reply(push(&[
                "pmessage",
                "__keyevent@1__:*",
                "__keyevent@1__:expired",
                "saju_service:t"
            ])))
            .as_deref(),
            Some("pmessage __keyevent@0__:* __keyevent@0__:expired saju:t")
        );
        assert_eq!(
            s.reply(push(&[
                "pmessage",
                "__keyevent@0__:*",
                "__keyevent@0__:set",
                "plain"
            ])),
            None,
            "unmatched: reject: unmatched keys are no client's"
        );
        // A pattern over databases is passed as it is.
        let raw = push(&[
            "pmessage",
            "__keyevent@*__:del",
            "__keyevent@1__:del",
            "saju_service:t",
        ]);
        assert_eq!(s.reply(raw.clone()), Some(raw));
        // PUBLISH and other commands: as before.
        assert_eq!(
            words(&s.request(&args("PUBLISH events:a hi"))),
            "PUBLISH shared:events:a hi"
        );
    }
}
