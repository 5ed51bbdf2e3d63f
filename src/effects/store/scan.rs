//! A hand decoder for the bodies a long run holds most of among those
//! replay reads at open: `tokens_used` (decoded whole) and the head of a
//! `tool_called` (its agent and tool, to decide whether it is read now).
//! serde_json's general path costs thousands of instructions on each of
//! these ~150-byte bodies; their fields are few and fixed.
//!
//! It accepts a strict subset of JSON: strings without escapes or control
//! characters, unsigned integers without sign, fraction or exponent where
//! the field is a `u64`, each wanted field at most once, nesting at most
//! `MAX_DEPTH` deep. Anything else — valid or not — gives `None`, and the
//! caller decodes the body through serde as before: an odd body is never
//! decoded differently, only slower. Fields it does not know are skipped
//! after checking they are well-formed, as serde does.

use crate::domain::event::TokensUsed;
use crate::domain::{AgentId, TaskId, TokenUsage};

/// Nesting beyond this is left to serde (whose own limit is 128).
const MAX_DEPTH: usize = 32;

/// `(agent, tool)` of a `tool_called` body, when it is plain.
pub fn call_head(body: &str) -> Option<(&str, &str)> {
    call_head_as_written(body).or_else(|| any_call_head(body))
}

/// A `tokens_used` body, when it is plain.
pub fn tokens_used(body: &str) -> Option<TokensUsed> {
    tokens_used_as_written(body).or_else(|| any_tokens_used(body))
}

