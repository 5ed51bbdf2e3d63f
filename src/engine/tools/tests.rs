use std::time::Duration;

use super::*;
use crate::domain::policy::Policy;
use crate::effects::file_fence::Sandbox;
use crate::effects::process::Isolation;
use read_file::MAX_READ_FILE_BYTES;

fn toolbox() -> (tempfile::TempDir, ToolBox) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/lib.rs"),
        "fn a() {}\nfn b() {}\nfn a2() {}\n",
    )
    .unwrap();
    let sandbox = Sandbox::new(dir.path(), Policy::protected_only()).unwrap();
    let limits = ToolLimits {
        command_timeout: Duration::from_secs(5),
        output_cap: 4096,
        deny_commands: vec!["git push".into()],
        isolation: Isolation::none(),
        max_file_bytes: crate::effects::git::DEFAULT_MAX_FILE_BYTES,
    };
    (dir, ToolBox::new(sandbox, limits))
}

fn expect_ok(outcome: ToolOutcome) -> String {
    match outcome {
        ToolOutcome::Output { ok: true, text } => text,
        other => panic!("expected success, got {other:?}"),
    }
}

fn expect_err(outcome: ToolOutcome) -> String {
    match outcome {
        ToolOutcome::Output { ok: false, text } => text,
        other => panic!("expected failure, got {other:?}"),
    }
}

