//! Replaying a stored run: the cockpit rebuilt purely from events up to a
//! cursor. Play, pause, change speed, step, jump and scrub; the model at the
//! cursor is the same fold the live cockpit made. Never calls a model and
//! never touches git.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{Action, App};
use super::theme::{Role, Theme};
use super::view;
use crate::domain::Event;

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

pub struct Replay {
    events: Vec<Event>,
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
        let mut replay = Self {
            events,
            cursor: 0,
            app: App::new(title),
            playing: false,
            speed: Speed::X4,
            clock_ms: 0.0,
            jump: None,
            note: None,
        };
        replay.app.read_only = true;
        replay.seek(1);
        replay
    }

    /// Opens with `cursor` events applied, folding straight there.
    pub fn open_at(title: &str, events: Vec<Event>, cursor: usize) -> Self {
        let mut replay = Self::new(title, Vec::new());
        replay.events = events;
        replay.seek(cursor.max(1));
        replay
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn start_ms(&self) -> u64 {
        self.events.first().map(|e| e.at_ms).unwrap_or(0)
    }

    fn elapsed_ms(&self, index: usize) -> u64 {
        self.events
            .get(index.saturating_sub(1))
            .map(|e| e.at_ms.saturating_sub(self.start_ms()))
            .unwrap_or(0)
    }

    /// Moves the cursor so that exactly `target` events are applied, and
    /// the playback clock to that event's time.
    pub fn seek(&mut self, target: usize) {
        self.fold_to(target);
        self.clock_ms = self.elapsed_ms(self.cursor) as f64;
    }

    /// Moves the cursor without touching the playback clock. Going back
    /// rebuilds the model from the start; going forward folds on.
    fn fold_to(&mut self, target: usize) {
        let target = target.min(self.events.len());
        if target < self.cursor {
            let mut fresh = App::new(&self.app.title);
            fresh.prices = self.app.prices.clone();
            fresh.fold(&self.events[..target]);
            fresh.keep_view_of(&self.app);
            self.app = fresh;
        } else {
            self.app.fold(&self.events[self.cursor..target]);
        }
        self.cursor = target;
    }

    /// Advances playback by `dt` of wall time. Returns whether anything moved.
    ///
    /// The clock runs on between events: a gap longer than one frame is
    /// crossed over several frames, never reset to the current event's time.
    pub fn tick(&mut self, dt: Duration) -> bool {
        if !self.playing || self.cursor >= self.events.len() {
            self.playing = false;
            return false;
        }
        let before = self.cursor;
        if self.speed == Speed::Max {
            self.seek(self.cursor + MAX_PER_TICK);
        } else {
            self.clock_ms += dt.as_secs_f64() * 1000.0 * self.speed.factor();
            let limit = self.start_ms() + self.clock_ms as u64;
            let target = self.cursor
                + self.events[self.cursor..]
                    .iter()
                    .take_while(|e| e.at_ms <= limit)
                    .count();
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
                let target = self.events.iter().take_while(|e| e.at_ms <= limit).count();
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
            KeyCode::Char('$') => self.seek(self.events.len()),
            _ => {
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
            }
        }
        ReplayKey::Handled
    }

    /// A click on the timeline (the last row, `width` wide) scrubs to that point.
    pub fn handle_mouse(&mut self, mouse: MouseEvent, width: u16, height: u16) {
        if mouse.kind == MouseEventKind::Down(MouseButton::Left)
            && mouse.row + 1 == height
            && width > 0
        {
            let target = (usize::from(mouse.column) * self.events.len()) / usize::from(width);
            self.seek(target.max(1));
        } else {
            self.app.handle_mouse(mouse);
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
                self.events.len(),
                self.elapsed_ms(self.cursor) as f64 / 1000.0,
                self.elapsed_ms(self.events.len()) as f64 / 1000.0
            ),
        };
        let filled = (self.cursor * width)
            .checked_div(self.events.len())
            .unwrap_or(0);
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

    #[test]
    fn decisions_are_refused_in_a_replay() {
        let mut replay = Replay::new("r", fixture::events());
        replay.seek(replay.len());
        replay.handle_key(KeyEvent::from(KeyCode::Char('a')));
        assert!(replay.note.as_deref().unwrap_or("").contains("read-only"));
    }
}
