//! Golden tests: the matching rules, the text a name is not taken from,
//! and byte-exact insertion around non-ASCII text.

use super::check;
use crate::rewrite::Outcome::*;

#[test]
fn prefilter_and_passthrough_text() {
    check(&[
        ("empty string needs no parse", "", "", NoParseNeeded),
        (
            "whitespace only needs no parse",
            "  \n\t ",
            "  \n\t ",
            NoParseNeeded,
        ),
        (
            "no mapped name needs no parse",
            "SELECT * FROM orders",
            "SELECT * FROM orders",
            NoParseNeeded,
        ),
        (
            "mapped name as a prefix of a longer word is no occurrence",
            "SELECT * FROM users_archive",
            "SELECT * FROM users_archive",
            NoParseNeeded,
        ),
        (
            "mapped name as a suffix of a longer word is no occurrence",
            "SELECT * FROM old_users",
            "SELECT * FROM old_users",
            NoParseNeeded,
        ),
        (
            "non-ASCII letter glued to a name makes a longer identifier",
            "SELECT * FROM 한users",
            "SELECT * FROM 한users",
            NoParseNeeded,
        ),
        (
            "comment-only string with a mapped name is unchanged",
            "-- users\n/* users */",
            "-- users\n/* users */",
            Unchanged,
        ),
        (
            "name only inside a literal is unchanged",
            "SELECT 'users'",
            "SELECT 'users'",
            Unchanged,
        ),
        ("only semicolons", ";;", ";;", NoParseNeeded),
    ]);
}

#[test]
fn matching_rules() {
    check(&[
        (
            "bare mapped name is qualified",
            "SELECT * FROM users",
            "SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "unquoted upper case folds to the mapped name, case kept",
            "SELECT * FROM Users",
            "SELECT * FROM shared_common.Users",
            Rewritten,
        ),
        (
            "unquoted all caps folds too",
            "SELECT * FROM USERS",
            "SELECT * FROM shared_common.USERS",
            Rewritten,
        ),
        (
            "quoted exact name is qualified before the quote",
            "SELECT * FROM \"users\"",
            "SELECT * FROM shared_common.\"users\"",
            Rewritten,
        ),
        (
            "quoted name with other case is a different table",
            "SELECT * FROM \"Users\"",
            "SELECT * FROM \"Users\"",
            Unchanged,
        ),
        (
            "quoted mixed-case mapped name matches exactly",
            "SELECT * FROM \"MixedCase\"",
            "SELECT * FROM shared_common.\"MixedCase\"",
            Rewritten,
        ),
        (
            "unquoted form of a mixed-case mapped name folds away from it",
            "SELECT * FROM MixedCase",
            "SELECT * FROM MixedCase",
            Unchanged,
        ),
        (
            "schema needing quotes is inserted quoted",
            "SELECT * FROM old_table",
            "SELECT * FROM \"Legacy Schema\".old_table",
            Rewritten,
        ),
        (
            "already qualified name is untouched",
            "SELECT * FROM shared_common.users",
            "SELECT * FROM shared_common.users",
            Unchanged,
        ),
        (
            "qualified with another schema is untouched",
            "SELECT * FROM archive.users",
            "SELECT * FROM archive.users",
            Unchanged,
        ),
        (
            "public. spelling of a moved name means the moved table",
            "SELECT * FROM public.users",
            "SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "public. spelling with quotes, spaces and a quoted schema",
            "SELECT * FROM \"public\" . \"users\" JOIN PUBLIC.old_table ON true",
            "SELECT * FROM shared_common.\"users\" JOIN \"Legacy Schema\".old_table ON true",
            Rewritten,
        ),
        (
            "public. spelling of an unmapped name is untouched",
            "SELECT * FROM public.orders",
            "SELECT * FROM public.orders",
            NoParseNeeded,
        ),
        (
            "public. spelling of a DML target",
            "UPDATE public.users SET name = 'x' WHERE id = 1",
            "UPDATE shared_common.users SET name = 'x' WHERE id = 1",
            Rewritten,
        ),
        (
            "a quoted \"Public\" is another schema",
            "SELECT * FROM \"Public\".users",
            "SELECT * FROM \"Public\".users",
            Unchanged,
        ),
        (
            "catalog-qualified name is untouched",
            "SELECT * FROM db.public.users",
            "SELECT * FROM db.public.users",
            Unchanged,
        ),
        (
            "quoted schema qualifier is untouched",
            "SELECT * FROM \"archive\".\"users\"",
            "SELECT * FROM \"archive\".\"users\"",
            Unchanged,
        ),
        (
            "an insertion keeps a token separator after a glued keyword",
            "SELECT * FROM\"users\" JOIN\"attachments\" ON true",
            "SELECT * FROM shared_common.\"users\" JOIN shared_common.\"attachments\" ON true",
            Rewritten,
        ),
        (
            "a temporary table of a mapped name is created bare",
            "CREATE TEMP TABLE users (id int)",
            "CREATE TEMP TABLE users (id int)",
            Unchanged,
        ),
        (
            "a table created in pg_temp is left as written",
            "CREATE TABLE pg_temp.kasi_cache AS SELECT * FROM saju_charts",
            "CREATE TABLE pg_temp.kasi_cache AS SELECT * FROM saju_service.saju_charts",
            Rewritten,
        ),
        (
            "unmapped bare name is untouched",
            "SELECT * FROM orders, users",
            "SELECT * FROM orders, shared_common.users",
            Rewritten,
        ),
        (
            "each service gets its own schema",
            "SELECT * FROM saju_charts c JOIN dream_categories d ON c.id = d.id JOIN kasi_cache k ON true",
            "SELECT * FROM saju_service.saju_charts c JOIN dream_service.dream_categories d ON c.id = d.id JOIN saju_service.kasi_cache k ON true",
            Rewritten,
        ),
    ]);
}

