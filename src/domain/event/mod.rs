//! Events are the source of truth. Every step of a run is appended to the
//! store as one `Event`; the same value is printed as a JSON line in headless
//! mode and sent to the TUI. Current state is `RunState` folded over them.
//!
//! Each kind of event is a named struct (`EventKind::ToolCalled(ToolCalled)`),
//! kept in a module per area. The list of kinds below is the one place a
//! kind's stored name (`type`) is written: serde, [`EventKind::name`], each
//! struct's `NAME` and the store's decoder all come from it.
//!
//! Invariant: the stored and exported bytes never change shape; old stores
//! must decode (`golden.rs` holds the bytes of every kind).

use serde::{Deserialize, Serialize};

use super::ids::{RunId, TaskId};

mod agent;
mod merge;
mod operations;
mod plan;
mod run;
mod task;

pub use agent::*;
pub use merge::*;
pub use operations::*;
pub use plan::*;
pub use run::*;
pub use task::*;

/// One stored event. `seq` is assigned by the store: dense, starting at 1,
/// per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run: RunId,
    pub seq: u64,
    /// Unix time in milliseconds.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Declares [`EventKind`] with one variant per named struct, its stored
/// names, and a decoder that goes straight to the struct the name picks.
macro_rules! event_kinds {
    ($($kind:ident = $name:literal,)*) => {
        /// What happened. Serialized flat into [`Event`], tagged by `type`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum EventKind {
            $(
                #[serde(rename = $name)]
                $kind($kind),
            )*
        }

        impl EventKind {
            /// Every kind's stored name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// Short machine name of the variant, as serialized in `type`.
            pub fn name(&self) -> &'static str {
                match self {
                    $(EventKind::$kind(_) => $name,)*
                }
            }

            /// The kind stored as `body` (a whole event's JSON) under the
            /// name `kind`. The name picks the struct, so serde decodes the
            /// fields straight into it instead of buffering the object to
            /// find its tag: twice as fast on a long run's conversation.
            pub fn decode_stored(kind: &str, body: &str) -> serde_json::Result<Self> {
                match kind {
                    $($name => serde_json::from_str::<$kind>(body).map(EventKind::$kind),)*
                    _ => serde_json::from_str(body),
                }
            }
        }

        $(
            impl $kind {
                /// The stored name of this kind of event (`type`).
                pub const NAME: &'static str = $name;
            }

            impl From<$kind> for EventKind {
                fn from(kind: $kind) -> Self {
                    EventKind::$kind(kind)
                }
            }
        )*
    };
}

event_kinds! {
    RunStarted = "run_started",
    RunPhaseChanged = "run_phase_changed",
    RunInterrupted = "run_interrupted",
    RunResumed = "run_resumed",
    RepositoryChanged = "repository_changed",
    SpecSubmitted = "spec_submitted",
    BlueprintProposed = "blueprint_proposed",
    BlueprintRejected = "blueprint_rejected",
    PlanReviewed = "plan_reviewed",
    PlanDisputed = "plan_disputed",
    PlanDisputeSettled = "plan_dispute_settled",
    BlueprintAccepted = "blueprint_accepted",
    TaskStateChanged = "task_state_changed",
    WorktreeCreated = "worktree_created",
    AgentStarted = "agent_started",
    AgentMessage = "agent_message",
    ToolCalled = "tool_called",
    ToolResult = "tool_result",
    TokensUsed = "tokens_used",
    AgentFinished = "agent_finished",
    AgentParked = "agent_parked",
    ContextCompacted = "context_compacted",
    ReplyBrokenOff = "reply_broken_off",
    AgentUnparked = "agent_unparked",
    ProviderLimitChanged = "provider_limit_changed",
    ChangeCommitted = "change_committed",
    TestsOnBase = "tests_on_base",
    TesterDone = "tester_done",
    ReviewVerdict = "review_verdict",
    TestRun = "test_run",
    MergeResult = "merge_result",
    MergeVerified = "merge_verified",
    MergeReverted = "merge_reverted",
    CheckoutDirty = "checkout_dirty",
    NothingChanged = "nothing_changed",
    ConflictMarkers = "conflict_markers",
    GateHeld = "gate_held",
    GateDecision = "gate_decision",
    ConflictDecision = "conflict_decision",
    Escalated = "escalated",
    Warning = "warning",
    ShepherdIntervened = "shepherd_intervened",
    TaskEdited = "task_edited",
    McpToolsListed = "mcp_tools_listed",
    QuestionAsked = "question_asked",
    QuestionAnswered = "question_answered",
    ParkLifted = "park_lifted",
    BudgetRaised = "budget_raised",
    OverseerReport = "overseer_report",
    ProposalDecision = "proposal_decision",
    RunFinished = "run_finished",
}

