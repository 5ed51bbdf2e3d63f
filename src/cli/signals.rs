//! SIGTERM, SIGINT and SIGHUP (the terminal closed) while the factory runs:
//! the first asks the engine to stop cleanly (it records the interruption,
//! the front end prints the summary and the resume command, the pid file
//! goes); a second one, for an engine that does not stop, ends the process
//! at once. What is said goes to stderr when it can: after SIGHUP there may
//! be no terminal left to write to, and that is no reason to stop uncleanly.
//! Work left on the blocking pool (libgit2 hashing a file, say) does not
//! hold the exit up: `cli::main` gives the runtime a bounded grace period.

use std::future::Future;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tokio::sync::mpsc::UnboundedSender;

use crate::protocol::Command;

/// A stop signal the process received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Interrupt,
    /// The terminal went away: stopped like SIGTERM, never like kill -9.
    Hangup,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Hangup => "SIGHUP",
        }
    }

    /// The shell's convention for a process ended by this signal: 128 + its number.
    pub fn exit_code_number(self) -> u8 {
        self.code()
    }

    fn code(self) -> u8 {
        match self {
            StopSignal::Terminate => 128 + 15,
            StopSignal::Interrupt => 128 + 2,
            StopSignal::Hangup => 128 + 1,
        }
    }

    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

/// The process's stop signals, caught from installation on.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    /// None when SIGHUP was ignored at start (`nohup memofab serve`): it
    /// stays ignored.
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            hup: if hangup_ignored() {
                None
            } else {
                Some(signal(SignalKind::hangup()).context("catching SIGHUP")?)
            },
        })
    }

    #[cfg(not(unix))]
    pub fn install() -> Result<Self> {
        Ok(Self {})
    }

    /// The next stop signal.
    #[cfg(unix)]
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => StopSignal::Terminate,
            _ = self.int.recv() => StopSignal::Interrupt,
            _ = async {
                match &mut self.hup {
                    Some(hup) => hup.recv().await,
                    None => std::future::pending().await,
                }
            } => StopSignal::Hangup,
        }
    }

    #[cfg(not(unix))]
    pub async fn recv(&mut self) -> StopSignal {
        let _ = tokio::signal::ctrl_c().await;
        StopSignal::Interrupt
    }

    /// Drives `engine` to its end. On a stop signal it asks the engine to
    /// shut down and waits for it; a second signal exits at once. Returns
    /// the engine's result and the signal that stopped it, if one did.
    pub async fn drive<T>(
        mut self,
        engine: impl Future<Output = T>,
        commands: &UnboundedSender<Command>,
    ) -> (T, Option<StopSignal>) {
        tokio::pin!(engine);
        let signal = tokio::select! {
            result = &mut engine => return (result, None),
            signal = self.recv() => signal,
        };
        say(&format!(
            "memofab: {} received; stopping the run (it can be resumed)",
            signal.name()
        ));
        let _ = commands.send(Command::Shutdown);
        self.exit_on_next();
        (engine.await, Some(signal))
    }

    /// From now on the next stop signal ends the process at once, whatever
    /// is still running: the engine's clean stop, the summary, work on the
    /// blocking pool. Lives until the runtime shuts down.
    pub fn exit_on_next(mut self) {
        tokio::spawn(async move {
            let again = self.recv().await;
            say(&format!("memofab: {} again; exiting now", again.name()));
            std::process::exit(i32::from(again.code()));
        });
    }
}

/// Whether SIGHUP is ignored, as `nohup` leaves it for its command.
#[cfg(unix)]
#[allow(unsafe_code)]
fn hangup_ignored() -> bool {
    // SAFETY: a zeroed sigaction is valid plain data; sigaction(2) with a
    // null new action only writes the current one into it.
    let (read, current) = unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        let read = libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut current);
        (read, current)
    };
    read == 0 && current.sa_sigaction == libc::SIG_IGN
}

/// A line on stderr, unless stderr is gone (`eprintln!` would panic).
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
