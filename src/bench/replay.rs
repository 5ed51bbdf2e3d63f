//! Replay: opening a long stored run at an arbitrary cursor, as
//! `memofab replay RUN --at N` does: read the run, then fold the cockpit's
//! model up to the cursor.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Samples, Scale, Table, fresh_store, ms, thousands};
use crate::domain::RunId;
use crate::domain::synthetic;
use crate::effects::store::Store;
use crate::tui::replay::Replay;

/// Where the cursor is put, as fractions of the run.
const CURSORS: [f64; 3] = [0.1, 0.5, 0.97];

pub fn run(dir: &Path, scale: Scale) -> anyhow::Result<Table> {
    let run = RunId::from("bench-replay");
    let path = fresh_store(dir, "replay.db")?;
    {
        let events = synthetic::run_events(&run, scale.tasks, scale.events);
        let mut store = Store::open(&path)?;
        for chunk in events.chunks(1_000) {
            store.append_batch(chunk)?;
        }
    }
    let mut table = Table::new(format!(
        "replay ({} events, {} tasks)",
        thousands(scale.events as u64),
        scale.tasks
    ));
    let mut loads = Samples::default();
    let mut folds = Samples::default();
    let mut opens = Samples::default();
    for fraction in CURSORS {
        let started = Instant::now();
        let events = Store::load_run(&path, &run)?;
        let loaded = started.elapsed();
        loads.push(loaded);
        let cursor = ((events.len() as f64 * fraction) as usize).max(1);
        let replay = Replay::open_at(&format!("bench {run}"), events, cursor);
        anyhow::ensure!(replay.cursor() == cursor, "the replay is not at its cursor");
        let opened = started.elapsed();
        folds.push(opened.saturating_sub(loaded));
        opens.push(opened);
    }
    table.row("read the run (parallel readers), p50", ms(loads.median()));
    table.row(
        "fold the cockpit model to the cursor, slowest",
        ms(folds.percentile(100.0)),
    );
    let worst = opens.percentile(100.0);
    table.checked(
        format!(
            "open at a cursor ({}), slowest",
            CURSORS.map(|c| format!("{:.0}%", c * 100.0)).join(", ")
        ),
        ms(worst),
        "< 1 s",
        worst < Duration::from_secs(1),
    );
    Ok(table)
}
