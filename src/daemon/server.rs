//! `memofab serve`: the lock, the socket and its accept loop, the workers,
//! the intake and the scheduled overseer, and a graceful stop.
//!
//! Each connection's first line is a [`Request`]; anything else gets a
//! [`Reply::Error`] and the daemon carries on. A stop (a signal, or a
//! `Shutdown` request) asks every run to shut down, waits for them to
//! record it, then removes the socket and lets go of the lock.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use super::error::{DaemonError, DaemonResult};
use super::lock::DaemonLock;
use super::paths::DaemonPaths;
use super::protocol::{DaemonStatus, LiveRunStatus, Reply, Request};
use super::shared::Shared;
use super::worker::Report;
use super::worker::{self, Workers};
use crate::engine::context::AgentSlots;

/// A daemon that holds the lock and listens; [`Server::run`] serves.
pub struct Server {
    shared: Shared,
    listener: UnixListener,
    agent_slots: AgentSlots,
    intake: Option<SocketAddr>,
    report: Report,
    // Released last, after the socket is gone.
    _lock: DaemonLock,
}

/// What every connection may need.
#[derive(Clone)]
struct Connections {
    shared: Shared,
    intake: Option<SocketAddr>,
    /// Rung by a `Shutdown` request.
    shutdown: Arc<Notify>,
}

impl Server {
    /// Takes the user's daemon lock (refused while another daemon holds
    /// it), replaces a stale socket and listens. `max_agents` caps the
    /// agents working at once across every repository.
    pub fn bind(paths: DaemonPaths, max_agents: usize) -> DaemonResult<Self> {
        paths.create_dirs()?;
        let lock = DaemonLock::acquire(&paths.lock)?;
        // Holding the lock, any socket left is a dead daemon's.
        match std::fs::remove_file(&paths.socket) {
            Ok(()) => tracing::info!(socket = %paths.socket.display(), "removed a stale socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DaemonError::io(format!(
                    "removing the stale socket {}",
                    paths.socket.display()
                ))(e));
            }
        }
        let shown = paths.socket.display().to_string();
        // sockaddr_un holds 108 bytes with its terminating NUL.
        if paths.socket.as_os_str().len() >= 108 {
            return Err(DaemonError::Invalid(format!(
                "the socket path {shown} is too long for a Unix socket (107 bytes at most); set MEMOFAB_HOME (or XDG_RUNTIME_DIR) to a shorter directory"
            )));
        }
        let listener = UnixListener::bind(&paths.socket)
            .map_err(DaemonError::io(format!("binding {shown}")))?;
        set_private(&paths.socket)?;
        Ok(Self {
            shared: Shared::new(paths),
            listener,
            agent_slots: Arc::new(Semaphore::new(max_agents.max(1))),
            intake: None,
            report: Arc::new(|_| {}),
            _lock: lock,
        })
    }

    /// Where a line goes when an entry's run starts or ends, for whoever
    /// watches the daemon (its terminal, a service manager's journal).
    pub fn report_to(mut self, report: Report) -> Self {
        self.report = report;
        self
    }

    /// How long this daemon's holds on shared queue entries last unless
    /// renewed (`[daemon] lease_secs`).
    pub fn lease(mut self, length: std::time::Duration) -> Self {
        self.shared.lease = super::shared::Lease::new(length);
        self
    }

    pub fn socket(&self) -> &Path {
        &self.shared.paths.socket
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Starts accepting incidents over HTTP at `addr`; returns the address
    /// bound (the port may have been 0).
    pub async fn start_intake(
        &mut self,
        addr: SocketAddr,
        settings: super::intake::IntakeSettings,
    ) -> DaemonResult<SocketAddr> {
        let bound = super::intake::spawn(addr, self.shared.clone(), settings).await?;
        self.intake = Some(bound);
        Ok(bound)
    }

    /// Serves until `stop` completes or a client asks for a shutdown; then
    /// stops every run (they resume at the next start) and cleans up.
    pub async fn run(self, stop: impl Future<Output = ()>) -> DaemonResult<()> {
        let Self {
            shared,
            listener,
            agent_slots,
            intake,
            report,
            _lock,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(worker::supervise(Workers {
            shared: shared.clone(),
            agent_slots,
            stop: stop_rx,
            report,
        }));
        let overseer = tokio::spawn(super::overseer::run(shared.clone()));
        let connections = Connections {
            shared: shared.clone(),
            intake,
            shutdown: Arc::new(Notify::new()),
        };
        let mut clients = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        clients.spawn(serve_client(stream, connections.clone()));
                    }
                    Err(e) => tracing::warn!(error = %e, "accepting a connection failed"),
                },
                // Forget finished connections.
                Some(_) = clients.join_next() => {}
                () = &mut stop => break,
                () = connections.shutdown.notified() => break,
            }
        }
        tracing::info!("stopping: runs are interrupted and resume at the next start");
        // No new clients while the runs stop.
        drop(listener);
        let _ = stop_tx.send(true);
        if let Err(e) = supervisor.await {
            tracing::error!(error = %e, "the workers' supervisor failed");
        }
        overseer.abort();
        clients.shutdown().await;
        match std::fs::remove_file(&shared.paths.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove the socket"),
        }
        Ok(())
    }
}

