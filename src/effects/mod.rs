//! Effects: everything that touches the world outside the process — git,
//! the SQLite event store, child processes, the clock — and the three fences
//! around agents, each guarding something else:
//! - [`file_fence`]: the paths an agent's file tools may read and write
//!   (its worktree, minus `.git`, `.memofab`, policy-denied and locked files);
//! - [`isolation`]: the agent-command fence (Landlock or bubblewrap): what a
//!   command the agent runs may touch; [`isolation::Fence`] is one command's;
//! - [`repo_watch`]: notices changes to the user's repository (refs, hooks,
//!   git config) that memofab did not make, a hole in the other two.

pub mod beneath;
pub mod bounded_lines;
pub mod clock;
pub mod file_fence;
pub mod git;
pub mod isolation;
pub mod mcp_client;
pub mod process;
pub mod queue;
pub mod repo_watch;
pub mod store;
