//! Two real `memofab serve` sharing one queue on PostgreSQL (issue #25):
//! each daemon a "machine" of its own (its own home, its own clones of two
//! repositories whose mainline is a bare remote), one database. Every entry
//! lands once; a daemon killed mid-run loses its entry to the other, which
//! resumes the run and finishes it with each task merged once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, Home, stderr};
use crate::support::factory::fold;
use crate::support::postgres::Cluster;
use memofab::domain::{Event, EventKind, RunId, TaskState};
use memofab::effects::store::Store;
use memofab::engine::demo_seed::prepare_repo;
use memofab::llm::scenario::Scenario;

/// Long enough for several scripted runs on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(900);

fn scenario_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg_queue/note.toml")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository `NAME.git` under `dir`: the mainline both machines share.
fn remote(dir: &Path, name: &str) -> PathBuf {
    let scenario = Scenario::load(&scenario_path()).unwrap();
    let seed = vec![("README.md".to_owned(), format!("# {name}\n").into_bytes())];
    let source = prepare_repo(&dir.join(format!("{name}-seed")), &scenario, &seed).unwrap();
    let bare = dir.join(format!("{name}.git"));
    git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            source.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    bare
}

/// One machine: a daemon home whose user config names the database and
/// the lease, and its own clone of each remote, registered by name.
struct Machine {
    home: Home,
    clones: Vec<PathBuf>,
}

impl Machine {
    fn new(url: &str, lease_secs: u64, remotes: &[(&str, &Path)]) -> Self {
        let home = Home::new();
        let config_dir = home.dir.path().join("xdg/memofab");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(
            config_dir.join("config.toml"),
            format!("[store]\nurl = {url:?}\n[daemon]\nlease_secs = {lease_secs}\n"),
        )
        .unwrap();
        let mut clones = Vec::new();
        for (name, bare) in remotes {
            let clone = home.dir.path().join("clones").join(name);
            git(
                home.dir.path(),
                &[
                    "clone",
                    "-q",
                    bare.to_str().unwrap(),
                    clone.to_str().unwrap(),
                ],
            );
            std::fs::create_dir_all(clone.join(".memofab")).unwrap();
            std::fs::write(clone.join(".git/info/exclude"), ".memofab/\n").unwrap();
            std::fs::write(
                clone.join(".memofab/config.toml"),
                format!(
                    "[mainline]\nremote = \"origin\"\n[roles.default]\nprovider = \"scripted\"\n[providers.scripted]\nkind = \"scripted\"\nscenario = {:?}\n",
                    scenario_path().display().to_string()
                ),
            )
            .unwrap();
            let out = home.memofab(
                &clone,
                &["repo", "add", clone.to_str().unwrap(), "--name", name],
            );
            assert!(out.status.success(), "repo add: {}", stderr(&out));
            clones.push(clone);
        }
        Self { home, clones }
    }

    fn serve(&self) -> Daemon {
        self.home.serve()
    }

    fn submit(&self, clone: usize, text: &str) {
        let out = self
            .home
            .memofab(&self.clones[clone], &["submit", "--requirement-text", text]);
        assert!(out.status.success(), "submit: {}", stderr(&out));
    }

    fn owns(&self, recorded_in: &str) -> bool {
        self.clones
            .iter()
            .any(|c| Path::new(recorded_in).starts_with(c) || c.ends_with(recorded_in))
    }
}

fn rows(url: &str, sql: &str) -> Vec<Vec<String>> {
    Cluster::query_text(url, sql)
        .into_iter()
        .map(|row| row.into_iter().map(Option::unwrap_or_default).collect())
        .collect()
}

