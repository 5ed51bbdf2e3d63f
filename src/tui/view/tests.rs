use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use super::*;
use crate::domain::event::{
    AgentParked, CheckoutDirty, GateHeld, ProviderLimitChanged, RunPhaseChanged, RunStarted,
    TokensUsed,
};
use crate::domain::fixture;
use crate::tui::app::{App, Tab};

fn draw(app: &App, width: u16, height: u16) -> Buffer {
    let theme = Theme::dark();
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| render(f, app, &theme)).unwrap();
    terminal.backend().buffer().clone()
}

fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        for x in 0..area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn app_on(tab: Tab, task: &str) -> App {
    let mut app = App::from_events("memofab", &fixture::events());
    app.tab = tab;
    app.selected = app
        .order
        .iter()
        .position(|(id, _)| id.as_str() == task)
        .unwrap();
    app.scroll.follow = true;
    app
}

#[test]
fn snapshots_of_every_pane_narrow_and_wide() {
    let cases = [
        ("transcript", Tab::Transcript, "stats"),
        ("diff", Tab::Diff, "stats"),
        ("conflicts", Tab::Conflicts, "title"),
        ("gates", Tab::Gates, "slug"),
        ("spec", Tab::Spec, "loader"),
        ("log", Tab::Log, "loader"),
        ("inbox", Tab::Inbox, "slug"),
    ];
    for (name, tab, task) in cases {
        let app = app_on(tab, task);
        insta::assert_snapshot!(format!("{name}_80x24"), text(&draw(&app, 80, 24)));
        insta::assert_snapshot!(format!("{name}_160x48"), text(&draw(&app, 160, 48)));
    }
}

#[test]
fn the_merge_queue_shows_its_states_and_order() {
    let mut app = App::from_events("memofab", &fixture::queue_events());
    app.tab = Tab::Log;
    app.scroll.follow = true;
    let screen = text(&draw(&app, 80, 24));
    assert!(screen.contains("verifying"), "{screen}");
    assert!(screen.contains("queued #1"), "{screen}");
    assert!(
        screen.contains("merge verification `sh tests/run.sh` FAILED"),
        "{screen}"
    );
    insta::assert_snapshot!("queue_80x24", screen);
    insta::assert_snapshot!("queue_160x48", text(&draw(&app, 160, 48)));
}

#[test]
fn help_overlay_lists_the_keys() {
    let mut app = app_on(Tab::Transcript, "stats");
    app.modal = Some(crate::tui::app::Modal::Help);
    let screen = text(&draw(&app, 100, 30));
    insta::assert_snapshot!("help_100x30", screen);
}

#[test]
fn a_tiny_terminal_gets_a_message_not_a_panic() {
    let app = app_on(Tab::Transcript, "stats");
    let screen = text(&draw(&app, 10, 5));
    assert!(screen.contains("terminal"), "{screen}");
    let _ = draw(&App::new("empty"), 80, 24);
}

#[test]
fn task_glyphs_use_their_state_colours() {
    let app = app_on(Tab::Transcript, "stats");
    let theme = Theme::dark();
    let buffer = draw(&app, 160, 48);
    let merged = theme.task(TaskState::Merged).fg;
    let gate = theme.task(TaskState::AwaitingGate).fg;
    let find = |glyph: &str| {
        (0..48u16)
            .flat_map(|y| (0..60u16).map(move |x| (x, y)))
            .find(|&(x, y)| buffer[(x, y)].symbol() == glyph)
            .map(|p| buffer[p].fg)
    };
    assert_eq!(find("✔"), merged);
    assert_eq!(find("⏸"), gate);
}

