//! The factory that stays up: `memofab serve` owns runs for several
//! repositories, one at a time each, taken from a queue of requirements; it
//! keeps working with no terminal, resumes its runs after a restart, and
//! cockpits attach to it over a Unix socket.
//!
//! - [`paths`]: where the queue, lock and socket live.
//! - [`protocol`]: the socket's requests and replies.
//! - [`live`]: the runs under way, shared by workers and attached cockpits.
//! - [`peer`]: only the user's own processes outside any fence get in.
//! - [`shared`]: what every part of the daemon holds.
//! - [`submit`]: a requirement onto the queue, checked as its run would.
//! - [`attach`]: a cockpit attached over the socket.
//! - [`intake`]: error reports over HTTP become queued requirements.
//! - [`overseer`]: the overseer on a schedule.
//! - [`lock`]: one daemon per user.
//! - [`server`]: the socket's accept loop and the daemon's life.
//! - [`worker`]: one worker per repository, running its queue.

pub mod attach;
pub mod client;
pub mod error;
pub mod intake;
pub mod live;
pub mod lock;
pub mod overseer;
pub mod paths;
pub mod peer;
pub mod protocol;
pub mod server;
pub mod shared;
pub mod submit;
pub mod worker;

pub use error::{DaemonError, DaemonResult};
pub use paths::DaemonPaths;
pub use shared::Shared;