/// Polls the database until `check` holds, failing at the deadline.
fn wait_until(what: &str, url: &str, sql: &str, check: impl Fn(&[Vec<String>]) -> bool) {
    let start = Instant::now();
    loop {
        let found = rows(url, sql);
        if check(&found) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events(url: &str, run: &RunId) -> Vec<Event> {
    let (url, run) = (url.to_owned(), run.clone());
    // Off this thread: the blocking client must not meet a runtime.
    std::thread::spawn(move || Store::connect(&url).unwrap().events(&run).unwrap())
        .join()
        .unwrap()
}

fn assert_contiguous(run: &RunId, events: &[Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "run {run}: events numbered 1..=n without a gap"
    );
}

/// The notes on the remote's mainline, and how many commits added each.
fn git_ok(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap()
        .success()
}

fn notes_on_mainline(bare: &Path) -> (Vec<String>, usize) {
    let files = git(
        bare,
        &["ls-tree", "-r", "--name-only", "main", "--", "notes"],
    );
    let files: Vec<String> = files.lines().map(str::to_owned).collect();
    let added = git(
        bare,
        &[
            "log",
            "--diff-filter=A",
            "--no-merges",
            "--name-only",
            "--format=",
            "main",
            "--",
            "notes",
        ],
    );
    (files, added.lines().filter(|l| !l.is_empty()).count())
}

/// One remote, `alpha`, and two machines with their own clones of it on
/// one database, their daemons' leases `lease_secs` long.
struct TwoMachines {
    url: String,
    alpha: PathBuf,
    a: Machine,
    b: Machine,
    /// The cluster and the remote's directory, kept for the test's length.
    keep: (std::sync::Arc<Cluster>, tempfile::TempDir),
}

fn two_machines(lease_secs: u64) -> TwoMachines {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let remotes_dir = tempfile::tempdir().unwrap();
    let alpha = remote(remotes_dir.path(), "alpha");
    let remotes = [("alpha", alpha.as_path())];
    let a = Machine::new(&url, lease_secs, &remotes);
    let b = Machine::new(&url, lease_secs, &remotes);
    TwoMachines {
        url,
        alpha,
        a,
        b,
        keep: (cluster, remotes_dir),
    }
}

/// Waits until the (only) entry's run has a task at work; that run.
fn run_at_work(url: &str) -> RunId {
    wait_until(
        "A's run at work",
        url,
        "SELECT r.run FROM requirements r JOIN events e ON e.run = r.run
         WHERE r.state = 'running' AND e.type = 'task_state_changed' AND e.body LIKE '%running%'",
        |found| !found.is_empty(),
    );
    RunId::new(rows(url, "SELECT run FROM requirements")[0][0].clone())
}

/// Waits until no entry is queued or running.
fn wait_for_the_entry_to_end(url: &str) {
    wait_until(
        "the entry finished",
        url,
        "SELECT state FROM requirements WHERE state NOT IN ('queued', 'running')",
        |found| !found.is_empty(),
    );
}

#[test]
fn two_daemons_share_a_queue_of_six_entries_over_two_repositories_and_each_lands_once() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let remotes_dir = tempfile::tempdir().unwrap();
    let (alpha, beta) = (
        remote(remotes_dir.path(), "alpha"),
        remote(remotes_dir.path(), "beta"),
    );
    let remotes = [("alpha", alpha.as_path()), ("beta", beta.as_path())];
    // A lease far longer than a run: nothing here is taken over.
    let one = Machine::new(&url, 60, &remotes);
    let two = Machine::new(&url, 60, &remotes);
    let _daemons = (one.serve(), two.serve());
    // Half from each machine: each submission wakes its own daemon.
    for i in 0..3 {
        one.submit(0, &format!("alpha note {i} from one"));
        two.submit(1, &format!("beta note {i} from two"));
    }
    wait_until(
        "six entries finished",
        &url,
        "SELECT id, state FROM requirements WHERE state NOT IN ('queued', 'running')",
        |found| found.len() == 6,
    );
    let entries = rows(
        &url,
        "SELECT id, repo, state, run, finished_ms IS NOT NULL FROM requirements ORDER BY id",
    );
    assert_eq!(entries.len(), 6);
    for entry in &entries {
        assert_eq!(entry[2], "done", "every entry done: {entries:?}");
        assert_eq!(entry[4], "t");
    }
    let mut ran_on = [0, 0];
    for entry in &entries {
        let run = RunId::new(entry[3].clone());
        let events = events(&url, &run);
        assert_contiguous(&run, &events);
        let state = fold(&events);
        assert_eq!(state.tasks().len(), 1, "{run}");
        assert_eq!(state.count(TaskState::Merged), 1, "{run}: its task merged");
        if one.owns(&state.repo) {
            ran_on[0] += 1;
        }
        if two.owns(&state.repo) {
            ran_on[1] += 1;
        }
    }
    // Each entry's change on its remote's mainline, exactly once.
    for bare in [&alpha, &beta] {
        let (files, added) = notes_on_mainline(bare);
        assert_eq!(files.len(), 3, "{}: {files:?}", bare.display());
        assert_eq!(
            added,
            3,
            "{}: each note added by one commit",
            bare.display()
        );
    }
    assert_eq!(
        ran_on[0] + ran_on[1],
        6,
        "each run in one machine's clone: {ran_on:?}"
    );
    assert!(
        ran_on[0] > 0 && ran_on[1] > 0,
        "both daemons took entries: {ran_on:?}"
    );
}

#[test]
fn a_daemon_killed_mid_run_loses_its_entry_to_the_other_which_finishes_it_once() {
    let TwoMachines {
        url,
        alpha,
        a,
        b,
        keep: _keep,
    } = two_machines(3);
    let mut daemon_a = a.serve();
    a.submit(0, "a note, finished elsewhere");
    // A works the run: its coder is in its two-second sleep.
    let run = run_at_work(&url);
    daemon_a.kill_9();
    assert_eq!(
        notes_on_mainline(&alpha).0.len(),
        0,
        "killed before it landed"
    );
    let _daemon_b = b.serve();
    wait_for_the_entry_to_end(&url);
    let entry = &rows(&url, "SELECT state, run, attempts FROM requirements")[0];
    assert_eq!(entry[0], "done", "{entry:?}");
    assert_eq!(entry[1], run.as_str(), "the same run, resumed");
    assert_eq!(entry[2], "2", "taken twice: by A, then by B");
    let events = events(&url, &run);
    assert_contiguous(&run, &events);
    let state = fold(&events);
    assert_eq!(state.count(TaskState::Merged), 1);
    let (files, added) = notes_on_mainline(&alpha);
    assert_eq!(
        (files.len(), added),
        (1, 1),
        "the task merged once: {files:?}"
    );
}

fn signal(daemon: &Daemon, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig}");
}

