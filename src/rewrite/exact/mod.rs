//! The exact fallback: PostgreSQL's own grammar (libpg_query, via the
//! `pg_query` crate) for the statements sqlparser cannot parse, or whose
//! table names the sqlparser walk did not account for.
//!
//! libpg_query returns the raw parse tree PostgreSQL's parser builds, with
//! the byte offset of every table reference (`RangeVar`). The tree is
//! serialized to JSON and walked generically: every `RangeVar` object, under
//! any node type, is found, so no statement form can hide a table name.
//! Only a few fields hold a `RangeVar` that is not a table reference (the
//! `FOR UPDATE OF` list names FROM items; `IMPORT FOREIGN SCHEMA ... LIMIT
//! TO` names remote tables); those are skipped by name.
//!
//! CTE scope follows PostgreSQL: a WITH name shadows tables in its query
//! and nested subqueries; a non-recursive CTE is visible neither in its own
//! body nor in earlier CTEs of its list; a RECURSIVE one in all of the list.
//! The target of INSERT/UPDATE/DELETE/MERGE and every created relation is
//! a table, never a CTE.
//!
//! Names the tree holds without a location (DROP, COMMENT ON, SECURITY
//! LABEL, ALTER EXTENSION ... ADD, sequence `OWNED BY`) are found with
//! PostgreSQL's scanner when the name occurs exactly once as a (dotted)
//! identifier chain in the statement; otherwise the statement fails with
//! [`ExactError::Unresolved`]. Nothing is ever guessed.

use std::collections::BTreeMap;
use std::ops::Range;

use pg_query::ParserOptions;
use pg_query::protobuf::ObjectType;
use serde_json::{Map, Value};

use super::quote::qualifier;
use super::strings::{self, StringKind, relation_argument};
use super::{Decision, Edit, NameUse, SchemaMap, quote_identifier};
use scan::{locate, name_after_qualifier, scan_chains, written_name};

mod scan;

/// The largest statement the exact parser reads. Its tree is held three
/// times over (libpg_query's, protobuf, JSON), many times the text's size;
/// a larger statement that sqlparser cannot read is refused instead.
pub(in crate::rewrite) const EXACT_MAX_BYTES: usize = 1 << 20;

/// What [`qualify_exact`] found in one statement (or several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExactResult {
    /// Every table reference with a location, in text order (offsets into
    /// the full SQL string).
    pub(crate) names: Vec<NameUse>,
    /// Sorted by offset, non-overlapping.
    pub(crate) edits: Vec<Edit>,
    /// Relations the statement creates as temporary (`CREATE TEMP TABLE x`,
    /// `CREATE TABLE pg_temp.x`, `SELECT ... INTO TEMP x`, ...), as
    /// PostgreSQL stores their names. They are left bare.
    pub(crate) temp_created: Vec<String>,
}

/// Why [`qualify_exact`] gives no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExactError {
    /// PostgreSQL's grammar rejects the statement: the server will too.
    Syntax(String),
    /// The statement parses, but a mapped table name cannot be located
    /// exactly in the text. Qualifying it would be a guess.
    Unresolved(String),
}

impl std::fmt::Display for ExactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExactError::Syntax(e) => write!(f, "PostgreSQL's parser rejects the statement: {e}"),
            ExactError::Unresolved(e) => write!(f, "{e}"),
        }
    }
}

