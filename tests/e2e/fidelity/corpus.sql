-- The differential corpus: each entry runs directly on fid_before and through
-- the proxy on fid_after (see tests/e2e/differential.rs), and both answers
-- must be equal.
--
-- Format:
--   -- next: family.name     starts an entry (family = the part before the dot)
--   -- family: other         (optional) overrides the family
--   -- nowrap                run outside BEGIN/ROLLBACK (databases re-cloned after)
--   -- step [extended|copy-in|copy-out]
--                            starts another step in the same session (the
--                            first step is implicit; `-- step x` right after
--                            `-- next:` sets its kind)
--   -- data                  the rest of the step is COPY FROM STDIN data
-- Any other whole-line `--` comment is a note and is not sent.
--
-- Catalog answers that legitimately differ after a move (oids, schema names)
-- are avoided by selecting only what legacy code reads, never by loosening
-- the comparison.

-- ===== plain DML and queries =====================================
-- next: plain.select_star
SELECT * FROM users ORDER BY id
-- next: plain.select_cols
SELECT id, name, email FROM users ORDER BY id
-- next: plain.select_where_id
SELECT name FROM users WHERE id = 1
-- next: plain.upper_case
SELECT NAME FROM USERS WHERE ID = 2
-- next: plain.mixed_case
Select Name From Users Where Id = 3
-- next: plain.quoted_lower
SELECT name FROM "users" WHERE id = 1
-- next: plain.count
SELECT count(*) FROM users
-- next: plain.count_each
SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM attachments), (SELECT count(*) FROM audit_logs), (SELECT count(*) FROM notifications), (SELECT count(*) FROM kasi_cache), (SELECT count(*) FROM saju_charts), (SELECT count(*) FROM daily_fortunes), (SELECT count(*) FROM dream_categories), (SELECT count(*) FROM dream_interpretations)
-- next: plain.alias
SELECT u.name FROM users u WHERE u.id = 2
-- next: plain.alias_as
SELECT u.name FROM users AS u ORDER BY u.id
-- next: plain.column_qualifier
SELECT users.name FROM users ORDER BY users.id
-- next: plain.join
SELECT u.name, a.filename FROM users u JOIN attachments a ON a.user_id = u.id ORDER BY a.id
-- next: plain.left_join
SELECT u.name, count(a.id) FROM users u LEFT JOIN attachments a ON a.user_id = u.id GROUP BY u.name ORDER BY u.name
-- next: plain.join_using
SELECT n.message, u.name FROM notifications n JOIN users u ON u.id = n.user_id ORDER BY n.id
-- next: plain.comma_join
SELECT u.name, c.birth FROM users u, saju_charts c WHERE c.user_id = u.id ORDER BY c.id
-- next: plain.three_way_join
SELECT u.name, c.pillars[1], f.score FROM users u JOIN saju_charts c ON c.user_id = u.id JOIN daily_fortunes f ON f.user_id = u.id ORDER BY f.id
-- next: plain.subquery_in
SELECT name FROM users WHERE id IN (SELECT user_id FROM attachments) ORDER BY 1
-- next: plain.exists
SELECT name FROM users u WHERE EXISTS (SELECT 1 FROM notifications n WHERE n.user_id = u.id AND NOT n.read) ORDER BY 1
-- next: plain.not_exists
SELECT name FROM users u WHERE NOT EXISTS (SELECT 1 FROM saju_charts c WHERE c.user_id = u.id) ORDER BY 1
-- next: plain.scalar_subquery
SELECT (SELECT name FROM users WHERE id = 1) AS n
-- next: plain.cte
WITH a AS (SELECT user_id, count(*) AS n FROM attachments GROUP BY user_id) SELECT u.name, a.n FROM users u JOIN a ON a.user_id = u.id ORDER BY 1
-- next: plain.cte_shadows
WITH users AS (SELECT 42 AS id, 'cte' AS name) SELECT id, name FROM users
-- next: plain.cte_recursive
WITH RECURSIVE t AS (SELECT id, name, parent_id, 1 AS depth FROM dream_categories WHERE parent_id IS NULL UNION ALL SELECT c.id, c.name, c.parent_id, t.depth + 1 FROM dream_categories c JOIN t ON c.parent_id = t.id) SELECT * FROM t ORDER BY id
-- next: plain.union
SELECT name FROM users UNION SELECT name FROM dream_categories ORDER BY 1
-- next: plain.intersect
SELECT user_id FROM attachments INTERSECT SELECT user_id FROM notifications ORDER BY 1
-- next: plain.except
SELECT id FROM users EXCEPT SELECT user_id FROM saju_charts ORDER BY 1
-- next: plain.group_having
SELECT user_id, sum(score) FROM daily_fortunes GROUP BY user_id HAVING count(*) > 1 ORDER BY 1
-- next: plain.order_limit
SELECT name FROM users ORDER BY created_at, id LIMIT 2 OFFSET 1
-- next: plain.fetch_first
SELECT name FROM users ORDER BY id FETCH FIRST 2 ROWS ONLY
-- next: plain.distinct_on
SELECT DISTINCT ON (user_id) user_id, day, score FROM daily_fortunes ORDER BY user_id, day DESC
-- next: plain.jsonb
SELECT key, payload->>'term' FROM kasi_cache ORDER BY key
-- next: plain.jsonb_contains
SELECT key FROM kasi_cache WHERE payload @> '{"term": "입춘"}'
-- next: plain.array_any
SELECT id FROM saju_charts WHERE '갑자' = ANY (pillars)
-- next: plain.unnest
SELECT c.id, p FROM saju_charts c, unnest(c.pillars) AS p WHERE c.id = 1 ORDER BY p
-- next: plain.lateral
SELECT u.name, last.day FROM users u CROSS JOIN LATERAL (SELECT day FROM daily_fortunes f WHERE f.user_id = u.id ORDER BY day DESC LIMIT 1) last ORDER BY 1
-- next: plain.table_stmt
TABLE kasi_cache
-- next: plain.values_join
SELECT v.k, k.hits FROM (VALUES ('2024-02-04'), ('2024-03-05')) v(k) JOIN kasi_cache k ON k.key = v.k ORDER BY 1
-- next: plain.composite_field
SELECT name, (home).city FROM users WHERE home IS NOT NULL ORDER BY id
-- next: plain.enum_compare
SELECT name FROM users WHERE status = 'active' ORDER BY id
-- next: plain.enum_order
SELECT name, status FROM users ORDER BY status, id
-- next: plain.insert
INSERT INTO users (email, name) VALUES ('new@heal7.test', 'new')
-- next: plain.insert_then_select
INSERT INTO users (email, name) VALUES ('new@heal7.test', 'new');
SELECT id, name, status FROM users ORDER BY id
-- next: plain.insert_select
INSERT INTO notifications (user_id, message) SELECT id, 'hello ' || name FROM users WHERE status = 'active';
SELECT user_id, message FROM notifications ORDER BY id
-- next: plain.insert_multi
INSERT INTO dream_categories (name) VALUES ('fire'), ('wind');
SELECT id, name FROM dream_categories ORDER BY id
-- next: plain.insert_default_values
INSERT INTO audit_logs (action) VALUES ('ping');
SELECT id, action FROM audit_logs ORDER BY id
-- next: plain.insert_fk_violation
INSERT INTO attachments (user_id, filename) VALUES (999, 'x')
-- next: plain.insert_unique_violation
INSERT INTO users (email, name) VALUES ('alice@heal7.test', 'dup')
-- next: plain.insert_domain_violation
INSERT INTO users (email, name) VALUES ('no-at-sign', 'x')
-- next: plain.insert_enum_violation
INSERT INTO users (email, name, status) VALUES ('z@heal7.test', 'z', 'banned')
-- next: plain.insert_fk_ok
INSERT INTO attachments (user_id, filename) VALUES (5, 'eve.txt');
SELECT id, user_id, filename FROM attachments ORDER BY id
-- next: plain.update
UPDATE users SET name = 'alice2' WHERE id = 1
-- next: plain.update_then_select
UPDATE users SET name = upper(name) WHERE status = 'active';
SELECT id, name, version FROM users ORDER BY id
-- next: plain.update_from
UPDATE notifications n SET read = true FROM users u WHERE u.id = n.user_id AND u.name = 'bob';
SELECT id, read FROM notifications ORDER BY id
-- next: plain.update_subquery
UPDATE daily_fortunes SET score = score + 1 WHERE user_id IN (SELECT id FROM users WHERE status = 'active');
SELECT id, score FROM daily_fortunes ORDER BY id
-- next: plain.update_status_trigger
UPDATE users SET status = 'disabled' WHERE id = 2;
SELECT user_id, action, detail FROM audit_logs ORDER BY id
-- next: plain.update_version_count
UPDATE users SET version = version + 1;
SELECT sum(version) FROM users
-- next: plain.cte_update_returning
WITH moved AS (UPDATE users SET status = 'pending' WHERE status = 'disabled' RETURNING id) SELECT count(*) FROM moved
-- next: plain.delete_returning_star
DELETE FROM kasi_cache WHERE hits = 0 RETURNING *
-- next: plain.delete
DELETE FROM notifications WHERE read
-- next: plain.delete_cascade
DELETE FROM users WHERE id = 1;
SELECT (SELECT count(*) FROM attachments), (SELECT count(*) FROM notifications), (SELECT count(*) FROM saju_charts)
-- next: plain.delete_using
DELETE FROM attachments a USING users u WHERE a.user_id = u.id AND u.name = 'alice';
SELECT id FROM attachments ORDER BY id
-- next: plain.delete_all_count
DELETE FROM dream_interpretations;
SELECT count(*) FROM dream_interpretations
-- next: plain.truncate
TRUNCATE kasi_cache;
SELECT count(*) FROM kasi_cache
-- next: plain.truncate_cascade
TRUNCATE users CASCADE;
SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM attachments)
-- next: plain.truncate_restart
TRUNCATE dream_interpretations RESTART IDENTITY;
INSERT INTO dream_interpretations (keyword, body) VALUES ('k', 'b') RETURNING id
-- next: plain.merge
MERGE INTO kasi_cache k USING (VALUES ('2024-02-04', '{"term": "new"}'::jsonb), ('2024-04-04', '{"term": "청명"}'::jsonb)) v(key, payload) ON k.key = v.key WHEN MATCHED THEN UPDATE SET hits = k.hits + 1 WHEN NOT MATCHED THEN INSERT (key, payload) VALUES (v.key, v.payload);
SELECT key, hits FROM kasi_cache ORDER BY key
-- next: plain.lock
LOCK TABLE users IN SHARE MODE;
SELECT count(*) FROM users
-- next: plain.lock_nowait
LOCK users, attachments IN ACCESS EXCLUSIVE MODE NOWAIT
-- next: plain.select_for_update
SELECT id FROM users WHERE id = 1 FOR UPDATE
-- next: plain.select_for_share_skip
SELECT id FROM users ORDER BY id FOR SHARE SKIP LOCKED
-- next: plain.explain
EXPLAIN (COSTS OFF) SELECT * FROM users WHERE id = 1
-- next: plain.explain_analyze_rows
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM kasi_cache
-- next: plain.missing_column
SELECT nosuch FROM users
-- next: plain.missing_table
SELECT * FROM no_such_table
-- next: plain.syntax_error
SELECT FROM FROM users
-- next: plain.division_by_zero
SELECT 1 / (SELECT count(*) - count(*) FROM users)
-- next: plain.multi_statement
SELECT count(*) FROM users; SELECT count(*) FROM kasi_cache; SELECT count(*) FROM dream_categories
-- next: plain.multi_statement_error_midway
SELECT count(*) FROM users; SELECT nosuch FROM kasi_cache; SELECT count(*) FROM dream_categories
-- next: plain.korean_literal
SELECT id FROM users WHERE name = '김민수'
-- next: plain.like
SELECT keyword FROM dream_interpretations WHERE body LIKE '%calm%'
-- next: plain.ilike_escape
SELECT name FROM users WHERE email ILIKE '%\_%' ESCAPE '\' ORDER BY 1
-- next: plain.case
SELECT name, CASE WHEN notifications THEN 'on' ELSE 'off' END FROM users ORDER BY id
-- next: plain.coalesce_null
SELECT id, coalesce(size_bytes, -1) FROM attachments ORDER BY id
-- next: plain.window
SELECT user_id, day, score, rank() OVER (PARTITION BY user_id ORDER BY score DESC) FROM daily_fortunes ORDER BY user_id, day
-- next: plain.generate_series_join
SELECT g, (SELECT count(*) FROM users WHERE id <= g) FROM generate_series(1, 3) g
-- next: plain.self_join
SELECT c.name, p.name FROM dream_categories c JOIN dream_categories p ON p.id = c.parent_id
-- next: plain.in_list
SELECT name FROM users WHERE id IN (1, 3, 5) ORDER BY id
-- next: plain.prepare_execute
PREPARE by_id(int) AS SELECT name FROM users WHERE id = $1;
EXECUTE by_id(2);
EXECUTE by_id(3)
-- next: plain.prepare_insert
PREPARE ins(text) AS INSERT INTO kasi_cache (key, payload) VALUES ($1, '{}') RETURNING key, hits;
EXECUTE ins('2030-01-01')
-- next: plain.savepoint
SAVEPOINT a;
INSERT INTO users (email, name) VALUES ('sp@heal7.test', 'sp');
ROLLBACK TO SAVEPOINT a;
SELECT count(*) FROM users
-- next: plain.extended_select
-- step extended
SELECT name::text FROM users ORDER BY id
-- next: plain.extended_insert_returning
-- step extended
INSERT INTO users (email, name) VALUES ('ext@heal7.test', 'ext') RETURNING id::text, status::text
-- next: plain.extended_join
-- step extended
SELECT u.name::text, a.filename::text FROM users u JOIN attachments a ON a.user_id = u.id ORDER BY a.id
-- next: plain.extended_update
-- step extended
UPDATE kasi_cache SET hits = hits + 1 RETURNING key::text, hits::text

