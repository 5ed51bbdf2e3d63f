//! The cockpit (placeholder until the TUI lands).

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::protocol::{Command, EngineUpdate};

#[derive(Debug, Clone)]
pub struct Theme;

impl Theme {
    pub fn load(_name: &str) -> Result<Theme, std::io::Error> {
        Ok(Theme)
    }
}

pub struct TuiOptions {
    pub theme: Theme,
    pub mouse: bool,
    pub title: String,
}

pub async fn run_tui(
    _updates: UnboundedReceiver<EngineUpdate>,
    _commands: UnboundedSender<Command>,
    _options: TuiOptions,
) -> anyhow::Result<()> {
    anyhow::bail!("the cockpit is not built yet; use --headless")
}
