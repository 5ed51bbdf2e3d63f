//! The state machine's tests.

use super::*;
use crate::domain::blueprint::TaskSpec;
use crate::domain::event::{
    AgentFinished, AgentParked, AgentStarted, AgentUnparked, BlueprintAccepted, MergeResult,
    MergeReverted, MergeVerified, NothingChanged, PlanDisputeSettled, PlanDisputed,
    ProviderLimitChanged, QuestionAnswered, QuestionAsked, ReviewVerdict, RunResumed, RunStarted,
    TaskStateChanged, ToolCalled, WorktreeCreated,
};
use crate::domain::event::{MergeCheck, MergeOutcome};

fn settings() -> RunSettings {
    RunSettings {
        concurrency: 2,
        ..RunSettings::default()
    }
}

struct Log {
    events: Vec<Event>,
}

impl Log {
    fn new() -> Self {
        let mut log = Log { events: vec![] };
        log.push(EventKind::RunStarted(RunStarted {
            requirement: "req".into(),
            repo: "/repo".into(),
            mainline: "main".into(),
            base_commit: "base".into(),
            settings: settings(),
        }));
        log
    }

    fn push(&mut self, kind: EventKind) -> &Event {
        let seq = self.events.len() as u64 + 1;
        self.events.push(Event {
            run: RunId::from("r"),
            seq,
            at_ms: seq * 10,
            kind,
        });
        self.events.last().unwrap()
    }

    fn move_task(&mut self, task: &str, from: TaskState, to: TaskState) {
        self.push(EventKind::TaskStateChanged(TaskStateChanged {
            task: task.into(),
            from,
            to,
            reason: None,
        }));
    }
}

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

fn accepted() -> Log {
    let mut log = Log::new();
    log.push(EventKind::BlueprintAccepted(BlueprintAccepted {
        blueprint: Blueprint {
            title: "b".into(),
            tasks: vec![spec("a", &[]), spec("b", &["a"])],
        },
    }));
    log
}

#[test]
fn fold_tracks_parked_agents_and_provider_limits() {
    use crate::domain::AgentRole;
    let mut log = accepted();
    let coder = AgentId::for_task(AgentRole::Coder, &"a".into(), 1);
    let planner = AgentId::for_run(AgentRole::Planner, 1);
    for (agent, task) in [(&coder, Some("a")), (&planner, None)] {
        log.push(EventKind::AgentParked(AgentParked {
            agent: agent.clone(),
            task: task.map(TaskId::from),
            provider: "openai".into(),
            until_ms: 5_000,
            reason: "rate limited by openai: slow down".into(),
        }));
    }
    log.push(EventKind::ProviderLimitChanged(ProviderLimitChanged {
        provider: "openai".into(),
        limit: 2,
        ceiling: 4,
    }));
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(state.parked.len(), 2);
    let parked = &state.parked[&coder];
    assert_eq!(parked.task, Some(TaskId::from("a")));
    assert_eq!(parked.short_reason(), "rate limited by openai");
    assert_eq!(parked.resumes_in_secs(3_500), 2);
    assert_eq!(
        state.provider_limits["openai"],
        ProviderLimit {
            limit: 2,
            ceiling: 4
        }
    );

    // Unparked, or finished while parked: gone either way.
    log.push(EventKind::AgentUnparked(AgentUnparked {
        agent: coder.clone(),
    }));
    log.push(EventKind::AgentFinished(AgentFinished {
        agent: planner.clone(),
        ok: false,
        summary: "gave up".into(),
    }));
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert!(state.parked.is_empty());

    // A task cancelled while its coder is parked, and a restart.
    log.push(EventKind::AgentParked(AgentParked {
        agent: coder.clone(),
        task: Some("a".into()),
        provider: "openai".into(),
        until_ms: 9_000,
        reason: "rate limited by openai".into(),
    }));
    log.push(EventKind::AgentParked(AgentParked {
        agent: planner.clone(),
        task: None,
        provider: "openai".into(),
        until_ms: 9_000,
        reason: "rate limited by openai".into(),
    }));
    log.move_task("a", TaskState::Pending, TaskState::Cancelled);
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(state.parked.keys().collect::<Vec<_>>(), [&planner]);
    log.push(EventKind::RunResumed(RunResumed {
        interrupted: vec![],
    }));
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert!(state.parked.is_empty());
}

