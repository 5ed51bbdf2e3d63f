//! One factory run, from requirement to merged tasks: a session starts or
//! resumes it, the orchestrator drives it (brainstorming, planning, then
//! each task through the pipeline's steps: tester, coder, review, test,
//! gate, the merge queue), and the summary says how it ended.

mod blueprint_submit;
pub mod brainstorm;
pub mod gate_decision;
pub mod merge_queue;
pub mod orchestrator;
pub mod pipeline;
pub mod planning;
pub mod remote_mainline;
pub mod risk_gate;
pub mod session;
pub mod steps;
pub mod summary;
pub mod takeover;
mod tester;
