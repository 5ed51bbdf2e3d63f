//! Identifiers. Newtypes keep run, task and agent ids from being mixed up and
//! serialize as plain strings so the store and JSON output stay readable.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// One factory run (a requirement taken from plan to merge).
    RunId
);
string_id!(
    /// A task of a blueprint; unique within its run.
    TaskId
);
string_id!(
    /// One agent conversation, e.g. `coder:t3#2` (role, task, attempt).
    AgentId
);

/// Overseer reports are stored like runs, under ids with this prefix.
const OVERSEER_PREFIX: &str = "overseer-";

/// What a stored run is: the factory at work, or an overseer's report on
/// past runs (listed, resumed and replayed apart from runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Factory,
    OverseerReport,
}

impl RunId {
    /// A fresh id for an overseer report.
    pub fn overseer_report() -> Self {
        let run = Self::generate();
        Self(format!(
            "{OVERSEER_PREFIX}{}",
            run.as_str().trim_start_matches('r')
        ))
    }

    pub fn kind(&self) -> RunKind {
        if self.as_str().starts_with(OVERSEER_PREFIX) {
            RunKind::OverseerReport
        } else {
            RunKind::Factory
        }
    }

    /// A fresh, sortable run id: `r` + UTC timestamp + a few bits of entropy so
    /// two runs started in the same second do not collide.
    pub fn generate() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        let (y, mo, d, h, mi, s) = civil_from_unix(secs);
        let salt = (now.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
        Self(format!(
            "r{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{salt:04x}"
        ))
    }
}

/// Converts unix seconds to a UTC civil date and time (Howard Hinnant's algorithm).
pub fn civil_from_unix(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Unix seconds of a UTC civil date and time (inverse of [`civil_from_unix`]).
pub fn unix_from_civil(y: i64, m: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<u64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    u64::try_from(secs).ok()
}

/// The branch a task of run `run` is built on.
pub fn branch_name(run: &str, task: &TaskId) -> String {
    format!("memofab/{run}/{task}")
}

/// A commit id cut to its first ten characters, for people to read.
pub fn short_commit(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

impl AgentId {
    pub fn for_task(role: AgentRole, task: &TaskId, attempt: u32) -> Self {
        Self(format!("{}:{task}#{attempt}", role.as_str()))
    }

    pub fn for_run(role: AgentRole, round: u32) -> Self {
        Self(format!("{}#{round}", role.as_str()))
    }
}

/// The jobs an agent can have. Each role has its own system prompt in `prompts/`
/// and may be routed to its own model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentRole {
    Planner,
    PlanReviewer,
    Coder,
    Reviewer,
    Resolver,
    Overseer,
    /// Writes a task's acceptance tests before its coder starts, from the
    /// task alone: it never sees the coder's change.
    Tester,
}

impl AgentRole {
    pub const ALL: [AgentRole; 7] = [
        AgentRole::Planner,
        AgentRole::PlanReviewer,
        AgentRole::Coder,
        AgentRole::Reviewer,
        AgentRole::Resolver,
        AgentRole::Overseer,
        AgentRole::Tester,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentRole::Planner => "planner",
            AgentRole::PlanReviewer => "plan_reviewer",
            AgentRole::Coder => "coder",
            AgentRole::Reviewer => "reviewer",
            AgentRole::Resolver => "resolver",
            AgentRole::Overseer => "overseer",
            AgentRole::Tester => "tester",
        }
    }
}

impl fmt::Display for AgentRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_date_matches_known_instants() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        // 2026-11-24T12:51:34Z
        assert_eq!(civil_from_unix(1_795_524_694), (2026, 11, 24, 12, 51, 34));
        // Leap day.
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn civil_round_trips() {
        for secs in [0, 951_782_400, 1_795_524_694, 4_102_444_800] {
            let (y, mo, d, h, mi, s) = civil_from_unix(secs);
            assert_eq!(unix_from_civil(y, mo, d, h, mi, s), Some(secs));
        }
        assert_eq!(unix_from_civil(2026, 13, 1, 0, 0, 0), None);
    }

    #[test]
    fn agent_ids_name_role_task_and_attempt() {
        let id = AgentId::for_task(AgentRole::Coder, &TaskId::from("t3"), 2);
        assert_eq!(id.as_str(), "coder:t3#2");
        assert_eq!(
            AgentId::for_run(AgentRole::Planner, 1).as_str(),
            "planner#1"
        );
    }

    #[test]
    fn generated_run_ids_are_prefixed_and_sortable() {
        let id = RunId::generate();
        assert!(id.as_str().starts_with('r'));
        assert_eq!(id.kind(), RunKind::Factory);
        assert_eq!(RunId::overseer_report().kind(), RunKind::OverseerReport);
        assert_eq!(id.as_str().len(), "r20261124-125134-abcd".len());
    }
}
