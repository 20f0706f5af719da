//! Reading a statement's bytes as the rewriter's `&str`, whatever the
//! client encoding and `standard_conforming_strings`.
//!
//! Text that is not UTF-8 (a client on EUC_KR, say) is never decoded: a
//! masked copy of the same length (every byte of a non-ASCII character
//! replaced by an ASCII letter) is rewritten instead, and the edits go into
//! the original bytes at the same offsets. Postgres' lexer takes high-bit
//! bytes as identifier characters, so masking does not change how the
//! text lexes.

use std::borrow::Cow;

use super::mask_backslash_escapes;

/// The letter high-bit bytes become in the masked copy.
const MASK: u8 = b'x';

/// How the client's encoding lays out a character, as far as lexing the
/// text needs: Postgres converts the text to the server encoding before its
/// lexer runs, so a character's trail byte never acts as ASCII (a 0x5C in
/// Shift-JIS is no backslash). The proxy masks whole characters to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingClass {
    /// UTF8, SQL_ASCII, EUC_*, LATIN*, ISO_8859_*, WIN*, KOI8*,
    /// MULE_INTERNAL: every byte of a multibyte character is >= 0x80.
    AsciiSafe,
    /// SJIS, SHIFT_JIS_2004: 0xA1-0xDF is a one-byte katakana; any other
    /// high byte leads a two-byte character whose trail may be ASCII.
    ShiftJis,
    /// BIG5, GBK, UHC, JOHAB: a high byte leads a two-byte character whose
    /// trail may be ASCII.
    DoubleByte,
    /// GB18030: a high byte leads two bytes, or four when the second is a
    /// digit.
    Gb18030,
}

impl EncodingClass {
    /// Classify a `client_encoding` value as the server reports it.
    pub fn of(name: &[u8]) -> EncodingClass {
        match &name.to_ascii_uppercase()[..] {
            b"SJIS" | b"SHIFT_JIS_2004" => EncodingClass::ShiftJis,
            b"BIG5" | b"GBK" | b"UHC" | b"JOHAB" => EncodingClass::DoubleByte,
            b"GB18030" => EncodingClass::Gb18030,
            _ => EncodingClass::AsciiSafe,
        }
    }

    /// Bytes of the character that starts with high byte `lead` at `text[0]`.
    fn char_len(self, text: &[u8]) -> usize {
        let lead = text[0];
        let len = match self {
            EncodingClass::AsciiSafe => 1,
            EncodingClass::ShiftJis if (0xA1..=0xDF).contains(&lead) => 1,
            EncodingClass::ShiftJis | EncodingClass::DoubleByte => 2,
            EncodingClass::Gb18030 => {
                if text.get(1).is_some_and(|b| b.is_ascii_digit()) {
                    4
                } else {
                    2
                }
            }
        };
        len.min(text.len())
    }
}

/// A copy of `text` the rewriter can lex as Postgres would: every byte of a
/// non-ASCII character becomes an ASCII letter (Postgres' lexer takes
/// non-ASCII characters as identifier characters), so the copy has the
/// same length and every edit's byte offset holds in the original.
pub fn mask_for_lexing(text: &[u8], encoding: EncodingClass) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] < 0x80 {
            out.push(text[i] as char);
            i += 1;
            continue;
        }
        let len = encoding.char_len(&text[i..]);
        out.extend(std::iter::repeat_n(MASK as char, len));
        i += len;
    }
    out
}

/// A statement's text as the rewriter reads it.
#[derive(Debug)]
pub struct LexableText<'a> {
    /// The text itself, when it is read as UTF-8: error positions are
    /// corrected only then.
    pub utf8: Option<&'a str>,
    /// What the rewriter lexes: the text, or a copy of the same length.
    pub lexed: Cow<'a, str>,
}

/// The text the rewriter should lex for `text` sent in `encoding`.
///
/// Text in an encoding whose trail bytes may be ASCII is never read as
/// UTF-8, even when its bytes happen to form valid UTF-8 (plain ASCII is
/// the same in every encoding); otherwise the rewriter reads a same-length
/// masked copy. With `standard_conforming_strings` off, a backslash escapes
/// inside literals: the copy's escapes are letters (same length again).
// Inlined into the qualify step (hot), as `PositionShift::of_edits`.
#[inline(always)]
pub fn lexable_text(
    text: &[u8],
    encoding: EncodingClass,
    standard_conforming_strings: bool,
) -> LexableText<'_> {
    let utf8 = match encoding {
        EncodingClass::AsciiSafe => std::str::from_utf8(text).ok(),
        _ if text.is_ascii() => std::str::from_utf8(text).ok(),
        _ => None,
    };
    let lexed = match utf8 {
        Some(sql) => Cow::Borrowed(sql),
        None => Cow::Owned(mask_for_lexing(text, encoding)),
    };
    let lexed = match standard_conforming_strings {
        true => lexed,
        false => match mask_backslash_escapes(&lexed) {
            Some(copy) => Cow::Owned(copy),
            None => lexed,
        },
    };
    LexableText { utf8, lexed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_classes() {
        for safe in [
            &b"UTF8"[..],
            b"EUC_KR",
            b"LATIN1",
            b"WIN1251",
            b"SQL_ASCII",
            b"KOI8R",
        ] {
            assert_eq!(EncodingClass::of(safe), EncodingClass::AsciiSafe);
        }
        for (name, class) in [
            (&b"SJIS"[..], EncodingClass::ShiftJis),
            (b"sjis", EncodingClass::ShiftJis),
            (b"BIG5", EncodingClass::DoubleByte),
            (b"GBK", EncodingClass::DoubleByte),
            (b"UHC", EncodingClass::DoubleByte),
            (b"JOHAB", EncodingClass::DoubleByte),
            (b"GB18030", EncodingClass::Gb18030),
        ] {
            assert_eq!(EncodingClass::of(name), class);
        }
    }
}
