//! Golden tests: input SQL -> expected SQL and outcome, grouped by the rule
//! or statement kind they prove. Each case is named for what it proves.
//! This module holds the map, the checks and the parser of the data files;
//! one file per topic holds the tests.
//!
//! The plain tables (cases on [`test_map`] under a policy) are data files,
//! `data/<test name>.golden`, so SQL reads without Rust escaping:
//!
//! ```text
//! ## A comment: ignored.
//!
//! # what the case proves (starts a case)
//! outcome: Rewritten
//! policy: reject
//! in:  SELECT * FROM users
//! out: SELECT * FROM shared_common.users
//! ```
//!
//! - `outcome:` is an [`Outcome`] variant; `policy:` is `tokens` (the
//!   default when absent), `reject` or `passthrough`.
//! - `in:` and `out:` take the rest of the line after the spaces following
//!   the colon. With nothing after the colon, the SQL is the block of lines
//!   below, each `| ` (indented freely) and the line's text exactly; a lone
//!   `|` is an empty line. The lines are joined by `\n`, with no newline
//!   after the last one (end with a lone `|` for a trailing newline).
//! - A data file holds printable text only: no tab, no carriage return and
//!   no whitespace at the end of a line, since a reader cannot see them and
//!   editors change them. A case whose SQL needs one, or that is empty,
//!   stays in a Rust table.
//!
//! Anything else (an unknown field, outcome or policy, a missing or
//! repeated field, a file without cases) panics with the file and line.

mod api;
mod cache;
mod catalog;
mod data_format;
mod exact;
mod fallback;
mod rules;
mod scope;
mod search_path;
mod statements;
mod strings;
mod strings_bare;

use super::*;

/// The map of the tests: three services, plus a schema that needs quotes.
/// [`test_map`] plus `settings` listed under `public`, and the given
/// mapped functions and types (schema, name).
pub(super) fn test_map_with(routines: &[(&str, &str)], types: &[(&str, &str)]) -> SchemaMap {
    let mut pairs: Vec<(String, String)> = test_map()
        .iter()
        .map(|(t, s)| (s.to_owned(), t.to_owned()))
        .collect();
    pairs.push(("public".into(), "settings".into()));
    SchemaMap::new(pairs).with_routines_and_types(routines.iter().copied(), types.iter().copied())
}

pub(super) fn test_map() -> SchemaMap {
    SchemaMap::new([
        ("shared_common", "users"),
        ("shared_common", "attachments"),
        ("saju_service", "saju_charts"),
        ("saju_service", "kasi_cache"),
        ("dream_service", "dream_categories"),
        ("dream_service", "dream_interpretations"),
        ("Legacy Schema", "old_table"),
        ("shared_common", "MixedCase"),
    ])
}

