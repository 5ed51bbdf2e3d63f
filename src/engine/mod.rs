//! The engine: runs a factory run by tying the pure domain to its effects.
//! It knows nothing about terminals; front ends talk to it through
//! [`crate::protocol`].

pub mod agent;
pub mod budget_pause;
pub mod cleanup;
pub mod context;
pub mod demo_seed;
pub mod deny_list;
pub mod engine_lock;
pub mod error;
pub mod files;
pub mod mcp_tools;
pub mod overseer;
pub mod prompts;
pub mod providers;
pub mod recorder;
pub mod run;
pub mod secrets;
pub mod shepherd;
pub mod tools;

pub use error::{EngineError, EngineResult};
