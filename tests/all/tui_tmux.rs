//! End to end: the real binary in a real terminal (tmux). `memofab demo`
//! runs in the cockpit until the docs task waits at the gate; one `a`
//! approves it; the task merges and the screen says so.

use crate::support::factory;
use crate::support::tmux::socket_name;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use factory::*;
use memofab::domain::TaskState;
use memofab::domain::event::GateDecision;

/// The cockpit's window. Another window is in front of it, as when the
/// human works elsewhere, so the terminal bell it rings is flagged.
const COCKPIT: &str = "cockpit:0";

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", COCKPIT])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    screen: impl Fn() -> String,
) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}; screen:\n{}",
            screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn task_state(repo: &Path, task: &str) -> Option<TaskState> {
    if !repo.join(".memofab/memofab.db").exists() {
        return None;
    }
    let run = memofab::effects::store::Store::open(&repo.join(".memofab/memofab.db"))
        .ok()?
        .latest_run()
        .ok()??;
    let state = memofab::engine::run::session::stored_state(repo, &run).ok()?;
    state.task(&task.into()).map(|t| t.state)
}

#[test]
fn approving_a_gated_merge_from_the_inbox_with_one_key() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required in CI (.ci/run installs it)"
        );
        eprintln!("skipping: tmux is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("demo");
    let tmux = Tmux {
        socket: socket_name("test"),
    };
    let command = format!(
        "XDG_CONFIG_HOME={} {} demo --dir {} --pace-ms 0; echo COCKPIT-EXITED-$?; sleep 60",
        tmp.path().join("config").display(),
        memofab_bin().display(),
        repo.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "cockpit",
        "-x",
        "160",
        "-y",
        "45",
        &command,
    ]);
    tmux.run(&["new-window", "-d", "-t", "cockpit:1", "sleep 600"]);
    tmux.run(&["select-window", "-t", "cockpit:1"]);
    let screen = || tmux.screen();

    wait_for(
        "the docs task to wait at the gate",
        Duration::from_secs(60),
        || task_state(&repo, "docs") == Some(TaskState::AwaitingGate),
        screen,
    );
    wait_for(
        "the gate to show on screen",
        Duration::from_secs(10),
        || screen().contains("awaiting_gate") && screen().contains("at gate"),
        screen,
    );

    wait_for(
        "the status bar to point at the inbox",
        Duration::from_secs(10),
        || screen().contains("inbox 1: i"),
        screen,
    );
    // The new inbox item rang the bell in the background window.
    let flags = tmux.run(&[
        "list-windows",
        "-t",
        "cockpit",
        "-F",
        "#{window_index}:#{window_bell_flag}",
    ]);
    assert!(flags.lines().any(|l| l == "0:1"), "no bell: {flags}");
    tmux.run(&["send-keys", "-t", COCKPIT, "i"]);
    wait_for(
        "the inbox to list the gate",
        Duration::from_secs(10),
        || {
            let s = screen();
            s.contains("Waiting on you")
                && s.contains("gate       docs")
                && s.contains("approve the merge")
        },
        screen,
    );
    tmux.run(&["send-keys", "-t", COCKPIT, "Enter"]);
    wait_for(
        "docs to merge",
        Duration::from_secs(30),
        || task_state(&repo, "docs") == Some(TaskState::Merged),
        screen,
    );
    wait_for(
        "the screen to show every task merged",
        Duration::from_secs(10),
        || {
            let s = screen();
            s.contains("merged 6/6")
                && !s.contains("awaiting_gate")
                && s.contains("Nothing waits on you")
        },
        screen,
    );

    tmux.run(&["send-keys", "-t", COCKPIT, "q"]);
    wait_for(
        "the cockpit to exit and print its summary",
        Duration::from_secs(15),
        || screen().contains("COCKPIT-EXITED"),
        screen,
    );
    let after = screen();
    assert!(after.contains("6 merged of 6"), "{after}");
    assert!(after.contains("COCKPIT-EXITED-0"), "all merged: {after}");
    let events = stored_events(&repo, &only_run(&repo));
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        memofab::domain::EventKind::GateDecision(GateDecision {
            approved: true,
            by: memofab::domain::Decider::Cockpit,
            ..
        })
    )));
}

/// The transcript pane's title: the agent it shows.
fn shown_agent(screen: &str) -> Option<String> {
    screen.lines().find_map(|l| {
        let at = l.find(" · following")?;
        let start = l[..at].rfind('┌')?;
        Some(l[start + '┌'.len_utf8()..at].trim().to_owned())
    })
}

#[test]
fn the_demo_is_paced_for_a_person_and_the_transcript_follows_the_work() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required in CI (.ci/run installs it)"
        );
        eprintln!("skipping: tmux is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("demo");
    let tmux = Tmux {
        socket: socket_name("paced"),
    };
    // The default pace: no --pace-ms.
    let command = format!(
        "XDG_CONFIG_HOME={} {} demo --dir {}; echo COCKPIT-EXITED-$?; sleep 60",
        tmp.path().join("config").display(),
        memofab_bin().display(),
        repo.display()
    );
    let started = Instant::now();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "cockpit",
        "-x",
        "160",
        "-y",
        "45",
        &command,
    ]);
    let screen = || tmux.screen();

    // A person has time to look: no gate in the first 25 seconds (a loaded
    // machine only makes it later), and meanwhile the transcript moves on
    // from the first task to the agents at work on the others.
    let mut seen = std::collections::BTreeSet::new();
    while started.elapsed() < Duration::from_secs(25) {
        assert_ne!(
            task_state(&repo, "docs"),
            Some(TaskState::AwaitingGate),
            "the gate came after {:?}",
            started.elapsed()
        );
        if let Some(agent) = shown_agent(&screen()) {
            seen.insert(agent);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for(
        "the transcript to follow an agent of a later task",
        Duration::from_secs(120),
        || {
            if let Some(agent) = shown_agent(&screen()) {
                seen.insert(agent);
            }
            seen.iter().any(|a| {
                ["stats", "slug", "title", "json", "docs"]
                    .iter()
                    .any(|t| a.contains(&format!(":{t}#")))
            })
        },
        screen,
    );

    // Quitting before everything merged: the run is left for `resume`,
    // and the exit code says not everything merged, as headless does.
    tmux.run(&["send-keys", "-t", COCKPIT, "q"]);
    wait_for(
        "the cockpit to exit",
        Duration::from_secs(30),
        || screen().contains("COCKPIT-EXITED"),
        screen,
    );
    let after = screen();
    assert!(after.contains("COCKPIT-EXITED-2"), "{after}");
}
