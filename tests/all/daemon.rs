//! `memofab serve`, the real binary: requirements submitted to two
//! repositories both run and land; a daemon killed mid-run is restarted and
//! finishes with nothing lost; one daemon per user; the agent budget is
//! shared across repositories.

use crate::support::{daemon, factory};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daemon::*;
use factory::*;
use memofab::daemon::protocol::{Reply, Request};
use memofab::daemon::{DaemonPaths, client};
use memofab::domain::event::{AgentFinished, AgentStarted, RunInterrupted};
use memofab::domain::queue::{ItemState, QueuedRequirement};
use memofab::domain::{Event, EventKind, RunId, TaskState};

fn all_done(home: &Home, count: usize) -> Option<Vec<QueuedRequirement>> {
    let entries = home.entries();
    let failed: Vec<_> = entries
        .iter()
        .filter(|e| e.state == ItemState::Failed)
        .collect();
    assert!(failed.is_empty(), "an entry failed: {failed:?}");
    (entries.len() == count && entries.iter().all(|e| e.state == ItemState::Done))
        .then_some(entries)
}

fn run_of(home: &Home, repo: &str) -> RunId {
    home.entries()
        .into_iter()
        .find(|e| e.repo == repo)
        .and_then(|e| e.run)
        .unwrap()
}

/// The name the daemon registered the repository under (fixture
/// repositories share their directory's name).
fn repo_name(home: &Home, demo: &DemoRepo) -> String {
    home.queue()
        .resolve_repo(demo.repo.to_str().unwrap())
        .unwrap()
        .name
}

/// Nothing lost: seqs 1..=n, one start, every task merged.
fn assert_whole_run(repo: &Path, run: &RunId) -> Vec<Event> {
    let events = stored_events(repo, run);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "{run}'s seqs are contiguous");
    let starts = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RunStarted(_)))
        .count();
    assert_eq!(starts, 1, "{run} started once");
    let state = fold(&events);
    assert!(
        state.tasks().iter().all(|t| t.state == TaskState::Merged),
        "{run}: every task merged"
    );
    events
}

/// When each agent worked, across runs: (started, finished) in ms.
fn agent_spans(events: &[Event]) -> Vec<(u64, u64)> {
    let mut spans = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if let EventKind::AgentStarted(AgentStarted { agent, .. }) = &event.kind {
            let end = events[i..]
                .iter()
                .find(
                    |e| matches!(&e.kind, EventKind::AgentFinished(AgentFinished { agent: a, .. }) if a == agent),
                )
                .map(|e| e.at_ms)
                .unwrap();
            spans.push((event.at_ms, end));
        }
    }
    spans
}

#[test]
fn two_repositories_run_their_requirements_with_one_agent_at_a_time_between_them() {
    let home = Home::new();
    let config = home.dir.path().join("daemon.toml");
    std::fs::write(&config, "[daemon]\nmax_agents = 1\n").unwrap();
    let first = scripted_repo("hygiene/lazy.toml");
    let second = scripted_repo("hygiene/lazy.toml");
    let daemon = home.serve_with(Some(&config));
    home.add_repo(&first);
    home.submit(&first);
    home.add_repo(&second);
    home.submit(&second);

    wait_for("both entries done", || all_done(&home, 2));
    let mut spans = Vec::new();
    for demo in [&first, &second] {
        let run = run_of(&home, &repo_name(&home, demo));
        let events = assert_whole_run(&demo.repo, &run);
        assert!(
            on_mainline(&demo.repo, "lazy.txt"),
            "the work is on mainline"
        );
        spans.extend(agent_spans(&events));
    }
    // max_agents = 1 across both repositories: no two agents overlapped.
    spans.sort();
    assert!(spans.len() >= 2 * 4, "each run had its agents: {spans:?}");
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "an agent started before the previous one finished: {pair:?}"
        );
    }
    drop(daemon);
}

