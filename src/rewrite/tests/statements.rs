//! Golden tests: one table per statement kind that can name a table.

use super::check;
use crate::rewrite::Outcome::*;

#[test]
fn select_forms() {
    check(&[
        (
            "inner join",
            "SELECT * FROM users u JOIN attachments a ON a.user_id = u.id",
            "SELECT * FROM shared_common.users u JOIN shared_common.attachments a ON a.user_id = u.id",
            Rewritten,
        ),
        (
            "left join with comma list",
            "SELECT * FROM orders o, users u LEFT JOIN attachments a ON true",
            "SELECT * FROM orders o, shared_common.users u LEFT JOIN shared_common.attachments a ON true",
            Rewritten,
        ),
        (
            "subquery in FROM",
            "SELECT * FROM (SELECT * FROM users) s",
            "SELECT * FROM (SELECT * FROM shared_common.users) s",
            Rewritten,
        ),
        (
            "subquery in WHERE IN",
            "SELECT 1 FROM orders WHERE uid IN (SELECT id FROM users)",
            "SELECT 1 FROM orders WHERE uid IN (SELECT id FROM shared_common.users)",
            Rewritten,
        ),
        (
            "EXISTS subquery",
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM users)",
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM shared_common.users)",
            Rewritten,
        ),
        (
            "scalar subquery in the select list",
            "SELECT (SELECT count(*) FROM users) AS n",
            "SELECT (SELECT count(*) FROM shared_common.users) AS n",
            Rewritten,
        ),
        (
            "subquery in HAVING",
            "SELECT k FROM orders GROUP BY k HAVING count(*) > (SELECT count(*) FROM users)",
            "SELECT k FROM orders GROUP BY k HAVING count(*) > (SELECT count(*) FROM shared_common.users)",
            Rewritten,
        ),
        (
            "subquery in CASE",
            "SELECT CASE WHEN x THEN (SELECT 1 FROM users) ELSE 0 END",
            "SELECT CASE WHEN x THEN (SELECT 1 FROM shared_common.users) ELSE 0 END",
            Rewritten,
        ),
        (
            "subquery as a function argument",
            "SELECT coalesce((SELECT max(id) FROM users), 0)",
            "SELECT coalesce((SELECT max(id) FROM shared_common.users), 0)",
            Rewritten,
        ),
        (
            "subquery in a window spec",
            "SELECT row_number() OVER (PARTITION BY (SELECT 1 FROM users) ORDER BY x) FROM orders",
            "SELECT row_number() OVER (PARTITION BY (SELECT 1 FROM shared_common.users) ORDER BY x) FROM orders",
            Rewritten,
        ),
        (
            "subquery in VALUES",
            "VALUES ((SELECT 1 FROM users))",
            "VALUES ((SELECT 1 FROM shared_common.users))",
            Rewritten,
        ),
        (
            "ARRAY subquery",
            "SELECT ARRAY(SELECT id FROM users)",
            "SELECT ARRAY(SELECT id FROM shared_common.users)",
            Rewritten,
        ),
        (
            "LATERAL subquery",
            "SELECT * FROM orders o, LATERAL (SELECT * FROM attachments a WHERE a.o = o.id) x",
            "SELECT * FROM orders o, LATERAL (SELECT * FROM shared_common.attachments a WHERE a.o = o.id) x",
            Rewritten,
        ),
        (
            "UNION",
            "SELECT id FROM users UNION SELECT id FROM attachments",
            "SELECT id FROM shared_common.users UNION SELECT id FROM shared_common.attachments",
            Rewritten,
        ),
        (
            "INTERSECT and EXCEPT",
            "SELECT id FROM users INTERSECT SELECT id FROM attachments EXCEPT SELECT id FROM kasi_cache",
            "SELECT id FROM shared_common.users INTERSECT SELECT id FROM shared_common.attachments EXCEPT SELECT id FROM saju_service.kasi_cache",
            Rewritten,
        ),
        (
            "parenthesized set operation",
            "(SELECT 1 FROM users) UNION ALL (SELECT 2 FROM users)",
            "(SELECT 1 FROM shared_common.users) UNION ALL (SELECT 2 FROM shared_common.users)",
            Rewritten,
        ),
        (
            "SELECT INTO a new mapped table",
            "SELECT * INTO users FROM orders",
            "SELECT * INTO shared_common.users FROM orders",
            Rewritten,
        ),
        (
            "SELECT INTO an unmapped table reads a mapped one",
            "SELECT * INTO newtab FROM users",
            "SELECT * INTO newtab FROM shared_common.users",
            Rewritten,
        ),
        (
            "SELECT INTO TEMP keeps the new name bare",
            "SELECT * INTO TEMP users FROM attachments",
            "SELECT * INTO TEMP users FROM shared_common.attachments",
            Rewritten,
        ),
        (
            "FROM ONLY",
            "SELECT * FROM ONLY users",
            "SELECT * FROM ONLY shared_common.users",
            Rewritten,
        ),
        (
            "TABLESAMPLE",
            "SELECT * FROM users TABLESAMPLE SYSTEM (10)",
            "SELECT * FROM shared_common.users TABLESAMPLE SYSTEM (10)",
            Rewritten,
        ),
        (
            "FOR UPDATE",
            "SELECT * FROM users WHERE id = 1 FOR UPDATE",
            "SELECT * FROM shared_common.users WHERE id = 1 FOR UPDATE",
            Rewritten,
        ),
        (
            "ORDER BY and LIMIT subquery",
            "SELECT * FROM orders ORDER BY (SELECT 1 FROM users) LIMIT (SELECT 1 FROM attachments)",
            "SELECT * FROM orders ORDER BY (SELECT 1 FROM shared_common.users) LIMIT (SELECT 1 FROM shared_common.attachments)",
            Rewritten,
        ),
        (
            "nested joins in parentheses",
            "SELECT * FROM (users JOIN attachments ON true) JOIN kasi_cache ON true",
            "SELECT * FROM (shared_common.users JOIN shared_common.attachments ON true) JOIN saju_service.kasi_cache ON true",
            Rewritten,
        ),
    ]);
}

