//! Cockpit frame time with a 100,000-line transcript and 16 agents streaming
//! at 50 tokens/s each. Prints percentiles; run with `cargo bench --bench render`.

use std::time::{Duration, Instant};

use memofab::domain::{
    AgentId, AgentRole, Blueprint, Event, EventKind, MessageAuthor, RunId, RunSettings, TaskSpec,
    TaskState,
};
use memofab::protocol::EngineUpdate;
use memofab::tui::Theme;
use memofab::tui::app::App;
use memofab::tui::view::render;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const AGENTS: usize = 16;
const TRANSCRIPT_LINES: usize = 100_000;
const TOKENS_PER_SEC: f64 = 50.0;
const FRAME: Duration = Duration::from_millis(16);
const FRAMES: usize = 3_000;

fn event(seq: u64, kind: EventKind) -> Event {
    Event {
        run: RunId::from("bench"),
        seq,
        at_ms: seq,
        kind,
    }
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let rss_before = rss_kib();
    let mut events = vec![event(
        1,
        EventKind::RunStarted {
            requirement: "bench".into(),
            repo: "/bench".into(),
            mainline: "main".into(),
            base_commit: "0".into(),
            settings: RunSettings {
                concurrency: AGENTS,
                provider: "bench".into(),
                ..RunSettings::default()
            },
        },
    )];
    let tasks: Vec<TaskSpec> = (0..AGENTS)
        .map(|i| TaskSpec {
            id: format!("t{i}").as_str().into(),
            title: format!("task {i}"),
            description: String::new(),
            acceptance: vec![],
            paths: vec![],
            depends_on: vec![],
        })
        .collect();
    let mut push = |kind| {
        let seq = events.len() as u64 + 1;
        events.push(event(seq, kind));
    };
    push(EventKind::BlueprintAccepted {
        blueprint: Blueprint {
            title: "bench".into(),
            tasks: tasks.clone(),
        },
    });
    let agents: Vec<AgentId> = tasks
        .iter()
        .map(|t| AgentId::for_task(AgentRole::Coder, &t.id, 1))
        .collect();
    for (task, agent) in tasks.iter().zip(&agents) {
        for (from, to) in [
            (TaskState::Pending, TaskState::Ready),
            (TaskState::Ready, TaskState::Running),
        ] {
            push(EventKind::TaskStateChanged {
                task: task.id.clone(),
                from,
                to,
                reason: None,
            });
        }
        push(EventKind::AgentStarted {
            agent: agent.clone(),
            role: AgentRole::Coder,
            task: Some(task.id.clone()),
            model: "bench".into(),
        });
    }
    // The selected agent's transcript: 100k lines in messages of 100 lines.
    let block: String = (0..100)
        .map(|i| format!("line {i} of a long answer with some code in it\n"))
        .collect();
    for _ in 0..TRANSCRIPT_LINES / 100 {
        push(EventKind::AgentMessage {
            agent: agents[0].clone(),
            from: MessageAuthor::Assistant,
            text: block.clone(),
        });
    }
    let built = Instant::now();
    let mut app = App::from_events("bench", &events);
    let fold_time = built.elapsed();
    let lines = app.shown_transcript().map(|t| t.len(false)).unwrap_or(0);

    let theme = Theme::dark();
    let mut terminal = match Terminal::new(TestBackend::new(160, 48)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot make a test terminal: {e}");
            return;
        }
    };
    let mut times = Vec::with_capacity(FRAMES);
    let tokens_per_frame = TOKENS_PER_SEC * FRAME.as_secs_f64();
    let mut owed = [0.0f64; AGENTS];
    for _ in 0..FRAMES {
        let start = Instant::now();
        for (i, agent) in agents.iter().enumerate() {
            owed[i] += tokens_per_frame;
            while owed[i] >= 1.0 {
                owed[i] -= 1.0;
                app.update(EngineUpdate::Delta {
                    agent: agent.clone(),
                    text: "tok ".into(),
                });
            }
        }
        if terminal.draw(|f| render(f, &app, &theme)).is_err() {
            eprintln!("draw failed");
            return;
        }
        times.push(start.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "cockpit render: {AGENTS} agents streaming at {TOKENS_PER_SEC} tokens/s, transcript of {lines} lines, 160x48"
    );
    println!(
        "  building the model from {} events: {:.1} ms",
        events.len(),
        fold_time.as_secs_f64() * 1e3
    );
    println!(
        "  frame (update + draw) over {FRAMES} frames: p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.90).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3
    );
    if let (Some(before), Some(after)) = (rss_before, rss_kib()) {
        println!(
            "  resident memory: {:.1} MiB (grew {:.1} MiB)",
            after as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / 1024.0
        );
    }
}