#[test]
fn a_daemon_killed_mid_run_resumes_at_its_next_start_and_loses_nothing() {
    let home = Home::new();
    // Its one task waits at the gate: the run is surely under way at the kill.
    let gated = scripted_repo("hygiene/gated.toml");
    let lazy = scripted_repo("hygiene/lazy.toml");
    let mut daemon = home.serve();
    home.add_repo(&gated);
    home.submit(&gated);
    home.add_repo(&lazy);
    home.submit(&lazy);
    let run = wait_for("the gated run's events", || latest_run(&gated.repo));
    wait_for("the gate", || {
        let state = fold(&stored_events(&gated.repo, &run));
        (state.count(TaskState::AwaitingGate) == 1).then_some(())
    });
    daemon.kill_9();
    assert_eq!(
        home.entries()
            .iter()
            .find(|e| e.repo == repo_name(&home, &gated))
            .map(|e| e.state),
        Some(ItemState::Running),
        "the killed run's entry is still running"
    );

    let _daemon = home.serve();
    // The gate keeps its repository busy; the other one goes on.
    let gated_state = wait_for("the other repository's entry", || {
        let entries = home.entries();
        let state = |demo| {
            let name = repo_name(&home, demo);
            entries.iter().find(|e| e.repo == name).map(|e| e.state)
        };
        (state(&lazy) == Some(ItemState::Done)).then(|| state(&gated))
    });
    assert_eq!(gated_state, Some(ItemState::Running));
    let out = home.memofab(&gated.repo, &["approve", run.as_str(), "note"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("both entries done", || all_done(&home, 2));

    for (demo, file) in [(&gated, "note.txt"), (&lazy, "lazy.txt")] {
        let run = run_of(&home, &repo_name(&home, demo));
        assert_eq!(only_run(&demo.repo), run, "one run per requirement");
        assert_whole_run(&demo.repo, &run);
        assert!(on_mainline(&demo.repo, file), "{file} is on mainline");
    }
    let resumed = stored_events(&gated.repo, &run)
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RunResumed(_)))
        .count();
    assert_eq!(resumed, 1, "the killed run was resumed, not restarted");
}

