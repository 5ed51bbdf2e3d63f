//! The gate's verdict on a change that passed review and tests: merge it,
//! or hold it for a human, and why — one typed reason per rule and path,
//! with the numbers that decided it. Path rules come first; the policy's
//! other rules (blast radius, path history, weakened tests, governance
//! paths, large binaries: `domain::change_rules`) can only add reasons to
//! hold it.

pub use super::change::{FileChange, GateFacts};
use super::change_rules;
use super::gate_reason::{self, GateReason};
use super::policy::{Policy, Risk};

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    pub risk: Risk,
    /// Every reason to hold the change; empty when it merges.
    pub reasons: Vec<GateReason>,
}

impl GateVerdict {
    /// The reasons in one line.
    pub fn reason(&self) -> String {
        gate_reason::joined(&self.reasons)
    }
}

/// Whether `--auto-approve` may approve a gate held for `reasons`: not one
/// held for a governance path (what agents are told, what CI runs, hooks),
/// unless the policy says `[governance] auto_approve = true`; nor a landing a
/// remote refused.
pub fn auto_approvable(policy: &Policy, reasons: &[GateReason]) -> bool {
    !reasons.iter().any(GateReason::is_remote_refusal)
        && (policy.auto_approves_governance() || !reasons.iter().any(GateReason::is_governance))
}

/// Paths over the history limit named one by one; the rest are counted.
const HISTORY_PATHS_SHOWN: usize = 5;

/// Judges `change` under `policy`, with `facts` what mainline and the
/// store say about it.
pub fn assess_change(policy: &Policy, change: &[FileChange], facts: &GateFacts) -> GateVerdict {
    let paths = change
        .iter()
        .flat_map(|f| std::iter::once(f.path.as_str()).chain(f.renamed_from.as_deref()));
    let by_path = policy.assess(paths);
    let path_rule = |a: super::policy::Assessment| GateReason::PathRule {
        path: a.path,
        reason: a.rule_reason,
    };
    if by_path.risk == Risk::Deny {
        return GateVerdict {
            risk: Risk::Deny,
            reasons: vec![path_rule(by_path)],
        };
    }
    let mut reasons = Vec::new();
    if by_path.risk == Risk::Approve {
        reasons.push(path_rule(by_path));
    }
    if let Some(limits) = policy.blast_radius() {
        if let Some(max) = limits.max_files
            && change.len() > max
        {
            reasons.push(GateReason::TooManyFiles {
                files: change.len(),
                max,
            });
        }
        let lines: usize = change.iter().map(|f| f.added + f.removed).sum();
        if let Some(max) = limits.max_lines
            && lines > max
        {
            reasons.push(GateReason::TooManyLines { lines, max });
        }
    }
    if let Some(rule) = policy.history() {
        let history = &facts.history;
        let over: Vec<GateReason> = change
            .iter()
            .filter_map(|f| {
                let incidents = history.of(&f.path);
                (incidents.total() > rule.max_incidents).then(|| GateReason::TroubledPath {
                    path: f.path.clone(),
                    incidents,
                    runs: history.runs,
                    max: rule.max_incidents,
                })
            })
            .collect();
        let hidden = over.len().saturating_sub(HISTORY_PATHS_SHOWN);
        reasons.extend(over.into_iter().take(HISTORY_PATHS_SHOWN));
        if hidden > 0 {
            reasons.push(GateReason::MoreTroubledPaths { count: hidden });
        }
    }
    reasons.extend(change_rules::reasons(policy, change, facts));
    GateVerdict {
        risk: if reasons.is_empty() {
            Risk::Auto
        } else {
            Risk::Approve
        },
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::path_history::{PathHistory, PathIncidents};
    use crate::domain::policy::PolicyFile;

    fn policy(text: &str) -> Policy {
        Policy::new(&toml::from_str::<PolicyFile>(text).unwrap()).unwrap()
    }

    fn file(path: &str, added: usize, removed: usize) -> FileChange {
        FileChange {
            path: path.into(),
            added,
            removed,
            ..FileChange::default()
        }
    }

    fn deleted(path: &str) -> FileChange {
        FileChange {
            deleted: true,
            ..file(path, 0, 10)
        }
    }

    fn history(runs: usize, paths: &[(&str, PathIncidents)]) -> GateFacts {
        GateFacts {
            history: PathHistory {
                runs,
                by_path: paths.iter().map(|(p, i)| ((*p).to_owned(), *i)).collect(),
            },
            ..GateFacts::default()
        }
    }

    fn texts(v: &GateVerdict) -> Vec<String> {
        v.reasons.iter().map(ToString::to_string).collect()
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
            texts(&v),
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
            texts(&v),
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
            v.reasons.last(),
            Some(&GateReason::MoreTroubledPaths { count: 3 })
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
        assert_eq!(texts(&v), ["deletes tests/a_test.rs"]);
        let off = policy("[tests]\ngate_deletions = false");
        let v = assess_change(&off, &[deleted("tests/a_test.rs")], &history(0, &[]));
        assert_eq!(v.risk, Risk::Auto);
        let none = Policy::protected_only();
        let v = assess_change(&none, &[deleted("tests/a_test.rs")], &history(0, &[]));
        assert_eq!(v.risk, Risk::Approve, "without [tests] the default rule");
    }

    #[test]
    fn auto_approve_leaves_governance_to_a_human_unless_the_policy_says() {
        let agents = GateReason::Governance {
            path: "AGENTS.md".into(),
            class: crate::domain::gate_reason::GovernanceClass::Instructions,
        };
        let shrunk = GateReason::TestShrunk {
            path: "tests/a.rs".into(),
            added: 0,
            removed: 3,
        };
        let p = Policy::protected_only();
        assert!(auto_approvable(&p, std::slice::from_ref(&shrunk)));
        assert!(!auto_approvable(&p, &[shrunk.clone(), agents.clone()]));
        let trusting = policy("[governance]\nauto_approve = true");
        assert!(auto_approvable(&trusting, &[shrunk, agents]));
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
            texts(&v),
            [
                "migrations/1.sql: schema changes need a human",
                "touches 2 files (max 1)"
            ]
        );
        assert_eq!(v.reasons[0].path(), Some("migrations/1.sql"));
        let v = assess_change(
            &p,
            &[file(".memofab/policy.toml", 1, 0), file("b", 1, 0)],
            &history(0, &[]),
        );
        assert_eq!(v.risk, Risk::Deny);
        assert_eq!(v.reasons.len(), 1);
        // A rename out of a denied path is a change to it.
        let moved = FileChange {
            renamed_from: Some("prompts/coder.md".into()),
            ..file("docs/coder.md", 0, 0)
        };
        let v = assess_change(&p, &[moved], &history(0, &[]));
        assert_eq!(v.risk, Risk::Deny);
    }
}