impl EventKind {
    /// What stands in, at its number and time, for an event not read yet
    /// (a replay reads the conversation's text only for the transcripts it
    /// shows): a kind that `RunState::apply`, the cockpit's fold and
    /// `narrate` all pass over, so folding it moves nothing but the count
    /// (pinned by `narrate::tests::a_stand_in_says_and_changes_nothing`).
    pub fn stand_in() -> Self {
        EventKind::BlueprintRejected(BlueprintRejected {
            round: 0,
            issues: Vec::new(),
        })
    }

    /// The task this event is about, if any.
    pub fn task(&self) -> Option<&TaskId> {
        match self {
            EventKind::TaskStateChanged(TaskStateChanged { task, .. })
            | EventKind::WorktreeCreated(WorktreeCreated { task, .. })
            | EventKind::ChangeCommitted(ChangeCommitted { task, .. })
            | EventKind::ReviewVerdict(ReviewVerdict { task, .. })
            | EventKind::TestsOnBase(TestsOnBase { task, .. })
            | EventKind::TesterDone(TesterDone { task, .. })
            | EventKind::TestRun(TestRun { task, .. })
            | EventKind::MergeResult(MergeResult { task, .. })
            | EventKind::MergeVerified(MergeVerified { task, .. })
            | EventKind::MergeReverted(MergeReverted { task, .. })
            | EventKind::CheckoutDirty(CheckoutDirty { task, .. })
            | EventKind::NothingChanged(NothingChanged { task })
            | EventKind::ConflictMarkers(ConflictMarkers { task, .. })
            | EventKind::GateHeld(GateHeld { task, .. })
            | EventKind::GateDecision(GateDecision { task, .. })
            | EventKind::ConflictDecision(ConflictDecision { task, .. })
            | EventKind::TaskEdited(TaskEdited { task, .. })
            | EventKind::Escalated(Escalated { task, .. }) => Some(task),
            EventKind::AgentStarted(AgentStarted { task, .. })
            | EventKind::AgentParked(AgentParked { task, .. })
            | EventKind::ContextCompacted(ContextCompacted { task, .. })
            | EventKind::ReplyBrokenOff(ReplyBrokenOff { task, .. })
            | EventKind::TokensUsed(TokensUsed { task, .. })
            | EventKind::Warning(Warning { task, .. })
            | EventKind::QuestionAsked(QuestionAsked { task, .. })
            | EventKind::BudgetRaised(BudgetRaised { task, .. })
            | EventKind::ShepherdIntervened(ShepherdIntervened { task, .. }) => task.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::TaskState;

    #[test]
    fn event_serializes_flat_with_type_tag() {
        let event = Event {
            run: RunId::from("r1"),
            seq: 7,
            at_ms: 1,
            kind: EventKind::TaskStateChanged(TaskStateChanged {
                task: TaskId::from("t1"),
                from: TaskState::Ready,
                to: TaskState::Running,
                reason: None,
            }),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "task_state_changed");
        assert_eq!(json["to"], "running");
        assert_eq!(json["seq"], 7);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.kind.name(), "task_state_changed");
    }

    #[test]
    fn a_gate_decision_stored_with_a_user_name_still_decodes() {
        let old = serde_json::json!({"run": "r1", "seq": 3, "at_ms": 1,
            "type": "gate_decision", "task": "t1", "approved": true, "by": "human"});
        let event: Event = serde_json::from_value(old).unwrap();
        let EventKind::GateDecision(GateDecision { by, .. }) = &event.kind else {
            panic!("{event:?}")
        };
        assert_eq!(*by, crate::domain::Decider::Earlier("human".into()));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["by"], "human", "written back as it was read");

        let new = EventKind::GateDecision(GateDecision {
            task: TaskId::from("t1"),
            approved: false,
            by: crate::domain::Decider::Mcp("claude-code".into()),
            feedback: "no".into(),
        });
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["by"], "mcp:claude-code");
        assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), new);
    }
}
