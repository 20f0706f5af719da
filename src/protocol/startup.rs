//! The untyped packets a client may send first: no tag, an i32 length, then
//! an i32 code that says which one it is.

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;
use super::frame::read_cstr;

pub const PROTOCOL_3_0: i32 = 196_608;
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// Postgres' own MAX_STARTUP_PACKET_LENGTH.
pub const MAX_STARTUP_PACKET: usize = 10_000;
/// Largest client frame before the server has sent AuthenticationOk
/// (password, SASL and GSSAPI responses): Postgres reads these with its own
/// PG_MAX_AUTH_TOKEN_LENGTH (65,535-byte body) and refuses anything longer,
/// so this bound never refuses a login the server would accept (a Kerberos
/// token with a PAC can pass 10,000 bytes), while an unauthenticated peer
/// can make the proxy hold at most 64 KiB instead of `max_message_size`.
pub const MAX_AUTH_FRAME: usize = 65_535 + 5;

/// A CancelRequest packet for `(pid, secret)`.
pub fn encode_cancel_request(pid: i32, secret: i32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16i32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
    out[8..12].copy_from_slice(&pid.to_be_bytes());
    out[12..].copy_from_slice(&secret.to_be_bytes());
    out
}

/// One classified startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    /// `raw` is the whole 16-byte packet, forwarded as is.
    CancelRequest {
        pid: i32,
        secret: i32,
        raw: Bytes,
    },
    Startup(StartupMessage),
}

/// A protocol 3.x StartupMessage: parameters as raw bytes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// The requested protocol version (196608 for 3.0).
    pub version: i32,
    pub params: Vec<(Bytes, Bytes)>,
}

/// Split one startup packet off `buf`; `Ok(None)` until it is whole.
pub fn decode_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ProtocolError> {
    // Judge the length as soon as it is in, as Postgres does: a bogus one
    // is answered at once instead of waiting for bytes that never come.
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 || len as usize > MAX_STARTUP_PACKET {
        return Err(ProtocolError::StartupLength { len });
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let code = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let len = len as usize;
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {}
        // Protocol 3.x: a newer minor version is the server's to negotiate
        // (NegotiateProtocolVersion), so it is forwarded as sent.
        c if c >> 16 == 3 => {}
        _ => return Err(ProtocolError::UnknownStartupCode { code }),
    }
    if buf.len() < len {
        return Ok(None);
    }
    let packet = buf.split_to(len).freeze();
    let body = &packet[8..];
    let fixed = |n: usize| {
        if body.len() == n {
            Ok(())
        } else {
            Err(ProtocolError::StartupLength { len: len as i32 })
        }
    };
    Ok(Some(match code {
        SSL_REQUEST_CODE => {
            fixed(0)?;
            StartupPacket::SslRequest
        }
        GSSENC_REQUEST_CODE => {
            fixed(0)?;
            StartupPacket::GssEncRequest
        }
        CANCEL_REQUEST_CODE => {
            fixed(8)?;
            StartupPacket::CancelRequest {
                pid: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                secret: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                raw: packet.clone(),
            }
        }
        _ => StartupPacket::Startup(StartupMessage::parse(&packet, code, 8)?),
    }))
}

impl StartupMessage {
    /// Parameters start at `at` in `packet`: pairs of C strings, then a NUL.
    fn parse(packet: &Bytes, version: i32, at: usize) -> Result<StartupMessage, ProtocolError> {
        const WHAT: &str = "startup";
        let mut rest = &packet[at..];
        let mut params = Vec::new();
        loop {
            let key = read_cstr(&mut rest, WHAT)?;
            if key.is_empty() {
                break;
            }
            let value = read_cstr(&mut rest, WHAT)?;
            params.push((packet.slice_ref(key), packet.slice_ref(value)));
        }
        if !rest.is_empty() {
            return Err(ProtocolError::Malformed { what: WHAT });
        }
        Ok(StartupMessage { version, params })
    }

