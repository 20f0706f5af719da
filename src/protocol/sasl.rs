//! The SASLInitialResponse body the admin console reads during login, parsed
//! with every length checked. pgwire frames the message; its own
//! `SASLInitialResponse::decode_body` (pgwire `src/messages/startup.rs`)
//! trusts the embedded length and panics on a short body, so the console
//! coerces the raw body here instead.

use super::ProtocolError;

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
