//! Scheduling decisions, kept pure so they can be tested without running
//! anything: which pending tasks become ready or blocked, and which ready
//! tasks start next.

use std::collections::HashSet;

use super::ids::TaskId;
use super::run_state::{RunPhase, RunState, TaskRecord};
use super::task::TaskState;
use super::write_set::Overlap;

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
/// concurrency are active. Nothing starts while the run is paused. With
/// write-set scheduling, a task whose write-set overlaps one in flight (or
/// one picked before it) waits, unless one of the two depends on the other.
pub fn to_start(state: &RunState, active: &HashSet<TaskId>) -> Vec<TaskId> {
    if state.phase == RunPhase::Paused {
        return Vec::new();
    }
    let free = state
        .settings
        .concurrency
        .max(1)
        .saturating_sub(active.len());
    let mut in_flight: Vec<&TaskRecord> = state
        .tasks()
        .iter()
        .filter(|t| holds_unmerged_work(t.state) || active.contains(t.id()))
        .collect();
    let mut picked = Vec::new();
    for task in state.tasks() {
        if picked.len() == free {
            break;
        }
        if task.state != TaskState::Ready || active.contains(task.id()) {
            continue;
        }
        if state.settings.write_sets && in_flight.iter().any(|other| collide(state, task, other)) {
            continue;
        }
        picked.push(task.id().clone());
        in_flight.push(task);
    }
    picked
}

/// The tasks in flight that keep `task` from starting, with where their
/// write-sets meet; empty when it may start (or does not wait to start).
pub fn held_back_by(state: &RunState, task: &TaskId) -> Vec<(TaskId, Vec<Overlap>)> {
    let Some(record) = state.task(task) else {
        return Vec::new();
    };
    if !state.settings.write_sets || record.state != TaskState::Ready {
        return Vec::new();
    }
    state
        .tasks()
        .iter()
        .filter(|other| holds_unmerged_work(other.state) && collide(state, record, other))
        .map(|other| {
            (
                other.id().clone(),
                record.write_set().overlaps(&other.write_set()),
            )
        })
        .collect()
}

/// Every other task whose write-set overlaps `task`'s, with where; the
/// conflict-risk view of the DAG pane. Tasks related by dependency are left
/// out: they never run at the same time.
pub fn overlapping(state: &RunState, task: &TaskId) -> Vec<(TaskId, Vec<Overlap>)> {
    let Some(record) = state.task(task) else {
        return Vec::new();
    };
    state
        .tasks()
        .iter()
        .filter(|other| other.id() != task && !related(state, record, other))
        .filter_map(|other| {
            let overlaps = record.write_set().overlaps(&other.write_set());
            (!overlaps.is_empty()).then(|| (other.id().clone(), overlaps))
        })
        .collect()
}

/// A task between starting and merging: its changes are not on mainline
/// yet, so another task writing the same files would conflict with them.
fn holds_unmerged_work(state: TaskState) -> bool {
    state == TaskState::OverBudget
        || (!matches!(
            state,
            TaskState::Pending | TaskState::Ready | TaskState::Merged
        ) && !state.is_settled())
}

fn collide(state: &RunState, a: &TaskRecord, b: &TaskRecord) -> bool {
    a.id() != b.id() && !related(state, a, b) && a.write_set().overlaps_with(&b.write_set())
}