/// A frozen daemon (a stalled machine, a long GC pause) outlives its lease:
/// the other daemon takes the entry over; the frozen one, thawed, finds its
/// lease gone at its next renewal and drops the run, so only one daemon
/// works it, and the run's writer lock keeps the taker out until it does.
#[test]
fn a_frozen_daemon_that_lost_its_lease_drops_the_run_and_the_other_finishes_it_once() {
    let TwoMachines {
        url,
        alpha,
        a,
        b,
        keep: _keep,
    } = two_machines(3);
    let daemon_a = a.serve();
    a.submit(0, "a note, frozen halfway");
    let run = run_at_work(&url);
    signal(&daemon_a, "-STOP");
    let recorded_by_a = events(&url, &run).len();
    let refs_of_a = git(
        &a.clones[0],
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    );
    let _daemon_b = b.serve();
    // B takes the entry once A's lease ran out; A still holds the run's
    // writer lock, so B cannot record and lets the entry go again.
    wait_until(
        "B taking the entry over",
        &url,
        "SELECT attempts FROM requirements WHERE attempts >= 2",
        |found| !found.is_empty(),
    );
    assert_eq!(notes_on_mainline(&alpha).0.len(), 0, "nothing landed yet");
    signal(&daemon_a, "-CONT");
    wait_for_the_entry_to_end(&url);
    let entry = &rows(&url, "SELECT state, run FROM requirements")[0];
    assert_eq!(entry[0], "done", "{entry:?}");
    assert_eq!(entry[1], run.as_str(), "the same run, resumed");
    let events = events(&url, &run);
    assert_contiguous(&run, &events);
    assert_eq!(fold(&events).count(TaskState::Merged), 1);
    let (files, added) = notes_on_mainline(&alpha);
    assert_eq!(
        (files.len(), added),
        (1, 1),
        "the task merged once: {files:?}"
    );
    // A dropped the run when thawed: the landing is the resumed run's
    // (B's), recorded after B's resumption, not A's.
    let resumed = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::RunResumed(_)))
        .expect("the run resumed");
    let merged = events
        .iter()
        .position(
            |e| matches!(&e.kind, EventKind::TaskStateChanged(c) if c.to == TaskState::Merged),
        )
        .expect("the task merged");
    assert!(resumed < merged, "merged by the run B resumed");
    // Thawed without its lease, A recorded nothing more (its appends are
    // fenced by the lease) and moved no ref in its clone.
    assert_eq!(
        resumed, recorded_by_a,
        "the first event after A's freeze is B's resumption"
    );
    assert_eq!(
        git(
            &a.clones[0],
            &["for-each-ref", "--format=%(refname) %(objectname)"]
        ),
        refs_of_a
    );
}

