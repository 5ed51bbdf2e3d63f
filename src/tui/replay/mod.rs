//! Replaying a stored run: the cockpit rebuilt purely from events up to a
//! cursor. Play, pause, change speed, step, jump and scrub; the model at the
//! cursor is the same fold the live cockpit made. Never calls a model and
//! never touches git.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{Action, App};
use super::theme::{Role, Theme};
use super::view;
use crate::config::Price;
use crate::domain::{AgentId, Event, RunId};
use crate::effects::store::{LightRun, Store, StoreError};

mod checkpoints;
mod shown;

use checkpoints::Checkpoints;
pub use checkpoints::EVERY as CHECKPOINT_EVERY;
use shown::{Shown, Source};

/// Playback speeds; `Max` applies many events per tick regardless of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    X1,
    X4,
    X16,
    Max,
}

impl Speed {
    fn factor(self) -> f64 {
        match self {
            Speed::X1 => 1.0,
            Speed::X4 => 4.0,
            Speed::X16 => 16.0,
            Speed::Max => f64::INFINITY,
        }
    }

    fn faster(self) -> Speed {
        match self {
            Speed::X1 => Speed::X4,
            Speed::X4 => Speed::X16,
            _ => Speed::Max,
        }
    }

    fn slower(self) -> Speed {
        match self {
            Speed::Max => Speed::X16,
            Speed::X16 => Speed::X4,
            _ => Speed::X1,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Speed::X1 => "×1",
            Speed::X4 => "×4",
            Speed::X16 => "×16",
            Speed::Max => "max",
        }
    }
}

/// Events applied per tick at `Speed::Max`.
const MAX_PER_TICK: usize = 200;

/// Frame interval while a replay plays.
pub const PLAYBACK_TICK: Duration = Duration::from_millis(33);

/// A longer gap between frames (a busy terminal, playback just started
/// again) counts as this much, so playback never leaps ahead.
const MAX_FRAME: Duration = Duration::from_millis(250);

/// The playback's frame clock: each frame reports the wall time that really
/// passed since the previous one, which the replay's clock then runs on by.
pub struct Frames {
    interval: tokio::time::Interval,
    last: tokio::time::Instant,
}

impl Default for Frames {
    fn default() -> Self {
        let mut interval = tokio::time::interval(PLAYBACK_TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            interval,
            last: tokio::time::Instant::now(),
        }
    }
}

impl Frames {
    /// Waits for the next frame; returns the time since the last one.
    pub async fn next(&mut self) -> Duration {
        self.interval.tick().await;
        let now = tokio::time::Instant::now();
        let dt = now.saturating_duration_since(self.last).min(MAX_FRAME);
        self.last = now;
        dt
    }
}

/// What a key did to the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKey {
    Handled,
    Quit,
}

/// Where a replay's events come from.
enum Record {
    /// Every event, in memory.
    Whole(Vec<Event>),
    /// A stored run: every event in memory but the conversation's text,
    /// which is read from the store for the agents on screen.
    Stored(Box<Stored>),
}

struct Stored {
    store: Store,
    run: RunId,
    light: LightRun,
    /// The transcripts on screen, whole to the cursor, and a few shown
    /// before; the model's others hold only what light events put there.
    shown: Shown,
    /// The model every `checkpoints::EVERY` events, up to the furthest
    /// point folded: where going back starts from.
    checkpoints: Checkpoints,
}

impl Record {
    fn len(&self) -> usize {
        match self {
            Record::Whole(events) => events.len(),
            Record::Stored(s) => s.light.len(),
        }
    }

    /// The time of the event at `index` (0-based).
    fn at_ms(&self, index: usize) -> Option<u64> {
        match self {
            Record::Whole(events) => events.get(index).map(|e| e.at_ms),
            Record::Stored(s) => s.light.at_ms.get(index).copied(),
        }
    }

    /// Folds the events after the first `from` up to the first `to` into
    /// `app`; a stored run's without the conversation text.
    fn fold(&self, app: &mut App, from: usize, to: usize) {
        match self {
            Record::Whole(events) => app.fold(&events[from..to]),
            Record::Stored(s) => s.fold(app, from, to),
        }
    }
}

impl Stored {
    /// `Record::fold` for a stored run: the light events, stand-ins for
    /// the others.
    fn fold(&self, app: &mut App, from: usize, to: usize) {
        self.light.windows(&self.run, from, to, &[], &mut |window| {
            app.fold(window.iter().copied());
        });
    }
}

pub struct Replay {
    record: Record,
    /// Number of events applied to `app`.
    cursor: usize,
    pub app: App,
    pub playing: bool,
    pub speed: Speed,
    /// Replay time since the first event, in milliseconds.
    clock_ms: f64,
    /// Typing a jump target after `:`.
    pub jump: Option<String>,
    pub note: Option<String>,
}

impl Replay {
    pub fn new(title: &str, events: Vec<Event>) -> Self {
        Self::with_record(title, Record::Whole(events), BTreeMap::new(), 1)
    }

