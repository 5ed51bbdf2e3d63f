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
//!
//! A transcript is built from its end: the pane follows its tail, so a
//! click that shows a long conversation folds only its last events (at
//! least `TAIL_LINES` lines); the beginning is put in front while the
//! replay is idle, `IDLE_EVENTS` at a time, or at once before a key that
//! looks further back (scrolling, search). Each event's lines depend on
//! that event alone, so the lines at the end are the ones a whole fold
//! ends with.

use std::collections::HashMap;

use crate::domain::{AgentId, Event, RunId};
use crate::effects::store::{LightRun, Store, StoreError};
use crate::tui::app::App;
use crate::tui::transcript::{Mark, Transcript};

/// Transcripts kept besides those on screen: a coder's conversation in a
/// long run is megabytes of lines.
pub const KEPT: usize = 4;

/// Lines a transcript shown first has at its end, at least: more than any
/// terminal's height.
const TAIL_LINES: usize = 400;

/// Events folded onto a transcript on screen before its beginning is:
/// more than this and the end is built first.
const ON_TOP: usize = 256;

/// Events of a transcript's beginning folded in one idle turn.
pub const IDLE_EVENTS: usize = 2048;

/// The number of each event folded into a transcript, and the
/// transcript's mark after it.
type Marks = Vec<(u64, Mark)>;

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

    /// `agent`'s transcript as the events numbered `seqs` write it, and
    /// its mark after each of them.
    fn fold(
        &self,
        agent: &AgentId,
        seqs: &[u64],
    ) -> Result<(Option<Transcript>, Marks), StoreError> {
        let texts = self.read(seqs)?;
        let mut texts = texts.iter().peekable();
        // Only the agent's transcript is folded: nothing else of the model.
        let mut scratch = App::new("");
        let mut marks = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let event = self
                .light
                .read_event(seq)
                .or_else(|| texts.next_if(|t| t.seq == seq))
                .ok_or_else(|| StoreError::Corrupt {
                    run: self.run.clone(),
                    seq,
                    message: "an event of the run is missing".into(),
                })?;
            scratch.fold_transcripts([event]);
            if let Some(transcript) = scratch.transcripts.get(agent) {
                marks.push((seq, transcript.mark()));
            }
        }
        Ok((scratch.transcripts.remove(agent), marks))
    }
}

/// One agent's transcript as its own events up to `upto` made it, but for
/// its beginning while that is `pending`.
#[derive(Default)]
struct Built {
    /// The transcript of the events after `pending`; `None`: no events
    /// (nor any pending), or while the transcript is on screen, in the
    /// model.
    transcript: Option<Transcript>,
    upto: usize,
    /// The numbers of the agent's first events, not folded yet.
    pending: Vec<u64>,
    /// `transcript`'s events.
    marks: Marks,
    /// When it was last shown, to keep the latest.
    shown_at: u64,
}

impl Built {
    /// Brings the transcript to `to` events: cut back to the mark of its
    /// last event by then, or its events since folded on (its end first,
    /// when they are many). Left as it was when their text cannot be read.
    fn bring_to(&mut self, agent: &AgentId, to: usize, source: &Source) -> Result<(), StoreError> {
        if to <= self.upto {
            let kept = self.marks.partition_point(|&(seq, _)| seq <= to as u64);
            self.upto = to;
            if let (Some(&(_, mark)), Some(transcript)) =
                (self.marks.get(kept.wrapping_sub(1)), &mut self.transcript)
            {
                self.marks.truncate(kept);
                transcript.truncate(mark);
                return Ok(());
            }
            // Back before the part folded: what is left is pending.
            self.transcript = None;
            self.marks.clear();
            let left = self.pending.partition_point(|&seq| seq <= to as u64);
            self.pending.truncate(left);
            return self.end_first(agent, source);
        }
        let seqs = source.light.transcript_seqs_between(agent, self.upto, to);
        if seqs.len() <= ON_TOP && (self.transcript.is_some() || self.pending.is_empty()) {
            let (more, marks) = source.fold(agent, &seqs)?;
            let Some(more) = more else {
                self.upto = to;
                return Ok(());
            };
            let base = self.transcript.as_ref().map(Transcript::mark);
            self.marks.extend(
                marks
                    .into_iter()
                    .map(|(seq, mark)| (seq, base.map_or(mark, |base| mark.after(base)))),
            );
            match &mut self.transcript {
                Some(transcript) => transcript.append(more),
                None => self.transcript = Some(more),
            }
            self.upto = to;
            return Ok(());
        }
        // Many events: all of them pending, the end folded first. Should
        // their text be unreadable, whatever was folded stays, the rest
        // pending.
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend(self.marks.drain(..).map(|(seq, _)| seq));
        pending.extend(seqs);
        self.pending = pending;
        self.transcript = None;
        self.upto = to;
        self.end_first(agent, source)
    }

    /// Folds the end of what is pending, at least `TAIL_LINES` lines.
    fn end_first(&mut self, agent: &AgentId, source: &Source) -> Result<(), StoreError> {
        let mut n = 64;
        while !self.pending.is_empty()
            && self
                .transcript
                .as_ref()
                .is_none_or(|t| t.len(false) < TAIL_LINES)
        {
            self.fold_beginning(agent, n, source)?;
            n *= 2;
        }
        Ok(())
    }

    /// Folds the last `n` pending events in front of the transcript.
    fn fold_beginning(
        &mut self,
        agent: &AgentId,
        n: usize,
        source: &Source,
    ) -> Result<(), StoreError> {
        let from = self.pending.len().saturating_sub(n);
        let (mut front, mut marks) = source.fold(agent, &self.pending[from..])?;
        self.pending.truncate(from);
        if let Some(end) = marks.last().map(|&(_, mark)| mark) {
            marks.extend(self.marks.iter().map(|&(seq, mark)| (seq, mark.after(end))));
            self.marks = marks;
        }
        match (&mut front, self.transcript.take()) {
            (Some(front), Some(after)) => front.append(after),
            (None, after) => front = after,
            (Some(_), None) => {}
        }
        self.transcript = front;
        Ok(())
    }
}

/// The transcripts on screen and those kept.
#[derive(Default)]
pub struct Shown {
    built: HashMap<AgentId, Built>,
    /// Agents whose transcripts are in the model, to its cursor (their
    /// beginnings maybe still pending).
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

    /// Folds up to `events` pending events in front of the transcripts on
    /// screen. Returns whether any are still pending, and the first error
    /// reading their text.
    pub fn fold_beginnings(
        &mut self,
        app: &mut App,
        mut events: usize,
        source: &Source,
    ) -> (bool, Result<(), StoreError>) {
        let mut result = Ok(());
        for agent in &self.on_screen {
            let Some(built) = self.built.get_mut(agent) else {
                continue;
            };
            if built.pending.is_empty() || events == 0 {
                continue;
            }
            let n = built.pending.len().min(events);
            events -= n;
            built.transcript = app.transcripts.remove(agent);
            let folded = built.fold_beginning(agent, n, source);
            if let Some(transcript) = built.transcript.take() {
                app.transcripts.insert(agent.clone(), transcript);
            }
            if let Err(e) = folded {
                result = Err(e);
                break;
            }
        }
        (self.has_pending() && result.is_ok(), result)
    }

    /// Whether a transcript on screen still lacks its beginning.
    pub fn has_pending(&self) -> bool {
        self.on_screen
            .iter()
            .filter_map(|agent| self.built.get(agent))
            .any(|built| !built.pending.is_empty())
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
