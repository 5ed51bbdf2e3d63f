//! A daemon for integration tests: `memofab serve` (the real binary) on a
//! temp MEMOFAB_HOME, repositories whose config names the scripted
//! provider, and a cockpit speaking the socket protocol.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use memofab::daemon::protocol::{Reply, Request};
use memofab::domain::queue::QueuedRequirement;
use memofab::domain::{Event, RunId, RunState};
use memofab::effects::queue::Queue;

use super::factory::{DemoRepo, fixture_repo, memofab_bin};

/// Long enough for a scripted run on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(180);

/// The daemon's home and a user config dir with nothing in it.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The environment every memofab command here runs with.
    pub fn env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("MEMOFAB_HOME", self.path()),
            ("XDG_CONFIG_HOME", self.dir.path().join("xdg")),
        ]
    }

    pub fn command(&self, cwd: &Path) -> Command {
        let mut command = Command::new(memofab_bin());
        command
            .current_dir(cwd)
            .envs(self.env())
            .stdin(Stdio::null());
        command
    }

    /// A shell line for a terminal: `memofab` (the cockpit) in `repo` with
    /// this home's environment, then its exit code as `MEMOFAB-EXITED-N`.
    pub fn cockpit_line(&self, repo: &Path) -> String {
        let vars: String = self
            .env()
            .iter()
            .map(|(k, v)| format!("{k}='{}' ", v.display()))
            .collect();
        format!(
            "cd '{}' && env {vars}'{}'; echo MEMOFAB-EXITED-$?; sleep 600",
            repo.display(),
            memofab_bin().display()
        )
    }

    pub fn memofab(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(cwd).args(args).output().unwrap()
    }

    /// `memofab serve`, once it says it listens.
    pub fn serve(&self) -> Daemon {
        self.serve_with(None)
    }

    /// `memofab --config FILE serve` (without `--config` if none).
    pub fn serve_with(&self, config: Option<&Path>) -> Daemon {
        let mut command = self.command(self.dir.path());
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        // Its stderr is kept beside its log, for a failing test to read.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.stderr"))
            .unwrap();
        let mut child = command
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.contains("listening on") && line.contains(&child.id().to_string()),
            "serve says where it listens: {line:?}"
        );
        Daemon { child, stdout }
    }

    pub fn queue(&self) -> Queue {
        Queue::open(&self.path().join("queue.sqlite")).unwrap()
    }

    pub fn entries(&self) -> Vec<QueuedRequirement> {
        self.queue().entries(&[]).unwrap()
    }

    pub fn add_repo(&self, demo: &DemoRepo) {
        let out = self.memofab(&demo.repo, &["repo", "add", demo.repo.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    pub fn submit(&self, demo: &DemoRepo) {
        let out = self.memofab(
            &demo.repo,
            &["submit", "--requirement-text", &demo.scenario.requirement],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// The gated fixture registered and served, its run waiting at its gate.
    pub fn run_at_gate(&self) -> (DemoRepo, Daemon, RunId) {
        use super::factory::{fold, latest_run, stored_events};
        let gated = scripted_repo("hygiene/gated.toml");
        self.add_repo(&gated);
        let daemon = self.serve();
        self.submit(&gated);
        let run = wait_for("the run", || latest_run(&gated.repo));
        wait_for("the gate", || {
            let state = fold(&stored_events(&gated.repo, &run));
            (state.count(memofab::domain::TaskState::AwaitingGate) == 1).then_some(())
        });
        (gated, daemon, run)
    }

    /// A cockpit attached over the socket to the run of `repo`.
    pub fn attach(&self, repo: &Path) -> Cockpit {
        let stream = UnixStream::connect(self.path().join("daemon.sock")).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut cockpit = Cockpit {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            events: Vec::new(),
        };
        cockpit.send(&Request::Attach {
            repo: repo.to_owned(),
        });
        cockpit
    }
}

pub struct Daemon {
    pub child: Child,
    // Held open: the daemon may say more.
    stdout: BufReader<std::process::ChildStdout>,
}

impl Daemon {
    /// The lines the daemon printed since the last call, up to the first
    /// that contains `needle` (which must come: it is read blocking).
    pub fn said_until(&mut self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "the daemon never said {needle:?}; it said {lines:#?}"
            );
            let found = line.contains(needle);
            lines.push(line.trim_end().to_owned());
            if found {
                return lines;
            }
        }
    }

    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fixture repository whose config names the scripted provider on its
/// scenario, as a user's repository names its provider.
pub fn scripted_repo(fixture: &str) -> DemoRepo {
    let demo = fixture_repo(fixture);
    name_scripted_provider(&demo, fixture);
    demo
}

/// Names the scripted provider on the fixture's scenario in the
/// repository's config.
pub fn name_scripted_provider(demo: &DemoRepo, fixture: &str) {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let config = demo.repo.join(".memofab/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[roles.default]\nprovider = \"scripted\"\n[providers.scripted]\nkind = \"scripted\"\nscenario = {:?}\n",
        scenario.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
}

/// Whether `file` is on the repository's mainline (`main`).
pub fn on_mainline(repo: &Path, file: &str) -> bool {
    memofab::effects::git::GitRepo::open(repo)
        .unwrap()
        .read_file_at("main", file)
        .unwrap()
        .is_some()
}

/// Polls `check` until it gives a value, failing the test at the deadline.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test client speaking the socket protocol as the cockpit's bridge does.
pub struct Cockpit {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The run's events received, in order.
    pub events: Vec<Event>,
}

impl Cockpit {
    pub fn send(&mut self, request: &Request) {
        let mut line = serde_json::to_string(request).unwrap();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).unwrap();
    }

    /// The next reply; events are also kept in `events`.
    pub fn next(&mut self) -> Reply {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the daemon closed the connection");
        let reply: Reply = serde_json::from_str(&line).unwrap();
        if let Reply::Update(memofab::protocol::EngineUpdate::Event(event)) = &reply {
            self.events.push(event.clone());
        }
        reply
    }

    /// Reads until the cockpit is told which run it follows.
    pub fn attached(&mut self) -> Option<RunId> {
        loop {
            if let Reply::Attached { run } = self.next() {
                return run;
            }
        }
    }

    /// The state folded from the events received.
    pub fn state(&self) -> RunState {
        RunState::fold(&self.events).unwrap().unwrap()
    }

    /// Reads until the folded state satisfies `done`.
    pub fn until(&mut self, done: impl Fn(&RunState) -> bool) -> RunState {
        loop {
            if !self.events.is_empty() && done(&self.state()) {
                return self.state();
            }
            self.next();
        }
    }

    /// Reads until it has received `n` events.
    pub fn until_count(&mut self, n: usize) {
        while self.events.len() < n {
            self.next();
        }
    }
}
