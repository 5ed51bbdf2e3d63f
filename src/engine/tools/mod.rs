//! The tools agents call. Each tool is one [`Tool`]: its name (a const on
//! the tool, written nowhere else), the spec the model is sent, and the call.
//! One [`Registry`] holds what an agent is offered and dispatches its calls:
//! the worktree's tools (one file each, on a [`ToolBox`]), `ask_human`, the
//! submit tool of the role and the MCP servers' tools, adapters behind the
//! same trait.
//!
//! Every path goes through the [`crate::effects::file_fence::Sandbox`]; every
//! failure becomes a message the model can act on, never an error that stops
//! the run. Arguments are parsed once ([`Arguments`]) into each tool's typed
//! struct; file IO runs on tokio's blocking threads, never the async ones.

mod arguments;
pub mod ask_human;
mod edit_file;
mod finish;
mod list_files;
mod loose_edit;
mod read_file;
mod registry;
mod run;
mod search;
mod submit;
mod toolbox;
mod worktree_tool;
mod write_file;

use futures_util::future::BoxFuture;

use super::error::EngineResult;
use crate::llm::ToolSpec;

pub use arguments::Arguments;
pub use ask_human::AskHuman;
pub use edit_file::EditFile;
pub use finish::Finish;
pub use list_files::ListFiles;
pub(crate) use loose_edit::{NoLooseMatch, loose_edit};
pub use read_file::ReadFile;
pub use registry::{BuiltinTool, Registry, ToolSet};
pub use run::Run;
pub use search::Search;
pub use submit::{NOT_ACCEPTED, SubmitTool};
pub use toolbox::{ToolBox, ToolLimits};
pub use worktree_tool::WorktreeTool;
pub use write_file::WriteFile;

/// What one call of a tool comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    /// An answer for the model; `ok: false` is a refusal or a failure.
    Output { ok: bool, text: String },
    /// `finish` was called: the conversation ends with this summary.
    Finish { summary: String },
    /// A submit tool was called with arguments that passed its check: the
    /// conversation ends with them.
    Submitted { arguments: serde_json::Value },
}

/// One call, as the model made it.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The provider's id of the call (what `ask_human` files its question
    /// under).
    pub id: &'a str,
    pub arguments: &'a Arguments<'a>,
}

/// A tool an agent can be offered.
pub trait Tool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &str;

    /// What the model is told about it.
    fn spec(&self) -> ToolSpec;

    /// Runs one call. `Err` is the engine failing (the store, say), never
    /// the tool: a tool that fails answers `ok: false`.
    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, EngineResult<ToolOutcome>>;
}

/// A borrowed tool is a tool: a registry may hold the submit tool of the
/// job it runs, or the MCP tools of the agent, without owning them.
impl<T: Tool + ?Sized> Tool for &T {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn spec(&self) -> ToolSpec {
        (**self).spec()
    }

    fn call<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, EngineResult<ToolOutcome>> {
        (**self).call(call)
    }
}

fn fail(text: impl Into<String>) -> ToolOutcome {
    ToolOutcome::Output {
        ok: false,
        text: text.into(),
    }
}

fn ok(text: impl Into<String>) -> ToolOutcome {
    ToolOutcome::Output {
        ok: true,
        text: text.into(),
    }
}

#[cfg(test)]
mod tests;