/// Qualify the bare mapped table names of `sql[statement]` by PostgreSQL's
/// grammar. Offsets in the result are byte offsets into `sql`.
/// `standard_conforming_strings` is the session's setting (off: a
/// backslash escapes a quote inside an ordinary string literal).
pub(crate) fn qualify_exact(
    sql: &str,
    statement: Range<usize>,
    map: &SchemaMap,
    standard_conforming_strings: bool,
) -> Result<ExactResult, ExactError> {
    let text = sql
        .get(statement.clone())
        .ok_or_else(|| ExactError::Unresolved("statement bounds are not in the text".into()))?;
    if text.len() > EXACT_MAX_BYTES {
        return Err(ExactError::Unresolved(format!(
            "a {} byte statement is larger than the exact parser takes ({EXACT_MAX_BYTES})",
            text.len()
        )));
    }
    let options = if standard_conforming_strings {
        ParserOptions::DEFAULT
    } else {
        ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS
    };
    let parsed = pg_query::parse(text, options).map_err(|e| {
        let message = e.to_string();
        // libpg_query's stack limit is far below the server's: past it the
        // statement may well be valid, so it cannot count as a syntax error.
        if message.contains("stack depth limit exceeded") {
            ExactError::Unresolved(format!("too deeply nested for the exact parser: {message}"))
        } else {
            ExactError::Syntax(message)
        }
    })?;
    let tree = serde_json::to_value(&parsed.protobuf)
        .map_err(|e| ExactError::Unresolved(format!("parse tree: {e}")))?;
    let mut walker = Walker {
        sql,
        text,
        base: statement.start,
        map,
        found: BTreeMap::new(),
        temp_created: Vec::new(),
        unlocated: Vec::new(),
        created_unlocated: Vec::new(),
        schema_elements: 0,
        error: None,
    };
    walker.value(&tree, &Vec::new(), "", "");
    if let Some(e) = walker.error {
        return Err(ExactError::Unresolved(e));
    }
    if !walker.unlocated.is_empty() || !walker.created_unlocated.is_empty() {
        if !standard_conforming_strings && text.contains('\\') {
            // The scanner knows no options: it would read `\'` differently.
            return Err(ExactError::Unresolved(format!(
                "`{}` has no location in the parse tree and cannot be located with \
                 standard_conforming_strings off",
                walker.unlocated[0].join(".")
            )));
        }
        let chains = scan_chains(text)?;
        for parts in std::mem::take(&mut walker.unlocated) {
            let offset = locate(&chains, &parts)?;
            walker.qualify_at(offset, &parts[0], &Vec::new(), Role::Table);
        }
        for (name, decision) in std::mem::take(&mut walker.created_unlocated) {
            // The created name follows the object kind's keywords, so its
            // first occurrence is the name (`CREATE STATISTICS s ON a FROM s`).
            let location = chains
                .iter()
                .find(|c| c.parts.len() == 1 && c.parts[0] == name)
                .map(|c| c.start)
                .ok_or_else(|| {
                    ExactError::Unresolved(format!("the created `{name}` is not found in the text"))
                })?;
            let offset = statement.start + location;
            let schema = decision.qualified_schema().expect("a schema").clone();
            let edit = Edit::insertion(offset, qualifier(sql, offset, &schema).into());
            walker.record(location, name, decision, Some(edit));
        }
    }
    let mut result = ExactResult {
        temp_created: walker.temp_created,
        ..ExactResult::default()
    };
    for (name, edit) in walker.found.into_values() {
        result.names.push(name);
        result.edits.extend(edit);
    }
    Ok(result)
}

/// What a `RangeVar` stands for where it occurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A FROM-like reference: a CTE in scope answers to a bare name.
    Reference,
    /// Always a table: a DML target, a DDL name.
    Table,
    /// A relation the statement creates (temporary ones stay bare).
    Created,
    /// Not a table reference at all.
    Skip,
}

/// The role of a `RangeVar` in `field` of a node tagged `tag`.
fn role(tag: &str, field: &str) -> Role {
    match (tag, field) {
        // FOR UPDATE OF x: x names a FROM item (alias or table name as
        // written there); PostgreSQL refuses a qualified name.
        (_, "locked_rels") => Role::Skip,
        // IMPORT FOREIGN SCHEMA ... LIMIT TO / EXCEPT (x): remote tables.
        ("ImportForeignSchemaStmt", "table_list") => Role::Skip,
        ("InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt", "relation") => Role::Table,
        // IntoClause.rel: SELECT INTO, CREATE TABLE AS, CREATE MATERIALIZED VIEW.
        (_, "rel") => Role::Created,
        ("CreateStmt", "relation") | ("ViewStmt", "view") | ("CreateSeqStmt", "sequence") => {
            Role::Created
        }
        _ => Role::Reference,
    }
}

/// Nodes whose object list may name a relation without a location, and the
/// fields holding the object type and the object(s).
const OBJECT_LISTS: &[(&str, &str, &str)] = &[
    ("DropStmt", "remove_type", "objects"),
    ("CommentStmt", "objtype", "object"),
    ("SecLabelStmt", "objtype", "object"),
    ("AlterExtensionContentsStmt", "objtype", "object"),
];

