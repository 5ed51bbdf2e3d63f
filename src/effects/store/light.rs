//! Reading a long run for replay without its conversation: every event
//! decoded except the sealed bulk ones (agent messages and tool results)
//! and the tool calls that write no file, which are known by number, time
//! and agent only and read later, for the agents the cockpit shows
//! (`events_at`). In their place stands, at the same number and time,
//! `EventKind::stand_in()`, which neither the run state, the cockpit's fold
//! nor the narration does anything with: the transcripts it leaves out are
//! rebuilt with the real text when shown.
//!
//! A tool call is most of a long run's light events, and decoding its
//! arguments into JSON values was most of reading one; what the run state
//! takes from a call (the file it writes) is only in calls of the tools
//! that write files, which are decoded whole.

use std::path::Path;

use std::borrow::Cow;

use super::chunk::Raw;
use super::read::{self, Bodies};
use super::{Result, Store, StoreError};
use crate::domain::{AgentId, Event, EventKind, RunId, tool_names};

/// What a tool call's body tells before its arguments are decoded.
#[derive(serde::Deserialize)]
struct CallHead<'a> {
    #[serde(borrow)]
    agent: Cow<'a, str>,
    #[serde(borrow)]
    tool: Cow<'a, str>,
}

/// The agent of a tool call that writes no file, if `raw` is one: read
/// without decoding its arguments.
fn deferred_call(raw: &Raw<'_>) -> Option<AgentId> {
    if raw.kind != "tool_called" {
        return None;
    }
    // A body that does not parse is decoded whole, and reported there.
    let head: CallHead<'_> = serde_json::from_str(raw.body?).ok()?;
    (!tool_names::writes_files(&head.tool)).then(|| AgentId::from(head.agent.as_ref()))
}

/// A bulk event (or a tool call) not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRef {
    pub seq: u64,
    pub agent: AgentId,
}

/// A run as `Store::load_light` reads it.
#[derive(Debug, Default)]
pub struct LightRun {
    /// Every event in order (`events[seq - 1]`), the unread ones as
    /// stand-ins.
    pub events: Vec<Event>,
    /// The unread ones, in order.
    pub bulk: Vec<BulkRef>,
}

impl LightRun {
    fn push(&mut self, run: &RunId, raw: Raw<'_>) -> Result<()> {
        let unread = match (raw.body, raw.agent) {
            (None, Some(agent)) => Some(AgentId::from(agent)),
            _ => deferred_call(&raw),
        };
        match unread {
            Some(agent) => {
                self.events.push(Event {
                    run: run.clone(),
                    seq: raw.seq,
                    at_ms: raw.at_ms,
                    kind: EventKind::stand_in(),
                });
                self.bulk.push(BulkRef {
                    seq: raw.seq,
                    agent,
                });
            }
            None => self.events.push(read::decode(run, &raw)?),
        }
        Ok(())
    }

    fn extend(&mut self, other: LightRun) {
        self.events.extend(other.events);
        self.bulk.extend(other.bulk);
    }
}

impl Store {
    /// `run` without the bodies of its sealed bulk events, read by one
    /// reader per core.
    pub fn load_light(path: &Path, run: &RunId) -> Result<LightRun> {
        if let Some(url) = super::postgres::selected() {
            // Every body in one read: no chunks to leave sealed.
            let events = Self::connect(url)?.events(run)?;
            return Ok(LightRun {
                events,
                bulk: Vec::new(),
            });
        }
        let parts = Self::in_parallel(path, run, |store, after, upto| {
            let mut part = LightRun::default();
            read::visit(&store.conn, run, after, upto, Bodies::Light, &mut |raw| {
                part.push(run, raw)
            })?;
            Ok(part)
        })?;
        let mut all = LightRun::default();
        for part in parts {
            all.extend(part);
        }
        Ok(all)
    }

    /// The events of `run` numbered `seqs` (ascending), bodies and all.
    pub fn events_at(&self, run: &RunId, seqs: &[u64]) -> Result<Vec<Event>> {
        if self.postgres().is_some() {
            let mut all = self.events(run)?;
            all.retain(|e| seqs.binary_search(&e.seq).is_ok());
            return Ok(all);
        }
        let mut events = Vec::with_capacity(seqs.len());
        let mut rest = seqs;
        while let Some(&first) = rest.first() {
            // One chunk (or the tail) at a time.
            let chunk_end = (first - 1) / super::chunk::CHUNK_EVENTS * super::chunk::CHUNK_EVENTS
                + super::chunk::CHUNK_EVENTS;
            let n = rest.partition_point(|&s| s <= chunk_end);
            let (group, next) = rest.split_at(n.max(1));
            let last = group.last().copied().unwrap_or(first);
            read::visit(&self.conn, run, first - 1, last, Bodies::All, &mut |raw| {
                if group.binary_search(&raw.seq).is_ok() {
                    events.push(read::decode(run, &raw)?);
                }
                Ok(())
            })?;
            rest = next;
        }
        Ok(events)
    }

