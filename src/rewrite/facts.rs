//! What a session knows that changes how its statements read, and how a
//! rewrite follows it: temporary relations shadow mapped names, and a
//! session's own `SET search_path` decides where its creations go.

use super::encoding::EncodingClass;
use super::{Decision, Outcome, Rewrite};

/// What the session knows that changes how its statements read: the
/// server's `client_encoding` and `standard_conforming_strings` (followed
/// from its ParameterStatus messages) and the temporary relations the
/// session created under mapped names.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub encoding: EncodingClass,
    pub standard_conforming_strings: bool,
    pub temp_relations: TempRelations,
    /// The session ran `SET search_path` (and no RESET or DISCARD ALL
    /// since): objects it creates without a schema follow its own path.
    pub own_search_path: bool,
}

impl Default for SessionFacts {
    fn default() -> Self {
        SessionFacts {
            encoding: EncodingClass::AsciiSafe,
            // PostgreSQL's default since 9.1.
            standard_conforming_strings: true,
            temp_relations: TempRelations::default(),
            own_search_path: false,
        }
    }
}

/// Names the session created a temporary relation of. PostgreSQL looks
/// names up in pg_temp before the search_path, so a mapped name among them
/// is left bare from then on: it reaches the temporary relation while one
/// exists, and the mapped schema (first on the route's search_path)
/// otherwise. Never forgotten within a session, so a dropped or rolled
/// back temporary relation cannot leave a name qualified past a new one.
/// Unmapped names are kept too (a view over a temporary relation is
/// temporary), up to [`TempRelations::MAX`].
#[derive(Debug, Clone, Default)]
pub struct TempRelations {
    names: std::collections::HashSet<Box<str>>,
}

impl TempRelations {
    /// The most names one session keeps: a client creating temporary
    /// tables without end must not grow the proxy without end.
    pub const MAX: usize = 4096;

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn contains(&self, folded: &str) -> bool {
        self.names.contains(folded)
    }

    fn insert(&mut self, folded: String) {
        if self.names.len() < Self::MAX {
            self.names.insert(folded.into_boxed_str());
        }
    }
}

impl SessionFacts {
    /// Follow one rewrite in text order: record the temporary relations it
    /// creates and whether the session runs its own search_path, and leave
    /// as written each later name that one of them decides: a name a
    /// temporary relation shadows, an object created under the session's
    /// own search_path.
    #[inline]
    pub fn apply(&mut self, rewrite: &mut Rewrite, sql: &str) {
        let quiet = self.temp_relations.is_empty()
            && !self.own_search_path
            && !rewrite.names.iter().any(|n| {
                matches!(
                    n.decision,
                    Decision::TempCreated | Decision::SessionSearchPath { .. }
                )
            });
        if !quiet {
            self.follow(rewrite, sql);
        }
    }

