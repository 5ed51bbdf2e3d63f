//! The Bedrock provider against a fake Bedrock that checks every SigV4
//! signature and answers in binary event-stream frames, written in pieces
//! that ignore frame boundaries (down to one byte per write): the provider
//! alone, and a real agent with a real recorder, store and tools making a
//! tool-use round trip and sitting out a throttling exception.

use crate::support::{agent_bench, fake_bedrock};

use std::sync::Arc;
use std::time::Duration;

use fake_bedrock::*;
use memofab::config::{ProviderConfig, ProviderKind};
use memofab::domain::event::{AgentParked, TokensUsed};
use memofab::domain::{AgentRole, Event, EventKind, TokenUsage};
use memofab::engine::agent::{AgentJob, AgentOutcome, AgentRunner, review_tool};
use memofab::engine::prompts::Prompt;
use memofab::llm::bedrock::BedrockProvider;
use memofab::llm::bedrock::credentials::AwsEnv;
use memofab::llm::bedrock::eventstream::Message;
use memofab::llm::governor::{Governor, GovernorConfig};
use memofab::llm::types::TextToolCalls;
use memofab::llm::{
    ChatMessage, Completion, CompletionRequest, LlmError, LlmProvider, ReplyLimits, ScriptKey,
    ToolSpec, assemble,
};
use serde_json::{Value, json};

const REGION: &str = "eu-central-1";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn keys() -> Keys {
    Keys {
        access_key_id: "AKIDMEMOFABTEST".into(),
        secret_access_key: "test/Secret+Key/0123456789abcdefEXAMPLE".into(),
        session_token: Some("session-token-for-the-fake-0001".into()),
        region: REGION.into(),
    }
}

/// A home directory whose `~/.aws` holds profile `work` with `keys` and
/// the region: the provider finds everything the way the AWS CLI would.
struct AwsHome {
    dir: tempfile::TempDir,
}

impl AwsHome {
    fn new(keys: &Keys) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            format!(
                "[default]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = other-secret-000000\n\n\
                 [work]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
                keys.access_key_id,
                keys.secret_access_key,
                keys.session_token.as_deref().unwrap()
            ),
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            format!("[profile work]\nregion = {}\n", keys.region),
        )
        .unwrap();
        Self { dir }
    }

    fn env(&self) -> AwsEnv {
        AwsEnv::fixed([("HOME", self.dir.path().display().to_string())])
    }
}

fn config(server: &FakeBedrock) -> ProviderConfig {
    ProviderConfig {
        base_url: Some(server.url()),
        model: Some(MODEL.into()),
        request_timeout_secs: 5,
        connect_timeout_secs: 2,
        max_retries: 2,
        max_concurrency: 2,
        max_parked_secs: 60,
        text_tool_calls: TextToolCalls::Auto,
        profile: Some("work".into()),
        ..ProviderConfig::new(ProviderKind::Bedrock)
    }
}

fn bedrock(server: &FakeBedrock, env: AwsEnv) -> Arc<dyn LlmProvider> {
    Arc::new(BedrockProvider::from_config("aws", &config(server), env).unwrap())
}

fn request() -> CompletionRequest {
    CompletionRequest {
        model: MODEL.into(),
        system: "You code.".into(),
        messages: vec![ChatMessage::User {
            content: "Go.".into(),
        }],
        tools: vec![ToolSpec {
            name: "write_file".into(),
            description: "Write a file".into(),
            parameters: json!({"type": "object", "required": ["path", "content"]}),
        }],
        max_tokens: 300,
        temperature: None,
        reasoning_effort: None,
        script: ScriptKey {
            role: AgentRole::Coder,
            task: None,
            attempt: 1,
        },
    }
}

async fn complete(provider: &dyn LlmProvider) -> Result<Completion, LlmError> {
    tokio::time::timeout(
        Duration::from_secs(20),
        assemble(provider.stream(request()), |_| {}),
    )
    .await
    .expect("finishes in time")
    .map_err(|i| i.error)
}

fn frames(frames: Vec<Message>, piece: usize) -> BedrockReply {
    BedrockReply::Frames { frames, piece }
}

fn error(status: u16, kind: &str, message: &str) -> BedrockReply {
    BedrockReply::Error {
        status,
        kind: kind.into(),
        message: message.into(),
    }
}

// ---- the provider alone -------------------------------------------------