#[test]
fn fold_tracks_questions_disputes_and_observed_writes() {
    use crate::domain::AgentRole;
    let mut log = accepted();
    let coder = AgentId::for_task(AgentRole::Coder, &"a".into(), 1);
    log.push(EventKind::AgentStarted(AgentStarted {
        agent: coder.clone(),
        role: AgentRole::Coder,
        task: Some("a".into()),
        model: "m".into(),
    }));
    for (call, tool, path) in [
        ("c1", "write_file", "./src//x.rs"),
        ("c2", "read_file", "y"),
    ] {
        log.push(EventKind::ToolCalled(ToolCalled {
            agent: coder.clone(),
            call_id: call.into(),
            tool: tool.into(),
            arguments: serde_json::json!({ "path": path }),
        }));
    }
    for call in ["q1", "q2"] {
        log.push(EventKind::QuestionAsked(QuestionAsked {
            agent: coder.clone(),
            call_id: call.into(),
            task: Some("a".into()),
            question: "which?".into(),
        }));
    }
    log.push(EventKind::QuestionAnswered(QuestionAnswered {
        agent: coder.clone(),
        call_id: "q1".into(),
        answer: "this".into(),
        by: "me".into(),
    }));
    let state = RunState::fold(&log.events).unwrap().unwrap();
    let a = state.task(&"a".into()).unwrap();
    assert_eq!(a.observed_writes.iter().collect::<Vec<_>>(), ["src/x.rs"]);
    let open: Vec<&str> = state.open_questions().map(|q| q.call_id.as_str()).collect();
    assert_eq!(open, ["q2"]);
    // Nobody waits for an answer after a restart.
    log.push(EventKind::RunResumed(RunResumed {
        interrupted: vec![],
    }));
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(state.open_questions().count(), 0);
    assert_eq!(
        state.questions.len(),
        1,
        "answered questions stay on record"
    );
}

#[test]
fn a_plan_dispute_is_open_until_settled_and_replanning_adds_a_round() {
    let mut log = Log::new();
    log.push(EventKind::PlanDisputed(PlanDisputed {
        round: 3,
        feedback: "no".into(),
    }));
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(state.plan_dispute, Some((3, "no".into())));
    log.push(EventKind::PlanDisputeSettled(PlanDisputeSettled {
        build: false,
        by: "me".into(),
    }));
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(state.plan_dispute, None);
    assert_eq!(state.extra_plan_rounds, 1);
}

#[test]
fn fold_tracks_states_reworks_and_mainline() {
    use TaskState::*;
    let mut log = accepted();
    log.move_task("a", Pending, Ready);
    log.move_task("a", Ready, Running);
    log.move_task("a", Running, Reviewing);
    log.push(EventKind::ReviewVerdict(ReviewVerdict {
        task: "a".into(),
        approved: false,
        feedback: "add tests".into(),
    }));
    log.move_task("a", Reviewing, Running);
    log.move_task("a", Running, Reviewing);
    log.move_task("a", Reviewing, Testing);
    log.move_task("a", Testing, Merging);
    log.push(EventKind::MergeResult(MergeResult {
        task: "a".into(),
        result: MergeOutcome::FastForward {
            commit: "c1".into(),
        },
    }));
    log.move_task("a", Merging, Merged);

    let state = RunState::fold(&log.events).unwrap().unwrap();
    let a = state.task(&"a".into()).unwrap();
    assert_eq!(a.state, Merged);
    assert_eq!(a.reworks, 1);
    assert_eq!(a.attempt, 2);
    assert!(a.feedback.as_deref().unwrap().contains("add tests"));
    assert_eq!(state.mainline_commit, "c1");
    let b = state.task(&"b".into()).unwrap();
    assert!(state.dependencies_merged(b));
}

#[test]
fn illegal_and_stale_transitions_are_refused_without_change() {
    use TaskState::*;
    let mut log = accepted();
    let mut state = RunState::fold(&log.events).unwrap().unwrap();
    let before = state.clone();
    let skip = log
        .push(EventKind::TaskStateChanged(TaskStateChanged {
            task: "a".into(),
            from: Pending,
            to: Merged,
            reason: None,
        }))
        .clone();
    assert!(matches!(
        state.apply(&skip),
        Err(TransitionError::Illegal { .. })
    ));
    assert_eq!(state, before);

    let stale = Event {
        kind: EventKind::TaskStateChanged(TaskStateChanged {
            task: "a".into(),
            from: Running,
            to: Reviewing,
            reason: None,
        }),
        ..skip.clone()
    };
    assert!(matches!(
        state.apply(&stale),
        Err(TransitionError::StaleFrom { .. })
    ));
    let unknown = Event {
        kind: EventKind::TaskStateChanged(TaskStateChanged {
            task: "zz".into(),
            from: Pending,
            to: Ready,
            reason: None,
        }),
        ..skip
    };
    assert!(matches!(
        state.apply(&unknown),
        Err(TransitionError::UnknownTask { .. })
    ));
    assert_eq!(state, before);
}