/// A daemon stopped cleanly (SIGTERM) lets go of its entry: another daemon
/// resumes the run at once, not an hour later when the lease would end.
#[test]
fn a_daemon_stopped_cleanly_lets_go_and_the_other_resumes_the_run_at_once() {
    // Longer than the test's deadline: only a release lets B in.
    let TwoMachines {
        url,
        alpha,
        a,
        b,
        keep: _keep,
    } = two_machines(3600);
    let mut daemon_a = a.serve();
    a.submit(0, "a note, handed over");
    let run = run_at_work(&url);
    signal(&daemon_a, "-TERM");
    assert!(
        daemon_a.child.wait().unwrap().success(),
        "A stopped cleanly"
    );
    let held = rows(&url, "SELECT state, owner IS NULL FROM requirements");
    assert_eq!(held[0], ["running", "t"], "left running, and let go");
    let _daemon_b = b.serve();
    wait_for_the_entry_to_end(&url);
    let entry = &rows(&url, "SELECT state, run, attempts FROM requirements")[0];
    assert_eq!(entry[..], ["done", run.as_str(), "2"], "{entry:?}");
    let events = events(&url, &run);
    assert_contiguous(&run, &events);
    assert_eq!(fold(&events).count(TaskState::Merged), 1);
    assert_eq!(notes_on_mainline(&alpha).0.len(), 1);
}

/// Killed after its coder committed (the task under review): the other
/// daemon's clone never saw the task's branch; it resumes from the branch
/// pushed to the remote, and the task lands once.
#[test]
fn a_daemon_killed_after_its_task_was_committed_loses_the_run_to_the_other_which_lands_it_once() {
    let TwoMachines {
        url,
        alpha,
        a,
        b,
        keep: _keep,
    } = two_machines(3);
    let mut daemon_a = a.serve();
    // Killed by the remote the moment A's task branch arrives there: the
    // scripted run is too quick to catch between commit and landing by
    // polling the record.
    let hook = alpha.join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nwhile read old new ref; do\n  case \"$ref\" in\n    refs/heads/memofab/*) kill -9 {};;\n  esac\ndone\n",
            daemon_a.child.id()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    a.submit(0, "a note, committed here, landed there");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while daemon_a.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "A was never killed by its push"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::remove_file(&hook).unwrap();
    // What A had committed and pushed when it died.
    let pushed = git(
        &alpha,
        &[
            "for-each-ref",
            "--format=%(objectname)",
            "refs/heads/memofab/",
        ],
    );
    let pushed = pushed
        .lines()
        .next()
        .expect("A's task branch pushed")
        .to_owned();
    let merges = |bare: &Path| {
        git(
            bare,
            &["rev-list", "--count", "--merges", "--first-parent", "main"],
        )
        .trim()
        .parse::<usize>()
        .unwrap()
    };
    let merges_before = merges(&alpha);
    let run = RunId::new(rows(&url, "SELECT run FROM requirements")[0][0].clone());
    let landed_by_a = notes_on_mainline(&alpha).0.len();
    let _daemon_b = b.serve();
    wait_for_the_entry_to_end(&url);
    let entry = &rows(&url, "SELECT state, run, note FROM requirements")[0];
    assert_eq!(entry[0], "done", "{entry:?}");
    assert_eq!(entry[1], run.as_str());
    let events = events(&url, &run);
    assert_contiguous(&run, &events);
    assert_eq!(fold(&events).count(TaskState::Merged), 1);
    // A's committed work was carried on, not lost or redone from nothing,
    // and landed in one merge. (B's coder, resumed on A's branch, may add
    // a note of its own: this fixture names each note by the time.)
    assert!(
        git_ok(&alpha, &["merge-base", "--is-ancestor", &pushed, "main"]),
        "A's pushed commit {pushed} is on mainline (landed by A before its death: {landed_by_a})"
    );
    assert_eq!(merges(&alpha) - merges_before, 1, "one landing");
    assert!(!notes_on_mainline(&alpha).0.is_empty());
}
