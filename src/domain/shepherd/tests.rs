use serde_json::json;

use super::*;
use crate::domain::TaskId;

fn limits() -> Thresholds {
    Thresholds {
        enabled: true,
        repeat_failures: 3,
        repeat_calls: 3,
        turns_without_change: 4,
        no_call_replies: 2,
        rework_echo: 2,
        max_minutes_in_state: 10,
    }
}

fn read(path: &str) -> serde_json::Value {
    json!({ "path": path })
}

/// Feeds one call per turn; the patterns reported, by turn (1-based).
fn play(
    watch: &mut Watch,
    calls: &[(&str, serde_json::Value, bool, &str)],
) -> Vec<(usize, Pattern)> {
    let mut found = Vec::new();
    for (i, (tool, args, ok, output)) in calls.iter().enumerate() {
        if let Some(p) = watch.call(tool, args, *ok, output) {
            found.push((i + 1, p));
        }
        if let Some(p) = watch.turn() {
            found.push((i + 1, p));
        }
    }
    found
}

#[test]
fn the_same_read_turn_after_turn_is_reported_at_the_threshold_and_again_after() {
    let mut watch = Watch::new(limits(), false);
    let calls: Vec<_> = (0..7)
        .map(|_| ("read_file", read("a.rs"), true, "fn a() {}"))
        .collect();
    let found = play(&mut watch, &calls);
    let pattern = Pattern::RepeatedCall {
        tool: "read_file".into(),
        arguments: r#"{"path":"a.rs"}"#.into(),
        times: 3,
    };
    assert_eq!(found, vec![(3, pattern.clone()), (6, pattern)]);
}

#[test]
fn many_identical_calls_in_one_reply_count_like_many_turns() {
    let mut watch = Watch::new(limits(), false);
    let reported: Vec<Pattern> = (0..257)
        .filter_map(|_| watch.call("read_file", &read("a.rs"), true, "x"))
        .collect();
    assert_eq!(reported.len(), 85, "one report per three calls");
}

