//! Cockpit frame time: a transcript of `transcript_lines` lines and 16 agents
//! streaming at 50 tokens/s each; every frame applies the tokens due and
//! draws the whole cockpit into an off-screen terminal.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::{Samples, Scale, Table, mib, ms, rss_bytes, thousands};
use crate::domain::event::{
    AgentMessage, AgentStarted, BlueprintAccepted, RunStarted, TaskStateChanged,
};
use crate::domain::{
    AgentId, AgentRole, Blueprint, Event, EventKind, MessageAuthor, RunId, RunSettings, TaskSpec,
    TaskState,
};
use crate::protocol::EngineUpdate;
use crate::tui::Theme;
use crate::tui::app::App;
use crate::tui::view::render;

const AGENTS: usize = 16;
const TOKENS_PER_SEC: f64 = 50.0;
const FRAME: Duration = Duration::from_millis(16);
const SIZE: (u16, u16) = (160, 48);

pub fn run(scale: Scale) -> anyhow::Result<Table> {
    let rss_before = rss_bytes();
    let (events, agents) = streaming_run(scale.transcript_lines);
    let built = Instant::now();
    let mut app = App::from_events("bench", &events);
    let fold = built.elapsed();
    let lines = app.shown_transcript().map(|t| t.len(false)).unwrap_or(0);
    // A figure for drawing no transcript would measure nothing it claims.
    anyhow::ensure!(
        lines >= scale.transcript_lines,
        "the cockpit shows {lines} transcript lines, not the {} the bench built",
        scale.transcript_lines
    );

    let theme = Theme::dark();
    let mut terminal = Terminal::new(TestBackend::new(SIZE.0, SIZE.1))?;
    let mut frames = Samples::default();
    let tokens_per_frame = TOKENS_PER_SEC * FRAME.as_secs_f64();
    let mut owed = [0.0f64; AGENTS];
    for _ in 0..scale.frames {
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
        terminal.draw(|f| render(f, &app, &theme))?;
        frames.push(start.elapsed());
    }

    let mut table = Table::new(format!(
        "cockpit render ({AGENTS} agents at {TOKENS_PER_SEC} tokens/s, {} transcript lines, {}x{}, {} frames)",
        thousands(lines as u64),
        SIZE.0,
        SIZE.1,
        frames.len()
    ));
    table.row(
        format!(
            "build the model from {} events",
            thousands(events.len() as u64)
        ),
        ms(fold),
    );
    table.row("frame p50 (update + draw)", ms(frames.median()));
    let p99 = frames.percentile(99.0);
    table.checked(
        "frame p99",
        ms(p99),
        "< 2 ms",
        p99 < Duration::from_millis(2),
    );
    table.row("frame max", ms(frames.percentile(100.0)));
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        table.row("resident memory", mib(after));
        table.row(
            "memory the cockpit model added",
            mib(after.saturating_sub(before)),
        );
    }
    Ok(table)
}

/// `AGENTS` coders at work; the last started has a transcript of `lines`
/// lines.
fn streaming_run(lines: usize) -> (Vec<Event>, Vec<AgentId>) {
    let mut events = Vec::new();
    let mut push = |kind| {
        let seq = events.len() as u64 + 1;
        events.push(Event {
            run: RunId::from("bench"),
            seq,
            at_ms: seq,
            kind,
        });
    };
    push(EventKind::RunStarted(RunStarted {
        requirement: "bench".into(),
        repo: "/bench".into(),
        mainline: "main".into(),
        base_commit: "0".into(),
        settings: RunSettings {
            concurrency: AGENTS,
            provider: "bench".into(),
            ..RunSettings::default()
        },
    }));
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
    push(EventKind::BlueprintAccepted(BlueprintAccepted {
        blueprint: Blueprint {
            title: "bench".into(),
            tasks: tasks.clone(),
        },
    }));
    let agents: Vec<AgentId> = tasks
        .iter()
        .map(|t| AgentId::for_task(AgentRole::Coder, &t.id, 1))
        .collect();
    for (task, agent) in tasks.iter().zip(&agents) {
        for (from, to) in [
            (TaskState::Pending, TaskState::Ready),
            (TaskState::Ready, TaskState::Running),
        ] {
            push(EventKind::TaskStateChanged(TaskStateChanged {
                task: task.id.clone(),
                from,
                to,
                reason: None,
            }));
        }
        push(EventKind::AgentStarted(AgentStarted {
            agent: agent.clone(),
            role: AgentRole::Coder,
            task: Some(task.id.clone()),
            model: "bench".into(),
        }));
    }
    // Messages of 100 lines each, as a long answer with code would be.
    let block: String = (0..100)
        .map(|i| format!("line {i} of a long answer with some code in it\n"))
        .collect();
    // The last agent started: the one the cockpit shows while nobody has
    // chosen one (given to the first, the long transcript was never drawn:
    // the table said "0 transcript lines").
    let shown = agents
        .last()
        .cloned()
        .unwrap_or_else(|| AgentId::from("none"));
    for _ in 0..lines.div_ceil(100) {
        push(EventKind::AgentMessage(AgentMessage {
            agent: shown.clone(),
            from: MessageAuthor::Assistant,
            text: block.clone(),
        }));
    }
    (events, agents)
}
