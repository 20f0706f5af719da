//! Statements as operators see them (the unmapped-name report, dry-run log
//! lines): every literal masked, the way pg_stat_statements shows them, so
//! a value a client sends (a password, a card number) never reaches a report
//! or a log.

use pg_query::protobuf::Token;

/// Longer statements are not shown at all: masking parses them, and an
/// example is only a pointer to the statement.
pub const MASK_MAX_BYTES: usize = 64 * 1024;

/// `sql` with its literals masked: `$1`, `$2`, ... where PostgreSQL's
/// parser reads the statement; `?` for each constant its scanner finds
/// otherwise; a placeholder line when even the scanner cannot read it (an
/// unterminated literal could hold anything up to the end).
pub fn mask_literals(sql: &str) -> String {
    if sql.len() > MASK_MAX_BYTES {
        return format!("(statement of {} bytes not shown)", sql.len());
    }
    if let Ok(normalized) = pg_query::normalize(sql) {
        return normalized;
    }
    let Ok(scanned) = pg_query::scan(sql) else {
        return "(statement not shown: PostgreSQL's scanner cannot read it)".to_owned();
    };
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for t in &scanned.tokens {
        let constant = matches!(
            Token::try_from(t.token),
            Ok(Token::Sconst
                | Token::Usconst
                | Token::Bconst
                | Token::Xconst
                | Token::Iconst
                | Token::Fconst)
        );
        let (Ok(start), Ok(end)) = (usize::try_from(t.start), usize::try_from(t.end)) else {
            continue;
        };
        if !constant || start < at || !sql.is_char_boundary(start) || !sql.is_char_boundary(end) {
            continue;
        }
        out.push_str(&sql[at..start]);
        out.push('?');
        at = end;
    }
    out.push_str(&sql[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_never_show() {
        for (sql, secret) in [
            (
                "UPDATE legacy_users SET password = 'Hunter2-secret' WHERE id = 7",
                "Hunter2-secret",
            ),
            (
                "SELECT * FROM cards WHERE number = 4111111111111111",
                "4111111111111111",
            ),
            // Does not parse (missing FROM list): the scanner masks it.
            (
                "SELECT * FROM WHERE rrn = '900101-1234567'",
                "900101-1234567",
            ),
            ("SELECT E'a\\'b-secret' FROM t", "secret"),
            ("SELECT $$dollar-secret$$ FROM t", "dollar-secret"),
            ("SELECT 'unterminated-secret FROM t", "unterminated-secret"),
        ] {
            let masked = mask_literals(sql);
            assert!(!masked.contains(secret), "{sql} -> {masked}");
        }
        assert_eq!(
            mask_literals("SELECT a FROM legacy_log WHERE id = 7 AND note = 'x'"),
            "SELECT a FROM legacy_log WHERE id = $1 AND note = $2"
        );
        assert_eq!(
            mask_literals("SELECT * FROM WHERE x = 'y'"),
            "SELECT * FROM WHERE x = ?"
        );
        assert!(mask_literals(&"x".repeat(MASK_MAX_BYTES + 1)).contains("not shown"));
    }
}
