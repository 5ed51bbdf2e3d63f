//! The escape suite: a scripted coding agent tries every way out of its
//! worktree (tests/fixtures/escape/scenario.toml), under each isolation
//! mechanism forced by config, and the test checks the *effects*: the refs,
//! hooks and config of the user's repository unchanged, files outside the
//! worktree absent, a listener on 127.0.0.1 never reached, the secrets of
//! memofab's own environment and the user's private key in no byte of the
//! store, the output, the export or mainline — while the same run's real
//! work still merges and read-only git works inside the fence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/factory.rs"]
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use memofab::domain::{EventKind, TaskState};
use memofab::effects::isolation::{Isolation, Mechanism, testing};
use support::*;

/// In memofab's environment, as a user's shell exports them.
const API_KEY: &str = "sk-escape-0123456789abcdef";
const TOKEN: &str = "tok-escape-fedcba9876543210";
/// In the user's home directory.
const PRIVATE_KEY: &str = "-----BEGIN FAKE PRIVATE KEY----- escape-room";
/// Outside every worktree.
const OUTSIDE_SECRET: &str = "outside-secret-31415926";

struct Room {
    tmp: tempfile::TempDir,
    home: PathBuf,
    outside: PathBuf,
    repo: PathBuf,
    listener: TcpListener,
}

impl Room {
    fn new() -> Room {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".ssh/id_rsa"), PRIVATE_KEY).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), OUTSIDE_SECRET).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let repo = tmp.path().join("repo");
        Room {
            tmp,
            home,
            outside,
            repo,
            listener,
        }
    }

    /// The scenario with this room's paths and port filled in.
    fn scenario(&self) -> PathBuf {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/escape");
        let text = std::fs::read_to_string(fixtures.join("scenario.toml"))
            .unwrap()
            .replace("{HOME}", &self.home.display().to_string())
            .replace("{REPO}", &self.repo.display().to_string())
            .replace("{OUTSIDE}", &self.outside.display().to_string())
            .replace("{OUTSIDE_NAME}", "outside")
            .replace(
                "{PORT}",
                &self.listener.local_addr().unwrap().port().to_string(),
            );
        let dir = self.tmp.path().join("scenario");
        copy_dir(&fixtures.join("seed"), &dir.join("seed"));
        std::fs::write(dir.join("scenario.toml"), text).unwrap();
        dir.join("scenario.toml")
    }

    fn memofab(&self, args: &[&str], config: &Path) -> std::process::Output {
        Command::new(memofab_bin())
            .args(args)
            .arg("--config")
            .arg(config)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.tmp.path().join("xdg"))
            .env("OPENAI_API_KEY", API_KEY)
            .env("MEMOFAB_ESCAPE_TOKEN", TOKEN)
            .output()
            .unwrap()
    }
}

