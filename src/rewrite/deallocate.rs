//! Which prepared statements a simple-query text drops: `DEALLOCATE name`,
//! `DEALLOCATE ALL` and `DISCARD ALL`. The session keeps the protocol-level
//! statements a client prepared (to prepare them again after a reload that
//! changes their rewritten text); a statement the client dropped must not
//! be recreated behind its back.

/// Prepared statements dropped by a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deallocation {
    All,
    /// The statement's name as the server stores it (an unquoted name
    /// folded to lower case).
    Named(Vec<u8>),
}

/// The statements `sql` drops, if its first statement is one of the forms
/// above. Only the first statement of a multi-statement text is read:
/// drivers send these alone.
pub fn deallocation(sql: &[u8]) -> Option<Deallocation> {
    let mut rest = skip_blank(sql);
    let (first, after) = word(rest)?;
    rest = skip_blank(after);
    if first.eq_ignore_ascii_case(b"discard") {
        let (what, after) = word(rest)?;
        return (what.eq_ignore_ascii_case(b"all") && ends(after)).then_some(Deallocation::All);
    }
    if !first.eq_ignore_ascii_case(b"deallocate") {
        return None;
    }
    if let Some((w, after)) = word(rest)
        && w.eq_ignore_ascii_case(b"prepare")
    {
        rest = skip_blank(after);
    }
    if let Some(quoted) = rest.strip_prefix(b"\"") {
        let (name, after) = quoted_identifier(quoted)?;
        return ends(after).then_some(Deallocation::Named(name));
    }
    let (name, after) = word(rest)?;
    if !ends(after) {
        return None;
    }
    if name.eq_ignore_ascii_case(b"all") {
        Some(Deallocation::All)
    } else {
        Some(Deallocation::Named(name.to_ascii_lowercase()))
    }
}

/// Skip whitespace and comments.
pub(super) fn skip_blank(mut s: &[u8]) -> &[u8] {
    loop {
        let trimmed = s.trim_ascii_start();
        if let Some(line) = trimmed.strip_prefix(b"--") {
            s = line
                .iter()
                .position(|&b| b == b'\n')
                .map_or(&[][..], |i| &line[i + 1..]);
        } else if let Some(block) = trimmed.strip_prefix(b"/*") {
            // Comments nest in PostgreSQL; one level is what drivers send.
            s = block
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(&[][..], |i| &block[i + 2..]);
        } else {
            return trimmed;
        }
    }
}

/// An unquoted identifier or keyword at the start of `s`.
pub(super) fn word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = s
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80))
        .unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

/// The rest of a double-quoted identifier (after its opening quote).
fn quoted_identifier(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut name = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'"' {
            if s.get(i + 1) == Some(&b'"') {
                name.push(b'"');
                i += 2;
                continue;
            }
            return Some((name, &s[i + 1..]));
        }
        name.push(s[i]);
        i += 1;
    }
    None
}

/// Whether nothing but blanks and one optional `;` follow.
fn ends(s: &[u8]) -> bool {
    let s = skip_blank(s);
    s.is_empty() || skip_blank(&s[1..]).is_empty() && s[0] == b';'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(n: &str) -> Option<Deallocation> {
        Some(Deallocation::Named(n.as_bytes().to_vec()))
    }

    #[test]
    fn reads_the_forms_drivers_send() {
        assert_eq!(deallocation(b"DEALLOCATE s1"), named("s1"));
        assert_eq!(deallocation(b"deallocate prepare S_1;"), named("s_1"));
        assert_eq!(deallocation(b"  DEALLOCATE \"S \"\"1\" ; "), named("S \"1"));
        assert_eq!(deallocation(b"DEALLOCATE ALL"), Some(Deallocation::All));
        assert_eq!(
            deallocation(b"DEALLOCATE PREPARE all"),
            Some(Deallocation::All)
        );
        assert_eq!(
            deallocation(b"/* c */ DISCARD ALL"),
            Some(Deallocation::All)
        );
        assert_eq!(deallocation(b"-- c\ndiscard all;"), Some(Deallocation::All));
    }

    #[test]
    fn leaves_everything_else() {
        for sql in [
            &b"DISCARD PLANS"[..],
            b"DISCARD TEMP",
            b"SELECT 1",
            b"DEALLOCATE",
            b"DEALLOCATE a; SELECT 1",
            b"DEALLOCATE \"unterminated",
            b"deallocated",
            b"",
        ] {
            assert_eq!(deallocation(sql), None, "{}", String::from_utf8_lossy(sql));
        }
    }
}
