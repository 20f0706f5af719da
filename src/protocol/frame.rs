//! Tagged frames: one type byte, then an i32 length that counts itself.

use bytes::{Buf, Bytes, BytesMut};

use super::ProtocolError;

/// The first five bytes of a tagged frame, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub tag: u8,
    /// The whole frame on the wire: tag + length field + body.
    pub total_len: usize,
}

/// Read the header at the start of `buf` without consuming anything.
///
/// `Ok(None)` until five bytes are there. The length is checked against
/// `max` here, before a caller reserves room for the body, so a hostile
/// length never turns into an allocation.
pub fn peek_header(buf: &[u8], max: usize) -> Result<Option<FrameHeader>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ProtocolError::FrameTooShort { tag, len });
    }
    let total_len = len as usize + 1;
    if total_len > max {
        return Err(ProtocolError::FrameTooLarge {
            tag,
            len: total_len,
            max,
        });
    }
    Ok(Some(FrameHeader { tag, total_len }))
}

/// One whole tagged frame, as the bytes it arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    /// The whole frame, header included: forwarding it is writing these.
    pub bytes: Bytes,
}

impl Frame {
    /// Split one frame off the front of `buf`; `Ok(None)` until it is whole.
    pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, ProtocolError> {
        let Some(header) = peek_header(buf, max)? else {
            return Ok(None);
        };
        if buf.len() < header.total_len {
            return Ok(None);
        }
        Ok(Some(Frame {
            tag: header.tag,
            bytes: buf.split_to(header.total_len).freeze(),
        }))
    }

    /// The message body, after the tag and length.
    pub fn body(&self) -> Bytes {
        let mut b = self.bytes.clone();
        b.advance(5);
        b
    }
}

/// Start a frame in `out`; [`finish_frame`] back-patches the length.
#[inline]
pub(crate) fn begin_frame(out: &mut BytesMut, tag: u8) -> usize {
    out.extend_from_slice(&[tag, 0, 0, 0, 0]);
    out.len() - 5
}

#[inline]
pub(crate) fn finish_frame(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// Split a NUL-terminated string off the front of `buf`.
pub(crate) fn read_cstr<'a>(
    buf: &mut &'a [u8],
    what: &'static str,
) -> Result<&'a [u8], ProtocolError> {
    let end = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(ProtocolError::Malformed { what })?;
    let s = &buf[..end];
    *buf = &buf[end + 1..];
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn frame(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        let start = begin_frame(&mut b, tag);
        b.extend_from_slice(body);
        finish_frame(&mut b, start);
        b
    }

    #[test]
    fn round_trip_leaves_buffer_empty() {
        let mut buf = frame(b'B', b"\0\0\0\0\0\0\0");
        let expected = buf.clone().freeze();
        let f = Frame::decode(&mut buf, MAX).unwrap().unwrap();
        assert_eq!(f.tag, b'B');
        assert_eq!(f.bytes, expected);
        assert_eq!(&f.body()[..], b"\0\0\0\0\0\0\0");
        assert!(buf.is_empty());
    }

    #[test]
    fn two_frames_in_one_buffer_come_out_in_order() {
        let mut buf = frame(b'S', b"");
        buf.extend_from_slice(&frame(b'H', b""));
        assert_eq!(Frame::decode(&mut buf, MAX).unwrap().unwrap().tag, b'S');
        assert_eq!(Frame::decode(&mut buf, MAX).unwrap().unwrap().tag, b'H');
        assert_eq!(Frame::decode(&mut buf, MAX).unwrap(), None);
    }

    #[test]
    fn truncated_frame_is_none_and_consumes_nothing() {
        let whole = frame(b'Q', b"select 1\0");
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(Frame::decode(&mut buf, MAX).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn length_under_four_is_rejected() {
        for len in [-1i32, 0, 3, i32::MIN] {
            let mut buf = BytesMut::from(&[b'Q'][..]);
            buf.extend_from_slice(&len.to_be_bytes());
            assert_eq!(
                Frame::decode(&mut buf, MAX),
                Err(ProtocolError::FrameTooShort { tag: b'Q', len })
            );
        }
    }

    #[test]
    fn oversize_length_is_rejected_from_the_header_alone() {
        let mut buf = BytesMut::from(&[b'd'][..]);
        buf.extend_from_slice(&(MAX as i32).to_be_bytes());
        assert!(matches!(
            Frame::decode(&mut buf, MAX),
            Err(ProtocolError::FrameTooLarge { tag: b'd', .. })
        ));
        // Exactly at the cap is fine.
        let mut ok = BytesMut::from(&[b'd'][..]);
        ok.extend_from_slice(&((MAX - 1) as i32).to_be_bytes());
        assert_eq!(
            peek_header(&ok, MAX).unwrap(),
            Some(FrameHeader {
                tag: b'd',
                total_len: MAX
            })
        );
    }

    #[test]
    fn read_cstr_needs_a_terminator() {
        let mut s: &[u8] = b"abc\0def";
        assert_eq!(read_cstr(&mut s, "x").unwrap(), b"abc");
        assert_eq!(s, b"def");
        assert!(read_cstr(&mut s, "x").is_err());
    }
}
