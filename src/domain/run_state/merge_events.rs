//! How landing a change moves the run: merges and the mainline they move,
//! the merge queue's checks and reverts, a dirty checkout, and the gate.

use super::{HeldLanding, RunState, TransitionError, tail};
use crate::domain::event::{
    CheckoutDirty, GateDecision, MergeOutcome, MergeResult, MergeReverted, MergeVerified,
};

impl RunState {
    pub(super) fn checkout_dirty(
        &mut self,
        e: &CheckoutDirty,
        seq: u64,
        at_ms: u64,
    ) -> Result<(), TransitionError> {
        self.task_mut(&e.task, seq)?;
        self.held_landing = Some(HeldLanding {
            task: e.task.clone(),
            files: e.files.clone(),
            since_ms: at_ms,
        });
        Ok(())
    }

    pub(super) fn merge_result(
        &mut self,
        e: &MergeResult,
        seq: u64,
    ) -> Result<(), TransitionError> {
        let task = &e.task;
        let Some(&i) = self.index.get(task) else {
            return Err(TransitionError::UnknownTask {
                seq,
                task: task.clone(),
            });
        };
        match &e.result {
            MergeOutcome::FastForward { commit } | MergeOutcome::MergeCommit { commit } => {
                if self.held_landing.as_ref().is_some_and(|h| h.task == *task) {
                    self.held_landing = None;
                }
                let record = &mut self.tasks[i];
                record.merged_commit = Some(commit.clone());
                record.conflict_files.clear();
                self.mainline_commit = commit.clone();
            }
            MergeOutcome::Conflict { files } => {
                let record = &mut self.tasks[i];
                record.conflict_files = files.clone();
                record.feedback = Some(format!(
                    "Merging onto mainline conflicted in: {}. Mainline has moved; \
                     resolve the conflict markers in those files keeping both intents.",
                    files.join(", ")
                ));
            }
        }
        Ok(())
    }

    pub(super) fn merge_verified(
        &mut self,
        e: &MergeVerified,
        seq: u64,
    ) -> Result<(), TransitionError> {
        if !e.passed {
            let record = self.task_mut(&e.task, seq)?;
            record.queue_failure = Some(e.check);
            record.feedback = Some(format!(
                "Your change passed its own tests, but the {} failed: `{}` \
                 on your change merged with the current mainline:\n{}",
                e.check.label(),
                e.command,
                tail(&e.output, 4000)
            ));
        }
        Ok(())
    }

    pub(super) fn merge_reverted(
        &mut self,
        e: &MergeReverted,
        seq: u64,
    ) -> Result<(), TransitionError> {
        let record = self.task_mut(&e.task, seq)?;
        record.merged_commit = None;
        record.head_commit = Some(e.reapplied.clone());
        record.feedback = Some(format!(
            "Your change was merged, but the post-merge check failed on mainline, \
             so the merge was reverted. Your change is back on your branch; fix it:\n{}",
            tail(&e.output, 4000)
        ));
        self.mainline_commit = e.revert_commit.clone();
        Ok(())
    }

    pub(super) fn gate_decision(
        &mut self,
        e: &GateDecision,
        seq: u64,
    ) -> Result<(), TransitionError> {
        if !e.approved {
            self.task_mut(&e.task, seq)?.feedback = Some(format!(
                "{} rejected the change at the merge gate:\n{}",
                e.by, e.feedback
            ));
        }
        Ok(())
    }
}
