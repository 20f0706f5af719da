//! `SHOW REDIS`: the Redis side's namespace rules with their counters, one
//! row per rule and a last row for keys no rule matched.

use std::sync::atomic::Ordering;

use super::report::ResultSet;
use crate::state::ProxyState;

pub const REDIS_COLUMNS: [&str; 11] = [
    "namespace",
    "from",
    "from_db",
    "to",
    "to_db",
    "mode",
    "commands",
    "keys_rewritten",
    "keys_dry_run",
    "keys_unmatched",
    "errors",
];

pub fn redis(state: &ProxyState) -> ResultSet {
    let snapshot = state.config.load_full();
    let mut rows = Vec::new();
    let s = |v: &dyn ToString| Some(v.to_string());
    if let Some(cfg) = &snapshot.redis {
        let m = &state.metrics.redis;
        for rule in cfg.namespaces.rules() {
            let label = rule.label();
            let ns = m.namespace(&label);
            let get = |c: &std::sync::atomic::AtomicU64| s(&c.load(Ordering::Relaxed));
            rows.push(vec![
                Some(label),
                s(&String::from_utf8_lossy(&rule.from)),
                s(&rule.from_db),
                s(&String::from_utf8_lossy(&rule.to)),
                s(&rule.to_db),
                s(&cfg.mode.as_str()),
                get(&ns.commands),
                get(&ns.keys_rewritten),
                get(&ns.keys_dry_run),
                None,
                get(&ns.errors),
            ]);
        }
        rows.push(vec![
            s(&crate::metrics::redis::UNMATCHED),
            None,
            None,
            // What happens to them: forward or reject.
            s(&cfg.unmatched.as_str()),
            None,
            s(&cfg.mode.as_str()),
            None,
            None,
            None,
            s(&m.keys_unmatched.load(Ordering::Relaxed)),
            s(&(m.refused_unmatched.load(Ordering::Relaxed))),
        ]);
    }
    ResultSet::show(REDIS_COLUMNS.to_vec(), rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn one_row_per_rule_and_one_for_unmatched_keys() {
        let config = Config::from_yaml(
            "databases: {heal7: {}}\nredis:\n  namespaces:\n    - {from: \"saju:\", to: \"saju_service:\", to_db: 1}\n  unmatched: reject\n",
            "t",
        )
        .unwrap();
        let state = ProxyState::new(config);
        state
            .metrics
            .redis
            .namespace("saju:@0")
            .keys_rewritten
            .fetch_add(3, Ordering::Relaxed);
        let set = redis(&state);
        assert_eq!(set.columns, REDIS_COLUMNS);
        assert_eq!(set.rows.len(), 2);
        assert_eq!(set.rows[0][0].as_deref(), Some("saju:@0"));
        assert_eq!(set.rows[0][4].as_deref(), Some("1"));
        assert_eq!(set.rows[0][7].as_deref(), Some("3"));
        assert_eq!(set.rows[1][3].as_deref(), Some("reject"));
        let none = ProxyState::new(Config::from_yaml("databases: {heal7: {}}\n", "t").unwrap());
        assert!(redis(&none).rows.is_empty());
    }
}
