//! Console command parsing: one command per Query message, case-insensitive,
//! a trailing `;` allowed. Pure, so it is unit-tested alone.

/// What an operator can ask the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ShowMapping,
    ShowClients,
    ShowStats,
    ShowUnmapped,
    ShowVersion,
    /// Every pool: clients and servers by state, waits, statements.
    ShowPools,
    /// Every idle pooled server connection.
    ShowServers,
    Reload,
    /// `EXPLAIN REWRITE <sql> [FOR DATABASE <name>]`.
    ExplainRewrite {
        sql: String,
        database: Option<String>,
    },
    /// An empty query string (psql sends one for `;` alone).
    Empty,
}

/// The command list the console prints for an unknown command.
pub const HELP: &str = "SHOW MAPPING, SHOW CLIENTS, SHOW STATS, SHOW UNMAPPED, SHOW POOLS, SHOW SERVERS, SHOW VERSION, RELOAD, EXPLAIN REWRITE <sql> [FOR DATABASE <name>]";

/// Parse one Query message's text; `Err` carries the offending text.
pub fn parse(text: &str) -> Result<Command, String> {
    let text = text.trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    if let Some(rest) = strip_keywords(text, &["EXPLAIN", "REWRITE"]) {
        return explain_rewrite(rest).ok_or_else(|| text.to_owned());
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["SHOW", "MAPPING"] => Ok(Command::ShowMapping),
        ["SHOW", "CLIENTS"] => Ok(Command::ShowClients),
        ["SHOW", "STATS"] => Ok(Command::ShowStats),
        ["SHOW", "UNMAPPED"] => Ok(Command::ShowUnmapped),
        ["SHOW", "VERSION"] => Ok(Command::ShowVersion),
        ["SHOW", "POOLS"] => Ok(Command::ShowPools),
        ["SHOW", "SERVERS"] => Ok(Command::ShowServers),
        ["RELOAD"] => Ok(Command::Reload),
        _ => Err(text.to_owned()),
    }
}

/// `text` without its leading `keywords` (case-insensitive, each followed by
/// whitespace), or `None` if it does not start with them.
fn strip_keywords<'a>(mut text: &'a str, keywords: &[&str]) -> Option<&'a str> {
    for keyword in keywords {
        let head = text.get(..keyword.len())?;
        if !head.eq_ignore_ascii_case(keyword) {
            return None;
        }
        let rest = &text[keyword.len()..];
        let trimmed = rest.trim_start();
        if trimmed.len() == rest.len() {
            return None; // `EXPLAINREWRITE`, or nothing after the keyword
        }
        text = trimmed;
    }
    Some(text)
}

/// `<sql> [FOR DATABASE <name>]`: the clause is recognised only as the last
/// three words, so SQL that merely contains the words keeps them.
fn explain_rewrite(rest: &str) -> Option<Command> {
    let mut words = rest.rsplitn(4, char::is_whitespace);
    let name = words.next()?;
    let database = words.next();
    let for_ = words.next();
    if let (Some(sql), Some(d), Some(f)) = (words.next(), database, for_)
        && d.eq_ignore_ascii_case("DATABASE")
        && f.eq_ignore_ascii_case("FOR")
        && !sql.trim().is_empty()
    {
        return Some(Command::ExplainRewrite {
            sql: sql.trim_end().to_owned(),
            database: Some(unquote(name)),
        });
    }
    Some(Command::ExplainRewrite {
        sql: rest.to_owned(),
        database: None,
    })
}

/// A database name as written: `"Name"` keeps its case, a bare name is
/// taken as written too (config keys are matched exactly).
fn unquote(name: &str) -> String {
    name.strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .map(|n| n.replace("\"\"", "\""))
        .unwrap_or_else(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_commands_ignore_case_blanks_and_a_trailing_semicolon() {
        assert_eq!(parse("SHOW MAPPING"), Ok(Command::ShowMapping));
        assert_eq!(parse("  show   clients ;  "), Ok(Command::ShowClients));
        assert_eq!(parse("Show Stats;"), Ok(Command::ShowStats));
        assert_eq!(parse("show unmapped"), Ok(Command::ShowUnmapped));
        assert_eq!(parse("SHOW VERSION"), Ok(Command::ShowVersion));
        assert_eq!(parse("reload;"), Ok(Command::Reload));
        assert_eq!(parse(" ; "), Ok(Command::Empty));
        assert_eq!(parse(""), Ok(Command::Empty));
    }

    #[test]
    fn unknown_commands_are_errors_with_their_text() {
        assert_eq!(parse("show pools;"), Ok(Command::ShowPools));
        assert_eq!(parse("SHOW SERVERS"), Ok(Command::ShowServers));
        assert_eq!(parse("SHOW POOL"), Err("SHOW POOL".into()));
        assert_eq!(parse("SELECT 1;"), Err("SELECT 1".into()));
        assert_eq!(
            parse("SHOW MAPPING extra"),
            Err("SHOW MAPPING extra".into())
        );
        assert_eq!(parse("EXPLAINREWRITE x"), Err("EXPLAINREWRITE x".into()));
        assert_eq!(parse("EXPLAIN REWRITE"), Err("EXPLAIN REWRITE".into()));
    }

    #[test]
    fn explain_rewrite_takes_the_rest_as_sql() {
        assert_eq!(
            parse("explain rewrite SELECT * FROM users;"),
            Ok(Command::ExplainRewrite {
                sql: "SELECT * FROM users".into(),
                database: None
            })
        );
    }

    #[test]
    fn explain_rewrite_for_database_is_the_last_three_words() {
        assert_eq!(
            parse("EXPLAIN REWRITE SELECT 1 FROM t\nfor Database heal7_saju;"),
            Ok(Command::ExplainRewrite {
                sql: "SELECT 1 FROM t".into(),
                database: Some("heal7_saju".into())
            })
        );
        assert_eq!(
            parse("EXPLAIN REWRITE SELECT 1 FOR DATABASE \"Heal7\""),
            Ok(Command::ExplainRewrite {
                sql: "SELECT 1".into(),
                database: Some("Heal7".into())
            })
        );
        // The words alone, without SQL before them, are SQL.
        assert_eq!(
            parse("EXPLAIN REWRITE FOR DATABASE x"),
            Ok(Command::ExplainRewrite {
                sql: "FOR DATABASE x".into(),
                database: None
            })
        );
    }
}
