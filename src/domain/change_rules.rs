//! The gate's rules that are on by default, as pure functions over a diff
//! summary: weakened tests (deleted, renamed out of the test paths, shrunk),
//! the test command's own files, governance paths, and large binaries.
//! Adding tests never gates. Each reason names its path.

use super::change::{FileChange, GateFacts};
use super::gate_reason::{GateReason, GovernanceClass};
use super::policy::Policy;

/// The reasons the default rules find in `change`, one per path and rule.
pub fn reasons(policy: &Policy, change: &[FileChange], facts: &GateFacts) -> Vec<GateReason> {
    let mut reasons = Vec::new();
    for file in change {
        reasons.extend(tests(policy, file, facts));
        if let Some(class) = governance(policy, file, facts) {
            reasons.push(GateReason::Governance {
                path: file.path.clone(),
                class,
            });
        }
        if let Some(max) = policy.max_binary_bytes()
            && !file.deleted
            && file.binary
            && file.bytes > max
        {
            reasons.push(GateReason::LargeBinary {
                path: file.path.clone(),
                bytes: file.bytes,
                max,
            });
        }
    }
    reasons
}

/// What `file` does to the tests: at most one reason, the strongest.
fn tests(policy: &Policy, file: &FileChange, facts: &GateFacts) -> Option<GateReason> {
    let rule = policy.tests();
    let old = file.renamed_from.as_deref().unwrap_or(&file.path);
    if rule.gate_runner
        && (facts.runner_files.contains(&file.path) || facts.runner_files.contains(old))
    {
        return Some(GateReason::TestRunnerChanged {
            path: old.to_owned(),
        });
    }
    if !rule.gate_weakened || !policy.is_test(old) {
        return None;
    }
    if file.deleted {
        return policy
            .is_guarded_test(old)
            .then(|| GateReason::TestDeleted {
                path: old.to_owned(),
            });
    }
    if file.renamed_from.is_some() && !policy.is_test(&file.path) {
        return Some(GateReason::TestMovedOut {
            from: old.to_owned(),
            to: file.path.clone(),
        });
    }
    (file.removed > file.added).then(|| GateReason::TestShrunk {
        path: file.path.clone(),
        added: file.added,
        removed: file.removed,
    })
}