#[test]
fn insert_forms() {
    check(&[
        (
            "INSERT VALUES",
            "INSERT INTO users (id) VALUES (1)",
            "INSERT INTO shared_common.users (id) VALUES (1)",
            Rewritten,
        ),
        (
            "INSERT SELECT",
            "INSERT INTO attachments SELECT * FROM users",
            "INSERT INTO shared_common.attachments SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "INSERT RETURNING",
            "INSERT INTO users (id) VALUES (1) RETURNING id",
            "INSERT INTO shared_common.users (id) VALUES (1) RETURNING id",
            Rewritten,
        ),
        (
            "ON CONFLICT DO UPDATE with a subquery",
            "INSERT INTO users (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET n = (SELECT count(*) FROM attachments) WHERE users.id > 0",
            "INSERT INTO shared_common.users (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET n = (SELECT count(*) FROM shared_common.attachments) WHERE users.id > 0",
            Rewritten,
        ),
        (
            "ON CONFLICT DO NOTHING",
            "INSERT INTO users VALUES (1) ON CONFLICT DO NOTHING",
            "INSERT INTO shared_common.users VALUES (1) ON CONFLICT DO NOTHING",
            Rewritten,
        ),
        (
            "INSERT with alias",
            "INSERT INTO users AS u (id) VALUES (1)",
            "INSERT INTO shared_common.users AS u (id) VALUES (1)",
            Rewritten,
        ),
        (
            "INSERT into a quoted-schema table",
            "INSERT INTO old_table VALUES (1)",
            "INSERT INTO \"Legacy Schema\".old_table VALUES (1)",
            Rewritten,
        ),
    ]);
}

