use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::domain::event::{
    AgentStarted, QuestionAsked, RunStarted, ShepherdIntervened, TaskStateChanged,
};
use crate::domain::fixture;
use crate::domain::{AgentRole, EventKind};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn app() -> App {
    App::from_events("memofab test", &fixture::events())
}

fn select(app: &mut App, task: &str) {
    let index = app
        .order
        .iter()
        .position(|(id, _)| id.as_str() == task)
        .unwrap();
    app.selected = index;
}

#[test]
fn tasks_are_ordered_with_dependencies_first_and_indented() {
    let app = app();
    let order: Vec<(&str, usize)> = app.order.iter().map(|(id, d)| (id.as_str(), *d)).collect();
    assert_eq!(
        order,
        [
            ("loader", 0),
            ("stats", 1),
            ("slug", 1),
            ("title", 1),
            ("json", 2),
            ("docs", 3)
        ]
    );
    assert_eq!(
        app.task_state(&"slug".into()),
        Some(TaskState::AwaitingGate)
    );
}

#[test]
fn approve_is_one_keystroke_and_targets_the_gated_task() {
    let mut app = app();
    // Even with another task selected, `a` approves the one at the gate.
    select(&mut app, "loader");
    assert_eq!(
        app.handle_key(key(KeyCode::Char('a'))),
        vec![Action::Send(Command::ApproveGate {
            task: "slug".into()
        })]
    );
}

#[test]
fn reject_opens_a_box_and_sends_the_feedback() {
    let mut app = app();
    assert!(app.handle_key(key(KeyCode::Char('r'))).is_empty());
    assert!(matches!(app.modal, Some(Modal::Reject { .. })));
    // An empty rejection is not sent.
    assert!(app.handle_key(key(KeyCode::Enter)).is_empty());
    for c in "add a test".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    assert_eq!(
        app.handle_key(key(KeyCode::Enter)),
        vec![Action::Send(Command::RejectGate {
            task: "slug".into(),
            feedback: "add a test".into()
        })]
    );
    assert!(app.modal.is_none());
}

#[test]
fn scrolling_up_pauses_follow_and_g_resumes_it() {
    let mut app = app();
    select(&mut app, "stats");
    app.detail_height.set(2);
    app.scroll.follow = true;
    app.update(EngineUpdate::Delta {
        agent: "coder:stats#1".into(),
        text: "streaming".into(),
    });
    let total = app.shown_transcript().unwrap().len(false);
    assert_eq!(app.scroll.offset, total - 2, "following the tail");
    app.handle_key(key(KeyCode::Char('K')));
    assert!(!app.scroll.follow);
    assert_eq!(app.scroll.offset, total - 3);
    // New text does not move a paused view.
    app.update(EngineUpdate::Delta {
        agent: "coder:stats#1".into(),
        text: " more".into(),
    });
    assert_eq!(app.scroll.offset, total - 3);
    app.handle_key(key(KeyCode::Char('G')));
    assert!(app.scroll.follow);
    assert_eq!(app.scroll.offset, total - 2);
}

#[test]
fn search_finds_and_cycles_through_hits() {
    let mut app = app();
    select(&mut app, "stats");
    app.handle_key(key(KeyCode::Char('/')));
    for c in "tests".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    app.handle_key(key(KeyCode::Enter));
    assert!(!app.search.hits.is_empty());
    assert!(!app.scroll.follow);
    let first = app.search.current;
    app.handle_key(key(KeyCode::Char('n')));
    let n = app.search.hits.len();
    assert_eq!(app.search.current, (first + 1) % n);
    app.handle_key(key(KeyCode::Char('N')));
    assert_eq!(app.search.current, first);
}

#[test]
fn selection_moves_and_shows_the_tasks_latest_agent() {
    let mut app = app();
    select(&mut app, "loader");
    app.handle_key(key(KeyCode::Down));
    assert_eq!(app.selected_task().unwrap().as_str(), "stats");
    assert_eq!(app.shown_agent().unwrap().as_str(), "coder:stats#1");
    app.handle_key(key(KeyCode::Up));
    app.handle_key(key(KeyCode::Up));
    assert_eq!(app.selected_task().unwrap().as_str(), "loader");
}

