//! `memofab serve`: the daemon in the foreground. It needs no terminal;
//! SIGTERM or SIGINT stops it gracefully (runs are interrupted and resume
//! at the next start), a second signal ends it at once.

use std::process::ExitCode;

use anyhow::Result;
use tokio::sync::oneshot;

use super::args::{GlobalArgs, ServeArgs};
use super::signals::Signals;
use crate::config::Config;
use crate::daemon::DaemonPaths;
use crate::daemon::intake::{Access, IntakeSettings};
use crate::daemon::server::Server;

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> Result<ExitCode> {
    let paths = DaemonPaths::from_env()?;
    paths.create_dirs()?;
    super::init_logging(&paths.log_dir);
    // The daemon's own settings: the user's config, and `--config`.
    let mut files: Vec<_> = Config::user_file().into_iter().collect();
    if let Some(extra) = &global.config {
        anyhow::ensure!(
            extra.exists(),
            "config file {} does not exist",
            extra.display()
        );
        files.push(extra.clone());
    }
    let config = Config::load(&files)?;
    // Refused before anything listens: no open intake by accident.
    let intake = match args.intake {
        Some(addr) => {
            let settings = IntakeSettings::from_config(&config.daemon, args.intake_insecure)?;
            settings.check_address(addr)?;
            Some((addr, settings))
        }
        None => None,
    };
    let mut signals = Signals::install()?;
    let mut server = Server::bind(paths, config.daemon.max_agents)?
        .lease(std::time::Duration::from_secs(config.daemon.lease_secs))
        .report_to(std::sync::Arc::new(|line| {
            say(&format!("memofab serve: {line}"))
        }));
    say(&format!(
        "memofab serve: listening on {} (pid {})",
        server.socket().display(),
        std::process::id()
    ));
    if let Some(url) = crate::effects::store::postgres::selected() {
        let lease = &server.shared().lease;
        say(&format!(
            "memofab serve: the queue is shared in {} as daemon {} (leases of {} s)",
            crate::effects::store::postgres::url::redacted(url),
            lease.owner,
            lease.length.as_secs()
        ));
    }
    if let Some((addr, settings)) = intake {
        let open = settings.access == Access::OpenOnLoopback;
        let bound = server.start_intake(addr, settings).await?;
        say(&format!(
            "memofab serve: incidents accepted at http://{bound}"
        ));
        if open {
            say(
                "memofab serve: the intake takes reports without a secret (--intake-insecure): any local program can queue work",
            );
        }
    }
    tracing::info!(pid = std::process::id(), "serving");
    let (stop_tx, stop_rx) = oneshot::channel();
    let signalled = tokio::spawn(async move {
        let first = signals.recv().await;
        super::signals::say(&format!(
            "memofab serve: {} received; stopping the runs (they resume at the next start)",
            first.name()
        ));
        let _ = stop_tx.send(());
        let again = signals.recv().await;
        super::signals::say(&format!(
            "memofab serve: {} again; exiting now",
            again.name()
        ));
        std::process::exit(i32::from(again.exit_code_number()));
    });
    server
        .run(async {
            let _ = stop_rx.await;
        })
        .await?;
    signalled.abort();
    say("memofab serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// A line on stdout; nobody reading it (a closed pipe, a service manager
/// that dropped it) is no reason to stop serving.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
