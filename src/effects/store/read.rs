//! Reading a run's events back from both places they live: sealed chunks
//! (everything up to the last full chunk) and the `events` table (the tail
//! not yet a chunk), in sequence order.

use rusqlite::{Connection, params};

use super::chunk::{self, CHUNK_EVENTS, Raw};
use super::{Context, Result, StoreError, decode};
use crate::domain::{Event, RunId};

/// Which event bodies a reader needs.
#[derive(Clone, Copy)]
pub enum Bodies<'a> {
    All,
    /// Bulk events are visited without their bodies.
    Light,
    /// Only events of these types are visited.
    Types(&'a [&'a str]),
}

impl Bodies<'_> {
    fn wants(&self, kind: &str) -> bool {
        match self {
            Bodies::Types(types) => types.contains(&kind),
            _ => true,
        }
    }

    fn needs_bulk(&self) -> bool {
        match self {
            Bodies::All => true,
            Bodies::Light => false,
            Bodies::Types(types) => types.iter().any(|t| chunk::BULK.contains(t)),
        }
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Visits the events of `run` numbered `after + 1 ..= upto`, in order.
pub fn visit(
    conn: &Connection,
    run: &RunId,
    after: u64,
    upto: u64,
    bodies: Bodies<'_>,
    f: &mut dyn FnMut(Raw<'_>) -> Result<()>,
) -> Result<()> {
    let corrupt = |seq: u64, message: String| StoreError::Corrupt {
        run: run.clone(),
        seq,
        message,
    };
    let mut filtered = |raw: Raw<'_>| {
        if bodies.wants(raw.kind) {
            f(raw)
        } else {
            Ok(())
        }
    };
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT first_seq, light, bulk FROM event_chunks WHERE run = ?1 AND first_seq > ?2 AND first_seq <= ?3 ORDER BY first_seq",
            )
            .ctx("reading event chunks")?;
        let mut rows = stmt
            .query(params![
                run.as_str(),
                as_i64(after) - CHUNK_EVENTS as i64,
                as_i64(upto)
            ])
            .ctx("reading event chunks")?;
        // One inflate state and one buffer per stream for every chunk.
        let mut inflater = chunk::Inflater::default();
        let (mut light, mut bulk) = (Vec::new(), Vec::new());
        while let Some(row) = rows.next().ctx("reading an event chunk")? {
            let first = row.get::<_, i64>(0).ctx("reading an event chunk")? as u64;
            let mut blob = |i: usize, out: &mut Vec<u8>| -> Result<()> {
                let bytes = row.get_ref(i).ctx("reading an event chunk")?;
                let bytes = bytes.as_blob().map_err(|e| corrupt(first, e.to_string()))?;
                inflater
                    .inflate_into(bytes, out)
                    .map_err(|e| corrupt(first, e.to_string()))
            };
            blob(1, &mut light)?;
            let needs_bulk = bodies.needs_bulk();
            if needs_bulk {
                blob(2, &mut bulk)?;
            }
            chunk::visit(
                first,
                &light,
                needs_bulk.then_some(bulk.as_slice()),
                after,
                upto,
                &mut filtered,
                &corrupt,
            )?;
        }
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at_ms, type, body FROM events WHERE run = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
        )
        .ctx("reading events")?;
    let mut rows = stmt
        .query(params![run.as_str(), as_i64(after), as_i64(upto)])
        .ctx("reading events")?;
    while let Some(row) = rows.next().ctx("reading an event")? {
        let seq = row.get::<_, i64>(0).ctx("reading an event")? as u64;
        let at_ms = row.get::<_, i64>(1).ctx("reading an event")? as u64;
        let kind = row.get_ref(2).ctx("reading an event")?;
        let kind = kind.as_str().map_err(|e| corrupt(seq, e.to_string()))?;
        let body = row.get_ref(3).ctx("reading an event")?;
        let body = body.as_str().map_err(|e| corrupt(seq, e.to_string()))?;
        filtered(Raw {
            seq,
            at_ms,
            kind,
            agent: None,
            body: Some(body),
        })?;
    }
    Ok(())
}

/// The event `raw` describes, which must have its body.
pub fn decode(run: &RunId, raw: &Raw<'_>) -> Result<Event> {
    let corrupt = |message: String| StoreError::Corrupt {
        run: run.clone(),
        seq: raw.seq,
        message,
    };
    let body = raw
        .body
        .ok_or_else(|| corrupt("body not read".to_owned()))?;
    // The body holds the event's kind (a whole event in stores before v3,
    // whose `run`, `seq` and `at_ms` are columns too): decoding only the
    // kind skips serde's slow path for flattened enums.
    let kind = decode::decode_kind(raw.kind, body).map_err(|e| corrupt(e.to_string()))?;
    Ok(Event {
        run: run.clone(),
        seq: raw.seq,
        at_ms: raw.at_ms,
        kind,
    })
}

/// The events `visit` gives, decoded.
pub fn events(
    conn: &Connection,
    run: &RunId,
    after: u64,
    upto: u64,
    bodies: Bodies<'_>,
) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    visit(conn, run, after, upto, bodies, &mut |raw| {
        events.push(decode(run, &raw)?);
        Ok(())
    })?;
    Ok(events)
}
