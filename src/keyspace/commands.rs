//! Where a command's keys are, read from the server's own command table
//! (`COMMAND`): Redis 7 key specs, or for older servers the first/last/step
//! triple plus the few commands whose keys move (EVAL's numkeys, XREAD's
//! STREAMS...).

use std::collections::HashMap;

use smallvec::SmallVec;

use bytes::Bytes;

use crate::resp::Value;

/// Where the search for keys starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginSearch {
    Index(i64),
    /// After the first `keyword` found from `startfrom` (backwards from
    /// the end when negative).
    Keyword {
        keyword: Vec<u8>,
        startfrom: i64,
    },
    Unknown,
}

/// Which arguments from there are keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindKeys {
    Range {
        lastkey: i64,
        keystep: i64,
        limit: i64,
    },
    Keynum {
        keynumidx: i64,
        firstkey: i64,
        keystep: i64,
    },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub begin: BeginSearch,
    pub find: FindKeys,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSpec {
    pub arity: i64,
    pub key_specs: Vec<KeySpec>,
    /// `container|sub` (lower case) -> its spec.
    pub subcommands: HashMap<Vec<u8>, CommandSpec>,
    /// The flags that say a command acts on or holds its connection.
    pub flags: CommandFlags,
}

/// The few `COMMAND` flags the proxy reads: whether a command may share a
/// server connection with other clients' commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandFlags {
    /// `blocking`: may wait for other clients (BLPOP, XREAD BLOCK...).
    pub blocking: bool,
    /// `noscript`: not callable from a script: connection state (CLIENT,
    /// HELLO, MULTI...), replication, server control.
    pub noscript: bool,
    /// `allow_busy`: meant to run while a script is busy (SCRIPT KILL...).
    pub allow_busy: bool,
}

/// How the table was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSource {
    /// Redis 7+: every command's key specs.
    KeySpecs,
    /// Older servers: first/last/step and the built-in movable commands.
    FirstLastStep,
}

impl TableSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TableSource::KeySpecs => "key_specs",
            TableSource::FirstLastStep => "first_last_step",
        }
    }
}

/// Where a command's keys are (argument indexes).
pub type KeyPositions = SmallVec<[usize; 4]>;

/// The server's commands by lower-case name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTable {
    /// foldhash, not SipHash: looked up for every command relayed.
    commands: HashMap<Vec<u8>, CommandSpec, foldhash::fast::RandomState>,
    pub source: TableSource,
}

