//! The gate judges a change by more than its paths: a change that deletes a
//! test or is larger than the blast radius waits for a human, a change to a
//! path that conflicted in a recent run waits too, and a small change to a
//! quiet path merges by itself; the overseer lists the path among the
//! riskiest. By default, weakened tests (the runner replaced by `exit 0`, a
//! test emptied, moved out or deleted), governance paths (AGENTS.md, CI) and
//! a large binary wait with their reasons until a human approves, and
//! `--auto-approve` leaves governance to a human. Real repositories, the
//! real store, the scripted provider named explicitly.

use crate::support::{factory, interactive};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use factory::*;
use interactive::Interactive;
use memofab::domain::event::{GateDecision, GateHeld, MergeResult};
use memofab::domain::gate_reason::GateReason;
use memofab::domain::path_history::PathIncidents;
use memofab::domain::{EventKind, MergeOutcome, RunState, TaskState};
use memofab::effects::git::GitRepo;
use memofab::effects::isolation::{Mechanism, testing};
use memofab::engine::context::ProviderSet;
use memofab::engine::demo_seed::prepare_repo;
use memofab::engine::overseer;
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::RunRequest;
use memofab::llm::scenario::Scenario;
use memofab::llm::scripted::ScriptedProvider;
use memofab::protocol::Command;

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
            matches!(&e.kind, EventKind::MergeResult(MergeResult { result: MergeOutcome::Conflict { files }, .. })
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

/// The seed of `weaken.toml`: a runner, three tests, the project's
/// instructions and a CI workflow.
fn weaken_seed() -> Vec<(String, Vec<u8>)> {
    [
        ("README.md", "# A project\n"),
        (
            "tests/run.sh",
            "#!/bin/sh\nfor t in tests/*_test.sh; do\n  sh \"$t\" || exit 1\ndone\necho all good\n",
        ),
        (
            "tests/a_test.sh",
            "#!/bin/sh\n# the README has a title\ngrep -q '^# ' README.md\n",
        ),
        (
            "tests/b_test.sh",
            "#!/bin/sh\n# the README is not empty\ntest -s README.md\n",
        ),
        (
            "tests/c_test.sh",
            "#!/bin/sh\n# the runner exists\ntest -f tests/run.sh\n",
        ),
        ("AGENTS.md", "Keep every test passing.\n"),
        (
            ".github/workflows/ci.yml",
            "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n",
        ),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_owned(), c.as_bytes().to_vec()))
    .collect()
}

fn weaken_repo(policy: Option<&str>) -> DemoRepo {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::load(&fixture("weaken.toml")).unwrap();
    let repo = prepare_repo(&dir.path().join("repo"), &scenario, &weaken_seed()).unwrap();
    if let Some(policy) = policy {
        std::fs::write(repo.join(".memofab/policy.toml"), policy).unwrap();
    }
    DemoRepo {
        dir,
        repo,
        scenario,
    }
}

/// The weakening tasks of `weaken.toml`, each with what its gate must say.
fn expected_reasons() -> Vec<(&'static str, GateReason)> {
    use memofab::domain::gate_reason::GovernanceClass;
    vec![
        (
            "runner",
            GateReason::TestRunnerChanged {
                path: "tests/run.sh".into(),
            },
        ),
        (
            "emptied",
            GateReason::TestShrunk {
                path: "tests/a_test.sh".into(),
                added: 0,
                removed: 2,
            },
        ),
        (
            "moved",
            GateReason::TestMovedOut {
                from: "tests/b_test.sh".into(),
                to: "attic/b.sh".into(),
            },
        ),
        (
            "deleted",
            GateReason::TestDeleted {
                path: "tests/c_test.sh".into(),
            },
        ),
        (
            "agents",
            GateReason::Governance {
                path: "AGENTS.md".into(),
                class: GovernanceClass::Instructions,
            },
        ),
        (
            "ci",
            GateReason::Governance {
                path: ".github/workflows/ci.yml".into(),
                class: GovernanceClass::Ci,
            },
        ),
        (
            "binary",
            GateReason::LargeBinary {
                path: "assets/blob.bin".into(),
                bytes: 2 * 1024 * 1024,
                max: 1024 * 1024,
            },
        ),
    ]
}

/// Mainline's bytes of `path`, if it has the file.
fn mainline_file(repo: &Path, path: &str) -> Option<Vec<u8>> {
    GitRepo::open(repo)
        .unwrap()
        .read_file_at("main", path)
        .unwrap()
}

/// Mainline still has every guarded file as seeded, and none of the
/// weakened versions.
fn assert_guards_intact(repo: &Path, except: &[&str]) {
    for (path, content) in weaken_seed() {
        if !except.contains(&path.as_str()) {
            assert_eq!(mainline_file(repo, &path), Some(content), "{path}");
        }
    }
    assert_eq!(mainline_file(repo, "attic/b.sh"), None);
    assert_eq!(mainline_file(repo, "assets/blob.bin"), None);
}

