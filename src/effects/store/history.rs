//! Reading only some event types of a run: folds over many past runs (the
//! gate's path history) skip agent messages and tool output, which are most
//! of a run's bytes.

use super::{Result, Store, read};
use crate::domain::{Event, RunId};

impl Store {
    /// The events of `run` whose type is one of `types`, in order.
    pub fn events_of_types(&self, run: &RunId, types: &[&str]) -> Result<Vec<Event>> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(pg) = self.postgres() {
            return pg.events_of_types(run, types);
        }
        read::events(&self.conn, run, 0, u64::MAX, read::Bodies::Types(types))
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
