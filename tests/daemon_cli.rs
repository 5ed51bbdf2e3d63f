//! The daemon's command line as a newcomer meets it, the real binary on a
//! temp MEMOFAB_HOME: registering and unregistering repositories,
//! submitting by name, and what each command does with bad input (exit
//! code, queue untouched).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/factory.rs"]
mod support;

use daemon::Home;
use support::demo_repo;

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
