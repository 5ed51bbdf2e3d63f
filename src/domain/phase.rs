//! The phase a run as a whole is in.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    Planning,
    Building,
    Paused,
    Finished,
    Failed,
    Cancelled,
}

impl RunPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Planning => "planning",
            RunPhase::Building => "building",
            RunPhase::Paused => "paused",
            RunPhase::Finished => "finished",
            RunPhase::Failed => "failed",
            RunPhase::Cancelled => "cancelled",
        }
    }

    pub fn is_over(self) -> bool {
        matches!(
            self,
            RunPhase::Finished | RunPhase::Failed | RunPhase::Cancelled
        )
    }
}

impl fmt::Display for RunPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