/// (what it proves, input, expected output, expected outcome)
pub(super) type Golden = (&'static str, &'static str, &'static str, Outcome);

/// One golden case, from a Rust table or a data file.
#[derive(Debug, PartialEq)]
pub(super) struct Case {
    /// `file:line` of the case in its data file, empty for a Rust table.
    at: String,
    what: String,
    input: String,
    expected: String,
    outcome: Outcome,
    policy: OnParseError,
}

pub(super) fn check(cases: &[Golden]) {
    check_with(OnParseError::Tokens, cases)
}

pub(super) fn check_with(policy: OnParseError, cases: &[Golden]) {
    check_on(&test_map(), policy, cases)
}

/// The golden cases on `map` under `policy`: see [`check_cases`].
pub(super) fn check_on(map: &SchemaMap, policy: OnParseError, cases: &[Golden]) {
    let cases: Vec<Case> = cases
        .iter()
        .map(|&(what, input, expected, outcome)| Case {
            at: String::new(),
            what: what.to_owned(),
            input: input.to_owned(),
            expected: expected.to_owned(),
            outcome,
            policy,
        })
        .collect();
    check_cases(map, &cases)
}

/// The cases of the data file `data/<name>.golden` on [`test_map`]; the
/// number of cases checked.
macro_rules! check_data {
    ($name:literal) => {
        $crate::rewrite::tests::check_file(
            concat!("src/rewrite/tests/data/", $name, ".golden"),
            include_str!(concat!("data/", $name, ".golden")),
        )
    };
}
use check_data;

/// The cases of a data file (`path` names it in messages) on [`test_map`];
/// the number of cases checked, never 0.
pub(super) fn check_file(path: &str, text: &str) -> usize {
    let cases = parse_golden(path, text);
    check_cases(&test_map(), &cases);
    cases.len()
}

/// The golden cases on `map`, each under its policy, and the invariants of
/// every result: the cache agrees, edits and names are sorted and on char
/// boundaries.
fn check_cases(map: &SchemaMap, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let Case {
            at,
            what,
            input,
            expected,
            outcome,
            policy,
        } = case;
        let (input, policy, outcome) = (input.as_str(), *policy, *outcome);
        let what = if at.is_empty() {
            what.clone()
        } else {
            format!("{at}: {what}")
        };
        let r = rewrite_sql(input, map, policy);
        cache::assert_cache_agrees(&what, input, map, policy, &r);
        let got = r.apply(input);
        if got != *expected || r.outcome != outcome {
            failures.push(format!(
                "{what}\n   input:    {input}\n   expected: {expected} ({outcome:?})\n   got:      {got} ({:?}) error={:?}",
                r.outcome, r.parse_error
            ));
        }
        // Edits are sorted, non-overlapping and on char boundaries.
        assert!(
            r.edits.windows(2).all(|w| w[0].offset < w[1].offset),
            "{what}"
        );
        assert!(
            r.edits.iter().all(|e| input.is_char_boundary(e.offset)),
            "{what}"
        );
        assert!(
            r.names.windows(2).all(|w| w[0].offset < w[1].offset),
            "{what}: names in text order"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The cases of a data file in the format of the module's documentation;
/// panics with `path:line` on anything else, and on a file without cases.
pub(super) fn parse_golden(path: &str, text: &str) -> Vec<Case> {
    /// The SQL of `in:` or `out:`: a line, or a block still taking lines.
    enum Sql {
        Line(String),
        Block(Vec<String>),
    }
    /// A case being read.
    struct Open {
        line: usize,
        what: String,
        outcome: Option<Outcome>,
        policy: Option<OnParseError>,
        input: Option<Sql>,
        expected: Option<Sql>,
    }
    fn close(path: &str, open: Open, cases: &mut Vec<Case>) {
        let at = format!("{path}:{}", open.line);
        let sql = |field: &str, sql: Option<Sql>| match sql {
            Some(Sql::Line(s)) => s,
            Some(Sql::Block(lines)) if !lines.is_empty() => lines.join("\n"),
            Some(Sql::Block(_)) => panic!("{at}: `{field}:` opens a block without `|` lines"),
            None => panic!("{at}: the case has no `{field}:`"),
        };
        cases.push(Case {
            what: open.what,
            outcome: open
                .outcome
                .unwrap_or_else(|| panic!("{at}: the case has no `outcome:`")),
            policy: open.policy.unwrap_or(OnParseError::Tokens),
            input: sql("in", open.input),
            expected: sql("out", open.expected),
            at,
        });
    }

    let mut cases = Vec::new();
    let mut open: Option<Open> = None;
    // The field whose block takes `|` lines: `in` or `out`.
    let mut block: Option<&str> = None;
    let text = text.strip_suffix('\n').unwrap_or(text);
    for (i, line) in text.split('\n').enumerate() {
        let at = format!("{path}:{}", i + 1);
        if let Some(c) = line.chars().find(|c| c.is_control()) {
            panic!("{at}: {c:?} in a data file: keep this case in a Rust table");
        }
        if line.ends_with(char::is_whitespace) {
            panic!("{at}: whitespace at the end of a line: keep this case in a Rust table");
        }
        if let Some(rest) = line.trim_start_matches(' ').strip_prefix('|') {
            let (Some(field), Some(case)) = (block, open.as_mut()) else {
                panic!("{at}: a `|` line below no `in:` or `out:` without a value");
            };
            let content = match rest.strip_prefix(' ') {
                Some(content) => content,
                None if rest.is_empty() => "",
                None => panic!("{at}: `|` is followed by a space or the end of the line"),
            };
            let sql = if field == "in" {
                &mut case.input
            } else {
                &mut case.expected
            };
            let Some(Sql::Block(lines)) = sql else {
                unreachable!("a block is open")
            };
            lines.push(content.to_owned());
            continue;
        }
        block = None;
        if line.is_empty() || line.starts_with("##") {
            continue;
        }
        if let Some(what) = line.strip_prefix("# ") {
            if let Some(done) = open.take() {
                close(path, done, &mut cases);
            }
            open = Some(Open {
                line: i + 1,
                what: what.to_owned(),
                outcome: None,
                policy: None,
                input: None,
                expected: None,
            });
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            panic!(
                "{at}: expected `# what`, `field: value`, a `|` line, a `##` comment or a blank line"
            );
        };
        let Some(case) = open.as_mut() else {
            panic!("{at}: `{key}:` before the first `# what` line");
        };
        let value = if value.is_empty() {
            None
        } else if let Some(v) = value.strip_prefix(' ') {
            Some(v.trim_start_matches(' '))
        } else {
            panic!("{at}: a space follows `{key}:`");
        };
        let repeated = || panic!("{at}: `{key}:` twice in one case");
        match (key, value) {
            ("outcome", Some(v)) => {
                let outcome = match v {
                    "NoParseNeeded" => Outcome::NoParseNeeded,
                    "Unchanged" => Outcome::Unchanged,
                    "Rewritten" => Outcome::Rewritten,
                    "FallbackTokens" => Outcome::FallbackTokens,
                    "Rejected" => Outcome::Rejected,
                    "PassthroughUnparsed" => Outcome::PassthroughUnparsed,
                    _ => panic!("{at}: unknown outcome `{v}`"),
                };
                if case.outcome.replace(outcome).is_some() {
                    repeated()
                }
            }
            ("policy", Some(v)) => {
                let policy = match v {
                    "tokens" => OnParseError::Tokens,
                    "reject" => OnParseError::Reject,
                    "passthrough" => OnParseError::Passthrough,
                    _ => panic!("{at}: unknown policy `{v}` (tokens, reject, passthrough)"),
                };
                if case.policy.replace(policy).is_some() {
                    repeated()
                }
            }
            ("in" | "out", v) => {
                let sql = match v {
                    Some(v) => Sql::Line(v.to_owned()),
                    None => {
                        block = Some(key);
                        Sql::Block(Vec::new())
                    }
                };
                let slot = if key == "in" {
                    &mut case.input
                } else {
                    &mut case.expected
                };
                if slot.replace(sql).is_some() {
                    repeated()
                }
            }
            ("outcome" | "policy", None) => panic!("{at}: `{key}:` without a value"),
            _ => panic!("{at}: unknown field `{key}` (outcome, policy, in, out)"),
        }
    }
    if let Some(done) = open.take() {
        close(path, done, &mut cases);
    }
    assert!(!cases.is_empty(), "{path}: no cases");
    cases
}
