//! The gate judges a change by more than its paths: a change that deletes a
//! test or is larger than the blast radius waits for a human, a change to a
//! path that conflicted in a recent run waits too, and a small change to a
//! quiet path merges by itself; the overseer lists the path among the
//! riskiest. Real repositories, the real store, the
//! scripted provider named explicitly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/interactive.rs"]
mod interactive;
#[path = "support/factory.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use interactive::Interactive;
use memofab::cli::demo::prepare_repo;
use memofab::domain::path_history::PathIncidents;
use memofab::domain::{EventKind, MergeOutcome, RunState, TaskState};
use memofab::effects::git::GitRepo;
use memofab::engine::context::ProviderSet;
use memofab::engine::orchestrator::Steering;
use memofab::engine::overseer;
use memofab::engine::session::RunRequest;
use memofab::llm::scenario::Scenario;
use memofab::llm::scripted::ScriptedProvider;
use support::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/risk")
        .join(name)
}

fn seed_files() -> Vec<(String, Vec<u8>)> {
    ["README.md", "src/db.txt", "tests/a_test.sh"]
        .into_iter()
        .map(|f| {
            (
                f.to_owned(),
                std::fs::read(fixture("seed").join(f)).unwrap(),
            )
        })
        .collect()
}

fn risk_repo(scenario: &str) -> DemoRepo {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::load(&fixture(scenario)).unwrap();
    let repo = prepare_repo(&dir.path().join("repo"), &scenario, &seed_files()).unwrap();
    DemoRepo {
        dir,
        repo,
        scenario,
    }
}

/// A run of `scenario` on `repo`, every role on the scripted provider.
fn request(repo: &Path, scenario: &Scenario, auto_approve: bool) -> RunRequest {
    let provider = ScriptedProvider::new(Arc::new(scenario.clone()));
    RunRequest {
        repo: repo.to_owned(),
        requirement: scenario.requirement.clone(),
        config: project_config(repo),
        providers: ProviderSet::uniform(Arc::new(provider), "scripted"),
        provider_label: "scripted".into(),
        scenario: None,
        auto_approve,
        await_spec: false,
        steering: Steering::Interactive,
        crash_after: None,
        run_id: None,
        agent_slots: None,
    }
}

fn state_of(state: &RunState, task: &str) -> Option<TaskState> {
    state.task(&task.into()).map(|t| t.state)
}

fn gate_reason(state: &RunState, task: &str) -> String {
    let record = state.task(&task.into()).unwrap();
    assert_eq!(record.state, TaskState::AwaitingGate, "{task}");
    record.reason.clone().unwrap_or_default()
}

fn on_mainline(repo: &Path, path: &str) -> bool {
    let git = GitRepo::open(repo).unwrap();
    git.list_files_at("main").unwrap().iter().any(|f| f == path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_tests_and_large_changes_wait_while_a_small_change_merges() {
    let demo = risk_repo("risky.toml");
    let mut run = Interactive::with(request(&demo.repo, &demo.scenario, false));
    run.until("two gates and one merge", |s, _| {
        state_of(s, "drop") == Some(TaskState::AwaitingGate)
            && state_of(s, "split") == Some(TaskState::AwaitingGate)
            && state_of(s, "changelog") == Some(TaskState::Merged)
    })
    .await;
    let state = run.shutdown().await;

    let drop = gate_reason(&state, "drop");
    assert!(drop.contains("deletes tests/a_test.sh"), "{drop}");
    let split = gate_reason(&state, "split");
    assert!(split.contains("touches 3 files (max 2)"), "{split}");
    assert!(!split.contains("deletes"), "{split}");

    // Held changes never reached mainline; the small one did.
    assert!(on_mainline(&demo.repo, "tests/a_test.sh"));
    assert!(!on_mainline(&demo.repo, "schema/users.txt"));
    assert!(on_mainline(&demo.repo, "CHANGELOG.md"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_conflicted_in_a_recent_run_is_held_at_the_gate() {
    let demo = risk_repo("clash.toml");
    // Both tasks run at once, so the second to land conflicts.
    let config = demo.repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[run]\nwrite_set_scheduling = false\n");
    std::fs::write(&config, text).unwrap();
    let mut first = request(&demo.repo, &demo.scenario, true);
    first.steering = Steering::Headless;
    let clash = run_headless(first).await;
    assert!(clash.tasks().iter().all(|t| t.state == TaskState::Merged));
    let conflicts = stored_events(&demo.repo, &clash.run)
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::MergeResult { result: MergeOutcome::Conflict { files }, .. }
                if files == &["src/db.txt".to_owned()])
        })
        .count();
    assert_eq!(conflicts, 1, "the history this test needs");

    std::fs::write(
        demo.repo.join(".memofab/policy.toml"),
        "[history]\nruns = 5\nmax_incidents = 0\n",
    )
    .unwrap();
    let after = Scenario::load(&fixture("after.toml")).unwrap();
    let mainline_before = GitRepo::open(&demo.repo)
        .unwrap()
        .branch_head("main")
        .unwrap();
    let mut run = Interactive::with(request(&demo.repo, &after, false));
    run.until(
        "the troubled path at the gate, the quiet one merged",
        |s, _| {
            state_of(s, "index") == Some(TaskState::AwaitingGate)
                && state_of(s, "changelog") == Some(TaskState::Merged)
        },
    )
    .await;
    let state = run.shutdown().await;

    let reason = gate_reason(&state, "index");
    assert!(
        reason.contains("src/db.txt had 1 incident in the last run (1 conflict; max 0)"),
        "{reason}"
    );
    let git = GitRepo::open(&demo.repo).unwrap();
    let db = git.read_file_at("main", "src/db.txt").unwrap().unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains("index users_name"),
        "the held change is not on mainline"
    );
    assert_ne!(git.branch_head("main").unwrap(), mainline_before);
    assert!(on_mainline(&demo.repo, "CHANGELOG.md"));

    // The overseer's report lists the path among the riskiest.
    let providers = request(&demo.repo, &after, false).providers;
    let report = overseer::review(&demo.repo, 0, &project_config(&demo.repo), &providers)
        .await
        .unwrap();
    let conflicted = PathIncidents {
        conflicts: 1,
        ..PathIncidents::default()
    };
    assert_eq!(
        report.metrics.paths.riskiest(10),
        [("src/db.txt", conflicted)]
    );
    assert!(
        report.markdown.contains("## Riskiest paths")
            && report
                .markdown
                .contains("| `src/db.txt` | 1 | 1 | 0 | 0 | 0 |"),
        "{}",
        report.markdown
    );
}
