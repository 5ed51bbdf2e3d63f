//! A change the overseer proposes; stored in its report's event.

use serde::{Deserialize, Serialize};

/// A change the overseer proposes to the factory's own definitions. Never
/// applied without a human's approval. Unknown keys are refused, so a
/// misnamed `find` cannot turn a replacement into an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub title: String,
    /// `prompts/<role>.md` or `policy.toml`.
    pub target: String,
    pub rationale: String,
    /// Exact text to replace; empty to append.
    #[serde(default)]
    pub find: String,
    pub replace: String,
}

impl Proposal {
    /// The change as a reviewable patch.
    pub fn patch(&self) -> String {
        let mut out = format!(
            "--- a/{t}\n+++ b/{t}\n@@ {} @@\n",
            if self.find.is_empty() {
                "append"
            } else {
                "replace"
            },
            t = self.target
        );
        for line in self.find.lines() {
            out.push_str(&format!("-{line}\n"));
        }
        for line in self.replace.lines() {
            out.push_str(&format!("+{line}\n"));
        }
        out
    }
}
