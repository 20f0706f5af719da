//! Namespace rules: an old key prefix on the database the client selected
//! -> a new prefix on another database, and the way back for replies that
//! carry key names.

/// One rule: keys starting with `from` on the client's database `from_db`
/// live under `to` on the server's database `to_db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub from: Vec<u8>,
    pub from_db: u16,
    pub to: Vec<u8>,
    pub to_db: u16,
}

impl Rule {
    /// The label of this rule in metrics and reports: `from@from_db`.
    pub fn label(&self) -> String {
        format!("{}@{}", String::from_utf8_lossy(&self.from), self.from_db)
    }
}

/// Why a rule set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("rule {index}: `from` must not be empty")]
    EmptyFrom { index: usize },
    #[error("rules {first} and {second} both rewrite `{from}` on db {db}")]
    Duplicate {
        first: usize,
        second: usize,
        from: String,
        db: u16,
    },
    /// Replies are mapped back by the new prefix: two rules whose new
    /// prefixes on one database overlap would make that ambiguous.
    #[error(
        "rules {first} and {second} send keys to overlapping prefixes `{a}` and `{b}` on db {db} (replies could not be mapped back)"
    )]
    Ambiguous {
        first: usize,
        second: usize,
        a: String,
        b: String,
        db: u16,
    },
}

/// A validated rule set. Lookups take the longest matching prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// In file order (indexes are what metrics and errors name).
    rules: Vec<Rule>,
    /// Indexes into `rules`, longest `from` first.
    by_from: Vec<usize>,
}

/// Where one key goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// Index of the rule in file order.
    pub rule: usize,
    pub key: Vec<u8>,
    pub db: u16,
}

