//! Events are the source of truth. Every step of a run is appended to the
//! store as one `Event`; the same value is printed as a JSON line in headless
//! mode and sent to the TUI. Current state is `RunState` folded over them.

use serde::{Deserialize, Serialize};

use super::blueprint::Blueprint;
use super::gate_reason::GateReason;
use super::ids::{AgentId, AgentRole, RunId, TaskId};
use super::phase::RunPhase;
use super::task::TaskState;
use super::testers::{TestAgents, TesterTests};

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

/// Run-level settings recorded at start so a resumed or replayed run uses the
/// bounds it was started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub concurrency: usize,
    pub max_tasks: usize,
    pub max_rework: u32,
    pub max_conflict_rework: u32,
    pub max_plan_rounds: u32,
    pub test_command: Option<String>,
    /// The provider of the default role, e.g. `scripted` or `openai`.
    pub provider: String,
    /// Scenario file of a scripted run; `None` for the embedded demo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// Gated merges are approved without a human (CI).
    #[serde(default)]
    pub auto_approve: bool,
    /// Planning waits until a human submits the requirement from the cockpit.
    #[serde(default)]
    pub await_spec: bool,
    /// Tasks whose write-sets overlap never run at the same time. Runs
    /// stored before this setting existed were scheduled without it.
    #[serde(default)]
    pub write_sets: bool,
    /// Token and cost limits; none for runs stored before budgets existed.
    #[serde(default)]
    pub budget: Budget,
    /// The merge queue runs the test command on each merge result before
    /// mainline moves. Off in runs stored before the queue existed.
    #[serde(default)]
    pub verify_merges: bool,
    /// Runs on mainline after each landing; a failure reverts the merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_merge_command: Option<String>,
    /// How agents' commands were fenced (`landlock (...)`, `bwrap (...)`,
    /// `none (...)`); empty in runs stored before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub isolation: String,
    /// Which tasks get a tester before their coder; none in runs stored
    /// before testers existed, and none without a test command.
    #[serde(default = "TestAgents::stored_default")]
    pub test_agents: TestAgents,
}

/// Spending limits of a run and of each of its tasks. Cost limits only bite
/// where the model has a price in config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Tokens (input + output) one task's agents may use.
    pub task_tokens: Option<u64>,
    /// USD one task's agents may spend.
    pub task_usd: Option<f64>,
    /// Tokens the whole run may use, planning included.
    pub run_tokens: Option<u64>,
    pub run_usd: Option<f64>,
}

impl Default for RunSettings {
    /// The defaults of `[run]` in the config, on the scripted provider.
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_tasks: super::blueprint::DEFAULT_MAX_TASKS,
            max_rework: 2,
            max_conflict_rework: 2,
            max_plan_rounds: 3,
            test_command: None,
            provider: "scripted".into(),
            scenario: None,
            auto_approve: false,
            await_spec: false,
            write_sets: true,
            budget: Budget::default(),
            verify_merges: false,
            post_merge_command: None,
            isolation: String::new(),
            test_agents: TestAgents::All,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Every prompt token, cached or not.
    pub input: u64,
    pub output: u64,
    /// Of `input`, the tokens read from the provider's prompt cache.
    #[serde(default)]
    pub cached: u64,
    /// Of `input`, the tokens written to the prompt cache (Anthropic bills
    /// them above the input price).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TokenUsage {
    pub fn total(&self) -> u64 {
        self.input + self.output
    }

    pub fn add(&mut self, other: TokenUsage) {
        self.input += other.input;
        self.output += other.output;
        self.cached += other.cached;
        self.cache_write += other.cache_write;
    }
}

/// Which check of the merge queue ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeCheck {
    /// The test command on the merge result, before mainline moves.
    Verify,
    /// The post-merge command on mainline, after it moved.
    PostMerge,
}

impl MergeCheck {
    pub fn label(self) -> &'static str {
        match self {
            MergeCheck::Verify => "merge verification",
            MergeCheck::PostMerge => "post-merge check",
        }
    }
}

