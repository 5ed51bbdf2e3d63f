//! Governance paths: the files that decide what later runs, CI and
//! developers' machines do, rather than what the code does. A change to one
//! waits for a human at the gate unless `[governance]` relaxes its class.
//! The globs are built in, one list per class; a project holds more paths
//! with an `approve` `[[rule]]`.

use super::gate_reason::GovernanceClass;

/// Project instructions, read by this factory's agents (`AGENTS.md`,
/// `CLAUDE.md` in any directory) and by other agent tools.
pub const INSTRUCTION_GLOBS: [&str; 7] = [
    "**/AGENTS.md",
    "**/AGENTS.override.md",
    "**/CLAUDE.md",
    "**/GEMINI.md",
    ".cursorrules",
    ".cursor/rules/**",
    ".github/copilot-instructions.md",
];

/// CI definitions of the common forges and services.
pub const CI_GLOBS: [&str; 17] = [
    ".github/workflows/**",
    ".github/actions/**",
    ".gitlab-ci.yml",
    ".gitlab/ci/**",
    ".ci/**",
    "**/Jenkinsfile",
    ".circleci/**",
    ".travis.yml",
    "azure-pipelines.yml",
    ".azure-pipelines/**",
    ".buildkite/**",
    "bitbucket-pipelines.yml",
    ".drone.yml",
    ".woodpecker.yml",
    ".woodpecker/**",
    "appveyor.yml",
    ".appveyor.yml",
];

/// How git and the forge treat files.
pub const GIT_GLOBS: [&str; 5] = [
    "**/.gitattributes",
    ".gitmodules",
    "CODEOWNERS",
    ".github/CODEOWNERS",
    "docs/CODEOWNERS",
];

/// Hooks and hook managers (the repository's `core.hooksPath`, when it
/// points inside the repository, is added by the gate).
pub const HOOK_GLOBS: [&str; 9] = [
    ".githooks/**",
    ".husky/**",
    ".pre-commit-config.yaml",
    ".pre-commit-hooks.yaml",
    "lefthook.yml",
    ".lefthook.yml",
    "lefthook-local.yml",
    ".lefthook/**",
    ".overcommit.yml",
];

/// The built-in globs of `class`.
pub fn globs(class: GovernanceClass) -> &'static [&'static str] {
    match class {
        GovernanceClass::Instructions => &INSTRUCTION_GLOBS,
        GovernanceClass::Ci => &CI_GLOBS,
        GovernanceClass::Git => &GIT_GLOBS,
        GovernanceClass::Hooks => &HOOK_GLOBS,
    }
}

/// Every class, in the order reasons name them.
pub const CLASSES: [GovernanceClass; 4] = [
    GovernanceClass::Instructions,
    GovernanceClass::Ci,
    GovernanceClass::Git,
    GovernanceClass::Hooks,
];

/// The repository-relative directory `core.hooksPath` names, if it lies
/// inside the repository (`.githooks`, `tools/hooks/`); `None` for an
/// absolute path, one leaving the repository, or the repository itself.
pub fn hooks_dir_in_repo(hooks_path: &str) -> Option<String> {
    if hooks_path.starts_with('/') || hooks_path.starts_with('~') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in hooks_path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_path_inside_the_repository_only() {
        assert_eq!(hooks_dir_in_repo(".githooks").as_deref(), Some(".githooks"));
        assert_eq!(
            hooks_dir_in_repo("./tools/hooks/").as_deref(),
            Some("tools/hooks")
        );
        assert_eq!(hooks_dir_in_repo("a/../b").as_deref(), Some("b"));
        for outside in ["/etc/hooks", "~/hooks", "../hooks", ".", ""] {
            assert_eq!(hooks_dir_in_repo(outside), None, "{outside}");
        }
    }
}
