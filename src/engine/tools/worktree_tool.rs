//! The worktree's tools behind [`Tool`]: each names itself, says its spec,
//! and runs on a [`ToolBox`] with its typed arguments.

use std::marker::PhantomData;

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use super::{Call, Tool, ToolBox, ToolOutcome};
use crate::engine::error::EngineResult;
use crate::llm::ToolSpec;

/// A tool that works on the agent's worktree.
pub trait WorktreeTool: 'static {
    /// The name the model calls it by, the only place it is written.
    const NAME: &'static str;
    /// Its arguments, read once from the call.
    type Args: DeserializeOwned + Send + 'static;

    fn spec() -> ToolSpec;

    /// Runs the call. Blocking file IO goes through [`ToolBox::blocking`].
    fn run(toolbox: ToolBox, args: Self::Args) -> BoxFuture<'static, ToolOutcome>;
}

/// A worktree tool on one toolbox, as a [`Tool`].
pub struct OnWorktree<T> {
    toolbox: ToolBox,
    tool: PhantomData<fn() -> T>,
}

impl<T> OnWorktree<T> {
    pub fn new(toolbox: &ToolBox) -> Self {
        Self {
            toolbox: toolbox.clone(),
            tool: PhantomData,
        }
    }
}

impl<T: WorktreeTool> Tool for OnWorktree<T> {
    fn name(&self) -> &str {
        T::NAME
    }

    fn spec(&self) -> ToolSpec {
        T::spec()
    }

    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, EngineResult<ToolOutcome>> {
        let args = call.arguments.typed::<T::Args>(T::NAME);
        let toolbox = self.toolbox.clone();
        Box::pin(async move {
            Ok(match args {
                Ok(args) => T::run(toolbox, args).await,
                Err(refused) => refused,
            })
        })
    }
}

/// A spec from its parts.
pub fn spec(name: &str, description: &str, parameters: serde_json::Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters,
    }
}
