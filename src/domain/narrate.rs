//! Events told in words, once. The cockpit's Log tab, the Markdown account
//! of `memofab export` and the run summary all say what happened with these
//! functions, so a failure reads the same wherever a human meets it.
//!
//! Pure: text in, text out. Text an agent wrote stays as it is here; each
//! place that shows it escapes it for its medium (the export escapes
//! Markdown headings and fences).

use super::event::{
    AgentParked, AgentUnparked, BudgetRaised, CheckoutDirty, ContextCompacted, Escalated, Event,
    EventKind, GateDecision, GateHeld, MergeOutcome, MergeResult, MergeReverted, MergeVerified,
    NothingChanged, ParkLifted, PlanDisputeSettled, PlanDisputed, PlanReviewed,
    ProviderLimitChanged, QuestionAnswered, QuestionAsked, ReplyBrokenOff, RepositoryChanged,
    ReviewVerdict, RunFinished, RunPhaseChanged, ShepherdIntervened, TaskStateChanged, TestRun,
    TesterDone, TestsOnBase,
};
use super::ids::{TaskId, short_commit};
use super::phase::RunPhase;
use super::stuck::Action;
use super::task::TaskState;

/// One notable thing that happened, for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// A human should look: a failure, a block, a question, a pause.
    pub warn: bool,
    pub text: String,
}

impl Line {
    fn new(warn: bool, text: String) -> Option<Self> {
        Some(Self { warn, text })
    }
}

/// The line `event` adds to the run's story, if it is notable; the events
/// that only feed state or a transcript have none.
pub fn line(event: &Event) -> Option<Line> {
    match &event.kind {
        EventKind::TaskStateChanged(e) => task_state_changed(e),
        EventKind::RunPhaseChanged(RunPhaseChanged {
            to: RunPhase::Failed,
            reason,
        }) => Line::new(
            true,
            format!("the run failed: {}", reason.as_deref().unwrap_or(NO_REASON)),
        ),
        EventKind::RunInterrupted(_) => {
            Line::new(false, "the run was interrupted (resumable)".to_owned())
        }
        EventKind::RunResumed(_) => Line::new(false, "the run was resumed".to_owned()),
        EventKind::RepositoryChanged(RepositoryChanged { changes }) => Line::new(
            true,
            format!(
                "the repository changed outside memofab, the run is paused: {}",
                changes.join("; ")
            ),
        ),
        EventKind::RunFinished(e) => run_finished(e),
        EventKind::PlanReviewed(e) => plan_reviewed(e),
        EventKind::PlanDisputed(PlanDisputed { round, feedback }) => Line::new(
            true,
            format!(
                "the plan reviewer still disagrees after round {round}: {}",
                first_line(feedback)
            ),
        ),
        EventKind::PlanDisputeSettled(PlanDisputeSettled { build, by }) => Line::new(
            false,
            format!(
                "{by} settled the plan dispute: {}",
                if *build { "build it" } else { "plan once more" }
            ),
        ),
        EventKind::BudgetRaised(BudgetRaised { task, by }) => {
            let what = task
                .as_ref()
                .map_or_else(|| "the run".to_owned(), |t| t.to_string());
            Line::new(false, format!("{by} granted {what} more budget"))
        }
        EventKind::Warning(e) => Line::new(true, e.message.clone()),
        _ => task_line(event)
            .or_else(|| merge_line(event))
            .or_else(|| agent_line(event)),
    }
}

/// Lines about a task's pipeline before it lands.
fn task_line(event: &Event) -> Option<Line> {
    match &event.kind {
        EventKind::ReviewVerdict(e) => review_verdict(e),
        EventKind::TestsOnBase(e) => tests_on_base(e),
        EventKind::TesterDone(e) => tester_done(e),
        EventKind::TestRun(TestRun {
            task,
            passed,
            command,
            ..
        }) => {
            let verdict = if *passed { "passed" } else { "FAILED" };
            Line::new(!passed, format!("{task}: `{command}` {verdict}"))
        }
        EventKind::NothingChanged(NothingChanged { task }) => Line::new(
            true,
            format!("{task}: the coder finished without changing anything; trying again"),
        ),
        EventKind::Escalated(Escalated { task, reason }) => {
            Line::new(true, format!("{task}: escalated: {reason}"))
        }
        EventKind::ShepherdIntervened(e) => {
            Line::new(e.action == Action::Escalate, intervention(e))
        }
        _ => None,
    }
}

