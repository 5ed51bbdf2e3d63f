//! The intake's open connections: at most a fixed number at once, and room
//! made for a new one by dropping the oldest still sending its request.
//!
//! A slow client (headers or body trickled a byte at a time) holds its slot
//! only until the next connection needs it: a real webhook sends its whole
//! request within milliseconds, so dropping the connection that has been
//! reading longest costs a slow client, not a report. A connection whose
//! request has arrived is being answered and is never dropped for room;
//! when every slot answers one, a new connection is refused at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::AbortHandle;

/// Whether a new connection may be served.
#[derive(Debug)]
pub(super) enum Admission {
    /// Served; its slot frees itself when dropped.
    Admitted(Slot),
    /// No room: close it now.
    Refused,
}

/// The table of open connections, shared with their tasks.
#[derive(Clone)]
pub(super) struct Connections {
    table: Arc<Mutex<Table>>,
    cap: usize,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// By id: the lowest is the oldest.
    open: BTreeMap<u64, Open>,
}

struct Open {
    /// Still reading its request (headers or body).
    reading: bool,
    /// Ends its task, which closes the socket. Set right after the task is
    /// spawned, before the next connection is admitted.
    abort: Option<AbortHandle>,
}

impl Connections {
    /// `cap` is at least one.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            table: Arc::default(),
            cap: cap.max(1),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Every change is one map operation: a panic leaves no half-change.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for a new connection if need be (dropping the oldest one
    /// still reading its request), or refuses it.
    pub(super) fn admit(&self) -> Admission {
        let mut table = self.table();
        if table.open.len() >= self.cap {
            let oldest_reading = table
                .open
                .iter()
                .find(|(_, open)| open.reading)
                .map(|(id, _)| *id);
            let Some(id) = oldest_reading else {
                return Admission::Refused;
            };
            if let Some(dropped) = table.open.remove(&id)
                && let Some(abort) = dropped.abort
            {
                abort.abort();
            }
            tracing::debug!(
                connection = id,
                "incident intake: dropped a slow connection for room"
            );
        }
        let id = table.next;
        table.next += 1;
        table.open.insert(
            id,
            Open {
                reading: true,
                abort: None,
            },
        );
        Admission::Admitted(Slot {
            id,
            connections: self.clone(),
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().open.len()
    }
}

/// One admitted connection's place in the table; dropping it frees it.
#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
    connections: Connections,
}

impl Slot {
    /// How to end the connection's task when room is needed.
    pub(super) fn set_abort(&self, abort: AbortHandle) {
        if let Some(open) = self.connections.table().open.get_mut(&self.id) {
            open.abort = Some(abort);
        }
    }

    /// The request has arrived whole: it is being answered, and is not
    /// dropped for room any more.
    pub(super) fn answering(&self) {
        if let Some(open) = self.connections.table().open.get_mut(&self.id) {
            open.reading = false;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.table().open.remove(&self.id);
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("cap", &self.cap)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> Slot {
        match admission {
            Admission::Admitted(slot) => slot,
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn the_oldest_reader_makes_room_and_answering_connections_are_kept() {
        let connections = Connections::new(2);
        let first = admitted(connections.admit());
        let task = tokio::spawn(std::future::pending::<()>());
        first.set_abort(task.abort_handle());
        let second = admitted(connections.admit());
        second.answering();
        assert_eq!(connections.len(), 2);

        // Full: the oldest still reading (first) goes, its task is ended.
        let third = admitted(connections.admit());
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(connections.len(), 2);
        drop(first);
        assert_eq!(connections.len(), 2, "a dropped slot frees only itself");

        // Both answering: nothing to drop, the newcomer is refused.
        third.answering();
        assert!(matches!(connections.admit(), Admission::Refused));
        drop(second);
        assert_eq!(connections.len(), 1);
        assert!(matches!(connections.admit(), Admission::Admitted(_)));
    }
}
