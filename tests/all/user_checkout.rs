//! The user's checkout of mainline while memofab lands work on it: clean, it
//! follows every landing like a fast-forward; edited mid-run, mainline stays
//! where it is, the run pauses with an inbox item naming the edited file, and
//! once the human commits and approves, the landing goes through. Never a
//! moved branch under a stale index (which `git status` would show as staged
//! reversions of the merged work).

use crate::support::{factory, interactive};

use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use factory::*;
use interactive::Interactive;
use memofab::domain::attention::{AttentionKind, inbox};
use memofab::domain::event::CheckoutDirty;
use memofab::domain::{EventKind, RunPhase, TaskState};
use memofab::engine::demo_seed::prepare_repo;
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session;
use memofab::llm::scenario::Scenario;
use memofab::protocol::Command;

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Process::new("git")
        .args(["-c", "user.name=u", "-c", "user.email=u@u"])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn gated_repo() -> DemoRepo {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hygiene/gated.toml");
    let scenario = Scenario::load(&path).unwrap();
    let seed = vec![
        ("README.md".to_owned(), b"# A project\n".to_vec()),
        ("tests/ok.sh".to_owned(), b"exit 0\n".to_vec()),
    ];
    let repo = prepare_repo(&dir.path().join("repo"), &scenario, &seed).unwrap();
    DemoRepo {
        dir,
        repo,
        scenario,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_checkout_follows_every_landing() {
    let demo = demo_repo();
    let state = run_demo(&demo).await;
    assert!(state.tasks().iter().all(|t| t.state == TaskState::Merged));
    assert_eq!(git(&demo.repo, &["status", "--porcelain"]), "");
    for (file, content) in mainline_tree(&demo.repo) {
        assert_eq!(
            std::fs::read(demo.repo.join(&file)).unwrap(),
            content,
            "{file} in the work tree is as merged"
        );
    }
}

/// The gated note edited around: the user edits README.md while the note
/// waits at the gate, then approves it.
async fn held_then_landed(test_command: Option<&str>) {
    let demo = gated_repo();
    let mut request = demo_request(&demo, scripted(&demo), Steering::Interactive, false);
    // Through the merge queue (verified) or merged directly.
    request.config.project.test_command = test_command.map(str::to_owned);
    let mut run = Interactive::with(request);
    let note = "note".into();
    run.until("the gate", |s, _| {
        s.task(&note)
            .is_some_and(|t| t.state == TaskState::AwaitingGate)
    })
    .await;
    let base = git(&demo.repo, &["rev-parse", "main"]);
    std::fs::write(demo.repo.join("README.md"), "# A project\n\nmy notes\n").unwrap();
    run.send(Command::ApproveGate {
        task: "note".into(),
    });
    run.until("the landing to be held", |s, _| {
        s.held_landing.is_some() && s.phase == RunPhase::Paused
    })
    .await;

    // Mainline stayed; the user's edit is all `git status` shows.
    assert_eq!(git(&demo.repo, &["rev-parse", "main"]), base);
    assert_eq!(
        git(&demo.repo, &["status", "--porcelain"]),
        " M README.md\n"
    );
    assert_eq!(
        std::fs::read_to_string(demo.repo.join("README.md")).unwrap(),
        "# A project\n\nmy notes\n"
    );
    assert!(!demo.repo.join("note.txt").exists());
    let state = run.state.clone().unwrap();
    let items = inbox(&state);
    let held = items
        .iter()
        .find(|i| i.kind == AttentionKind::DirtyCheckout)
        .expect("an inbox item for the held landing");
    assert_eq!(held.task.as_ref().map(|t| t.as_str()), Some("note"));
    assert!(held.detail.contains("README.md"), "{}", held.detail);
    assert!(run.events.iter().any(|e| matches!(&e.kind,
        EventKind::CheckoutDirty(CheckoutDirty { task, files }) if task.as_str() == "note" && files == &["README.md"])));

    // The human commits their edit and approves: the landing goes through,
    // on top of their commit, and the checkout follows.
    git(&demo.repo, &["commit", "-qam", "my notes"]);
    let mine = git(&demo.repo, &["rev-parse", "main"]);
    run.send(Command::ApproveGate {
        task: "note".into(),
    });
    run.until("the note to merge", |s, _| {
        s.task(&note).is_some_and(|t| t.state == TaskState::Merged)
    })
    .await;
    let state = run.shutdown().await;
    assert!(state.held_landing.is_none());
    assert!(inbox(&state).is_empty());
    assert_eq!(git(&demo.repo, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(demo.repo.join("note.txt")).unwrap(),
        "a note\n"
    );
    assert_eq!(
        std::fs::read_to_string(demo.repo.join("README.md")).unwrap(),
        "# A project\n\nmy notes\n"
    );
    let contains_mine = Process::new("git")
        .args(["merge-base", "--is-ancestor", mine.trim(), "main"])
        .current_dir(&demo.repo)
        .status()
        .unwrap()
        .success();
    assert!(contains_mine, "the user's commit stays on mainline");
    let events = stored_events(&demo.repo, &state.run);
    assert_eq!(fold(&events), state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_checkout_holds_a_direct_merge_until_the_human_approves() {
    held_then_landed(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_checkout_holds_a_verified_merge_until_the_human_approves() {
    held_then_landed(Some("sh tests/ok.sh")).await;
}

/// Polls the store of `repo` until its only run passes `done`.
fn wait_for(
    repo: &Path,
    child: &mut std::process::Child,
    what: &str,
    done: impl Fn(&memofab::domain::RunState) -> bool,
) -> memofab::domain::RunState {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The run may not have written its store, or its first event, yet.
        if repo.join(".memofab/memofab.db").exists()
            && let Some(run) = latest_run(repo)
            && let Ok(state) = session::stored_state(repo, &run)
            && done(&state)
        {
            return state;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("never saw {what}; stderr: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn approve(repo: &Path, run: &str) -> std::process::Output {
    Process::new(memofab_bin())
        .args(["approve", run, "note", "--repo"])
        .arg(repo)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .output()
        .unwrap()
}

#[test]
fn headless_a_held_landing_waits_for_memofab_approve() {
    let demo = gated_repo();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hygiene/gated.toml");
    let mut child = Process::new(memofab_bin())
        .args(["run", "--headless", "--provider", "scripted", "--scenario"])
        .arg(&scenario)
        .args(["--requirement-text", "One note.", "--repo"])
        .arg(&demo.repo)
        .env("XDG_CONFIG_HOME", demo.repo.join("no-user-config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let note = "note".into();
    let state = wait_for(&demo.repo, &mut child, "the gate", |s| {
        s.task(&note)
            .is_some_and(|t| t.state == TaskState::AwaitingGate)
    });
    let run = state.run.to_string();
    let base = git(&demo.repo, &["rev-parse", "main"]);
    std::fs::write(demo.repo.join("README.md"), "# A project\n\nmy notes\n").unwrap();
    assert!(approve(&demo.repo, &run).status.success());
    wait_for(&demo.repo, &mut child, "the held landing", |s| {
        s.held_landing.is_some() && s.phase == RunPhase::Paused
    });
    assert_eq!(git(&demo.repo, &["rev-parse", "main"]), base);
    assert_eq!(
        git(&demo.repo, &["status", "--porcelain"]),
        " M README.md\n"
    );

    git(&demo.repo, &["stash", "-q"]);
    assert!(approve(&demo.repo, &run).status.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("memofab approve {run} note")),
        "the run told the human how to go on: {stderr}"
    );
    assert_eq!(git(&demo.repo, &["status", "--porcelain"]), "");
    assert!(demo.repo.join("note.txt").exists());
    // The stash applies cleanly on the new mainline.
    git(&demo.repo, &["stash", "pop", "-q"]);
    assert_eq!(
        git(&demo.repo, &["status", "--porcelain"]),
        " M README.md\n"
    );
}
