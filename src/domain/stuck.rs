//! The shepherd's vocabulary: the ways work gets stuck ([`Pattern`]) and the
//! steps taken about it ([`Action`]). Small and below the events that record
//! them, so `event` needs nothing of the shepherd's logic.

use serde::{Deserialize, Serialize};

use super::task::TaskState;

/// A way of being stuck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pattern {
    /// The same error from the same tool, again and again.
    RepeatedFailure {
        tool: String,
        error: String,
        times: u32,
    },
    /// The same call with the same arguments, while nothing changed.
    RepeatedCall {
        tool: String,
        arguments: String,
        times: u32,
    },
    /// An agent that can write files wrote none for this many turns.
    NoChange { turns: u32 },
    /// An agent's replies held no tool call this many times in a row.
    NoCall { replies: u32 },
    /// The reviewer sent back the same feedback this many rounds in a row.
    ReworkEcho { rounds: u32 },
    /// The task stayed in one state this long.
    SlowStep { state: TaskState, minutes: u64 },
}

impl Pattern {
    /// Short machine name, for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Pattern::RepeatedFailure { .. } => "repeated_failure",
            Pattern::RepeatedCall { .. } => "repeated_call",
            Pattern::NoChange { .. } => "no_change",
            Pattern::NoCall { .. } => "no_call",
            Pattern::ReworkEcho { .. } => "rework_echo",
            Pattern::SlowStep { .. } => "slow_step",
        }
    }

    /// One line for the log, the inbox and the agent.
    pub fn describe(&self) -> String {
        match self {
            Pattern::RepeatedFailure { tool, error, times } => {
                format!("`{tool}` failed {times} times with the same error: {error}")
            }
            // A command may change files each time it runs (`echo … >>`):
            // only a read is known to have changed nothing.
            Pattern::RepeatedCall {
                tool,
                arguments,
                times,
            } if tool == super::tool_names::RUN => {
                format!("`{tool}` ran the same command {times} times ({arguments})")
            }
            Pattern::RepeatedCall {
                tool,
                arguments,
                times,
            } => format!(
                "`{tool}` was called {times} times with the same arguments ({arguments}) \
                 while no file changed"
            ),
            Pattern::NoChange { turns } => format!("{turns} turns without changing any file"),
            Pattern::NoCall { replies } => {
                format!("{replies} replies in a row without a tool call")
            }
            Pattern::ReworkEcho { rounds } => {
                format!("the reviewer asked for the same changes {rounds} rounds in a row")
            }
            Pattern::SlowStep { state, minutes } => {
                format!("{minutes} minutes {state} without moving on")
            }
        }
    }
}

/// The steps of the ladder, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A message to the agent naming the pattern.
    Nudge,
    /// The agent is replaced by a new one (a new attempt) told what failed.
    FreshAgent,
    /// The agent stops and its caller carries on without its result: for
    /// agents that cannot be replaced (planners, testers).
    Stop,
    /// The agent stops; the task waits in the inbox for a human.
    Escalate,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Nudge => "nudged the agent",
            Action::FreshAgent => "started a fresh agent",
            Action::Stop => "stopped the agent",
            Action::Escalate => "handed it to a human",
        }
    }
}
