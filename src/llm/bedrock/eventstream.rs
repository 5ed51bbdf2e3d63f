//! The `application/vnd.amazon.eventstream` binary framing, decoded
//! incrementally. Each message is
//!
//! ```text
//! total length u32 | headers length u32 | prelude CRC32 u32 | headers | payload | message CRC32 u32
//! ```
//!
//! (big-endian; the prelude CRC covers the first 8 bytes, the message CRC
//! everything before it). Bytes arrive in arbitrary pieces, so the decoder
//! buffers them and yields only whole, checksum-verified messages. A bad
//! checksum or an impossible length is an error: past it the stream cannot
//! be re-synchronised.

use super::super::types::LlmError;

const PRELUDE: usize = 12;
/// Prelude plus the trailing message CRC.
const OVERHEAD: usize = PRELUDE + 4;
/// The format's own limits (16 MiB messages, 128 KiB of headers).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 128 * 1024;

/// A header value. Only strings matter to Bedrock; the other types are
/// parsed so a message carrying them still decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Int(i64),
    Bytes(Vec<u8>),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// A string header's value, e.g. `:event-type`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// The bytes of this message on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            // Names are at most 255 bytes by the format; longer ones are cut.
            let name = &name.as_bytes()[..name.len().min(255)];
            headers.push(name.len() as u8);
            headers.extend_from_slice(name);
            match value {
                HeaderValue::Bool(true) => headers.push(0),
                HeaderValue::Bool(false) => headers.push(1),
                HeaderValue::Int(n) => {
                    headers.push(5);
                    headers.extend_from_slice(&n.to_be_bytes());
                }
                HeaderValue::Bytes(b) => {
                    headers.push(6);
                    push_short_bytes(&mut headers, b);
                }
                HeaderValue::String(s) => {
                    headers.push(7);
                    push_short_bytes(&mut headers, s.as_bytes());
                }
                HeaderValue::Timestamp(ms) => {
                    headers.push(8);
                    headers.extend_from_slice(&ms.to_be_bytes());
                }
                HeaderValue::Uuid(id) => {
                    headers.push(9);
                    headers.extend_from_slice(id);
                }
            }
        }
        let total = OVERHEAD + headers.len() + self.payload.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        out.extend_from_slice(&headers);
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        out
    }
}

fn push_short_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Buffers bytes and splits off whole messages.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Feeds a chunk; returns the messages it completed (none while a
    /// message is still partial).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Message>, LlmError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(len) = frame_length(&self.buf[start..])? {
            if self.buf.len() - start < len {
                break;
            }
            out.push(decode_frame(&self.buf[start..start + len])?);
            start += len;
        }
        self.buf.drain(..start);
        Ok(out)
    }

    /// Bytes of an unfinished message are buffered.
    pub fn is_mid_message(&self) -> bool {
        !self.buf.is_empty()
    }
}

fn be32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

fn protocol(what: String) -> LlmError {
    LlmError::Protocol(format!("event stream: {what}"))
}

/// The length of the message starting at `buf`, once its prelude is in and
/// checked; `None` while fewer than 12 bytes are buffered.
fn frame_length(buf: &[u8]) -> Result<Option<usize>, LlmError> {
    if buf.len() < PRELUDE {
        return Ok(None);
    }
    let total = be32(buf) as usize;
    let headers = be32(&buf[4..]) as usize;
    let crc = be32(&buf[8..]);
    if crc32fast::hash(&buf[..8]) != crc {
        return Err(protocol("the prelude checksum does not match".into()));
    }
    if !(OVERHEAD..=MAX_MESSAGE).contains(&total)
        || headers > MAX_HEADERS
        || headers > total - OVERHEAD
    {
        return Err(protocol(format!(
            "impossible lengths: message {total} bytes, headers {headers}"
        )));
    }
    Ok(Some(total))
}

/// Decodes one whole message (prelude already checked).
fn decode_frame(frame: &[u8]) -> Result<Message, LlmError> {
    let end = frame.len() - 4;
    if crc32fast::hash(&frame[..end]) != be32(&frame[end..]) {
        return Err(protocol("a message checksum does not match".into()));
    }
    let headers_len = be32(&frame[4..]) as usize;
    let headers = parse_headers(&frame[PRELUDE..PRELUDE + headers_len])?;
    Ok(Message {
        headers,
        payload: frame[PRELUDE + headers_len..end].to_vec(),
    })
}

