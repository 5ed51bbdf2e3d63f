//! The git layer against real temporary repositories.

use std::path::Path;
use std::time::Duration;

use memofab::domain::MergeOutcome;
use memofab::effects::git::{Advance, DirtyCheckout, GitError, GitRepo, MergeCandidate, Revert};

fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect()
}

fn seed(dir: &Path) -> GitRepo {
    GitRepo::init_with_files(
        &dir.join("repo"),
        &files(&[
            ("a.txt", "one\ntwo\nthree\n"),
            ("bin/run", "#!/bin/sh\necho hi\n"),
        ]),
        "seed",
    )
    .unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn read_main(git: &GitRepo, path: &str) -> String {
    String::from_utf8(git.read_file_at("main", path).unwrap().unwrap_or_default()).unwrap()
}

#[test]
fn seeded_repo_is_on_main_and_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    assert_eq!(git.current_branch().unwrap(), "main");
    assert!(git.dirty_paths().unwrap().is_empty());
    assert_eq!(git.list_files_at("main").unwrap(), ["a.txt", "bin/run"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(git.root().join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "bin/ files are executable");
    }
    write(git.root(), "new.txt", "x");
    assert_eq!(git.dirty_paths().unwrap(), ["new.txt"]);
    git.ensure_excluded("/new.txt").unwrap();
    git.ensure_excluded("/new.txt").unwrap();
    assert!(git.dirty_paths().unwrap().is_empty());
}

#[test]
fn no_commits_and_detached_head_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    git2::Repository::init(tmp.path().join("empty")).unwrap();
    let empty = GitRepo::open(&tmp.path().join("empty")).unwrap();
    assert!(matches!(empty.current_branch(), Err(GitError::NoCommits)));

    let git = seed(tmp.path());
    let repo = git2::Repository::open(git.root()).unwrap();
    let head = repo.head().unwrap().target().unwrap();
    repo.set_head_detached(head).unwrap();
    assert!(matches!(git.current_branch(), Err(GitError::DetachedHead)));
    assert!(matches!(
        GitRepo::open(&tmp.path().join("nowhere")),
        Err(GitError::NotARepository { .. })
    ));
}

#[test]
fn worktrees_are_idempotent_and_recover_from_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = git.branch_head("main").unwrap();
    let wt = tmp.path().join("wt/t1");
    git.add_worktree(&wt, "memofab/r/t1", &base).unwrap();
    git.add_worktree(&wt, "memofab/r/t1", &base).unwrap();
    write(&wt, "a.txt", "ONE\ntwo\nthree\n");
    let commit = git.commit_all(&wt, "t1").unwrap().unwrap();
    assert_eq!(commit.files, ["a.txt"]);
    assert!(git.commit_all(&wt, "nothing").unwrap().is_none());

    // A crash left the registration but lost the directory.
    std::fs::remove_dir_all(&wt).unwrap();
    git.add_worktree(&wt, "memofab/r/t1", &base).unwrap();
    assert_eq!(
        std::fs::read_to_string(wt.join("a.txt")).unwrap(),
        "ONE\ntwo\nthree\n",
        "the branch is reused"
    );

    // Uncommitted work of an interrupted attempt is discarded by a reset.
    write(&wt, "a.txt", "half done");
    write(&wt, "scratch.txt", "x");
    git.reset_worktree(&wt, &commit.commit).unwrap();
    assert_eq!(
        std::fs::read_to_string(wt.join("a.txt")).unwrap(),
        "ONE\ntwo\nthree\n"
    );
    assert!(!wt.join("scratch.txt").exists());

    git.remove_worktree(&wt).unwrap();
    assert!(!wt.exists());
    assert!(git.branch_exists("memofab/r/t1").unwrap());
}