#[test]
fn untouched_non_table_uses() {
    check(&[
        (
            "column qualifier stays, the FROM item is qualified",
            "SELECT users.id FROM users",
            "SELECT users.id FROM shared_common.users",
            Rewritten,
        ),
        (
            "column named like a table stays",
            "SELECT users FROM orders",
            "SELECT users FROM orders",
            Unchanged,
        ),
        (
            "alias named like a table stays",
            "SELECT u.id FROM orders AS users",
            "SELECT u.id FROM orders AS users",
            Unchanged,
        ),
        (
            "table alias with AS",
            "SELECT u.id FROM users AS u",
            "SELECT u.id FROM shared_common.users AS u",
            Rewritten,
        ),
        (
            "table alias without AS",
            "SELECT u.id FROM users u",
            "SELECT u.id FROM shared_common.users u",
            Rewritten,
        ),
        (
            "alias with column list",
            "SELECT a FROM users AS u(a, b)",
            "SELECT a FROM shared_common.users AS u(a, b)",
            Rewritten,
        ),
        (
            "table function named like a table stays",
            "SELECT * FROM users(1)",
            "SELECT * FROM users(1)",
            Unchanged,
        ),
        (
            "generate_series is a function",
            "SELECT * FROM generate_series(1, 3) AS users",
            "SELECT * FROM generate_series(1, 3) AS users",
            Unchanged,
        ),
        (
            "function call in the select list stays",
            "SELECT users(id) FROM orders",
            "SELECT users(id) FROM orders",
            Unchanged,
        ),
        (
            "regclass literal keeps its meaning",
            "SELECT 'users'::regclass",
            "SELECT 'users'::regclass",
            Unchanged,
        ),
        (
            "literal next to a real reference",
            "SELECT 'users' FROM users",
            "SELECT 'users' FROM shared_common.users",
            Rewritten,
        ),
        (
            "block comment untouched",
            "SELECT /* users */ * FROM users",
            "SELECT /* users */ * FROM shared_common.users",
            Rewritten,
        ),
        (
            "line comment untouched",
            "SELECT * -- FROM users\nFROM users",
            "SELECT * -- FROM users\nFROM shared_common.users",
            Rewritten,
        ),
        (
            "optimizer hint untouched",
            "/*+ IndexScan(users) */ SELECT * FROM users",
            "/*+ IndexScan(users) */ SELECT * FROM shared_common.users",
            Rewritten,
        ),
        (
            "dollar-quoted string untouched",
            "SELECT $$users$$ FROM users",
            "SELECT $$users$$ FROM shared_common.users",
            Rewritten,
        ),
        (
            "tagged dollar quote untouched",
            "SELECT $x$ FROM users $x$",
            "SELECT $x$ FROM users $x$",
            Unchanged,
        ),
        (
            "escape string with quote untouched",
            "SELECT E'\\'users' FROM users",
            "SELECT E'\\'users' FROM shared_common.users",
            Rewritten,
        ),
        (
            "odd whitespace kept",
            "SELECT\t*\n  FROM\n\n\tusers\r\n WHERE  1=1",
            "SELECT\t*\n  FROM\n\n\tshared_common.users\r\n WHERE  1=1",
            Rewritten,
        ),
        (
            "FOR UPDATE OF names the FROM item, stays bare",
            "SELECT * FROM users u FOR UPDATE OF u",
            "SELECT * FROM shared_common.users u FOR UPDATE OF u",
            Rewritten,
        ),
        (
            "FOR UPDATE OF a table name stays bare",
            "SELECT * FROM users FOR UPDATE OF users",
            "SELECT * FROM shared_common.users FOR UPDATE OF users",
            Rewritten,
        ),
        (
            "JOIN USING column list stays",
            "SELECT * FROM users JOIN attachments USING (users)",
            "SELECT * FROM shared_common.users JOIN shared_common.attachments USING (users)",
            Rewritten,
        ),
    ]);
}

