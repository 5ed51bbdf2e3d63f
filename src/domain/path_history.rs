//! How much trouble each path caused in past runs: merge conflicts, failed
//! merge verifications, post-merge failures (the queue reverts them) and
//! rework rounds. Pure: a fold over stored events, used by the gate's
//! history rule and by the overseer's list of the riskiest paths.
//!
//! A conflict counts for the files that conflicted. The other incidents are
//! about a whole change, so they count for every file the task's branch
//! changed at the time (its latest `change_committed`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::event::{Event, EventKind, MergeCheck, MergeOutcome};
use super::ids::TaskId;
pub use super::path_incidents::PathIncidents;
use super::task::TaskState;
use crate::domain::event::{ChangeCommitted, MergeResult, MergeVerified, TaskStateChanged};

/// The stored event types the fold reads; the store can skip the rest
/// (agent messages and tool output are most of a run's bytes).
pub const EVENT_TYPES: [&str; 4] = [
    ChangeCommitted::NAME,
    MergeResult::NAME,
    MergeVerified::NAME,
    TaskStateChanged::NAME,
];

/// Incidents per path over a number of runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PathHistory {
    /// How many runs were folded.
    pub runs: usize,
    pub by_path: BTreeMap<String, PathIncidents>,
}

impl PathHistory {
    /// Folds runs (each list one run's events, in order; other event types
    /// than `EVENT_TYPES` are ignored).
    pub fn compute(runs: &[Vec<Event>]) -> Self {
        let mut out = Self {
            runs: runs.len(),
            by_path: BTreeMap::new(),
        };
        for events in runs {
            out.fold_run(events);
        }
        out
    }

    fn fold_run(&mut self, events: &[Event]) {
        let mut files: HashMap<&TaskId, &[String]> = HashMap::new();
        for e in events {
            match &e.kind {
                EventKind::ChangeCommitted(ChangeCommitted { task, files: f, .. }) => {
                    files.insert(task, f);
                }
                EventKind::MergeResult(MergeResult {
                    result: MergeOutcome::Conflict { files: conflicted },
                    ..
                }) => self.count(conflicted, |i| &mut i.conflicts),
                EventKind::MergeVerified(MergeVerified {
                    task,
                    check,
                    passed: false,
                    ..
                }) => {
                    let changed = files.get(task).copied().unwrap_or_default();
                    match check {
                        MergeCheck::Verify => self.count(changed, |i| &mut i.failed_verifications),
                        MergeCheck::PostMerge => self.count(changed, |i| &mut i.reverts),
                    }
                }
                EventKind::TaskStateChanged(TaskStateChanged {
                    task,
                    from: TaskState::Reviewing | TaskState::Testing | TaskState::AwaitingGate,
                    to: TaskState::Running,
                    ..
                }) => {
                    let changed = files.get(task).copied().unwrap_or_default();
                    self.count(changed, |i| &mut i.reworks);
                }
                _ => {}
            }
        }
    }

    fn count(&mut self, paths: &[String], field: impl Fn(&mut PathIncidents) -> &mut u32) {
        for path in paths {
            *field(self.by_path.entry(path.clone()).or_default()) += 1;
        }
    }

    /// A path's incidents; none if it never caused any.
    pub fn of(&self, path: &str) -> PathIncidents {
        self.by_path
            .get(path.trim_start_matches("./"))
            .copied()
            .unwrap_or_default()
    }

    /// The `n` paths with the most incidents, most first (ties by path).
    pub fn riskiest(&self, n: usize) -> Vec<(&str, PathIncidents)> {
        let mut all: Vec<(&str, PathIncidents)> = self
            .by_path
            .iter()
            .filter(|(_, i)| i.total() > 0)
            .map(|(p, i)| (p.as_str(), *i))
            .collect();
        all.sort_by_key(|(p, i)| (std::cmp::Reverse(i.total()), *p));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunId;

    fn run(kinds: Vec<EventKind>) -> Vec<Event> {
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                run: RunId::from("r"),
                seq: i as u64 + 1,
                at_ms: i as u64,
                kind,
            })
            .collect()
    }

    fn committed(task: &str, files: &[&str]) -> EventKind {
        EventKind::ChangeCommitted(ChangeCommitted {
            task: task.into(),
            commit: "c".into(),
            files: files.iter().map(|f| (*f).to_owned()).collect(),
            diff: String::new(),
        })
    }

    fn moved(task: &str, from: TaskState, to: TaskState) -> EventKind {
        EventKind::TaskStateChanged(TaskStateChanged {
            task: task.into(),
            from,
            to,
            reason: None,
        })
    }

    fn verified(task: &str, check: MergeCheck, passed: bool) -> EventKind {
        EventKind::MergeVerified(MergeVerified {
            task: task.into(),
            check,
            candidate: "c".into(),
            onto: "o".into(),
            command: "make test".into(),
            exit_code: Some(if passed { 0 } else { 1 }),
            passed,
            duration_ms: 1,
            output: String::new(),
        })
    }

    #[test]
    fn incidents_count_for_the_paths_they_concern() {
        let first = run(vec![
            committed("a", &["src/db.rs", "src/lib.rs"]),
            moved("a", TaskState::Reviewing, TaskState::Running),
            committed("a", &["src/db.rs"]),
            verified("a", MergeCheck::Verify, false),
            moved("a", TaskState::Verifying, TaskState::Running),
            committed("b", &["src/db.rs", "README.md"]),
            EventKind::MergeResult(MergeResult {
                task: "b".into(),
                result: MergeOutcome::Conflict {
                    files: vec!["src/db.rs".into()],
                },
            }),
            moved("b", TaskState::Merging, TaskState::Running),
            verified("b", MergeCheck::Verify, true),
        ]);
        let second = run(vec![
            committed("c", &["src/db.rs"]),
            verified("c", MergeCheck::PostMerge, false),
            moved("c", TaskState::AwaitingGate, TaskState::Running),
            // A transition without a committed change names no path.
            moved("d", TaskState::Testing, TaskState::Running),
        ]);
        let h = PathHistory::compute(&[first, second]);
        assert_eq!(h.runs, 2);
        assert_eq!(
            h.of("src/db.rs"),
            PathIncidents {
                conflicts: 1,
                failed_verifications: 1,
                reverts: 1,
                reworks: 2,
            }
        );
        assert_eq!(h.of("./src/lib.rs").reworks, 1);
        assert_eq!(
            h.of("README.md").total(),
            0,
            "b's merge conflicted elsewhere"
        );
        assert_eq!(
            h.riskiest(5),
            vec![
                ("src/db.rs", h.of("src/db.rs")),
                ("src/lib.rs", h.of("src/lib.rs"))
            ]
        );
        assert_eq!(h.riskiest(1).len(), 1);
    }

    #[test]
    fn incidents_read_as_counts() {
        let i = PathIncidents {
            conflicts: 2,
            reworks: 1,
            ..Default::default()
        };
        assert_eq!(i.to_string(), "2 conflicts, 1 rework");
        assert_eq!(PathIncidents::default().to_string(), "no incidents");
    }

    #[test]
    fn event_types_name_the_variants_folded() {
        let kinds = [
            committed("a", &[]),
            EventKind::MergeResult(MergeResult {
                task: "a".into(),
                result: MergeOutcome::Conflict { files: vec![] },
            }),
            verified("a", MergeCheck::Verify, false),
            moved("a", TaskState::Reviewing, TaskState::Running),
        ];
        let names: Vec<&str> = kinds.iter().map(EventKind::name).collect();
        assert_eq!(names, EVENT_TYPES);
    }
}