    /// [`SessionFacts::apply`] for a rewrite that changes or uses them.
    #[inline(never)]
    fn follow(&mut self, rewrite: &mut Rewrite, sql: &str) {
        let mut dropped = Vec::new();
        for name in &mut rewrite.names {
            match &name.decision {
                Decision::TempCreated => {
                    self.temp_relations
                        .insert(folded_relation(&name.name, sql, name.offset))
                }
                Decision::SessionSearchPath { own } => self.own_search_path = *own,
                Decision::QualifiedByMap { .. }
                | Decision::QualifiedByFallback { .. }
                | Decision::QualifiedStringByMap { .. }
                    if self.temp_relations.contains(&folded_relation(
                        &name.name,
                        sql,
                        name.offset,
                    )) =>
                {
                    name.decision = Decision::TempShadowed;
                    dropped.push(name.offset);
                }
                // `'public.x'` of an unlisted name lost `public.` to reach
                // x through the route's search_path: not when the session
                // runs its own path, nor past a temporary x (pg_temp first).
                Decision::PublicDroppedFromString
                    if self.own_search_path
                        || super::strings::dropped_relation(sql, name.offset)
                            .is_some_and(|n| self.temp_relations.contains(&n)) =>
                {
                    name.decision = Decision::AlreadyQualified;
                    dropped.push(name.offset);
                }
                // The server answers the session's own path itself.
                Decision::ClientSearchPathShown if self.own_search_path => {
                    name.decision = Decision::AlreadyQualified;
                    dropped.push(name.offset);
                }
                Decision::CreatedIn { .. } if self.own_search_path => {
                    name.decision = Decision::CreatedBySessionPath;
                    dropped.push(name.offset);
                }
                _ => {}
            }
        }
        self.views_over_temporary_relations(rewrite, sql, &mut dropped);
        if dropped.is_empty() {
            return;
        }
        // A name's edit is the first at or after it: at the name for a
        // `schema.` prefix, right after it for CREATE EXTENSION's
        // ` SCHEMA s` (edits are sorted, one per name at most).
        for name_offset in dropped {
            let i = rewrite.edits.partition_point(|e| e.offset < name_offset);
            if i < rewrite.edits.len() {
                rewrite.edits.remove(i);
            }
        }
        if rewrite.edits.is_empty() && rewrite.outcome == Outcome::Rewritten {
            rewrite.outcome = Outcome::Unchanged;
        }
    }

    /// `CREATE VIEW v AS ... FROM t` over a temporary `t`: PostgreSQL makes
    /// the view temporary itself, and refuses it in any named schema. Such
    /// a view is left bare (and remembered). Only names before the next `;`
    /// count; a `;` inside a literal just keeps the create schema (and the
    /// server's refusal), never the other way round.
    fn views_over_temporary_relations(
        &mut self,
        rewrite: &mut Rewrite,
        sql: &str,
        dropped: &mut Vec<usize>,
    ) {
        if self.temp_relations.is_empty() {
            return;
        }
        for i in 0..rewrite.names.len() {
            let view = &rewrite.names[i];
            if !matches!(view.decision, Decision::CreatedIn { .. })
                || !word_before(sql, view.offset).eq_ignore_ascii_case("view")
            {
                continue;
            }
            let from = view.offset;
            let over_temporary = rewrite.names[i + 1..]
                .iter()
                .take_while(|n| !sql.get(from..n.offset).unwrap_or(";").contains(';'))
                .any(|n| {
                    let may_be_temporary = match &n.decision {
                        Decision::NotInMap | Decision::TempShadowed => true,
                        Decision::AlreadyQualified => n
                            .name
                            .get(..8)
                            .is_some_and(|p| p.eq_ignore_ascii_case("pg_temp.")),
                        _ => false,
                    };
                    may_be_temporary
                        && self
                            .temp_relations
                            .contains(&folded_relation(&n.name, sql, n.offset))
                });
            if over_temporary {
                let folded = folded_relation(&rewrite.names[i].name, sql, from);
                self.temp_relations.insert(folded);
                rewrite.names[i].decision = Decision::TempCreated;
                dropped.push(from);
            }
        }
    }
}

/// The word right before `offset` (after skipping whitespace), or "".
fn word_before(sql: &str, offset: usize) -> &str {
    let before = sql.get(..offset).unwrap_or("").trim_end();
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    &before[start..]
}

/// The relation name of a name use as PostgreSQL stores it: the last part,
/// folded to lower case unless it was quoted.
fn folded_relation(name: &str, sql: &str, offset: usize) -> String {
    let relation = name.rsplit('.').next().unwrap_or(name);
    let quoted = if name.contains('.') {
        // `pg_temp.users`: find how the relation part was written.
        sql.get(offset..)
            .and_then(|rest| {
                rest.find(relation)
                    .map(|p| p > 0 && rest.as_bytes()[p - 1] == b'"')
            })
            .unwrap_or(false)
    } else {
        sql.as_bytes().get(offset) == Some(&b'"')
    };
    super::quote::fold_identifier(relation, quoted)
}