/// Lines about landing a change.
fn merge_line(event: &Event) -> Option<Line> {
    match &event.kind {
        EventKind::MergeResult(e) => merge_result(e),
        EventKind::MergeVerified(e) => merge_verified(e),
        EventKind::MergeReverted(MergeReverted {
            task,
            merge_commit,
            revert_commit,
            ..
        }) => Line::new(
            true,
            format!(
                "{task}: merge {} reverted on mainline by {}",
                short_commit(merge_commit),
                short_commit(revert_commit)
            ),
        ),
        EventKind::CheckoutDirty(CheckoutDirty { task, files }) => Line::new(
            true,
            format!(
                "{task}: waits to land: your checkout has changes in {}",
                files.join(", ")
            ),
        ),
        EventKind::GateHeld(GateHeld { task, reasons }) => Line::new(
            false,
            format!(
                "{task}: held at the gate: {}",
                super::gate_reason::joined(reasons)
            ),
        ),
        EventKind::GateDecision(GateDecision {
            task, approved, by, ..
        }) => {
            let verdict = if *approved { "approved" } else { "rejected" };
            Line::new(false, format!("{task}: gate {verdict} by {by}"))
        }
        _ => None,
    }
}

/// Lines about agents and their providers.
fn agent_line(event: &Event) -> Option<Line> {
    match &event.kind {
        EventKind::QuestionAsked(QuestionAsked {
            agent, question, ..
        }) => Line::new(true, format!("{agent} asks: {question}")),
        EventKind::QuestionAnswered(QuestionAnswered {
            agent, answer, by, ..
        }) => Line::new(false, format!("{by} answered {agent}: {answer}")),
        EventKind::ParkLifted(ParkLifted { provider, by }) => {
            Line::new(false, format!("{by} had {provider} tried again now"))
        }
        EventKind::AgentParked(AgentParked {
            agent,
            until_ms,
            reason,
            ..
        }) => {
            let secs = until_ms.saturating_sub(event.at_ms).div_ceil(1000);
            Line::new(true, format!("{agent}: parked for {secs}s: {reason}"))
        }
        EventKind::AgentUnparked(AgentUnparked { agent }) => {
            Line::new(false, format!("{agent}: resumed"))
        }
        EventKind::ReplyBrokenOff(e) => Line::new(true, format!("{}: {}", e.agent, broken_off(e))),
        EventKind::ProviderLimitChanged(ProviderLimitChanged {
            provider,
            limit,
            ceiling,
        }) => Line::new(
            false,
            format!("{provider}: {limit} of {ceiling} request slots"),
        ),
        _ => None,
    }
}

const NO_REASON: &str = "no reason given";

/// A task's state and why, as the Log tab and the run summary say it:
/// `stats is failed: the provider is down`.
pub fn task_state(task: &TaskId, state: TaskState, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("{task} is {state}: {reason}"),
        None => format!("{task} is {state}"),
    }
}

/// Failures and blocks are what a human must notice: said with why.
fn task_state_changed(e: &TaskStateChanged) -> Option<Line> {
    let TaskStateChanged {
        task, to, reason, ..
    } = e;
    match to {
        TaskState::Failed | TaskState::Blocked | TaskState::Cancelled => Line::new(
            true,
            task_state(task, *to, Some(reason.as_deref().unwrap_or(NO_REASON))),
        ),
        TaskState::OverBudget => Line::new(
            true,
            format!(
                "{task}: paused, {}",
                reason.as_deref().unwrap_or("over budget")
            ),
        ),
        _ => None,
    }
}

fn run_finished(e: &RunFinished) -> Option<Line> {
    let RunFinished {
        merged,
        failed,
        mainline_commit,
    } = e;
    Line::new(
        *failed > 0,
        format!(
            "run finished: {merged} merged, {failed} not merged; mainline at {}",
            short_commit(mainline_commit)
        ),
    )
}

fn plan_reviewed(e: &PlanReviewed) -> Option<Line> {
    let text = if e.approved {
        format!("plan round {} approved", e.round)
    } else {
        format!(
            "plan round {} sent back: {}",
            e.round,
            first_line(&e.feedback)
        )
    };
    Line::new(false, text)
}

fn review_verdict(e: &ReviewVerdict) -> Option<Line> {
    let task = &e.task;
    let text = if e.approved {
        format!("{task}: review approved")
    } else {
        format!(
            "{task}: review asked for changes: {}",
            first_line(&e.feedback)
        )
    };
    Line::new(!e.approved, text)
}

fn tests_on_base(e: &TestsOnBase) -> Option<Line> {
    let task = &e.task;
    let text = if e.failed {
        format!("{task}: the tester's tests fail on the base commit, as they must")
    } else {
        format!(
            "{task}: the tester's tests PASS on the base commit (round {}); they prove nothing",
            e.round
        )
    };
    Line::new(!e.failed, text)
}

