//! Grouping: which reports are the same incident, and whether a group needs
//! a new requirement or is already being (or was recently) taken care of.

use std::fmt;

use sha2::{Digest, Sha256};

use super::incident::{GroupKey, Incident};
use crate::domain::queue::{ItemState, QueuedRequirement, RequirementId};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The group a report belongs to, as stored in the queue's `fingerprint`:
/// `sentry:<issue id>` for Sentry's own grouping, `fp:<hash>` for a
/// fingerprint the report carries, `auto:<hash>` of the title, the culprit
/// and the top application frame otherwise (line numbers left out: they
/// move with every edit).
pub fn fingerprint(incident: &Incident) -> String {
    match &incident.group {
        GroupKey::Issue(id) => format!("sentry:{id}"),
        GroupKey::Fingerprint(parts) => format!("fp:{}", digest(parts.iter().map(String::as_str))),
        GroupKey::Derived => {
            let top = incident.top_frame();
            let file = top.and_then(|f| f.file.as_deref().or(f.abs_path.as_deref()));
            let function = top.and_then(|f| f.function.as_deref());
            format!(
                "auto:{}",
                digest([
                    incident.title.as_str(),
                    incident.culprit.as_deref().unwrap_or(""),
                    file.unwrap_or(""),
                    function.unwrap_or(""),
                ])
            )
        }
    }
}

/// SHA-256 of the parts, each length-prefixed so no two lists collide; 128
/// bits in hex are plenty to tell groups apart.
fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a report of a known group queues nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// An entry of the group waits or runs.
    Open {
        entry: RequirementId,
        state: ItemState,
    },
    /// A run fixed the group this long ago (within `recent_fix_days`).
    RecentlyFixed { entry: RequirementId, days_ago: u64 },
    /// A human took the group's entry off the queue, recently.
    RecentlyDropped { entry: RequirementId, days_ago: u64 },
    /// The group's last attempt failed, recently: an error no run can fix
    /// must not fill the queue with one failing attempt per report.
    RecentlyFailed { entry: RequirementId, days_ago: u64 },
}

impl Known {
    pub fn entry(&self) -> RequirementId {
        match self {
            Self::Open { entry, .. }
            | Self::RecentlyFixed { entry, .. }
            | Self::RecentlyDropped { entry, .. }
            | Self::RecentlyFailed { entry, .. } => *entry,
        }
    }
}

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { entry, state } => write!(f, "this incident is already {state} as {entry}"),
            Self::RecentlyFixed { entry, days_ago } => {
                write!(f, "this incident was fixed by {entry} {}", ago(*days_ago))
            }
            Self::RecentlyDropped { entry, days_ago } => {
                write!(
                    f,
                    "this incident's {entry} was dropped by a human {}",
                    ago(*days_ago)
                )
            }
            Self::RecentlyFailed { entry, days_ago } => write!(
                f,
                "this incident's last attempt, {entry}, failed {}; `memofab queue --all` says why, `memofab submit` tries again",
                ago(*days_ago)
            ),
        }
    }
}

fn ago(days: u64) -> String {
    match days {
        0 => "today".into(),
        1 => "yesterday".into(),
        n => format!("{n} days ago"),
    }
}

