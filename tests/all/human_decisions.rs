//! Decisions only a human makes, through the same commands the cockpit and
//! the CLI send: resolving an escalated conflict by hand or with the resolver
//! agent, and approving a gate from another terminal.

use crate::support::{factory, interactive};

use std::time::{Duration, Instant};

use factory::*;
use interactive::Interactive;
use memofab::domain::event::{
    AgentMessage, AgentStarted, ConflictDecision, GateDecision, RunPhaseChanged, TaskStateChanged,
};
use memofab::domain::{
    AgentRole, ConflictResolution, Event, EventKind, RunState, TaskId, TaskState,
};
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::{self, RunRequest};
use memofab::protocol::{Command, EngineUpdate};

/// Keeps both sides of every conflict hunk: what a careful human does here.
fn union_of_sides(text: &str) -> String {
    let mut out = String::new();
    let mut in_base = false;
    for line in text.lines() {
        if line.starts_with("|||||||") {
            in_base = true;
        } else if line.starts_with("=======") {
            in_base = false;
        } else if !(line.starts_with("<<<<<<<") || line.starts_with(">>>>>>>") || in_base) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn escalated_task(state: &RunState) -> Option<TaskId> {
    state
        .tasks()
        .iter()
        .find(|t| t.state == TaskState::Conflict)
        .map(|t| t.id().clone())
}

fn no_conflict_rework(demo: &DemoRepo) {
    let path = demo.repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[run]\nmax_conflict_rework = 0\n");
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_resolved_by_hand_is_committed_and_merged() {
    let demo = demo_repo();
    no_conflict_rework(&demo);
    let mut run = Interactive::start(&demo).await;
    run.until("a conflict to escalate", |s, _| escalated_task(s).is_some())
        .await;
    let state = run.state.clone().unwrap();
    let task = escalated_task(&state).unwrap();
    let worktree = std::path::PathBuf::from(state.task(&task).unwrap().worktree.clone().unwrap());
    let file = worktree.join("bin/textkit");
    let marked = std::fs::read_to_string(&file).unwrap();
    assert!(
        marked.contains("<<<<<<<"),
        "the human finds markers to resolve:\n{marked}"
    );

    // Marking it resolved with the markers still there is refused.
    run.send(Command::ResolveConflict {
        task: task.clone(),
        resolution: ConflictResolution::MarkResolved,
    });
    run.until("the refusal", |_, events| {
        events.iter().any(|e| matches!(&e.kind, EventKind::TaskStateChanged(TaskStateChanged { to: TaskState::Conflict, reason: Some(r), .. }) if r.contains("markers remain")))
    })
    .await;

    std::fs::write(&file, union_of_sides(&marked)).unwrap();
    run.send(Command::ResolveConflict {
        task: task.clone(),
        resolution: ConflictResolution::MarkResolved,
    });
    run.until("every task to merge", |s, _| {
        s.tasks().iter().all(|t| t.state == TaskState::Merged)
    })
    .await;
    let events = run.events.clone();
    let state = run.shutdown().await;
    assert!(state.tasks().iter().all(|t| t.state == TaskState::Merged));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(
                &e.kind,
                EventKind::ConflictDecision(ConflictDecision {
                    resolution: ConflictResolution::MarkResolved,
                    ..
                })
            ))
            .count(),
        2
    );
    let git = memofab::effects::git::GitRepo::open(&demo.repo).unwrap();
    let log = git.log_messages("main", 50).unwrap();
    assert!(
        log.iter()
            .any(|m| m.contains("resolve the merge conflict by hand")),
        "{log:?}"
    );
    let out = std::process::Command::new("sh")
        .arg("tests/run.sh")
        .current_dir(&demo.repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_handed_to_the_resolver_agent_is_merged() {
    let demo = demo_repo();
    no_conflict_rework(&demo);
    let mut run = Interactive::start(&demo).await;
    run.until("a conflict to escalate", |s, _| escalated_task(s).is_some())
        .await;
    let task = escalated_task(run.state.as_ref().unwrap()).unwrap();
    run.send(Command::ResolveConflict {
        task: task.clone(),
        resolution: ConflictResolution::Resolver,
    });
    run.until("every task to merge", |s, _| {
        s.tasks().iter().all(|t| t.state == TaskState::Merged)
    })
    .await;
    let events = run.events.clone();
    run.shutdown().await;
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::AgentStarted(AgentStarted { role: AgentRole::Resolver, task: Some(t), .. }) if *t == task)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_daemon_an_escalated_conflict_keeps_the_run_open_until_decided() {
    let demo = demo_repo();
    no_conflict_rework(&demo);
    let mut run = Interactive::with(demo_request(&demo, scripted(&demo), Steering::Daemon, true));
    run.until("everything else settled around the conflict", |s, _| {
        escalated_task(s).is_some() && s.all_settled()
    })
    .await;
    let task = escalated_task(run.state.as_ref().unwrap()).unwrap();
    run.send(Command::ResolveConflict {
        task: task.clone(),
        resolution: ConflictResolution::Resolver,
    });
    // The run returns by itself once the decision let it end.
    let state = tokio::time::timeout(std::time::Duration::from_secs(120), &mut run.engine)
        .await
        .expect("the run returns by itself")
        .unwrap()
        .unwrap();
    assert!(state.tasks().iter().all(|t| t.state == TaskState::Merged));
    let events = stored_events(&demo.repo, &state.run);
    let at = |matches: fn(&EventKind) -> bool| events.iter().position(|e| matches(&e.kind));
    let decided = at(|k| matches!(k, EventKind::ConflictDecision(_))).unwrap();
    let finished = at(|k| matches!(k, EventKind::RunFinished(_))).unwrap();
    assert!(
        decided < finished,
        "the run did not finish while the conflict waited"
    );
}

#[test]
fn a_headless_gate_waits_for_memofab_approve_from_another_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("demo");
    let xdg = tmp.path().join("xdg");
    let mut child = spawn_headless_demo(&repo, &xdg, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            let state = std::panic::catch_unwind(|| {
                session::stored_state(&repo, &only_run(&repo)).map(|s| {
                    format!(
                        "{:?}",
                        s.tasks()
                            .iter()
                            .map(|t| (t.id().to_string(), t.state))
                            .collect::<Vec<_>>()
                    )
                })
            });
            panic!("the gate never opened; stderr: {err}; state: {state:?}");
        }
        if repo.join(".memofab/memofab.db").exists()
            && let Some(run) = latest_run(&repo)
            && let Ok(state) = session::stored_state(&repo, &run)
            && state.task(&"docs".into()).map(|t| t.state) == Some(TaskState::AwaitingGate)
        {
            break run;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // A wrong task is refused with a clear message.
    let wrong = std::process::Command::new(memofab_bin())
        .args(["approve", run.as_str(), "loader", "--repo"])
        .arg(&repo)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not waiting at the gate"));

    let approve = std::process::Command::new(memofab_bin())
        .args(["approve", run.as_str(), "docs", "--repo"])
        .arg(&repo)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("waits at the gate"),
        "the run told the human how to decide: {stderr}"
    );
    let events = stored_events(&repo, &run);
    // Recorded as decided through the CLI.
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::GateDecision(GateDecision {
            approved: true,
            by: memofab::domain::Decider::Cli,
            ..
        })
    )));
    assert!(
        fold(&events)
            .tasks()
            .iter()
            .all(|t| t.state == TaskState::Merged)
    );
    // The run is listed and exports as a readable record.
    let runs = std::process::Command::new(memofab_bin())
        .args(["runs", "--repo"])
        .arg(&repo)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&runs.stdout);
    assert!(
        listing.contains(run.as_str()) && listing.contains("finished"),
        "{listing}"
    );
    let export = std::process::Command::new(memofab_bin())
        .args(["export", run.as_str(), "--format", "markdown", "--repo"])
        .arg(&repo)
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&export.stdout);
    assert!(
        md.contains("## Transcripts")
            && md.contains("### coder:json#1")
            && md.contains("docs: gate approved"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_waits_for_the_spec_and_the_planner_brainstorms_first() {
    let demo = demo_repo();
    let mut run = Interactive::with(RunRequest {
        requirement: "stats for textkit".into(),
        await_spec: true,
        ..demo_request(&demo, scripted(&demo), Steering::Interactive, true)
    });

    run.send(Command::Brainstorm {
        message: "stats for textkit — what am I missing?".into(),
    });
    run.until("the planner's answer", |_, events| {
        events.iter().any(|e| matches!(&e.kind, EventKind::AgentMessage(AgentMessage { agent, from: memofab::domain::MessageAuthor::Assistant, text }) if agent.as_str() == "planner:brainstorm" && text.contains("Three questions")))
    })
    .await;
    assert!(
        !run.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::BlueprintProposed(_))),
        "no planning before the spec is submitted"
    );
    run.send(Command::SubmitSpec {
        requirement: demo.scenario.requirement.clone(),
    });
    run.until("the blueprint", |s, _| s.blueprint.is_some())
        .await;
    let state = run.shutdown().await;
    assert_eq!(state.requirement, demo.scenario.requirement);
    assert!(state.spec_submitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_rejection_sends_the_task_back_then_approval_merges_it() {
    let demo = demo_repo();
    let mut run = Interactive::with(demo_request(
        &demo,
        scripted(&demo),
        Steering::Interactive,
        false,
    ));
    let at_gate = |s: &RunState, _: &[Event]| {
        s.task(&"docs".into()).map(|t| t.state) == Some(TaskState::AwaitingGate)
    };

    run.until("the gate", at_gate).await;
    run.send(Command::RejectGate {
        task: "docs".into(),
        feedback: "Mention tk_title in the table too.".into(),
    });
    run.until("the rework", |s, _| {
        s.task(&"docs".into()).is_some_and(|t| t.attempt == 2)
    })
    .await;
    let feedback = run
        .state
        .as_ref()
        .unwrap()
        .task(&"docs".into())
        .unwrap()
        .feedback
        .clone()
        .unwrap();
    assert!(feedback.contains("Mention tk_title"), "{feedback}");
    run.until("the gate again", at_gate).await;
    run.send(Command::ApproveGate {
        task: "docs".into(),
    });
    run.until("docs to merge", |s, _| {
        s.task(&"docs".into()).map(|t| t.state) == Some(TaskState::Merged)
    })
    .await;
    let events = run.events.clone();
    run.shutdown().await;
    // Both recorded as decided at the cockpit.
    let decisions: Vec<(bool, memofab::domain::Decider)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::GateDecision(GateDecision { approved, by, .. }) => {
                Some((*approved, by.clone()))
            }
            _ => None,
        })
        .collect();
    use memofab::domain::Decider::Cockpit;
    assert_eq!(decisions, vec![(false, Cockpit), (true, Cockpit)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_retried_by_a_human_unblocks_its_dependents() {
    let demo = demo_repo();
    let path = demo.repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[run]\nmax_rework = 0\n");
    std::fs::write(&path, text).unwrap();
    let mut run = Interactive::start(&demo).await;
    // With no rework allowed, the failing tests (title's, caught by its
    // tester's test, and json's) in the demo scenario fail their tasks.
    for task in ["title", "json"] {
        run.until("the task to fail", |s, _| {
            s.task(&task.into()).map(|t| t.state) == Some(TaskState::Failed)
        })
        .await;
    }
    run.until("docs to be blocked", |s, _| {
        s.task(&"docs".into()).map(|t| t.state) == Some(TaskState::Blocked)
    })
    .await;
    run.send(Command::RetryTask {
        task: "title".into(),
    });
    run.send(Command::RetryTask {
        task: "json".into(),
    });
    // Title's second attempt meets the review rejection: one more retry.
    run.until("title to fail at review", |s, _| {
        s.task(&"title".into())
            .is_some_and(|t| t.state == TaskState::Failed && t.attempt == 2)
    })
    .await;
    run.send(Command::RetryTask {
        task: "title".into(),
    });
    run.until("every task to merge", |s, _| {
        s.tasks().iter().all(|t| t.state == TaskState::Merged)
    })
    .await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_new_starts_while_the_run_is_paused() {
    let demo = demo_repo();
    let mut run = Interactive::start(&demo).await;
    run.until("the build phase", |s, _| {
        s.phase == memofab::domain::RunPhase::Building
    })
    .await;
    run.send(Command::Pause);
    run.until("the pause", |s, _| {
        s.phase == memofab::domain::RunPhase::Paused
    })
    .await;
    // Whatever was already running may finish; what is ready must wait.
    run.until("a task ready while paused", |s, _| {
        s.count(TaskState::Ready) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(update) = run.updates.try_recv() {
        if let EngineUpdate::Event(event) = update {
            run.state.as_mut().unwrap().apply(&event).unwrap();
            run.events.push(event);
        }
    }
    assert_eq!(
        run.state.as_ref().unwrap().phase,
        memofab::domain::RunPhase::Paused
    );
    let paused_at = run
        .events
        .iter()
        .position(|e| {
            matches!(
                e.kind,
                EventKind::RunPhaseChanged(RunPhaseChanged {
                    to: memofab::domain::RunPhase::Paused,
                    ..
                })
            )
        })
        .unwrap();
    let started: Vec<_> = run.events[paused_at..]
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskStateChanged(TaskStateChanged {
                task,
                to: TaskState::Running,
                ..
            }) => Some(task.clone()),
            _ => None,
        })
        .collect();
    assert!(started.is_empty(), "started while paused: {started:?}");
    run.send(Command::Resume);
    run.until("every task to merge", |s, _| {
        s.tasks().iter().all(|t| t.state == TaskState::Merged)
    })
    .await;
    run.shutdown().await;
}
