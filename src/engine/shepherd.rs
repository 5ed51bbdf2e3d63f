//! The shepherd at work: a hook in each agent's loop feeds a [`Watch`] and
//! acts on what it reports, the orchestrator's tick times the tasks
//! ([`TimeWatch`]), and the review step asks about rework echoes. What
//! counts as stuck, and which step of the ladder comes next, is decided in
//! `domain::shepherd`; this module records the interventions and carries
//! them out. It knows the recorder, not the agent loop or the run's context
//! that call it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::error::EngineResult;
use super::recorder::Recorder;
use crate::domain::event::{OverseerReport, ProposalDecision, ShepherdIntervened};
use crate::domain::metrics::Proposal;
use crate::domain::shepherd::{
    Action, Pattern, StateClock, Thresholds, Watch, advice_for, next_action, nudge_text,
};
use crate::domain::{AgentId, AgentRole, EventKind, RunState, TaskId};

/// What a run's shepherd shares between the orchestrator and the agents:
/// the thresholds, and the tasks found too long in one state, for their
/// agent to act on after its next turn.
#[derive(Debug, Default)]
pub struct Desk {
    pub limits: Thresholds,
    flagged: Mutex<HashMap<TaskId, Pattern>>,
    /// The proposals of the overseer's last report, quoted in nudges.
    advice: Vec<Proposal>,
}

impl Desk {
    pub fn new(limits: Thresholds) -> Arc<Self> {
        Self::with_advice(limits, Vec::new())
    }

    pub fn with_advice(limits: Thresholds, advice: Vec<Proposal>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            flagged: Mutex::new(HashMap::new()),
            advice,
        })
    }

    fn flags(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Pattern>> {
        self.flagged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn flag(&self, task: TaskId, pattern: Pattern) {
        self.flags().insert(task, pattern);
    }

    fn take_flag(&self, task: &TaskId) -> Option<Pattern> {
        self.flags().remove(task)
    }
}

/// Times the tasks for the orchestrator, on tokio's clock.
pub struct TimeWatch {
    epoch: Instant,
    clock: StateClock,
}

impl Default for TimeWatch {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            clock: StateClock::default(),
        }
    }
}

impl TimeWatch {
    /// Flags the tasks that stayed too long in their state; returns them.
    pub fn check(&mut self, state: &RunState, desk: &Desk) -> Vec<TaskId> {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let overdue = self.clock.observe(
            state.tasks().iter().map(|t| (t.id(), t.state)),
            now_ms,
            &desk.limits,
        );
        overdue
            .into_iter()
            .map(|(task, pattern)| {
                desk.flag(task.clone(), pattern);
                task
            })
            .collect()
    }
}

/// What the agent loop does after a turn.
pub(super) enum Verdict {
    Continue,
    /// Send the agent this message.
    Nudge(String),
    /// End the conversation, for this reason.
    Stop(String),
}

/// The shepherd of one agent's conversation.
pub(super) struct Shepherd {
    desk: Arc<Desk>,
    watch: Watch,
    task: Option<TaskId>,
    /// Whether a fresh agent can take over: the agents of a task's coding
    /// attempt, whose number the fresh one takes.
    replaceable: bool,
    /// Interventions on an agent without a task (a task's are in its record).
    steps: u32,
    /// The first pattern reported in the current turn.
    found: Option<Pattern>,
    /// Set when the agent is to be replaced: what the fresh one is told.
    pub restart: Option<String>,
}

impl Shepherd {
    /// The shepherd of an agent of `role` on `task`; `can_write` when it
    /// is offered the tools that write files.
    pub fn new(desk: Arc<Desk>, role: AgentRole, task: Option<TaskId>, can_write: bool) -> Self {
        Self {
            watch: Watch::new(desk.limits.clone(), can_write),
            desk,
            replaceable: task.is_some()
                && matches!(
                    role,
                    AgentRole::Coder | AgentRole::Reviewer | AgentRole::Resolver
                ),
            task,
            steps: 0,
            found: None,
            restart: None,
        }
    }

    /// One tool call and its result.
    pub fn tool_result(&mut self, tool: &str, arguments: &serde_json::Value, ok: bool, out: &str) {
        let found = self.watch.call(tool, arguments, ok, out);
        if self.found.is_none() {
            self.found = found;
        }
    }

    /// A reply that held no tool call.
    pub fn no_call(&mut self) {
        let found = self.watch.no_call();
        if self.found.is_none() {
            self.found = found;
        }
    }

    /// The turn is over: acts on what was found in it, if anything.
    pub async fn turn_over(
        &mut self,
        recorder: &Recorder,
        agent: &AgentId,
    ) -> EngineResult<Verdict> {
        let quiet = self.watch.turn();
        let slow = self.task.as_ref().and_then(|t| {
            let flag = self.desk.take_flag(t)?;
            // A flag for a state the task has left is stale.
            let current = recorder.with_state(|s| s.task(t).map(|r| r.state));
            match &flag {
                Pattern::SlowStep { state, .. } if Some(*state) == current => Some(flag),
                _ => None,
            }
        });
        let Some(pattern) = self.found.take().or(quiet).or(slow) else {
            return Ok(Verdict::Continue);
        };
        let steps = match &self.task {
            Some(task) => recorder.with_state(|s| s.task(task).map_or(0, |r| r.shepherd.steps)),
            None => self.steps,
        };
        let action = next_action(steps, &pattern, self.replaceable);
        self.steps += 1;
        recorder
            .record(EventKind::ShepherdIntervened(ShepherdIntervened {
                task: self.task.clone(),
                agent: Some(agent.clone()),
                pattern: pattern.clone(),
                action,
            }))
            .await?;
        Ok(match action {
            Action::Nudge => {
                let advice = advice_for(&pattern, &self.desk.advice);
                Verdict::Nudge(nudge_text(&pattern, advice.as_deref()))
            }
            Action::FreshAgent => {
                self.restart = Some(self.watch.summary(&pattern));
                Verdict::Stop(format!(
                    "replaced by a fresh agent; the shepherd found it stuck: {}",
                    pattern.describe()
                ))
            }
            Action::Stop | Action::Escalate => Verdict::Stop(format!(
                "stuck: {}; the shepherd {}",
                pattern.describe(),
                action.label()
            )),
        })
    }
}