/// The fixture with the `stats` coder parked on a rate limit and the
/// provider's limit cut to 2 of 4.
fn parked_app() -> App {
    use crate::domain::{AgentId, AgentRole, Event, EventKind};
    let mut events = fixture::events();
    let last = events.last().unwrap().clone();
    for kind in [
        EventKind::ProviderLimitChanged(ProviderLimitChanged {
            provider: "openai".into(),
            limit: 2,
            ceiling: 4,
        }),
        EventKind::AgentParked(AgentParked {
            agent: AgentId::for_task(AgentRole::Coder, &"stats".into(), 1),
            task: Some("stats".into()),
            provider: "openai".into(),
            until_ms: last.at_ms + 13_000,
            reason: "rate limited by openai: Rate limit reached for gpt-4.1".into(),
        }),
    ] {
        let seq = events.len() as u64 + 1;
        events.push(Event {
            run: last.run.clone(),
            seq,
            at_ms: last.at_ms + 1000,
            kind,
        });
    }
    let mut app = App::from_events("memofab", &events);
    app.selected = app
        .order
        .iter()
        .position(|(id, _)| id.as_str() == "stats")
        .unwrap();
    app
}

#[test]
fn parked_agents_show_when_they_resume() {
    let app = parked_app();
    let narrow = text(&draw(&app, 80, 24));
    assert!(narrow.contains("parked · 12s"), "{narrow}");
    insta::assert_snapshot!("parked_80x24", narrow);
    let wide = text(&draw(&app, 160, 48));
    assert!(
        wide.contains("parked · resumes in 12s (rate limited by openai)"),
        "{wide}"
    );
    assert!(wide.contains("1 parked │ openai 2/4 slots"), "{wide}");
    insta::assert_snapshot!("parked_160x48", wide);
}

#[test]
fn a_parked_planner_shows_under_planning() {
    use crate::domain::{AgentId, AgentRole, EventKind};
    let mut events = fixture::events();
    events.truncate(1);
    let mut next = events[0].clone();
    next.seq = 2;
    next.kind = EventKind::AgentParked(AgentParked {
        agent: AgentId::for_run(AgentRole::Planner, 1),
        task: None,
        provider: "claude".into(),
        until_ms: next.at_ms + 90_000,
        reason: "usage limit reached on claude: Your credit balance is too low".into(),
    });
    events.push(next);
    let app = App::from_events("memofab", &events);
    let screen = text(&draw(&app, 120, 24));
    // Wrapped in the narrow blueprint pane.
    assert!(
        screen.contains("Planning… parked · resumes in 1m30 (usage")
            && screen.contains("limit reached on claude)"),
        "{screen}"
    );
    assert!(screen.contains("1 parked │ agents 0/4"), "{screen}");
}

#[test]
fn the_status_bar_shows_the_burn_against_the_run_budget() {
    let mut app = app_on(Tab::Transcript, "stats");
    let state = app.state.as_mut().unwrap();
    assert_eq!(status::burn_hint(state), "", "no budget, no burn");
    state.settings.budget.run_tokens = Some(40_000);
    state.settings.budget.run_usd = Some(5.0);
    let hint = status::burn_hint(state);
    // One task merged so far (loader, no tokens): the forecast is what is spent.
    assert_eq!(
        hint,
        " │ budget 1.5k of 40.0k, forecast 1.5k · $0.00 of $5.00, forecast $0.00"
    );
    let screen = text(&draw(&app, 160, 48));
    assert!(screen.contains("budget 1.5k of 40.0k"), "{screen}");
}

#[test]
fn help_overlay_fits_wide_and_narrow_screens() {
    for (width, height) in [(160, 48), (80, 30)] {
        let mut app = app_on(Tab::Transcript, "stats");
        app.modal = Some(crate::tui::app::Modal::Help);
        let screen = text(&draw(&app, width, height));
        // Every description is there whole: its last word shows.
        for last in ["inbox", "action", "follow", "resolved", "kept)", "resumed)"] {
            assert!(
                screen.contains(last),
                "{last} at {width}x{height}:\n{screen}"
            );
        }
        insta::assert_snapshot!(format!("help_{width}x{height}"), screen);
    }
}

#[test]
fn cancelling_asks_in_a_modal() {
    let mut app = app_on(Tab::Transcript, "stats");
    app.modal = Some(crate::tui::app::Modal::ConfirmCancel(
        crate::tui::app::ConfirmCancel {
            task: "stats".into(),
        },
    ));
    let screen = text(&draw(&app, 80, 24));
    assert!(screen.contains("Cancel stats?"), "{screen}");
    insta::assert_snapshot!("confirm_cancel_80x24", screen);
}