    /// A parameter's raw value.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(k, _)| &k[..] == name.as_bytes())
            .map(|(_, v)| &v[..])
    }

    /// A parameter as text, for routing and logs (lossy for non-UTF-8).
    pub fn get_str(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.get(name).map(String::from_utf8_lossy)
    }

    /// The database the client asked for (Postgres defaults it to the user).
    pub fn database(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.get_str("database").or_else(|| self.get_str("user"))
    }

    /// Set a parameter in place, or append it when absent.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        let value = Bytes::copy_from_slice(value);
        match self
            .params
            .iter_mut()
            .find(|(k, _)| &k[..] == name.as_bytes())
        {
            Some((_, v)) => *v = value,
            None => self
                .params
                .push((Bytes::copy_from_slice(name.as_bytes()), value)),
        }
    }

    /// Add `-c name=value` to the `options` parameter, after any options the
    /// client already sent (later settings win in Postgres).
    pub fn append_setting(&mut self, name: &str, value: &str) {
        let setting = format!("-c {name}={}", escape_option_value(value));
        let options = match self.get("options") {
            Some(old) if !old.is_empty() => {
                let mut v = old.to_vec();
                v.push(b' ');
                v.extend_from_slice(setting.as_bytes());
                v
            }
            _ => setting.into_bytes(),
        };
        self.set("options", &options);
    }

    /// The packet to send upstream: the client's version, every parameter
    /// in order.
    pub fn encode(&self) -> Bytes {
        let body: usize = self.params.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut out = BytesMut::with_capacity(9 + body);
        out.put_i32((9 + body) as i32);
        out.put_i32(self.version);
        for (k, v) in &self.params {
            out.extend_from_slice(k);
            out.put_u8(0);
            out.extend_from_slice(v);
            out.put_u8(0);
        }
        out.put_u8(0);
        out.freeze()
    }
}

