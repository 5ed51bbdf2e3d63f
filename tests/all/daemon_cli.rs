//! The daemon's command line as a newcomer meets it, the real binary on a
//! temp MEMOFAB_HOME: registering and unregistering repositories,
//! submitting by name, and what each command does with bad input (exit
//! code, queue untouched).

use crate::support::{daemon, factory};

use daemon::Home;
use factory::demo_repo;

fn repo_names(home: &Home) -> Vec<String> {
    memofab::effects::queue::Queue::open(&home.path().join("queue.sqlite"))
        .unwrap()
        .repos()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn repo_remove_unregisters_by_name_and_by_path() {
    let home = Home::new();
    let (shop, blog) = (demo_repo(), demo_repo());
    for (demo, name) in [(&shop, "shop"), (&blog, "blog")] {
        let path = demo.repo.to_str().unwrap();
        let out = home.memofab(&demo.repo, &["repo", "add", path, "--name", name]);
        assert!(out.status.success(), "{out:?}");
    }

    let out = home.memofab(&shop.repo, &["repo", "remove", "shop"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(repo_names(&home), ["blog"]);

    let out = home.memofab(&shop.repo, &["repo", "remove", blog.repo.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(repo_names(&home).is_empty());

    let out = home.memofab(&shop.repo, &["repo", "remove", "shop"]);
    assert_eq!(out.status.code(), Some(1), "unknown now: {out:?}");
}

#[test]
fn submit_takes_a_registered_name_and_refuses_what_no_run_would_take() {
    let home = Home::new();
    let shop = demo_repo();
    let out = home.memofab(
        &shop.repo,
        &["repo", "add", shop.repo.to_str().unwrap(), "--name", "shop"],
    );
    assert!(out.status.success(), "{out:?}");
    let elsewhere = tempfile::tempdir().unwrap();

    // By name, from a directory that is no repository.
    let out = home.memofab(
        elsewhere.path(),
        &[
            "submit",
            "--repo",
            "shop",
            "--requirement-text",
            "Add CSV export",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(home.entries().len(), 1);

    // One line longer than the repository's runs accept: refused, nothing
    // queued, and the line is not echoed whole.
    let long = elsewhere.path().join("long.md");
    std::fs::write(&long, "Add x. ".repeat(50_000)).unwrap();
    let out = home.memofab(
        elsewhere.path(),
        &[
            "submit",
            "--repo",
            "shop",
            "--requirement",
            long.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.len() + out.stderr.len() < 1_000, "{out:?}");
    assert_eq!(home.entries().len(), 1);

    // Within the limit but on one long line: queued, echoed as a title.
    std::fs::write(&long, "Add x. ".repeat(10_000)).unwrap();
    let out = home.memofab(
        elsewhere.path(),
        &[
            "submit",
            "--repo",
            "shop",
            "--requirement",
            long.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.len() < 1_000,
        "{} bytes echoed",
        out.stdout.len()
    );
    assert_eq!(home.entries().len(), 2);

    for bad in [
        vec!["submit", "--repo", "nowhere", "--requirement-text", "x"],
        vec!["submit", "--repo", "shop", "--requirement-text", "  "],
        vec![
            "submit",
            "--repo",
            "shop",
            "--requirement",
            "/nonexistent/req.md",
        ],
        vec!["submit", "--repo", "shop"],
    ] {
        let out = home.memofab(elsewhere.path(), &bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {out:?}");
    }
    assert_eq!(home.entries().len(), 2, "no bad submission queued anything");
}

#[test]
fn queue_says_what_a_running_entry_waits_for_and_its_command_decides_it() {
    use memofab::domain::queue::ItemState;
    let home = Home::new();
    let (gated, _daemon, _run) = home.run_at_gate();

    let out = home.memofab(&gated.repo, &["queue"]);
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8(out.stdout).unwrap();
    let command = listing
        .lines()
        .find(|l| l.contains("at the gate"))
        .and_then(|l| l.split('`').nth(1))
        .unwrap_or_else(|| panic!("no gate in the listing:\n{listing}"));
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = home.memofab(elsewhere.path(), &args);
    assert!(out.status.success(), "{command}: {out:?}");
    daemon::wait_for("the entry done", || {
        let entries = home.entries();
        (entries[0].state == ItemState::Done).then_some(())
    });
}

#[test]
fn a_failed_entry_says_why_its_task_failed() {
    use memofab::domain::queue::ItemState;
    let home = Home::new();
    let (gated, _daemon, run) = home.run_at_gate();
    // Rejected, the task goes back to a coder the scenario has no script
    // for: it fails, and the run finishes with nothing merged.
    let out = home.memofab(
        &gated.repo,
        &["reject", run.as_str(), "note", "--reason", "shorter"],
    );
    assert!(out.status.success(), "{out:?}");
    let entry = daemon::wait_for("the entry over", || {
        home.entries().into_iter().find(|e| !e.state.is_open())
    });
    assert_eq!(entry.state, ItemState::Failed);
    let state = factory::fold(&factory::stored_events(&gated.repo, &run));
    let reason = state.tasks()[0].reason.clone().expect("the task's reason");
    let note = entry.note.unwrap_or_default();
    assert!(note.contains(&reason), "{note:?} names {reason:?}");
}

#[test]
fn queue_with_repo_lists_only_that_repositorys_entries() {
    let home = Home::new();
    let (shop, blog) = (demo_repo(), demo_repo());
    for (demo, name) in [(&shop, "shop"), (&blog, "blog")] {
        let path = demo.repo.to_str().unwrap();
        let out = home.memofab(&demo.repo, &["repo", "add", path, "--name", name]);
        assert!(out.status.success(), "{out:?}");
        let text = format!("Work for {name}");
        let out = home.memofab(&demo.repo, &["submit", "--requirement-text", &text]);
        assert!(out.status.success(), "{out:?}");
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let listed = |args: &[&str]| {
        let out = home.memofab(elsewhere.path(), args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let all = listed(&["queue"]);
    assert!(
        all.contains("Work for shop") && all.contains("Work for blog"),
        "{all}"
    );
    let by_name = listed(&["--repo", "blog", "queue"]);
    assert!(
        by_name.contains("Work for blog") && !by_name.contains("Work for shop"),
        "{by_name}"
    );
    let by_path = listed(&["--repo", shop.repo.to_str().unwrap(), "queue"]);
    assert!(
        by_path.contains("Work for shop") && !by_path.contains("Work for blog"),
        "{by_path}"
    );
    let out = home.memofab(elsewhere.path(), &["--repo", "nowhere", "queue"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn a_running_entry_of_a_stopped_daemon_says_it_waits_for_the_daemon() {
    let home = Home::new();
    let demo = demo_repo();
    home.add_repo(&demo);
    home.submit(&demo);
    // What a daemon killed mid-run leaves behind: the entry still running.
    let entry = home.entries()[0].id;
    home.queue()
        .mark_running(entry, &memofab::domain::RunId::from("run-x"))
        .unwrap();

    let out = home.memofab(&demo.repo, &["queue"]);
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8(out.stdout).unwrap();
    let row = listing
        .lines()
        .find(|l| l.contains("run-x"))
        .unwrap_or_else(|| panic!("no running entry:\n{listing}"));
    assert!(row.contains("daemon stopped"), "{listing}");
}