#[test]
fn one_daemon_serves_and_the_queue_says_so() {
    let home = Home::new();
    let daemon = home.serve();
    let pid = daemon.child.id().to_string();

    let second = home.memofab(home.dir.path(), &["serve"]);
    assert!(!second.status.success(), "a second daemon is refused");
    assert!(stderr(&second).contains(&pid), "{}", stderr(&second));

    let out = home.memofab(home.dir.path(), &["queue"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("serving") && stdout.contains(&pid),
        "{stdout}"
    );
}

#[test]
fn sigterm_interrupts_the_runs_and_the_next_start_carries_them_on() {
    let home = Home::new();
    let mut daemon = home.serve();
    let gated = scripted_repo("hygiene/gated.toml");
    home.add_repo(&gated);
    home.submit(&gated);
    let run = wait_for("the gated run's events", || latest_run(&gated.repo));
    wait_for("the gate", || {
        let state = fold(&stored_events(&gated.repo, &run));
        (state.count(TaskState::AwaitingGate) == 1).then_some(())
    });
    // The waiting run is under way, for `queue` and for cockpits to attach.
    let paths = DaemonPaths::in_dir(&home.path());
    match client::request(&paths, &Request::Status) {
        Some(Reply::Status(status)) => {
            let runs: Vec<_> = status.runs.iter().map(|r| (&r.repo, &r.run)).collect();
            assert_eq!(runs, [(&repo_name(&home, &gated), &run)]);
        }
        other => panic!("no status: {other:?}"),
    }
    let sent = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_for("the daemon to exit", || daemon.child.try_wait().unwrap());
    assert!(status.success(), "exit status {status:?}");
    assert!(!home.path().join("daemon.sock").exists());
    let events = stored_events(&gated.repo, &run);
    assert!(
        matches!(
            events.last().map(|e| &e.kind),
            Some(EventKind::RunInterrupted(RunInterrupted {}))
        ),
        "the run recorded its interruption"
    );
    let name = repo_name(&home, &gated);
    let entry = |home: &Home| home.entries().into_iter().find(|e| e.repo == name);
    assert_eq!(entry(&home).map(|e| e.state), Some(ItemState::Running));

    // The lock went with it: a new daemon starts and carries the run on.
    let _daemon = home.serve();
    let out = home.memofab(&gated.repo, &["approve", run.as_str(), "note"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the entry done", || {
        (entry(&home)?.state == ItemState::Done).then_some(())
    });
    assert_whole_run(&gated.repo, &run);
    assert!(on_mainline(&gated.repo, "note.txt"));
}

#[test]
fn a_repository_that_is_not_ready_holds_its_entry_until_it_is() {
    let home = Home::new();
    let mut daemon = home.serve();
    let repo = fixture_repo("hygiene/lazy.toml");
    let main_before = git(&repo.repo, &["rev-parse", "main"]);
    home.add_repo(&repo);
    home.submit(&repo);
    // No provider named in its config: the entry waits, with why; it is
    // neither failed nor started.
    let held = wait_for("the entry to be held", || {
        home.entries().into_iter().find(|e| e.note.is_some())
    });
    assert_eq!(held.state, ItemState::Queued, "{held:?}");
    assert_eq!(held.run, None);
    assert!(latest_run(&repo.repo).is_none(), "no run was stored");
    let out = home.memofab(&repo.repo, &["queue"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("waits:"));

    // The provider named, but the checkout has uncommitted changes: still
    // held, now for that.
    name_scripted_provider(&repo, "hygiene/lazy.toml");
    std::fs::write(repo.repo.join("README.md"), "edited by the human\n").unwrap();
    client::wake(&DaemonPaths::in_dir(&home.path()));
    let dirty = wait_for("the entry held for the dirty checkout", || {
        home.entries()
            .into_iter()
            .find(|e| e.note.as_deref().is_some_and(|n| n.contains("README.md")))
    });
    assert_eq!(dirty.state, ItemState::Queued, "{dirty:?}");
    assert!(latest_run(&repo.repo).is_none(), "no run was stored");
    assert_eq!(git(&repo.repo, &["rev-parse", "main"]), main_before);

    // Committed: the entry runs and lands, under one run.
    git(&repo.repo, &["commit", "-qam", "the human's edit"]);
    client::wake(&DaemonPaths::in_dir(&home.path()));
    let done = wait_for("the entry done", || all_done(&home, 1)).remove(0);
    assert_eq!(done.note, None);
    let run = done.run.unwrap();
    assert_whole_run(&repo.repo, &run);
    // Whoever watches the daemon saw the entry wait, once per reason, then
    // start and land.
    let said = daemon.said_until("done: every task merged");
    let waits = said.iter().filter(|l| l.contains("waits:")).count();
    assert_eq!(waits, 2, "{said:#?}");
    // The attempts while it waited started no run, and say none.
    let starts: Vec<_> = said.iter().filter(|l| l.contains(" starts: ")).collect();
    assert_eq!(starts.len(), 1, "{said:#?}");
    assert!(
        starts[0].contains(&format!("run {run} starts")),
        "{said:#?}"
    );
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(repo)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An agent's command must not steer the daemon: it could approve its own
/// gate or stop every run. The socket is private to the user, and agents
/// run as the user, so the daemon refuses connections from inside a fence.
#[test]
fn a_fenced_command_cannot_reach_the_daemon() {
    use memofab::effects::isolation::{Mechanism, testing};
    use memofab::effects::process::{CommandSpec, Isolation, run_command};

    let home = Home::new();
    let mut daemon = home.serve();
    let paths = DaemonPaths::in_dir(&home.path());
    // What an escaping agent would try: ask the daemon to stop.
    let attack = format!(
        "perl -MIO::Socket::UNIX -e '$s = IO::Socket::UNIX->new(Peer => \"{}\") or die \"no connection: $!\\n\"; print $s qq({{\"request\":\"shutdown\"}}\\n); print scalar <$s>'",
        paths.socket.display()
    );
    let cwd = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run = |isolation: Isolation| {
        runtime
            .block_on(run_command(&CommandSpec {
                command: attack.clone(),
                cwd: cwd.path().to_owned(),
                timeout: Duration::from_secs(20),
                output_cap: 4096,
                extra_env: Vec::new(),
                isolation,
            }))
            .unwrap()
    };
    for mechanism in [Mechanism::Landlock, Mechanism::Bwrap] {
        let Some(isolation) = testing::forced(mechanism) else {
            continue;
        };
        let out = run(isolation);
        assert!(
            matches!(
                client::request(&paths, &Request::Status),
                Some(Reply::Status(_))
            ),
            "under {}, the daemon still serves: {}",
            mechanism.label(),
            out.output
        );
    }
    // The same command unfenced does reach it: the test can tell.
    run(Isolation::none());
    let status = wait_for("the daemon to stop", || daemon.child.try_wait().unwrap());
    assert!(status.success());
}
