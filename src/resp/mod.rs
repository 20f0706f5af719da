//! RESP2/RESP3, the Redis wire format: requests split into their arguments,
//! replies found whole without being decoded (they are relayed as the bytes
//! they came in), and a small value tree for the few replies the proxy
//! rewrites (key names in KEYS, SCAN, BLPOP...).
//!
//! Pure: no sockets, no tokio. Every declared length is checked against a
//! bound before anything waits for (or allocates) the bytes it announces.
//!
//! Own code rather than `redis-protocol`: that crate decodes every frame
//! into an owned tree (a cost on each relayed reply, where the proxy needs
//! only the reply's end) and bounds no declared length; what the proxy
//! needs is ~300 lines over `bytes`.

use bytes::{BufMut, Bytes, BytesMut};

/// Redis' own cap on a request's argument count.
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest header line (`*N`, `$N`) or inline command, as Redis.
pub const MAX_LINE: usize = 64 * 1024;
/// Deepest nesting of aggregates decoded into a [`Value`].
pub const MAX_DEPTH: usize = 64;

/// Malformed or oversized input: the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("Protocol error: {0}")]
    Protocol(&'static str),
    #[error("Protocol error: invalid bulk length {0} (the proxy accepts up to {1} bytes)")]
    BulkTooLong(i64, usize),
    #[error("Protocol error: request of more than {0} bytes")]
    RequestTooLong(usize),
}

/// A request's arguments, each a slice of the bytes it arrived in.
pub type Args = Vec<Bytes>;

/// One request from the front of `buf`: `Ok(None)` until all of it is
/// there (nothing consumed). An empty `Args` is a request Redis ignores
/// (`*0`, a blank inline line). `max_bytes` bounds the whole request.
pub fn parse_request(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<Args>, RespError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf);
    }
    let Some((count, mut pos)) = header(buf, 0)? else {
        return Ok(None);
    };
    if count <= 0 {
        let _ = buf.split_to(pos);
        return Ok(Some(Vec::new()));
    }
    if count as usize > MAX_ARGS {
        return Err(RespError::Protocol("invalid multibulk length"));
    }
    // On the stack for the usual few arguments.
    let mut ranges: smallvec::SmallVec<[std::ops::Range<usize>; 8]> =
        smallvec::SmallVec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(RespError::Protocol("expected '$'"));
        }
        let Some((len, body)) = header(buf, pos)? else {
            return Ok(None);
        };
        if len < 0 || len as u64 > max_bytes as u64 {
            return Err(RespError::BulkTooLong(len, max_bytes));
        }
        let end = body + len as usize;
        if end > max_bytes {
            return Err(RespError::RequestTooLong(max_bytes));
        }
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(RespError::Protocol("bulk string not followed by CRLF"));
        }
        ranges.push(body..end);
        pos = end + 2;
    }
    let frame = buf.split_to(pos).freeze();
    Ok(Some(ranges.into_iter().map(|r| frame.slice(r)).collect()))
}

/// An inline command (`PING\r\n`, as telnet sends): words split on blanks.
fn parse_inline(buf: &mut BytesMut) -> Result<Option<Args>, RespError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return Err(RespError::Protocol("too big inline request"));
        }
        return Ok(None);
    };
    let line = buf.split_to(nl + 1).freeze();
    let text = line.slice(..nl);
    let mut args = Vec::new();
    let mut start = None;
    for (i, &b) in text.iter().enumerate() {
        let blank = matches!(b, b' ' | b'\t' | b'\r');
        match (blank, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                args.push(text.slice(s..i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        args.push(text.slice(s..));
    }
    Ok(Some(args))
}

/// A `<tag><integer>\r\n` line at `at`: the integer and the offset after
/// the line; `Ok(None)` if the line is not complete yet.
fn header(buf: &[u8], at: usize) -> Result<Option<(i64, usize)>, RespError> {
    let Some((line, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    let n = parse_int(line).ok_or(RespError::Protocol("invalid length"))?;
    Ok(Some((n, next)))
}

/// The bytes from `at` to the next CRLF, and the offset after it.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(n) if n > MAX_LINE => Err(RespError::Protocol("too long line")),
        Some(n) => Ok(Some((&rest[..n], at + n + 2))),
        None if rest.len() > MAX_LINE => Err(RespError::Protocol("too long line")),
        None => Ok(None),
    }
}

/// A decimal integer as `i64::from_str` reads it (an optional sign, then
/// digits), without the UTF-8 check: it runs for every length header.
fn parse_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

/// A command name lower-cased on the stack (no allocation per command).
pub fn lower_name(name: &[u8]) -> smallvec::SmallVec<[u8; 32]> {
    let mut lower = smallvec::SmallVec::from_slice(name);
    lower.make_ascii_lowercase();
    lower
}

/// The length of the one whole reply at the front of `buf` (an attribute
/// and the value it annotates count as one), or `Ok(None)` until it is all
/// there. A bulk longer than `max_bulk` is an error at once.
pub fn reply_len(buf: &[u8], max_bulk: usize) -> Result<Option<usize>, RespError> {
    let mut pending: u64 = 1;
    let mut pos = 0;
    while pending > 0 {
        let Some(&tag) = buf.get(pos) else {
            return Ok(None);
        };
        match tag {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                let Some((_, next)) = line(buf, pos + 1)? else {
                    return Ok(None);
                };
                pos = next;
                pending -= 1;
            }
            b'$' | b'!' | b'=' => {
                let Some((len, body)) = header(buf, pos)? else {
                    return Ok(None);
                };
                pending -= 1;
                if len < 0 {
                    pos = body;
                    continue;
                }
                if len as u64 > max_bulk as u64 {
                    return Err(RespError::BulkTooLong(len, max_bulk));
                }
                let end = body + len as usize + 2;
                if buf.len() < end {
                    return Ok(None);
                }
                pos = end;
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let Some((n, next)) = header(buf, pos)? else {
                    return Ok(None);
                };
                pos = next;
                let n = n.max(0) as u64;
                // Each element takes at least 3 bytes (`_\r\n`).
                if n > (max_bulk as u64) {
                    return Err(RespError::Protocol("invalid multibulk length"));
                }
                let elements = if matches!(tag, b'%' | b'|') { 2 * n } else { n };
                // An attribute annotates the value after it: that value is
                // still pending.
                pending = pending - u64::from(tag != b'|') + elements;
            }
            _ => return Err(RespError::Protocol("unknown reply type")),
        }
    }
    Ok(Some(pos))
}

/// A decoded reply, kept close to the bytes so it encodes back the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+ - : _ , # (` and the null forms `$-1`, `*-1`: the tag and the
    /// line after it.
    Line(u8, Bytes),
    /// `$ ! =`: the tag and the payload.
    Bulk(u8, Bytes),
    /// `* ~ > % |`: the tag and the elements (a map's keys and values
    /// alternate; an attribute's pairs are followed by the value it
    /// annotates).
    Aggregate(u8, Vec<Value>),
}

