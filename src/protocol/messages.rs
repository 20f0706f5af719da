//! Lazy views of the few messages the proxy reads, and encoders for the ones
//! it writes. A view borrows the whole frame (header included) and reads
//! only what it is asked for; everything else stays raw bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;
use super::frame::{begin_frame, finish_frame, read_cstr};

fn body(frame: &[u8]) -> &[u8] {
    frame.get(5..).unwrap_or_default()
}

/// Client 'Q': one string of SQL (possibly several statements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryView<'a> {
    /// The SQL text, without the terminating NUL. Bytes in the client's
    /// encoding: not necessarily UTF-8.
    pub query: &'a [u8],
}

impl<'a> QueryView<'a> {
    pub fn parse(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut rest = body(frame);
        let query = read_cstr(&mut rest, "Query")?;
        if !rest.is_empty() {
            return Err(ProtocolError::Malformed { what: "Query" });
        }
        Ok(QueryView { query })
    }
}

/// Client 'P': statement name, SQL text, parameter types (kept raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseView<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
    /// The i16 count and the i32 type OIDs, as sent.
    pub param_types: &'a [u8],
}

impl<'a> ParseView<'a> {
    pub fn parse(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        const WHAT: &str = "Parse";
        let mut rest = body(frame);
        let name = read_cstr(&mut rest, WHAT)?;
        let query = read_cstr(&mut rest, WHAT)?;
        if rest.len() < 2 {
            return Err(ProtocolError::Malformed { what: WHAT });
        }
        let count = i16::from_be_bytes([rest[0], rest[1]]);
        if count < 0 || rest.len() != 2 + 4 * count as usize {
            return Err(ProtocolError::Malformed { what: WHAT });
        }
        Ok(ParseView {
            name,
            query,
            param_types: rest,
        })
    }
}

/// Server 'K': the key a CancelRequest must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKeyData {
    pub pid: i32,
    pub secret: i32,
}

impl BackendKeyData {
    pub fn parse(frame: &[u8]) -> Result<Self, ProtocolError> {
        match body(frame) {
            [a, b, c, d, e, f, g, h] => Ok(BackendKeyData {
                pid: i32::from_be_bytes([*a, *b, *c, *d]),
                secret: i32::from_be_bytes([*e, *f, *g, *h]),
            }),
            _ => Err(ProtocolError::Malformed {
                what: "BackendKeyData",
            }),
        }
    }
}

/// Server 'Z': the transaction status byte (I, T or E).
pub fn ready_for_query_status(frame: &[u8]) -> Result<u8, ProtocolError> {
    match body(frame) {
        [s @ (b'I' | b'T' | b'E')] => Ok(*s),
        _ => Err(ProtocolError::Malformed {
            what: "ReadyForQuery",
        }),
    }
}

/// Server 'S': a run-time parameter the client should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> ParameterStatus<'a> {
    pub fn parse(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        const WHAT: &str = "ParameterStatus";
        let mut rest = body(frame);
        let name = read_cstr(&mut rest, WHAT)?;
        let value = read_cstr(&mut rest, WHAT)?;
        Ok(ParameterStatus { name, value })
    }
}

/// Server 'E' (or 'N'): a list of (field code, value) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    tag: u8,
    fields: Vec<(u8, &'a [u8])>,
}

impl<'a> ErrorFields<'a> {
    pub fn parse(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        const WHAT: &str = "ErrorResponse";
        let tag = *frame
            .first()
            .ok_or(ProtocolError::Malformed { what: WHAT })?;
        let mut rest = body(frame);
        let mut fields = Vec::with_capacity(8);
        loop {
            let (&code, after) = rest
                .split_first()
                .ok_or(ProtocolError::Malformed { what: WHAT })?;
            rest = after;
            if code == 0 {
                break;
            }
            fields.push((code, read_cstr(&mut rest, WHAT)?));
        }
        if !rest.is_empty() {
            return Err(ProtocolError::Malformed { what: WHAT });
        }
        Ok(ErrorFields { tag, fields })
    }

