//! What the run state knows of provider limits: which agents are parked
//! waiting for a limit to pass, and each provider's adaptive concurrency.
//! Folded from `AgentParked`, `AgentUnparked`, `AgentFinished` and
//! `ProviderLimitChanged` events by `RunState::apply`.

use serde::{Deserialize, Serialize};

use super::ids::TaskId;

/// An agent waiting out its provider's rate or usage limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedAgent {
    pub task: Option<TaskId>,
    /// The provider's config name.
    pub provider: String,
    /// Unix ms when the agent asks again.
    pub until_ms: u64,
    /// e.g. `rate limited by openai: Rate limit reached for gpt-4o`.
    pub reason: String,
}

impl ParkedAgent {
    /// The reason without the provider's message: `rate limited by openai`.
    pub fn short_reason(&self) -> &str {
        self.reason
            .split_once(": ")
            .map_or(self.reason.as_str(), |(head, _)| head)
    }

    /// Seconds until the agent resumes, from `now_ms` (0 once due).
    pub fn resumes_in_secs(&self, now_ms: u64) -> u64 {
        self.until_ms.saturating_sub(now_ms).div_ceil(1000)
    }
}

/// A provider's adaptive concurrency limit, as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLimit {
    pub limit: u32,
    pub ceiling: u32,
}
