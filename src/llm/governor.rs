//! The quota governor: one per provider, shared by every agent that talks to
//! it. It owns two things the agents must agree on:
//!
//! - how many requests may be in flight at once, adapted AIMD-style to the
//!   limits the provider reports (halved on a limit, grown by one after a
//!   window of successes, always between 1 and the configured ceiling);
//! - whether the provider is parked after a rate or usage limit, and until
//!   when. While parked nobody is admitted, so one agent's 429 also holds
//!   back the others instead of letting each find the limit on its own.
//!
//! The governor knows nothing about events: the agent records what it is
//! told (see `engine::agent`). Times are tokio instants so tests can pause the
//! clock; the wall-clock `until_ms` is only for display.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::types::LlmError;
pub use crate::config::model_options::{
    DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_PARKED, GovernorConfig,
};

/// The shortest park, even when the provider says `retry-after: 0`: an
/// immediate retry of a refused request is refused again, in a busy loop.
pub const MIN_PARK: Duration = Duration::from_millis(500);

/// The additive-increase / multiplicative-decrease arithmetic, pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aimd {
    limit: u32,
    ceiling: u32,
    /// Successes since the limit last changed.
    successes: u32,
    /// Bumped on every decrease. A request admitted before the last decrease
    /// saw the old limit; its limit reply is the same congestion signal and
    /// must not halve again.
    epoch: u64,
}

impl Aimd {
    /// Starts at the ceiling: most of the time there is no limit to find.
    pub fn new(ceiling: u32) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            limit: ceiling,
            ceiling,
            successes: 0,
            epoch: 0,
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn ceiling(&self) -> u32 {
        self.ceiling
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// One request succeeded. After a full window (as many successes as the
    /// current limit) the limit grows by one. Returns whether it changed.
    pub fn on_success(&mut self) -> bool {
        if self.limit >= self.ceiling {
            self.successes = 0;
            return false;
        }
        self.successes += 1;
        if self.successes >= self.limit {
            self.limit += 1;
            self.successes = 0;
            return true;
        }
        false
    }

    /// A request admitted at `epoch` hit a limit: halve, at least 1.
    /// Returns whether the limit changed.
    pub fn on_limit(&mut self, epoch: u64) -> bool {
        if epoch != self.epoch {
            return false;
        }
        self.epoch += 1;
        self.successes = 0;
        let halved = (self.limit / 2).max(1);
        let changed = halved != self.limit;
        self.limit = halved;
        changed
    }
}

/// Which kind of limit the provider reported. Both park; they differ in the
/// reason shown and in how long to wait when the provider does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Too many requests or tokens per minute: passes in seconds.
    RateLimit,
    /// Quota, credits or a plan's usage window: passes in minutes or hours,
    /// or when a human tops up.
    UsageLimit,
    /// The server failed inside a streamed reply (Anthropic's overload,
    /// llama.cpp's 500s): a short back-off, as for a 5xx. Callers bound how
    /// many of these in a row they sit out.
    ServerError,
}

/// A limit reply, as the governor needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub kind: LimitKind,
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl Limit {
    /// The limit `error` reports, if it is one.
    pub fn of(error: &LlmError) -> Option<Self> {
        match error {
            LlmError::RateLimited {
                message,
                retry_after,
            } => Some(Self {
                kind: if is_usage_limit(message) {
                    LimitKind::UsageLimit
                } else {
                    LimitKind::RateLimit
                },
                retry_after: *retry_after,
                message: message.clone(),
            }),
            LlmError::StreamServer { status, message } => Some(Self {
                kind: LimitKind::ServerError,
                retry_after: None,
                message: format!("{status}: {message}"),
            }),
            _ => None,
        }
    }

    /// The wait when the provider names none: grows with each limit in a
    /// row (`streak` from 0), so a provider that keeps refusing is asked
    /// less and less often.
    pub fn default_wait(&self, streak: u32) -> Duration {
        let (base, cap) = match self.kind {
            LimitKind::RateLimit => (Duration::from_secs(2), Duration::from_secs(120)),
            LimitKind::UsageLimit => (Duration::from_secs(60), Duration::from_secs(1800)),
            LimitKind::ServerError => (Duration::from_secs(1), Duration::from_secs(30)),
        };
        base.saturating_mul(1u32 << streak.min(16)).min(cap)
    }
}

/// Whether a limit message is about quota or credit rather than request
/// rate. Providers say so only in prose or an error code folded into it:
/// OpenAI's `insufficient_quota`, Anthropic's credit balance, plans' "usage
/// limit".
pub fn is_usage_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["quota", "usage limit", "credit balance", "billing"]
        .iter()
        .any(|needle| m.contains(needle))
}

/// The provider is parked until `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Park {
    pub until: Instant,
    /// The same moment in unix milliseconds, for events and display.
    pub until_ms: u64,
    /// e.g. `rate limited by openai: Rate limit reached for gpt-4o`.
    pub reason: String,
}

/// What a limit did to the governor.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub park: Park,
    /// The new concurrency limit, if it changed.
    pub new_limit: Option<u32>,
}

/// Whether a request may go now.
pub enum Admission {
    Go(Permit),
    /// The provider is parked: wait this out, then ask again.
    Parked(Park),
}

