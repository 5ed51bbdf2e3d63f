//! A fake Bedrock runtime on 127.0.0.1. It speaks HTTP/1.1 by hand, checks
//! each request's SigV4 signature by recomputing it (with the `aws-sigv4`
//! crate, from the bytes received and the credentials it was given) and
//! answers 403 when it does not match. Good requests get the next canned
//! reply: event-stream frames written in pieces of a chosen size (down to
//! one byte per write), or an AWS-style error.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use memofab::llm::bedrock::eventstream::{HeaderValue, Message};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The credentials the fake accepts.
#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

#[derive(Clone)]
pub enum BedrockReply {
    /// 200 with these frames, written `piece` bytes at a time.
    Frames { frames: Vec<Message>, piece: usize },
    /// 200 with raw bytes (for corrupt or cut streams), in `piece`s.
    Raw { bytes: Vec<u8>, piece: usize },
    /// An error response as Bedrock sends it.
    Error {
        status: u16,
        kind: String,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the signature matched.
    pub signed: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

pub struct FakeBedrock {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBedrock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBedrock {
    /// Serves `replies` in order to correctly signed requests; the last one
    /// repeats.
    pub async fn start(keys: Keys, replies: Vec<BedrockReply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (log, queue, keys) = (log.clone(), queue.clone(), keys.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, &keys, &queue, &log).await;
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    keys: &Keys,
    queue: &Mutex<VecDeque<BedrockReply>>,
    log: &Mutex<Vec<Received>>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let Some(mut request) = read_request(&mut socket).await? else {
        return Ok(());
    };
    let problem = check_signature(&request, keys);
    request.signed = problem.is_none();
    log.lock().unwrap().push(request);
    let reply = match problem {
        Some((kind, message)) => BedrockReply::Error {
            status: 403,
            kind: kind.into(),
            message,
        },
        None => {
            let mut q = queue.lock().unwrap();
            let next = if q.len() > 1 {
                q.pop_front()
            } else {
                q.front().cloned()
            };
            next.expect("a reply is queued")
        }
    };
    let (bytes, piece) = match reply {
        BedrockReply::Error {
            status,
            kind,
            message,
        } => {
            let body = json!({ "message": message }).to_string();
            let head = format!(
                "HTTP/1.1 {status} Error\r\nConnection: close\r\nContent-Type: application/json\r\n\
                 x-amzn-ErrorType: {kind}:http://internal.amazon.com/coral/com.amazon.bedrock/\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            return socket.shutdown().await;
        }
        BedrockReply::Frames { frames, piece } => {
            (frames.iter().flat_map(Message::encode).collect(), piece)
        }
        BedrockReply::Raw { bytes, piece } => (bytes, piece),
    };
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\
                Content-Type: application/vnd.amazon.eventstream\r\n\r\n";
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await?;
    for chunk in bytes.chunks(piece.max(1)) {
        socket.write_all(chunk).await?;
        socket.flush().await?;
        // Gives the client a chance to read each piece on its own.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    socket.shutdown().await
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Option<Received>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Received {
        method,
        path,
        headers,
        body: buf[head_end..].to_vec(),
        signed: false,
    }))
}

/// What is wrong with the request's signature, as Bedrock would name it.
fn check_signature(request: &Received, keys: &Keys) -> Option<(&'static str, String)> {
    let Some(auth) = request.header("authorization") else {
        return Some((
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".to_owned(),
        ));
    };
    let wrong = || {
        Some((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided."
                .to_owned(),
        ))
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return wrong();
    };
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(credential), Some(signed_headers)) = (field("Credential"), field("SignedHeaders"))
    else {
        return wrong();
    };
    if credential.split('/').next() != Some(keys.access_key_id.as_str()) {
        return Some((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".to_owned(),
        ));
    }
    if request.header("x-amz-security-token") != keys.session_token.as_deref() {
        return wrong();
    }
    let Some(time) = request.header("x-amz-date").and_then(parse_amz_date) else {
        return wrong();
    };
    // The signer adds host, date and token itself; give it the rest.
    let mut others = Vec::new();
    for name in signed_headers.split(';') {
        if matches!(name, "host" | "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        match request.header(name) {
            Some(value) => others.push((name, value)),
            None => return wrong(),
        }
    }
    let host = request.header("host").unwrap_or_default();
    let url = format!("http://{host}{}", request.path);
    let identity = Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.clone(),
        keys.session_token.clone(),
        None,
        "fake",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&keys.region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        &request.method,
        url,
        others.into_iter(),
        SignableBody::Bytes(&request.body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let expected = instructions
        .headers()
        .find(|(n, _)| *n == "authorization")
        .map(|(_, v)| v.to_owned());
    if expected.as_deref() == Some(auth) {
        None
    } else {
        wrong()
    }
}

/// `20150830T123600Z` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let secs = memofab::domain::ids::unix_from_civil(
        i64::from(num(0..4)?),
        num(4..6)?,
        num(6..8)?,
        num(9..11)?,
        num(11..13)?,
        num(13..15)?,
    )?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

// ---- frames ---------------------------------------------------------------

fn string(name: &str, value: &str) -> (String, HeaderValue) {
    (name.to_owned(), HeaderValue::String(value.to_owned()))
}

/// A stream event as Bedrock frames it.
pub fn event(kind: &str, payload: Value) -> Message {
    Message {
        headers: vec![
            string(":event-type", kind),
            string(":content-type", "application/json"),
            string(":message-type", "event"),
        ],
        payload: payload.to_string().into_bytes(),
    }
}

/// An exception inside the stream, e.g. `throttlingException`.
pub fn exception(kind: &str, message: &str) -> Message {
    Message {
        headers: vec![
            string(":exception-type", kind),
            string(":content-type", "application/json"),
            string(":message-type", "exception"),
        ],
        payload: json!({ "message": message }).to_string().into_bytes(),
    }
}

pub fn text_reply(text: &[&str], input_tokens: u64) -> Vec<Message> {
    let mut frames = vec![event("messageStart", json!({"role": "assistant"}))];
    frames.extend(text.iter().map(|t| {
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": t}}),
        )
    }));
    frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    frames.push(event("messageStop", json!({"stopReason": "end_turn"})));
    frames.push(metadata(input_tokens, 9));
    frames
}

/// One tool call whose JSON input arrives in the given fragments, each in
/// its own frame.
pub fn tool_reply(id: &str, name: &str, fragments: &[&str]) -> Vec<Message> {
    let mut frames = vec![
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "On it."}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
        ),
    ];
    frames.extend(fragments.iter().map(|f| {
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": f}}}),
        )
    }));
    frames.push(event("contentBlockStop", json!({"contentBlockIndex": 1})));
    frames.push(event("messageStop", json!({"stopReason": "tool_use"})));
    frames.push(metadata(120, 30));
    frames
}

pub fn metadata(input: u64, output: u64) -> Message {
    event(
        "metadata",
        json!({"usage": {"inputTokens": input, "outputTokens": output,
            "totalTokens": input + output}, "metrics": {"latencyMs": 321}}),
    )
}
