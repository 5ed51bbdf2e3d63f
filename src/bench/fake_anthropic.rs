//! A fake Anthropic Messages server on 127.0.0.1 for `memofab bench
//! tokens`. It counts tokens itself (4 bytes a token, not the client's
//! estimate) and reports prompt caching the way the real one does: a
//! `cache_control` breakpoint caches the prompt up to its block; a request
//! reads the longest cached prefix that ends at a block at most 20 blocks
//! before one of its breakpoints, writes the rest up to its last breakpoint,
//! and reports `input_tokens` (uncached), `cache_read_input_tokens` and
//! `cache_creation_input_tokens` in `message_start` and `message_delta`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Blocks the server looks back from a breakpoint for a cached prefix.
const LOOKBACK_BLOCKS: usize = 20;
/// Bytes a token, for the server's own count.
const BYTES_PER_TOKEN: usize = 4;

/// What the fake answers to one request: text and tool calls (name, input).
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub text: String,
    pub calls: Vec<(String, Value)>,
}

pub type Script = Arc<dyn Fn(&Value) -> Answer + Send + Sync>;

/// One request's prompt, as the server counted and cached it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub uncached: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Counted {
    pub fn input(&self) -> u64 {
        self.uncached + self.cache_read + self.cache_write
    }
}

/// The prompt cache: hashes of the prefixes written so far.
#[derive(Debug, Default)]
pub struct PromptCache {
    enabled: bool,
    prefixes: HashSet<u64>,
}

impl PromptCache {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            prefixes: HashSet::new(),
        }
    }

    /// Counts `body`'s prompt and updates the cache as the server would.
    pub fn count(&mut self, body: &Value) -> Counted {
        let blocks = blocks(body);
        // Cumulative tokens and prefix hashes after each block.
        let mut tokens = Vec::with_capacity(blocks.len());
        let mut hashes = Vec::with_capacity(blocks.len());
        let (mut total, mut hash) = (0u64, 0xcbf2_9ce4_8422_2325u64);
        let mut breakpoints = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            let mut plain = block.clone();
            if plain.get("cache_control").is_some() {
                breakpoints.push(i);
                if let Some(map) = plain.as_object_mut() {
                    map.remove("cache_control");
                }
            }
            let text = plain.to_string();
            total += text.len().div_ceil(BYTES_PER_TOKEN) as u64;
            for byte in text.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            tokens.push(total);
            hashes.push(hash);
        }
        if !self.enabled || breakpoints.is_empty() {
            return Counted {
                uncached: total,
                ..Counted::default()
            };
        }
        let read_end = breakpoints
            .iter()
            .filter_map(|&b| {
                (b.saturating_sub(LOOKBACK_BLOCKS - 1)..=b)
                    .rev()
                    .find(|&i| self.prefixes.contains(&hashes[i]))
            })
            .max();
        let read = read_end.map_or(0, |i| tokens[i]);
        let last = breakpoints.last().copied().unwrap_or(0);
        let write = tokens[last].saturating_sub(read);
        for &b in &breakpoints {
            self.prefixes.insert(hashes[b]);
        }
        Counted {
            uncached: total - read - write,
            cache_read: read,
            cache_write: write,
        }
    }
}

/// The prompt's blocks in the order the server caches them: tools, system,
/// then every message's content blocks.
fn blocks(body: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = body["tools"].as_array().cloned().unwrap_or_default();
    match &body["system"] {
        Value::String(text) => out.push(json!({"type": "text", "text": text})),
        Value::Array(system) => out.extend(system.iter().cloned()),
        _ => {}
    }
    for message in body["messages"].as_array().into_iter().flatten() {
        match &message["content"] {
            Value::String(text) => out.push(json!({"type": "text", "text": text})),
            Value::Array(content) => out.extend(content.iter().cloned()),
            _ => {}
        }
    }
    out
}

/// The server's record of what it was asked.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: Vec<Counted>,
}

pub struct FakeAnthropic {
    pub url: String,
    pub tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAnthropic {
    pub async fn start(caching: bool, script: Script) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let cache = Arc::new(Mutex::new(PromptCache::new(caching)));
        let counted = tally.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (cache, counted, script) = (cache.clone(), counted.clone(), script.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, &cache, &counted, &script).await;
                });
            }
        });
        Ok(Self { url, tally, task })
    }

    pub fn requests(&self) -> Vec<Counted> {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requests
            .clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    cache: &Mutex<PromptCache>,
    tally: &Mutex<Tally>,
    script: &Script,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
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
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or_default();
    let counted = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .count(&body);
    tally
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .requests
        .push(counted);
    let answer = script(&body);
    let stream = reply(&answer, counted);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(stream.as_bytes()).await?;
    socket.shutdown().await
}

/// The SSE stream of a reply, usage reported as the real server does.
fn reply(answer: &Answer, counted: Counted) -> String {
    let usage = |output: u64| {
        json!({
            "input_tokens": counted.uncached,
            "cache_creation_input_tokens": counted.cache_write,
            "cache_read_input_tokens": counted.cache_read,
            "output_tokens": output,
        })
    };
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_bench", "type": "message",
            "role": "assistant", "content": [], "model": "claude-bench", "usage": usage(1)}}),
    )];
    let mut index = 0;
    let mut output = 0;
    if !answer.text.is_empty() {
        output += answer.text.len().div_ceil(BYTES_PER_TOKEN) as u64;
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": answer.text}}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        index += 1;
    }
    for (i, (name, input)) in answer.calls.iter().enumerate() {
        let input = input.to_string();
        output += input.len().div_ceil(BYTES_PER_TOKEN) as u64 + 8;
        events.push(("content_block_start", json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": format!("toolu_{index}_{i}"), "name": name, "input": {}}})));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": input}}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    let stop = if answer.calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": usage(output)}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(messages: &[&str], marks: usize) -> Value {
        let n = messages.len();
        let messages: Vec<Value> = messages
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let mut block = json!({"type": "text", "text": text});
                if i + marks >= n {
                    block["cache_control"] = json!({"type": "ephemeral"});
                }
                json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": [block]})
            })
            .collect();
        json!({"system": [{"type": "text", "text": "s".repeat(400), "cache_control": {"type": "ephemeral"}}],
            "messages": messages})
    }

    #[test]
    fn a_moving_breakpoint_reads_last_turns_prefix_and_writes_the_rest() {
        let mut cache = PromptCache::new(true);
        let a = "a".repeat(4000);
        let first = cache.count(&body(&[&a], 1));
        assert_eq!(first.cache_read, 0);
        assert!(first.cache_write > 1000, "{first:?}");
        let second = cache.count(&body(&[&a, "reply", "more"], 2));
        assert_eq!(second.cache_read, first.cache_write, "{second:?}");
        assert!(second.cache_write > 0 && second.uncached == 0);
        // The same prompt without breakpoints reads nothing.
        let mut plain = body(&[&a, "reply", "more"], 0);
        plain["system"][0]
            .as_object_mut()
            .unwrap()
            .remove("cache_control");
        let none = cache.count(&plain);
        assert_eq!(none.cache_read, 0);
        assert_eq!(none.input(), second.input());
        // A server that does not cache counts everything as input.
        let off = PromptCache::new(false).count(&body(&[&a], 1));
        assert_eq!(off.uncached, first.input());
    }
}