/// The escape scenario's planner and reviewers with another coder (TOML for
/// the `coder` conversation of task `escape`).
fn scenario_with_coder(room: &Room, coder: &str) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/escape");
    let dir = room.tmp.path().join("scenario");
    copy_dir(&fixtures.join("seed"), &dir.join("seed"));
    let scenario = std::fs::read_to_string(fixtures.join("scenario.toml")).unwrap();
    let head = &scenario[..scenario.find("[[conversation]]\nrole = \"coder\"").unwrap()];
    std::fs::write(dir.join("scenario.toml"), format!("{head}{coder}")).unwrap();
    dir.join("scenario.toml")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every byte under `dir`, lossily as text.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in read.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn escape_attempts_fail_under(mechanism: Mechanism) {
    let Some(isolation) = testing::forced(mechanism) else {
        return;
    };
    let room = Room::new();
    let scenario = room.scenario();
    let config = room.tmp.path().join("isolation.toml");
    std::fs::write(
        &config,
        format!("[run]\nisolation = \"{}\"\n", mechanism.label()),
    )
    .unwrap();

    let out = room.memofab(
        &[
            "demo",
            "--headless",
            "--auto-approve",
            "--scenario",
            scenario.to_str().unwrap(),
            "--dir",
            room.repo.to_str().unwrap(),
        ],
        &config,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    let state = fold(&events);

    // The run used the mechanism asked for, and said so.
    assert_eq!(state.settings.isolation, isolation.describe(), "{stderr}");
    // The real work merged; nothing stopped the run.
    assert_eq!(
        state.task(&"escape".into()).map(|t| t.state),
        Some(TaskState::Merged),
        "{mechanism:?}: {stderr}"
    );
    assert_eq!(git(&room.repo, &["show", "main:notes.txt"]), "legit work\n");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::RepositoryChanged { .. })),
        "{mechanism:?}: the fence leaked into the repository"
    );

    // Read-only git worked inside the fence.
    let git_read = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ToolCalled {
                call_id, arguments, ..
            } if arguments.to_string().contains("git status") => Some(call_id.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::ToolResult { call_id, ok: true, output, .. }
                if *call_id == git_read && output.contains("On branch"))),
        "{mechanism:?}: git status failed inside the fence"
    );

    // Mainline is where the merge queue put it, and nothing else moved.
    assert_eq!(
        git(&room.repo, &["rev-parse", "refs/heads/main"]).trim(),
        state.mainline_commit,
        "{mechanism:?}"
    );
    assert_eq!(git(&room.repo, &["branch", "--list", "sneaky"]), "");
    let git_dir = room.repo.join(".git");
    assert!(!git_dir.join("hooks/post-commit").exists(), "{mechanism:?}");
    let config_text = std::fs::read_to_string(git_dir.join("config")).unwrap();
    assert!(
        !config_text.contains("evil"),
        "{mechanism:?}: {config_text}"
    );
    assert!(!config_text.contains("hooksPath"), "{mechanism:?}");

    // No file written outside the worktree.
    for planted in [
        room.outside.join("planted"),
        room.outside.join("hook-ran"),
        room.home.join("planted"),
        room.repo.join("planted"),
        room.repo.join(".memofab/planted"),
        room.repo.join("escape.txt"),
        PathBuf::from("/tmp/memofab-escape-planted"),
    ] {
        assert!(
            !planted.exists(),
            "{mechanism:?}: {} exists",
            planted.display()
        );
    }

    // The listener never saw a connection.
    assert!(
        matches!(room.listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{mechanism:?}: a command reached 127.0.0.1"
    );

    // What the agent carried off, as committed to mainline (git objects are
    // not redacted): no secret, no key, no store.
    for loot in [
        "loot/environ.txt",
        "loot/id_rsa.txt",
        "loot/store.txt",
        "loot/links.txt",
    ] {
        let got = git(&room.repo, &["show", &format!("main:{loot}")]);
        for secret in [API_KEY, TOKEN, PRIVATE_KEY, OUTSIDE_SECRET, "run_started"] {
            assert!(
                !got.contains(secret),
                "{mechanism:?}: {loot} holds {secret:?}"
            );
        }
    }

    // No secret in any byte of the store, the log, the output or the export.
    let export = room.memofab(
        &[
            "export",
            run.as_str(),
            "--format",
            "jsonl",
            "--repo",
            room.repo.to_str().unwrap(),
        ],
        &config,
    );
    let mut places = all_bytes(&room.repo.join(".memofab"));
    places.push(("stdout".into(), out.stdout.clone()));
    places.push(("stderr".into(), out.stderr.clone()));
    places.push(("export".into(), export.stdout.clone()));
    for (place, bytes) in &places {
        for secret in [API_KEY, TOKEN, PRIVATE_KEY, OUTSIDE_SECRET] {
            assert!(
                !contains(bytes, secret),
                "{mechanism:?}: {secret:?} in {}",
                place.display()
            );
        }
    }
}

#[test]
fn escapes_fail_under_landlock() {
    escape_attempts_fail_under(Mechanism::Landlock);
}

#[test]
fn escapes_fail_under_bubblewrap() {
    escape_attempts_fail_under(Mechanism::Bwrap);
}

