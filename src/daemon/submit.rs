//! Putting a requirement on the queue, for every way one arrives (`memofab
//! submit`, the attached cockpit, MCP, incident intake): the checks its run would make
//! first are made now, so a requirement no run would take is refused at
//! once instead of failing later.

use super::error::DaemonResult;
use crate::config::Config;
use crate::domain::queue::QueuedRequirement;
use crate::effects::queue::{NewRequirement, Queue};

/// Queues `new` on its repository (a registered name, or a path inside it),
/// after checking it against the repository's `run.max_requirement_bytes`.
/// A config that cannot be read is no reason to refuse: the run will say
/// what is wrong with it. The caller wakes the daemon.
pub fn submit(queue: &mut Queue, new: NewRequirement) -> DaemonResult<QueuedRequirement> {
    let registered = queue.resolve_repo(&new.repo)?;
    if let Ok(config) = Config::load(&Config::standard_files(&registered.path)) {
        crate::engine::context::check_requirement(&config, &new.requirement)?;
    }
    Ok(queue.submit(NewRequirement {
        repo: registered.name,
        ..new
    })?)
}
