//! Helpers shared by the integration test modules, each compiled once.

pub mod agent_bench;
pub mod daemon;
pub mod factory;
pub mod fake_bedrock;
pub mod fake_llm;
pub mod interactive;
pub mod postgres;
pub mod scenario_server;
pub mod tmux;
