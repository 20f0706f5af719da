//! The scope-aware walk over one parsed statement: every object name in a
//! table position, with whether a CTE of that name is in scope there.
//!
//! sqlparser's derived visitor reaches every node; its `visit_relation` hook
//! fires for most table positions (FROM items, INSERT/UPDATE/DELETE/MERGE
//! targets, TRUNCATE, LOCK, CREATE TABLE/VIEW/INDEX, ...). The positions it
//! does not mark (COPY, DROP, GRANT/REVOKE, COMMENT ON, REFERENCES, LIKE,
//! INHERITS, SELECT INTO, triggers, VACUUM, ALTER TABLE ATTACH/DETACH
//! PARTITION and [NO] INHERIT) are picked up from their statements here.
//! What neither reaches is caught afterwards by the keyword cross-check in
//! `statement`, so an unhandled AST form cannot silently drop a name after
//! a table keyword.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::tokenizer::Location;

use sqlparser::ast::{
    ColumnDef, ColumnOption, CommentObject, CopySource, CreateTableLikeKind, Expr, FromTable,
    GrantObjects, Ident, ObjectName, ObjectNamePart, ObjectType, Query, Select, SequenceOptions,
    SetExpr, Statement, TableConstraint, TableFactor, TableObject, TableWithJoins, Visit, Visitor,
};

/// One object name found in a table position.
#[derive(Debug, Clone)]
pub(crate) struct TableMention {
    /// The parts that name the table (for `COMMENT ON COLUMN t.c`, just `t`).
    pub(crate) parts: Vec<Ident>,
    /// A bare name that a CTE in scope answers to (never set for targets of
    /// INSERT/UPDATE/DELETE/MERGE and DDL, which always name a table).
    pub(crate) names_cte: bool,
    /// A name that must not be qualified whatever the map says: the new
    /// table of `CREATE TEMP TABLE` / `SELECT INTO TEMP` lives in pg_temp.
    pub(crate) keep_bare: bool,
    /// The statement creates an object of this name (not a temporary one):
    /// a bare name the map does not list goes to the create schema.
    pub(crate) creates: Creates,
    /// Which of the map's namespaces the name is looked up in.
    pub(crate) namespace: Namespace,
}

/// What a mention creates, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Creates {
    Nothing,
    /// An object of this name, in the mention's namespace.
    Object,
    /// `CREATE EXTENSION name` without SCHEMA: its objects go to the create
    /// schema through an added SCHEMA clause (after `WITH` if written).
    ExtensionObjects {
        with_keyword: bool,
    },
}

/// PostgreSQL's name spaces, as far as the map lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespace {
    /// Tables, views, materialized views, sequences, foreign tables.
    Relation,
    /// Functions, procedures, aggregates.
    Routine,
    /// Types and domains.
    Type,
    /// Collations, operators, text search objects, extensions: never in
    /// the map, only the create schema applies.
    Other,
}

/// What the walk found, or why it could not account for a name.
pub(crate) struct WalkResult {
    pub(crate) mentions: Vec<TableMention>,
    /// Where expressions name a column (or a column qualifier): a mapped
    /// word there is no table, whatever keyword precedes it
    /// (`x IS DISTINCT FROM users`, `extract(day FROM kasi_cache)`).
    pub(crate) column_locations: Vec<Location>,
    pub(crate) unsupported: Option<String>,
    /// The statement sets the session's own search_path (`Some(true)`:
    /// SET search_path) or gives it back (`Some(false)`: RESET search_path,
    /// RESET ALL, DISCARD ALL).
    pub(crate) search_path: Option<bool>,
    /// String literals read as names (`nextval('...')`, `'...'::regclass`).
    pub(crate) strings: Vec<super::strings::StringMention>,
}

/// Postgres' identity of a name: unquoted folds to lower case.
pub(crate) fn normalized(ident: &Ident) -> String {
    super::quote::fold_identifier(&ident.value, ident.quote_style.is_some())
}