fn parse_headers(mut bytes: &[u8]) -> Result<Vec<(String, HeaderValue)>, LlmError> {
    let short = || protocol("a header runs past its section".into());
    let take = |bytes: &mut &[u8], n: usize| -> Result<Vec<u8>, LlmError> {
        if bytes.len() < n {
            return Err(short());
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head.to_vec())
    };
    let mut headers = Vec::new();
    while !bytes.is_empty() {
        let name_len = usize::from(take(&mut bytes, 1)?[0]);
        let name = String::from_utf8(take(&mut bytes, name_len)?)
            .map_err(|_| protocol("a header name is not UTF-8".into()))?;
        let kind = take(&mut bytes, 1)?[0];
        let int = |b: Vec<u8>| b.iter().fold(0i64, |n, &x| (n << 8) | i64::from(x));
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Int(i64::from(take(&mut bytes, 1)?[0] as i8)),
            3 => HeaderValue::Int(i64::from(int(take(&mut bytes, 2)?) as i16)),
            4 => HeaderValue::Int(i64::from(int(take(&mut bytes, 4)?) as i32)),
            5 => HeaderValue::Int(int(take(&mut bytes, 8)?)),
            6 | 7 => {
                let len = int(take(&mut bytes, 2)?) as usize;
                let raw = take(&mut bytes, len)?;
                if kind == 6 {
                    HeaderValue::Bytes(raw)
                } else {
                    HeaderValue::String(
                        String::from_utf8(raw)
                            .map_err(|_| protocol(format!("header {name} is not UTF-8")))?,
                    )
                }
            }
            8 => HeaderValue::Timestamp(int(take(&mut bytes, 8)?)),
            9 => {
                let mut id = [0u8; 16];
                id.copy_from_slice(&take(&mut bytes, 16)?);
                HeaderValue::Uuid(id)
            }
            other => return Err(protocol(format!("header {name} has unknown type {other}"))),
        };
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> Message {
        Message {
            headers: vec![
                (":event-type".into(), HeaderValue::String(kind.into())),
                (
                    ":content-type".into(),
                    HeaderValue::String("application/json".into()),
                ),
                (":message-type".into(), HeaderValue::String("event".into())),
            ],
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_known_frame_decodes() {
        // The format's documented example: no headers, payload "{'foo':'bar'}".
        let bytes: [u8; 29] = [
            0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, 0x7b, 0x27,
            0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0xc3, 0x65, 0x39,
            0x36,
        ];
        let messages = FrameDecoder::default().push(&bytes).unwrap();
        assert_eq!(
            messages,
            [Message {
                headers: vec![],
                payload: b"{'foo':'bar'}".to_vec()
            }]
        );
        assert_eq!(messages[0].encode(), bytes);
    }

    #[test]
    fn messages_split_anywhere_decode_the_same() {
        let messages = vec![
            event("messageStart", r#"{"role":"assistant"}"#),
            Message {
                headers: vec![
                    ("b".into(), HeaderValue::Bool(true)),
                    ("f".into(), HeaderValue::Bool(false)),
                    ("i".into(), HeaderValue::Int(-7)),
                    ("y".into(), HeaderValue::Bytes(vec![0, 255])),
                    ("t".into(), HeaderValue::Timestamp(1_700_000_000_000)),
                    ("u".into(), HeaderValue::Uuid([9; 16])),
                ],
                payload: Vec::new(),
            },
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"héllo ✓"}}"#,
            ),
        ];
        let wire: Vec<u8> = messages.iter().flat_map(Message::encode).collect();
        for size in [1, 2, 5, 13, 64, wire.len()] {
            let mut d = FrameDecoder::default();
            let mut out = Vec::new();
            for piece in wire.chunks(size) {
                out.extend(d.push(piece).unwrap());
            }
            assert_eq!(out, messages, "pieces of {size}");
            assert!(!d.is_mid_message());
        }
    }

    #[test]
    fn partial_input_waits_for_more() {
        let wire = event("messageStop", r#"{"stopReason":"end_turn"}"#).encode();
        let mut d = FrameDecoder::default();
        assert!(d.push(&wire[..5]).unwrap().is_empty());
        assert!(d.push(&wire[5..wire.len() - 1]).unwrap().is_empty());
        assert!(d.is_mid_message());
        let done = d.push(&wire[wire.len() - 1..]).unwrap();
        assert_eq!(done[0].header(":event-type"), Some("messageStop"));
    }

    #[test]
    fn checksum_mismatches_and_bad_lengths_are_errors() {
        let wire = event("messageStop", "{}").encode();
        // A flipped payload bit fails the message CRC.
        let mut bad = wire.clone();
        let at = bad.len() - 6;
        bad[at] ^= 1;
        assert!(matches!(
            FrameDecoder::default().push(&bad),
            Err(LlmError::Protocol(_))
        ));
        // A flipped length fails the prelude CRC before any waiting.
        let mut bad = wire.clone();
        bad[3] ^= 1;
        assert!(matches!(
            FrameDecoder::default().push(&bad[..PRELUDE]),
            Err(LlmError::Protocol(_))
        ));
        // Lengths that pass the CRC but cannot be: headers past the message.
        let mut lie = Vec::new();
        lie.extend_from_slice(&16u32.to_be_bytes());
        lie.extend_from_slice(&4u32.to_be_bytes());
        lie.extend_from_slice(&crc32fast::hash(&lie).to_be_bytes());
        assert!(matches!(
            FrameDecoder::default().push(&lie),
            Err(LlmError::Protocol(_))
        ));
    }
}
