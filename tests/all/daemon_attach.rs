//! Cockpits attached to the real daemon (`memofab serve` on a temp
//! MEMOFAB_HOME): a cockpit waiting for a run follows it when it starts,
//! two attach at once, one detaches and re-attaches to the same state, a
//! command sent by one moves the run, and no detach interrupts it. Then the
//! same in a real terminal: `memofab` in tmux attaches, approves the gate
//! with one key, and `q` detaches while the daemon finishes the run.

use crate::support::{daemon, factory, tmux};

use std::time::Duration;

use daemon::{Daemon, Home, on_mainline, scripted_repo, wait_for};
use factory::{DemoRepo, fold, stored_events};
use memofab::daemon::protocol::Request;
use memofab::domain::event::{GateDecision, RunInterrupted};
use memofab::domain::queue::ItemState;
use memofab::domain::{Event, EventKind, RunId, RunState, TaskState};
use memofab::protocol::Command;
use tmux::Tmux;

/// How long the terminal may take to show what is waited for.
const TERMINAL: Duration = Duration::from_secs(60);

fn at_gate(state: &RunState) -> bool {
    state.count(TaskState::AwaitingGate) == 1
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn interrupted(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e.kind, EventKind::RunInterrupted(RunInterrupted {})))
}

/// The only entry, once finished.
fn entry_done(home: &Home) -> Option<()> {
    let entries = home.entries();
    assert!(
        entries.iter().all(|e| e.state != ItemState::Failed),
        "{entries:?}"
    );
    (entries.len() == 1 && entries[0].state == ItemState::Done).then_some(())
}

#[test]
fn cockpits_attach_detach_and_reattach_while_the_daemon_runs_on() {
    let home = Home::new();
    let gated = scripted_repo("hygiene/gated.toml");
    home.add_repo(&gated);
    let _daemon = home.serve();

    // Attached before anything is queued: it waits, then follows the run.
    let mut first = home.attach(&gated.repo);
    assert_eq!(first.attached(), None);
    home.submit(&gated);
    let run = first.attached().expect("the run the daemon started");
    first.until(at_gate);

    // A second cockpit at once, caught up from the store.
    let mut second = home.attach(&gated.repo);
    assert_eq!(second.attached(), Some(run.clone()));
    second.until(at_gate);
    let stored = stored_events(&gated.repo, &run);
    first.until_count(stored.len());
    second.until_count(stored.len());
    assert_eq!(seqs(&first.events), seqs(&stored));
    assert_eq!(first.events, second.events);
    assert_eq!(first.state(), fold(&stored));

    // Detach, re-attach: the same state, nothing twice, nothing missing.
    let before = first.state();
    drop(first);
    let mut again = home.attach(&gated.repo);
    assert_eq!(again.attached(), Some(run.clone()));
    again.until_count(stored.len());
    assert_eq!(seqs(&again.events), seqs(&stored));
    assert_eq!(again.state(), before);

    // A cockpit never stops the run: a shutdown from one is refused.
    again.send(&Request::Command(Command::Shutdown));
    // One cockpit's approval moves the task on; the run finishes.
    second.send(&Request::Command(Command::ApproveGate {
        task: "note".into(),
    }));
    let finished = second.until(|s| s.phase.is_over());
    assert!(
        finished
            .tasks()
            .iter()
            .all(|t| t.state == TaskState::Merged)
    );
    drop(again);
    drop(second);
    wait_for("the entry done", || entry_done(&home));
    assert!(on_mainline(&gated.repo, "note.txt"));
    let stored = stored_events(&gated.repo, &run);
    assert!(!interrupted(&stored), "no detach interrupted the run");
    // The attached cockpit's approval is recorded as the cockpit's.
    assert!(stored.iter().any(|e| matches!(
        &e.kind,
        EventKind::GateDecision(GateDecision {
            approved: true,
            by: memofab::domain::Decider::Cockpit,
            ..
        })
    )));
    assert_eq!(fold(&stored), finished);
}

/// A daemon whose run waits at its gate, and `memofab` in tmux attached
/// to it, showing the gate.
fn attached_at_gate(tmux: &Tmux) -> (Home, DemoRepo, Daemon, RunId) {
    let home = Home::new();
    let (gated, daemon, run) = home.run_at_gate();
    tmux.start(&home.cockpit_line(&gated.repo));
    tmux.wait_for("the attached cockpit at the gate", TERMINAL, |s| {
        s.contains("attached to the daemon") && s.contains("1 at gate")
    });
    (home, gated, daemon, run)
}

#[test]
fn memofab_in_a_terminal_attaches_approves_the_gate_and_detaches() {
    let Some(tmux) = Tmux::new("attach") else {
        return;
    };
    let (home, gated, _daemon, run) = attached_at_gate(&tmux);
    tmux.keys(&["a"]);
    tmux.wait_for("the gate passed", TERMINAL, |s| !s.contains("1 at gate"));
    tmux.keys(&["q"]);
    tmux.wait_for("the detach question", TERMINAL, |s| {
        s.contains("Detach from the daemon?")
    });
    tmux.keys(&["q"]);
    let exited = tmux.wait_for("the cockpit to exit", TERMINAL, |s| {
        s.contains("MEMOFAB-EXITED-")
    });
    assert!(exited.contains("MEMOFAB-EXITED-0"), "{exited}");
    assert!(exited.contains("detached"), "{exited}");

    wait_for("the entry done", || entry_done(&home));
    assert!(
        on_mainline(&gated.repo, "note.txt"),
        "the work is on mainline"
    );
    assert!(
        !interrupted(&stored_events(&gated.repo, &run)),
        "detaching interrupted nothing"
    );
}

#[test]
fn a_cockpit_whose_daemon_dies_says_so_and_exits_non_zero() {
    let Some(tmux) = Tmux::new("attach-lost") else {
        return;
    };
    let (_home, gated, daemon, run) = attached_at_gate(&tmux);
    drop(daemon); // kill -9
    tmux.wait_for("the lost connection", TERMINAL, |s| {
        s.contains("daemon connection lost")
    });
    tmux.keys(&["q"]);
    let exited = tmux.wait_for("the cockpit to exit", TERMINAL, |s| {
        s.contains("MEMOFAB-EXITED-")
    });
    assert!(exited.contains("MEMOFAB-EXITED-1"), "{exited}");
    assert!(
        at_gate(&fold(&stored_events(&gated.repo, &run))),
        "the run still waits at its gate, for the next daemon"
    );
}