/// How many trailing parts of an object name are not the relation's name
/// (`Some(0)`: the whole name is a relation; `None`: no relation at all).
fn relation_suffix(objtype: i64) -> Option<usize> {
    let t = i32::try_from(objtype).ok()?;
    match ObjectType::try_from(t).ok()? {
        ObjectType::ObjectTable
        | ObjectType::ObjectView
        | ObjectType::ObjectMatview
        | ObjectType::ObjectForeignTable
        | ObjectType::ObjectSequence
        | ObjectType::ObjectIndex => Some(0),
        // column of a table; constraint/trigger/rule/policy ON a table
        ObjectType::ObjectColumn
        | ObjectType::ObjectTabconstraint
        | ObjectType::ObjectTrigger
        | ObjectType::ObjectRule
        | ObjectType::ObjectPolicy => Some(1),
        _ => None,
    }
}

/// Whether the `RangeVar` of this node names a composite type, not a
/// table: `CREATE TYPE t AS (...)`, `ALTER TYPE t ADD/RENAME ATTRIBUTE`.
/// Type names are never qualified.
fn names_composite_type(tag: &str, obj: &Map<String, Value>) -> bool {
    let type_field = match tag {
        "CompositeTypeStmt" => return true,
        "AlterTableStmt" => "objtype",
        "RenameStmt" => "relation_type",
        _ => return false,
    };
    obj.get(type_field).and_then(Value::as_i64) == Some(ObjectType::ObjectType as i64)
}

/// What a created object without a location is, for the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Created {
    Routine,
    Type,
    Other,
}

/// Statements that create a schema object named by a list of strings
/// without a location, and the field holding the name.
const CREATED_NAMES: &[(&str, &str, Created)] = &[
    ("CreateFunctionStmt", "funcname", Created::Routine),
    ("DefineStmt", "defnames", Created::Other),
    ("CreateEnumStmt", "type_name", Created::Type),
    ("CreateRangeStmt", "type_name", Created::Type),
    ("CreateDomainStmt", "domainname", Created::Type),
    ("CreateConversionStmt", "conversion_name", Created::Other),
    ("CreateStatsStmt", "defnames", Created::Other),
];

/// The `A_Const` of a node, looking through casts to text (as
/// `strings::plain_literal` does; the raw tree keeps no parentheses).
fn string_constant(node: &Value) -> Option<&Value> {
    let node = node.get("node")?;
    if let Some(constant) = node.get("AConst") {
        return Some(constant);
    }
    let cast = node.get("TypeCast")?;
    let names = string_items(cast.get("type_name")?.get("names")?)?;
    match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["text" | "varchar"] | ["pg_catalog", "text" | "varchar"] => {
            string_constant(cast.get("arg")?)
        }
        _ => None,
    }
}

/// An array of `{"node": {"String": {"sval": ..}}}` items -> strings.
fn string_items(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|item| {
            item.get("node")?
                .get("String")?
                .get("sval")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

type Scope = Vec<String>;

struct Walker<'a> {
    sql: &'a str,
    /// The statement as given to libpg_query (locations are offsets in it).
    text: &'a str,
    /// Byte offset of `text` in `sql`.
    base: usize,
    map: &'a SchemaMap,
    found: BTreeMap<usize, (NameUse, Option<Edit>)>,
    temp_created: Vec<String>,
    /// Bare mapped relation names without a location (first part = table).
    unlocated: Vec<Vec<String>>,
    /// Bare names of created functions, types and other objects (no
    /// location in the tree), with the schema they must be created in.
    created_unlocated: Vec<(String, Decision)>,
    /// Inside `CREATE SCHEMA s CREATE ...`: objects are created in s.
    schema_elements: usize,
    error: Option<String>,
}

fn str_field<'v>(obj: &'v Map<String, Value>, key: &str) -> &'v str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

fn is_range_var(obj: &Map<String, Value>) -> bool {
    obj.contains_key("relname") && obj.contains_key("relpersistence") && obj.contains_key("inh")
}

