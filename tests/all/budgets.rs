//! Budgets on the scripted demo: a task that spends its budget pauses with
//! its conversation instead of burning on, and carries on when a human
//! grants more; a run over its budget pauses as a whole.

use crate::support::{factory, interactive};

use factory::*;
use interactive::Interactive;
use memofab::domain::event::{BudgetRaised, RunPhaseChanged, TaskStateChanged, TokensUsed};
use memofab::domain::{Budget, EventKind, RunPhase, TaskId, TaskState};
use memofab::engine::run::orchestrator::Steering;
use memofab::protocol::Command;

fn with_budget(demo: &DemoRepo, budget: Budget) -> Interactive {
    let mut request = demo_request(demo, scripted(demo), Steering::Interactive, true);
    request.config.budget = budget;
    Interactive::with(request)
}

fn over_budget(state: &memofab::domain::RunState) -> Vec<TaskId> {
    state.task_ids(|s| s == TaskState::OverBudget)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_its_budget_pauses_until_a_human_grants_more() {
    let demo = demo_repo();
    // The demo's tasks use 2–9k tokens each: `stats`, `title` (its tester's
    // conversation counts too) and `json` run out.
    let mut run = with_budget(
        &demo,
        Budget {
            task_tokens: Some(6_000),
            ..Budget::default()
        },
    );
    run.until("a task over budget", |s, _| !over_budget(s).is_empty())
        .await;
    let state = run.state.clone().unwrap();
    let task = over_budget(&state)[0].clone();
    let record = state.task(&task).unwrap();
    assert!(record.tokens.total() >= 6_000);
    let paused_at = run.events.len();
    let spent = record.tokens.total();

    // The other tasks go on; the paused one spends nothing while it waits.
    run.until("another task to merge", |s, _| {
        s.tasks()
            .iter()
            .filter(|t| t.state == TaskState::Merged)
            .count()
            >= 2
    })
    .await;
    let state = run.state.clone().unwrap();
    assert_eq!(state.task(&task).unwrap().state, TaskState::OverBudget);
    assert_eq!(state.task(&task).unwrap().tokens.total(), spent);
    assert!(
        run.events[paused_at..].iter().all(|e| !matches!(
            &e.kind,
            EventKind::TokensUsed(TokensUsed { task: Some(t), .. }) if *t == task
        )),
        "a paused task spends nothing"
    );

    // Each raise grants one more budget's worth; the same agent carries on.
    let attempt = state.task(&task).unwrap().attempt;
    loop {
        let state = run.state.clone().unwrap();
        if state.tasks().iter().all(|t| t.state == TaskState::Merged) {
            break;
        }
        let raised = over_budget(&state);
        for t in &raised {
            run.send(Command::RaiseBudget {
                task: Some(t.clone()),
            });
        }
        run.until(
            "the raised tasks to carry on, or another to run out",
            |s, _| {
                let carried_on = raised
                    .iter()
                    .all(|t| s.task(t).is_some_and(|r| r.state != TaskState::OverBudget));
                (carried_on && s.last_seq > state.last_seq) || over_budget(s).len() > raised.len()
            },
        )
        .await;
    }
    let events = run.events.clone();
    let state = run.shutdown().await;
    assert!(state.task(&task).unwrap().budget_raises >= 1);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::BudgetRaised(BudgetRaised { task: Some(t), .. }) if *t == task
    )));
    // Not a new attempt: the paused agent finished its own conversation.
    let resumed_transitions = events.iter().filter(|e| {
        matches!(
            &e.kind,
            EventKind::TaskStateChanged(TaskStateChanged { task: t, from: TaskState::OverBudget, .. }) if *t == task
        )
    });
    assert!(resumed_transitions.count() >= 1);
    assert!(state.task(&task).unwrap().attempt >= attempt);
    assert_eq!(state.count(TaskState::Merged), state.tasks().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_its_budget_pauses_and_resumes_when_raised() {
    let demo = demo_repo();
    let mut run = with_budget(
        &demo,
        Budget {
            run_tokens: Some(15_000),
            ..Budget::default()
        },
    );
    run.until("the run to pause for its budget", |s, _| {
        s.phase == RunPhase::Paused
    })
    .await;
    let state = run.state.clone().unwrap();
    assert!(state.tokens.total() >= 15_000);
    let reason = run.events.iter().rev().find_map(|e| match &e.kind {
        EventKind::RunPhaseChanged(RunPhaseChanged {
            to: RunPhase::Paused,
            reason,
        }) => reason.clone(),
        _ => None,
    });
    assert!(reason.unwrap().contains("over budget"));
    let burn = memofab::domain::budget::run_burn(&state);
    assert_eq!(burn.token_limit, Some(15_000));

    loop {
        let state = run.state.clone().unwrap();
        if state.phase == RunPhase::Finished {
            break;
        }
        if state.phase == RunPhase::Paused || !over_budget(&state).is_empty() {
            run.send(Command::RaiseBudget { task: None });
        }
        run.until("the run to move on", |s, _| {
            s.phase == RunPhase::Finished
                || (s.last_seq > state.last_seq
                    && s.phase == RunPhase::Building
                    && over_budget(s).is_empty())
        })
        .await;
        run.until("the run to finish or pause again", |s, _| {
            s.phase == RunPhase::Finished || s.phase == RunPhase::Paused
        })
        .await;
    }
    let state = run.shutdown().await;
    assert!(state.run_budget_raises >= 1);
    assert_eq!(state.count(TaskState::Merged), state.tasks().len());
}

#[test]
fn a_headless_run_over_budget_waits_for_memofab_raise_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("demo");
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(xdg.join("memofab")).unwrap();
    std::fs::write(
        xdg.join("memofab/config.toml"),
        "[budget]\ntask_tokens = 6000\n",
    )
    .unwrap();
    let mut child = spawn_headless_demo(&repo, &xdg, &["--auto-approve"]);
    let memofab = |args: &[&str]| {
        std::process::Command::new(memofab_bin())
            .args(args)
            .arg("--repo")
            .arg(&repo)
            .env("XDG_CONFIG_HOME", &xdg)
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut raised = 0;
    let mut sent: std::collections::HashMap<TaskId, u64> = Default::default();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never finished"
        );
        if repo.join(".memofab/memofab.db").exists()
            && let Some(run) = latest_run(&repo)
        {
            let state = memofab::engine::run::session::stored_state(&repo, &run).unwrap();
            if raised == 0 && !over_budget(&state).is_empty() {
                // A task that is not waiting is refused, with a reason.
                let wrong = memofab(&["raise-budget", run.as_str(), "loader"]);
                assert!(!wrong.status.success());
                assert!(String::from_utf8_lossy(&wrong.stderr).contains("not waiting over budget"));
            }
            for task in over_budget(&state) {
                // One raise per pause: the engine picks it up from the store
                // within a moment, and only a raise takes a task out of it.
                // A pause is told by when it began: the engine records the
                // raise before it moves the task on, so the count of raises
                // changes while the task still shows the same pause.
                let paused_at = state.task(&task).unwrap().since_ms;
                if sent.get(&task) == Some(&paused_at) {
                    continue;
                }
                sent.insert(task.clone(), paused_at);
                let out = memofab(&["raise-budget", run.as_str(), task.as_str()]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                raised += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(raised >= 1);
    assert!(stderr.contains("waits over budget"), "{stderr}");
    let state = fold(&stored_events(&repo, &only_run(&repo)));
    assert_eq!(state.count(TaskState::Merged), state.tasks().len());
}
