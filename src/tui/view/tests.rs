use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use super::*;
use crate::tui::app::{App, Tab};
use crate::tui::fixture;

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
