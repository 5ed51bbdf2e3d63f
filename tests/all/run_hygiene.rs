//! What a run accepts and what it leaves behind: a requirement over the
//! limit never becomes a run; a coder that changes nothing gets one more
//! attempt, told so; a finished run leaves only what a human must look at,
//! and `memofab clean` removes that too, never touching a run in progress.

use crate::support::{factory, interactive};

use std::path::Path;
use std::process::{Command as Process, Output};

use factory::*;
use interactive::Interactive;
use memofab::domain::event::{AgentMessage, NothingChanged};
use memofab::domain::{AgentId, AgentRole, EventKind, MessageAuthor, RunPhase, TaskState};
use memofab::effects::git::GitRepo;
use memofab::effects::store::Store;
use memofab::engine::EngineError;
use memofab::engine::cleanup;
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::{self, store_path};

fn hygiene_repo(scenario: &str) -> DemoRepo {
    fixture_repo(&format!("hygiene/{scenario}"))
}

fn memofab(repo: &Path, args: &[&str]) -> Output {
    Process::new(memofab_bin())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .output()
        .unwrap()
}

/// Local branches whose names start with `prefix`.
fn branches(repo: &Path, prefix: &str) -> Vec<String> {
    GitRepo::open(repo).unwrap().branches_under(prefix).unwrap()
}

fn no_runs(repo: &Path) -> bool {
    let store = store_path(repo);
    !store.exists() || Store::open(&store).unwrap().latest_run().unwrap().is_none()
}

#[test]
fn a_requirement_over_the_limit_never_becomes_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    GitRepo::init_with_files(&repo, &[("README.md".into(), b"x\n".to_vec())], "seed").unwrap();
    // The scripted provider, chosen explicitly, so that only the size can
    // stop the run.
    std::fs::create_dir_all(repo.join(".memofab")).unwrap();
    std::fs::write(
        repo.join(".memofab/config.toml"),
        "[roles.default]\nprovider = \"scripted\"\n[providers.scripted]\nkind = \"scripted\"\n",
    )
    .unwrap();
    let big = tmp.path().join("requirement.md");
    std::fs::write(&big, "word ".repeat(60 * 1024)).unwrap();
    let head = GitRepo::open(&repo).unwrap().branch_head("main").unwrap();

    let out = memofab(
        &repo,
        &["run", "--headless", "--requirement", big.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("307200") && stderr.contains("run.max_requirement_bytes"),
        "names the size and the setting: {stderr}"
    );
    assert!(no_runs(&repo), "the store got no run");
    assert_eq!(
        GitRepo::open(&repo).unwrap().branch_head("main").unwrap(),
        head
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requirement_limit_is_configurable() {
    let demo = hygiene_repo("lazy.toml");
    let mut request = demo_request(&demo, scripted(&demo), Steering::Headless, true);
    request.config.run.max_requirement_bytes = 10;
    request.requirement = "eleven byte".into();
    let (updates, _rx) = tokio::sync::mpsc::unbounded_channel();
    let (_commands, commands) = tokio::sync::mpsc::unbounded_channel();
    let refused = session::start(request, updates, commands)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            EngineError::RequirementTooLarge {
                size: 11,
                limit: 10
            }
        ),
        "{refused}"
    );
    assert!(no_runs(&demo.repo));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coder_that_changes_nothing_gets_one_more_attempt_told_so() {
    let demo = hygiene_repo("lazy.toml");
    let state = run_headless(demo_request(
        &demo,
        scripted(&demo),
        Steering::Headless,
        true,
    ))
    .await;
    let lazy = state.task(&"lazy".into()).unwrap();
    assert_eq!(lazy.state, TaskState::Merged);
    assert_eq!((lazy.attempt, lazy.reworks), (2, 1));
    let events = stored_events(&demo.repo, &state.run);
    assert_eq!(fold(&events), state);
    assert!(
        events.iter().any(
            |e| matches!(&e.kind, EventKind::NothingChanged(NothingChanged { task }) if task.as_str() == "lazy")
        )
    );
    let second = AgentId::for_task(AgentRole::Coder, &"lazy".into(), 2);
    let told = events.iter().any(|e| {
        matches!(&e.kind, EventKind::AgentMessage(AgentMessage { agent, from: MessageAuthor::User, text })
            if *agent == second && text.contains("finished without changing any file"))
    });
    assert!(told, "the second attempt's coder is told why");
    let git = GitRepo::open(&demo.repo).unwrap();
    assert!(git.read_file_at("main", "lazy.txt").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_run_leaves_no_worktrees_or_branches() {
    let demo = demo_repo();
    let state = run_demo(&demo).await;
    assert_eq!(state.phase, RunPhase::Finished);
    assert!(state.tasks().iter().all(|t| t.state == TaskState::Merged));
    // The demo's merges were verified in the scratch worktree.
    let events = stored_events(&demo.repo, &state.run);
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::MergeVerified(_)))
    );
    assert_eq!(
        branches(&demo.repo, "memofab-verify/"),
        Vec::<String>::new()
    );
    assert_eq!(branches(&demo.repo, "memofab/"), Vec::<String>::new());
    assert!(!cleanup::run_dir(&demo.repo, &state.run).exists());
    let worktrees = GitRepo::open(&demo.repo).unwrap();
    assert!(cleanup::kept(&worktrees, &state).is_empty());
}

