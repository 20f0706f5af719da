//! Golden tests: input SQL -> expected SQL and outcome, grouped by the rule
//! or statement kind they prove. Each row is named for what it proves.
//! This module holds the map and the checks; one file per topic holds the
//! tests.

mod api;
mod cache;
mod exact;
mod fallback;
mod more_statements;
mod rules;
mod scope;
mod statements;

use super::*;

/// The map of the tests: three services, plus a schema that needs quotes.
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

pub(super) fn check_with(policy: OnParseError, cases: &[Golden]) {
    check_on(&test_map(), policy, cases)
}

/// The golden cases on `map` under `policy`, and the invariants of every
/// result: the cache agrees, edits and names are sorted and on char
/// boundaries.
pub(super) fn check_on(map: &SchemaMap, policy: OnParseError, cases: &[Golden]) {
    let mut failures = Vec::new();
    for &(what, input, expected, outcome) in cases {
        let r = rewrite_sql(input, map, policy);
        cache::assert_cache_agrees(what, input, map, policy, &r);
        let got = r.apply(input);
        if got != expected || r.outcome != outcome {
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

pub(super) fn check(cases: &[Golden]) {
    check_with(OnParseError::Tokens, cases)
}