/// The call head in the shape memofab writes it (serde's field order, no
/// spacing): read field after field, without matching keys.
fn call_head_as_written(body: &str) -> Option<(&str, &str)> {
    let mut s = Scanner::new(body);
    s.then(r#"{"type":"tool_called","agent":"#)?;
    let agent = s.plain_str()?;
    s.then(r#","call_id":"#)?;
    s.plain_str()?;
    s.then(r#","tool":"#)?;
    let tool = s.plain_str()?;
    s.then(r#","arguments":"#)?;
    s.skip_value(1)?;
    s.then("}")?;
    s.end()?;
    Some((agent, tool))
}

/// `tokens_used` in the shape memofab writes it.
fn tokens_used_as_written(body: &str) -> Option<TokensUsed> {
    let mut s = Scanner::new(body);
    s.then(r#"{"type":"tokens_used","agent":"#)?;
    let agent = s.plain_str()?;
    let task = match s.then(r#","task":"#) {
        Some(()) => Some(s.plain_str()?),
        None => None,
    };
    s.then(r#","model":"#)?;
    let model = s.plain_str()?;
    s.then(r#","usage":{"input":"#)?;
    let input = s.uint()?;
    s.then(r#","output":"#)?;
    let output = s.uint()?;
    s.then(r#","cached":"#)?;
    let cached = s.uint()?;
    let cache_write = match s.then(r#","cache_write":"#) {
        Some(()) => s.uint()?,
        None => 0,
    };
    s.then("}")?;
    let cost_usd = match s.then(r#","cost_usd":"#) {
        Some(()) => Some(s.float()?),
        None => None,
    };
    s.then("}")?;
    s.end()?;
    Some(TokensUsed {
        agent: AgentId::from(agent),
        task: task.map(TaskId::from),
        model: model.to_owned(),
        usage: TokenUsage {
            input,
            output,
            cached,
            cache_write,
        },
        cost_usd,
    })
}

/// A call head with its fields in any order, spaced or not.
fn any_call_head(body: &str) -> Option<(&str, &str)> {
    let mut s = Scanner::new(body);
    let (mut agent, mut tool) = (None, None);
    s.object(0, &mut |key, s| match key {
        "agent" => once(&mut agent, s.plain_str()?),
        "tool" => once(&mut tool, s.plain_str()?),
        _ => s.skip_value(1),
    })?;
    s.end()?;
    Some((agent?, tool?))
}

/// `tokens_used` with its fields in any order, spaced or not, unknown
/// ones skipped.
fn any_tokens_used(body: &str) -> Option<TokensUsed> {
    let mut s = Scanner::new(body);
    let (mut agent, mut task, mut model, mut usage, mut cost) = (None, None, None, None, None);
    s.object(0, &mut |key, s| match key {
        "agent" => once(&mut agent, s.plain_str()?),
        "task" => {
            let value = s.nullable(Scanner::plain_str)?;
            once(&mut task, value)
        }
        "model" => once(&mut model, s.plain_str()?),
        "usage" => {
            let value = s.usage()?;
            once(&mut usage, value)
        }
        "cost_usd" => {
            let value = s.nullable(Scanner::float)?;
            once(&mut cost, value)
        }
        _ => s.skip_value(1),
    })?;
    s.end()?;
    Some(TokensUsed {
        agent: AgentId::from(agent?),
        task: task.flatten().map(TaskId::from),
        model: model?.to_owned(),
        usage: usage?,
        cost_usd: cost.flatten(),
    })
}

/// Sets a field seen for the first time; a second one is left to serde
/// (which refuses duplicate fields).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Skips JSON whitespace and returns the next byte.
    fn next_token(&mut self) -> Option<u8> {
        while let Some(b) = self.peek() {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next_token()? == byte).then(|| self.pos += 1)
    }

    /// `text`, exactly, right here.
    fn then(&mut self, text: &str) -> Option<()> {
        let rest = self.text.as_bytes().get(self.pos..)?;
        rest.starts_with(text.as_bytes())
            .then(|| self.pos += text.len())
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let rest = self.text.get(self.pos..)?;
        rest.starts_with(word).then(|| self.pos += word.len())
    }

    /// Nothing but whitespace left.
    fn end(&mut self) -> Option<()> {
        self.next_token().is_none().then_some(())
    }

    /// A string with neither escapes nor control characters, as it is.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let rest = self.text.as_bytes().get(start..)?;
        // A local slice, not `self.pos` per byte: this loop is most of
        // the time spent here.
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        self.text.get(start..start + len)
    }

    fn digits(&mut self) -> usize {
        let rest = self.text.as_bytes().get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        self.pos += len;
        len
    }

    /// A JSON number, as written.
    fn number(&mut self) -> Option<&'a str> {
        self.next_token()?;
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            (self.digits() > 0).then_some(())?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            (self.digits() > 0).then_some(())?;
        }
        self.text.get(start..self.pos)
    }

    /// An unsigned integer that surely fits a `u64` (at most 19 digits).
    fn uint(&mut self) -> Option<u64> {
        let text = self.number()?;
        let plain = text.len() <= 19
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        plain.then(|| text.parse().ok())?
    }

    /// A float, parsed by serde_json itself so that it is the very value
    /// serde's decode gives.
    fn float(&mut self) -> Option<f64> {
        serde_json::from_str(self.number()?).ok()
    }

    /// `null` as `None`, or what `value` reads.
    fn nullable<T>(&mut self, value: fn(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.next_token()? == b'n' {
            self.literal("null")?;
            return Some(None);
        }
        value(self).map(Some)
    }

    /// An object, handing each key to `field`, which must read its value.
    fn object(
        &mut self,
        depth: usize,
        field: &mut dyn FnMut(&'a str, &mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        if self.next_token()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            let key = self.plain_str()?;
            self.eat(b':')?;
            field(key, self)?;
            match self.next_token()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        if self.next_token()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.skip_value(depth + 1)?;
            match self.next_token()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Checks and passes over one value of a field nobody asked for.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.next_token()? {
            b'"' => self.plain_str().map(drop),
            b'{' => self.object(depth, &mut |_, s| s.skip_value(depth + 1)),
            b'[' => self.array(depth),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number().map(drop),
        }
    }

    fn usage(&mut self) -> Option<TokenUsage> {
        let (mut input, mut output, mut cached, mut cache_write) = (None, None, None, None);
        self.object(1, &mut |key, s| match key {
            "input" => once(&mut input, s.uint()?),
            "output" => once(&mut output, s.uint()?),
            "cached" => once(&mut cached, s.uint()?),
            "cache_write" => once(&mut cache_write, s.uint()?),
            _ => s.skip_value(2),
        })?;
        Some(TokenUsage {
            input: input?,
            output: output?,
            cached: cached.unwrap_or(0),
            cache_write: cache_write.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventKind;

    /// What serde makes of a `tokens_used` body, if anything.
    fn serde_tokens(body: &str) -> Option<TokensUsed> {
        match EventKind::decode_stored("tokens_used", body) {
            Ok(EventKind::TokensUsed(t)) => Some(t),
            _ => None,
        }
    }

    fn serde_head(body: &str) -> Option<(String, String)> {
        #[derive(serde::Deserialize)]
        struct Head {
            agent: String,
            tool: String,
        }
        serde_json::from_str::<Head>(body)
            .ok()
            .map(|h| (h.agent, h.tool))
    }

    const TOKENS: [&str; 22] = [
        // As memofab writes them.
        r#"{"type":"tokens_used","agent":"coder:t1#1","task":"t1","model":"gpt","usage":{"input":10,"output":2,"cached":3,"cache_write":4},"cost_usd":0.25}"#,
        r#"{"type":"tokens_used","agent":"planner#1","model":"gpt","usage":{"input":10,"output":2}}"#,
        // Other orders, spacing, nulls, unknown fields of every shape.
        r#" { "usage" : { "output" : 0 , "input" : 1844674407370955161 } , "model":"m" ,"agent":"a", "task": null, "cost_usd": null } "#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2,"extra":[1,{"x":[]},"s",true,false,null,-0.5e+3]},"note":{"deep":[[[]]]}}"#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2},"cost_usd":1e-7}"#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2},"cost_usd":3}"#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2},"cost_usd":0.30000000000000004}"#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2},"cost_usd":123456789012345678901234567890}"#,
        r#"{"agent":"ä ✓","model":"m","usage":{"input":1,"output":2}}"#,
        // Escapes: in a kept string, in a key, in an unknown field.
        r#"{"agent":"a\"b","model":"m","usage":{"input":1,"output":2}}"#,
        r#"{"\u0061gent":"a","model":"m","usage":{"input":1,"output":2}}"#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2},"x":"\n"}"#,
        // Numbers a u64 may not take (or takes only through serde).
        r#"{"agent":"a","model":"m","usage":{"input":1.0,"output":2}}"#,
        r#"{"agent":"a","model":"m","usage":{"input":-0,"output":2}}"#,
        r#"{"agent":"a","model":"m","usage":{"input":18446744073709551616,"output":2}}"#,
        r#"{"agent":"a","model":"m","usage":{"input":01,"output":2}}"#,
        // Wrong types, missing and repeated fields, broken JSON.
        r#"{"agent":1,"model":"m","usage":{"input":1,"output":2}}"#,
        r#"{"agent":"a","model":"m","usage":{"input":1}}"#,
        r#"{"agent":"a","agent":"b","model":"m","usage":{"input":1,"output":2}}"#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2},}"#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2}} x"#,
        r#"{"agent":"a","model":"m","usage":{"input":1,"output":2},"cost_usd":1e999}"#,
    ];

    /// Whatever the body, the hand decoder gives serde's event or nothing;
    /// and it takes the bodies memofab writes.
    #[test]
    fn tokens_used_is_serde_s_or_nothing() {
        let mut taken = 0;
        for body in TOKENS {
            let expected = serde_tokens(body);
            if let Some(quick) = tokens_used(body) {
                assert_eq!(Some(&quick), expected.as_ref(), "{body}");
                if let (Some(a), Some(b)) = (quick.cost_usd, expected.and_then(|e| e.cost_usd)) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{body}");
                }
                taken += 1;
            }
        }
        assert_eq!(taken, 9, "the plain bodies are taken");
        assert!(tokens_used(TOKENS[0]).is_some() && tokens_used(TOKENS[1]).is_some());
        // The odd ones serde takes are left to it, never misread.
        for body in &TOKENS[9..] {
            assert_eq!(tokens_used(body), None, "{body}");
        }
        assert!(serde_tokens(TOKENS[9]).is_some() && serde_tokens(TOKENS[10]).is_some());
    }

    /// Bodies as memofab writes them take the quick path, and give what
    /// serde gives; a body off that shape is left to the general one.
    #[test]
    fn bodies_as_written_are_read_field_by_field() {
        let usage = |cache_write| TokenUsage {
            input: u64::MAX / 3,
            output: 0,
            cached: 7,
            cache_write,
        };
        let written = [
            TokensUsed {
                agent: AgentId::from("coder:t1#1"),
                task: Some(TaskId::from("t1")),
                model: "claude-ä".into(),
                usage: usage(0),
                cost_usd: Some(0.1 + 0.2),
            },
            TokensUsed {
                agent: AgentId::from("planner#1"),
                task: None,
                model: "gpt".into(),
                usage: usage(12),
                cost_usd: None,
            },
        ];
        for tokens in written {
            let body = serde_json::to_string(&EventKind::TokensUsed(tokens.clone())).unwrap();
            assert_eq!(tokens_used_as_written(&body), Some(tokens), "{body}");
        }
        assert!(tokens_used_as_written(TOKENS[0]).is_some());
        for body in &TOKENS[1..] {
            assert_eq!(tokens_used_as_written(body), None, "{body}");
        }
        let call =
            r#"{"type":"tool_called","agent":"a","call_id":"c","tool":"t","arguments":{"p":[1]}}"#;
        assert_eq!(call_head_as_written(call), Some(("a", "t")));
        assert_eq!(
            call_head_as_written(&call.replace(",\"tool\"", ", \"tool\"")),
            None
        );
        assert_eq!(call_head_as_written(&format!("{call} x")), None);
    }

    #[test]
    fn a_call_head_is_serde_s_or_nothing() {
        let bodies = [
            r#"{"type":"tool_called","agent":"coder:t1#1","call_id":"c1","tool":"write_file","arguments":{"path":"a","content":"x","n":[1,2.5,null,true]}}"#,
            r#"{"tool":"read_file","arguments":{},"agent":"a"}"#,
            r#"{"agent":"a","tool":"t","arguments":{"s":"\"quoted\""}}"#,
            r#"{"agent":"a","tool":"t","arguments":{"s":"x"}"#,
            r#"{"agent":"a","tool":"t","arguments":{"s":tru}}"#,
            r#"{"agent":"a","tool":"t","arguments":[1,]}"#,
            r#"{"agent":"a","tool":"t","tool":"u"}"#,
            r#"{"agent":"a"}"#,
            r#"{"agent":"a","tool":"t","arguments":"plain"}"#,
            "{\"agent\":\"a\",\"tool\":\"t\",\"arguments\":\"c\tl\"}",
        ];
        let mut taken = 0;
        for body in bodies {
            if let Some((agent, tool)) = call_head(body) {
                let expected = serde_head(body);
                assert_eq!(Some((agent.into(), tool.into())), expected, "{body}");
                taken += 1;
            }
        }
        assert_eq!(taken, 3);
        assert!(call_head(bodies[2]).is_none(), "an escape is left to serde");
        assert!(serde_head(bodies[2]).is_some());
        let deep = format!(
            r#"{{"agent":"a","tool":"t","arguments":{}1{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert_eq!(call_head(&deep), None);
        assert!(serde_head(&deep).is_some());
    }
}
