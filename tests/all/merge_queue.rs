//! The mainline merge queue on real repositories: a merge whose combined tree
//! fails the tests never reaches mainline, a failing post-merge check gets the
//! merge reverted, and a merge landed by a process that died before recording
//! it is recognised as merged, not merged twice.

use crate::support::factory;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use factory::*;
use memofab::domain::event::{
    AgentMessage, MergeResult, MergeReverted, MergeVerified, TaskStateChanged, TestRun,
};
use memofab::domain::{
    AgentRole, Event, EventKind, MergeCheck, MergeOutcome, MessageAuthor, RunPhase, TaskState,
};
use memofab::effects::git::GitRepo;
use memofab::engine::demo_seed::prepare_repo;
use memofab::engine::recorder::CRASH_EXIT_CODE;
use memofab::llm::scenario::Scenario;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/merge_queue")
        .join(name)
}

fn seed_files() -> Vec<(String, Vec<u8>)> {
    let root = fixture("seed");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A repository made from the fixture seed, with `scenario`'s test command
/// and `extra_config` appended to the project's config.
fn fixture_repo(scenario: &str, extra_config: &str) -> DemoRepo {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::load(&fixture(scenario)).unwrap();
    let repo = prepare_repo(&dir.path().join("repo"), &scenario, &seed_files()).unwrap();
    let config = repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(extra_config);
    std::fs::write(&config, text).unwrap();
    DemoRepo {
        dir,
        repo,
        scenario,
    }
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `command` on the tree of `commit`, exported to a temp dir.
fn passes_at(repo: &Path, commit: &str, command: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git archive --format=tar {commit} | tar -x -C '{}'",
            dir.path().display()
        ))
        .current_dir(repo)
        .status()
        .unwrap();
    assert!(export.success());
    Command::new("sh")
        .args(["-c", command])
        .current_dir(dir.path())
        .output()
        .unwrap()
        .status
        .success()
}

