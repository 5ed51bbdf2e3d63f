//! A cockpit attached over the socket: the server side.
//!
//! The connection follows its repository's run: `Attached{run}` names it,
//! then the run's stored events (catch-up), then its live updates. Every
//! event goes out once and in order: the broadcast is subscribed to before
//! the store is read, events at or below the last sequence number sent are
//! skipped, and a connection that fell behind the broadcast is caught up
//! from the store again. Lines from the cockpit are commands for the run; a
//! cockpit never stops the run (leaving is closing the connection). With no
//! run under way the connection waits, and follows the repository's next run
//! when it starts, as it does when a followed run ends and another begins.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::error::{DaemonError, DaemonResult};
use super::live::LiveRun;
use super::protocol::{Reply, Request};
use super::shared::Shared;
use crate::domain::{Event, RunId};
use crate::effects::store::{Store, StoreError};
use crate::engine::run::session::store_path;
use crate::protocol::{Command, EngineUpdate};

/// Events read from the store per query while catching up.
const CATCH_UP_CHUNK: usize = 2000;
/// How long an ended run's last updates may take to arrive.
const END_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves one attached cockpit until it leaves: `lines` are its further
/// requests (commands), `writer` takes the replies.
pub async fn serve(
    repo: PathBuf,
    lines: Lines<BufReader<OwnedReadHalf>>,
    mut writer: OwnedWriteHalf,
    shared: Shared,
) -> DaemonResult<()> {
    let name = match resolve(&shared, repo).await {
        Ok(name) => name,
        Err(e) => {
            send(
                &mut writer,
                &Reply::Error {
                    message: e.to_string(),
                },
            )
            .await;
            return Ok(());
        }
    };
    let watch = shared.live.watch();
    Connection {
        repo: name,
        lines,
        writer,
        shared,
        watch,
    }
    .serve()
    .await
}

/// The registered name of the repository at `repo`.
async fn resolve(shared: &Shared, repo: PathBuf) -> DaemonResult<String> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let queue = shared.queue()?;
        Ok(queue.resolve_repo(&repo.to_string_lossy())?.name)
    })
    .await
    .map_err(|e| DaemonError::Invalid(format!("resolving the repository: {e}")))?
}

/// Why following stopped.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// The cockpit closed the connection (or cannot be written to).
    Left,
    /// The followed run ended, or the wait saw a run start or end.
    Next,
}

struct Connection {
    /// The repository's registered name.
    repo: String,
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    shared: Shared,
    watch: watch::Receiver<u64>,
}

impl Connection {
    async fn serve(mut self) -> DaemonResult<()> {
        // The run followed last; a run that ended is not announced again.
        let mut followed: Option<RunId> = None;
        let mut announced = false;
        loop {
            // Seen before looking, so a change after the look wakes the wait.
            self.watch.borrow_and_update();
            let live = self.shared.live.get(&self.repo);
            let flow = match live {
                Some(live) if followed.as_ref() != Some(&live.run) => {
                    followed = Some(live.run.clone());
                    announced = true;
                    if !self
                        .reply(&Reply::Attached {
                            run: Some(live.run.clone()),
                        })
                        .await
                    {
                        return Ok(());
                    }
                    self.follow(live).await?
                }
                _ => {
                    if !announced {
                        announced = true;
                        if !self.reply(&Reply::Attached { run: None }).await {
                            return Ok(());
                        }
                    }
                    self.wait().await
                }
            };
            if flow == Flow::Left {
                return Ok(());
            }
        }
    }

    /// No run to follow: answer lines until a run starts or ends.
    async fn wait(&mut self) -> Flow {
        loop {
            tokio::select! {
                line = self.lines.next_line() => {
                    if self.on_line(line, None).await == Some(Flow::Left) {
                        return Flow::Left;
                    }
                }
                changed = self.watch.changed() => {
                    if changed.is_err() {
                        // The daemon is going away; its runs with it.
                        return Flow::Left;
                    }
                    return Flow::Next;
                }
            }
        }
    }

