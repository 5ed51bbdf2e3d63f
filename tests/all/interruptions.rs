//! Stopping and resuming with the real binary: SIGTERM, SIGINT and SIGHUP stop a
//! headless run cleanly (the interruption is recorded, the summary names
//! `memofab resume`, the pid file goes) and `memofab resume` finishes it; a
//! finished run is not resumed; overseer reports are neither listed nor
//! resumed as runs.

use crate::support::factory;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use factory::*;
use memofab::domain::event::RunInterrupted;
use memofab::domain::{EventKind, RunId, RunKind, TaskState};
use memofab::effects::clock::now_ms;
use memofab::effects::store::Store;
use memofab::engine::run::session::{self, store_path};

fn memofab(repo: &Path, args: &[&str]) -> Output {
    Command::new(memofab_bin())
        .args(args)
        .arg("--repo")
        .arg(repo)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .output()
        .unwrap()
}

/// Waits until the headless demo in `repo` waits at the `docs` gate.
fn wait_for_the_gate(child: &mut Child, repo: &Path) -> RunId {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the gate never opened"
        );
        // The store may be half made this early: look again later.
        let run = Store::open_reader(&store_path(repo))
            .ok()
            .and_then(|store| store.latest_run().ok().flatten());
        if let Some(run) = run
            && let Ok(state) = session::stored_state(repo, &run)
            && state.task(&"docs".into()).map(|t| t.state) == Some(TaskState::AwaitingGate)
        {
            return run;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[allow(unsafe_code)]
fn send(child: &Child, signal: libc::c_int) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child; it touches no memory.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Waits (a minute at most) for `child` to exit; its exit code and stderr.
fn exit_of(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("memofab did not stop on the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

/// A headless run waiting at the gate gets `signal`: it stops cleanly and
/// `memofab resume` then finishes it.
fn stop_at_the_gate_then_resume(signal: libc::c_int, expected_code: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("demo");
    let mut child = spawn_headless_demo(&repo, &repo.join("no-user-config"), &[]);
    let run = wait_for_the_gate(&mut child, &repo);
    assert!(repo.join(".memofab/engine.pid").exists());
    // Waiting at the gate records nothing: the interruption marks how long
    // the run really went on.
    std::thread::sleep(Duration::from_millis(1500));
    let signalled_at = now_ms();
    send(&child, signal);
    let (code, stderr) = exit_of(child);

    assert_eq!(code, Some(expected_code), "{stderr}");
    assert!(
        !repo.join(".memofab/engine.pid").exists(),
        "the pid file is removed"
    );
    assert!(
        stderr.contains(&format!("resume {run}")) && stderr.contains("memofab --repo"),
        "the summary says how to carry on: {stderr}"
    );
    let events = stored_events(&repo, &run);
    let last = events.last().unwrap();
    assert!(
        matches!(last.kind, EventKind::RunInterrupted(RunInterrupted {})),
        "{:?}",
        last.kind
    );
    let listed = Store::open(&store_path(&repo))
        .unwrap()
        .runs()
        .unwrap()
        .into_iter()
        .find(|r| r.run == run)
        .unwrap();
    assert!(
        listed.last_event_ms >= signalled_at,
        "the run's duration reaches its interruption"
    );
    // `runs` says the run waits for `resume`, not that it is building.
    let runs = memofab(&repo, &["runs"]);
    let row = String::from_utf8_lossy(&runs.stdout)
        .lines()
        .find(|l| l.contains(run.as_str()))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(row.contains("interrupted"), "{row}");

    // The human approves the waiting gate; the resumed run picks it up.
    let approve = memofab(&repo, &["approve", run.as_str(), "docs"]);
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let out = resume(&repo);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("waits at the gate").count(),
        1,
        "what waits is said once, old hints are not repeated: {stderr}"
    );
    let events = stored_events(&repo, &run);
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::RunResumed(_)))
    );
    let state = fold(&events);
    assert!(state.phase.is_over());
    assert_eq!(state.count(TaskState::Merged), state.tasks().len());
    assert!(!repo.join(".memofab/engine.pid").exists());
}

#[test]
fn sigterm_stops_a_headless_run_cleanly_and_resume_finishes_it() {
    stop_at_the_gate_then_resume(libc::SIGTERM, 143);
}

#[test]
fn sigint_stops_a_headless_run_cleanly_and_resume_finishes_it() {
    stop_at_the_gate_then_resume(libc::SIGINT, 130);
}

