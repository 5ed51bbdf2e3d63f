//! The plain JSON form, for reporters other than Sentry:
//!
//! ```json
//! {"title": "KeyError: 'sku'", "message": "...", "culprit": "cart.add",
//!  "environment": "production", "fingerprint": ["cart", "sku"] or "cart-sku",
//!  "count": 12, "level": "error", "link": "https://...",
//!  "stacktrace": [{"file": "src/cart.py", "line": 42, "function": "add",
//!                  "in_app": true}]}
//! ```
//!
//! Only `title` is required. `stacktrace` lists the most recent call first,
//! as most languages print it. Unknown fields are ignored; known fields of
//! the wrong type are refused.

use serde::Deserialize;
use serde_json::Value;

use super::PayloadError;
use super::incident::{Frame, GroupKey, Incident, MAX_FRAMES, Origin};

#[derive(Debug, Deserialize)]
struct PlainReport {
    title: String,
    message: Option<String>,
    culprit: Option<String>,
    environment: Option<String>,
    level: Option<String>,
    link: Option<String>,
    fingerprint: Option<Fingerprint>,
    count: Option<u64>,
    #[serde(default)]
    stacktrace: Vec<PlainFrame>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Fingerprint {
    One(String),
    Parts(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct PlainFrame {
    file: String,
    line: Option<u64>,
    function: Option<String>,
    in_app: Option<bool>,
}

pub fn parse(payload: Value) -> Result<Incident, PayloadError> {
    if !payload.is_object() {
        return Err(PayloadError::new("a report is a JSON object"));
    }
    let report = PlainReport::deserialize(payload)
        .map_err(|e| PayloadError::new(format!("not a plain report: {e}")))?;
    if report.title.trim().is_empty() {
        return Err(PayloadError::new("the report's title is empty"));
    }
    let fingerprint = match report.fingerprint {
        Some(Fingerprint::One(one)) => vec![one],
        Some(Fingerprint::Parts(parts)) => parts,
        None => Vec::new(),
    };
    let group = if fingerprint.iter().any(|p| !p.trim().is_empty()) {
        GroupKey::Fingerprint(fingerprint)
    } else {
        GroupKey::Derived
    };
    Ok(Incident {
        origin: Origin::Plain,
        title: report.title,
        message: report.message,
        culprit: report.culprit,
        environment: report.environment,
        level: report.level,
        count: report.count,
        group,
        frames: report
            .stacktrace
            .into_iter()
            .take(MAX_FRAMES)
            .map(|f| Frame {
                file: Some(f.file),
                abs_path: None,
                function: f.function,
                line: f.line,
                in_app: f.in_app,
            })
            .collect(),
        link: report.link,
    }
    .bounded())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_report_reads_every_field() {
        let got = parse(json!({
            "title": "KeyError: 'sku'",
            "message": "while adding to cart",
            "culprit": "cart.add",
            "environment": "production",
            "fingerprint": "cart-sku",
            "count": 12,
            "stacktrace": [{"file": "src/cart.py", "line": 42, "function": "add"}],
            "extra": {"ignored": true}
        }))
        .unwrap();
        assert_eq!(got.title, "KeyError: 'sku'");
        assert_eq!(got.count, Some(12));
        assert_eq!(got.group, GroupKey::Fingerprint(vec!["cart-sku".into()]));
        assert_eq!(got.frames[0].file.as_deref(), Some("src/cart.py"));
        assert_eq!(got.frames[0].in_app, None);
    }

    #[test]
    fn a_title_alone_is_enough_and_groups_by_what_it_says() {
        let got = parse(json!({"title": "boom", "fingerprint": []})).unwrap();
        assert_eq!(got.group, GroupKey::Derived);
        assert!(got.frames.is_empty());
    }

    #[test]
    fn reports_without_a_title_or_with_wrong_types_are_refused() {
        for bad in [
            json!({"message": "no title"}),
            json!({"title": "  "}),
            json!({"title": 3}),
            json!({"title": "x", "count": "many"}),
            json!({"title": "x", "stacktrace": [{"line": 3}]}),
            json!(["title"]),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad} was accepted");
        }
    }
}