    pub fn get(&self, code: u8) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| *v)
    }

    /// The 'P' field: a 1-based character position in the statement text.
    pub fn position(&self) -> Option<usize> {
        std::str::from_utf8(self.get(b'P')?).ok()?.parse().ok()
    }

    /// The SQLSTATE ('C' field).
    pub fn code(&self) -> Option<&'a [u8]> {
        self.get(b'C')
    }

    /// Re-encode with the 'P' field set to `position`; every other field is
    /// written back byte for byte and in its original order.
    pub fn with_position(&self, position: usize) -> Bytes {
        let pos = position.to_string();
        let mut out = BytesMut::with_capacity(
            8 + self.fields.iter().map(|(_, v)| v.len() + 2).sum::<usize>(),
        );
        let start = begin_frame(&mut out, self.tag);
        for (code, value) in &self.fields {
            out.put_u8(*code);
            if *code == b'P' {
                out.extend_from_slice(pos.as_bytes());
            } else {
                out.extend_from_slice(value);
            }
            out.put_u8(0);
        }
        out.put_u8(0);
        finish_frame(&mut out, start);
        out.freeze()
    }
}

/// Append a Query frame carrying `query`.
pub fn encode_query(out: &mut BytesMut, query: &[u8]) {
    encode_query_with(out, |out| out.extend_from_slice(query));
}

/// [`encode_query`] with the text appended by `write_text` (no copy of it
/// is made first).
pub fn encode_query_with(out: &mut BytesMut, write_text: impl FnOnce(&mut BytesMut)) {
    let start = begin_frame(out, b'Q');
    write_text(out);
    out.put_u8(0);
    finish_frame(out, start);
}

/// Append a Parse frame: the client's name and raw parameter types around
/// a (rewritten) query text.
pub fn encode_parse(out: &mut BytesMut, name: &[u8], query: &[u8], param_types: &[u8]) {
    encode_parse_with(out, name, |out| out.extend_from_slice(query), param_types);
}

/// [`encode_parse`] with the text appended by `write_text`.
pub fn encode_parse_with(
    out: &mut BytesMut,
    name: &[u8],
    write_text: impl FnOnce(&mut BytesMut),
    param_types: &[u8],
) {
    let start = begin_frame(out, b'P');
    out.extend_from_slice(name);
    out.put_u8(0);
    write_text(out);
    out.put_u8(0);
    out.extend_from_slice(param_types);
    finish_frame(out, start);
}

/// Append an ErrorResponse with severity, SQLSTATE and message. NUL bytes
/// in the message would end the field early, so they are dropped.
pub fn encode_error_response(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    let start = begin_frame(out, b'E');
    for (field, value) in [(b'S', severity), (b'V', severity), (b'C', code)] {
        out.put_u8(field);
        out.extend_from_slice(value.as_bytes());
        out.put_u8(0);
    }
    out.put_u8(b'M');
    out.extend(message.bytes().filter(|&b| b != 0));
    out.put_u8(0);
    out.put_u8(0);
    finish_frame(out, start);
}

/// Append a CommandComplete frame with the command tag `tag`.
pub fn encode_command_complete(out: &mut BytesMut, tag: &str) {
    let start = begin_frame(out, b'C');
    out.extend(tag.bytes().filter(|&b| b != 0));
    out.put_u8(0);
    finish_frame(out, start);
}

pub fn encode_ready_for_query(out: &mut BytesMut, status: u8) {
    let start = begin_frame(out, b'Z');
    out.put_u8(status);
    finish_frame(out, start);
}

/// Append a Close frame for the prepared statement (`b'S'`) or portal
/// (`b'P'`) `name`.
pub fn encode_close(out: &mut BytesMut, kind: u8, name: &[u8]) {
    let start = begin_frame(out, b'C');
    out.put_u8(kind);
    out.extend_from_slice(name);
    out.put_u8(0);
    finish_frame(out, start);
}

pub fn encode_sync(out: &mut BytesMut) {
    let start = begin_frame(out, b'S');
    finish_frame(out, start);
}

/// Append an Authentication message: `code` (0 ok, 5 md5 with a salt, 10
/// SASL with mechanism names, 11 SASLContinue, 12 SASLFinal) and its data.
pub fn encode_authentication(out: &mut BytesMut, code: i32, data: &[u8]) {
    let start = begin_frame(out, b'R');
    out.put_i32(code);
    out.extend_from_slice(data);
    finish_frame(out, start);
}

