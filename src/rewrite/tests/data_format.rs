//! The parser of the golden data files: what a file says, exactly, and a
//! loud failure naming the file and line on anything it does not say.

use super::{Case, parse_golden};
use crate::rewrite::{OnParseError, Outcome};

fn case(at: &str, what: &str, input: &str, expected: &str, outcome: Outcome) -> Case {
    Case {
        at: at.to_owned(),
        what: what.to_owned(),
        input: input.to_owned(),
        expected: expected.to_owned(),
        outcome,
        policy: OnParseError::Tokens,
    }
}

#[test]
fn lines_blocks_comments_and_policies() {
    let text = "\
## a comment, then a blank line

# one line each
outcome: Rewritten
in:  SELECT * FROM users
out: SELECT * FROM shared_common.users
# blocks keep leading spaces, empty lines and a trailing newline; \\ is plain
policy: passthrough
outcome: Unchanged
in:
    | SELECT '\\' -- 사용자
    |
    |   FROM users
    |
out:
| x
";
    let mut block = case(
        "t.golden:7",
        "blocks keep leading spaces, empty lines and a trailing newline; \\ is plain",
        "SELECT '\\' -- 사용자\n\n  FROM users\n",
        "x",
        Outcome::Unchanged,
    );
    block.policy = OnParseError::Passthrough;
    assert_eq!(
        parse_golden("t.golden", text),
        [
            case(
                "t.golden:3",
                "one line each",
                "SELECT * FROM users",
                "SELECT * FROM shared_common.users",
                Outcome::Rewritten,
            ),
            block,
        ]
    );
}

/// `text` fails to parse with a message holding `message`.
fn fails(text: &str, message: &str) {
    let err = std::panic::catch_unwind(|| parse_golden("t.golden", text))
        .expect_err(&format!("{text:?} parsed"));
    let got = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(got.contains(message), "{text:?}: {got:?}, not {message:?}");
}

#[test]
fn malformed_files_fail_with_file_and_line() {
    let ok = "# w\noutcome: Unchanged\nin:  a\nout: a\n";
    fails("", "t.golden: no cases");
    fails("## only a comment\n", "t.golden: no cases");
    fails(
        &ok.replace("Unchanged", "Changed"),
        "t.golden:2: unknown outcome",
    );
    fails(
        &format!("{ok}policy: strict\n"),
        "t.golden:5: unknown policy",
    );
    fails(&format!("{ok}in:  b\n"), "t.golden:5: `in:` twice");
    fails(&format!("{ok}query: b\n"), "t.golden:5: unknown field");
    fails(&format!("{ok}just text\n"), "t.golden:5: expected `# what`");
    fails(&format!("{ok}#w\n"), "t.golden:5: expected `# what`");
    fails(
        "outcome: Unchanged\n",
        "t.golden:1: `outcome:` before the first",
    );
    fails(
        &ok.replace("outcome: Unchanged\n", ""),
        "t.golden:1: the case has no `outcome:`",
    );
    fails(
        &ok.replace("out: a\n", ""),
        "t.golden:1: the case has no `out:`",
    );
    fails(
        &ok.replace("in:  a", "in:"),
        "t.golden:1: `in:` opens a block without",
    );
    fails(
        &ok.replace("in:  a", "in:a"),
        "t.golden:3: a space follows `in:`",
    );
    fails(
        &ok.replace("in:  a", "in:\n|a"),
        "t.golden:4: `|` is followed by",
    );
    fails(&format!("| a\n{ok}"), "t.golden:1: a `|` line below no");
    fails(
        &ok.replace("out: a\n", "out: a\n| b\n"),
        "t.golden:5: a `|` line below no",
    );
    fails(
        &ok.replace("in:  a", "in:  a "),
        "t.golden:3: whitespace at the end",
    );
    fails(
        &ok.replace("in:  a", "in:  a\tb"),
        "t.golden:3: '\\t' in a data file",
    );
    fails(
        &ok.replace("in:  a", "in:  a\r"),
        "t.golden:3: '\\r' in a data file",
    );
}
