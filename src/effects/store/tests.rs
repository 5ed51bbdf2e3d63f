use super::*;
use crate::domain::event::{
    AgentMessage, GateDecision, RunPhaseChanged, RunResumed, RunStarted, TaskStateChanged,
    TokensUsed, ToolCalled,
};
use crate::domain::{RunSettings, TaskId, TokenUsage};

fn settings() -> RunSettings {
    RunSettings {
        concurrency: 2,
        ..RunSettings::default()
    }
}

fn event(run: &str, seq: u64, kind: EventKind) -> Event {
    Event {
        run: RunId::from(run),
        seq,
        at_ms: 1_000 + seq,
        kind,
    }
}

fn started(run: &str) -> Event {
    event(
        run,
        1,
        EventKind::RunStarted(RunStarted {
            requirement: "Add stats".into(),
            repo: "/r".into(),
            mainline: "main".into(),
            base_commit: "abc".into(),
            settings: settings(),
        }),
    )
}

fn moved(run: &str, seq: u64, from: TaskState, to: TaskState) -> Event {
    event(
        run,
        seq,
        EventKind::TaskStateChanged(TaskStateChanged {
            task: TaskId::from("t1"),
            from,
            to,
            reason: None,
        }),
    )
}

#[test]
fn appends_and_reads_back_in_order() {
    let mut store = Store::open_in_memory().unwrap();
    let events = vec![
        started("a"),
        moved("a", 2, TaskState::Pending, TaskState::Ready),
    ];
    store.append_batch(&events).unwrap();
    assert_eq!(store.events(&"a".into()).unwrap(), events);
    assert_eq!(store.last_seq(&"a".into()).unwrap(), 2);
    assert_eq!(store.events_after(&"a".into(), 1, 10).unwrap(), events[1..]);
    assert!(store.events(&"other".into()).unwrap().is_empty());
}

#[test]
fn gaps_and_duplicates_are_refused() {
    let mut store = Store::open_in_memory().unwrap();
    store.append(&started("a")).unwrap();
    let gap = moved("a", 3, TaskState::Pending, TaskState::Ready);
    assert!(matches!(store.append(&gap), Err(StoreError::SeqGap { .. })));
    assert!(matches!(
        store.append(&started("a")),
        Err(StoreError::SeqGap { .. })
    ));
}

#[test]
fn a_bad_batch_leaves_nothing() {
    let mut store = Store::open_in_memory().unwrap();
    let batch = vec![
        started("a"),
        moved("a", 2, TaskState::Pending, TaskState::Ready),
        moved("a", 9, TaskState::Ready, TaskState::Running),
    ];
    assert!(store.append_batch(&batch).is_err());
    assert_eq!(store.last_seq(&"a".into()).unwrap(), 0);
    assert!(store.runs().unwrap().is_empty());
}

#[test]
fn run_summaries_follow_the_events() {
    let mut store = Store::open_in_memory().unwrap();
    store.append(&started("a")).unwrap();
    store
        .append(&moved("a", 2, TaskState::Merging, TaskState::Merged))
        .unwrap();
    store
        .append(&moved("a", 3, TaskState::Running, TaskState::Failed))
        .unwrap();
    store
        .append(&moved("a", 4, TaskState::Failed, TaskState::Ready))
        .unwrap();
    store
        .append(&event(
            "a",
            5,
            EventKind::TokensUsed(TokensUsed {
                cost_usd: None,
                agent: "coder:t1#1".into(),
                task: None,
                model: "m".into(),
                usage: TokenUsage {
                    input: 10,
                    output: 5,
                    cached: 0,
                    cache_write: 0,
                },
            }),
        ))
        .unwrap();
    store
        .append(&event(
            "a",
            6,
            EventKind::RunPhaseChanged(RunPhaseChanged {
                to: RunPhase::Building,
                reason: None,
            }),
        ))
        .unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!((r.merged, r.failed, r.tokens, r.events), (1, 0, 15, 6));
    assert_eq!(r.phase, Some(RunPhase::Building));
    assert_eq!(r.requirement, "Add stats");
    assert_eq!(store.latest_run().unwrap(), Some(RunId::from("a")));
}

