//! The arguments of one tool call, parsed once: the JSON the call is
//! recorded with, and what each tool reads its typed arguments from.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ToolOutcome, fail};

/// The arguments a model sent with a call.
pub struct Arguments<'a> {
    raw: &'a str,
    parsed: Result<Value, serde_json::Error>,
}

impl<'a> Arguments<'a> {
    pub fn parse(raw: &'a str) -> Self {
        Self {
            raw,
            parsed: serde_json::from_str(raw),
        }
    }

    /// The text as sent.
    pub fn raw(&self) -> &str {
        self.raw
    }

    /// Whether none were sent (an empty or blank text).
    pub fn is_empty(&self) -> bool {
        self.raw.trim().is_empty()
    }

    /// The JSON sent, or why the text is not JSON.
    pub fn value(&self) -> Result<&Value, &serde_json::Error> {
        self.parsed.as_ref()
    }

    /// What the call is recorded with: the JSON, or the text when it is not.
    pub fn recorded(&self) -> Value {
        match &self.parsed {
            Ok(value) => value.clone(),
            Err(_) => json!(self.raw),
        }
    }

    /// The typed arguments of `tool`; none sent reads as `{}`. What does not
    /// fit is answered with serde's reason, for the model to correct.
    pub fn typed<T: DeserializeOwned>(&self, tool: &str) -> Result<T, ToolOutcome> {
        let read = if self.is_empty() {
            T::deserialize(&json!({}))
        } else {
            match &self.parsed {
                Ok(value) => T::deserialize(value),
                Err(e) => return Err(unreadable(tool, e)),
            }
        };
        read.map_err(|_| {
            // The text's parser places the bad field by line and column,
            // which the parsed value no longer can: the answer is read
            // from it (this only runs for arguments that do not fit).
            let text = if self.is_empty() { "{}" } else { self.raw };
            match serde_json::from_str::<T>(text) {
                Err(e) => unreadable(tool, &e),
                Ok(_) => fail(format!(
                    "the arguments of {tool} could not be read; send one JSON object matching the tool's schema"
                )),
            }
        })
    }
}

fn unreadable(tool: &str, error: &serde_json::Error) -> ToolOutcome {
    fail(format!(
        "the arguments of {tool} could not be read ({error}); send one JSON object matching the tool's schema"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Path {
        path: String,
    }

    fn error(raw: &str) -> String {
        match Arguments::parse(raw).typed::<Path>("read_file") {
            Err(ToolOutcome::Output { ok: false, text }) => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_does_not_fit_is_answered_with_where() {
        assert_eq!(
            Arguments::parse(r#"{"path": "a"}"#)
                .typed::<Path>("read_file")
                .unwrap()
                .path,
            "a"
        );
        let typed = error(r#"{"path": 3}"#);
        assert!(
            typed.contains("invalid type") && typed.contains("at line 1 column"),
            "{typed}"
        );
        assert!(error("").contains("missing field `path`"));
        assert!(error(r#"{"path": "#).contains("EOF"));
        assert_eq!(Arguments::parse("not json").recorded(), json!("not json"));
        assert_eq!(Arguments::parse("{}").recorded(), json!({}));
    }
}
