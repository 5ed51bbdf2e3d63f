//! The scheduled overseer of the daemon, on tokio's paused clock: it fires at
//! `[overseer] schedule`, writes one report where the day had runs and none
//! where it had none, does not fire twice, catches up once after a restart
//! that missed the firing, and a failed review waits for the next night.

use crate::support::factory;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, TimeDelta};
use factory::*;
use memofab::daemon::overseer::{self, TokioClock};
use memofab::daemon::{DaemonPaths, Shared};
use memofab::domain::event::OverseerReport;
use memofab::domain::{EventKind, RunId, RunKind};
use memofab::effects::store::Store;
use memofab::engine::run::session::store_path;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// A demo repository with one finished run, made on a runtime of its own:
/// the test's paused clock would time its commands out.
fn demo_with_a_run() -> DemoRepo {
    std::thread::spawn(|| {
        let demo = demo_repo();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_demo(&demo));
        demo
    })
    .join()
    .unwrap()
}

/// Names the scripted model in the repository's config (never a silent
/// default) and, if given, the review schedule.
fn configure(repo: &Path, provider: bool, schedule: &str) {
    let path = repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    if provider {
        text.push_str("\n[roles.default]\nprovider = \"scripted\"\n");
    }
    text.push_str(&format!("\n[overseer]\nschedule = \"{schedule}\"\n"));
    std::fs::write(&path, text).unwrap();
}

fn hh_mm(at: DateTime<Local>) -> String {
    at.format("%H:%M").to_string()
}

/// The repository's stored overseer reports.
fn reports(repo: &Path) -> Vec<RunId> {
    if !store_path(repo).exists() {
        return Vec::new();
    }
    Store::open(&store_path(repo))
        .unwrap()
        .runs()
        .unwrap()
        .into_iter()
        .filter(|r| r.run.kind() == RunKind::OverseerReport)
        .map(|r| r.run)
        .collect()
}

/// The runs a report reviewed.
fn reviewed_runs(repo: &Path, report: &RunId) -> Vec<RunId> {
    stored_events(repo, report)
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::OverseerReport(OverseerReport { runs, .. }) => Some(runs),
            _ => None,
        })
        .expect("a report event")
}

fn daemon(home: &Path, repos: &[(&str, &Path)]) -> Shared {
    let shared = Shared::new(DaemonPaths::in_dir(home));
    let mut queue = shared.queue().unwrap();
    for (name, path) in repos {
        queue.add_repo(path, Some(name)).unwrap();
    }
    shared
}

fn last_review(shared: &Shared, repo: &str) -> Option<u64> {
    shared.queue().unwrap().last_review(repo).unwrap()
}

fn ms(at: DateTime<Local>) -> u64 {
    at.timestamp_millis() as u64
}

#[tokio::test(start_paused = true)]
async fn the_review_fires_at_the_schedule_once_and_only_where_there_were_runs() {
    let busy = demo_with_a_run();
    let run = only_run(&busy.repo);
    let idle = demo_repo();
    let start = Local::now();
    let schedule = hh_mm(start + TimeDelta::minutes(30));
    configure(&busy.repo, true, &schedule);
    configure(&idle.repo, true, &schedule);
    let home = tempfile::tempdir().unwrap();
    let shared = daemon(home.path(), &[("busy", &busy.repo)]);
    let clock = Arc::new(TokioClock::starting_at(start));
    let loop_ = tokio::spawn(overseer::run_with(shared.clone(), clock));

    // Registered while the daemon runs: picked up.
    tokio::time::sleep(MINUTE).await;
    shared
        .queue()
        .unwrap()
        .add_repo(&idle.repo, Some("idle"))
        .unwrap();
    tokio::time::sleep(24 * MINUTE).await;
    assert!(reports(&busy.repo).is_empty(), "not before the schedule");
    assert_eq!(last_review(&shared, "busy"), None);

    tokio::time::sleep(10 * MINUTE).await;
    let written = reports(&busy.repo);
    assert_eq!(written.len(), 1, "one report for the day's run");
    assert_eq!(reviewed_runs(&busy.repo, &written[0]), vec![run.clone()]);
    assert!(
        !store_path(&idle.repo).exists(),
        "no runs, no report (not even a store)"
    );
    let first = last_review(&shared, "busy").expect("the review is recorded");
    assert!(
        last_review(&shared, "idle").is_some(),
        "an empty day counts"
    );

    // Later that day: nothing fires again.
    tokio::time::sleep(2 * HOUR).await;
    assert_eq!(reports(&busy.repo), written);
    assert_eq!(last_review(&shared, "busy"), Some(first));

    // The next night fires once more; there were no runs since.
    tokio::time::sleep(24 * HOUR).await;
    assert_eq!(reports(&busy.repo), written);
    let second = last_review(&shared, "busy").unwrap();
    let day = 24 * 3_600_000;
    assert!(
        (day..day + 6 * 60_000).contains(&(second - first)),
        "{first} {second}"
    );
    loop_.abort();

    // `memofab queue` names the proposals waiting, per repository.
    let out = std::process::Command::new(memofab_bin())
        .arg("queue")
        .env("MEMOFAB_HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("overseer review {}", written[0])) && stdout.contains("busy"),
        "{stdout}"
    );
    assert!(!stdout.contains("idle "), "{stdout}");
}