#[test]
fn update_delete_merge() {
    check(&[
        (
            "UPDATE",
            "UPDATE users SET n = 1",
            "UPDATE shared_common.users SET n = 1",
            Rewritten,
        ),
        (
            "UPDATE ONLY with alias",
            "UPDATE ONLY users u SET n = 1",
            "UPDATE ONLY shared_common.users u SET n = 1",
            Rewritten,
        ),
        (
            "UPDATE FROM",
            "UPDATE users SET n = a.n FROM attachments a WHERE a.id = users.id",
            "UPDATE shared_common.users SET n = a.n FROM shared_common.attachments a WHERE a.id = users.id",
            Rewritten,
        ),
        (
            "UPDATE with subquery in SET and RETURNING",
            "UPDATE users SET n = (SELECT 1 FROM kasi_cache) RETURNING id",
            "UPDATE shared_common.users SET n = (SELECT 1 FROM saju_service.kasi_cache) RETURNING id",
            Rewritten,
        ),
        (
            "DELETE",
            "DELETE FROM users WHERE id = 1",
            "DELETE FROM shared_common.users WHERE id = 1",
            Rewritten,
        ),
        (
            "DELETE USING",
            "DELETE FROM users u USING attachments a WHERE a.id = u.id",
            "DELETE FROM shared_common.users u USING shared_common.attachments a WHERE a.id = u.id",
            Rewritten,
        ),
        (
            "DELETE with subquery and RETURNING",
            "DELETE FROM users WHERE id IN (SELECT uid FROM attachments) RETURNING *",
            "DELETE FROM shared_common.users WHERE id IN (SELECT uid FROM shared_common.attachments) RETURNING *",
            Rewritten,
        ),
        (
            "MERGE",
            "MERGE INTO users u USING attachments a ON a.id = u.id WHEN MATCHED THEN UPDATE SET n = 1 WHEN NOT MATCHED THEN INSERT (id) VALUES (a.id)",
            "MERGE INTO shared_common.users u USING shared_common.attachments a ON a.id = u.id WHEN MATCHED THEN UPDATE SET n = 1 WHEN NOT MATCHED THEN INSERT (id) VALUES (a.id)",
            Rewritten,
        ),
        (
            "MERGE using a subquery",
            "MERGE INTO users u USING (SELECT * FROM kasi_cache) k ON k.id = u.id WHEN MATCHED THEN DELETE",
            "MERGE INTO shared_common.users u USING (SELECT * FROM saju_service.kasi_cache) k ON k.id = u.id WHEN MATCHED THEN DELETE",
            Rewritten,
        ),
    ]);
}

#[test]
fn utility_statements() {
    check(&[
        (
            "COPY table FROM",
            "COPY users FROM STDIN",
            "COPY shared_common.users FROM STDIN",
            Rewritten,
        ),
        (
            "COPY table with columns TO",
            "COPY users (id, n) TO STDOUT WITH (FORMAT csv)",
            "COPY shared_common.users (id, n) TO STDOUT WITH (FORMAT csv)",
            Rewritten,
        ),
        (
            "COPY query TO",
            "COPY (SELECT * FROM users) TO STDOUT",
            "COPY (SELECT * FROM shared_common.users) TO STDOUT",
            Rewritten,
        ),
        (
            "TRUNCATE several tables",
            "TRUNCATE users, attachments, orders",
            "TRUNCATE shared_common.users, shared_common.attachments, orders",
            Rewritten,
        ),
        (
            "TRUNCATE TABLE ONLY",
            "TRUNCATE TABLE ONLY users CASCADE",
            "TRUNCATE TABLE ONLY shared_common.users CASCADE",
            Rewritten,
        ),
        (
            "LOCK TABLE",
            "LOCK TABLE users IN ACCESS EXCLUSIVE MODE",
            "LOCK TABLE shared_common.users IN ACCESS EXCLUSIVE MODE",
            Rewritten,
        ),
        (
            "LOCK several tables",
            "LOCK users, attachments",
            "LOCK shared_common.users, shared_common.attachments",
            Rewritten,
        ),
        (
            "GRANT ON TABLE",
            "GRANT SELECT, INSERT ON TABLE users, attachments TO app",
            "GRANT SELECT, INSERT ON TABLE shared_common.users, shared_common.attachments TO app",
            Rewritten,
        ),
        (
            "GRANT ON without TABLE",
            "GRANT SELECT ON users TO app",
            "GRANT SELECT ON shared_common.users TO app",
            Rewritten,
        ),
        (
            "REVOKE ON TABLE",
            "REVOKE ALL ON TABLE users FROM app",
            "REVOKE ALL ON TABLE shared_common.users FROM app",
            Rewritten,
        ),
        (
            "COMMENT ON TABLE",
            "COMMENT ON TABLE users IS 'users of all services'",
            "COMMENT ON TABLE shared_common.users IS 'users of all services'",
            Rewritten,
        ),
        (
            "COMMENT ON COLUMN qualifies the table part",
            "COMMENT ON COLUMN users.email IS 'mail'",
            "COMMENT ON COLUMN shared_common.users.email IS 'mail'",
            Rewritten,
        ),
        (
            "COMMENT ON COLUMN already qualified",
            "COMMENT ON COLUMN shared_common.users.email IS 'mail'",
            "COMMENT ON COLUMN shared_common.users.email IS 'mail'",
            Unchanged,
        ),
        (
            "ANALYZE a table",
            "ANALYZE users",
            "ANALYZE shared_common.users",
            Rewritten,
        ),
    ]);
}

