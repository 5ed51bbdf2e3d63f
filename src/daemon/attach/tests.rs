//! `serve` in-process: a registered repository with a real store, a live run
//! fed by the test's own broadcast, and a client on a socket pair.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc};

use super::*;
use crate::daemon::DaemonPaths;
use crate::domain::RunState;
use crate::domain::queue::RequirementId;

struct Harness {
    _dir: tempfile::TempDir,
    shared: Shared,
    repo: PathBuf,
    store: Store,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    let shared = Shared::new(DaemonPaths::in_dir(&dir.path().join("home")));
    shared.paths.create_dirs().unwrap();
    shared
        .queue()
        .unwrap()
        .add_repo(&repo, Some("app"))
        .unwrap();
    let store = Store::open(&store_path(&repo)).unwrap();
    Harness {
        _dir: dir,
        shared,
        repo,
        store,
    }
}

/// A run under way, as a daemon worker registers it.
struct Run {
    updates: broadcast::Sender<EngineUpdate>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Harness {
    fn start(&self, run: &RunId, capacity: usize) -> Run {
        let (updates, _) = broadcast::channel(capacity);
        let (commands, rx) = mpsc::unbounded_channel();
        self.shared.live.insert(LiveRun {
            repo: "app".into(),
            path: self.repo.clone(),
            run: run.clone(),
            requirement: RequirementId(1),
            updates: updates.clone(),
            commands,
        });
        Run {
            updates,
            commands: rx,
        }
    }

    fn connect(&self) -> (Client, tokio::task::JoinHandle<DaemonResult<()>>) {
        self.connect_to(self.repo.clone())
    }

    fn connect_to(&self, repo: PathBuf) -> (Client, tokio::task::JoinHandle<DaemonResult<()>>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (read, write) = theirs.into_split();
        let server = tokio::spawn(serve(
            repo,
            BufReader::new(read).lines(),
            write,
            self.shared.clone(),
        ));
        let (read, writer) = ours.into_split();
        let client = Client {
            lines: BufReader::new(read).lines(),
            writer,
        };
        (client, server)
    }
}

struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn next(&mut self) -> Option<Reply> {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("a reply in time")
            .unwrap()?;
        Some(serde_json::from_str(&line).unwrap())
    }