pub(crate) fn walk_statement(statement: &Statement) -> WalkResult {
    let mut walker = TableWalker::default();
    let _ = statement.visit(&mut walker);
    WalkResult {
        mentions: walker.mentions,
        column_locations: walker.column_locations,
        unsupported: walker.unsupported,
        search_path: search_path_change(statement).or(walker.sets_search_path.then_some(true)),
        strings: walker.strings,
    }
}

/// `set_config('search_path', value, is_local)`, the function form of SET.
fn sets_search_path(function: &sqlparser::ast::Function) -> bool {
    use sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments, Value};
    let [ObjectNamePart::Identifier(name)] = &function.name.0[..] else {
        return false;
    };
    if normalized(name) != "set_config" {
        return false;
    }
    let FunctionArguments::List(list) = &function.args else {
        return false;
    };
    matches!(
        list.args.first(),
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))))
            if matches!(&v.value, Value::SingleQuotedString(s) if s.eq_ignore_ascii_case("search_path"))
    )
}

/// See [`WalkResult::search_path`].
fn search_path_change(statement: &Statement) -> Option<bool> {
    use sqlparser::ast::{DiscardObject, Reset, Set};
    let is_search_path = |name: &ObjectName| matches!(&name.0[..], [ObjectNamePart::Identifier(i)] if normalized(i) == "search_path");
    match statement {
        Statement::Set(Set::SingleAssignment { variable, .. }) if is_search_path(variable) => {
            Some(true)
        }
        Statement::Set(Set::ParenthesizedAssignments { variables, .. })
            if variables.iter().any(is_search_path) =>
        {
            Some(true)
        }
        Statement::Reset(reset) => match &reset.reset {
            Reset::ALL => Some(false),
            Reset::ConfigurationParameter(name) if is_search_path(name) => Some(false),
            _ => None,
        },
        Statement::Discard {
            object_type: DiscardObject::ALL,
        } => Some(false),
        _ => None,
    }
}

/// Node identity inside one AST that is not moved while it is visited.
fn address<T>(node: &T) -> usize {
    node as *const T as usize
}

#[derive(Default)]
struct TableWalker {
    /// CTE names visible at the current point, innermost query last; each
    /// entry is the full visible set (queries rarely nest CTEs deeply).
    scopes: Vec<Vec<String>>,
    /// CTE bodies not yet entered -> the CTE names visible inside them.
    cte_body_scopes: std::collections::HashMap<usize, Vec<String>>,
    /// Names that always denote a real table (DML targets, DDL names).
    always_table: HashSet<usize>,
    /// Relation names that are not tables (table functions).
    not_table: HashSet<usize>,
    /// Relation names to report but never qualify.
    keep_bare: HashSet<usize>,
    /// Relation names a CREATE statement creates.
    creating: HashSet<usize>,
    /// A `set_config('search_path', ...)` call was seen.
    sets_search_path: bool,
    mentions: Vec<TableMention>,
    column_locations: Vec<Location>,
    unsupported: Option<String>,
    strings: Vec<super::strings::StringMention>,
}

impl TableWalker {
    fn cte_visible(&self, name: &str) -> bool {
        self.scopes
            .last()
            .is_some_and(|s| s.iter().any(|n| n == name))
    }

