//! Small local models: a "model" that writes every call as text, in the
//! shapes Qwen2.5-Coder 0.5B/1.5B write them, gets its plan accepted and
//! its task merged over the real OpenAI wire format; a text-only provider
//! asks the server for one call per reply (`response_format`) and never
//! for a required one; `memofab init` picks the small profile for a small
//! local model.

use crate::support::{factory, fake_llm, scenario_server};

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use factory::*;
use fake_llm::*;
use memofab::config::{Config, ModelProfile};
use memofab::domain::event::{
    AgentFinished, AgentMessage, BlueprintAccepted, PlanDisputeSettled, PlanDisputed, PlanReviewed,
    RunPhaseChanged, ShepherdIntervened, ToolCalled, ToolResult,
};
use memofab::domain::{AgentRole, EventKind, MessageAuthor, RunPhase, TaskState, TestAgents};
use memofab::engine::context::ProviderSet;
use memofab::engine::run::orchestrator::Steering;
use memofab::engine::run::session::RunRequest;
use memofab::llm::http::{Endpoint, RetryPolicy};
use memofab::llm::openai::{OpenAiOptions, OpenAiProvider, ToolChoice};
use memofab::llm::types::TextToolCalls;
use scenario_server::Router;

fn provider(
    server: &FakeServer,
    options: impl Fn(OpenAiOptions) -> OpenAiOptions,
) -> Arc<OpenAiProvider> {
    let base = format!("{}/v1", server.url());
    let endpoint = Endpoint::new(
        &base,
        None,
        Duration::from_secs(5),
        Duration::from_secs(30),
        RetryPolicy::new(0),
    )
    .unwrap();
    Arc::new(
        OpenAiProvider::new("local", endpoint)
            .with_options(options(OpenAiOptions::for_base_url(&base))),
    )
}