/// Only the user may talk to their daemon.
fn set_private(socket: &Path) -> DaemonResult<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(
        DaemonError::io(format!("making {} private", socket.display())),
    )
}

/// One connection: its first line says what it wants.
async fn serve_client(stream: UnixStream, ctx: Connections) {
    if let Err(refused) = super::peer::check(&stream) {
        tracing::warn!(reason = %refused, "refused a connection");
        let (_, mut writer) = stream.into_split();
        let reply = Reply::Error {
            message: format!("refused: {refused}"),
        };
        send(&mut writer, &reply).await;
        return;
    }
    let (read, mut writer) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let first = match lines.next_line().await {
        Ok(Some(line)) => line,
        // Gone before asking anything, or not text.
        Ok(None) | Err(_) => return,
    };
    let reply = match serde_json::from_str::<Request>(&first) {
        Err(e) => Reply::Error {
            message: format!("not a request: {e}"),
        },
        Ok(Request::Wake) => {
            ctx.shared.wake();
            Reply::Ok
        }
        Ok(Request::Status) => Reply::Status(status(&ctx)),
        Ok(Request::Shutdown) => {
            send(&mut writer, &Reply::Ok).await;
            ctx.shutdown.notify_one();
            return;
        }
        Ok(Request::Attach { repo }) => {
            if let Err(e) = super::attach::serve(repo, lines, writer, ctx.shared.clone()).await {
                tracing::warn!(error = %e, "an attached cockpit's connection failed");
            }
            return;
        }
        Ok(Request::Command(_)) => Reply::Error {
            message: "a command needs an attached run: send `attach` first".into(),
        },
    };
    send(&mut writer, &reply).await;
}

fn status(ctx: &Connections) -> DaemonStatus {
    DaemonStatus {
        pid: std::process::id(),
        runs: ctx
            .shared
            .live
            .all()
            .into_iter()
            .map(|run| LiveRunStatus {
                attached: run.updates.receiver_count(),
                repo: run.repo,
                run: run.run,
                requirement: run.requirement,
            })
            .collect(),
        intake: ctx.intake.map(|a| a.to_string()),
    }
}

/// Writes one reply line; a client that left is no error of ours.
async fn send(writer: &mut OwnedWriteHalf, reply: &Reply) {
    let Ok(mut line) = serde_json::to_string(reply) else {
        return;
    };
    line.push('\n');
    let _ = writer.write_all(line.as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::client;

    fn raw(paths: &DaemonPaths, line: &str) -> String {
        use std::io::{BufRead, Write};
        let stream = std::os::unix::net::UnixStream::connect(&paths.socket).unwrap();
        (&stream).write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut reply)
            .unwrap();
        reply
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_socket_answers_requests_refuses_garbage_and_stops_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DaemonPaths::in_dir(dir.path());
        // A dead daemon's socket is replaced.
        std::fs::write(&paths.socket, "stale").unwrap();
        let server = Server::bind(paths.clone(), 2).unwrap();
        assert!(matches!(
            Server::bind(paths.clone(), 2),
            Err(DaemonError::AlreadyServing { .. })
        ));
        let served = tokio::spawn(server.run(std::future::pending()));

        let p = paths.clone();
        let (garbage, command, status, woke) = tokio::task::spawn_blocking(move || {
            let garbage = raw(&p, "{not json\n");
            let command = raw(&p, "{\"request\":\"command\",\"command\":\"pause\"}\n");
            let status = client::request(&p, &Request::Status);
            (garbage, command, status, client::wake(&p))
        })
        .await
        .unwrap();
        assert!(garbage.contains("\"error\""), "{garbage}");
        assert!(command.contains("\"error\""), "{command}");
        match status {
            Some(Reply::Status(s)) => {
                assert_eq!(s.pid, std::process::id());
                assert!(s.runs.is_empty());
            }
            other => panic!("expected a status, got {other:?}"),
        }
        assert!(woke);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&paths.socket)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let p = paths.clone();
        let reply = tokio::task::spawn_blocking(move || client::request(&p, &Request::Shutdown))
            .await
            .unwrap();
        assert_eq!(reply, Some(Reply::Ok));
        tokio::time::timeout(std::time::Duration::from_secs(30), served)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(!paths.socket.exists());
        // The lock went with the daemon.
        drop(Server::bind(paths, 2).unwrap());
    }
}
