//! Shared helpers for factory integration tests: a demo repository in a temp
//! dir, a run of the real engine on it, and readers for the results.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memofab::config::Config;
use memofab::domain::{Event, RunId, RunState};
use memofab::effects::git::GitRepo;
use memofab::effects::store::Store;
use memofab::engine::context::ProviderSet;
use memofab::engine::demo_seed::{embedded_seed, prepare_repo};
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::{self, RunRequest, store_path};
use memofab::llm::scenario::Scenario;
use memofab::llm::scripted::ScriptedProvider;
use tokio::sync::mpsc;

pub struct DemoRepo {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub scenario: Scenario,
}

pub fn demo_repo() -> DemoRepo {
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario = Scenario::demo().expect("embedded scenario parses");
    let repo =
        prepare_repo(&dir.path().join("demo"), &scenario, &embedded_seed()).expect("demo repo");
    DemoRepo {
        dir,
        repo,
        scenario,
    }
}

/// A repository for the scenario `tests/fixtures/<fixture>` (say
/// `hygiene/lazy.toml`), seeded with a one-line README.
pub fn fixture_repo(fixture: &str) -> DemoRepo {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let scenario = Scenario::load(&path).expect("fixture scenario parses");
    let seed = vec![("README.md".to_owned(), b"# A project\n".to_vec())];
    let repo = prepare_repo(&dir.path().join("repo"), &scenario, &seed).expect("fixture repo");
    DemoRepo {
        dir,
        repo,
        scenario,
    }
}

/// Config from the project's file only, so a developer's own config cannot
/// change what the tests see.
pub fn project_config(repo: &Path) -> Config {
    Config::load(&[repo.join(".memofab").join("config.toml")]).expect("config")
}

/// Every role on the demo's scripted scenario.
pub fn scripted(demo: &DemoRepo) -> ProviderSet {
    ProviderSet::uniform(
        Arc::new(ScriptedProvider::new(Arc::new(demo.scenario.clone()))),
        "scripted",
    )
}

/// A run of the demo's requirement on its repository.
pub fn demo_request(
    demo: &DemoRepo,
    providers: ProviderSet,
    steering: Steering,
    auto_approve: bool,
) -> RunRequest {
    RunRequest {
        repo: demo.repo.clone(),
        requirement: demo.scenario.requirement.clone(),
        config: project_config(&demo.repo),
        providers,
        provider_label: "scripted".into(),
        scenario: None,
        auto_approve,
        await_spec: false,
        steering,
        crash_after: None,
        run_id: None,
        agent_slots: None,
    }
}

pub async fn run_demo(demo: &DemoRepo) -> RunState {
    run_headless(demo_request(demo, scripted(demo), Steering::Headless, true)).await
}

/// Starts `request` with nobody reading its updates or sending commands,
/// and waits (four minutes at most) for the run to end.
pub async fn run_headless(request: RunRequest) -> RunState {
    let (updates, mut rx) = mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (_commands, commands_rx) = mpsc::unbounded_channel();
    let state = tokio::time::timeout(
        std::time::Duration::from_secs(240),
        session::start(request, updates, commands_rx),
    )
    .await
    .expect("the run finishes")
    .expect("the run succeeds");
    drain.abort();
    state
}

pub fn stored_events(repo: &Path, run: &RunId) -> Vec<Event> {
    Store::open(&store_path(repo))
        .expect("store")
        .events(run)
        .expect("events")
}

pub fn only_run(repo: &Path) -> RunId {
    latest_run(repo).expect("a run")
}

/// The latest run, if one is recorded yet: for polling a run another
/// process is starting (its store may exist before its first event).
pub fn latest_run(repo: &Path) -> Option<RunId> {
    let store = Store::open(&store_path(repo)).expect("store");
    store.latest_run().expect("runs")
}

pub fn mainline_tree(repo: &Path) -> Vec<(String, Vec<u8>)> {
    let git = GitRepo::open(repo).expect("repo");
    let files = git.list_files_at("main").expect("files");
    files
        .into_iter()
        .map(|f| {
            let content = git
                .read_file_at("main", &f)
                .expect("read")
                .unwrap_or_default();
            (f, content)
        })
        .collect()
}

pub fn memofab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_memofab"))
}

/// `memofab demo --headless <flags> --dir repo` in the background, its
/// stderr kept for the test to read, its config from `xdg` only.
pub fn spawn_headless_demo(repo: &Path, xdg: &Path, flags: &[&str]) -> std::process::Child {
    std::process::Command::new(memofab_bin())
        .args(["demo", "--headless"])
        .args(flags)
        .arg("--dir")
        .arg(repo)
        .env("XDG_CONFIG_HOME", xdg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("memofab starts")
}

/// `memofab resume --headless` on the latest run in `dir`, without the
/// developer's own config.
/// `memofab resume --headless` of the run in `dir`; a resume that has not
/// ended within five minutes (waiting for a human it will never get) fails
/// the test instead of hanging the suite.
pub fn resume(dir: &Path) -> std::process::Output {
    let mut command = std::process::Command::new(memofab_bin());
    command
        .args(["resume", "--headless", "--repo"])
        .arg(dir)
        .env("XDG_CONFIG_HOME", dir.join("no-user-config"));
    output_within(command, std::time::Duration::from_secs(300))
}

/// What `command` printed to stderr and how it ended; killed, and the test
/// failed, if it has not ended within `limit`. Its stdout is not kept.
pub fn output_within(
    mut command: std::process::Command,
    limit: std::time::Duration,
) -> std::process::Output {
    let errors = tempfile::NamedTempFile::new().expect("a temp file");
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(errors.reopen().expect("the temp file"))
        .spawn()
        .expect("memofab starts");
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("memofab's status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} still running after {limit:?}: {}",
                std::fs::read_to_string(errors.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr: std::fs::read(errors.path()).expect("stderr kept"),
    }
}

pub fn fold(events: &[Event]) -> RunState {
    RunState::fold(events).expect("events fold").expect("a run")
}
