//! Why the gate holds a change: one typed reason per rule (and, for the
//! rules about paths, per path). The same values are stored in the
//! `gate_held` event, folded into the task's record, and shown wherever a
//! gate is (the cockpit's gate view, the inbox, `memofab queue`); their
//! wording lives only in the `Display` impl below.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::path_incidents::PathIncidents;

/// Files that govern more than the code: what agents are told, what CI
/// runs, what git does on a developer's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GovernanceClass {
    /// `AGENTS.md`, `CLAUDE.md` and the like: fed to the next run's agents.
    Instructions,
    /// CI definitions: run with the repository's secrets.
    Ci,
    /// `.gitattributes`, `.gitmodules`, `CODEOWNERS`: how git and the
    /// forge treat the files.
    Git,
    /// Hooks: run on a developer's machine at their next commit.
    Hooks,
}

impl GovernanceClass {
    fn what(self) -> &'static str {
        match self {
            GovernanceClass::Instructions => "the agents' project instructions",
            GovernanceClass::Ci => "a CI definition",
            GovernanceClass::Git => "git's attributes, submodules or code owners",
            GovernanceClass::Hooks => "a hook",
        }
    }
}

/// One reason to hold a change at the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum GateReason {
    /// A `[[rule]]` of the policy matched (`approve`, or `deny`).
    PathRule { path: String, reason: String },
    /// `[blast_radius] max_files`.
    TooManyFiles { files: usize, max: usize },
    /// `[blast_radius] max_lines`.
    TooManyLines { lines: usize, max: usize },
    /// `[history]`: the path had too many incidents in recent runs.
    TroubledPath {
        path: String,
        incidents: PathIncidents,
        runs: usize,
        max: u32,
    },
    /// More troubled paths than are named one by one.
    MoreTroubledPaths { count: usize },
    /// `[tests]`: a test file is gone.
    TestDeleted { path: String },
    /// `[tests]`: a test file was renamed to a path that is not a test.
    TestMovedOut { from: String, to: String },
    /// `[tests]`: a test file lost more lines than it gained.
    TestShrunk {
        path: String,
        added: usize,
        removed: usize,
    },
    /// `[tests]`: a file the test command runs (its runner script, a
    /// script that names, the Makefile or justfile it calls) changed.
    TestRunnerChanged { path: String },
    /// `[governance]`: a governance file changed.
    Governance {
        path: String,
        class: GovernanceClass,
    },
    /// `[binaries]`: a large file that is not text.
    LargeBinary { path: String, bytes: u64, max: u64 },
    /// `[mainline] remote`: the remote refused the landing's push (no
    /// rights, a hook declined, unreachable, or it kept moving), in the
    /// server's words. Approving pushes again.
    RemoteRefused { remote: String, reason: String },
}

impl GateReason {
    /// The path the reason is about, if it is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            GateReason::PathRule { path, .. }
            | GateReason::TroubledPath { path, .. }
            | GateReason::TestDeleted { path }
            | GateReason::TestShrunk { path, .. }
            | GateReason::TestRunnerChanged { path }
            | GateReason::Governance { path, .. }
            | GateReason::LargeBinary { path, .. } => Some(path),
            GateReason::TestMovedOut { from, .. } => Some(from),
            GateReason::TooManyFiles { .. }
            | GateReason::TooManyLines { .. }
            | GateReason::MoreTroubledPaths { .. }
            | GateReason::RemoteRefused { .. } => None,
        }
    }

    /// Reasons `--auto-approve` does not approve: a change to what governs
    /// later runs, CI or developers' machines waits for a human unless the
    /// policy says `[governance] auto_approve = true`.
    pub fn is_governance(&self) -> bool {
        matches!(self, GateReason::Governance { .. })
    }

    /// A landing the remote refused: only a human approves another push
    /// (a refusal approved by itself would push, and be refused, forever).
    pub fn is_remote_refusal(&self) -> bool {
        matches!(self, GateReason::RemoteRefused { .. })
    }
}

impl fmt::Display for GateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateReason::PathRule { path, reason } => write!(f, "{path}: {reason}"),
            GateReason::TooManyFiles { files, max } => {
                write!(f, "touches {files} files (max {max})")
            }
            GateReason::TooManyLines { lines, max } => {
                write!(f, "changes {lines} lines (max {max})")
            }
            GateReason::TroubledPath {
                path,
                incidents,
                runs,
                max,
            } => {
                let total = incidents.total();
                let last = if *runs == 1 {
                    "run".to_owned()
                } else {
                    format!("{runs} runs")
                };
                write!(
                    f,
                    "{path} had {total} incident{} in the last {last} ({incidents}; max {max})",
                    plural(total as usize)
                )
            }
            GateReason::MoreTroubledPaths { count } => write!(
                f,
                "{count} more path{} over the incident limit",
                plural(*count)
            ),
            GateReason::TestDeleted { path } => write!(f, "deletes {path}"),
            GateReason::TestMovedOut { from, to } => {
                write!(f, "moves the test {from} out of the tests (to {to})")
            }
            GateReason::TestShrunk {
                path,
                added,
                removed,
            } => write!(
                f,
                "shrinks the test {path} ({removed} line{} removed, {added} added)",
                plural(*removed)
            ),
            GateReason::TestRunnerChanged { path } => {
                write!(f, "changes {path}, which the test command runs")
            }
            GateReason::Governance { path, class } => {
                write!(f, "changes {path}, {}", class.what())
            }
            GateReason::LargeBinary { path, bytes, max } => write!(
                f,
                "adds {path}, a binary of {} (max {})",
                size(*bytes),
                size(*max)
            ),
            GateReason::RemoteRefused { remote, reason } => {
                write!(f, "{remote} refused the push: {reason}")
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Bytes as people read them: `2.0 MiB`, `640 KiB`, `12 bytes`.
fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= KIB {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Every reason in one line, as a transition's reason or a log line.
pub fn joined(reasons: &[GateReason]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_json_and_name_their_path() {
        let reasons = vec![
            GateReason::TestMovedOut {
                from: "tests/a.rs".into(),
                to: "src/a.rs".into(),
            },
            GateReason::Governance {
                path: "AGENTS.md".into(),
                class: GovernanceClass::Instructions,
            },
            GateReason::LargeBinary {
                path: "blob.bin".into(),
                bytes: 2 * 1024 * 1024,
                max: 1024 * 1024,
            },
        ];
        let json = serde_json::to_string(&reasons).unwrap();
        assert!(json.contains(r#""rule":"governance""#), "{json}");
        assert_eq!(
            serde_json::from_str::<Vec<GateReason>>(&json).unwrap(),
            reasons
        );
        assert_eq!(reasons[0].path(), Some("tests/a.rs"));
        assert_eq!(
            reasons[2].to_string(),
            "adds blob.bin, a binary of 2.0 MiB (max 1.0 MiB)"
        );
        assert!(reasons[1].is_governance() && !reasons[0].is_governance());
    }
}
