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
use super::scan;
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
fn deferred_call<'a>(raw: &Raw<'a>) -> Option<Cow<'a, str>> {
    if raw.kind != "tool_called" {
        return None;
    }
    let body = raw.body?;
    let (agent, tool) = match scan::call_head(body) {
        Some((agent, tool)) => (Cow::Borrowed(agent), Cow::Borrowed(tool)),
        None => {
            // A body that does not parse is decoded whole, and reported there.
            let head: CallHead<'a> = serde_json::from_str(body).ok()?;
            (head.agent, head.tool)
        }
    };
    (!tool_names::writes_files(&tool)).then_some(agent)
}

/// The agent whose transcript an event of `TRANSCRIPT_KINDS` writes into.
pub(super) fn transcript_agent(kind: &EventKind) -> Option<&AgentId> {
    use crate::domain::event::{
        AgentMessage, AgentStarted, ContextCompacted, McpToolsListed, ReplyBrokenOff,
        ShepherdIntervened, ToolCalled, ToolResult,
    };
    match kind {
        EventKind::AgentStarted(AgentStarted { agent, .. })
        | EventKind::AgentMessage(AgentMessage { agent, .. })
        | EventKind::McpToolsListed(McpToolsListed { agent, .. })
        | EventKind::ToolCalled(ToolCalled { agent, .. })
        | EventKind::ToolResult(ToolResult { agent, .. })
        | EventKind::ReplyBrokenOff(ReplyBrokenOff { agent, .. })
        | EventKind::ContextCompacted(ContextCompacted { agent, .. }) => Some(agent),
        EventKind::ShepherdIntervened(ShepherdIntervened { agent, .. }) => agent.as_ref(),
        _ => None,
    }
}

/// A bulk event (or a tool call) not yet read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRef {
    pub seq: u64,
    /// Its agent: an index into `LightRun::agents`.
    pub agent: u32,
}

/// A run as `Store::load_light` reads it. The unread events take no
/// `Event` each (a run of 1,000,000 is three quarters unread): only their
/// number, time and agent are kept, and `windows` puts stand-ins in their
/// place while folding.
#[derive(Debug, Default)]
pub struct LightRun {
    /// The time of every event: `at_ms[seq - 1]`.
    pub at_ms: Vec<u64>,
    /// The events read, in order.
    pub decoded: Vec<Event>,
    /// The unread ones, in order.
    pub bulk: Vec<BulkRef>,
    /// The agents of `bulk`, each once.
    pub agents: Vec<AgentId>,
    /// Indices into `decoded` of the events that write into a transcript.
    pub transcript: Vec<u32>,
}

/// The kinds of event that write into a transcript (`App::fold_transcript`
/// and an agent's start): what rebuilding one folds.
pub const TRANSCRIPT_KINDS: [&str; 8] = [
    "agent_started",
    "agent_message",
    "mcp_tools_listed",
    "tool_called",
    "tool_result",
    "shepherd_intervened",
    "reply_broken_off",
    "context_compacted",
];

/// Events handed to `LightRun::windows`' caller at a time.
const WINDOW: usize = 1024;

/// Where the event at one position of a window comes from.
#[derive(Clone, Copy)]
enum Source {
    Decoded(usize),
    Text(usize),
    StandIn(usize),
}

