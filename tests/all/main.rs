//! The integration tests, built as ONE test binary: memofab is linked once,
//! not once per file. Each module below was its own binary before; run one
//! with `cargo test --test all <module>::` (say `escape::`). Helpers shared
//! by several modules live in `support`, compiled once.
//!
//! The modules share this process and run on parallel threads, so a test
//! must leave process-wide state alone: no `std::env::set_var`, no
//! `set_current_dir`, no signal dispositions or rlimits of its own. Give
//! such settings to the child `Command` instead, measure a child process
//! rather than this one, and name per-test resources uniquely (temp dirs,
//! tmux sockets via `support::tmux`). docs/testing.md has the details.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod bench_quick;
mod budgets;
mod crash_resume;
mod daemon;
mod daemon_attach;
mod daemon_cli;
mod doctor_tools;
mod escape;
mod factory_demo;
mod factory_over_http;
mod failure_reasons;
mod first_use;
mod git_effects;
mod hardening;
mod human_decisions;
mod inbox;
mod intake;
mod interruptions;
mod layout;
mod mcp_server;
mod mcp_tools;
mod merge_queue;
mod newcomer_tmux;
mod nightly;
mod outcomes;
mod overseer;
mod pg_daemons;
mod pg_follow;
mod pg_queue;
mod postgres_store;
mod project_instructions;
mod providers_anthropic;
mod providers_bedrock;
mod providers_openai;
mod providers_wire;
mod quota_governor;
mod remote_mainline;
mod replay;
mod risk_gate;
mod run_hygiene;
mod shepherd;
mod small_models;
mod takeover;
mod tester_agents;
mod token_economics;
mod tool_confinement;
mod tui_tmux;
mod user_checkout;
