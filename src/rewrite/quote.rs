//! Spelling a schema name so Postgres reads it back exactly.

/// Keywords that cannot stand bare as a schema name in `schema.table`
/// (Postgres' reserved, type/function-name and column-name keywords).
/// Quoting a plain lower-case name is always harmless, so this list errs on
/// the side of quoting.
const KEYWORDS_NEEDING_QUOTES: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "json",
    "json_array",
    "json_arrayagg",
    "json_exists",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_table",
    "json_value",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "merge_action",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// Bytes that continue a Postgres identifier; a name glued to one of these
/// is part of a longer word. Non-ASCII bytes count: Postgres accepts
/// non-ASCII letters in identifiers.
#[inline]
/// A name as PostgreSQL stores it: quoted exactly as written, unquoted
/// folded to lower case (ASCII only, as PostgreSQL's `downcase_identifier`
/// does for the encodings the proxy lexes).
pub(crate) fn fold_identifier(value: &str, quoted: bool) -> String {
    if quoted {
        value.to_owned()
    } else {
        value.to_ascii_lowercase()
    }
}

pub(crate) fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The text to insert before a name at `offset` of `sql`: `schema.`, with a
/// space first where the name is glued to an identifier character
/// (`FROM"x"`), so the insertion never joins two tokens into one.
pub(crate) fn qualifier(sql: &str, offset: usize, schema: &str) -> String {
    let glued = offset
        .checked_sub(1)
        .and_then(|i| sql.as_bytes().get(i))
        .is_some_and(|&b| is_identifier_byte(b));
    let sep = if glued { " " } else { "" };
    format!("{sep}{}.", quote_identifier(schema))
}

/// Spell `name` as a Postgres identifier: bare when Postgres would read the
/// bare word back as exactly `name`, otherwise double-quoted with inner
/// quotes doubled (`Legacy Schema` -> `"Legacy Schema"`).
pub fn quote_identifier(name: &str) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$')
        && !KEYWORDS_NEEDING_QUOTES.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}
