//! Golden tests: CTE scope as Postgres resolves it, and DML targets.

use super::check;
use crate::rewrite::Outcome::*;

#[test]
fn cte_scope() {
    check(&[
        (
            "CTE body reading a mapped table is qualified, CTE reference is not",
            "WITH x AS (SELECT * FROM users) SELECT * FROM x",
            "WITH x AS (SELECT * FROM shared_common.users) SELECT * FROM x",
            Rewritten,
        ),
        (
            "a CTE named like a mapped table shadows it in the main query",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM users",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM users",
            Unchanged,
        ),
        (
            "non-recursive CTE does not see itself: its body means the real table",
            "WITH users AS (SELECT * FROM users WHERE active) SELECT * FROM users",
            "WITH users AS (SELECT * FROM shared_common.users WHERE active) SELECT * FROM users",
            Rewritten,
        ),
        (
            "quoted-case CTE name folds like Postgres",
            "WITH Users AS (SELECT 1) SELECT * FROM users",
            "WITH Users AS (SELECT 1) SELECT * FROM users",
            Unchanged,
        ),
        (
            "quoted CTE name \"Users\" does not shadow users",
            "WITH \"Users\" AS (SELECT 1) SELECT * FROM users",
            "WITH \"Users\" AS (SELECT 1) SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "later CTE sees an earlier one",
            "WITH users AS (SELECT 1 AS id), b AS (SELECT * FROM users) SELECT * FROM b",
            "WITH users AS (SELECT 1 AS id), b AS (SELECT * FROM users) SELECT * FROM b",
            Unchanged,
        ),
        (
            "earlier CTE does not see a later one",
            "WITH a AS (SELECT * FROM users), users AS (SELECT 1) SELECT * FROM a, users",
            "WITH a AS (SELECT * FROM shared_common.users), users AS (SELECT 1) SELECT * FROM a, users",
            Rewritten,
        ),
        (
            "RECURSIVE: a CTE sees itself",
            "WITH RECURSIVE users AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM users WHERE id < 3) SELECT * FROM users",
            "WITH RECURSIVE users AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM users WHERE id < 3) SELECT * FROM users",
            Unchanged,
        ),
        (
            "RECURSIVE: an earlier CTE sees a later one",
            "WITH RECURSIVE a AS (SELECT * FROM users), users AS (SELECT 1) SELECT * FROM a",
            "WITH RECURSIVE a AS (SELECT * FROM users), users AS (SELECT 1) SELECT * FROM a",
            Unchanged,
        ),
        (
            "RECURSIVE: the anchor reads the real table of another name",
            "WITH RECURSIVE t AS (SELECT id FROM users UNION ALL SELECT id FROM t) SELECT * FROM t",
            "WITH RECURSIVE t AS (SELECT id FROM shared_common.users UNION ALL SELECT id FROM t) SELECT * FROM t",
            Rewritten,
        ),
        (
            "the shadow reaches nested subqueries of the main query",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM orders WHERE id IN (SELECT id FROM users)",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM orders WHERE id IN (SELECT id FROM users)",
            Unchanged,
        ),
        (
            "the shadow reaches derived tables",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM (SELECT * FROM users) s",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM (SELECT * FROM users) s",
            Unchanged,
        ),
        (
            "a CTE of a subquery does not leak to the outer query",
            "SELECT * FROM (WITH users AS (SELECT 1) SELECT * FROM users) s, users",
            "SELECT * FROM (WITH users AS (SELECT 1) SELECT * FROM users) s, shared_common.users",
            Rewritten,
        ),
        (
            "inner WITH shadows outer: both are CTEs",
            "WITH users AS (SELECT 1) SELECT * FROM (WITH users AS (SELECT 2) SELECT * FROM users) s",
            "WITH users AS (SELECT 1) SELECT * FROM (WITH users AS (SELECT 2) SELECT * FROM users) s",
            Unchanged,
        ),
        (
            "inner non-recursive CTE body sees the outer CTE",
            "WITH users AS (SELECT 1) SELECT * FROM (WITH users AS (SELECT * FROM users) SELECT * FROM users) s",
            "WITH users AS (SELECT 1) SELECT * FROM (WITH users AS (SELECT * FROM users) SELECT * FROM users) s",
            Unchanged,
        ),
        (
            "CTE nested in a CTE body is local to it",
            "WITH a AS (WITH users AS (SELECT 1) SELECT * FROM users) SELECT * FROM a, users",
            "WITH a AS (WITH users AS (SELECT 1) SELECT * FROM users) SELECT * FROM a, shared_common.users",
            Rewritten,
        ),
        (
            "the CTE shadows only its own name",
            "WITH users AS (SELECT 1) SELECT * FROM users, attachments",
            "WITH users AS (SELECT 1) SELECT * FROM users, shared_common.attachments",
            Rewritten,
        ),
        (
            "a qualified name is never a CTE",
            "WITH users AS (SELECT 1) SELECT * FROM archive.users",
            "WITH users AS (SELECT 1) SELECT * FROM archive.users",
            Unchanged,
        ),
        (
            "CTE in a UNION branch subquery",
            "WITH users AS (SELECT 1) SELECT * FROM users UNION SELECT * FROM (SELECT 2 FROM users) s",
            "WITH users AS (SELECT 1) SELECT * FROM users UNION SELECT * FROM (SELECT 2 FROM users) s",
            Unchanged,
        ),
        (
            "MATERIALIZED CTE",
            "WITH x AS MATERIALIZED (SELECT * FROM users) SELECT * FROM x",
            "WITH x AS MATERIALIZED (SELECT * FROM shared_common.users) SELECT * FROM x",
            Rewritten,
        ),
    ]);
}