/// An agent that prints a key it was given (say, in a file of the
/// repository) does not get it into the record: every event is redacted.
#[test]
fn a_key_an_agent_prints_is_redacted_everywhere() {
    let room = Room::new();
    let scenario = scenario_with_coder(
        &room,
        &format!(
            r#"[[conversation]]
role = "coder"
task = "escape"
  [[conversation.turn]]
  text = "I found the key {API_KEY} in the repository."
  [[conversation.turn.call]]
  tool = "run"
  args = {{ command = "echo {API_KEY}" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = {{ path = "notes.txt", content = "done" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = {{ summary = "done" }}
"#
        ),
    );
    let config = room.tmp.path().join("none.toml");
    std::fs::write(&config, "").unwrap();
    let out = room.memofab(
        &[
            "demo",
            "--headless",
            "--auto-approve",
            "--scenario",
            scenario.to_str().unwrap(),
            "--dir",
            room.repo.to_str().unwrap(),
        ],
        &config,
    );
    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::ToolResult { ok: true, output, .. } if output.contains("[REDACTED]"))),
        "the agent did print the key"
    );
    let mut places = all_bytes(&room.repo.join(".memofab"));
    places.push(("stdout".into(), out.stdout));
    places.push(("stderr".into(), out.stderr));
    for (place, bytes) in &places {
        assert!(
            !contains(bytes, API_KEY),
            "the key is in {}",
            place.display()
        );
    }
}

/// `auto` never degrades silently: it resolves to a real mechanism here, and
/// `none` is only ever what a user wrote down.
#[test]
fn auto_picks_a_working_mechanism_and_none_is_explicit() {
    use memofab::effects::isolation::Choice;
    match Isolation::choose(Choice::Auto, false, Vec::new()) {
        Ok(isolation) => assert_ne!(isolation.mechanism, Mechanism::None),
        Err(e) => assert!(
            std::env::var_os("CI").is_none(),
            "CI machines have Landlock and bubblewrap: {e}"
        ),
    }
    let none = Isolation::choose(Choice::None, false, Vec::new()).unwrap();
    assert_eq!(none.mechanism, Mechanism::None);
}

/// Landing is the only writer of mainline: when the user's repository
/// changes in a way memofab did not make (here a hook, planted by an agent
/// running with `isolation = "none"`), nothing lands; the run stops with an
/// inbox item, and carries on once a human resumes it.
#[test]
fn a_repository_changed_outside_memofab_stops_the_run_until_resumed() {
    let room = Room::new();
    // A coder that plants a hook, then works.
    let scenario = scenario_with_coder(
        &room,
        r#"[[conversation]]
role = "coder"
task = "escape"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "printf '#!/bin/sh\\n' > \"$(git rev-parse --git-common-dir)/hooks/post-commit\"" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "notes.txt", content = "legit work\n" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "done" }
"#,
    );
    let config = room.tmp.path().join("none.toml");
    std::fs::write(&config, "[run]\nisolation = \"none\"\n").unwrap();
    let repo = room.repo.to_str().unwrap();
    room.memofab(
        &[
            "demo",
            "--headless",
            "--auto-approve",
            "--scenario",
            scenario.to_str().unwrap(),
            "--dir",
            repo,
        ],
        &config,
    );
    let run = only_run(&room.repo);
    let state = fold(&stored_events(&room.repo, &run));
    assert!(
        state
            .repository_changes
            .iter()
            .any(|c| c.contains("hooks/post-commit")),
        "{:?}",
        state.repository_changes
    );
    assert_eq!(state.phase, memofab::domain::RunPhase::Paused);
    assert!(
        memofab::domain::attention::inbox(&state)
            .iter()
            .any(|i| i.kind == memofab::domain::attention::AttentionKind::RepositoryChanged)
    );
    assert_eq!(
        git(&room.repo, &["show", "main:notes.txt"]),
        "",
        "nothing landed onto the changed repository"
    );
    let export = room.memofab(
        &[
            "export",
            run.as_str(),
            "--format",
            "markdown",
            "--repo",
            repo,
        ],
        &config,
    );
    assert!(String::from_utf8_lossy(&export.stdout).contains("hooks/post-commit"));

    // A human looked (the hook is theirs now) and resumes: the work lands.
    let out = room.memofab(&["resume", "--headless", "--repo", repo], &config);
    let state = fold(&stored_events(&room.repo, &run));
    assert_eq!(
        state.task(&"escape".into()).map(|t| t.state),
        Some(TaskState::Merged),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(git(&room.repo, &["show", "main:notes.txt"]), "legit work\n");
}

/// What [`Room::measured`] saw of one memofab process.
struct Measured {
    code: Option<i32>,
    stderr: String,
    /// Its peak resident set, from `wait4` (KiB).
    peak_kib: i64,
    took: std::time::Duration,
}

impl Room {
    /// Runs memofab as [`Room::memofab`] does, reaping it with `wait4` to
    /// read its peak resident set. Its children's peaks count too (they are
    /// `sh`, `yes`, `head`: a few MiB).
    #[allow(unsafe_code, clippy::zombie_processes)]
    fn measured(&self, args: &[&str], config: &Path) -> Measured {
        let err_path = self.tmp.path().join("measured-stderr");
        let child = Command::new(memofab_bin())
            .args(args)
            .arg("--config")
            .arg(config)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.tmp.path().join("xdg"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let pid = i32::try_from(child.id()).unwrap();
        let mut status = 0;
        // SAFETY: wait4 writes only into the two locals it is given; the
        // child is ours and reaped once, here (`Child` is never waited on).
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid);
        Measured {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
            peak_kib: usage.ru_maxrss,
            took: started.elapsed(),
        }
    }
}

/// A coder that only does its work: memofab's baseline.
const ORDINARY_CODER: &str = r#"[[conversation]]
role = "coder"
task = "escape"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "notes.txt", content = "legit work\n" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "done" }
"#;

