//! `memofab bench`: what memofab itself costs, with the model's latency taken
//! out (scripted provider, synthetic records). Each section prints a table of
//! figures and, where there is one, the target it is held to.

pub mod fake_anthropic;
pub mod orchestration;
pub mod postgres;
pub mod render;
pub mod replay;
pub mod store;
pub mod tokens;
pub mod write_sets;

use std::fmt::Write as _;
use std::time::Duration;

/// How big the workloads are. `full` is what docs/performance.md's figures use;
/// `quick` is a smoke run of every code path in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub files: usize,
    pub repo_bytes: usize,
    pub tasks: usize,
    pub events: usize,
    pub transcript_lines: usize,
    pub frames: usize,
    /// Run lengths replay is opened at.
    pub replay_events: &'static [usize],
    /// Deep runs besides the one of `tasks`, to see overhead scale.
    pub scaling_tasks: &'static [usize],
}

impl Scale {
    pub const FULL: Scale = Scale {
        files: 10_000,
        repo_bytes: 100 * 1024 * 1024,
        tasks: 64,
        events: 1_000_000,
        transcript_lines: 100_000,
        frames: 3_000,
        replay_events: &[100_000, 1_000_000],
        scaling_tasks: &[16, 256],
    };

    /// `FULL` with replay also opened on a 5,000,000-event run (`--huge`:
    /// a few minutes more, and about 3 GiB of memory to generate it).
    pub const HUGE: Scale = Scale {
        replay_events: &[100_000, 1_000_000, 5_000_000],
        ..Scale::FULL
    };

    pub const QUICK: Scale = Scale {
        files: 200,
        repo_bytes: 2 * 1024 * 1024,
        tasks: 8,
        events: 20_000,
        transcript_lines: 5_000,
        frames: 100,
        replay_events: &[20_000],
        scaling_tasks: &[4],
    };
}

/// A headless run of the scripted `scenario` that approves its own gates:
/// how the sections that run the real engine start it.
pub fn scripted_run(
    repo: &std::path::Path,
    requirement: String,
    config: crate::config::Config,
    scenario: std::sync::Arc<crate::llm::scenario::Scenario>,
) -> crate::engine::run::session::RunRequest {
    crate::engine::run::session::RunRequest {
        repo: repo.to_owned(),
        requirement,
        config,
        providers: crate::engine::context::ProviderSet::uniform(
            std::sync::Arc::new(crate::llm::scripted::ScriptedProvider::new(scenario)),
            "scripted",
        ),
        provider_label: "scripted".into(),
        scenario: None,
        auto_approve: true,
        await_spec: false,
        steering: crate::engine::run::orchestrator::Steering::Headless,
        crash_after: None,
        run_id: None,
        agent_slots: None,
    }
}

/// One section's results: rows of (figure, value, target).
#[derive(Debug, Default)]
pub struct Table {
    pub title: String,
    pub rows: Vec<Row>,
}

#[derive(Debug)]
pub struct Row {
    pub figure: String,
    pub value: String,
    pub target: Option<Target>,
}

#[derive(Debug)]
pub struct Target {
    pub text: String,
    pub met: bool,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, figure: impl Into<String>, value: impl Into<String>) {
        self.rows.push(Row {
            figure: figure.into(),
            value: value.into(),
            target: None,
        });
    }

    pub fn checked(
        &mut self,
        figure: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) {
        self.rows.push(Row {
            figure: figure.into(),
            value: value.into(),
            target: Some(Target {
                text: target.into(),
                met,
            }),
        });
    }

    /// Every target in the table is met.
    pub fn all_met(&self) -> bool {
        self.rows
            .iter()
            .all(|r| r.target.as_ref().is_none_or(|t| t.met))
    }

    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.figure.chars().count())
            .max()
            .unwrap_or(0);
        let value_width = self
            .rows
            .iter()
            .map(|r| r.value.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = format!("{}\n", self.title);
        for row in &self.rows {
            let _ = write!(
                out,
                "  {:<width$}  {:>value_width$}",
                row.figure,
                row.value,
                width = width,
                value_width = value_width
            );
            if let Some(t) = &row.target {
                let mark = if t.met { "ok" } else { "MISSED" };
                let _ = write!(out, "   target {} {mark}", t.text);
            }
            out.push('\n');
        }
        out
    }
}

/// Sorted samples, for percentiles.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`th percentile (0–100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.percentile(50.0)
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A count per second, with thousands separators.
pub fn per_second(count: usize, took: Duration) -> String {
    let rate = count as f64 / took.as_secs_f64().max(1e-9);
    format!("{}/s", thousands(rate as u64))
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Resident memory of this process, from /proc (Linux only).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `path` for a new SQLite store: whatever an earlier run left there (with
/// its WAL and shared-memory files) is removed first.
pub fn fresh_store(dir: &std::path::Path, name: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.join(format!("{name}{suffix}"));
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(path)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.median(), Duration::from_millis(50));
        assert_eq!(s.percentile(95.0), Duration::from_millis(95));
        assert_eq!(s.percentile(100.0), Duration::from_millis(100));
        assert_eq!(Samples::default().median(), Duration::ZERO);
    }

    #[test]
    fn tables_mark_missed_targets() {
        let mut t = Table::new("x");
        t.row("plain", "1");
        t.checked("fast", "2 ms", "< 5 ms", true);
        assert!(t.all_met());
        t.checked("slow", "9 ms", "< 5 ms", false);
        assert!(!t.all_met());
        let text = t.render();
        assert!(text.contains("MISSED") && text.contains("ok"), "{text}");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
