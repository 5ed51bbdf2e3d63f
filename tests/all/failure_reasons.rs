//! Why a run failed reaches the human whole: a headless run whose provider
//! cannot be reached ends with the reason on stderr, not only in the JSON.

use crate::support::factory;

use factory::*;
use memofab::domain::event::RunPhaseChanged;
use memofab::domain::{EventKind, RunPhase};
use memofab::effects::git::GitRepo;

/// Whitespace-insensitive: the summary wraps long reasons.
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn an_unreachable_provider_fails_the_run_with_the_whole_reason_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    GitRepo::init_with_files(&repo, &[("a.txt".into(), b"hi\n".to_vec())], "seed").unwrap();
    std::fs::create_dir_all(repo.join(".memofab")).unwrap();
    // Port 9 (discard) on loopback: nothing listens there.
    std::fs::write(
        repo.join(".memofab/config.toml"),
        "[providers.down]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\nmax_retries = 0\n[roles.default]\nprovider = \"down\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(memofab_bin())
        .args(["run", "--headless", "--requirement-text", "add a greeting"])
        .arg("--repo")
        .arg(&repo)
        .env("XDG_CONFIG_HOME", tmp.path().join("xdg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");

    let events = stored_events(&repo, &only_run(&repo));
    let reason = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Failed,
                reason,
            }) => reason.clone(),
            _ => None,
        })
        .expect("the run failed with a reason");
    assert!(reason.contains("could not reach the provider"), "{reason}");
    assert!(
        squeeze(&stderr).contains(&squeeze(&reason)),
        "the whole reason is on stderr: {stderr}"
    );
}
