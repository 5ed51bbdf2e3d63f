//! Reading only some event types of a run: folds over many past runs (the
//! gate's path history) skip agent messages and tool output, which are most
//! of a run's bytes.

use rusqlite::params_from_iter;

use super::{Context, Result, Store, StoreError, decode};
use crate::domain::{Event, RunId};

impl Store {
    /// The events of `run` whose type is one of `types`, in order.
    pub fn events_of_types(&self, run: &RunId, types: &[&str]) -> Result<Vec<Event>> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; types.len()].join(", ");
        let sql = format!(
            "SELECT seq, at_ms, type, body FROM events WHERE run = ? AND type IN ({marks}) ORDER BY seq"
        );
        let mut stmt = self.conn.prepare_cached(&sql).ctx("reading events")?;
        let args = std::iter::once(run.as_str()).chain(types.iter().copied());
        let mut rows = stmt.query(params_from_iter(args)).ctx("reading events")?;
        let mut events = Vec::new();
        while let Some(row) = rows.next().ctx("reading an event")? {
            let seq = row.get::<_, i64>(0).ctx("reading an event")? as u64;
            let at_ms = row.get::<_, i64>(1).ctx("reading an event")? as u64;
            let kind: String = row.get(2).ctx("reading an event")?;
            let body: String = row.get(3).ctx("reading an event")?;
            let kind = decode::decode_kind(&kind, &body).map_err(|e| StoreError::Corrupt {
                run: run.clone(),
                seq,
                message: e.to_string(),
            })?;
            events.push(Event {
                run: run.clone(),
                seq,
                at_ms,
                kind,
            });
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::event::{NothingChanged, Warning};
    use crate::domain::{EventKind, TaskId};
    use crate::effects::store::Store;

    #[test]
    fn only_the_types_asked_for_in_order() {
        let mut store = Store::open_in_memory().unwrap();
        let run = crate::domain::RunId::from("r1");
        let kinds = [
            EventKind::NothingChanged(NothingChanged {
                task: TaskId::from("a"),
            }),
            EventKind::Warning(Warning {
                task: None,
                message: "w".into(),
            }),
            EventKind::NothingChanged(NothingChanged {
                task: TaskId::from("b"),
            }),
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            store
                .append(&crate::domain::Event {
                    run: run.clone(),
                    seq: i as u64 + 1,
                    at_ms: 0,
                    kind,
                })
                .unwrap();
        }
        let got = store.events_of_types(&run, &["nothing_changed"]).unwrap();
        let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 3]);
        assert!(store.events_of_types(&run, &[]).unwrap().is_empty());
    }
}
