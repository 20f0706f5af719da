//! The cut-over readiness report: every bare table name clients use that
//! the map does not list, per database, user and application_name, with the
//! first and last time seen and one example statement.
//!
//! This is how an operator learns which tables a service still reads from
//! `public` before switching it. Bounded: past [`MAX_ENTRIES`] distinct
//! keys new ones are only counted as dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::clients::ClientIdentity;
use crate::rewrite::{Decision, NameUse, mask_literals};

/// Distinct (database, user, application, table) keys kept.
pub const MAX_ENTRIES: usize = 10_000;
/// Example statements are cut to this many bytes (on a char boundary).
pub const EXAMPLE_BYTES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnmappedKey {
    pub database: String,
    pub user: String,
    pub application_name: String,
    pub table: String,
}

#[derive(Debug, Clone)]
pub struct UnmappedEntry {
    pub count: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub example: String,
}

#[derive(Debug, Default)]
pub struct UnmappedReport {
    entries: Mutex<Entries>,
    /// New keys refused because the report was full.
    pub dropped: AtomicU64,
}

/// By client, then table: a statement from a known client and table is
/// counted without allocating a key.
#[derive(Debug, Default)]
struct Entries {
    by_client: HashMap<ClientIdentity, HashMap<String, UnmappedEntry>>,
    /// Entries over all clients (bounded by [`MAX_ENTRIES`]).
    len: usize,
}

impl UnmappedReport {
    /// Record the unmapped bare names among `names` (from one statement).
    /// Cheap when there are none: no lock is taken.
    pub fn record(&self, who: &ClientIdentity, names: &[NameUse], sql: &str) {
        let mut unmapped = names
            .iter()
            .filter(|n| n.decision == Decision::NotInMap)
            .peekable();
        if unmapped.peek().is_none() {
            return;
        }
        let now = SystemTime::now();
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entries = &mut *guard;
        if !entries.by_client.contains_key(who) {
            if entries.len >= MAX_ENTRIES {
                // Full: a new client would only add an empty table map.
                self.dropped
                    .fetch_add(unmapped.count() as u64, Ordering::Relaxed);
                return;
            }
            entries.by_client.insert(who.clone(), HashMap::new());
        }
        let tables = entries.by_client.get_mut(who).expect("inserted above");
        // Masked once per statement, and only when it adds an entry.
        let mut example = None;
        for name in unmapped {
            if let Some(e) = tables.get_mut(&*name.name) {
                e.count += 1;
                e.last_seen = now;
                continue;
            }
            if entries.len >= MAX_ENTRIES {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            entries.len += 1;
            tables.insert(
                name.name.to_string(),
                UnmappedEntry {
                    count: 1,
                    first_seen: now,
                    last_seen: now,
                    example: example
                        .get_or_insert_with(|| truncate(&mask_literals(sql), EXAMPLE_BYTES))
                        .clone(),
                },
            );
        }
    }

    /// Every entry, sorted by database, table, user, application.
    pub fn rows(&self) -> Vec<(UnmappedKey, UnmappedEntry)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<_> = entries
            .by_client
            .iter()
            .flat_map(|(who, tables)| {
                tables.iter().map(move |(table, entry)| {
                    let key = UnmappedKey {
                        database: who.database.clone(),
                        user: who.user.clone(),
                        application_name: who.application_name.clone(),
                        table: table.clone(),
                    };
                    (key, entry.clone())
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            (&a.0.database, &a.0.table, &a.0.user, &a.0.application_name).cmp(&(
                &b.0.database,
                &b.0.table,
                &b.0.user,
                &b.0.application_name,
            ))
        });
        rows
    }
}

fn truncate(sql: &str, max: usize) -> String {
    if sql.len() <= max {
        return sql.to_owned();
    }
    let mut end = max;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &sql[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, decision: Decision) -> NameUse {
        NameUse {
            name: n.into(),
            offset: 0,
            decision,
        }
    }

    #[test]
    fn counts_unmapped_names_per_client_and_keeps_the_first_example() {
        let r = UnmappedReport::default();
        let who = ClientIdentity {
            database: "heal7".into(),
            user: "crawler".into(),
            application_name: "8006".into(),
        };
        r.record(
            &who,
            &[
                name("legacy_log", Decision::NotInMap),
                name(
                    "users",
                    Decision::QualifiedByMap {
                        schema: "shared_common".into(),
                    },
                ),
            ],
            "SELECT * FROM legacy_log JOIN users USING (id)",
        );
        r.record(
            &who,
            &[name("legacy_log", Decision::NotInMap)],
            "SELECT 2 FROM legacy_log",
        );
        r.record(
            &who,
            &[name("cte", Decision::Cte)],
            "WITH cte AS (SELECT 1) SELECT * FROM cte",
        );
        let rows = r.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0.table, "legacy_log");
        assert_eq!(rows[0].1.count, 2);
        assert_eq!(
            rows[0].1.example,
            "SELECT * FROM legacy_log JOIN users USING (id)"
        );
    }

    #[test]
    fn a_full_report_counts_new_names_as_dropped() {
        let r = UnmappedReport::default();
        let who = |app: usize| ClientIdentity {
            database: "heal7".into(),
            user: "u".into(),
            application_name: app.to_string(),
        };
        for i in 0..MAX_ENTRIES {
            r.record(
                &who(i % 7),
                &[name(&format!("t{i}"), Decision::NotInMap)],
                "q",
            );
        }
        assert_eq!(r.rows().len(), MAX_ENTRIES);
        // A known table of a known client is still counted; anything new is not kept.
        r.record(&who(0), &[name("t0", Decision::NotInMap)], "q");
        r.record(&who(0), &[name("new", Decision::NotInMap)], "q");
        r.record(&who(99), &[name("t0", Decision::NotInMap)], "q");
        assert_eq!(r.dropped.load(Ordering::Relaxed), 2);
        let rows = r.rows();
        assert_eq!(rows.len(), MAX_ENTRIES);
        let t0 = rows.iter().find(|(k, _)| k.table == "t0").unwrap();
        assert_eq!(t0.1.count, 2);
    }

    #[test]
    fn examples_are_cut_on_a_char_boundary() {
        let long = "가".repeat(100); // 300 bytes
        let cut = truncate(&long, EXAMPLE_BYTES);
        assert!(cut.ends_with("..."));
        assert!(cut.len() <= EXAMPLE_BYTES + 3);
    }
}