#[test]
fn the_spec_editor_shows_how_to_leave_it() {
    let mut events = fixture::events();
    events.truncate(1);
    if let crate::domain::EventKind::RunStarted(RunStarted { settings, .. }) = &mut events[0].kind {
        settings.await_spec = true;
    }
    let mut app = App::from_events("memofab", &events);
    app.tab = Tab::Spec;
    let screen = text(&draw(&app, 80, 24));
    assert!(screen.contains("Esc or Tab leave the editor"), "{screen}");
    insta::assert_snapshot!("spec_editing_80x24", screen);
}

/// The screen's text from column `from` rightwards.
fn columns_from(buffer: &Buffer, from: u16) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        for x in from..area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// Whether `text`'s words all appear on `screen`, in order, however the
/// screen wrapped them.
fn shows_whole(screen: &str, text: &str) -> bool {
    let squeeze = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace() && !"│┌┐└┘─".contains(*c))
            .collect::<String>()
    };
    squeeze(screen).contains(&squeeze(text))
}

#[test]
fn a_failed_task_shows_its_whole_reason_in_the_transcript_and_the_log() {
    for (width, height) in [(80, 24), (160, 48)] {
        let mut app = App::from_events("memofab", &fixture::failed_task_events());
        app.selected = app
            .order
            .iter()
            .position(|(id, _)| id.as_str() == "stats")
            .unwrap();
        // The detail pane: right of the blueprint when the screen is wide.
        let pane = if width >= 120 {
            width * 38 / 100 + 1
        } else {
            0
        };
        let buffer = draw(&app, width, height);
        assert!(
            shows_whole(&columns_from(&buffer, pane), fixture::PROVIDER_DOWN),
            "{}",
            text(&buffer)
        );
        insta::assert_snapshot!(format!("failed_task_{width}x{height}"), text(&buffer));
        app.tab = Tab::Log;
        let buffer = draw(&app, width, height);
        assert!(
            shows_whole(&columns_from(&buffer, pane), fixture::PROVIDER_DOWN),
            "{}",
            text(&buffer)
        );
        insta::assert_snapshot!(format!("failed_task_log_{width}x{height}"), text(&buffer));
    }
}

#[test]
fn a_failed_run_shows_its_whole_reason_in_the_status_bar() {
    for (width, height) in [(80, 24), (160, 48)] {
        let app = App::from_events("memofab", &fixture::failed_run_events());
        let screen = text(&draw(&app, width, height));
        assert!(shows_whole(&screen, fixture::PLAN_FAILED), "{screen}");
        insta::assert_snapshot!(format!("failed_run_{width}x{height}"), screen);
    }
}

#[test]
fn a_landing_held_for_the_users_checkout_tops_the_inbox() {
    use crate::domain::{Event, EventKind, RunPhase};
    let mut events = fixture::queue_events();
    let last = events.last().unwrap().clone();
    for kind in [
        EventKind::CheckoutDirty(CheckoutDirty {
            task: "stats".into(),
            files: vec!["README.md".into(), "notes/todo.md".into()],
        }),
        EventKind::RunPhaseChanged(RunPhaseChanged {
            to: RunPhase::Paused,
            reason: Some("your checkout of main has uncommitted changes".into()),
        }),
    ] {
        let seq = events.len() as u64 + 1;
        events.push(Event {
            run: last.run.clone(),
            seq,
            at_ms: last.at_ms + 1000,
            kind,
        });
    }
    let mut app = App::from_events("memofab", &events);
    app.tab = Tab::Inbox;
    let items = app.inbox();
    assert_eq!(
        items[0].kind,
        crate::domain::attention::AttentionKind::DirtyCheckout
    );
    let wide = text(&draw(&app, 160, 48));
    assert!(
        wide.contains("your checkout of main has changes in README.md, notes/todo.md"),
        "{wide}"
    );
    insta::assert_snapshot!("held_landing_160x48", wide);
}