fn tester_done(e: &TesterDone) -> Option<Line> {
    let task = &e.task;
    let text = match &e.tests {
        Some(tests) => format!(
            "{task}: the tester's tests are in, read-only for the coder: {}",
            tests.files.join(", ")
        ),
        None => format!("{task}: goes on without a tester's tests"),
    };
    Line::new(false, text)
}

fn merge_result(e: &MergeResult) -> Option<Line> {
    let task = &e.task;
    match &e.result {
        MergeOutcome::FastForward { commit } => Line::new(
            false,
            format!(
                "{task}: merged onto mainline (fast-forward to {})",
                short_commit(commit)
            ),
        ),
        MergeOutcome::MergeCommit { commit } => Line::new(
            false,
            format!(
                "{task}: merged onto mainline (merge commit {})",
                short_commit(commit)
            ),
        ),
        MergeOutcome::Conflict { files } => Line::new(
            true,
            format!("{task}: merge conflict in {}", files.join(", ")),
        ),
    }
}

fn merge_verified(e: &MergeVerified) -> Option<Line> {
    let MergeVerified {
        task,
        check,
        candidate,
        command,
        passed,
        output,
        ..
    } = e;
    let at_commit = short_commit(candidate);
    let text = if *passed {
        format!(
            "{task}: {} `{command}` passed on {at_commit}",
            check.label()
        )
    } else {
        let last = output.lines().rev().find(|l| !l.trim().is_empty());
        format!(
            "{task}: {} `{command}` FAILED on {at_commit}: {}",
            check.label(),
            last.unwrap_or("no output")
        )
    };
    Line::new(!passed, text)
}

/// Who the shepherd found stuck, how, and what it did.
pub fn intervention(e: &ShepherdIntervened) -> String {
    super::shepherd::intervention_line(e.task.as_ref(), e.agent.as_ref(), &e.pattern, e.action)
}

/// A reply that broke off, for the agent's transcript and the log.
pub fn broken_off(e: &ReplyBrokenOff) -> String {
    format!(
        "the reply broke off mid-stream ({}); asking again (attempt {})",
        e.reason,
        e.attempt + 1
    )
}

/// What a compaction did, for the agent's transcript.
pub fn compaction(e: &ContextCompacted) -> String {
    let mut what = Vec::new();
    if e.stubbed > 0 {
        what.push(format!("{} old tool results stubbed", e.stubbed));
    }
    if e.summarised > 0 {
        what.push(format!("{} earlier messages summarised", e.summarised));
    }
    format!(
        "context compacted to fit the model's {}-token window: about {} → {} tokens ({})",
        e.context_tokens,
        e.before_tokens,
        e.after_tokens,
        what.join(", ")
    )
}

/// The first line of a text, trimmed.
pub fn first_line(text: &str) -> &str {
    text.trim().lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stand_in_says_and_changes_nothing() {
        let start = crate::domain::fixture::events().remove(0);
        let stand_in = Event {
            run: start.run.clone(),
            seq: start.seq + 1,
            at_ms: start.at_ms,
            kind: EventKind::stand_in(),
        };
        assert!(line(&stand_in).is_none());
        let mut state = crate::domain::RunState::start(&start).unwrap();
        let before = format!("{state:?}");
        state.apply(&stand_in).unwrap();
        state.last_seq = start.seq;
        assert_eq!(format!("{state:?}"), before);
    }

    /// Every sample event (one or more of each kind) and what it says: a
    /// change of wording shows here, on purpose or not.
    #[test]
    fn the_words_for_every_kind() {
        let samples = include_str!("event/samples.jsonl");
        let mut told = String::new();
        for body in samples.lines() {
            let event: Event = serde_json::from_str(body).unwrap();
            let said = match line(&event) {
                Some(Line { warn: true, text }) => format!("! {text}"),
                Some(Line { warn: false, text }) => format!("  {text}"),
                None => "  -".to_owned(),
            };
            told.push_str(&format!("{:<22} {said}\n", event.kind.name()));
        }
        insta::assert_snapshot!(told);
    }

    #[test]
    fn transcript_notes_say_what_the_factory_did() {
        let compacted = ContextCompacted {
            agent: "coder:a#1".into(),
            task: None,
            context_tokens: 8000,
            before_tokens: 7000,
            after_tokens: 3000,
            stubbed: 4,
            summarised: 0,
            note: None,
        };
        assert_eq!(
            compaction(&compacted),
            "context compacted to fit the model's 8000-token window: about 7000 → 3000 tokens \
             (4 old tool results stubbed)"
        );
        let broke = ReplyBrokenOff {
            agent: "coder:a#1".into(),
            task: None,
            attempt: 1,
            reason: "529: Overloaded".into(),
        };
        assert_eq!(
            broken_off(&broke),
            "the reply broke off mid-stream (529: Overloaded); asking again (attempt 2)"
        );
    }
}
