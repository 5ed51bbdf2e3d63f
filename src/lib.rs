//! memofab: a terminal cockpit for an autonomous software factory.
//!
//! Layers, from the inside out (each uses only those before it):
//! - [`domain`]: blueprints, task states, events and the state machine. Pure.
//! - [`protocol`]: what the engine and its front ends say to each other.
//! - [`effects`]: git, the event store, processes, the clock and the fences.
//! - [`config`]: the merged config files.
//! - [`llm`]: the provider trait and its implementations.
//! - [`engine`]: the orchestrator and agents, tying domain and effects together.
//! - [`tui`]: the cockpit; it only sees engine events and sends commands.
//! - [`daemon`]: the long-running factory: a queue per repository, runs that
//!   outlive the terminal, cockpits that attach over a socket.
//! - [`mcp_server`]: memofab AS a Model Context Protocol server, for other
//!   agents and factories (the client side, agents calling MCP servers' tools,
//!   is `effects::mcp_client` and `engine::mcp_tools`).
//! - [`cli`]: the command line, the only layer above them all.
//!
//! `src/layers.rs` holds the full order and a test that keeps it.

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
pub mod mcp_server;
pub mod protocol;
pub mod text;
pub mod toml_file;
pub mod tui;

pub use error::{Error, Result};