#[test]
fn a_failed_tasks_worktree_stays_until_memofab_clean() {
    let demo = hygiene_repo("lazy.toml");
    // No rework allowed: finishing unchanged fails the task at once.
    let config = demo.repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[run]\nmax_rework = 0\n");
    std::fs::write(&config, text).unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hygiene/lazy.toml");
    let out = memofab(
        &demo.repo,
        &[
            "run",
            "--headless",
            "--provider",
            "scripted",
            "--scenario",
            scenario.to_str().unwrap(),
            "--requirement-text",
            "One file.",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "the task does not merge");
    let state = fold(&stored_events(&demo.repo, &only_run(&demo.repo)));
    assert_eq!(state.phase, RunPhase::Finished);
    assert_eq!(state.task(&"lazy".into()).unwrap().state, TaskState::Failed);
    let worktree = cleanup::run_dir(&demo.repo, &state.run).join("lazy");
    let branch = format!("memofab/{}/lazy", state.run);
    assert!(worktree.join(".git").exists(), "kept for the human");
    assert_eq!(
        branches(&demo.repo, "memofab/"),
        std::slice::from_ref(&branch)
    );
    assert_eq!(
        branches(&demo.repo, "memofab-verify/"),
        Vec::<String>::new()
    );
    // The summary lists what was kept and how to remove it.
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains(&worktree.display().to_string()) && summary.contains(&branch),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("clean {}", state.run)),
        "{summary}"
    );

    let out = memofab(&demo.repo, &["clean", state.run.as_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&branch), "says what it removed: {said}");
    assert!(!worktree.exists());
    assert!(!cleanup::run_dir(&demo.repo, &state.run).exists());
    assert_eq!(branches(&demo.repo, "memofab/"), Vec::<String>::new());
    let registered = GitRepo::open(&demo.repo).unwrap();
    assert!(cleanup::kept(&registered, &state).is_empty());
    // Nothing left: cleaning again is a no-op, not an error.
    assert!(memofab(&demo.repo, &["clean"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memofab_clean_never_touches_a_run_in_progress() {
    let demo = hygiene_repo("gated.toml");
    let request = demo_request(&demo, scripted(&demo), Steering::Interactive, false);
    let mut run = Interactive::with(request);
    run.until("the gate", |s, _| {
        s.task(&"note".into())
            .is_some_and(|t| t.state == TaskState::AwaitingGate)
    })
    .await;
    let state = run.shutdown().await;
    assert!(!state.phase.is_over());
    let worktree = cleanup::run_dir(&demo.repo, &state.run).join("note");
    assert!(worktree.exists());

    let named = memofab(&demo.repo, &["clean", state.run.as_str()]);
    assert!(!named.status.success(), "a run in progress is refused");
    let all = memofab(&demo.repo, &["clean"]);
    assert!(all.status.success());
    assert!(worktree.exists());
    assert_eq!(
        branches(&demo.repo, "memofab/"),
        [format!("memofab/{}/note", state.run)]
    );
}