#[test]
fn a_worktree_killed_while_being_made_is_made_again_from_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let old_base = git.branch_head("main").unwrap();
    let wt = tmp.path().join("wt/t2");
    git.add_worktree(&wt, "memofab/r/t2", &old_base).unwrap();
    // Killed mid-checkout: a file missing, another cut short, a stray one.
    std::fs::remove_file(wt.join("bin/run")).unwrap();
    write(&wt, "a.txt", "");
    write(&wt, "stray.txt", "x");
    // ... and mainline moved on meanwhile.
    let other = tmp.path().join("wt/other");
    git.add_worktree(&other, "other", &old_base).unwrap();
    write(&other, "b.txt", "b\n");
    git.commit_all(&other, "b").unwrap();
    git.merge_into_mainline("main", "other", "merge other")
        .unwrap()
        .unwrap();
    let base = git.branch_head("main").unwrap();

    git.fresh_worktree(&wt, "memofab/r/t2", &base).unwrap();
    assert_eq!(git.branch_head("memofab/r/t2").unwrap(), base);
    assert_eq!(
        std::fs::read_to_string(wt.join("a.txt")).unwrap(),
        "one\ntwo\nthree\n"
    );
    assert!(wt.join("bin/run").exists() && wt.join("b.txt").exists());
    assert!(!wt.join("stray.txt").exists());
    assert!(git.commit_all(&wt, "nothing").unwrap().is_none());

    // Killed while registering: the admin directory exists but is no
    // worktree yet, and the work tree directory never appeared.
    git.remove_worktree(&wt).unwrap();
    let admin = git.root().join(".git/worktrees/memofab-r-t2");
    std::fs::create_dir_all(&admin).unwrap();
    git.add_worktree(&wt, "memofab/r/t2", &base).unwrap();
    assert!(wt.join("a.txt").exists());
}

#[test]
fn a_merged_tasks_worktree_is_moved_to_the_next_task() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = git.branch_head("main").unwrap();
    let first = tmp.path().join("wt/first");
    git.fresh_worktree(&first, "memofab/r/first", &base)
        .unwrap();
    write(&first, "first.txt", "1\n");
    std::fs::remove_file(first.join("bin/run")).unwrap();
    git.commit_all(&first, "first").unwrap().unwrap();
    git.merge_into_mainline("main", "memofab/r/first", "merge first")
        .unwrap()
        .unwrap();
    // Left behind by the first task: build output, ignored by the project.
    write(&first, ".gitignore", "build/\n");
    write(&first, "build/cache.o", "stale");
    // Mainline moves on after `first` merged.
    let other = tmp.path().join("wt/other");
    git.add_worktree(&other, "other", &git.branch_head("main").unwrap())
        .unwrap();
    write(&other, "other.txt", "o\n");
    git.commit_all(&other, "other").unwrap();
    git.merge_into_mainline("main", "other", "merge other")
        .unwrap()
        .unwrap();
    git.remove_worktree(&other).unwrap();
    let base = git.branch_head("main").unwrap();

    let second = tmp.path().join("wt/second");
    git.recycle_worktree(
        &first,
        "memofab/r/first",
        &second,
        "memofab/r/second",
        &base,
    )
    .unwrap();
    assert!(!first.exists());
    assert_eq!(git.branch_head("memofab/r/second").unwrap(), base);
    let repo = git2::Repository::open(&second).unwrap();
    assert_eq!(repo.head().unwrap().shorthand(), Some("memofab/r/second"));
    assert!(second.join("other.txt").exists() && second.join("first.txt").exists());
    assert!(
        !second.join("bin/run").exists(),
        "mainline's tree, not the seed's"
    );
    assert!(
        !second.join("build").exists() && !second.join(".gitignore").exists(),
        "nothing of the last task that is not on its branch"
    );
    assert!(git.commit_all(&second, "nothing").unwrap().is_none());
    write(&second, "second.txt", "2\n");
    let commit = git.commit_all(&second, "second").unwrap().unwrap();
    assert_eq!(commit.files, ["second.txt"]);
    assert_eq!(
        git.branch_head("memofab/r/second").unwrap(),
        commit.commit,
        "commits land on the new branch"
    );
    // The old branch is free again, and the moved worktree is a normal one.
    git.fresh_worktree(&tmp.path().join("wt/again"), "memofab/r/first", &base)
        .unwrap();
    git.remove_worktree(&second).unwrap();
    assert!(!second.exists());
    assert!(
        git.recycle_worktree(&second, "memofab/r/second", &first, "x", &base)
            .is_err(),
        "no worktree left to move"
    );
}