    fn with_record(
        title: &str,
        record: Record,
        prices: BTreeMap<String, Price>,
        cursor: usize,
    ) -> Self {
        let mut replay = Self {
            record,
            cursor: 0,
            app: App::new(title),
            playing: false,
            speed: Speed::X4,
            clock_ms: 0.0,
            jump: None,
            note: None,
        };
        replay.app.read_only = true;
        replay.app.prices = prices;
        replay.seek(cursor.max(1));
        replay
    }

    /// Opens with `cursor` events applied, folding straight there.
    pub fn open_at(title: &str, events: Vec<Event>, cursor: usize) -> Self {
        Self::with_record(title, Record::Whole(events), BTreeMap::new(), cursor)
    }

    /// Opens `run` of the store at `path` with `cursor` events applied,
    /// reading the conversation's text only for the agents shown.
    pub fn open_stored(
        title: &str,
        path: &Path,
        run: &RunId,
        prices: BTreeMap<String, Price>,
        cursor: usize,
    ) -> Result<Self, StoreError> {
        Self::open_stored_with(title, path, run, prices, cursor, Checkpoints::default())
    }

    fn open_stored_with(
        title: &str,
        path: &Path,
        run: &RunId,
        prices: BTreeMap<String, Price>,
        cursor: usize,
        checkpoints: Checkpoints,
    ) -> Result<Self, StoreError> {
        let light = Store::load_light(path, run)?;
        let stored = Stored {
            store: Store::open_reader(path)?,
            run: run.clone(),
            light,
            shown: Shown::default(),
            checkpoints,
        };
        Ok(Self::with_record(
            title,
            Record::Stored(Box::new(stored)),
            prices,
            cursor,
        ))
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn len(&self) -> usize {
        self.record.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record.len() == 0
    }

    fn start_ms(&self) -> u64 {
        self.record.at_ms(0).unwrap_or(0)
    }

    fn elapsed_ms(&self, index: usize) -> u64 {
        self.record
            .at_ms(index.saturating_sub(1))
            .map(|at| at.saturating_sub(self.start_ms()))
            .unwrap_or(0)
    }

    /// How many events from `from` on happened by `limit_ms`.
    fn count_until(&self, from: usize, limit_ms: u64) -> usize {
        (from..self.len())
            .take_while(|&i| self.record.at_ms(i).is_some_and(|at| at <= limit_ms))
            .count()
    }

    /// Moves the cursor so that exactly `target` events are applied, and
    /// the playback clock to that event's time.
    pub fn seek(&mut self, target: usize) {
        self.fold_to(target);
        self.clock_ms = self.elapsed_ms(self.cursor) as f64;
    }

    /// Moves the cursor without touching the playback clock. Going back
    /// rebuilds the model from the nearest checkpoint (a stored run) or
    /// from the start; going forward folds on. Then the transcripts on
    /// screen are brought to the cursor.
    fn fold_to(&mut self, target: usize) {
        let target = target.min(self.len());
        match &self.record {
            Record::Stored(_) => self.fold_stored(target),
            Record::Whole(_) if target < self.cursor => {
                let mut fresh = App::new(&self.app.title);
                fresh.prices = self.app.prices.clone();
                self.record.fold(&mut fresh, 0, target);
                fresh.keep_view_of(&self.app);
                self.app = fresh;
            }
            Record::Whole(_) => self.record.fold(&mut self.app, self.cursor, target),
        }
        self.cursor = target;
        self.show_complete();
    }

    /// `fold_to` for a stored run, without the conversation's text: back
    /// to the nearest checkpoint at or before `target` when going back,
    /// then forward, taking checkpoints on the way.
    fn fold_stored(&mut self, target: usize) {
        let Record::Stored(s) = &mut self.record else {
            return;
        };
        // Brought to `target` apart, once the model is there.
        s.shown.take_back(&mut self.app);
        // Far ahead, a checkpoint carried there while the replay was idle
        // is nearer than the cursor.
        let ahead = s.checkpoints.latest_at(target) > self.cursor;
        if target < self.cursor || ahead {
            let app = match s.checkpoints.latest(target) {
                Some(restored) => {
                    self.cursor = restored.at;
                    restored.model
                }
                None => {
                    let mut fresh = App::new(&self.app.title);
                    fresh.prices = self.app.prices.clone();
                    self.cursor = 0;
                    fresh
                }
            };
            // What the human chose is kept once folded there: an agent's
            // start on the way resets the choice of agent in a fold.
            let old = std::mem::replace(&mut self.app, app);
            self.fold_forward(target);
            self.app.keep_view_of(&old);
        } else {
            self.fold_forward(target);
        }
    }

    /// Folds a stored run on from the cursor to `target`, a checkpoint at
    /// a time, without the conversation's text.
    fn fold_forward(&mut self, target: usize) {
        let Record::Stored(s) = &mut self.record else {
            return;
        };
        let mut at = self.cursor;
        for stop in s.checkpoints.stops(at, target) {
            s.fold(&mut self.app, at, stop);
            at = stop;
            s.checkpoints.save(stop, &self.app);
        }
        self.cursor = at;
    }

    /// While the human does nothing: folds a piece of the beginning of
    /// the transcripts on screen (built from their end), or else one more
    /// interval of the part of a stored run not folded yet (no
    /// conversation text), taking its checkpoint, so that a click far
    /// ahead starts from one. Returns whether there is more to do.
    pub fn carry_ahead(&mut self) -> bool {
        if self.fold_beginnings(shown::IDLE_EVENTS) {
            return true;
        }
        let Record::Stored(s) = &mut self.record else {
            return false;
        };
        let len = s.light.len();
        let at = s.checkpoints.furthest();
        let next = at + s.checkpoints.interval();
        if next > len {
            return false;
        }
        let mut model = match s.checkpoints.latest(at) {
            Some(restored) => restored.model,
            None => {
                let mut fresh = App::new(&self.app.title);
                fresh.read_only = self.app.read_only;
                fresh.prices = self.app.prices.clone();
                fresh
            }
        };
        s.fold(&mut model, at, next);
        s.checkpoints.save(next, &model);
        next + s.checkpoints.interval() <= len
    }

    /// The agents whose transcripts are on screen.
    fn shown_agents(&self) -> Vec<AgentId> {
        let mut shown = vec![crate::engine::run::brainstorm::Brainstorm::agent()];
        shown.extend(self.app.shown_agent().cloned());
        shown
    }

    /// Gives the transcripts on screen their whole conversation to the
    /// cursor: one kept from before, cut back or folded on, or built from
    /// the agent's own events.
    fn complete_shown(&mut self) -> Result<(), StoreError> {
        let agents = self.shown_agents();
        let Record::Stored(s) = &mut self.record else {
            return Ok(());
        };
        let Stored {
            store,
            run,
            light,
            shown,
            ..
        } = &mut **s;
        let source = Source { store, run, light };
        let (put, read) = shown.show(&mut self.app, &agents, self.cursor, &source);
        if put {
            // Scrolled to the tail of the transcript it now shows.
            self.app.fold(std::iter::empty());
        }
        // Scrolled back or searched: the lines before the end are wanted.
        if !self.app.scroll.follow || !self.app.search.query.is_empty() {
            self.settle_shown();
        }
        read
    }

    /// Folds up to `events` pending events in front of the transcripts on
    /// screen (`shown`). Returns whether it folded any.
    fn fold_beginnings(&mut self, events: usize) -> bool {
        let Record::Stored(s) = &mut self.record else {
            return false;
        };
        let Stored {
            store,
            run,
            light,
            shown,
            ..
        } = &mut **s;
        if !shown.has_pending() {
            return false;
        }
        let source = Source { store, run, light };
        let (_, read) = shown.fold_beginnings(&mut self.app, events, &source);
        // Still at the tail, now further down.
        self.app.fold(std::iter::empty());
        match read {
            Ok(()) => true,
            Err(e) => {
                self.note = Some(format!("conversation text unreadable: {e}"));
                false
            }
        }
    }

    /// Gives the transcripts on screen their beginnings now: before what
    /// looks back through them (scrolling, search, expanding).
    fn settle_shown(&mut self) {
        self.fold_beginnings(usize::MAX);
    }

    /// Advances playback by `dt` of wall time. Returns whether anything moved.
    ///
    /// The clock runs on between events: a gap longer than one frame is
    /// crossed over several frames, never reset to the current event's time.
    pub fn tick(&mut self, dt: Duration) -> bool {
        if !self.playing || self.cursor >= self.len() {
            self.playing = false;
            return false;
        }
        let before = self.cursor;
        if self.speed == Speed::Max {
            self.seek(self.cursor + MAX_PER_TICK);
        } else {
            self.clock_ms += dt.as_secs_f64() * 1000.0 * self.speed.factor();
            let limit = self.start_ms() + self.clock_ms as u64;
            let target = self.cursor + self.count_until(self.cursor, limit);
            self.fold_to(target);
        }
        self.cursor != before
    }

    /// Jumps to an event number (`:120`) or a time offset (`:90s`, `:2m`).
    pub fn jump_to(&mut self, spec: &str) -> Result<(), String> {
        let spec = spec.trim();
        let seconds = |n: &str, unit: f64| -> Result<f64, String> {
            n.parse::<f64>()
                .map(|v| v * unit)
                .map_err(|_| format!("{spec:?} is not a number"))
        };
        let target_ms = if let Some(n) = spec.strip_suffix('s') {
            Some(seconds(n, 1000.0)?)
        } else if let Some(n) = spec.strip_suffix('m') {
            Some(seconds(n, 60_000.0)?)
        } else {
            None
        };
        match target_ms {
            Some(ms) => {
                let limit = self.start_ms() + ms as u64;
                let target = self.count_until(0, limit);
                self.seek(target.max(1));
            }
            None => {
                let n: usize = spec.parse().map_err(|_| {
                    format!("{spec:?}: give an event number, or a time like 90s or 2m")
                })?;
                self.seek(n.max(1));
            }
        }
        Ok(())
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> ReplayKey {
        if let Some(mut input) = self.jump.take() {
            match key.code {
                KeyCode::Enter => {
                    self.note = self.jump_to(&input).err();
                }
                KeyCode::Esc => {}
                KeyCode::Backspace => {
                    input.pop();
                    self.jump = Some(input);
                }
                KeyCode::Char(c) => {
                    input.push(c);
                    self.jump = Some(input);
                }
                _ => self.jump = Some(input),
            }
            return ReplayKey::Handled;
        }
        self.note = None;
        match key.code {
            KeyCode::Char(' ') => self.playing = !self.playing,
            KeyCode::Char('+') | KeyCode::Char('=') => self.speed = self.speed.faster(),
            KeyCode::Char('-') => self.speed = self.speed.slower(),
            KeyCode::Char('.') => self.seek(self.cursor + 1),
            KeyCode::Char(',') => self.seek(self.cursor.saturating_sub(1).max(1)),
            KeyCode::Char(':') => self.jump = Some(String::new()),
            KeyCode::Char('0') => self.seek(1),
            KeyCode::Char('$') => self.seek(self.len()),
            _ => {
                self.settle_shown();
                for action in self.app.handle_key(key) {
                    match action {
                        Action::Quit => return ReplayKey::Quit,
                        Action::Send(_) | Action::Edit(_) => {
                            self.note = Some(
                                "replay is read-only: decisions are made in a live run".into(),
                            );
                        }
                    }
                }
                self.show_complete();
            }
        }
        ReplayKey::Handled
    }

    /// After the human changed what is shown: its whole conversation.
    fn show_complete(&mut self) {
        if let Err(e) = self.complete_shown() {
            self.note = Some(format!("conversation text unreadable: {e}"));
        }
    }

    /// A click on the timeline (the last row, `width` wide) scrubs to that point.
    pub fn handle_mouse(&mut self, mouse: MouseEvent, width: u16, height: u16) {
        if mouse.kind == MouseEventKind::Down(MouseButton::Left)
            && mouse.row + 1 == height
            && width > 0
        {
            let target = (usize::from(mouse.column) * self.len()) / usize::from(width);
            self.seek(target.max(1));
        } else {
            self.settle_shown();
            self.app.handle_mouse(mouse);
            self.show_complete();
        }
    }

    pub fn render(&self, frame: &mut Frame, theme: &Theme) {
        let rows =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).split(frame.area());
        view::render_in(frame, rows[0], &self.app, theme);
        let width = usize::from(rows[1].width);
        let state = if self.playing { "▶" } else { "⏸" };
        let label = match (&self.jump, &self.note) {
            (Some(input), _) => format!(" jump to (event number, or 90s / 2m): {input}"),
            (None, Some(note)) => format!(" {note}"),
            (None, None) => format!(
                " {state} {} event {} of {} · {:.1}s of {:.1}s · space play  +/- speed  ,/. step  : jump  click to scrub ",
                self.speed.label(),
                self.cursor,
                self.len(),
                self.elapsed_ms(self.cursor) as f64 / 1000.0,
                self.elapsed_ms(self.len()) as f64 / 1000.0
            ),
        };
        let filled = (self.cursor * width).checked_div(self.len()).unwrap_or(0);
        let mut bar: Vec<Span> = Vec::new();
        for (i, ch) in label
            .chars()
            .chain(std::iter::repeat(' '))
            .take(width)
            .enumerate()
        {
            let role = if i < filled {
                Role::Selection
            } else {
                Role::StatusBar
            };
            bar.push(Span::styled(ch.to_string(), theme.style(role)));
        }
        frame.render_widget(Paragraph::new(Line::from(bar)), rows[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixture;

    #[test]
    fn seeking_back_and_forth_matches_folding_from_the_start() {
        let events = fixture::events();
        let mut replay = Replay::new("r", events.clone());
        for k in [5, 20, 3, events.len(), 1, 17, 17, 40] {
            let k = k.min(events.len());
            replay.seek(k);
            let direct = App::from_events("r", &events[..k]);
            assert_eq!(replay.app.digest(), direct.digest(), "at event {k}");
        }
    }

    #[test]
    fn opening_at_a_cursor_equals_folding_to_it() {
        let events = fixture::events();
        let k = events.len() / 2;
        let replay = Replay::open_at("r", events.clone(), k);
        assert_eq!(replay.cursor(), k);
        assert_eq!(
            replay.app.digest(),
            App::from_events("r", &events[..k]).digest()
        );
    }

    #[test]
    fn playing_follows_event_time_and_speed() {
        let events = fixture::events();
        let mut replay = Replay::new("r", events.clone());
        replay.playing = true;
        replay.speed = Speed::X1;
        // Fixture events are one second apart.
        replay.tick(Duration::from_millis(2500));
        assert_eq!(replay.cursor(), 3);
        replay.speed = Speed::X4;
        replay.tick(Duration::from_millis(1000));
        assert_eq!(replay.cursor(), 7);
        replay.speed = Speed::Max;
        while replay.tick(Duration::from_millis(10)) {}
        assert_eq!(replay.cursor(), events.len());
        assert!(!replay.playing, "stops at the end");
    }

    /// The fixture's events, `gap_ms` apart.
    fn spaced(gap_ms: u64) -> Vec<Event> {
        let mut events = fixture::events();
        let start = events[0].at_ms;
        for (i, e) in events.iter_mut().enumerate() {
            e.at_ms = start + i as u64 * gap_ms;
        }
        events
    }

    /// Plays for `wall` of (paused) tokio time, frame by frame.
    async fn play_for(replay: &mut Replay, wall: Duration) {
        let mut frames = Frames::default();
        let until = tokio::time::Instant::now() + wall;
        while tokio::time::Instant::now() < until {
            let dt = frames.next().await;
            replay.tick(dt);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn playback_crosses_gaps_of_seconds_at_every_speed() {
        // Events 3 s apart: far more than one frame at any speed but max.
        let events = spaced(3000);
        for (speed, factor) in [(Speed::X1, 1), (Speed::X4, 4), (Speed::X16, 16)] {
            let mut replay = Replay::new("r", events.clone());
            replay.speed = speed;
            replay.handle_key(KeyEvent::from(KeyCode::Char(' ')));
            assert!(replay.playing);
            play_for(&mut replay, Duration::from_secs(7)).await;
            // 7 s of wall time is 7 * factor s of run time: the first event
            // plus one per 3 s.
            let expected = (1 + 7 * factor / 3).min(events.len() as u64) as usize;
            assert_eq!(replay.cursor(), expected, "at {speed:?}");
            assert_eq!(
                replay.app.digest(),
                App::from_events("r", &events[..expected]).digest()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_frame_does_not_leap_and_pausing_keeps_the_position() {
        let events = spaced(2000);
        let mut replay = Replay::new("r", events);
        replay.speed = Speed::X1;
        replay.playing = true;
        let mut frames = Frames::default();
        frames.next().await;
        // The terminal stalls for a minute: one frame's worth is played.
        tokio::time::advance(Duration::from_secs(60)).await;
        replay.tick(frames.next().await);
        assert_eq!(replay.cursor(), 1);
        play_for(&mut replay, Duration::from_millis(2100)).await;
        assert_eq!(replay.cursor(), 2);
        // Paused, nothing moves; playing again goes on from the same time.
        replay.handle_key(KeyEvent::from(KeyCode::Char(' ')));
        play_for(&mut replay, Duration::from_secs(10)).await;
        assert_eq!(replay.cursor(), 2);
        replay.handle_key(KeyEvent::from(KeyCode::Char(' ')));
        play_for(&mut replay, Duration::from_secs(2)).await;
        assert_eq!(replay.cursor(), 3);
    }

    #[test]
    fn the_timeline_shows_the_event_cursor() {
        let theme = Theme::dark();
        let replay = Replay::open_at("r", fixture::events(), 5);
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 30)).unwrap();
        terminal.draw(|f| replay.render(f, &theme)).unwrap();
        let buffer = terminal.backend().buffer();
        let last: String = (0..120).map(|x| buffer[(x, 29)].symbol()).collect();
        assert!(
            last.contains(&format!("event 5 of {}", replay.len())),
            "{last}"
        );
    }

    #[test]
    fn jumps_take_event_numbers_and_times() {
        let mut replay = Replay::new("r", fixture::events());
        replay.jump_to("10").unwrap();
        assert_eq!(replay.cursor(), 10);
        replay.jump_to("4s").unwrap();
        assert_eq!(replay.cursor(), 5);
        assert!(replay.jump_to("soon").is_err());
    }

    /// The event-derived model of `a` is `b`'s, but for the transcripts of
    /// agents not on screen, which a stored replay reads when shown.
    fn same_on_screen(a: &App, b: &App, at: usize) {
        let (da, db) = (a.digest(), b.digest());
        assert_eq!(da.state, db.state, "state at {at}");
        assert_eq!(da.order, db.order, "order at {at}");
        assert_eq!(da.views, db.views, "task views at {at}");
        assert_eq!(da.log, db.log, "log at {at}");
        assert_eq!(a.shown_agent(), b.shown_agent(), "agent shown at {at}");
        assert_eq!(
            a.shown_transcript().map(|t| t.settled()),
            b.shown_transcript().map(|t| t.settled()),
            "transcript shown at {at}"
        );
        assert_eq!(a.costs, b.costs, "costs at {at}");
    }

    /// A stored replay reads conversation text only for the agents shown,
    /// and shows exactly what folding every event shows: at open, stepping
    /// both ways across sealed chunks and the tail, and after the human
    /// selects another task.
    #[test]
    fn a_stored_replay_shows_what_folding_every_event_shows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 4, 6_000);
        let mut store = Store::open(&path).unwrap();
        for batch in events.chunks(500) {
            store.append_batch(batch).unwrap();
        }
        let k = events.len() * 2 / 3;
        let mut stored = Replay::open_stored("r", &path, &run, BTreeMap::new(), k).unwrap();
        let mut whole = Replay::open_at("r", events.clone(), k);
        assert_eq!(stored.len(), events.len());
        assert!(stored.note.is_none(), "{:?}", stored.note);
        same_on_screen(settled(&mut stored), &whole.app, k);
        assert_eq!(
            shown_of(&stored).on_screen(),
            2,
            "only the shown agent and brainstorm"
        );
        for target in [k + 1, k + 700, k - 3, 1_030, events.len(), 2, k] {
            stored.seek(target);
            whole.seek(target);
            same_on_screen(settled(&mut stored), &whole.app, target);
        }
        for key in ['k', 'k', '<', 'j'] {
            stored.handle_key(KeyEvent::from(KeyCode::Char(key)));
            whole.handle_key(KeyEvent::from(KeyCode::Char(key)));
            same_on_screen(settled(&mut stored), &whole.app, k);
            stored.seek(stored.cursor() + 5);
            whole.seek(whole.cursor() + 5);
            same_on_screen(settled(&mut stored), &whole.app, k + 5);
        }
        assert_a_conversation_is_shown(&stored.app);
    }

    /// A coder's conversation, not an empty pane, is what the test compared.
    fn assert_a_conversation_is_shown(app: &App) {
        assert!(
            app.shown_transcript().is_some_and(|t| t.len(true) > 100),
            "a coder's conversation is on screen"
        );
    }

    /// `replay`'s model once the transcripts on screen have their
    /// beginnings (folded while idle, or before a key looks back).
    fn settled(replay: &mut Replay) -> &App {
        replay.settle_shown();
        &replay.app
    }

    /// What `replay` draws on a 120x40 terminal.
    fn drawn(replay: &Replay) -> ratatui::buffer::Buffer {
        let theme = Theme::dark();
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
        terminal.draw(|f| replay.render(f, &theme)).unwrap();
        terminal.backend().buffer().clone()
    }

    /// A click that shows a long conversation folds its end only, and the
    /// screen is the one a full fold draws; the beginning comes while the
    /// replay is idle, or at once when the human looks back through it.
    #[test]
    fn a_long_transcript_is_shown_from_its_end_and_gets_its_beginning_later() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 3, 30_000);
        store_events(&path, &events);
        let len = events.len();
        let (mut stored, mut whole) = stored_and_whole(&path, &run, &events, 5, 1_000);
        // The middle of each task's coder's stretch of the run.
        let middle = |task: usize| len * (2 * task + 1) / 6;
        for (target, idle) in [(middle(2), true), (middle(1), false)] {
            stored.seek(target);
            whole.seek(target);
            let lines = |r: &Replay| r.app.shown_transcript().map_or(0, |t| t.len(true));
            assert!(lines(&stored) < lines(&whole) / 4, "only the end is folded");
            assert!(shown_of(&stored).has_pending());
            assert_eq!(drawn(&stored), drawn(&whole), "at {target}");
            if idle {
                while stored.carry_ahead() {}
                assert!(!shown_of(&stored).has_pending());
                same_on_screen(&stored.app, &whole.app, target);
            }
            // To the top of the transcript: its first lines.
            for r in [&mut stored, &mut whole] {
                r.handle_key(KeyEvent::from(KeyCode::Char('g')));
            }
            assert_eq!(drawn(&stored), drawn(&whole), "at the top, at {target}");
            same_on_screen(&stored.app, &whole.app, target);
            for r in [&mut stored, &mut whole] {
                r.handle_key(KeyEvent::from(KeyCode::Char('G')));
            }
        }
        // Scrolled back, a click shows a whole transcript at once.
        for r in [&mut stored, &mut whole] {
            r.handle_key(KeyEvent::from(KeyCode::Char('g')));
            r.seek(middle(0));
        }
        assert!(!shown_of(&stored).has_pending());
        assert_eq!(drawn(&stored), drawn(&whole));
        same_on_screen(&stored.app, &whole.app, middle(0));
    }

    /// Stores `events` (in batches, so chunks are sealed) at `path`.
    fn store_events(path: &Path, events: &[Event]) {
        let mut store = Store::open(path).unwrap();
        for batch in events.chunks(500) {
            store.append_batch(batch).unwrap();
        }
    }

    /// The run at `path` replayed from the store with a checkpoint every
    /// `every` events, and from `events` folded whole, both at `at`.
    fn stored_and_whole(
        path: &Path,
        run: &RunId,
        events: &[Event],
        at: usize,
        every: usize,
    ) -> (Replay, Replay) {
        let stored = Replay::open_stored_with(
            "r",
            path,
            run,
            BTreeMap::new(),
            at,
            Checkpoints::every(every),
        )
        .unwrap();
        (stored, Replay::open_at("r", events.to_vec(), at))
    }

    /// The stored record of a replay opened from a store.
    fn stored_of(replay: &Replay) -> &Stored {
        let Record::Stored(s) = &replay.record else {
            panic!("not stored")
        };
        s
    }

    fn stored_of_mut(replay: &mut Replay) -> &mut Stored {
        let Record::Stored(s) = &mut replay.record else {
            panic!("not stored")
        };
        s
    }

    fn checkpoints_of(replay: &Replay) -> &Checkpoints {
        &stored_of(replay).checkpoints
    }

    /// Going back (a step, a jump, a click) starts from the nearest
    /// checkpoint, with the transcript on screen cut back to its mark, and
    /// shows exactly what folding every event to there shows: checked at
    /// and around checkpoint boundaries, both ways, with the human's choice
    /// of task and agent.
    #[test]
    fn going_back_through_checkpoints_shows_what_folding_every_event_shows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 4, 5_000);
        store_events(&path, &events);
        let every = 300;
        let len = events.len();
        let (mut stored, mut whole) = stored_and_whole(&path, &run, &events, len * 3 / 4, every);
        assert!(checkpoints_of(&stored).has(len * 3 / 4 / every * every));
        let at = stored.cursor();
        same_on_screen(settled(&mut stored), &whole.app, at);
        let targets = [
            len * 3 / 4 - 1,
            2 * every + 1,
            2 * every,
            2 * every - 1,
            every,
            every - 1,
            len,
            len - 1,
            7 * every + 5,
            7 * every,
            3,
            len / 2 + 1,
            len / 2,
            len / 2 - 1,
        ];
        for (i, &target) in targets.iter().enumerate() {
            stored.seek(target);
            whole.seek(target);
            assert!(stored.note.is_none(), "{:?}", stored.note);
            same_on_screen(settled(&mut stored), &whole.app, target);
            // Step back one event at a time, across a boundary.
            for _ in 0..3 {
                for r in [&mut stored, &mut whole] {
                    r.handle_key(KeyEvent::from(KeyCode::Char(',')));
                }
                let at = stored.cursor();
                same_on_screen(settled(&mut stored), &whole.app, at);
            }
            if i == targets.len() / 2 {
                // The human picks another task and an earlier agent.
                for key in ['k', '<'] {
                    stored.handle_key(KeyEvent::from(KeyCode::Char(key)));
                    whole.handle_key(KeyEvent::from(KeyCode::Char(key)));
                }
            }
        }
        assert_a_conversation_is_shown(&stored.app);
    }

    /// A click that shows another agent rebuilds its transcript from that
    /// agent's own events: every task's agent, looked at after clicks both
    /// ways, shows what folding every event shows.
    #[test]
    fn scrubbing_to_another_agent_shows_the_transcript_a_full_fold_shows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 6, 9_000);
        store_events(&path, &events);
        let len = events.len();
        let every = 500;
        let (mut stored, mut whole) = stored_and_whole(&path, &run, &events, len / 3, every);
        for target in [len - 2, len / 5, every * 9 + 1, every * 9 - 1, len / 2, 40] {
            stored.seek(target);
            whole.seek(target);
            same_on_screen(settled(&mut stored), &whole.app, target);
            // Each task in turn, and its agents back in time.
            for key in ['j', 'j', '<', 'k', 'j', 'j', 'j'] {
                stored.handle_key(KeyEvent::from(KeyCode::Char(key)));
                whole.handle_key(KeyEvent::from(KeyCode::Char(key)));
                assert!(stored.note.is_none(), "{:?}", stored.note);
                same_on_screen(settled(&mut stored), &whole.app, target);
            }
        }
    }

    /// Swaps the stored replay's reader for one of an empty store: from
    /// then on, any conversation text it reads is missing.
    fn without_text(replay: &mut Replay, dir: &Path) -> Store {
        let empty = dir.join("empty.db");
        drop(Store::open(&empty).unwrap());
        std::mem::replace(
            &mut stored_of_mut(replay).store,
            Store::open_reader(&empty).unwrap(),
        )
    }

    fn shown_of(replay: &Replay) -> &Shown {
        &stored_of(replay).shown
    }

    /// Stepping back, one event or a click, cuts the transcript on screen
    /// back to where it was then, reading no text: with the text gone from
    /// the store after stepping forward, every step back, across
    /// checkpoints, still shows what folding every event shows.
    #[test]
    fn stepping_back_cuts_the_transcript_on_screen_and_reads_no_text() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 4, 6_000);
        store_events(&path, &events);
        let k = events.len() / 2 - 300;
        let (mut stored, mut whole) = stored_and_whole(&path, &run, &events, k, 100);
        let agent = stored.app.shown_agent().cloned();
        for _ in 0..40 {
            for r in [&mut stored, &mut whole] {
                r.handle_key(KeyEvent::from(KeyCode::Char('.')));
            }
        }
        same_on_screen(settled(&mut stored), &whole.app, k + 40);
        without_text(&mut stored, tmp.path());
        for _ in 0..250 {
            for r in [&mut stored, &mut whole] {
                r.handle_key(KeyEvent::from(KeyCode::Char(',')));
            }
            assert!(stored.note.is_none(), "{:?}", stored.note);
            let at = stored.cursor();
            same_on_screen(settled(&mut stored), &whole.app, at);
        }
        for target in [k - 300, k - 700] {
            stored.seek(target);
            whole.seek(target);
            same_on_screen(settled(&mut stored), &whole.app, target);
        }
        assert_eq!(
            stored.app.shown_agent().cloned(),
            agent,
            "one agent all along"
        );
        assert_a_conversation_is_shown(&stored.app);
    }

    /// An agent shown before is its kept transcript cut back or extended,
    /// not rebuilt: after A, B and an agent before A started were shown,
    /// clicks back to A and B read no text and show what folding every
    /// event shows; going on past where A was shown reads only the rest.
    /// At most `KEPT` transcripts are kept besides those on screen.
    #[test]
    fn an_agent_shown_again_is_its_kept_transcript_cut_back_or_extended() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let tasks = 6;
        let events = crate::domain::synthetic::run_events(&run, tasks, 9_000);
        store_events(&path, &events);
        let len = events.len();
        // The middle of each task's stretch of the run.
        let middle = |task: usize| len * (2 * task + 1) / (2 * tasks);
        let (a, b) = (middle(2), middle(4));
        let (mut stored, mut whole) = stored_and_whole(&path, &run, &events, a, 500);
        settled(&mut stored);
        let shown_a = stored.app.shown_agent().cloned();
        let mut seen = vec![shown_a.clone()];
        for target in [b, 40] {
            stored.seek(target);
            whole.seek(target);
            same_on_screen(settled(&mut stored), &whole.app, target);
            seen.push(stored.app.shown_agent().cloned());
        }
        assert!(seen.iter().all(Option::is_some));
        assert!(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2]);
        let text = without_text(&mut stored, tmp.path());
        for target in [a - 300, b - 5, 30, a - 400] {
            stored.seek(target);
            whole.seek(target);
            assert!(stored.note.is_none(), "{:?}", stored.note);
            same_on_screen(settled(&mut stored), &whole.app, target);
        }
        assert_eq!(stored.app.shown_agent().cloned(), shown_a);
        stored_of_mut(&mut stored).store = text;
        for target in [a + 200, a - 100, a + 300] {
            stored.seek(target);
            whole.seek(target);
            assert!(stored.note.is_none(), "{:?}", stored.note);
            same_on_screen(settled(&mut stored), &whole.app, target);
        }
        for task in 0..tasks {
            stored.seek(middle(task));
            whole.seek(middle(task));
            same_on_screen(settled(&mut stored), &whole.app, middle(task));
            let shown = shown_of(&stored);
            assert!(shown.kept() <= shown::KEPT + shown.on_screen());
        }
        assert!(shown_of(&stored).kept() > shown::KEPT);
    }

    /// Checkpoints carried ahead while idle reach the end of the run, and
    /// a click far ahead starts from one: it shows what folding every
    /// event shows, both ways.
    #[test]
    fn checkpoints_carried_ahead_are_where_a_click_ahead_starts() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 4, 6_000);
        store_events(&path, &events);
        let len = events.len();
        let every = 400;
        let (mut stored, mut whole) = stored_and_whole(&path, &run, &events, every + 3, every);
        assert!(!checkpoints_of(&stored).has(3 * every));
        let mut turns = 0;
        while stored.carry_ahead() {
            turns += 1;
        }
        assert_eq!(turns, len / every - 2);
        assert!(checkpoints_of(&stored).has(len / every * every));
        assert_eq!(stored.cursor(), every + 3, "carrying ahead moves nothing");
        same_on_screen(settled(&mut stored), &whole.app, every + 3);
        for target in [
            len - 5,
            5 * every + 1,
            9 * every,
            len / 2,
            2 * every - 1,
            len,
        ] {
            stored.seek(target);
            whole.seek(target);
            assert!(stored.note.is_none(), "{:?}", stored.note);
            same_on_screen(settled(&mut stored), &whole.app, target);
            for key in ['j', '<'] {
                stored.handle_key(KeyEvent::from(KeyCode::Char(key)));
                whole.handle_key(KeyEvent::from(KeyCode::Char(key)));
                same_on_screen(settled(&mut stored), &whole.app, target);
            }
        }
    }

    /// A run migrated from a v2 store replays through checkpoints exactly
    /// as its events fold, at every cursor.
    #[test]
    fn a_migrated_v2_run_replays_through_checkpoints_as_its_events_fold() {
        use std::io::Read;
        let gz = include_bytes!("../../../tests/fixtures/store/v2-main-30aa5b1.db.gz");
        let mut db = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut db)
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("memofab.db");
        std::fs::write(&path, db).unwrap();
        for (run, every) in [("r20261207-013209-1b7a", 16), ("bench-store", 100)] {
            let run = RunId::from(run);
            let events = Store::open(&path).unwrap().events(&run).unwrap();
            let len = events.len();
            let (mut stored, mut whole) = stored_and_whole(&path, &run, &events, len, every);
            for target in (1..len).rev().step_by(7).chain([every, every + 1, len]) {
                stored.seek(target);
                whole.seek(target);
                assert!(stored.note.is_none(), "{:?}", stored.note);
                same_on_screen(settled(&mut stored), &whole.app, target);
            }
        }
    }

    #[test]
    fn decisions_are_refused_in_a_replay() {
        let mut replay = Replay::new("r", fixture::events());
        replay.seek(replay.len());
        replay.handle_key(KeyEvent::from(KeyCode::Char('a')));
        assert!(replay.note.as_deref().unwrap_or("").contains("read-only"));
    }
}
