//! A synthetic but valid run record of any size: a blueprint of `tasks`
//! independent tasks, each carried from pending to merged by a coder whose
//! conversation (messages, tool calls, results, token counts) fills the run
//! up to about `total` events. Every event passes the state machine.

use crate::domain::event::{
    AgentFinished, AgentMessage, AgentStarted, BlueprintAccepted, ChangeCommitted, MergeResult,
    ReviewVerdict, RunFinished, RunPhaseChanged, RunStarted, TaskStateChanged, TestRun, TokensUsed,
    ToolCalled, ToolResult, WorktreeCreated,
};
use crate::domain::{
    AgentId, AgentRole, Blueprint, Event, EventKind, MergeOutcome, MessageAuthor, RunId, RunPhase,
    RunSettings, TaskId, TaskSpec, TaskState, TokenUsage,
};

/// Events one conversation turn adds: message, call, result, tokens.
const TURN_EVENTS: usize = 4;
/// Events each task adds besides its conversation.
const TASK_EVENTS: usize = 14;

pub struct Synthetic {
    run: RunId,
    seq: u64,
    events: Vec<Event>,
}

impl Synthetic {
    fn push(&mut self, kind: EventKind) {
        self.seq += 1;
        self.events.push(Event {
            run: self.run.clone(),
            seq: self.seq,
            // A millisecond apart: replay's clock and jumps by time work.
            at_ms: 1_800_000_000_000 + self.seq,
            kind,
        });
    }

    fn step(&mut self, task: &TaskId, from: TaskState, to: TaskState) {
        self.push(EventKind::TaskStateChanged(TaskStateChanged {
            task: task.clone(),
            from,
            to,
            reason: None,
        }));
    }
}

/// The events of a finished run of `tasks` tasks, about `total` of them.
pub fn run_events(run: &RunId, tasks: usize, total: usize) -> Vec<Event> {
    let tasks = tasks.max(1);
    let mut s = Synthetic {
        run: run.clone(),
        seq: 0,
        events: Vec::with_capacity(total + 16),
    };
    s.push(EventKind::RunStarted(RunStarted {
        requirement: "synthetic benchmark run".into(),
        repo: "/bench".into(),
        mainline: "main".into(),
        base_commit: "0".repeat(40),
        settings: RunSettings {
            max_tasks: tasks,
            ..RunSettings::default()
        },
    }));
    let ids: Vec<TaskId> = (0..tasks)
        .map(|i| TaskId::new(format!("t{i:03}")))
        .collect();
    s.push(EventKind::BlueprintAccepted(BlueprintAccepted {
        blueprint: Blueprint {
            title: "synthetic".into(),
            tasks: ids
                .iter()
                .map(|id| TaskSpec {
                    id: id.clone(),
                    title: format!("task {id}"),
                    description: "Generated for the benchmark.".into(),
                    acceptance: vec!["it works".into()],
                    paths: vec![format!("src/{id}/**")],
                    depends_on: Vec::new(),
                })
                .collect(),
        },
    }));
    s.push(EventKind::RunPhaseChanged(RunPhaseChanged {
        to: RunPhase::Building,
        reason: None,
    }));
    let per_task = total.saturating_sub(s.events.len() + 2) / tasks;
    let turns = per_task.saturating_sub(TASK_EVENTS) / TURN_EVENTS;
    for (i, task) in ids.iter().enumerate() {
        task_events(&mut s, task, turns, i);
    }
    s.push(EventKind::RunFinished(RunFinished {
        merged: tasks,
        failed: 0,
        mainline_commit: "f".repeat(40),
    }));
    s.push(EventKind::RunPhaseChanged(RunPhaseChanged {
        to: RunPhase::Finished,
        reason: None,
    }));
    s.events
}

fn task_events(s: &mut Synthetic, task: &TaskId, turns: usize, index: usize) {
    use TaskState::*;
    let agent = AgentId::for_task(AgentRole::Coder, task, 1);
    s.step(task, Pending, Ready);
    s.step(task, Ready, Running);
    s.push(EventKind::WorktreeCreated(WorktreeCreated {
        task: task.clone(),
        branch: format!("memofab/bench/{task}"),
        path: format!("/bench/.memofab/worktrees/{task}"),
        base_commit: "0".repeat(40),
    }));
    s.push(EventKind::AgentStarted(AgentStarted {
        agent: agent.clone(),
        role: AgentRole::Coder,
        task: Some(task.clone()),
        model: "bench".into(),
    }));
    for turn in 0..turns {
        s.push(EventKind::AgentMessage(AgentMessage {
            agent: agent.clone(),
            from: MessageAuthor::Assistant,
            text: format!(
                "Turn {turn}: reading the module and the tests around it, then making the change the task asks for."
            ),
        }));
        let call_id = format!("call_{turn}_0");
        let path = format!("src/{task}/file_{}.rs", turn % 7);
        s.push(EventKind::ToolCalled(ToolCalled {
            agent: agent.clone(),
            call_id: call_id.clone(),
            tool: "read_file".into(),
            arguments: serde_json::json!({ "path": path }),
        }));
        s.push(EventKind::ToolResult(ToolResult {
            agent: agent.clone(),
            call_id,
            ok: true,
            output: format!(
                "//! {path}\nfn handler(input: &str) -> usize {{\n    input.lines().filter(|l| !l.is_empty()).count()\n}}\n"
            ),
        }));
        s.push(EventKind::TokensUsed(TokensUsed {
            cost_usd: None,
            agent: agent.clone(),
            task: Some(task.clone()),
            model: "bench".into(),
            usage: TokenUsage {
                input: 1_000 + turn as u64,
                output: 40,
                cached: 500,
                cache_write: 0,
            },
        }));
    }
    s.push(EventKind::AgentFinished(AgentFinished {
        agent,
        ok: true,
        summary: "Done.".into(),
    }));
    s.push(EventKind::ChangeCommitted(ChangeCommitted {
        task: task.clone(),
        commit: format!("{index:040x}"),
        files: vec![format!("src/{task}/mod.rs")],
        diff: format!(
            "diff --git a/src/{task}/mod.rs b/src/{task}/mod.rs\n--- a/src/{task}/mod.rs\n+++ b/src/{task}/mod.rs\n@@ -1 +1,2 @@\n fn a() {{}}\n+fn b() {{}}\n"
        ),
    }));
    s.step(task, Running, Reviewing);
    s.push(EventKind::ReviewVerdict(ReviewVerdict {
        task: task.clone(),
        approved: true,
        feedback: "Looks good.".into(),
    }));
    s.step(task, Reviewing, Testing);
    s.push(EventKind::TestRun(TestRun {
        task: task.clone(),
        command: "true".into(),
        exit_code: Some(0),
        passed: true,
        duration_ms: 5,
        output: String::new(),
    }));
    s.step(task, Testing, Merging);
    s.push(EventKind::MergeResult(MergeResult {
        task: task.clone(),
        result: MergeOutcome::MergeCommit {
            commit: format!("{:040x}", index + 1_000_000),
        },
    }));
    s.step(task, Merging, Merged);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunState;

    #[test]
    fn a_synthetic_run_folds_to_every_task_merged() {
        let events = run_events(&RunId::from("r"), 8, 2_000);
        assert!((1_800..=2_000).contains(&events.len()), "{}", events.len());
        let state = RunState::fold(&events).unwrap().unwrap();
        assert_eq!(state.count(TaskState::Merged), 8);
        assert_eq!(state.phase, RunPhase::Finished);
    }
}