#[test]
fn deletions_are_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = git.branch_head("main").unwrap();
    let wt = tmp.path().join("wt/del");
    git.add_worktree(&wt, "memofab/r/del", &base).unwrap();
    std::fs::remove_file(wt.join("a.txt")).unwrap();
    let c = git.commit_all(&wt, "delete").unwrap().unwrap();
    assert_eq!(c.files, ["a.txt"]);
    let (diff, paths) = git.diff(&base, "memofab/r/del").unwrap();
    assert_eq!(paths, ["a.txt"]);
    assert!(diff.contains("-one"), "{diff}");
}

#[test]
fn merges_fast_forward_then_merge_commit_and_update_the_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = git.branch_head("main").unwrap();
    let (w1, w2) = (tmp.path().join("wt/1"), tmp.path().join("wt/2"));
    git.add_worktree(&w1, "b1", &base).unwrap();
    git.add_worktree(&w2, "b2", &base).unwrap();
    write(&w1, "one.txt", "1");
    write(&w2, "two.txt", "2");
    git.commit_all(&w1, "one").unwrap();
    git.commit_all(&w2, "two").unwrap();

    let first = git.merge_into_mainline("main", "b1", "merge b1").unwrap();
    assert!(matches!(first, Ok(MergeOutcome::FastForward { .. })));
    let second = git.merge_into_mainline("main", "b2", "merge b2").unwrap();
    assert!(matches!(second, Ok(MergeOutcome::MergeCommit { .. })));
    assert_eq!(read_main(&git, "one.txt"), "1");
    assert_eq!(read_main(&git, "two.txt"), "2");
    // The user's checkout follows mainline and stays clean.
    assert_eq!(
        std::fs::read_to_string(git.root().join("two.txt")).unwrap(),
        "2"
    );
    assert!(git.dirty_paths().unwrap().is_empty());
    // Merging again changes nothing.
    let again = git.merge_into_mainline("main", "b2", "again").unwrap();
    assert_eq!(
        again,
        Ok(MergeOutcome::FastForward {
            commit: git.branch_head("main").unwrap()
        })
    );
}

#[test]
fn conflicts_leave_mainline_alone_and_are_resolved_in_the_worktree() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = git.branch_head("main").unwrap();
    let (w1, w2) = (tmp.path().join("wt/1"), tmp.path().join("wt/2"));
    git.add_worktree(&w1, "b1", &base).unwrap();
    git.add_worktree(&w2, "b2", &base).unwrap();
    write(&w1, "a.txt", "one\nTWO from b1\nthree\n");
    write(&w2, "a.txt", "one\nTWO from b2\nthree\n");
    git.commit_all(&w1, "b1").unwrap();
    git.commit_all(&w2, "b2").unwrap();
    git.merge_into_mainline("main", "b1", "merge b1")
        .unwrap()
        .unwrap();
    let head = git.branch_head("main").unwrap();

    let outcome = git.merge_into_mainline("main", "b2", "merge b2").unwrap();
    assert_eq!(
        outcome,
        Ok(MergeOutcome::Conflict {
            files: vec!["a.txt".into()]
        })
    );
    assert_eq!(git.branch_head("main").unwrap(), head, "mainline untouched");

    let conflicted = git.merge_mainline_into_worktree(&w2, "main").unwrap();
    assert_eq!(conflicted, ["a.txt"]);
    let marked = std::fs::read_to_string(w2.join("a.txt")).unwrap();
    assert!(
        marked.contains("<<<<<<<") && marked.contains(">>>>>>>"),
        "{marked}"
    );
    assert!(marked.contains("TWO from b1") && marked.contains("TWO from b2"));

    write(&w2, "a.txt", "one\nTWO from b1 and b2\nthree\n");
    let resolved = git.commit_all(&w2, "resolve").unwrap().unwrap();
    let repo = git2::Repository::open(git.root()).unwrap();
    let commit = repo
        .find_commit(git2::Oid::from_str(&resolved.commit).unwrap())
        .unwrap();
    assert_eq!(commit.parent_count(), 2, "a merge commit");

    let merged = git.merge_into_mainline("main", "b2", "merge b2").unwrap();
    assert!(matches!(merged, Ok(MergeOutcome::FastForward { .. })));
    assert_eq!(read_main(&git, "a.txt"), "one\nTWO from b1 and b2\nthree\n");
}