pub fn encode_parameter_status(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    let start = begin_frame(out, b'S');
    out.extend_from_slice(name);
    out.put_u8(0);
    out.extend_from_slice(value);
    out.put_u8(0);
    finish_frame(out, start);
}

pub fn encode_backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    let start = begin_frame(out, b'K');
    out.put_i32(pid);
    out.put_i32(secret);
    finish_frame(out, start);
}

/// Append a PasswordMessage / SASLResponse ('p') carrying `data` as is.
pub fn encode_password_message(out: &mut BytesMut, data: &[u8]) {
    let start = begin_frame(out, b'p');
    out.extend_from_slice(data);
    finish_frame(out, start);
}

/// Append a SASLInitialResponse for `mechanism` with `data`.
pub fn encode_sasl_initial(out: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let start = begin_frame(out, b'p');
    out.extend_from_slice(mechanism.as_bytes());
    out.put_u8(0);
    out.put_i32(data.len() as i32);
    out.extend_from_slice(data);
    finish_frame(out, start);
}

/// Append a Bind of the unnamed statement to the unnamed portal with text
/// parameters (`None`: NULL) and text results.
pub fn encode_bind_text(out: &mut BytesMut, params: &[Option<&[u8]>]) {
    let start = begin_frame(out, b'B');
    out.put_u8(0);
    out.put_u8(0);
    out.put_i16(0);
    out.put_i16(params.len() as i16);
    for p in params {
        match p {
            Some(v) => {
                out.put_i32(v.len() as i32);
                out.extend_from_slice(v);
            }
            None => out.put_i32(-1),
        }
    }
    out.put_i16(0);
    finish_frame(out, start);
}

/// Append an Execute of the unnamed portal, all rows.
pub fn encode_execute(out: &mut BytesMut) {
    let start = begin_frame(out, b'E');
    out.put_u8(0);
    out.put_i32(0);
    finish_frame(out, start);
}