/// A `COMMAND` reply that is not the shape of a command table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected COMMAND reply: {0}")]
pub struct TableError(pub &'static str);

impl CommandTable {
    /// Build from the reply to `COMMAND` (RESP2 or RESP3).
    pub fn from_command_reply(reply: &Value) -> Result<CommandTable, TableError> {
        if reply.is_error() {
            return Err(TableError("the server answered with an error"));
        }
        let entries = reply.elements().ok_or(TableError("not an array"))?;
        let mut commands = HashMap::with_capacity_and_hasher(entries.len(), Default::default());
        let mut key_specs_seen = false;
        for entry in entries {
            let (name, spec, has_specs) = parse_entry(entry)?;
            key_specs_seen |= has_specs;
            commands.insert(name, spec);
        }
        if commands.is_empty() {
            return Err(TableError("no commands"));
        }
        let source = if key_specs_seen {
            TableSource::KeySpecs
        } else {
            for (name, spec) in movable_key_specs() {
                if let Some(c) = commands.get_mut(name.as_bytes()) {
                    c.key_specs = spec;
                }
            }
            TableSource::FirstLastStep
        };
        Ok(CommandTable { commands, source })
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The spec that applies to `args` (a subcommand's when there is one);
    /// `None` for a command the server does not know.
    pub fn spec(&self, args: &[Bytes]) -> Option<&CommandSpec> {
        // Lower-cased on the stack: no allocation per command.
        let mut name = crate::resp::lower_name(args.first()?);
        let spec = self.commands.get(name.as_slice())?;
        if !spec.subcommands.is_empty()
            && let Some(sub) = args.get(1)
        {
            name.push(b'|');
            name.extend(sub.iter().map(u8::to_ascii_lowercase));
            if let Some(s) = spec.subcommands.get(name.as_slice()) {
                return Some(s);
            }
        }
        Some(spec)
    }

    /// The positions of the key arguments of `args`, in order, without
    /// duplicates; `None` for an unknown command.
    pub fn key_positions(&self, args: &[Bytes]) -> Option<Vec<usize>> {
        self.keys(args).map(SmallVec::into_vec)
    }

    /// [`key_positions`](Self::key_positions) without an allocation for
    /// the usual few keys.
    pub fn keys(&self, args: &[Bytes]) -> Option<KeyPositions> {
        let spec = self.spec(args)?;
        let mut found = KeyPositions::new();
        for ks in &spec.key_specs {
            positions(ks, args, &mut found);
        }
        found.sort_unstable();
        found.dedup();
        Some(found)
    }
}

/// Redis' getKeysUsingKeySpecs for one spec; positions outside the
/// arguments are skipped (the server reports the arity error).
fn positions(spec: &KeySpec, args: &[Bytes], out: &mut KeyPositions) {
    let argc = args.len() as i64;
    let first = match &spec.begin {
        BeginSearch::Index(i) => *i,
        BeginSearch::Keyword { keyword, startfrom } => {
            let found = if *startfrom > 0 {
                (*startfrom..argc).find(|&i| args[i as usize].eq_ignore_ascii_case(keyword))
            } else {
                let start = argc + startfrom;
                (1..=start)
                    .rev()
                    .find(|&i| i < argc && args[i as usize].eq_ignore_ascii_case(keyword))
            };
            match found {
                Some(i) => i + 1,
                None => return,
            }
        }
        BeginSearch::Unknown => return,
    };
    if first <= 0 || first >= argc {
        return;
    }
    let (first, last, step) = match spec.find {
        FindKeys::Range {
            lastkey,
            keystep,
            limit,
        } => {
            let last = if lastkey >= 0 {
                first + lastkey
            } else if limit <= 1 {
                argc + lastkey
            } else {
                first + (argc - first) / limit + lastkey
            };
            (first, last, keystep)
        }
        FindKeys::Keynum {
            keynumidx,
            firstkey,
            keystep,
        } => {
            let Some(n) = args
                .get((first + keynumidx) as usize)
                .and_then(|a| std::str::from_utf8(a).ok()?.parse::<i64>().ok())
                .filter(|n| *n >= 0)
            else {
                return;
            };
            let start = first + firstkey;
            (start, start + n - 1, keystep)
        }
        FindKeys::Unknown => return,
    };
    if step <= 0 {
        return;
    }
    let mut i = first;
    while i <= last && i < argc {
        out.push(i as usize);
        i += step;
    }
}

fn parse_entry(entry: &Value) -> Result<(Vec<u8>, CommandSpec, bool), TableError> {
    let items = entry
        .elements()
        .ok_or(TableError("entry is not an array"))?;
    let name = items
        .first()
        .and_then(Value::as_bytes)
        .ok_or(TableError("entry without a name"))?
        .to_ascii_lowercase();
    let int = |i: usize| items.get(i).and_then(Value::as_int);
    let arity = int(1).ok_or(TableError("entry without arity"))?;
    let mut spec = CommandSpec {
        arity,
        flags: parse_flags(items.get(2)),
        ..CommandSpec::default()
    };
    let has_specs = items.len() > 8;
    if has_specs {
        for ks in items[8].elements().unwrap_or_default() {
            spec.key_specs.push(parse_key_spec(ks));
        }
        if let Some(subs) = items.get(9).and_then(Value::elements) {
            for sub in subs {
                let (sub_name, sub_spec, _) = parse_entry(sub)?;
                spec.subcommands.insert(sub_name, sub_spec);
            }
        }
    } else {
        let (first, last, step) = (
            int(3).unwrap_or(0),
            int(4).unwrap_or(0),
            int(5).unwrap_or(0),
        );
        if first > 0 {
            spec.key_specs.push(KeySpec {
                begin: BeginSearch::Index(first),
                find: FindKeys::Range {
                    lastkey: if last < 0 { last } else { last - first },
                    keystep: step,
                    limit: 0,
                },
            });
        }
    }
    Ok((name, spec, has_specs))
}

fn parse_flags(flags: Option<&Value>) -> CommandFlags {
    let mut out = CommandFlags::default();
    for f in flags.and_then(Value::elements).unwrap_or_default() {
        let Some(name) = f.as_bytes() else { continue };
        match name.to_ascii_lowercase().as_slice() {
            b"blocking" => out.blocking = true,
            b"noscript" => out.noscript = true,
            b"allow_busy" => out.allow_busy = true,
            _ => {}
        }
    }
    out
}

fn parse_key_spec(ks: &Value) -> KeySpec {
    let int = |v: Option<&Value>, name: &str| v.and_then(|v| v.field(name)).and_then(Value::as_int);
    let kind = |v: Option<&Value>| {
        v.and_then(|v| v.field("type"))
            .and_then(Value::as_bytes)
            .map(|b| b.to_ascii_lowercase())
            .unwrap_or_default()
    };
    let begin = ks.field("begin_search");
    let begin_spec = begin.and_then(|b| b.field("spec"));
    let begin = match kind(begin).as_slice() {
        b"index" => int(begin_spec, "index").map_or(BeginSearch::Unknown, BeginSearch::Index),
        b"keyword" => match (
            begin_spec
                .and_then(|s| s.field("keyword"))
                .and_then(Value::as_bytes),
            int(begin_spec, "startfrom"),
        ) {
            (Some(k), Some(s)) => BeginSearch::Keyword {
                keyword: k.to_vec(),
                startfrom: s,
            },
            _ => BeginSearch::Unknown,
        },
        _ => BeginSearch::Unknown,
    };
    let find = ks.field("find_keys");
    let find_spec = find.and_then(|f| f.field("spec"));
    let find = match kind(find).as_slice() {
        b"range" => match (
            int(find_spec, "lastkey"),
            int(find_spec, "keystep"),
            int(find_spec, "limit"),
        ) {
            (Some(lastkey), Some(keystep), Some(limit)) => FindKeys::Range {
                lastkey,
                keystep,
                limit,
            },
            _ => FindKeys::Unknown,
        },
        b"keynum" => match (
            int(find_spec, "keynumidx"),
            int(find_spec, "firstkey"),
            int(find_spec, "keystep"),
        ) {
            (Some(keynumidx), Some(firstkey), Some(keystep)) => FindKeys::Keynum {
                keynumidx,
                firstkey,
                keystep,
            },
            _ => FindKeys::Unknown,
        },
        _ => FindKeys::Unknown,
    };
    KeySpec { begin, find }
}

/// Commands whose keys first/last/step cannot place (servers before 7
/// flag them `movablekeys`), as the key specs of Redis 7 describe them.
fn movable_key_specs() -> Vec<(&'static str, Vec<KeySpec>)> {
    let keynum = |at: i64| KeySpec {
        begin: BeginSearch::Index(at),
        find: FindKeys::Keynum {
            keynumidx: 0,
            firstkey: 1,
            keystep: 1,
        },
    };
    let one = |at: i64| KeySpec {
        begin: BeginSearch::Index(at),
        find: FindKeys::Range {
            lastkey: 0,
            keystep: 1,
            limit: 0,
        },
    };
    let streams = KeySpec {
        begin: BeginSearch::Keyword {
            keyword: b"STREAMS".to_vec(),
            startfrom: 1,
        },
        find: FindKeys::Range {
            lastkey: -1,
            keystep: 1,
            limit: 2,
        },
    };
    let store = KeySpec {
        begin: BeginSearch::Keyword {
            keyword: b"STORE".to_vec(),
            startfrom: 1,
        },
        find: FindKeys::Range {
            lastkey: 0,
            keystep: 1,
            limit: 0,
        },
    };
    vec![
        ("eval", vec![keynum(2)]),
        ("evalsha", vec![keynum(2)]),
        ("eval_ro", vec![keynum(2)]),
        ("evalsha_ro", vec![keynum(2)]),
        ("fcall", vec![keynum(2)]),
        ("fcall_ro", vec![keynum(2)]),
        ("zunionstore", vec![one(1), keynum(2)]),
        ("zinterstore", vec![one(1), keynum(2)]),
        ("zdiffstore", vec![one(1), keynum(2)]),
        ("zunion", vec![keynum(1)]),
        ("zinter", vec![keynum(1)]),
        ("zdiff", vec![keynum(1)]),
        ("xread", vec![streams.clone()]),
        ("xreadgroup", vec![streams]),
        ("sort", vec![one(1), store.clone()]),
        ("georadius", vec![one(1), store.clone()]),
        ("georadiusbymember", vec![one(1), store]),
    ]
}

/// One entry of a `COMMAND` / `COMMAND INFO` reply, as servers before 7
/// send it: name, arity, flags (in an aggregate of `flags_kind`: `*` or
/// RESP3's `~`), first key, last key, step. For tests here and in the
/// Redis handler.
#[cfg(test)]
pub(crate) fn command_reply_entry(
    name: &str,
    arity: i64,
    flags_kind: u8,
    flags: &[&str],
    (first, last, step): (i64, i64, i64),
) -> Vec<Value> {
    let int = |n: i64| Value::Line(b':', Bytes::from(n.to_string()));
    vec![
        Value::Bulk(b'$', Bytes::copy_from_slice(name.as_bytes())),
        int(arity),
        Value::Aggregate(
            flags_kind,
            flags
                .iter()
                .map(|f| Value::Line(b'+', Bytes::copy_from_slice(f.as_bytes())))
                .collect(),
        ),
        int(first),
        int(last),
        int(step),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &str) -> Vec<Bytes> {
        words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn table(source: TableSource, entries: Vec<(&str, CommandSpec)>) -> CommandTable {
        CommandTable {
            commands: entries
                .into_iter()
                .map(|(n, s)| (n.as_bytes().to_vec(), s))
                .collect(),
            source,
        }
    }

    fn range(first: i64, lastkey: i64, keystep: i64, limit: i64) -> KeySpec {
        KeySpec {
            begin: BeginSearch::Index(first),
            find: FindKeys::Range {
                lastkey,
                keystep,
                limit,
            },
        }
    }

    fn spec(key_specs: Vec<KeySpec>) -> CommandSpec {
        CommandSpec {
            arity: -1,
            key_specs,
            subcommands: HashMap::new(),
            flags: CommandFlags::default(),
        }
    }

    #[test]
    fn ranges_keynums_and_keywords_place_keys_as_redis_does() {
        let movable: HashMap<_, _> = movable_key_specs().into_iter().collect();
        let t = table(
            TableSource::KeySpecs,
            vec![
                ("get", spec(vec![range(1, 0, 1, 0)])),
                ("mset", spec(vec![range(1, -1, 2, 0)])),
                ("del", spec(vec![range(1, -1, 1, 0)])),
                ("eval", spec(movable["eval"].clone())),
                ("xread", spec(movable["xread"].clone())),
                ("zunionstore", spec(movable["zunionstore"].clone())),
                ("ping", spec(vec![])),
            ],
        );
        assert_eq!(t.key_positions(&args("GET k")), Some(vec![1]));
        assert_eq!(t.key_positions(&args("mset a 1 b 2")), Some(vec![1, 3]));
        assert_eq!(t.key_positions(&args("DEL a b c")), Some(vec![1, 2, 3]));
        assert_eq!(t.key_positions(&args("EVAL s 2 a b x y")), Some(vec![3, 4]));
        assert_eq!(t.key_positions(&args("EVAL s 0 x")), Some(vec![]));
        assert_eq!(t.key_positions(&args("EVAL s nope a")), Some(vec![]));
        assert_eq!(
            t.key_positions(&args("XREAD COUNT 2 STREAMS s1 s2 0 0")),
            Some(vec![4, 5])
        );
        assert_eq!(
            t.key_positions(&args("ZUNIONSTORE d 2 a b WEIGHTS 1 2")),
            Some(vec![1, 3, 4])
        );
        assert_eq!(t.key_positions(&args("PING")), Some(vec![]));
        assert_eq!(
            t.key_positions(&args("GET")),
            Some(vec![]),
            "arity errors are the server's"
        );
        assert_eq!(t.key_positions(&args("NOSUCH k")), None);
    }

    #[test]
    fn a_redis_6_table_uses_first_last_step_and_the_movable_list() {
        let entry = |name: &str, first: i64, last: i64, step: i64| {
            let mut fields = command_reply_entry(name, -2, b'*', &[], (first, last, step));
            fields.push(Value::Aggregate(b'*', vec![]));
            Value::Aggregate(b'*', fields)
        };
        let reply = Value::Aggregate(
            b'*',
            vec![
                entry("mget", 1, -1, 1),
                entry("eval", 0, 0, 0),
                entry("hset", 1, 1, 1),
            ],
        );
        let t = CommandTable::from_command_reply(&reply).unwrap();
        assert_eq!(t.source, TableSource::FirstLastStep);
        assert_eq!(t.key_positions(&args("MGET a b")), Some(vec![1, 2]));
        assert_eq!(t.key_positions(&args("HSET h f v")), Some(vec![1]));
        assert_eq!(t.key_positions(&args("EVAL s 1 k a")), Some(vec![3]));
    }

    #[test]
    fn flags_that_tie_a_command_to_its_connection_are_kept() {
        let entry = |name: &str, flags: &[&str]| {
            Value::Aggregate(b'*', command_reply_entry(name, -2, b'~', flags, (1, 1, 1)))
        };
        let reply = Value::Aggregate(
            b'*',
            vec![
                entry("blpop", &["write", "noscript", "blocking"]),
                entry("script", &["noscript", "allow_busy"]),
                entry("get", &["readonly", "fast"]),
            ],
        );
        let t = CommandTable::from_command_reply(&reply).unwrap();
        let flags = |a: &str| t.spec(&args(a)).unwrap().flags;
        assert!(flags("BLPOP k 0").blocking && flags("BLPOP k 0").noscript);
        assert!(flags("SCRIPT KILL").allow_busy && !flags("SCRIPT KILL").blocking);
        assert_eq!(flags("GET k"), CommandFlags::default());
    }
}