    fn identifiers(&mut self, name: &ObjectName) -> Option<Vec<Ident>> {
        let mut parts = Vec::with_capacity(name.0.len());
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(i) => parts.push(i.clone()),
                ObjectNamePart::Function(_) => {
                    self.unsupported = Some(format!("computed object name `{name}`"));
                    return None;
                }
            }
        }
        Some(parts)
    }

    /// Record a table name; `always_table` names ignore CTEs.
    fn mention(&mut self, name: &ObjectName, always_table: bool) {
        let Some(parts) = self.identifiers(name) else {
            return;
        };
        let keep_bare = self.keep_bare.contains(&address(name));
        let creates = if self.creating.contains(&address(name)) && !keep_bare {
            Creates::Object
        } else {
            Creates::Nothing
        };
        self.mention_parts(parts, always_table, keep_bare, creates);
    }

    fn mention_parts(
        &mut self,
        parts: Vec<Ident>,
        always_table: bool,
        keep_bare: bool,
        creates: Creates,
    ) {
        let names_cte =
            !always_table && parts.len() == 1 && self.cte_visible(&normalized(&parts[0]));
        self.mentions.push(TableMention {
            parts,
            names_cte,
            keep_bare,
            creates,
            namespace: Namespace::Relation,
        });
    }

    /// A name outside the relation namespace: a created one, or a
    /// reference the map may know (`public.user_count()`).
    fn other_name(&mut self, name: &ObjectName, namespace: Namespace, creates: Creates) {
        if let Some(parts) = self.identifiers(name) {
            self.never_a_cte(parts, namespace, creates);
        }
    }

    /// A name no CTE can answer to and that is not a temporary creation.
    fn never_a_cte(&mut self, parts: Vec<Ident>, namespace: Namespace, creates: Creates) {
        self.mentions.push(TableMention {
            parts,
            names_cte: false,
            keep_bare: false,
            creates,
            namespace,
        });
    }

    /// `TABLE name` as a query body (alone or as a set-operation branch):
    /// a table reference that sqlparser keeps as plain identifiers.
    fn table_commands(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Table(table) => {
                let parts: Vec<Ident> = table
                    .schema_name
                    .iter()
                    .chain(table.table_name.iter())
                    .cloned()
                    .collect();
                if !parts.is_empty() {
                    self.mention_parts(parts, false, false, Creates::Nothing);
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.table_commands(left);
                self.table_commands(right);
            }
            // Nested queries are entered (with their own scope) by the visitor.
            _ => {}
        }
    }

    /// `COMMENT ON COLUMN t.c`: the table is every part but the last.
    fn mention_column_owner(&mut self, name: &ObjectName) {
        let Some(mut parts) = self.identifiers(name) else {
            return;
        };
        if parts.len() < 2 {
            return;
        }
        parts.pop();
        self.never_a_cte(parts, Namespace::Relation, Creates::Nothing);
    }

    fn mark_target(&mut self, table: &TableWithJoins) {
        self.mark_target_factor(&table.relation);
    }

    fn mark_target_factor(&mut self, factor: &TableFactor) {
        if let TableFactor::Table { name, .. } = factor {
            self.always_table.insert(address(name));
        }
    }

    fn column_references(&mut self, column: &ColumnDef) {
        for option in &column.options {
            if let ColumnOption::ForeignKey(fk) = &option.option {
                self.mention(&fk.foreign_table, true);
            }
        }
    }

    fn constraint_references(&mut self, constraint: &TableConstraint) {
        if let TableConstraint::ForeignKey(fk) = constraint {
            self.mention(&fk.foreign_table, true);
        }
    }

    fn grant_objects(&mut self, objects: Option<&GrantObjects>) {
        if let Some(GrantObjects::Tables(names) | GrantObjects::Views(names)) = objects {
            for name in names {
                self.mention(name, true);
            }
        }
    }
}