-- ===== what SQLAlchemy Core and ORM send ==========================
-- next: sqlalchemy.insert_returning
INSERT INTO users (email, name, status) VALUES ('sa@heal7.test', 'sa', 'pending') RETURNING users.id
-- next: sqlalchemy.insert_returning_all
INSERT INTO users (email, name) VALUES ('sa2@heal7.test', 'sa2') RETURNING users.id, users.email, users.name, users.status, users.home, users.notifications, users.version, users.created_at
-- next: sqlalchemy.insertmanyvalues
INSERT INTO attachments (user_id, filename, size_bytes) SELECT p0::INTEGER, p1::VARCHAR, p2::BIGINT FROM (VALUES (1, 'a.txt', 1, 0), (2, 'b.txt', 2, 1)) AS imp_sen(p0, p1, p2, sen_counter) ORDER BY sen_counter RETURNING attachments.id, attachments.id AS id__1
-- next: sqlalchemy.on_conflict_lower_email
INSERT INTO users (email, name) VALUES ('ALICE@heal7.test', 'alice-again') ON CONFLICT (lower(email)) DO UPDATE SET name = excluded.name RETURNING users.id, users.name
-- next: sqlalchemy.on_conflict_constraint
INSERT INTO users (email, name) VALUES ('bob@heal7.test', 'bob-again') ON CONFLICT ON CONSTRAINT users_email_key DO UPDATE SET version = users.version + 10 RETURNING id, version
-- next: sqlalchemy.on_conflict_do_nothing
INSERT INTO kasi_cache (key, payload) VALUES ('2024-02-04', '{}') ON CONFLICT DO NOTHING RETURNING key
-- next: sqlalchemy.on_conflict_where
INSERT INTO daily_fortunes (user_id, day, score) VALUES (1, '2024-06-01', 50) ON CONFLICT (user_id, day) DO UPDATE SET score = excluded.score WHERE daily_fortunes.score < excluded.score RETURNING id, score
-- next: sqlalchemy.between_symmetric
SELECT users.id, users.name FROM users WHERE users.id BETWEEN SYMMETRIC 4 AND 2 ORDER BY users.id
-- next: sqlalchemy.for_update_of
SELECT u.id, a.id FROM users AS u JOIN attachments AS a ON a.user_id = u.id ORDER BY a.id FOR UPDATE OF u, a
-- next: sqlalchemy.for_update_of_nowait
SELECT users.id FROM users WHERE users.id = 1 FOR NO KEY UPDATE OF users NOWAIT
-- next: sqlalchemy.window_exclude
SELECT day, score, sum(score) OVER (ORDER BY day, id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING EXCLUDE CURRENT ROW) AS others FROM daily_fortunes ORDER BY day, id
-- next: sqlalchemy.window_groups
SELECT id, count(*) OVER (ORDER BY user_id GROUPS BETWEEN 1 PRECEDING AND CURRENT ROW EXCLUDE TIES) FROM daily_fortunes ORDER BY id
-- next: sqlalchemy.orm_get
SELECT users.id AS users_id, users.email AS users_email, users.name AS users_name, users.status AS users_status FROM users WHERE users.id = 3
-- next: sqlalchemy.orm_selectinload
SELECT attachments.user_id AS attachments_user_id, attachments.id AS attachments_id, attachments.filename AS attachments_filename FROM attachments WHERE attachments.user_id IN (1, 2, 3) ORDER BY attachments.id
-- next: sqlalchemy.orm_joinedload
SELECT users.id, users.name, attachments_1.id AS id_1, attachments_1.filename FROM users LEFT OUTER JOIN attachments AS attachments_1 ON users.id = attachments_1.user_id ORDER BY users.id, attachments_1.id
-- next: sqlalchemy.orm_update_version
UPDATE users SET name = 'alice-v2', version = 2 WHERE users.id = 1 AND users.version = 1
-- next: sqlalchemy.orm_delete
DELETE FROM notifications WHERE notifications.id = 3
-- next: sqlalchemy.exists_select
SELECT EXISTS (SELECT * FROM users WHERE users.email = 'eve@heal7.test') AS anon_1
-- next: sqlalchemy.count_subquery
SELECT count(*) AS count_1 FROM (SELECT users.id AS users_id FROM users WHERE users.status = 'active') AS anon_1
-- next: sqlalchemy.enum_cast
SELECT users.name FROM users WHERE users.status = CAST('pending' AS user_status)
-- next: sqlalchemy.has_table
SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relname = 'users' AND pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'
-- next: sqlalchemy.get_table_names
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid) AND n.nspname <> 'pg_catalog' ORDER BY c.relname
-- next: sqlalchemy.get_view_names
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND pg_table_is_visible(c.oid) AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY c.relname
-- next: sqlalchemy.info_schema_columns
SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position
-- next: sqlalchemy.info_schema_tables
SELECT table_name FROM information_schema.tables WHERE table_name IN ('users', 'kasi_cache', 'dream_categories') ORDER BY 1
-- next: sqlalchemy.reflect_columns
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'users'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
-- next: sqlalchemy.reflect_pk
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = 'users'::regclass AND i.indisprimary
-- next: sqlalchemy.reflect_fks
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'attachments'::regclass AND contype = 'f' ORDER BY conname
-- next: sqlalchemy.reflect_indexes
SELECT i.relname, ix.indisunique FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid WHERE ix.indrelid = 'users'::regclass ORDER BY i.relname
-- next: sqlalchemy.reflect_enums
SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid WHERE pg_type_is_visible(t.oid) GROUP BY t.typname ORDER BY 1
-- next: sqlalchemy.reflect_domains
SELECT t.typname, pg_catalog.format_type(t.typbasetype, t.typtypmod), t.typnotnull FROM pg_type t WHERE t.typtype = 'd' AND pg_type_is_visible(t.oid) ORDER BY 1
-- next: sqlalchemy.reflect_table_comment
SELECT obj_description('users'::regclass, 'pg_class')
-- next: sqlalchemy.check_constraints
SELECT conname FROM pg_constraint WHERE conrelid = 'users'::regclass ORDER BY conname
-- next: sqlalchemy.current_schema
SELECT current_schema()
-- next: sqlalchemy.server_version
SELECT current_setting('server_version_num')::int >= 150000
-- next: sqlalchemy.core_update_returning
UPDATE users SET status = 'active' WHERE users.id = 3 RETURNING users.id, users.status
-- next: sqlalchemy.core_delete_returning
DELETE FROM audit_logs WHERE audit_logs.action = 'logout' RETURNING audit_logs.id, audit_logs.user_id
-- next: sqlalchemy.upsert_kasi
INSERT INTO kasi_cache (key, payload, hits) VALUES ('2024-02-19', '{"term": "우수"}', 0) ON CONFLICT (key) DO UPDATE SET hits = kasi_cache.hits + 1 RETURNING kasi_cache.key, kasi_cache.hits
-- next: sqlalchemy.cte_insert
WITH new_user AS (INSERT INTO users (email, name) VALUES ('cte@heal7.test', 'cte') RETURNING id) INSERT INTO notifications (user_id, message) SELECT id, 'welcome' FROM new_user RETURNING user_id, message
-- next: sqlalchemy.cte_delete
WITH gone AS (DELETE FROM notifications WHERE read RETURNING user_id) SELECT count(*) FROM gone
-- next: sqlalchemy.any_array
SELECT users.name FROM users WHERE users.id = ANY (ARRAY[1, 2]) ORDER BY users.id
-- next: sqlalchemy.json_path
SELECT kasi_cache.key FROM kasi_cache WHERE kasi_cache.payload #>> '{term}' = '경칩'
-- next: sqlalchemy.savepoint_nested
SAVEPOINT sa_savepoint_1;
UPDATE users SET name = 'nested' WHERE id = 2;
RELEASE SAVEPOINT sa_savepoint_1;
SELECT name FROM users WHERE id = 2
-- next: sqlalchemy.tablesample
SELECT count(*) <= 5 FROM users TABLESAMPLE SYSTEM (100)
-- next: sqlalchemy.only
SELECT count(*) FROM ONLY users
-- next: sqlalchemy.extended_reflect
-- step extended
SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'kasi_cache'::regclass AND a.attnum > 0 ORDER BY a.attnum