    /// Streams the run: its stored events, then its live updates, until it
    /// ends or the cockpit leaves.
    async fn follow(&mut self, live: LiveRun) -> DaemonResult<Flow> {
        let run = live.run.clone();
        let store = store_path(&live.path);
        // Subscribed before the store is read: nothing falls in between.
        let mut updates = live.updates.subscribe();
        // No sender is held here, so the run's end closes the broadcast.
        drop(live);
        let mut last = 0;
        if self.catch_up(&run, &store, &mut last).await? == Flow::Left {
            return Ok(Flow::Left);
        }
        loop {
            tokio::select! {
                line = self.lines.next_line() => {
                    if self.on_line(line, Some(&run)).await == Some(Flow::Left) {
                        return Ok(Flow::Left);
                    }
                }
                update = updates.recv() => match update {
                    Ok(update) => {
                        if !self.forward(update, &mut last).await {
                            return Ok(Flow::Left);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        if self.catch_up(&run, &store, &mut last).await? == Flow::Left {
                            return Ok(Flow::Left);
                        }
                    }
                    Err(RecvError::Closed) => return self.catch_up(&run, &store, &mut last).await,
                },
                changed = self.watch.changed() => {
                    let still = self.shared.live.get(&self.repo).is_some_and(|l| l.run == run);
                    if changed.is_err() || !still {
                        // The run ended: what is still on its way (its
                        // forwarder closes the broadcast once delivered),
                        // then whatever the store has that was not sent.
                        let rest = async {
                            loop {
                                match updates.recv().await {
                                    Ok(update) => {
                                        if !self.forward(update, &mut last).await {
                                            return Flow::Left;
                                        }
                                    }
                                    Err(RecvError::Lagged(_)) => {}
                                    Err(RecvError::Closed) => return Flow::Next,
                                }
                            }
                        };
                        if tokio::time::timeout(END_GRACE, rest).await == Ok(Flow::Left) {
                            return Ok(Flow::Left);
                        }
                        return self.catch_up(&run, &store, &mut last).await;
                    }
                }
            }
        }
    }

    /// Sends one live update; events already sent are skipped. False when
    /// the cockpit is gone.
    async fn forward(&mut self, update: EngineUpdate, last: &mut u64) -> bool {
        if let EngineUpdate::Event(event) = &update {
            if event.seq <= *last {
                return true;
            }
            *last = event.seq;
        }
        self.reply(&Reply::Update(update)).await
    }

    /// Sends the run's stored events after `last`, advancing it.
    async fn catch_up(&mut self, run: &RunId, store: &Path, last: &mut u64) -> DaemonResult<Flow> {
        loop {
            let events = read_events(store.to_owned(), run.clone(), *last).await?;
            let full = events.len() == CATCH_UP_CHUNK;
            for event in events {
                *last = event.seq;
                if !self.reply(&Reply::Update(EngineUpdate::Event(event))).await {
                    return Ok(Flow::Left);
                }
            }
            if !full {
                return Ok(Flow::Next);
            }
        }
    }

    /// Handles one line from the cockpit; `Some(Left)` when it left.
    async fn on_line(
        &mut self,
        line: std::io::Result<Option<String>>,
        run: Option<&RunId>,
    ) -> Option<Flow> {
        let Ok(Some(line)) = line else {
            return Some(Flow::Left);
        };
        if line.trim().is_empty() {
            return None;
        }
        let refusal = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Command(Command::Shutdown)) => Some(
                "a cockpit does not stop the daemon's run; close the connection to detach"
                    .to_owned(),
            ),
            Ok(Request::Command(command)) => self.command(command, run),
            Ok(_) => Some("already attached: only commands for the run are taken".to_owned()),
            Err(e) => Some(format!("not a request: {e}")),
        };
        match refusal {
            Some(message) => (!self.reply(&Reply::Error { message }).await).then_some(Flow::Left),
            None => None,
        }
    }

    /// Passes a command to the followed run; why not, if it was not.
    fn command(&self, command: Command, run: Option<&RunId>) -> Option<String> {
        let Some(run) = run else {
            return Some("no run under way in this repository".to_owned());
        };
        match self.shared.live.get(&self.repo) {
            Some(live) if &live.run == run => live
                .commands
                .send(command)
                .err()
                .map(|_| format!("run {run} has ended")),
            _ => Some(format!("run {run} has ended")),
        }
    }

    /// Writes one reply line; false when the cockpit is gone.
    async fn reply(&mut self, reply: &Reply) -> bool {
        send(&mut self.writer, reply).await
    }
}

async fn send(writer: &mut OwnedWriteHalf, reply: &Reply) -> bool {
    let Ok(mut line) = serde_json::to_string(reply) else {
        return false;
    };
    line.push('\n');
    writer.write_all(line.as_bytes()).await.is_ok()
}

/// Up to a chunk of the run's stored events after `after`. A store not yet
/// created holds none (the run's first events then come live).
async fn read_events(store: PathBuf, run: RunId, after: u64) -> DaemonResult<Vec<Event>> {
    tokio::task::spawn_blocking(move || -> Result<Vec<Event>, StoreError> {
        if !store.exists() {
            return Ok(Vec::new());
        }
        Store::open_reader(&store)?.events_after(&run, after, CATCH_UP_CHUNK)
    })
    .await
    .map_err(|e| DaemonError::Invalid(format!("reading the run's events: {e}")))?
    .map_err(|e| DaemonError::Engine(e.into()))
}

#[cfg(test)]
mod tests;