/// A coder that prints 1.5 GB, reads a 3 GB sparse file, and leaves a
/// 200 GB sparse one at `finish`; told the limit, it deletes the giants and
/// finishes with its real work.
const GREEDY_CODER: &str = r#"[[conversation]]
role = "coder"
task = "escape"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "yes | head -c 1500000000" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "truncate -s 3G big.txt && truncate -s 200G giant.bin && echo made" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "read_file"
  args = { path = "big.txt" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "search"
  args = { pattern = "anything" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "notes.txt", content = "legit work\n" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "done, giants and all" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "rm big.txt giant.bin" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "done" }
"#;

fn demo_args<'a>(scenario: &'a Path, repo: &'a Path) -> [&'a str; 7] {
    [
        "demo",
        "--headless",
        "--auto-approve",
        "--scenario",
        scenario.to_str().unwrap(),
        "--dir",
        repo.to_str().unwrap(),
    ]
}

/// memofab's own memory stays within 100 MiB of its baseline whatever the
/// agent makes it handle, and the run still merges the real work.
fn greedy_agent_is_bounded_under(mechanism: Mechanism) {
    if testing::forced(mechanism).is_none() {
        return;
    }
    let config_text = format!(
        "[run]\nisolation = \"{}\"\ncommand_timeout_secs = 600\n",
        mechanism.label()
    );

    let baseline = {
        let room = Room::new();
        let scenario = scenario_with_coder(&room, ORDINARY_CODER);
        let config = room.tmp.path().join("config.toml");
        std::fs::write(&config, &config_text).unwrap();
        let out = room.measured(&demo_args(&scenario, &room.repo), &config);
        assert_eq!(out.code, Some(0), "{mechanism:?}: {}", out.stderr);
        out.peak_kib
    };

    let room = Room::new();
    let scenario = scenario_with_coder(&room, GREEDY_CODER);
    let config = room.tmp.path().join("config.toml");
    std::fs::write(&config, &config_text).unwrap();
    let out = room.measured(&demo_args(&scenario, &room.repo), &config);
    eprintln!(
        "{mechanism:?}: peak RSS {} MiB (baseline {} MiB), {:?}",
        out.peak_kib / 1024,
        baseline / 1024,
        out.took
    );
    assert_eq!(out.code, Some(0), "{mechanism:?}: {}", out.stderr);
    assert!(
        out.peak_kib < baseline + 100 * 1024,
        "{mechanism:?}: peak RSS {} KiB, baseline {baseline} KiB",
        out.peak_kib
    );
    assert!(
        out.took < std::time::Duration::from_secs(300),
        "{mechanism:?}: {:?}",
        out.took
    );

    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    let results: Vec<(bool, &str)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult { ok, output, .. } => Some((*ok, output.as_str())),
            _ => None,
        })
        .collect();
    // The 1.5 GB came back as its head and tail, every byte counted.
    let printed = results
        .iter()
        .find(|(_, out)| out.contains("yes | head"))
        .unwrap()
        .1;
    assert!(printed.len() < 20_000, "{mechanism:?}: {}", printed.len());
    assert!(
        printed.contains(&format!(
            "[... {} bytes omitted ...]",
            1_500_000_000 - 16384
        )),
        "{mechanism:?}: {}",
        &printed[..200]
    );
    // The first finish was refused, naming the giants and the limit.
    let refused = results
        .iter()
        .find(|(ok, out)| !ok && out.contains("giant.bin"))
        .unwrap()
        .1;
    assert!(
        refused.contains("big.txt") && refused.contains("5242880"),
        "{mechanism:?}: {refused}"
    );
    // Nothing of them reached any commit; the real work merged.
    let state = fold(&events);
    assert_eq!(
        state.task(&"escape".into()).map(|t| t.state),
        Some(TaskState::Merged),
        "{mechanism:?}: {}",
        out.stderr
    );
    assert_eq!(git(&room.repo, &["show", "main:notes.txt"]), "legit work\n");
    let everything = git(&room.repo, &["log", "--all", "--name-only", "--format="]);
    assert!(
        !everything.contains("giant.bin") && !everything.contains("big.txt"),
        "{mechanism:?}: {everything}"
    );
}