impl LightRun {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.at_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at_ms.is_empty()
    }

    /// The event numbered `seq` if it was read.
    pub fn read_event(&self, seq: u64) -> Option<&Event> {
        self.decoded
            .binary_search_by_key(&seq, |e| e.seq)
            .ok()
            .and_then(|i| self.decoded.get(i))
    }

    /// The index in `agents` of `agent`, if it has unread events.
    pub fn agent_index(&self, agent: &AgentId) -> Option<u32> {
        self.agents
            .iter()
            .position(|a| a == agent)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Calls `f` with the events numbered `from + 1 ..= to`, in order, a
    /// window at a time: those read, `texts` (events read since, ascending)
    /// in place of the unread ones they are, and stand-ins for the rest.
    pub fn windows(
        &self,
        run: &RunId,
        from: usize,
        to: usize,
        texts: &[Event],
        f: &mut dyn FnMut(&[&Event]),
    ) {
        let to = to.min(self.len());
        if from >= to {
            return;
        }
        let mut d = self.decoded.partition_point(|e| e.seq <= from as u64);
        let mut t = texts.partition_point(|e| e.seq <= from as u64);
        let mut stand_ins: Vec<Event> = (0..(to - from).min(WINDOW))
            .map(|_| Event {
                run: run.clone(),
                seq: 0,
                at_ms: 0,
                kind: EventKind::stand_in(),
            })
            .collect();
        let mut sources = Vec::with_capacity(stand_ins.len());
        let mut start = from;
        while start < to {
            let end = (start + WINDOW).min(to);
            sources.clear();
            let mut slot = 0;
            for index in start..end {
                let seq = index as u64 + 1;
                let source = if self.decoded.get(d).is_some_and(|e| e.seq == seq) {
                    d += 1;
                    Source::Decoded(d - 1)
                } else if texts.get(t).is_some_and(|e| e.seq == seq) {
                    t += 1;
                    Source::Text(t - 1)
                } else {
                    if let Some(stand_in) = stand_ins.get_mut(slot) {
                        stand_in.seq = seq;
                        stand_in.at_ms = self.at_ms[index];
                    }
                    slot += 1;
                    Source::StandIn(slot - 1)
                };
                sources.push(source);
            }
            let window: Vec<&Event> = sources
                .iter()
                .filter_map(|source| match *source {
                    Source::Decoded(i) => self.decoded.get(i),
                    Source::Text(i) => texts.get(i),
                    Source::StandIn(i) => stand_ins.get(i),
                })
                .collect();
            f(&window);
            start = end;
        }
    }

    /// The numbers of the events up to `to` that write into the
    /// transcripts of `agents`, ascending: their unread events and the
    /// transcript events read.
    pub fn transcript_seqs(&self, agents: &[AgentId], to: usize) -> Vec<u64> {
        let indices: Vec<u32> = agents.iter().filter_map(|a| self.agent_index(a)).collect();
        let to = to as u64;
        let unread = self
            .bulk
            .iter()
            .take_while(|b| b.seq <= to)
            .filter(|b| indices.contains(&b.agent))
            .map(|b| b.seq);
        let read = self
            .transcript
            .iter()
            .filter_map(|&i| self.decoded.get(i as usize))
            .take_while(|e| e.seq <= to)
            .filter(|e| transcript_agent(&e.kind).is_some_and(|a| agents.contains(a)))
            .map(|e| e.seq);
        let mut seqs: Vec<u64> = unread.chain(read).collect();
        seqs.sort_unstable();
        seqs
    }

    /// Every event, the unread ones as stand-ins.
    #[cfg(test)]
    pub fn events(&self, run: &RunId) -> Vec<Event> {
        let mut all = Vec::with_capacity(self.len());
        self.windows(run, 0, self.len(), &[], &mut |window| {
            all.extend(window.iter().map(|e| (*e).clone()));
        });
        all
    }

    fn intern(&mut self, agent: &str) -> u32 {
        // Consecutive unread events are mostly one agent's.
        if let Some(last) = self.bulk.last()
            && self
                .agents
                .get(last.agent as usize)
                .is_some_and(|a| a.as_str() == agent)
        {
            return last.agent;
        }
        match self.agents.iter().position(|a| a.as_str() == agent) {
            Some(i) => i as u32,
            None => {
                self.agents.push(AgentId::from(agent));
                (self.agents.len() - 1) as u32
            }
        }
    }

    fn push(&mut self, run: &RunId, raw: Raw<'_>) -> Result<()> {
        let unread = match (raw.body, raw.agent) {
            (None, Some(agent)) => Some(Cow::Borrowed(agent)),
            _ => deferred_call(&raw),
        };
        self.at_ms.push(raw.at_ms);
        match unread {
            Some(agent) => {
                let agent = self.intern(&agent);
                self.bulk.push(BulkRef {
                    seq: raw.seq,
                    agent,
                });
            }
            None => {
                if TRANSCRIPT_KINDS.contains(&raw.kind) {
                    self.transcript.push(self.decoded.len() as u32);
                }
                self.decoded.push(read::decode(run, &raw)?);
            }
        }
        Ok(())
    }

    fn extend(&mut self, other: LightRun) {
        if self.is_empty() {
            *self = other;
            return;
        }
        let remap: Vec<u32> = other
            .agents
            .iter()
            .map(|a| match self.agents.iter().position(|b| b == a) {
                Some(i) => i as u32,
                None => {
                    self.agents.push(a.clone());
                    (self.agents.len() - 1) as u32
                }
            })
            .collect();
        let base = self.decoded.len() as u32;
        self.at_ms.extend(other.at_ms);
        self.transcript
            .extend(other.transcript.into_iter().map(|i| i + base));
        self.decoded.extend(other.decoded);
        self.bulk.extend(other.bulk.into_iter().map(|b| BulkRef {
            seq: b.seq,
            agent: remap.get(b.agent as usize).copied().unwrap_or(b.agent),
        }));
    }
}

