//! End to end, as a newcomer follows the README: a fresh repository, a
//! local OpenAI-compatible server (a fake on 127.0.0.1, found by `memofab
//! init` as a llama.cpp server), `memofab` in a real terminal (tmux) where
//! the requirement is typed and submitted, the gated merge approved with one
//! key, `q`; then `memofab runs`, `memofab replay RUN` playing, and
//! `memofab export RUN`.

use crate::support::{factory, fake_llm, scenario_server, tmux};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factory::{memofab_bin, only_run};
use fake_llm::{FakeServer, Reply};
use memofab::domain::event::GateDecision;
use memofab::domain::{RunId, RunPhase, TaskState};
use memofab::llm::scenario::Scenario;
use scenario_server::Router;
use tmux::Tmux;

/// What the fake model does: plans one task writing `docs/greeting.md`
/// (which the policy gates), writes it, and approves plan and code.
const SCENARIO: &str = r##"
name = "newcomer"

[[conversation]]
role = "planner"
  [[conversation.turn]]
  text = "One small task."
  [[conversation.turn.call]]
  tool = "submit_blueprint"
  args = { title = "A greeting for newcomers", tasks = [
    { id = "greeting", title = "Write the greeting", description = "Write docs/greeting.md welcoming newcomers.", acceptance = ["docs/greeting.md says hello"], paths = ["docs/greeting.md"], depends_on = [] },
  ] }

[[conversation]]
role = "plan_reviewer"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "submit_review"
  args = { approved = true, feedback = "One task covers it." }

[[conversation]]
role = "coder"
  [[conversation.turn]]
  text = "Writing the greeting."
  [[conversation.turn.call]]
  tool = "write_file"
  args = { path = "docs/greeting.md", content = "# Hello\n\nWelcome, newcomer.\n" }

  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "finish"
  args = { summary = "Wrote docs/greeting.md." }

[[conversation]]
role = "reviewer"
  [[conversation.turn]]
  [[conversation.turn.call]]
  tool = "submit_review"
  args = { approved = true, feedback = "Looks good." }
"##;

const TASK: &str = "greeting";
const TASK_FILE: &str = "docs/greeting.md";

/// A machine of the newcomer's own: a home with git's identity and nothing
/// of memofab's, and no API keys, so only the local server is found.
struct Machine {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    repo: PathBuf,
}

impl Machine {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let repo = tmp.path().join("project");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = Newcomer\n\temail = newcomer@example.invalid\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        Self {
            home,
            repo,
            _tmp: tmp,
        }
    }

    /// The variables every command here runs with (in tmux too).
    fn env(&self, server: &str) -> Vec<(&'static str, String)> {
        vec![
            ("HOME", self.home.display().to_string()),
            (
                "XDG_CONFIG_HOME",
                self.home.join(".config").display().to_string(),
            ),
            (
                "XDG_DATA_HOME",
                self.home.join(".local/share").display().to_string(),
            ),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            // Nothing answers here: the newcomer has no Ollama.
            ("MEMOFAB_OLLAMA_URL", "http://127.0.0.1:9".into()),
            ("MEMOFAB_LLAMACPP_URL", server.to_owned()),
        ]
    }

    fn command(&self, server: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.repo)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .envs(self.env(server));
        cmd
    }

    fn git(&self, server: &str, args: &[&str]) -> Output {
        let out = self.command(server, "git").args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        out
    }

    fn memofab(&self, server: &str, args: &[&str]) -> Output {
        self.command(server, memofab_bin())
            .args(args)
            .output()
            .unwrap()
    }

    /// A shell command line running `memofab args` in the repository with
    /// this machine's environment, for tmux.
    fn memofab_line(&self, server: &str, args: &str) -> String {
        let vars: String = self
            .env(server)
            .iter()
            .map(|(k, v)| format!("{k}='{v}' "))
            .collect();
        format!(
            "cd '{}' && env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY {vars}'{}' {args}; \
             echo MEMOFAB-EXITED-$?; sleep 600",
            self.repo.display(),
            memofab_bin().display()
        )
    }
}

