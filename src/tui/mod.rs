//! The cockpit: a ratatui front end over the engine. It sees only
//! [`EngineUpdate`]s and sends only [`Command`]s; the model ([`app`]) is pure
//! and the view ([`view`]) draws it without IO.

pub mod app;
mod event_loop;
pub mod highlight;
pub mod notify;
pub mod proposals;
pub mod replay;
pub mod runs;
mod terminal;
pub mod theme;
pub mod transcript;
pub mod view;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

pub use theme::{Theme, ThemeError};

use crate::protocol::{Command, EngineUpdate};

pub struct TuiOptions {
    pub theme: Theme,
    pub mouse: bool,
    pub title: String,
    /// Model prices (USD per million tokens) for the cost columns.
    pub prices: std::collections::BTreeMap<String, crate::config::Price>,
    /// How a new inbox item is announced.
    pub notify: notify::Notify,
}

/// Shows the overseer's proposals; `approve` applies one.
pub async fn run_proposals(
    view: proposals::ProposalsView,
    options: TuiOptions,
    approve: impl FnMut(u32) -> Result<String, String>,
) -> anyhow::Result<()> {
    event_loop::run_proposals(view, options, approve).await
}

/// The runs browser: Enter replays a run (events read by `load`).
pub async fn run_browser(
    view: runs::RunsView,
    options: TuiOptions,
    load: impl FnMut(&crate::domain::RunId) -> Result<Vec<crate::domain::Event>, String>,
) -> anyhow::Result<()> {
    event_loop::run_browser(view, options, load).await
}

/// Replays a stored run in the cockpit until the human quits.
/// `at` puts the cursor at an event number or a time (`90s`, `2m`) first.
pub async fn run_replay(
    events: Vec<crate::domain::Event>,
    at: Option<&str>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    event_loop::run_replay(events, at, options).await
}

/// Replays `run` of the store at `path`, reading a long run's conversation
/// text only for the agents on screen.
pub async fn run_stored_replay(
    path: &std::path::Path,
    run: &crate::domain::RunId,
    at: Option<&str>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    let replay = replay::Replay::open_stored(&options.title, path, run, options.prices.clone(), 1)?;
    event_loop::play_replay(replay, at, options).await
}

/// The cockpit attached to the daemon's run until the human detaches:
/// `feed` carries the run's updates and word of the connection, `commands`
/// go to the run (a requirement written with no run under way comes out as
/// `SubmitSpec`, for the caller to queue).
pub async fn run_attached(
    feed: UnboundedReceiver<app::Feed>,
    commands: UnboundedSender<Command>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    event_loop::run_attached(feed, commands, options).await
}

/// Runs the cockpit until the human quits.
pub async fn run_tui(
    updates: UnboundedReceiver<EngineUpdate>,
    commands: UnboundedSender<Command>,
    options: TuiOptions,
) -> anyhow::Result<()> {
    event_loop::run(updates, commands, options).await
}
