//! Effects: everything that touches the world outside the process — git,
//! the SQLite event store, child processes and the agents' file sandbox.

pub mod beneath;
pub mod bounded_lines;
pub mod clock;
pub mod git;
pub mod isolation;
pub mod mcp_client;
pub mod process;
pub mod queue;
pub mod repo_guard;
pub mod sandbox;
pub mod store;