/// Waits for `check` on the stored state of the repository's latest run.
fn wait_for_run(
    repo: &Path,
    tmux: &Tmux,
    what: &str,
    timeout: Duration,
    check: impl Fn(&memofab::domain::RunState) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if stored(repo).is_some_and(|s| check(&s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stored(repo: &Path) -> Option<memofab::domain::RunState> {
    let db = repo.join(".memofab/memofab.db");
    if !db.exists() {
        return None;
    }
    let run = memofab::effects::store::Store::open(&db)
        .ok()?
        .latest_run()
        .ok()??;
    memofab::engine::run::session::stored_state(repo, &run).ok()
}

fn task_state(state: &memofab::domain::RunState) -> Option<TaskState> {
    state.task(&TASK.into()).map(|t| t.state)
}

/// The replay's cursor, from "event N of M" in its status line.
fn cursor(screen: &str) -> Option<(usize, usize)> {
    let rest = screen.split(" event ").nth(1)?;
    let mut words = rest.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next()? == "of").then_some(())?;
    let m = words.next()?.parse().ok()?;
    Some((n, m))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_newcomer_follows_the_readme_from_init_to_export() {
    let Some(tmux) = Tmux::new("newcomer") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let router = Arc::new(Router::new(
        Scenario::parse(SCENARIO, "the newcomer scenario").unwrap(),
    ));
    // A llama.cpp-like server: its one model at /v1/models, `doctor`'s
    // tool-call probe answered with a proper call, the agents' chat
    // completions streamed from the scenario.
    let server = runtime.block_on(FakeServer::start(vec![Reply::Dynamic(Arc::new(
        move |req| {
            if req.head.starts_with("GET /v1/models") {
                vec![
                    br#"{"object":"list","data":[{"id":"local-coder","object":"model"}]}"#.to_vec(),
                ]
            } else if req.body.contains("You are a health check.") {
                fake_llm::sse(&[
                    r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"ping","arguments":"{\"message\":\"hi\"}"}}]},"finish_reason":"tool_calls"}]}"#
                        .into(),
                    "[DONE]".into(),
                ])
                .chunks(7)
                .map(<[u8]>::to_vec)
                .collect()
            } else {
                router.reply(&req.json())
            }
        },
    ))]));
    let url = server.url();
    let machine = Machine::new();
    let repo = &machine.repo;

    // A tiny project with its tests behind `make test`, one commit.
    std::fs::write(repo.join("Makefile"), "test:\n\tsh check.sh\n").unwrap();
    std::fs::write(repo.join("check.sh"), "test -f Makefile\n").unwrap();
    machine.git(&url, &["init", "-q", "-b", "main"]);
    machine.git(&url, &["add", "-A"]);
    machine.git(&url, &["commit", "-q", "-m", "A tiny project"]);
    let first = machine.git(&url, &["rev-parse", "main"]).stdout;

    // `memofab init` finds the local server and the test command.
    let init = machine.memofab(&url, &["init"]);
    assert!(init.status.success(), "{}", text(&init));
    let config = std::fs::read_to_string(repo.join(".memofab/config.toml")).unwrap();
    assert!(
        config.contains(&format!("base_url = \"{url}/v1\"")),
        "{config}"
    );
    assert!(config.contains("model = \"local-coder\""), "{config}");
    assert!(config.contains("test_command = \"make test\""), "{config}");
    // The newcomer gates the docs, as the commented policy shows.
    let mut policy = std::fs::read_to_string(repo.join(".memofab/policy.toml")).unwrap();
    policy.push_str(
        "\n[[rule]]\npaths = [\"docs/**\"]\nrisk = \"approve\"\nreason = \"docs are read by a human first\"\n",
    );
    std::fs::write(repo.join(".memofab/policy.toml"), policy).unwrap();
    let doctor = machine.memofab(&url, &["doctor"]);
    assert!(doctor.status.success(), "{}", text(&doctor));

    // `memofab`: the cockpit opens on the spec editor.
    tmux.start(&machine.memofab_line(&url, ""));
    tmux.wait_for("the spec editor", Duration::from_secs(60), |s| {
        s.contains("Requirement") && s.contains("Ctrl-S start planning")
    });
    tmux.keys(&["-l", "Write docs/greeting.md welcoming newcomers."]);
    tmux.wait_for("the requirement typed", Duration::from_secs(10), |s| {
        s.contains("welcoming newcomers.")
    });
    tmux.keys(&["C-s"]);

    wait_for_run(
        repo,
        &tmux,
        "the task to wait at the gate",
        Duration::from_secs(120),
        |s| task_state(s) == Some(TaskState::AwaitingGate),
    );
    tmux.wait_for("the gate on screen", Duration::from_secs(20), |s| {
        s.contains("awaiting_gate")
    });
    // One key approves it.
    tmux.keys(&["a"]);
    wait_for_run(
        repo,
        &tmux,
        "the task to merge and the run to finish",
        Duration::from_secs(120),
        |s| task_state(s) == Some(TaskState::Merged) && s.phase == RunPhase::Finished,
    );
    tmux.wait_for(
        "the screen to show the merge",
        Duration::from_secs(20),
        |s| s.contains("merged 1/1"),
    );
    tmux.keys(&["q"]);
    let exited = tmux.wait_for("the cockpit to exit", Duration::from_secs(30), |s| {
        s.contains("MEMOFAB-EXITED-")
    });
    assert!(exited.contains("MEMOFAB-EXITED-0"), "{exited}");
    assert!(exited.contains("1 merged of 1"), "{exited}");

    // Mainline moved and holds the task's file; the checkout followed it
    // and is clean.
    let run = only_run(repo);
    let head = machine.git(&url, &["rev-parse", "main"]).stdout;
    assert_ne!(head, first, "mainline did not move");
    let file = machine
        .git(&url, &["show", &format!("main:{TASK_FILE}")])
        .stdout;
    assert_eq!(
        String::from_utf8_lossy(&file),
        "# Hello\n\nWelcome, newcomer.\n"
    );
    let status = machine.git(&url, &["status", "--porcelain"]).stdout;
    assert!(status.is_empty(), "{}", String::from_utf8_lossy(&status));
    assert!(
        repo.join(TASK_FILE).exists(),
        "the checkout did not follow mainline"
    );
    let state = stored(repo).unwrap();
    assert_eq!(state.phase, RunPhase::Finished);
    let events = factory::stored_events(repo, &run);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        memofab::domain::EventKind::GateDecision(GateDecision { approved: true, by, .. }) if by.is_human()
    )));

    // `memofab runs` lists it, finished.
    let runs = machine.memofab(&url, &["runs"]);
    assert!(runs.status.success(), "{}", text(&runs));
    let listed = String::from_utf8_lossy(&runs.stdout).into_owned();
    let line = listed
        .lines()
        .find(|l| l.starts_with(run.as_str()))
        .unwrap_or_else(|| panic!("{run} not listed:\n{listed}"));
    assert!(line.contains(" finished "), "{line}");
    assert!(line.contains("Write docs/greeting.md"), "{line}");

    replay_plays(&machine, &tmux, &url, &run);

    // `memofab export RUN`: the record names the task and its merge.
    let export = machine.memofab(&url, &["export", run.as_str()]);
    assert!(export.status.success(), "{}", text(&export));
    let markdown = String::from_utf8_lossy(&export.stdout).into_owned();
    assert!(markdown.contains(TASK), "{markdown}");
    assert!(
        markdown.contains(&format!("{TASK}: merged onto mainline")),
        "{markdown}"
    );
    drop(server);
}

/// `memofab replay RUN`: space plays, and the cursor moves on its own.
fn replay_plays(machine: &Machine, tmux: &Tmux, url: &str, run: &RunId) {
    tmux.start(&machine.memofab_line(url, &format!("replay {run}")));
    let paused = tmux.wait_for("the replay", Duration::from_secs(60), |s| {
        cursor(s).is_some()
    });
    let (at, total) = cursor(&paused).unwrap();
    // It opens paused at the start: only playing moves the cursor on.
    assert!(paused.contains("⏸") && at < total && total > 10, "{paused}");
    tmux.keys(&["Space"]);
    let played = tmux.wait_for(
        "playback to move the cursor",
        Duration::from_secs(60),
        |s| cursor(s).is_some_and(|(n, _)| n > at),
    );
    // The same run, further on.
    assert_eq!(cursor(&played).map(|(_, m)| m), Some(total), "{played}");
    tmux.keys(&["q"]);
    let exited = tmux.wait_for("the replay to exit", Duration::from_secs(30), |s| {
        s.contains("MEMOFAB-EXITED-")
    });
    assert!(exited.contains("MEMOFAB-EXITED-0"), "{exited}");
}
