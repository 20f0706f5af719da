//! The Redis half of the rewrite, pure: namespace rules ([`rules`]), where
//! a command's keys are ([`commands`], from the server's command table),
//! and [`route`]: one command + the client's selected database -> the
//! command to send, the database to send it to, and how to map the reply's
//! key names back. No sockets, no tokio.

pub mod channels;
pub mod commands;
pub mod rules;

use bytes::Bytes;
use smallvec::SmallVec;

pub use channels::{ChannelRulesError, Channels};
pub use commands::{CommandFlags, CommandTable, TableError, TableSource};
pub use rules::{Mapped, Namespaces, Rule, RulesError};

use crate::resp::{Args, Value};

/// What to do with a key that no rule matches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Send it unchanged to the client's selected database.
    #[default]
    Forward,
    /// Refuse the command with `-ERR`.
    Reject,
}

impl Unmatched {
    pub fn as_str(self) -> &'static str {
        match self {
            Unmatched::Forward => "forward",
            Unmatched::Reject => "reject",
        }
    }
}

/// Reply shapes that carry key names the client must see under its own
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKeys {
    None,
    /// KEYS: an array of key names.
    List,
    /// SCAN: `[cursor, [keys]]`.
    Scan,
    /// RANDOMKEY: one bulk key name (or null).
    One,
    /// BLPOP, BZPOPMIN, LMPOP...: `[key, ...]`.
    FirstOfArray,
    /// XREAD, XREADGROUP: `[[stream, entries], ...]` (RESP2) or a map
    /// stream -> entries (RESP3).
    Streams,
}

/// A command ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The server database it runs on.
    pub db: u16,
    /// The arguments with every key (and pattern) rewritten.
    pub args: Args,
    /// Rules (file order index) applied, one entry per rewritten key (on
    /// the stack for the usual one or two).
    pub rewritten: SmallVec<[usize; 2]>,
    /// Keys that matched no rule (forwarded unchanged).
    pub unmatched: SmallVec<[Bytes; 1]>,
    pub reply: ReplyKeys,
    /// EVAL, EVALSHA, FCALL...: the script may build keys the proxy never
    /// sees.
    pub script: bool,
}

/// Why a command is refused before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "ERR heal7-proxy: the keys of this command live in different databases (db {0} and db {1}); nothing was executed"
    )]
    CrossDatabase(u16, u16),
    #[error(
        "ERR heal7-proxy: key '{0}' matches no namespace rule on db {1} (redis.unmatched is reject)"
    )]
    Unmatched(String, u16),
    #[error("ERR heal7-proxy: {0} names a database and is not supported through the proxy")]
    NamesDatabase(String),
    /// MOVE whose key is not one server key seen from both databases.
    #[error(
        "ERR heal7-proxy: MOVE cannot be exact here: '{key}' is '{from_key}' on server db {from_db} from db {client_db} and '{to_key}' on server db {to_db} from db {target}; nothing was executed"
    )]
    Move {
        key: String,
        client_db: u16,
        target: u16,
        from_key: String,
        from_db: u16,
        to_key: String,
        to_db: u16,
    },
}

/// Route one command from a client on database `client_db`.
pub fn route(
    args: &Args,
    client_db: u16,
    rules: &Namespaces,
    table: &CommandTable,
    unmatched: Unmatched,
) -> Result<Routed, Refused> {
    route_owned(args.clone(), client_db, rules, table, unmatched)
}

/// [`route`] for a caller that no longer needs `args`: the rewritten keys
/// replace the old ones in place (no copy of the argument list per
/// command).
pub fn route_owned(
    mut args: Args,
    client_db: u16,
    rules: &Namespaces,
    table: &CommandTable,
    unmatched: Unmatched,
) -> Result<Routed, Refused> {
    // New keys are put in place at the end: every argument is read as the
    // client sent it.
    let mut edits: SmallVec<[(usize, Bytes); 2]> = SmallVec::new();
    let routed = route_edits(&args, &mut edits, client_db, rules, table, unmatched)?;
    for (at, key) in edits {
        args[at] = key;
    }
    Ok(Routed { args, ..routed })
}

