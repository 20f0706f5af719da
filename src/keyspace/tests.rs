use super::*;

fn int(n: i64) -> Value {
    Value::Line(b':', Bytes::from(n.to_string()))
}

fn bulk(s: &str) -> Value {
    Value::Bulk(b'$', Bytes::copy_from_slice(s.as_bytes()))
}

/// A Redis 6 style table (first, last, step) for a few commands.
fn table() -> CommandTable {
    let entry = |name: &str, first: i64, last: i64, step: i64| {
        Value::Aggregate(
            b'*',
            vec![
                bulk(name),
                int(-2),
                Value::Aggregate(b'*', vec![]),
                int(first),
                int(last),
                int(step),
            ],
        )
    };
    let reply = Value::Aggregate(
        b'*',
        vec![
            entry("get", 1, 1, 1),
            entry("set", 1, 1, 1),
            entry("mset", 1, -1, 2),
            entry("del", 1, -1, 1),
            entry("eval", 0, 0, 0),
            entry("blpop", 1, -2, 1),
            entry("sort", 1, 1, 1),
            entry("ping", 0, 0, 0),
        ],
    );
    CommandTable::from_command_reply(&reply).unwrap()
}

fn rules() -> Namespaces {
    Namespaces::new(vec![
        Rule {
            from: b"saju:".to_vec(),
            from_db: 0,
            to: b"saju_service:".to_vec(),
            to_db: 1,
        },
        Rule {
            from: b"session:".to_vec(),
            from_db: 0,
            to: b"shared_common:session:".to_vec(),
            to_db: 0,
        },
    ])
    .unwrap()
}

