//! How one task's record changes along its pipeline: state transitions and
//! their rework counts, its worktree and commits, the tester's step, review,
//! tests, edits and the shepherd's interventions.

use super::{NOTHING_CHANGED_FEEDBACK, RunState, TransitionError, tail};
use crate::domain::event::{
    ChangeCommitted, NothingChanged, ReviewVerdict, ShepherdIntervened, TaskEdited,
    TaskStateChanged, TestRun, TesterDone, WorktreeCreated,
};
use crate::domain::stuck::Action;
use crate::domain::task::TaskState;
use crate::domain::testers::TesterStep;

impl RunState {
    pub(super) fn task_state_changed(
        &mut self,
        e: &TaskStateChanged,
        seq: u64,
        at_ms: u64,
    ) -> Result<(), TransitionError> {
        let TaskStateChanged {
            task,
            from,
            to,
            reason,
        } = e;
        let record = self.task_mut(task, seq)?;
        if record.state != *from {
            return Err(TransitionError::StaleFrom {
                seq,
                task: task.clone(),
                claimed: *from,
                actual: record.state,
            });
        }
        if !from.can_become(*to) {
            return Err(TransitionError::Illegal {
                seq,
                task: task.clone(),
                from: *from,
                to: *to,
            });
        }
        if *to == TaskState::OverBudget {
            // Its agent waits with its conversation and comes back to this
            // step: not a new attempt.
            record.over_budget_from = Some(*from);
        }
        if *to == TaskState::Running {
            match from {
                TaskState::Reviewing
                | TaskState::Testing
                | TaskState::AwaitingGate
                | TaskState::Verifying => {
                    record.reworks += 1;
                    record.attempt += 1;
                }
                TaskState::Merging | TaskState::Conflict => {
                    record.conflict_reworks += 1;
                    record.attempt += 1;
                }
                _ => {}
            }
        }
        if matches!(to, TaskState::Ready | TaskState::Pending)
            && matches!(
                from,
                TaskState::Failed | TaskState::Cancelled | TaskState::Blocked
            )
        {
            // A retry by a human starts the bounds afresh, and as a new
            // attempt if the task ever ran, so that its agents and
            // transcripts are not mixed up with the last ones.
            record.reworks = 0;
            record.conflict_reworks = 0;
            if record.branch.is_some() {
                record.attempt += 1;
            }
        }
        if *to == TaskState::Reviewing {
            record.resolution = None;
        }
        record.shepherd.transitioned(*to);
        record.state = *to;
        record.since_ms = at_ms;
        record.reason = reason.clone();
        record.queue_failure = None;
        if *to != TaskState::AwaitingGate {
            record.gate_reasons.clear();
        }
        // A cancelled task's agents are dropped mid-park, with no event of
        // their own.
        if matches!(
            to,
            TaskState::Cancelled | TaskState::Failed | TaskState::Blocked
        ) {
            self.parked.retain(|_, p| p.task.as_ref() != Some(task));
        }
        Ok(())
    }

    pub(super) fn worktree_created(
        &mut self,
        e: &WorktreeCreated,
        seq: u64,
    ) -> Result<(), TransitionError> {
        let record = self.task_mut(&e.task, seq)?;
        record.branch = Some(e.branch.clone());
        record.worktree = Some(e.path.clone());
        record.head_commit = Some(e.base_commit.clone());
        Ok(())
    }

    pub(super) fn nothing_changed(
        &mut self,
        e: &NothingChanged,
        seq: u64,
    ) -> Result<(), TransitionError> {
        let record = self.task_mut(&e.task, seq)?;
        if record.state != TaskState::Running {
            return Err(TransitionError::NotRunning {
                seq,
                task: e.task.clone(),
                state: record.state,
            });
        }
        // A rework round in place: the same step, a new attempt.
        record.reworks += 1;
        record.attempt += 1;
        record.feedback = Some(NOTHING_CHANGED_FEEDBACK.to_owned());
        Ok(())
    }

    pub(super) fn change_committed(
        &mut self,
        e: &ChangeCommitted,
        seq: u64,
    ) -> Result<(), TransitionError> {
        let record = self.task_mut(&e.task, seq)?;
        record.head_commit = Some(e.commit.clone());
        record.observed_writes.extend(e.files.iter().cloned());
        Ok(())
    }

    pub(super) fn shepherd_intervened(
        &mut self,
        e: &ShepherdIntervened,
        seq: u64,
    ) -> Result<(), TransitionError> {
        let Some(task) = &e.task else { return Ok(()) };
        let record = self.task_mut(task, seq)?;
        record.shepherd.intervened(&e.pattern, e.action);
        // The fresh agent is a new attempt, so its transcript is its own.
        if e.action == Action::FreshAgent {
            record.attempt += 1;
        }
        Ok(())
    }

    pub(super) fn review_verdict(
        &mut self,
        e: &ReviewVerdict,
        seq: u64,
    ) -> Result<(), TransitionError> {
        let record = self.task_mut(&e.task, seq)?;
        record.shepherd.reviewed(e.approved, &e.feedback);
        if !e.approved {
            record.feedback = Some(format!(
                "The code reviewer asked for changes:\n{}",
                e.feedback
            ));
        }
        Ok(())
    }

    pub(super) fn tester_done(&mut self, e: &TesterDone, seq: u64) -> Result<(), TransitionError> {
        let record = self.task_mut(&e.task, seq)?;
        if let Some(tests) = &e.tests {
            record.head_commit = Some(tests.commit.clone());
            record.observed_writes.extend(tests.files.iter().cloned());
        }
        record.tester = TesterStep::Done {
            tests: e.tests.clone(),
        };
        Ok(())
    }

    pub(super) fn test_run(&mut self, e: &TestRun, seq: u64) -> Result<(), TransitionError> {
        if !e.passed {
            self.task_mut(&e.task, seq)?.feedback = Some(format!(
                "The test command `{}` failed:\n{}",
                e.command,
                tail(&e.output, 4000)
            ));
        }
        Ok(())
    }

    pub(super) fn task_edited(&mut self, e: &TaskEdited, seq: u64) -> Result<(), TransitionError> {
        let record = self.task_mut(&e.task, seq)?;
        record.spec.description = e.description.clone();
        record.spec.acceptance = e.acceptance.clone();
        Ok(())
    }
}