#[test]
fn conflict_actions_apply_only_to_tasks_in_conflict() {
    let mut app = app();
    app.tab = Tab::Conflicts;
    select(&mut app, "title");
    assert_eq!(
        app.handle_key(key(KeyCode::Char('w'))),
        vec![Action::Send(Command::ResolveConflict {
            task: "title".into(),
            resolution: ConflictResolution::Rework
        })]
    );
    select(&mut app, "stats");
    assert!(app.handle_key(key(KeyCode::Char('w'))).is_empty());
}

#[test]
fn quit_shuts_the_engine_down() {
    let mut app = app();
    assert_eq!(
        app.handle_key(key(KeyCode::Char('q'))),
        vec![Action::Send(Command::Shutdown), Action::Quit]
    );
}

/// Types `text` at the end of the focused editor, then Ctrl-S.
fn append_and_submit(app: &mut App, text: &str) -> Vec<Action> {
    app.handle_key(key(KeyCode::End));
    for c in text.chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    app.handle_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL))
}

#[test]
fn spec_editor_submits_the_edited_requirement() {
    let mut events = fixture::events();
    events.truncate(1);
    if let EventKind::RunStarted(RunStarted { settings, .. }) = &mut events[0].kind {
        settings.await_spec = true;
    }
    let mut app = App::from_events("t", &events);
    app.tab = Tab::Spec;
    let sent = append_and_submit(&mut app, " Quickly.");
    assert_eq!(
        sent,
        vec![Action::Send(Command::SubmitSpec {
            requirement: "Add stats, slugs and docs to textkit. Quickly.".into()
        })]
    );
}

#[test]
fn a_live_run_waiting_for_its_requirement_opens_on_the_editor() {
    let mut events = fixture::events();
    events.truncate(1);
    if let EventKind::RunStarted(RunStarted { settings, .. }) = &mut events[0].kind {
        settings.await_spec = true;
    }
    let mut app = App::new("t");
    app.update(EngineUpdate::Event(events[0].clone()));
    assert_eq!(app.tab, Tab::Spec);
    // Typed straight in, no tab key first.
    let sent = append_and_submit(&mut app, " Now.");
    assert_eq!(
        sent,
        vec![Action::Send(Command::SubmitSpec {
            requirement: "Add stats, slugs and docs to textkit. Now.".into()
        })]
    );
    // A replay of the same event keeps the tab its viewer is on.
    assert_eq!(App::from_events("t", &events).tab, Tab::Transcript);
    // A run that has its requirement opens where it always did.
    let mut app = App::new("t");
    app.update(EngineUpdate::Event(fixture::events()[0].clone()));
    assert_eq!(app.tab, Tab::Transcript);
}

#[test]
fn mouse_click_selects_a_task() {
    let mut app = app();
    app.dag_area.set(Rect::new(1, 2, 40, 10));
    app.handle_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 5,
        row: 4,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(app.selected_task().unwrap().as_str(), "slug");
}

#[test]
fn costs_follow_the_price_table() {
    let mut app = App::new("t");
    app.prices.insert(
        "scripted".into(),
        crate::config::Price {
            input: 10.0,
            output: 20.0,
            cached_input: 0.0,
        },
    );
    for event in fixture::events() {
        app.update(EngineUpdate::Event(event));
    }
    assert!(app.costs.priced);
    // 1200 in and 300 out at $10 and $20 per million.
    let stats = app.costs.per_task[&TaskId::from("stats")];
    assert!((stats - 0.018).abs() < 1e-9, "{stats}");
    assert!(App::from_events("t", &fixture::events()).costs.priced.not());
}

use std::ops::Not;

#[test]
fn ctrl_b_asks_the_planner_about_the_draft() {
    let mut events = fixture::events();
    events.truncate(1);
    if let EventKind::RunStarted(RunStarted { settings, .. }) = &mut events[0].kind {
        settings.await_spec = true;
    }
    let mut app = App::from_events("t", &events);
    app.tab = Tab::Spec;
    let sent = app.handle_key(KeyEvent::new(KeyCode::Char('b'), KeyModifiers::CONTROL));
    assert_eq!(
        sent,
        vec![Action::Send(Command::Brainstorm {
            message: "Add stats, slugs and docs to textkit.".into()
        })]
    );
}

#[test]
fn editing_a_task_sends_description_and_criteria() {
    let mut app = app();
    select(&mut app, "json");
    app.handle_key(key(KeyCode::Char('E')));
    assert!(matches!(app.modal, Some(Modal::EditTask { .. })));
    let sent = append_and_submit(&mut app, " Quickly.");
    assert_eq!(
        sent,
        vec![Action::Send(Command::EditTask {
            task: "json".into(),
            description: "Do stats --json. Quickly.".into(),
            acceptance: vec!["tests pass".into()],
        })]
    );
}

