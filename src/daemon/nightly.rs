//! The nightly overseer: at `[overseer] schedule`, review each repository's
//! day of runs and put the proposals in the inbox. (Being built.)

use super::shared::Shared;

/// Runs the schedule until the daemon stops.
pub async fn run(shared: Shared) {
    let _ = shared;
    std::future::pending::<()>().await
}