-- ===== Django =====================================================
-- next: django.get_table_list
SELECT c.relname, CASE WHEN c.relispartition THEN 'p' WHEN c.relkind IN ('m', 'v') THEN 'v' ELSE 't' END, obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('f', 'm', 'p', 'r', 'v') AND n.nspname NOT IN ('pg_catalog', 'pg_toast') AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY c.relname
-- next: django.get_table_description
SELECT a.attname AS column_name, NOT (a.attnotnull OR (t.typtype = 'd' AND t.typnotnull)) AS is_nullable, pg_get_expr(ad.adbin, ad.adrelid) AS column_default, CASE WHEN collname = 'default' THEN NULL ELSE collname END AS collation, a.attidentity != '' AS is_autofield, col_description(a.attrelid, a.attnum) AS column_comment FROM pg_attribute a LEFT JOIN pg_attrdef ad ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum LEFT JOIN pg_collation co ON a.attcollation = co.oid JOIN pg_type t ON a.atttypid = t.oid JOIN pg_class c ON a.attrelid = c.oid JOIN pg_namespace n ON c.relnamespace = n.oid WHERE c.relkind IN ('f', 'm', 'p', 'r', 'v') AND c.relname = 'users' AND n.nspname NOT IN ('pg_catalog', 'pg_toast') AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY a.attnum
-- next: django.get_table_description_attachments
SELECT a.attname, a.attidentity != '' AS is_autofield FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid WHERE c.relname = 'attachments' AND a.attnum > 0 AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY a.attnum
-- next: django.cursor_description
SELECT * FROM users LIMIT 1
-- next: django.get_sequences
SELECT s.relname, a.attname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid JOIN pg_class tbl ON tbl.oid = d.refobjid AND tbl.relname = 'users' AND pg_catalog.pg_table_is_visible(tbl.oid) WHERE s.relkind = 'S'
-- next: django.get_sequences_identity
SELECT s.relname, a.attname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid JOIN pg_class tbl ON tbl.oid = d.refobjid AND tbl.relname = 'attachments' AND pg_catalog.pg_table_is_visible(tbl.oid) WHERE s.relkind = 'S'
-- next: django.pg_get_serial_sequence
SELECT pg_get_serial_sequence('"users"', 'id')::regclass::text
-- next: django.sequence_reset_sql
SELECT setval(pg_get_serial_sequence('"users"','id'), coalesce(max("id"), 1), max("id") IS NOT null) FROM "users"
-- next: django.sequence_reset_then_insert
SELECT setval(pg_get_serial_sequence('"dream_categories"','id'), coalesce(max("id"), 1), max("id") IS NOT null) FROM "dream_categories";
INSERT INTO "dream_categories" ("name") VALUES ('django') RETURNING "dream_categories"."id"
-- next: django.get_constraints
SELECT c.conname, array(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY cols(colid, arridx) JOIN pg_attribute AS ca ON cols.colid = ca.attnum WHERE ca.attrelid = c.conrelid ORDER BY cols.arridx), c.contype, (SELECT fkc.relname || '.' || fka.attname FROM pg_attribute AS fka JOIN pg_class AS fkc ON fka.attrelid = fkc.oid WHERE fka.attrelid = c.confrelid AND fka.attnum = c.confkey[1]), cl.reloptions FROM pg_constraint AS c JOIN pg_class AS cl ON c.conrelid = cl.oid WHERE cl.relname = 'attachments' AND pg_catalog.pg_table_is_visible(cl.oid) ORDER BY c.conname
-- next: django.get_indexes
SELECT indexname, array_agg(attname ORDER BY arridx), indisunique, indisprimary, amname FROM (SELECT c2.relname AS indexname, idx.*, attr.attname, am.amname FROM (SELECT * FROM pg_index i, unnest(i.indkey, i.indoption) WITH ORDINALITY koi(key, option, arridx)) idx LEFT JOIN pg_class c ON idx.indrelid = c.oid LEFT JOIN pg_class c2 ON idx.indexrelid = c2.oid LEFT JOIN pg_am am ON c2.relam = am.oid LEFT JOIN pg_attribute attr ON attr.attrelid = c.oid AND attr.attnum = idx.key WHERE c.relname = 'users' AND pg_catalog.pg_table_is_visible(c.oid)) s2 GROUP BY indexname, indisunique, indisprimary, amname ORDER BY indexname
-- next: django.get_relations
SELECT a1.attname, c2.relname, a2.attname FROM pg_constraint con LEFT JOIN pg_class c1 ON con.conrelid = c1.oid LEFT JOIN pg_class c2 ON con.confrelid = c2.oid LEFT JOIN pg_attribute a1 ON c1.oid = a1.attrelid AND a1.attnum = con.conkey[1] LEFT JOIN pg_attribute a2 ON c2.oid = a2.attrelid AND a2.attnum = con.confkey[1] WHERE c1.relname = 'saju_charts' AND con.contype = 'f' AND c1.relnamespace = c2.relnamespace AND pg_catalog.pg_table_is_visible(c1.oid)
-- next: django.migrations_table_exists
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relname = 'django_migrations' AND pg_catalog.pg_table_is_visible(c.oid))
-- next: django.orm_filter
SELECT "users"."id", "users"."email", "users"."name" FROM "users" WHERE "users"."status" = 'active' ORDER BY "users"."id" ASC
-- next: django.orm_insert
INSERT INTO "users" ("email", "name", "status", "notifications", "version", "created_at") VALUES ('dj@heal7.test', 'dj', 'active', true, 1, '2024-06-01 00:00:00+00') RETURNING "users"."id"
-- next: django.orm_bulk_create
INSERT INTO "dream_interpretations" ("category_id", "keyword", "body", "luck") VALUES (1, 'cat', 'independent', 0), (2, 'rain', 'renewal', 1) RETURNING "dream_interpretations"."id"
-- next: django.orm_update
UPDATE "users" SET "name" = 'dj-bob' WHERE "users"."id" = 2
-- next: django.orm_delete_collector
SELECT "attachments"."id" FROM "attachments" WHERE "attachments"."user_id" IN (1) ORDER BY 1;
DELETE FROM "attachments" WHERE "attachments"."user_id" IN (1);
DELETE FROM "users" WHERE "users"."id" IN (1)
-- next: django.orm_select_related
SELECT "saju_charts"."id", "users"."name" FROM "saju_charts" LEFT OUTER JOIN "users" ON ("saju_charts"."user_id" = "users"."id") ORDER BY "saju_charts"."id"
-- next: django.orm_aggregate
SELECT COUNT("daily_fortunes"."id") AS "n", AVG("daily_fortunes"."score") AS "avg" FROM "daily_fortunes"
-- next: django.orm_exists
SELECT 1 AS "a" FROM "kasi_cache" WHERE "kasi_cache"."key" = '2024-02-04' LIMIT 1
-- next: django.orm_get_or_create
SELECT "dream_categories"."id" FROM "dream_categories" WHERE "dream_categories"."name" = 'fire' LIMIT 21;
INSERT INTO "dream_categories" ("name", "parent_id") VALUES ('fire', NULL) RETURNING "dream_categories"."id"
-- next: django.orm_select_for_update
SELECT "users"."id" FROM "users" WHERE "users"."id" = 4 FOR UPDATE

-- ===== psycopg2 ===================================================
-- next: psycopg.copy_from
-- step copy-in
COPY users (email, name, status) FROM STDIN WITH (FORMAT text)
-- data
copy1@heal7.test	copy-one	active
copy2@heal7.test	copy-two	pending
-- step
SELECT id, email, name, status FROM users ORDER BY id
-- next: psycopg.copy_from_default_sep
-- step copy-in
COPY kasi_cache FROM STDIN
-- data
2025-01-01	{"term": "소한"}	7
-- step
SELECT key, hits FROM kasi_cache ORDER BY key
-- next: psycopg.copy_expert_csv
-- step copy-in
COPY dream_categories (name, parent_id) FROM STDIN WITH (FORMAT csv, HEADER true)
-- data
name,parent_id
"lion",1
-- step
SELECT id, name, parent_id FROM dream_categories ORDER BY id
-- next: psycopg.copy_from_bad_row
-- step copy-in
COPY users (email, name) FROM STDIN
-- data
no-at-sign	broken
-- next: psycopg.copy_to
-- step copy-out
COPY users (id, email, name) TO STDOUT
-- next: psycopg.copy_to_query
-- step copy-out
COPY (SELECT key, hits FROM kasi_cache ORDER BY key) TO STDOUT WITH (FORMAT csv, HEADER true)
-- next: psycopg.copy_to_table_csv
-- step copy-out
COPY dream_interpretations TO STDOUT (FORMAT csv)
-- next: psycopg.register_composite
SELECT t.typarray::regtype::text, t.typrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_type t JOIN pg_namespace ns ON typnamespace = ns.oid JOIN pg_attribute a ON attrelid = typrelid WHERE typname = 'address' AND pg_type_is_visible(t.oid) AND attnum > 0 AND NOT attisdropped ORDER BY attnum
-- next: psycopg.register_composite_oid_lookup
SELECT count(*) FROM pg_type t JOIN pg_namespace ns ON typnamespace = ns.oid WHERE typname = 'address' AND pg_type_is_visible(t.oid)
-- next: psycopg.register_composite_is_live
-- the composite psycopg2 registers must be the one the users table uses
SELECT t.oid = (SELECT atttypid FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'home') FROM pg_type t JOIN pg_namespace ns ON typnamespace = ns.oid WHERE typname = 'address' AND pg_type_is_visible(t.oid)
-- next: psycopg.register_composite_oid_matches_column
-- register_composite's typecaster is keyed by the oid 'address' resolves to;
-- it must be the type of the column the service reads
SELECT pg_typeof(home) = 'address'::regtype FROM users WHERE id = 1
-- next: psycopg.composite_read
SELECT home FROM users WHERE id = 1
-- next: psycopg.composite_insert
INSERT INTO users (email, name, home) VALUES ('co@heal7.test', 'co', ROW('3 Gangnam', 'Seoul', '06000')::address) RETURNING (home).street
-- next: psycopg.enum_oid_array
SELECT typname, typarray::regtype::text FROM pg_type WHERE oid = 'user_status'::regtype
-- next: psycopg.execute_values
INSERT INTO notifications (user_id, message) VALUES (1,'a'),(2,'b'),(3,'c') RETURNING id, user_id
-- next: psycopg.mogrify_like
SELECT id FROM users WHERE name LIKE 'b%%' OR name = 'alice' ORDER BY id
-- next: psycopg.server_side_pct
SELECT 'users %' AS label, count(*) FROM users
-- next: psycopg.named_cursor
-- family: cursor
DECLARE "c_1" CURSOR WITHOUT HOLD FOR SELECT id, name FROM users ORDER BY id
-- step
FETCH FORWARD 2 FROM "c_1"
-- step
FETCH FORWARD 2 FROM "c_1"
-- step
CLOSE "c_1"