/// Whether one task depends on the other, directly or not.
fn related(state: &RunState, a: &TaskRecord, b: &TaskRecord) -> bool {
    state.depends_on(a, b.id()) || state.depends_on(b, a.id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{AgentStarted, RunPhaseChanged, ToolCalled};
    use crate::domain::made_up::{self, advance, task as writing};
    use crate::domain::{EventKind, RunSettings, TaskSpec};

    fn spec(id: &str, deps: &[&str]) -> TaskSpec {
        writing(id, deps, &[])
    }

    /// A diamond (a → b, c, d → e) with concurrency 2.
    fn diamond() -> RunState {
        started(
            2,
            vec![
                spec("a", &[]),
                spec("b", &["a"]),
                spec("c", &["a"]),
                spec("d", &["a"]),
                spec("e", &["b", "c"]),
            ],
        )
    }

    fn started(concurrency: usize, tasks: Vec<TaskSpec>) -> RunState {
        let settings = RunSettings {
            concurrency,
            ..RunSettings::default()
        };
        made_up::started(settings, tasks).unwrap()
    }

    fn apply(state: &mut RunState, kind: EventKind) {
        made_up::push(state, 0, kind).unwrap();
    }

    /// `path` starts with the state the task is in, for readability.
    fn walk(state: &mut RunState, task: &str, path: &[TaskState]) {
        assert_eq!(
            state.task(&task.into()).map(|t| t.state),
            path.first().copied()
        );
        advance(state, 0, &task.into(), &path[1..]).unwrap();
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
            EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Paused,
                reason: None,
            }),
        );
        assert!(to_start(&state, &HashSet::new()).is_empty());
    }

    /// Three independent tasks; `x` and `y` both declare `bin/tool`.
    fn overlapping_trio() -> RunState {
        let mut state = started(
            3,
            vec![
                writing("x", &[], &["bin/tool", "lib/x.sh"]),
                writing("y", &[], &["bin/*", "lib/y.sh"]),
                writing("z", &[], &["lib/z.sh"]),
            ],
        );
        for t in ["x", "y", "z"] {
            walk(&mut state, t, &[Pending, Ready]);
        }
        state
    }

    #[test]
    fn tasks_with_overlapping_write_sets_never_run_together() {
        let mut state = overlapping_trio();
        assert_eq!(ids(&to_start(&state, &HashSet::new())), ["x", "z"]);
        walk(&mut state, "x", &[Ready, Running]);
        let active: HashSet<TaskId> = [TaskId::from("x")].into();
        assert_eq!(ids(&to_start(&state, &active)), ["z"]);
        let held = held_back_by(&state, &TaskId::from("y"));
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0.as_str(), "x");
        assert_eq!(held[0].1[0].ours, "bin/*");
        assert_eq!(held[0].1[0].theirs, "bin/tool");

        // Still held while x waits at the gate; free once x merged.
        walk(
            &mut state,
            "x",
            &[Running, Reviewing, Testing, AwaitingGate],
        );
        assert_eq!(ids(&to_start(&state, &HashSet::new())), ["z"]);
        walk(&mut state, "x", &[AwaitingGate, Merging, Merged]);
        assert_eq!(ids(&to_start(&state, &HashSet::new())), ["y", "z"]);
    }

    #[test]
    fn without_write_sets_overlapping_tasks_run_together() {
        let mut state = overlapping_trio();
        state.settings.write_sets = false;
        assert_eq!(ids(&to_start(&state, &HashSet::new())), ["x", "y", "z"]);
        assert!(held_back_by(&state, &TaskId::from("y")).is_empty());
    }

    #[test]
    fn observed_writes_update_the_prediction() {
        let mut state = overlapping_trio();
        walk(&mut state, "z", &[Ready, Running]);
        let active: HashSet<TaskId> = [TaskId::from("z")].into();
        assert_eq!(ids(&to_start(&state, &active)), ["x"]);
        // z's coder writes a file x declared, which z never said it would.
        apply(
            &mut state,
            EventKind::AgentStarted(AgentStarted {
                agent: crate::domain::AgentId::for_task(
                    crate::domain::AgentRole::Coder,
                    &TaskId::from("z"),
                    1,
                ),
                role: crate::domain::AgentRole::Coder,
                task: Some(TaskId::from("z")),
                model: "m".into(),
            }),
        );
        apply(
            &mut state,
            EventKind::ToolCalled(ToolCalled {
                agent: crate::domain::AgentId::for_task(
                    crate::domain::AgentRole::Coder,
                    &TaskId::from("z"),
                    1,
                ),
                call_id: "c1".into(),
                tool: "write_file".into(),
                arguments: serde_json::json!({"path": "./lib/x.sh", "content": ""}),
            }),
        );
        // x now waits for z; y, which only x overlapped, may go instead.
        assert_eq!(ids(&to_start(&state, &active)), ["y"]);
        let overlaps = overlapping(&state, &TaskId::from("z"));
        assert_eq!(
            ids(&overlaps.iter().map(|o| o.0.clone()).collect::<Vec<_>>()),
            ["x"]
        );
        assert_eq!(overlaps[0].1[0].ours, "lib/x.sh");
    }

    #[test]
    fn dependent_tasks_are_not_a_conflict_risk() {
        let state = started(
            2,
            vec![
                writing("a", &[], &["src/lib.rs"]),
                writing("b", &["a"], &["src/**"]),
                writing("c", &["b"], &["src/lib.rs"]),
                writing("d", &[], &["src/lib.rs"]),
            ],
        );
        let risks = overlapping(&state, &TaskId::from("a"));
        assert_eq!(
            ids(&risks.iter().map(|o| o.0.clone()).collect::<Vec<_>>()),
            ["d"]
        );
    }
}