impl Visitor for TableWalker {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // A CTE body sees what its WITH list allows (registered when the
        // owning query was entered); any other query sees its parent's set.
        let base = self
            .cte_body_scopes
            .remove(&address(query))
            .unwrap_or_else(|| self.scopes.last().cloned().unwrap_or_default());
        let Some(with) = &query.with else {
            self.scopes.push(base);
            self.table_commands(&query.body);
            return ControlFlow::Continue(());
        };
        let names: Vec<String> = with
            .cte_tables
            .iter()
            .map(|cte| normalized(&cte.alias.name))
            .collect();
        for (i, cte) in with.cte_tables.iter().enumerate() {
            // Non-recursive: CTE i sees only the CTEs before it, not itself.
            // RECURSIVE: every CTE of the list sees all of them.
            let visible_count = if with.recursive { names.len() } else { i };
            let mut visible = base.clone();
            visible.extend_from_slice(&names[..visible_count]);
            self.cte_body_scopes.insert(address(&*cte.query), visible);
        }
        let mut visible = base;
        visible.extend(names);
        self.scopes.push(visible);
        self.table_commands(&query.body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        // `SELECT ... INTO newtab` creates a table (not a relation to sqlparser).
        // Postgres allows exactly one target, a (possibly qualified) name.
        if let Some(into) = &select.into {
            for target in &into.targets {
                let parts = match target {
                    Expr::Identifier(ident) => vec![ident.clone()],
                    Expr::CompoundIdentifier(idents) => idents.clone(),
                    other => {
                        self.unsupported = Some(format!("SELECT INTO target `{other}`"));
                        continue;
                    }
                };
                self.mentions.push(TableMention {
                    parts,
                    names_cte: false,
                    keep_bare: into.temporary,
                    creates: if into.temporary {
                        Creates::Nothing
                    } else {
                        Creates::Object
                    },
                    namespace: Namespace::Relation,
                });
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        // `FROM generate_series(1, 3)`: a function, even if a table shares its name.
        if let TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
        {
            self.not_table.insert(address(name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        super::strings::strings_of(expr, &mut self.strings);
        match expr {
            Expr::Identifier(ident) => self.column_locations.push(ident.span.start),
            Expr::CompoundIdentifier(idents) => {
                self.column_locations
                    .extend(idents.first().map(|i| i.span.start));
                // `public.users.name`: a column of a public-spelled table,
                // which must follow the table wherever it is sent.
                if let [schema, table, _] = &idents[..]
                    && normalized(schema) == "public"
                {
                    self.never_a_cte(
                        vec![schema.clone(), table.clone()],
                        Namespace::Relation,
                        Creates::Nothing,
                    );
                }
            }
            Expr::Function(function) if function.name.0.len() == 2 => {
                self.other_name(&function.name, Namespace::Routine, Creates::Nothing)
            }
            // set_config('search_path', ...): the session's own path, as SET.
            Expr::Function(function) if sets_search_path(function) => {
                self.sets_search_path = true;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        if !self.not_table.contains(&address(name)) {
            let always = self.always_table.contains(&address(name));
            self.mention(name, always);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Insert(insert) => {
                if let TableObject::TableName(name) = &insert.table {
                    self.always_table.insert(address(name));
                }
            }
            Statement::Update(update) => self.mark_target(&update.table),
            Statement::Delete(delete) => {
                let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) =
                    &delete.from;
                for table in tables {
                    self.mark_target(table);
                }
            }
            Statement::Merge(merge) => self.mark_target_factor(&merge.table),
            Statement::Truncate(truncate) => {
                for target in &truncate.table_names {
                    self.always_table.insert(address(&target.name));
                }
            }
            Statement::Lock(lock) => {
                for target in &lock.tables {
                    self.always_table.insert(address(&target.name));
                }
            }
            Statement::Copy {
                source: CopySource::Table { table_name, .. },
                ..
            } => self.mention(table_name, true),
            Statement::Drop {
                object_type:
                    ObjectType::Table
                    | ObjectType::View
                    | ObjectType::MaterializedView
                    | ObjectType::ForeignTable,
                names,
                ..
            } => {
                for name in names {
                    self.mention(name, true);
                }
            }
            Statement::CreateTable(create) => {
                self.always_table.insert(address(&create.name));
                self.creating.insert(address(&create.name));
                if create.temporary {
                    self.keep_bare.insert(address(&create.name));
                }
                if let Some(
                    CreateTableLikeKind::Parenthesized(like) | CreateTableLikeKind::Plain(like),
                ) = &create.like
                {
                    self.mention(&like.name, true);
                }
                for column in &create.columns {
                    self.column_references(column);
                }
                for constraint in &create.constraints {
                    self.constraint_references(constraint);
                }
                for parent in create.inherits.iter().flatten() {
                    self.mention(parent, true);
                }
                if let Some(source) = &create.clone {
                    self.mention(source, true);
                }
            }
            Statement::AlterTable(alter) => {
                use sqlparser::ast::AlterTableOperation as Op;
                self.always_table.insert(address(&alter.name));
                for operation in &alter.operations {
                    match operation {
                        Op::AddConstraint { constraint, .. } => {
                            self.constraint_references(constraint)
                        }
                        Op::AddColumn { column_def, .. } => self.column_references(column_def),
                        Op::AttachPartitionOf { partition, .. }
                        | Op::DetachPartitionOf { partition, .. } => self.mention(partition, true),
                        Op::Inherit { parent } | Op::NoInherit { parent } => {
                            self.mention(parent, true)
                        }
                        _ => {}
                    }
                }
            }
            Statement::CreateView(view) => {
                self.always_table.insert(address(&view.name));
                self.creating.insert(address(&view.name));
                if view.temporary {
                    self.keep_bare.insert(address(&view.name));
                }
            }
            Statement::CreateType { name, .. } => {
                self.other_name(name, Namespace::Type, Creates::Object)
            }
            Statement::CreateDomain(domain) => {
                self.other_name(&domain.name, Namespace::Type, Creates::Object)
            }
            Statement::CreateFunction(function) if !function.temporary => {
                self.other_name(&function.name, Namespace::Routine, Creates::Object)
            }
            Statement::CreateProcedure { name, .. } => {
                self.other_name(name, Namespace::Routine, Creates::Object)
            }
            Statement::CreateAggregate(aggregate) => {
                self.other_name(&aggregate.name, Namespace::Routine, Creates::Object)
            }
            Statement::CreateCollation(collation) => {
                self.other_name(&collation.name, Namespace::Other, Creates::Object)
            }
            Statement::CreateTextSearch(search) => {
                self.other_name(&search.name, Namespace::Other, Creates::Object)
            }
            Statement::CreateOperator(operator) => {
                self.other_name(&operator.name, Namespace::Other, Creates::Object)
            }
            Statement::CreateExtension(extension) if extension.schema.is_none() => {
                self.never_a_cte(
                    vec![extension.name.clone()],
                    Namespace::Other,
                    Creates::ExtensionObjects {
                        with_keyword: extension.with_keyword,
                    },
                );
            }
            Statement::CreateForeignTable(table) => {
                self.creating.insert(address(&table.name));
                self.mention(&table.name, true);
            }
            Statement::CreateIndex(index) => {
                self.always_table.insert(address(&index.table_name));
            }
            Statement::CreateTrigger(trigger) => {
                self.mention(&trigger.table_name, true);
                if let Some(referenced) = &trigger.referenced_table_name {
                    self.mention(referenced, true);
                }
            }
            Statement::DropTrigger(trigger) => {
                if let Some(table) = &trigger.table_name {
                    self.mention(table, true);
                }
            }
            Statement::Vacuum(vacuum) => {
                if let Some(table) = &vacuum.table_name {
                    self.mention(table, true);
                }
            }
            Statement::CreateSequence {
                temporary,
                name,
                sequence_options,
                ..
            } => {
                // A sequence is a relation: the map may list it.
                if let Some(parts) = self.identifiers(name) {
                    let creates = if *temporary {
                        Creates::Nothing
                    } else {
                        Creates::Object
                    };
                    self.mention_parts(parts, true, *temporary, creates);
                }
                // `OWNED BY users.id`: the table part of a column name.
                for option in sequence_options {
                    if let SequenceOptions::OwnedBy(Some(column)) = option {
                        self.mention_column_owner(column);
                    }
                }
            }
            Statement::Grant(grant) => self.grant_objects(grant.objects.as_ref()),
            Statement::Revoke(revoke) => self.grant_objects(revoke.objects.as_ref()),
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => match object_type {
                CommentObject::Table
                | CommentObject::View
                | CommentObject::MaterializedView
                | CommentObject::ForeignTable => self.mention(object_name, true),
                CommentObject::Column => self.mention_column_owner(object_name),
                _ => {}
            },
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
