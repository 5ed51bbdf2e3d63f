//! What both HTTP providers share: the client, mapping HTTP failures to
//! [`LlmError`], retrying the start of a request with backoff, and turning a
//! response body into a stream of [`StreamEvent`]s through a protocol decoder.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::sse::{SseEvent, SseParser};
use super::types::{LlmError, StreamEvent};
use crate::domain::redact::redact;

/// How the start of a request is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }

    /// Full jitter: a random wait up to the exponential bound, so many agents
    /// hitting a rate limit do not retry in lockstep.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let bound = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        bound.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Settings every HTTP provider has.
#[derive(Clone)]
pub struct Endpoint {
    pub client: reqwest::Client,
    pub base_url: String,
    pub api_key: Option<String>,
    pub retry: RetryPolicy,
}

impl Endpoint {
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, LlmError> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            // Between chunks, not in total: a long answer may stream for minutes.
            .read_timeout(idle_timeout)
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            retry,
        })
    }

    fn secrets(&self) -> Vec<String> {
        self.api_key.iter().cloned().collect()
    }
}

/// A protocol's reading of SSE events.
pub trait Decoder: Send + 'static {
    fn decode(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, LlmError>;
    /// The protocol's end marker was seen.
    fn is_complete(&self) -> bool;
    /// The body ended; a lenient protocol may still complete here.
    fn end_of_body(&mut self) -> Vec<StreamEvent> {
        Vec::new()
    }
}

/// Sends the request built by `build`, retrying failures worth retrying until
/// a response with a success status arrives. Rate and usage limits are not
/// retried here: they go straight back to the caller, whose provider's
/// [`Governor`](super::governor::Governor) parks every agent on it at once.
pub async fn send_with_retry(
    endpoint: &Endpoint,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, LlmError> {
    let mut attempt = 0;
    let mut seed = jitter_seed();
    loop {
        let error = match build().send().await {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => error_from_response(response, &endpoint.secrets()).await,
            Err(e) => send_error(&e, &endpoint.secrets()),
        };
        if matches!(error, LlmError::RateLimited { .. })
            || !error.is_retryable()
            || attempt >= endpoint.retry.max_retries
        {
            return Err(error);
        }
        seed = xorshift(seed);
        let jitter = (seed % 10_000) as f64 / 10_000.0;
        let delay = error
            .retry_after()
            .unwrap_or_else(|| endpoint.retry.delay(attempt, jitter));
        tracing::warn!(attempt, ?delay, error = %error, "retrying LLM request");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    u64::from(nanos) | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn send_error(e: &reqwest::Error, secrets: &[String]) -> LlmError {
    if e.is_timeout() {
        return LlmError::Timeout;
    }
    // reqwest's own message ("error sending request for url") hides what
    // went wrong; the innermost cause says it, e.g. that nothing listens.
    let mut cause: &dyn std::error::Error = e;
    let mut refused = false;
    while let Some(next) = cause.source() {
        cause = next;
        refused |= cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    }
    let url = e.url().map_or("the provider's URL", reqwest::Url::as_str);
    let text = if refused {
        format!("connection refused at {url}; is the server running, and is base_url right?")
    } else {
        format!("{url}: {cause}")
    };
    LlmError::Connect(redact(&text, secrets))
}

/// The most of an error response's body read: enough for any message.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// The first `cap` bytes of a response's body; the rest is never read (a
/// broken server's endless error page must not fill memory).
pub async fn body_at_most(mut response: Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = (cap - body.len()).min(chunk.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// Reads an error response into the matching [`LlmError`].
pub async fn error_from_response(response: Response, secrets: &[String]) -> LlmError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let body = String::from_utf8_lossy(&body_at_most(response, MAX_ERROR_BODY).await).into_owned();
    let message = redact(&error_message(&body), secrets);
    classify(status, message, retry_after)
}

/// A `retry-after` value: seconds, or an HTTP date (`Wed, 21 Oct 2015
/// 07:28:00 GMT`) measured from `now`. Capped at five minutes.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(300);
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(CAP));
    }
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<u32>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    let at = crate::domain::ids::unix_from_civil(
        year.parse().ok()?,
        month,
        day.parse().ok()?,
        h,
        mi,
        s,
    )?;
    let now = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)).min(CAP))
}

