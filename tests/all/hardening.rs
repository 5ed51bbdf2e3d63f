//! Faults and misbehaviour: agents that attack the factory's definitions,
//! fish for secrets or send broken tool calls; repositories that are not
//! ready; a process killed at random moments.

use crate::support::factory;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use factory::*;
use memofab::domain::event::{MergeResult, ToolResult, Warning};
use memofab::domain::{EventKind, TaskState};
use memofab::effects::store::Store;
use memofab::engine::run::session::store_path;

const PLANTED: &str = "sk-planted-secret-0123456789";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardening/scenario.toml")
}

fn memofab(args: &[&str], xdg: &Path) -> Output {
    Command::new(memofab_bin())
        .args(args)
        .env("XDG_CONFIG_HOME", xdg)
        .env("OPENAI_API_KEY", PLANTED)
        .output()
        .unwrap()
}

/// [`memofab`], failing the test if it has not ended within `limit` (a
/// resume that waits for a human it will never get is a failure, not a hang
/// of the whole suite). Its stdout is not kept.
fn memofab_within(args: &[&str], xdg: &Path, limit: Duration) -> Output {
    let mut command = Command::new(memofab_bin());
    command
        .args(args)
        .env("XDG_CONFIG_HOME", xdg)
        .env("OPENAI_API_KEY", PLANTED);
    output_within(command, limit)
}

#[test]
fn misbehaving_agents_are_refused_scrubbed_and_corrected() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let out = memofab(
        &[
            "demo",
            "--headless",
            "--auto-approve",
            "--scenario",
            fixture().to_str().unwrap(),
            "--dir",
            repo.to_str().unwrap(),
        ],
        &tmp.path().join("xdg"),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "not every task merges: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(&repo);
    let events = stored_events(&repo, &run);
    let state = fold(&events);

    // The factory's prompts: the tool refused, and the shell write was caught at commit.
    let evil = state.task(&"evil".into()).unwrap();
    assert_eq!(evil.state, TaskState::Failed);
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::ToolResult(ToolResult { ok: false, output, .. }) if output.contains("prompts/reviewer.md") && output.contains("not allowed"))));
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Warning(Warning { task: Some(t), message }) if t.as_str() == "evil" && message.starts_with("security:"))));
    let git = memofab::effects::git::GitRepo::open(&repo).unwrap();
    assert!(
        git.read_file_at("main", "prompts/coder.md")
            .unwrap()
            .is_none(),
        "nothing reached mainline"
    );

    // Secrets: the planted key never reached an agent, the store, the log or an export.
    assert_eq!(
        state.task(&"leaky".into()).unwrap().state,
        TaskState::Merged
    );
    let store_text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert!(
        !store_text.contains(PLANTED),
        "the key leaked into the event log"
    );
    assert!(store_text.contains("key="), "the agent did run env");
    let log = std::fs::read_to_string(repo.join(".memofab/memofab.log")).unwrap_or_default();
    assert!(!log.contains(PLANTED));
    let export = memofab(
        &[
            "export",
            run.as_str(),
            "--format",
            "markdown",
            "--repo",
            repo.to_str().unwrap(),
        ],
        &tmp.path().join("xdg"),
    );
    assert!(!String::from_utf8_lossy(&export.stdout).contains(PLANTED));

    // Broken tool calls get messages the model can act on, then it recovers.
    assert_eq!(
        state.task(&"clumsy".into()).unwrap().state,
        TaskState::Merged
    );
    let errors: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(ToolResult {
                agent,
                ok: false,
                output,
                ..
            }) if agent.as_str().starts_with("coder:clumsy") => Some(output.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(|o| o.contains("could not be read")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|o| o.contains("no tool named")),
        "{errors:?}"
    );

    // The store is sound.
    Store::open(&store_path(&repo))
        .unwrap()
        .integrity_check()
        .unwrap();
}

fn init_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(dir.join("a.txt"), "a").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "seed"]);
}

#[test]
fn repositories_that_are_not_ready_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    let run = |repo: &Path| {
        memofab(
            &[
                "run",
                "--headless",
                "--provider",
                "scripted",
                "--requirement-text",
                "x",
                "--repo",
                repo.to_str().unwrap(),
            ],
            &xdg,
        )
    };
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    Command::new("git")
        .args(["init", "-q"])
        .current_dir(&empty)
        .output()
        .unwrap();
    let out = run(&empty);
    assert!(
        !out.status.success() && stderr(&out).contains("no commits"),
        "{}",
        stderr(&out)
    );

    let dirty = tmp.path().join("dirty");
    init_repo(&dirty);
    std::fs::write(dirty.join("a.txt"), "changed").unwrap();
    let out = run(&dirty);
    assert!(
        stderr(&out).contains("uncommitted changes (a.txt)"),
        "{}",
        stderr(&out)
    );

    let detached = tmp.path().join("detached");
    init_repo(&detached);
    Command::new("git")
        .args(["checkout", "-q", "--detach"])
        .current_dir(&detached)
        .output()
        .unwrap();
    let out = run(&detached);
    assert!(
        stderr(&out).contains("HEAD is detached"),
        "{}",
        stderr(&out)
    );

    let nowhere = tmp.path().join("not-a-repo");
    std::fs::create_dir_all(&nowhere).unwrap();
    let out = run(&nowhere);
    assert!(
        stderr(&out).contains("not inside a git repository"),
        "{}",
        stderr(&out)
    );

    // Bad config: the file and the key are named.
    let bad = tmp.path().join("bad-config");
    init_repo(&bad);
    std::fs::create_dir_all(bad.join(".memofab")).unwrap();
    std::fs::write(
        bad.join(".memofab/config.toml"),
        "[run]\nconcurrency = \"many\"\n",
    )
    .unwrap();
    let out = run(&bad);
    assert!(
        stderr(&out).contains("config.toml") && stderr(&out).contains("concurrency"),
        "{}",
        stderr(&out)
    );

    // A broken scenario names itself.
    let scenario = tmp.path().join("broken.toml");
    std::fs::write(&scenario, "name = 1\n").unwrap();
    let clean = tmp.path().join("clean");
    init_repo(&clean);
    let out = memofab(
        &[
            "run",
            "--headless",
            "--requirement-text",
            "x",
            "--scenario",
            scenario.to_str().unwrap(),
            "--repo",
            clean.to_str().unwrap(),
        ],
        &xdg,
    );
    assert!(stderr(&out).contains("broken.toml"), "{}", stderr(&out));
}

