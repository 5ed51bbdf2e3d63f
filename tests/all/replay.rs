//! Replay equals live: the cockpit model rebuilt from stored events at every
//! cursor position is the model the live cockpit had after that event.

use crate::support::factory;

use factory::*;
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session;
use memofab::protocol::EngineUpdate;
use memofab::tui::app::App;
use memofab::tui::replay::Replay;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replayed_cockpit_matches_the_live_one_at_every_event() {
    let demo = demo_repo();
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (_commands, commands_rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(u) = updates.recv().await {
            all.push(u);
        }
        all
    });
    let state = session::start(
        demo_request(&demo, scripted(&demo), Steering::Headless, true),
        updates_tx,
        commands_rx,
    )
    .await
    .unwrap();
    let live_updates = collector.await.unwrap();
    let stored = stored_events(&demo.repo, &state.run);

    // What the live cockpit received is exactly what was stored.
    let live_events: Vec<_> = live_updates
        .iter()
        .filter_map(|u| match u {
            EngineUpdate::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(live_events, stored);
    assert!(
        live_updates
            .iter()
            .any(|u| matches!(u, EngineUpdate::Delta { .. })),
        "text streamed live"
    );

    let mut live = App::new("memofab");
    let mut replay = Replay::new("memofab", stored.clone());
    let mut checked = 0;
    for update in live_updates {
        let seq = match &update {
            EngineUpdate::Event(e) => Some(e.seq as usize),
            _ => None,
        };
        live.update(update);
        if let Some(k) = seq {
            // Now and then wander back first, so stepping back is checked too.
            if k % 37 == 0 {
                replay.seek(k / 3);
            }
            replay.seek(k);
            assert_eq!(
                replay.app.digest(),
                live.digest(),
                "replay differs from live at event {k}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, stored.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reads_the_stored_run_and_refuses_a_bad_cursor_before_opening() {
    let demo = demo_repo();
    let state = run_demo(&demo).await;
    // The parallel loader gives what the plain reader gives.
    let path = session::store_path(&demo.repo);
    let loaded = memofab::effects::store::Store::load_run(&path, &state.run).unwrap();
    assert_eq!(loaded, stored_events(&demo.repo, &state.run));

    let out = std::process::Command::new(memofab_bin())
        .args(["--repo"])
        .arg(&demo.repo)
        .args(["replay", state.run.as_str(), "--at", "soon"])
        .env("XDG_CONFIG_HOME", demo.dir.path().join("xdg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--at") && stderr.contains("event number"),
        "{stderr}"
    );
}