#[test]
fn byte_exact_with_korean_text() {
    check(&[
        (
            "Korean literal before a name does not shift the insertion",
            "SELECT '사주' AS a FROM users",
            "SELECT '사주' AS a FROM shared_common.users",
            Rewritten,
        ),
        (
            "Korean comment on an earlier line",
            "-- 꿈 해몽 조회\nSELECT * FROM dream_interpretations WHERE t = '꿈'",
            "-- 꿈 해몽 조회\nSELECT * FROM dream_service.dream_interpretations WHERE t = '꿈'",
            Rewritten,
        ),
        (
            "Korean on the same line and in between names",
            "SELECT '가나다' FROM users /* 첨부 */ JOIN attachments ON true",
            "SELECT '가나다' FROM shared_common.users /* 첨부 */ JOIN shared_common.attachments ON true",
            Rewritten,
        ),
        (
            "Korean quoted alias",
            "SELECT \"이름\".id FROM users \"이름\"",
            "SELECT \"이름\".id FROM shared_common.users \"이름\"",
            Rewritten,
        ),
        (
            "emoji before a name",
            "SELECT '🙂🙂' FROM users",
            "SELECT '🙂🙂' FROM shared_common.users",
            Rewritten,
        ),
    ]);
}

#[test]
fn literal_forms_keep_their_boundaries() {
    check(&[
        (
            "standard string: a backslash does not escape the quote",
            "SELECT 'a\\', x FROM users WHERE y = ' FROM attachments'",
            "SELECT 'a\\', x FROM shared_common.users WHERE y = ' FROM attachments'",
            Rewritten,
        ),
        (
            "escape string: backslash-quote stays inside",
            "SELECT E'a\\'' FROM users",
            "SELECT E'a\\'' FROM shared_common.users",
            Rewritten,
        ),
        (
            "doubled quote inside a literal",
            "SELECT 'it''s FROM users' FROM users",
            "SELECT 'it''s FROM users' FROM shared_common.users",
            Rewritten,
        ),
        (
            "unicode escape string",
            "SELECT U&'d\\0061t\\+000061' FROM users",
            "SELECT U&'d\\0061t\\+000061' FROM shared_common.users",
            Rewritten,
        ),
        (
            "tagged dollar quote holding $$ and a quote",
            "SELECT $tag$ it's $$ FROM users $tag$ FROM attachments",
            "SELECT $tag$ it's $$ FROM users $tag$ FROM shared_common.attachments",
            Rewritten,
        ),
        (
            "bit and hex strings",
            "SELECT B'101', X'FF' FROM users",
            "SELECT B'101', X'FF' FROM shared_common.users",
            Rewritten,
        ),
        (
            "a cast to a type named like a table is no table reference",
            "SELECT CAST(x AS users), y::users FROM attachments",
            "SELECT CAST(x AS users), y::users FROM shared_common.attachments",
            Rewritten,
        ),
        (
            "a column type named like a table is no table reference",
            "CREATE TABLE t (u users)",
            "CREATE TABLE t (u users)",
            Unchanged,
        ),
        (
            "composite field access through an alias",
            "SELECT (u).id FROM users u",
            "SELECT (u).id FROM shared_common.users u",
            Rewritten,
        ),
        (
            "jsonb operators",
            "SELECT * FROM users WHERE x @> '{}'::jsonb AND y ? 'k'",
            "SELECT * FROM shared_common.users WHERE x @> '{}'::jsonb AND y ? 'k'",
            Rewritten,
        ),
    ]);
}
