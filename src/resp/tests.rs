use super::*;

fn req(bytes: &[u8], max: usize) -> (Result<Option<Args>, RespError>, usize) {
    let mut buf = BytesMut::from(bytes);
    let r = parse_request(&mut buf, max);
    (r, buf.len())
}

#[test]
fn pipelined_requests_come_out_one_by_one_and_leave_the_rest() {
    let mut buf =
        BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGE"[..]);
    let a = parse_request(&mut buf, 1 << 20).unwrap().unwrap();
    assert_eq!(a, vec![Bytes::from("GET"), Bytes::from("k")]);
    let b = parse_request(&mut buf, 1 << 20).unwrap().unwrap();
    assert_eq!(b, vec![Bytes::from("PING")]);
    assert_eq!(parse_request(&mut buf, 1 << 20).unwrap(), None);
    assert_eq!(&buf[..], b"*2\r\n$3\r\nGE", "a partial request stays whole");
}

#[test]
fn values_may_hold_crlf_and_binary() {
    let (r, left) = req(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\n\0\r\n", 1 << 20);
    assert_eq!(r.unwrap().unwrap()[2], Bytes::from(&b"a\r\n\0"[..]));
    assert_eq!(left, 0);
}

#[test]
fn inline_commands_split_on_blanks() {
    let (r, _) = req(b"set  k v\r\n", 1024);
    assert_eq!(
        r.unwrap().unwrap(),
        vec![Bytes::from("set"), Bytes::from("k"), Bytes::from("v")]
    );
    let (r, _) = req(b"\r\n", 1024);
    assert!(r.unwrap().unwrap().is_empty());
}

#[test]
fn huge_declared_lengths_fail_from_the_header_alone() {
    // 2^40: refused before a single byte of it arrives.
    let (r, _) = req(b"*2\r\n$3\r\nGET\r\n$1099511627776\r\n", 1 << 20);
    assert_eq!(r.unwrap_err(), RespError::BulkTooLong(1 << 40, 1 << 20));
    let (r, _) = req(b"*99999999999\r\n", 1 << 20);
    assert!(matches!(r, Err(RespError::Protocol(_))));
    let (r, _) = req(b"*1\r\n$-5\r\n", 1 << 20);
    assert!(matches!(r, Err(RespError::BulkTooLong(-5, _))));
    // Many small arguments past the request bound.
    let mut many = b"*100\r\n".to_vec();
    for _ in 0..100 {
        many.extend_from_slice(b"$10\r\n0123456789\r\n");
    }
    let (r, _) = req(&many, 500);
    assert_eq!(r.unwrap_err(), RespError::RequestTooLong(500));
}

#[test]
fn malformed_requests_are_protocol_errors() {
    for bad in [&b"*1\r\n+PING\r\n"[..], b"*x\r\n", b"*1\r\n$4\r\nPINGxx"] {
        let (r, _) = req(bad, 1024);
        assert!(matches!(r, Err(RespError::Protocol(_))), "{bad:?}: {r:?}");
    }
    let long = vec![b'a'; MAX_LINE + 10];
    assert!(req(&long, 1 << 20).0.is_err(), "an endless inline line");
}

#[test]
fn reply_len_finds_whole_replies_of_every_type() {
    let cases: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":12\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"$3\r\na\r\n\r\n",
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        b"_\r\n",
        b",1.5\r\n",
        b"#t\r\n",
        b"(123\r\n",
        b"!3\r\nerr\r\n",
        b"=7\r\ntxt:abc\r\n",
        b"%1\r\n+a\r\n:1\r\n",
        b"~2\r\n:1\r\n:2\r\n",
        b">2\r\n+message\r\n+x\r\n",
        b"|1\r\n+ttl\r\n:3\r\n+OK\r\n",
        b"*0\r\n",
    ];
    for case in cases {
        let mut with_tail = case.to_vec();
        with_tail.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(
            reply_len(&with_tail, 1 << 20).unwrap(),
            Some(case.len()),
            "{case:?}"
        );
        for cut in 0..case.len() {
            assert_eq!(
                reply_len(&case[..cut], 1 << 20).unwrap(),
                None,
                "{case:?} cut at {cut}"
            );
        }
        let bytes = Bytes::copy_from_slice(case);
        let mut out = BytesMut::new();
        Value::decode(&bytes).unwrap().encode(&mut out);
        assert_eq!(&out[..], *case, "decode + encode round-trips");
    }
    assert!(reply_len(b"$1099511627776\r\n", 1 << 20).is_err());
    assert!(reply_len(b"?x\r\n", 1 << 20).is_err());
}

#[test]
fn deep_nesting_is_refused_by_the_decoder() {
    let mut deep = Vec::new();
    for _ in 0..(MAX_DEPTH + 5) {
        deep.extend_from_slice(b"*1\r\n");
    }
    deep.extend_from_slice(b":1\r\n");
    assert_eq!(reply_len(&deep, 1 << 20).unwrap(), Some(deep.len()));
    assert!(Value::decode(&Bytes::from(deep)).is_err());
}

#[test]
fn commands_and_errors_encode() {
    let mut out = BytesMut::new();
    encode_command(&mut out, &[&b"SELECT"[..], b"1"]);
    assert_eq!(&out[..], b"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n");
    let mut out = BytesMut::new();
    encode_error(&mut out, "ERR a\r\nb");
    assert_eq!(&out[..], b"-ERR a  b\r\n");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn arg() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..40)
    }

    proptest! {
        #[test]
        fn encoded_commands_parse_back_whole(args in prop::collection::vec(arg(), 1..8), cut in 0usize..400) {
            let mut buf = BytesMut::new();
            encode_command(&mut buf, &args);
            let whole = buf.clone();
            // A prefix is incomplete, never an error or a wrong command.
            let mut part = BytesMut::from(&whole[..cut.min(whole.len())]);
            if cut < whole.len() {
                prop_assert_eq!(parse_request(&mut part, 1 << 20).unwrap(), None);
            }
            let got = parse_request(&mut buf, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(got.iter().map(|a| a.to_vec()).collect::<Vec<_>>(), args);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = parse_request(&mut buf, 1024);
            if let Ok(Some(n)) = reply_len(&bytes, 1024) {
                let _ = Value::decode(&Bytes::copy_from_slice(&bytes[..n]));
            }
        }

        #[test]
        fn replies_round_trip(items in prop::collection::vec(arg(), 0..6)) {
            let value = Value::Aggregate(
                b'*',
                items.iter().map(|i| Value::Bulk(b'$', Bytes::copy_from_slice(i))).collect(),
            );
            let mut out = BytesMut::new();
            value.encode(&mut out);
            prop_assert_eq!(reply_len(&out, 1 << 20).unwrap(), Some(out.len()));
            prop_assert_eq!(Value::decode(&out.freeze()).unwrap(), value);
        }
    }
}

#[test]
fn integers_read_as_i64_from_str_reads_them() {
    for text in [
        "0",
        "12",
        "-1",
        "+7",
        "-0",
        "9223372036854775807",
        "-9223372036854775808",
        "",
        "-",
        "+",
        "1a",
        " 1",
        "9223372036854775808",
        "--1",
        "1.5",
    ] {
        assert_eq!(
            super::parse_int(text.as_bytes()),
            text.parse::<i64>().ok(),
            "{text:?}"
        );
    }
    assert_eq!(&super::lower_name(b"GeT")[..], b"get");
}
