//! The names of the tools memofab offers agents, as models call them and
//! the record stores them. The engine's tools take their names from here,
//! and the domain reads tool calls back by them (which call wrote a file,
//! which ran a command), so each name is written once.

pub const READ_FILE: &str = "read_file";
pub const LIST_FILES: &str = "list_files";
pub const SEARCH: &str = "search";
pub const WRITE_FILE: &str = "write_file";
pub const EDIT_FILE: &str = "edit_file";
pub const RUN: &str = "run";
pub const FINISH: &str = "finish";
pub const ASK_HUMAN: &str = "ask_human";
pub const SUBMIT_BLUEPRINT: &str = "submit_blueprint";
pub const SUBMIT_REVIEW: &str = "submit_review";
pub const SUBMIT_PROPOSALS: &str = "submit_proposals";

/// Whether a successful call of `tool` changes a file in the worktree.
pub fn writes_files(tool: &str) -> bool {
    matches!(tool, WRITE_FILE | EDIT_FILE)
}
