//! The daemon's queue of requirements: what waits to run in which
//! repository, in what order, and where each came from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::RunId;

/// A queued requirement's number, unique across the daemon's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequirementId(pub i64);

impl fmt::Display for RequirementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

impl FromStr for RequirementId {
    type Err = String;

    /// `q12` or `12`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.trim().strip_prefix('q').unwrap_or(s.trim());
        digits
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not a queue entry (they look like q12)"))
    }
}

/// Where a queued requirement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Waiting for its repository's turn.
    Queued,
    /// Its run is under way (or was, when the daemon stopped: it resumes).
    Running,
    /// Its run finished with every task merged.
    Done,
    /// Its run ended with work not merged, or could not start.
    Failed,
    /// Taken off the queue by a human before it ran.
    Dropped,
}

impl ItemState {
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Done,
        Self::Failed,
        Self::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Queued or running: the entry still has work ahead.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who put a requirement on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `memofab submit`, or the cockpit attached to the daemon.
    Human,
    /// An error report through the incident intake.
    Incident,
    /// Another agent or factory, over MCP.
    Mcp,
}

impl Source {
    pub const ALL: [Self; 3] = [Self::Human, Self::Incident, Self::Mcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Incident => "incident",
            Self::Mcp => "mcp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == s)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository the daemon works in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredRepo {
    /// Short name, unique: the incident intake's URL and the queue's listing
    /// use it.
    pub name: String,
    /// Canonical path of the work tree.
    pub path: std::path::PathBuf,
    pub added_ms: u64,
}

/// One entry of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRequirement {
    pub id: RequirementId,
    /// The repository's name.
    pub repo: String,
    pub requirement: String,
    /// Higher runs first; equal priorities run in the order submitted.
    pub priority: i64,
    pub source: Source,
    /// For incidents: the group the report belongs to.
    pub fingerprint: Option<String>,
    pub state: ItemState,
    /// The run working on it, once it started.
    pub run: Option<RunId>,
    pub submitted_ms: u64,
    pub finished_ms: Option<u64>,
    /// Why the entry failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl QueuedRequirement {
    /// The requirement's first line, for one-line listings; a long one is
    /// cut (with `…`) so that a requirement written on one line is not
    /// echoed whole.
    pub fn title(&self) -> String {
        let line = self.requirement.lines().next().unwrap_or("").trim();
        match line.char_indices().nth(TITLE_CHARS) {
            Some((end, _)) => format!("{}…", line[..end].trim_end()),
            None => line.to_owned(),
        }
    }
}

/// The longest title, in characters.
const TITLE_CHARS: usize = 72;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(requirement: &str) -> QueuedRequirement {
        QueuedRequirement {
            id: RequirementId(1),
            repo: "shop".into(),
            requirement: requirement.into(),
            priority: 0,
            source: Source::Human,
            fingerprint: None,
            state: ItemState::Queued,
            run: None,
            submitted_ms: 0,
            finished_ms: None,
            note: None,
        }
    }

    #[test]
    fn a_title_is_the_first_line_and_never_the_whole_of_a_long_one() {
        assert_eq!(
            entry("  Add CSV export \nwith headers").title(),
            "Add CSV export"
        );
        let long = "Add x. ".repeat(50_000);
        let title = entry(&long).title();
        assert!(title.chars().count() <= TITLE_CHARS + 1, "{title}");
        assert!(title.starts_with("Add x. Add x.") && title.ends_with('…'));
        let exact = "é".repeat(TITLE_CHARS);
        assert_eq!(entry(&exact).title(), exact);
    }

    #[test]
    fn ids_read_with_or_without_their_prefix() {
        assert_eq!("q12".parse::<RequirementId>(), Ok(RequirementId(12)));
        assert_eq!("12".parse::<RequirementId>(), Ok(RequirementId(12)));
        assert!("q".parse::<RequirementId>().is_err());
        assert!("0".parse::<RequirementId>().is_err());
        assert_eq!(RequirementId(7).to_string(), "q7");
    }

    #[test]
    fn states_and_sources_round_trip_through_their_names() {
        for state in ItemState::ALL {
            assert_eq!(ItemState::parse(state.as_str()), Some(state));
        }
        for source in Source::ALL {
            assert_eq!(Source::parse(source.as_str()), Some(source));
        }
    }
}
