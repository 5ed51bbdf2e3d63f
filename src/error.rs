//! The library's error type: one enum naming which part of the factory failed.

use crate::config::ConfigError;
use crate::domain::TransitionError;
use crate::domain::policy::PolicyError;
use crate::llm::LlmError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("inconsistent event log: {0}")]
    Transition(#[from] TransitionError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