/// `git status --porcelain` in `dir`: what the user would see.
fn porcelain(dir: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A task branch `b1` that changes `a.txt` and adds `new.txt`.
fn branch_changing_a(git: &GitRepo, tmp: &Path) -> String {
    let base = git.branch_head("main").unwrap();
    let w = tmp.join("wt/1");
    git.add_worktree(&w, "b1", &base).unwrap();
    write(&w, "a.txt", "from the agent\n");
    write(&w, "new.txt", "added by the agent\n");
    git.commit_all(&w, "b1").unwrap();
    base
}

#[test]
fn a_dirty_checkout_holds_mainline_where_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = branch_changing_a(&git, tmp.path());
    // The user edits a file the merge does not touch: still no move, or
    // their `git status` would mix their edit with the merge.
    write(git.root(), "bin/run", "#!/bin/sh\necho edited\n");
    let held = git.merge_into_mainline("main", "b1", "merge").unwrap();
    assert_eq!(
        held,
        Err(DirtyCheckout {
            files: vec!["bin/run".into()]
        })
    );
    assert_eq!(
        git.branch_head("main").unwrap(),
        base,
        "mainline did not move"
    );
    assert_eq!(
        porcelain(git.root()),
        " M bin/run\n",
        "only the user's edit"
    );
    assert_eq!(
        std::fs::read_to_string(git.root().join("bin/run")).unwrap(),
        "#!/bin/sh\necho edited\n"
    );

    // Staged changes hold it too.
    git2::Repository::open(git.root())
        .unwrap()
        .index()
        .and_then(|mut i| {
            i.add_path(Path::new("bin/run"))?;
            i.write()
        })
        .unwrap();
    assert!(
        git.merge_into_mainline("main", "b1", "merge")
            .unwrap()
            .is_err()
    );

    // Committed, the landing goes through, checkout and all.
    std::process::Command::new("git")
        .args([
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@u",
            "commit",
            "-qam",
            "mine",
        ])
        .current_dir(git.root())
        .status()
        .unwrap();
    let landed = git.merge_into_mainline("main", "b1", "merge").unwrap();
    assert!(matches!(landed, Ok(MergeOutcome::MergeCommit { .. })));
    assert_eq!(porcelain(git.root()), "");
    assert_eq!(
        std::fs::read_to_string(git.root().join("new.txt")).unwrap(),
        "added by the agent\n"
    );
}

#[test]
fn an_untracked_file_in_the_way_holds_mainline_and_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = branch_changing_a(&git, tmp.path());
    write(git.root(), "new.txt", "the user's own new.txt\n");
    let held = git.merge_into_mainline("main", "b1", "merge").unwrap();
    assert_eq!(
        held,
        Err(DirtyCheckout {
            files: vec!["new.txt".into()]
        })
    );
    assert_eq!(git.branch_head("main").unwrap(), base);
    assert_eq!(
        std::fs::read_to_string(git.root().join("new.txt")).unwrap(),
        "the user's own new.txt\n"
    );
    assert_eq!(
        std::fs::read_to_string(git.root().join("a.txt")).unwrap(),
        "one\ntwo\nthree\n",
        "nothing was half checked out"
    );
    // An untracked file out of the way does not matter.
    std::fs::rename(git.root().join("new.txt"), git.root().join("mine.txt")).unwrap();
    assert!(
        git.merge_into_mainline("main", "b1", "merge")
            .unwrap()
            .is_ok()
    );
    assert_eq!(porcelain(git.root()), "?? mine.txt\n");
}

/// A seeded repository with `b1` changing a.txt, and its clean merge onto
/// main: (the repository, where main is, the merge to land).
fn landing_of_a(dir: &Path) -> (GitRepo, String, String) {
    let git = seed(dir);
    branch_changing_a(&git, dir);
    let MergeCandidate::Ready { onto, commit } = git.merge_candidate("main", "b1", "m").unwrap()
    else {
        panic!("a clean merge");
    };
    (git, onto, commit)
}

