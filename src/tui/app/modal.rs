//! Overlays that take the keyboard, one state per overlay, and the keys
//! they handle. A modal is taken out of the model while a key is handled and
//! put back unless the key closed it.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tui_textarea::TextArea;

use super::{Action, App};
use crate::domain::{AgentId, TaskId};
use crate::protocol::Command;

/// Overlays that take the keyboard.
pub enum Modal {
    Help,
    Reject {
        task: TaskId,
        input: TextArea<'static>,
    },
    EditTask {
        task: TaskId,
        input: TextArea<'static>,
    },
    Search {
        query: String,
    },
    /// Answering an agent's question from the inbox.
    Answer {
        agent: AgentId,
        call_id: String,
        question: String,
        input: TextArea<'static>,
    },
    /// Asking before a task is cancelled.
    ConfirmCancel(ConfirmCancel),
    /// Asking before an attached cockpit detaches (the run goes on).
    ConfirmDetach,
}

/// Cancelling stops a task's agents and drops its work: `y` confirms,
/// `n` or Esc keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmCancel {
    pub task: TaskId,
}

impl ConfirmCancel {
    /// What a key does: `Some(true)` cancels, `Some(false)` keeps the
    /// task, `None` leaves the question open.
    fn decide(key: KeyEvent) -> Option<bool> {
        match key.code {
            KeyCode::Char('y' | 'Y') => Some(true),
            KeyCode::Char('n' | 'N') | KeyCode::Esc => Some(false),
            _ => None,
        }
    }
}

impl App {
    /// Typing an answer to an agent's question; Enter sends it.
    fn answer_key(&mut self, mut modal: Modal, key: KeyEvent) -> Vec<Action> {
        let Modal::Answer {
            agent,
            call_id,
            input,
            ..
        } = &mut modal
        else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Esc => Vec::new(),
            KeyCode::Enter if !key.modifiers.contains(KeyModifiers::ALT) => {
                let answer = input.lines().join("\n");
                if answer.trim().is_empty() {
                    self.modal = Some(modal);
                    return Vec::new();
                }
                vec![Action::Send(Command::AnswerQuestion {
                    agent: agent.clone(),
                    call_id: call_id.clone(),
                    answer,
                })]
            }
            _ => {
                input.input(key);
                self.modal = Some(modal);
                Vec::new()
            }
        }
    }

    pub(super) fn modal_key(&mut self, modal: Modal, key: KeyEvent) -> Vec<Action> {
        match modal {
            Modal::Help => Vec::new(),
            Modal::ConfirmDetach => self.confirm_detach_key(key),
            Modal::ConfirmCancel(confirm) => match ConfirmCancel::decide(key) {
                Some(true) => vec![Action::Send(Command::CancelTask { task: confirm.task })],
                Some(false) => Vec::new(),
                None => {
                    self.modal = Some(Modal::ConfirmCancel(confirm));
                    Vec::new()
                }
            },
            Modal::Search { mut query } => {
                match key.code {
                    KeyCode::Esc => {}
                    KeyCode::Enter => {
                        self.run_search(&query);
                    }
                    KeyCode::Backspace => {
                        query.pop();
                        self.modal = Some(Modal::Search { query });
                    }
                    KeyCode::Char(c) => {
                        query.push(c);
                        self.modal = Some(Modal::Search { query });
                    }
                    _ => self.modal = Some(Modal::Search { query }),
                }
                Vec::new()
            }
            Modal::Reject { task, mut input } => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter if !key.modifiers.contains(KeyModifiers::ALT) => {
                    let feedback = input.lines().join("\n");
                    if feedback.trim().is_empty() {
                        self.modal = Some(Modal::Reject { task, input });
                        Vec::new()
                    } else {
                        vec![Action::Send(Command::RejectGate { task, feedback })]
                    }
                }
                _ => {
                    input.input(key);
                    self.modal = Some(Modal::Reject { task, input });
                    Vec::new()
                }
            },
            modal @ Modal::Answer { .. } => self.answer_key(modal, key),
            Modal::EditTask { task, mut input } => match (key.code, key.modifiers) {
                (KeyCode::Esc, _) => Vec::new(),
                (KeyCode::Char('s'), KeyModifiers::CONTROL) => {
                    let lines = input.lines();
                    let split = lines
                        .iter()
                        .position(|l| l.trim() == "---")
                        .unwrap_or(lines.len());
                    let description = lines[..split].join("\n");
                    let acceptance = lines
                        .iter()
                        .skip(split + 1)
                        .filter(|l| !l.trim().is_empty())
                        .cloned()
                        .collect();
                    vec![Action::Send(Command::EditTask {
                        task,
                        description,
                        acceptance,
                    })]
                }
                _ => {
                    input.input(key);
                    self.modal = Some(Modal::EditTask { task, input });
                    Vec::new()
                }
            },
        }
    }
}