#[test]
fn a_file_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("memofab.db");
    {
        let mut store = Store::open(&path).unwrap();
        store.append(&started("a")).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.events(&"a".into()).unwrap().len(), 1);
    store.integrity_check().unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn a_newer_store_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Store::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("newer memofab"));
    let conn = Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);
}

#[test]
fn a_v1_store_is_migrated_and_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        // Exactly what memofab with schema v1 wrote.
        let mut conn = Connection::open(&path).unwrap();
        migrations::migrate_with(&mut conn, &migrations::MIGRATIONS_V1_FOR_TESTS).unwrap();
        let body = serde_json::to_string(&started("old")).unwrap();
        conn.execute(
            "INSERT INTO events (run, seq, at_ms, type, task, body) VALUES ('old', 1, 1001, 'run_started', NULL, ?1)",
            [body],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO runs (run, started_ms, last_event_ms, requirement, phase, events) VALUES ('old', 1001, 1001, 'Add stats', 'planning', 1)",
            [],
        )
        .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.events(&"old".into()).unwrap(), vec![started("old")]);
    // The v2 inbox works on the migrated store.
    store
        .push_command(&"old".into(), &Command::Pause, &Decider::Cli)
        .unwrap();
    assert_eq!(
        store.take_commands(&"old".into()).unwrap(),
        vec![Inboxed {
            by: Decider::Cli,
            command: Command::Pause
        }]
    );
}

#[test]
fn inbox_commands_are_taken_once_per_run() {
    let mut store = Store::open_in_memory().unwrap();
    let approve = Command::ApproveGate { task: "t1".into() };
    let by = Decider::Mcp("claude-code".into());
    store.push_command(&"a".into(), &approve, &by).unwrap();
    store
        .push_command(&"b".into(), &Command::Pause, &Decider::Cli)
        .unwrap();
    let taken = store.take_commands(&"a".into()).unwrap();
    assert_eq!(
        taken,
        vec![Inboxed {
            by,
            command: approve
        }]
    );
    assert!(store.take_commands(&"a".into()).unwrap().is_empty());
    assert_eq!(
        store.take_commands(&"b".into()).unwrap()[0].by,
        Decider::Cli
    );
}

#[test]
fn a_bare_command_left_by_an_older_memofab_is_still_taken() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .conn
        .execute(
            "INSERT INTO inbox (run, created_ms, body) VALUES ('a', 1, ?1)",
            [r#"{"command":"approve_gate","task":"t1"}"#],
        )
        .unwrap();
    assert_eq!(
        store.take_commands(&"a".into()).unwrap(),
        vec![Inboxed {
            by: Decider::Earlier("human".into()),
            command: Command::ApproveGate { task: "t1".into() }
        }]
    );
}

#[test]
fn exports_round_trip_and_read_well() {
    let events = vec![
        started("a"),
        event(
            "a",
            2,
            EventKind::AgentMessage(AgentMessage {
                agent: "coder:t1#1".into(),
                from: crate::domain::MessageAuthor::Assistant,
                text: "Reading first.".into(),
            }),
        ),
        event(
            "a",
            3,
            EventKind::ToolCalled(ToolCalled {
                agent: "coder:t1#1".into(),
                call_id: "c1".into(),
                tool: "read_file".into(),
                arguments: serde_json::json!({"path": "README.md"}),
            }),
        ),
    ];
    let mut jsonl = Vec::new();
    export::export_jsonl(&events, &mut jsonl).unwrap();
    let back: Vec<Event> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, events);

    let mut md = Vec::new();
    export::export_markdown(&events, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("# memofab run a"));
    assert!(md.contains("## Requirement"));
    assert!(md.contains("### coder:t1#1"));
    assert!(md.contains("`read_file`"));
    assert!(md.contains("README.md"));
}