/// The merge commits on mainline's first-parent line, newest first.
fn mainline_merges(repo: &Path) -> Vec<String> {
    git(repo, &["rev-list", "--first-parent", "--merges", "main"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn is_ancestor(repo: &Path, commit: &str, of: &str) -> bool {
    Command::new("git")
        .args(["merge-base", "--is-ancestor", commit, of])
        .current_dir(repo)
        .status()
        .unwrap()
        .success()
}

fn verifications(events: &[Event], check: MergeCheck) -> Vec<(String, String, bool, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MergeVerified(MergeVerified {
                task,
                check: c,
                candidate,
                passed,
                output,
                ..
            }) if *c == check => {
                Some((task.to_string(), candidate.clone(), *passed, output.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_that_breaks_the_combined_tree_never_reaches_mainline() {
    let demo = fixture_repo("clash.toml", "");
    let state = run_demo(&demo).await;
    let events = stored_events(&demo.repo, &state.run);
    assert_eq!(fold(&events), state);
    assert_eq!(state.phase, RunPhase::Finished);
    for task in state.tasks() {
        assert_eq!(task.state, TaskState::Merged, "{}", task.id());
    }

    // Exactly one merge result failed verification: the second of the two.
    let verified = verifications(&events, MergeCheck::Verify);
    let failed: Vec<_> = verified.iter().filter(|v| !v.2).collect();
    assert_eq!(failed.len(), 1, "{verified:?}");
    let (loser, candidate, _, output) = failed[0].clone();
    assert!(output.contains("clash"), "{output}");

    // Its branch alone had passed the tests.
    let own_tests_passed = events.iter().any(|e| {
        matches!(&e.kind, EventKind::TestRun(TestRun { task, passed: true, .. }) if task.as_str() == loser)
    });
    assert!(own_tests_passed, "{loser}'s own branch passed its tests");

    // The failing merge never reached mainline.
    let head = git(&demo.repo, &["rev-parse", "main"]);
    assert!(!is_ancestor(&demo.repo, &candidate, &head));

    // The task reopened with the failure as feedback, and was reworked once.
    let record = state.task(&loser.as_str().into()).unwrap();
    assert_eq!((record.attempt, record.reworks), (2, 1));
    let reopened = events.iter().any(|e| {
        matches!(&e.kind, EventKind::TaskStateChanged(TaskStateChanged { task, from: TaskState::Verifying, to: TaskState::Running, .. }) if task.as_str() == loser)
    });
    assert!(reopened, "{loser} went back from verifying to its coder");
    let coder = memofab::domain::AgentId::for_task(AgentRole::Coder, &loser.as_str().into(), 2);
    let told = events.iter().any(|e| {
        matches!(&e.kind, EventKind::AgentMessage(AgentMessage { agent, from: MessageAuthor::User, text })
            if agent == &coder && text.contains("merge verification failed") && text.contains("clash"))
    });
    assert!(told, "the second attempt's coder saw the failure");

    // Every merge memofab made on mainline passes the test command.
    let merges = mainline_merges(&demo.repo);
    assert_eq!(merges.len(), 2, "one merge per task: {merges:?}");
    for merge in &merges {
        assert!(
            passes_at(&demo.repo, merge, "sh tests/run.sh"),
            "mainline is red at {merge}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_post_merge_check_reverts_the_merge() {
    let demo = fixture_repo(
        "post_merge.toml",
        "[merge]\npost_merge_command = \"sh tests/post.sh\"\n",
    );
    let state = run_demo(&demo).await;
    let events = stored_events(&demo.repo, &state.run);
    assert_eq!(fold(&events), state);
    assert_eq!(
        state.settings.post_merge_command.as_deref(),
        Some("sh tests/post.sh")
    );
    let task = state.task(&"bad".into()).unwrap();
    assert_eq!(task.state, TaskState::Merged);
    assert_eq!((task.attempt, task.reworks), (2, 1));

    // The first landing failed the post-merge check and was reverted.
    let post = verifications(&events, MergeCheck::PostMerge);
    assert_eq!(post.iter().map(|p| p.2).collect::<Vec<_>>(), [false, true]);
    assert!(post[0].3.contains("bad.txt must not ship"), "{}", post[0].3);
    let reverts: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MergeReverted(MergeReverted {
                merge_commit,
                revert_commit,
                ..
            }) => Some((merge_commit.clone(), revert_commit.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(reverts.len(), 1);
    let (merge_commit, revert_commit) = &reverts[0];
    assert_eq!(merge_commit, &post[0].1);
    let head = git(&demo.repo, &["rev-parse", "main"]);
    assert!(is_ancestor(&demo.repo, revert_commit, &head));
    assert_eq!(
        git(&demo.repo, &["rev-parse", &format!("{revert_commit}^")]),
        *merge_commit,
        "the revert sits right on the merge it undoes"
    );
    let subject = git(&demo.repo, &["log", "-1", "--format=%s", revert_commit]);
    assert!(
        subject.starts_with("Revert bad") && subject.contains("post-merge check failed"),
        "{subject}"
    );
    assert!(!passes_at(&demo.repo, merge_commit, "sh tests/post.sh"));
    assert!(passes_at(&demo.repo, revert_commit, "sh tests/post.sh"));

    // Mainline ends green, with the reworked change and without bad.txt.
    let git2 = GitRepo::open(&demo.repo).unwrap();
    assert!(git2.read_file_at("main", "bad.txt").unwrap().is_none());
    assert!(git2.read_file_at("main", "good.txt").unwrap().is_some());
    assert!(passes_at(&demo.repo, &head, "sh tests/post.sh"));
    assert!(passes_at(&demo.repo, &head, "sh tests/run.sh"));
    // The user's checkout followed mainline.
    assert!(!demo.repo.join("bad.txt").exists());
    assert!(demo.repo.join("good.txt").exists());

    // The run's record says what happened.
    let mut md = Vec::new();
    memofab::effects::store::export::export_markdown(&events, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("bad: post-merge check"), "{md}");
    assert!(md.contains("reverted on mainline by"), "{md}");
}

fn solo_demo(dir: &Path, crash_after: u64) -> Output {
    Command::new(memofab_bin())
        .args(["demo", "--headless", "--auto-approve", "--scenario"])
        .arg(fixture("solo.toml"))
        .arg("--crash-after-events")
        .arg(crash_after.to_string())
        .arg("--dir")
        .arg(dir)
        .env("XDG_CONFIG_HOME", dir.join("no-user-config"))
        .output()
        .unwrap()
}

/// The solo demo run to its end in `base/reference`, with its events.
fn uninterrupted(base: &Path) -> (PathBuf, Vec<Event>) {
    let reference = base.join("reference");
    let out = solo_demo(&reference, u64::MAX);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = stored_events(&reference, &only_run(&reference));
    (reference, events)
}

#[test]
fn a_merge_landed_but_not_recorded_is_recognised_after_a_crash() {
    let base = tempfile::tempdir().unwrap();

    // Where the verification of the merge is stored, in an uninterrupted run.
    let (_, events) = uninterrupted(base.path());
    let verified_at = events
        .iter()
        .find(|e| {
            matches!(
                &e.kind,
                EventKind::MergeVerified(MergeVerified {
                    passed: true,
                    check: MergeCheck::Verify,
                    ..
                })
            )
        })
        .map(|e| e.seq)
        .unwrap();

    // Killed right after the verification passed, before mainline moved.
    let dir = base.path().join("crashed");
    let out = solo_demo(&dir, verified_at);
    assert_eq!(out.status.code(), Some(CRASH_EXIT_CODE));
    let run = only_run(&dir);
    let before = stored_events(&dir, &run);
    let Some(EventKind::MergeVerified(MergeVerified { candidate, .. })) =
        before.last().map(|e| &e.kind)
    else {
        panic!("the run stopped after verifying: {:?}", before.last());
    };
    // Play the part of the landing that happened before the kill: mainline
    // moved to the verified candidate, nothing recorded it.
    git(&dir, &["merge", "--ff-only", "-q", candidate]);
    assert_eq!(
        fold(&before).task(&"solo".into()).unwrap().state,
        TaskState::Verifying
    );

    let out = resume(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = stored_events(&dir, &run);
    let state = fold(&events);
    let solo = state.task(&"solo".into()).unwrap();
    assert_eq!(solo.state, TaskState::Merged);
    assert_eq!(solo.merged_commit.as_deref(), Some(candidate.as_str()));

    // Recorded as merged once, and merged on mainline once.
    let landings = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::MergeResult(MergeResult { result, .. }) if !matches!(result, MergeOutcome::Conflict { .. })))
        .count();
    assert_eq!(landings, 1);
    assert_eq!(mainline_merges(&dir), vec![candidate.clone()]);
    assert_eq!(git(&dir, &["rev-parse", "main"]), *candidate);
}

#[test]
fn a_process_killed_anywhere_in_the_queue_resumes_to_one_merge() {
    let base = tempfile::tempdir().unwrap();
    let (reference, events) = uninterrupted(base.path());
    let reference_tree = mainline_tree(&reference);

    // Killed right after each step of the queue was stored.
    let steps: Vec<u64> = events
        .iter()
        .filter(|e| match &e.kind {
            EventKind::TaskStateChanged(TaskStateChanged { to, .. }) => to.in_merge_queue(),
            EventKind::MergeVerified(_) | EventKind::MergeResult(_) => true,
            _ => false,
        })
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        steps.len(),
        5,
        "queued, merging, verifying, verified, landed"
    );
    for (i, crash_after) in steps.into_iter().enumerate() {
        let dir = base.path().join(format!("crash-{i}"));
        let out = solo_demo(&dir, crash_after);
        assert_eq!(out.status.code(), Some(CRASH_EXIT_CODE));
        let out = resume(&dir);
        assert!(
            out.status.success(),
            "resume after event {crash_after}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = stored_events(&dir, &only_run(&dir));
        let state = fold(&events);
        assert_eq!(
            state.task(&"solo".into()).unwrap().state,
            TaskState::Merged,
            "after event {crash_after}"
        );
        assert_eq!(mainline_merges(&dir).len(), 1, "after event {crash_after}");
        assert_eq!(
            mainline_tree(&dir),
            reference_tree,
            "after event {crash_after}"
        );
        let head = git(&dir, &["rev-parse", "main"]);
        assert!(passes_at(&dir, &head, "sh tests/run.sh"));
    }
}
