//! Literals under `standard_conforming_strings = off`.
//!
//! With the setting off, PostgreSQL's lexer reads a backslash inside a
//! plain `'...'` literal as an escape (`'You\'ve'` is one literal), as it
//! always does inside `E'...'`. sqlparser's Postgres tokenizer follows the
//! setting's default (on), so it would end that literal early and see the
//! rest as SQL. [`mask_backslash_escapes`] gives a same-length copy in
//! which every escape pair is two plain letters: it lexes like the original
//! does for the server, and every edit's byte offset holds in the original.

/// The letter an escape pair becomes.
const MASK: u8 = b'x';

/// A copy of `sql` with each backslash escape inside a string literal
/// replaced by letters, or `None` when no literal holds a backslash (the
/// text lexes the same either way).
pub fn mask_backslash_escapes(sql: &str) -> Option<String> {
    if !sql.contains('\\') {
        return None;
    }
    let bytes = sql.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'"' => i = skip_quoted(bytes, i, b'"'),
            b'$' => i = skip_dollar(bytes, i),
            b'\'' => {
                // `B'...'`, `X'...'` and `U&'...'` hold no backslash escapes.
                let escapes = !matches!(prefix(bytes, i), Some(b'b' | b'x' | b'&'));
                if !escapes {
                    i = skip_quoted(bytes, i, b'\'');
                    continue;
                }
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => {
                            let out = out.get_or_insert_with(|| bytes.to_vec());
                            out[i] = MASK;
                            // An ASCII escaped byte is masked too; a
                            // multibyte character is no quote, keep it.
                            if let Some(&next) = bytes.get(i + 1)
                                && next < 0x80
                            {
                                out[i + 1] = MASK;
                            }
                            i += 2;
                        }
                        b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b if is_ident_byte(b) => {
                // A word: a `$` inside it is no dollar quote.
                while i < bytes.len() && (is_ident_byte(bytes[i]) || bytes[i] == b'$') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced, by ASCII: still UTF-8.
    out.map(|o| String::from_utf8(o).expect("ASCII replaced by ASCII"))
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The lower-cased letter that prefixes the literal opening at `quote`
/// when it is a one-letter word (`E'`, `B'`, `X'`, `N'`) or `U&'`.
fn prefix(bytes: &[u8], quote: usize) -> Option<u8> {
    let before = quote.checked_sub(1).map(|i| bytes[i])?;
    if before == b'&' {
        let u = quote.checked_sub(2).map(|i| bytes[i])?;
        return matches!(u, b'u' | b'U').then_some(b'&');
    }
    let standalone = quote < 2 || !is_ident_byte(bytes[quote - 2]);
    (standalone && before.is_ascii_alphabetic()).then_some(before.to_ascii_lowercase())
}

fn skip_quoted(bytes: &[u8], open: usize, quote: u8) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_block_comment(bytes: &[u8], open: usize) -> usize {
    // Block comments nest in PostgreSQL.
    let (mut depth, mut i) = (0usize, open);
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Past a `$tag$ ... $tag$` body, or past the `$` of `$1` and the like.
fn skip_dollar(bytes: &[u8], open: usize) -> usize {
    let mut end = open + 1;
    while end < bytes.len() && (is_ident_byte(bytes[end])) {
        end += 1;
    }
    let tag_ok =
        bytes.get(end) == Some(&b'$') && bytes.get(open + 1).is_none_or(|b| !b.is_ascii_digit());
    if !tag_ok {
        return open + 1;
    }
    let tag = &bytes[open..=end];
    let body = end + 1;
    bytes[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(bytes.len(), |p| body + p + tag.len())
}

#[cfg(test)]
mod tests {
    use super::mask_backslash_escapes as mask;

    #[test]
    fn escapes_inside_literals_become_letters() {
        assert_eq!(
            mask(r"SELECT 'You\'ve been removed from users list' FROM users").as_deref(),
            Some("SELECT 'Youxxve been removed from users list' FROM users")
        );
        assert_eq!(
            mask(r"SELECT 'a\\', 'b' FROM users").as_deref(),
            Some("SELECT 'axx', 'b' FROM users")
        );
        assert_eq!(
            mask(r"SELECT E'\'', N'\'' FROM t").as_deref(),
            Some("SELECT E'xx', N'xx' FROM t")
        );
    }

    #[test]
    fn text_without_escapes_is_not_copied() {
        assert_eq!(mask("SELECT 'it''s' FROM users"), None);
        assert_eq!(
            mask(r#"SELECT "a\b", $$x\'$$, $f$\'$f$ FROM users -- \'"#),
            None
        );
        assert_eq!(mask(r"SELECT B'\', X'\' /* \' */ FROM t"), None);
    }

    #[test]
    fn lengths_and_other_bytes_are_kept() {
        let sql = "SELECT '한\\'글', $1 FROM users WHERE a = 'x\\한'";
        let masked = mask(sql).unwrap();
        assert_eq!(masked.len(), sql.len());
        assert_eq!(masked, "SELECT '한xx글', $1 FROM users WHERE a = 'xx한'");
    }
}
