//! The gate's verdict on a change that passed review and tests: merge it,
//! or hold it for a human, and why — with the numbers that decided it. Path
//! rules come first; the policy's optional rules (blast radius, path history,
//! deleted tests) can only add reasons to hold it.

use serde::{Deserialize, Serialize};

use super::path_history::PathHistory;
use super::policy::{Policy, Risk};

/// One file of a change, as the diff against mainline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    pub added: usize,
    pub removed: usize,
    /// The file is gone after the change (a rename is not a deletion).
    pub deleted: bool,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    pub risk: Risk,
    /// Every reason to hold the change; empty when it merges.
    pub reasons: Vec<String>,
}

impl GateVerdict {
    pub fn reason(&self) -> String {
        self.reasons.join("; ")
    }
}

/// Paths over the history limit named one by one; the rest are counted.
const HISTORY_PATHS_SHOWN: usize = 5;

/// Judges `change` under `policy`, with `history` the incidents of the
/// recent runs (empty when the policy has no history rule).
pub fn assess_change(policy: &Policy, change: &[FileChange], history: &PathHistory) -> GateVerdict {
    let by_path = policy.assess(change.iter().map(|f| f.path.as_str()));
    if by_path.risk == Risk::Deny {
        return GateVerdict {
            risk: Risk::Deny,
            reasons: vec![by_path.reason],
        };
    }
    let mut reasons = Vec::new();
    if by_path.risk == Risk::Approve {
        reasons.push(by_path.reason);
    }
    if let Some(limits) = policy.blast_radius() {
        if let Some(max) = limits.max_files
            && change.len() > max
        {
            reasons.push(format!("touches {} files (max {max})", change.len()));
        }
        let lines: usize = change.iter().map(|f| f.added + f.removed).sum();
        if let Some(max) = limits.max_lines
            && lines > max
        {
            reasons.push(format!("changes {lines} lines (max {max})"));
        }
    }
    if let Some(rule) = policy.history() {
        let over: Vec<String> = change
            .iter()
            .filter_map(|f| {
                let incidents = history.of(&f.path);
                (incidents.total() > rule.max_incidents).then(|| {
                    format!(
                        "{} had {} incident{} in the last {} ({incidents}; max {})",
                        f.path,
                        incidents.total(),
                        plural(incidents.total() as usize),
                        runs(history.runs),
                        rule.max_incidents
                    )
                })
            })
            .collect();
        let hidden = over.len().saturating_sub(HISTORY_PATHS_SHOWN);
        reasons.extend(over.into_iter().take(HISTORY_PATHS_SHOWN));
        if hidden > 0 {
            reasons.push(format!(
                "{hidden} more path{} over the incident limit",
                plural(hidden)
            ));
        }
    }
    let deleted: Vec<&str> = change
        .iter()
        .filter(|f| f.deleted && policy.is_guarded_test(&f.path))
        .map(|f| f.path.as_str())
        .collect();
    if !deleted.is_empty() {
        reasons.push(format!("deletes {}", deleted.join(", ")));
    }
    GateVerdict {
        risk: if reasons.is_empty() {
            Risk::Auto
        } else {
            Risk::Approve
        },
        reasons,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn runs(n: usize) -> String {
    if n == 1 {
        "run".to_owned()
    } else {
        format!("{n} runs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::path_history::PathIncidents;
    use crate::domain::policy::PolicyFile;

    fn policy(text: &str) -> Policy {
        Policy::new(&toml::from_str::<PolicyFile>(text).unwrap()).unwrap()
    }

    fn file(path: &str, added: usize, removed: usize) -> FileChange {
        FileChange {
            path: path.into(),
            added,
            removed,
            deleted: false,
        }
    }

    fn deleted(path: &str) -> FileChange {
        FileChange {
            deleted: true,
            ..file(path, 0, 10)
        }
    }

    fn history(runs: usize, paths: &[(&str, PathIncidents)]) -> PathHistory {
        PathHistory {
            runs,
            by_path: paths.iter().map(|(p, i)| ((*p).to_owned(), *i)).collect(),
        }
    }

    const ALL_RULES: &str = "
        [blast_radius]
        max_files = 3
        max_lines = 100
        [history]
        runs = 10
        max_incidents = 3
        [tests]
    ";

    #[test]
    fn a_small_change_to_a_quiet_path_merges() {
        let v = assess_change(
            &policy(ALL_RULES),
            &[file("src/a.rs", 10, 2), file("tests/a.rs", 5, 0)],
            &history(10, &[]),
        );
        assert_eq!(v.risk, Risk::Auto);
        assert!(v.reasons.is_empty());
    }

    #[test]
    fn blast_radius_names_the_counts() {
        let change: Vec<FileChange> = (0..4).map(|i| file(&format!("f{i}"), 30, 1)).collect();
        let v = assess_change(&policy(ALL_RULES), &change, &history(0, &[]));
        assert_eq!(v.risk, Risk::Approve);
        assert_eq!(
            v.reasons,
            ["touches 4 files (max 3)", "changes 124 lines (max 100)"]
        );
        // At the limit is within it.
        let v = assess_change(
            &policy(ALL_RULES),
            &[file("a", 50, 50), file("b", 0, 0), file("c", 0, 0)],
            &history(0, &[]),
        );
        assert_eq!(v.risk, Risk::Auto, "{:?}", v.reasons);
    }

    #[test]
    fn a_troubled_path_is_held_with_its_incidents() {
        let db = PathIncidents {
            conflicts: 3,
            reworks: 1,
            ..Default::default()
        };
        let calm = PathIncidents {
            reworks: 3,
            ..Default::default()
        };
        let h = history(10, &[("src/db.rs", db), ("src/calm.rs", calm)]);
        let v = assess_change(
            &policy(ALL_RULES),
            &[file("src/db.rs", 1, 1), file("src/calm.rs", 1, 1)],
            &h,
        );
        assert_eq!(v.risk, Risk::Approve);
        assert_eq!(
            v.reasons,
            ["src/db.rs had 4 incidents in the last 10 runs (3 conflicts, 1 rework; max 3)"]
        );
        let one = history(1, &[("a", db)]);
        let v = assess_change(
            &policy("[history]\nmax_incidents = 0"),
            &[file("a", 1, 0)],
            &one,
        );
        assert!(v.reason().contains("in the last run ("), "{}", v.reason());
    }

    #[test]
    fn many_troubled_paths_are_summarised() {
        let bad = PathIncidents {
            conflicts: 1,
            ..Default::default()
        };
        let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        let h = history(
            2,
            &names.iter().map(|n| (n.as_str(), bad)).collect::<Vec<_>>(),
        );
        let change: Vec<FileChange> = names.iter().map(|n| file(n, 1, 0)).collect();
        let v = assess_change(&policy("[history]\nmax_incidents = 0"), &change, &h);
        assert_eq!(v.reasons.len(), HISTORY_PATHS_SHOWN + 1);
        assert_eq!(
            v.reasons.last().map(String::as_str),
            Some("3 more paths over the incident limit")
        );
    }

    #[test]
    fn deleting_a_test_is_held_editing_one_is_not() {
        let p = policy(ALL_RULES);
        let v = assess_change(
            &p,
            &[deleted("tests/a_test.rs"), deleted("src/old.rs")],
            &history(0, &[]),
        );
        assert_eq!(v.reasons, ["deletes tests/a_test.rs"]);
        let off = policy("[tests]\ngate_deletions = false");
        let v = assess_change(&off, &[deleted("tests/a_test.rs")], &history(0, &[]));
        assert_eq!(v.risk, Risk::Auto);
        let none = Policy::protected_only();
        let v = assess_change(&none, &[deleted("tests/a_test.rs")], &history(0, &[]));
        assert_eq!(v.risk, Risk::Auto, "without [tests] the rule is off");
    }

    #[test]
    fn path_rules_still_decide_and_deny_wins() {
        let p = policy(
            r#"
            [[rule]]
            paths = ["migrations/**"]
            risk = "approve"
            reason = "schema changes need a human"
            [blast_radius]
            max_files = 1
            "#,
        );
        let v = assess_change(
            &p,
            &[file("migrations/1.sql", 1, 0), file("b", 1, 0)],
            &history(0, &[]),
        );
        assert_eq!(
            v.reasons,
            [
                "migrations/1.sql: schema changes need a human",
                "touches 2 files (max 1)"
            ]
        );
        let v = assess_change(
            &p,
            &[file(".memofab/policy.toml", 1, 0), file("b", 1, 0)],
            &history(0, &[]),
        );
        assert_eq!(v.risk, Risk::Deny);
        assert_eq!(v.reasons.len(), 1);
    }
}