#[test]
fn finishing_unchanged_is_a_rework_round_with_feedback_only_while_running() {
    use TaskState::*;
    let mut log = accepted();
    log.move_task("a", Pending, Ready);
    let early = log
        .push(EventKind::NothingChanged(NothingChanged {
            task: "a".into(),
        }))
        .clone();
    log.events.pop();
    let mut state = RunState::fold(&log.events).unwrap().unwrap();
    let before = state.clone();
    assert!(matches!(
        state.apply(&early),
        Err(TransitionError::NotRunning { .. })
    ));
    assert_eq!(state, before);

    log.move_task("a", Ready, Running);
    log.push(EventKind::NothingChanged(NothingChanged {
        task: "a".into(),
    }));
    let state = RunState::fold(&log.events).unwrap().unwrap();
    let a = state.task(&"a".into()).unwrap();
    assert_eq!(a.state, Running);
    assert_eq!((a.attempt, a.reworks), (2, 1));
    assert_eq!(a.feedback.as_deref(), Some(NOTHING_CHANGED_FEEDBACK));
}

#[test]
fn interrupted_attempt_resumes_without_counting_a_rework() {
    use TaskState::*;
    let mut log = accepted();
    log.move_task("a", Pending, Ready);
    log.move_task("a", Ready, Running);
    log.move_task("a", Running, Ready);
    log.move_task("a", Ready, Running);
    let state = RunState::fold(&log.events).unwrap().unwrap();
    let a = state.task(&"a".into()).unwrap();
    assert_eq!((a.attempt, a.reworks), (1, 0));
}

#[test]
fn a_retry_is_a_new_attempt_only_for_a_task_that_ran() {
    use TaskState::*;
    let mut log = accepted();
    log.move_task("a", Pending, Ready);
    log.move_task("a", Ready, Running);
    log.push(EventKind::WorktreeCreated(WorktreeCreated {
        task: "a".into(),
        branch: "memofab/r/a".into(),
        path: "/wt/a".into(),
        base_commit: "c0".into(),
    }));
    log.move_task("a", Running, Reviewing);
    log.move_task("a", Reviewing, Running);
    log.move_task("a", Running, Failed);
    log.move_task("b", Pending, Blocked);
    log.move_task("a", Failed, Pending);
    log.move_task("b", Blocked, Pending);
    let state = RunState::fold(&log.events).unwrap().unwrap();
    let a = state.task(&"a".into()).unwrap();
    assert_eq!((a.attempt, a.reworks), (3, 0), "two attempts ran before");
    assert_eq!(state.task(&"b".into()).unwrap().attempt, 1);
}

#[test]
fn conflict_rework_counts_separately() {
    use TaskState::*;
    let mut log = accepted();
    for (f, t) in [
        (Pending, Ready),
        (Ready, Running),
        (Running, Reviewing),
        (Reviewing, Testing),
        (Testing, Merging),
    ] {
        log.move_task("a", f, t);
    }
    log.push(EventKind::MergeResult(MergeResult {
        task: "a".into(),
        result: MergeOutcome::Conflict {
            files: vec!["x.rs".into()],
        },
    }));
    log.move_task("a", Merging, Running);
    let state = RunState::fold(&log.events).unwrap().unwrap();
    let a = state.task(&"a".into()).unwrap();
    assert_eq!((a.attempt, a.reworks, a.conflict_reworks), (2, 0, 1));
    assert_eq!(a.conflict_files, vec!["x.rs".to_string()]);
}

/// Moves `a` through the queue up to verifying.
fn queued_and_verifying() -> Log {
    use TaskState::*;
    let mut log = accepted();
    for (f, t) in [
        (Pending, Ready),
        (Ready, Running),
        (Running, Reviewing),
        (Reviewing, Testing),
        (Testing, Queued),
        (Queued, Merging),
        (Merging, Verifying),
    ] {
        log.move_task("a", f, t);
    }
    log
}

