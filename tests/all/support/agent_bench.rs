//! A bench for tests that drive one agent against a provider: a recorder
//! writing a real store in a temp dir, and a work directory for its tools.
//! Each test module adds its own `runner` and jobs on a newtype `Bench` that
//! derefs to [`AgentBench`] (inherent methods of one name would clash).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use memofab::domain::event::RunStarted;
use memofab::domain::policy::Policy;
use memofab::domain::{AgentRole, Event, EventKind, RunId, RunSettings};
use memofab::effects::file_fence::Sandbox;
use memofab::effects::process::Isolation;
use memofab::effects::store::Store;
use memofab::engine::agent::AgentJob;
use memofab::engine::prompts::Prompt;
use memofab::engine::recorder::Recorder;
use memofab::engine::tools::{ToolBox, ToolLimits, ToolSet};
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
            EventKind::RunStarted(RunStarted {
                requirement: requirement.into(),
                repo: dir.path().display().to_string(),
                mainline: "main".into(),
                base_commit: String::new(),
                settings: RunSettings::default(),
            }),
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

    /// A coder working in `work/` with every tool, commands unfenced, their
    /// output capped at `output_cap` bytes.
    pub fn coder_job(&self, first_message: &str, attempt: u32, output_cap: usize) -> AgentJob {
        let toolbox = ToolBox::new(
            Sandbox::new(&self.work(), Policy::protected_only()).expect("sandbox"),
            ToolLimits {
                command_timeout: Duration::from_secs(5),
                output_cap,
                deny_commands: vec![],
                isolation: Isolation::none(),
                max_file_bytes: memofab::effects::git::DEFAULT_MAX_FILE_BYTES,
            },
        );
        AgentJob {
            role: AgentRole::Coder,
            task: None,
            attempt,
            prompt: Prompt {
                text: "You code.".into(),
                source: "test".into(),
            },
            first_message: first_message.into(),
            toolbox: Some((Arc::new(toolbox), ToolBox::specs(ToolSet::Coder))),
            submit: None,
        }
    }
}
