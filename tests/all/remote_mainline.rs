//! Mainline on a git remote (`[mainline] remote = "origin"`), against a real
//! bare repository reached by its path: a landing is a compare-and-swap push
//! that reaches the remote's main and the user's local main follows; a push
//! that loses a race to someone else's is merged and verified again on the
//! new head; a remote that refuses leaves its ref where it was and the task
//! waits at the gate with the server's reason, until a human approves another
//! push.

use crate::support::{factory, interactive};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use factory::*;
use interactive::Interactive;
use memofab::domain::event::{
    ChangeCommitted, GateHeld, MergeReverted, MergeVerified, TaskStateChanged,
};
use memofab::domain::gate_reason::GateReason;
use memofab::domain::{Event, EventKind, MergeCheck, RunPhase, TaskState};
use memofab::engine::demo_seed::prepare_repo;
use memofab::engine::run::orchestrator::Steering;
use memofab::llm::scenario::Scenario;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/merge_queue")
        .join(name)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The one-task `solo` scenario (its test command `sh tests/run.sh`) on a
/// repository whose `origin` is a bare clone of it, and mainline set there.
struct Setup {
    demo: DemoRepo,
    remote: PathBuf,
    seed: String,
}

fn setup() -> Setup {
    setup_with("solo.toml", "")
}

/// `scenario` of the merge queue's fixtures on its seed (a README, and
/// `tests/run.sh` and `tests/post.sh`), with `extra_config` appended.
fn setup_with(scenario: &str, extra_config: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::load(&fixture(scenario)).unwrap();
    let seed_files: Vec<(String, Vec<u8>)> = ["README.md", "tests/run.sh", "tests/post.sh"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(fixture("seed").join(f)).unwrap();
            ((*f).to_owned(), bytes)
        })
        .collect();
    let repo = prepare_repo(&dir.path().join("repo"), &scenario, &seed_files).unwrap();
    let config = repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[mainline]\nremote = \"origin\"\n");
    text.push_str(extra_config);
    std::fs::write(&config, text).unwrap();
    let remote = dir.path().join("remote.git");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &repo.display().to_string(),
            "remote.git",
        ],
    );
    git(
        &repo,
        &["remote", "add", "origin", &remote.display().to_string()],
    );
    let seed = git(&repo, &["rev-parse", "main"]);
    Setup {
        demo: DemoRepo {
            dir,
            repo,
            scenario,
        },
        remote,
        seed,
    }
}

impl Setup {
    fn remote_main(&self) -> String {
        git(&self.remote, &["rev-parse", "refs/heads/main"])
    }

    fn local_main(&self) -> String {
        git(&self.demo.repo, &["rev-parse", "main"])
    }

    fn remote_has(&self, rev: &str, path: &str) -> bool {
        Command::new("git")
            .args(["cat-file", "-e", &format!("{rev}:{path}")])
            .current_dir(&self.remote)
            .output()
            .unwrap()
            .status
            .success()
    }

    /// A commit by someone else, on the remote's main, kept on `side` until
    /// the hook puts it on main.
    fn someone_elses_commit(&self) -> String {
        self.someone_elses_commits(1).remove(0)
    }

    /// `n` commits by someone else in a line on the remote's main, oldest
    /// first, kept on `side`.
    fn someone_elses_commits(&self, n: usize) -> Vec<String> {
        let other = self.demo.dir.path().join("other");
        git(
            self.demo.dir.path(),
            &["clone", "-q", &self.remote.display().to_string(), "other"],
        );
        let mut commits = Vec::new();
        for i in 0..n {
            std::fs::write(other.join("other.txt"), format!("someone else's {i}\n")).unwrap();
            git(&other, &["add", "other.txt"]);
            git(&other, &["commit", "-q", "-m", "someone else's change"]);
            commits.push(git(&other, &["rev-parse", "HEAD"]));
        }
        git(&other, &["push", "-q", "origin", "HEAD:refs/heads/side"]);
        commits
    }

