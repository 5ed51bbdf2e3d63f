//! Terminal setup and restoration. The terminal is restored on every exit
//! path: normal return, error, and panic (through a hook).

use std::io::{self, Stdout};

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Restores the terminal when dropped.
pub struct TerminalGuard {
    pub terminal: Term,
    mouse: bool,
}

impl TerminalGuard {
    pub fn enter(mouse: bool) -> io::Result<Self> {
        install_panic_hook(mouse);
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if mouse {
            execute!(stdout, EnterAlternateScreen, EnableMouseCapture)?;
        } else {
            execute!(stdout, EnterAlternateScreen)?;
        }
        let terminal = Terminal::new(CrosstermBackend::new(stdout))?;
        Ok(Self { terminal, mouse })
    }

    /// Hands the terminal to another program (an editor) and takes it back.
    pub fn suspend<T>(&mut self, f: impl FnOnce() -> T) -> io::Result<T> {
        restore(self.mouse);
        let out = f();
        enable_raw_mode()?;
        if self.mouse {
            execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        } else {
            execute!(io::stdout(), EnterAlternateScreen)?;
        }
        self.terminal.clear()?;
        Ok(out)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore(self.mouse);
        let _ = self.terminal.show_cursor();
    }
}

fn restore(mouse: bool) {
    let _ = disable_raw_mode();
    if mouse {
        let _ = execute!(io::stdout(), DisableMouseCapture, LeaveAlternateScreen);
    } else {
        let _ = execute!(io::stdout(), LeaveAlternateScreen);
    }
}

fn install_panic_hook(mouse: bool) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore(mouse);
        previous(info);
    }));
}
