//! The transcripts a stored replay shows, and a few it showed before.
//!
//! A stored replay folds its model without the conversation's text; the
//! transcripts on screen are built apart, from their own agent's events
//! with their text, and stay whole to the cursor. Each keeps the mark it
//! reached after every one of its events (transcripts only grow), so
//! bringing it to another cursor is a cut back to a mark or the events
//! since folded on — never a rebuild: a step back reads no text, and
//! showing an agent shown before reads only what it lacks. Transcripts no
//! longer on screen are kept, the last `KEPT` shown, to bound memory.

use std::collections::HashMap;

use crate::domain::{AgentId, Event, RunId};
use crate::effects::store::{LightRun, Store, StoreError};
use crate::tui::app::App;
use crate::tui::transcript::{Mark, Transcript};

/// Transcripts kept besides those on screen: a coder's conversation in a
/// long run is megabytes of lines.
pub const KEPT: usize = 4;

/// Where a replay reads an agent's events from.
pub struct Source<'a> {
    pub store: &'a Store,
    pub run: &'a RunId,
    pub light: &'a LightRun,
}

impl Source<'_> {
    /// The events numbered `seqs` (ascending) that write transcripts: those
    /// read with the light run, the others read now.
    fn read(&self, seqs: &[u64]) -> Result<Vec<Event>, StoreError> {
        let unread: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|&seq| self.light.read_event(seq).is_none())
            .collect();
        if unread.is_empty() {
            return Ok(Vec::new());
        }
        self.store.events_at(self.run, &unread)
    }
}

/// One agent's transcript as its own events up to `upto` made it.
#[derive(Default)]
struct Built {
    /// `None`: the agent had written nothing (not even started) by `upto`;
    /// also while the transcript is on screen, in the model.
    transcript: Option<Transcript>,
    upto: usize,
    /// The number of each of its events up to `upto`, and the transcript's
    /// mark after it.
    marks: Vec<(u64, Mark)>,
    /// When it was last shown, to keep the latest.
    shown_at: u64,
}

impl Built {
    /// Brings the transcript to `to` events: cut back to the mark of its
    /// last event by then, or its events since folded on. Left as it was
    /// when their text cannot be read.
    fn bring_to(&mut self, agent: &AgentId, to: usize, source: &Source) -> Result<(), StoreError> {
        if to <= self.upto {
            let kept = self.marks.partition_point(|&(seq, _)| seq <= to as u64);
            self.marks.truncate(kept);
            match (self.marks.last(), &mut self.transcript) {
                (Some(&(_, mark)), Some(transcript)) => transcript.truncate(mark),
                _ => self.transcript = None,
            }
            self.upto = to;
            return Ok(());
        }
        let seqs = source.light.transcript_seqs_between(agent, self.upto, to);
        let texts = source.read(&seqs)?;
        let mut texts = texts.iter().peekable();
        // Only the agent's transcript is folded: nothing else of the model.
        let mut scratch = App::new("");
        if let Some(transcript) = self.transcript.take() {
            scratch.transcripts.insert(agent.clone(), transcript);
        }
        for &seq in &seqs {
            let event = source
                .light
                .read_event(seq)
                .or_else(|| texts.next_if(|t| t.seq == seq));
            scratch.fold_transcripts(event);
            if let Some(transcript) = scratch.transcripts.get(agent) {
                self.marks.push((seq, transcript.mark()));
            }
        }
        self.transcript = scratch.transcripts.remove(agent);
        self.upto = to;
        Ok(())
    }
}

/// The transcripts on screen and those kept.
#[derive(Default)]
pub struct Shown {
    built: HashMap<AgentId, Built>,
    /// Agents whose transcripts are in the model, whole to its cursor.
    on_screen: Vec<AgentId>,
    /// Counts the times transcripts were put on screen.
    clock: u64,
}

impl Shown {
    /// Takes the transcripts on screen back out of `app`, before it is
    /// folded on (or replaced) without text; an empty one is left in place.
    pub fn take_back(&mut self, app: &mut App) {
        for agent in self.on_screen.drain(..) {
            if let Some(built) = self.built.get_mut(&agent) {
                built.transcript = app.transcripts.get_mut(&agent).map(std::mem::take);
            }
        }
    }

    /// Whether `agent`'s whole transcript is in the model.
    pub fn is_on_screen(&self, agent: &AgentId) -> bool {
        self.on_screen.contains(agent)
    }

    /// Puts the transcripts of `agents` in `app`, folded to `cursor`, each
    /// whole to there. Returns whether one was put there, and the first
    /// error reading their text (that agent's transcript is left as the
    /// model's fold made it).
    pub fn show(
        &mut self,
        app: &mut App,
        agents: &[AgentId],
        cursor: usize,
        source: &Source,
    ) -> (bool, Result<(), StoreError>) {
        let mut put = false;
        let mut result = Ok(());
        for agent in agents {
            if self.is_on_screen(agent) {
                continue;
            }
            self.clock += 1;
            let built = self.built.entry(agent.clone()).or_default();
            built.shown_at = self.clock;
            if let Err(e) = built.bring_to(agent, cursor, source) {
                if result.is_ok() {
                    result = Err(e);
                }
                continue;
            }
            match built.transcript.take() {
                Some(transcript) => app.transcripts.insert(agent.clone(), transcript),
                None => app.transcripts.remove(agent),
            };
            self.on_screen.push(agent.clone());
            put = true;
        }
        self.forget_beyond(KEPT);
        (put, result)
    }

    /// Forgets the transcripts not on screen but the `kept` shown last.
    fn forget_beyond(&mut self, kept: usize) {
        let mut off: Vec<(u64, AgentId)> = self
            .built
            .iter()
            .filter(|(agent, _)| !self.on_screen.contains(agent))
            .map(|(agent, built)| (built.shown_at, agent.clone()))
            .collect();
        if off.len() <= kept {
            return;
        }
        off.sort_unstable();
        for (_, agent) in &off[..off.len() - kept] {
            self.built.remove(agent);
        }
    }

    /// The agents whose transcripts are kept, on screen or not.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.built.len()
    }

    /// The agents whose transcripts are on screen.
    #[cfg(test)]
    pub fn on_screen(&self) -> usize {
        self.on_screen.len()
    }
}
