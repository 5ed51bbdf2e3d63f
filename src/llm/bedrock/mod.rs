//! Amazon Bedrock through the Converse Stream API: a JSON request signed
//! with SigV4, answered by a binary event stream. Credentials are resolved
//! for every request (see [`credentials`]) and never leave this module
//! except inside the `authorization` header; their secret parts are kept
//! out of every error.
//!
//! Throttling and an unavailable service, whether answered as an HTTP
//! status or as an exception inside the stream, come back as
//! [`LlmError::RateLimited`], so the provider's governor parks every agent
//! on it like after a 429.

pub mod converse;
pub mod credentials;
pub mod eventstream;
pub mod sign;

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use reqwest::Response;

use super::LlmProvider;
use super::http::{Endpoint, RetryPolicy, classify, parse_retry_after};
use super::types::{CompletionRequest, LlmError, StreamEvent, TextToolCalls};
use crate::config::ProviderConfig;
use crate::domain::redact::redact;
use converse::{ConverseDecoder, is_limit, payload_message};
use credentials::AwsEnv;
use eventstream::FrameDecoder;

/// The SigV4 signing name of the Bedrock runtime API.
pub const SERVICE: &str = "bedrock";

/// The public endpoint of `region`.
pub fn default_base_url(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// What a request needs besides its body; cloned into each stream.
#[derive(Clone)]
struct Target {
    endpoint: Endpoint,
    region: String,
    profile: Option<String>,
    env: AwsEnv,
}

pub struct BedrockProvider {
    name: String,
    target: Target,
    text_tool_calls: TextToolCalls,
}

impl BedrockProvider {
    /// A provider signing for `region` with the credentials `env` gives for
    /// `profile`. The endpoint's API key is unused.
    pub fn new(
        name: &str,
        endpoint: Endpoint,
        region: &str,
        profile: Option<String>,
        env: AwsEnv,
    ) -> Self {
        Self {
            name: name.to_owned(),
            target: Target {
                endpoint,
                region: region.to_owned(),
                profile,
                env,
            },
            text_tool_calls: TextToolCalls::Auto,
        }
    }

    /// From a `kind = "bedrock"` provider's config. Fails now, not at the
    /// first request, when no region or no credentials can be found.
    pub fn from_config(name: &str, cfg: &ProviderConfig, env: AwsEnv) -> Result<Self, LlmError> {
        if let Some(var) = &cfg.api_key_env {
            return Err(LlmError::Config(format!(
                "provider {name}: api_key_env ({var}) does not apply to Bedrock, which signs with \
                 AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile); remove it"
            )));
        }
        let profile = cfg.profile.as_deref();
        let region = env
            .region(cfg.region.as_deref(), profile)
            .map_err(|e| in_provider(name, e))?;
        env.credentials(profile).map_err(|e| in_provider(name, e))?;
        let base_url = cfg
            .base_url
            .clone()
            .unwrap_or_else(|| default_base_url(&region));
        let endpoint = Endpoint::new(
            &base_url,
            None,
            Duration::from_secs(cfg.connect_timeout_secs),
            Duration::from_secs(cfg.request_timeout_secs),
            RetryPolicy::new(cfg.max_retries),
        )?;
        let mut provider = Self::new(name, endpoint, &region, cfg.profile.clone(), env);
        provider.text_tool_calls = cfg.text_tool_calls;
        Ok(provider)
    }
}

fn in_provider(name: &str, error: LlmError) -> LlmError {
    match error {
        LlmError::Config(m) => LlmError::Config(format!("provider {name}: {m}")),
        other => other,
    }
}

impl LlmProvider for BedrockProvider {
    fn name(&self) -> String {
        format!("bedrock:{}", self.name)
    }

    fn stream(
        &self,
        request: CompletionRequest,
    ) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
        let url = format!(
            "{}/model/{}/converse-stream",
            self.target.endpoint.base_url,
            path_segment(&request.model)
        );
        let body = converse::request_body(&request).to_string().into_bytes();
        let target = self.target.clone();
        let start = async move { send(&target, &url, &body).await }.boxed();
        stream::unfold(State::Starting(start), next).boxed()
    }

    fn reads_text_tool_calls(&self) -> bool {
        self.text_tool_calls.reads_text()
    }
}

