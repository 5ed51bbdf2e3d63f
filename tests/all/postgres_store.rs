//! The record on PostgreSQL (`--store postgres://…`), against a real server
//! started for the tests (`support::postgres`): a headless run recorded
//! there and nowhere else, the same export bytes as SQLite's, a crashed run
//! resumed from it, one writer per run, contiguous numbers, and a password
//! in the URL that reaches neither the record nor a message.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::factory::{fold, mainline_tree, memofab_bin, only_run, stored_events};
use crate::support::postgres::Cluster;
use memofab::domain::event::{MergeResult, Warning};
use memofab::domain::{Event, EventKind, MergeOutcome, RunId, TaskState};
use memofab::effects::store::export::export_jsonl;
use memofab::effects::store::{Store, StoreError};
use memofab::engine::recorder::CRASH_EXIT_CODE;

/// `memofab [--store URL] ARGS` with no user config.
fn memofab(home: &Path, store: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(memofab_bin());
    if let Some(url) = store {
        command.args(["--store", url]);
    }
    command
        .args(args)
        .env("XDG_CONFIG_HOME", home.join("no-user-config"))
        .env_remove("MEMOFAB_STORE_URL")
        .output()
        .expect("memofab runs")
}

fn demo(dir: &Path, store: Option<&str>, crash_after: Option<u64>) -> Output {
    let crash = crash_after.map(|n| n.to_string());
    let mut args = vec!["demo", "--headless", "--auto-approve"];
    if let Some(n) = &crash {
        args.extend(["--crash-after-events", n]);
    }
    args.extend(["--dir", dir.to_str().unwrap()]);
    memofab(dir.parent().unwrap(), store, &args)
}

fn events_in(url: &str, run: &RunId) -> Vec<Event> {
    Store::connect(url).unwrap().events(run).unwrap()
}

fn only_run_in(url: &str) -> RunId {
    let runs = Store::connect(url).unwrap().runs().unwrap();
    assert_eq!(runs.len(), 1, "one run in the database");
    runs[0].run.clone()
}

fn jsonl(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    export_jsonl(events, &mut out).unwrap();
    out
}

fn assert_contiguous(events: &[Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "events numbered 1..=n without a gap");
}

fn merges(events: &[Event]) -> std::collections::BTreeMap<String, usize> {
    let mut merged = std::collections::BTreeMap::new();
    for e in events {
        if let EventKind::MergeResult(MergeResult { task, result }) = &e.kind
            && !matches!(result, MergeOutcome::Conflict { .. })
        {
            *merged.entry(task.to_string()).or_default() += 1;
        }
    }
    merged
}

