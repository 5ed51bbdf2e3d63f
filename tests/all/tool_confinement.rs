//! Agents' tools cannot leave their worktree or touch protected paths, and
//! what they are refused is explained to them.

use std::time::Duration;

use memofab::domain::policy::Policy;
use memofab::effects::file_fence::Sandbox;
use memofab::engine::tools::{ToolBox, ToolLimits, ToolOutcome};

fn toolbox(root: &std::path::Path) -> ToolBox {
    let limits = ToolLimits {
        command_timeout: Duration::from_secs(5),
        output_cap: 4096,
        deny_commands: vec![],
        isolation: memofab::effects::process::Isolation::none(),
        max_file_bytes: memofab::effects::git::DEFAULT_MAX_FILE_BYTES,
    };
    ToolBox::new(
        Sandbox::new(root, Policy::protected_only()).unwrap(),
        limits,
    )
}

async fn refused(tb: &ToolBox, tool: &str, args: &str) -> String {
    match tb.call(tool, args).await {
        ToolOutcome::Output { ok: false, text } => text,
        other => panic!("{tool} {args} was allowed: {other:?}"),
    }
}

#[tokio::test]
async fn paths_out_of_the_worktree_are_refused() {
    let worktree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "top secret").unwrap();
    std::fs::write(worktree.path().parent().unwrap().join("x"), "sibling").ok();
    let tb = toolbox(worktree.path());

    assert!(
        refused(&tb, "read_file", r#"{"path": "../x"}"#)
            .await
            .contains("outside the repository")
    );
    assert!(
        refused(&tb, "read_file", r#"{"path": "/etc/passwd"}"#)
            .await
            .contains("absolute path")
    );
    assert!(
        refused(
            &tb,
            "write_file",
            r#"{"path": "../escape.txt", "content": "x"}"#
        )
        .await
        .contains("outside")
    );
    assert!(
        !worktree
            .path()
            .parent()
            .unwrap()
            .join("escape.txt")
            .exists()
    );
    assert!(
        refused(&tb, "list_files", r#"{"path": "../"}"#)
            .await
            .contains("outside")
    );
    assert!(
        refused(&tb, "search", r#"{"pattern": "secret", "path": "/"}"#)
            .await
            .contains("absolute")
    );
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_pointing_outside_are_refused() {
    let worktree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "top secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), worktree.path().join("link"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), worktree.path().join("dir")).unwrap();
    let tb = toolbox(worktree.path());

    assert!(
        refused(&tb, "read_file", r#"{"path": "link"}"#)
            .await
            .contains("symbolic link")
    );
    assert!(
        refused(&tb, "read_file", r#"{"path": "dir/secret"}"#)
            .await
            .contains("symbolic link")
    );
    assert!(
        refused(
            &tb,
            "write_file",
            r#"{"path": "dir/planted", "content": "x"}"#
        )
        .await
        .contains("symbolic link")
    );
    assert!(
        refused(
            &tb,
            "edit_file",
            r#"{"path": "link", "old": "top", "new": "no"}"#
        )
        .await
        .contains("symbolic link")
    );
    assert!(!outside.path().join("planted").exists());
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "top secret"
    );
}

#[tokio::test]
async fn factory_definitions_and_git_are_off_limits() {
    let worktree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(worktree.path().join("prompts")).unwrap();
    std::fs::write(worktree.path().join("prompts/coder.md"), "be good").unwrap();
    std::fs::create_dir_all(worktree.path().join(".git")).unwrap();
    let tb = toolbox(worktree.path());

    assert!(
        refused(
            &tb,
            "write_file",
            r#"{"path": ".memofab/policy.toml", "content": "x"}"#
        )
        .await
        .contains(".memofab")
    );
    assert!(
        refused(
            &tb,
            "edit_file",
            r#"{"path": "prompts/coder.md", "old": "good", "new": "evil"}"#
        )
        .await
        .contains("not allowed")
    );
    assert!(
        refused(&tb, "read_file", r#"{"path": ".git/config"}"#)
            .await
            .contains(".git")
    );
    assert_eq!(
        std::fs::read_to_string(worktree.path().join("prompts/coder.md")).unwrap(),
        "be good"
    );
    assert!(!worktree.path().join(".memofab").exists());
}

/// A hard link's other name may be anywhere: its content is never returned,
/// by read_file or by search.
#[cfg(unix)]
#[tokio::test]
async fn hard_links_to_outside_files_are_never_read() {
    let worktree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "hardlinked secret").unwrap();
    if std::fs::hard_link(outside.path().join("secret"), worktree.path().join("twin")).is_err() {
        eprintln!("skipping: temp dirs on different file systems");
        return;
    }
    let tb = toolbox(worktree.path());
    let read = refused(&tb, "read_file", r#"{"path": "twin"}"#).await;
    assert!(!read.contains("hardlinked secret"));
    match tb.call("search", r#"{"pattern": "hardlinked"}"#).await {
        ToolOutcome::Output { text, .. } => assert!(!text.contains("hardlinked secret"), "{text}"),
        other => panic!("{other:?}"),
    }
}

/// `.git` and `.memofab` in any letter case: not read, not listed, not written.
#[tokio::test]
async fn protected_names_in_any_case_are_off_limits() {
    let worktree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(worktree.path().join(".memofab")).unwrap();
    std::fs::write(worktree.path().join(".memofab/memofab.log"), "transcripts").unwrap();
    std::fs::write(worktree.path().join("ok.txt"), "fine").unwrap();
    let tb = toolbox(worktree.path());
    for path in [".memofab/memofab.log", ".MEMOFAB/memofab.log", ".Memofab"] {
        refused(&tb, "read_file", &format!(r#"{{"path": "{path}"}}"#)).await;
        refused(&tb, "list_files", &format!(r#"{{"path": "{path}"}}"#)).await;
    }
    refused(
        &tb,
        "write_file",
        r#"{"path": ".GIT/hooks/post-commit", "content": "x"}"#,
    )
    .await;
    assert!(!worktree.path().join(".GIT").exists());
    match tb.call("list_files", r#"{"recursive": true}"#).await {
        ToolOutcome::Output { ok: true, text } => {
            assert!(
                text.contains("ok.txt") && !text.contains("memofab.log"),
                "{text}"
            )
        }
        other => panic!("{other:?}"),
    }
    match tb.call("search", r#"{"pattern": "transcripts"}"#).await {
        ToolOutcome::Output { text, .. } => assert!(!text.contains(".memofab"), "{text}"),
        other => panic!("{other:?}"),
    }
}

/// Writes follow no link at all, even one that stays inside (the tools
/// write at the path as named, beneath the worktree); reads may go through
/// a link inside, resolved beneath it. A FIFO is refused, not waited on.
#[cfg(unix)]
#[tokio::test]
async fn writes_follow_no_link_and_a_fifo_never_blocks() {
    let worktree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(worktree.path().join("src")).unwrap();
    std::fs::write(worktree.path().join("src/lib.rs"), "fn lib() {}\n").unwrap();
    std::os::unix::fs::symlink("src", worktree.path().join("alias")).unwrap();
    std::os::unix::fs::symlink("src/lib.rs", worktree.path().join("lib-link.rs")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        worktree.path().join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let tb = toolbox(worktree.path());

    for (tool, args) in [
        ("write_file", r#"{"path": "alias/lib.rs", "content": "x"}"#),
        ("write_file", r#"{"path": "lib-link.rs", "content": "x"}"#),
        ("write_file", r#"{"path": "alias/new.rs", "content": "x"}"#),
        (
            "edit_file",
            r#"{"path": "lib-link.rs", "old": "lib", "new": "evil"}"#,
        ),
    ] {
        assert!(
            refused(&tb, tool, args).await.contains("symbolic link"),
            "{tool} {args}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(worktree.path().join("src/lib.rs")).unwrap(),
        "fn lib() {}\n"
    );
    assert!(!worktree.path().join("src/new.rs").exists());
    assert!(
        std::fs::symlink_metadata(worktree.path().join("lib-link.rs"))
            .unwrap()
            .is_symlink()
    );
    match tb.call("read_file", r#"{"path": "alias/lib.rs"}"#).await {
        ToolOutcome::Output { ok: true, text } => assert!(text.contains("fn lib")),
        other => panic!("{other:?}"),
    }

    // Each would block for good on a FIFO opened without O_NONBLOCK: they
    // run on a thread of their own, so a hang fails the test.
    let tb = std::sync::Arc::new(tb);
    let (sender, results) = std::sync::mpsc::channel();
    let calls = tb.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let read = refused(&calls, "read_file", r#"{"path": "pipe"}"#).await;
            let edit = refused(
                &calls,
                "edit_file",
                r#"{"path": "pipe", "old": "a", "new": "b"}"#,
            )
            .await;
            let search = calls.call("search", r#"{"pattern": "lib"}"#).await;
            sender.send((read, edit, search)).unwrap();
        });
    });
    let (read, edit, search) = results
        .recv_timeout(Duration::from_secs(20))
        .expect("a FIFO blocked the file tools");
    assert!(read.contains("not a regular file"), "{read}");
    assert!(edit.contains("not a regular file"), "{edit}");
    assert!(matches!(search, ToolOutcome::Output { ok: true, .. }));
}
