//! Line framing around the SDK's stdio transport, so a line that is not JSON
//! gets the answer JSON-RPC 2.0 asks for: a `-32700` parse error with a null
//! id. The SDK drops such lines without a word, and a client whose request
//! was mangled on the way then waits forever.
//!
//! Incoming lines pass through a task that checks each is JSON; good lines
//! go on to the SDK through an in-memory pipe, bad ones are answered here.
//! Both the SDK's output and these answers reach stdout through one writer
//! task, one whole line at a time, so an answer never lands inside another
//! message.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Longest line read in one piece; a longer one is answered as unparsable
/// without holding all of it (the SDK refuses such lines too).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// The pipe's buffer between the checking task and the SDK.
const PIPE_BUFFER: usize = 64 * 1024;

/// The answer to a line that is not JSON.
pub fn parse_error_line() -> Vec<u8> {
    let mut line = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32700, "message": "Parse error: the line is not JSON"},
    })
    .to_string()
    .into_bytes();
    line.push(b'\n');
    line
}

/// Whether `line` (without its newline) is one JSON value. Blank lines are
/// not messages at all and get no answer.
fn is_json(line: &[u8]) -> bool {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

/// The SDK's transport over checked lines, and the task writing its output.
pub struct Checked<R> {
    pub reader: R,
    pub writer: LineWriter,
    /// Ends once every line queued for output is written: after the SDK
    /// dropped its writer and the input ended.
    pub drained: tokio::task::JoinHandle<()>,
}

/// Reader and writer for the SDK's transport over `input` and `output`:
/// what it reads is the JSON lines of `input`; what it writes goes to
/// `output` line by line, between the parse errors answered here.
pub fn checked<R, W>(input: R, output: W) -> Checked<impl AsyncRead + Send + Unpin>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (lines, queue) = mpsc::unbounded_channel::<Vec<u8>>();
    let drained = tokio::spawn(write_lines(queue, output));
    let (sdk_side, mut our_side) = tokio::io::duplex(PIPE_BUFFER);
    let answers = lines.clone();
    tokio::spawn(async move {
        let mut input = BufReader::new(input);
        loop {
            let line = match read_line(&mut input).await {
                Ok(Some(line)) => line,
                Ok(None) | Err(_) => break,
            };
            let Some(line) = line else {
                if answers.send(parse_error_line()).is_err() {
                    break;
                }
                continue;
            };
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if body.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if !is_json(body) {
                if answers.send(parse_error_line()).is_err() {
                    break;
                }
                continue;
            }
            if our_side.write_all(&line).await.is_err() {
                break;
            }
        }
        // Dropping our side ends the SDK's input: the client went away.
        let _ = our_side.shutdown().await;
    });
    let (reader, _unused) = tokio::io::split(sdk_side);
    Checked {
        reader,
        writer: LineWriter::new(lines),
        drained,
    }
}

/// The next line with its newline (added when the input ended without one);
/// `Some(None)` for a line over [`MAX_LINE`], skipped to its end; `None` at
/// the end of the input.
async fn read_line(
    input: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> io::Result<Option<Option<Vec<u8>>>> {
    let mut line = Vec::new();
    let mut oversized = false;
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            if line.is_empty() && !oversized {
                return Ok(None);
            }
            break;
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (at + 1, true),
            None => (chunk.len(), false),
        };
        if !oversized {
            if line.len() + take > MAX_LINE {
                oversized = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(&chunk[..take]);
            }
        }
        input.consume(take);
        if done {
            break;
        }
    }
    if oversized {
        return Ok(Some(None));
    }
    if !line.ends_with(b"\n") {
        line.push(b'\n');
    }
    Ok(Some(Some(line)))
}

/// Writes queued lines to `output` in order, flushing after each.
async fn write_lines(
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    mut output: impl AsyncWrite + Unpin,
) {
    while let Some(line) = queue.recv().await {
        if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
            break;
        }
    }
}

/// The SDK's writer: collects bytes into whole lines and queues each for
/// the writer task.
pub struct LineWriter {
    partial: Vec<u8>,
    lines: mpsc::UnboundedSender<Vec<u8>>,
}

impl LineWriter {
    fn new(lines: mpsc::UnboundedSender<Vec<u8>>) -> Self {
        Self {
            partial: Vec::new(),
            lines,
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.partial.extend_from_slice(buf);
        while let Some(at) = this.partial.iter().position(|b| *b == b'\n') {
            let rest = this.partial.split_off(at + 1);
            let line = std::mem::replace(&mut this.partial, rest);
            if this.lines.send(line).is_err() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "stdout is closed",
                )));
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn json_lines_pass_and_others_are_answered_in_order() {
        let (mut client_in, server_in) = tokio::io::duplex(4096);
        let (server_out, mut client_out) = tokio::io::duplex(4096);
        let Checked {
            mut reader,
            mut writer,
            ..
        } = checked(server_in, server_out);
        client_in
            .write_all(b"{\"a\":1}\nnot json\n\n{\"b\":\r\n[2]\r\n")
            .await
            .unwrap();
        drop(client_in);
        let mut passed = String::new();
        reader.read_to_string(&mut passed).await.unwrap();
        assert_eq!(passed, "{\"a\":1}\n[2]\r\n");
        writer.write_all(b"{\"reply\":").await.unwrap();
        writer.write_all(b"true}\n").await.unwrap();
        drop(writer);
        let mut out = String::new();
        client_out.read_to_string(&mut out).await.unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{out}");
        for error in &lines[..2] {
            assert_eq!(error["error"]["code"], -32700);
            assert_eq!(error["id"], serde_json::Value::Null);
        }
        assert_eq!(lines[2]["reply"], true);
    }
}
