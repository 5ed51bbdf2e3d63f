//! The attention inbox end to end: a plan dispute and an agent's question
//! wait for the human, show up as inbox items, and are settled through the
//! same commands the inbox's keys send. Without a human, neither waits.

use crate::support::{factory, interactive};

use std::path::Path;
use std::sync::Arc;

use factory::*;
use interactive::Interactive;
use memofab::domain::attention::{AttentionKind, inbox};
use memofab::domain::event::{PlanDisputeSettled, ToolResult};
use memofab::domain::{EventKind, RunPhase, TaskState};
use memofab::engine::context::ProviderSet;
use memofab::engine::demo_seed::{embedded_seed, prepare_repo};
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::RunRequest;
use memofab::llm::scenario::Scenario;
use memofab::llm::scripted::ScriptedProvider;
use memofab::protocol::Command;

fn inbox_repo() -> DemoRepo {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inbox/scenario.toml");
    let scenario = Scenario::load(&path).unwrap();
    let repo = prepare_repo(&dir.path().join("repo"), &scenario, &embedded_seed()).unwrap();
    DemoRepo {
        dir,
        repo,
        scenario,
    }
}

fn request(demo: &DemoRepo, steering: Steering) -> RunRequest {
    let providers = ProviderSet::uniform(
        Arc::new(ScriptedProvider::new(Arc::new(demo.scenario.clone()))),
        "scripted",
    );
    let mut request = demo_request(demo, providers, steering, true);
    request.config.run.max_plan_rounds = 1;
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_dispute_and_a_question_wait_in_the_inbox_for_the_human() {
    let demo = inbox_repo();
    let mut run = Interactive::with(request(&demo, Steering::Interactive));

    run.until("a plan dispute", |s, _| s.plan_dispute.is_some())
        .await;
    let items = inbox(run.state.as_ref().unwrap());
    assert_eq!(items[0].kind, AttentionKind::PlanDispute);
    assert!(items[0].detail.contains("which greeting"));
    // Plan once more: the reviewer disputes round 2 as well.
    run.send(Command::SettlePlanDispute { build: false });
    run.until("the second dispute", |s, _| {
        s.plan_dispute
            .as_ref()
            .is_some_and(|(round, _)| *round == 2)
    })
    .await;
    run.send(Command::SettlePlanDispute { build: true });

    run.until("the coder's question", |s, _| {
        s.open_questions().count() == 1
    })
    .await;
    let state = run.state.clone().unwrap();
    let items = inbox(&state);
    let question = items
        .iter()
        .find(|i| i.kind == AttentionKind::Question)
        .unwrap();
    assert_eq!(question.task.as_ref().unwrap().as_str(), "greet");
    let (agent, call_id) = question.question.clone().unwrap();
    // The coder waits: nothing is written while the question is open.
    assert_eq!(
        state.task(&"greet".into()).unwrap().state,
        TaskState::Running
    );
    run.send(Command::AnswerQuestion {
        agent: agent.clone(),
        call_id: call_id.clone(),
        answer: "good day".into(),
    });
    run.until("the task to merge", |s, _| {
        s.task(&"greet".into()).unwrap().state == TaskState::Merged
    })
    .await;
    let events = run.events.clone();
    let state = run.shutdown().await;
    assert!(inbox(&state).is_empty());
    assert_eq!(state.extra_plan_rounds, 1);
    let settled: Vec<bool> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanDisputeSettled(PlanDisputeSettled { build, .. }) => Some(*build),
            _ => None,
        })
        .collect();
    assert_eq!(settled, [false, true]);
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::ToolResult(ToolResult { agent: a, call_id: c, ok: true, output })
            if *a == agent && *c == call_id && output.contains("good day"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_daemon_the_inbox_waits_for_a_human_and_the_run_returns_when_over() {
    let demo = inbox_repo();
    let mut run = Interactive::with(request(&demo, Steering::Daemon));
    run.until("a plan dispute", |s, _| s.plan_dispute.is_some())
        .await;
    run.send(Command::SettlePlanDispute { build: true });
    run.until("the coder's question", |s, _| {
        s.open_questions().count() == 1
    })
    .await;
    let (agent, call_id) = inbox(run.state.as_ref().unwrap())
        .into_iter()
        .find_map(|i| i.question)
        .unwrap();
    run.send(Command::AnswerQuestion {
        agent,
        call_id,
        answer: "good day".into(),
    });
    // No shutdown: the engine ends by itself once the run is over, and
    // the command sender is still held.
    let state = tokio::time::timeout(std::time::Duration::from_secs(120), &mut run.engine)
        .await
        .expect("the run returns by itself")
        .unwrap()
        .unwrap();
    assert_eq!(state.phase, RunPhase::Finished);
    assert_eq!(
        state.task(&"greet".into()).unwrap().state,
        TaskState::Merged
    );
    drop(run.commands);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_human_nothing_waits_for_one() {
    let demo = inbox_repo();
    let state = run_headless(request(&demo, Steering::Headless)).await;
    assert_eq!(state.phase, RunPhase::Finished);
    assert!(state.plan_dispute.is_none());
    assert!(state.questions.is_empty(), "ask_human is not offered");
    let events = stored_events(&demo.repo, &state.run);
    // The plan reviewer never approves: with no human, --auto-approve
    // settles the dispute, on the record, and the plan is built.
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::PlanDisputeSettled(PlanDisputeSettled { build: true, by })
            if *by == memofab::domain::Decider::Auto.as_stored())));
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::ToolResult(ToolResult { ok: false, output, .. }) if output.contains("ask_human"))));
    assert_eq!(
        state.task(&"greet".into()).unwrap().state,
        TaskState::Merged
    );
}