/// The governance class of `file`, before or after a rename.
fn governance(policy: &Policy, file: &FileChange, facts: &GateFacts) -> Option<GovernanceClass> {
    let paths = std::iter::once(file.path.as_str()).chain(file.renamed_from.as_deref());
    for path in paths {
        if let Some(class) = policy.governance_class(path) {
            return Some(class);
        }
        if let Some(dir) = &facts.hooks_dir
            && policy.gates_hooks()
            && path
                .strip_prefix(dir.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        {
            return Some(GovernanceClass::Hooks);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::PolicyFile;

    fn policy(text: &str) -> Policy {
        Policy::new(&toml::from_str::<PolicyFile>(text).unwrap()).unwrap()
    }

    fn edit(path: &str, added: usize, removed: usize) -> FileChange {
        FileChange {
            path: path.into(),
            added,
            removed,
            bytes: 100,
            ..FileChange::default()
        }
    }

    fn runner(files: &[&str]) -> GateFacts {
        GateFacts {
            runner_files: files.iter().map(|f| (*f).to_owned()).collect(),
            ..GateFacts::default()
        }
    }

    fn texts(policy: &Policy, change: &[FileChange], facts: &GateFacts) -> Vec<String> {
        reasons(policy, change, facts)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn weakened_tests_gate_added_and_grown_tests_do_not() {
        let p = Policy::protected_only();
        let none = GateFacts::default();
        let moved = FileChange {
            renamed_from: Some("tests/a_test.sh".into()),
            ..edit("attic/a.sh", 0, 0)
        };
        let deleted = FileChange {
            deleted: true,
            bytes: 0,
            ..edit("tests/b_test.sh", 0, 9)
        };
        let change = [
            edit("tests/new_test.sh", 30, 0),
            edit("tests/grown_test.sh", 5, 3),
            edit("tests/emptied_test.sh", 1, 12),
            moved,
            deleted,
            edit("src/lib.sh", 0, 40),
        ];
        assert_eq!(
            texts(&p, &change, &none),
            [
                "shrinks the test tests/emptied_test.sh (12 lines removed, 1 added)",
                "moves the test tests/a_test.sh out of the tests (to attic/a.sh)",
                "deletes tests/b_test.sh",
            ]
        );
        // Renamed within the tests, unchanged: not weakened.
        let within = FileChange {
            renamed_from: Some("tests/a_test.sh".into()),
            ..edit("tests/old/a_test.sh", 0, 0)
        };
        assert!(reasons(&p, &[within], &none).is_empty());

        let relaxed = policy("[tests]\ngate_weakened = false\n");
        assert!(reasons(&relaxed, &change, &none).is_empty());
        let deletions_only = policy("[tests]\ngate_deletions = false\n");
        assert_eq!(reasons(&deletions_only, &change, &none).len(), 2);
    }

    #[test]
    fn the_runner_changed_at_all_gates_once() {
        let p = Policy::protected_only();
        let facts = runner(&["tests/run.sh", "Makefile"]);
        // `exit 0` in place of the runner: shrunk too, said once.
        let change = [edit("tests/run.sh", 1, 20), edit("Makefile", 2, 0)];
        assert_eq!(
            reasons(&p, &change, &facts),
            [
                GateReason::TestRunnerChanged {
                    path: "tests/run.sh".into()
                },
                GateReason::TestRunnerChanged {
                    path: "Makefile".into()
                },
            ]
        );
        let moved = FileChange {
            renamed_from: Some("Makefile".into()),
            ..edit("old.mk", 0, 0)
        };
        assert_eq!(reasons(&p, &[moved], &facts).len(), 1);
        let relaxed = policy("[tests]\ngate_runner = false\n");
        assert!(reasons(&relaxed, &[edit("Makefile", 2, 0)], &facts).is_empty());
    }

    #[test]
    fn governance_paths_gate_with_their_class() {
        let p = Policy::protected_only();
        let facts = GateFacts {
            hooks_dir: Some("tools/hooks".into()),
            ..GateFacts::default()
        };
        let change = [
            edit("AGENTS.md", 1, 0),
            edit(".github/workflows/ci.yml", 1, 0),
            edit(".gitattributes", 1, 0),
            edit("tools/hooks/pre-commit", 1, 0),
            edit("tools/hooks-doc.md", 1, 0),
            edit("src/main.rs", 1, 0),
        ];
        let got: Vec<(String, GovernanceClass)> = reasons(&p, &change, &facts)
            .into_iter()
            .filter_map(|r| match r {
                GateReason::Governance { path, class } => Some((path, class)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            [
                ("AGENTS.md".to_owned(), GovernanceClass::Instructions),
                (".github/workflows/ci.yml".to_owned(), GovernanceClass::Ci),
                (".gitattributes".to_owned(), GovernanceClass::Git),
                ("tools/hooks/pre-commit".to_owned(), GovernanceClass::Hooks),
            ]
        );
        let off = policy("[governance]\ngate = false\n");
        assert!(reasons(&off, &change, &facts).is_empty());
    }

    #[test]
    fn only_large_files_that_are_not_text_gate() {
        let p = Policy::protected_only();
        let big = |path: &str, bytes: u64, binary: bool| FileChange {
            bytes,
            binary,
            ..edit(path, 0, 0)
        };
        let mib = 1024 * 1024;
        let change = [
            big("blob.bin", 2 * mib, true),
            big("at_limit.bin", mib, true),
            big("lock.json", 5 * mib, false),
        ];
        assert_eq!(
            reasons(&p, &change, &GateFacts::default()),
            [GateReason::LargeBinary {
                path: "blob.bin".into(),
                bytes: 2 * mib,
                max: mib
            }]
        );
        let off = policy("[binaries]\ngate = false\n");
        assert!(reasons(&off, &change, &GateFacts::default()).is_empty());
    }
}