/// Closing the terminal is not kill -9: the run records its interruption
/// and the pid file goes.
#[test]
fn sighup_stops_a_headless_run_cleanly_and_resume_finishes_it() {
    stop_at_the_gate_then_resume(libc::SIGHUP, 129);
}

/// Under `nohup` (SIGHUP ignored at start) closing the terminal stops
/// nothing: the run keeps waiting at its gate.
#[test]
#[allow(unsafe_code)]
fn under_nohup_sighup_stays_ignored() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("demo");
    let mut command = Command::new(memofab_bin());
    command
        .args(["demo", "--headless", "--dir"])
        .arg(&repo)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: signal(2) between fork and exec, as nohup does; it touches
    // no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let run = wait_for_the_gate(&mut child, &repo);
    send(&child, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    send(&child, libc::SIGTERM);
    let (code, stderr) = exit_of(child);
    assert_eq!(code, Some(143), "{stderr}");
    let last = stored_events(&repo, &run).pop().unwrap();
    assert!(matches!(
        last.kind,
        EventKind::RunInterrupted(RunInterrupted {})
    ));
}

#[test]
fn a_finished_run_is_not_resumed_and_not_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("demo");
    let child = spawn_headless_demo(&repo, &repo.join("no-user-config"), &["--auto-approve"]);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(&repo);
    let before = stored_events(&repo, &run);

    let named = memofab(&repo, &["resume", "--headless", run.as_str()]);
    let stderr = String::from_utf8_lossy(&named.stderr);
    assert!(named.status.success(), "{stderr}");
    assert!(stderr.contains("already finished"), "{stderr}");
    assert!(
        !stderr.contains("waits at the gate"),
        "no stale gate hint: {stderr}"
    );
    assert!(named.stdout.is_empty(), "no events printed again");

    // Without an id: no interrupted run to pick, and the latest says so.
    let latest = memofab(&repo, &["resume", "--headless"]);
    let stderr = String::from_utf8_lossy(&latest.stderr);
    assert!(latest.status.success(), "{stderr}");
    assert!(stderr.contains("already finished"), "{stderr}");

    assert_eq!(stored_events(&repo, &run), before, "the store is unchanged");
}

#[test]
fn overseer_reports_are_listed_apart_and_never_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("demo");
    // A run that dies mid-build: the one `resume` must pick.
    let crashed = Command::new(memofab_bin())
        .args([
            "demo",
            "--headless",
            "--auto-approve",
            "--crash-after-events",
            "60",
            "--dir",
        ])
        .arg(&repo)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    let run = only_run(&repo);

    // Then an overseer report, newer than the run.
    let scenario = memofab::llm::scenario::Scenario::demo().unwrap();
    let providers = memofab::engine::context::ProviderSet::uniform(
        std::sync::Arc::new(memofab::llm::scripted::ScriptedProvider::new(
            std::sync::Arc::new(scenario),
        )),
        "scripted",
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime
        .block_on(memofab::engine::overseer::review(
            &repo,
            0,
            &project_config(&repo),
            &providers,
        ))
        .unwrap();
    assert_eq!(report.run.kind(), RunKind::OverseerReport);
    let report_events = stored_events(&repo, &report.run);

    let runs = memofab(&repo, &["runs"]);
    let listing = String::from_utf8_lossy(&runs.stdout);
    assert!(listing.contains(run.as_str()), "{listing}");
    assert!(!listing.contains(report.run.as_str()), "{listing}");
    assert!(listing.contains("memofab overseer list"), "{listing}");
    let reports = memofab(&repo, &["overseer", "list"]);
    let listing = String::from_utf8_lossy(&reports.stdout);
    assert!(listing.contains(report.run.as_str()), "{listing}");
    assert!(!listing.contains(run.as_str()), "{listing}");

    // `resume` carries on the interrupted run, not the newer report.
    let out = resume(&repo);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = fold(&stored_events(&repo, &run));
    assert_eq!(state.count(TaskState::Merged), state.tasks().len());
    assert_eq!(stored_events(&repo, &report.run), report_events);
    // Naming the report is refused.
    let named = memofab(&repo, &["resume", "--headless", report.run.as_str()]);
    assert!(!named.status.success());
    assert_eq!(stored_events(&repo, &report.run), report_events);
}
