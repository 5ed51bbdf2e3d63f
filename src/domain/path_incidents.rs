//! One path's count of past trouble, as the gate quotes it. Below the events
//! (a held gate's reasons carry it) and the fold that counts it
//! ([`super::path_history`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One path's incidents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathIncidents {
    pub conflicts: u32,
    /// The merge result failed the test command before mainline moved.
    pub failed_verifications: u32,
    /// The post-merge check failed on mainline: the merge queue reverted the
    /// merge (or, when it could not, a human had to).
    pub reverts: u32,
    /// Sent back to the coder by the reviewer, the tests or the gate.
    pub reworks: u32,
}

impl PathIncidents {
    pub fn total(&self) -> u32 {
        self.conflicts + self.failed_verifications + self.reverts + self.reworks
    }
}

impl fmt::Display for PathIncidents {
    /// The non-zero counts, e.g. `2 conflicts, 1 rework`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.conflicts, "conflict", "conflicts"),
            (
                self.failed_verifications,
                "failed verification",
                "failed verifications",
            ),
            (self.reverts, "revert", "reverts"),
            (self.reworks, "rework", "reworks"),
        ];
        let mut first = true;
        for (n, one, many) in parts {
            if n == 0 {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n} {}", if n == 1 { one } else { many })?;
        }
        if first {
            f.write_str("no incidents")?;
        }
        Ok(())
    }
}
