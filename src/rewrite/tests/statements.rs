//! Golden tests: one table per statement kind that can name a table, and
//! the kinds beyond the list that still name tables (triggers,
//! partitions, inheritance, maintenance, cursors, policies) with the
//! temporary objects that must stay bare. The cases are in
//! `data/<test name>.golden`.

use super::check_data;

#[test]
fn select_forms() {
    assert!(check_data!("select_forms") > 0);
}

#[test]
fn insert_forms() {
    assert!(check_data!("insert_forms") > 0);
}

#[test]
fn update_delete_merge() {
    assert!(check_data!("update_delete_merge") > 0);
}

#[test]
fn utility_statements() {
    assert!(check_data!("utility_statements") > 0);
}

#[test]
fn ddl_statements() {
    assert!(check_data!("ddl_statements") > 0);
}

#[test]
fn explain_and_prepare() {
    assert!(check_data!("explain_and_prepare") > 0);
}

#[test]
fn triggers_partitions_inheritance() {
    assert!(check_data!("triggers_partitions_inheritance") > 0);
}

#[test]
fn maintenance_cursors_and_temporary_objects() {
    assert!(check_data!("maintenance_cursors_and_temporary_objects") > 0);
}