#[test]
fn the_inbox_resolves_its_items_with_one_key_each() {
    let mut app = app();
    assert!(app.handle_key(key(KeyCode::Char('i'))).is_empty());
    assert_eq!(app.tab, Tab::Inbox);
    // The gate blocks three tasks, the conflict two: the gate comes first,
    // and selecting it shows its task in the other panes.
    assert_eq!(app.selected_task().map(TaskId::as_str), Some("slug"));
    let sent = app.handle_key(key(KeyCode::Enter));
    assert!(
        matches!(&sent[..], [Action::Send(Command::ApproveGate { task })] if task.as_str() == "slug")
    );
    assert!(app.handle_key(key(KeyCode::Char('j'))).is_empty());
    assert_eq!(app.selected_task().map(TaskId::as_str), Some("title"));
    let sent = app.handle_key(key(KeyCode::Enter));
    assert!(matches!(
        &sent[..],
        [Action::Send(Command::ResolveConflict { task, resolution: ConflictResolution::Resolver })]
            if task.as_str() == "title"
    ));
}

#[test]
fn a_question_in_the_inbox_is_answered_in_a_box() {
    let mut events = fixture::events();
    let last = events.last().unwrap().clone();
    let agent = AgentId::for_task(crate::domain::AgentRole::Coder, &"stats".into(), 1);
    events.push(crate::domain::Event {
        seq: last.seq + 1,
        kind: crate::domain::EventKind::QuestionAsked(QuestionAsked {
            agent: agent.clone(),
            call_id: "c9".into(),
            task: Some("stats".into()),
            question: "Characters or bytes?".into(),
        }),
        ..last
    });
    let mut app = App::from_events("memofab test", &events);
    app.handle_key(key(KeyCode::Char('i')));
    // stats blocks json and docs too: three, like the gate; older first.
    let items = app.inbox();
    let at = items
        .iter()
        .position(|i| i.kind == AttentionKind::Question)
        .unwrap();
    app.inbox_cursor = at;
    assert!(app.handle_key(key(KeyCode::Enter)).is_empty());
    assert!(matches!(app.modal, Some(Modal::Answer { .. })));
    for c in "chars".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    let sent = app.handle_key(key(KeyCode::Enter));
    assert!(matches!(&sent[..],
        [Action::Send(Command::AnswerQuestion { agent: a, call_id, answer })]
            if *a == agent && call_id == "c9" && answer == "chars"));
}

#[test]
fn enter_acts_on_the_inbox_item_shown_selected_after_others_left() {
    let mut app = app();
    app.handle_key(key(KeyCode::Char('i')));
    // The cursor was left past the end of a list that has since shrunk: the
    // view marks the last item, and Enter acts on that one.
    app.inbox_cursor = 9;
    let items = app.inbox();
    assert_eq!(app.inbox_selected(items.len()), items.len() - 1);
    let sent = app.handle_key(key(KeyCode::Enter));
    assert!(matches!(
        &sent[..],
        [Action::Send(Command::ResolveConflict { task, .. })] if task.as_str() == "title"
    ));
    app.handle_key(key(KeyCode::Char('k')));
    assert_eq!(app.inbox_cursor, items.len() - 2);
}

#[test]
fn esc_leaves_the_spec_editor_and_keeps_the_draft() {
    let mut events = fixture::events();
    events.truncate(1);
    if let EventKind::RunStarted(RunStarted { settings, .. }) = &mut events[0].kind {
        settings.await_spec = true;
    }
    let mut app = App::from_events("t", &events);
    app.tab = Tab::Spec;
    app.handle_key(key(KeyCode::End));
    for c in " Quickly.".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    assert!(app.handle_key(key(KeyCode::Esc)).is_empty());
    assert_eq!(app.tab, Tab::Transcript, "out of the editor");
    // Keys are commands again: `?` opens the help rather than typing.
    app.handle_key(key(KeyCode::Char('?')));
    assert!(app.help_open());
    app.handle_key(key(KeyCode::Esc));
    app.handle_key(key(KeyCode::Char('5')));
    assert_eq!(
        app.handle_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL)),
        vec![Action::Send(Command::SubmitSpec {
            requirement: "Add stats, slugs and docs to textkit. Quickly.".into()
        })],
        "the draft was kept"
    );
}