#[test]
fn a_headless_run_is_recorded_in_postgres_and_exports_as_sqlite_does() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let base = tempfile::tempdir().unwrap();

    let sqlite_dir = base.path().join("sqlite");
    let out = demo(&sqlite_dir, None, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg_dir = base.path().join("pg");
    let out = demo(&pg_dir, Some(&url), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The record is in PostgreSQL, and only there.
    assert!(
        !pg_dir.join(".memofab/memofab.db").exists(),
        "no SQLite file beside a PostgreSQL store"
    );
    let run = only_run_in(&url);
    let events = events_in(&url, &run);
    assert_contiguous(&events);
    let state = fold(&events);
    assert!(!state.tasks().is_empty());
    assert!(state.tasks().iter().all(|t| t.state == TaskState::Merged));
    assert!(
        merges(&events).values().all(|&n| n == 1),
        "each task merged once"
    );
    assert_eq!(mainline_tree(&pg_dir), mainline_tree(&sqlite_dir));

    // `runs` and `export` read it back through the flag.
    let out = memofab(
        base.path(),
        Some(&url),
        &["runs", "--repo", pg_dir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(run.as_str()));
    let pg_repo = pg_dir.to_str().unwrap();
    let out = memofab(
        base.path(),
        Some(&url),
        &[
            "export",
            run.as_str(),
            "--format",
            "jsonl",
            "--repo",
            pg_repo,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout,
        jsonl(&events),
        "the export is the stored events"
    );

    // The same events stored in either backend export to the same bytes.
    let sqlite_run = only_run(&sqlite_dir);
    let sqlite_events = stored_events(&sqlite_dir, &sqlite_run);
    let copy = cluster.database();
    Store::connect(&copy)
        .unwrap()
        .append_batch(&sqlite_events)
        .unwrap();
    let out = memofab(
        base.path(),
        None,
        &[
            "export",
            sqlite_run.as_str(),
            "--format",
            "jsonl",
            "--repo",
            sqlite_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert_eq!(jsonl(&events_in(&copy, &sqlite_run)), out.stdout);
    let summary = |s: &Store| {
        let mut r = s.runs().unwrap();
        (
            r.len(),
            r.pop()
                .map(|r| (r.tasks, r.merged, r.failed, r.tokens, r.events)),
        )
    };
    assert_eq!(
        summary(&Store::connect(&copy).unwrap()),
        summary(&Store::open(&sqlite_dir.join(".memofab/memofab.db")).unwrap()),
        "the same summary row from the same events"
    );
}

/// A demo recorded in `url` and killed after its 60th event, in
/// `base/repo`: the repository and the run.
fn crashed_demo(url: &str, base: &Path) -> (std::path::PathBuf, RunId) {
    let dir = base.join("repo");
    let out = demo(&dir, Some(url), Some(60));
    assert_eq!(
        out.status.code(),
        Some(CRASH_EXIT_CODE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run_in(url);
    assert_eq!(
        events_in(url, &run).len(),
        60,
        "nothing lost before the crash"
    );
    (dir, run)
}

#[test]
fn a_run_crashed_mid_build_resumes_from_postgres_and_merges_each_task_once() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let base = tempfile::tempdir().unwrap();
    let (dir, run) = crashed_demo(&url, base.path());

    let out = memofab(
        base.path(),
        Some(&url),
        &["resume", "--headless", "--repo", dir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = events_in(&url, &run);
    assert_contiguous(&events);
    assert!(
        fold(&events)
            .tasks()
            .iter()
            .all(|t| t.state == TaskState::Merged)
    );
    let merged = merges(&events);
    assert!(!merged.is_empty());
    assert!(
        merged.values().all(|&n| n == 1),
        "each task merged once: {merged:?}"
    );
}

/// A shared store holds every repository's runs: a run is never carried
/// on in a repository it was not recorded in (its tasks would be built and
/// landed on the wrong mainline).
#[test]
fn a_run_is_not_resumed_in_another_repository() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let base = tempfile::tempdir().unwrap();
    let (dir, run) = crashed_demo(&url, base.path());

    let other = base.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&other)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(other.join("README.md"), "other\n").unwrap();
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@e",
        "commit",
        "-qm",
        "other",
    ]);
    let refs_before = git(&["for-each-ref"]);

    let out = memofab(
        base.path(),
        Some(&url),
        &[
            "resume",
            run.as_str(),
            "--headless",
            "--repo",
            other.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    // Nothing happened to either: no branch or worktree in the other
    // repository, not one event more in the run.
    assert_eq!(git(&["for-each-ref"]), refs_before);
    assert!(!other.join(".memofab/worktrees").exists());
    assert_eq!(events_in(&url, &run).len(), 60);

    // In its own repository it carries on.
    let out = memofab(
        base.path(),
        Some(&url),
        &[
            "resume",
            run.as_str(),
            "--headless",
            "--repo",
            dir.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

#[test]
fn one_writer_per_run_and_no_gap_in_its_numbers() {
    let cluster = Cluster::shared();
    let url = cluster.database();
    let run = RunId::from("r-shared");
    let mut first = Store::connect(&url).unwrap();
    let mut second = Store::connect(&url).unwrap();
    first.append(&warning(&run, 1)).unwrap();

    // Another connection may not write the run while the first holds it.
    let refused = second.append(&warning(&run, 2));
    assert!(
        matches!(refused, Err(StoreError::RunHeldElsewhere { .. })),
        "{refused:?}"
    );
    // Nor may the writer skip or repeat a number.
    let gap = first.append(&warning(&run, 3));
    assert!(matches!(gap, Err(StoreError::SeqGap { .. })), "{gap:?}");
    assert!(first.append(&warning(&run, 1)).is_err());
    // A batch with a gap inside lands not at all.
    assert!(
        first
            .append_batch(&[warning(&run, 2), warning(&run, 4)])
            .is_err()
    );
    assert_eq!(second.last_seq(&run).unwrap(), 1);
    let rows = Cluster::query_text(&url, "SELECT count(*) FROM events");
    assert_eq!(rows[0][0].as_deref(), Some("1"));

    // Its writer gone (closed, killed), another takes the run over.
    drop(first);
    second.append(&warning(&run, 2)).unwrap();
    let events = second.events(&run).unwrap();
    assert_eq!(events, vec![warning(&run, 1), warning(&run, 2)]);
    // Another run is free to write meanwhile.
    let other = RunId::from("r-other");
    Store::connect(&url)
        .unwrap()
        .append(&warning(&other, 1))
        .unwrap();
}

#[test]
fn the_password_in_the_url_reaches_no_record_log_or_message() {
    const PASSWORD: &str = "Hunter2-not-for-logs";
    let cluster = Cluster::shared();
    let url = cluster.database();
    // The cluster trusts local connections: the password is accepted, unused.
    let with_password = url.replacen("memofab@", &format!("memofab:{PASSWORD}@"), 1);
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("repo");
    let out = demo(&dir, Some(&with_password), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Vec::new();
    seen.extend(out.stdout);
    seen.extend(out.stderr);

    let doctor = memofab(
        base.path(),
        Some(&with_password),
        &["doctor", "--repo", dir.to_str().unwrap()],
    );
    let report = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok   store: PostgreSQL ")),
        "doctor reports the server: {report}"
    );
    seen.extend(doctor.stdout);
    seen.extend(doctor.stderr);

    // A server that is not there: the error names the URL, not its password.
    let closed = with_password.replacen(
        &format!(":{}/", cluster.port),
        &format!(":{}/", closed_port()),
        1,
    );
    let failed = memofab(
        base.path(),
        Some(&closed),
        &["runs", "--repo", dir.to_str().unwrap()],
    );
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("memofab:***@127.0.0.1"));
    seen.extend(failed.stdout);
    seen.extend(failed.stderr);
    let failed = memofab(
        base.path(),
        Some(&closed),
        &["doctor", "--repo", dir.to_str().unwrap()],
    );
    assert!(!failed.status.success());
    seen.extend(failed.stdout);
    seen.extend(failed.stderr);

    // Every stored value, and every file the run left in the repository.
    for table in ["events", "runs", "inbox"] {
        for row in Cluster::query_text(&url, &format!("SELECT * FROM {table}")) {
            for value in row.into_iter().flatten() {
                seen.extend(value.into_bytes());
            }
        }
    }
    for entry in walk(&dir.join(".memofab")) {
        seen.extend(std::fs::read(entry).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("run_started"), "the record was read");
    assert!(!text.contains(PASSWORD), "the password leaked");
}

/// A port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files.extend(walk(&path)),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}

#[test]
fn a_gate_is_approved_from_anywhere_through_the_shared_inbox() {
    use memofab::domain::event::GateDecision;
    use std::time::{Duration, Instant};
    let cluster = Cluster::shared();
    let url = cluster.database();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("repo");
    let mut child = Command::new(memofab_bin())
        .args(["--store", &url, "demo", "--headless", "--dir"])
        .arg(&dir)
        .env("XDG_CONFIG_HOME", base.path().join("no-user-config"))
        .env_remove("MEMOFAB_STORE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the gate never opened"
        );
        let found = Store::connect(&url).ok().and_then(|s| {
            let run = s.latest_run().ok()??;
            let state = memofab::domain::RunState::fold(&s.events(&run).ok()?).ok()??;
            (state.task(&"docs".into()).map(|t| t.state) == Some(TaskState::AwaitingGate))
                .then_some(run)
        });
        if let Some(run) = found {
            break run;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Another directory, another machine: only the database is shared.
    let elsewhere = base.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let out = memofab(
        base.path(),
        Some(&url),
        &[
            "approve",
            run.as_str(),
            "docs",
            "--repo",
            elsewhere.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = child.wait().unwrap();
    assert!(status.success());
    let events = events_in(&url, &run);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::GateDecision(GateDecision { approved: true, .. })
    )));
    assert!(
        fold(&events)
            .tasks()
            .iter()
            .all(|t| t.state == TaskState::Merged)
    );
    assert!(
        !elsewhere.join(".memofab").exists(),
        "nothing written where approve ran"
    );
}
