//! Decoding stored event bodies. The `type` column names the event's kind,
//! so the body is decoded straight into that kind's struct
//! ([`EventKind::decode_stored`]) rather than buffered whole to find its tag;
//! the JSON stays the one `export` and `--headless` print. A long run's
//! most common kind read at open, `tokens_used`, is first tried by hand
//! (`scan`), and through serde when its body is anything but plain.

use super::scan;
use crate::domain::EventKind;
use crate::domain::event::TokensUsed;

/// The kind of the event stored as `body`, whose `type` column is `kind`.
pub fn decode_kind(kind: &str, body: &str) -> serde_json::Result<EventKind> {
    if kind == TokensUsed::NAME
        && let Some(tokens) = scan::tokens_used(body)
    {
        return Ok(EventKind::TokensUsed(tokens));
    }
    EventKind::decode_stored(kind, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Event;

    /// Every kind, in every stored shape of the samples, decodes by its
    /// name exactly as the generic decoder decodes it.
    #[test]
    fn the_named_path_agrees_with_serde_for_every_kind() {
        let samples = include_str!("../../domain/event/samples.jsonl");
        let mut names = std::collections::BTreeSet::new();
        for body in samples.lines() {
            let event: Event = serde_json::from_str(body).unwrap();
            let name = event.kind.name();
            names.insert(name);
            assert_eq!(decode_kind(name, body).unwrap(), event.kind, "{body}");
        }
        assert_eq!(names.len(), EventKind::NAMES.len(), "a kind has no sample");
        assert!(decode_kind("agent_message", "{\"agent\": 1}").is_err());
        assert!(decode_kind("no_such_kind", "{\"type\": \"no_such_kind\"}").is_err());
    }
}
