//! The daemon's errors.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("no home directory to keep the daemon's state in; set MEMOFAB_HOME")]
    NoHome,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Queue(#[from] crate::effects::queue::QueueError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// A repository, requirement or request the user named is not valid.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// Another `memofab serve` holds the lock.
    #[error("another memofab serve is already running{}; one daemon serves every repository (`memofab queue` shows it)", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyServing { pid: Option<u32> },
}

impl DaemonError {
    /// Wraps an IO error with what was being done, for `map_err`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

pub type DaemonResult<T> = Result<T, DaemonError>;