#[test]
fn a_greedy_agent_leaves_memory_bounded_under_landlock() {
    greedy_agent_is_bounded_under(Mechanism::Landlock);
}

#[test]
fn a_greedy_agent_leaves_memory_bounded_under_bubblewrap() {
    greedy_agent_is_bounded_under(Mechanism::Bwrap);
}

/// SIGTERM while libgit2 hashes a 200 GB sparse file (allowed here by a
/// huge `max_file_bytes`): memofab records the interruption and exits
/// within seconds instead of waiting minutes for the hash.
#[test]
#[allow(unsafe_code)]
fn sigterm_stops_memofab_while_git_hashes_a_huge_file() {
    let room = Room::new();
    let scenario = scenario_with_coder(
        &room,
        r#"[[conversation]]
role = "coder"
task = "escape"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "truncate -s 200G giant.bin" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "notes.txt", content = "legit work\n" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "done" }
"#,
    );
    let config = room.tmp.path().join("config.toml");
    std::fs::write(&config, "[run]\nmax_file_bytes = 1000000000000000\n").unwrap();
    let mut child = Command::new(memofab_bin())
        .args(demo_args(&scenario, &room.repo))
        .arg("--config")
        .arg(&config)
        .env("HOME", &room.home)
        .env("XDG_CONFIG_HOME", room.tmp.path().join("xdg"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(room.tmp.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(room.tmp.path().join("stderr")).unwrap_or_default();
    // Wait for the coder to finish: the commit (the hash) starts then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the coder never finished"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "memofab ended early: {}",
            stderr()
        );
        // Read only: opening the store to write would make it, and the
        // demo wants an empty directory.
        let finished = memofab::effects::store::Store::open_reader(
            &memofab::engine::session::store_path(&room.repo),
        )
        .ok()
        .and_then(|store| {
            let run = store.latest_run().ok()??;
            store.events(&run).ok()
        })
        .is_some_and(|events| {
            events.iter().any(|e| {
                matches!(&e.kind, EventKind::AgentFinished { agent, ok: true, .. }
                    if agent.as_str().starts_with("coder"))
            })
        });
        if finished {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child; it touches no memory.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let signalled = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > std::time::Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("memofab did not stop within 15 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(143), "{}", stderr());
    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    assert!(
        matches!(events.last().unwrap().kind, EventKind::RunInterrupted {}),
        "{:?}",
        events.last().unwrap().kind
    );
}
