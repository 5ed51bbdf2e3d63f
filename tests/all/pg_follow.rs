//! Cockpits anywhere (issue #25), against a real PostgreSQL
//! (`support::postgres`): a run's appends notify its channel on commit only,
//! once per append; a store follower passes on every event once and in
//! order, across its connection being killed; and a run held at its gate in
//! one repository is approved by a cockpit that only shares the database,
//! its follower seeing the run to its end — as a library, then the real
//! binary in a terminal (`memofab --store URL attach RUN`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::factory::{fold, memofab_bin};
use crate::support::postgres::Cluster;
use crate::support::tmux::Tmux;
use memofab::domain::event::{GateDecision, RunInterrupted, RunResumed, Warning};
use memofab::domain::{Decider, Event, EventKind, RunId, RunPhase, TaskState};
use memofab::effects::store::postgres::channel;
use memofab::effects::store::postgres::follow::{APPLICATION_NAME, Ended, FollowOptions, follow};
use memofab::effects::store::{Store, StoreError};
use memofab::protocol::Command as EngineCommand;
use postgres::fallible_iterator::FallibleIterator;

/// How long anything waited for here may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);

fn event(run: &RunId, seq: u64, kind: EventKind) -> Event {
    Event {
        run: run.clone(),
        seq,
        at_ms: seq,
        kind,
    }
}

