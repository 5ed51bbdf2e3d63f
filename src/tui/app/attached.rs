//! A cockpit attached to the daemon's run rather than driving an engine of
//! its own: what it follows, and the keys that differ. Leaving detaches and
//! stops nothing; with no run under way the spec editor queues a requirement
//! for the daemon instead of planning in-process.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{Action, App, Modal, Tab};
use crate::domain::RunId;
use crate::domain::queue::RequirementId;
use crate::protocol::EngineUpdate;

/// What feeds an attached cockpit: the run's updates, and word of the
/// connection to the daemon.
// Nearly every message is an update; boxing it would allocate on the
// common path (as `EngineUpdate` itself does not box its events).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    Update(EngineUpdate),
    /// The daemon's run the cockpit follows from now on; none while the
    /// repository waits for its next requirement.
    Attached(Option<RunId>),
    /// The requirement written here is on the daemon's queue.
    Queued(RequirementId),
    /// The daemon or the queue refused something; nothing changed.
    Refused(String),
    /// The connection to the daemon is gone.
    Lost(String),
    /// The run is followed through the shared PostgreSQL store, not the
    /// daemon's socket (`memofab --store URL attach`).
    ViaStore,
}

impl From<EngineUpdate> for Feed {
    fn from(update: EngineUpdate) -> Self {
        Feed::Update(update)
    }
}

/// The attached cockpit's own state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    /// The run followed; none while the repository waits for one.
    pub run: Option<RunId>,
    /// A requirement queued from this cockpit, not started yet.
    pub queued: Option<RequirementId>,
    /// The last refusal, shown until something else happens.
    pub refused: Option<String>,
    /// Why the connection to the daemon was lost.
    pub lost: Option<String>,
    /// Followed through the shared store rather than the daemon.
    pub via_store: bool,
}

impl Attached {
    /// The spec editor queues a requirement: no run to follow, none queued.
    pub fn can_queue(&self) -> bool {
        self.run.is_none() && self.queued.is_none() && self.lost.is_none()
    }
}

impl App {
    /// A cockpit attached to the daemon, before it knows what it follows.
    pub fn attached(title: &str) -> Self {
        let mut app = App::new(title);
        app.attached = Some(Attached::default());
        app
    }

    /// Folds one message in. Returns whether anything visible changed.
    pub fn feed(&mut self, feed: Feed) -> bool {
        let Some(attached) = &mut self.attached else {
            return match feed {
                Feed::Update(update) => self.update(update),
                _ => false,
            };
        };
        match feed {
            Feed::Update(update) => return self.update(update),
            Feed::Attached(Some(run)) => self.follow(run),
            Feed::Attached(None) => {
                attached.run = None;
                if attached.can_queue() {
                    self.tab = Tab::Spec;
                }
            }
            Feed::Queued(id) => {
                attached.queued = Some(id);
                attached.refused = None;
            }
            Feed::Refused(why) => {
                attached.refused = Some(why.clone());
                self.log_line(self.now_ms, true, format!("refused: {why}"));
            }
            Feed::Lost(why) => attached.lost = Some(why),
            Feed::ViaStore => attached.via_store = true,
        }
        true
    }

    /// A new run: the model starts over on it, as a fresh cockpit would.
    fn follow(&mut self, run: RunId) {
        let mut fresh = App::new(&self.title);
        fresh.prices = std::mem::take(&mut self.prices);
        fresh.detail_height.set(self.detail_height.get());
        // The overseer's proposals are the repository's, not the run's.
        fresh.proposals = self.proposals.take();
        fresh.attached = Some(Attached {
            run: Some(run),
            via_store: self.attached.as_ref().is_some_and(|a| a.via_store),
            ..Attached::default()
        });
        *self = fresh;
    }