/// A small deterministic generator, so every seed kills at its own moment.
fn delays(seed: u64, n: usize) -> Vec<Duration> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Duration::from_millis(40 + (x >> 33) % 900)
        })
        .collect()
}

#[test]
fn kill_9_at_random_moments_then_resume_reaches_the_same_mainline() {
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    let reference = tmp.path().join("reference");
    let out = memofab(
        &[
            "demo",
            "--headless",
            "--auto-approve",
            "--dir",
            reference.to_str().unwrap(),
        ],
        &xdg,
    );
    assert!(out.status.success());
    let expected = mainline_tree(&reference);

    let mut interrupted = 0;
    for (round, delay) in delays(7, 5).into_iter().enumerate() {
        let dir = tmp.path().join(format!("round-{round}"));
        let mut child = Command::new(memofab_bin())
            .args([
                "demo",
                "--headless",
                "--auto-approve",
                "--dir",
                dir.to_str().unwrap(),
            ])
            .env("XDG_CONFIG_HOME", &xdg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL: no cleanup of any kind
        let _ = child.wait();
        if !dir.join(".memofab/memofab.db").exists() {
            // Killed before the run began: nothing to resume, start again.
            continue;
        }
        let store = Store::open(&store_path(&dir)).unwrap();
        store.integrity_check().unwrap();
        if store.latest_run().unwrap().is_none() {
            // Killed between opening the store and recording the run.
            continue;
        }
        drop(store);
        let before = fold(&stored_events(&dir, &only_run(&dir)));
        if !before.phase.is_over() {
            interrupted += 1;
        }
        let out = memofab_within(
            &["resume", "--headless", "--repo", dir.to_str().unwrap()],
            &xdg,
            Duration::from_secs(180),
        );
        assert!(
            out.status.success(),
            "round {round} ({delay:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            mainline_tree(&dir),
            expected,
            "round {round} ({delay:?}): mainline differs"
        );
        let events = stored_events(&dir, &only_run(&dir));
        let state = fold(&events);
        assert!(
            state.tasks().iter().all(|t| t.state == TaskState::Merged),
            "round {round}"
        );
        for task in state.tasks() {
            let merges = events
                .iter()
                .filter(|e| matches!(&e.kind, EventKind::MergeResult(MergeResult { task: t, result }) if t == task.id() && !matches!(result, memofab::domain::MergeOutcome::Conflict { .. })))
                .count();
            assert_eq!(
                merges,
                1,
                "round {round}: {} merged {merges} times",
                task.id()
            );
        }
        Store::open(&store_path(&dir))
            .unwrap()
            .integrity_check()
            .unwrap();
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} of 5 kills landed mid-run"
    );
}

#[test]
fn leftovers_of_an_old_run_do_not_get_in_the_way() {
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    let repo = tmp.path().join("repo");
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/seed");
    let files: Vec<(String, Vec<u8>)> = [
        "README.md",
        "bin/textkit",
        "lib/common.sh",
        "tests/run.sh",
        "tests/test_basic.sh",
    ]
    .iter()
    .map(|f| ((*f).to_owned(), std::fs::read(seed.join(f)).unwrap()))
    .collect();
    let git = memofab::effects::git::GitRepo::init_with_files(&repo, &files, "seed").unwrap();
    // An old run's branch, and its worktree directory left behind.
    let head = git.branch_head("main").unwrap();
    git.add_worktree(
        &repo.join(".memofab/worktrees/r-old/loader"),
        "memofab/r-old/loader",
        &head,
    )
    .unwrap();
    std::fs::write(
        repo.join(".memofab/config.toml"),
        "[project]\ntest_command = \"sh tests/run.sh\"\n",
    )
    .unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/scenario.toml");
    let out = memofab(
        &[
            "run",
            "--headless",
            "--auto-approve",
            "--requirement-text",
            "stats and slugs",
            "--scenario",
            scenario.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
        ],
        &xdg,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        git.branch_exists("memofab/r-old/loader").unwrap(),
        "old branches are left alone"
    );
}
