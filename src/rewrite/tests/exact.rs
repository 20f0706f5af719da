//! Golden tests of the exact parser (PostgreSQL's grammar via
//! libpg_query) on the cases of the fallback issue: through `rewrite_sql`
//! on a map with the issue's tables, and `qualify_exact` directly.

use super::{Golden, check_on, test_map};
use crate::rewrite::Outcome::*;
use crate::rewrite::*;

/// The test map plus the tables of the cases from the fallback issue.
fn exact_map() -> SchemaMap {
    let mut pairs: Vec<(String, String)> = test_map()
        .iter()
        .map(|(t, s)| (s.to_owned(), t.to_owned()))
        .collect();
    for t in ["audit_logs", "daily_fortunes", "notifications"] {
        pairs.push(("shared_common".into(), t.into()));
    }
    SchemaMap::new(pairs)
}

/// [`check_with`] on [`exact_map`], under the `tokens` policy.
fn check_exact(cases: &[Golden]) {
    check_on(&exact_map(), OnParseError::Tokens, cases)
}

/// `qualify_exact` on a whole string, applied.
fn exact(
    sql: &str,
    standard_conforming_strings: bool,
) -> Result<(String, ExactResult), ExactError> {
    let r = qualify_exact(sql, 0..sql.len(), &exact_map(), standard_conforming_strings)?;
    let applied = Rewrite {
        outcome: FallbackTokens,
        edits: r.edits.clone(),
        names: r.names.clone(),
        parse_error: None,
        fallback_cause: None,
        rejected_table: None,
    }
    .apply(sql);
    Ok((applied, r))
}