fn verified(passed: bool, check: MergeCheck) -> EventKind {
    EventKind::MergeVerified(MergeVerified {
        task: "a".into(),
        check,
        candidate: "m1".into(),
        onto: "c0".into(),
        command: "sh tests/run.sh".into(),
        exit_code: Some(if passed { 0 } else { 1 }),
        passed,
        duration_ms: 5,
        output: "left and right clash".into(),
    })
}

#[test]
fn a_failed_verification_reopens_the_task_with_the_failure() {
    use TaskState::*;
    let mut log = queued_and_verifying();
    log.push(verified(false, MergeCheck::Verify));
    let failed = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(
        failed.task(&"a".into()).unwrap().queue_failure,
        Some(MergeCheck::Verify),
        "a resumed run knows to reopen it"
    );
    log.move_task("a", Verifying, Running);
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(state.task(&"a".into()).unwrap().queue_failure, None);
    let a = state.task(&"a".into()).unwrap();
    assert_eq!((a.state, a.attempt, a.reworks), (Running, 2, 1));
    let feedback = a.feedback.as_deref().unwrap();
    assert!(feedback.contains("merge verification failed"), "{feedback}");
    assert!(feedback.contains("clash"), "{feedback}");
    assert_eq!(a.merged_commit, None);
    assert_eq!(state.mainline_commit, "base", "mainline never moved");
}

#[test]
fn a_verified_merge_lands_and_a_revert_takes_it_back() {
    use TaskState::*;
    let mut log = queued_and_verifying();
    log.push(verified(true, MergeCheck::Verify));
    log.push(EventKind::MergeResult(MergeResult {
        task: "a".into(),
        result: MergeOutcome::MergeCommit {
            commit: "m1".into(),
        },
    }));
    let landed = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(landed.mainline_commit, "m1");
    assert_eq!(
        landed.task(&"a".into()).unwrap().merged_commit.as_deref(),
        Some("m1")
    );

    log.push(verified(false, MergeCheck::PostMerge));
    log.push(EventKind::MergeReverted(MergeReverted {
        task: "a".into(),
        merge_commit: "m1".into(),
        revert_commit: "r1".into(),
        reapplied: "h2".into(),
        output: "post check says no".into(),
    }));
    log.move_task("a", Verifying, Running);
    let state = RunState::fold(&log.events).unwrap().unwrap();
    let a = state.task(&"a".into()).unwrap();
    assert_eq!(state.mainline_commit, "r1");
    assert_eq!(a.merged_commit, None);
    assert_eq!(a.head_commit.as_deref(), Some("h2"));
    assert_eq!((a.state, a.reworks), (Running, 1));
    assert!(a.feedback.as_deref().unwrap().contains("reverted"));
}

#[test]
fn queue_positions_follow_arrival() {
    use TaskState::*;
    let mut log = accepted();
    // b was queued first (earlier event), then a.
    for t in ["a", "b"] {
        log.move_task(t, Pending, Ready);
        log.move_task(t, Ready, Running);
        log.move_task(t, Running, Reviewing);
        log.move_task(t, Reviewing, Testing);
    }
    log.move_task("b", Testing, Queued);
    log.move_task("a", Testing, Queued);
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(state.queue_position(&"b".into()), Some(1));
    assert_eq!(state.queue_position(&"a".into()), Some(2));
    log.move_task("b", Queued, Merging);
    let state = RunState::fold(&log.events).unwrap().unwrap();
    assert_eq!(state.queue_position(&"b".into()), None);
    assert_eq!(state.queue_position(&"a".into()), Some(1));
}

#[test]
fn old_runs_without_the_queue_still_fold() {
    let settings: RunSettings = serde_json::from_str(
        r#"{"concurrency":1,"max_tasks":5,"max_rework":1,"max_conflict_rework":1,
            "max_plan_rounds":1,"test_command":"true","provider":"scripted"}"#,
    )
    .unwrap();
    assert!(!settings.verify_merges);
    assert_eq!(settings.post_merge_command, None);
}

#[test]
fn out_of_order_events_are_refused() {
    let log = accepted();
    let mut state = RunState::fold(&log.events[..1]).unwrap().unwrap();
    let mut skipped = log.events[1].clone();
    skipped.seq = 5;
    assert!(matches!(
        state.apply(&skipped),
        Err(TransitionError::OutOfOrder { .. })
    ));
}

#[test]
fn tail_cuts_on_char_boundary() {
    assert_eq!(tail("héllo", 4), "llo");
    assert_eq!(tail("abc", 10), "abc");
}