-- ===== named cursors =============================================
-- next: cursor.declare_fetch_all
DECLARE cur CURSOR FOR SELECT name FROM users ORDER BY id;
FETCH ALL FROM cur;
CLOSE cur
-- next: cursor.called_users
DECLARE users CURSOR FOR SELECT id, name FROM users ORDER BY id
-- step
FETCH 2 FROM users
-- step
MOVE FORWARD 1 IN users
-- step
FETCH NEXT FROM users
-- step
CLOSE users
-- next: cursor.called_kasi_cache
DECLARE kasi_cache SCROLL CURSOR FOR SELECT key FROM kasi_cache ORDER BY key
-- step
FETCH LAST FROM kasi_cache
-- step
FETCH PRIOR FROM kasi_cache
-- step
FETCH ABSOLUTE 1 FROM kasi_cache
-- step
MOVE ABSOLUTE 0 FROM kasi_cache
-- step
FETCH RELATIVE 2 IN kasi_cache
-- step
CLOSE kasi_cache
-- next: cursor.scroll_backward
DECLARE c SCROLL CURSOR FOR SELECT id FROM dream_categories ORDER BY id
-- step
FETCH ALL FROM c
-- step
FETCH BACKWARD 2 FROM c
-- step
MOVE BACKWARD ALL FROM c
-- step
FETCH FORWARD 1 FROM c
-- next: cursor.with_hold
-- nowrap
DECLARE held CURSOR WITH HOLD FOR SELECT name FROM users ORDER BY id
-- step
FETCH 3 FROM held
-- step
CLOSE held
-- next: cursor.binary
DECLARE b BINARY CURSOR FOR SELECT count(*)::text FROM users
-- step
FETCH 1 FROM b
-- next: cursor.for_update_where_current
DECLARE cu CURSOR FOR SELECT id, name FROM users WHERE id = 2 FOR UPDATE
-- step
FETCH 1 FROM cu
-- step
UPDATE users SET name = 'current' WHERE CURRENT OF cu
-- step
SELECT name FROM users WHERE id = 2
-- next: cursor.close_all
DECLARE a1 CURSOR FOR SELECT * FROM kasi_cache;
DECLARE a2 CURSOR FOR SELECT * FROM users;
CLOSE ALL;
SELECT count(*) FROM pg_cursors
-- next: cursor.pg_cursors_statement
DECLARE notes CURSOR FOR SELECT message FROM notifications ORDER BY id;
SELECT name, is_holdable, is_scrollable FROM pg_cursors
-- next: cursor.fetch_missing
FETCH 1 FROM no_such_cursor
-- next: cursor.declare_join
DECLARE j NO SCROLL CURSOR FOR SELECT u.name, f.score FROM users u JOIN daily_fortunes f ON f.user_id = u.id ORDER BY f.id
-- step
FETCH 10 FROM j

