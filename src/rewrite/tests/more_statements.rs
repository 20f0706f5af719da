//! Golden tests: statement kinds beyond the list that still name
//! tables (triggers, partitions, inheritance, maintenance, cursors,
//! policies) and the temporary objects that must stay bare.

use super::check;
use crate::rewrite::Outcome::*;

#[test]
fn triggers_partitions_inheritance() {
    check(&[
        (
            "CREATE TRIGGER ON",
            "CREATE TRIGGER tr AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION f()",
            "CREATE TRIGGER tr AFTER INSERT ON shared_common.users FOR EACH ROW EXECUTE FUNCTION f()",
            Rewritten,
        ),
        (
            "DROP TRIGGER ON",
            "DROP TRIGGER tr ON users",
            "DROP TRIGGER tr ON shared_common.users",
            Rewritten,
        ),
        (
            "CREATE TABLE PARTITION OF",
            "CREATE TABLE p PARTITION OF users FOR VALUES IN (1)",
            "CREATE TABLE p PARTITION OF shared_common.users FOR VALUES IN (1)",
            Rewritten,
        ),
        (
            "ALTER TABLE ATTACH PARTITION",
            "ALTER TABLE users ATTACH PARTITION attachments FOR VALUES IN (1)",
            "ALTER TABLE shared_common.users ATTACH PARTITION shared_common.attachments FOR VALUES IN (1)",
            Rewritten,
        ),
        (
            "ALTER TABLE DETACH PARTITION",
            "ALTER TABLE users DETACH PARTITION attachments",
            "ALTER TABLE shared_common.users DETACH PARTITION shared_common.attachments",
            Rewritten,
        ),
        (
            "ALTER TABLE INHERIT",
            "ALTER TABLE users INHERIT attachments",
            "ALTER TABLE shared_common.users INHERIT shared_common.attachments",
            Rewritten,
        ),
        (
            "ALTER TABLE NO INHERIT",
            "ALTER TABLE users NO INHERIT attachments",
            "ALTER TABLE shared_common.users NO INHERIT shared_common.attachments",
            Rewritten,
        ),
        (
            "CREATE POLICY ON",
            "CREATE POLICY p ON users USING (true)",
            "CREATE POLICY p ON shared_common.users USING (true)",
            Rewritten,
        ),
        (
            "ALTER VIEW RENAME keeps the new name bare",
            "ALTER VIEW users RENAME TO v2",
            "ALTER VIEW shared_common.users RENAME TO v2",
            Rewritten,
        ),
        (
            "REFRESH MATERIALIZED VIEW",
            "REFRESH MATERIALIZED VIEW users",
            "REFRESH MATERIALIZED VIEW shared_common.users",
            Rewritten,
        ),
    ]);
}

#[test]
fn maintenance_cursors_and_temporary_objects() {
    check(&[
        (
            "VACUUM a table parses",
            "VACUUM users",
            "VACUUM shared_common.users",
            Rewritten,
        ),
        (
            "VACUUM FULL a table parses",
            "VACUUM FULL users",
            "VACUUM FULL shared_common.users",
            Rewritten,
        ),
        (
            "ANALYZE VERBOSE does not parse: maintenance rule",
            "ANALYZE VERBOSE users",
            "ANALYZE VERBOSE shared_common.users",
            FallbackTokens,
        ),
        (
            "TRUNCATE RESTART IDENTITY",
            "TRUNCATE users RESTART IDENTITY",
            "TRUNCATE shared_common.users RESTART IDENTITY",
            Rewritten,
        ),
        (
            "DECLARE CURSOR FOR a query",
            "DECLARE c CURSOR FOR SELECT * FROM users",
            "DECLARE c CURSOR FOR SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "CREATE TEMP VIEW keeps a mapped name bare",
            "CREATE TEMP VIEW users AS SELECT * FROM attachments",
            "CREATE TEMP VIEW users AS SELECT * FROM shared_common.attachments",
            Rewritten,
        ),
        (
            "INSERT column named like a table stays",
            "INSERT INTO users (users) VALUES (1)",
            "INSERT INTO shared_common.users (users) VALUES (1)",
            Rewritten,
        ),
        (
            "row subquery in UPDATE SET",
            "UPDATE users SET (a, b) = (SELECT a, b FROM attachments)",
            "UPDATE shared_common.users SET (a, b) = (SELECT a, b FROM shared_common.attachments)",
            Rewritten,
        ),
        (
            "LATERAL function reading a column qualifier",
            "SELECT * FROM users, LATERAL generate_series(1, users.n) g",
            "SELECT * FROM shared_common.users, LATERAL generate_series(1, users.n) g",
            Rewritten,
        ),
        (
            "VALUES aliased like a table",
            "SELECT * FROM (VALUES (1)) AS users(x)",
            "SELECT * FROM (VALUES (1)) AS users(x)",
            Unchanged,
        ),
        (
            "row-valued IN subquery",
            "SELECT * FROM users WHERE (a, b) IN (SELECT a, b FROM attachments)",
            "SELECT * FROM shared_common.users WHERE (a, b) IN (SELECT a, b FROM shared_common.attachments)",
            Rewritten,
        ),
        (
            "whole-row reference to an alias",
            "SELECT json_agg(u) FROM users u",
            "SELECT json_agg(u) FROM shared_common.users u",
            Rewritten,
        ),
        (
            "CTE joined to a mapped table USING",
            "WITH x AS (SELECT 1) SELECT * FROM x JOIN users USING (id)",
            "WITH x AS (SELECT 1) SELECT * FROM x JOIN shared_common.users USING (id)",
            Rewritten,
        ),
        (
            "TABLE inside CREATE TABLE AS",
            "CREATE TABLE x AS TABLE users",
            "CREATE TABLE x AS TABLE shared_common.users",
            Rewritten,
        ),
        (
            "TABLE as a UNION branch",
            "SELECT 1 UNION TABLE users",
            "SELECT 1 UNION TABLE shared_common.users",
            Rewritten,
        ),
        (
            "TABLE names a CTE in scope",
            "WITH users AS (SELECT 1) SELECT 1 UNION TABLE users",
            "WITH users AS (SELECT 1) SELECT 1 UNION TABLE users",
            Unchanged,
        ),
        (
            "TABLE in a derived table sees the CTE",
            "WITH users AS (SELECT 1) SELECT * FROM (TABLE users) t",
            "WITH users AS (SELECT 1) SELECT * FROM (TABLE users) t",
            Unchanged,
        ),
        (
            "CREATE SEQUENCE OWNED BY qualifies the table part",
            "CREATE SEQUENCE s OWNED BY users.id",
            "CREATE SEQUENCE s OWNED BY shared_common.users.id",
            Rewritten,
        ),
        (
            "DROP FOREIGN TABLE",
            "DROP FOREIGN TABLE users",
            "DROP FOREIGN TABLE shared_common.users",
            Rewritten,
        ),
        (
            "CREATE FOREIGN TABLE",
            "CREATE FOREIGN TABLE users (a int) SERVER s",
            "CREATE FOREIGN TABLE shared_common.users (a int) SERVER s",
            Rewritten,
        ),
        (
            "subquery in a column DEFAULT",
            "CREATE TABLE t (a int DEFAULT (SELECT 1 FROM users))",
            "CREATE TABLE t (a int DEFAULT (SELECT 1 FROM shared_common.users))",
            Rewritten,
        ),
        (
            "EXPLAIN TABLE does not parse: qualified after TABLE",
            "EXPLAIN TABLE users",
            "EXPLAIN TABLE shared_common.users",
            FallbackTokens,
        ),
    ]);
}
