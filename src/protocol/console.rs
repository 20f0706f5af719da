//! The backend messages only the admin console writes (authentication,
//! ParameterStatus, result sets) and the SASL messages it reads. Pure
//! functions over `BytesMut`; the relay never needs them.

use bytes::{BufMut, BytesMut};

use super::ProtocolError;

/// Text, so every value is sent in text format and psql prints it as is.
const TEXT_OID: i32 = 25;

fn begin(out: &mut BytesMut, tag: u8) -> usize {
    out.extend_from_slice(&[tag, 0, 0, 0, 0]);
    out.len() - 5
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn cstr(out: &mut BytesMut, s: &str) {
    out.extend(s.bytes().filter(|&b| b != 0));
    out.put_u8(0);
}

fn auth(out: &mut BytesMut, code: i32, data: &[u8]) {
    let start = begin(out, b'R');
    out.put_i32(code);
    out.extend_from_slice(data);
    finish(out, start);
}

/// AuthenticationSASL offering `mechanism` only.
pub fn auth_sasl(out: &mut BytesMut, mechanism: &str) {
    let start = begin(out, b'R');
    out.put_i32(10);
    cstr(out, mechanism);
    out.put_u8(0);
    finish(out, start);
}

pub fn auth_sasl_continue(out: &mut BytesMut, data: &str) {
    auth(out, 11, data.as_bytes());
}

pub fn auth_sasl_final(out: &mut BytesMut, data: &str) {
    auth(out, 12, data.as_bytes());
}

pub fn auth_ok(out: &mut BytesMut) {
    auth(out, 0, &[]);
}

pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    let start = begin(out, b'S');
    cstr(out, name);
    cstr(out, value);
    finish(out, start);
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    let start = begin(out, b'K');
    out.put_i32(pid);
    out.put_i32(secret);
    finish(out, start);
}

pub fn empty_query_response(out: &mut BytesMut) {
    let start = begin(out, b'I');
    finish(out, start);
}

/// A whole result set of text columns: RowDescription, DataRows,
/// CommandComplete with `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Option<String>>>,
    pub tag: String,
}

impl ResultSet {
    /// A result set tagged `SHOW`, as PgBouncer's console answers.
    pub fn show(columns: Vec<&'static str>, rows: Vec<Vec<Option<String>>>) -> ResultSet {
        ResultSet {
            columns,
            rows,
            tag: "SHOW".into(),
        }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let start = begin(out, b'T');
        out.put_i16(self.columns.len() as i16);
        for name in &self.columns {
            cstr(out, name);
            out.put_i32(0); // table OID
            out.put_i16(0); // column number
            out.put_i32(TEXT_OID);
            out.put_i16(-1); // variable length
            out.put_i32(-1); // no type modifier
            out.put_i16(0); // text format
        }
        finish(out, start);
        for row in &self.rows {
            let start = begin(out, b'D');
            out.put_i16(row.len() as i16);
            for value in row {
                match value {
                    Some(v) => {
                        out.put_i32(v.len() as i32);
                        out.extend_from_slice(v.as_bytes());
                    }
                    None => out.put_i32(-1),
                }
            }
            finish(out, start);
        }
        let start = begin(out, b'C');
        cstr(out, &self.tag);
        finish(out, start);
    }
}

/// SASLInitialResponse ('p' during authentication): mechanism and the
/// client-first-message. `frame` is the whole frame, header included.
pub fn parse_sasl_initial(frame: &[u8]) -> Result<(&str, &[u8]), ProtocolError> {
    const WHAT: ProtocolError = ProtocolError::Malformed {
        what: "SASLInitialResponse",
    };
    let body = frame.get(5..).ok_or(WHAT)?;
    let nul = body.iter().position(|&b| b == 0).ok_or(WHAT)?;
    let mechanism = std::str::from_utf8(&body[..nul]).map_err(|_| WHAT)?;
    let rest = &body[nul + 1..];
    let len = rest.get(..4).ok_or(WHAT)?;
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    let data = &rest[4..];
    if len < 0 || len as usize != data.len() {
        return Err(WHAT);
    }
    Ok((mechanism, data))
}

/// SASLResponse: the whole body is the client's message.
pub fn parse_sasl_response(frame: &[u8]) -> &[u8] {
    frame.get(5..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_offer_lists_one_mechanism_then_an_empty_name() {
        let mut out = BytesMut::new();
        auth_sasl(&mut out, "SCRAM-SHA-256");
        assert_eq!(&out[..], b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0");
    }

    #[test]
    fn sasl_initial_response_parses_and_checks_its_length() {
        let frame = b"p\0\0\0\x1eSCRAM-SHA-256\0\0\0\0\x05n,,xx";
        assert_eq!(
            parse_sasl_initial(frame).unwrap(),
            ("SCRAM-SHA-256", &b"n,,xx"[..])
        );
        assert!(parse_sasl_initial(b"p\0\0\0\x1eSCRAM-SHA-256\0\0\0\0\x09n,,xx").is_err());
        assert!(parse_sasl_initial(b"p\0\0\0\x08SCRAM").is_err());
    }

    #[test]
    fn result_set_encodes_null_and_text() {
        let mut out = BytesMut::new();
        ResultSet::show(vec!["a"], vec![vec![Some("x".into())], vec![None]]).encode(&mut out);
        assert_eq!(out[0], b'T');
        let data = &out[out.len() - 33..];
        assert!(
            data.starts_with(b"D\0\0\0\x0b\0\x01\0\0\0\x01x"),
            "{data:?}"
        );
        assert!(out.ends_with(b"D\0\0\0\x0a\0\x01\xff\xff\xff\xffC\0\0\0\x09SHOW\0"));
    }
}
