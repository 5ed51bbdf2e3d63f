//! A bench for tests that drive one agent against a provider: a recorder
//! writing a real store in a temp dir, and a work directory for its tools.
//! Each test file adds its own `runner` and jobs in an `impl AgentBench`.
#![allow(dead_code)]

use std::path::PathBuf;

use memofab::domain::{Event, EventKind, RunId, RunSettings};
use memofab::effects::store::Store;
use memofab::engine::recorder::Recorder;
use memofab::protocol::EngineUpdate;
use tokio::sync::mpsc::UnboundedReceiver;

pub struct AgentBench {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub recorder: Recorder,
    pub run: RunId,
    pub updates: UnboundedReceiver<EngineUpdate>,
}

impl AgentBench {
    /// A run started with `requirement`, its store and `work/` in a temp dir.
    pub fn new(requirement: &str) -> AgentBench {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("events.sqlite");
        std::fs::create_dir(dir.path().join("work")).expect("work dir");
        let run = RunId::generate();
        let (tx, updates) = tokio::sync::mpsc::unbounded_channel();
        let recorder = Recorder::start(
            Store::open(&store).expect("store"),
            run.clone(),
            EventKind::RunStarted {
                requirement: requirement.into(),
                repo: dir.path().display().to_string(),
                mainline: "main".into(),
                base_commit: String::new(),
                settings: RunSettings::default(),
            },
            tx,
        )
        .expect("run started");
        AgentBench {
            dir,
            store,
            recorder,
            run,
            updates,
        }
    }

    /// Every event stored so far, read back from the store.
    pub fn events(&self) -> Vec<Event> {
        Store::open(&self.store)
            .expect("store")
            .events(&self.run)
            .expect("events")
    }

    /// Where the agent's tools work.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }
}