#[test]
fn ddl_statements() {
    check(&[
        (
            "CREATE TABLE with a mapped name",
            "CREATE TABLE users (id int)",
            "CREATE TABLE shared_common.users (id int)",
            Rewritten,
        ),
        (
            "CREATE TABLE column REFERENCES",
            "CREATE TABLE orders (uid int REFERENCES users (id))",
            "CREATE TABLE orders (uid int REFERENCES shared_common.users (id))",
            Rewritten,
        ),
        (
            "CREATE TABLE table-level FOREIGN KEY",
            "CREATE TABLE orders (uid int, FOREIGN KEY (uid) REFERENCES users (id) ON DELETE CASCADE)",
            "CREATE TABLE orders (uid int, FOREIGN KEY (uid) REFERENCES shared_common.users (id) ON DELETE CASCADE)",
            Rewritten,
        ),
        (
            "CREATE TABLE named constraint",
            "CREATE TABLE orders (uid int, CONSTRAINT fk FOREIGN KEY (uid) REFERENCES users)",
            "CREATE TABLE orders (uid int, CONSTRAINT fk FOREIGN KEY (uid) REFERENCES shared_common.users)",
            Rewritten,
        ),
        (
            "CREATE TABLE AS SELECT",
            "CREATE TABLE snapshot AS SELECT * FROM users",
            "CREATE TABLE snapshot AS SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "CREATE TEMP TABLE keeps a mapped name bare",
            "CREATE TEMP TABLE users (id int)",
            "CREATE TEMP TABLE users (id int)",
            Unchanged,
        ),
        (
            "CREATE TABLE IF NOT EXISTS",
            "CREATE TABLE IF NOT EXISTS kasi_cache (k text)",
            "CREATE TABLE IF NOT EXISTS saju_service.kasi_cache (k text)",
            Rewritten,
        ),
        (
            "CREATE TABLE INHERITS",
            "CREATE TABLE child (x int) INHERITS (users)",
            "CREATE TABLE child (x int) INHERITS (shared_common.users)",
            Rewritten,
        ),
        (
            "ALTER TABLE ADD COLUMN",
            "ALTER TABLE users ADD COLUMN n int",
            "ALTER TABLE shared_common.users ADD COLUMN n int",
            Rewritten,
        ),
        (
            "ALTER TABLE ADD FOREIGN KEY REFERENCES",
            "ALTER TABLE attachments ADD CONSTRAINT fk FOREIGN KEY (uid) REFERENCES users (id)",
            "ALTER TABLE shared_common.attachments ADD CONSTRAINT fk FOREIGN KEY (uid) REFERENCES shared_common.users (id)",
            Rewritten,
        ),
        (
            "ALTER TABLE ADD COLUMN REFERENCES",
            "ALTER TABLE orders ADD COLUMN uid int REFERENCES users",
            "ALTER TABLE orders ADD COLUMN uid int REFERENCES shared_common.users",
            Rewritten,
        ),
        (
            "ALTER TABLE RENAME TO keeps the new name bare",
            "ALTER TABLE users RENAME TO attachments",
            "ALTER TABLE shared_common.users RENAME TO attachments",
            Rewritten,
        ),
        (
            "ALTER TABLE IF EXISTS ONLY",
            "ALTER TABLE IF EXISTS ONLY users DROP COLUMN n",
            "ALTER TABLE IF EXISTS ONLY shared_common.users DROP COLUMN n",
            Rewritten,
        ),
        (
            "DROP TABLE",
            "DROP TABLE users",
            "DROP TABLE shared_common.users",
            Rewritten,
        ),
        (
            "DROP TABLE IF EXISTS several",
            "DROP TABLE IF EXISTS users, orders, attachments CASCADE",
            "DROP TABLE IF EXISTS shared_common.users, orders, shared_common.attachments CASCADE",
            Rewritten,
        ),
        (
            "DROP INDEX is not a table",
            "DROP INDEX users",
            "DROP INDEX users",
            Unchanged,
        ),
        (
            "CREATE INDEX ON",
            "CREATE INDEX users_idx ON users (email)",
            "CREATE INDEX users_idx ON shared_common.users (email)",
            Rewritten,
        ),
        (
            "CREATE UNIQUE INDEX CONCURRENTLY USING",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON users USING btree (email)",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON shared_common.users USING btree (email)",
            Rewritten,
        ),
        (
            "CREATE VIEW",
            "CREATE VIEW v AS SELECT * FROM users",
            "CREATE VIEW v AS SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "CREATE OR REPLACE VIEW with a join",
            "CREATE OR REPLACE VIEW v AS SELECT * FROM users JOIN attachments USING (id)",
            "CREATE OR REPLACE VIEW v AS SELECT * FROM shared_common.users JOIN shared_common.attachments USING (id)",
            Rewritten,
        ),
        (
            "CREATE MATERIALIZED VIEW",
            "CREATE MATERIALIZED VIEW mv AS SELECT * FROM dream_categories",
            "CREATE MATERIALIZED VIEW mv AS SELECT * FROM dream_service.dream_categories",
            Rewritten,
        ),
        (
            "DROP VIEW of a mapped name",
            "DROP VIEW IF EXISTS users",
            "DROP VIEW IF EXISTS shared_common.users",
            Rewritten,
        ),
    ]);
}

