//! System prompts, one file per role. They are factory definitions, kept apart
//! from the code agents change: looked up at run time in the project's
//! `.memofab/prompts/`, then the user's config dir, then the copies shipped in
//! `prompts/` and built into the binary.

use std::path::{Path, PathBuf};

use crate::domain::AgentRole;

/// The shipped prompts, so an installed binary works without its source tree.
fn shipped(role: AgentRole) -> &'static str {
    match role {
        AgentRole::Planner => include_str!("../../prompts/planner.md"),
        AgentRole::PlanReviewer => include_str!("../../prompts/plan_reviewer.md"),
        AgentRole::Coder => include_str!("../../prompts/coder.md"),
        AgentRole::Reviewer => include_str!("../../prompts/reviewer.md"),
        AgentRole::Resolver => include_str!("../../prompts/resolver.md"),
        AgentRole::Overseer => include_str!("../../prompts/overseer.md"),
        AgentRole::Tester => include_str!("../../prompts/tester.md"),
    }
}

/// A system prompt and where it came from (recorded with each agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    pub source: String,
}

#[derive(Debug, Clone)]
pub struct Prompts {
    dirs: Vec<PathBuf>,
}

impl Prompts {
    /// Lookup directories for a project at `repo`, most specific first.
    pub fn for_repo(repo: &Path) -> Self {
        let mut dirs = vec![repo.join(".memofab").join("prompts")];
        if let Some(d) = directories::ProjectDirs::from("dev", "memofab", "memofab") {
            dirs.push(d.config_dir().join("prompts"));
        }
        Self { dirs }
    }

    pub fn with_dirs(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    pub fn load(&self, role: AgentRole) -> Prompt {
        let file = format!("{}.md", role.as_str());
        for dir in &self.dirs {
            let path = dir.join(&file);
            match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => {
                    return Prompt {
                        text,
                        source: path.display().to_string(),
                    };
                }
                Ok(_) => tracing::warn!(path = %path.display(), "empty prompt file ignored"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "prompt file unreadable")
                }
            }
        }
        Prompt {
            text: shipped(role).to_owned(),
            source: format!("prompts/{file} (built in)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_a_shipped_prompt() {
        let prompts = Prompts::with_dirs(vec![]);
        for role in AgentRole::ALL {
            let p = prompts.load(role);
            assert!(p.text.len() > 100, "{role}");
            assert!(p.source.contains(role.as_str()));
        }
    }

    #[test]
    fn project_prompt_overrides_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("coder.md"), "Be terse.").unwrap();
        std::fs::write(dir.path().join("reviewer.md"), "   ").unwrap();
        let prompts = Prompts::with_dirs(vec![dir.path().to_owned()]);
        assert_eq!(prompts.load(AgentRole::Coder).text, "Be terse.");
        assert!(
            prompts
                .load(AgentRole::Reviewer)
                .source
                .contains("built in")
        );
    }
}
