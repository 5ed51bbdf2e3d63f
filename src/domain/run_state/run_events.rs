//! How the run as a whole and its plan change: phases, interruptions, the
//! requirement, blueprints and plan disputes.

use super::{RunPhase, RunState, TaskRecord, TransitionError};
use crate::domain::event::{
    BlueprintAccepted, BlueprintProposed, PlanDisputeSettled, PlanDisputed, PlanReviewed,
    RepositoryChanged, RunPhaseChanged,
};

impl RunState {
    pub(super) fn phase_changed(&mut self, e: &RunPhaseChanged) {
        let RunPhaseChanged { to, reason } = e;
        self.phase = *to;
        self.phase_reason = reason.clone();
        if to.is_over() {
            self.parked.clear();
        }
        // Resuming is how a human says they have seen the change to the
        // repository, and dealt with their checkout; if not, the landing is
        // held again.
        if *to == RunPhase::Building {
            self.repository_changes.clear();
        }
        if *to != RunPhase::Paused {
            self.held_landing = None;
        }
    }

    pub(super) fn repository_changed(&mut self, e: &RepositoryChanged) {
        self.repository_changes = e.changes.clone();
        if !self.phase.is_over() {
            self.phase = RunPhase::Paused;
            self.phase_reason = Some(format!(
                "the repository changed outside memofab: {}",
                e.changes.join("; ")
            ));
        }
    }

    /// The process restarted. No agent outlives the process: a resumed run
    /// starts unparked, and a resumed agent parks, or asks, again.
    pub(super) fn resumed(&mut self) {
        self.parked.clear();
        // `memofab resume` after the stop is the human's go-ahead.
        if !self.repository_changes.is_empty() {
            self.repository_changes.clear();
            if self.phase == RunPhase::Paused {
                self.phase = RunPhase::Building;
            }
        }
        self.questions.retain(|q| q.answer.is_some());
    }

    pub(super) fn blueprint_proposed(&mut self, e: &BlueprintProposed) {
        self.plan_round = e.round;
        self.proposal = Some(e.blueprint.clone());
    }

    pub(super) fn plan_reviewed(&mut self, e: &PlanReviewed) {
        self.plan_review = Some((e.round, e.approved, e.feedback.clone()));
    }

    pub(super) fn blueprint_accepted(
        &mut self,
        e: &BlueprintAccepted,
        seq: u64,
        at_ms: u64,
    ) -> Result<(), TransitionError> {
        if self.blueprint.is_some() {
            return Err(TransitionError::BlueprintTwice { seq });
        }
        self.tasks = e
            .blueprint
            .tasks
            .iter()
            .map(|spec| TaskRecord::new(spec.clone(), at_ms))
            .collect();
        self.index = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.spec.id.clone(), i))
            .collect();
        self.blueprint = Some(e.blueprint.clone());
        // Whoever settled it, a dispute is over once a plan is built.
        self.plan_dispute = None;
        Ok(())
    }

    pub(super) fn plan_disputed(&mut self, e: &PlanDisputed) {
        self.plan_dispute = Some((e.round, e.feedback.clone()));
    }

    pub(super) fn plan_dispute_settled(&mut self, e: &PlanDisputeSettled) {
        self.plan_dispute = None;
        if !e.build {
            self.extra_plan_rounds += 1;
        }
    }
}