#[test]
fn a_clean_checkout_follows_every_landing_and_a_dirty_one_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (git, onto, commit) = landing_of_a(tmp.path());
    write(git.root(), "a.txt", "the human's unsaved work\n");
    let Advance::Blocked(held) = git.advance_mainline("main", &onto, &commit).unwrap() else {
        panic!("a dirty checkout holds the landing");
    };
    assert_eq!(held.files, ["a.txt"]);
    assert_eq!(git.branch_head("main").unwrap(), onto);
    assert_eq!(porcelain(git.root()), " M a.txt\n");

    // Stashed, the same landing goes through.
    write(git.root(), "a.txt", "one\ntwo\nthree\n");
    assert_eq!(
        git.advance_mainline("main", &onto, &commit).unwrap(),
        Advance::Moved
    );
    assert_eq!(git.branch_head("main").unwrap(), commit);
    assert_eq!(porcelain(git.root()), "");
    assert_eq!(
        std::fs::read_to_string(git.root().join("a.txt")).unwrap(),
        "from the agent\n"
    );

    // A revert is a landing too.
    write(git.root(), "README", "notes\n");
    git2::Repository::open(git.root())
        .unwrap()
        .index()
        .and_then(|mut i| {
            i.add_path(Path::new("README"))?;
            i.write()
        })
        .unwrap();
    let Revert::Blocked(held) = git.revert_on_mainline("main", &commit, "revert").unwrap() else {
        panic!("a staged file holds the revert");
    };
    assert_eq!(held.files, ["README"]);
    assert_eq!(git.branch_head("main").unwrap(), commit);
}

#[test]
fn a_landing_killed_while_writing_its_files_is_finished_not_blamed_on_the_human() {
    let tmp = tempfile::tempdir().unwrap();
    let (git, onto, commit) = landing_of_a(tmp.path());
    // What a kill leaves: the landing's file written whole, or cut off
    // (empty, or the start of it), the branch not moved.
    for left in ["from the agent\n", "", "from th"] {
        write(git.root(), "a.txt", left);
        assert_eq!(
            git.advance_mainline("main", &onto, &commit).unwrap(),
            Advance::Moved,
            "{left:?}"
        );
        assert_eq!(git.branch_head("main").unwrap(), commit);
        assert_eq!(porcelain(git.root()), "");
        assert_eq!(
            std::fs::read_to_string(git.root().join("a.txt")).unwrap(),
            "from the agent\n"
        );
        // Back to before the landing, for the next case.
        let repo = git2::Repository::open(git.root()).unwrap();
        let at = repo
            .find_object(git2::Oid::from_str(&onto).unwrap(), None)
            .unwrap();
        repo.reset(&at, git2::ResetType::Hard, None).unwrap();
    }
    // Anything else in the file is the human's: held.
    write(git.root(), "a.txt", "from the human\n");
    assert!(matches!(
        git.advance_mainline("main", &onto, &commit).unwrap(),
        Advance::Blocked(_)
    ));
    assert_eq!(git.branch_head("main").unwrap(), onto);
}

/// What stands in a landing's path is looked at, never followed or waited
/// on: a link to an endless device (a tree landed earlier may hold a link
/// an agent committed) or a FIFO is held as not the landing's, at once.
#[test]
fn a_link_or_fifo_in_a_landings_path_is_not_followed_or_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (git, onto, commit) = landing_of_a(tmp.path());
    let at = git.root().join("a.txt");
    for name in ["a link to /dev/zero", "a FIFO"] {
        let _ = std::fs::remove_file(&at);
        if name == "a FIFO" {
            let made = std::process::Command::new("mkfifo").arg(&at).status();
            assert!(made.unwrap().success());
        } else {
            std::os::unix::fs::symlink("/dev/zero", &at).unwrap();
        }
        let (sent, got) = std::sync::mpsc::channel();
        let (g, o, c) = (git.clone(), onto.clone(), commit.clone());
        std::thread::spawn(move || {
            let _ = sent.send(
                g.advance_mainline("main", &o, &c)
                    .map(|a| matches!(a, Advance::Blocked(_))),
            );
        });
        let held = got
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name}: still reading after 30 s"));
        assert!(held.unwrap(), "{name}: not held");
        assert_eq!(git.branch_head("main").unwrap(), onto, "{name}");
    }
}

