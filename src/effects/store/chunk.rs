//! Sealed chunks: every `CHUNK_EVENTS` events of a run, aligned on sequence
//! numbers, are moved out of the `events` table into one `event_chunks` row,
//! compressed. A long run's events are nearly all a few agents saying much
//! the same thing, so a chunk is a tenth of the rows it replaces, and reading
//! it back is one row instead of a thousand.
//!
//! A chunk holds two deflated streams. `light` has every event in order: its
//! time (delta from the one before), its type, and its JSON body, except for
//! the kinds that only add transcript text (`BULK`), whose bodies are in
//! `bulk`, in the same order, with the agent kept in `light`. A reader that
//! wants the run's shape without its conversation (replay folding to a
//! cursor, the gate's history) never inflates `bulk`.
//!
//! Invariants: a chunk covers exactly `CHUNK_EVENTS` events from `first_seq`
//! on, `first_seq - 1` is a multiple of `CHUNK_EVENTS`, and no event is both
//! in a chunk and in `events`. Sealing happens in the transaction that
//! appended the chunk's last event, so it is as durable as the append.

use std::io::Write;

use rusqlite::{Transaction, params};

use super::{Context, Result, StoreError};
use crate::domain::RunId;

/// Events per chunk.
pub const CHUNK_EVENTS: u64 = 1024;

/// Kinds that change nothing but an agent's transcript: their bodies are
/// most of a run's bytes and are kept apart.
pub const BULK: [&str; 2] = ["agent_message", "tool_result"];

/// Deflate level: 6 is where deflate stops paying for its time on text
/// this repetitive (measured by `memofab bench store`).
const LEVEL: u32 = 6;

/// One stored event before its body is decoded.
pub struct Raw<'a> {
    pub seq: u64,
    pub at_ms: u64,
    pub kind: &'a str,
    /// The agent of a bulk event read without its body.
    pub agent: Option<&'a str>,
    /// `None` for a bulk event when the bulk stream was not read.
    pub body: Option<&'a str>,
}

