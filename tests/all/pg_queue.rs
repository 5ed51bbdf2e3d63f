//! The daemons' shared queue on PostgreSQL (issue #25), against a real
//! server (`support::postgres`): entries taken once each by daemons racing
//! for them, leases on the server's clock, a lapsed lease taken over under
//! the same run, a daemon whose lease was taken over fenced out of the
//! entry, and the front ends (`submit`, `queue`) reaching the shared queue
//! from two daemon homes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::daemon::{Home, scripted_repo, stderr};
use crate::support::postgres::Cluster;
use memofab::domain::event::Warning;
use memofab::domain::queue::{ItemState, RequirementId, Source};
use memofab::domain::{Event, EventKind, RunId};
use memofab::effects::store::postgres::{PgQueue, fence_run, unfence_run};
use memofab::effects::store::{Store, StoreError};

const LONG: Duration = Duration::from_secs(600);

fn submit(q: &PgQueue, repo: &str, text: &str) -> RequirementId {
    q.submit(repo, text, 0, Source::Human, None, 1).unwrap().id
}

fn column(url: &str, sql: &str) -> Vec<String> {
    Cluster::query_text(url, sql)
        .into_iter()
        .map(|row| row.into_iter().next().flatten().unwrap_or_default())
        .collect()
}

#[test]
fn daemons_racing_for_the_queue_take_each_entry_exactly_once() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let setup = PgQueue::connect(&url).unwrap();
    let mut all: Vec<RequirementId> = (0..12)
        .map(|i| submit(&setup, if i % 2 == 0 { "a" } else { "b" }, &format!("r{i}")))
        .collect();
    // Another repository's entry is nobody's here.
    let other = submit(&setup, "c", "elsewhere");
    let start = Arc::new(Barrier::new(4));
    let takers: Vec<_> = (0..4)
        .map(|n| {
            let (url, start) = (url.clone(), start.clone());
            std::thread::spawn(move || {
                let q = PgQueue::connect(&url).unwrap();
                let owner = format!("daemon-{n}");
                start.wait();
                let mut took = Vec::new();
                let repos = ["a".to_owned(), "b".to_owned()];
                while let Some(t) = q.take(&repos, &owner, LONG, &RunId::generate()).unwrap() {
                    assert!(!t.resuming);
                    assert_eq!(t.entry.state, ItemState::Running);
                    took.push(t.entry.id);
                }
                took
            })
        })
        .collect();
    let mut taken: Vec<RequirementId> =
        takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
    taken.sort();
    all.sort();
    assert_eq!(taken, all, "every entry of a and b taken, none twice");
    let owners = column(
        &url,
        "SELECT owner FROM requirements WHERE state = 'running' AND attempts = 1 AND lease_until > now() AND run IS NOT NULL",
    );
    assert_eq!(owners.len(), 12, "each taken once, under a live lease");
    assert_eq!(
        setup.entry(other).unwrap().unwrap().state,
        ItemState::Queued
    );
}

