//! A reader that fails once a line grows past a bound: line-framed peers
//! (an MCP server's standard output) buffer a line until its newline, so a
//! server that never sends one would otherwise grow memofab's memory
//! without end.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Reads `inner`, failing with `InvalidData` on a line longer than `max`.
pub struct BoundedLines<R> {
    inner: R,
    max: usize,
    /// Bytes since the last newline.
    current: usize,
}

impl<R> BoundedLines<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            current: 0,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for BoundedLines<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                this.current = match read.iter().rposition(|&b| b == b'\n') {
                    Some(last) => read.len() - last - 1,
                    None => this.current + read.len(),
                };
                if this.current > this.max {
                    // A failed read leaves the buffer as it found it.
                    buf.set_filled(before);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a line longer than {} bytes", this.max),
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn short_lines_pass_a_long_one_fails() {
        let text = b"one\ntwo\nthree\n".repeat(100);
        let mut out = Vec::new();
        BoundedLines::new(&text[..], 6)
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, text);
        let endless = vec![b'x'; 10_000];
        let mut out = Vec::new();
        let err = BoundedLines::new(&endless[..], 100)
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
