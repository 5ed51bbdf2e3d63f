//! What an agent was given from the MCP servers configured under
//! `[mcp.servers]`: per server, the tools offered to the model (named
//! `mcp__<server>__<tool>`), the tools left out and why, or why the server
//! gave none. Recorded once per agent, so a transcript shows every tool the
//! model could call.

use serde::{Deserialize, Serialize};

/// Prefix of every MCP tool's name as the model sees it.
pub const TOOL_PREFIX: &str = "mcp__";
/// Providers refuse longer tool names (OpenAI and Anthropic both stop at 64).
pub const MAX_TOOL_NAME: usize = 64;

/// One configured server, as the agent's start found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerListing {
    /// The server's name under `[mcp.servers]`.
    pub server: String,
    /// The tools offered, by the names the model calls them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Tools the server listed that were not offered, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Why the server gave no tools: it did not start, or did not list them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl McpServerListing {
    /// One line for a transcript.
    pub fn line(&self) -> String {
        if let Some(error) = &self.error {
            return format!(
                "MCP server {}: not available, the agent goes on without it ({error})",
                self.server
            );
        }
        let mut line = if self.tools.is_empty() {
            format!("MCP server {}: no tools", self.server)
        } else {
            format!("MCP server {}: {}", self.server, self.tools.join(", "))
        };
        if !self.skipped.is_empty() {
            line.push_str(&format!("; not offered: {}", self.skipped.join("; ")));
        }
        line
    }
}

/// The name the model calls `tool` of `server` by.
pub fn tool_name(server: &str, tool: &str) -> String {
    format!("{TOOL_PREFIX}{server}__{tool}")
}

/// Why `name` cannot be offered to a model as a tool name, if it cannot:
/// providers accept letters, digits, '_' and '-', up to 64 characters.
pub fn unusable_tool_name(name: &str) -> Option<String> {
    if name.len() > MAX_TOOL_NAME {
        return Some(format!("{name} is longer than {MAX_TOOL_NAME} characters"));
    }
    if !name.chars().all(is_name_char) {
        return Some(format!(
            "{name} holds characters other than letters, digits, '_' and '-'"
        ));
    }
    None
}

/// Whether `c` may appear in a server's name or a tool's name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_providers_refuse_are_found() {
        assert_eq!(tool_name("files", "touch"), "mcp__files__touch");
        assert!(unusable_tool_name("mcp__files__touch").is_none());
        assert!(unusable_tool_name("mcp__files__a.b").is_some());
        assert!(unusable_tool_name("mcp__files__a/b").is_some());
        assert!(unusable_tool_name(&format!("mcp__s__{}", "x".repeat(60))).is_some());
    }

    #[test]
    fn a_line_says_what_was_offered_or_why_not() {
        let given = McpServerListing {
            server: "files".into(),
            tools: vec!["mcp__files__touch".into()],
            skipped: vec!["a.b: bad name".into()],
            error: None,
        };
        assert_eq!(
            given.line(),
            "MCP server files: mcp__files__touch; not offered: a.b: bad name"
        );
        let broken = McpServerListing {
            error: Some("cannot start".into()),
            ..given
        };
        assert!(broken.line().contains("goes on without it"));
    }
}