/// The body of [`route`]: `Routed::args` is left empty, the new keys go
/// to `edits` (position, new bytes).
fn route_edits(
    args: &Args,
    edits: &mut SmallVec<[(usize, Bytes); 2]>,
    client_db: u16,
    rules: &Namespaces,
    table: &CommandTable,
    unmatched: Unmatched,
) -> Result<Routed, Refused> {
    let name = args
        .first()
        .map(|a| crate::resp::lower_name(a))
        .unwrap_or_default();
    let mut routed = Routed {
        db: client_db,
        args: Args::new(),
        rewritten: SmallVec::new(),
        unmatched: SmallVec::new(),
        reply: ReplyKeys::None,
        script: matches!(
            name.as_slice(),
            b"eval" | b"evalsha" | b"eval_ro" | b"evalsha_ro" | b"fcall" | b"fcall_ro"
        ),
    };
    let mut target: Option<u16> = None;
    let mut settle = |db: u16| -> Result<(), Refused> {
        match target {
            Some(t) if t != db => Err(Refused::CrossDatabase(t, db)),
            _ => {
                target = Some(db);
                Ok(())
            }
        }
    };
    match name.as_slice() {
        b"move" if args.len() == 3 => {
            return route_move(args, edits, routed, rules, unmatched);
        }
        b"swapdb" | b"migrate" => {
            return Err(Refused::NamesDatabase(name_of(args)));
        }
        b"copy" if args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"db")) => {
            return Err(Refused::NamesDatabase("COPY ... DB".into()));
        }
        b"keys" | b"scan" => {
            let at = if name.as_slice() == b"keys" {
                Some(1)
            } else {
                option_value(args, 2, b"match")
            };
            routed.reply = if name.as_slice() == b"keys" {
                ReplyKeys::List
            } else {
                ReplyKeys::Scan
            };
            if let Some(at) = at.filter(|&at| at < args.len())
                && let Some(m) = rules.pattern(client_db, &args[at])
            {
                edits.push((at, Bytes::from(m.key)));
                routed.rewritten.push(m.rule);
                routed.db = m.db;
            }
            return Ok(routed);
        }
        b"randomkey" => routed.reply = ReplyKeys::One,
        b"blpop" | b"brpop" | b"bzpopmin" | b"bzpopmax" | b"blmpop" | b"lmpop" | b"zmpop"
        | b"bzmpop" => routed.reply = ReplyKeys::FirstOfArray,
        b"xread" | b"xreadgroup" => routed.reply = ReplyKeys::Streams,
        _ => {}
    }
    for at in table.keys(args).unwrap_or_default() {
        let key = &args[at];
        match rules.forward(client_db, key) {
            Some(m) => {
                settle(m.db)?;
                edits.push((at, Bytes::from(m.key)));
                routed.rewritten.push(m.rule);
            }
            None => {
                if unmatched == Unmatched::Reject {
                    return Err(Refused::Unmatched(
                        String::from_utf8_lossy(key).into_owned(),
                        client_db,
                    ));
                }
                settle(client_db)?;
                routed.unmatched.push(key.clone());
            }
        }
    }
    if matches!(name.as_slice(), b"sort" | b"sort_ro") {
        // BY and GET patterns name other keys (`#` is the element itself,
        // `nosort` no key at all).
        let mut i = 2;
        while i + 1 < args.len() {
            let word = &args[i];
            let pattern = &args[i + 1];
            let is_by =
                word.eq_ignore_ascii_case(b"by") && !pattern.eq_ignore_ascii_case(b"nosort");
            let is_get = word.eq_ignore_ascii_case(b"get") && pattern.as_ref() != b"#";
            if is_by || is_get {
                if let Some(m) = rules.forward(client_db, pattern) {
                    settle(m.db)?;
                    edits.push((i + 1, Bytes::from(m.key)));
                    routed.rewritten.push(m.rule);
                }
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    routed.db = target.unwrap_or(client_db);
    Ok(routed)
}

/// `MOVE key db`: exact when the key has one server name seen from both
/// client databases (its rule on the client's database and on `db` give
/// the same new name, or it matches no rule on either): then `MOVE
/// new-name server-db` runs on the source's server database. Anything else is refused before it runs. A database argument
/// that is not a number goes as it is (the server refuses it).
fn route_move(
    args: &Args,
    edits: &mut SmallVec<[(usize, Bytes); 2]>,
    mut routed: Routed,
    rules: &Namespaces,
    unmatched: Unmatched,
) -> Result<Routed, Refused> {
    let client_db = routed.db;
    let key = &args[1];
    // Only a plain decimal (what the server itself reads the same way).
    let Some(target) = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|t| t.parse::<u16>().ok().filter(|n| n.to_string() == t))
    else {
        return Ok(routed);
    };
    // The server key and database `key` means on client database `db`.
    let side = |db: u16| match rules.forward(db, key) {
        Some(m) => Ok((Bytes::from(m.key), m.db, Some(m.rule))),
        None if unmatched == Unmatched::Reject => Err(Refused::Unmatched(
            String::from_utf8_lossy(key).into_owned(),
            db,
        )),
        None => Ok((key.clone(), db, None)),
    };
    let (from_key, from_db, from_rule) = side(client_db)?;
    let (to_key, to_db, to_rule) = side(target)?;
    // One server database (MOVE k 0 from db 0): the server's own error.
    if from_key != to_key {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        return Err(Refused::Move {
            key: text(key),
            client_db,
            target,
            from_key: text(&from_key),
            from_db,
            to_key: text(&to_key),
            to_db,
        });
    }
    for rule in [from_rule, to_rule].into_iter().flatten() {
        routed.rewritten.push(rule);
    }
    if from_rule.is_none() {
        routed.unmatched.push(key.clone());
    }
    if from_rule.is_some() {
        edits.push((1, from_key));
    }
    if to_db != target {
        edits.push((2, Bytes::from(to_db.to_string())));
    }
    routed.db = from_db;
    Ok(routed)
}

/// The argument after option `option` (case-insensitive), searched from
/// `from`.
fn option_value(args: &Args, from: usize, option: &[u8]) -> Option<usize> {
    (from..args.len())
        .find(|&i| args[i].eq_ignore_ascii_case(option))
        .map(|i| i + 1)
}

fn name_of(args: &Args) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default()
}

