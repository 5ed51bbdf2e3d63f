//! The record on PostgreSQL (`memofab --store URL bench`): how many events
//! one server takes, one per transaction as the recorder appends them, from
//! one writer and from many at once (each a daemon's run); and how fast a
//! NOTIFY reaches many listeners (attached cockpits). The runs it writes
//! are removed afterwards.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::{Scale, Table, per_second, thousands};
use crate::domain::{Event, RunId, synthetic};
use crate::effects::clock::now_ms;
use crate::effects::store::Store;
use crate::effects::store::postgres::url::redacted;

/// Events each writer appends one per transaction.
const SINGLE: usize = 2_000;
/// Events per transaction in the batched figure.
const BATCH: usize = 1_000;

pub fn run(url: &str, scale: Scale) -> anyhow::Result<Table> {
    let quick = scale.events < Scale::FULL.events;
    let nonce = now_ms();
    let store = Store::connect(url)?;
    let version = store
        .postgres()
        .map(|pg| pg.server_version())
        .transpose()?
        .unwrap_or_default();
    let mut table = Table::new(format!("PostgreSQL {version} store at {}", redacted(url)));
    let mut written = Vec::new();

    let sample = if quick { 300 } else { SINGLE };
    let run = RunId::new(format!("bench-pg-{nonce}-single"));
    let took = writers(url, &run, 1, sample)?;
    written.push(run);
    table.row(
        "append, one event per transaction, one writer",
        per_second(sample, took),
    );

    let run = RunId::new(format!("bench-pg-{nonce}-batched"));
    let events = synthetic::run_events(&run, scale.tasks, if quick { 20_000 } else { 200_000 });
    let mut batched = Store::connect(url)?;
    let started = Instant::now();
    for chunk in events.chunks(BATCH) {
        batched.append_batch(chunk)?;
    }
    table.row(
        format!("append, {BATCH} events per transaction"),
        per_second(events.len(), started.elapsed()),
    );
    let started = Instant::now();
    let back = batched.events(&run)?;
    anyhow::ensure!(back == events, "the run read back differs");
    table.row(
        format!("read a {}-event run back", thousands(events.len() as u64)),
        super::ms(started.elapsed()),
    );
    written.push(run);

    for n in if quick {
        &[4usize][..]
    } else {
        &[8, 32, 100][..]
    } {
        let run = RunId::new(format!("bench-pg-{nonce}-w{n}"));
        let each = sample / 4;
        let took = writers(url, &run, *n, each)?;
        table.row(
            format!("append, one per transaction, {n} writers at once"),
            per_second(n * each, took),
        );
        written.extend((0..*n).map(|i| RunId::new(format!("{run}-{i}"))));
    }

    for n in if quick { &[4usize][..] } else { &[10, 100][..] } {
        let notices = if quick { 200 } else { 2_000 };
        let took = fan_out(url, *n, notices)?;
        table.row(
            format!("NOTIFY fan-out, {notices} notices to {n} listeners"),
            format!("{} deliveries", per_second(n * notices, took)),
        );
    }

    let mut cleaner = Store::connect(url)?;
    for run in written {
        cleaner.forget_run(&run)?;
    }
    Ok(table)
}

/// `n` writers (a connection each) appending `each` events of their own
/// run one per transaction, all at once; the wall time.
fn writers(url: &str, run: &RunId, n: usize, each: usize) -> anyhow::Result<Duration> {
    let start = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let run = if n == 1 {
                run.clone()
            } else {
                RunId::new(format!("{run}-{i}"))
            };
            let events: Vec<Event> = synthetic::run_events(&run, 4, each + 16)
                .into_iter()
                .take(each)
                .collect();
            let (url, start) = (url.to_owned(), start.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let store = Store::connect(&url);
                start.wait();
                let mut store = store?;
                for event in &events {
                    store.append(event)?;
                }
                Ok(())
            })
        })
        .collect();
    start.wait();
    let started = Instant::now();
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
    }
    Ok(started.elapsed())
}

/// `listeners` connections LISTENing while one sends `notices` NOTIFYs,
/// each its own transaction; the time until every listener has them all.
fn fan_out(url: &str, listeners: usize, notices: usize) -> anyhow::Result<Duration> {
    let channel = format!("memofab_bench_{}", now_ms());
    let ready = Arc::new(Barrier::new(listeners + 1));
    let handles: Vec<_> = (0..listeners)
        .map(|_| {
            let (url, channel, ready) = (url.to_owned(), channel.clone(), ready.clone());
            std::thread::spawn(move || -> anyhow::Result<Instant> {
                let client =
                    ::postgres::Client::connect(&url, ::postgres::NoTls).and_then(|mut c| {
                        c.batch_execute(&format!("LISTEN {channel}"))?;
                        Ok(c)
                    });
                ready.wait();
                let mut client = client?;
                use ::postgres::fallible_iterator::FallibleIterator;
                let mut seen = 0;
                let mut notifications = client.notifications();
                let mut iter = notifications.timeout_iter(Duration::from_secs(30));
                while seen < notices {
                    match iter.next() {
                        Ok(Some(_)) => seen += 1,
                        Ok(None) => anyhow::bail!("notices stopped after {seen}"),
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Instant::now())
            })
        })
        .collect();
    let sender = ::postgres::Client::connect(url, ::postgres::NoTls);
    ready.wait();
    let mut sender = sender?;
    let started = Instant::now();
    for i in 0..notices {
        sender.execute("SELECT pg_notify($1, $2)", &[&channel, &i.to_string()])?;
    }
    let mut last = started;
    for handle in handles {
        let done = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a listener panicked"))??;
        last = last.max(done);
    }
    Ok(last - started)
}
