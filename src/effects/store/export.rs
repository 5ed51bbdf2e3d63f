//! Writes a run's record for people and tools: JSON lines (one event per
//! line, lossless) or the Markdown account (`domain::report`).

use std::io::{self, Write};

use crate::domain::{Event, report};

pub fn export_jsonl(events: &[Event], out: &mut impl Write) -> io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut *out, event)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub fn export_markdown(events: &[Event], out: &mut impl Write) -> io::Result<()> {
    out.write_all(report::markdown(events).as_bytes())
}
