//! An interactive run of the real engine driven like the cockpit drives it:
//! updates read and folded, commands sent.

use std::time::{Duration, Instant};

use memofab::domain::{Event, RunState};
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::{self, RunRequest};
use memofab::protocol::{Command, EngineUpdate};
use tokio::sync::mpsc;

use super::factory::{DemoRepo, demo_request, scripted};

pub struct Interactive {
    pub updates: mpsc::UnboundedReceiver<EngineUpdate>,
    pub commands: mpsc::UnboundedSender<Command>,
    pub engine: tokio::task::JoinHandle<memofab::engine::EngineResult<RunState>>,
    pub events: Vec<Event>,
    pub state: Option<RunState>,
}

impl Interactive {
    pub async fn start(demo: &DemoRepo) -> Self {
        Self::with(demo_request(
            demo,
            scripted(demo),
            Steering::Interactive,
            true,
        ))
    }

    pub fn with(request: RunRequest) -> Self {
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let engine = tokio::spawn(session::start(request, updates_tx, commands_rx));
        Self {
            updates,
            commands,
            engine,
            events: Vec::new(),
            state: None,
        }
    }

    /// Reads updates until `done` holds for the folded state.
    pub async fn until(&mut self, what: &str, done: impl Fn(&RunState, &[Event]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(state) = &self.state
                && done(state, &self.events)
            {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let update = match tokio::time::timeout(left, self.updates.recv()).await {
                Ok(Some(update)) => update,
                Ok(None) => {
                    let handle = std::mem::replace(
                        &mut self.engine,
                        tokio::spawn(async { Err(memofab::engine::EngineError::Shutdown) }),
                    );
                    let result = handle.await.unwrap();
                    panic!(
                        "the engine stopped while waiting for {what}: {:?}",
                        result.err()
                    );
                }
                Err(_) => {
                    let states: Vec<String> = self
                        .state
                        .iter()
                        .flat_map(|s| s.tasks().iter().map(|t| format!("{}={}", t.id(), t.state)))
                        .collect();
                    let recent: Vec<String> = self
                        .events
                        .iter()
                        .rev()
                        .take(12)
                        .rev()
                        .map(|e| format!("{:?}", e.kind).chars().take(200).collect())
                        .collect();
                    panic!(
                        "timed out waiting for {what}; tasks {states:?}; recent events {recent:#?}"
                    )
                }
            };
            if let EngineUpdate::Event(event) = update {
                match &mut self.state {
                    None => self.state = Some(RunState::start(&event).unwrap()),
                    Some(s) => s.apply(&event).unwrap(),
                }
                self.events.push(event);
            }
        }
    }

    pub fn send(&self, command: Command) {
        self.commands.send(command).unwrap();
    }

    pub async fn shutdown(self) -> RunState {
        self.send(Command::Shutdown);
        self.engine.await.unwrap().unwrap()
    }
}
