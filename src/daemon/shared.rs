//! What every part of the daemon shares: where its files are, the runs under
//! way, and a bell to ring when the queue changed.

use std::sync::Arc;

use tokio::sync::Notify;

use super::live::LiveRuns;
use super::paths::DaemonPaths;

#[derive(Debug, Clone)]
pub struct Shared {
    pub paths: DaemonPaths,
    pub live: LiveRuns,
    /// Rung when the queue or the repositories changed (a `Wake` request, an
    /// incident queued, a cockpit's submission): workers look again.
    pub queue_changed: Arc<Notify>,
}

impl Shared {
    pub fn new(paths: DaemonPaths) -> Self {
        Self {
            paths,
            live: LiveRuns::default(),
            queue_changed: Arc::new(Notify::new()),
        }
    }

    /// Rings `queue_changed`. One permit is kept if nobody waits at this
    /// moment (the supervisor is busy), so a wake is never lost; the
    /// supervisor passes it on to every worker.
    pub fn wake(&self) {
        self.queue_changed.notify_one();
    }

    /// Opens the queue store (a connection of the caller's own: SQLite
    /// connections are not shared across tasks).
    pub fn queue(&self) -> Result<crate::effects::queue::Queue, crate::effects::queue::QueueError> {
        crate::effects::queue::Queue::open(&self.paths.queue)
    }
}
