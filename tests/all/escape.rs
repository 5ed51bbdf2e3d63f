//! The escape suite: a scripted coding agent tries every way out of its
//! worktree (tests/fixtures/escape/scenario.toml), under each isolation
//! mechanism forced by config, and the test checks the *effects*: the refs,
//! hooks and config of the user's repository unchanged, files outside the
//! worktree absent, a listener on 127.0.0.1 never reached, the secrets of
//! memofab's own environment and the user's private key in no byte of the
//! store, the output, the export or mainline — while the same run's real
//! work still merges and read-only git works inside the fence.

use crate::support::factory;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use factory::*;
use memofab::domain::event::{
    AgentFinished, MergeVerified, RunInterrupted, TaskStateChanged, ToolCalled, ToolResult, Warning,
};
use memofab::domain::{EventKind, TaskState};
use memofab::effects::isolation::{Isolation, Mechanism, testing};

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
        self.scenario_from("scenario.toml")
    }

    /// The scenario `file` of the escape fixtures, filled in likewise.
    fn scenario_from(&self, file: &str) -> PathBuf {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/escape");
        let text = std::fs::read_to_string(fixtures.join(file))
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

/// The `coder` conversation of task `escape` (TOML) that runs `commands`
/// one turn each, then does the real work (`notes.txt`) and finishes.
fn coder_running(commands: &[&str]) -> String {
    let mut toml = String::from("[[conversation]]\nrole = \"coder\"\ntask = \"escape\"\n");
    let turn = |tool: &str, args: String| {
        format!(
            "  [[conversation.turn]]\n  [[conversation.turn.call]]\n  tool = \"{tool}\"\n  args = {{ {args} }}\n"
        )
    };
    for command in commands {
        // Debug quoting is TOML's basic-string quoting for these commands.
        toml.push_str(&turn("run", format!("command = {command:?}")));
    }
    toml.push_str(&turn(
        "write_file",
        r#"path = "notes.txt", content = "legit work\n""#.to_owned(),
    ));
    toml.push_str(&turn("finish", r#"summary = "done""#.to_owned()));
    toml
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
    let config = forced_config(&room, mechanism).expect("forced above");

    let out = demo(&room, &scenario, &config);
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
            .any(|e| matches!(e.kind, EventKind::RepositoryChanged(_))),
        "{mechanism:?}: the fence leaked into the repository"
    );

    // Read-only git worked inside the fence.
    let git_read = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ToolCalled(ToolCalled {
                call_id, arguments, ..
            }) if arguments.to_string().contains("git status") => Some(call_id.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::ToolResult(ToolResult { call_id, ok: true, output, .. })
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
            EventKind::ToolResult(ToolResult { ok: true, output, .. }) if output.contains("[REDACTED]"))),
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
        &coder_running(&[
            r#"printf '#!/bin/sh\n' > "$(git rev-parse --git-common-dir)/hooks/post-commit""#,
        ]),
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

/// Runs `memofab demo` headless on `scenario` under `config`.
fn demo(room: &Room, scenario: &Path, config: &Path) -> std::process::Output {
    room.memofab(&demo_args(scenario, &room.repo), config)
}

/// A config forcing `mechanism`, or `None` when it cannot work here.
fn forced_config(room: &Room, mechanism: Mechanism) -> Option<PathBuf> {
    testing::forced(mechanism)?;
    let config = room.tmp.path().join("isolation.toml");
    std::fs::write(
        &config,
        format!("[run]\nisolation = \"{}\"\n", mechanism.label()),
    )
    .unwrap();
    Some(config)
}

/// The user's repository after an attack: mainline moved only by landings
/// (its reflog), the user's index and checkout agree with it, no commit
/// reachable from any ref holds a secret or an outside file, and no byte of
/// the store, the output or the export holds the key.
fn assert_repository_untouched(room: &Room, out: &std::process::Output, config: &Path, what: &str) {
    let reflog = git(
        &room.repo,
        &["reflog", "show", "--format=%gs", "refs/heads/main"],
    );
    let entries: Vec<&str> = reflog.lines().collect();
    assert!(
        entries
            .iter()
            .rev()
            .skip(1)
            .all(|line| line.starts_with("memofab: ")),
        "{what}: mainline moved by something other than a landing: {reflog}"
    );
    let status = git(
        &room.repo,
        &["status", "--porcelain", "--untracked-files=no"],
    );
    assert_eq!(
        status, "",
        "{what}: the user's index or checkout was written"
    );
    let history = git(&room.repo, &["log", "--all", "-p", "--format=%H %s"]);
    for secret in [PRIVATE_KEY, OUTSIDE_SECRET] {
        assert!(
            !history.contains(secret),
            "{what}: {secret:?} was committed"
        );
    }
    let run = only_run(&room.repo);
    let export = room.memofab(
        &[
            "export",
            run.as_str(),
            "--format",
            "jsonl",
            "--repo",
            room.repo.to_str().unwrap(),
        ],
        config,
    );
    let mut places = all_bytes(&room.repo.join(".memofab"));
    places.push(("stdout".into(), out.stdout.clone()));
    places.push(("stderr".into(), out.stderr.clone()));
    places.push(("export".into(), export.stdout.clone()));
    for (place, bytes) in &places {
        for secret in [PRIVATE_KEY, OUTSIDE_SECRET] {
            assert!(
                !contains(bytes, secret),
                "{what}: {secret:?} in {}",
                place.display()
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(room.outside.join("secret.txt")).unwrap(),
        OUTSIDE_SECRET,
        "{what}: a file outside changed"
    );
    let outside: Vec<_> = std::fs::read_dir(&room.outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        outside.len(),
        1,
        "{what}: files written outside: {outside:?}"
    );
}

/// What the coder leaves in `.git` before it finishes: the user's own
/// `.git` (memofab's commit would land on the user's HEAD, past review and
/// the merge queue), or a registration it planted whose `gitdir` names an
/// outside directory (memofab would commit that directory, onto mainline).
#[derive(Clone, Copy, Debug)]
enum LastGit {
    UsersRepository,
    PlantedRegistration,
}

/// A coder rewrites its worktree's `.git`: first to `gitdir: /` (the fence
/// would grant reading everything), then as `last` says before finishing.
fn a_worktree_git_file_is_never_followed_under(mechanism: Mechanism, last: LastGit) {
    let room = Room::new();
    let Some(config) = forced_config(&room, mechanism) else {
        return;
    };
    let last_command = match last {
        LastGit::UsersRepository => {
            format!("printf 'gitdir: {}/.git\\n' > .git", room.repo.display())
        }
        LastGit::PlantedRegistration => format!(
            "mkdir -p loot/fake; echo {outside}/.git > loot/fake/gitdir; echo {repo}/.git > loot/fake/commondir; \
             echo 'ref: refs/heads/main' > loot/fake/HEAD; echo \\\"gitdir: $PWD/loot/fake\\\" > .git",
            outside = room.outside.display(),
            repo = room.repo.display()
        ),
    };
    let (home, outside) = (
        room.home.display().to_string(),
        room.outside.display().to_string(),
    );
    let scenario = scenario_with_coder(
        &room,
        &format!(
            r#"[[conversation]]
role = "coder"
task = "escape"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = {{ command = "printf 'gitdir: /\\n' > .git" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = {{ command = "mkdir -p loot; cat {home}/.ssh/id_rsa {outside}/secret.txt > loot/key.txt 2>/dev/null; true" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = {{ command = "git status" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = {{ path = "notes.txt", content = "legit work\n" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = {{ command = "{last_command}" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = {{ summary = "done" }}
"#
        ),
    );
    let out = demo(&room, &scenario, &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    let state = fold(&events);
    assert_eq!(
        state.task(&"escape".into()).map(|t| t.state),
        Some(TaskState::Merged),
        "{mechanism:?}: {stderr}"
    );
    assert_eq!(git(&room.repo, &["show", "main:notes.txt"]), "legit work\n");
    assert_eq!(
        git(&room.repo, &["rev-parse", "refs/heads/main"]).trim(),
        state.mainline_commit,
        "{mechanism:?}"
    );
    // The command after the rewrite ran with the `.git` memofab made.
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::ToolResult(ToolResult { ok: true, output, .. }) if output.contains("On branch memofab/"))),
        "{mechanism:?}: git status did not see the task branch"
    );
    assert_repository_untouched(&room, &out, &config, &format!("{mechanism:?} {last:?}"));
}

#[test]
fn a_worktree_git_file_is_never_followed_under_landlock() {
    a_worktree_git_file_is_never_followed_under(Mechanism::Landlock, LastGit::UsersRepository);
}

#[test]
fn a_worktree_git_file_is_never_followed_under_bubblewrap() {
    a_worktree_git_file_is_never_followed_under(Mechanism::Bwrap, LastGit::UsersRepository);
}

#[test]
fn a_planted_registration_naming_outside_is_never_followed_under_landlock() {
    a_worktree_git_file_is_never_followed_under(Mechanism::Landlock, LastGit::PlantedRegistration);
}

#[test]
fn a_planted_registration_naming_outside_is_never_followed_under_bubblewrap() {
    a_worktree_git_file_is_never_followed_under(Mechanism::Bwrap, LastGit::PlantedRegistration);
}

/// A merged test script, run in the verification worktree, plants a fake
/// registration there naming an outside directory as its work tree: the
/// next verification checks out in the verification worktree all the same.
fn a_planted_registration_in_the_verify_worktree_is_ignored_under(mechanism: Mechanism) {
    let room = Room::new();
    let Some(config) = forced_config(&room, mechanism) else {
        return;
    };
    let scenario = room.scenario_from("verify.toml");
    let out = demo(&room, &scenario, &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    let state = fold(&events);
    for task in ["plant", "later"] {
        assert_eq!(
            state.task(&task.into()).map(|t| t.state),
            Some(TaskState::Merged),
            "{mechanism:?} {task}: {stderr}"
        );
    }
    let verified = events
        .iter()
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::MergeVerified(MergeVerified { passed: true, .. })
            )
        })
        .count();
    assert_eq!(verified, 2, "{mechanism:?}: both merges were verified");
    assert_eq!(git(&room.repo, &["show", "main:later.txt"]), "later\n");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::RepositoryChanged(_))),
        "{mechanism:?}"
    );
    assert_repository_untouched(&room, &out, &config, &format!("{mechanism:?}"));
}

#[test]
fn a_planted_registration_in_the_verify_worktree_is_ignored_under_landlock() {
    a_planted_registration_in_the_verify_worktree_is_ignored_under(Mechanism::Landlock);
}

#[test]
fn a_planted_registration_in_the_verify_worktree_is_ignored_under_bubblewrap() {
    a_planted_registration_in_the_verify_worktree_is_ignored_under(Mechanism::Bwrap);
}

/// Mainline moves only by a landing: an agent running without a fence
/// (`isolation = "none"`) that commits onto mainline itself is noticed,
/// recorded, and nothing lands on top of it, nor is the user's checkout
/// brought along.
#[test]
fn mainline_moved_outside_a_landing_stops_the_run() {
    let room = Room::new();
    let scenario = scenario_with_coder(
        &room,
        &coder_running(&[
            "export GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@a GIT_COMMITTER_NAME=a GIT_COMMITTER_EMAIL=a@a; \
         git update-ref refs/heads/main $(git commit-tree -p HEAD -m sneaky 'HEAD^{tree}')",
        ]),
    );
    let config = room.tmp.path().join("none.toml");
    std::fs::write(&config, "[run]\nisolation = \"none\"\n").unwrap();
    demo(&room, &scenario, &config);
    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    let state = fold(&events);
    let outputs: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(ToolResult { output, .. }) => Some(output.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        state
            .repository_changes
            .iter()
            .any(|c| c.contains("refs/heads/main")),
        "{:?} {outputs:?}",
        state.repository_changes
    );
    assert_eq!(state.phase, memofab::domain::RunPhase::Paused);
    assert_eq!(
        git(&room.repo, &["log", "-1", "--format=%s", "main"]).trim(),
        "sneaky",
        "nothing landed on top of the sneaky commit"
    );
    assert_eq!(git(&room.repo, &["show", "main:notes.txt"]), "");
    // The user's checkout stayed where it was: on the old tree, which the
    // sneaky commit shares.
    assert_eq!(
        git(
            &room.repo,
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        ""
    );
}

/// A task's own code never ends the run: the test command leaves the
/// worktree changed after the commit, so git refuses to merge mainline into
/// it for the conflict rework. That task fails, saying why; the other task's
/// work stays merged and the run finishes.
#[test]
fn a_worktree_git_refuses_fails_the_task_not_the_run() {
    let room = Room::new();
    let scenario = room.scenario_from("dirty.toml");
    let config = room.tmp.path().join("none.toml");
    // Both tasks at once, so the second one to land conflicts.
    std::fs::write(
        &config,
        "[run]\nisolation = \"none\"\nwrite_set_scheduling = false\n",
    )
    .unwrap();
    let out = demo(&room, &scenario, &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    let state = fold(&events);
    let states: Vec<_> = ["left", "right"]
        .iter()
        .map(|t| state.task(&(*t).into()).map(|r| r.state))
        .collect();
    assert!(
        states.contains(&Some(TaskState::Merged)) && states.contains(&Some(TaskState::Failed)),
        "{states:?}: {stderr}"
    );
    let landed = git(&room.repo, &["show", "main:README.md"]);
    assert!(landed == "left\n" || landed == "right\n", "{landed}");
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::TaskStateChanged(TaskStateChanged { to: TaskState::Failed, reason: Some(reason), .. })
                if reason.contains("worktree"))),
        "the failure says why"
    );
    assert!(state.phase.is_over(), "the run ended normally: {stderr}");
}

/// The tester's files, and a test command that passes only once the coder
/// did its work: the scenario of the put-back attack.
const TESTER_FILES: [(&str, &str); 2] = [
    ("tests/check.sh", "test -f notes.txt\n"),
    ("tests/config.toml", "[run]\nisolation = \"none\"\n"),
];

/// A tester writes acceptance tests (among them a `config.toml`); the coder
/// replaces `tests/` with a link (`link`) and works. memofab puts the
/// tester's files back: inside the worktree, never where the link points.
fn testers_put_back_follows_no_link(mechanism: Mechanism, link: &str) {
    let room = Room::new();
    let Some(config) = forced_config(&room, mechanism) else {
        return;
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/escape");
    let dir = room.tmp.path().join("scenario");
    copy_dir(&fixtures.join("seed"), &dir.join("seed"));
    let scenario = std::fs::read_to_string(fixtures.join("scenario.toml")).unwrap();
    let head = &scenario[..scenario.find("[[conversation]]\nrole = \"coder\"").unwrap()];
    let head = head.replacen(
        "requirement = \"Add notes.txt.\"\n",
        "requirement = \"Add notes.txt.\"\ntest_command = \"sh tests/check.sh\"\n",
        1,
    );
    let tester_calls: String = TESTER_FILES
        .iter()
        .map(|(path, content)| {
            format!(
                "  [[conversation.turn]]\n  [[conversation.turn.call]]\n  tool = \"write_file\"\n  args = {{ path = \"{path}\", content = {content:?} }}\n"
            )
        })
        .collect();
    let link = link.replace("{OUTSIDE}", &room.outside.display().to_string());
    let text = format!(
        r#"{head}[[conversation]]
role = "tester"
task = "escape"
{tester_calls}  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = {{ summary = "notes.txt must exist" }}

[[conversation]]
role = "coder"
task = "escape"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = {{ command = "rm -rf tests && ln -s {link} tests && ls -l tests" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "write_file"
  args = {{ path = "notes.txt", content = "legit work\n" }}
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = {{ summary = "notes added" }}
"#
    );
    std::fs::write(dir.join("scenario.toml"), text).unwrap();
    let outside_before = all_bytes(&room.outside);

    let out = demo(&room, &dir.join("scenario.toml"), &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = only_run(&room.repo);
    let events = stored_events(&room.repo, &run);
    let state = fold(&events);

    // The factory's config is as the demo wrote it, and nothing of the
    // tester's landed in .memofab/ or outside.
    let factory = room.repo.join(".memofab");
    assert_eq!(
        std::fs::read_to_string(factory.join("config.toml")).unwrap(),
        "# Written by `memofab demo`.\n[project]\ntest_command = \"sh tests/check.sh\"\n",
        "{mechanism:?} {link}: {stderr}"
    );
    assert!(!factory.join("check.sh").exists(), "{mechanism:?} {link}");
    assert_eq!(
        all_bytes(&room.outside),
        outside_before,
        "{mechanism:?} {link}"
    );

    // The coder's change to the tester's files was seen and put back, inside.
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::Warning(Warning { message, .. }) if message.contains("they were put back"))),
        "{mechanism:?} {link}: {stderr}"
    );
    // The ordinary work merged, with the tester's files as it wrote them.
    assert_eq!(
        state.task(&"escape".into()).map(|t| t.state),
        Some(TaskState::Merged),
        "{mechanism:?} {link}: {stderr}"
    );
    assert_eq!(git(&room.repo, &["show", "main:notes.txt"]), "legit work\n");
    assert_eq!(
        git(&room.repo, &["cat-file", "-t", "main:tests"]).trim(),
        "tree"
    );
    for (path, content) in TESTER_FILES {
        assert_eq!(
            git(&room.repo, &["show", &format!("main:{path}")]),
            content,
            "{mechanism:?} {link}"
        );
    }
}

/// `tests/` → the factory's own directory (`.memofab/`, three levels up
/// from a worktree), and → a directory outside the repository.
#[test]
fn a_linked_tests_dir_never_redirects_the_put_back_under_landlock() {
    testers_put_back_follows_no_link(Mechanism::Landlock, "../../..");
    testers_put_back_follows_no_link(Mechanism::Landlock, "{OUTSIDE}");
}

#[test]
fn a_linked_tests_dir_never_redirects_the_put_back_under_bubblewrap() {
    testers_put_back_follows_no_link(Mechanism::Bwrap, "../../..");
    testers_put_back_follows_no_link(Mechanism::Bwrap, "{OUTSIDE}");
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
            EventKind::ToolResult(ToolResult { ok, output, .. }) => Some((*ok, output.as_str())),
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
    let scenario = scenario_with_coder(&room, &coder_running(&["truncate -s 200G giant.bin"]));
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
            &memofab::engine::run::session::store_path(&room.repo),
        )
        .ok()
        .and_then(|store| {
            let run = store.latest_run().ok()??;
            store.events(&run).ok()
        })
        .is_some_and(|events| {
            events.iter().any(|e| {
                matches!(&e.kind, EventKind::AgentFinished(AgentFinished { agent, ok: true, .. })
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
        matches!(
            events.last().unwrap().kind,
            EventKind::RunInterrupted(RunInterrupted {})
        ),
        "{:?}",
        events.last().unwrap().kind
    );
}

/// A coder that leaves a `.git` of its own in a new directory (what `git
/// clone` or `git init` there would): its first finish is refused, naming
/// the directory, and nothing is committed while it is there; once it is
/// removed, the directory's files merge and no `.git` is in any commit.
#[test]
fn a_repository_left_inside_is_refused_until_removed() {
    let room = Room::new();
    let coder = r#"[[conversation]]
role = "coder"
task = "escape"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "mkdir -p vendor/lib && echo nonsense > vendor/lib/.git && echo code > vendor/lib/f.txt" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "vendored" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "run"
  args = { command = "rm vendor/lib/.git" }
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "vendored, without its .git" }
"#;
    let scenario = scenario_with_coder(&room, coder);
    let config = room.tmp.path().join("none.toml");
    std::fs::write(&config, "[run]\nisolation = \"none\"\n").unwrap();
    let out = demo(&room, &scenario, &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events = stored_events(&room.repo, &only_run(&room.repo));
    let finishes: Vec<bool> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(ToolResult { ok, output, .. })
                if output.contains("vendor/lib/") || *ok =>
            {
                Some(*ok)
            }
            _ => None,
        })
        .collect();
    assert!(
        finishes.contains(&false),
        "the first finish was refused: {stderr}"
    );
    let state = fold(&events);
    assert_eq!(
        state.task(&"escape".into()).map(|t| t.state),
        Some(TaskState::Merged),
        "{stderr}"
    );
    assert_eq!(
        git(&room.repo, &["show", "main:vendor/lib/f.txt"]),
        "code\n"
    );
    let everything = git(&room.repo, &["log", "--all", "--name-only", "--format="]);
    assert!(!everything.contains(".git\n"), "{everything}");
}
