//! A byte sink that keeps at most `cap` bytes of an unbounded stream: its
//! first half and, in a ring, its last half, counting what fell between.
//! A command may print gigabytes; memofab holds `cap` bytes of it, never more.

use std::collections::VecDeque;

/// The first `cap / 2` and the last `cap - cap / 2` bytes of a stream.
#[derive(Debug)]
pub struct HeadTail {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    /// Bytes pushed out of the tail ring: neither kept at the head nor at the end.
    dropped: u64,
}

/// What a [`HeadTail`] kept: `head`, then `omitted` bytes, then `tail`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kept {
    pub head: Vec<u8>,
    pub omitted: u64,
    pub tail: Vec<u8>,
}

impl HeadTail {
    pub fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        Self {
            head_cap,
            tail_cap: cap - head_cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.tail_cap {
            // The whole ring is replaced: skip straight to the chunk's end.
            let skipped = bytes.len() - self.tail_cap;
            self.dropped += (self.tail.len() + skipped) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[skipped..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(bytes);
    }

    /// Everything seen, kept or not.
    pub fn total(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + self.dropped
    }

    pub fn into_kept(self) -> Kept {
        Kept {
            head: self.head,
            omitted: self.dropped,
            tail: self.tail.into(),
        }
    }
}

/// Standard output then standard error (a newline between when the first
/// does not end with one), capped to `cap` bytes as one stream would be:
/// its head and its tail around a note of what was left out, the cuts moved
/// to character boundaries. Returns the text and whether anything was left out.
pub fn join_capped(out: Kept, err: Kept, cap: usize) -> (String, bool) {
    let out_ends_line = if out.tail.is_empty() {
        out.head.last()
    } else {
        out.tail.last()
    }
    .is_none_or(|&b| b == b'\n');
    let err_empty = err.head.is_empty() && err.omitted == 0;
    let separator: &[u8] = if !err_empty && !out_ends_line {
        b"\n"
    } else {
        b""
    };
    // The joined stream as runs of known bytes and gaps of omitted ones.
    let segments = [
        Segment::Bytes(&out.head),
        Segment::Gap(out.omitted),
        Segment::Bytes(&out.tail),
        Segment::Bytes(separator),
        Segment::Bytes(&err.head),
        Segment::Gap(err.omitted),
        Segment::Bytes(&err.tail),
    ];
    let total: u64 = segments.iter().map(Segment::len).sum();
    let has_gap = out.omitted > 0 || err.omitted > 0;
    if !has_gap && total <= cap as u64 {
        let whole: Vec<u8> = segments.iter().flat_map(Segment::bytes).copied().collect();
        return (String::from_utf8_lossy(&whole).into_owned(), false);
    }
    let head_cap = cap / 2;
    let tail_cap = cap - head_cap;
    let mut head = Vec::with_capacity(head_cap);
    for segment in &segments {
        match segment {
            Segment::Bytes(b) => {
                let take = (head_cap - head.len()).min(b.len());
                head.extend_from_slice(&b[..take]);
                if head.len() == head_cap {
                    break;
                }
            }
            Segment::Gap(0) => {}
            Segment::Gap(_) => break,
        }
    }
    let mut tail_rev: Vec<&[u8]> = Vec::new();
    let mut tail_len = 0;
    for segment in segments.iter().rev() {
        match segment {
            Segment::Bytes(b) => {
                let take = (tail_cap - tail_len).min(b.len());
                tail_rev.push(&b[b.len() - take..]);
                tail_len += take;
                if tail_len == tail_cap {
                    break;
                }
            }
            Segment::Gap(0) => {}
            Segment::Gap(_) => break,
        }
    }
    let tail: Vec<u8> = tail_rev.into_iter().rev().flatten().copied().collect();
    let head_end = char_end(&head);
    let tail_start = char_start(&tail);
    let omitted = total - head_end as u64 - (tail.len() - tail_start) as u64;
    let text = format!(
        "{}\n[... {omitted} bytes omitted ...]\n{}",
        String::from_utf8_lossy(&head[..head_end]),
        String::from_utf8_lossy(&tail[tail_start..])
    );
    (text, true)
}

enum Segment<'a> {
    Bytes(&'a [u8]),
    Gap(u64),
}

impl Segment<'_> {
    fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::Gap(n) => *n,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Bytes(b) => b,
            Segment::Gap(_) => &[],
        }
    }
}