impl Store {
    /// `run` without the bodies of its sealed bulk events, read by one
    /// reader per core.
    pub fn load_light(path: &Path, run: &RunId) -> Result<LightRun> {
        if let Some(url) = super::postgres::selected() {
            // Every body in one read: no chunks to leave sealed.
            let events = Self::connect(url)?.events(run)?;
            let mut all = LightRun::default();
            for event in events {
                if TRANSCRIPT_KINDS.contains(&event.kind.name()) {
                    all.transcript.push(all.decoded.len() as u32);
                }
                all.at_ms.push(event.at_ms);
                all.decoded.push(event);
            }
            return Ok(all);
        }
        let parts = Self::in_parallel(path, run, |store, after, upto| {
            let mut part = LightRun::default();
            read::visit(&store.conn, run, after, upto, Bodies::Light, &mut |raw| {
                // Events are found by position (`at_ms[seq - 1]`): a gap
                // would put every later one in the wrong place.
                let expected = after + 1 + part.len() as u64;
                if raw.seq != expected {
                    return Err(StoreError::Corrupt {
                        run: run.clone(),
                        seq: raw.seq,
                        message: format!("event #{expected} is missing"),
                    });
                }
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
        assert_eq!(light.len(), events.len());
        assert!(light.bulk.len() > events.len() / 3);
        let seqs: Vec<u64> = light.bulk.iter().map(|b| b.seq).collect();
        let texts = store.events_at(&run, &seqs).unwrap();
        assert_eq!(texts.len(), seqs.len());
        let mut all = light.events(&run);
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

    /// Any stretch of a light run folds as those events, with the texts
    /// read for it in place of their stand-ins, across window boundaries.
    #[test]
    fn windows_give_any_stretch_of_the_run_with_its_texts() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 5, 5_000);
        let mut store = Store::open(&path).unwrap();
        for batch in events.chunks(900) {
            store.append_batch(batch).unwrap();
        }
        let light = Store::load_light(&path, &run).unwrap();
        let agent = light.agents[1].clone();
        for (from, to) in [
            (0, 1),
            (1023, 1025),
            (17, 3_100),
            (4_000, events.len()),
            (9, 9),
        ] {
            let seqs: Vec<u64> = light
                .bulk
                .iter()
                .filter(|b| light.agents[b.agent as usize] == agent)
                .map(|b| b.seq)
                .filter(|&s| s > from as u64 && s <= to as u64)
                .collect();
            let texts = store.events_at(&run, &seqs).unwrap();
            let mut seen = Vec::new();
            light.windows(&run, from, to, &texts, &mut |w| {
                assert!(w.len() <= WINDOW);
                seen.extend(w.iter().map(|e| (*e).clone()));
            });
            assert_eq!(seen.len(), to - from);
            for (e, s) in events[from..to].iter().zip(&seen) {
                assert_eq!((e.seq, e.at_ms), (s.seq, s.at_ms));
                let unread = light.bulk.binary_search_by_key(&e.seq, |b| b.seq).is_ok();
                if !unread || seqs.contains(&e.seq) {
                    assert_eq!(e, s, "read, or its text was");
                } else {
                    assert_eq!(s.kind, EventKind::stand_in());
                }
            }
        }
        // An agent's transcript events are its unread ones and its
        // transcript events read (its start), in order.
        let own = light.transcript_seqs(std::slice::from_ref(&agent), events.len());
        let expected: Vec<u64> = events
            .iter()
            .filter(|e| {
                TRANSCRIPT_KINDS.contains(&e.kind.name())
                    && transcript_agent(&e.kind) == Some(&agent)
            })
            .map(|e| e.seq)
            .collect();
        assert!(expected.len() > 100);
        assert_eq!(own, expected);
    }

    /// A run with an event missing from its middle (a store edited by
    /// hand, or damaged) is refused, not read with every later event one
    /// place off.
    #[test]
    fn a_run_with_a_gap_is_corrupt_not_shifted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("long");
        let events = crate::domain::synthetic::run_events(&run, 2, 1_500);
        let mut store = Store::open(&path).unwrap();
        store.append_batch(&events).unwrap();
        store
            .conn
            .execute("DELETE FROM events WHERE run = 'long' AND seq = 1200", [])
            .unwrap();
        drop(store);
        assert!(matches!(
            Store::load_light(&path, &run),
            Err(StoreError::Corrupt { seq: 1201, .. })
        ));
    }

    /// Bodies memofab never writes but a store may hold (reordered,
    /// spaced, escaped, with fields unknown or null, costs): a light run
    /// read through the hand decoder is, with its bulk events, exactly
    /// what serde decodes from every body.
    #[test]
    fn odd_bodies_read_light_exactly_as_serde_decodes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m.db");
        let run = RunId::from("odd");
        let events = crate::domain::synthetic::run_events(&run, 2, 3_000);
        let mut store = Store::open(&path).unwrap();
        // The chunk of 1025..=2048 is sealed from rows rewritten first.
        store.append_batch(&events[..2047]).unwrap();
        let tokens = [
            r#" { "usage" : { "output" : 7 , "input" : 9 } , "model":"m" ,"agent":"coder:t000#1", "task": null, "cost_usd": null } "#,
            r#"{"type":"tokens_used","agent":"coder:t000#1","task":"t000","model":"bench","usage":{"input":1,"output":2,"cached":3,"cache_write":4},"cost_usd":0.30000000000000004}"#,
            r#"{"agent":"coder\u003at000#1","model":"m","usage":{"input":1,"output":2},"note":[1,{"x":"\n"}]}"#,
            r#"{"agent":"coder:t000#1","model":"m","usage":{"input":1,"output":2,"extra":{"a":[true,null]}},"cost_usd":1e-3}"#,
        ];
        let calls = [
            r#"{"tool":"read_file","arguments":{"path":"a\"b"},"call_id":"c","agent":"coder:t000#1"}"#,
            r#"{ "agent" : "coder:t000#1" , "call_id" : "c" , "tool" : "write_file" , "arguments" : { "path" : "./src/odd.rs" , "content" : "x" } }"#,
            r#"{"agent":"coder:t000#1","call_id":"c","tool":"read_file","arguments":{"path":"p","n":[1,2.5e3,-0]}}"#,
        ];
        let mut expected = events.clone();
        let (mut t, mut c) = (0, 0);
        for e in &mut expected[1024..2047] {
            let body = match e.kind.name() {
                "tokens_used" => {
                    t += 1;
                    tokens[t % tokens.len()]
                }
                "tool_called" => {
                    c += 1;
                    calls[c % calls.len()]
                }
                _ => continue,
            };
            e.kind = EventKind::decode_stored(e.kind.name(), body).unwrap();
            store
                .conn
                .execute(
                    "UPDATE events SET body = ?1 WHERE run = 'odd' AND seq = ?2",
                    rusqlite::params![body, e.seq as i64],
                )
                .unwrap();
        }
        store.append_batch(&events[2047..]).unwrap();
        let light = Store::load_light(&path, &run).unwrap();
        let seqs: Vec<u64> = light.bulk.iter().map(|b| b.seq).collect();
        let mut all = light.events(&run);
        let written = all.iter().filter(|e| {
            matches!(&e.kind, EventKind::ToolCalled(c) if c.arguments["path"] == "./src/odd.rs")
        });
        assert!(
            written.count() > 10,
            "a write among odd calls is read at open"
        );
        for text in store.events_at(&run, &seqs).unwrap() {
            let i = text.seq as usize - 1;
            all[i] = text;
        }
        assert!(all == expected, "the light run is serde's decode");
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
        let light_events = light.events(&run);
        for (e, l) in events.iter().zip(&light_events) {
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
        let from_light = RunState::fold(&light_events).unwrap().unwrap();
        assert!(whole.tasks().iter().any(|t| !t.observed_writes.is_empty()));
        assert_eq!(from_light, whole);
    }
}
