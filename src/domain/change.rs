//! A change as the gate sees it: each file's diff against mainline, and the
//! facts read at mainline beside it. The gate's rules (`change_rules`) and
//! its verdict (`risk`) both judge these.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::path_history::PathHistory;

/// One file of a change, as the diff against mainline shows it: read from
/// the blobs of the task's branch, never from its worktree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    /// Its path before the change, when the change renamed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    pub added: usize,
    pub removed: usize,
    /// The file is gone after the change (a rename is not a deletion).
    pub deleted: bool,
    /// The size of its blob after the change (0 when deleted).
    #[serde(default)]
    pub bytes: u64,
    /// Its blob is not text (not UTF-8, or holds a NUL byte). Only looked
    /// at for blobs over the policy's binary size limit; `false` below it.
    #[serde(default)]
    pub binary: bool,
}

/// What the gate judges a change by besides its diff, all read at mainline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateFacts {
    /// The incidents of the recent runs (empty without a history rule).
    pub history: PathHistory,
    /// The files the test command runs (`domain::test_runner`).
    pub runner_files: BTreeSet<String>,
    /// The directory `core.hooksPath` names inside the repository.
    pub hooks_dir: Option<String>,
}