    /// Runs `read` over `run` split into one range of sequence numbers per
    /// core (`after`, `upto`], each on its own reader; the parts in order.
    pub(super) fn in_parallel<T: Send>(
        path: &Path,
        run: &RunId,
        read: impl Fn(&Store, u64, u64) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        const PARALLEL_FROM: u64 = 20_000;
        let first = Self::open_reader(path)?;
        let last = first.last_seq(run)?;
        let readers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8) as u64;
        if last < PARALLEL_FROM || readers < 2 {
            return Ok(vec![read(&first, 0, u64::MAX)?]);
        }
        drop(first);
        let span = last.div_ceil(readers);
        let read = &read;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..readers)
                .map(|i| {
                    scope.spawn(move || {
                        let upto = if i + 1 == readers {
                            u64::MAX
                        } else {
                            (i + 1) * span
                        };
                        read(&Self::open_reader(path)?, i * span, upto)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(StoreError::ReaderFailed(run.clone())))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_light_run_and_its_bulk_events_are_the_whole_run() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 4, 30_000);
        let mut store = Store::open(&path).unwrap();
        for batch in events.chunks(1_000) {
            store.append_batch(batch).unwrap();
        }
        let light = Store::load_light(&path, &run).unwrap();
        assert_eq!(light.events.len(), events.len());
        assert!(light.bulk.len() > events.len() / 3);
        let seqs: Vec<u64> = light.bulk.iter().map(|b| b.seq).collect();
        let texts = store.events_at(&run, &seqs).unwrap();
        assert_eq!(texts.len(), seqs.len());
        let mut all = light.events;
        for text in texts {
            let i = text.seq as usize - 1;
            assert_eq!(all[i].at_ms, text.at_ms);
            all[i] = text;
        }
        assert!(
            all == events,
            "light and bulk together are every event once"
        );
        let picked = store
            .events_at(&run, &[1, 1025, events.len() as u64])
            .unwrap();
        let picked: Vec<u64> = picked.iter().map(|e| e.seq).collect();
        assert_eq!(picked, [1, 1025, events.len() as u64]);
    }

    /// Tool calls that write no file are read later, like the text; those
    /// that write one are decoded at once, and the run state folded from
    /// the light run is the one folded from every event.
    #[test]
    fn only_calls_that_write_files_are_decoded_in_a_light_run() {
        use crate::domain::RunState;
        use crate::domain::event::ToolCalled;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let mut events = crate::domain::synthetic::run_events(&run, 3, 6_000);
        let mut writes = 0;
        for (i, e) in events.iter_mut().enumerate() {
            if let EventKind::ToolCalled(ToolCalled {
                tool, arguments, ..
            }) = &mut e.kind
                && i % 3 == 0
            {
                *tool = tool_names::WRITE_FILE.into();
                *arguments =
                    serde_json::json!({ "path": format!("./src/w{i}.rs"), "content": "x" });
                writes += 1;
            }
        }
        let mut store = Store::open(&path).unwrap();
        for batch in events.chunks(700) {
            store.append_batch(batch).unwrap();
        }
        let light = Store::load_light(&path, &run).unwrap();
        let (mut decoded_writes, mut deferred_reads) = (0, 0);
        for (e, l) in events.iter().zip(&light.events) {
            let EventKind::ToolCalled(call) = &e.kind else {
                continue;
            };
            let deferred = light.bulk.binary_search_by_key(&e.seq, |b| b.seq).is_ok();
            if tool_names::writes_files(&call.tool) {
                assert_eq!(l, e, "a write is decoded");
                decoded_writes += 1;
            } else {
                assert!(deferred && l.kind == EventKind::stand_in());
                deferred_reads += 1;
            }
        }
        assert_eq!(decoded_writes, writes);
        assert!(deferred_reads > writes);
        let whole = RunState::fold(&events).unwrap().unwrap();
        let from_light = RunState::fold(&light.events).unwrap().unwrap();
        assert!(whole.tasks().iter().any(|t| !t.observed_writes.is_empty()));
        assert_eq!(from_light, whole);
    }
}
