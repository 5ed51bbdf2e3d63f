//! Replay: opening a long stored run at an arbitrary cursor, as
//! `memofab replay RUN --at N` does (read the run without its conversation
//! text, fold the cockpit's model to the cursor, read the text of the
//! transcript on screen), then stepping and scrubbing frame by frame.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Samples, Scale, Table, fresh_store, ms, thousands};
use crate::domain::RunId;
use crate::domain::synthetic;
use crate::effects::store::Store;
use crate::tui::replay::{CHECKPOINT_EVERY, Replay};

/// Where the cursor is put, as fractions of the run.
const CURSORS: [f64; 3] = [0.1, 0.5, 0.97];
/// Steps each way, and scrubs, timed at the middle of the run.
const STEPS: usize = 50;
const SCRUBS: usize = 10;

pub fn run(dir: &Path, scale: Scale) -> anyhow::Result<Table> {
    let mut table = Table::new(format!(
        "replay ({} tasks; each figure min / median / max)",
        scale.tasks
    ));
    for &events in scale.replay_events {
        one_size(dir, scale.tasks, events, &mut table)?;
    }
    Ok(table)
}

fn one_size(dir: &Path, tasks: usize, total: usize, table: &mut Table) -> anyhow::Result<()> {
    let run = RunId::from("bench-replay");
    let path = fresh_store(dir, &format!("replay-{total}.db"))?;
    {
        let mut store = Store::open(&path)?;
        for chunk in synthetic::run_events(&run, tasks, total).chunks(1_000) {
            store.append_batch(chunk)?;
        }
    }
    let n = thousands(total as u64);
    let mut reads = Samples::default();
    for _ in 0..3 {
        let started = Instant::now();
        let light = Store::load_light(&path, &run)?;
        reads.push(started.elapsed());
        anyhow::ensure!(light.len() > total / 2, "the run did not read back");
    }
    let mut opens = Samples::default();
    let mut middle = None;
    for fraction in CURSORS {
        let started = Instant::now();
        let len = Store::open_reader(&path)?.last_seq(&run)? as usize;
        let cursor = ((len as f64 * fraction) as usize).max(1);
        let replay = Replay::open_stored("bench", &path, &run, Default::default(), cursor)?;
        opens.push(started.elapsed());
        anyhow::ensure!(replay.cursor() == cursor, "the replay is not at its cursor");
        anyhow::ensure!(replay.note.is_none(), "{:?}", replay.note);
        if fraction == 0.5 {
            middle = Some(replay);
        }
    }
    table.row(
        format!("{n} events: read the run without its conversation text"),
        spread(&reads),
    );
    let worst = opens.percentile(100.0);
    table.checked(
        format!("{n} events: open at a cursor (10%, 50%, 97%: read, fold, transcript shown)"),
        spread(&opens),
        "< 0.3 s",
        worst < Duration::from_millis(300),
    );
    if let Some(mut replay) = middle {
        let at = replay.cursor();
        let mut forward = Samples::default();
        for _ in 0..STEPS {
            let started = Instant::now();
            replay.seek(replay.cursor() + 1);
            forward.push(started.elapsed());
        }
        let mut back = Samples::default();
        for _ in 0..STEPS {
            let started = Instant::now();
            replay.seek(replay.cursor() - 1);
            back.push(started.elapsed());
        }
        // The worst step back: to the event before a checkpoint, which
        // folds a whole interval from the one before.
        let mut worst_back = Samples::default();
        for i in 0..SCRUBS {
            let checkpoint = (at / CHECKPOINT_EVERY).saturating_sub(i) * CHECKPOINT_EVERY;
            replay.seek(checkpoint + 1);
            let started = Instant::now();
            replay.seek(checkpoint.saturating_sub(1).max(1));
            worst_back.push(started.elapsed());
        }
        // Alternately forward and back across the run, as clicks would:
        // first straight after the steps (a click forward folds all the
        // way there), then, elsewhere, once the idle replay has carried
        // its checkpoints to the end of the run. Each click shows an agent
        // not shown before, whose transcript is built from its events.
        let targets = |shift: usize| -> Vec<usize> {
            (0..SCRUBS)
                .map(|i| {
                    if i % 2 == 0 {
                        at + (replay.len() - at) * (i + 1) / (SCRUBS + 1) + shift
                    } else {
                        at * (SCRUBS - i) / SCRUBS + shift
                    }
                })
                .collect()
        };
        let (first, elsewhere) = (targets(0), targets(replay.len() / 40));
        let scrub = |replay: &mut Replay, targets: &[usize]| {
            let mut scrubs = Samples::default();
            for &target in targets {
                let started = Instant::now();
                replay.seek(target.max(1));
                scrubs.push(started.elapsed());
            }
            scrubs
        };
        let cold = scrub(&mut replay, &first);
        replay.seek(at);
        let mut carried = Samples::default();
        loop {
            let started = Instant::now();
            let more = replay.carry_ahead();
            carried.push(started.elapsed());
            if !more {
                break;
            }
        }
        let scrubs = scrub(&mut replay, &elsewhere);
        anyhow::ensure!(replay.note.is_none(), "{:?}", replay.note);
        let frame = Duration::from_millis(16);
        table.checked(
            format!("{n} events: step forward one event"),
            spread(&forward),
            "< 16 ms",
            forward.percentile(100.0) < frame,
        );
        table.checked(
            format!("{n} events: step back one event"),
            spread(&back),
            "< 16 ms",
            back.percentile(100.0) < frame,
        );
        table.checked(
            format!(
                "{n} events: step back to before a checkpoint (every {})",
                thousands(CHECKPOINT_EVERY as u64)
            ),
            spread(&worst_back),
            "< 16 ms",
            worst_back.percentile(100.0) < frame,
        );
        table.row(
            format!(
                "{n} events: scrub (click on the timeline), before checkpoints are carried ahead"
            ),
            spread(&cold),
        );
        // An idle turn holds the next key back while it lasts.
        table.checked(
            format!(
                "{n} events: idle turn (a transcript's beginning, or checkpoints carried ahead one interval; {} turns)",
                carried.len()
            ),
            spread(&carried),
            "< 16 ms",
            carried.percentile(100.0) < frame,
        );
        table.checked(
            format!("{n} events: scrub (click on the timeline), once carried ahead"),
            spread(&scrubs),
            "< 16 ms",
            scrubs.percentile(100.0) < frame,
        );
    }
    Ok(())
}

/// `min / median / max`.
pub fn spread(samples: &Samples) -> String {
    format!(
        "{} / {} / {}",
        ms(samples.percentile(0.0)),
        ms(samples.median()),
        ms(samples.percentile(100.0))
    )
}
