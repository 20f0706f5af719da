//! Every table name a statement uses, whatever the map: for the cut-over
//! readiness report, which must also see statements that name no mapped
//! table (those the pre-filter forwards without parsing).

use super::split::{TextIndex, split_statements, tokenize};
use super::statement::rewrite_statement;
use super::{NameUse, OnParseError, SchemaMap};

/// The table names of every statement in `sql`, in text order, each with
/// [`super::Decision::NotInMap`] unless already qualified or a CTE.
/// Statements that do not parse contribute nothing.
pub fn table_names(sql: &str) -> Vec<NameUse> {
    let Ok(tokens) = tokenize(sql) else {
        return Vec::new();
    };
    // An empty map: nothing is qualified, every bare name is reported.
    let map = SchemaMap::default();
    let index = TextIndex::new(sql);
    let mut names = Vec::new();
    for statement in split_statements(tokens) {
        if statement.is_empty() {
            continue;
        }
        let done = rewrite_statement(
            sql,
            &index,
            statement.tokens,
            &map,
            OnParseError::Passthrough,
        );
        names.extend(done.names);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::Decision;

    #[test]
    fn reports_bare_names_ctes_and_qualified_names() {
        let names = table_names(
            "WITH c AS (SELECT 1) SELECT * FROM legacy_log, c, public.audit; INSERT INTO crawl_tmp VALUES (1)",
        );
        let got: Vec<(&str, &Decision)> = names.iter().map(|n| (&*n.name, &n.decision)).collect();
        assert_eq!(
            got,
            [
                ("legacy_log", &Decision::NotInMap),
                ("c", &Decision::Cte),
                ("public.audit", &Decision::AlreadyQualified),
                ("crawl_tmp", &Decision::NotInMap),
            ]
        );
        assert!(table_names("VACUUM FULL ANALYZE ((").is_empty());
    }
}