    /// Keys that differ when attached: leaving detaches (`q` asks first,
    /// Ctrl-C does not) and never stops the run. `None` for other keys.
    pub(super) fn attached_key(&mut self, key: KeyEvent) -> Option<Vec<Action>> {
        let attached = self.attached.as_ref()?;
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => Some(vec![Action::Quit]),
            KeyCode::Char('q') if attached.lost.is_some() => Some(vec![Action::Quit]),
            KeyCode::Char('q') => {
                self.modal = Some(Modal::ConfirmDetach);
                Some(Vec::new())
            }
            _ => None,
        }
    }

    /// The detach question: `q`, `y` or Enter detach, `n` or Esc stay.
    pub(super) fn confirm_detach_key(&mut self, key: KeyEvent) -> Vec<Action> {
        match key.code {
            KeyCode::Char('q' | 'y' | 'Y') | KeyCode::Enter => vec![Action::Quit],
            KeyCode::Char('n' | 'N') | KeyCode::Esc => Vec::new(),
            _ => {
                self.modal = Some(Modal::ConfirmDetach);
                Vec::new()
            }
        }
    }
}

/// A cockpit attached to the daemon, following the fixture's run.
#[cfg(test)]
pub(crate) fn attached_app() -> App {
    let mut app = App::attached("memofab");
    let events = crate::domain::fixture::events();
    app.feed(Feed::Attached(Some(events[0].run.clone())));
    for event in events {
        app.feed(Feed::Update(EngineUpdate::Event(event)));
    }
    app
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::protocol::Command;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn q_asks_then_detaches_without_stopping_the_run() {
        let mut app = attached_app();
        assert!(app.handle_key(key(KeyCode::Char('q'))).is_empty());
        assert!(matches!(app.modal, Some(Modal::ConfirmDetach)));
        assert!(app.handle_key(key(KeyCode::Esc)).is_empty());
        assert!(app.modal.is_none());
        app.handle_key(key(KeyCode::Char('q')));
        assert_eq!(app.handle_key(key(KeyCode::Char('q'))), vec![Action::Quit]);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.handle_key(ctrl_c), vec![Action::Quit]);
    }

    #[test]
    fn gate_keys_still_send_commands_to_the_run() {
        let mut app = attached_app();
        assert_eq!(
            app.handle_key(key(KeyCode::Char('a'))),
            vec![Action::Send(Command::ApproveGate {
                task: "slug".into()
            })]
        );
    }

    #[test]
    fn a_new_run_starts_the_model_over() {
        let mut app = attached_app();
        app.feed(Feed::Attached(Some(RunId::from("r20261124-130000-beef"))));
        assert!(app.state.is_none() && app.order.is_empty() && app.log.is_empty());
        assert_eq!(
            app.attached.as_ref().and_then(|a| a.run.clone()),
            Some(RunId::from("r20261124-130000-beef"))
        );
    }

    #[test]
    fn a_run_followed_through_the_store_stays_so_when_its_events_come() {
        let mut app = App::attached("memofab");
        app.feed(Feed::ViaStore);
        let events = crate::domain::fixture::events();
        app.feed(Feed::Attached(Some(events[0].run.clone())));
        for event in events {
            app.feed(Feed::Update(EngineUpdate::Event(event)));
        }
        assert!(app.attached.as_ref().is_some_and(|a| a.via_store));
        assert!(app.state.is_some());
    }

    #[test]
    fn with_no_run_the_editor_queues_a_requirement() {
        let mut app = App::attached("memofab");
        app.feed(Feed::Attached(None));
        assert_eq!(app.tab, Tab::Spec);
        for c in "Add a flag".chars() {
            app.handle_key(key(KeyCode::Char(c)));
        }
        let ctrl_s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL);
        assert_eq!(
            app.handle_key(ctrl_s),
            vec![Action::Send(Command::SubmitSpec {
                requirement: "Add a flag".into()
            })]
        );
        app.feed(Feed::Queued(RequirementId(3)));
        // Queued: the editor is read-only until the daemon starts the run.
        app.handle_key(key(KeyCode::Char('x')));
        assert_eq!(app.spec.lines(), ["Add a flag"]);
    }

    #[test]
    fn a_lost_connection_is_shown_and_q_quits_at_once() {
        let mut app = attached_app();
        app.feed(Feed::Lost("the daemon closed the connection".into()));
        assert_eq!(app.handle_key(key(KeyCode::Char('q'))), vec![Action::Quit]);
    }
}
