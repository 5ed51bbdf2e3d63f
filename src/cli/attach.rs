//! `memofab` in a repository the daemon serves: the cockpit attaches to the
//! daemon's run over its socket instead of starting an engine of its own.
//! The connection is bridged to the cockpit's channels: replies become its
//! feed, its commands become request lines. Leaving closes the connection,
//! which detaches and stops nothing.
//!
//! Or, anywhere the PostgreSQL record is reachable, `memofab --store URL
//! attach [RUN]`: the same cockpit fed by a store follower (the run's
//! committed events, live over LISTEN/NOTIFY), its decisions written to the
//! shared inbox, which the process working the run reads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::args::{AttachArgs, GlobalArgs};
use crate::daemon::protocol::{Reply, Request};
use crate::daemon::{DaemonPaths, client};
use crate::domain::queue::Source;
use crate::domain::{Decider, RunId};
use crate::effects::queue::{NewRequirement, Queue};
use crate::effects::store::Store;
use crate::protocol::{Command, EngineUpdate};
use crate::tui::app::Feed;

/// How long the daemon may take to answer an attach.
const ANSWER: Duration = Duration::from_secs(10);

/// A connection the daemon accepted: it follows `run` (or waits for one).
pub struct Attachment {
    repo: PathBuf,
    paths: DaemonPaths,
    run: Option<RunId>,
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

/// Attaches to the daemon serving `repo` (canonical); `None` when no daemon
/// listens or it does not serve this repository, so the caller runs the
/// engine in-process as before.
pub async fn connect(repo: &Path) -> Result<Option<Attachment>> {
    let Ok(paths) = DaemonPaths::from_env() else {
        return Ok(None);
    };
    let Ok(stream) = UnixStream::connect(&paths.socket).await else {
        return Ok(None);
    };
    let (read, mut writer) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    send(
        &mut writer,
        &Request::Attach {
            repo: repo.to_owned(),
        },
    )
    .await
    .context("asking the daemon to attach")?;
    let answer = tokio::time::timeout(ANSWER, lines.next_line())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let Some(answer) = answer else {
        bail!(
            "the daemon listening at {} did not answer; `memofab queue` shows whether it serves",
            paths.socket.display()
        );
    };
    match serde_json::from_str::<Reply>(&answer) {
        Ok(Reply::Attached { run }) => Ok(Some(Attachment {
            repo: repo.to_owned(),
            paths,
            run,
            lines,
            writer,
        })),
        // Not a repository the daemon serves: this cockpit runs its own engine.
        Ok(Reply::Error { .. }) => Ok(None),
        _ => bail!("the daemon answered the attach with {answer:?}"),
    }
}

/// The cockpit on the daemon's run until the human detaches.
pub async fn run(global: &GlobalArgs, attachment: Attachment) -> Result<ExitCode> {
    super::require_terminal(
        "the cockpit",
        "`memofab queue` shows the daemon's queue and `memofab runs` the runs",
    )?;
    let config = super::load_config(&attachment.repo, global.config.as_deref())?;
    let options = super::headless::cockpit_options(&config, "memofab")?;
    let Attachment {
        repo,
        paths,
        run,
        lines,
        writer,
    } = attachment;
    let (feed, feed_rx) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let _ = feed.send(Feed::Attached(run));
    if let Ok(Some(waiting)) = crate::engine::overseer::waiting_proposals(&repo) {
        let _ = feed.send(Feed::Update(
            crate::protocol::EngineUpdate::ProposalsWaiting(waiting),
        ));
    }
    let reader = tokio::spawn(read_replies(lines, feed.clone()));
    let writer = tokio::spawn(write_commands(
        writer,
        commands_rx,
        feed,
        repo,
        paths.clone(),
    ));
    let ui = crate::tui::run_attached(feed_rx, commands, options).await;
    // Closing the connection is detaching.
    reader.abort();
    writer.abort();
    ui?;
    // The daemon may have gone while this cockpit was attached (killed,
    // crashed, stopped): then nothing goes on, and saying so is the job.
    let serving =
        tokio::task::spawn_blocking(move || client::request(&paths, &Request::Status).is_some())
            .await
            .unwrap_or(false);
    if !serving {
        bail!(
            "the daemon stopped while this cockpit was attached; `memofab serve` starts it again and its runs resume where they stopped"
        );
    }
    eprintln!(
        "memofab: detached; the daemon's run goes on (`memofab` here attaches again, `memofab queue` shows the queue)"
    );
    Ok(ExitCode::SUCCESS)
}

/// The daemon's replies, as the cockpit's feed.
async fn read_replies(mut lines: Lines<BufReader<OwnedReadHalf>>, feed: UnboundedSender<Feed>) {
    let lost = loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break "the daemon closed the connection".to_owned(),
            Err(e) => break e.to_string(),
        };
        let item = match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Update(update)) => Feed::Update(update),
            Ok(Reply::Attached { run }) => Feed::Attached(run),
            Ok(Reply::Error { message }) => Feed::Refused(message),
            Ok(Reply::Ok | Reply::Status(_)) => continue,
            Err(e) => Feed::Refused(format!("unreadable reply from the daemon: {e}")),
        };
        if feed.send(item).is_err() {
            return;
        }
    };
    let _ = feed.send(Feed::Lost(lost));
}