#[test]
fn a_merge_candidate_moves_mainline_only_when_landed_and_only_from_where_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = git.branch_head("main").unwrap();
    let w1 = tmp.path().join("wt/1");
    git.add_worktree(&w1, "b1", &base).unwrap();
    write(&w1, "one.txt", "1");
    git.commit_all(&w1, "one").unwrap();

    // Computed, even where mainline could fast-forward, as a merge commit on
    // no branch: mainline and the checkout stay where they were.
    let MergeCandidate::Ready { onto, commit } =
        git.merge_candidate("main", "b1", "merge b1").unwrap()
    else {
        panic!("a clean merge");
    };
    assert_eq!(onto, base);
    assert_eq!(git.branch_head("main").unwrap(), base);
    assert_eq!(git.log_messages(&commit, 1).unwrap(), ["merge b1"]);
    assert!(!git.root().join("one.txt").exists());

    // Checked out, detached, in a scratch worktree that is reused.
    let scratch = tmp.path().join("wt/.verify");
    git.check_out_scratch(&scratch, "memofab-verify/r", &commit)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(scratch.join("one.txt")).unwrap(),
        "1"
    );
    write(&scratch, "leftover.txt", "from the last check");
    git.check_out_scratch(&scratch, "memofab-verify/r", &base)
        .unwrap();
    assert!(!scratch.join("one.txt").exists());
    assert!(!scratch.join("leftover.txt").exists());

    // Landing is compare-and-swap: refused once mainline moved.
    assert_eq!(
        git.advance_mainline("main", &commit, &commit).unwrap(),
        Advance::Raced
    );
    assert_eq!(
        git.advance_mainline("main", &onto, &commit).unwrap(),
        Advance::Moved
    );
    assert_eq!(git.branch_head("main").unwrap(), commit);
    assert_eq!(read_main(&git, "one.txt"), "1");
    assert!(git.root().join("one.txt").exists(), "the checkout followed");
    assert!(git.dirty_paths().unwrap().is_empty());

    // A landed branch is recognised, not merged again, even under later
    // merges: the commit that landed it is named, not mainline's head.
    let w2 = tmp.path().join("wt/2");
    git.add_worktree(&w2, "b2", &base).unwrap();
    write(&w2, "two.txt", "2");
    git.commit_all(&w2, "two").unwrap();
    let MergeCandidate::Ready {
        onto: o2,
        commit: c2,
    } = git.merge_candidate("main", "b2", "merge b2").unwrap()
    else {
        panic!("a clean merge");
    };
    assert_eq!(
        git.advance_mainline("main", &o2, &c2).unwrap(),
        Advance::Moved
    );
    assert_eq!(
        git.merge_candidate("main", "b1", "again").unwrap(),
        MergeCandidate::Landed { commit }
    );
    assert_eq!(
        git.merge_candidate("main", "b2", "again").unwrap(),
        MergeCandidate::Landed { commit: c2 }
    );
}