pub fn classify(status: StatusCode, message: String, retry_after: Option<Duration>) -> LlmError {
    let code = status.as_u16();
    match code {
        401 | 403 => LlmError::Auth {
            status: code,
            message,
        },
        404 => LlmError::NotFound {
            status: code,
            message,
        },
        429 => LlmError::RateLimited {
            message,
            retry_after,
        },
        // Out of credit is a usage limit too (Anthropic answers it with a
        // 400): parking waits for a human to top up instead of failing.
        400 | 402 if super::governor::is_usage_limit(&message) => LlmError::RateLimited {
            message,
            retry_after,
        },
        500..=599 => LlmError::Server {
            status: code,
            message,
            retry_after,
        },
        _ => LlmError::BadRequest {
            status: code,
            message,
        },
    }
}

/// The human message of an error body in either provider's JSON shape.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    });
    from_json.unwrap_or_else(|| {
        let trimmed = body.trim();
        if trimmed.is_empty() {
            "(no message)".to_owned()
        } else {
            trimmed.chars().take(300).collect()
        }
    })
}

enum State<D> {
    Starting(BoxFuture<'static, Result<Response, LlmError>>, D),
    Streaming {
        body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
        parser: SseParser,
        decoder: D,
        queue: VecDeque<StreamEvent>,
        eof: bool,
    },
    Done,
}

/// Streams the reply to a JSON POST at `path` under the endpoint: `sign`
/// adds the protocol's auth and version headers, `decoder` reads its events.
pub fn post_stream<D: Decoder>(
    endpoint: &Endpoint,
    path: &str,
    body: serde_json::Value,
    sign: fn(RequestBuilder, Option<&str>) -> RequestBuilder,
    decoder: D,
) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
    let endpoint = endpoint.clone();
    let url = format!("{}{path}", endpoint.base_url);
    let secrets = endpoint.secrets();
    let start = async move {
        send_with_retry(&endpoint, || {
            sign(
                endpoint.client.post(&url).json(&body),
                endpoint.api_key.as_deref(),
            )
        })
        .await
    }
    .boxed();
    event_stream(start, decoder, secrets)
}

/// Turns a request (started lazily, on first poll) into provider-neutral
/// events. The stream owns the response: dropping it aborts the request.
pub fn event_stream<D: Decoder>(
    start: BoxFuture<'static, Result<Response, LlmError>>,
    decoder: D,
    secrets: Vec<String>,
) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
    stream::unfold(State::Starting(start, decoder), move |state| {
        let secrets = secrets.clone();
        async move { next(state, &secrets).await }
    })
    .boxed()
}

async fn next<D: Decoder>(
    mut state: State<D>,
    secrets: &[String],
) -> Option<(Result<StreamEvent, LlmError>, State<D>)> {
    loop {
        state = match state {
            State::Done => return None,
            State::Starting(start, decoder) => match start.await {
                Ok(response) => State::Streaming {
                    body: response
                        .bytes_stream()
                        .map(|r| r.map(|b| b.to_vec()))
                        .boxed(),
                    parser: SseParser::default(),
                    decoder,
                    queue: VecDeque::new(),
                    eof: false,
                },
                Err(e) => return Some((Err(e), State::Done)),
            },
            State::Streaming {
                mut body,
                mut parser,
                mut decoder,
                mut queue,
                eof,
            } => {
                if let Some(event) = queue.pop_front() {
                    return Some((
                        Ok(event),
                        State::Streaming {
                            body,
                            parser,
                            decoder,
                            queue,
                            eof,
                        },
                    ));
                }
                if decoder.is_complete() {
                    return None;
                }
                if eof {
                    return Some((Err(LlmError::Truncated), State::Done));
                }
                let mut ended = false;
                let decoded = match body.next().await {
                    Some(Ok(chunk)) => parser.push(&chunk),
                    Some(Err(e)) if e.is_timeout() => {
                        return Some((Err(LlmError::Timeout), State::Done));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %redact(&e.to_string(), secrets), "reply stream broke");
                        return Some((Err(LlmError::Truncated), State::Done));
                    }
                    None => {
                        ended = true;
                        parser.finish().map(|e| e.into_iter().collect())
                    }
                };
                let events = match decoded {
                    Ok(events) => events,
                    Err(e) => return Some((Err(e), State::Done)),
                };
                for event in events {
                    match decoder.decode(event) {
                        Ok(items) => queue.extend(items),
                        Err(e) => return Some((Err(e), State::Done)),
                    }
                }
                if ended && !decoder.is_complete() {
                    queue.extend(decoder.end_of_body());
                }
                State::Streaming {
                    body,
                    parser,
                    decoder,
                    queue,
                    eof: ended,
                }
            }
        };
    }
}

