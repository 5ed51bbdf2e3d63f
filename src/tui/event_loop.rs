//! The cockpit's loop: `select!` over terminal input, engine updates and a
//! clock tick; drain what is pending, update the model, and draw only when
//! something visible changed. Keys become actions; the only IO here is
//! sending commands and, on request, suspending for $EDITOR.

use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::app::{Action, App, Feed};
use super::notify::{self, Notifier};
use super::terminal::TerminalGuard;
use super::{TuiOptions, view};
use crate::protocol::{Command, EngineUpdate};

/// Elapsed times on screen tick once a second while work is running.
const CLOCK: Duration = Duration::from_secs(1);

pub async fn run(
    updates: UnboundedReceiver<EngineUpdate>,
    commands: UnboundedSender<Command>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    let app = App::new(&options.title);
    run_app(app, updates, commands, options).await
}

/// The cockpit attached to the daemon's run: fed by the connection.
pub async fn run_attached(
    feed: UnboundedReceiver<Feed>,
    commands: UnboundedSender<Command>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    let app = App::attached(&options.title);
    run_app(app, feed, commands, options).await
}

async fn run_app<M: Into<Feed>>(
    mut app: App,
    mut updates: UnboundedReceiver<M>,
    commands: UnboundedSender<Command>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    let mut guard = TerminalGuard::enter(options.mouse)?;
    app.prices = options.prices.clone();
    let mut input = EventStream::new();
    let mut clock = tokio::time::interval(CLOCK);
    let mut engine_open = true;
    let mut dirty = true;
    let mut notifier = Notifier::default();
    loop {
        if dirty {
            guard
                .terminal
                .draw(|frame| view::render(frame, &app, &options.theme))?;
            dirty = false;
        }
        tokio::select! {
            update = updates.recv(), if engine_open => match update {
                Some(update) => {
                    dirty |= app.feed(update.into());
                    // Batch whatever else is already waiting into one frame.
                    while let Ok(more) = updates.try_recv() {
                        dirty |= app.feed(more.into());
                    }
                    if let Some(bytes) = notifier.on_inbox(&app.inbox(), options.notify) {
                        use std::io::Write;
                        let out = guard.terminal.backend_mut();
                        // A lost bell is not worth stopping the cockpit for.
                        let _ = out.write_all(&bytes).and_then(|()| out.flush());
                    }
                }
                None => engine_open = false,
            },
            event = input.next() => match event {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    dirty = true;
                    for action in app.handle_key(key) {
                        match action {
                            Action::Send(command) => {
                                let _ = commands.send(command);
                            }
                            Action::Quit => return Ok(()),
                            Action::Edit(path) => {
                                let editor = std::env::var("EDITOR").unwrap_or_else(|_| "vi".into());
                                guard.suspend(|| std::process::Command::new(&editor).arg(&path).status())??;
                            }
                        }
                    }
                }
                Some(Ok(TermEvent::Mouse(mouse))) => {
                    app.handle_mouse(mouse);
                    dirty = true;
                }
                Some(Ok(TermEvent::Resize(_, _))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            _ = clock.tick() => {
                // Work in progress shows its time, parked agents count down to
                // their resume time (even in planning), and what waits on the
                // human shows how long it has waited.
                if app.state.as_ref().is_some_and(|s| {
                    !s.parked.is_empty() || s.tasks().iter().any(|t| t.state.is_active())
                }) || !app.inbox().is_empty()
                {
                    app.now_ms = crate::effects::clock::now_ms();
                    dirty = true;
                }
            }
        }
    }
}

/// The replay cockpit: no engine, only stored events and a cursor.
pub async fn run_replay(
    events: Vec<crate::domain::Event>,
    at: Option<&str>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    let mut replay = super::replay::Replay::new(&options.title, events);
    replay.app.prices = options.prices.clone();
    play_replay(replay, at, options).await
}

/// The replay cockpit over `replay`, opened already.
pub async fn play_replay(
    mut replay: super::replay::Replay,
    at: Option<&str>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    use super::replay::{Frames, ReplayKey};
    if let Some(at) = at {
        replay
            .jump_to(at)
            .map_err(|e| anyhow::anyhow!("--at {e}"))?;
    }
    let mut guard = TerminalGuard::enter(options.mouse)?;
    let mut input = EventStream::new();
    let mut frames = Frames::default();
    let mut dirty = true;
    // Between keys, the transcript on screen gets its beginning and
    // checkpoints are carried ahead of the cursor, a piece at a time.
    let mut ahead = true;
    loop {
        if dirty {
            guard
                .terminal
                .draw(|frame| replay.render(frame, &options.theme))?;
            dirty = false;
        }
        tokio::select! {
            biased;
            event = input.next() => match event {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    if replay.handle_key(key) == ReplayKey::Quit {
                        return Ok(());
                    }
                    dirty = true;
                    ahead = true;
                }
                Some(Ok(TermEvent::Mouse(mouse))) => {
                    let size = guard.terminal.size()?;
                    replay.handle_mouse(mouse, size.width, size.height);
                    dirty = true;
                    ahead = true;
                }
                Some(Ok(TermEvent::Resize(_, _))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            dt = frames.next(), if replay.playing => {
                dirty |= replay.tick(dt);
                // Stopping at the end changes the play glyph.
                dirty |= !replay.playing;
            }
            () = tokio::task::yield_now(), if ahead && !replay.playing => {
                ahead = replay.carry_ahead();
            }
        }
    }
}

/// The overseer's proposals: approve one with a keystroke; `approve` applies
/// it (and records the approval), returning a note for the human.
pub async fn run_proposals(
    mut view: super::proposals::ProposalsView,
    options: TuiOptions,
    mut approve: impl FnMut(u32) -> Result<String, String>,
) -> anyhow::Result<()> {
    use super::proposals::ProposalAction;
    let mut guard = TerminalGuard::enter(false)?;
    let mut input = EventStream::new();
    loop {
        guard
            .terminal
            .draw(|frame| view.render(frame, &options.theme))?;
        match input.next().await {
            Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                match view.handle_key(key) {
                    Some(ProposalAction::Quit) => return Ok(()),
                    Some(ProposalAction::Approve(n)) => match approve(n) {
                        Ok(note) => {
                            view.decided.push(n);
                            view.note = Some(note);
                        }
                        Err(e) => view.note = Some(format!("not applied: {e}")),
                    },
                    None => {}
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(()),
        }
    }
}

/// Past runs; Enter replays one, quitting the replay comes back here.
pub async fn run_browser(
    mut view: super::runs::RunsView,
    options: TuiOptions,
    mut load: impl FnMut(&crate::domain::RunId) -> Result<Vec<crate::domain::Event>, String>,
) -> anyhow::Result<()> {
    use super::runs::RunsAction;
    loop {
        let chosen = {
            let mut guard = TerminalGuard::enter(false)?;
            let mut input = EventStream::new();
            loop {
                guard
                    .terminal
                    .draw(|frame| view.render(frame, &options.theme))?;
                match input.next().await {
                    Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                        match view.handle_key(key) {
                            Some(RunsAction::Quit) => return Ok(()),
                            Some(RunsAction::Open(run)) => break run,
                            None => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                }
            }
        };
        match load(&chosen) {
            Ok(events) if !events.is_empty() => {
                let replay_options = TuiOptions {
                    theme: options.theme.clone(),
                    mouse: options.mouse,
                    title: format!("memofab replay {chosen}"),
                    prices: options.prices.clone(),
                    notify: notify::Notify::Off,
                };
                run_replay(events, None, replay_options).await?;
                view.note = None;
            }
            Ok(_) => view.note = Some(format!(" run {chosen} has no events")),
            Err(e) => view.note = Some(format!(" cannot read {chosen}: {e}")),
        }
    }
}