#[test]
fn a_landed_merge_is_reverted_on_top_and_its_change_put_back_on_the_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let git = seed(tmp.path());
    let base = git.branch_head("main").unwrap();
    let w1 = tmp.path().join("wt/1");
    git.add_worktree(&w1, "b1", &base).unwrap();
    write(&w1, "bad.txt", "bad");
    git.commit_all(&w1, "bad").unwrap();
    let MergeCandidate::Ready { onto, commit } = git.merge_candidate("main", "b1", "m").unwrap()
    else {
        panic!("a clean merge");
    };
    assert_eq!(
        git.advance_mainline("main", &onto, &commit).unwrap(),
        Advance::Moved
    );

    let Revert::Reverted(revert) = git
        .revert_on_mainline("main", &commit, "Revert b1: post-merge check failed")
        .unwrap()
    else {
        panic!("nothing landed after it");
    };
    assert_eq!(git.branch_head("main").unwrap(), revert);
    assert!(git.read_file_at("main", "bad.txt").unwrap().is_none());
    assert!(
        !git.root().join("bad.txt").exists(),
        "the checkout followed"
    );
    assert_eq!(git.diff(&base, &revert).unwrap().1, Vec::<String>::new());

    // The branch gets the change back on top of the revert, so merging it
    // again brings the change (not nothing).
    let reapplied = git
        .reapply_on_branch("b1", &commit, &revert, "reapply")
        .unwrap();
    assert_eq!(git.branch_head("b1").unwrap(), reapplied);
    assert_eq!(git.diff("main", "b1").unwrap().1, ["bad.txt"]);
    assert!(matches!(
        git.merge_candidate("main", "b1", "m2").unwrap(),
        MergeCandidate::Ready { .. }
    ));
}

/// A task worktree under the repository's `.memofab/worktrees/`, where the
/// engine makes them, at a commit that has the tester's `tests/accept.sh`
/// (executable); and a directory outside holding the factory's config.
#[cfg(unix)]
fn worktree_with_tests(tmp: &Path) -> (GitRepo, std::path::PathBuf, String, std::path::PathBuf) {
    let git = seed(tmp);
    let base = git.branch_head("main").unwrap();
    let wt = git.root().join(".memofab/worktrees/r/t");
    git.add_worktree(&wt, "memofab/r/t", &base).unwrap();
    write(&wt, "tests/accept.sh", "#!/bin/sh\nexit 1\n");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            wt.join("tests/accept.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let tests = git.commit_all(&wt, "tester").unwrap().unwrap().commit;
    let outside = tmp.join("factory");
    write(&outside, "config.toml", "isolation = \"landlock\"\n");
    (git, wt, tests, outside)
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            out.extend(snapshot(&entry.path()));
        } else {
            out.push((
                entry.path(),
                std::fs::read(entry.path()).unwrap_or_default(),
            ));
        }
    }
    out.sort();
    out
}