#[test]
fn a_lapsed_lease_is_taken_over_under_the_same_run_and_the_old_owner_is_fenced_out() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let a = PgQueue::connect(&url).unwrap();
    let b = PgQueue::connect(&url).unwrap();
    let repos = ["shop".to_owned()];
    let id = submit(&a, "shop", "build it");
    let lease = Duration::from_secs(2);
    let first = a
        .take(&repos, "A", lease, &RunId::new("r-a"))
        .unwrap()
        .unwrap();
    assert_eq!(first.entry.run, Some(RunId::new("r-a")));
    // While A's lease lives (A renews it), B finds nothing to take.
    assert!(a.renew(id, "A", LONG).unwrap());
    assert!(
        b.take(&repos, "B", lease, &RunId::new("r-b"))
            .unwrap()
            .is_none()
    );
    // A stops renewing: a short lease, on the server's clock, runs out.
    assert!(a.renew(id, "A", Duration::from_millis(300)).unwrap());
    let started = Instant::now();
    let taken = loop {
        if let Some(t) = b.take(&repos, "B", lease, &RunId::new("r-b")).unwrap() {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never taken over"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(taken.resuming, "a run to resume, not to start");
    assert_eq!(taken.entry.id, id);
    assert_eq!(taken.entry.run, Some(RunId::new("r-a")), "the same run");
    // A, back, finds its lease gone and can record nothing on the entry.
    assert!(!a.renew(id, "A", lease).unwrap());
    assert!(
        !a.finish(id, ItemState::Failed, Some("late"), Some("A"), 5)
            .unwrap()
    );
    assert!(!a.release(id, "A").unwrap());
    assert!(!a.hold(id, "late", Some("A")).unwrap());
    assert!(b.finish(id, ItemState::Done, None, Some("B"), 5).unwrap());
    let entry = a.entry(id).unwrap().unwrap();
    assert_eq!(entry.state, ItemState::Done);
    assert_eq!(entry.note, None);
    assert_eq!(
        column(
            &url,
            &format!("SELECT attempts FROM requirements WHERE id = {}", id.0)
        ),
        ["2"]
    );
    // Finished: nobody takes it again.
    assert!(
        b.take(&repos, "C", lease, &RunId::generate())
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_released_entry_is_taken_at_once_and_resumed() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let a = PgQueue::connect(&url).unwrap();
    let repos = ["shop".to_owned()];
    let id = submit(&a, "shop", "build it");
    a.take(&repos, "A", LONG, &RunId::new("r-a"))
        .unwrap()
        .unwrap();
    assert!(
        a.take(&repos, "B", LONG, &RunId::new("r-b"))
            .unwrap()
            .is_none()
    );
    // A clean stop lets go: no wait for a ten-minute lease.
    assert!(a.release(id, "A").unwrap());
    let t = a
        .take(&repos, "B", LONG, &RunId::new("r-b"))
        .unwrap()
        .unwrap();
    assert!(t.resuming);
    assert_eq!(t.entry.run, Some(RunId::new("r-a")));
}

/// `memofab submit` on one machine, `memofab queue` on another: one queue.
#[test]
fn submit_and_queue_reach_the_shared_queue_from_every_daemon_home() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let (one, two) = (Home::new(), Home::new());
    let (shop_one, shop_two) = (
        scripted_repo("hygiene/lazy.toml"),
        scripted_repo("hygiene/lazy.toml"),
    );
    let run = |home: &Home, cwd: &Path, args: &[&str]| {
        let out = home
            .command(cwd)
            .env("MEMOFAB_STORE_URL", &url)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (home, shop) in [(&one, &shop_one), (&two, &shop_two)] {
        run(
            home,
            &shop.repo,
            &["repo", "add", shop.repo.to_str().unwrap(), "--name", "shop"],
        );
    }
    run(
        &one,
        &shop_one.repo,
        &["submit", "--requirement-text", "add a greeting"],
    );
    run(
        &two,
        &shop_two.repo,
        &["submit", "--requirement-text", "add a farewell"],
    );
    // Neither machine's local file holds an entry.
    assert!(one.entries().is_empty() && two.entries().is_empty());
    let listed = run(&two, &shop_two.repo, &["queue"]);
    assert!(
        listed.contains("add a greeting") && listed.contains("add a farewell"),
        "{listed}"
    );
    let mut by_repo: BTreeMap<String, usize> = BTreeMap::new();
    for repo in column(&url, "SELECT repo FROM requirements WHERE state = 'queued'") {
        *by_repo.entry(repo).or_default() += 1;
    }
    assert_eq!(by_repo, BTreeMap::from([("shop".to_owned(), 2)]));
}

fn warning(run: &RunId, seq: u64) -> Event {
    Event {
        run: run.clone(),
        seq,
        at_ms: seq,
        kind: EventKind::Warning(Warning {
            task: None,
            message: format!("#{seq}"),
        }),
    }
}

/// A daemon's run appends only while its lease lives: the fence is in the
/// append's transaction, not in a renewal that may come too late.
#[test]
fn a_run_worked_under_a_lease_appends_nothing_once_the_lease_ran_out() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let q = PgQueue::connect(&url).unwrap();
    let repos = ["shop".to_owned()];
    let id = submit(&q, "shop", "build it");
    let run = RunId::new("r-fenced");
    q.take(&repos, "A", LONG, &run).unwrap().unwrap();
    fence_run(&run, "A");
    let mut a = Store::connect(&url).unwrap();
    a.append(&warning(&run, 1)).unwrap();
    // A's lease runs out (A frozen): its next append is refused.
    assert!(q.renew(id, "A", Duration::from_millis(200)).unwrap());
    std::thread::sleep(Duration::from_millis(400));
    let refused = a.append(&warning(&run, 2));
    assert!(
        matches!(refused, Err(StoreError::RunHeldElsewhere { .. })),
        "{refused:?}"
    );
    assert_eq!(
        column(&url, "SELECT count(*) FROM events WHERE run = 'r-fenced'"),
        ["1"]
    );
    // B takes the entry over and, once A's connection is gone, records.
    drop(a);
    let taken = q
        .take(&repos, "B", LONG, &RunId::generate())
        .unwrap()
        .unwrap();
    assert_eq!(taken.entry.run, Some(run.clone()));
    fence_run(&run, "B");
    let mut b = Store::connect(&url).unwrap();
    b.append(&warning(&run, 2)).unwrap();
    unfence_run(&run);
    assert_eq!(b.events(&run).unwrap().len(), 2);
}