/// The proposals of the newest overseer report in the store, without those
/// a human rejected. Advice is optional: a store that cannot say gives none.
pub fn overseer_advice(store: &crate::effects::store::Store) -> Vec<Proposal> {
    let newest = store.runs().ok().and_then(|runs| {
        runs.into_iter()
            .find(|r| r.run.kind() == crate::domain::RunKind::OverseerReport)
    });
    let Some(events) = newest.and_then(|r| store.events(&r.run).ok()) else {
        return Vec::new();
    };
    let mut proposals = Vec::new();
    let mut rejected = Vec::new();
    for event in events {
        match event.kind {
            EventKind::OverseerReport(OverseerReport { proposals: p, .. }) => proposals = p,
            EventKind::ProposalDecision(ProposalDecision {
                proposal,
                approved: false,
                ..
            }) => rejected.push(proposal as usize),
            _ => {}
        }
    }
    proposals
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !rejected.contains(&(i + 1)))
        .map(|(_, p)| p)
        .collect()
}

/// The note the shepherd left for the task's next agent, if any.
pub(super) fn note_for(recorder: &Recorder, task: Option<&TaskId>) -> Option<String> {
    let task = task?;
    recorder.with_state(|s| s.task(task).and_then(|r| r.shepherd.note.clone()))
}

/// The task's attempt number now (a fresh agent starts a new one).
pub(super) fn attempt_of(recorder: &Recorder, task: &TaskId) -> Option<u32> {
    recorder.with_state(|s| s.task(task).map(|r| r.attempt))
}

/// After a review rejection: if the reviewer keeps asking for the same
/// changes, nudge the next coder, then hand the task to a human. Returns
/// why the task is stuck when it was handed over.
pub(super) async fn rework_echo(
    recorder: &Recorder,
    limits: &Thresholds,
    task: &TaskId,
) -> EngineResult<Option<String>> {
    if !limits.enabled {
        return Ok(None);
    }
    let found = recorder.with_state(|s| {
        let record = s.task(task)?;
        Some((
            record.shepherd.echo(limits.rework_echo)?,
            record.shepherd.steps,
        ))
    });
    let Some((pattern, steps)) = found else {
        return Ok(None);
    };
    let action = next_action(steps, &pattern, true);
    recorder
        .record(EventKind::ShepherdIntervened(ShepherdIntervened {
            task: Some(task.clone()),
            agent: None,
            pattern: pattern.clone(),
            action,
        }))
        .await?;
    Ok((action == Action::Escalate).then(|| pattern.describe()))
}

/// Whether the shepherd handed `task` to a human.
pub(super) fn is_stuck(recorder: &Recorder, task: &TaskId) -> bool {
    recorder.with_state(|s| s.task(task).is_some_and(|r| r.shepherd.stuck.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::made_up::{self, advance, task};
    use crate::domain::{RunSettings, TaskState};

    fn limits(minutes: u64) -> Thresholds {
        Thresholds {
            max_minutes_in_state: minutes,
            ..Thresholds::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_running_past_the_limit_is_flagged_for_its_agent() {
        let mut state = made_up::started(
            RunSettings::default(),
            vec![task("a", &[], &[]), task("b", &[], &[])],
        )
        .unwrap();
        advance(
            &mut state,
            1,
            &"a".into(),
            &[TaskState::Ready, TaskState::Running],
        )
        .unwrap();
        let desk = Desk::new(limits(30));
        let mut watch = TimeWatch::default();
        assert!(watch.check(&state, &desk).is_empty());
        tokio::time::advance(std::time::Duration::from_secs(29 * 60)).await;
        assert!(watch.check(&state, &desk).is_empty());
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        assert_eq!(watch.check(&state, &desk), vec![TaskId::from("a")]);
        assert!(matches!(
            desk.take_flag(&"a".into()),
            Some(Pattern::SlowStep {
                state: TaskState::Running,
                minutes: 30
            })
        ));
        assert_eq!(desk.take_flag(&"a".into()), None, "taken once");
        // Flagged once per limit, not on every tick.
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        assert!(watch.check(&state, &desk).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_no_flag() {
        let mut state =
            made_up::started(RunSettings::default(), vec![task("a", &[], &[])]).unwrap();
        advance(
            &mut state,
            1,
            &"a".into(),
            &[TaskState::Ready, TaskState::Running],
        )
        .unwrap();
        let desk = Desk::new(limits(0));
        let mut watch = TimeWatch::default();
        watch.check(&state, &desk);
        tokio::time::advance(std::time::Duration::from_secs(24 * 3600)).await;
        assert!(watch.check(&state, &desk).is_empty());
    }
}