#[test]
fn argument_order_does_not_make_a_call_new_but_other_arguments_do() {
    let mut watch = Watch::new(limits(), false);
    let a = json!({"path": "a.rs", "offset_line": 1});
    let b: serde_json::Value =
        serde_json::from_str(r#"{"offset_line": 1, "path": "a.rs"}"#).unwrap();
    assert_eq!(watch.call("read_file", &a, true, ""), None);
    assert_eq!(watch.call("read_file", &b, true, ""), None);
    assert_eq!(watch.call("read_file", &read("b.rs"), true, ""), None);
    assert_eq!(watch.call("list_files", &a, true, ""), None, "another tool");
    assert!(matches!(
        watch.call("read_file", &b, true, ""),
        Some(Pattern::RepeatedCall { times: 3, .. })
    ));
}

#[test]
fn a_written_file_makes_the_same_read_worth_doing_again() {
    let quiet_turns_off = Thresholds {
        turns_without_change: 0,
        ..limits()
    };
    let mut watch = Watch::new(quiet_turns_off, true);
    let write = json!({"path": "a.rs", "content": "x"});
    let calls = [
        ("read_file", read("a.rs"), true, ""),
        ("read_file", read("a.rs"), true, ""),
        ("write_file", write.clone(), true, "written"),
        ("read_file", read("a.rs"), true, ""),
        ("read_file", read("a.rs"), true, ""),
        // A refused write changes nothing.
        ("write_file", write, false, "refused: protected path"),
        ("read_file", read("a.rs"), true, ""),
    ];
    let found = play(&mut watch, &calls);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(matches!(
        found[0],
        (7, Pattern::RepeatedCall { times: 3, .. })
    ));
}

#[test]
fn the_same_error_repeats_across_different_calls() {
    let mut watch = Watch::new(limits(), false);
    let calls = [
        (
            "run",
            json!({"command": "make"}),
            false,
            "\nmake: *** No rule to make target\nmore",
        ),
        (
            "run",
            json!({"command": "make all"}),
            false,
            "make: *** No rule to make target",
        ),
        ("read_file", read("Makefile"), true, "all:"),
        (
            "run",
            json!({"command": "make test"}),
            false,
            "make: *** No rule to make target",
        ),
    ];
    let found = play(&mut watch, &calls);
    assert_eq!(
        found,
        vec![(
            4,
            Pattern::RepeatedFailure {
                tool: "run".into(),
                error: "make: *** No rule to make target".into(),
                times: 3,
            }
        )]
    );
}

#[test]
fn the_same_failing_call_repeats_even_with_different_errors() {
    let mut watch = Watch::new(limits(), false);
    let call = json!({"command": "cargo test"});
    let found: Vec<Pattern> = ["error 1", "error 2", "error 3"]
        .iter()
        .filter_map(|e| watch.call("run", &call, false, e))
        .collect();
    assert!(
        matches!(&found[..], [Pattern::RepeatedFailure { times: 3, error, .. }] if error == "error 3"),
        "{found:?}"
    );
}

#[test]
fn turns_without_a_change_count_only_for_agents_that_can_write() {
    let mut reader = Watch::new(limits(), false);
    assert!((0..10).all(|_| reader.turn().is_none()));
    let mut coder = Watch::new(limits(), true);
    let mut found = Vec::new();
    for turn in 1..=10 {
        if turn == 5 {
            coder.call("edit_file", &json!({"path": "a"}), true, "edited");
        }
        if let Some(p) = coder.turn() {
            found.push((turn, p));
        }
    }
    // Quiet turns 1-3, a write at 5 after the fourth is reported, 6-9 again.
    assert_eq!(
        found,
        vec![
            (4, Pattern::NoChange { turns: 4 }),
            (9, Pattern::NoChange { turns: 4 })
        ]
    );
}

#[test]
fn a_disabled_shepherd_reports_nothing() {
    let mut watch = Watch::new(Thresholds::off(), true);
    for _ in 0..50 {
        assert_eq!(
            watch.call("run", &json!({"command": "x"}), false, "e"),
            None
        );
        assert_eq!(watch.turn(), None);
    }
    let mut clock = StateClock::default();
    let task = TaskId::from("a");
    clock.observe([(&task, TaskState::Running)], 0, &Thresholds::off());
    assert!(
        clock
            .observe(
                [(&task, TaskState::Running)],
                u64::MAX / 2,
                &Thresholds::off()
            )
            .is_empty()
    );
}

#[test]
fn the_ladder_goes_nudge_fresh_agent_human() {
    let call = Pattern::NoChange { turns: 1 };
    let echo = Pattern::ReworkEcho { rounds: 2 };
    let steps = |p: &Pattern, for_task| {
        (0..4)
            .map(|s| next_action(s, p, for_task))
            .collect::<Vec<_>>()
    };
    use Action::*;
    assert_eq!(steps(&call, true), [Nudge, FreshAgent, Escalate, Escalate]);
    assert_eq!(steps(&call, false), [Nudge, Stop, Stop, Stop]);
    assert_eq!(steps(&echo, true), [Nudge, Escalate, Escalate, Escalate]);
}

#[test]
fn the_nudge_names_the_pattern_and_the_overseers_advice() {
    let p = Pattern::RepeatedCall {
        tool: "read_file".into(),
        arguments: r#"{"path":"a.rs"}"#.into(),
        times: 4,
    };
    let plain = nudge_text(&p, None);
    assert!(
        plain.contains("read_file") && plain.contains("4 times"),
        "{plain}"
    );
    assert!(!plain.contains("overseer"));
    let advised = nudge_text(&p, Some(" Read each file once. "));
    assert!(
        advised.ends_with("The overseer's advice about this: Read each file once."),
        "{advised}"
    );
    assert_eq!(nudge_text(&p, Some("  ")), plain);
}

#[test]
fn the_summary_lists_recent_calls_most_recent_first() {
    let mut watch = Watch::new(limits(), true);
    watch.call("run", &json!({"command": "make"}), false, "no rule");
    for _ in 0..3 {
        watch.call("read_file", &read("a.rs"), true, "");
    }
    let why = Pattern::NoChange { turns: 20 };
    let summary = watch.summary(&why);
    assert!(
        summary.contains("20 turns without changing any file"),
        "{summary}"
    );
    let read_at = summary
        .find(r#"`read_file` {"path":"a.rs"} ×3: ok"#)
        .unwrap();
    let run_at = summary
        .find(r#"`run` {"command":"make"}: failed: no rule"#)
        .unwrap();
    assert!(read_at < run_at, "{summary}");
}

#[test]
fn the_summary_keeps_only_the_latest_calls_and_long_arguments_are_cut() {
    let mut watch = Watch::new(limits(), false);
    for i in 0..20 {
        watch.call("read_file", &read(&format!("f{i}.rs")), true, "");
    }
    watch.call("search", &json!({"pattern": "x".repeat(500)}), true, "");
    let summary = watch.summary(&Pattern::NoChange { turns: 1 });
    assert_eq!(summary.matches("\n- `").count(), SUMMARY_CALLS);
    assert!(
        summary.contains("f19.rs") && !summary.contains("f10.rs"),
        "{summary}"
    );
    assert!(summary.contains('…') && summary.len() < 2_000, "{summary}");
}

#[test]
fn rework_echo_needs_the_same_feedback_in_a_row() {
    let mut t = TaskShepherd::default();
    t.reviewed(false, "1. Add tests for parse().\n2. Handle empty input.");
    assert_eq!(t.echo(2), None);
    t.reviewed(false, "1) add tests for parse()\n2) handle the empty input");
    assert_eq!(t.echo(2), Some(Pattern::ReworkEcho { rounds: 2 }));
    assert_eq!(t.echo(3), None, "only two rounds so far");
    t.reviewed(false, "Rename the module and document it.");
    assert_eq!(t.echo(2), None, "new feedback");
    t.reviewed(true, "ok");
    assert!(t.rejections.is_empty());
}

#[test]
fn the_task_record_climbs_the_ladder_until_it_moves_on_or_is_retried() {
    let mut t = TaskShepherd::default();
    let echo = Pattern::ReworkEcho { rounds: 2 };
    t.intervened(&echo, Action::Nudge);
    assert!(
        t.note
            .as_deref()
            .is_some_and(|n| n.contains("same changes"))
    );
    t.transitioned(TaskState::Running);
    t.transitioned(TaskState::Reviewing);
    assert_eq!(
        t.steps, 1,
        "the code–review loop keeps its place on the ladder"
    );
    t.transitioned(TaskState::Testing);
    assert_eq!(t.steps, 0);
    let stuck = Pattern::NoChange { turns: 3 };
    t.intervened(&stuck, Action::Nudge);
    assert_eq!(
        t.note,
        Some(nudge_text(&echo, None)),
        "a nudge in conversation leaves no note"
    );
    t.intervened(&stuck, Action::Stop);
    assert_eq!(
        (t.steps, t.stuck.as_ref()),
        (2, None),
        "a stopped tester is no human's matter"
    );
    t.intervened(&stuck, Action::Escalate);
    t.transitioned(TaskState::Failed);
    assert_eq!(
        t.stuck.as_deref(),
        Some("3 turns without changing any file")
    );
    t.transitioned(TaskState::Pending);
    assert_eq!(t, TaskShepherd::default());
}

#[test]
fn the_clock_reports_a_task_stuck_in_one_state_once_per_limit() {
    let limits = limits();
    let mut clock = StateClock::default();
    let (a, b) = (TaskId::from("a"), TaskId::from("b"));
    let min = 60_000;
    assert!(
        clock
            .observe(
                [(&a, TaskState::Running), (&b, TaskState::Testing)],
                0,
                &limits
            )
            .is_empty()
    );
    assert!(
        clock
            .observe([(&a, TaskState::Running)], 9 * min, &limits)
            .is_empty()
    );
    let slow = Pattern::SlowStep {
        state: TaskState::Running,
        minutes: 10,
    };
    assert_eq!(
        clock.observe(
            [(&a, TaskState::Running), (&b, TaskState::Testing)],
            10 * min,
            &limits
        ),
        vec![(a.clone(), slow.clone())],
        "testing runs a command with its own timeout"
    );
    assert!(
        clock
            .observe([(&a, TaskState::Running)], 15 * min, &limits)
            .is_empty()
    );
    // A new state starts a new clock.
    assert!(
        clock
            .observe([(&a, TaskState::Reviewing)], 19 * min, &limits)
            .is_empty()
    );
    assert!(
        clock
            .observe([(&a, TaskState::Reviewing)], 28 * min, &limits)
            .is_empty()
    );
    assert_eq!(
        clock
            .observe([(&a, TaskState::Reviewing)], 29 * min, &limits)
            .len(),
        1
    );
}

#[test]
fn patterns_round_trip_through_json() {
    let all = [
        Pattern::RepeatedFailure {
            tool: "run".into(),
            error: "e".into(),
            times: 3,
        },
        Pattern::RepeatedCall {
            tool: "read_file".into(),
            arguments: "{}".into(),
            times: 4,
        },
        Pattern::NoChange { turns: 20 },
        Pattern::ReworkEcho { rounds: 2 },
        Pattern::SlowStep {
            state: TaskState::Reviewing,
            minutes: 31,
        },
    ];
    for p in all {
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(p.name()), "{text}");
        assert_eq!(serde_json::from_str::<Pattern>(&text).unwrap(), p);
        assert!(!p.describe().is_empty());
    }
}

#[test]
fn the_overseers_advice_is_its_last_proposal_about_the_pattern() {
    use crate::domain::metrics::Proposal;
    let proposal = |title: &str, rationale: &str, replace: &str| Proposal {
        title: title.into(),
        target: "prompts/coder.md".into(),
        rationale: rationale.into(),
        find: String::new(),
        replace: replace.into(),
    };
    let proposals = [
        proposal(
            "Stop re-reading",
            "the coder read the same file 40 times",
            "Read a file once;\n  its content stays above.",
        ),
        proposal("Tests first", "reviews asked for tests", "Write tests."),
        proposal(
            "Errors",
            "`run` failed with the same error three times",
            "Read the error before running again.",
        ),
    ];
    let reread = Pattern::RepeatedCall {
        tool: "read_file".into(),
        arguments: "{}".into(),
        times: 4,
    };
    assert_eq!(
        advice_for(&reread, &proposals).as_deref(),
        Some("Read a file once; its content stays above.")
    );
    let failing = Pattern::RepeatedFailure {
        tool: "run".into(),
        error: "e".into(),
        times: 3,
    };
    assert_eq!(
        advice_for(&failing, &proposals).as_deref(),
        Some("Read the error before running again.")
    );
    assert_eq!(
        advice_for(&Pattern::ReworkEcho { rounds: 2 }, &proposals),
        None
    );
    assert_eq!(advice_for(&reread, &[]), None);
}

#[test]
fn the_log_line_says_who_what_and_what_was_done() {
    let p = Pattern::NoChange { turns: 20 };
    let agent = crate::domain::AgentId::from("planner#1");
    let task = TaskId::from("a");
    assert_eq!(
        intervention_line(Some(&task), None, &p, Action::Escalate),
        "a: stuck (20 turns without changing any file); the shepherd handed it to a human"
    );
    assert_eq!(
        intervention_line(None, Some(&agent), &p, Action::Stop),
        "planner#1: stuck (20 turns without changing any file); the shepherd stopped the agent"
    );
    assert!(intervention_line(None, None, &p, Action::Nudge).starts_with("the run: "));
}

#[test]
fn a_failing_commands_error_is_its_output_not_its_echo() {
    let mut watch = Watch::new(limits(), false);
    let out = |n: u32| format!("$ sh tests/run.sh\nexit code 1\nFAIL test_slug\nrun {n}");
    let found: Vec<Pattern> = (0..3)
        .filter_map(|n| {
            watch.call(
                "run",
                &json!({"command": format!("sh t{n}")}),
                false,
                &out(n),
            )
        })
        .collect();
    assert!(
        matches!(&found[..], [Pattern::RepeatedFailure { error, .. }] if error == "FAIL test_slug"),
        "{found:?}"
    );
    assert_eq!(first_line("$ true\nexit code 1\n"), "$ true");
}

#[test]
fn memofabs_refusal_to_repeat_a_call_is_not_the_tool_failing() {
    // As measured (h1): two real errors, then the identical-read cap's
    // refusal; the third is memofab's, so not "failed 3 times".
    let mut watch = Watch::new(limits(), false);
    let args = json!({"path": "README.md"});
    let refusal = "Not run: this list_files call, with the same arguments, already ran 2 times \
                   and nothing was written since; its answer is above.";
    let found = play(
        &mut watch,
        &[
            (
                "list_files",
                args.clone(),
                false,
                "README.md is not a directory",
            ),
            (
                "list_files",
                args.clone(),
                false,
                "README.md is not a directory",
            ),
            ("list_files", args.clone(), false, refusal),
        ],
    );
    assert!(
        found
            .iter()
            .all(|(_, p)| !matches!(p, Pattern::RepeatedFailure { .. })),
        "{found:?}"
    );
    // The same call again and again is still seen: as a repeated call.
    assert!(
        matches!(
            found.last(),
            Some((3, Pattern::RepeatedCall { times: 3, .. }))
        ),
        "{found:?}"
    );
}

#[test]
fn a_repeated_command_is_not_said_to_have_changed_nothing() {
    // The 1.5B coder appended with `echo … >> README.md` four times: each
    // run changed the file, so "no file changed" was false and "its result
    // has not changed" sent it on appending.
    let mut watch = Watch::new(limits(), true);
    let echo = serde_json::json!({"command": "echo hi >> README.md"});
    let pattern = (0..4)
        .find_map(|_| watch.call("run", &echo, true, "$ echo hi >> README.md\nexit 0\n"))
        .expect("reported");
    let nudge = nudge_text(&pattern, None);
    assert!(
        nudge.contains("3 times") || nudge.contains("4 times"),
        "{nudge}"
    );
    assert!(!nudge.contains("no file changed"), "{nudge}");
    assert!(!nudge.contains("has not changed"), "{nudge}");
    let read = Pattern::RepeatedCall {
        tool: "read_file".into(),
        arguments: "{}".into(),
        times: 3,
    };
    assert!(nudge_text(&read, None).contains("no file changed"));
}

#[test]
fn replies_without_a_call_are_reported_every_second_one_and_a_call_starts_the_count_again() {
    let mut watch = Watch::new(limits(), false);
    assert_eq!(watch.no_call(), None);
    assert_eq!(watch.no_call(), Some(Pattern::NoCall { replies: 2 }));
    // Reported, then forgotten: the next step needs two more.
    assert_eq!(watch.no_call(), None);
    // A call in between: the count starts again.
    assert_eq!(watch.call("read_file", &read("a"), true, "a"), None);
    assert_eq!(watch.no_call(), None);
    assert_eq!(watch.no_call(), Some(Pattern::NoCall { replies: 2 }));
    // Off, and 0, report nothing.
    for off in [
        Thresholds::off(),
        Thresholds {
            no_call_replies: 0,
            ..limits()
        },
    ] {
        let mut watch = Watch::new(off, true);
        assert!((0..5).all(|_| watch.no_call().is_none()));
    }
}