async fn text_only_run(
    options: impl Fn(OpenAiOptions) -> OpenAiOptions,
) -> (DemoRepo, FakeServer, memofab::domain::RunState) {
    let repo = fixture_repo("small_models/text_only.toml");
    let router = Arc::new(Router::new(repo.scenario.clone()));
    let server = FakeServer::start(vec![Reply::Dynamic(Arc::new(move |req| {
        router.reply(&req.json())
    }))])
    .await;
    let provider = provider(&server, options);
    let mut request = demo_request(
        &repo,
        ProviderSet::uniform(provider, "qwen2.5-coder-1.5b-instruct"),
        Steering::Headless,
        true,
    );
    // What `init` gives a small local model: its identical reads are capped.
    request.config.run.profile = ModelProfile::Small;
    let state = run_headless(RunRequest {
        provider_label: "openai".into(),
        ..request
    })
    .await;
    (repo, server, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_writing_calls_as_text_gets_its_plan_accepted_and_its_task_merged() {
    let (repo, server, state) = text_only_run(|o| o).await;
    let events = stored_events(&repo.repo, &state.run);

    // The blueprint written without its title was accepted.
    let accepted = events.iter().find_map(|e| match &e.kind {
        EventKind::BlueprintAccepted(BlueprintAccepted { blueprint }) => Some(blueprint.clone()),
        _ => None,
    });
    let accepted = accepted.expect("the plan was accepted");
    assert_eq!(accepted.title, "");
    assert_eq!(accepted.tasks.len(), 1);
    assert_eq!(
        state.tasks().iter().map(|t| t.state).collect::<Vec<_>>(),
        vec![TaskState::Merged]
    );
    let tree = mainline_tree(&repo.repo);
    assert!(
        tree.contains(&("solo.txt".to_owned(), b"solo\n".to_vec())),
        "{:?}",
        tree.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    // Only the first of the two calls in one reply ran.
    assert!(!tree.iter().any(|(f, _)| f == "other.txt"));

    // The call of a tool not offered was answered with what was wrong.
    assert!(
        events.iter().any(|e| matches!(
            &e.kind,
            EventKind::AgentMessage(AgentMessage { from: MessageAuthor::User, text, .. })
                if text.contains("submit_plan") && text.contains("submit_blueprint")
        )),
        "no nudge naming the unknown tool"
    );
    // Three identical reads: two ran, the third was answered with the
    // second's answer, unrun (the transcript says so).
    let reads: Vec<(String, bool)> = events
        .iter()
        .enumerate()
        .filter_map(|(at, e)| match &e.kind {
            EventKind::ToolCalled(ToolCalled {
                agent,
                call_id,
                tool,
                ..
            }) if tool == "read_file" => events[at..].iter().find_map(|later| match &later.kind {
                EventKind::ToolResult(r) if r.agent == *agent && r.call_id == *call_id => {
                    Some((r.output.clone(), r.ok))
                }
                _ => None,
            }),
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 3, "{reads:?}");
    assert!(reads.iter().all(|r| *r == reads[0]), "{reads:?}");
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::AgentMessage(AgentMessage { from: MessageAuthor::System, text, .. })
            if text.contains("last answer, not run")
    )));
    // The turn after the refusal is not offered read_file; the next is.
    let offers = |body: &serde_json::Value, tool: &str| {
        body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == tool)
    };
    let bodies = server.bodies();
    let after = bodies
        .iter()
        .position(|b| offers(b, "write_file") && !offers(b, "read_file"))
        .expect("a request after the repeated read");
    assert!(!offers(&bodies[after], "list_files"));
    assert!(offers(&bodies[after + 1], "read_file"));
    // The model is told nothing it could copy into its result (a 1.5B
    // reviewer wrote "Not run: …" back as its verdict): the repeat's answer
    // is the file, as before.
    let messages = bodies[after]["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "tool");
    assert_eq!(last["content"].as_str(), Some(reads[0].0.as_str()));
    assert!(!bodies[after].to_string().contains("Not run:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_only_provider_asks_for_one_call_per_reply_and_never_a_required_one() {
    let (repo, server, state) = text_only_run(|o| OpenAiOptions {
        text_tool_calls: TextToolCalls::Constrained,
        tool_choice: Some(ToolChoice::Required),
        ..o
    })
    .await;
    assert!(
        state.tasks().iter().all(|t| t.state == TaskState::Merged),
        "the run still merges"
    );
    assert!(
        mainline_tree(&repo.repo)
            .iter()
            .any(|(f, _)| f == "solo.txt")
    );
    let bodies = server.bodies();
    assert!(bodies.len() >= 9, "{} requests", bodies.len());
    for body in &bodies {
        assert!(body.get("tool_choice").is_none(), "{body}");
        assert_eq!(
            body["temperature"].as_f64(),
            Some(memofab::config::model_options::SMALL_PROFILE_TEMPERATURE),
            "the small profile samples cold: {body}"
        );
        let tools: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        let format = &body["response_format"];
        assert_eq!(format["type"], "json_schema", "{body}");
        let calls = format["json_schema"]["schema"]["oneOf"].as_array().unwrap();
        let names: Vec<&str> = calls
            .iter()
            .map(|c| c["properties"]["name"]["const"].as_str().unwrap())
            .collect();
        assert_eq!(names, tools, "one branch per offered tool, in order");
        for (call, tool) in calls.iter().zip(body["tools"].as_array().unwrap()) {
            assert_eq!(
                call["properties"]["arguments"], tool["function"]["parameters"],
                "each branch takes that tool's own arguments"
            );
        }
    }
}

/// `memofab init` against a fake llama.cpp server.
fn init(repo: &Path, llamacpp: &str, extra: &[&str]) -> std::process::Output {
    Command::new(memofab_bin())
        .arg("init")
        .arg("--force")
        .args(extra)
        .current_dir(repo)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env("MEMOFAB_OLLAMA_URL", "http://127.0.0.1:9")
        .env("MEMOFAB_LLAMACPP_URL", llamacpp)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `memofab doctor`'s report, as `init`'s environment sees it.
fn doctor(repo: &Path) -> String {
    let out = Command::new(memofab_bin())
        .arg("doctor")
        .current_dir(repo)
        .env("XDG_CONFIG_HOME", repo.join("no-user-config"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git_repo(dir: &Path) {
    let ok = Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_gives_a_small_local_model_the_small_profile() {
    // What llama.cpp's /v1/models says of Qwen2.5-Coder-1.5B (trimmed).
    let small = FakeServer::start(vec![ok(vec![br#"{"object":"list","data":[{"id":"/models/qwen2.5-coder-1.5b-instruct.gguf","object":"model","owned_by":"llamacpp","meta":{"n_params":1777088000,"n_ctx_train":32768}}]}"#.to_vec()])]).await;
    let big = FakeServer::start(vec![ok(vec![br#"{"object":"list","data":[{"id":"qwen","object":"model","meta":{"n_params":32763876352}}]}"#.to_vec()])]).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    std::fs::create_dir_all(&repo).unwrap();
    git_repo(&repo);
    let config_path = repo.join(".memofab/config.toml");
    let load = || Config::load(std::slice::from_ref(&config_path)).unwrap();

    let out = tokio::task::block_in_place(|| init(&repo, &small.url(), &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(small.request(0).head.starts_with("GET /v1/models"));
    let config = load();
    assert_eq!(config.role(AgentRole::Coder).unwrap().0, "llamacpp");
    assert_eq!(config.run.profile, ModelProfile::Small);
    assert_eq!(config.run.test_agents, TestAgents::Off);
    assert!(config.reply_limits(AgentRole::Coder).max_tokens <= 2048);
    assert_eq!(
        config.providers["llamacpp"].text_tool_calls,
        TextToolCalls::Constrained
    );
    assert_eq!(config.providers["llamacpp"].tool_choice, None);
    // The two rounds of planning a rejected plan gets before a human sees it.
    assert_eq!(config.run.max_plan_rounds, 2);
    // `doctor` speaks of the providers the config uses, not of the
    // scripted demo model nobody asked for.
    let report = tokio::task::block_in_place(|| doctor(&repo));
    assert!(report.contains("llamacpp"), "{report}");
    assert!(!report.contains("scripted"), "{report}");

    // A big model on the same kind of server keeps the standard profile,
    // still with a local server's reply cap.
    let out = tokio::task::block_in_place(|| init(&repo, &big.url(), &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = load();
    assert_eq!(config.run.profile, ModelProfile::Standard);
    assert_eq!(config.run.test_agents, TestAgents::All);
    assert!(config.reply_limits(AgentRole::Coder).max_tokens <= 2048);
    // Unless asked for.
    let out = tokio::task::block_in_place(|| init(&repo, &big.url(), &["--profile", "small"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(load().run.profile, ModelProfile::Small);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_the_reviewer_did_not_approve_is_a_dispute_not_a_silent_build() {
    // The reviewer rejects, the planner's revision fails. Headless, nobody
    // settles the dispute: the run fails saying so, and nothing is built.
    let repo = fixture_repo("small_models/revision_fails.toml");
    let state = run_headless(demo_request(
        &repo,
        scripted(&repo),
        Steering::Headless,
        false,
    ))
    .await;
    let events = stored_events(&repo.repo, &state.run);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::AgentFinished(AgentFinished { agent, ok: false, .. }) if agent.as_str().starts_with("planner")
    )));
    assert!(
        !events.iter().any(|e| matches!(
            &e.kind,
            EventKind::BlueprintAccepted(BlueprintAccepted { .. })
        )),
        "a rejected blueprint was accepted"
    );
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::RunPhaseChanged(RunPhaseChanged { to: RunPhase::Failed, reason: Some(reason) })
            if reason.contains("The file does not exist yet")
    )));
    assert!(state.tasks().is_empty());
    assert!(
        !mainline_tree(&repo.repo)
            .iter()
            .any(|(f, _)| f == "solo.txt")
    );

    // With --auto-approve the decision is memofab's: the dispute is
    // recorded, settled by auto-approve, and the plan built.
    let repo = fixture_repo("small_models/revision_fails.toml");
    let state = run_headless(demo_request(
        &repo,
        scripted(&repo),
        Steering::Headless,
        true,
    ))
    .await;
    let events = stored_events(&repo.repo, &state.run);
    let disputed = events
        .iter()
        .position(|e| {
            matches!(
                &e.kind,
                EventKind::PlanDisputed(PlanDisputed { round: 1, .. })
            )
        })
        .expect("the dispute is recorded");
    let settled = events
        .iter()
        .position(|e| {
            matches!(&e.kind, EventKind::PlanDisputeSettled(PlanDisputeSettled { build: true, by })
                if *by == memofab::domain::Decider::Auto.as_stored())
        })
        .expect("settled by auto-approve");
    let accepted = events
        .iter()
        .position(|e| {
            matches!(
                &e.kind,
                EventKind::BlueprintAccepted(BlueprintAccepted { .. })
            )
        })
        .expect("then accepted");
    assert!(disputed < settled && settled < accepted);
    assert!(mainline_tree(&repo.repo).contains(&("solo.txt".to_owned(), b"solo\n".to_vec())));
}

/// A scripted run of `fixture` in the small profile.
async fn small_scripted_run(fixture: &str) -> (DemoRepo, Vec<memofab::domain::Event>) {
    let repo = fixture_repo(fixture);
    let mut request = demo_request(&repo, scripted(&repo), Steering::Headless, true);
    request.config.run.profile = ModelProfile::Small;
    let state = run_headless(request).await;
    let events = stored_events(&repo.repo, &state.run);
    assert_eq!(
        state.tasks().iter().map(|t| t.state).collect::<Vec<_>>(),
        vec![TaskState::Merged]
    );
    (repo, events)
}

/// The code reviewers' verdicts, in order: approved or not.
fn code_verdicts(events: &[memofab::domain::Event]) -> Vec<bool> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ReviewVerdict(v) => Some(v.approved),
            _ => None,
        })
        .collect()
}

/// How many agents whose name starts with `role` were started.
fn agents_started(events: &[memofab::domain::Event], role: &str) -> usize {
    events
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::AgentStarted(s) if s.agent.as_str().starts_with(role)),
        )
        .count()
}

/// The blueprint the run built.
fn accepted_blueprint(events: &[memofab::domain::Event]) -> memofab::domain::Blueprint {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::BlueprintAccepted(BlueprintAccepted { blueprint }) => {
                Some(blueprint.clone())
            }
            _ => None,
        })
        .expect("a blueprint was accepted")
}

/// The ids of the tasks of the blueprint the run built.
fn accepted_ids(events: &[memofab::domain::Event]) -> Vec<String> {
    accepted_blueprint(events)
        .tasks
        .iter()
        .map(|t| t.id.as_str().to_owned())
        .collect()
}

fn readme(repo: &DemoRepo) -> String {
    let tree = mainline_tree(&repo.repo);
    let (_, bytes) = tree.iter().find(|(f, _)| f == "README.md").unwrap();
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memofabs_own_words_handed_back_are_refused_and_are_no_tool_failure() {
    let (repo, events) = small_scripted_run("small_models/own_words.toml").await;
    // The blueprint whose task was the repeat refusal was not taken.
    assert_eq!(accepted_ids(&events), vec!["hello"]);
    // The verdict recorded is the reviewer's own, not the shepherd's nudge.
    let verdicts: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanReviewed(PlanReviewed { feedback, .. }) => Some(feedback.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts, vec!["One task adds the line to README.md."]);
    // The coder's summary is its own too.
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::AgentFinished(AgentFinished { agent, ok: true, summary })
            if agent.as_str().starts_with("coder") && summary.starts_with("Added Hello.")
    )));
    // Two failures of list_files and one refusal by memofab: not "failed 3
    // times", so the shepherd did not step in.
    assert!(
        !events.iter().any(|e| matches!(
            &e.kind,
            EventKind::ShepherdIntervened(ShepherdIntervened { .. })
        )),
        "the shepherd intervened"
    );
    assert_eq!(readme(&repo), "# A project\nHello.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_coder_cannot_overwrite_a_file_and_lose_its_lines() {
    let (repo, events) = small_scripted_run("small_models/whole_write.toml").await;
    // The rewrite from memory was not run; the edit after it added the line.
    assert_eq!(readme(&repo), "# A project\nHello.\n");
    // A file the coder created is its own to rewrite.
    let tree = mainline_tree(&repo.repo);
    assert!(tree.contains(&("NOTES.md".to_owned(), b"rewritten\n".to_vec())));
    let refused = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ToolResult(ToolResult { ok: false, output, .. }) if output.contains("```\n# A project")))
        .count();
    assert_eq!(refused, 1, "the refusal shows the file as it is");
    // The edit that replaced the first line is answered with the call that
    // adds after it instead: `new` is `old` and more.
    let suggested: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(ToolResult {
                ok: false, output, ..
            }) => serde_json::from_str(output.lines().find(|l| l.starts_with('{'))?).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(suggested.len(), 1, "{suggested:?}");
    let (old, new) = (
        suggested[0]["old"].as_str().unwrap(),
        suggested[0]["new"].as_str().unwrap(),
    );
    assert!(
        new.starts_with(old) && new.len() > old.len(),
        "{suggested:?}"
    );
    // memofab's own words were not written, nor the first line replaced:
    // the second write and the first edit were refused.
    let writes: Vec<bool> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(r) if r.agent.as_str().starts_with("coder") => Some(r.ok),
            _ => None,
        })
        .collect();
    assert_eq!(writes[..4], [false, false, false, true], "{writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_the_task_adds_at_the_end_does_not_land_first() {
    let (repo, events) = small_scripted_run("small_models/line_first.toml").await;
    assert_eq!(readme(&repo), "# A project\nHello.\n");
    // The line alone, the file retyped, the line first (written, then
    // edited in), an edit of the file's name, a line doubled, an edit of
    // nothing, the line written twice: none ran.
    let coder: Vec<&ToolResult> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(r) if r.agent.as_str().starts_with("coder") => Some(r),
            _ => None,
        })
        .collect();
    let ok: Vec<bool> = coder.iter().map(|r| r.ok).collect();
    assert_eq!(
        ok,
        [
            false, false, false, false, false, false, false, false, true, true
        ],
        "{ok:?}"
    );
    // Each refusal carried the write the coder then made, word for word.
    for refused in &coder[..8] {
        let call: serde_json::Value = refused
            .output
            .lines()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .expect("a suggested call");
        assert_eq!(call["path"], "README.md");
        assert_eq!(call["content"], "# A project\nHello.\n");
    }
}

/// The `ok` of each call a coder made, in order.
fn coder_results(events: &[memofab::domain::Event]) -> Vec<bool> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(r) if r.agent.as_str().starts_with("coder") => Some(r.ok),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_refused_write_sent_again_runs_as_the_write_it_was_handed() {
    let (repo, events) = small_scripted_run("small_models/same_refusal.toml").await;
    // Not the write sent (the heading's `#` lost, the line twice): the
    // file's line kept, the task's line once, at the end.
    assert_eq!(readme(&repo), "# A project\nHello.\n");
    // Refused once, then written; the coder finished; one coder ran.
    assert_eq!(coder_results(&events), [false, true, true]);
    assert_eq!(agents_started(&events, "coder"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coder_finishing_before_the_tasks_line_is_written_is_handed_the_write_once() {
    let (repo, events) = small_scripted_run("small_models/early_finish.toml").await;
    assert_eq!(readme(&repo), "# A project\nHello.\n");
    // The first finish refused, the write run, the second finish taken:
    // no rework, one coder.
    assert_eq!(coder_results(&events), [false, true, true]);
    assert_eq!(agents_started(&events, "coder"), 1);
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::NothingChanged(_))),
        "the task was sent back for nothing changed"
    );
    // The write that gave README.md the task's line was answered with the
    // step after it (measured: told only "wrote README.md (83 bytes)", the
    // 1.5B coder wrote those words into the file until it was replaced).
    let wrote = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ToolResult(r) if r.agent.as_str().starts_with("coder") && r.ok => {
                Some(r.output.clone())
            }
            _ => None,
        })
        .expect("a write");
    assert!(wrote.ends_with("call `finish`."), "{wrote}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_that_says_the_added_line_is_missing_is_asked_again_before_a_rework() {
    let (repo, events) = small_scripted_run("small_models/false_rejection.toml").await;
    assert_eq!(readme(&repo), "# A project\nHello.\n");
    // One verdict, the second answer; no rework: one coder ran.
    let verdicts = code_verdicts(&events);
    assert_eq!(verdicts, [true]);
    assert_eq!(agents_started(&events, "coder"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_naming_nothing_of_a_diff_that_adds_exactly_the_tasks_line_is_asked_again() {
    let (repo, events) = small_scripted_run("small_models/vague_rejection.toml").await;
    assert_eq!(readme(&repo), "# A project\nHello.\n");
    assert_eq!(code_verdicts(&events), [true]);
    assert_eq!(agents_started(&events, "coder"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_only_looks_is_answered_with_the_requirement_as_one_task() {
    let (repo, events) = small_scripted_run("small_models/only_looking.toml").await;
    // The planner's call that was refused suggested the plan it then
    // submitted, word for word, and that plan was taken: no echo refusal.
    let planner: Vec<&ToolResult> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(r) if r.agent.as_str().starts_with("planner") => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(
        planner.iter().map(|r| r.ok).collect::<Vec<_>>(),
        [false, true]
    );
    let suggested: serde_json::Value = planner[0]
        .output
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a suggested call");
    let submitted = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolCalled(c) if c.agent.as_str().starts_with("planner") => {
                Some(c.arguments.clone())
            }
            _ => None,
        })
        .nth(1)
        .expect("a second call");
    assert_eq!(suggested, submitted);
    let accepted = accepted_blueprint(&events);
    let tasks: Vec<(&str, Vec<String>)> = accepted
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.paths.clone()))
        .collect();
    assert_eq!(tasks, [("change", vec!["README.md".to_owned()])]);
    assert_eq!(readme(&repo), "# A project\nHello.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planner_stuck_on_plans_that_only_look_gives_way_to_the_requirement_as_one_task() {
    let (repo, events) = small_scripted_run("small_models/stuck_looking.toml").await;
    assert_eq!(accepted_ids(&events), ["change"]);
    // Said so before it was reviewed, and reviewed.
    let said = events
        .iter()
        .position(|e| matches!(&e.kind, EventKind::Warning(w) if w.task.is_none() && w.message.contains("one task")))
        .expect("a warning");
    let reviewed = events
        .iter()
        .position(|e| matches!(&e.kind, EventKind::PlanReviewed(_)))
        .expect("a review");
    assert!(said < reviewed);
    assert_eq!(agents_started(&events, "planner"), 1);
    assert_eq!(readme(&repo), "# A project\nHello.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_rejection_that_says_a_file_of_the_repository_is_absent_is_asked_again() {
    let (repo, events) = small_scripted_run("small_models/false_absent.toml").await;
    assert_eq!(readme(&repo), "# A project\nHello.\n");
    // One round: the plan approved, no second planner.
    let reviews: Vec<bool> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanReviewed(r) => Some(r.approved),
            _ => None,
        })
        .collect();
    assert_eq!(reviews, [true]);
    assert_eq!(agents_started(&events, "planner"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retyped_write_of_a_finished_file_writes_nothing_and_the_coder_may_finish() {
    let (repo, events) = small_scripted_run("small_models/already_there.toml").await;
    // The heading kept: the retyped write was not run.
    assert_eq!(readme(&repo), "# A project\nHello.\n");
    // It was answered as done, not refused: the rework finished and the
    // second review approved.
    let second_coder: Vec<bool> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolResult(r) if r.agent.as_str() == "coder:hello#2" => Some(r.ok),
            _ => None,
        })
        .collect();
    assert_eq!(second_coder, [true, true]);
    let verdicts = code_verdicts(&events);
    assert_eq!(verdicts, [false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_planners_tasks_that_only_look_are_left_out_and_the_change_is_built() {
    let (repo, events) = small_scripted_run("small_models/looking_tasks.toml").await;
    let accepted = accepted_blueprint(&events);
    let tasks: Vec<(&str, usize)> = accepted
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.depends_on.len()))
        .collect();
    assert_eq!(tasks, [("hello", 0)]);
    assert_eq!(readme(&repo), "# A project\nHello.\n");
}
