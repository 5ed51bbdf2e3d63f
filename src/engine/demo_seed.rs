//! The demo's repository: the embedded seed project committed on `main`, and
//! a scenario's policy and test command in `.memofab/`. Used by `memofab demo`,
//! the benchmarks and the integration tests.

use std::path::{Path, PathBuf};

use super::run::session::factory_dir;
use crate::effects::git::{GitError, GitRepo};
use crate::llm::scenario::Scenario;

mod seed {
    include!(concat!(env!("OUT_DIR"), "/demo_seed.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum DemoSeedError {
    #[error("creating the demo repository in {}: {source}", .dir.display())]
    Git { dir: PathBuf, source: GitError },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// The embedded seed project's files.
pub fn embedded_seed() -> Vec<(String, Vec<u8>)> {
    seed::DEMO_SEED
        .iter()
        .map(|(p, b)| ((*p).to_owned(), b.to_vec()))
        .collect()
}

/// Creates the demo repository in `dir`: the seed committed on `main`, and
/// the scenario's policy and test command in `.memofab/`.
pub fn prepare_repo(
    dir: &Path,
    scenario: &Scenario,
    seed: &[(String, Vec<u8>)],
) -> Result<PathBuf, DemoSeedError> {
    let git = GitRepo::init_with_files(dir, seed, "Seed project").map_err(|source| {
        DemoSeedError::Git {
            dir: dir.to_owned(),
            source,
        }
    })?;
    let repo = git.root().to_owned();
    write_factory_files(&repo, scenario)?;
    Ok(repo)
}

/// The factory's definitions for the demo project: its policy and config.
/// They live in `.memofab/`, which git ignores and agents cannot write.
fn write_factory_files(repo: &Path, scenario: &Scenario) -> Result<(), DemoSeedError> {
    let dir = factory_dir(repo);
    std::fs::create_dir_all(&dir).map_err(|source| DemoSeedError::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    if let Some(policy) = &scenario.policy {
        std::fs::write(dir.join("policy.toml"), policy).map_err(|source| DemoSeedError::Io {
            context: "writing the demo policy".into(),
            source,
        })?;
    }
    let mut config = String::from("# Written by `memofab demo`.\n[project]\n");
    if let Some(test) = &scenario.test_command {
        config.push_str(&format!(
            "test_command = {}\n",
            toml::Value::String(test.clone())
        ));
    }
    std::fs::write(dir.join("config.toml"), config).map_err(|source| DemoSeedError::Io {
        context: "writing the demo config".into(),
        source,
    })?;
    Ok(())
}
