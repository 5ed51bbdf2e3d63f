//! Scheduling decisions, kept pure so they can be tested without running
//! anything: which pending tasks become ready or blocked, and which ready
//! tasks start next.

use std::collections::HashSet;

use super::ids::TaskId;
use super::run_state::{RunPhase, RunState};
use super::task::TaskState;

/// A state change the orchestrator should record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub task: TaskId,
    pub to: TaskState,
    pub reason: Option<String>,
}

/// Pending tasks whose dependencies all merged become ready; those with a
/// dependency that can no longer merge become blocked. Blocked tasks whose
/// dependencies got moving again (a retry, a resolved conflict) are pending
/// once more.
pub fn promotions(state: &RunState) -> Vec<Promotion> {
    let unblocked = state
        .tasks()
        .iter()
        .filter(|t| t.state == TaskState::Blocked && state.dependency_stuck(t).is_none())
        .map(|t| Promotion {
            task: t.id().clone(),
            to: TaskState::Pending,
            reason: Some("its dependencies can merge again".into()),
        });
    let pending = state
        .tasks()
        .iter()
        .filter(|t| t.state == TaskState::Pending)
        .filter_map(|t| {
            if state.dependencies_merged(t) {
                Some(Promotion {
                    task: t.id().clone(),
                    to: TaskState::Ready,
                    reason: None,
                })
            } else {
                state.dependency_stuck(t).map(|dep| Promotion {
                    task: t.id().clone(),
                    to: TaskState::Blocked,
                    reason: Some(format!("dependency {dep} cannot merge")),
                })
            }
        });
    unblocked.chain(pending).collect()
}

/// Ready tasks to start now, in blueprint order, while fewer than the run's
/// concurrency are active. Nothing starts while the run is paused.
pub fn to_start(state: &RunState, active: &HashSet<TaskId>) -> Vec<TaskId> {
    if state.phase == RunPhase::Paused {
        return Vec::new();
    }
    let free = state
        .settings
        .concurrency
        .max(1)
        .saturating_sub(active.len());
    state
        .tasks()
        .iter()
        .filter(|t| t.state == TaskState::Ready && !active.contains(t.id()))
        .take(free)
        .map(|t| t.id().clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Blueprint, Event, EventKind, RunId, RunSettings, TaskSpec};

    fn spec(id: &str, deps: &[&str]) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            title: id.into(),
            description: String::new(),
            acceptance: vec![],
            paths: vec![],
            depends_on: deps.iter().map(|d| TaskId::from(*d)).collect(),
        }
    }

    /// A diamond (a → b, c, d → e) with concurrency 2.
    fn diamond() -> RunState {
        let settings = RunSettings {
            concurrency: 2,
            ..RunSettings::default()
        };
        let start = Event {
            run: RunId::from("r"),
            seq: 1,
            at_ms: 0,
            kind: EventKind::RunStarted {
                requirement: String::new(),
                repo: String::new(),
                mainline: "main".into(),
                base_commit: "c0".into(),
                settings,
            },
        };
        let mut state = RunState::start(&start).unwrap();
        apply(
            &mut state,
            EventKind::BlueprintAccepted {
                blueprint: Blueprint {
                    title: String::new(),
                    tasks: vec![
                        spec("a", &[]),
                        spec("b", &["a"]),
                        spec("c", &["a"]),
                        spec("d", &["a"]),
                        spec("e", &["b", "c"]),
                    ],
                },
            },
        );
        state
    }

    fn apply(state: &mut RunState, kind: EventKind) {
        let event = Event {
            run: state.run.clone(),
            seq: state.last_seq + 1,
            at_ms: 0,
            kind,
        };
        state.apply(&event).unwrap();
    }

    fn walk(state: &mut RunState, task: &str, path: &[TaskState]) {
        for pair in path.windows(2) {
            apply(
                state,
                EventKind::TaskStateChanged {
                    task: task.into(),
                    from: pair[0],
                    to: pair[1],
                    reason: None,
                },
            );
        }
    }

    fn ids(list: &[TaskId]) -> Vec<&str> {
        list.iter().map(TaskId::as_str).collect()
    }

    use TaskState::*;

    #[test]
    fn only_roots_are_ready_at_first() {
        let state = diamond();
        let p = promotions(&state);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].task.as_str(), p[0].to), ("a", Ready));
    }

    #[test]
    fn dependents_are_ready_once_merged_and_start_within_the_limit_in_order() {
        let mut state = diamond();
        walk(
            &mut state,
            "a",
            &[Pending, Ready, Running, Reviewing, Testing, Merging, Merged],
        );
        let ready: Vec<_> = promotions(&state).into_iter().map(|p| p.task).collect();
        assert_eq!(ids(&ready), ["b", "c", "d"]);
        for t in ["b", "c", "d"] {
            walk(&mut state, t, &[Pending, Ready]);
        }
        assert_eq!(ids(&to_start(&state, &HashSet::new())), ["b", "c"]);
        let busy: HashSet<TaskId> = [TaskId::from("b")].into();
        assert_eq!(ids(&to_start(&state, &busy)), ["c"]);
        let full: HashSet<TaskId> = [TaskId::from("x"), TaskId::from("y")].into();
        assert!(to_start(&state, &full).is_empty());
    }

    #[test]
    fn a_failed_dependency_blocks_its_dependents_only() {
        let mut state = diamond();
        walk(
            &mut state,
            "a",
            &[Pending, Ready, Running, Reviewing, Testing, Merging, Merged],
        );
        walk(&mut state, "b", &[Pending, Ready, Running, Failed]);
        walk(&mut state, "c", &[Pending, Ready]);
        let p = promotions(&state);
        let e = p.iter().find(|p| p.task.as_str() == "e").unwrap();
        assert_eq!(e.to, Blocked);
        assert!(e.reason.as_deref().unwrap().contains('b'));
        assert!(p.iter().any(|p| p.task.as_str() == "d" && p.to == Ready));

        // Once b is retried, e is no longer blocked.
        walk(&mut state, "e", &[Pending, Blocked]);
        assert!(promotions(&state).iter().all(|p| p.task.as_str() != "e"));
        walk(&mut state, "b", &[Failed, Ready]);
        let p = promotions(&state);
        let e = p.iter().find(|p| p.task.as_str() == "e").unwrap();
        assert_eq!(e.to, Pending);
    }

    #[test]
    fn nothing_starts_while_paused() {
        let mut state = diamond();
        walk(&mut state, "a", &[Pending, Ready]);
        apply(
            &mut state,
            EventKind::RunPhaseChanged {
                to: RunPhase::Paused,
                reason: None,
            },
        );
        assert!(to_start(&state, &HashSet::new()).is_empty());
    }
}