#[tokio::test]
async fn a_reply_in_pieces_of_any_size_decodes_whole_from_a_signed_request() {
    let reply = text_reply(&["Hel", "lo ", "wörld ✓"], 50);
    let whole: usize = reply.iter().map(|m| m.encode().len()).sum();
    let pieces = [1, 7, whole];
    let server = FakeBedrock::start(
        keys(),
        pieces.iter().map(|&p| frames(reply.clone(), p)).collect(),
    )
    .await;
    let home = AwsHome::new(&keys());
    let provider = bedrock(&server, home.env());
    for piece in pieces {
        let c = complete(&*provider).await.unwrap();
        assert_eq!(c.text, "Hello wörld ✓", "pieces of {piece}");
        assert_eq!((c.usage.input, c.usage.output), (50, 9));
    }
    let received = server.received();
    assert_eq!(received.len(), 3);
    let first = &received[0];
    assert!(first.signed, "{:?}", first.header("authorization"));
    assert_eq!(first.method, "POST");
    assert_eq!(
        first.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    assert!(
        first
            .header("authorization")
            .unwrap()
            .contains(&format!("/{REGION}/bedrock/aws4_request"))
    );
    let body = first.json();
    assert_eq!(
        body["messages"][0],
        json!({"role": "user", "content": [{"text": "Go."}]})
    );
    assert_eq!(body["system"][0]["text"], "You code.");
    assert_eq!(body["inferenceConfig"]["maxTokens"], 300);
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "write_file"
    );
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"],
        json!(["path", "content"])
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_403_and_surfaced_as_auth() {
    let server = FakeBedrock::start(keys(), vec![frames(text_reply(&["no"], 1), 64)]).await;
    let wrong_secret = "wrong/Secret+Key/0000000000000000WRONG";
    let env = AwsEnv::fixed([
        ("AWS_ACCESS_KEY_ID", keys().access_key_id),
        ("AWS_SECRET_ACCESS_KEY", wrong_secret.to_owned()),
        ("AWS_SESSION_TOKEN", keys().session_token.unwrap()),
        ("AWS_REGION", REGION.to_owned()),
    ]);
    let err = complete(&*bedrock(&server, env)).await.unwrap_err();
    assert!(matches!(err, LlmError::Auth { status: 403, .. }), "{err:?}");
    assert!(!err.to_string().contains(wrong_secret));
    let received = server.received();
    assert_eq!(received.len(), 1, "a refused signature is not retried");
    assert!(!received[0].signed);
    // The secret itself never travels.
    let head: String = received[0]
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect();
    assert!(!head.contains(wrong_secret) && !head.contains("Secret+Key"));
}

#[tokio::test]
async fn throttling_and_unavailability_are_rate_limits_and_not_retried_blindly() {
    let server = FakeBedrock::start(
        keys(),
        vec![
            error(
                429,
                "ThrottlingException",
                "Too many requests, please wait.",
            ),
            error(
                503,
                "ServiceUnavailableException",
                "Bedrock is unable to process your request.",
            ),
            frames(
                vec![
                    event("messageStart", json!({"role": "assistant"})),
                    exception("serviceUnavailableException", "Try again later."),
                ],
                5,
            ),
            frames(
                vec![exception("validationException", "maxTokens too large")],
                3,
            ),
        ],
    )
    .await;
    let home = AwsHome::new(&keys());
    let provider = bedrock(&server, home.env());
    for expected in ["Too many requests", "unable to process", "Try again later"] {
        match complete(&*provider).await.unwrap_err() {
            LlmError::RateLimited { message, .. } => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("{expected}: {other:?}"),
        }
    }
    let err = complete(&*provider).await.unwrap_err();
    assert!(
        matches!(err, LlmError::BadRequest { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(server.received().len(), 4, "one request each");
}

#[tokio::test]
async fn an_internal_server_error_is_retried_with_a_fresh_signature() {
    let server = FakeBedrock::start(
        keys(),
        vec![
            error(500, "InternalServerException", "Internal failure"),
            frames(text_reply(&["second time lucky"], 4), 16),
        ],
    )
    .await;
    let home = AwsHome::new(&keys());
    let c = complete(&*bedrock(&server, home.env())).await.unwrap();
    assert_eq!(c.text, "second time lucky");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.signed));
}

#[tokio::test]
async fn a_cut_or_corrupt_stream_is_a_garbled_reply() {
    let wire: Vec<u8> = text_reply(&["partial"], 3)
        .iter()
        .flat_map(Message::encode)
        .collect();
    let mut corrupt = wire.clone();
    corrupt[40] ^= 0x20;
    let server = FakeBedrock::start(
        keys(),
        vec![
            BedrockReply::Raw {
                bytes: wire[..wire.len() - 10].to_vec(),
                piece: 11,
            },
            BedrockReply::Raw {
                bytes: corrupt,
                piece: 11,
            },
        ],
    )
    .await;
    let home = AwsHome::new(&keys());
    let provider = bedrock(&server, home.env());
    let cut = complete(&*provider).await.unwrap_err();
    assert_eq!(cut, LlmError::Truncated);
    let bad = complete(&*provider).await.unwrap_err();
    assert!(matches!(bad, LlmError::Protocol(_)), "{bad:?}");
    assert!(cut.is_garbled() && bad.is_garbled());
}

#[test]
fn kind_bedrock_reads_from_toml_and_refuses_an_api_key() {
    let cfg: ProviderConfig = toml::from_str(
        "kind = \"bedrock\"\nregion = \"us-west-2\"\nprofile = \"work\"\nmodel = \"amazon.nova-pro-v1:0\"\n",
    )
    .unwrap();
    assert_eq!(cfg.kind, ProviderKind::Bedrock);
    assert_eq!(cfg.region.as_deref(), Some("us-west-2"));
    let home = AwsHome::new(&keys());
    let provider = BedrockProvider::from_config("aws", &cfg, home.env()).unwrap();
    assert_eq!(provider.name(), "bedrock:aws");
    let keyed = ProviderConfig {
        api_key_env: Some("AWS_BEARER_TOKEN".into()),
        ..cfg
    };
    let err = BedrockProvider::from_config("aws", &keyed, home.env())
        .err()
        .unwrap();
    assert!(matches!(err, LlmError::Config(_)));
}

// ---- through an agent ----------------------------------------------------

/// The shared bench with this module's `runner` and jobs (its own type:
/// every module adds methods of these names).
struct Bench(agent_bench::AgentBench);

impl std::ops::Deref for Bench {
    type Target = agent_bench::AgentBench;

    fn deref(&self) -> &agent_bench::AgentBench {
        &self.0
    }
}

fn bench() -> Bench {
    Bench(agent_bench::AgentBench::new("bedrock"))
}

impl Bench {
    fn runner(&self, provider: Arc<dyn LlmProvider>) -> AgentRunner {
        AgentRunner {
            recorder: self.recorder.clone(),
            provider,
            model: MODEL.into(),
            max_turns: 4,
            prices: Default::default(),
            governor: Governor::new("aws", GovernorConfig::default()),
            reply: ReplyLimits::default(),
            small_model_guards: false,
            shepherd: Default::default(),
        }
    }

    fn coder(&self) -> AgentJob {
        self.coder_job("Write hello.py.", 1, 4096)
    }
}

fn prompt() -> Prompt {
    Prompt {
        text: "You code.".into(),
        source: "test".into(),
    }
}

fn usages(events: &[Event]) -> Vec<TokenUsage> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TokensUsed(TokensUsed { usage, .. }) => Some(*usage),
            _ => None,
        })
        .collect()
}