/// Map the key names of a reply back to the client's names. Returns
/// whether anything changed (the caller then re-encodes the value).
pub fn reply_keys_back(
    reply: &mut Value,
    shape: ReplyKeys,
    rules: &Namespaces,
    client_db: u16,
    server_db: u16,
) -> bool {
    let mut changed = false;
    let mut back = |v: &mut Value| {
        if let Value::Bulk(_, key) = v
            && let Some(old) = rules.back(client_db, server_db, key)
        {
            *key = Bytes::from(old);
            changed = true;
        }
    };
    match shape {
        ReplyKeys::None => {}
        ReplyKeys::One => back(reply),
        ReplyKeys::List => reply.elements_mut().into_iter().flatten().for_each(back),
        ReplyKeys::Scan => {
            if let Some(items) = reply.elements_mut()
                && let Some(keys) = items.get_mut(1).and_then(Value::elements_mut)
            {
                keys.iter_mut().for_each(back);
            }
        }
        ReplyKeys::FirstOfArray => {
            if let Some(first) = reply.elements_mut().and_then(|i| i.first_mut()) {
                back(first);
            }
        }
        ReplyKeys::Streams => match reply {
            Value::Aggregate(b'%', items) => items.iter_mut().step_by(2).for_each(back),
            Value::Aggregate(_, items) => {
                for stream in items {
                    if let Some(name) = stream.elements_mut().and_then(|i| i.first_mut()) {
                        back(name);
                    }
                }
            }
            _ => {}
        },
    }
    changed
}

#[cfg(test)]
mod tests;
