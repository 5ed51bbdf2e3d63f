//! An incremental parser for server-sent events. Bytes arrive in arbitrary
//! chunks — an event, a line, even a UTF-8 character may be split — so the
//! parser buffers raw bytes and decodes only complete lines.

use super::types::LlmError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the server named the event.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// The largest event (or line) a stream may send: a server that never ends
/// one cannot grow memofab's memory without bound.
const MAX_EVENT_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// Bytes of `buf` known to hold no newline: not scanned again.
    scanned: usize,
    event: Option<String>,
    data: Vec<String>,
    /// Bytes of `data` so far.
    data_bytes: usize,
}

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LlmError> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            let Some(at) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                break;
            };
            let end = self.scanned + at;
            self.scanned = 0;
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line)
                .map_err(|_| LlmError::Protocol("the event stream is not valid UTF-8".into()))?;
            self.line(&line, &mut events);
        }
        if self.buf.len() + self.data_bytes > MAX_EVENT_BYTES {
            return Err(LlmError::Protocol(format!(
                "the event stream sent an event over {MAX_EVENT_BYTES} bytes"
            )));
        }
        Ok(events)
    }

    /// The stream ended: an event still being built is complete.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, LlmError> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8(rest)
                .map_err(|_| LlmError::Protocol("the event stream is not valid UTF-8".into()))?;
            let mut events = Vec::new();
            self.line(&line, &mut events);
            if let Some(event) = events.pop() {
                return Ok(Some(event));
            }
        }
        Ok(self.take())
    }

    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(event) = self.take() {
                events.push(event);
            }
            return;
        }
        if line.starts_with(':') {
            return; // a comment, e.g. a keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data_bytes += value.len();
                self.data.push(value.to_owned());
            }
            "event" => self.event = Some(value.to_owned()),
            // Not SSE: older llama.cpp servers report a failure mid-stream
            // as an `error: {json}` line (then `data: [DONE]`). Ignoring it,
            // as the spec says, would take the failure for a finished reply.
            "error" => {
                self.event = Some("error".to_owned());
                self.data_bytes += value.len();
                self.data.push(value.to_owned());
            }
            _ => {}
        }
    }

    fn take(&mut self) -> Option<SseEvent> {
        if self.data.is_empty() && self.event.is_none() {
            return None;
        }
        self.data_bytes = 0;
        Some(SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data).join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_by_byte(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for b in input {
            out.extend(p.push(std::slice::from_ref(b)).unwrap());
        }
        out.extend(p.finish().unwrap());
        out
    }

    #[test]
    fn an_event_that_never_ends_is_refused_at_the_bound() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; 1 << 20];
        assert!(p.push(b"data: ").unwrap().is_empty());
        let refused = (0..64).find_map(|_| p.push(&chunk).err());
        assert!(matches!(refused, Some(LlmError::Protocol(_))));
        assert!(p.buf.len() <= MAX_EVENT_BYTES + chunk.len());
        // Many lines of one endless event count too.
        let mut p = SseParser::default();
        let line = [b"data: ".as_slice(), &chunk, b"\n"].concat();
        let refused = (0..64).find_map(|_| p.push(&line).err());
        assert!(matches!(refused, Some(LlmError::Protocol(_))));
    }

    #[test]
    fn events_split_anywhere_parse_the_same() {
        let input = "event: message_start\ndata: {\"a\": \"héllo ✓\"}\n\n: keep-alive\n\ndata: line one\r\ndata: line two\r\n\r\ndata: [DONE]\n\n";
        let whole = {
            let mut p = SseParser::default();
            p.push(input.as_bytes()).unwrap()
        };
        assert_eq!(byte_by_byte(input.as_bytes()), whole);
        assert_eq!(
            whole,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\": \"héllo ✓\"}".into()
                },
                SseEvent {
                    event: None,
                    data: "line one\nline two".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn a_last_event_without_blank_line_is_flushed() {
        assert_eq!(
            byte_by_byte(b"data: tail"),
            vec![SseEvent {
                event: None,
                data: "tail".into()
            }]
        );
    }

    #[test]
    fn an_error_field_becomes_an_error_event() {
        assert_eq!(
            byte_by_byte(b"error: {\"code\":500}\n\ndata: [DONE]\n\n"),
            vec![
                SseEvent {
                    event: Some("error".into()),
                    data: "{\"code\":500}".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_a_protocol_error() {
        let mut p = SseParser::default();
        assert!(matches!(
            p.push(b"data: \xff\xfe\n"),
            Err(LlmError::Protocol(_))
        ));
    }
}