#[test]
fn dml_targets_are_always_tables() {
    check(&[
        (
            "INSERT target is a table even if a CTE has its name",
            "WITH users AS (SELECT 1 AS id) INSERT INTO users SELECT * FROM users",
            "WITH users AS (SELECT 1 AS id) INSERT INTO shared_common.users SELECT * FROM users",
            Rewritten,
        ),
        (
            "UPDATE target is a table even if a CTE has its name",
            "WITH users AS (SELECT 1 AS id) UPDATE users SET n = 1 FROM users u2",
            "WITH users AS (SELECT 1 AS id) UPDATE shared_common.users SET n = 1 FROM users u2",
            Rewritten,
        ),
        (
            "DELETE target is a table even if a CTE has its name",
            "WITH users AS (SELECT 1 AS id) DELETE FROM users WHERE id IN (SELECT id FROM users)",
            "WITH users AS (SELECT 1 AS id) DELETE FROM shared_common.users WHERE id IN (SELECT id FROM users)",
            Rewritten,
        ),
        (
            "MERGE target is a table even if a CTE has its name",
            "WITH users AS (SELECT 1 AS id) MERGE INTO users t USING users s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "WITH users AS (SELECT 1 AS id) MERGE INTO shared_common.users t USING users s ON t.id = s.id WHEN MATCHED THEN DELETE",
            Rewritten,
        ),
        (
            "data-modifying CTE body is qualified",
            "WITH moved AS (DELETE FROM users RETURNING *) INSERT INTO attachments SELECT * FROM moved",
            "WITH moved AS (DELETE FROM shared_common.users RETURNING *) INSERT INTO shared_common.attachments SELECT * FROM moved",
            Rewritten,
        ),
        (
            "INSERT inside a CTE named like its target",
            "WITH users AS (INSERT INTO users VALUES (1) RETURNING *) SELECT * FROM users",
            "WITH users AS (INSERT INTO shared_common.users VALUES (1) RETURNING *) SELECT * FROM users",
            Rewritten,
        ),
    ]);
}
