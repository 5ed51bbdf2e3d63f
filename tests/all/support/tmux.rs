//! A real terminal for end-to-end tests: a private tmux server (its own
//! socket, no user config) with one session whose pane runs a command line.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A tmux socket name of its own for each server: all test modules share
/// one process, so the pid alone does not tell two servers apart.
pub fn socket_name(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("memofab-{label}-{}-{n}", std::process::id())
}

pub struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// A tmux server of this test's own; `None` (and a note) where tmux is
    /// not installed, which CI does not allow.
    pub fn new(session: &str) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is required in CI (.ci/run installs it)"
            );
            eprintln!("skipping: tmux is not installed");
            return None;
        }
        Some(Self {
            socket: socket_name(session),
            session: session.to_owned(),
        })
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pane(&self) -> String {
        format!("{}:0", self.session)
    }

    /// Starts `line` in a 160x45 pane, replacing whatever ran there.
    pub fn start(&self, line: &str) {
        self.run(&["kill-session", "-t", &self.session]);
        self.run(&[
            "new-session",
            "-d",
            "-s",
            &self.session,
            "-x",
            "160",
            "-y",
            "45",
            line,
        ]);
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", &self.pane()])
    }

    pub fn keys(&self, keys: &[&str]) {
        let pane = self.pane();
        let mut args = vec!["send-keys", "-t", pane.as_str()];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Polls the screen until `check` holds; fails with the screen at the
    /// deadline.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The server leaves its socket file behind; remove it too.
        let socket = self.run(&["display-message", "-p", "#{socket_path}"]);
        self.run(&["kill-server"]);
        if !socket.trim().is_empty() {
            let _ = std::fs::remove_file(socket.trim());
        }
    }
}

#[test]
fn two_servers_under_one_label_get_two_sockets() {
    assert_ne!(socket_name("same"), socket_name("same"));
}