/// How a merge onto mainline went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MergeOutcome {
    FastForward { commit: String },
    MergeCommit { commit: String },
    Conflict { files: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        requirement: String,
        repo: String,
        mainline: String,
        base_commit: String,
        settings: RunSettings,
    },
    /// The run as a whole moved to another phase.
    RunPhaseChanged {
        to: RunPhase,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The process was told to stop (a signal, the cockpit quit) while the
    /// run was not over; `memofab resume` carries it on.
    RunInterrupted {},
    /// The process was restarted and the run picked up from its events.
    RunResumed {
        #[serde(default)]
        interrupted: Vec<TaskId>,
    },
    /// The user's repository changed in a way memofab did not make (a ref,
    /// a hook, the config): the run stops until a human has looked and
    /// resumes it.
    RepositoryChanged {
        changes: Vec<String>,
    },
    /// The human finished editing the requirement; planning may start.
    SpecSubmitted {
        requirement: String,
    },
    BlueprintProposed {
        round: u32,
        blueprint: Blueprint,
    },
    /// Validation found problems; they go back to the planner.
    BlueprintRejected {
        round: u32,
        issues: Vec<String>,
    },
    PlanReviewed {
        round: u32,
        approved: bool,
        feedback: String,
    },
    /// The plan reviewer did not approve within the rounds allowed: a human
    /// decides whether the last blueprint is built or planned once more.
    PlanDisputed {
        round: u32,
        feedback: String,
    },
    /// A human settled a plan dispute.
    PlanDisputeSettled {
        /// Build the last blueprint; otherwise plan one more round.
        build: bool,
        by: String,
    },
    /// The blueprint the build phase works from. Creates every task as pending.
    BlueprintAccepted {
        blueprint: Blueprint,
    },
    /// The state machine's one transition event.
    TaskStateChanged {
        task: TaskId,
        from: TaskState,
        to: TaskState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    WorktreeCreated {
        task: TaskId,
        branch: String,
        path: String,
        base_commit: String,
    },
    AgentStarted {
        agent: AgentId,
        role: AgentRole,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        model: String,
    },
    /// A complete user or assistant message of an agent's conversation.
    AgentMessage {
        agent: AgentId,
        from: MessageAuthor,
        text: String,
    },
    ToolCalled {
        agent: AgentId,
        call_id: String,
        tool: String,
        arguments: serde_json::Value,
    },
    ToolResult {
        agent: AgentId,
        call_id: String,
        ok: bool,
        output: String,
    },
    TokensUsed {
        agent: AgentId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        model: String,
        usage: TokenUsage,
        /// What the usage cost at the model's configured price.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    AgentFinished {
        agent: AgentId,
        ok: bool,
        summary: String,
    },
    /// The agent waits for its provider's rate or usage limit to pass. It
    /// resumes by itself at `until_ms`; it has not failed.
    AgentParked {
        agent: AgentId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        /// The provider's config name.
        provider: String,
        /// Unix ms when the agent asks again.
        until_ms: u64,
        /// e.g. `rate limited by openai: Rate limit reached for gpt-4o`.
        reason: String,
    },
    /// The agent's conversation neared its model's context window and was
    /// compacted: old tool results replaced by one-line stubs, then the
    /// oldest turns summarised into a note the agent keeps (`note`).
    ContextCompacted {
        agent: AgentId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        /// The model's context window, in tokens.
        context_tokens: u64,
        /// The prompt's estimated size before and after.
        before_tokens: u64,
        after_tokens: u64,
        /// Tool results replaced by stubs.
        stubbed: u32,
        /// Messages folded into the note.
        summarised: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The model's reply broke off mid-stream with an error the server sent
    /// after answering 200 (OpenAI's `data: {"error": …}`, Anthropic's
    /// `event: error`, overloaded): the agent asks again after a back-off.
    ReplyBrokenOff {
        agent: AgentId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        /// How many times this request has broken off in a row.
        attempt: u32,
        /// What the server said, e.g. `529: Overloaded`.
        reason: String,
    },
    /// The park is over; the agent asks the model again.
    AgentUnparked {
        agent: AgentId,
    },
    /// The provider's adaptive concurrency limit moved (halved on a limit,
    /// grown back after successes).
    ProviderLimitChanged {
        provider: String,
        limit: u32,
        ceiling: u32,
    },
    /// The coder's work, committed on the task branch.
    ChangeCommitted {
        task: TaskId,
        commit: String,
        files: Vec<String>,
        diff: String,
    },
    /// The tester's acceptance tests ran on the task's base commit, before
    /// any change of the coder's: tests of new behaviour fail there. Tests
    /// that passed send the tester back, within `max_rework` rounds.
    TestsOnBase {
        task: TaskId,
        /// The tester's round, from 1.
        round: u32,
        files: Vec<String>,
        command: String,
        exit_code: Option<i32>,
        /// The wanted outcome.
        failed: bool,
        duration_ms: u64,
        output: String,
    },
    /// The tester's step is over and the coder's begins. With `tests`, they
    /// are committed on the task branch and read-only for the coder; without,
    /// the task goes on without a tester's tests (a warning says why).
    TesterDone {
        task: TaskId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tests: Option<TesterTests>,
    },
    ReviewVerdict {
        task: TaskId,
        approved: bool,
        feedback: String,
    },
    TestRun {
        task: TaskId,
        command: String,
        exit_code: Option<i32>,
        passed: bool,
        duration_ms: u64,
        output: String,
    },
    MergeResult {
        task: TaskId,
        result: MergeOutcome,
    },
    /// A check of the merge queue ran on `candidate`, the merge of the task
    /// onto mainline at `onto`. For the post-merge check both name the
    /// landed merge.
    MergeVerified {
        task: TaskId,
        check: MergeCheck,
        candidate: String,
        onto: String,
        command: String,
        exit_code: Option<i32>,
        passed: bool,
        duration_ms: u64,
        output: String,
    },
    /// The post-merge check failed on mainline, so memofab reverted the merge
    /// (`revert_commit` on mainline) and put the change back on the task
    /// branch (`reapplied`) for rework.
    MergeReverted {
        task: TaskId,
        merge_commit: String,
        revert_commit: String,
        reapplied: String,
        output: String,
    },
    /// Mainline could not move: the main work tree has it checked out and
    /// holds changes of the user's (`files`). The task waits to land and the
    /// run pauses until a human commits or stashes them and resumes.
    CheckoutDirty {
        task: TaskId,
        files: Vec<String>,
    },
    /// The coder finished without changing any file. Within the rework
    /// bound it gets another attempt, told so; the task stays running.
    NothingChanged {
        task: TaskId,
    },
    /// Mainline was merged into the task worktree and left conflict markers
    /// for the coder (or a human) to resolve.
    ConflictMarkers {
        task: TaskId,
        files: Vec<ConflictFile>,
    },
    /// The gate held a change for a human, for these reasons (recorded
    /// just before the task moves to `awaiting_gate`).
    GateHeld {
        task: TaskId,
        reasons: Vec<GateReason>,
    },
    /// A human (or `--auto-approve`) decided a gated merge.
    GateDecision {
        task: TaskId,
        approved: bool,
        /// The channel it came through (`cockpit`, `cli`, `mcp:<client>`,
        /// `auto`); a user name in stores written before that was recorded.
        by: super::decider::Decider,
        #[serde(default)]
        feedback: String,
    },
    /// A human decided how an escalated conflict is resolved.
    ConflictDecision {
        task: TaskId,
        resolution: ConflictResolution,
        by: String,
    },
    /// A conflict outlived its rework bound, or needs a human for another reason.
    Escalated {
        task: TaskId,
        reason: String,
    },
    /// Something went wrong that the run survived (an agent error, a refused
    /// write to a protected path); shown to the human, never silently dropped.
    Warning {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        message: String,
    },
    /// The shepherd found work stuck and acted: a nudge to the agent, a
    /// fresh agent in its place, or a human asked to look.
    ShepherdIntervened {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        /// The agent it acted on; none for a rework echo between rounds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<AgentId>,
        pattern: super::shepherd::Pattern,
        action: super::shepherd::Action,
    },
    /// A human changed a task before it started.
    TaskEdited {
        task: TaskId,
        description: String,
        acceptance: Vec<String>,
    },
    /// The tools an agent was given from the configured MCP servers, and
    /// the servers that gave none; recorded right after `AgentStarted`.
    McpToolsListed {
        agent: AgentId,
        servers: Vec<super::mcp::McpServerListing>,
    },
    /// An agent asked the human a question (its `ask_human` tool) and waits.
    QuestionAsked {
        agent: AgentId,
        call_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        question: String,
    },
    QuestionAnswered {
        agent: AgentId,
        call_id: String,
        answer: String,
        by: String,
    },
    /// A human had a parked provider tried again before its wait was over.
    ParkLifted {
        provider: String,
        by: String,
    },
    /// A human gave a task (or, without a task, the run) one more budget's
    /// worth of tokens and cost, after it ran out.
    BudgetRaised {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        by: String,
    },
    /// The overseer's report on past runs, with its proposals.
    OverseerReport {
        runs: Vec<RunId>,
        markdown: String,
        proposals: Vec<super::proposal::Proposal>,
    },
    /// A human applied (or rejected) one of the overseer's proposals.
    ProposalDecision {
        /// 1-based number of the proposal in the report.
        proposal: u32,
        approved: bool,
        by: String,
    },
    RunFinished {
        merged: usize,
        failed: usize,
        mainline_commit: String,
    },
}

/// What a human decided for a task whose merge conflict was escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictResolution {
    /// Send the task back to its coder against the new mainline.
    Rework,
    /// Hand the conflict to the resolver agent.
    Resolver,
    /// The human fixed the files in the worktree; commit and merge them.
    MarkResolved,
}

/// A file left with conflict markers, as the coder sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictFile {
    pub path: String,
    /// The file's content with `<<<<<<<`/`=======`/`>>>>>>>` markers.
    pub content: String,
}