/// Seals the chunk ending at `last` if `last` ends one and all its events
/// are still in `events`.
pub fn seal_if_full(tx: &Transaction<'_>, run: &RunId, last: u64) -> Result<()> {
    if last == 0 || !last.is_multiple_of(CHUNK_EVENTS) {
        return Ok(());
    }
    let first = last + 1 - CHUNK_EVENTS;
    let mut stmt = tx
        .prepare_cached(
            "SELECT seq, at_ms, type, body FROM events WHERE run = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
        )
        .ctx("sealing a chunk")?;
    let mut rows = stmt
        .query(params![run.as_str(), first as i64, last as i64])
        .ctx("sealing a chunk")?;
    let mut encoder = Encoder::default();
    let mut count = 0u64;
    while let Some(row) = rows.next().ctx("sealing a chunk")? {
        let seq = row.get::<_, i64>(0).ctx("sealing a chunk")? as u64;
        let corrupt = |message: String| StoreError::Corrupt {
            run: run.clone(),
            seq,
            message,
        };
        if seq != first + count {
            return Ok(());
        }
        let at_ms = row.get::<_, i64>(1).ctx("sealing a chunk")? as u64;
        let kind = row.get_ref(2).ctx("sealing a chunk")?;
        let kind = kind.as_str().map_err(|e| corrupt(e.to_string()))?;
        let body = row.get_ref(3).ctx("sealing a chunk")?;
        let body = body.as_str().map_err(|e| corrupt(e.to_string()))?;
        encoder.push(at_ms, kind, body).map_err(corrupt)?;
        count += 1;
    }
    drop(rows);
    if count != CHUNK_EVENTS {
        return Ok(());
    }
    let (light, bulk) = encoder.finish().map_err(|e| StoreError::Io {
        context: "compressing a chunk".into(),
        source: e,
    })?;
    tx.prepare_cached(
        "INSERT INTO event_chunks (run, first_seq, last_seq, light, bulk) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![run.as_str(), first as i64, last as i64, light, bulk]))
    .ctx("sealing a chunk")?;
    tx.prepare_cached("DELETE FROM events WHERE run = ?1 AND seq BETWEEN ?2 AND ?3")
        .and_then(|mut s| s.execute(params![run.as_str(), first as i64, last as i64]))
        .ctx("sealing a chunk")?;
    Ok(())
}

/// Seals every full chunk of every run: how a store written before chunks
/// existed is brought to the new layout when it is opened.
pub fn seal_all(tx: &Transaction<'_>) -> Result<()> {
    let runs: Vec<(String, i64)> = {
        let mut stmt = tx
            .prepare("SELECT run, MAX(seq) FROM events GROUP BY run")
            .ctx("listing runs to seal")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx("listing runs to seal")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx("listing runs to seal")?
    };
    for (run, max) in runs {
        let run = RunId::new(run);
        let mut last = CHUNK_EVENTS;
        while last <= max as u64 {
            seal_if_full(tx, &run, last)?;
            last += CHUNK_EVENTS;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Encoder {
    light: Vec<u8>,
    bulk: Vec<u8>,
    prev_at: u64,
}

#[derive(serde::Deserialize)]
struct AgentOf<'a> {
    #[serde(borrow)]
    agent: std::borrow::Cow<'a, str>,
}

impl Encoder {
    fn push(&mut self, at_ms: u64, kind: &str, body: &str) -> std::result::Result<(), String> {
        put_varint(
            &mut self.light,
            zigzag(at_ms.wrapping_sub(self.prev_at) as i64),
        );
        self.prev_at = at_ms;
        put_bytes(&mut self.light, kind.as_bytes());
        if BULK.contains(&kind) {
            let of: AgentOf<'_> = serde_json::from_str(body).map_err(|e| e.to_string())?;
            self.light.push(1);
            put_bytes(&mut self.light, of.agent.as_bytes());
            put_bytes(&mut self.bulk, body.as_bytes());
        } else {
            self.light.push(0);
            put_bytes(&mut self.light, body.as_bytes());
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        Ok((deflate(&self.light)?, deflate(&self.bulk)?))
    }
}

fn deflate(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::new(LEVEL),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
}

#[cfg(test)]
pub fn inflate(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Inflater::default().inflate_into(bytes, &mut out)?;
    Ok(out)
}

/// Inflates one chunk's streams after another into buffers the caller
/// keeps: no zeroed buffer, no copy through a reader, no inflate state set
/// up per stream (a long run is ~2,000 of them).
pub struct Inflater(flate2::Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Self(flate2::Decompress::new(false))
    }
}

impl Inflater {
    /// Replaces `out`'s contents with `bytes` inflated.
    pub fn inflate_into(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        self.0.reset(false);
        out.clear();
        loop {
            if out.len() == out.capacity() {
                out.reserve((bytes.len() * 8).max(out.len()).max(4096));
            }
            let (read, written) = (self.0.total_in(), self.0.total_out());
            let rest = usize::try_from(read)
                .ok()
                .and_then(|read| bytes.get(read..))
                .unwrap_or_default();
            let status = self
                .0
                .decompress_vec(rest, out, flate2::FlushDecompress::Finish)
                .map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
            if status == flate2::Status::StreamEnd {
                return Ok(());
            }
            let stuck = self.0.total_in() == read && self.0.total_out() == written;
            if stuck && out.len() < out.capacity() {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "deflate stream cut short",
                ));
            }
        }
    }
}

/// Visits the events of one chunk whose sequence numbers are in
/// `after + 1 ..= upto`. `bulk` is the inflated bulk stream, or `None` to
/// visit bulk events without their bodies.
pub fn visit(
    first_seq: u64,
    light: &[u8],
    bulk: Option<&[u8]>,
    after: u64,
    upto: u64,
    f: &mut dyn FnMut(Raw<'_>) -> std::result::Result<(), StoreError>,
    corrupt: &dyn Fn(u64, String) -> StoreError,
) -> Result<()> {
    let mut light = Cursor(light);
    let mut bulk = bulk.map(Cursor);
    let (mut kinds, mut agents) = (Recent::default(), Recent::default());
    let mut at_ms = 0u64;
    let mut seq = first_seq;
    while !light.0.is_empty() && seq <= upto {
        let bad = |what: &str| corrupt(seq, format!("chunk at #{first_seq}: {what}"));
        let delta = light.varint().ok_or_else(|| bad("time"))?;
        at_ms = at_ms.wrapping_add(unzigzag(delta) as u64);
        let kind = light.recent_str(&mut kinds).ok_or_else(|| bad("type"))?;
        let in_bulk = light.byte().ok_or_else(|| bad("flag"))? == 1;
        let (agent, body) = if in_bulk {
            let agent = light.recent_str(&mut agents).ok_or_else(|| bad("agent"))?;
            let body = match &mut bulk {
                Some(b) => Some(b.str().ok_or_else(|| bad("bulk body"))?),
                None => None,
            };
            (Some(agent), body)
        } else {
            (None, Some(light.str().ok_or_else(|| bad("body"))?))
        };
        if seq > after {
            f(Raw {
                seq,
                at_ms,
                kind,
                agent,
                body,
            })?;
        }
        seq += 1;
    }
    Ok(())
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// A string that is most often one of the few seen last (a chunk's
    /// types and agents): found among them, it is not checked again.
    fn recent_str(&mut self, recent: &mut Recent<'a>) -> Option<&'a str> {
        let bytes = self.bytes()?;
        if let Some(&known) = recent.0.iter().find(|s| s.as_bytes() == bytes) {
            return Some(known);
        }
        let new = std::str::from_utf8(bytes).ok()?;
        recent.0.rotate_right(1);
        recent.0[0] = new;
        Some(new)
    }
}

/// The last few distinct strings `Cursor::recent_str` read.
#[derive(Default)]
struct Recent<'a>([&'a str; 4]);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One inflater, reused, gives each stream's bytes exactly, whatever
    /// the buffer held before; a cut or damaged stream is an error.
    #[test]
    fn an_inflater_reused_across_streams_gives_each_exactly() {
        let long: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let streams = [long.clone(), b"short".to_vec(), Vec::new(), long];
        let mut inflater = Inflater::default();
        let mut out = b"left over".to_vec();
        for bytes in &streams {
            let packed = deflate(bytes).unwrap();
            inflater.inflate_into(&packed, &mut out).unwrap();
            assert!(out == *bytes);
        }
        let packed = deflate(&streams[0]).unwrap();
        assert!(
            inflater
                .inflate_into(&packed[..packed.len() / 2], &mut out)
                .is_err()
        );
        assert!(inflater.inflate_into(&[0xff; 64], &mut out).is_err());
        assert!(inflater.inflate_into(&[], &mut out).is_err());
        inflater.inflate_into(&packed, &mut out).unwrap();
        assert!(out == streams[0], "a failure leaves the inflater usable");
    }

    #[test]
    fn records_round_trip_through_both_streams() {
        let mut e = Encoder::default();
        let rows = [
            (5u64, "run_started", r#"{"type":"run_started"}"#),
            (
                3,
                "agent_message",
                r#"{"type":"agent_message","agent":"a#1","text":"hé"}"#,
            ),
            (u64::MAX, "warning", r#"{"type":"warning"}"#),
            (
                7,
                "tool_result",
                r#"{"type":"tool_result","agent":"b","output":""}"#,
            ),
        ];
        for (at, kind, body) in rows {
            e.push(at, kind, body).unwrap();
        }
        let (light, bulk) = e.finish().unwrap();
        let (light, bulk) = (inflate(&light).unwrap(), inflate(&bulk).unwrap());
        let corrupt = |seq, message| StoreError::Corrupt {
            run: RunId::from("r"),
            seq,
            message,
        };
        let mut seen = Vec::new();
        visit(
            11,
            &light,
            Some(&bulk),
            11,
            13,
            &mut |r| {
                seen.push((
                    r.seq,
                    r.at_ms,
                    r.kind.to_owned(),
                    r.agent.map(str::to_owned),
                    r.body.map(str::to_owned),
                ));
                Ok(())
            },
            &corrupt,
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                (
                    12,
                    3,
                    "agent_message".into(),
                    Some("a#1".into()),
                    Some(rows[1].2.into())
                ),
                (13, u64::MAX, "warning".into(), None, Some(rows[2].2.into())),
            ]
        );
        let mut bodies = 0;
        visit(
            1,
            &light,
            None,
            0,
            u64::MAX,
            &mut |r| {
                bodies += usize::from(r.body.is_some());
                Ok(())
            },
            &corrupt,
        )
        .unwrap();
        assert_eq!(
            bodies, 2,
            "bulk bodies are not read without the bulk stream"
        );
        // Truncated input is an error, not a panic.
        let cut = &light[..light.len() - 3];
        assert!(visit(1, cut, Some(&bulk), 0, u64::MAX, &mut |_| Ok(()), &corrupt).is_err());
    }
}