#[test]
fn cancelling_a_task_asks_first() {
    let mut app = app();
    select(&mut app, "stats");
    assert!(app.handle_key(key(KeyCode::Char('c'))).is_empty());
    assert!(matches!(
        &app.modal,
        Some(Modal::ConfirmCancel(ConfirmCancel { task })) if task.as_str() == "stats"
    ));
    // Other keys leave the question open; n and Esc keep the task.
    assert!(app.handle_key(key(KeyCode::Char('j'))).is_empty());
    assert!(app.modal.is_some());
    for keep in [KeyCode::Char('n'), KeyCode::Esc] {
        assert!(app.handle_key(key(keep)).is_empty());
        assert!(app.modal.is_none());
        app.handle_key(key(KeyCode::Char('c')));
    }
    assert_eq!(
        app.handle_key(key(KeyCode::Char('y'))),
        vec![Action::Send(Command::CancelTask {
            task: "stats".into()
        })]
    );
    assert!(app.modal.is_none());
    // A merged task cannot be cancelled: nothing to ask.
    select(&mut app, "loader");
    app.handle_key(key(KeyCode::Char('c')));
    assert!(app.modal.is_none());
}

#[test]
fn a_shepherd_intervention_shows_in_the_log_and_the_agents_transcript() {
    use crate::domain::shepherd::{Action, Pattern};
    let mut events = fixture::events();
    let agent = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::AgentStarted(AgentStarted {
                agent,
                task: Some(_),
                ..
            }) => Some(agent.clone()),
            _ => None,
        })
        .unwrap();
    let last = events.last().unwrap().clone();
    events.push(crate::domain::Event {
        seq: last.seq + 1,
        at_ms: last.at_ms + 1,
        kind: EventKind::ShepherdIntervened(ShepherdIntervened {
            task: None,
            agent: Some(agent.clone()),
            pattern: Pattern::RepeatedCall {
                tool: "read_file".into(),
                arguments: r#"{"path":"a.rs"}"#.into(),
                times: 4,
            },
            action: Action::Nudge,
        }),
        ..last
    });
    let app = App::from_events("t", &events);
    let line = app.log.last().unwrap();
    assert!(
        line.text.contains("the shepherd nudged the agent") && line.text.contains("read_file"),
        "{}",
        line.text
    );
    assert!(!line.warn, "a nudge is routine; only a hand-over warns");
    let transcript = &app.transcripts[&agent];
    let n = transcript.len(false);
    let noted = (0..n).any(|i| {
        transcript
            .line(i, false)
            .is_some_and(|(_, text)| text.contains("shepherd: ") && text.contains("4 times"))
    });
    assert!(noted, "the transcript notes the intervention");
}

/// `app` told that `role` started on `task` (a run agent without one).
fn agent_starts(app: &mut App, role: AgentRole, task: Option<&str>, attempt: u32) -> AgentId {
    let agent = match task {
        Some(task) => AgentId::for_task(role, &task.into(), attempt),
        None => AgentId::for_run(role, attempt),
    };
    let at_ms = app.now_ms + 1000;
    app.update(EngineUpdate::Event(Event {
        run: app.state.as_ref().unwrap().run.clone(),
        seq: 1000 + at_ms,
        at_ms,
        kind: EventKind::AgentStarted(AgentStarted {
            agent: agent.clone(),
            role,
            task: task.map(Into::into),
            model: "scripted".into(),
        }),
    }));
    agent
}

#[test]
fn the_transcript_follows_the_agent_at_work_until_the_human_chooses() {
    let mut app = app();
    // Nothing chosen: the task whose agent started last is shown.
    let reviewer = agent_starts(&mut app, AgentRole::Reviewer, Some("slug"), 1);
    assert_eq!(app.selected_task().unwrap().as_str(), "slug");
    assert_eq!(app.shown_agent(), Some(&reviewer));
    let coder = agent_starts(&mut app, AgentRole::Coder, Some("title"), 1);
    assert_eq!(app.selected_task().unwrap().as_str(), "title");
    assert_eq!(app.shown_agent(), Some(&coder));
    // A run's own agent, once there are tasks, is shown too.
    let overseer = agent_starts(&mut app, AgentRole::Overseer, None, 1);
    assert_eq!(app.shown_agent(), Some(&overseer));

    // The human picks a task: it stays, whoever starts next.
    app.handle_key(key(KeyCode::Up));
    let picked = app.selected_task().cloned();
    agent_starts(&mut app, AgentRole::Coder, Some("json"), 1);
    assert_eq!(app.selected_task().cloned(), picked);
    assert_ne!(app.shown_agent(), Some(&overseer));
}

