//! Run states driven by made-up events, through the real state machine:
//! for tests of the pure rules, and for simulations such as the write-set
//! benchmark. Every step is checked like a stored event would be.

use super::blueprint::{Blueprint, TaskSpec};
use super::event::{Event, EventKind, RunSettings};
use super::ids::{RunId, TaskId};
use super::run_state::{RunState, TransitionError};
use super::task::TaskState;
use crate::domain::event::{BlueprintAccepted, RunStarted, TaskStateChanged};

/// A run with `settings` whose blueprint of `tasks` was just accepted.
pub fn started(settings: RunSettings, tasks: Vec<TaskSpec>) -> Result<RunState, TransitionError> {
    let start = Event {
        run: RunId::from("made-up"),
        seq: 1,
        at_ms: 0,
        kind: EventKind::RunStarted(RunStarted {
            requirement: String::new(),
            repo: String::new(),
            mainline: "main".into(),
            base_commit: "c0".into(),
            settings,
        }),
    };
    let mut state = RunState::start(&start)?;
    push(
        &mut state,
        0,
        EventKind::BlueprintAccepted(BlueprintAccepted {
            blueprint: Blueprint {
                title: String::new(),
                tasks,
            },
        }),
    )?;
    Ok(state)
}

/// Applies `kind` as the run's next event, at `at_ms`.
pub fn push(state: &mut RunState, at_ms: u64, kind: EventKind) -> Result<(), TransitionError> {
    let event = Event {
        run: state.run.clone(),
        seq: state.last_seq + 1,
        at_ms,
        kind,
    };
    state.apply(&event)
}

/// Moves `task` through each state of `path` in turn, from where it is.
pub fn advance(
    state: &mut RunState,
    at_ms: u64,
    task: &TaskId,
    path: &[TaskState],
) -> Result<(), TransitionError> {
    for to in path {
        let from = state.task(task).map_or(TaskState::Pending, |t| t.state);
        push(
            state,
            at_ms,
            EventKind::TaskStateChanged(TaskStateChanged {
                task: task.clone(),
                from,
                to: *to,
                reason: None,
            }),
        )?;
    }
    Ok(())
}

/// A task of the given id, dependencies and declared paths.
pub fn task(id: &str, depends_on: &[&str], paths: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        title: format!("{id} title"),
        description: String::new(),
        acceptance: Vec::new(),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        depends_on: depends_on.iter().map(|d| TaskId::from(*d)).collect(),
    }
}