    /// The remote's `pre-receive` hook: `body` runs for a push to main.
    fn hook(&self, body: &str) {
        let path = self.remote.join("hooks/pre-receive");
        let script = format!(
            "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/main ]; then\n{body}\n  fi\ndone\nexit 0\n"
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn verifications(events: &[Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::MergeVerified(MergeVerified {
                check: MergeCheck::Verify,
                candidate,
                passed,
                ..
            }) => Some((candidate.clone(), *passed)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landing_reaches_the_remotes_main_and_local_main_follows() {
    let s = setup();
    let state = run_demo(&s.demo).await;
    let events = stored_events(&s.demo.repo, &state.run);
    assert_eq!(state.phase, RunPhase::Finished);
    let task = state.task(&"solo".into()).unwrap();
    assert_eq!(task.state, TaskState::Merged);
    assert!(
        state.repository_changes.is_empty(),
        "{:?}",
        state.repository_changes
    );

    // The remote's main moved to the verified merge, on the seed.
    let landed = s.remote_main();
    assert_eq!(landed, task.merged_commit.clone().unwrap());
    assert_eq!(verifications(&events), vec![(landed.clone(), true)]);
    assert_eq!(
        git(&s.remote, &["rev-parse", &format!("{landed}^1")]),
        s.seed
    );
    assert!(s.remote_has(&landed, "solo.txt"));

    // The user's main and checkout followed.
    assert_eq!(s.local_main(), landed);
    assert_eq!(
        std::fs::read_to_string(s.demo.repo.join("solo.txt")).unwrap(),
        "solo\n"
    );
    assert!(git(&s.demo.repo, &["status", "--porcelain"]).is_empty());

    // The task branch went to the remote as it was committed.
    let committed = events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::ChangeCommitted(ChangeCommitted { commit, .. }) => Some(commit.clone()),
            _ => None,
        })
        .unwrap();
    let branch = format!("refs/heads/memofab/{}/solo", state.run);
    assert_eq!(git(&s.remote, &["rev-parse", &branch]), committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_loses_a_race_merges_and_verifies_again_on_the_new_head() {
    let s = setup();
    let theirs = s.someone_elses_commit();
    // At memofab's first push to main, someone else's push lands first.
    let marker = s.demo.dir.path().join("raced");
    s.hook(&format!(
        "    if [ ! -e '{m}' ]; then\n      touch '{m}'\n      env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES git update-ref refs/heads/main {theirs}\n    fi",
        m = marker.display()
    ));
    let state = run_demo(&s.demo).await;
    let events = stored_events(&s.demo.repo, &state.run);
    assert!(marker.exists(), "the race happened");
    assert_eq!(state.phase, RunPhase::Finished);
    let task = state.task(&"solo".into()).unwrap();
    assert_eq!(task.state, TaskState::Merged);

    // Both changes are on the remote's main: theirs first, then the task's
    // merge, computed on theirs.
    let landed = s.remote_main();
    assert_eq!(landed, task.merged_commit.clone().unwrap());
    assert_eq!(
        git(&s.remote, &["rev-parse", &format!("{landed}^1")]),
        theirs
    );
    assert!(s.remote_has(&landed, "other.txt"));
    assert!(s.remote_has(&landed, "solo.txt"));

    // Verified twice: the merge on the seed, then the one on their commit.
    let verified = verifications(&events);
    assert_eq!(verified.len(), 2, "{verified:?}");
    assert!(verified.iter().all(|v| v.1));
    assert_eq!(verified[1].0, landed);
    assert_ne!(verified[0].0, landed);
    let merged_again = events.iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::TaskStateChanged(TaskStateChanged {
                from: TaskState::Verifying,
                to: TaskState::Merging,
                ..
            })
        )
    });
    assert!(merged_again);

    // The user's main followed the remote's.
    assert_eq!(s.local_main(), landed);
    assert!(s.demo.repo.join("other.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_remote_keeps_its_main_and_the_task_waits_with_its_reason() {
    let s = setup();
    s.hook("    echo 'main is frozen for the release' >&2\n    exit 1");
    let request = demo_request(&s.demo, scripted(&s.demo), Steering::Interactive, true);
    let mut run = Interactive::with(request);
    run.until("the landing held", |state, _| {
        state.task(&"solo".into()).map(|t| t.state) == Some(TaskState::AwaitingGate)
    })
    .await;

    // Nothing moved: not the remote's main, not the user's.
    assert_eq!(s.remote_main(), s.seed);
    assert_eq!(s.local_main(), s.seed);
    let run_id = only_run(&s.demo.repo);
    let events = stored_events(&s.demo.repo, &run_id);
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::GateHeld(GateHeld { reasons, .. }) => Some(reasons.clone()),
            _ => None,
        })
        .flatten()
        .filter_map(|r| match r {
            GateReason::RemoteRefused { remote, reason } => Some(format!("{remote}: {reason}")),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("origin: "), "{reasons:?}");
    assert!(reasons[0].contains("frozen for the release"), "{reasons:?}");
    let mut md = Vec::new();
    memofab::effects::store::export::export_markdown(&events, &mut md).unwrap();
    assert!(
        String::from_utf8(md)
            .unwrap()
            .contains("frozen for the release")
    );

    // The server lets it in again; a human approves another push.
    std::fs::remove_file(s.remote.join("hooks/pre-receive")).unwrap();
    run.send(memofab::protocol::Command::ApproveGate {
        task: "solo".into(),
    });
    run.until("landed", |state, _| {
        state.task(&"solo".into()).map(|t| t.state) == Some(TaskState::Merged)
    })
    .await;
    let state = run.shutdown().await;
    let landed = state.task(&"solo".into()).unwrap().merged_commit.clone();
    assert_eq!(Some(s.remote_main()), landed);
    assert_eq!(Some(s.local_main()), landed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landing_that_keeps_losing_the_race_waits_after_its_attempts() {
    let s = setup_with("solo.toml", "push_attempts = 2\n");
    let theirs = s.someone_elses_commits(3);
    // Every push of memofab's to main finds someone else's next commit there.
    let counter = s.demo.dir.path().join("pushes");
    s.hook(&format!(
        "    n=$(($(cat '{c}' 2>/dev/null || echo 0) + 1)); echo $n > '{c}'\n    env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES git update-ref refs/heads/main \"refs/heads/side~$((3 - n))\"",
        c = counter.display()
    ));
    let request = demo_request(&s.demo, scripted(&s.demo), Steering::Interactive, true);
    let mut run = Interactive::with(request);
    run.until("the landing held", |state, _| {
        state.task(&"solo".into()).map(|t| t.state) == Some(TaskState::AwaitingGate)
    })
    .await;
    let state = run.shutdown().await;
    let events = stored_events(&s.demo.repo, &state.run);

    // Two pushes, both lost; the remote's main is theirs, nothing of ours.
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "2");
    assert_eq!(s.remote_main(), theirs[1]);
    assert!(!s.remote_has("refs/heads/main", "solo.txt"));
    assert_eq!(s.local_main(), s.seed);
    // Verified on the seed, then on their first commit.
    let verified = verifications(&events);
    assert_eq!(verified.len(), 2, "{verified:?}");
    let parents: Vec<String> = verified
        .iter()
        .map(|v| git(&s.demo.repo, &["rev-parse", &format!("{}^1", v.0)]))
        .collect();
    assert_eq!(parents, vec![s.seed.clone(), theirs[0].clone()]);
    let held = events.iter().any(|e| {
        matches!(&e.kind, EventKind::GateHeld(GateHeld { reasons, .. })
            if matches!(reasons.as_slice(), [GateReason::RemoteRefused { remote, .. }] if remote == "origin"))
    });
    assert!(held);
    assert!(state.task(&"solo".into()).unwrap().merged_commit.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_post_merge_check_is_reverted_on_the_remote_by_a_push() {
    let s = setup_with(
        "post_merge.toml",
        "[merge]\npost_merge_command = \"sh tests/post.sh\"\n",
    );
    let state = run_demo(&s.demo).await;
    let events = stored_events(&s.demo.repo, &state.run);
    assert_eq!(state.phase, RunPhase::Finished);
    let task = state.task(&"bad".into()).unwrap();
    assert_eq!(task.state, TaskState::Merged);
    assert_eq!((task.attempt, task.reworks), (2, 1));

    // The first landing was reverted on the remote, right on top of it.
    let reverts: Vec<(String, String)> = events
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
    assert_eq!(
        git(&s.remote, &["rev-parse", &format!("{revert_commit}^")]),
        *merge_commit
    );
    let head = s.remote_main();
    let first_parents = git(&s.remote, &["rev-list", "--first-parent", &head]);
    assert!(
        first_parents.lines().any(|c| c == revert_commit),
        "{first_parents}"
    );

    // The remote's mainline ends without bad.txt, with the reworked change;
    // the user's main followed it.
    assert!(!s.remote_has(&head, "bad.txt"));
    assert!(s.remote_has(&head, "good.txt"));
    assert_eq!(s.local_main(), head);
    assert!(!s.demo.repo.join("bad.txt").exists());
}

/// `git daemon` serving the directory of `remote` on 127.0.0.1, pushes
/// allowed; killed when dropped.
struct Daemon {
    child: std::process::Child,
    url: String,
}

impl Daemon {
    fn serve(remote: &Path) -> Daemon {
        let base = remote.parent().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The daemon itself, not `git daemon`, which runs it as a child of
        // its own that killing `git` would leave serving.
        let exec_path = git(base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--listen=127.0.0.1", "--export-all"])
            .args(["--enable=receive-pack", "--informative-errors"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let name = remote.file_name().unwrap().to_string_lossy();
        let daemon = Daemon {
            child,
            url: format!("git://127.0.0.1:{port}/{name}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let answered = Command::new("git")
                .args(["ls-remote", &daemon.url])
                .output()
                .unwrap()
                .status
                .success();
            if answered {
                return daemon;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("git daemon did not answer on {}", daemon.url);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landing_reaches_a_remote_served_by_git_daemon_on_loopback() {
    let s = setup();
    let daemon = Daemon::serve(&s.remote);
    git(&s.demo.repo, &["remote", "set-url", "origin", &daemon.url]);
    let state = run_demo(&s.demo).await;
    assert_eq!(state.phase, RunPhase::Finished);
    let task = state.task(&"solo".into()).unwrap();
    assert_eq!(task.state, TaskState::Merged);
    let landed = s.remote_main();
    assert_eq!(Some(landed.clone()), task.merged_commit);
    assert!(s.remote_has(&landed, "solo.txt"));
    assert_eq!(s.local_main(), landed);
    drop(daemon);
}