#[test]
fn cache_hits_show_for_the_run_and_the_selected_task() {
    let mut events = fixture::events();
    let last = events.last().unwrap().clone();
    events.push(crate::domain::Event {
        seq: last.seq + 1,
        kind: crate::domain::EventKind::TokensUsed(TokensUsed {
            cost_usd: None,
            agent: crate::domain::AgentId::for_task(
                crate::domain::AgentRole::Coder,
                &"stats".into(),
                1,
            ),
            task: Some("stats".into()),
            model: "scripted".into(),
            usage: crate::domain::TokenUsage {
                input: 8_800,
                output: 100,
                cached: 8_000,
                cache_write: 500,
            },
        }),
        ..last
    });
    let mut app = App::from_events("memofab", &events);
    app.tab = Tab::Transcript;
    app.selected = app
        .order
        .iter()
        .position(|(id, _)| id.as_str() == "stats")
        .unwrap();
    let screen = text(&draw(&app, 160, 48));
    // The run: 8,000 of 10,000 prompt tokens; the task: 8,000 of 10,000.
    assert!(screen.contains("tokens 10.0k/400 · cache 80%"), "{screen}");
    assert!(
        screen.contains("coder:stats#1 · cache 80% · following"),
        "{screen}"
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn an_attached_cockpit_says_so_and_that_q_detaches() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut app = crate::tui::app::attached_app();
    insta::assert_snapshot!("attached_80x24", text(&draw(&app, 80, 24)));
    insta::assert_snapshot!("attached_160x30", text(&draw(&app, 160, 30)));
    app.handle_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE));
    insta::assert_snapshot!("attached_detach_question_80x24", text(&draw(&app, 80, 24)));
}

#[test]
fn an_attached_cockpit_with_no_run_opens_the_editor_to_queue_one() {
    use crate::domain::queue::RequirementId;
    use crate::tui::app::Feed;
    let mut app = App::attached("memofab");
    app.feed(Feed::Attached(None));
    insta::assert_snapshot!("attached_no_run_80x24", text(&draw(&app, 80, 24)));
    app.spec = tui_textarea::TextArea::from(["Add a --json flag"]);
    app.feed(Feed::Queued(RequirementId(3)));
    insta::assert_snapshot!("attached_queued_80x24", text(&draw(&app, 80, 24)));
}

#[test]
fn a_lost_daemon_connection_is_shown() {
    use crate::tui::app::Feed;
    let mut app = crate::tui::app::attached_app();
    app.feed(Feed::Lost("the daemon closed the connection".into()));
    insta::assert_snapshot!("attached_lost_80x24", text(&draw(&app, 80, 24)));
}

