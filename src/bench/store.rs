//! The event store: append throughput one event per transaction (how the
//! engine records: each event is durable before anyone sees it) and in
//! batches; reading a run back; folding it into its state; size on disk.

use std::path::Path;
use std::time::Instant;

use super::{Samples, Scale, Table, fresh_store, mib, ms, per_second, thousands};
use crate::domain::synthetic;
use crate::domain::{RunId, RunState};
use crate::effects::store::Store;

/// Events per transaction in the batched figure.
const BATCH: usize = 1_000;
/// The one-per-transaction figure is measured on this many events: it is a
/// rate, and a million single commits would only make the run long.
const SINGLE_SAMPLE: usize = 20_000;

pub fn run(dir: &Path, scale: Scale) -> anyhow::Result<Table> {
    let run = RunId::from("bench-store");
    let events = synthetic::run_events(&run, scale.tasks, scale.events);
    let n = events.len();
    let mut table = Table::new(format!(
        "event store ({} events, WAL, synchronous=NORMAL)",
        thousands(n as u64)
    ));

    let single_path = fresh_store(dir, "single.db")?;
    let mut single = Store::open(&single_path)?;
    let sample = &events[..n.min(SINGLE_SAMPLE)];
    let started = Instant::now();
    for event in sample {
        single.append(event)?;
    }
    table.row(
        "append, one event per transaction",
        per_second(sample.len(), started.elapsed()),
    );
    drop(single);

    let batched_path = fresh_store(dir, "batched.db")?;
    let mut store = Store::open(&batched_path)?;
    let started = Instant::now();
    for chunk in events.chunks(BATCH) {
        store.append_batch(chunk)?;
    }
    let took = started.elapsed();
    let rate = n as f64 / took.as_secs_f64().max(1e-9);
    table.checked(
        format!("append, {BATCH} events per transaction"),
        per_second(n, took),
        "≥ 100,000/s",
        rate >= 100_000.0,
    );
    store.checkpoint()?;
    let bytes = file_size(&batched_path);
    let per_event = bytes as f64 / n as f64;
    table.checked(
        "store size per event (sealed chunks + tail, after a checkpoint)",
        format!(
            "{per_event:.1} B ({} per million)",
            mib((per_event * 1_000_000.0) as u64)
        ),
        "≤ 100 B",
        per_event <= 100.0,
    );

    let mut reads = Samples::default();
    let mut loaded = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        loaded = store.events(&run)?;
        reads.push(started.elapsed());
    }
    anyhow::ensure!(loaded == events, "the run read back differs");
    table.row(
        "read the whole run back, one reader",
        super::replay::spread(&reads),
    );
    let mut parallel = Samples::default();
    for _ in 0..3 {
        let started = Instant::now();
        let all = Store::load_run(&batched_path, &run)?;
        parallel.push(started.elapsed());
        anyhow::ensure!(all.len() == n, "the parallel read lost events");
    }
    table.row(
        "read the whole run back, a reader per core",
        super::replay::spread(&parallel),
    );

    let started = Instant::now();
    let state = RunState::fold(&loaded)?;
    let fold = started.elapsed();
    table.row("fold the run into its state", ms(fold));
    table.row(
        "fold rate",
        per_second(loaded.len(), fold.max(std::time::Duration::from_nanos(1))),
    );
    anyhow::ensure!(
        state.is_some_and(|s| s.phase.is_over()),
        "the synthetic run did not fold to a finished run"
    );
    Ok(table)
}

fn file_size(db: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    size(db) + size(Path::new(&wal))
}