#[test]
fn an_export_says_who_decided_each_gate() {
    let decided = |seq, by| {
        event(
            "a",
            seq,
            EventKind::GateDecision(GateDecision {
                task: "t1".into(),
                approved: true,
                by,
                feedback: String::new(),
            }),
        )
    };
    let events = vec![
        started("a"),
        decided(2, Decider::Mcp("claude-code".into())),
        decided(3, Decider::Cli),
        decided(4, Decider::Earlier("ada".into())),
    ];
    let mut jsonl = Vec::new();
    export::export_jsonl(&events, &mut jsonl).unwrap();
    let jsonl = String::from_utf8(jsonl).unwrap();
    assert!(jsonl.contains(r#""by":"mcp:claude-code""#), "{jsonl}");
    assert!(jsonl.contains(r#""by":"cli""#), "{jsonl}");
    assert!(jsonl.contains(r#""by":"ada""#), "{jsonl}");
    let mut md = Vec::new();
    export::export_markdown(&events, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(
        md.contains("t1: gate approved by MCP client \"claude-code\""),
        "{md}"
    );
    assert!(md.contains("t1: gate approved by the CLI"), "{md}");
    assert!(md.contains("t1: gate approved by ada"), "{md}");
}

#[test]
fn the_markdown_export_keeps_transcripts_in_time_order_and_prompt_headings_inside_them() {
    let said = |seq, agent: &str, from, text: &str| {
        event(
            "a",
            seq,
            EventKind::AgentMessage(AgentMessage {
                agent: agent.into(),
                from,
                text: text.into(),
            }),
        )
    };
    use crate::domain::MessageAuthor::{Assistant, User};
    let events = vec![
        started("a"),
        // The planner speaks first; by name it sorts after the coder.
        said(2, "planner#1", Assistant, "The plan."),
        said(
            3,
            "coder:t1#1",
            User,
            "Fix it.\n## Diff against mainline\nheading\n===\n```diff\n# kept in code\n```\n```\nnever closed",
        ),
        said(4, "planner#1", Assistant, "Still the planner."),
    ];
    let mut md = Vec::new();
    export::export_markdown(&events, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    let planner = md.find("### planner#1").unwrap();
    let coder = md.find("### coder:t1#1").unwrap();
    assert!(planner < coder, "first to speak comes first:\n{md}");
    // Headings as a markdown reader finds them: outside code fences.
    let mut in_code = false;
    let sections: Vec<&str> = md
        .lines()
        .filter(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            !in_code && (l.starts_with('#') || *l == "===")
        })
        .collect();
    assert_eq!(
        sections,
        [
            "# memofab run a",
            "## Requirement",
            "## Transcripts",
            "### planner#1",
            "### coder:t1#1",
            "## Outcomes",
        ],
        "{md}"
    );
    assert!(md.contains("\\## Diff against mainline"));
    assert!(
        md.contains("```diff\n# kept in code\n```"),
        "code stays as written"
    );
    // The fence the message left open is closed before the next section.
    let transcript = &md[coder..md.find("## Outcomes").unwrap()];
    assert_eq!(transcript.matches("```").count() % 2, 0, "{transcript}");
}

#[test]
fn loading_a_long_run_in_parallel_gives_every_event_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.db");
    let run = RunId::from("long");
    let events = crate::domain::synthetic::run_events(&run, 4, 50_000);
    let mut store = Store::open(&path).unwrap();
    store.append(&started("other")).unwrap();
    for chunk in events.chunks(1_000) {
        store.append_batch(chunk).unwrap();
    }
    let loaded = Store::load_run(&path, &run).unwrap();
    assert_eq!(loaded.len(), events.len());
    assert!(loaded == events, "same events, same order");
    assert!(
        Store::load_run(&path, &RunId::from("none"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_reader_cannot_write_and_refuses_a_newer_store() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("r.db");
    Store::open(&path).unwrap().append(&started("a")).unwrap();
    let mut reader = Store::open_reader(&path).unwrap();
    assert_eq!(reader.events(&RunId::from("a")).unwrap().len(), 1);
    assert!(
        reader
            .append(&event(
                "a",
                2,
                EventKind::RunResumed(RunResumed {
                    interrupted: vec![]
                })
            ))
            .is_err()
    );
    drop(reader);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        Store::open_reader(&path),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn processes_opening_a_new_store_at_once_all_get_it() {
    // A run creating its store while `memofab approve` (or another reader)
    // opens it: each must see the schema exactly once, none fail.
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memofab.db");
        let start = std::sync::Barrier::new(4);
        let opened: Vec<Result<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        Store::open(&path)?.schema_version()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in opened {
            assert_eq!(result.unwrap(), SCHEMA_VERSION);
        }
    }
}
