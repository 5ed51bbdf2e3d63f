//! `memofab bench --quick` runs every section end to end (the real engine
//! on a generated repository, the store, the cockpit, replay) and prints a
//! table for each. The figures themselves are not checked: that is what the
//! full benchmark is for.

use crate::support::factory;

use std::process::Command;

#[test]
fn every_bench_section_runs_and_prints_its_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(factory::memofab_bin())
        .args(["bench", "--quick", "--dir"])
        .arg(tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("xdg"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for heading in [
        "orchestration (8 tasks",
        "worktree reused by the next task, p50: memofab / git CLI",
        "orchestration overhead per task",
        "event store (",
        "append, 1000 events per transaction",
        "fold the run into its state",
        "cockpit render (",
        "frame p99",
        "replay (",
        "open at a cursor",
    ] {
        assert!(
            stdout.contains(heading),
            "missing {heading:?} in:\n{stdout}"
        );
    }
}

#[test]
fn an_unknown_bench_section_is_refused_with_the_choices() {
    let out = Command::new(factory::memofab_bin())
        .args(["bench", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orchestration") && stderr.contains("replay"),
        "{stderr}"
    );
}