pub fn encode_terminate(out: &mut BytesMut) {
    let start = begin_frame(out, b'X');
    finish_frame(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Frame;

    const MAX: usize = 1 << 20;

    fn decode_one(mut buf: BytesMut) -> Frame {
        let f = Frame::decode(&mut buf, MAX).unwrap().unwrap();
        assert!(buf.is_empty(), "bytes left after one frame");
        f
    }

    #[test]
    fn backend_key_data_round_trip() {
        let key = BackendKeyData {
            pid: 4242,
            secret: -7,
        };
        let mut buf = BytesMut::new();
        encode_backend_key_data(&mut buf, key.pid, key.secret);
        assert_eq!(buf.len(), 13);
        assert_eq!(BackendKeyData::parse(&buf), Ok(key));
    }

    #[test]
    fn query_round_trip() {
        let mut buf = BytesMut::new();
        encode_query(&mut buf, b"select * from users");
        let f = decode_one(buf);
        assert_eq!(f.tag, b'Q');
        assert_eq!(
            QueryView::parse(&f.bytes).unwrap().query,
            b"select * from users"
        );
    }

    #[test]
    fn query_keeps_non_utf8_bytes() {
        let text = b"select '\xbb\xe7\xbf\xeb\xc0\xda'"; // EUC-KR
        let mut buf = BytesMut::new();
        encode_query(&mut buf, text);
        let f = decode_one(buf);
        assert_eq!(QueryView::parse(&f.bytes).unwrap().query, text);
    }

    #[test]
    fn parse_round_trip_keeps_name_and_param_types() {
        let types = [0u8, 2, 0, 0, 0, 23, 0, 0, 0, 25];
        let mut buf = BytesMut::new();
        encode_parse(&mut buf, b"s1", b"select $1::int, $2", &types);
        let original = buf.clone().freeze();
        let f = decode_one(buf);
        let p = ParseView::parse(&f.bytes).unwrap();
        assert_eq!(p.name, b"s1");
        assert_eq!(p.query, b"select $1::int, $2");
        assert_eq!(p.param_types, types);
        // Re-encoding with new text keeps the rest.
        let mut again = BytesMut::new();
        encode_parse(&mut again, p.name, b"select 1", p.param_types);
        let p2f = decode_one(again);
        let p2 = ParseView::parse(&p2f.bytes).unwrap();
        assert_eq!(
            (p2.name, p2.query, p2.param_types),
            (&b"s1"[..], &b"select 1"[..], &types[..])
        );
        assert_ne!(p2f.bytes, original);
    }

    #[test]
    fn malformed_query_and_parse_are_errors() {
        let mut no_nul = BytesMut::new();
        encode_query(&mut no_nul, b"x");
        let mut bad = no_nul.to_vec();
        bad.pop();
        assert!(QueryView::parse(&bad).is_err());
        let mut p = BytesMut::new();
        encode_parse(&mut p, b"", b"select 1", &[0, 1]); // claims one type, has none
        assert!(ParseView::parse(&p).is_err());
        let mut p = BytesMut::new();
        encode_parse(&mut p, b"", b"select 1", &[0xff, 0xff]); // negative count
        assert!(ParseView::parse(&p).is_err());
    }

    #[test]
    fn error_response_round_trip() {
        let mut buf = BytesMut::new();
        encode_error_response(&mut buf, "FATAL", "08P01", "bad\0 frame");
        let f = decode_one(buf);
        let e = ErrorFields::parse(&f.bytes).unwrap();
        assert_eq!(e.get(b'S'), Some(&b"FATAL"[..]));
        assert_eq!(e.code(), Some(&b"08P01"[..]));
        assert_eq!(e.get(b'M'), Some(&b"bad frame"[..]));
        assert_eq!(e.position(), None);
    }

    #[test]
    fn position_rewrite_keeps_other_fields_byte_identical() {
        // As Postgres sends it: S V C M P F L R, with a non-UTF-8 message.
        let fields: &[(u8, &[u8])] = &[
            (b'S', b"ERROR"),
            (b'V', b"ERROR"),
            (b'C', b"42P01"),
            (
                b'M',
                b"relation \"shared_common.userz\" \xb0\xa1 does not exist",
            ),
            (b'P', b"29"),
            (b'p', b"7"),
            (b'F', b"parse_relation.c"),
            (b'L', b"1392"),
            (b'R', b"parserOpenTable"),
        ];
        let mut buf = BytesMut::new();
        let start = begin_frame(&mut buf, b'E');
        for (c, v) in fields {
            buf.put_u8(*c);
            buf.extend_from_slice(v);
            buf.put_u8(0);
        }
        buf.put_u8(0);
        finish_frame(&mut buf, start);
        let f = decode_one(buf);
        let e = ErrorFields::parse(&f.bytes).unwrap();
        assert_eq!(e.position(), Some(29));

        let fixed = e.with_position(15);
        let back = ErrorFields::parse(&fixed).unwrap();
        let expected: Vec<(u8, &[u8])> = fields
            .iter()
            .map(|&(c, v)| if c == b'P' { (c, &b"15"[..]) } else { (c, v) })
            .collect();
        assert_eq!(back.fields, expected);
        // Same position in, same bytes out.
        assert_eq!(e.with_position(29), f.bytes);
    }

    #[test]
    fn malformed_error_response_is_an_error() {
        assert!(ErrorFields::parse(b"E\0\0\0\x06S").is_err());
        assert!(ErrorFields::parse(b"E\0\0\0\x08Sx\0").is_err()); // no final NUL
    }

    #[test]
    fn small_server_messages() {
        assert_eq!(
            BackendKeyData::parse(b"K\0\0\0\x0c\0\0\x30\x39\xff\xff\xff\xff").unwrap(),
            BackendKeyData {
                pid: 12345,
                secret: -1
            }
        );
        assert!(BackendKeyData::parse(b"K\0\0\0\x08\0\0\0\0").is_err());

        let mut z = BytesMut::new();
        encode_ready_for_query(&mut z, b'T');
        let f = decode_one(z);
        assert_eq!(ready_for_query_status(&f.bytes), Ok(b'T'));
        assert!(ready_for_query_status(b"Z\0\0\0\x05Q").is_err());

        let s = ParameterStatus::parse(b"S\0\0\0\x1bclient_encoding\0EUC_KR\0").unwrap();
        assert_eq!((s.name, s.value), (&b"client_encoding"[..], &b"EUC_KR"[..]));

        let mut x = BytesMut::new();
        encode_terminate(&mut x);
        assert_eq!(&x[..], b"X\0\0\0\x04");
    }
}