/// `{"node": {"String": {"sval": ..}}}` items of a `List` node -> strings.
fn name_list(v: &Value) -> Option<Vec<String>> {
    string_items(v.get("node")?.get("List")?.get("items")?)
}

impl Walker<'_> {
    fn value(&mut self, v: &Value, scope: &Scope, tag: &str, field: &str) {
        match v {
            Value::Array(items) => {
                for item in items {
                    self.value(item, scope, tag, field);
                }
            }
            Value::Object(obj) => self.object(obj, scope, tag, field),
            _ => {}
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, scope: &Scope, tag: &str, field: &str) {
        if is_range_var(obj) {
            return self.range_var(obj, scope, role(tag, field));
        }
        if obj.len() == 1 {
            let (key, inner) = obj.iter().next().expect("one entry");
            if key == "node" {
                // The `Node` wrapper: transparent.
                return self.value(inner, scope, tag, field);
            }
            if key.starts_with(|c: char| c.is_ascii_uppercase())
                && let Value::Object(inner) = inner
            {
                if is_range_var(inner) {
                    return self.range_var(inner, scope, role(tag, field));
                }
                return self.node(key, inner, scope);
            }
        }
        // A message held directly (IntoClause, OnConflictClause, ...): no
        // tag of its own; only its field names tell roles apart.
        self.node("", obj, scope);
    }

    /// A statement that creates a function, type or other schema object by
    /// a name without a location: where it must be created.
    fn created_object(&mut self, tag: &str, obj: &Map<String, Value>) {
        let Some(&(_, field, namespace)) = CREATED_NAMES.iter().find(|(t, _, _)| *t == tag) else {
            return;
        };
        if self.schema_elements > 0 {
            // CREATE SCHEMA s CREATE ...: created in s.
            return;
        }
        let namespace = match (tag, namespace) {
            ("DefineStmt", _) => match obj.get("kind").and_then(Value::as_i64) {
                Some(k) if k == ObjectType::ObjectAggregate as i64 => Created::Routine,
                Some(k) if k == ObjectType::ObjectType as i64 => Created::Type,
                // An operator's name is a symbol the scanner does not chain
                // as a name: left to the search_path (README).
                Some(k) if k == ObjectType::ObjectOperator as i64 => return,
                _ => Created::Other,
            },
            (_, namespace) => namespace,
        };
        let Some(parts) = obj.get(field).and_then(string_items) else {
            return;
        };
        let [name] = &parts[..] else {
            return; // qualified: created where it says
        };
        let mapped = match namespace {
            Created::Routine => self.map.routine_schema(name, true),
            Created::Type => self.map.type_schema(name, true),
            Created::Other => None,
        };
        let decision = match (mapped, self.map.create_schema()) {
            (Some(schema), _) => Decision::QualifiedByFallback {
                schema: schema.into(),
            },
            (None, Some(schema)) => Decision::CreatedIn {
                schema: schema.into(),
            },
            (None, None) => return,
        };
        self.created_unlocated.push((name.clone(), decision));
    }

    fn node(&mut self, tag: &str, obj: &Map<String, Value>, scope: &Scope) {
        if tag == "CreateSchemaStmt" {
            self.schema_elements += 1;
            for (k, v) in obj {
                self.value(v, scope, tag, k);
            }
            self.schema_elements -= 1;
            return;
        }
        self.created_object(tag, obj);
        if matches!(tag, "FuncCall" | "TypeCast") {
            self.name_string(tag, obj);
        }
        if let Some(&(_, type_field, objects_field)) =
            OBJECT_LISTS.iter().find(|(t, _, _)| *t == tag)
        {
            self.object_names(obj, type_field, objects_field);
        }
        if tag == "DefElem" && str_field(obj, "defname") == "owned_by" {
            // Sequence OWNED BY [schema.]table.column (or NONE).
            if let Some(parts) = obj.get("arg").and_then(name_list)
                && parts.len() >= 2
            {
                self.relation_without_location(&parts[..parts.len() - 1]);
            }
        }
        let Some(Value::Object(with)) = obj.get("with_clause") else {
            let composite_type = names_composite_type(tag, obj);
            for (k, v) in obj {
                if !(composite_type && matches!(k.as_str(), "relation" | "typevar")) {
                    self.value(v, scope, tag, k);
                }
            }
            return;
        };
        let recursive = with.get("recursive").and_then(Value::as_bool) == Some(true);
        let ctes: &[Value] = with
            .get("ctes")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let names: Vec<String> = ctes
            .iter()
            .filter_map(|c| {
                c.get("node")?
                    .get("CommonTableExpr")?
                    .get("ctename")?
                    .as_str()
            })
            .map(str::to_owned)
            .collect();
        if names.len() != ctes.len() {
            self.fail("a WITH list item without a name".into());
            return;
        }
        for (i, cte) in ctes.iter().enumerate() {
            let visible = if recursive { names.len() } else { i };
            let mut inner = scope.clone();
            inner.extend_from_slice(&names[..visible]);
            self.value(cte, &inner, "WithClause", "ctes");
        }
        let mut full = scope.clone();
        full.extend(names);
        for (k, v) in obj {
            if k != "with_clause" {
                self.value(v, &full, tag, k);
            }
        }
    }

    /// A string literal PostgreSQL reads as a relation or type name: the
    /// relation argument of `nextval(...)` and its kin, or a cast to
    /// `regclass`/`regtype` (see `strings`).
    fn name_string(&mut self, tag: &str, obj: &Map<String, Value>) {
        let (arg, kind) = if tag == "FuncCall" {
            let Some(name) = obj.get("funcname").and_then(string_items) else {
                return;
            };
            let function = match &name[..] {
                [f] => f,
                [schema, f] if schema == "pg_catalog" => f,
                _ => return,
            };
            let args = obj.get("args").and_then(Value::as_array);
            let Some((index, kind)) = args.and_then(|a| relation_argument(function, a.len()))
            else {
                return;
            };
            (args.and_then(|a| a.get(index)), kind)
        } else {
            let Some(Value::Object(type_name)) = obj.get("type_name") else {
                return;
            };
            let plain = |field: &str| {
                type_name
                    .get(field)
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
            };
            let names = type_name
                .get("names")
                .and_then(string_items)
                .unwrap_or_default();
            let cast_to = match &names[..] {
                [t] => t,
                [schema, t] if schema == "pg_catalog" => t,
                _ => return,
            };
            let kind = match cast_to.as_str() {
                _ if !plain("typmods") || !plain("array_bounds") => return,
                "regclass" => StringKind::Relation,
                "regtype" => StringKind::Type,
                "regproc" => StringKind::Routine { with_args: false },
                "regprocedure" => StringKind::Routine { with_args: true },
                _ => return,
            };
            (obj.get("arg"), kind)
        };
        let Some(constant) = arg.and_then(string_constant) else {
            return;
        };
        let value = constant
            .get("val")
            .and_then(|v| v.get("Sval")?.get("sval")?.as_str());
        let location = constant
            .get("location")
            .and_then(Value::as_i64)
            .and_then(|l| usize::try_from(l).ok());
        let (Some(value), Some(location)) = (value, location) else {
            return;
        };
        if let Some((name, edit)) =
            strings::decide(self.sql, self.base + location, value, kind, self.map)
        {
            self.found.entry(name.offset).or_insert((name, edit));
        }
    }

    fn object_names(&mut self, obj: &Map<String, Value>, type_field: &str, objects_field: &str) {
        let Some(suffix) = obj
            .get(type_field)
            .and_then(Value::as_i64)
            .and_then(relation_suffix)
        else {
            return;
        };
        let objects: Vec<&Value> = match obj.get(objects_field) {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => return,
        };
        for object in objects {
            match name_list(object) {
                Some(parts) if parts.len() > suffix => {
                    self.relation_without_location(&parts[..parts.len() - suffix]);
                }
                _ => self.fail(format!(
                    "an object name of {objects_field} is not a plain name list"
                )),
            }
        }
    }

    /// A relation name the tree gives without a location: only a bare
    /// mapped one matters, and must be found in the text.
    fn relation_without_location(&mut self, parts: &[String]) {
        if parts.len() == 1 && self.map.schema_of(&parts[0], true).is_some() {
            self.unlocated.push(parts.to_vec());
        }
    }

    fn fail(&mut self, reason: String) {
        self.error.get_or_insert(reason);
    }

    fn range_var(&mut self, rv: &Map<String, Value>, scope: &Scope, role: Role) {
        if role == Role::Skip {
            return;
        }
        let relname = str_field(rv, "relname");
        let schemaname = str_field(rv, "schemaname");
        let catalogname = str_field(rv, "catalogname");
        let temp = str_field(rv, "relpersistence") == "t"
            || (role == Role::Created && schemaname == "pg_temp");
        if temp {
            self.temp_created.push(relname.to_owned());
        }
        let location = rv.get("location").and_then(Value::as_i64).unwrap_or(-1);
        let qualified = !schemaname.is_empty() || !catalogname.is_empty();
        let Ok(location) = usize::try_from(location) else {
            if !qualified && !temp {
                self.relation_without_location(&[relname.to_owned()]);
            }
            return;
        };
        if temp {
            // From now on the session leaves this name bare.
            let written =
                written_name(self.text, location, relname).unwrap_or_else(|| relname.to_owned());
            let name = match schemaname {
                "" => written,
                schema => format!("{schema}.{relname}"),
            };
            self.record(location, name, Decision::TempCreated, None);
            return;
        }
        if qualified
            && catalogname.is_empty()
            && schemaname == "public"
            && let Some(schema) = self.map.schema_of(relname, true)
            && schema != "public"
            && self.map.requalify_public()
        {
            return self.requalify_public(location, relname, schema);
        }
        if qualified {
            let name = [catalogname, schemaname, relname]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(".");
            self.record(location, name, Decision::AlreadyQualified, None);
            return;
        }
        let role = if temp { Role::Skip } else { role };
        self.qualify_at(location, relname, scope, role);
    }

    /// Decide for the bare name `relname` at `location` of the statement
    /// text (`Role::Skip`: report, never qualify).
    fn qualify_at(&mut self, location: usize, relname: &str, scope: &Scope, role: Role) {
        let cte = role == Role::Reference && scope.iter().any(|n| n == relname);
        let schema = self.map.schema_of(relname, true);
        let written = match written_name(self.text, location, relname) {
            Some(w) => w,
            None if schema.is_none() || cte || role == Role::Skip => relname.to_owned(),
            None => {
                return self.fail(format!(
                    "the parser's location of `{relname}` ({location}) does not point at it"
                ));
            }
        };
        let offset = self.base + location;
        let (decision, edit) = match (schema, self.map.create_schema()) {
            _ if cte => (Decision::Cte, None),
            (Some(schema), _) if role != Role::Skip => (
                Decision::QualifiedByFallback {
                    schema: schema.into(),
                },
                Some(Edit::insertion(
                    offset,
                    qualifier(self.sql, offset, schema).into(),
                )),
            ),
            // Created without a schema: where it landed before the move
            // (inside CREATE SCHEMA s, in s).
            (None, Some(schema)) if role == Role::Created && self.schema_elements == 0 => (
                Decision::CreatedIn {
                    schema: schema.into(),
                },
                Some(Edit::insertion(
                    offset,
                    qualifier(self.sql, offset, schema).into(),
                )),
            ),
            _ => (Decision::NotInMap, None),
        };
        self.record(location, written, decision, edit);
    }

    /// `public.name` at `location` for a mapped `name`: the legacy spelling
    /// of the moved table; `public` is replaced by its schema.
    fn requalify_public(&mut self, location: usize, relname: &str, schema: &str) {
        let Some(name_at) = name_after_qualifier(self.text, location) else {
            return self.fail(format!(
                "the parser's location of `public.{relname}` ({location}) does not point at it"
            ));
        };
        let offset = self.base + location;
        self.record(
            location,
            format!("public.{relname}"),
            Decision::RequalifiedFromPublic {
                schema: schema.into(),
            },
            Some(Edit {
                offset,
                replaced: name_at - location,
                insert: format!("{}.", quote_identifier(schema)).into(),
            }),
        );
    }

    fn record(&mut self, location: usize, name: String, decision: Decision, edit: Option<Edit>) {
        let offset = self.base + location;
        self.found.entry(offset).or_insert((
            NameUse {
                name: name.into(),
                offset,
                decision,
            },
            edit,
        ));
    }
}
