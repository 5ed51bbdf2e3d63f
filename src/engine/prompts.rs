//! System prompts, one file per role. They are factory definitions, kept apart
//! from the code agents change: looked up at run time in the project's
//! `.memofab/prompts/`, then the user's config dir, then the copies shipped in
//! `prompts/` and built into the binary.

use std::path::{Path, PathBuf};

use crate::config::ModelProfile;
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

/// The short prompts shipped for small models (`run.profile = "small"`);
/// the overseer keeps its one prompt.
fn shipped_small(role: AgentRole) -> Option<&'static str> {
    Some(match role {
        AgentRole::Planner => include_str!("../../prompts/small/planner.md"),
        AgentRole::PlanReviewer => include_str!("../../prompts/small/plan_reviewer.md"),
        AgentRole::Coder => include_str!("../../prompts/small/coder.md"),
        AgentRole::Reviewer => include_str!("../../prompts/small/reviewer.md"),
        AgentRole::Resolver => include_str!("../../prompts/small/resolver.md"),
        AgentRole::Tester => include_str!("../../prompts/small/tester.md"),
        AgentRole::Overseer => return None,
    })
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
    profile: ModelProfile,
}

impl Prompts {
    /// Lookup directories for a project at `repo`, most specific first.
    pub fn for_repo(repo: &Path) -> Self {
        let mut dirs = vec![repo.join(".memofab").join("prompts")];
        if let Some(d) = directories::ProjectDirs::from("dev", "memofab", "memofab") {
            dirs.push(d.config_dir().join("prompts"));
        }
        Self {
            dirs,
            profile: ModelProfile::Standard,
        }
    }

    pub fn with_dirs(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs,
            profile: ModelProfile::Standard,
        }
    }

    /// The shipped prompts of `profile`; files in the lookup directories
    /// still win.
    pub fn with_profile(mut self, profile: ModelProfile) -> Self {
        self.profile = profile;
        self
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
        if self.profile == ModelProfile::Small
            && let Some(text) = shipped_small(role)
        {
            return Prompt {
                text: text.to_owned(),
                source: format!("prompts/small/{file} (built in)"),
            };
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
    fn the_small_profile_has_short_prompts_without_examples() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reviewer.md"), "Own reviewer prompt.").unwrap();
        let small =
            Prompts::with_dirs(vec![dir.path().to_owned()]).with_profile(ModelProfile::Small);
        let standard = Prompts::with_dirs(vec![]);
        for role in [
            AgentRole::Planner,
            AgentRole::Coder,
            AgentRole::PlanReviewer,
        ] {
            let short = small.load(role);
            assert!(short.source.contains("small"), "{role}: {}", short.source);
            assert!(
                short.text.len() * 2 < standard.load(role).text.len(),
                "{role}"
            );
            assert!(!short.text.contains("e.g.") && !short.text.contains("for example"));
        }
        assert_eq!(small.load(AgentRole::Reviewer).text, "Own reviewer prompt.");
        assert_eq!(
            small.load(AgentRole::Overseer),
            standard.load(AgentRole::Overseer)
        );
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
