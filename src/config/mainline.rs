//! `[mainline]`: where mainline lives. Unset `remote`: the local branch
//! (`project.mainline`) is mainline, as it always was. Set: mainline is that
//! branch on the named git remote, and a landing is a compare-and-swap push.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MainlineConfig {
    /// A remote of the user's repository (`git remote`), e.g. `origin`.
    /// Its branch of mainline's name is where tasks land; the local branch
    /// follows it after each landing.
    pub remote: Option<String>,
    /// Pushes a landing tries when someone else pushed first (each one
    /// merges again on the remote's new head, and verifies again if the
    /// tree changed) before the task waits for a human.
    pub push_attempts: u32,
    /// Seconds one `git push`, `fetch` or `ls-remote` may take.
    pub timeout_secs: u64,
    /// Push each task branch to the remote as it is committed (under
    /// `memofab/`), so another machine can take the work over.
    pub push_task_branches: bool,
}

impl Default for MainlineConfig {
    fn default() -> Self {
        Self {
            remote: None,
            push_attempts: 3,
            timeout_secs: 120,
            push_task_branches: true,
        }
    }
}

impl MainlineConfig {
    /// The remote's name, if one is set and it could only name a remote
    /// (not an option, a path or a URL: the git command line takes it).
    pub(super) fn problem(&self) -> Option<super::Problem> {
        let name = self.remote.as_deref()?;
        let plain = !name.is_empty()
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        (!plain || name == "." || name == "..").then(|| {
            super::Problem::new(
                &["mainline", "remote"],
                format!(
                    "mainline.remote = {name:?}: name a remote of the repository (`git remote`), such as \"origin\""
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, crate::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&[path])
    }

    #[test]
    fn a_remote_is_a_remotes_name_never_an_option_or_a_url() {
        let config = load("[mainline]\nremote = \"origin\"\npush_attempts = 5\n").unwrap();
        assert_eq!(config.mainline.remote.as_deref(), Some("origin"));
        assert_eq!(config.mainline.push_attempts, 5);
        assert!(config.mainline.push_task_branches);
        assert_eq!(load("").unwrap().mainline.remote, None);
        for bad in [
            "--upload-pack=touch x",
            "ssh://host/repo",
            "../elsewhere",
            "",
            "..",
        ] {
            let text = format!("[mainline]\nremote = {}\n", toml::Value::String(bad.into()));
            assert!(load(&text).is_err(), "{bad:?} accepted");
        }
    }
}
