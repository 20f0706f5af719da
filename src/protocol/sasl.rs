//! The SASLInitialResponse body the admin console reads during login, parsed
//! with every length checked. pgwire frames the message; its own
//! `SASLInitialResponse::decode_body` (pgwire `src/messages/startup.rs`)
//! trusts the embedded length and panics on a short body, so the console
//! coerces the raw body here instead.

use bytes::{BufMut, BytesMut};

use super::ProtocolError;

/// AuthenticationSASL's request code.
const AUTH_SASL: i32 = 10;
/// The suffix of the SASL mechanisms that bind to the TLS channel.
const CHANNEL_BINDING_SUFFIX: &[u8] = b"-PLUS";

/// An AuthenticationSASL frame (whole, tag included) without its
/// channel-binding mechanisms (`SCRAM-SHA-256-PLUS`); `None` when there is
/// nothing to remove or the frame is not one. A relaying proxy cannot offer
/// them: the client would bind to the proxy's certificate and the server
/// check against its own.
pub fn without_channel_binding(frame: &[u8]) -> Option<BytesMut> {
    let body = frame.get(5..)?;
    if frame[0] != b'R' || body.get(..4)? != AUTH_SASL.to_be_bytes() {
        return None;
    }
    let list = &body[4..];
    let names: Vec<&[u8]> = list
        .split(|&b| b == 0)
        .take_while(|n| !n.is_empty())
        .collect();
    if !names.iter().any(|n| n.ends_with(CHANNEL_BINDING_SUFFIX)) {
        return None;
    }
    let mut out = BytesMut::with_capacity(frame.len());
    out.put_u8(b'R');
    out.put_i32(0);
    out.put_i32(AUTH_SASL);
    for name in names
        .iter()
        .filter(|n| !n.ends_with(CHANNEL_BINDING_SUFFIX))
    {
        out.put_slice(name);
        out.put_u8(0);
    }
    out.put_u8(0);
    let len = (out.len() - 1) as i32;
    out[1..5].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

/// Whether a client's first password-phase frame (whole, tag included) is
/// a SCRAM SASLInitialResponse with the GS2 flag `y`: "I can bind, but
/// you did not offer it". A TLS server that supports binding refuses that
/// as a downgrade, and a relaying proxy cannot make it right (the flag is
/// signed into the client's proof).
pub fn claims_binding_unoffered(frame: &[u8]) -> bool {
    let Some(body) = frame.get(5..) else {
        return false;
    };
    matches!(parse_sasl_initial(body), Ok((mechanism, data))
        if mechanism.starts_with("SCRAM-") && data.first() == Some(&b'y'))
}

/// SASLInitialResponse ('p' during authentication): mechanism and the
/// client-first-message. `body` is the frame without its tag and length.
pub fn parse_sasl_initial(body: &[u8]) -> Result<(&str, &[u8]), ProtocolError> {
    const WHAT: ProtocolError = ProtocolError::Malformed {
        what: "SASLInitialResponse",
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_sasl(names: &[&str]) -> Vec<u8> {
        let mut body = AUTH_SASL.to_be_bytes().to_vec();
        for n in names {
            body.extend_from_slice(n.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut frame = vec![b'R'];
        frame.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn channel_binding_mechanisms_are_removed_from_authentication_sasl() {
        let offered = auth_sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        let sent = without_channel_binding(&offered).unwrap();
        assert_eq!(&sent[..], &auth_sasl(&["SCRAM-SHA-256"])[..]);
        // Order does not matter, and nothing to remove means no rewrite.
        let offered = auth_sasl(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]);
        assert_eq!(
            &without_channel_binding(&offered).unwrap()[..],
            &auth_sasl(&["SCRAM-SHA-256"])[..]
        );
        assert!(without_channel_binding(&auth_sasl(&["SCRAM-SHA-256"])).is_none());
    }

    #[test]
    fn other_authentication_requests_pass_untouched() {
        // AuthenticationOk, AuthenticationMD5Password, SASLContinue.
        assert!(without_channel_binding(b"R\0\0\0\x08\0\0\0\0").is_none());
        assert!(without_channel_binding(b"R\0\0\0\x0c\0\0\0\x05salt").is_none());
        let mut cont = b"R\0\0\0\x20\0\0\0\x0b".to_vec();
        cont.extend_from_slice(b"r=abc-PLUS\0,s=xyz,i=4096");
        assert!(without_channel_binding(&cont).is_none());
        assert!(without_channel_binding(b"R\0\0").is_none());
        assert!(without_channel_binding(b"").is_none());
    }

    fn initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
        let mut body = mechanism.as_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&(data.len() as i32).to_be_bytes());
        body.extend_from_slice(data);
        let mut frame = vec![b'p'];
        frame.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn gs2_flag_y_is_recognised() {
        assert!(claims_binding_unoffered(&initial(
            "SCRAM-SHA-256",
            b"y,,n=,r=abc"
        )));
        assert!(!claims_binding_unoffered(&initial(
            "SCRAM-SHA-256",
            b"n,,n=,r=abc"
        )));
        // A cleartext or MD5 PasswordMessage is not a SASL response.
        assert!(!claims_binding_unoffered(b"p\0\0\0\x09yes\0\0"));
        assert!(!claims_binding_unoffered(b"p\0\0\0\x08y\0\0\0"));
        assert!(!claims_binding_unoffered(b"p"));
    }

    #[test]
    fn sasl_initial_response_parses_and_checks_its_length() {
        let body = b"SCRAM-SHA-256\0\0\0\0\x05n,,xx";
        assert_eq!(
            parse_sasl_initial(body).unwrap(),
            ("SCRAM-SHA-256", &b"n,,xx"[..])
        );
        assert!(parse_sasl_initial(b"SCRAM-SHA-256\0\0\0\0\x09n,,xx").is_err());
        assert!(parse_sasl_initial(b"SCRAM-SHA-256\0\xff\xff\xff\xffn,,xx").is_err());
        assert!(parse_sasl_initial(b"SCRAM").is_err());
        assert!(parse_sasl_initial(b"SCRAM\0\0").is_err());
    }
}