#[tokio::test(start_paused = true)]
async fn a_daemon_down_at_the_scheduled_time_reviews_once_when_it_starts() {
    let busy = demo_with_a_run();
    let run = only_run(&busy.repo);
    let start = Local::now();
    configure(&busy.repo, true, &hh_mm(start - TimeDelta::hours(2)));
    let home = tempfile::tempdir().unwrap();
    let shared = daemon(home.path(), &[("busy", &busy.repo)]);
    // Reviewed the night before; down at today's firing.
    let before = ms(start - TimeDelta::hours(26));
    shared
        .queue()
        .unwrap()
        .set_last_review("busy", before)
        .unwrap();
    let clock = Arc::new(TokioClock::starting_at(start));

    let first = tokio::spawn(overseer::run_with(shared.clone(), clock.clone()));
    tokio::time::sleep(MINUTE).await;
    let written = reports(&busy.repo);
    assert_eq!(written.len(), 1, "the missed night is reviewed at start");
    assert_eq!(reviewed_runs(&busy.repo, &written[0]), vec![run.clone()]);
    let reviewed = last_review(&shared, "busy").unwrap();
    assert!(reviewed > before);
    first.abort();

    // Restarted again the same day: that night is not reviewed twice.
    let second = tokio::spawn(overseer::run_with(shared.clone(), clock));
    tokio::time::sleep(3 * HOUR).await;
    assert_eq!(reports(&busy.repo), written);
    assert_eq!(last_review(&shared, "busy"), Some(reviewed));
    second.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failed_review_is_tried_again_the_next_night_not_before() {
    let busy = demo_with_a_run();
    let run = only_run(&busy.repo);
    let start = Local::now();
    // No model named: the review cannot run (no scripted model by default).
    configure(&busy.repo, false, &hh_mm(start + TimeDelta::minutes(10)));
    let home = tempfile::tempdir().unwrap();
    let shared = daemon(home.path(), &[("busy", &busy.repo)]);
    let clock = Arc::new(TokioClock::starting_at(start));
    let loop_ = tokio::spawn(overseer::run_with(shared.clone(), clock));

    tokio::time::sleep(HOUR).await;
    assert!(reports(&busy.repo).is_empty());
    assert_eq!(last_review(&shared, "busy"), None, "a failure is no review");

    // The model is named now; the loop waits for the next night anyway.
    let config = busy.repo.join(".memofab/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[roles.default]\nprovider = \"scripted\"\n"),
    )
    .unwrap();
    tokio::time::sleep(12 * HOUR).await;
    assert!(
        reports(&busy.repo).is_empty(),
        "not retried before the next firing"
    );

    tokio::time::sleep(12 * HOUR).await;
    let written = reports(&busy.repo);
    assert_eq!(written.len(), 1, "the next night reviews both days");
    assert_eq!(reviewed_runs(&busy.repo, &written[0]), vec![run]);
    assert!(!loop_.is_finished(), "the daemon's loop lives on");
    loop_.abort();
}
