//! Telling the human that something new waits in the inbox, even when the
//! cockpit is in a background tab: a terminal bell, or an OSC 9 desktop
//! notification (iTerm2, kitty, WezTerm, foot, Windows Terminal and others).

use std::collections::HashSet;

pub use crate::config::Notify;
use crate::domain::attention::{AttentionItem, ItemKey};

/// Remembers which inbox items the human was told about.
#[derive(Debug, Default)]
pub struct Notifier {
    seen: HashSet<ItemKey>,
}

impl Notifier {
    /// The bytes to write to the terminal for items not seen before, if any.
    /// Items that left the inbox are forgotten, so one coming back is news.
    pub fn on_inbox(&mut self, items: &[AttentionItem], how: Notify) -> Option<Vec<u8>> {
        let now: HashSet<_> = items.iter().map(AttentionItem::key).collect();
        let fresh: Vec<&AttentionItem> = items
            .iter()
            .filter(|i| !self.seen.contains(&i.key()))
            .collect();
        let message = fresh.first().map(|item| {
            let what = item
                .task
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "the run".to_owned());
            let more = if fresh.len() > 1 {
                format!(" (+{} more)", fresh.len() - 1)
            } else {
                String::new()
            };
            format!("memofab: {} {what}{more}", item.kind.label())
        });
        self.seen = now;
        let message = message?;
        match how {
            Notify::Off => None,
            Notify::Bell => Some(b"\x07".to_vec()),
            Notify::Osc9 => {
                // Control characters would end the sequence early.
                let clean: String = message.chars().filter(|c| !c.is_control()).collect();
                Some(format!("\x1b]9;{clean}\x07").into_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::attention::AttentionKind;

    fn item(kind: AttentionKind, task: &str) -> AttentionItem {
        AttentionItem {
            kind,
            task: Some(task.into()),
            blocks: 1,
            since_ms: 0,
            detail: String::new(),
            question: None,
            provider: None,
        }
    }

    #[test]
    fn only_new_items_ring_and_returning_ones_ring_again() {
        let mut n = Notifier::default();
        let gate = item(AttentionKind::Gate, "docs");
        assert_eq!(
            n.on_inbox(std::slice::from_ref(&gate), Notify::Bell),
            Some(b"\x07".to_vec())
        );
        assert_eq!(n.on_inbox(std::slice::from_ref(&gate), Notify::Bell), None);
        assert_eq!(n.on_inbox(&[], Notify::Bell), None);
        assert!(
            n.on_inbox(std::slice::from_ref(&gate), Notify::Bell)
                .is_some()
        );
    }

    #[test]
    fn osc9_names_the_item_and_off_stays_silent() {
        let mut n = Notifier::default();
        let items = [
            item(AttentionKind::Conflict, "slug"),
            item(AttentionKind::Gate, "docs"),
        ];
        let bytes = n.on_inbox(&items, Notify::Osc9).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "\x1b]9;memofab: conflict slug (+1 more)\x07"
        );
        let mut quiet = Notifier::default();
        assert_eq!(quiet.on_inbox(&items, Notify::Off), None);
    }
}