#[test]
fn stepping_through_a_tasks_agents_stops_at_the_oldest_and_the_latest() {
    let mut app = app();
    select(&mut app, "slug");
    app.chosen = true;
    let first = agent_starts(&mut app, AgentRole::Coder, Some("slug"), 1);
    let second = agent_starts(&mut app, AgentRole::Reviewer, Some("slug"), 1);
    assert_eq!(app.shown_agent(), Some(&second));
    // Past the oldest, `<` stays there...
    for _ in 0..5 {
        app.handle_key(key(KeyCode::Char('<')));
    }
    assert_eq!(app.shown_agent(), Some(&first));
    // ...so one `>` comes back at once.
    app.handle_key(key(KeyCode::Char('>')));
    assert_eq!(app.shown_agent(), Some(&second));
    app.handle_key(key(KeyCode::Char('>')));
    assert_eq!(app.shown_agent(), Some(&second));
    assert_eq!(app.agent_back, 0);
}

#[test]
fn keys_that_do_nothing_say_why() {
    let mut app = app();
    // A search without a match.
    select(&mut app, "stats");
    app.handle_key(key(KeyCode::Char('/')));
    for c in "zebra".chars() {
        app.handle_key(key(KeyCode::Char(c)));
    }
    app.handle_key(key(KeyCode::Enter));
    assert!(app.search.hits.is_empty());
    assert!(app.notice.as_deref().unwrap_or("").contains("zebra"));
    // The next key clears it.
    app.handle_key(key(KeyCode::Char('J')));
    assert_eq!(app.notice, None);

    // `c` on a merged task.
    select(&mut app, "loader");
    app.handle_key(key(KeyCode::Char('c')));
    assert!(app.modal.is_none());
    assert!(app.notice.as_deref().unwrap_or("").contains("loader"));
}

#[test]
fn an_empty_requirement_is_not_submitted_and_says_so() {
    let mut app = App::new("memofab");
    app.update(EngineUpdate::Event(Event {
        run: "r".into(),
        seq: 1,
        at_ms: 1,
        kind: EventKind::RunStarted(RunStarted {
            requirement: String::new(),
            repo: "/r".into(),
            mainline: "main".into(),
            base_commit: "abc".into(),
            settings: crate::domain::RunSettings {
                await_spec: true,
                ..Default::default()
            },
        }),
    }));
    assert_eq!(app.tab, Tab::Spec);
    let ctrl_s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL);
    assert!(app.handle_key(ctrl_s).is_empty());
    assert!(app.notice.is_some());
    app.handle_key(key(KeyCode::Char(' ')));
    assert!(app.handle_key(ctrl_s).is_empty(), "blank is empty too");
}

#[test]
fn marking_a_conflict_resolved_with_markers_left_says_where() {
    let mut app = app();
    app.tab = Tab::Conflicts;
    select(&mut app, "title");
    app.chosen = true;
    assert_eq!(
        app.handle_key(key(KeyCode::Char('m'))),
        vec![Action::Send(Command::ResolveConflict {
            task: "title".into(),
            resolution: ConflictResolution::MarkResolved
        })]
    );
    moved(&mut app, TaskState::Conflict, TaskState::Running, None);
    assert_eq!(app.notice, None);
    moved(
        &mut app,
        TaskState::Running,
        TaskState::Conflict,
        Some("conflict markers remain in lib/title.sh"),
    );
    let notice = app.notice.clone().unwrap_or_default();
    assert!(notice.contains("lib/title.sh"), "{notice}");
}

fn moved(app: &mut App, from: TaskState, to: TaskState, reason: Option<&str>) {
    let at_ms = app.now_ms + 1;
    app.update(EngineUpdate::Event(Event {
        run: app.state.as_ref().unwrap().run.clone(),
        seq: at_ms,
        at_ms,
        kind: EventKind::TaskStateChanged(TaskStateChanged {
            task: "title".into(),
            from,
            to,
            reason: reason.map(Into::into),
        }),
    }));
}
