//! Checkpoints of a stored replay's model, so that going back (a step, a
//! click on the timeline) folds at most `EVERY` events from the nearest one
//! instead of the whole run from its start.
//!
//! They live in memory only, taken while folding forward, every `EVERY`
//! events: a checkpoint is the model a fold of exactly the events before it
//! made, from the same events in the same session, so it can never disagree
//! with them (nothing is stored, nothing migrates). A checkpoint leaves out
//! the transcripts — their text is most of the model and a stored replay
//! shows only one or two — and keeps instead, for each transcript that held
//! its whole conversation there, where it ended (`Mark`): transcripts only
//! grow, so the one on screen is cut back to its mark instead of rebuilt.

use std::collections::HashMap;

use crate::domain::AgentId;
use crate::tui::app::{App, Search};
use crate::tui::transcript::{Mark, Transcript};

/// Events between checkpoints: going back folds at most this many. Folding
/// a light event costs well under a microsecond, so this bounds a step back
/// to a few milliseconds, while 1,000,000 events keep 245 small models.
pub const EVERY: usize = 4096;

/// The model after the first `(i + 1) * EVERY` events.
struct Checkpoint {
    model: App,
    /// Where each complete transcript ended; `None`: the agent had none.
    marks: HashMap<AgentId, Option<Mark>>,
}

pub struct Checkpoints {
    /// Events between two checkpoints (`EVERY` but in tests).
    every: usize,
    /// `saved[i]` is at `(i + 1) * every` events; all of them up to the
    /// furthest point folded.
    saved: Vec<Checkpoint>,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self::every(EVERY)
    }
}

/// What going back to a checkpoint gives: the model there, and the marks of
/// the transcripts known complete there.
pub struct Restored<'a> {
    pub at: usize,
    pub model: App,
    pub marks: &'a HashMap<AgentId, Option<Mark>>,
}

impl Checkpoints {
    /// Checkpoints every `every` events.
    pub fn every(every: usize) -> Self {
        Self {
            every: every.max(1),
            saved: Vec::new(),
        }
    }

    /// Where to stop folding from `from` to `to`: each checkpoint boundary
    /// between them, then `to`.
    pub fn stops(&self, from: usize, to: usize) -> Vec<usize> {
        let every = self.every;
        (from / every + 1..=to / every)
            .map(|i| i * every)
            .filter(|&at| at < to)
            .chain((to > from).then_some(to))
            .collect()
    }

    /// The index of the checkpoint at `at` events, if `at` is a boundary.
    fn index(&self, at: usize) -> Option<usize> {
        (at > 0 && at.is_multiple_of(self.every)).then(|| at / self.every - 1)
    }

    /// Records `app`, folded to exactly `at` events (a boundary), with the
    /// marks of `complete`'s transcripts; an existing checkpoint only gains
    /// the marks it lacked.
    pub fn save<'a>(
        &mut self,
        at: usize,
        app: &App,
        complete: impl IntoIterator<Item = &'a AgentId>,
    ) {
        let Some(i) = self.index(at) else {
            return;
        };
        if i == self.saved.len() {
            self.saved.push(Checkpoint {
                model: model_of(app),
                marks: HashMap::new(),
            });
        }
        if let Some(checkpoint) = self.saved.get_mut(i) {
            for agent in complete {
                checkpoint
                    .marks
                    .entry(agent.clone())
                    .or_insert_with(|| app.transcripts.get(agent).map(Transcript::mark));
            }
        }
    }

    /// Records where `agent`'s whole transcript ended at `at` events.
    pub fn mark(&mut self, at: usize, agent: &AgentId, mark: Option<Mark>) {
        if let Some(checkpoint) = self.index(at).and_then(|i| self.saved.get_mut(i)) {
            checkpoint.marks.insert(agent.clone(), mark);
        }
    }

    /// Events between two checkpoints.
    pub fn interval(&self) -> usize {
        self.every
    }

    /// Where the furthest checkpoint is (0: none yet).
    pub fn furthest(&self) -> usize {
        self.saved.len() * self.every
    }

    /// Where the latest checkpoint at or before `target` is (0: none).
    pub fn latest_at(&self, target: usize) -> usize {
        (target / self.every).min(self.saved.len()) * self.every
    }

    /// Whether there is a checkpoint at `at` events.
    pub fn has(&self, at: usize) -> bool {
        self.index(at).is_some_and(|i| i < self.saved.len())
    }

    /// The latest checkpoint at or before `target` events.
    pub fn latest(&self, target: usize) -> Option<Restored<'_>> {
        let i = (target / self.every).min(self.saved.len()).checked_sub(1)?;
        let checkpoint = self.saved.get(i)?;
        Some(Restored {
            at: (i + 1) * self.every,
            model: model_of(&checkpoint.model),
            marks: &checkpoint.marks,
        })
    }
}

/// What folding events made of `app`, with empty transcripts: the fields
/// `App::apply` writes, and nothing the human set (`keep_view_of` brings
/// those over from the model on screen).
fn model_of(app: &App) -> App {
    let mut model = App::new(&app.title);
    model.read_only = app.read_only;
    model.prices = app.prices.clone();
    model.state = app.state.clone();
    model.transcripts = app
        .transcripts
        .keys()
        .map(|agent| (agent.clone(), Transcript::default()))
        .collect();
    model.task_views = app.task_views.clone();
    model.run_agents = app.run_agents.clone();
    model.order = app.order.clone();
    model.log = app.log.clone();
    model.now_ms = app.now_ms;
    model.costs = app.costs.clone();
    model.spec = app.spec.clone();
    model.spec_loaded = app.spec_loaded;
    // Set by the fold while the human has chosen nothing; once they have
    // (which lasts), `keep_view_of` takes the selection from the screen.
    model.working = app.working.clone();
    model.selected = app.selected;
    model.agent_back = app.agent_back;
    model.search = Search::default();
    model
}