/// Escape a value for the startup `options` string: Postgres splits it on
/// whitespace and takes a backslash as "next character is literal".
pub fn escape_option_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if c == '\\' || c.is_ascii_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> BytesMut {
        let msg = StartupMessage {
            version: PROTOCOL_3_0,
            params: params
                .iter()
                .map(|(k, v)| {
                    (
                        Bytes::copy_from_slice(k.as_bytes()),
                        Bytes::copy_from_slice(v.as_bytes()),
                    )
                })
                .collect(),
        };
        BytesMut::from(&msg.encode()[..])
    }

    fn code_packet(code: i32, extra: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i32(8 + extra.len() as i32);
        b.put_i32(code);
        b.extend_from_slice(extra);
        b
    }

    #[test]
    fn classifies_request_codes() {
        let mut b = code_packet(SSL_REQUEST_CODE, b"");
        assert_eq!(decode_startup(&mut b), Ok(Some(StartupPacket::SslRequest)));
        assert!(b.is_empty());
        let mut b = code_packet(GSSENC_REQUEST_CODE, b"");
        assert_eq!(
            decode_startup(&mut b),
            Ok(Some(StartupPacket::GssEncRequest))
        );
        let mut b = code_packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 0xff, 0xff, 0xff, 0xfe]);
        let raw = b.clone().freeze();
        assert_eq!(
            decode_startup(&mut b),
            Ok(Some(StartupPacket::CancelRequest {
                pid: 7,
                secret: -2,
                raw
            }))
        );
    }

    #[test]
    fn encoded_cancel_request_decodes_to_its_key() {
        let raw = encode_cancel_request(7, -2);
        let mut b = BytesMut::from(&raw[..]);
        assert_eq!(
            decode_startup(&mut b),
            Ok(Some(StartupPacket::CancelRequest {
                pid: 7,
                secret: -2,
                raw: Bytes::copy_from_slice(&raw)
            }))
        );
    }

    #[test]
    fn protocol_3_minor_versions_are_kept() {
        let mut b = code_packet(196_610, b"user\0app\0_pq_.x\0y\0\0");
        let raw = b.clone().freeze();
        let Some(StartupPacket::Startup(msg)) = decode_startup(&mut b).unwrap() else {
            panic!()
        };
        assert_eq!(msg.version, 196_610);
        assert_eq!(msg.encode(), raw);
    }

    #[test]
    fn round_trip_keeps_parameter_order() {
        let params = [
            ("user", "app"),
            ("database", "heal7"),
            ("application_name", "svc"),
            ("client_encoding", "UTF8"),
        ];
        let mut b = startup(&params);
        let original = b.clone().freeze();
        let Some(StartupPacket::Startup(msg)) = decode_startup(&mut b).unwrap() else {
            panic!("not a startup message");
        };
        assert!(b.is_empty());
        assert_eq!(msg.encode(), original);
        assert_eq!(msg.database().as_deref(), Some("heal7"));
    }

    #[test]
    fn rebuild_changes_database_and_appends_search_path() {
        let mut b = startup(&[
            ("user", "app"),
            ("database", "heal7_saju"),
            ("options", "-c statement_timeout=5s"),
            ("application_name", "svc"),
        ]);
        let Some(StartupPacket::Startup(mut msg)) = decode_startup(&mut b).unwrap() else {
            panic!()
        };
        msg.set("database", b"heal7");
        msg.append_setting("search_path", "saju_service, public");
        let mut again = BytesMut::from(&msg.encode()[..]);
        let Some(StartupPacket::Startup(back)) = decode_startup(&mut again).unwrap() else {
            panic!()
        };
        let keys: Vec<&[u8]> = back.params.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(
            keys,
            [&b"user"[..], b"database", b"options", b"application_name"]
        );
        assert_eq!(back.get("database"), Some(&b"heal7"[..]));
        assert_eq!(
            back.get("options"),
            Some(&br"-c statement_timeout=5s -c search_path=saju_service,\ public"[..])
        );
    }

    #[test]
    fn missing_database_is_appended_and_options_created() {
        let mut b = startup(&[("user", "heal7")]);
        let Some(StartupPacket::Startup(mut msg)) = decode_startup(&mut b).unwrap() else {
            panic!()
        };
        assert_eq!(msg.database().as_deref(), Some("heal7"));
        msg.append_setting("search_path", r"a\b");
        msg.set("database", b"x");
        assert_eq!(msg.get("options"), Some(&br"-c search_path=a\\b"[..]));
        assert_eq!(msg.params.last().unwrap().0, &b"database"[..]);
    }

    #[test]
    fn malformed_startup_packets_are_errors() {
        // Unknown protocol version (2.0).
        let mut b = code_packet(131_072, b"user\0x\0\0");
        assert_eq!(
            decode_startup(&mut b),
            Err(ProtocolError::UnknownStartupCode { code: 131_072 })
        );
        // Length under 8 and over the cap.
        for len in [0i32, 7, 10_001, -5] {
            let mut b = BytesMut::new();
            b.put_i32(len);
            b.put_i32(PROTOCOL_3_0);
            assert_eq!(
                decode_startup(&mut b),
                Err(ProtocolError::StartupLength { len })
            );
        }
        // Missing terminators.
        let mut b = code_packet(PROTOCOL_3_0, b"user\0app");
        assert!(matches!(
            decode_startup(&mut b),
            Err(ProtocolError::Malformed { .. })
        ));
        // Trailing garbage after the final NUL.
        let mut b = code_packet(PROTOCOL_3_0, b"user\0app\0\0zz");
        assert!(decode_startup(&mut b).is_err());
        // SSLRequest with a body.
        let mut b = code_packet(SSL_REQUEST_CODE, b"xxxx");
        assert!(decode_startup(&mut b).is_err());
    }

    #[test]
    fn truncated_startup_is_none() {
        let whole = startup(&[("user", "app")]);
        for cut in 0..whole.len() {
            let mut b = BytesMut::from(&whole[..cut]);
            assert_eq!(decode_startup(&mut b), Ok(None), "cut at {cut}");
        }
    }
}