#[test]
fn the_overseers_waiting_proposals_are_an_inbox_item_naming_the_review_command() {
    use crate::domain::RunId;
    use crate::domain::attention::AttentionKind;
    use crate::domain::overseer::{OpenProposal, WaitingProposals};
    use crate::protocol::EngineUpdate;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    let mut app = App::from_events("memofab", &fixture::queue_events());
    let reported_ms = app.state.as_ref().unwrap().last_at_ms;
    app.update(EngineUpdate::ProposalsWaiting(WaitingProposals {
        report: RunId::new("overseer-20260310-020000-ab12"),
        reported_ms,
        open: vec![
            OpenProposal {
                number: 1,
                title: "Never run the same failing command a third time".into(),
            },
            OpenProposal {
                number: 3,
                title: "Cite the acceptance test in reviews".into(),
            },
        ],
    }));
    app.now_ms = reported_ms + 7 * 3_600_000;
    app.tab = Tab::Inbox;
    let items = app.inbox();
    let last = items.last().unwrap();
    assert_eq!(last.kind, AttentionKind::Proposals, "it blocks nothing");
    app.inbox_cursor = items.len() - 1;
    let screen = text(&draw(&app, 160, 40));
    assert!(
        screen.contains("memofab overseer review overseer-20260310-020000-ab12"),
        "{screen}"
    );
    insta::assert_snapshot!("proposals_waiting_160x40", screen);
    // Enter sends nothing to the run: the proposals are not the run's.
    let actions = app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn an_attached_cockpit_keeps_the_overseers_proposals_when_it_follows_a_new_run() {
    use crate::domain::RunId;
    use crate::domain::attention::AttentionKind;
    use crate::domain::overseer::{OpenProposal, WaitingProposals};
    use crate::protocol::EngineUpdate;
    use crate::tui::app::Feed;
    let mut app = App::attached("memofab");
    app.feed(Feed::Attached(None));
    app.feed(Feed::Update(EngineUpdate::ProposalsWaiting(
        WaitingProposals {
            report: RunId::new("overseer-1"),
            reported_ms: 0,
            open: vec![OpenProposal {
                number: 1,
                title: "Cite the test".into(),
            }],
        },
    )));
    app.feed(Feed::Attached(Some(RunId::new("r-next"))));
    let kinds: Vec<_> = app.inbox().into_iter().map(|i| i.kind).collect();
    assert_eq!(kinds, [AttentionKind::Proposals]);
}

/// The status bar's first row on a `width`-column screen.
fn status_row(app: &App, width: u16, height: u16) -> String {
    let screen = text(&draw(app, width, height));
    let rows: Vec<&str> = screen.lines().collect();
    // The status bar is the last row but for notices and reasons; it is
    // the row with the help key, wherever the key ends up.
    rows.iter()
        .rev()
        .find(|r| r.contains(" │ "))
        .map(|r| r.trim_end().to_owned())
        .unwrap_or_default()
}

#[test]
fn the_status_bar_keeps_its_keys_whole_at_any_width() {
    let attached = crate::tui::app::attached_app();
    for width in [80, 120, 160] {
        let row = status_row(&attached, width, 30);
        assert!(
            row.ends_with("? help  q detach (the run goes on)")
                || row.ends_with("? help  q detach"),
            "{width}: {row:?}"
        );
        assert!(
            row.contains("at gate: a approve, r reject"),
            "{width}: {row:?}"
        );
    }
    let live = App::from_events("memofab", &fixture::events());
    for width in [80, 160] {
        let row = status_row(&live, width, 24);
        assert!(row.ends_with("? help  q quit"), "{width}: {row:?}");
    }
    // Wide enough, nothing gives way.
    let row = status_row(&live, 200, 24);
    assert!(
        row.contains("merged ") && row.contains("tokens "),
        "{row:?}"
    );
}

#[test]
fn a_replay_does_not_offer_the_gate_keys() {
    let mut app = App::from_events("memofab", &fixture::events());
    app.read_only = true;
    let row = status_row(&app, 160, 24);
    assert!(row.contains("1 at gate"), "{row:?}");
    assert!(!row.contains("approve"), "{row:?}");
}

#[test]
fn a_narrow_dag_shows_task_titles_where_there_is_room() {
    let app = app_on(Tab::Transcript, "loader");
    let screen = text(&draw(&app, 80, 24));
    for title in ["Load every module", "stats command", "Document it"] {
        assert!(screen.contains(title), "{title}:\n{screen}");
    }
}

#[test]
fn a_notice_shows_under_the_status_bar() {
    let mut app = app_on(Tab::Transcript, "stats");
    app.notice = Some("no match for \"zebra\" in this transcript".into());
    let screen = text(&draw(&app, 80, 24));
    assert!(screen.contains("no match for \"zebra\""), "{screen}");
}

#[test]
fn the_gate_view_lists_each_reason_on_its_own_line() {
    use crate::domain::gate_reason::{GateReason, GovernanceClass};
    let mut events = fixture::events();
    let last = events.last().unwrap().clone();
    events.push(crate::domain::Event {
        seq: last.seq + 1,
        kind: crate::domain::EventKind::GateHeld(GateHeld {
            task: "slug".into(),
            reasons: vec![
                GateReason::Governance {
                    path: "AGENTS.md".into(),
                    class: GovernanceClass::Instructions,
                },
                GateReason::TestRunnerChanged {
                    path: "tests/run.sh".into(),
                },
            ],
        }),
        ..last
    });
    let mut app = App::from_events("memofab", &events);
    app.tab = Tab::Gates;
    let screen = text(&draw(&app, 100, 30));
    assert!(screen.contains("slug needs approval:"), "{screen}");
    assert!(
        screen.contains("    · changes AGENTS.md, the agents' project instructions"),
        "{screen}"
    );
    assert!(
        screen.contains("    · changes tests/run.sh, which the test command runs"),
        "{screen}"
    );
}
