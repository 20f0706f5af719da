//! Golden tests: CTE scope as Postgres resolves it, and DML targets. The
//! cases are in `data/<test name>.golden`.

use super::check_data;

#[test]
fn cte_scope() {
    assert!(check_data!("cte_scope") > 0);
}

#[test]
fn dml_targets_are_always_tables() {
    assert!(check_data!("dml_targets_are_always_tables") > 0);
}