#[test]
fn explain_and_prepare() {
    check(&[
        (
            "EXPLAIN SELECT",
            "EXPLAIN SELECT * FROM users",
            "EXPLAIN SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "EXPLAIN ANALYZE UPDATE",
            "EXPLAIN ANALYZE UPDATE users SET n = 1",
            "EXPLAIN ANALYZE UPDATE shared_common.users SET n = 1",
            Rewritten,
        ),
        (
            "EXPLAIN with options DELETE",
            "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM users",
            "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM shared_common.users",
            Rewritten,
        ),
        (
            "EXPLAIN INSERT SELECT",
            "EXPLAIN INSERT INTO users SELECT * FROM attachments",
            "EXPLAIN INSERT INTO shared_common.users SELECT * FROM shared_common.attachments",
            Rewritten,
        ),
        (
            "PREPARE SELECT",
            "PREPARE q (int) AS SELECT * FROM users WHERE id = $1",
            "PREPARE q (int) AS SELECT * FROM shared_common.users WHERE id = $1",
            Rewritten,
        ),
        (
            "PREPARE INSERT",
            "PREPARE ins AS INSERT INTO users VALUES ($1)",
            "PREPARE ins AS INSERT INTO shared_common.users VALUES ($1)",
            Rewritten,
        ),
        (
            "PREPARE DELETE USING",
            "PREPARE d AS DELETE FROM users USING attachments WHERE true",
            "PREPARE d AS DELETE FROM shared_common.users USING shared_common.attachments WHERE true",
            Rewritten,
        ),
        (
            "EXPLAIN of a CTE query",
            "EXPLAIN WITH x AS (SELECT * FROM users) SELECT * FROM x",
            "EXPLAIN WITH x AS (SELECT * FROM shared_common.users) SELECT * FROM x",
            Rewritten,
        ),
        (
            "EXPLAIN MERGE",
            "EXPLAIN MERGE INTO users u USING attachments a ON a.id = u.id WHEN MATCHED THEN DELETE",
            "EXPLAIN MERGE INTO shared_common.users u USING shared_common.attachments a ON a.id = u.id WHEN MATCHED THEN DELETE",
            Rewritten,
        ),
        (
            "EXPLAIN CREATE TABLE AS",
            "EXPLAIN ANALYZE CREATE TABLE snap AS SELECT * FROM users",
            "EXPLAIN ANALYZE CREATE TABLE snap AS SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "EXPLAIN SELECT INTO",
            "EXPLAIN SELECT * INTO snap FROM users",
            "EXPLAIN SELECT * INTO snap FROM shared_common.users",
            Rewritten,
        ),
        (
            "EXPLAIN of a statement that does not parse falls back",
            "EXPLAIN SELECT * FROM users FOR NO KEY UPDATE",
            "EXPLAIN SELECT * FROM shared_common.users FOR NO KEY UPDATE",
            FallbackTokens,
        ),
        (
            "PREPARE UPDATE FROM",
            "PREPARE u (int) AS UPDATE users SET n = $1 FROM attachments a WHERE a.id = users.id",
            "PREPARE u (int) AS UPDATE shared_common.users SET n = $1 FROM shared_common.attachments a WHERE a.id = users.id",
            Rewritten,
        ),
        (
            "PREPARE MERGE",
            "PREPARE m AS MERGE INTO users u USING kasi_cache k ON k.id = u.id WHEN MATCHED THEN DELETE",
            "PREPARE m AS MERGE INTO shared_common.users u USING saju_service.kasi_cache k ON k.id = u.id WHEN MATCHED THEN DELETE",
            Rewritten,
        ),
        (
            "PREPARE with a CTE shadowing a table",
            "PREPARE p AS WITH users AS (SELECT 1) SELECT * FROM users, attachments",
            "PREPARE p AS WITH users AS (SELECT 1) SELECT * FROM users, shared_common.attachments",
            Rewritten,
        ),
        (
            "EXECUTE names no table",
            "EXECUTE users(1)",
            "EXECUTE users(1)",
            Unchanged,
        ),
    ]);
}