fn warning(run: &RunId, seq: u64) -> Event {
    let message = format!("#{seq}");
    event(
        run,
        seq,
        EventKind::Warning(Warning {
            task: None,
            message,
        }),
    )
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// A follower on a thread of its own, and what it passed on so far.
struct Following {
    seen: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Ended, StoreError>>>,
}

impl Following {
    fn start(url: &str, run: &RunId, options: FollowOptions) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (url, run) = (url.to_owned(), run.clone());
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            move || {
                follow(&url, &run, 0, &options, &stop, |event| {
                    seen.lock().unwrap().push(event);
                    true
                })
            }
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Event> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until what was passed on satisfies `check`.
    fn until(&self, what: &str, check: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !check(&self.seen()) {
            assert!(
                Instant::now() < deadline,
                "the follower never saw {what}; it saw {:?}",
                seqs(&self.seen())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the follower to end by itself; why, and all it passed on.
    fn end(mut self) -> (Ended, Vec<Event>) {
        let deadline = Instant::now() + PATIENCE;
        let thread = self.thread.take().unwrap();
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the follower did not end; it saw {:?}",
                seqs(&self.seen())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let ended = thread.join().unwrap().unwrap();
        (ended, self.seen())
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Kills the follower's server process, as a network failure or a server
/// restart would; how many were killed.
fn kill_followers(url: &str) -> usize {
    let rows = Cluster::query_text(
        url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = '{APPLICATION_NAME}' AND datname = current_database()"
        ),
    );
    rows.iter().filter(|r| r[0].as_deref() == Some("t")).count()
}

#[test]
fn a_follower_passes_on_every_event_once_in_order_across_a_killed_connection() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let run = RunId::from("r-followed");
    // Notices alone (and catching up on connecting) must carry it: the
    // fallback re-read is further off than the test.
    let options = FollowOptions {
        reread: Duration::from_secs(3600),
        max_backoff: Duration::from_millis(500),
    };
    // Connecting creates the schema the follower reads.
    let mut writer = Store::connect(&url).unwrap();
    let following = Following::start(&url, &run, options);

    let mut written: Vec<Event> = Vec::new();
    let mut append = |batch: Vec<Event>, written: &mut Vec<Event>| {
        writer.append_batch(&batch).unwrap();
        written.extend(batch);
    };
    // The first half in batches of 1, 2, 3, 5 and 8, with an interruption
    // and its resumption committed together: a run that went on.
    let sizes = [1u64, 2, 3, 5, 8];
    let mut next = 1u64;
    for (i, size) in sizes.iter().cycle().take(12).enumerate() {
        let mut batch: Vec<Event> = (next..next + size).map(|s| warning(&run, s)).collect();
        if i == 6 {
            let at = next + size;
            batch.push(event(
                &run,
                at,
                EventKind::RunInterrupted(RunInterrupted {}),
            ));
            batch.push(event(
                &run,
                at + 1,
                EventKind::RunResumed(RunResumed {
                    interrupted: Vec::new(),
                }),
            ));
        }
        next += batch.len() as u64;
        append(batch, &mut written);
    }
    let half = next - 1;
    following.until("the first half", |seen| {
        seen.last().map(|e| e.seq) == Some(half)
    });

    // Its connection killed: notices sent meanwhile are lost to it.
    assert_eq!(kill_followers(&url), 1, "one follower connection killed");
    for size in sizes.iter().cycle().take(12) {
        let batch: Vec<Event> = (next..next + size).map(|s| warning(&run, s)).collect();
        next += size;
        append(batch, &mut written);
        std::thread::sleep(Duration::from_millis(15));
    }
    append(
        vec![event(
            &run,
            next,
            EventKind::RunInterrupted(RunInterrupted {}),
        )],
        &mut written,
    );

    let (ended, seen) = following.end();
    assert_eq!(ended, Ended::RunEnded);
    assert_eq!(seqs(&seen), seqs(&written), "every event once, in order");
    assert_eq!(seen, written);
}

#[test]
fn an_append_notifies_its_run_on_commit_only_and_once() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    // A name no identifier should be built from.
    let run = RunId::from("r-\"; NOTIFY x; --");
    let name = channel(&run);
    assert!(
        name.starts_with("memofab_run_") && name.len() == 44,
        "{name}"
    );
    assert!(
        name[12..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let other = RunId::from("r-other");
    assert_ne!(channel(&other), name);

    let mut writer = Store::connect(&url).unwrap();
    // The schema exists before the listener connects.
    writer.append(&warning(&RunId::from("r-first"), 1)).unwrap();
    let (ready, listening) = std::sync::mpsc::channel();
    let listener = std::thread::spawn({
        let (url, name) = (url.clone(), name.clone());
        move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client.batch_execute(&format!("LISTEN \"{name}\"")).unwrap();
            ready.send(()).unwrap();
            let mut payloads = Vec::new();
            let mut notices = client.notifications();
            let mut iter = notices.timeout_iter(PATIENCE);
            while let Some(notice) = iter.next().unwrap() {
                assert_eq!(notice.channel(), name);
                payloads.push(notice.payload().to_owned());
                if notice.payload() == "4" {
                    break;
                }
            }
            payloads
        }
    });
    listening.recv().unwrap();

    writer.append(&warning(&run, 1)).unwrap();
    // A refused append and a rolled-back batch tell nobody.
    assert!(writer.append(&warning(&run, 3)).is_err());
    assert!(
        writer
            .append_batch(&[warning(&run, 2), warning(&run, 4)])
            .is_err()
    );
    // Another run's listeners are others.
    writer.append(&warning(&other, 1)).unwrap();
    // A batch tells once, its last number.
    writer
        .append_batch(&[warning(&run, 2), warning(&run, 3), warning(&run, 4)])
        .unwrap();

    let payloads = listener.join().unwrap();
    assert_eq!(payloads, ["1", "4"]);
    assert_eq!(seqs(&writer.events(&run).unwrap()), [1, 2, 3, 4]);
}

/// `memofab --store URL demo --headless --dir DIR` without auto-approve: its
/// docs task waits at the gate; the child, and the run once it waits.
fn demo_at_gate(url: &str, base: &Path) -> (Child, RunId) {
    let dir = base.join("repo");
    let mut child = Command::new(memofab_bin())
        .args(["--store", url, "demo", "--headless", "--dir"])
        .arg(&dir)
        .env("XDG_CONFIG_HOME", base.join("no-user-config"))
        .env_remove("MEMOFAB_STORE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let run = loop {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the demo's run never started"
        );
        if let Some(run) = Store::connect(url).ok().and_then(|s| s.latest_run().ok()?) {
            break run;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (child, run)
}

fn docs_at_gate(events: &[Event]) -> bool {
    events.first().map(|e| e.seq) == Some(1)
        && fold(events).task(&"docs".into()).map(|t| t.state) == Some(TaskState::AwaitingGate)
}

fn mainline(repo: &Path) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "refs/heads/main"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The run's end as recorded: the gate approved by a cockpit, every task
/// merged, the child done, mainline moved.
fn assert_landed(url: &str, run: &RunId, mut child: Child, repo: &Path, before: &str) {
    assert!(
        child.wait().unwrap().success(),
        "the run's process ends well"
    );
    let events = Store::connect(url).unwrap().events(run).unwrap();
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::GateDecision(GateDecision {
            approved: true,
            by: Decider::Cockpit,
            ..
        })
    )));
    assert!(
        fold(&events)
            .tasks()
            .iter()
            .all(|t| t.state == TaskState::Merged)
    );
    assert_ne!(
        mainline(repo),
        before,
        "the approved task landed on mainline"
    );
}

#[test]
fn a_cockpit_that_shares_only_the_database_approves_the_gate_and_follows_the_run_to_its_end() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let base = tempfile::tempdir().unwrap();
    let (child, run) = demo_at_gate(&url, base.path());
    let following = Following::start(&url, &run, FollowOptions::default());
    following.until("the docs task at its gate", docs_at_gate);
    let repo = base.path().join("repo");
    let before = mainline(&repo);

    // What the cockpit's `a` does through the store.
    Store::connect(&url)
        .unwrap()
        .push_command(
            &run,
            &EngineCommand::ApproveGate {
                task: "docs".into(),
            },
            &Decider::Cockpit,
        )
        .unwrap();

    let (ended, seen) = following.end();
    assert_eq!(ended, Ended::RunEnded);
    assert!(
        seen.iter()
            .any(|e| matches!(e.kind, EventKind::RunFinished(_))),
        "the follower saw the run finish"
    );
    assert_eq!(fold(&seen).phase, RunPhase::Finished);
    assert_landed(&url, &run, child, &repo, &before);
    let stored = Store::connect(&url).unwrap().events(&run).unwrap();
    assert_eq!(
        seen, stored,
        "the follower saw the whole run, once, in order"
    );
}

#[test]
fn memofab_attach_in_a_terminal_elsewhere_approves_the_gate_and_leaves_the_run_going() {
    let Some(tmux) = Tmux::new("pg-attach") else {
        return;
    };
    let cluster = Cluster::shared();
    let url = cluster.database();
    let base = tempfile::tempdir().unwrap();
    let (child, run) = demo_at_gate(&url, base.path());
    let elsewhere = base.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    tmux.start(&format!(
        "cd '{}' && env -u MEMOFAB_STORE_URL XDG_CONFIG_HOME='{}' '{}' --store '{url}' attach {run}; echo MEMOFAB-EXITED-$?; sleep 600",
        elsewhere.display(),
        base.path().join("no-user-config").display(),
        memofab_bin().display(),
    ));
    tmux.wait_for("the cockpit at the gate", PATIENCE, |s| {
        s.contains("following through the store")
            && s.contains(run.as_str())
            && s.contains("1 at gate")
    });
    let repo = base.path().join("repo");
    let before = mainline(&repo);
    tmux.keys(&["a"]);
    tmux.wait_for("the gate passed", PATIENCE, |s| !s.contains("1 at gate"));
    assert_landed(&url, &run, child, &repo, &before);
    tmux.keys(&["q"]);
    tmux.wait_for("the detach question", PATIENCE, |s| {
        s.contains("Detach from the store?")
    });
    tmux.keys(&["q"]);
    let exited = tmux.wait_for("the cockpit to exit", PATIENCE, |s| {
        s.contains("MEMOFAB-EXITED-")
    });
    assert!(exited.contains("MEMOFAB-EXITED-0"), "{exited}");
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing written where the cockpit ran"
    );

    // The finished run replays from the database, in its repository.
    tmux.start(&format!(
        "cd '{}' && env -u MEMOFAB_STORE_URL XDG_CONFIG_HOME='{}' '{}' --store '{url}' replay {run}; echo MEMOFAB-EXITED-$?; sleep 600",
        repo.display(),
        base.path().join("no-user-config").display(),
        memofab_bin().display(),
    ));
    tmux.wait_for("the replay", PATIENCE, |s| {
        s.contains(&format!("memofab replay {run}"))
    });
    assert!(
        !repo.join(".memofab/memofab.db").exists(),
        "the replay read the database, not a SQLite file"
    );
}