/// A model ID or ARN as one URL path segment: `anthropic.claude-v2:1` is
/// sent as `anthropic.claude-v2%3A1`, as the SDKs do.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Signs and sends the request, retrying connection failures and server
/// errors with backoff; limits go straight back to the governor.
async fn send(
    target: &Target,
    url: &str,
    body: &[u8],
) -> Result<(Response, Vec<String>), LlmError> {
    let retry = target.endpoint.retry;
    let mut attempt = 0;
    loop {
        // Read afresh each time: a rotated key or token is used at once.
        let credentials = target.env.credentials(target.profile.as_deref())?;
        let secrets = credentials.secrets();
        let content_type = ("content-type", "application/json");
        let signed = sign::signed_headers(
            "POST",
            url,
            &[content_type],
            body,
            &credentials,
            sign::Scope {
                region: &target.region,
                service: SERVICE,
                time: SystemTime::now(),
            },
        )?;
        let mut request = target
            .endpoint
            .client
            .post(url)
            .header(content_type.0, content_type.1)
            .header("accept", "application/vnd.amazon.eventstream")
            .body(body.to_vec());
        for (name, value) in &signed {
            request = request.header(name.as_str(), value.as_str());
        }
        let error = match request.send().await {
            Ok(response) if response.status().is_success() => return Ok((response, secrets)),
            Ok(response) => error_from_response(response, &secrets).await,
            Err(e) if e.is_timeout() => LlmError::Timeout,
            Err(e) => LlmError::Connect(redact(&error_chain(&e), &secrets)),
        };
        if matches!(error, LlmError::RateLimited { .. })
            || !error.is_retryable()
            || attempt >= retry.max_retries
        {
            return Err(error);
        }
        let delay = error
            .retry_after()
            .unwrap_or_else(|| retry.delay(attempt, jitter()));
        tracing::warn!(attempt, ?delay, error = %error, "retrying Bedrock request");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// A fraction in [0, 1) from the clock, enough to spread retries apart.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 10_000) / 10_000.0
}

/// reqwest's message with its causes: the innermost says what went wrong.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        text.push_str(&format!(": {next}"));
        cause = next;
    }
    text
}

/// An error response. Bedrock names the error in `x-amzn-ErrorType`
/// (`ThrottlingException:http://…`); the body is `{"message": "…"}`.
async fn error_from_response(response: Response, secrets: &[String]) -> LlmError {
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let kind = header("x-amzn-errortype")
        .and_then(|k| k.split(':').next().map(str::to_owned))
        .filter(|k| !k.is_empty());
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, SystemTime::now()));
    let body = super::http::body_at_most(response, super::http::MAX_ERROR_BODY).await;
    let mut message = payload_message(&body);
    if let Some(kind) = &kind {
        message = format!("{kind}: {message}");
    }
    let message = redact(&message, secrets);
    if kind.as_deref().is_some_and(is_limit) {
        return LlmError::RateLimited {
            message,
            retry_after,
        };
    }
    classify(status, message, retry_after)
}

enum State {
    Starting(BoxFuture<'static, Result<(Response, Vec<String>), LlmError>>),
    Streaming {
        body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
        frames: FrameDecoder,
        decoder: ConverseDecoder,
        /// Events decoded and not yet handed out; an error ends the stream.
        queue: VecDeque<Result<StreamEvent, LlmError>>,
        ended: bool,
    },
    Done,
}

async fn next(mut state: State) -> Option<(Result<StreamEvent, LlmError>, State)> {
    loop {
        state = match state {
            State::Done => return None,
            State::Starting(start) => match start.await {
                Ok((response, secrets)) => State::Streaming {
                    body: response
                        .bytes_stream()
                        .map(|r| r.map(|b| b.to_vec()))
                        .boxed(),
                    frames: FrameDecoder::default(),
                    decoder: ConverseDecoder::new(secrets),
                    queue: VecDeque::new(),
                    ended: false,
                },
                Err(e) => return Some((Err(e), State::Done)),
            },
            State::Streaming {
                mut body,
                mut frames,
                mut decoder,
                mut queue,
                mut ended,
            } => {
                match queue.pop_front() {
                    Some(Err(e)) => return Some((Err(e), State::Done)),
                    Some(Ok(event)) => {
                        let state = State::Streaming {
                            body,
                            frames,
                            decoder,
                            queue,
                            ended,
                        };
                        return Some((Ok(event), state));
                    }
                    None => {}
                }
                if decoder.is_complete() {
                    return None;
                }
                if ended {
                    if decoder.ended_whole() && !frames.is_mid_message() {
                        return None;
                    }
                    return Some((Err(LlmError::Truncated), State::Done));
                }
                match body.next().await {
                    Some(Ok(chunk)) => match frames.push(&chunk) {
                        Ok(messages) => {
                            for message in &messages {
                                match decoder.decode(message) {
                                    Ok(events) => queue.extend(events.into_iter().map(Ok)),
                                    Err(e) => {
                                        queue.push_back(Err(e));
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => queue.push_back(Err(e)),
                    },
                    Some(Err(e)) if e.is_timeout() => {
                        return Some((Err(LlmError::Timeout), State::Done));
                    }
                    Some(Err(e)) => {
                        let shown = redact(&e.to_string(), decoder.secrets());
                        tracing::warn!(error = %shown, "Bedrock reply stream broke");
                        return Some((Err(LlmError::Truncated), State::Done));
                    }
                    None => ended = true,
                }
                State::Streaming {
                    body,
                    frames,
                    decoder,
                    queue,
                    ended,
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_and_arns_become_one_path_segment() {
        assert_eq!(
            path_segment("anthropic.claude-3-5-sonnet-20240620-v1:0"),
            "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
        );
        assert_eq!(
            path_segment("arn:aws:bedrock:us-east-1:123:inference-profile/us.x"),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x"
        );
    }
}