/// Who wrote a conversation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageAuthor {
    System,
    User,
    Assistant,
    /// The assistant's reasoning before its answer (reasoning models).
    Thinking,
}

impl EventKind {
    /// The task this event is about, if any.
    pub fn task(&self) -> Option<&TaskId> {
        match self {
            EventKind::TaskStateChanged { task, .. }
            | EventKind::WorktreeCreated { task, .. }
            | EventKind::ChangeCommitted { task, .. }
            | EventKind::ReviewVerdict { task, .. }
            | EventKind::TestsOnBase { task, .. }
            | EventKind::TesterDone { task, .. }
            | EventKind::TestRun { task, .. }
            | EventKind::MergeResult { task, .. }
            | EventKind::MergeVerified { task, .. }
            | EventKind::MergeReverted { task, .. }
            | EventKind::CheckoutDirty { task, .. }
            | EventKind::NothingChanged { task }
            | EventKind::ConflictMarkers { task, .. }
            | EventKind::GateHeld { task, .. }
            | EventKind::GateDecision { task, .. }
            | EventKind::ConflictDecision { task, .. }
            | EventKind::TaskEdited { task, .. }
            | EventKind::Escalated { task, .. } => Some(task),
            EventKind::AgentStarted { task, .. }
            | EventKind::AgentParked { task, .. }
            | EventKind::ContextCompacted { task, .. }
            | EventKind::ReplyBrokenOff { task, .. }
            | EventKind::TokensUsed { task, .. }
            | EventKind::Warning { task, .. }
            | EventKind::QuestionAsked { task, .. }
            | EventKind::BudgetRaised { task, .. }
            | EventKind::ShepherdIntervened { task, .. } => task.as_ref(),
            _ => None,
        }
    }