#[tokio::test]
async fn read_file_never_answers_an_empty_success() {
    let (dir, tb) = toolbox();
    let whole = "fn a() {}\nfn b() {}\nfn a2() {}\n";
    let read = |args: &'static str| tb.call("read_file", args);
    assert_eq!(
        expect_ok(read(r#"{"path": "src/lib.rs", "max_lines": 0}"#).await),
        whole
    );
    assert_eq!(
        expect_ok(read(r#"{"path": "src/lib.rs", "offset_line": 2, "max_lines": 1}"#).await),
        "fn b() {}\n"
    );
    // Past the end: an error that shows the file's last lines (small
    // agents told only "past its end" read there again until they gave up).
    let past = expect_err(read(r#"{"path": "src/lib.rs", "offset_line": 9}"#).await);
    assert!(past.ends_with(&format!("```\n{}```", whole)), "{past}");
    std::fs::write(dir.path().join("empty.txt"), "").unwrap();
    assert!(!expect_ok(read(r#"{"path": "empty.txt"}"#).await).is_empty());
}

#[tokio::test]
async fn read_write_edit_list_search() {
    let (dir, tb) = toolbox();
    expect_ok(
        tb.call(
            "write_file",
            r#"{"path": "src/new/m.rs", "content": "hello\nworld\n"}"#,
        )
        .await,
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("src/new/m.rs")).unwrap(),
        "hello\nworld\n"
    );
    assert_eq!(
        expect_ok(
            tb.call("read_file", r#"{"path": "src/new/m.rs", "offset_line": 2}"#)
                .await
        ),
        "world\n"
    );
    expect_ok(
        tb.call(
            "edit_file",
            r#"{"path": "src/lib.rs", "old": "fn b() {}", "new": "fn b() { 1 }"}"#,
        )
        .await,
    );
    assert!(
        std::fs::read_to_string(dir.path().join("src/lib.rs"))
            .unwrap()
            .contains("fn b() { 1 }")
    );
    let listing = expect_ok(tb.call("list_files", r#"{"recursive": true}"#).await);
    assert!(
        listing.contains("src/\n") && listing.contains("src/new/m.rs"),
        "{listing}"
    );
    let hits = expect_ok(tb.call("search", r#"{"pattern": "fn a"}"#).await);
    assert_eq!(hits.lines().count(), 2, "{hits}");
    let re = expect_ok(
        tb.call("search", r#"{"pattern": "^fn a\\d", "regex": true}"#)
            .await,
    );
    assert!(re.contains("src/lib.rs:3:"), "{re}");
    assert_eq!(
        tb.written_paths(),
        vec!["src/lib.rs".to_string(), "src/new/m.rs".to_string()]
    );
}

#[tokio::test]
async fn edit_needs_exactly_one_match() {
    let (_d, tb) = toolbox();
    let none = expect_err(
        tb.call(
            "edit_file",
            r#"{"path": "src/lib.rs", "old": "fn z", "new": ""}"#,
        )
        .await,
    );
    assert!(none.contains("does not occur"));
    let many = expect_err(
        tb.call(
            "edit_file",
            r#"{"path": "src/lib.rs", "old": "fn a", "new": ""}"#,
        )
        .await,
    );
    assert!(many.contains("occurs 2 times"));
}

#[tokio::test]
async fn an_edit_copied_without_the_blank_lines_applies_and_keeps_them() {
    let (dir, tb) = toolbox();
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# Tiny\n\nSome text.\n\nMore.\n").unwrap();
    expect_ok(
        tb.call(
            "edit_file",
            r#"{"path": "README.md", "old": "Some text.\nMore.\n", "new": "Some text.\nMore.\nHello.\n"}"#,
        )
        .await,
    );
    assert_eq!(
        std::fs::read_to_string(&readme).unwrap(),
        "# Tiny\n\nSome text.\n\nMore.\nHello.\n"
    );
    // A loose match found twice changes nothing.
    std::fs::write(&readme, "x\n\ny\nx\ny\n").unwrap();
    expect_err(
        tb.call(
            "edit_file",
            r#"{"path": "README.md", "old": "x\n\n\ny\n", "new": "z\n"}"#,
        )
        .await,
    );
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), "x\n\ny\nx\ny\n");
}

#[tokio::test]
async fn bad_calls_become_messages_for_the_model() {
    let (_d, tb) = toolbox();
    assert!(expect_err(tb.call("read_file", r#"{"path": "#).await).contains("could not be read"));
    assert!(expect_err(tb.call("read_file", r#"{"path": 3}"#).await).contains("could not be read"));
    assert!(expect_err(tb.call("teleport", "{}").await).contains("no tool named"));
    assert!(
        expect_err(tb.call("read_file", r#"{"path": "nope.rs"}"#).await).contains("does not exist")
    );
    assert!(
        expect_err(
            tb.call("run", r#"{"command": "git push origin main"}"#)
                .await
        )
        .contains("not allowed")
    );
    assert_eq!(
        tb.call("finish", r#"{"summary": "done"}"#).await,
        ToolOutcome::Finish {
            summary: "done".into()
        }
    );
}

#[tokio::test]
async fn run_reports_exit_code_and_times_out() {
    let (_d, tb) = toolbox();
    let text = expect_ok(tb.call("run", r#"{"command": "ls src"}"#).await);
    assert!(
        text.contains("exit code 0") && text.contains("lib.rs"),
        "{text}"
    );
    let failed = expect_err(tb.call("run", r#"{"command": "exit 4"}"#).await);
    assert!(failed.contains("exit code 4"));
    let slow = expect_err(
        tb.call("run", r#"{"command": "sleep 5", "timeout_secs": 1}"#)
            .await,
    );
    assert!(slow.contains("timed out"), "{slow}");
}

#[test]
fn read_only_set_has_no_writers() {
    let names: Vec<String> = ToolBox::specs(ToolSet::ReadOnly)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["read_file", "list_files", "search"]);
    assert_eq!(ToolBox::specs(ToolSet::Coder).len(), 7);
}

/// A 3 GB sparse file, a text file past the read cap and a FIFO: each
/// answered at once, from at most the cap's bytes.
#[tokio::test]
async fn reads_stop_at_their_cap_whatever_the_file() {
    let (dir, tb) = toolbox();
    let sparse = std::fs::File::create(dir.path().join("sparse.txt")).unwrap();
    sparse.set_len(3 << 30).unwrap();
    let started = std::time::Instant::now();
    let text = expect_err(tb.call("read_file", r#"{"path": "sparse.txt"}"#).await);
    assert!(text.contains("binary"), "{text}");
    let text = expect_err(
        tb.call(
            "edit_file",
            r#"{"path": "sparse.txt", "old": "a", "new": "b"}"#,
        )
        .await,
    );
    assert!(text.contains("larger"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let long = "line\n".repeat((MAX_READ_FILE_BYTES as usize) / 5 + 10);
    std::fs::write(dir.path().join("long.txt"), &long).unwrap();
    let last = (MAX_READ_FILE_BYTES as usize) / 5;
    let text = expect_ok(
        tb.call(
            "read_file",
            &format!(r#"{{"path": "long.txt", "offset_line": {last}}}"#),
        )
        .await,
    );
    assert!(text.contains("larger than"), "{text}");

    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        tb.call("read_file", r#"{"path": "fifo"}"#),
    )
    .await
    .expect("a FIFO does not hang read_file");
    expect_err(answered);
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        tb.call("search", r#"{"pattern": "fn"}"#),
    )
    .await
    .expect("a FIFO does not hang search");
    assert!(expect_ok(answered).contains("src/lib.rs"));
}

/// `finish` with a changed file over the limit is refused, naming it; the
/// agent can remove it and finish.
#[tokio::test]
async fn finish_is_refused_while_a_file_is_over_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let git = crate::effects::git::GitRepo::init_with_files(
        &repo_dir,
        &[("README.md".into(), b"hi\n".to_vec())],
        "init",
    )
    .unwrap();
    // A task worktree, measured through its registration.
    let wt = repo_dir.join(".memofab/worktrees/r/t");
    let head = git.branch_head("main").unwrap();
    git.fresh_worktree(&wt, "memofab/r/t", &head).unwrap();
    let common = repo_dir.join(".git").canonicalize().unwrap();
    let sandbox = Sandbox::new(&wt, Policy::protected_only()).unwrap();
    let limits = ToolLimits {
        command_timeout: Duration::from_secs(5),
        output_cap: 4096,
        deny_commands: Vec::new(),
        isolation: Isolation::none().with_git_data(&common),
        max_file_bytes: 1000,
    };
    let tb = ToolBox::new(sandbox, limits);
    let dir = &wt;
    let giant = std::fs::File::create(dir.join("giant.bin")).unwrap();
    giant.set_len(200 << 30).unwrap();
    // A `.git` the agent rewrote to name the user's repository changes nothing.
    std::fs::write(dir.join(".git"), format!("gitdir: {}\n", common.display())).unwrap();
    std::fs::write(dir.join("README.md"), "x".repeat(1001)).unwrap();
    let text = expect_err(tb.call("finish", r#"{"summary": "done"}"#).await);
    assert!(
        text.contains("giant.bin") && text.contains("README.md") && text.contains("1000"),
        "{text}"
    );
    std::fs::remove_file(dir.join("giant.bin")).unwrap();
    std::fs::write(dir.join("README.md"), "small\n").unwrap();
    assert_eq!(
        tb.call("finish", r#"{"summary": "done"}"#).await,
        ToolOutcome::Finish {
            summary: "done".into()
        }
    );
}

/// The tool lists sent to models, per role, as JSON: byte for byte what
/// they were before the tools became one registry. `MEMOFAB_BLESS=1`
/// writes the snapshot anew (only for a change meant to reach models).
#[test]
fn the_tool_specs_sent_to_models_are_unchanged() {
    let lists = serde_json::json!({
        "read_only": ToolBox::specs(ToolSet::ReadOnly),
        "coder": ToolBox::specs(ToolSet::Coder),
        "ask_human": AskHuman::spec(),
        "submit_review": crate::engine::agent::review_tool().spec,
    });
    let text = serde_json::to_string_pretty(&lists).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/engine/tools/specs.snapshot.json");
    if std::env::var_os("MEMOFAB_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(text, std::fs::read_to_string(&path).unwrap());
}

/// File IO runs on a blocking thread: a tool reading a large tree never
/// holds up the runtime the other agents share.
#[tokio::test]
async fn file_work_runs_off_the_async_thread() {
    let (_dir, tb) = toolbox();
    let here = std::thread::current().id();
    let there = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = there.clone();
    tb.blocking(move |_| {
        *seen.lock().unwrap() = Some(std::thread::current().id());
        ok("")
    })
    .await;
    let there = there.lock().unwrap().unwrap();
    assert_ne!(there, here, "the work ran on the async thread");
}
