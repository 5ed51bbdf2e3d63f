//! A newcomer's first minutes, through the real binary: a repository with no
//! config, `memofab init`, misspelt files, no terminal, and the errors that
//! have to say what to do. Assertions are on effects (exit codes, refs,
//! files); wording only loosely (that a message names the file or the fix).

use crate::support::{factory, fake_llm};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use factory::memofab_bin;
use memofab::config::Config;
use memofab::domain::AgentRole;
use memofab::domain::policy::PolicyFile;
use memofab::effects::store::Store;
use memofab::engine::run::session::store_path;

/// The binary in `repo`, with no user config, no API keys, no local servers
/// probed by accident, and no terminal.
fn memofab(repo: &Path, args: &[&str]) -> Output {
    memofab_cmd(repo, args).output().unwrap()
}

fn memofab_cmd(repo: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(memofab_bin());
    cmd.args(args)
        .current_dir(repo)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env("MEMOFAB_OLLAMA_URL", closed_port_url())
        .env("MEMOFAB_LLAMACPP_URL", closed_port_url())
        .stdin(Stdio::null());
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository on `main` with one commit.
fn repo(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q"]);
    std::fs::write(dir.join("a.txt"), "a\n").unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-qm", "seed"]);
    dir
}

fn head(repo: &Path) -> String {
    git(repo, &["rev-parse", "main"])
}

fn branches(repo: &Path) -> String {
    git(repo, &["branch", "--list"])
}

/// A URL where nothing listens (a port just freed).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const SCRIPTED: &str = "[roles.default]\nprovider = \"scripted\"\n";

#[test]
fn without_a_provider_run_and_the_cockpit_explain_and_leave_the_repository_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    let before = (head(&repo), branches(&repo));
    for args in [
        &["run", "--headless", "--requirement-text", "do x"][..],
        &["run", "--requirement-text", "do x"][..],
        &[][..],
    ] {
        let out = memofab(&repo, args);
        assert!(!out.status.success(), "{args:?} ran: {}", stderr(&out));
        assert!(stderr(&out).contains("memofab init"), "{}", stderr(&out));
        assert_eq!((head(&repo), branches(&repo)), before, "{args:?}");
        assert!(!repo.join(".memofab").exists(), "{args:?} touched the repo");
    }
    // Asking for the scripted model by config is enough to get past this.
    write(&repo.join(".memofab/config.toml"), SCRIPTED);
    let out = memofab(&repo, &["run", "--requirement-text", "do x"]);
    assert!(!stderr(&out).contains("memofab init"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_config_for_the_server_it_found_and_asks_before_overwriting() {
    let ollama = fake_llm::FakeServer::start(vec![fake_llm::ok(vec![
        br#"{"models":[{"name":"qwen2.5-coder:7b"},{"name":"llama3"}]}"#.to_vec(),
    ])])
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    let init = |extra: &[&str]| {
        let mut args = vec!["init"];
        args.extend_from_slice(extra);
        let mut cmd = memofab_cmd(&repo, &args);
        cmd.env("MEMOFAB_OLLAMA_URL", ollama.url());
        cmd.output().unwrap()
    };
    let out = tokio::task::block_in_place(|| init(&[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ollama.request(0).head.starts_with("GET /api/tags"));

    let config_path = repo.join(".memofab/config.toml");
    let config = Config::load(std::slice::from_ref(&config_path)).unwrap();
    assert_eq!(
        config.role(AgentRole::Coder),
        Some(("ollama", Some("qwen2.5-coder:7b")))
    );
    assert_eq!(
        config.providers["ollama"].base_url,
        Some(format!("{}/v1", ollama.url()))
    );
    let policy = std::fs::read_to_string(repo.join(".memofab/policy.toml")).unwrap();
    let policy: PolicyFile = toml::from_str(&policy).unwrap();
    assert!(policy.rules.is_empty(), "the policy is only commented");
    memofab::engine::run::session::load_policy(&repo).unwrap();
    assert_eq!(git(&repo, &["status", "--porcelain"]), "", "git ignores it");

    // No terminal to ask on: nothing is overwritten.
    std::fs::write(&config_path, SCRIPTED).unwrap();
    let out = tokio::task::block_in_place(|| init(&[]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), SCRIPTED);

    let out = tokio::task::block_in_place(|| init(&["--force"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let config = Config::load(&[config_path]).unwrap();
    assert_eq!(config.role(AgentRole::Coder).unwrap().0, "ollama");
}

#[test]
fn init_with_nothing_found_writes_a_template_that_still_parses() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    let out = memofab(&repo, &["init"]);
    // Nothing can run yet: a script's `memofab init && memofab` stops here.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no model provider found"));
    let config = Config::load(&[repo.join(".memofab/config.toml")]).unwrap();
    assert_eq!(config.role(AgentRole::Coder), None);
    // Still no silent demo: a run explains what to configure.
    let out = memofab(&repo, &["run", "--headless", "--requirement-text", "x"]);
    assert!(!out.status.success());
    assert!(!store_path(&repo).exists());
}

#[test]
fn misspelt_policy_and_config_are_refused_at_their_line_before_any_run() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    let before = head(&repo);
    let policy = repo.join(".memofab/policy.toml");
    for (text, line) in [
        (
            "[[rules]]\npaths = [\"a.txt\"]\nrisk = \"deny\"\n",
            "policy.toml:1:",
        ),
        (
            "[[rule]]\npaths = [\"a.txt\"]\nrisk = \"deny\"\nreasn = \"x\"\n",
            "policy.toml:4:",
        ),
    ] {
        write(&policy, text);
        let out = memofab(
            &repo,
            &[
                "run",
                "--headless",
                "--provider",
                "scripted",
                "--requirement-text",
                "x",
            ],
        );
        assert!(!out.status.success());
        assert!(stderr(&out).contains(line), "{}", stderr(&out));
        assert_eq!(head(&repo), before);
        let runs = Store::open(&store_path(&repo)).map(|s| s.runs().unwrap().len());
        assert!(matches!(runs, Err(_) | Ok(0)), "a run was created");

        let out = memofab(&repo, &["doctor"]);
        assert!(!out.status.success());
        assert!(stdout(&out).contains(line), "{}", stdout(&out));
    }
    std::fs::remove_file(&policy).unwrap();

    let config = repo.join(".memofab/config.toml");
    write(&config, &format!("{SCRIPTED}[run]\nconcurency = 2\n"));
    let out = memofab(&repo, &["doctor"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("config.toml:4:"), "{}", stdout(&out));

    // The theme is checked too, not only when the cockpit opens.
    write(&config, &format!("{SCRIPTED}[ui]\ntheme = \"neon\"\n"));
    let out = memofab(&repo, &["doctor"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("neon"), "{}", stdout(&out));

    write(&config, SCRIPTED);
    let out = memofab(&repo, &["doctor"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn broken_scenario_and_theme_files_are_located() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    let scenario = tmp.path().join("scenario.toml");
    write(&scenario, "name = \"s\"\nrequirement = \"x\"\nnope = 1\n");
    let out = memofab(
        &repo,
        &[
            "run",
            "--headless",
            "--scenario",
            scenario.to_str().unwrap(),
            "--requirement-text",
            "x",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("scenario.toml:3:"),
        "{}",
        stderr(&out)
    );

    let theme = tmp.path().join("mine.toml");
    write(&theme, "[roles.task_running]\nfg = \"red\"\nblink = true\n");
    write(
        &repo.join(".memofab/config.toml"),
        &format!("{SCRIPTED}[ui]\ntheme = {:?}\n", theme.to_str().unwrap()),
    );
    let out = memofab(&repo, &["doctor"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("mine.toml:3:"), "{}", stdout(&out));
}

#[test]
fn config_values_that_cannot_work_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    let config = repo.join(".memofab/config.toml");
    for text in [
        format!("{SCRIPTED}[run]\nconcurrency = 0\n"),
        "[roles.default]\nprovider = \"olama\"\n".to_owned(),
    ] {
        write(&config, &text);
        let out = memofab(&repo, &["run", "--headless", "--requirement-text", "x"]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(".memofab/config.toml"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_closed_port_is_reported_as_refused_with_its_url() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    let url = closed_port_url();
    write(
        &repo.join(".memofab/config.toml"),
        &format!(
            "[providers.local]\nkind = \"openai\"\nbase_url = \"{url}/v1\"\nmodel = \"m\"\nmax_retries = 0\n\
             [roles.default]\nprovider = \"local\"\n"
        ),
    );
    let out = memofab(&repo, &["doctor"]);
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(
        report.contains("connection refused") && report.contains(&url),
        "{report}"
    );
}

#[test]
fn errors_say_what_to_do_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();

    let nowhere = tmp.path().join("plain");
    std::fs::create_dir_all(&nowhere).unwrap();
    let out = memofab(&nowhere, &["run", "--headless", "--requirement-text", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("git init"), "{}", stderr(&out));
    assert!(!nowhere.join(".memofab").exists());

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q"]);
    write(&empty.join(".memofab/config.toml"), SCRIPTED);
    let out = memofab(&empty, &["run", "--headless", "--requirement-text", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("first commit"), "{}", stderr(&out));

    // No terminal: refused before a run or a demo repository exists.
    let repo = repo(tmp.path(), "r");
    let before = head(&repo);
    for args in [
        &["run", "--provider", "scripted", "--requirement-text", "x"][..],
        &["--provider", "scripted"][..],
    ] {
        let out = memofab(&repo, args);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("--headless"), "{}", stderr(&out));
        assert!(!store_path(&repo).exists(), "{args:?} created a run");
        assert_eq!(head(&repo), before);
    }
    let demo = tmp.path().join("demo");
    let out = memofab(tmp.path(), &["demo", "--dir", demo.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--headless"), "{}", stderr(&out));
    assert!(!demo.exists(), "the demo repository was created");

    // Nothing to resume, replay or apply: said, and no store appears.
    for args in [
        &["resume"][..],
        &["resume", "--headless"][..],
        &["replay", "--at", "10s"][..],
        &["overseer", "apply", "R", "5"][..],
    ] {
        let out = memofab(&repo, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(!stderr(&out).contains("not ready for a run"), "{args:?}");
        assert!(stderr(&out).contains("no "), "{args:?}: {}", stderr(&out));
        assert!(!repo.join(".memofab").exists(), "{args:?} created .memofab");
    }
    let out = memofab(&repo, &["replay", "--at", "bogus"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--at"), "{}", stderr(&out));
}

#[test]
fn the_summary_prints_the_replay_command_and_replay_at_opens_the_latest_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = memofab(
        tmp.path(),
        &[
            "demo",
            "--headless",
            "--auto-approve",
            "--dir",
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let run = factory::only_run(&dir);
    let replay_line = stderr(&out)
        .lines()
        .find(|l| l.trim_start().starts_with("replay:"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        replay_line.contains(&format!("replay {run}")),
        "{replay_line}"
    );

    // `--at` without a run takes the latest; here it gets as far as
    // wanting a terminal, not a usage error about the missing RUN.
    let out = memofab(&dir, &["replay", "--at", "10s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("terminal"), "{}", stderr(&out));
}

#[test]
fn run_help_documents_every_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = memofab(tmp.path(), &["run", "--help"]);
    let help = stdout(&out);
    for flag in ["--headless", "--auto-approve", "--provider", "--scenario"] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_default();
        let described = line.len() > flag.len() + 10
            || help
                .lines()
                .skip_while(|l| !l.trim_start().starts_with(flag))
                .nth(1)
                .is_some_and(|next| !next.trim_start().starts_with('-'));
        assert!(described, "{flag} has no help text:\n{help}");
    }
}

#[test]
fn clean_while_another_memofab_works_names_it_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    // pid 1 always lives: another memofab at work here.
    write(&repo.join(".memofab/engine.pid"), "1");
    let before = (head(&repo), branches(&repo));
    let out = memofab(&repo, &["clean"]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("pid 1"), "{said}");
    assert!(!said.contains("not ready for a run"), "{said}");
    assert_eq!((head(&repo), branches(&repo)), before);
    assert_eq!(
        std::fs::read_to_string(repo.join(".memofab/engine.pid")).unwrap(),
        "1",
        "the other memofab's lock is left alone"
    );
}

#[test]
fn a_table_written_twice_is_named_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    write(
        &repo.join(".memofab/config.toml"),
        &format!(
            "{SCRIPTED}[project]\ntest_command = \"true\"\n\n[project]\nmainline = \"main\"\n"
        ),
    );
    let out = memofab(&repo, &["doctor"]);
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(
        report.contains("config.toml:6:") && report.contains("duplicate table [project]"),
        "{report}"
    );
}

#[test]
fn the_top_level_provider_reaches_the_overseer() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), "r");
    let out = memofab(
        &repo,
        &["--provider", "scripted", "overseer", "--since", "all"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Its report is stored, as `overseer list` shows.
    let list = memofab(&repo, &["overseer", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(stdout(&list).contains("overseer-"), "{}", stdout(&list));
}