/// The failure an error object inside a streamed reply reports. Servers put
/// it there after answering 200 (OpenAI and llama.cpp as `{"error": {...}}`,
/// Anthropic as an `error` event), so the HTTP status says nothing: read the
/// object's `code` (llama.cpp: the status it would have sent) and `type`.
pub fn stream_error(error: &serde_json::Value, secrets: &[String]) -> LlmError {
    let message = error
        .get("message")
        .and_then(serde_json::Value::as_str)
        .or_else(|| error.as_str())
        .unwrap_or("(no message)");
    let message = redact(message, secrets);
    let kind = error
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let code = error
        .get("code")
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    match (kind, code) {
        ("overloaded_error", _) => LlmError::StreamServer {
            status: 529,
            message,
        },
        ("rate_limit_error", _) | (_, Some(429)) => LlmError::RateLimited {
            message,
            retry_after: None,
        },
        (_, Some(status @ 400..=499)) => LlmError::BadRequest { status, message },
        ("invalid_request_error" | "exceed_context_size_error", None) => LlmError::BadRequest {
            status: 400,
            message,
        },
        (_, status) => LlmError::StreamServer {
            status: status.unwrap_or(500),
            message,
        },
    }
}

/// Parses one JSON data line, calling garbage a protocol error.
pub fn parse_json(data: &str) -> Result<serde_json::Value, LlmError> {
    serde_json::from_str(data).map_err(|e| {
        let shown: String = data.chars().take(120).collect();
        LlmError::Protocol(format!("a stream event is not valid JSON ({e}): {shown}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_450); // 2015-10-21 07:27:30
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999", now),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn errors_inside_a_stream_map_by_code_and_type() {
        let read = |v: serde_json::Value| stream_error(&v, &[]);
        assert_eq!(
            read(
                serde_json::json!({"code": 500, "message": "The model produced output that does not match the expected peg-native format", "type": "server_error"})
            ),
            LlmError::StreamServer {
                status: 500,
                message:
                    "The model produced output that does not match the expected peg-native format"
                        .into()
            }
        );
        assert!(matches!(
            read(serde_json::json!({"type": "overloaded_error", "message": "Overloaded"})),
            LlmError::StreamServer { status: 529, .. }
        ));
        assert!(matches!(
            read(serde_json::json!({"type": "rate_limit_error", "message": "slow"})),
            LlmError::RateLimited { .. }
        ));
        assert!(matches!(
            read(
                serde_json::json!({"code": 400, "message": "the request exceeds the available context size", "type": "exceed_context_size_error"})
            ),
            LlmError::BadRequest { status: 400, .. }
        ));
        // OpenAI's own mid-stream failures carry no numeric code.
        assert!(matches!(
            read(
                serde_json::json!({"message": "The server had an error", "type": "server_error", "code": null})
            ),
            LlmError::StreamServer { status: 500, .. }
        ));
        assert!(matches!(
            read(serde_json::json!({"message": "key sk-secret leaked", "type": "api_error"})),
            LlmError::StreamServer { .. }
        ));
        let redacted = stream_error(
            &serde_json::json!({"message": "bad key sk-secret-123", "type": "api_error"}),
            &["sk-secret-123".to_owned()],
        );
        assert!(
            !redacted.to_string().contains("sk-secret-123"),
            "{redacted}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::new(5);
        assert_eq!(p.delay(0, 1.0), Duration::from_millis(500));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(p.delay(10, 1.0), Duration::from_secs(30));
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn statuses_map_to_errors_with_their_messages() {
        let msg = error_message(
            r#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}"#,
        );
        assert_eq!(msg, "Incorrect API key provided");
        let anthropic = error_message(
            r#"{"type":"error","error":{"type":"not_found_error","message":"model: nope"}}"#,
        );
        assert_eq!(anthropic, "model: nope");
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, msg.clone(), None),
            LlmError::Auth { .. }
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, msg.clone(), None),
            LlmError::NotFound { .. }
        ));
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, msg.clone(), None).is_retryable());
        assert!(classify(StatusCode::BAD_GATEWAY, msg.clone(), None).is_retryable());
        assert!(!classify(StatusCode::BAD_REQUEST, msg, None).is_retryable());
        assert!(matches!(
            classify(
                StatusCode::BAD_REQUEST,
                "Your credit balance is too low to access the Anthropic API.".into(),
                None
            ),
            LlmError::RateLimited { .. }
        ));
    }
}
