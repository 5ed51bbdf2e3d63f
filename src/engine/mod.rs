//! The engine: runs a factory run by tying the pure domain to its effects.
//! It knows nothing about terminals; front ends talk to it through
//! [`crate::protocol`].

pub mod agent;
pub mod brainstorm;
pub mod budget_pause;
pub mod cleanup;
pub mod context;
pub mod demo_seed;
pub mod deny_list;
pub mod engine_lock;
pub mod error;
pub mod files;
pub mod gate_decision;
pub mod mcp_tools;
pub mod merge_queue;
pub mod orchestrator;
pub mod overseer;
pub mod pipeline;
pub mod planning;
pub mod prompts;
pub mod providers;
pub mod questions;
pub mod recorder;
pub mod risk_gate;
pub mod secrets;
pub mod session;
pub mod shepherd;
pub mod steps;
pub mod summary;
mod tester;
pub mod tools;

pub use error::{EngineError, EngineResult};
