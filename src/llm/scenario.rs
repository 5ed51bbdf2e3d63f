//! Scenario files for the scripted provider: per role, task and attempt, the
//! assistant turns (text and tool calls) to return. The format is documented
//! in docs/configuration.md ("Scenario files").

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::{AgentRole, TaskId};

use super::types::ScriptKey;

/// The scenario `memofab demo` runs, embedded so the binary works anywhere.
pub const DEMO_SCENARIO: &str = include_str!("../../assets/demo/scenario.toml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// The requirement a demo run starts from.
    #[serde(default)]
    pub requirement: String,
    /// Seed project directory, relative to the scenario file.
    #[serde(default)]
    pub seed: Option<PathBuf>,
    #[serde(default)]
    pub test_command: Option<String>,
    /// Policy TOML written into a demo repository.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default, rename = "conversation")]
    pub conversations: Vec<Conversation>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversation {
    pub role: AgentRole,
    #[serde(default)]
    pub task: Option<TaskId>,
    #[serde(default)]
    pub attempt: Option<u32>,
    #[serde(rename = "turn")]
    pub turns: Vec<Turn>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    #[serde(default)]
    pub text: String,
    #[serde(default, rename = "call")]
    pub calls: Vec<ScriptedCall>,
    /// Plays a provider's limit before this turn:
    /// `rate_limit = { retry_after_ms = 300 }` fails the first request for
    /// the turn as a 429 would, and the next request gets the turn.
    #[serde(default)]
    pub rate_limit: Option<SimulatedLimit>,
}

/// A rate or usage limit the scripted provider answers with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedLimit {
    /// The `retry-after` the "server" sends; none lets the governor choose.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// A usage limit (quota) rather than a rate limit.
    #[serde(default)]
    pub usage: bool,
    /// Requests refused before the turn is given.
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub tool: String,
    /// Arguments as structured data, sent as JSON.
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// Arguments sent verbatim, e.g. to play a model that emits broken JSON.
    #[serde(default)]
    pub raw_args: Option<String>,
}

impl ScriptedCall {
    pub fn arguments(&self) -> String {
        match (&self.raw_args, &self.args) {
            (Some(raw), _) => raw.clone(),
            (None, Some(args)) => args.to_string(),
            (None, None) => "{}".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `message` names the file, and the line and column if known.
    #[error("invalid scenario: {message}")]
    Parse { origin: String, message: String },
}

impl Scenario {
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            origin: origin.to_owned(),
            message: crate::toml_file::located(origin, text, &e),
        })?;
        for (i, c) in scenario.conversations.iter().enumerate() {
            if c.turns.is_empty() {
                return Err(ScenarioError::Parse {
                    origin: origin.to_owned(),
                    message: format!(
                        "{origin}: conversation #{} ({}) has no turns",
                        i + 1,
                        c.role
                    ),
                });
            }
        }
        Ok(scenario)
    }

    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn demo() -> Result<Self, ScenarioError> {
        Self::parse(DEMO_SCENARIO, "the embedded demo scenario")
    }

    /// The script for a conversation: exact match first, then fallbacks that
    /// leave out the attempt, then the task, then both.
    pub fn conversation(&self, key: &ScriptKey) -> Option<&Conversation> {
        let task = key.task.as_ref();
        let candidates = [
            (task, Some(key.attempt)),
            (task, None),
            (None, Some(key.attempt)),
            (None, None),
        ];
        candidates.into_iter().find_map(|(t, a)| {
            self.conversations
                .iter()
                .find(|c| c.role == key.role && c.task.as_ref() == t && c.attempt == a)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
        name = "t"
        [[conversation]]
        role = "reviewer"
          [[conversation.turn]]
          text = "fallback"
        [[conversation]]
        role = "reviewer"
        task = "a"
        attempt = 2
          [[conversation.turn]]
          text = "exact"
          [[conversation.turn.call]]
          tool = "submit_review"
          args = { approved = true, feedback = "ok" }
        [[conversation]]
        role = "coder"
        task = "a"
          [[conversation.turn]]
          rate_limit = { retry_after_ms = 300 }
          [[conversation.turn.call]]
          tool = "write_file"
          raw_args = '{"path": '
    "#;

    fn key(role: AgentRole, task: &str, attempt: u32) -> ScriptKey {
        ScriptKey {
            role,
            task: Some(task.into()),
            attempt,
        }
    }

    #[test]
    fn lookup_prefers_exact_then_falls_back() {
        let s = Scenario::parse(TEXT, "test").unwrap();
        let exact = s.conversation(&key(AgentRole::Reviewer, "a", 2)).unwrap();
        assert_eq!(exact.turns[0].text, "exact");
        assert_eq!(
            exact.turns[0].calls[0].arguments(),
            r#"{"approved":true,"feedback":"ok"}"#
        );
        let fallback = s.conversation(&key(AgentRole::Reviewer, "b", 1)).unwrap();
        assert_eq!(fallback.turns[0].text, "fallback");
        let any_attempt = s.conversation(&key(AgentRole::Coder, "a", 7)).unwrap();
        assert_eq!(any_attempt.turns[0].calls[0].arguments(), r#"{"path": "#);
        assert_eq!(
            any_attempt.turns[0].rate_limit,
            Some(SimulatedLimit {
                retry_after_ms: Some(300),
                usage: false,
                times: 1
            })
        );
        assert_eq!(exact.turns[0].rate_limit, None);
        assert!(s.conversation(&key(AgentRole::Planner, "a", 1)).is_none());
    }

    #[test]
    fn wrong_types_name_the_origin() {
        let err = Scenario::parse("name = 3", "bad.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml"), "{err}");
        let err = Scenario::parse(
            "name = \"x\"\n[[conversation]]\nrole = \"wizard\"\nturn = []",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("wizard"), "{err}");
    }
}
