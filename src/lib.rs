//! memofab: a terminal cockpit for an autonomous software factory.
//!
//! Layers, from the inside out:
//! - [`domain`]: blueprints, task states, events and the state machine. Pure.
//! - [`llm`]: the provider trait and its implementations.
//! - [`effects`]: git, the event store, processes and the tool sandbox.
//! - [`engine`]: the orchestrator and agents, tying domain and effects together.
//! - [`tui`]: the cockpit; it only sees engine events and sends commands.
//! - [`daemon`]: the long-running factory: a queue per repository, runs that
//!   outlive the terminal, cockpits that attach over a socket.
//! - [`mcp`]: the factory as a Model Context Protocol server, for other
//!   agents and factories.

pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod effects;
pub mod engine;
pub mod error;
#[cfg(test)]
mod layers;
pub mod llm;
pub mod mcp;
pub mod protocol;
pub mod text;
pub mod toml_file;
pub mod tui;

pub use error::{Error, Result};