impl Namespaces {
    pub fn new(rules: Vec<Rule>) -> Result<Namespaces, RulesError> {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        for (i, r) in rules.iter().enumerate() {
            if r.from.is_empty() {
                return Err(RulesError::EmptyFrom { index: i });
            }
            for (j, s) in rules.iter().enumerate().skip(i + 1) {
                if r.from == s.from && r.from_db == s.from_db {
                    return Err(RulesError::Duplicate {
                        first: i,
                        second: j,
                        from: lossy(&r.from),
                        db: r.from_db,
                    });
                }
                if r.to_db == s.to_db && (r.to.starts_with(&s.to) || s.to.starts_with(&r.to)) {
                    return Err(RulesError::Ambiguous {
                        first: i,
                        second: j,
                        a: lossy(&r.to),
                        b: lossy(&s.to),
                        db: r.to_db,
                    });
                }
            }
        }
        let mut by_from: Vec<usize> = (0..rules.len()).collect();
        by_from.sort_by_key(|&i| std::cmp::Reverse(rules[i].from.len()));
        Ok(Namespaces { rules, by_from })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule for `key` on the client's database `db` (longest `from`).
    pub fn rule_for(&self, db: u16, key: &[u8]) -> Option<usize> {
        self.by_from
            .iter()
            .copied()
            .find(|&i| self.rules[i].from_db == db && key.starts_with(&self.rules[i].from))
    }

    /// Where `key` on the client's database `db` goes; `None`: no rule.
    pub fn forward(&self, db: u16, key: &[u8]) -> Option<Mapped> {
        let rule = self.rule_for(db, key)?;
        let r = &self.rules[rule];
        let mut new = Vec::with_capacity(r.to.len() + key.len() - r.from.len());
        new.extend_from_slice(&r.to);
        new.extend_from_slice(&key[r.from.len()..]);
        Some(Mapped {
            rule,
            key: new,
            db: r.to_db,
        })
    }

    /// The client's name of `key` read on the server's database
    /// `server_db` by a client on `client_db`; `None`: no rule made it (it
    /// is shown as it is).
    pub fn back(&self, client_db: u16, server_db: u16, key: &[u8]) -> Option<Vec<u8>> {
        let r = self
            .rules
            .iter()
            .find(|r| r.from_db == client_db && r.to_db == server_db && key.starts_with(&r.to))?;
        let mut old = Vec::with_capacity(r.from.len() + key.len() - r.to.len());
        old.extend_from_slice(&r.from);
        old.extend_from_slice(&key[r.to.len()..]);
        Some(old)
    }

    /// The client's database and name of `key` on the server's database
    /// `server_db`, whichever client database its rule reads from (new
    /// prefixes do not overlap on one database, so at most one rule fits).
    pub fn back_any(&self, server_db: u16, key: &[u8]) -> Option<(u16, Vec<u8>)> {
        let r = self
            .rules
            .iter()
            .find(|r| r.to_db == server_db && key.starts_with(&r.to))?;
        Some((r.from_db, [r.from.as_slice(), &key[r.to.len()..]].concat()))
    }

    /// A keyspace notification channel (`__keyspace@0__:saju:x`, or a
    /// pattern of them) on the server's database and names.
    pub fn keyspace_channel(&self, channel: &[u8], is_pattern: bool) -> Option<Vec<u8>> {
        let (db, key) = split_keyspace_channel(channel)?;
        let m = if is_pattern {
            self.pattern(db, key)?
        } else {
            self.forward(db, key)?
        };
        Some([format!("__keyspace@{}__:", m.db).as_bytes(), &m.key].concat())
    }

    /// A keyspace notification channel from the server, on the client's
    /// database and names.
    pub fn keyspace_channel_back(&self, channel: &[u8]) -> Option<Vec<u8>> {
        let (db, key) = split_keyspace_channel(channel)?;
        let (from_db, old) = self.back_any(db, key)?;
        Some([format!("__keyspace@{from_db}__:").as_bytes(), &old].concat())
    }

    /// The server databases whose `__keyevent@N__` notifications a client
    /// on `client_db` may be owed: its own (unmatched keys, rules that stay
    /// on it) first, then every database its rules move keys to.
    pub fn keyevent_dbs(&self, client_db: u16) -> Vec<u16> {
        let mut dbs = vec![client_db];
        for r in self.rules.iter().filter(|r| r.from_db == client_db) {
            if !dbs.contains(&r.to_db) {
                dbs.push(r.to_db);
            }
        }
        dbs
    }

    /// A `__keyevent@N__` notification's key (its payload) on the server's
    /// database `server_db`, as a client sees it: the client database and
    /// name under which that very key is reached, or `None` when no client
    /// name reaches it (a key left under its old name on a database its
    /// rule moved away from, another rule's key that a longer prefix
    /// shadows, an unmatched key with `unmatched: reject`).
    pub fn keyevent_key_back(
        &self,
        server_db: u16,
        key: &[u8],
        unmatched_visible: bool,
    ) -> Option<(u16, Vec<u8>)> {
        if let Some((client_db, old)) = self.back_any(server_db, key) {
            // The name must lead back here: `saju:hot:x` goes to `hot:x` on
            // db 2, so `saju_service:hot:x` on db 1 is no client's key.
            let m = self.forward(client_db, &old)?;
            return (m.db == server_db && m.key == key).then_some((client_db, old));
        }
        (unmatched_visible && self.rule_for(server_db, key).is_none())
            .then(|| (server_db, key.to_vec()))
    }

    /// A glob pattern (KEYS, SCAN MATCH) on the client's database `db`:
    /// when its literal head lies inside one rule's `from`, the pattern on
    /// the server (new prefix) and that database. `None`: the pattern is
    /// not inside one namespace; it runs as it is on `db`.
    pub fn pattern(&self, db: u16, pattern: &[u8]) -> Option<Mapped> {
        let head = literal_head(pattern);
        let rule = self.by_from.iter().copied().find(|&i| {
            let r = &self.rules[i];
            r.from_db == db && head.len() >= r.from.len() && pattern.starts_with(&r.from)
        })?;
        let r = &self.rules[rule];
        let mut new = r.to.clone();
        // `from` holds no glob characters up to its length (checked by
        // literal_head), so the rest of the pattern keeps its meaning.
        new.extend_from_slice(&pattern[r.from.len()..]);
        Some(Mapped {
            rule,
            key: new,
            db: r.to_db,
        })
    }
}

/// `__keyevent@N__:rest` -> (N, rest): the channel (or pattern) of the
/// notifications whose payload is a key name; `None` when N is not a
/// plain database number (a pattern such as `__keyevent@*__:set`).
pub fn split_keyevent_channel(channel: &[u8]) -> Option<(u16, &[u8])> {
    let rest = channel.strip_prefix(b"__keyevent@")?;
    let end = rest.windows(3).position(|w| w == b"__:")?;
    let digits = &rest[..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let db = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((db, &rest[end + 3..]))
}

/// `__keyevent@N__:rest`.
pub fn keyevent_channel(db: u16, rest: &[u8]) -> Vec<u8> {
    [format!("__keyevent@{db}__:").as_bytes(), rest].concat()
}

/// `__keyspace@N__:rest` -> (N, rest).
fn split_keyspace_channel(channel: &[u8]) -> Option<(u16, &[u8])> {
    let rest = channel.strip_prefix(b"__keyspace@")?;
    let end = rest.windows(3).position(|w| w == b"__:")?;
    let db = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((db, &rest[end + 3..]))
}

/// The bytes of a glob pattern before its first special character.
fn literal_head(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(from: &str, from_db: u16, to: &str, to_db: u16) -> Rule {
        Rule {
            from: from.into(),
            from_db,
            to: to.into(),
            to_db,
        }
    }

    fn heal7() -> Namespaces {
        Namespaces::new(vec![
            rule("saju:", 0, "saju_service:", 1),
            rule("session:", 0, "shared_common:session:", 0),
            rule("saju:hot:", 0, "hot:", 2),
        ])
        .unwrap()
    }

    #[test]
    fn forward_takes_the_longest_prefix_on_the_clients_db() {
        let n = heal7();
        let m = n.forward(0, b"saju:cache:1").unwrap();
        assert_eq!(
            (m.key.as_slice(), m.db, m.rule),
            (&b"saju_service:cache:1"[..], 1, 0)
        );
        let m = n.forward(0, b"saju:hot:x").unwrap();
        assert_eq!((m.key.as_slice(), m.db), (&b"hot:x"[..], 2));
        assert_eq!(n.forward(3, b"saju:cache:1"), None, "rules are per db");
        assert_eq!(n.forward(0, b"other"), None);
        assert_eq!(n.forward(0, b"saju"), None, "the whole prefix must match");
    }

    #[test]
    fn back_undoes_forward() {
        let n = heal7();
        for key in [&b"saju:a"[..], b"session:z", b"saju:hot:"] {
            let m = n.forward(0, key).unwrap();
            assert_eq!(n.back(0, m.db, &m.key).as_deref(), Some(key));
        }
        assert_eq!(n.back(0, 1, b"unrelated"), None);
        assert_eq!(n.back(5, 1, b"saju_service:a"), None);
    }

    #[test]
    fn patterns_move_only_when_their_literal_head_covers_a_prefix() {
        let n = heal7();
        let m = n.pattern(0, b"saju:*").unwrap();
        assert_eq!((m.key.as_slice(), m.db), (&b"saju_service:*"[..], 1));
        assert_eq!(n.pattern(0, b"saju:hot:?").unwrap().key, b"hot:?");
        assert_eq!(n.pattern(0, b"sa*"), None);
        assert_eq!(n.pattern(0, b"*"), None);
        assert_eq!(n.pattern(0, b"saj[u]:*"), None);
    }

    #[test]
    fn keyspace_notification_channels_follow_the_database_move() {
        let n = heal7();
        assert_eq!(
            n.keyspace_channel(b"__keyspace@0__:saju:a", false).unwrap(),
            b"__keyspace@1__:saju_service:a"
        );
        assert_eq!(
            n.keyspace_channel(b"__keyspace@0__:saju:*", true).unwrap(),
            b"__keyspace@1__:saju_service:*"
        );
        assert_eq!(n.keyspace_channel(b"__keyspace@0__:other", false), None);
        assert_eq!(n.keyspace_channel(b"__keyevent@0__:set", false), None);
        assert_eq!(
            n.keyspace_channel_back(b"__keyspace@1__:saju_service:a")
                .unwrap(),
            b"__keyspace@0__:saju:a"
        );
    }

    #[test]
    fn keyevent_keys_come_back_only_under_a_name_that_reaches_them() {
        let n = heal7();
        assert_eq!(n.keyevent_dbs(0), vec![0, 1, 2]);
        assert_eq!(n.keyevent_dbs(5), vec![5]);
        let back = |db, key: &[u8], visible| n.keyevent_key_back(db, key, visible);
        assert_eq!(
            back(1, b"saju_service:a", true),
            Some((0, b"saju:a".to_vec()))
        );
        assert_eq!(
            back(0, b"shared_common:session:z", false),
            Some((0, b"session:z".to_vec())),
            "a rule's key, whatever the unmatched policy"
        );
        assert_eq!(back(2, b"hot:x", true), Some((0, b"saju:hot:x".to_vec())));
        // `saju:hot:x` goes to db 2: `saju_service:hot:x` on db 1 is no one's.
        assert_eq!(back(1, b"saju_service:hot:x", true), None);
        // An old name left on db 0: the client's `saju:a` is elsewhere.
        assert_eq!(back(0, b"saju:a", true), None);
        assert_eq!(back(0, b"plain", true), Some((0, b"plain".to_vec())));
        assert_eq!(back(0, b"plain", false), None, "unmatched: reject");
        assert_eq!(back(1, b"plain", true), Some((1, b"plain".to_vec())));
        assert_eq!(
            split_keyevent_channel(b"__keyevent@12__:set"),
            Some((12, &b"set"[..]))
        );
        assert_eq!(split_keyevent_channel(b"__keyevent@*__:set"), None);
        assert_eq!(split_keyevent_channel(b"__keyevent@+1__:set"), None);
        assert_eq!(split_keyevent_channel(b"__keyspace@1__:set"), None);
        assert_eq!(keyevent_channel(3, b"del"), b"__keyevent@3__:del");
    }

    #[test]
    fn bad_rule_sets_are_refused() {
        assert!(matches!(
            Namespaces::new(vec![rule("", 0, "x", 0)]),
            Err(RulesError::EmptyFrom { index: 0 })
        ));
        assert!(matches!(
            Namespaces::new(vec![rule("a:", 0, "x:", 0), rule("a:", 0, "y:", 1)]),
            Err(RulesError::Duplicate { .. })
        ));
        assert!(matches!(
            Namespaces::new(vec![rule("a:", 0, "x:", 1), rule("b:", 0, "x:b:", 1)]),
            Err(RulesError::Ambiguous { .. })
        ));
        // The same new prefix on two databases is fine.
        Namespaces::new(vec![rule("a:", 0, "x:", 1), rule("b:", 0, "x:", 2)]).unwrap();
    }
}