/// The cockpit's commands, as request lines; a requirement written with no
/// run under way goes on the queue instead, and the daemon is woken.
async fn write_commands(
    mut writer: OwnedWriteHalf,
    mut commands: UnboundedReceiver<Command>,
    feed: UnboundedSender<Feed>,
    repo: PathBuf,
    paths: DaemonPaths,
) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::SubmitSpec { requirement } => {
                let _ = feed.send(queue_requirement(&repo, &paths, requirement).await);
            }
            // Leaving is closing the connection; the run is never stopped.
            Command::Shutdown => {}
            command => {
                if let Err(e) = send(&mut writer, &Request::Command(command)).await {
                    let _ = feed.send(Feed::Lost(e.to_string()));
                    return;
                }
            }
        }
    }
}

async fn queue_requirement(repo: &Path, paths: &DaemonPaths, requirement: String) -> Feed {
    let (repo, paths) = (repo.to_owned(), paths.clone());
    let queued = tokio::task::spawn_blocking(move || {
        let mut queue = Queue::open(&paths.queue).map_err(|e| e.to_string())?;
        let entry = crate::daemon::submit::submit(
            &mut queue,
            NewRequirement {
                repo: repo.display().to_string(),
                requirement,
                priority: 0,
                source: Source::Human,
                fingerprint: None,
            },
        )
        .map_err(|e| e.to_string())?;
        client::wake(&paths);
        Ok::<_, String>(entry.id)
    })
    .await;
    match queued {
        Ok(Ok(id)) => Feed::Queued(id),
        Ok(Err(why)) => Feed::Refused(why),
        Err(e) => Feed::Refused(e.to_string()),
    }
}

/// `memofab --store URL attach [RUN]`: the cockpit on a run recorded in
/// the PostgreSQL store, wherever it is worked, until the human leaves.
pub async fn through_store(global: &GlobalArgs, repo: &Path, args: AttachArgs) -> Result<ExitCode> {
    use crate::effects::store::postgres;
    let Some(url) = postgres::selected() else {
        bail!(
            "`memofab attach` follows a run recorded in PostgreSQL: give --store postgres://… (or MEMOFAB_STORE_URL, or [store] url); in a repository the daemon serves, plain `memofab` attaches to its run"
        );
    };
    let named = args.run.map(RunId::new);
    let (store, run) = tokio::task::spawn_blocking(move || find_run(url, named))
        .await
        .context("looking for the run")??;
    super::require_terminal(
        "the cockpit",
        "`memofab --store … export RUN` writes the run's record as text instead",
    )?;
    let config = super::load_config(repo, global.config.as_deref())?;
    let options = super::headless::cockpit_options(&config, "memofab")?;
    let (feed, feed_rx) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let _ = feed.send(Feed::ViaStore);
    let _ = feed.send(Feed::Attached(Some(run.clone())));
    let stop = Arc::new(AtomicBool::new(false));
    // The follower and the inbox's writer block (the `postgres` client):
    // threads of their own, left behind when the cockpit is gone.
    std::thread::Builder::new()
        .name("memofab-follow".into())
        .spawn({
            let (run, feed, stop) = (run.clone(), feed.clone(), Arc::clone(&stop));
            move || follow_into(url, &run, &stop, &feed)
        })
        .context("starting the follower")?;
    std::thread::Builder::new()
        .name("memofab-inbox".into())
        .spawn({
            let run = run.clone();
            move || leave_in_inbox(store, &run, commands_rx, &feed)
        })
        .context("starting the inbox's writer")?;
    let ui = crate::tui::run_attached(feed_rx, commands, options).await;
    stop.store(true, Ordering::Relaxed);
    ui?;
    eprintln!(
        "memofab: detached; run {run} goes on wherever it is worked (`memofab attach {run}` with the same store follows it again)"
    );
    Ok(ExitCode::SUCCESS)
}