impl Value {
    /// The payload of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bulk(_, b) => Some(b),
            Value::Line(b'+', b) => Some(b),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Line(b'-', _) | Value::Bulk(b'!', _))
    }

    /// The elements of an array, set, push or map.
    pub fn elements(&self) -> Option<&[Value]> {
        match self {
            Value::Aggregate(_, items) => Some(items),
            _ => None,
        }
    }

    pub fn elements_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Aggregate(_, items) => Some(items),
            _ => None,
        }
    }

    /// A map's flat key/value list read as pairs (RESP2 sends maps as
    /// flat arrays too).
    pub fn field(&self, name: &str) -> Option<&Value> {
        let items = self.elements()?;
        items
            .chunks_exact(2)
            .find(|kv| {
                kv[0]
                    .as_bytes()
                    .is_some_and(|k| k.eq_ignore_ascii_case(name.as_bytes()))
            })
            .map(|kv| &kv[1])
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Line(b':', b) => parse_int(b),
            _ => None,
        }
    }

    /// Decode one whole reply (as measured by [`reply_len`]).
    pub fn decode(reply: &Bytes) -> Result<Value, RespError> {
        let (v, _) = decode_at(reply, 0, 0)?;
        Ok(v)
    }

    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Value::Line(tag, text) => {
                out.put_u8(*tag);
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Value::Bulk(tag, data) => {
                put_header(out, *tag, data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Value::Aggregate(tag, items) => {
                let n = if matches!(tag, b'%' | b'|') {
                    items.len() / 2
                } else {
                    items.len()
                };
                put_header(out, *tag, n);
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

fn decode_at(buf: &Bytes, at: usize, depth: usize) -> Result<(Value, usize), RespError> {
    const SHORT: RespError = RespError::Protocol("truncated reply");
    if depth > MAX_DEPTH {
        return Err(RespError::Protocol("reply nested too deeply"));
    }
    let tag = *buf.get(at).ok_or(SHORT)?;
    let (text, next) = line(buf, at + 1)?.ok_or(SHORT)?;
    let text_range = at + 1..at + 1 + text.len();
    match tag {
        b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_int(text).ok_or(RespError::Protocol("invalid length"))?;
            if n < 0 {
                return Ok((Value::Line(tag, buf.slice(text_range)), next));
            }
            let n = n as usize;
            if matches!(tag, b'$' | b'!' | b'=') {
                let end = next.checked_add(n).ok_or(SHORT)?;
                if buf.len() < end + 2 {
                    return Err(SHORT);
                }
                return Ok((Value::Bulk(tag, buf.slice(next..end)), end + 2));
            }
            let count = if matches!(tag, b'%' | b'|') { 2 * n } else { n };
            if count > buf.len() {
                return Err(SHORT);
            }
            let mut items = Vec::with_capacity(count);
            let mut pos = next;
            for _ in 0..count {
                let (v, after) = decode_at(buf, pos, depth + 1)?;
                items.push(v);
                pos = after;
            }
            if tag == b'|' {
                // The value the attribute annotates comes last.
                let (v, after) = decode_at(buf, pos, depth + 1)?;
                items.push(v);
                pos = after;
            }
            Ok((Value::Aggregate(tag, items), pos))
        }
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
            Ok((Value::Line(tag, buf.slice(text_range)), next))
        }
        _ => Err(RespError::Protocol("unknown reply type")),
    }
}

/// `<tag><n>\r\n`, the number formatted without an allocation.
fn put_header(out: &mut BytesMut, tag: u8, n: usize) {
    out.put_u8(tag);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A command as a RESP array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    let size: usize = args.iter().map(|a| a.as_ref().len() + 16).sum();
    out.reserve(size + 16);
    put_header(out, b'*', args.len());
    for a in args {
        let a = a.as_ref();
        put_header(out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// An error reply; CR and LF in `message` become spaces (they would end
/// the line).
pub fn encode_error(out: &mut BytesMut, message: &str) {
    out.put_u8(b'-');
    out.extend(
        message
            .bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// A simple string reply (`+OK`).
pub fn encode_simple(out: &mut BytesMut, text: &str) {
    out.put_u8(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