-- ===== asyncpg ====================================================
-- next: asyncpg.introspect_types
SELECT t.typname, t.typtype, t.typcategory FROM pg_type t WHERE t.oid IN ('user_status'::regtype, 'address'::regtype, 'email_addr'::regtype) ORDER BY 1
-- next: asyncpg.introspect_composite_attrs
SELECT array_agg(ia.atttypid::regtype::text ORDER BY ia.attnum), array_agg(ia.attname::text ORDER BY ia.attnum) FROM pg_attribute ia WHERE ia.attrelid = 'address'::regclass AND ia.attnum > 0 AND NOT ia.attisdropped
-- next: asyncpg.introspect_enum
SELECT array_agg(enumlabel ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'user_status'::regtype
-- next: asyncpg.introspect_domain_base
SELECT typbasetype::regtype::text FROM pg_type WHERE oid = 'email_addr'::regtype
-- next: asyncpg.fetch_param
-- step extended
SELECT name FROM users WHERE id = 1
-- next: asyncpg.fetchval_count
-- step extended
SELECT count(*)::text FROM users WHERE status = 'active'
-- next: asyncpg.executemany_like
-- step extended
INSERT INTO kasi_cache (key, payload) VALUES ('2031-01-01', '{}') RETURNING key
-- next: asyncpg.copy_records
-- step copy-in
COPY daily_fortunes (user_id, day, score, summary) FROM STDIN (FORMAT csv)
-- data
4,2024-06-03,12,"meh"
-- step
SELECT user_id, day, score FROM daily_fortunes ORDER BY id
-- next: asyncpg.set_type_codec_lookup
SELECT t.oid = to_regtype('address') FROM pg_type t WHERE t.typname = 'address' AND t.typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
-- next: asyncpg.set_type_codec_public
-- set_type_codec('address') looks the type up in schema 'public' by default;
-- the codec must be for the type the users.home column really has
SELECT (SELECT t.oid FROM pg_catalog.pg_type t INNER JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace WHERE t.typname = 'address' AND ns.nspname = 'public') = pg_typeof(home)::oid FROM users WHERE id = 1
-- next: asyncpg.insert_enum_cast
INSERT INTO users (email, name, status) VALUES ('ac@heal7.test', 'ac', 'pending'::user_status) RETURNING id
-- next: asyncpg.where_enum_param_cast
-- step extended
SELECT name FROM users WHERE status = 'disabled'::user_status
-- next: asyncpg.reset_query
SELECT pg_advisory_unlock_all();
CLOSE ALL;
UNLISTEN *;
RESET ALL
-- next: asyncpg.listen_notify
LISTEN users;
NOTIFY users, 'changed';
SELECT 1
-- next: asyncpg.transaction_isolation
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM users

-- ===== sequences ==================================================
-- next: sequence.nextval
SELECT nextval('users_id_seq')
-- next: sequence.nextval_regclass
SELECT nextval('users_id_seq'::regclass)
-- next: sequence.nextval_quoted
SELECT nextval('"users_id_seq"')
-- next: sequence.nextval_each
SELECT nextval('attachments_id_seq'), nextval('audit_logs_id_seq'), nextval('notifications_id_seq'), nextval('saju_charts_id_seq'), nextval('daily_fortunes_id_seq'), nextval('dream_categories_id_seq'), nextval('dream_interpretations_id_seq')
-- next: sequence.currval_after_insert
INSERT INTO users (email, name) VALUES ('cv@heal7.test', 'cv'); SELECT currval('users_id_seq')
-- next: sequence.currval_separate_query
INSERT INTO users (email, name) VALUES ('cv2@heal7.test', 'cv2')
-- step
SELECT currval('users_id_seq')
-- next: sequence.lastval
INSERT INTO dream_categories (name) VALUES ('lv'); SELECT lastval()
-- next: sequence.currval_serial_seq
INSERT INTO notifications (user_id, message) VALUES (1, 'x'); SELECT currval(pg_get_serial_sequence('notifications', 'id'))
-- next: sequence.setval_serial
SELECT setval(pg_get_serial_sequence('"users"', 'id'), 100)
-- step
INSERT INTO users (email, name) VALUES ('sv@heal7.test', 'sv') RETURNING id
-- next: sequence.setval_plain
SELECT setval('dream_categories_id_seq', 50, false);
INSERT INTO dream_categories (name) VALUES ('after-setval') RETURNING id
-- next: sequence.select_from_seq
SELECT last_value, is_called FROM users_id_seq
-- next: sequence.select_from_identity_seq
SELECT last_value FROM attachments_id_seq
-- next: sequence.alter_sequence_restart
ALTER SEQUENCE users_id_seq RESTART WITH 200;
INSERT INTO users (email, name) VALUES ('rs@heal7.test', 'rs') RETURNING id
-- next: sequence.alter_identity_restart
ALTER TABLE attachments ALTER COLUMN id RESTART WITH 300;
INSERT INTO attachments (user_id, filename) VALUES (1, 'r') RETURNING id
-- next: sequence.insert_default_id
INSERT INTO audit_logs (user_id, action) VALUES (2, 'seq') RETURNING id
-- next: sequence.pg_sequences_view
SELECT sequencename, last_value FROM pg_sequences WHERE sequencename = 'users_id_seq'
-- next: sequence.pg_sequence_last_value
SELECT pg_sequence_last_value('users_id_seq')
-- next: sequence.serial_default_expr
SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'users'::regclass
-- next: sequence.create_sequence_bare
CREATE SEQUENCE order_no_seq START 10;
SELECT nextval('order_no_seq')
-- next: sequence.nextval_in_insert
INSERT INTO dream_categories (id, name) VALUES (nextval('dream_categories_id_seq'), 'explicit-nextval') RETURNING id

-- ===== regclass and name strings ==================================
-- next: regclass.cast_count
SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0
-- next: regclass.cast_text
SELECT 'users'::regclass::text
-- next: regclass.estimate
SELECT reltuples >= 0 FROM pg_class WHERE oid = 'kasi_cache'::regclass
-- next: regclass.is_live_table
SELECT (SELECT count(*) FROM pg_class WHERE oid = 'users'::regclass AND relhastriggers), pg_relation_size('users'::regclass) > 0
-- next: regclass.to_regclass
SELECT to_regclass('users')::text, to_regclass('no_such')::text
-- next: regclass.to_regclass_rows
SELECT c.reltuples::int FROM pg_class c WHERE c.oid = to_regclass('users')
-- next: regclass.to_regclass_all
SELECT to_regclass('attachments') IS NOT NULL, to_regclass('dream_interpretations') IS NOT NULL, to_regclass('kasi_cache') IS NOT NULL
-- next: regclass.obj_description
SELECT obj_description('users'::regclass, 'pg_class')
-- next: regclass.col_description
SELECT col_description('users'::regclass, 2)
-- next: regclass.has_table_privilege
SELECT has_table_privilege('users', 'SELECT'), has_table_privilege(current_user, 'kasi_cache', 'INSERT')
-- next: regclass.has_column_privilege
SELECT has_column_privilege('users', 'email', 'UPDATE')
-- next: regclass.has_sequence_privilege
SELECT has_sequence_privilege('users_id_seq', 'USAGE')
-- next: regclass.pg_total_relation_size
SELECT pg_total_relation_size('users') = pg_total_relation_size('users'::regclass)
-- next: regclass.row_count_via_stats
SELECT n_live_tup >= 0 FROM pg_stat_user_tables WHERE relid = 'users'::regclass
-- next: regclass.pg_indexes_def
SELECT indexname FROM pg_indexes WHERE tablename = 'users' ORDER BY 1
-- next: regclass.pg_tables_count
SELECT count(*) FROM pg_tables WHERE tablename = 'kasi_cache'
-- next: regclass.regproc
SELECT 'user_count'::regproc::text, 'touch_user(int)'::regprocedure::text
-- next: regclass.regtype
SELECT 'user_status'::regtype::text, 'address'::regtype::text, 'email_addr'::regtype::text
-- next: regclass.trigger_lookup
SELECT tgname FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal ORDER BY 1
-- next: regclass.quote_ident_format
SELECT format('SELECT count(*) FROM %I', 'users')
-- next: regclass.dynamic_sql_in_do
DO $$ DECLARE n bigint; BEGIN EXECUTE 'SELECT count(*) FROM users' INTO n; RAISE NOTICE '%', n; IF n <> 5 THEN RAISE EXCEPTION 'saw % users', n; END IF; END $$
-- next: regclass.pg_relation_filenode_same
SELECT pg_relation_filenode('users') = pg_relation_filenode('users'::regclass)
-- next: regclass.regclass_in_where
SELECT count(*) FROM pg_constraint WHERE conrelid = 'saju_charts'::regclass AND contype = 'f'
-- next: regclass.has_schema_privilege
SELECT has_schema_privilege('public', 'CREATE')
-- next: regclass.analyze_then_reltuples
ANALYZE users;
SELECT reltuples FROM pg_class WHERE oid = 'users'::regclass

-- ===== views and materialized views ==============================
-- next: regclass.tableoid_display
SELECT DISTINCT tableoid::regclass::text FROM users
-- next: regclass.oid_roundtrip
SELECT count(*) FROM users WHERE tableoid = 'users'::regclass
-- next: view.select
SELECT * FROM active_users ORDER BY id
-- next: view.count
SELECT count(*) FROM active_users
-- next: view.join_table
SELECT a.name, f.score FROM active_users a JOIN daily_fortunes f ON f.user_id = a.id ORDER BY f.id
-- next: view.insert_through
INSERT INTO active_users (email, name) VALUES ('v@heal7.test', 'via-view') RETURNING id;
SELECT count(*) FROM users
-- next: view.update_through
UPDATE active_users SET name = 'via-view' WHERE id = 1;
SELECT name FROM users WHERE id = 1
-- next: view.definition
SELECT pg_get_viewdef('active_users'::regclass)
-- next: view.create_or_replace
CREATE OR REPLACE VIEW active_users AS SELECT id, email, name FROM users WHERE status = 'active' AND notifications;
SELECT * FROM active_users ORDER BY id
-- next: view.create_new_over_table
CREATE VIEW pending_users AS SELECT id, name FROM users WHERE status = 'pending';
SELECT * FROM pending_users
-- next: matview.select
SELECT status, n FROM user_stats ORDER BY status
-- next: matview.refresh
INSERT INTO users (email, name) VALUES ('mv@heal7.test', 'mv');
REFRESH MATERIALIZED VIEW user_stats;
SELECT status, n FROM user_stats ORDER BY status
-- next: matview.refresh_concurrently
-- nowrap
REFRESH MATERIALIZED VIEW CONCURRENTLY user_stats
-- step
SELECT status, n FROM user_stats ORDER BY status
-- next: matview.refresh_with_no_data
REFRESH MATERIALIZED VIEW user_stats WITH NO DATA;
SELECT count(*) FROM pg_matviews WHERE matviewname = 'user_stats' AND ispopulated
-- next: matview.ispopulated
SELECT relispopulated FROM pg_class WHERE oid = 'user_stats'::regclass
-- next: matview.create_new
CREATE MATERIALIZED VIEW fortune_stats AS SELECT user_id, avg(score) FROM daily_fortunes GROUP BY user_id;
SELECT * FROM fortune_stats ORDER BY user_id

-- ===== functions, procedures, DO blocks ===========================
-- next: function.user_count
SELECT user_count()
-- next: function.user_count_from
SELECT * FROM user_count()
-- next: function.touch_user
SELECT touch_user(1);
SELECT version FROM users WHERE id = 1
-- next: function.touch_user_missing
SELECT touch_user(999)
-- next: function.perform_in_do
DO $$ BEGIN PERFORM touch_user(2); END $$;
SELECT id, version FROM users ORDER BY id
-- next: function.trigger_via_update
UPDATE users SET status = 'pending' WHERE id = 5;
SELECT user_id, action FROM audit_logs ORDER BY id
-- next: function.do_insert
DO $$ BEGIN INSERT INTO kasi_cache (key, payload) VALUES ('do', '{}'); END $$;
SELECT key FROM kasi_cache ORDER BY key
-- next: function.do_loop
DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM users LOOP UPDATE users SET version = version + 1 WHERE id = r.id; END LOOP; END $$;
SELECT sum(version) FROM users
-- next: function.do_raise_count
DO $$ BEGIN IF (SELECT count(*) FROM dream_categories) <> 3 THEN RAISE EXCEPTION 'wrong dream_categories'; END IF; END $$
-- next: function.create_new_sql
CREATE FUNCTION active_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM users WHERE status = ''active''';
SELECT active_count()
-- next: function.create_or_replace_user_count
CREATE OR REPLACE FUNCTION user_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM users';
SELECT user_count()
-- next: function.procedure_call
CREATE PROCEDURE bump(uid int) LANGUAGE sql AS 'UPDATE users SET version = version + 100 WHERE id = uid';
CALL bump(3);
SELECT version FROM users WHERE id = 3
-- next: function.pg_get_functiondef
SELECT pg_get_function_result('user_count'::regproc), pg_get_function_arguments('touch_user'::regproc)
-- next: function.proc_lookup
SELECT proname, prorettype::regtype::text FROM pg_proc WHERE proname IN ('user_count', 'touch_user') AND pg_function_is_visible(oid) ORDER BY 1
-- next: function.sql_standard_body
CREATE FUNCTION first_name() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT name FROM users WHERE id = 1; END;
SELECT first_name()
-- next: function.set_returning
CREATE FUNCTION users_of(s user_status) RETURNS SETOF users LANGUAGE sql AS 'SELECT * FROM users WHERE status = s ORDER BY id';
SELECT id, name FROM users_of('active')

-- ===== types ======================================================
-- next: type.enum_literal
SELECT 'pending'::user_status
-- next: type.enum_range
SELECT enum_range(NULL::user_status)
-- next: type.enum_compare_cast
SELECT count(*) FROM users WHERE status > 'active'::user_status
-- next: type.enum_bad_label
SELECT 'banned'::user_status
-- next: type.add_value
ALTER TYPE user_status ADD VALUE 'banned'
-- next: type.add_value_then_range
-- nowrap
ALTER TYPE user_status ADD VALUE IF NOT EXISTS 'banned' AFTER 'pending'
-- step
SELECT enum_range(NULL::user_status)
-- step
UPDATE users SET status = 'banned' WHERE id = 4 RETURNING id, status
-- next: type.rename_value
ALTER TYPE user_status RENAME VALUE 'disabled' TO 'deactivated';
SELECT DISTINCT status FROM users ORDER BY 1
-- next: type.composite_literal
SELECT ROW('a', 'b', 'c')::address
-- next: type.composite_field_access
SELECT (ROW('a', 'Seoul', 'c')::address).city
-- next: type.domain_cast_ok
SELECT 'x@y'::email_addr
-- next: type.domain_cast_bad
SELECT 'xy'::email_addr
-- next: type.array_of_enum
SELECT ARRAY['active', 'pending']::user_status[]
-- next: type.pg_typeof
SELECT pg_typeof(status)::text, pg_typeof(home)::text, pg_typeof(email)::text FROM users WHERE id = 1
-- next: type.create_table_using_type
CREATE TABLE status_history (id int, s user_status, a address);
INSERT INTO status_history VALUES (1, 'active', ROW('s', 'c', 'z'));
INSERT INTO users (email, name, status) SELECT 'sh@heal7.test', 'sh', s FROM status_history
-- next: type.cast_to_stale_safe
SELECT status::text FROM users WHERE status = ANY ('{active,pending}'::user_status[]) ORDER BY id
-- next: type.comment_on_type
COMMENT ON TYPE user_status IS 'member status';
SELECT obj_description('user_status'::regtype, 'pg_type')
-- next: type.alter_domain
ALTER DOMAIN email_addr ADD CONSTRAINT email_len CHECK (length(VALUE) < 100)

-- ===== temp tables (a session's own objects shadow the live ones) ===
-- next: temp.users_shadow
CREATE TEMP TABLE users (id int, name text)
-- step
INSERT INTO users VALUES (1, 'temp-one'), (2, 'temp-two')
-- step
SELECT * FROM users ORDER BY id
-- step
DELETE FROM users WHERE id = 1
-- step
SELECT * FROM users ORDER BY id
-- step
DROP TABLE users
-- step
SELECT count(*) FROM users
-- next: temp.users_shadow_update
CREATE TEMPORARY TABLE users (id int, name text);
INSERT INTO users VALUES (1, 't');
UPDATE users SET name = 'tt' WHERE id = 1;
SELECT * FROM users
-- next: temp.kasi_cache_as
CREATE TEMP TABLE kasi_cache AS SELECT key, hits FROM kasi_cache WHERE hits > 0
-- step
SELECT * FROM kasi_cache ORDER BY key
-- step
TRUNCATE kasi_cache
-- step
SELECT count(*) FROM kasi_cache
-- step
DROP TABLE kasi_cache
-- step
SELECT count(*) FROM kasi_cache
-- next: temp.select_into_temp
SELECT id, name INTO TEMP active_copy FROM users WHERE status = 'active'
-- step
SELECT * FROM active_copy ORDER BY id
-- next: temp.select_into_temp_named_like_mapped
SELECT id, message INTO TEMP TABLE notifications FROM notifications WHERE NOT read
-- step
SELECT * FROM notifications ORDER BY id
-- step
INSERT INTO notifications VALUES (99, 'temp')
-- step
SELECT count(*) FROM notifications
-- next: temp.on_commit_drop
CREATE TEMP TABLE saju_charts (id int) ON COMMIT DROP;
INSERT INTO saju_charts VALUES (7);
SELECT * FROM saju_charts
-- next: temp.on_commit_drop_then_commit
-- nowrap
BEGIN;
CREATE TEMP TABLE saju_charts (id int) ON COMMIT DROP;
INSERT INTO saju_charts VALUES (7);
COMMIT
-- step
SELECT id, birth FROM saju_charts ORDER BY id
-- next: temp.on_commit_delete_rows
-- nowrap
CREATE TEMP TABLE dream_categories (id int, name text) ON COMMIT DELETE ROWS
-- step
INSERT INTO dream_categories VALUES (1, 'temp')
-- step
SELECT count(*) FROM dream_categories
-- step
BEGIN; INSERT INTO dream_categories VALUES (2, 'in-tx'); SELECT * FROM dream_categories; COMMIT
-- step
DROP TABLE dream_categories
-- step
SELECT count(*) FROM dream_categories
-- next: temp.rollback_of_creation
-- nowrap
BEGIN
-- step
CREATE TEMP TABLE users (id int, name text)
-- step
INSERT INTO users VALUES (1, 'temp')
-- step
ROLLBACK
-- step
SELECT name FROM users WHERE id = 1
-- step
INSERT INTO users (email, name) VALUES ('after-rb@heal7.test', 'after-rollback') RETURNING name
-- next: temp.like_live
CREATE TEMP TABLE users (LIKE users INCLUDING DEFAULTS)
-- step
SELECT count(*) FROM users
-- next: temp.pg_temp_explicit
CREATE TEMP TABLE attachments (id int);
INSERT INTO pg_temp.attachments VALUES (1);
SELECT count(*) FROM attachments
-- next: temp.temp_view
CREATE TEMP VIEW users AS SELECT 1 AS id, 'temp-view' AS name;
SELECT * FROM users
-- next: temp.temp_table_then_join
CREATE TEMP TABLE ids (id int);
INSERT INTO ids VALUES (1), (3);
SELECT u.name FROM users u JOIN ids USING (id) ORDER BY 1
-- next: temp.temp_sequence
CREATE TEMP SEQUENCE users_id_seq START 500;
SELECT nextval('users_id_seq')
-- next: temp.drop_temp_then_live
CREATE TEMP TABLE audit_logs (id int);
DROP TABLE audit_logs;
SELECT count(*) FROM audit_logs
-- next: temp.discard_temp
-- nowrap
CREATE TEMP TABLE users (id int)
-- step
DISCARD TEMP
-- step
SELECT count(*) FROM users

-- ===== explicit public. spellings (legacy code naming public means the live table)
-- next: public.select
SELECT name FROM public.users ORDER BY id
-- next: public.quoted
SELECT name FROM "public"."users" WHERE id = 1
-- next: public.count_each
SELECT (SELECT count(*) FROM public.kasi_cache), (SELECT count(*) FROM public.dream_categories), (SELECT count(*) FROM public.attachments)
-- next: public.insert
INSERT INTO public.users (email, name) VALUES ('pub@heal7.test', 'pub') RETURNING id
-- next: public.update
UPDATE public.users SET name = 'pub' WHERE id = 1;
SELECT name FROM users WHERE id = 1
-- next: public.delete
DELETE FROM public.notifications WHERE read;
SELECT count(*) FROM notifications
-- next: public.join_mixed
SELECT u.name, a.filename FROM public.users u JOIN attachments a ON a.user_id = u.id ORDER BY a.id
-- next: public.column_ref
SELECT public.users.name FROM public.users WHERE public.users.id = 2
-- next: public.regclass
SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.users'::regclass AND attnum > 0
-- next: public.nextval
SELECT nextval('public.users_id_seq')
-- Strings PostgreSQL reads as relation names: a listed name gets its
-- schema, an unlisted one (an owned sequence) loses `public.` and is found
-- through the search_path like the bare spelling.
-- next: public.currval_after_nextval
SELECT nextval('public.users_id_seq'); SELECT currval('public.users_id_seq')
-- next: public.currval_separate_query
SELECT nextval('PUBLIC.users_id_seq')
-- step
SELECT currval('"public".users_id_seq'), currval('users_id_seq')
-- next: public.setval
SELECT setval('public.users_id_seq', 50);
SELECT nextval('users_id_seq')
-- next: public.setval_serial_sequence
SELECT setval(pg_get_serial_sequence('public.users', 'id'), 77);
INSERT INTO users (email, name) VALUES ('ser@heal7.test', 'ser') RETURNING id
-- next: public.serial_sequence_text
SELECT pg_get_serial_sequence('public.users', 'id')::regclass::text, pg_get_serial_sequence('public.dream_categories', 'id')::regclass::text
-- next: public.to_regclass
SELECT to_regclass('public.users')::text, to_regclass('public.users_id_seq')::text, to_regclass('public.no_such')::text
-- next: public.regclass_sequence_text
SELECT 'public.users_id_seq'::regclass::text, CAST('public.saju_charts_id_seq' AS regclass)::text
-- next: public.regclass_is_live
SELECT 'public.users'::regclass = 'users'::regclass, regclass 'public.saju_charts' = 'saju_charts'::regclass, obj_description('public.users'::regclass, 'pg_class')
-- next: public.has_table_privilege
SELECT has_table_privilege('public.users', 'SELECT'), has_table_privilege(current_user, 'public.kasi_cache', 'INSERT'), has_sequence_privilege('public.users_id_seq', 'USAGE')
-- next: public.nextval_default
ALTER TABLE dream_categories ALTER COLUMN id SET DEFAULT nextval('public.dream_categories_id_seq');
INSERT INTO dream_categories (name) VALUES ('default-public') RETURNING id
-- next: public.nextval_text_cast
SELECT nextval(('public.users_id_seq'::text)::regclass), nextval('public.users_id_seq'::text)
-- next: public.regtype_string
SELECT 'public.user_status'::regtype::text, to_regtype('public.address')::text
-- next: public.function
SELECT public.user_count()
-- next: public.type_cast
SELECT 'active'::public.user_status
-- next: public.view
SELECT count(*) FROM public.active_users
-- next: public.truncate
TRUNCATE public.kasi_cache;
SELECT count(*) FROM kasi_cache
-- next: public.copy_to
-- step copy-out
COPY public.dream_categories (id, name) TO STDOUT

-- ===== DDL ========================================================
-- next: ddl.create_index
CREATE INDEX users_name_idx ON users (name);
SELECT indexname FROM pg_indexes WHERE tablename = 'users' AND indexname = 'users_name_idx'
-- next: ddl.create_index_on_only
CREATE INDEX users_status_idx ON ONLY users (status);
SELECT count(*) FROM pg_index WHERE indrelid = 'users'::regclass
-- next: ddl.create_index_if_not_exists_existing
CREATE INDEX IF NOT EXISTS users_created_idx ON users (created_at)
-- next: ddl.create_unique_index_violates
INSERT INTO kasi_cache (key, payload, hits) VALUES ('dup1', '{}', 3);
CREATE UNIQUE INDEX kasi_hits_uq ON kasi_cache (hits)
-- next: ddl.drop_index
DROP INDEX users_created_idx;
SELECT count(*) FROM pg_index WHERE indrelid = 'users'::regclass
-- next: ddl.drop_index_if_exists
DROP INDEX IF EXISTS dream_interpretations_keyword_idx
-- next: ddl.alter_index_rename
ALTER INDEX users_created_idx RENAME TO users_created_at_idx
-- next: ddl.reindex_table
REINDEX TABLE users
-- next: ddl.reindex_index
REINDEX INDEX users_created_idx
-- next: ddl.cluster
CLUSTER users USING users_created_idx
-- next: ddl.comment_table
COMMENT ON TABLE users IS 'members v2';
SELECT obj_description('users'::regclass, 'pg_class')
-- next: ddl.comment_column
COMMENT ON COLUMN users.name IS 'display name';
SELECT col_description('users'::regclass, 3)
-- next: ddl.comment_constraint
COMMENT ON CONSTRAINT users_email_key ON users IS 'one account per e-mail'
-- next: ddl.comment_trigger
COMMENT ON TRIGGER users_status_audit ON users IS 'audits status changes'
-- next: ddl.comment_index
COMMENT ON INDEX users_created_idx IS 'for recent signups'
-- next: ddl.comment_sequence
COMMENT ON SEQUENCE users_id_seq IS 'ids'
-- next: ddl.create_rule
CREATE RULE notifications_no_delete AS ON DELETE TO notifications DO INSTEAD NOTHING;
DELETE FROM notifications;
SELECT count(*) FROM notifications
-- next: ddl.alter_table_add_column
ALTER TABLE users ADD COLUMN nickname text;
SELECT count(*) FROM users WHERE nickname IS NULL
-- next: ddl.alter_table_add_column_returning_star
ALTER TABLE kasi_cache ADD COLUMN ttl int DEFAULT 60;
SELECT * FROM kasi_cache ORDER BY key LIMIT 1
-- next: ddl.alter_table_rename_column
ALTER TABLE dream_interpretations RENAME COLUMN luck TO fortune;
SELECT fortune FROM dream_interpretations ORDER BY id
-- next: ddl.alter_table_add_constraint
ALTER TABLE daily_fortunes ADD CONSTRAINT score_range CHECK (score BETWEEN 0 AND 100);
INSERT INTO daily_fortunes (user_id, day, score) VALUES (5, '2024-07-01', 101)
-- next: ddl.alter_table_drop_constraint
ALTER TABLE users DROP CONSTRAINT users_email_key;
INSERT INTO users (email, name) VALUES ('eve@heal7.test', 'eve2') RETURNING name
-- next: ddl.alter_table_set_not_null
ALTER TABLE attachments ALTER COLUMN size_bytes SET NOT NULL
-- next: ddl.disable_trigger
ALTER TABLE users DISABLE TRIGGER users_status_audit;
UPDATE users SET status = 'active' WHERE id = 3;
SELECT count(*) FROM audit_logs
-- next: ddl.drop_trigger
DROP TRIGGER users_status_audit ON users
-- next: ddl.create_trigger
CREATE FUNCTION kasi_hit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.hits := NEW.hits + 1; RETURN NEW; END $$;
CREATE TRIGGER kasi_hit BEFORE UPDATE ON kasi_cache FOR EACH ROW EXECUTE FUNCTION kasi_hit();
UPDATE kasi_cache SET payload = payload WHERE key = '2024-03-05' RETURNING hits
-- next: ddl.create_table_fk
CREATE TABLE user_notes (id serial PRIMARY KEY, user_id int REFERENCES users (id), note text);
INSERT INTO user_notes (user_id, note) VALUES (5, 'n') RETURNING id, user_id
-- next: ddl.create_table_fk_violation
CREATE TABLE user_notes (id serial PRIMARY KEY, user_id int REFERENCES users (id), note text);
INSERT INTO user_notes (user_id, note) VALUES (4, 'n')
-- next: ddl.create_table_if_not_exists_users
-- what a legacy service runs at start-up
CREATE TABLE IF NOT EXISTS users (id serial PRIMARY KEY, email text, name text);
SELECT count(*) FROM users
-- next: ddl.add_column_if_not_exists
ALTER TABLE users ADD COLUMN IF NOT EXISTS phone text;
SELECT count(*) FROM users WHERE phone IS NULL
-- next: ddl.create_index_if_not_exists_new
CREATE INDEX IF NOT EXISTS users_lower_name_idx ON users (lower(name));
SELECT count(*) FROM pg_indexes WHERE indexname = 'users_lower_name_idx'
-- next: ddl.create_table_like
CREATE TABLE users_archive (LIKE users INCLUDING ALL);
INSERT INTO users_archive SELECT * FROM users;
SELECT count(*), max(name) FROM users_archive
-- next: ddl.create_table_as
CREATE TABLE fortune_copy AS SELECT * FROM daily_fortunes WHERE score > 50;
SELECT count(*) FROM fortune_copy
-- next: ddl.create_table_inherits
CREATE TABLE vip_users () INHERITS (users);
SELECT count(*) FROM users
-- next: ddl.analyze
ANALYZE users
-- next: ddl.vacuum
-- nowrap
VACUUM (ANALYZE) kasi_cache
-- next: ddl.grant
GRANT SELECT ON users TO PUBLIC;
SELECT has_table_privilege('public', 'users', 'SELECT')
-- next: ddl.revoke
REVOKE ALL ON kasi_cache FROM PUBLIC
-- next: ddl.alter_owner
ALTER TABLE dream_categories OWNER TO CURRENT_USER
-- next: ddl.drop_table
DROP TABLE dream_interpretations;
SELECT to_regclass('dream_interpretations') IS NULL
-- next: ddl.drop_table_cascade
DROP TABLE users CASCADE;
SELECT count(*) FROM attachments
-- next: ddl.drop_view
DROP VIEW active_users;
SELECT to_regclass('active_users') IS NULL
-- next: ddl.drop_function
DROP FUNCTION user_count();
SELECT count(*) FROM pg_proc WHERE proname = 'user_count' AND pg_function_is_visible(oid)
-- next: ddl.alter_table_rename
ALTER TABLE kasi_cache RENAME TO kasi_cache_old;
SELECT count(*) FROM kasi_cache_old
-- next: ddl.statistics
CREATE STATISTICS fortune_stats_x (dependencies) ON user_id, day FROM daily_fortunes
-- next: ddl.security_label_like_policy
ALTER TABLE notifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON notifications USING (user_id = 1);
SELECT count(*) FROM notifications

-- ===== standard_conforming_strings = off ==========================
-- next: scs.escaped_quote_literal
SET standard_conforming_strings = off
-- step
SELECT 'You\'ve been removed from users list' AS msg
-- next: scs.escaped_quote_then_table
SET standard_conforming_strings = off
-- step
SELECT 'You\'ve been removed from users list', count(*) FROM users
-- next: scs.insert_message
SET standard_conforming_strings = off
-- step
INSERT INTO notifications (user_id, message) VALUES (1, 'You\'ve been removed from users list') RETURNING message
-- next: scs.literal_mentions_table_after_from
SET standard_conforming_strings = off
-- step
SELECT 'it\'s from users', name FROM users WHERE id = 1
-- next: scs.backslash_n
SET standard_conforming_strings = off
-- step
SELECT length('a\nb'), count(*) FROM kasi_cache
-- next: scs.update_where_literal
SET standard_conforming_strings = off
-- step
UPDATE users SET name = 'O\'Brien from kasi_cache' WHERE id = 2 RETURNING name
-- next: scs.same_query_set
SET standard_conforming_strings = off; SELECT 'x\'; DELETE FROM users; --' AS s, count(*) FROM users
-- next: scs.estring_default
SELECT E'You\'ve been removed from users list', count(*) FROM users
-- next: scs.on_backslash_plain
SELECT 'C:\path\users' AS p, count(*) FROM users
-- next: scs.off_then_on
SET standard_conforming_strings = off
-- step
SET standard_conforming_strings = on
-- step
SELECT 'a\' AS s, count(*) FROM users
-- next: scs.set_local
-- the whole Query is lexed before SET LOCAL runs: an error on both sides
SET LOCAL standard_conforming_strings = off;
SELECT 'it\'s in users' AS s, count(*) FROM users
-- next: scs.pgoptions_like_set_config
SELECT set_config('standard_conforming_strings', 'off', false)
-- step
SELECT 'don\'t touch users', (SELECT count(*) FROM users)

-- ===== lexical edge cases =========================================
-- next: lexical.from_quoted_no_space
SELECT count(*) FROM"users"
-- next: lexical.from_quoted_no_space_where
SELECT name FROM"users"WHERE id=1
-- next: lexical.join_no_space
SELECT count(*) FROM"users"JOIN"attachments"ON"attachments".user_id="users".id
-- next: lexical.is_distinct_from_column
SELECT id FROM users WHERE false IS DISTINCT FROM notifications ORDER BY id
-- next: lexical.is_not_distinct_from_column
SELECT id FROM users WHERE true IS NOT DISTINCT FROM notifications ORDER BY id
-- next: lexical.extract_from
SELECT EXTRACT(year FROM created_at) FROM users WHERE id = 1
-- next: lexical.substring_from
SELECT substring(name FROM 1 FOR 3) FROM users ORDER BY id
-- next: lexical.trim_from
SELECT trim(BOTH 'a' FROM name) FROM users WHERE id = 1
-- next: lexical.overlay_from
SELECT overlay(name PLACING 'X' FROM 1 FOR 1) FROM users WHERE id = 1
-- next: lexical.position_in
SELECT position('a' IN name) FROM users ORDER BY id
-- next: lexical.distinct_from_in_update
UPDATE users SET notifications = NOT notifications WHERE notifications IS DISTINCT FROM false RETURNING id
-- next: lexical.column_named_like_table
SELECT notifications FROM users ORDER BY id
-- next: lexical.column_named_like_table_qualified
SELECT users.notifications, n.message FROM users JOIN notifications n ON n.user_id = users.id ORDER BY n.id
-- next: lexical.block_comment
SELECT /* FROM users */ count(*) FROM kasi_cache
-- next: lexical.nested_comment
SELECT /* outer /* FROM users */ still comment */ count(*) FROM users
-- next: lexical.line_comment_inline
SELECT count(*) -- FROM kasi_cache
FROM users
-- next: lexical.dollar_quote_literal
SELECT $$FROM users$$, count(*) FROM users
-- next: lexical.tagged_dollar
SELECT $x$ it's from users $x$, (SELECT count(*) FROM attachments)
-- next: lexical.string_with_from
SELECT 'FROM users' AS s FROM users WHERE id = 1
-- next: lexical.unicode_ident
SELECT count(*) FROM U&"\0075sers"
-- next: lexical.unicode_ident_escape
SELECT count(*) FROM U&"!0075sers" UESCAPE '!'
-- next: lexical.newlines_tabs
SELECT
	count(*)
FROM
	users
WHERE
	id > 0
-- next: lexical.semicolon_in_string
SELECT ';' AS s, count(*) FROM users; SELECT count(*) FROM kasi_cache
-- next: lexical.trailing_semicolons
SELECT count(*) FROM users;;
-- next: lexical.parenthesised_from
SELECT count(*) FROM (users CROSS JOIN kasi_cache)
-- next: lexical.nested_parens_join
SELECT count(*) FROM ((users u JOIN attachments a ON a.user_id = u.id))
-- next: lexical.keyword_table_alias
SELECT "from".name FROM users AS "from" WHERE "from".id = 1
-- next: lexical.alias_named_like_table
SELECT kasi_cache.name FROM users AS kasi_cache WHERE kasi_cache.id = 1
-- next: lexical.function_named_like_table
SELECT count(*) FROM users WHERE users.id = ANY (SELECT user_id FROM attachments)
-- next: lexical.cast_operator_after_name
SELECT (SELECT count(*) FROM users)::text
-- next: lexical.row_constructor_table
SELECT users FROM users WHERE id = 2
-- next: lexical.whole_row_func
SELECT row_to_json(u)::text FROM users u WHERE id = 1
-- next: lexical.whole_row_by_table_name
SELECT row_to_json(users)::text FROM users WHERE id = 2
-- next: lexical.escape_string_const
SELECT e'from\tusers', count(*) FROM users
-- next: lexical.bit_string
SELECT B'101', count(*) FROM users
-- next: lexical.positional_param_text
SELECT '$1 FROM users' AS s
-- next: lexical.uppercase_quoted_not_same
-- "Users" is not users: 42P01 on both sides
SELECT count(*) FROM "Users"
-- next: lexical.fetch_from_users_cursor_like
SELECT 'FETCH 1 FROM users' AS s
-- next: lexical.interval_from
SELECT now() - interval '1 day' > created_at FROM users WHERE id = 1
-- next: lexical.window_named
SELECT id, sum(score) OVER w FROM daily_fortunes WINDOW w AS (ORDER BY id) ORDER BY id
-- next: lexical.values_from_subselect
SELECT * FROM (VALUES ((SELECT count(*) FROM users))) v(n)
-- next: lexical.delete_from_with_alias_as_table
DELETE FROM attachments AS users WHERE users.id = 1 RETURNING users.filename

-- ===== objects created without a schema (must land where they did before: public)
-- next: unqualified.create_table_lands_public
CREATE TABLE new_thing (id serial PRIMARY KEY, label text);
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'new_thing'
-- next: unqualified.create_then_use
CREATE TABLE new_thing (id serial PRIMARY KEY, label text)
-- step
INSERT INTO new_thing (label) VALUES ('one'), ('two') RETURNING id
-- step
SELECT * FROM new_thing ORDER BY id
-- step
UPDATE new_thing SET label = 'uno' WHERE id = 1
-- step
DELETE FROM new_thing WHERE id = 2
-- step
SELECT * FROM new_thing ORDER BY id
-- next: unqualified.create_then_join_live
CREATE TABLE new_thing (user_id int, label text);
INSERT INTO new_thing VALUES (1, 'first'), (3, 'third');
SELECT u.name, t.label FROM users u JOIN new_thing t ON t.user_id = u.id ORDER BY 1
-- next: unqualified.create_committed_then_new_session
-- nowrap
CREATE TABLE new_thing (id int, label text)
-- step
INSERT INTO new_thing VALUES (1, 'x')
-- step
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'new_thing'
-- next: unqualified.create_sequence
CREATE SEQUENCE ticket_seq;
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'ticket_seq'
-- next: unqualified.create_view
CREATE VIEW recent_users AS SELECT id, name FROM users WHERE id > 3;
SELECT (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace) FROM pg_class c WHERE relname = 'recent_users';
SELECT * FROM recent_users ORDER BY id
-- next: unqualified.create_function
CREATE FUNCTION double_it(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2';
SELECT pronamespace::regnamespace::text FROM pg_proc WHERE proname = 'double_it';
SELECT double_it(21)
-- next: unqualified.create_type
CREATE TYPE mood AS ENUM ('happy', 'sad');
SELECT typnamespace::regnamespace::text FROM pg_type WHERE typname = 'mood'
-- next: unqualified.create_index_on_new
CREATE TABLE new_thing (id int);
CREATE INDEX new_thing_idx ON new_thing (id);
SELECT schemaname FROM pg_indexes WHERE indexname = 'new_thing_idx'
-- next: unqualified.create_temp_visible
CREATE TABLE new_thing (id int);
SELECT count(*) FROM pg_tables WHERE tablename = 'new_thing' AND schemaname = current_schema()
-- next: unqualified.current_schemas
SELECT current_schemas(false)
-- next: unqualified.search_path_show
SHOW search_path
-- next: unqualified.set_search_path_public
SET search_path = public;
SELECT count(*) FROM users
-- next: unqualified.set_search_path_then_create
SET search_path TO public;
CREATE TABLE new_thing (id int);
SELECT relnamespace::regnamespace::text FROM pg_class WHERE relname = 'new_thing'

-- ===== strings read as names: bare mapped names ======================
-- A bare mapped name inside such a string gets its schema, so the lookup
-- never reaches the stale copy (also after the moved object is dropped).
-- next: namestring.regproc_after_drop
DROP FUNCTION user_count();
SELECT to_regproc('user_count') IS NULL, to_regprocedure('user_count()') IS NULL
-- next: namestring.regprocedure_text
SELECT 'user_count()'::regprocedure::text, 'touch_user'::regproc::text
-- next: namestring.regtype_after_drop
DROP TABLE users CASCADE;
DROP TYPE address;
SELECT to_regtype('address') IS NULL
-- next: namestring.regclass_after_drop_quoted
DROP TABLE kasi_cache;
SELECT to_regclass('"kasi_cache"') IS NULL, to_regclass(' KASI_CACHE ') IS NULL
-- next: namestring.privilege_after_drop
DROP TABLE notifications;
SELECT has_table_privilege('notifications', 'SELECT')
-- next: namestring.size_after_drop
DROP TABLE audit_logs;
SELECT pg_relation_size('audit_logs')
-- next: namestring.set_search_path_then_regclass
-- (the map stays authoritative; regclass text output would show the schema)
SET search_path = public;
SELECT obj_description('users'::regclass, 'pg_class')
-- next: namestring.temp_shadows_string
CREATE TEMP TABLE kasi_cache (k int);
SELECT to_regclass('kasi_cache')::text, pg_relation_size('kasi_cache')

-- ===== catalog listings (SQLAlchemy, Django, psql, migration tools) ==
-- The catalogs read as before the move: the moved objects in public, their
-- stale copies left out.
-- next: catalog.info_schema_tables_all
SELECT table_name, table_type FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'fid_probe') ORDER BY 1
-- next: catalog.info_schema_columns_all
SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns AS c WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema', 'fid_probe') ORDER BY 1, 2
-- next: catalog.info_schema_views
SELECT table_name FROM information_schema.views WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
-- next: catalog.info_schema_key_columns
SELECT kcu.table_name, kcu.column_name, tc.constraint_type FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name WHERE tc.table_schema NOT IN ('pg_catalog', 'fid_probe') ORDER BY 1, 2, 3
-- next: catalog.info_schema_sequences
SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema <> 'fid_probe' ORDER BY 1
-- next: catalog.info_schema_routines
SELECT routine_name FROM information_schema.routines WHERE routine_schema NOT IN ('pg_catalog', 'information_schema', 'fid_probe') ORDER BY 1
-- next: catalog.info_schema_triggers
SELECT trigger_name, event_object_table FROM information_schema.triggers WHERE event_object_schema <> 'fid_probe' ORDER BY 1, 2
-- next: catalog.pg_tables_all
SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'fid_probe') ORDER BY 1
-- next: catalog.pg_views_matviews
SELECT v.viewname FROM pg_views v WHERE v.schemaname NOT IN ('pg_catalog', 'information_schema') UNION ALL SELECT matviewname FROM pg_matviews ORDER BY 1
-- next: catalog.pg_indexes_all
SELECT tablename, indexname FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'fid_probe') ORDER BY 1, 2
-- next: catalog.pg_sequences_all
SELECT sequencename, last_value FROM pg_sequences WHERE schemaname <> 'fid_probe' ORDER BY 1
-- next: catalog.pg_proc_by_name
SELECT p.proname, p.pronargs FROM pg_catalog.pg_proc p WHERE p.proname IN ('user_count', 'touch_user', 'users_audit') ORDER BY 1
-- next: catalog.pg_proc_psql_df
-- psql's \df user_count
SELECT p.proname, pg_catalog.pg_get_function_result(p.oid) FROM pg_catalog.pg_proc p LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.proname OPERATOR(pg_catalog.~) '^(user_count)$' COLLATE pg_catalog.default AND pg_catalog.pg_function_is_visible(p.oid) ORDER BY 1
-- next: catalog.extended_listing
-- step extended
SELECT table_name::text FROM information_schema.tables WHERE table_name = 'saju_charts'
-- next: catalog.schema_columns_shown
SELECT table_schema, table_name FROM information_schema.tables WHERE table_name IN ('users', 'kasi_cache', 'active_users') ORDER BY 2
-- next: catalog.schema_columns_of_constraints
SELECT constraint_schema, table_schema, table_name, constraint_name FROM information_schema.table_constraints WHERE table_name IN ('users', 'saju_charts') AND constraint_type <> 'CHECK' ORDER BY 3, 4
-- next: catalog.key_column_usage_schemas
SELECT constraint_schema, table_schema, table_name, column_name FROM information_schema.key_column_usage WHERE table_name = 'attachments' ORDER BY 4
-- next: catalog.sequence_schemas
SELECT sequence_schema, sequence_name FROM information_schema.sequences WHERE sequence_name LIKE 'users%' OR sequence_name LIKE 'attachments%' ORDER BY 2
-- next: catalog.pg_views_schema
SELECT schemaname, viewname FROM pg_views WHERE viewname = 'active_users' UNION ALL SELECT schemaname, matviewname FROM pg_matviews ORDER BY 2
-- next: catalog.pg_indexes_schema
SELECT schemaname, indexname FROM pg_indexes WHERE tablename = 'users' ORDER BY 2
-- next: catalog.pg_sequences_schema
SELECT schemaname, sequencename FROM pg_sequences WHERE sequencename LIKE 'users%' ORDER BY 2
-- next: catalog.routines_schema
SELECT specific_schema, routine_schema, routine_name FROM information_schema.routines WHERE routine_name IN ('user_count', 'touch_user') ORDER BY 3
-- next: catalog.pg_class_by_name_without_visibility
-- a base catalog filtered by name only: one row per object, in public
SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN ('users', 'users_pkey', 'users_id_seq', 'users_email_key', 'active_users', 'user_stats', 'address', 'kasi_cache') ORDER BY 2
-- next: catalog.pg_class_of_public
-- SQLAlchemy's get_table_names(schema='public')
SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1
-- next: catalog.pg_type_by_name
SELECT n.nspname, t.typname, t.typtype FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.typname IN ('user_status', '_user_status', 'address', '_address', 'email_addr', 'users', '_users', 'active_users') ORDER BY 2
-- next: catalog.pg_type_counts
SELECT count(*) FROM pg_type t WHERE t.typname LIKE '%user%'
-- next: catalog.pg_proc_with_schema
SELECT n.nspname, p.proname FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.proname IN ('user_count', 'touch_user', 'users_audit') ORDER BY 2
-- next: catalog.pg_class_star
-- every column, in the catalog's order
SELECT s.relname, s.relkind, s.relnatts, s.relhasindex FROM (SELECT * FROM pg_class c WHERE c.relname = 'users') AS s
-- next: catalog.rails_tables_on_path
-- (also an array expression: current_schemas(b) is not read as a set)
SELECT c.relname FROM pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false)) AND c.relname LIKE '%user%' ORDER BY 1
-- next: catalog.psql_describe_lookup
-- psql's \d users
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(users)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3

-- ===== the search_path shown (client_search_path) ==================
-- next: searchpath.current_schema_bare_keyword
SELECT current_schema, pg_catalog.current_schema() AS s
-- next: searchpath.in_a_catalog_filter_of_creations
CREATE TABLE new_thing (id int);
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relname = 'new_thing'
-- next: searchpath.own_set_answers_itself
SET search_path = pg_catalog, public;
SELECT current_schema(), current_schemas(true)
-- next: searchpath.own_set_then_reset
SET search_path = pg_catalog;
RESET search_path;
SELECT current_schema()
-- next: searchpath.pgbench_finds_its_table
-- pgbench and Rails find tables on the path with current_schemas(): the
-- catalogs show the moved tables in public, on the client's old path
SELECT o.n IS NOT NULL FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON (n.oid = c.relnamespace) CROSS JOIN LATERAL (SELECT pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname)) AS o(n) WHERE c.relname = 'users' AND o.n IS NOT NULL ORDER BY o.n LIMIT 1
-- next: searchpath.listing_of_current_schema
-- The listings show the moved tables in public, the schema
-- current_schema() names.
SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1
-- next: searchpath.current_schemas_with_a_temp_schema
CREATE TEMP TABLE sp_scratch (id int);
SELECT current_schemas(true) = ARRAY[pg_my_temp_schema()::regnamespace::name, 'pg_catalog', 'public']::name[], current_schemas(false)
-- next: searchpath.show_then_select
-- SHOW's command tag stays SHOW
SHOW search_path
-- next: searchpath.show_in_a_batch
SHOW search_path; SELECT 1
-- next: searchpath.show_extended
-- step extended
SHOW search_path
-- next: searchpath.show_between_statements
SELECT 1; SHOW search_path; SELECT 2; SHOW search_path
-- next: searchpath.show_after_a_failed_statement
-- the error ends the Query: the SHOW after it is skipped
SELECT 1/0; SHOW search_path
-- next: catalog.pg_constraint_schemas
SELECT n.nspname, con.conname, con.contype FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace WHERE con.conname LIKE 'users%' OR con.conname LIKE 'attachments%' OR con.conname LIKE 'email_addr%' ORDER BY 2
-- next: catalog.pg_stat_user_tables
SELECT schemaname, relname FROM pg_stat_user_tables WHERE relname IN ('users', 'kasi_cache', 'user_stats') ORDER BY 2
-- next: catalog.pg_stat_user_indexes
SELECT schemaname, relname, indexrelname FROM pg_catalog.pg_stat_user_indexes WHERE relname = 'users' ORDER BY 3
-- next: catalog.pg_statio_user_tables
SELECT schemaname, relname FROM pg_statio_user_tables WHERE relname LIKE 'dream%' ORDER BY 2