struct State {
    aimd: Aimd,
    in_flight: u32,
    parked: Option<Park>,
    /// Limits in a row without a success, for the growing default wait.
    streak: u32,
}

pub struct Governor {
    name: String,
    config: GovernorConfig,
    state: Mutex<State>,
    /// Woken when a permit is returned, so queued requests re-check.
    released: Notify,
    /// Woken when a human lifts the park, so parked agents ask at once.
    lifted: Notify,
}

impl std::fmt::Debug for Governor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governor")
            .field("name", &self.name)
            .field("limit", &self.limit())
            .finish()
    }
}

impl Governor {
    /// A governor for the provider called `name` (its config name).
    pub fn new(name: &str, config: GovernorConfig) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            config,
            state: Mutex::new(State {
                aimd: Aimd::new(config.max_concurrency),
                in_flight: 0,
                parked: None,
                streak: 0,
            }),
            released: Notify::new(),
            lifted: Notify::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> GovernorConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below is a few assignments that cannot panic midway.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current concurrency limit.
    pub fn limit(&self) -> u32 {
        self.lock().aimd.limit()
    }

    pub fn ceiling(&self) -> u32 {
        self.lock().aimd.ceiling()
    }

    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// The park in force now, if any.
    pub fn parked(&self) -> Option<Park> {
        let state = self.lock();
        state
            .parked
            .as_ref()
            .filter(|p| p.until > Instant::now())
            .cloned()
    }

    /// Admits a request when a slot is free, or says the provider is parked.
    /// Waiting for a slot is queueing, not parking: it is not reported.
    pub async fn admit(self: &Arc<Self>) -> Admission {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is not lost.
            released.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(park) = state.parked.as_ref().filter(|p| p.until > Instant::now()) {
                    return Admission::Parked(park.clone());
                }
                if state.in_flight < state.aimd.limit() {
                    state.in_flight += 1;
                    return Admission::Go(Permit {
                        governor: self.clone(),
                        epoch: state.aimd.epoch(),
                    });
                }
            }
            released.await;
        }
    }

    /// Waits for a permit, sitting out any park silently.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            match self.admit().await {
                Admission::Go(permit) => return permit,
                Admission::Parked(park) => tokio::time::sleep_until(park.until).await,
            }
        }
    }

    /// Ends the park now: a human chose to try the provider again before
    /// the wait it asked for is over. Returns whether there was one.
    pub fn lift_park(&self) -> bool {
        let lifted = self.lock().parked.take().is_some();
        self.lifted.notify_waiters();
        self.released.notify_waiters();
        lifted
    }

    /// Sleeps until `until`, or until a human lifts the park (also one
    /// lifted just before: the park is then gone).
    pub async fn sit_until(&self, until: Instant) {
        let lifted = self.lifted.notified();
        tokio::pin!(lifted);
        // Registered before the check, so a lift in between is not lost.
        lifted.as_mut().enable();
        if self.lock().parked.is_none() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = lifted => {}
        }
    }

    fn release(&self) {
        {
            let mut state = self.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.released.notify_waiters();
    }

    fn succeeded(&self) -> Option<u32> {
        let mut state = self.lock();
        state.streak = 0;
        state.aimd.on_success().then(|| state.aimd.limit())
    }

    fn limited(&self, epoch: u64, limit: &Limit) -> Limited {
        let mut state = self.lock();
        let wait = limit
            .retry_after
            .unwrap_or_else(|| limit.default_wait(state.streak))
            .max(MIN_PARK);
        state.streak = state.streak.saturating_add(1);
        let new_limit = state.aimd.on_limit(epoch).then(|| state.aimd.limit());
        let now = Instant::now();
        let until = now + wait;
        let reason = match limit.kind {
            LimitKind::RateLimit => format!("rate limited by {}", self.name),
            LimitKind::UsageLimit => format!("usage limit reached on {}", self.name),
            LimitKind::ServerError => format!("{} failed mid-reply", self.name),
        };
        let park = Park {
            until,
            until_ms: unix_ms() + wait.as_millis() as u64,
            reason: format!("{reason}: {}", short(&limit.message)),
        };
        // Never shorten a park another agent already set.
        let park = match state.parked.take() {
            Some(existing) if existing.until > until => existing,
            _ => park,
        };
        state.parked = Some(park.clone());
        Limited { park, new_limit }
    }
}

/// A slot for one request. Dropping it returns the slot; say how the
/// request went with [`Permit::succeeded`] or [`Permit::limited`] first.
pub struct Permit {
    governor: Arc<Governor>,
    epoch: u64,
}

impl Permit {
    /// The request succeeded; returns the new limit if it grew.
    pub fn succeeded(self) -> Option<u32> {
        self.governor.succeeded()
    }

    /// The request hit a limit: the provider is parked and the limit cut.
    pub fn limited(self, limit: &Limit) -> Limited {
        self.governor.limited(self.epoch, limit)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.governor.release();
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A limit message cut to fit a status line.
fn short(message: &str) -> String {
    const MAX: usize = 160;
    let line = message.lines().next().unwrap_or("").trim();
    if line.chars().count() <= MAX {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests;
