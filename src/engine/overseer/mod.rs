//! The overseer: reads past runs, computes factory metrics, and asks the
//! overseer agent for concrete changes to the factory's own prompts and
//! policy. Its session is stored like a run (so it can be exported and
//! replayed); its proposals are applied only when a human approves one, and
//! that approval is recorded.
//!
//! The daemon runs it on a schedule (`daemon::overseer`); `memofab overseer`
//! runs it by hand and applies what a human approves.

mod proposals;
mod review;

pub use proposals::{apply, stored_report, waiting_proposals};
pub use review::{Report, review, runs_since};