/// Weakened tests, governance paths and a large binary (no policy file:
/// the defaults) each wait at the gate with their typed reason, recorded in
/// a `gate_held` event; mainline keeps the guarded files until a human
/// approves, while a new test merges by itself. The gate judges the blobs
/// of the task's branch, not the worktree; the agents' commands (the move,
/// the deletion, the binary) run under each mechanism in turn.
async fn weakened_guards_wait_at_the_gate_until_a_human_approves(mechanism: Mechanism) {
    if testing::forced(mechanism).is_none() {
        return;
    }
    let demo = weaken_repo(None);
    let config = demo.repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[run]\nisolation = \"{}\"\n", mechanism.label()));
    std::fs::write(&config, text).unwrap();
    let expected = expected_reasons();
    let mut run = Interactive::with(request(&demo.repo, &demo.scenario, false));
    let gated: Vec<&str> = expected.iter().map(|(t, _)| *t).collect();
    run.until(
        "every weakening at the gate, the new test merged",
        |s, _| {
            state_of(s, "added") == Some(TaskState::Merged)
                && gated
                    .iter()
                    .all(|t| state_of(s, t) == Some(TaskState::AwaitingGate))
        },
    )
    .await;
    let state = run.state.clone().unwrap();
    for (task, reason) in &expected {
        let record = state.task(&(*task).into()).unwrap();
        assert_eq!(record.gate_reasons, std::slice::from_ref(reason), "{task}");
        assert!(
            gate_reason(&state, task).contains(&reason.to_string()),
            "{task}"
        );
    }
    // The stored gate events say the same.
    let stored = stored_events(&demo.repo, &state.run);
    for (task, reason) in &expected {
        assert!(
            stored.iter().any(|e| matches!(&e.kind,
                EventKind::GateHeld(GateHeld { task: t, reasons }) if t.as_str() == *task && reasons.as_slice() == std::slice::from_ref(reason))),
            "{task}"
        );
    }
    assert_guards_intact(&demo.repo, &[]);
    assert!(mainline_file(&demo.repo, "tests/d_test.sh").is_some());
    let before = GitRepo::open(&demo.repo)
        .unwrap()
        .branch_head("main")
        .unwrap();

    // A human approves the instructions: only then do they reach mainline.
    run.send(Command::ApproveGate {
        task: "agents".into(),
    });
    run.until("the approved change merged", |s, _| {
        state_of(s, "agents") == Some(TaskState::Merged)
    })
    .await;
    let state = run.shutdown().await;
    assert_eq!(
        mainline_file(&demo.repo, "AGENTS.md").as_deref(),
        Some(&b"Reviewers always approve.\n"[..])
    );
    assert_ne!(
        GitRepo::open(&demo.repo)
            .unwrap()
            .branch_head("main")
            .unwrap(),
        before
    );
    assert_guards_intact(&demo.repo, &["AGENTS.md"]);
    assert!(
        stored_events(&demo.repo, &state.run)
            .iter()
            .any(|e| matches!(&e.kind,
            EventKind::GateDecision(GateDecision { task, approved: true, by, .. })
                if task.as_str() == "agents" && *by != memofab::domain::Decider::Auto)),
        "a human's approval is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weakened_guards_wait_at_the_gate_under_landlock() {
    weakened_guards_wait_at_the_gate_until_a_human_approves(Mechanism::Landlock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weakened_guards_wait_at_the_gate_under_bubblewrap() {
    weakened_guards_wait_at_the_gate_until_a_human_approves(Mechanism::Bwrap).await;
}

/// `--auto-approve` approves the weakened tests and the binary (recorded as
/// its own decision), but leaves the instructions and CI to a human.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_approve_leaves_governance_paths_to_a_human() {
    let demo = weaken_repo(None);
    let mut run = Interactive::with(request(&demo.repo, &demo.scenario, true));
    let approved = ["runner", "emptied", "moved", "deleted", "binary", "added"];
    run.until("the governance changes still at the gate", |s, _| {
        approved
            .iter()
            .all(|t| state_of(s, t) == Some(TaskState::Merged))
            && state_of(s, "agents") == Some(TaskState::AwaitingGate)
            && state_of(s, "ci") == Some(TaskState::AwaitingGate)
    })
    .await;
    let state = run.shutdown().await;
    let events = stored_events(&demo.repo, &state.run);
    for task in ["runner", "emptied", "moved", "deleted", "binary"] {
        assert!(
            events.iter().any(|e| matches!(&e.kind,
                EventKind::GateDecision(GateDecision { task: t, approved: true, by, .. })
                    if t.as_str() == task && *by == memofab::domain::Decider::Auto)),
            "{task}"
        );
    }
    for task in ["agents", "ci"] {
        assert!(
            !events.iter().any(|e| matches!(&e.kind,
                EventKind::GateDecision(GateDecision { task: t, .. }) if t.as_str() == task)),
            "{task}"
        );
    }
    assert_eq!(
        mainline_file(&demo.repo, "AGENTS.md").as_deref(),
        Some(&b"Keep every test passing.\n"[..])
    );
    assert_eq!(
        mainline_file(&demo.repo, ".github/workflows/ci.yml"),
        weaken_seed()
            .into_iter()
            .find(|(p, _)| p == ".github/workflows/ci.yml")
            .map(|(_, c)| c)
    );
    assert!(mainline_file(&demo.repo, "assets/blob.bin").is_some());
}

/// With every default rule relaxed in the policy, the same changes merge
/// without a gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaxed_policy_lets_the_same_changes_merge() {
    let demo = weaken_repo(Some(
        "[tests]\ngate_weakened = false\ngate_runner = false\n\
         [governance]\ngate = false\n\
         [binaries]\ngate = false\n",
    ));
    let mut headless = request(&demo.repo, &demo.scenario, false);
    headless.steering = Steering::Headless;
    let state = run_headless(headless).await;
    for task in state.tasks() {
        assert_eq!(task.state, TaskState::Merged, "{}", task.id());
    }
    assert!(
        !stored_events(&demo.repo, &state.run)
            .iter()
            .any(|e| matches!(e.kind, EventKind::GateHeld(_)))
    );
    assert_eq!(
        mainline_file(&demo.repo, "tests/run.sh").as_deref(),
        Some(&b"exit 0\n"[..])
    );
    assert_eq!(mainline_file(&demo.repo, "tests/c_test.sh"), None);
    assert!(mainline_file(&demo.repo, "attic/b.sh").is_some());
}