/// The coder replaced `tests/` with a link to the factory's directory; the
/// put-back of the tester's files removes the link and writes inside.
#[cfg(unix)]
#[test]
fn testers_files_are_put_back_inside_never_through_a_planted_link() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (git, wt, tests, outside) = worktree_with_tests(tmp.path());
    let before = snapshot(&outside);
    std::fs::remove_dir_all(wt.join("tests")).unwrap();
    std::os::unix::fs::symlink(&outside, wt.join("tests")).unwrap();
    let files = ["tests/accept.sh".to_owned(), "tests/config.toml".to_owned()];

    let restored = git.restore_files(&wt, &tests, &files).unwrap();

    assert_eq!(
        snapshot(&outside),
        before,
        "nothing written or removed outside"
    );
    assert!(
        std::fs::symlink_metadata(wt.join("tests"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        std::fs::read_to_string(wt.join("tests/accept.sh")).unwrap(),
        "#!/bin/sh\nexit 1\n"
    );
    let mode = std::fs::metadata(wt.join("tests/accept.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "executable, as committed");
    assert_eq!(restored, ["tests/accept.sh"]);

    // A link at the file itself, and one at a file the commit does not have.
    std::fs::remove_file(wt.join("tests/accept.sh")).unwrap();
    std::os::unix::fs::symlink(outside.join("config.toml"), wt.join("tests/accept.sh")).unwrap();
    std::os::unix::fs::symlink(outside.join("config.toml"), wt.join("tests/config.toml")).unwrap();
    git.restore_files(&wt, &tests, &files).unwrap();
    assert_eq!(snapshot(&outside), before);
    assert!(std::fs::symlink_metadata(wt.join("tests/config.toml")).is_err());
    assert!(
        std::fs::symlink_metadata(wt.join("tests/accept.sh"))
            .unwrap()
            .is_file()
    );
}

/// libgit2's own checkouts (reset, the scratch checkout, recycling, merging
/// mainline in) meet a link the agent planted where the tree has a directory.
#[cfg(unix)]
#[test]
fn checkouts_never_write_through_a_planted_link() {
    let tmp = tempfile::tempdir().unwrap();
    let (git, wt, tests, outside) = worktree_with_tests(tmp.path());
    let before = snapshot(&outside);
    let plant = |dir: &Path| {
        let _ = std::fs::remove_dir_all(dir.join("tests"));
        std::os::unix::fs::symlink(&outside, dir.join("tests")).unwrap();
    };
    let inside = |dir: &Path| {
        assert!(
            std::fs::symlink_metadata(dir.join("tests"))
                .unwrap()
                .is_dir()
        );
        assert!(dir.join("tests/accept.sh").is_file());
    };

    // Reset (a resumed attempt) to the commit with the tests.
    plant(&wt);
    git.reset_worktree(&wt, &tests).unwrap();
    assert_eq!(snapshot(&outside), before, "reset");
    inside(&wt);
    // A link where the tree has a file.
    std::fs::remove_file(wt.join("tests/accept.sh")).unwrap();
    std::os::unix::fs::symlink(outside.join("config.toml"), wt.join("tests/accept.sh")).unwrap();
    git.reset_worktree(&wt, &tests).unwrap();
    assert_eq!(snapshot(&outside), before, "reset over a linked file");
    inside(&wt);

    // The scratch worktree's checkout of a candidate.
    let scratch = git.root().join(".memofab/worktrees/r/.verify");
    git.check_out_scratch(&scratch, "memofab/r/verify", &tests)
        .unwrap();
    plant(&scratch);
    git.check_out_scratch(&scratch, "memofab/r/verify", &tests)
        .unwrap();
    assert_eq!(snapshot(&outside), before, "scratch");
    inside(&scratch);

    // Mainline gains the tests; a worktree without them merges it in.
    git.merge_into_mainline("main", "memofab/r/t", "land")
        .unwrap()
        .unwrap();
    let base = git.branch_head("main").unwrap();
    let old = git.root().join(".memofab/worktrees/r/old");
    git.add_worktree(
        &old,
        "memofab/r/old",
        &git.merge_base("main", "memofab/r/t").unwrap(),
    )
    .unwrap();
    write(&old, "other.txt", "o\n");
    git.commit_all(&old, "other").unwrap();
    let lagging = git.branch_head("memofab/r/old").unwrap();
    plant(&old);
    let merged = git.merge_mainline_into_worktree(&old, "main");
    assert_eq!(snapshot(&outside), before, "merge: {merged:?}");

    // A finished task's worktree recycled onto mainline.
    git.reset_worktree(&old, &lagging).unwrap();
    plant(&old);
    let next = git.root().join(".memofab/worktrees/r/next");
    git.recycle_worktree(&old, "memofab/r/old", &next, "memofab/r/next", &base)
        .unwrap();
    assert_eq!(snapshot(&outside), before, "recycle");
    inside(&next);

    // Removing worktrees with links in them removes the links only.
    plant(&next);
    std::os::unix::fs::symlink(outside.join("config.toml"), next.join("cfg")).unwrap();
    git.remove_worktree(&next).unwrap();
    git.remove_worktree(&wt).unwrap();
    assert!(!next.exists() && !wt.exists());
    assert_eq!(snapshot(&outside), before, "remove");
}

/// Untracked files of an interrupted attempt go on reset; a link among them
/// goes itself, its target stays.
#[cfg(unix)]
#[test]
fn reset_removes_planted_links_not_their_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let (git, wt, tests, outside) = worktree_with_tests(tmp.path());
    let before = snapshot(&outside);
    std::os::unix::fs::symlink(outside.join("config.toml"), wt.join("cfg")).unwrap();
    std::os::unix::fs::symlink(&outside, wt.join("dir-link")).unwrap();
    write(&wt, "new/file.txt", "x");
    git.reset_worktree(&wt, &tests).unwrap();
    assert_eq!(snapshot(&outside), before);
    for gone in ["cfg", "dir-link", "new/file.txt"] {
        assert!(std::fs::symlink_metadata(wt.join(gone)).is_err(), "{gone}");
    }
}