/// Where `head` ends without cutting a UTF-8 character in two: before a
/// character that starts in its last three bytes and does not finish.
fn char_end(head: &[u8]) -> usize {
    for back in 1..=3.min(head.len()) {
        let at = head.len() - back;
        let byte = head[at];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back
        }
        let width = match byte {
            b if b >= 0b1111_0000 => 4,
            b if b >= 0b1110_0000 => 3,
            b if b >= 0b1100_0000 => 2,
            _ => 1,
        };
        return if back < width { at } else { head.len() };
    }
    head.len()
}

/// Where `tail` starts without the remains of a character cut in two: past
/// up to three leading continuation bytes.
fn char_start(tail: &[u8]) -> usize {
    tail.iter()
        .take(3)
        .take_while(|&&b| b & 0b1100_0000 == 0b1000_0000)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(chunks: &[&[u8]], cap: usize) -> Kept {
        let mut sink = HeadTail::new(cap);
        for chunk in chunks {
            sink.push(chunk);
        }
        sink.into_kept()
    }

    #[test]
    fn a_short_stream_is_kept_whole() {
        let kept = capture(&[b"hello ", b"world"], 100);
        assert_eq!(kept.omitted, 0);
        let mut all = kept.head.clone();
        all.extend(&kept.tail);
        assert_eq!(all, b"hello world");
    }

    #[test]
    fn a_long_stream_keeps_its_first_and_last_halves_in_any_chunking() {
        let stream: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in [1, 7, 10, 64, 4096, 10_000] {
            let chunks: Vec<&[u8]> = stream.chunks(chunk).collect();
            let mut sink = HeadTail::new(20);
            for c in &chunks {
                sink.push(c);
            }
            assert_eq!(sink.total(), 10_000);
            let kept = sink.into_kept();
            assert_eq!(kept.head, stream[..10], "chunk {chunk}");
            assert_eq!(kept.tail, stream[stream.len() - 10..], "chunk {chunk}");
            assert_eq!(kept.omitted, 10_000 - 20, "chunk {chunk}");
        }
    }

    #[test]
    fn memory_stays_at_the_cap_however_much_is_pushed() {
        let mut sink = HeadTail::new(1000);
        let chunk = vec![b'y'; 65_536];
        for _ in 0..2000 {
            sink.push(&chunk);
        }
        assert_eq!(sink.total(), 2000 * 65_536);
        assert!(sink.head.capacity() + sink.tail.capacity() < 4096);
    }

    #[test]
    fn joined_output_is_stdout_then_stderr() {
        let out = capture(&[b"out"], 100);
        let err = capture(&[b"err\n"], 100);
        assert_eq!(join_capped(out, err, 100), ("out\nerr\n".to_owned(), false));
        let out = capture(&[b"out\n"], 100);
        assert_eq!(
            join_capped(out, Kept::default(), 100),
            ("out\n".to_owned(), false)
        );
    }

    #[test]
    fn joined_output_counts_every_byte_left_out() {
        let out = capture(&[&[b'a'; 1000]], 10);
        let err = capture(&[&[b'b'; 1000]], 10);
        let (text, truncated) = join_capped(out, err, 10);
        assert!(truncated);
        // 2001 bytes (a newline joins them), 10 shown.
        assert_eq!(text, "aaaaa\n[... 1991 bytes omitted ...]\nbbbbb");
    }

    #[test]
    fn a_small_stdout_and_a_huge_stderr_keep_both_ends() {
        let out = capture(&[b"ab\n"], 10);
        let err = capture(&[&[b'e'; 500], b"END"], 10);
        let (text, truncated) = join_capped(out, err, 10);
        assert!(truncated);
        assert!(text.starts_with("ab\nee\n[..."), "{text}");
        assert!(text.ends_with("eeEND"), "{text}");
    }

    #[test]
    fn cuts_fall_between_characters() {
        // 'é' is two bytes: a cut after 5 bytes would split the third one.
        let stream = "éééééééééé".as_bytes();
        let kept = capture(&[stream], 10);
        let (text, truncated) = join_capped(kept, Kept::default(), 10);
        assert!(truncated);
        assert!(!text.contains('\u{FFFD}'), "{text}");
        assert_eq!(text, "éé\n[... 12 bytes omitted ...]\néé");
    }

    #[test]
    fn char_boundaries_are_found_for_every_width() {
        let s = "a€😀";
        let bytes = s.as_bytes();
        for n in 0..=bytes.len() {
            let end = char_end(&bytes[..n]);
            assert!(s.is_char_boundary(end) && end <= n, "{n}");
            let start = char_start(&bytes[n..]);
            assert!(s.is_char_boundary(n + start), "{n}");
        }
    }
}