/// (input, expected) for `qualify_exact` itself, with standard strings.
fn check_exact_direct(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for &(input, expected) in cases {
        match exact(input, true) {
            Ok((got, _)) if got == expected => {}
            other => failures.push(format!(
                "   input:    {input}\n   expected: {expected}\n   got:      {:?}",
                other.map(|(got, _)| got)
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

use crate::rewrite::exact::{ExactError, ExactResult, qualify_exact};

/// The cases of the fallback issue: each was wrong with the keyword rule.
#[test]
fn issue_cases_through_rewrite_sql() {
    check_exact(&[
        (
            "ON CONFLICT on an expression: the target is qualified, RETURNING users.id is a column",
            "INSERT INTO users (email, name) VALUES ('a','b') ON CONFLICT (lower(email)) DO UPDATE SET name = excluded.name RETURNING users.id",
            "INSERT INTO shared_common.users (email, name) VALUES ('a','b') ON CONFLICT (lower(email)) DO UPDATE SET name = excluded.name RETURNING users.id",
            FallbackTokens,
        ),
        (
            "COPY ... FROM STDIN WHERE",
            "COPY users (id, name) FROM STDIN WHERE id > 1",
            "COPY shared_common.users (id, name) FROM STDIN WHERE id > 1",
            FallbackTokens,
        ),
        (
            "COPY ... TO STDOUT with FORCE_QUOTE *",
            "COPY users (id, name) TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
            "COPY shared_common.users (id, name) TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
            FallbackTokens,
        ),
        (
            "BETWEEN SYMMETRIC in INSERT ... SELECT",
            "INSERT INTO audit_logs (action) SELECT 'x' WHERE 1 BETWEEN SYMMETRIC 2 AND 0",
            "INSERT INTO shared_common.audit_logs (action) SELECT 'x' WHERE 1 BETWEEN SYMMETRIC 2 AND 0",
            FallbackTokens,
        ),
        (
            "CREATE INDEX ON ONLY",
            "CREATE INDEX df_sign ON ONLY daily_fortunes (sign)",
            "CREATE INDEX df_sign ON ONLY shared_common.daily_fortunes (sign)",
            FallbackTokens,
        ),
        (
            "FOR UPDATE OF names FROM items: they stay bare, the FROM list is qualified",
            "SELECT * FROM users, attachments WHERE users.id = attachments.user_id FOR UPDATE OF users, attachments",
            "SELECT * FROM shared_common.users, shared_common.attachments WHERE users.id = attachments.user_id FOR UPDATE OF users, attachments",
            FallbackTokens,
        ),
        (
            "a CTE shadows the table in a statement sqlparser cannot parse",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM users WHERE id BETWEEN SYMMETRIC 0 AND 2",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM users WHERE id BETWEEN SYMMETRIC 0 AND 2",
            FallbackTokens,
        ),
        (
            "COMMENT ON CONSTRAINT ... ON table: located by the scanner",
            "COMMENT ON CONSTRAINT c ON users IS 'x'",
            "COMMENT ON CONSTRAINT c ON shared_common.users IS 'x'",
            FallbackTokens,
        ),
        (
            "COMMENT ON TRIGGER ... ON table",
            "COMMENT ON TRIGGER t ON kasi_cache IS 'x'",
            "COMMENT ON TRIGGER t ON saju_service.kasi_cache IS 'x'",
            FallbackTokens,
        ),
        (
            "CREATE RULE: the table is qualified, the NOTIFY channel is not",
            "CREATE RULE r AS ON UPDATE TO users DO ALSO NOTIFY users",
            "CREATE RULE r AS ON UPDATE TO shared_common.users DO ALSO NOTIFY users",
            Rewritten,
        ),
        (
            "IS DISTINCT FROM a column named like a table",
            "SELECT false IS DISTINCT FROM notifications FROM users",
            "SELECT false IS DISTINCT FROM notifications FROM shared_common.users",
            Rewritten,
        ),
        (
            "FETCH names a cursor",
            "FETCH 2 FROM users",
            "FETCH 2 FROM users",
            FallbackTokens,
        ),
        (
            "MOVE names a cursor",
            "MOVE 1 IN users",
            "MOVE 1 IN users",
            FallbackTokens,
        ),
        (
            "CLOSE names a cursor",
            "CLOSE users",
            "CLOSE users",
            Unchanged,
        ),
        (
            "a name glued to its keyword keeps a separator",
            "SELECT * FROM\"users\"",
            "SELECT * FROM shared_common.\"users\"",
            Rewritten,
        ),
        (
            "window frame EXCLUDE CURRENT ROW",
            "SELECT count(*) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE CURRENT ROW) FROM users",
            "SELECT count(*) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE CURRENT ROW) FROM shared_common.users",
            FallbackTokens,
        ),
        (
            "CREATE TEMP TABLE ... AS creates a bare temporary table",
            "CREATE TEMP TABLE users AS SELECT 1 BETWEEN SYMMETRIC 0 AND 2",
            "CREATE TEMP TABLE users AS SELECT 1 BETWEEN SYMMETRIC 0 AND 2",
            FallbackTokens,
        ),
    ]);
}

/// The same cases straight through `qualify_exact`, whatever path
/// `rewrite_sql` takes for them today.
#[test]
fn issue_cases_through_the_exact_parser() {
    check_exact_direct(&[
        (
            "INSERT INTO users (email, name) VALUES ('a','b') ON CONFLICT (lower(email)) DO UPDATE SET name = excluded.name RETURNING users.id",
            "INSERT INTO shared_common.users (email, name) VALUES ('a','b') ON CONFLICT (lower(email)) DO UPDATE SET name = excluded.name RETURNING users.id",
        ),
        (
            "SELECT * FROM users, attachments WHERE users.id = attachments.user_id FOR UPDATE OF users, attachments",
            "SELECT * FROM shared_common.users, shared_common.attachments WHERE users.id = attachments.user_id FOR UPDATE OF users, attachments",
        ),
        (
            "SELECT * FROM users FOR NO KEY UPDATE OF users",
            "SELECT * FROM shared_common.users FOR NO KEY UPDATE OF users",
        ),
        (
            "CREATE RULE r AS ON UPDATE TO users DO ALSO NOTIFY users",
            "CREATE RULE r AS ON UPDATE TO shared_common.users DO ALSO NOTIFY users",
        ),
        (
            "SELECT false IS DISTINCT FROM notifications FROM users",
            "SELECT false IS DISTINCT FROM notifications FROM shared_common.users",
        ),
        ("FETCH 2 FROM users", "FETCH 2 FROM users"),
        ("MOVE 1 IN users", "MOVE 1 IN users"),
        ("CLOSE users", "CLOSE users"),
        (
            "DECLARE users CURSOR FOR SELECT * FROM users",
            "DECLARE users CURSOR FOR SELECT * FROM shared_common.users",
        ),
        (
            "UPDATE users SET name = 'x' WHERE CURRENT OF users",
            "UPDATE shared_common.users SET name = 'x' WHERE CURRENT OF users",
        ),
        (
            "SELECT * FROM\"users\"",
            "SELECT * FROM shared_common.\"users\"",
        ),
        (
            "SELECT 1 FROM\"Legacy\",old_table",
            "SELECT 1 FROM\"Legacy\",\"Legacy Schema\".old_table",
        ),
        (
            "SELECT users.id, users() FROM users(1), users",
            "SELECT users.id, users() FROM users(1), shared_common.users",
        ),
        (
            "SELECT NULL::users, 'users'::regclass",
            "SELECT NULL::users, 'shared_common.users'::regclass",
        ),
        (
            "LISTEN users; NOTIFY users; PREPARE users AS SELECT 1",
            "LISTEN users; NOTIFY users; PREPARE users AS SELECT 1",
        ),
    ]);
}

#[test]
fn temporary_creations_stay_bare_and_are_reported() {
    for (sql, expected, temp) in [
        (
            "CREATE TEMP TABLE users AS SELECT 1 BETWEEN SYMMETRIC 0 AND 2",
            "CREATE TEMP TABLE users AS SELECT 1 BETWEEN SYMMETRIC 0 AND 2",
            &["users"][..],
        ),
        (
            "CREATE TEMPORARY TABLE users (LIKE attachments)",
            "CREATE TEMPORARY TABLE users (LIKE shared_common.attachments)",
            &["users"],
        ),
        (
            "CREATE TABLE pg_temp.users (id int)",
            "CREATE TABLE pg_temp.users (id int)",
            &["users"],
        ),
        (
            "SELECT * INTO TEMP users FROM attachments",
            "SELECT * INTO TEMP users FROM shared_common.attachments",
            &["users"],
        ),
        (
            "CREATE TEMP VIEW users AS SELECT * FROM attachments",
            "CREATE TEMP VIEW users AS SELECT * FROM shared_common.attachments",
            &["users"],
        ),
        (
            "CREATE TEMP SEQUENCE users",
            "CREATE TEMP SEQUENCE users",
            &["users"],
        ),
        (
            "CREATE TABLE users AS SELECT * FROM pg_temp.users",
            "CREATE TABLE shared_common.users AS SELECT * FROM pg_temp.users",
            &[],
        ),
        (
            "SELECT * INTO users FROM attachments",
            "SELECT * INTO shared_common.users FROM shared_common.attachments",
            &[],
        ),
    ] {
        let (got, r) = exact(sql, true).unwrap();
        assert_eq!(got, expected, "{sql}");
        assert_eq!(r.temp_created, temp, "{sql}");
    }
}

#[test]
fn backslash_escapes_when_standard_conforming_strings_is_off() {
    let sql = r"SELECT 'You\'ve been removed from users list' FROM users WHERE x BETWEEN SYMMETRIC 1 AND 2";
    let (got, _) = exact(sql, false).unwrap();
    assert_eq!(
        got,
        r"SELECT 'You\'ve been removed from users list' FROM shared_common.users WHERE x BETWEEN SYMMETRIC 1 AND 2"
    );
    // With standard strings the same text is a syntax error: never guessed.
    assert!(matches!(exact(sql, true), Err(ExactError::Syntax(_))));
    // The scanner knows no options: an unlocated name with backslashes fails.
    assert!(matches!(
        exact(r"COMMENT ON TABLE users IS 'a\'b'", false),
        Err(ExactError::Unresolved(_))
    ));
}

/// CTE scope as PostgreSQL resolves it (the cases of golden_scope).
#[test]
fn cte_scope_in_the_exact_parser() {
    check_exact_direct(&[
        (
            "WITH x AS (SELECT * FROM users) SELECT * FROM x",
            "WITH x AS (SELECT * FROM shared_common.users) SELECT * FROM x",
        ),
        (
            "WITH users AS (SELECT 1 AS id) SELECT * FROM users",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM users",
        ),
        (
            "WITH users AS (SELECT * FROM users WHERE active) SELECT * FROM users",
            "WITH users AS (SELECT * FROM shared_common.users WHERE active) SELECT * FROM users",
        ),
        (
            "WITH Users AS (SELECT 1) SELECT * FROM users",
            "WITH Users AS (SELECT 1) SELECT * FROM users",
        ),
        (
            "WITH \"Users\" AS (SELECT 1) SELECT * FROM users",
            "WITH \"Users\" AS (SELECT 1) SELECT * FROM shared_common.users",
        ),
        (
            "WITH users AS (SELECT 1 AS id), b AS (SELECT * FROM users) SELECT * FROM b",
            "WITH users AS (SELECT 1 AS id), b AS (SELECT * FROM users) SELECT * FROM b",
        ),
        (
            "WITH a AS (SELECT * FROM users), users AS (SELECT 1) SELECT * FROM a, users",
            "WITH a AS (SELECT * FROM shared_common.users), users AS (SELECT 1) SELECT * FROM a, users",
        ),
        (
            "WITH RECURSIVE users AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM users WHERE id < 3) SELECT * FROM users",
            "WITH RECURSIVE users AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM users WHERE id < 3) SELECT * FROM users",
        ),
        (
            "WITH RECURSIVE a AS (SELECT * FROM users), users AS (SELECT 1) SELECT * FROM a",
            "WITH RECURSIVE a AS (SELECT * FROM users), users AS (SELECT 1) SELECT * FROM a",
        ),
        (
            "WITH users AS (SELECT 1 AS id) SELECT * FROM orders WHERE id IN (SELECT id FROM users)",
            "WITH users AS (SELECT 1 AS id) SELECT * FROM orders WHERE id IN (SELECT id FROM users)",
        ),
        (
            "SELECT * FROM (WITH users AS (SELECT 1) SELECT * FROM users) s, users",
            "SELECT * FROM (WITH users AS (SELECT 1) SELECT * FROM users) s, shared_common.users",
        ),
        (
            "WITH users AS (SELECT 1) SELECT * FROM (WITH users AS (SELECT * FROM users) SELECT * FROM users) s",
            "WITH users AS (SELECT 1) SELECT * FROM (WITH users AS (SELECT * FROM users) SELECT * FROM users) s",
        ),
        (
            "WITH a AS (WITH users AS (SELECT 1) SELECT * FROM users) SELECT * FROM a, users",
            "WITH a AS (WITH users AS (SELECT 1) SELECT * FROM users) SELECT * FROM a, shared_common.users",
        ),
        (
            "WITH users AS (SELECT 1) SELECT * FROM archive.users",
            "WITH users AS (SELECT 1) SELECT * FROM archive.users",
        ),
        (
            "WITH users AS (SELECT 1) SELECT * FROM users UNION SELECT * FROM (SELECT 2 FROM users) s",
            "WITH users AS (SELECT 1) SELECT * FROM users UNION SELECT * FROM (SELECT 2 FROM users) s",
        ),
        (
            "(WITH users AS (SELECT 1) SELECT * FROM users) UNION SELECT * FROM users",
            "(WITH users AS (SELECT 1) SELECT * FROM users) UNION SELECT * FROM shared_common.users",
        ),
        // DML targets are always tables.
        (
            "WITH users AS (SELECT 1 AS id) INSERT INTO users SELECT * FROM users",
            "WITH users AS (SELECT 1 AS id) INSERT INTO shared_common.users SELECT * FROM users",
        ),
        (
            "WITH users AS (SELECT 1 AS id) UPDATE users SET n = 1 FROM users u2",
            "WITH users AS (SELECT 1 AS id) UPDATE shared_common.users SET n = 1 FROM users u2",
        ),
        (
            "WITH users AS (SELECT 1 AS id) DELETE FROM users WHERE id IN (SELECT id FROM users)",
            "WITH users AS (SELECT 1 AS id) DELETE FROM shared_common.users WHERE id IN (SELECT id FROM users)",
        ),
        (
            "WITH users AS (SELECT 1 AS id) MERGE INTO users t USING users s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "WITH users AS (SELECT 1 AS id) MERGE INTO shared_common.users t USING users s ON t.id = s.id WHEN MATCHED THEN DELETE",
        ),
        (
            "WITH users AS (INSERT INTO users VALUES (1) RETURNING *) SELECT * FROM users",
            "WITH users AS (INSERT INTO shared_common.users VALUES (1) RETURNING *) SELECT * FROM users",
        ),
        (
            "WITH users AS (SELECT 1) SELECT * INTO users FROM users",
            "WITH users AS (SELECT 1) SELECT * INTO shared_common.users FROM users",
        ),
    ]);
}

/// Utility statements: names with a location, and names located by the
/// scanner when the tree gives none.
#[test]
fn utility_statements_in_the_exact_parser() {
    check_exact_direct(&[
        ("DROP TABLE users", "DROP TABLE shared_common.users"),
        (
            "DROP TABLE IF EXISTS users, public.attachments, kasi_cache CASCADE",
            "DROP TABLE IF EXISTS shared_common.users, public.attachments, saju_service.kasi_cache CASCADE",
        ),
        (
            "DROP TRIGGER t ON users",
            "DROP TRIGGER t ON shared_common.users",
        ),
        (
            "DROP POLICY users ON attachments",
            "DROP POLICY users ON shared_common.attachments",
        ),
        ("DROP FUNCTION users(int)", "DROP FUNCTION users(int)"),
        ("DROP TYPE users", "DROP TYPE users"),
        (
            "CREATE TYPE users AS (id int)",
            "CREATE TYPE users AS (id int)",
        ),
        (
            "ALTER TYPE users ADD ATTRIBUTE x int",
            "ALTER TYPE users ADD ATTRIBUTE x int",
        ),
        (
            "ALTER TYPE users RENAME ATTRIBUTE x TO y",
            "ALTER TYPE users RENAME ATTRIBUTE x TO y",
        ),
        (
            "ALTER TABLE users RENAME COLUMN x TO y",
            "ALTER TABLE shared_common.users RENAME COLUMN x TO y",
        ),
        (
            "ALTER TABLE users ADD COLUMN x int",
            "ALTER TABLE shared_common.users ADD COLUMN x int",
        ),
        (
            "CREATE FOREIGN TABLE users (id int) SERVER s",
            "CREATE FOREIGN TABLE shared_common.users (id int) SERVER s",
        ),
        (
            "ALTER EXTENSION e ADD TABLE users",
            "ALTER EXTENSION e ADD TABLE shared_common.users",
        ),
        (
            "SECURITY LABEL ON TABLE users IS 'x'",
            "SECURITY LABEL ON TABLE shared_common.users IS 'x'",
        ),
        ("DROP RULE r ON users", "DROP RULE r ON shared_common.users"),
        (
            "DROP INDEX users_pkey, \"users\"",
            "DROP INDEX users_pkey, shared_common.\"users\"",
        ),
        (
            "COMMENT ON TABLE users IS 'users'",
            "COMMENT ON TABLE shared_common.users IS 'users'",
        ),
        (
            "COMMENT ON COLUMN users.id IS 'x'",
            "COMMENT ON COLUMN shared_common.users.id IS 'x'",
        ),
        (
            "COMMENT ON COLUMN public.users.id IS 'x'",
            "COMMENT ON COLUMN public.users.id IS 'x'",
        ),
        (
            "COMMENT /* users */ ON TABLE \"users\" IS 'x'",
            "COMMENT /* users */ ON TABLE shared_common.\"users\" IS 'x'",
        ),
        (
            "ALTER SEQUENCE users_id_seq OWNED BY users.id",
            "ALTER SEQUENCE users_id_seq OWNED BY shared_common.users.id",
        ),
        (
            "ALTER SEQUENCE s OWNED BY public.users.id",
            "ALTER SEQUENCE s OWNED BY public.users.id",
        ),
        (
            "ALTER SEQUENCE s OWNED BY NONE",
            "ALTER SEQUENCE s OWNED BY NONE",
        ),
        (
            "ALTER TABLE users RENAME TO users_old",
            "ALTER TABLE shared_common.users RENAME TO users_old",
        ),
        (
            "ALTER TABLE attachments ADD FOREIGN KEY (user_id) REFERENCES users",
            "ALTER TABLE shared_common.attachments ADD FOREIGN KEY (user_id) REFERENCES shared_common.users",
        ),
        (
            "CREATE TABLE t (LIKE users INCLUDING ALL) INHERITS (attachments)",
            "CREATE TABLE t (LIKE shared_common.users INCLUDING ALL) INHERITS (shared_common.attachments)",
        ),
        (
            "VACUUM (VERBOSE, ANALYZE) users, attachments (id)",
            "VACUUM (VERBOSE, ANALYZE) shared_common.users, shared_common.attachments (id)",
        ),
        (
            "CLUSTER users USING users_pkey",
            "CLUSTER shared_common.users USING users_pkey",
        ),
        (
            "LOCK TABLE users IN SHARE MODE",
            "LOCK TABLE shared_common.users IN SHARE MODE",
        ),
        (
            "TRUNCATE users, ONLY attachments",
            "TRUNCATE shared_common.users, ONLY shared_common.attachments",
        ),
        (
            "GRANT SELECT ON users, attachments TO PUBLIC",
            "GRANT SELECT ON shared_common.users, shared_common.attachments TO PUBLIC",
        ),
        (
            "CREATE TRIGGER t AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION users()",
            "CREATE TRIGGER t AFTER INSERT ON shared_common.users FOR EACH ROW EXECUTE FUNCTION users()",
        ),
        (
            "CREATE POLICY p ON users USING (EXISTS (SELECT 1 FROM attachments))",
            "CREATE POLICY p ON shared_common.users USING (EXISTS (SELECT 1 FROM shared_common.attachments))",
        ),
        (
            "IMPORT FOREIGN SCHEMA remote LIMIT TO (users) FROM SERVER s INTO public",
            "IMPORT FOREIGN SCHEMA remote LIMIT TO (users) FROM SERVER s INTO public",
        ),
        (
            "CREATE FUNCTION f() RETURNS SETOF users LANGUAGE sql BEGIN ATOMIC SELECT * FROM users; END",
            "CREATE FUNCTION f() RETURNS SETOF users LANGUAGE sql BEGIN ATOMIC SELECT * FROM shared_common.users; END",
        ),
        (
            "EXPLAIN (ANALYZE) SELECT * FROM ONLY users JOIN attachments * USING (id)",
            "EXPLAIN (ANALYZE) SELECT * FROM ONLY shared_common.users JOIN shared_common.attachments * USING (id)",
        ),
    ]);
}

#[test]
fn names_the_exact_parser_cannot_place_fail_loudly() {
    for sql in [
        // `users` is both the constraint's and the table's name.
        "COMMENT ON CONSTRAINT users ON users IS 'x'",
        "DROP TABLE users, users",
        "DROP TRIGGER users ON users",
    ] {
        assert!(
            matches!(exact(sql, true), Err(ExactError::Unresolved(_))),
            "{sql}: {:?}",
            exact(sql, true)
        );
    }
    // Under `tokens` and `reject` that refuses the statement; `passthrough`
    // forwards it unchanged.
    let map = exact_map();
    let sql = "COMMENT ON CONSTRAINT users ON users IS 'x'";
    let r = rewrite_sql(sql, &map, OnParseError::Tokens);
    assert_eq!(r.outcome, Rejected);
    assert_eq!(r.rejected_table.as_deref(), Some("users"));
    assert!(r.parse_error.unwrap().contains("occurs 2 times"));
    let r = rewrite_sql(sql, &map, OnParseError::Passthrough);
    assert_eq!(r.outcome, PassthroughUnparsed);
    assert!(r.edits.is_empty());
}

#[test]
fn offsets_are_bytes_of_the_whole_string() {
    check_exact(&[
        (
            "Korean text before the name, several statements, trailing comments",
            "SELECT '사주 풀이' AS 제목 FROM users FOR NO KEY UPDATE /* 끝 */ ; TABLE attachments -- 첨부\n; SELECT '꿈' FROM kasi_cache",
            "SELECT '사주 풀이' AS 제목 FROM shared_common.users FOR NO KEY UPDATE /* 끝 */ ; TABLE shared_common.attachments -- 첨부\n; SELECT '꿈' FROM saju_service.kasi_cache",
            FallbackTokens,
        ),
        (
            "a line comment without a newline ends the text",
            "TABLE users -- 사용자",
            "TABLE shared_common.users -- 사용자",
            FallbackTokens,
        ),
        (
            "a block comment and newlines end the statement",
            "TABLE users /* 끝 */\n\n;\nTABLE \"users\"\n",
            "TABLE shared_common.users /* 끝 */\n\n;\nTABLE shared_common.\"users\"\n",
            FallbackTokens,
        ),
        (
            "dollar quotes and E-strings around the name",
            "SELECT $a$ FROM users $a$, E'\\' FROM users' FROM \"users\" FOR KEY SHARE",
            "SELECT $a$ FROM users $a$, E'\\' FROM users' FROM shared_common.\"users\" FOR KEY SHARE",
            FallbackTokens,
        ),
    ]);
}

/// What the exact fallback costs alone, for a short and a ~2 KB statement:
/// libpg_query's parse, its tree as JSON, and parse + walk + qualify.
/// `cargo test --release --lib exact_fallback_timing -- --ignored --nocapture`
#[test]
#[ignore = "timing, run by hand in release"]
fn exact_fallback_timing() {
    use std::time::Instant;
    let map = exact_map();
    let short = "SELECT id, email, name FROM users WHERE id BETWEEN SYMMETRIC 12345 AND 12300";
    let mut report = String::from(
        "/* monthly reading report */\nWITH recent AS (\n  SELECT r.chart_id, count(*) AS n, max(r.id) AS last_id\n  FROM saju_charts r\n  GROUP BY r.chart_id\n)\nSELECT u.id, u.name, c.day_pillar, recent.n,\n  (SELECT count(*) FROM notifications nt WHERE nt.user_id = u.id AND NOT nt.read) AS unread,\n  (SELECT string_agg(a.path, ',') FROM attachments a WHERE a.user_id = u.id) AS files\nFROM users u\n  JOIN saju_charts c ON c.user_id = u.id\n  LEFT JOIN recent ON recent.chart_id = c.id\nWHERE u.created_at > now() - interval '30 days'\n  AND EXISTS (SELECT 1 FROM kasi_cache k WHERE k.solar_date = u.birth_date)\n",
    );
    while report.len() < 1900 {
        report.push_str("  AND u.email NOT LIKE '%@test.heal7.example' -- exclude test accounts\n");
    }
    report.push_str("  AND u.id BETWEEN SYMMETRIC 1 AND 100000\nORDER BY recent.n DESC NULLS LAST, u.id\nLIMIT 100");
    for (name, sql) in [("short", short), ("2 KB", report.as_str())] {
        assert!(
            !qualify_exact(sql, 0..sql.len(), &map, true)
                .unwrap()
                .edits
                .is_empty()
        );
        let n = if sql.len() < 200 { 20_000 } else { 2_000 };
        let time = |f: &dyn Fn()| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        };
        let parse = time(&|| {
            std::hint::black_box(pg_query::parse(sql, 0).unwrap());
        });
        let parsed = pg_query::parse(sql, 0).unwrap();
        let json = time(&|| {
            std::hint::black_box(serde_json::to_value(&parsed.protobuf).unwrap());
        });
        let whole = time(&|| {
            std::hint::black_box(qualify_exact(sql, 0..sql.len(), &map, true).unwrap());
        });
        eprintln!(
            "{name} ({} bytes): pg_query::parse {parse:.1} µs, tree to JSON {json:.1} µs, \
             qualify_exact (parse + JSON + walk + qualify) {whole:.1} µs",
            sql.len()
        );
    }
}