/// The store, and the run named (which must be in it) or the latest one.
fn find_run(url: &str, named: Option<RunId>) -> Result<(Store, RunId)> {
    let store = Store::connect(url)?;
    let shown = crate::effects::store::postgres::url::redacted(url);
    let run = match named {
        Some(run) => {
            if store.last_seq(&run)? == 0 {
                bail!("{shown} holds no run {run}; `memofab --store … runs` lists its runs");
            }
            run
        }
        None => store
            .latest_run()?
            .with_context(|| format!("{shown} holds no run yet"))?,
    };
    Ok((store, run))
}

/// Feeds the cockpit the run's events until it ends or the cockpit goes;
/// a follower that cannot go on says why.
fn follow_into(url: &str, run: &RunId, stop: &AtomicBool, feed: &UnboundedSender<Feed>) {
    use crate::effects::store::postgres::follow::{FollowOptions, follow};
    let passed = follow(url, run, 0, &FollowOptions::default(), stop, |event| {
        feed.send(Feed::Update(EngineUpdate::Event(event))).is_ok()
    });
    if let Err(e) = passed {
        let _ = feed.send(Feed::Lost(format!("following run {run}: {e}")));
    }
}

/// The cockpit's commands, left in the shared inbox for the process that
/// works the run; leaving stops nothing, and no run starts from here.
fn leave_in_inbox(
    mut store: Store,
    run: &RunId,
    mut commands: UnboundedReceiver<Command>,
    feed: &UnboundedSender<Feed>,
) {
    while let Some(command) = commands.blocking_recv() {
        let refused = match command {
            Command::Shutdown => None,
            Command::SubmitSpec { .. } | Command::Brainstorm { .. } => Some(
                "this cockpit follows a run; `memofab run` or `memofab submit` starts one"
                    .to_owned(),
            ),
            command => store
                .push_command(run, &command, &Decider::Cockpit)
                .err()
                .map(|e| format!("not sent: {e}")),
        };
        if let Some(why) = refused {
            let _ = feed.send(Feed::Refused(why));
        }
    }
}

async fn send(writer: &mut OwnedWriteHalf, request: &Request) -> std::io::Result<()> {
    let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
    line.push('\n');
    writer.write_all(line.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::queue::ItemState;

    #[tokio::test]
    async fn a_requirement_written_with_no_run_goes_on_the_queue_as_the_humans() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("app");
        std::fs::create_dir_all(&repo).unwrap();
        let paths = DaemonPaths::in_dir(&dir.path().join("home"));
        paths.create_dirs().unwrap();
        Queue::open(&paths.queue)
            .unwrap()
            .add_repo(&repo, None)
            .unwrap();

        let fed = queue_requirement(&repo, &paths, "Add a flag".into()).await;
        let Feed::Queued(id) = fed else {
            panic!("not queued: {fed:?}")
        };
        let entry = Queue::open(&paths.queue).unwrap().entry(id).unwrap();
        assert_eq!(
            (entry.state, entry.source, entry.requirement.as_str()),
            (ItemState::Queued, Source::Human, "Add a flag")
        );

        // Nor a requirement longer than the repository's runs take.
        std::fs::create_dir_all(repo.join(".memofab")).unwrap();
        std::fs::write(
            repo.join(".memofab/config.toml"),
            "[run]\nmax_requirement_bytes = 10\n",
        )
        .unwrap();
        let fed = queue_requirement(&repo, &paths, "Add a flag, now".into()).await;
        assert!(matches!(fed, Feed::Refused(_)), "{fed:?}");

        // Nothing is queued for a repository the daemon does not serve.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let fed = queue_requirement(&elsewhere, &paths, "Add a flag".into()).await;
        assert!(matches!(fed, Feed::Refused(_)), "{fed:?}");
        assert_eq!(
            Queue::open(&paths.queue)
                .unwrap()
                .entries(&[])
                .unwrap()
                .len(),
            1
        );
    }
}
