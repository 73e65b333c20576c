//! How long AWS takes for the slow parts of an env, per step kind
//! (`aws-durations.json`: its `about` says where each figure comes from).
//!
//! One table, three readers: `up` and `down` start the steps that head the
//! longest chains first when slots are short (the walk's priority), the
//! engine benchmark models the env's critical path with it, and the fault
//! proxy's timing mode holds answers for those durations.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::engine::Operation;

/// The table, as shipped in the binary.
pub const TABLE: &str = include_str!("aws-durations.json");

struct Durations {
    default_seconds: f64,
    /// kind -> (up, down)
    by_kind: BTreeMap<String, (f64, f64)>,
}

fn table() -> &'static Durations {
    static TABLE_PARSED: OnceLock<Durations> = OnceLock::new();
    TABLE_PARSED.get_or_init(|| {
        let table: serde_json::Value =
            serde_json::from_str(TABLE).expect("aws-durations.json is JSON");
        let seconds = |v: &serde_json::Value| v.as_f64().expect("seconds");
        let mut by_kind = BTreeMap::new();
        for row in table["steps"].as_array().expect("steps") {
            for kind in row["kinds"].as_array().expect("kinds") {
                let kind = kind.as_str().expect("a kind").to_owned();
                by_kind.insert(kind, (seconds(&row["up"]), seconds(&row["down"])));
            }
        }
        Durations {
            default_seconds: seconds(&table["default_seconds"]),
            by_kind,
        }
    })
}

/// Typical seconds AWS takes for a step of `kind` to do `operation`
/// (`Destroy` reads the table's `down`, anything else its `up`).
pub fn typical_seconds(kind: &str, operation: Operation) -> f64 {
    let t = table();
    let (up, down) = t
        .by_kind
        .get(kind)
        .copied()
        .unwrap_or((t.default_seconds, t.default_seconds));
    match operation {
        Operation::Destroy => down,
        _ => up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_kinds_weigh_what_aws_takes_and_others_the_default() {
        assert_eq!(typical_seconds("rds:db-instance", Operation::Ensure), 600.0);
        assert_eq!(
            typical_seconds("rds:db-instance", Operation::Destroy),
            360.0
        );
        assert_eq!(typical_seconds("cloudwatch:alarm", Operation::Ensure), 1.0);
    }

    /// Every kind the table names is a kind the registry has: a renamed
    /// kind would silently fall back to the default.
    #[test]
    fn every_kind_in_the_table_is_a_step_kind() {
        let kinds: std::collections::BTreeSet<&str> =
            crate::resources::graph(&crate::spec::EnvSpec::default())
                .unwrap()
                .steps()
                .map(|s| s.kind())
                .collect();
        for kind in table().by_kind.keys() {
            assert!(kinds.contains(kind.as_str()), "{kind} is no step's kind");
        }
    }
}
