//! Checkpoints of a stored replay's model, so that going back (a step, a
//! click on the timeline) folds at most `EVERY` events from the nearest one
//! instead of the whole run from its start.
//!
//! They live in memory only, taken while folding forward, every `EVERY`
//! events: a checkpoint is the model a fold of exactly the events before it
//! made, from the same events in the same session, so it can never disagree
//! with them (nothing is stored, nothing migrates). A checkpoint leaves out
//! the transcripts' text — it is most of the model, and a stored replay
//! builds the one or two on screen apart (`shown`).

use crate::tui::app::{App, Search};
use crate::tui::transcript::Transcript;

/// Events between checkpoints: going back folds at most this many. Folding
/// a light event costs well under a microsecond, so this bounds a step back
/// to a few milliseconds, while 1,000,000 events keep 245 small models.
pub const EVERY: usize = 4096;

pub struct Checkpoints {
    /// Events between two checkpoints (`EVERY` but in tests).
    every: usize,
    /// `saved[i]` is at `(i + 1) * every` events; all of them up to the
    /// furthest point folded.
    saved: Vec<App>,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self::every(EVERY)
    }
}

/// What going back to a checkpoint gives: the model there.
pub struct Restored {
    pub at: usize,
    pub model: App,
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

    /// Records `app`, folded to exactly `at` events, if `at` is the next
    /// boundary.
    pub fn save(&mut self, at: usize, app: &App) {
        if self.index(at) == Some(self.saved.len()) {
            self.saved.push(model_of(app));
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
    #[cfg(test)]
    pub fn has(&self, at: usize) -> bool {
        self.index(at).is_some_and(|i| i < self.saved.len())
    }

    /// The latest checkpoint at or before `target` events.
    pub fn latest(&self, target: usize) -> Option<Restored> {
        let i = (target / self.every).min(self.saved.len()).checked_sub(1)?;
        let checkpoint = self.saved.get(i)?;
        Some(Restored {
            at: (i + 1) * self.every,
            model: model_of(checkpoint),
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