fn args(words: &str) -> Args {
    words
        .split(' ')
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn sent(r: &Routed) -> String {
    r.args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn keys_move_to_their_namespace_and_database() {
    let (t, n) = (table(), rules());
    let go = |w: &str, u| route(&args(w), 0, &n, &t, u);
    let r = go("SET saju:a v", Unmatched::Forward).unwrap();
    assert_eq!(
        (sent(&r), r.db, r.rewritten.to_vec()),
        ("SET saju_service:a v".into(), 1, vec![0])
    );
    let r = go("MSET saju:a 1 saju:b session:x", Unmatched::Forward).unwrap();
    assert_eq!(
        sent(&r),
        "MSET saju_service:a 1 saju_service:b session:x",
        "values stay"
    );
    let r = go("GET other", Unmatched::Forward).unwrap();
    assert_eq!(
        (sent(&r), r.db, r.unmatched.len()),
        ("GET other".into(), 0, 1)
    );
    let r = go("PING", Unmatched::Reject).unwrap();
    assert_eq!(r.db, 0);
    let r = go("EVAL return 2 saju:a saju:b saju:c", Unmatched::Forward).unwrap();
    assert_eq!(
        sent(&r),
        "EVAL return 2 saju_service:a saju_service:b saju:c"
    );
    assert!(r.script);
    // A client on another database: the rules of db 0 do not apply.
    let r = route(&args("GET saju:a"), 3, &n, &t, Unmatched::Forward).unwrap();
    assert_eq!((sent(&r), r.db), ("GET saju:a".into(), 3));
}

#[test]
fn commands_spanning_databases_or_unmatched_keys_are_refused() {
    let (t, n) = (table(), rules());
    let e = route(&args("DEL saju:a session:b"), 0, &n, &t, Unmatched::Forward).unwrap_err();
    assert_eq!(e, Refused::CrossDatabase(1, 0));
    let e = route(&args("DEL saju:a other"), 0, &n, &t, Unmatched::Forward).unwrap_err();
    assert_eq!(e, Refused::CrossDatabase(1, 0));
    let e = route(&args("GET other"), 0, &n, &t, Unmatched::Reject).unwrap_err();
    assert_eq!(e, Refused::Unmatched("other".into(), 0));
    assert!(e.to_string().starts_with("ERR "));
    // MOVE between two names for one server key: refused when they differ.
    let e = route(&args("MOVE saju:a 2"), 0, &n, &t, Unmatched::Forward).unwrap_err();
    assert!(
        matches!(
            e,
            Refused::Move {
                from_db: 1,
                to_db: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("nothing was executed"), "{e}");
    let e = route(&args("SWAPDB 0 1"), 0, &n, &t, Unmatched::Forward).unwrap_err();
    assert!(matches!(e, Refused::NamesDatabase(_)));
    let e = route(
        &args("SORT saju:l BY session:*"),
        0,
        &n,
        &t,
        Unmatched::Forward,
    )
    .unwrap_err();
    assert_eq!(e, Refused::CrossDatabase(1, 0));
    let r = route(
        &args("SORT saju:l BY saju:w_* GET # GET saju:o_*"),
        0,
        &n,
        &t,
        Unmatched::Forward,
    )
    .unwrap();
    assert_eq!(
        sent(&r),
        "SORT saju_service:l BY saju_service:w_* GET # GET saju_service:o_*"
    );
}

#[test]
fn scan_and_keys_patterns_move_and_replies_come_back() {
    let (t, n) = (table(), rules());
    let r = route(
        &args("SCAN 0 MATCH saju:* COUNT 10"),
        0,
        &n,
        &t,
        Unmatched::Forward,
    )
    .unwrap();
    assert_eq!(
        (sent(&r), r.db),
        ("SCAN 0 MATCH saju_service:* COUNT 10".into(), 1)
    );
    let mut reply = Value::Aggregate(
        b'*',
        vec![
            bulk("7"),
            Value::Aggregate(b'*', vec![bulk("saju_service:a"), bulk("zzz")]),
        ],
    );
    assert!(reply_keys_back(&mut reply, r.reply, &n, 0, r.db));
    let keys = reply.elements().unwrap()[1].elements().unwrap();
    assert_eq!(keys[0], bulk("saju:a"));
    assert_eq!(keys[1], bulk("zzz"), "a name no rule made stays as it is");
    let r = route(&args("KEYS *"), 0, &n, &t, Unmatched::Reject).unwrap();
    assert_eq!((sent(&r), r.db), ("KEYS *".into(), 0));
    let mut reply = Value::Aggregate(b'*', vec![bulk("shared_common:session:1")]);
    assert!(reply_keys_back(&mut reply, ReplyKeys::List, &n, 0, 0));
    assert_eq!(reply.elements().unwrap()[0], bulk("session:1"));
}

#[test]
fn blocking_pops_and_xread_name_their_keys_back() {
    let (t, n) = (table(), rules());
    let r = route(
        &args("BLPOP saju:q1 saju:q2 5"),
        0,
        &n,
        &t,
        Unmatched::Forward,
    )
    .unwrap();
    assert_eq!(sent(&r), "BLPOP saju_service:q1 saju_service:q2 5");
    let mut reply = Value::Aggregate(b'*', vec![bulk("saju_service:q2"), bulk("job")]);
    reply_keys_back(&mut reply, r.reply, &n, 0, r.db);
    assert_eq!(reply.elements().unwrap()[0], bulk("saju:q2"));
    let mut map = Value::Aggregate(
        b'%',
        vec![bulk("saju_service:s"), Value::Aggregate(b'*', vec![])],
    );
    reply_keys_back(&mut map, ReplyKeys::Streams, &n, 0, 1);
    assert_eq!(map.elements().unwrap()[0], bulk("saju:s"));
}

#[test]
fn move_runs_when_both_databases_name_one_server_key() {
    let t = table();
    let list = vec![
        Rule {
            from: b"saju:".to_vec(),
            from_db: 0,
            to: b"saju_service:".to_vec(),
            to_db: 1,
        },
        Rule {
            from: b"saju:".to_vec(),
            from_db: 4,
            to: b"saju_service:".to_vec(),
            to_db: 5,
        },
    ];
    let n = Namespaces::new(list).unwrap();
    let go = |w: &str, db| route(&args(w), db, &n, &t, Unmatched::Forward);
    // saju:a is saju_service:a on server db 1 from db 0, on db 5 from db 4.
    let r = go("MOVE saju:a 4", 0).unwrap();
    assert_eq!(
        (sent(&r), r.db, r.rewritten.to_vec()),
        ("MOVE saju_service:a 5".into(), 1, vec![0, 1])
    );
    // An unmatched key is itself on both.
    let r = go("MOVE plain 7", 0).unwrap();
    assert_eq!(
        (sent(&r), r.db, r.unmatched.len()),
        ("MOVE plain 7".into(), 0, 1)
    );
    // Different names: refused.
    assert!(go("MOVE saju:a 3", 0).is_err());
    // One server database: sent, for the server's own error.
    let r = go("MOVE saju:a 0", 0).unwrap();
    assert_eq!((sent(&r), r.db), ("MOVE saju_service:a 1".into(), 1));
    // Not a plain number: as it is, for the server to refuse.
    let r = go("MOVE saju:a 04", 0).unwrap();
    assert_eq!((sent(&r), r.db), ("MOVE saju:a 04".into(), 0));
    // Unmatched keys with `unmatched: reject`.
    let e = route(&args("MOVE plain 7"), 0, &n, &t, Unmatched::Reject).unwrap_err();
    assert!(matches!(e, Refused::Unmatched(..)));
}
