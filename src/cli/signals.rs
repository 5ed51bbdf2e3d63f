//! SIGTERM and SIGINT while the factory runs: the first asks the engine to
//! stop cleanly (it records the interruption, the front end prints the
//! summary and the resume command, the pid file goes); a second one, for an
//! engine that does not stop, ends the process at once. Work left on the
//! blocking pool (libgit2 hashing a file, say) does not hold the exit up:
//! `cli::main` gives the runtime a bounded grace period to shut down.

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
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
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
}

impl Signals {
    #[cfg(unix)]
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
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
        eprintln!(
            "memofab: {} received; stopping the run (it can be resumed)",
            signal.name()
        );
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
            eprintln!("memofab: {} again; exiting now", again.name());
            std::process::exit(i32::from(again.code()));
        });
    }
}