    /// One line saying a reply broke off, for transcripts and the log.
    pub fn broken_off_line(&self) -> Option<String> {
        let EventKind::ReplyBrokenOff {
            attempt, reason, ..
        } = self
        else {
            return None;
        };
        Some(format!(
            "the reply broke off mid-stream ({reason}); asking again (attempt {})",
            attempt + 1
        ))
    }

    /// One line saying what a `ContextCompacted` did, for transcripts.
    pub fn compaction_line(&self) -> Option<String> {
        let EventKind::ContextCompacted {
            context_tokens,
            before_tokens,
            after_tokens,
            stubbed,
            summarised,
            ..
        } = self
        else {
            return None;
        };
        let mut what = Vec::new();
        if *stubbed > 0 {
            what.push(format!("{stubbed} old tool results stubbed"));
        }
        if *summarised > 0 {
            what.push(format!("{summarised} earlier messages summarised"));
        }
        Some(format!(
            "context compacted to fit the model's {context_tokens}-token window: about \
             {before_tokens} → {after_tokens} tokens ({})",
            what.join(", ")
        ))
    }

    /// Short machine name of the variant, as serialized in `type`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::RunPhaseChanged { .. } => "run_phase_changed",
            EventKind::RunInterrupted {} => "run_interrupted",
            EventKind::RunResumed { .. } => "run_resumed",
            EventKind::RepositoryChanged { .. } => "repository_changed",
            EventKind::SpecSubmitted { .. } => "spec_submitted",
            EventKind::BlueprintProposed { .. } => "blueprint_proposed",
            EventKind::BlueprintRejected { .. } => "blueprint_rejected",
            EventKind::PlanReviewed { .. } => "plan_reviewed",
            EventKind::BlueprintAccepted { .. } => "blueprint_accepted",
            EventKind::TaskStateChanged { .. } => "task_state_changed",
            EventKind::WorktreeCreated { .. } => "worktree_created",
            EventKind::AgentStarted { .. } => "agent_started",
            EventKind::AgentMessage { .. } => "agent_message",
            EventKind::ToolCalled { .. } => "tool_called",
            EventKind::ToolResult { .. } => "tool_result",
            EventKind::TokensUsed { .. } => "tokens_used",
            EventKind::AgentFinished { .. } => "agent_finished",
            EventKind::AgentParked { .. } => "agent_parked",
            EventKind::AgentUnparked { .. } => "agent_unparked",
            EventKind::ContextCompacted { .. } => "context_compacted",
            EventKind::ReplyBrokenOff { .. } => "reply_broken_off",
            EventKind::ProviderLimitChanged { .. } => "provider_limit_changed",
            EventKind::ChangeCommitted { .. } => "change_committed",
            EventKind::ReviewVerdict { .. } => "review_verdict",
            EventKind::TestsOnBase { .. } => "tests_on_base",
            EventKind::TesterDone { .. } => "tester_done",
            EventKind::TestRun { .. } => "test_run",
            EventKind::MergeResult { .. } => "merge_result",
            EventKind::MergeVerified { .. } => "merge_verified",
            EventKind::MergeReverted { .. } => "merge_reverted",
            EventKind::CheckoutDirty { .. } => "checkout_dirty",
            EventKind::NothingChanged { .. } => "nothing_changed",
            EventKind::ConflictMarkers { .. } => "conflict_markers",
            EventKind::GateHeld { .. } => "gate_held",
            EventKind::GateDecision { .. } => "gate_decision",
            EventKind::ConflictDecision { .. } => "conflict_decision",
            EventKind::Escalated { .. } => "escalated",
            EventKind::Warning { .. } => "warning",
            EventKind::TaskEdited { .. } => "task_edited",
            EventKind::ShepherdIntervened { .. } => "shepherd_intervened",
            EventKind::BudgetRaised { .. } => "budget_raised",
            EventKind::PlanDisputed { .. } => "plan_disputed",
            EventKind::PlanDisputeSettled { .. } => "plan_dispute_settled",
            EventKind::McpToolsListed { .. } => "mcp_tools_listed",
            EventKind::QuestionAsked { .. } => "question_asked",
            EventKind::QuestionAnswered { .. } => "question_answered",
            EventKind::ParkLifted { .. } => "park_lifted",
            EventKind::OverseerReport { .. } => "overseer_report",
            EventKind::ProposalDecision { .. } => "proposal_decision",
            EventKind::RunFinished { .. } => "run_finished",
        }
    }
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serializes_flat_with_type_tag() {
        let event = Event {
            run: RunId::from("r1"),
            seq: 7,
            at_ms: 1,
            kind: EventKind::TaskStateChanged {
                task: TaskId::from("t1"),
                from: TaskState::Ready,
                to: TaskState::Running,
                reason: None,
            },
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
        let EventKind::GateDecision { by, .. } = &event.kind else {
            panic!("{event:?}")
        };
        assert_eq!(*by, crate::domain::Decider::Earlier("human".into()));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["by"], "human", "written back as it was read");

        let new = EventKind::GateDecision {
            task: TaskId::from("t1"),
            approved: false,
            by: crate::domain::Decider::Mcp("claude-code".into()),
            feedback: "no".into(),
        };
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["by"], "mcp:claude-code");
        assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), new);
    }
}
