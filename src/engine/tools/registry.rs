//! What an agent is offered, and where its calls go: one list of tools, in
//! the order the model is sent their specs, dispatched by name.

use super::worktree_tool::{OnWorktree, WorktreeTool};
use super::{
    Arguments, Call, EditFile, Finish, ListFiles, ReadFile, Run, Search, Tool, ToolBox,
    ToolOutcome, WriteFile, fail,
};
use crate::engine::error::EngineResult;
use crate::llm::ToolSpec;

/// Which of the worktree's tools a role gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSet {
    /// Everything: reading, writing, running commands, finishing.
    Coder,
    /// Reading only: for planners and reviewers.
    ReadOnly,
}

impl ToolSet {
    /// The set's tools, in the order the model is sent them.
    pub fn tools(self) -> &'static [BuiltinTool] {
        match self {
            Self::Coder => &BuiltinTool::ALL,
            Self::ReadOnly => &BuiltinTool::ALL[..3],
        }
    }
}

/// The built-in tools, which work on an agent's worktree: the catalogue
/// roles are offered from (`ToolSet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinTool {
    ReadFile,
    ListFiles,
    Search,
    WriteFile,
    EditFile,
    Run,
    Finish,
}

impl BuiltinTool {
    /// Every one, the reading ones first: the order the model is sent them.
    pub const ALL: [Self; 7] = [
        Self::ReadFile,
        Self::ListFiles,
        Self::Search,
        Self::WriteFile,
        Self::EditFile,
        Self::Run,
        Self::Finish,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ReadFile => ReadFile::NAME,
            Self::ListFiles => ListFiles::NAME,
            Self::Search => Search::NAME,
            Self::WriteFile => WriteFile::NAME,
            Self::EditFile => EditFile::NAME,
            Self::Run => Run::NAME,
            Self::Finish => Finish::NAME,
        }
    }

    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn spec(self) -> ToolSpec {
        match self {
            Self::ReadFile => ReadFile::spec(),
            Self::ListFiles => ListFiles::spec(),
            Self::Search => Search::spec(),
            Self::WriteFile => WriteFile::spec(),
            Self::EditFile => EditFile::spec(),
            Self::Run => Run::spec(),
            Self::Finish => Finish::spec(),
        }
    }

    /// Whether it only reads: the same call answers the same until
    /// something is written or run.
    pub fn only_reads(self) -> bool {
        ToolSet::ReadOnly.tools().contains(&self)
    }

    /// The tool on `toolbox`.
    pub fn on(self, toolbox: &ToolBox) -> Box<dyn Tool> {
        match self {
            Self::ReadFile => Box::new(OnWorktree::<ReadFile>::new(toolbox)),
            Self::ListFiles => Box::new(OnWorktree::<ListFiles>::new(toolbox)),
            Self::Search => Box::new(OnWorktree::<Search>::new(toolbox)),
            Self::WriteFile => Box::new(OnWorktree::<WriteFile>::new(toolbox)),
            Self::EditFile => Box::new(OnWorktree::<EditFile>::new(toolbox)),
            Self::Run => Box::new(OnWorktree::<Run>::new(toolbox)),
            Self::Finish => Box::new(OnWorktree::<Finish>::new(toolbox)),
        }
    }
}

/// The tools one agent is offered.
#[derive(Default)]
pub struct Registry<'a> {
    tools: Vec<Box<dyn Tool + 'a>>,
}

impl<'a> Registry<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The worktree's tools of `set`, on `toolbox`.
    pub fn workspace(toolbox: &ToolBox, set: ToolSet) -> Self {
        let mut registry = Self::new();
        for tool in set.tools() {
            registry.add(tool.on(toolbox));
        }
        registry
    }

    /// Offers `tool` after those offered already. A name offered already
    /// keeps its first tool: the model cannot be sent two of one name.
    pub fn add(&mut self, tool: Box<dyn Tool + 'a>) {
        if self.offers(tool.name()) {
            tracing::warn!("{} is offered twice; the second is left out", tool.name());
            return;
        }
        self.tools.push(tool);
    }

    pub fn offers(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name() == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.name()).collect()
    }

    /// What the model is sent, in order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec()).collect()
    }

    /// Runs `call` on the tool named `name`; `None` when none is offered.
    pub async fn call(&self, name: &str, call: Call<'_>) -> Option<EngineResult<ToolOutcome>> {
        let tool = self.tools.iter().find(|t| t.name() == name)?;
        Some(tool.call(call).await)
    }
}

/// The toolbox's tools by name, for callers outside a conversation (kept
/// here, not in toolbox.rs, so the toolbox never reaches up to the registry
/// that dispatches to it).
impl ToolBox {
    /// The specs of a set of the worktree's tools, as the model is sent them.
    pub fn specs(set: ToolSet) -> Vec<ToolSpec> {
        set.tools().iter().map(|tool| tool.spec()).collect()
    }

    /// Runs one call of a worktree tool by name, outside any conversation
    /// (what tests and benches call).
    pub async fn call(&self, name: &str, arguments: &str) -> ToolOutcome {
        let registry = Registry::workspace(self, ToolSet::Coder);
        let arguments = Arguments::parse(arguments);
        let call = Call {
            id: "",
            arguments: &arguments,
        };
        match registry.call(name, call).await {
            Some(Ok(outcome)) => outcome,
            Some(Err(e)) => fail(e.to_string()),
            None => fail(format!(
                "There is no tool named {name:?}. Available: {}.",
                registry.names().join(", ")
            )),
        }
    }
}
