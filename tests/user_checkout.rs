//! The user's checkout of mainline while memofab lands work on it: clean, it
//! follows every landing like a fast-forward; edited mid-run, mainline stays
//! where it is, the run pauses with an inbox item naming the edited file, and
//! once the human commits and approves, the landing goes through. Never a
//! moved branch under a stale index (which `git status` would show as staged
//! reversions of the merged work).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/interactive.rs"]
mod interactive;
#[path = "support/factory.rs"]
mod support;

use std::path::Path;
use std::process::Command as Git;

use interactive::Interactive;
use memofab::cli::demo::prepare_repo;
use memofab::domain::attention::{AttentionKind, inbox};
use memofab::domain::{EventKind, RunPhase, TaskState};
use memofab::engine::orchestrator::Steering;
use memofab::llm::scenario::Scenario;
use memofab::protocol::Command;
use support::*;

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Git::new("git")
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
        EventKind::CheckoutDirty { task, files } if task.as_str() == "note" && files == &["README.md"])));

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
    let contains_mine = Git::new("git")
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
