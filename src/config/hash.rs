//! The mapping hash: what every instance behind one balancer must agree on
//! (the `databases` section), hashed in its validated form, so comments,
//! blank lines, quoting, the order of a database entry's keys and spelled
//! out defaults do not change it, while anything that changes where a
//! name goes does. Per-instance settings (`proxy.*`) are not in it.

use sha2::{Digest, Sha256};

use super::Database;

/// Hex digits shown: 64 bits tell mappings apart; nobody attacks this.
const SHOWN_HEX_DIGITS: usize = 16;

/// The hash of `databases` (file order matters: the first entry takes
/// unknown names, and schema order makes the default search_path).
pub(super) fn mapping_hash(databases: &[Database]) -> String {
    let mut h = Canonical(Sha256::new());
    h.text("heal7-proxy mapping v1");
    h.count(databases.len());
    for db in databases {
        h.text(&db.name);
        h.text(&db.host);
        h.count(db.port.into());
        h.text(&db.database);
        h.text(db.mode.as_str());
        h.text(db.public_qualified.as_str());
        h.text(&db.create_schema);
        h.list(&db.search_path);
        h.text(db.tls.mode.as_str());
        h.count(db.schemas.len());
        for schema in &db.schemas {
            h.text(&schema.name);
            for kind in super::ObjectKind::ALL {
                h.list(schema.names(kind));
            }
        }
        h.count(db.aliases.len());
        for alias in &db.aliases {
            h.text(&alias.name);
            h.text(&alias.default_schema);
            h.list(&alias.search_path);
            h.text(&alias.create_schema);
        }
    }
    let digest = h.0.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..SHOWN_HEX_DIGITS].to_owned()
}

/// Length-prefixed fields, so no two different mappings feed the same
/// bytes (`["ab"]` and `["a", "b"]` differ).
struct Canonical(Sha256);

impl Canonical {
    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }

    fn text(&mut self, s: &str) {
        self.count(s.len());
        self.0.update(s.as_bytes());
    }

    fn list(&mut self, items: &[String]) {
        self.count(items.len());
        for item in items {
            self.text(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn hash(text: &str) -> String {
        Config::from_yaml(text, "t").unwrap().mapping_hash
    }

    const BASE: &str = "proxy: {listen: \"127.0.0.1:6432\"}\ndatabases:\n  heal7:\n    host: db\n    schemas:\n      a: {tables: [users]}\n      b: {tables: [charts]}\n";

    #[test]
    fn per_instance_settings_and_spelling_do_not_change_the_hash() {
        let base = hash(BASE);
        assert_eq!(base.len(), 16);
        let same = [
            // Other per-instance settings.
            "proxy: {listen: \"0.0.0.0:5432\", peer_id: 3, admin_listen: \"127.0.0.1:9930\"}\ndatabases:\n  heal7:\n    host: db\n    schemas:\n      a: {tables: [users]}\n      b: {tables: [charts]}\n",
            // Comments, block style, key order inside an entry, defaults
            // spelled out.
            "# comment\ndatabases:\n  heal7:\n    schemas:\n      a:\n        tables:\n          - users   # moved\n      b: {tables: [\"charts\"]}\n    port: 5432\n    host: db\n    database: heal7\n    mode: rewrite\n",
        ];
        for text in same {
            assert_eq!(hash(text), base, "{text}");
        }
    }

    #[test]
    fn what_changes_where_a_name_goes_changes_the_hash() {
        let base = hash(BASE);
        let different = [
            BASE.replace("[users]", "[users, kasi_cache]"),
            BASE.replace("host: db", "host: db2"),
            // Schema order makes the default search_path.
            BASE.replace(
                "      a: {tables: [users]}\n      b: {tables: [charts]}\n",
                "      b: {tables: [charts]}\n      a: {tables: [users]}\n",
            ),
            BASE.replace("    host: db\n", "    host: db\n    mode: dry_run\n"),
            // A table becoming a view is a different mapping.
            BASE.replace("{tables: [users]}", "{views: [users]}"),
        ];
        for text in &different {
            assert_ne!(hash(text), base, "{text}");
        }
    }
}
