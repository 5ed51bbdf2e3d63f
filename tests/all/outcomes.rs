//! How runs end, whatever the front end: a headless run with a failure is
//! recorded as finished like the cockpit's and the daemon's; a cockpit quit
//! before its requirement leaves no run; a requirement no planner can hold
//! is refused when it is submitted.

use crate::support::factory;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use factory::*;
use memofab::domain::{EventKind, RunPhase, TaskState};
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session;
use memofab::protocol::Command as EngineCommand;
use tokio::sync::mpsc;

fn memofab(repo: &Path, args: &[&str]) -> Output {
    Command::new(memofab_bin())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .output()
        .unwrap()
}

/// A policy that denies every path fails the first task; the tasks below it,
/// however deep, are blocked, and the run is recorded as finished, exactly
/// as the cockpit and the daemon record it.
#[test]
fn a_headless_run_with_a_failed_task_is_recorded_finished_with_every_dependent_blocked() {
    let demo = demo_repo();
    std::fs::write(
        demo.repo.join(".memofab/policy.toml"),
        "[[rule]]\npaths = [\"**\"]\nrisk = \"deny\"\n",
    )
    .unwrap();
    let out = memofab(
        &demo.repo,
        &[
            "run",
            "--headless",
            "--auto-approve",
            "--provider",
            "scripted",
            "--requirement-text",
            &demo.scenario.requirement,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "not everything merged: {stderr}"
    );

    let run = only_run(&demo.repo);
    let events = stored_events(&demo.repo, &run);
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::RunFinished(_))),
        "run_finished is recorded"
    );
    let state = fold(&events);
    assert_eq!(state.phase, RunPhase::Finished);
    assert!(state.count(TaskState::Failed) >= 1);
    let unsettled: Vec<_> = state
        .tasks()
        .iter()
        .filter(|t| !matches!(t.state, TaskState::Failed | TaskState::Blocked))
        .map(|t| (t.id().clone(), t.state))
        .collect();
    assert!(unsettled.is_empty(), "{unsettled:?}");

    // `runs` does not call it interrupted, and `clean` takes it.
    let runs = memofab(&demo.repo, &["runs"]);
    let row = String::from_utf8_lossy(&runs.stdout)
        .lines()
        .find(|l| l.contains(run.as_str()))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(row.contains("finished"), "{row}");
    let clean = memofab(&demo.repo, &["clean", run.as_str()]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
}

/// `memofab ARGS` in `repo`, killed (and the test failed) if it has not
/// ended within `secs`: what must not hang is not let to.
fn memofab_within(secs: u64, repo: &Path, args: &[&str]) -> Output {
    // Files, not pipes: a full pipe nobody reads would stall the child.
    let log = tempfile::tempdir().unwrap();
    let (out, err) = (log.path().join("stdout"), log.path().join("stderr"));
    let mut child = Command::new(memofab_bin())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "memofab {args:?} hung: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

/// The cockpit's new run, waiting in its spec editor for a requirement.
fn spec_editor_request(demo: &DemoRepo) -> session::RunRequest {
    let mut request = demo_request(demo, scripted(demo), Steering::Interactive, true);
    request.requirement = String::new();
    request.await_spec = true;
    request
}

/// Opening the cockpit and quitting before the requirement is submitted
/// leaves no run behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cockpit_closed_before_its_requirement_leaves_no_run() {
    let demo = demo_repo();
    let (updates, mut rx) = mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let engine = tokio::spawn(session::start(
        spec_editor_request(&demo),
        updates,
        commands_rx,
    ));
    // The human looks around, then quits.
    let deadline = Instant::now() + Duration::from_secs(30);
    while latest_run(&demo.repo).is_none() {
        assert!(Instant::now() < deadline, "the cockpit's run never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    commands.send(EngineCommand::Shutdown).unwrap();
    tokio::time::timeout(Duration::from_secs(60), engine)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    drain.abort();
    assert_eq!(latest_run(&demo.repo), None, "no run is stored");
    assert!(!demo.repo.join(".memofab/engine.pid").exists());
}

/// A run without a requirement (a cockpit killed in its spec editor) is
/// never what `resume` picks, and `resume --headless` on it says so at once
/// instead of waiting for a terminal it does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_skips_a_run_without_a_requirement_and_never_waits_on_one() {
    let demo = demo_repo();
    // A real run, interrupted before it planned.
    let (updates, mut rx) = mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (commands, commands_rx) = mpsc::unbounded_channel();
    commands.send(EngineCommand::Shutdown).unwrap();
    let real = session::start(
        demo_request(&demo, scripted(&demo), Steering::Headless, true),
        updates.clone(),
        commands_rx,
    )
    .await
    .unwrap();
    assert!(!real.phase.is_over());
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Then a cockpit's blank run, its process killed in the spec editor.
    let (_keep_open, commands_rx) = mpsc::unbounded_channel();
    let blank = tokio::spawn(session::start(
        spec_editor_request(&demo),
        updates,
        commands_rx,
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let blank_run = loop {
        match latest_run(&demo.repo) {
            Some(run) if run != real.run => break run,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the cockpit's run never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    blank.abort();
    let _ = blank.await;
    drain.abort();
    let blank_before = stored_events(&demo.repo, &blank_run);

    let repo = demo.repo.clone();
    let named = blank_run.to_string();
    let out = tokio::task::spawn_blocking(move || {
        memofab_within(60, &repo, &["resume", "--headless", &named])
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "refused, not waited on");
    assert_eq!(stored_events(&demo.repo, &blank_run), blank_before);

    let repo = demo.repo.clone();
    let out =
        tokio::task::spawn_blocking(move || memofab_within(240, &repo, &["resume", "--headless"]))
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = fold(&stored_events(&demo.repo, &real.run));
    assert_eq!(
        resumed.phase,
        RunPhase::Finished,
        "the real run was resumed"
    );
    assert_eq!(stored_events(&demo.repo, &blank_run), blank_before);
}

/// A requirement under `run.max_requirement_bytes` that the planner's
/// window cannot hold is refused before it becomes a run, instead of a run
/// whose planner fails at once.
#[test]
fn a_requirement_no_planner_window_holds_is_refused_before_any_run() {
    let demo = demo_repo();
    let big = demo.dir.path().join("requirement.md");
    // 250 KB: under the 256 KiB limit, far over the scripted planner's
    // fallback window of 32k tokens.
    std::fs::write(&big, "word ".repeat(50 * 1024)).unwrap();
    let out = memofab(
        &demo.repo,
        &[
            "run",
            "--headless",
            "--provider",
            "scripted",
            "--requirement",
            big.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(2), "refused, not a run that failed");
    assert_eq!(latest_run(&demo.repo), None, "no run is stored");
}