fn parked(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentParked(AgentParked { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_tool_use_round_trip_through_an_agent_writes_the_file_and_answers_with_a_tool_result() {
    let b = bench();
    let server = FakeBedrock::start(
        keys(),
        vec![
            // The call's input arrives in three frames, the frames in 5-byte reads.
            frames(
                tool_reply(
                    "tooluse_write",
                    "write_file",
                    &[
                        "{\"path\": \"hel",
                        "lo.py\", \"content\": ",
                        "\"print('hi')\\n\"}",
                    ],
                ),
                5,
            ),
            frames(
                tool_reply("tooluse_finish", "finish", &["{\"summary\": \"done\"}"]),
                64,
            ),
        ],
    )
    .await;
    let home = AwsHome::new(&keys());
    let outcome = b
        .runner(bedrock(&server, home.env()))
        .run(b.coder())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Ok(AgentOutcome::Finished { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(b.work().join("hello.py")).unwrap(),
        "print('hi')\n"
    );
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.signed));
    let sent = received[1].json();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{sent}");
    assert_eq!(messages[1]["role"], "assistant");
    let tool_use = messages[1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b.get("toolUse"))
        .unwrap();
    assert_eq!(
        tool_use,
        &json!({"toolUseId": "tooluse_write", "name": "write_file",
            "input": {"path": "hello.py", "content": "print('hi')\n"}})
    );
    assert_eq!(messages[2]["role"], "user");
    let result: &Value = &messages[2]["content"][0]["toolResult"];
    assert_eq!(result["toolUseId"], "tooluse_write");
    assert!(result["content"][0]["text"].is_string());
    let used = usages(&b.events());
    assert_eq!(used.len(), 2);
    assert_eq!((used[0].input, used[0].output), (120, 30));
}

#[tokio::test]
async fn throttling_mid_stream_parks_through_the_governor_and_the_request_is_asked_again() {
    let b = bench();
    let review = tool_reply(
        "tooluse_review",
        "submit_review",
        &["{\"approved\": true, ", "\"feedback\": \"\"}"],
    );
    let server = FakeBedrock::start(
        keys(),
        vec![
            frames(
                vec![
                    event("messageStart", json!({"role": "assistant"})),
                    event(
                        "contentBlockDelta",
                        json!({"contentBlockIndex": 0, "delta": {"text": "Revi"}}),
                    ),
                    exception(
                        "throttlingException",
                        "Too many tokens, please wait before trying again.",
                    ),
                ],
                9,
            ),
            frames(review, 3),
        ],
    )
    .await;
    let home = AwsHome::new(&keys());
    let job = AgentJob {
        role: AgentRole::PlanReviewer,
        task: None,
        attempt: 1,
        prompt: prompt(),
        first_message: "Review.".into(),
        toolbox: None,
        submit: Some(review_tool()),
    };
    let outcome = b
        .runner(bedrock(&server, home.env()))
        .run(job)
        .await
        .unwrap();
    assert!(
        matches!(outcome, Ok(AgentOutcome::Submitted { .. })),
        "{outcome:?}"
    );
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.signed));
    let parks = parked(&b.events());
    assert_eq!(parks.len(), 1, "{parks:?}");
    assert!(parks[0].contains("Too many tokens"), "{}", parks[0]);
}
