//! What every part of the daemon shares: where its files are, the runs under
//! way, and a bell to ring when the queue changed.

use std::sync::Arc;
use std::time::Duration;

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
    /// Who this daemon is to the shared queue, and how long its holds last.
    pub lease: Lease,
}

/// This daemon's hold on the entries it works, on a shared queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Unique among daemons and across restarts: host, pid and a random
    /// part (a pid is reused; a restarted daemon is another owner).
    pub owner: Arc<str>,
    /// How long a hold lasts unless renewed; renewed every third of it.
    pub length: Duration,
}

impl Lease {
    pub const DEFAULT: Duration = Duration::from_secs(30);

    pub fn new(length: Duration) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        // RandomState is seeded from the OS's randomness, per process.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            owner: format!("{host}:{}:{random:016x}", std::process::id()).into(),
            length: length.max(Duration::from_secs(1)),
        }
    }

    /// How often the hold is renewed.
    pub fn renew_every(&self) -> Duration {
        self.length / 3
    }
}

impl Shared {
    pub fn new(paths: DaemonPaths) -> Self {
        Self {
            paths,
            live: LiveRuns::default(),
            queue_changed: Arc::new(Notify::new()),
            lease: Lease::new(Lease::DEFAULT),
        }
    }

    /// Rings `queue_changed`. One permit is kept if nobody waits at this
    /// moment (the supervisor is busy), so a wake is never lost; the
    /// supervisor passes it on to every worker.
    pub fn wake(&self) {
        self.queue_changed.notify_one();
    }

    /// Whether the queue is the one every daemon on the database shares.
    pub fn queue_is_shared(&self) -> bool {
        crate::effects::store::postgres::selected().is_some()
    }

    /// Opens the queue store (a connection of the caller's own: SQLite
    /// connections are not shared across tasks).
    pub fn queue(&self) -> Result<crate::effects::queue::Queue, crate::effects::queue::QueueError> {
        crate::effects::queue::Queue::open(&self.paths.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_is_another_owner_and_renews_every_third_of_its_lease() {
        let (a, b) = (Lease::new(Lease::DEFAULT), Lease::new(Lease::DEFAULT));
        assert_ne!(a.owner, b.owner, "a restarted daemon is another owner");
        assert!(a.owner.contains(&format!(":{}:", std::process::id())));
        assert_eq!(a.renew_every(), Duration::from_secs(10));
        // No lease so short that renewing it would spin.
        assert_eq!(Lease::new(Duration::ZERO).length, Duration::from_secs(1));
    }
}