/// Whether a report of a group with these queue entries needs a new one.
/// The latest outcome within `recent_fix_days` counts (a fix, a drop or a
/// failed attempt); an older one lets the group be queued again: the error
/// is still happening.
pub fn known(entries: &[QueuedRequirement], now_ms: u64, recent_fix_days: u32) -> Option<Known> {
    if let Some(open) = entries.iter().find(|e| e.state.is_open()) {
        return Some(Known::Open {
            entry: open.id,
            state: open.state,
        });
    }
    let window = u64::from(recent_fix_days) * DAY_MS;
    entries
        .iter()
        .filter_map(|e| {
            let finished = e.finished_ms?;
            let age = now_ms.saturating_sub(finished);
            (age < window).then_some((e, age / DAY_MS))
        })
        .max_by_key(|(e, _)| e.finished_ms)
        .and_then(|(e, days_ago)| match e.state {
            ItemState::Done => Some(Known::RecentlyFixed {
                entry: e.id,
                days_ago,
            }),
            ItemState::Dropped => Some(Known::RecentlyDropped {
                entry: e.id,
                days_ago,
            }),
            ItemState::Failed => Some(Known::RecentlyFailed {
                entry: e.id,
                days_ago,
            }),
            ItemState::Queued | ItemState::Running => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::intake::incident::{Frame, Origin};
    use crate::domain::queue::Source;

    fn incident(group: GroupKey, frames: Vec<Frame>) -> Incident {
        Incident {
            origin: Origin::Plain,
            title: "TypeError: x is undefined".into(),
            message: None,
            culprit: Some("cart.add".into()),
            environment: None,
            level: None,
            count: None,
            group,
            frames,
            link: None,
        }
    }

    fn frame(file: &str, line: u64, in_app: bool) -> Frame {
        Frame {
            file: Some(file.into()),
            function: Some("add".into()),
            line: Some(line),
            in_app: Some(in_app),
            ..Frame::default()
        }
    }

    fn entry(id: i64, state: ItemState, finished_ms: Option<u64>) -> QueuedRequirement {
        QueuedRequirement {
            id: RequirementId(id),
            repo: "shop".into(),
            requirement: "fix".into(),
            priority: 0,
            source: Source::Incident,
            fingerprint: Some("sentry:1".into()),
            state,
            run: None,
            submitted_ms: 0,
            finished_ms,
            note: None,
        }
    }

    #[test]
    fn the_trackers_group_wins_and_derived_groups_ignore_line_numbers() {
        let a = incident(GroupKey::Issue("42".into()), vec![]);
        assert_eq!(fingerprint(&a), "sentry:42");
        let b = incident(
            GroupKey::Fingerprint(vec!["checkout".into(), "db".into()]),
            vec![],
        );
        let c = incident(GroupKey::Fingerprint(vec!["checkoutdb".into()]), vec![]);
        assert_ne!(fingerprint(&b), fingerprint(&c));
        assert!(fingerprint(&b).starts_with("fp:"));

        let here = incident(
            GroupKey::Derived,
            vec![frame("lib.js", 1, false), frame("cart.js", 10, true)],
        );
        let moved = incident(
            GroupKey::Derived,
            vec![frame("lib.js", 1, false), frame("cart.js", 14, true)],
        );
        let elsewhere = incident(
            GroupKey::Derived,
            vec![frame("lib.js", 1, false), frame("order.js", 10, true)],
        );
        assert_eq!(fingerprint(&here), fingerprint(&moved));
        assert_ne!(fingerprint(&here), fingerprint(&elsewhere));
        assert_eq!(fingerprint(&here).len(), "auto:".len() + 32);
    }

    #[test]
    fn open_entries_and_recent_outcomes_are_known_old_ones_are_not() {
        let now = 100 * DAY_MS;
        assert_eq!(known(&[], now, 7), None);
        let queued = [entry(3, ItemState::Queued, None)];
        assert_eq!(known(&queued, now, 7).unwrap().entry(), RequirementId(3));

        let fixed = [entry(4, ItemState::Done, Some(now - 2 * DAY_MS))];
        assert_eq!(
            known(&fixed, now, 7),
            Some(Known::RecentlyFixed {
                entry: RequirementId(4),
                days_ago: 2
            })
        );
        let old_fix = [entry(4, ItemState::Done, Some(now - 8 * DAY_MS))];
        assert_eq!(known(&old_fix, now, 7), None);
        // A failed attempt holds the group back too, so an error no run can
        // fix does not queue one failing attempt per report.
        let failed = [entry(5, ItemState::Failed, Some(now - DAY_MS))];
        assert!(matches!(
            known(&failed, now, 7),
            Some(Known::RecentlyFailed { days_ago: 1, .. })
        ));
        let old_failure = [entry(5, ItemState::Failed, Some(now - 8 * DAY_MS))];
        assert_eq!(known(&old_failure, now, 7), None);
        // The latest outcome counts: a failed retry after a fix.
        let refailed = [
            entry(6, ItemState::Failed, Some(now - DAY_MS)),
            entry(4, ItemState::Done, Some(now - 2 * DAY_MS)),
        ];
        assert_eq!(known(&refailed, now, 7).unwrap().entry(), RequirementId(6));
        let dropped = [entry(7, ItemState::Dropped, Some(now))];
        assert!(matches!(
            known(&dropped, now, 7),
            Some(Known::RecentlyDropped { days_ago: 0, .. })
        ));
        assert_eq!(known(&fixed, now, 0), None);
    }
}
