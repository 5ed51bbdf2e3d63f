//! Kill-and-resume: the real binary exits abruptly after N stored events (a
//! test hook standing in for a crash); `memofab resume` then finishes the run
//! with the same mainline tree as an uninterrupted run, merging each task once.

use crate::support::factory;

use std::process::Command;

use factory::*;
use memofab::domain::event::MergeResult;
use memofab::domain::{EventKind, MergeOutcome, TaskState};
use memofab::engine::recorder::CRASH_EXIT_CODE;

fn demo_until_crash(dir: &std::path::Path, crash_after: u64) -> std::process::Output {
    Command::new(memofab_bin())
        .args([
            "demo",
            "--headless",
            "--auto-approve",
            "--crash-after-events",
        ])
        .arg(crash_after.to_string())
        .arg("--dir")
        .arg(dir)
        .env("XDG_CONFIG_HOME", dir.join("no-user-config"))
        .output()
        .expect("memofab runs")
}

#[test]
fn resumed_runs_reach_the_same_mainline_without_duplicated_work() {
    let base = tempfile::tempdir().unwrap();

    // The reference: one uninterrupted run.
    let reference_dir = base.path().join("reference");
    let out = demo_until_crash(&reference_dir, u64::MAX);
    assert!(
        out.status.success(),
        "reference run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference_tree = mainline_tree(&reference_dir);
    let total_events = stored_events(&reference_dir, &only_run(&reference_dir)).len() as u64;
    assert!(
        total_events > 100,
        "the demo records a full run ({total_events} events)"
    );

    // Crash early (planning), mid-build, and late (merging).
    for crash_after in [12, total_events / 2, total_events * 9 / 10] {
        let dir = base.path().join(format!("crash-{crash_after}"));
        let out = demo_until_crash(&dir, crash_after);
        assert_eq!(
            out.status.code(),
            Some(CRASH_EXIT_CODE),
            "crash hook at {crash_after}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = only_run(&dir);
        assert_eq!(
            stored_events(&dir, &run).len() as u64,
            crash_after,
            "nothing lost before the crash"
        );

        let out = resume(&dir);
        assert!(
            out.status.success(),
            "resume after {crash_after} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let events = stored_events(&dir, &run);
        let state = fold(&events);
        assert!(
            state.tasks().iter().all(|t| t.state == TaskState::Merged),
            "crash at {crash_after}: not all merged"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e.kind, EventKind::RunResumed(_)))
        );
        assert_eq!(
            mainline_tree(&dir),
            reference_tree,
            "crash at {crash_after}: mainline differs"
        );
        for task in state.tasks() {
            let merges = events
                .iter()
                .filter(|e| matches!(&e.kind, EventKind::MergeResult(MergeResult { task: t, result }) if t == task.id() && !matches!(result, MergeOutcome::Conflict { .. })))
                .count();
            assert_eq!(
                merges,
                1,
                "crash at {crash_after}: {} merged {merges} times",
                task.id()
            );
        }
        // Events recorded before the crash are kept unchanged: seqs are dense.
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
        }
    }
}
