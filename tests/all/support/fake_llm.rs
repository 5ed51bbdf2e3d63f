//! A fake LLM server on 127.0.0.1 for the HTTP providers' tests. It speaks
//! HTTP/1.1 by hand so tests control every byte and every chunk boundary:
//! each connection takes the next canned response, records the request, and
//! writes the response body as separate, flushed chunks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Computes a reply body from the request.
pub type Responder = Arc<dyn Fn(&Recorded) -> Vec<Vec<u8>> + Send + Sync>;

/// What the server answers to one request.
#[derive(Clone)]
pub enum Reply {
    /// A canned response: status, extra headers, body chunks.
    Canned {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<Vec<u8>>,
    },
    /// Computed from the request (for whole-factory runs).
    Dynamic(Responder),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub head: String,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Serves `replies` in order; the last one repeats once the queue is empty.
    /// Questions about the server (llama.cpp's `GET /props`, Ollama's
    /// `/api/show`) get a 404, as from a server that has no such endpoint,
    /// and are not recorded.
    pub async fn start(replies: Vec<Reply>) -> Self {
        Self::start_inner(replies, false).await
    }

    /// Like `start`, but questions about the server take replies too.
    pub async fn start_answering_probes(replies: Vec<Reply>) -> Self {
        Self::start_inner(replies, true).await
    }

    async fn start_inner(replies: Vec<Reply>, probes: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                let queue = queue.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, queue, probes, recorded).await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn request(&self, i: usize) -> Recorded {
        self.requests.lock().unwrap()[i].clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    queue: Arc<Mutex<VecDeque<Reply>>>,
    probes: bool,
    recorded: Arc<Mutex<Vec<Recorded>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let request = Recorded { head, body };
    let probe = request.head.starts_with("GET /props ") || request.head.contains(" /api/show ");
    let reply = if probe && !probes {
        status(404, "404 page not found", &[])
    } else {
        recorded.lock().unwrap().push(request.clone());
        let mut q = queue.lock().unwrap();
        let next = if q.len() > 1 {
            q.pop_front()
        } else {
            q.front().cloned()
        };
        match next {
            Some(reply) => reply,
            None => return Ok(()),
        }
    };

    let (status, headers, chunks) = match reply {
        Reply::Canned {
            status,
            headers,
            chunks,
        } => (status, headers, chunks),
        Reply::Dynamic(f) => (200, Vec::new(), f(&request)),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n",
        reason(status)
    );
    if status == 200 {
        out.push_str("Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n");
    } else {
        let len: usize = chunks.iter().map(Vec::len).sum();
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {len}\r\n"
        ));
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    socket.write_all(out.as_bytes()).await?;
    socket.flush().await?;
    for piece in chunks {
        socket.write_all(&piece).await?;
        socket.flush().await?;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    socket.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// `data: ...` events, one per item, as an SSE body.
pub fn sse(events: &[String]) -> Vec<u8> {
    events
        .iter()
        .map(|e| format!("data: {e}\n\n"))
        .collect::<String>()
        .into_bytes()
}

/// Named Anthropic-style events.
pub fn named_sse(events: &[(&str, String)]) -> Vec<u8> {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect::<String>()
        .into_bytes()
}

/// Splits `bytes` into chunks of `size` bytes, ignoring UTF-8 and event
/// boundaries on purpose.
pub fn chunked(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
    bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect()
}

pub fn ok(chunks: Vec<Vec<u8>>) -> Reply {
    Reply::Canned {
        status: 200,
        headers: Vec::new(),
        chunks,
    }
}

pub fn status(code: u16, body: &str, headers: &[(&str, &str)]) -> Reply {
    Reply::Canned {
        status: code,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        chunks: vec![body.as_bytes().to_vec()],
    }
}

/// A recorded wire-format file from `tests/fixtures/llm/` (see its README).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Serves a recorded stream verbatim, in `chunk`-byte pieces that ignore
/// line and character boundaries.
pub fn fixture_reply(name: &str, chunk: usize) -> Reply {
    ok(chunked(&fixture(name), chunk))
}

impl FakeServer {
    /// Every request body so far, as JSON.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(Recorded::json)
            .collect()
    }
}
