//! Golden tests: the matching rules, the text a name is not taken from,
//! and byte-exact insertion around non-ASCII text. The cases are in
//! `data/<test name>.golden`; the few whose SQL a data file cannot show
//! (empty, or holding a tab or a carriage return) stay in Rust here.

use super::{check, check_data};
use crate::rewrite::Outcome::*;

#[test]
fn prefilter_and_passthrough_text() {
    // Empty and tab-holding text: a data file cannot show either.
    check(&[
        ("empty string needs no parse", "", "", NoParseNeeded),
        (
            "whitespace only needs no parse",
            "  \n\t ",
            "  \n\t ",
            NoParseNeeded,
        ),
    ]);
    assert!(check_data!("prefilter_and_passthrough_text") > 0);
}

#[test]
fn matching_rules() {
    assert!(check_data!("matching_rules") > 0);
}

#[test]
fn untouched_non_table_uses() {
    // Tabs and a carriage return: a data file cannot show them.
    check(&[(
        "odd whitespace kept",
        "SELECT\t*\n  FROM\n\n\tusers\r\n WHERE  1=1",
        "SELECT\t*\n  FROM\n\n\tshared_common.users\r\n WHERE  1=1",
        Rewritten,
    )]);
    assert!(check_data!("untouched_non_table_uses") > 0);
}

#[test]
fn byte_exact_with_korean_text() {
    assert!(check_data!("byte_exact_with_korean_text") > 0);
}

#[test]
fn literal_forms_keep_their_boundaries() {
    assert!(check_data!("literal_forms_keep_their_boundaries") > 0);
}