    async fn event(&mut self) -> Event {
        match self.next().await {
            Some(Reply::Update(EngineUpdate::Event(e))) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Events up to the `Delta` the test sends as an end marker.
    async fn events_until_marker(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match self.next().await {
                Some(Reply::Update(EngineUpdate::Event(e))) => events.push(e),
                Some(Reply::Update(EngineUpdate::Delta { .. })) => return events,
                other => panic!("expected an event or the marker, got {other:?}"),
            }
        }
    }

    async fn send(&mut self, request: &Request) {
        let mut line = serde_json::to_string(request).unwrap();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await.unwrap();
    }
}

fn marker() -> EngineUpdate {
    EngineUpdate::Delta {
        agent: "marker".into(),
        text: String::new(),
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn run_of(events: &[Event]) -> RunId {
    events[0].run.clone()
}

#[tokio::test]
async fn a_cockpit_catches_up_from_the_store_then_follows_live_without_repeats() {
    let mut h = harness();
    let all = crate::domain::fixture::events();
    let run = run_of(&all);
    h.store.append_batch(&all[..10]).unwrap();
    let live = h.start(&run, 64);
    let (mut client, _server) = h.connect();
    assert_eq!(
        client.next().await,
        Some(Reply::Attached {
            run: Some(run.clone())
        })
    );
    let mut received = Vec::new();
    for _ in 0..10 {
        received.push(client.event().await);
    }
    // The engine stores, then broadcasts; the broadcast repeats a few the
    // cockpit already has from the store.
    h.store.append_batch(&all[10..]).unwrap();
    for event in &all[7..] {
        live.updates
            .send(EngineUpdate::Event(event.clone()))
            .unwrap();
    }
    live.updates.send(marker()).unwrap();
    received.extend(client.events_until_marker().await);
    assert_eq!(seqs(&received), seqs(&all));
    assert_eq!(
        RunState::fold(&received).unwrap(),
        RunState::fold(&all).unwrap()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_cockpit_that_falls_behind_is_caught_up_from_the_store() {
    let mut h = harness();
    let all = crate::domain::fixture::events();
    assert!(all.len() > 20);
    let run = run_of(&all);
    h.store.append_batch(&all[..3]).unwrap();
    let live = h.start(&run, 4);
    let (mut client, _server) = h.connect();
    client.next().await;
    for _ in 0..3 {
        client.event().await;
    }
    // All at once, with no await between: the connection lags the broadcast.
    h.store.append_batch(&all[3..]).unwrap();
    for event in &all[3..] {
        live.updates
            .send(EngineUpdate::Event(event.clone()))
            .unwrap();
    }
    live.updates.send(marker()).unwrap();
    let received = client.events_until_marker().await;
    assert_eq!(seqs(&received), seqs(&all[3..]));
}

#[tokio::test]
async fn commands_reach_the_run_and_a_cockpit_never_stops_it() {
    let h = harness();
    let all = crate::domain::fixture::events();
    let mut live = h.start(&run_of(&all), 64);
    let (mut client, server) = h.connect();
    client.next().await;
    let approve = Command::ApproveGate {
        task: "slug".into(),
    };
    client.send(&Request::Command(approve.clone())).await;
    client.send(&Request::Command(Command::Shutdown)).await;
    assert!(matches!(client.next().await, Some(Reply::Error { .. })));
    assert_eq!(live.commands.recv().await, Some(approve));
    // Leaving is closing the connection: the run hears nothing of it.
    drop(client);
    server.await.unwrap().unwrap();
    assert_eq!(
        live.commands.try_recv(),
        Err(mpsc::error::TryRecvError::Empty)
    );
}

#[tokio::test]
async fn a_waiting_cockpit_follows_the_next_run_and_the_one_after() {
    let mut h = harness();
    let (mut client, _server) = h.connect();
    assert_eq!(client.next().await, Some(Reply::Attached { run: None }));
    // Commands with no run are refused.
    client.send(&Request::Command(Command::Pause)).await;
    assert!(matches!(client.next().await, Some(Reply::Error { .. })));

    let first = crate::domain::fixture::events();
    h.store.append_batch(&first[..2]).unwrap();
    let live = h.start(&run_of(&first), 64);
    assert_eq!(
        client.next().await,
        Some(Reply::Attached {
            run: Some(run_of(&first))
        })
    );
    assert_eq!(seqs(&[client.event().await, client.event().await]), [1, 2]);
    // The run ends: the worker stores its last event, says so and leaves.
    h.store.append(&first[2]).unwrap();
    live.updates
        .send(EngineUpdate::Event(first[2].clone()))
        .unwrap();
    live.updates
        .send(EngineUpdate::Stopped { error: None })
        .unwrap();
    h.shared.live.remove("app");
    drop(live);
    assert_eq!(client.event().await.seq, 3);
    assert_eq!(
        client.next().await,
        Some(Reply::Update(EngineUpdate::Stopped { error: None }))
    );

    let second: Vec<Event> = first
        .iter()
        .map(|e| Event {
            run: RunId::from("r20261124-130000-beef"),
            ..e.clone()
        })
        .collect();
    h.store.append(&second[0]).unwrap();
    let _live = h.start(&run_of(&second), 64);
    assert_eq!(
        client.next().await,
        Some(Reply::Attached {
            run: Some(run_of(&second))
        })
    );
    let event = client.event().await;
    assert_eq!((event.run, event.seq), (run_of(&second), 1));
}

#[tokio::test]
async fn two_cockpits_see_the_same_run() {
    let mut h = harness();
    let all = crate::domain::fixture::events();
    h.store.append_batch(&all[..5]).unwrap();
    let live = h.start(&run_of(&all), 64);
    let (mut one, _a) = h.connect();
    let (mut two, _b) = h.connect();
    for client in [&mut one, &mut two] {
        client.next().await;
        for _ in 0..5 {
            client.event().await;
        }
    }
    h.store.append_batch(&all[5..]).unwrap();
    for event in &all[5..] {
        live.updates
            .send(EngineUpdate::Event(event.clone()))
            .unwrap();
    }
    live.updates.send(marker()).unwrap();
    let a = one.events_until_marker().await;
    let b = two.events_until_marker().await;
    assert_eq!(seqs(&a), seqs(&all[5..]));
    assert_eq!(a, b);
}

#[tokio::test]
async fn an_unregistered_repository_is_refused() {
    let h = harness();
    let elsewhere = tempfile::tempdir().unwrap();
    let (mut client, server) = h.connect_to(elsewhere.path().to_owned());
    assert!(matches!(client.next().await, Some(Reply::Error { .. })));
    assert_eq!(client.next().await, None);
    server.await.unwrap().unwrap();
}
