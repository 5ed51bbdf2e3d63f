//! The factory as a Model Context Protocol server (`memofab mcp`), so other
//! agents and factories can discover it and use it: submit requirements,
//! read the queue and the runs, decide gates.
//!
//! - [`server`]: the server itself, what it says about the factory, and the
//!   stdio transport. Only the protocol goes to stdout; logs go to the file.
//! - [`framing`]: a parse error answered for each input line that is not
//!   JSON (the SDK's transport drops them silently).
//! - [`queue_tools`]: the daemon's queue and its repositories.
//! - [`run_tools`]: a repository's runs, their status, their gates.
//!
//! Every tool works on the same stores as the CLI (the daemon's queue, each
//! repository's event store) through the same library functions, so a tool
//! can do nothing `memofab submit`, `runs`, `approve` or `reject` could not.
//! Bad input is a tool error (`isError`) with a message saying what to do,
//! never a protocol failure.

mod error;
mod framing;
pub mod queue_tools;
pub mod run_tools;
pub mod server;

pub use error::{ToolError, ToolResult};
pub use server::{FactoryServer, ServeError, serve_stdio};
