//! Sentry's webhook payloads, read into an [`Incident`].
//!
//! Three documented forms (docs.sentry.io, "Integration Platform → Webhooks"
//! and the legacy webhooks plugin; recorded examples in
//! tests/fixtures/sentry/):
//! - integration platform, `Sentry-Hook-Resource: event_alert` (an issue
//!   alert rule's action): `{"action":"triggered","data":{"event":{..},
//!   "triggered_rule":..}}`;
//! - `error`: `{"action":"created","data":{"error":{..}}}`, the same event;
//! - `issue`: `{"action":"created","data":{"issue":{..}}}`, the group without
//!   a stack trace but with its event count;
//! - the legacy plugin: `{"id":<group>,"culprit","message","level","url",
//!   "event":{..}}`.
//!
//! Optional fields are read leniently (a number where a string was expected
//! is read as text, a wrong type as absent): a report is refused only when
//! it says nothing an incident needs.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::incident::{Frame, GroupKey, Incident, MAX_FRAMES, Origin};
use super::{PayloadError, Report};

/// Sentry's placeholder for its default grouping: not a fingerprint.
const DEFAULT_FINGERPRINT: &str = "{{ default }}";

/// An integration-platform webhook; `resource` is its `Sentry-Hook-Resource`
/// header, or what the payload's `data` holds when the header is missing.
pub fn integration(resource: Option<&str>, payload: &Value) -> Result<Report, PayloadError> {
    let data = payload.get("data").filter(|d| d.is_object());
    let resource = resource.map(str::to_owned).or_else(|| {
        let data = data?;
        ["event", "error", "issue"]
            .into_iter()
            .find(|key| data.get(key).is_some_and(Value::is_object))
            .map(|key| if key == "event" { "event_alert" } else { key }.to_owned())
    });
    let Some(resource) = resource else {
        return Err(PayloadError::new(
            "a Sentry webhook needs data.event, data.error or data.issue",
        ));
    };
    let action = payload.get("action").and_then(Value::as_str).unwrap_or("");
    let object = |key: &str| {
        data.and_then(|d| d.get(key))
            .filter(|v| v.is_object())
            .ok_or_else(|| {
                PayloadError::new(format!("a Sentry {resource} webhook needs data.{key}"))
            })
    };
    match resource.as_str() {
        "event_alert" => {
            let event = object("event")?;
            let mut incident = event_incident(Origin::SentryIssueAlert, event)?;
            if incident.link.is_none() {
                incident.link = text_at(event, "issue_url");
            }
            Ok(Report::Incident(incident))
        }
        "error" => Ok(Report::Incident(event_incident(
            Origin::SentryError,
            object("error")?,
        )?)),
        "issue" if matches!(action, "created" | "unresolved") => {
            Ok(Report::Incident(issue_incident(object("issue")?)?))
        }
        "issue" => Ok(Report::NotAnIncident(format!(
            "a Sentry issue {action:?} webhook: only created and unresolved issues are incidents"
        ))),
        other => Ok(Report::NotAnIncident(format!(
            "Sentry {other:?} webhooks are not error reports"
        ))),
    }
}

/// A payload of Sentry's legacy webhooks plugin.
pub fn plugin(payload: &Value) -> Result<Report, PayloadError> {
    let event = payload.get("event").filter(|e| e.is_object());
    let mut incident = match event {
        Some(event) => event_incident(Origin::SentryPlugin, event)?,
        None => return Err(PayloadError::new("a Sentry plugin webhook needs its event")),
    };
    let top = Event::read(payload);
    // The plugin puts the group's own fields at the top.
    if let Some(id) = top.id {
        incident.group = GroupKey::Issue(id);
    }
    incident.culprit = top.culprit.or(incident.culprit);
    incident.level = incident.level.or(top.level);
    incident.link = top.url.or(incident.link);
    Ok(Report::Incident(incident))
}

/// The fields of a Sentry event (or of the plugin's top level) the intake
/// reads; the rest is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event {
    #[serde(deserialize_with = "text")]
    title: Option<String>,
    #[serde(deserialize_with = "text")]
    message: Option<String>,
    #[serde(deserialize_with = "text")]
    culprit: Option<String>,
    #[serde(deserialize_with = "text")]
    environment: Option<String>,
    #[serde(deserialize_with = "text")]
    level: Option<String>,
    #[serde(deserialize_with = "text")]
    issue_id: Option<String>,
    #[serde(deserialize_with = "text")]
    group_id: Option<String>,
    /// The plugin's group id.
    #[serde(deserialize_with = "text")]
    id: Option<String>,
    #[serde(deserialize_with = "text")]
    web_url: Option<String>,
    #[serde(deserialize_with = "text")]
    url: Option<String>,
    #[serde(deserialize_with = "texts")]
    fingerprint: Vec<String>,
    tags: Value,
    metadata: Value,
    logentry: Value,
    exception: Value,
    stacktrace: Value,
    threads: Value,
    #[serde(rename = "sentry.interfaces.Exception")]
    legacy_exception: Value,
    #[serde(rename = "sentry.interfaces.Stacktrace")]
    legacy_stacktrace: Value,
    #[serde(rename = "sentry.interfaces.Message")]
    legacy_message: Value,
}

impl Event {
    /// Never fails: fields of the wrong type are left out.
    fn read(value: &Value) -> Self {
        Self::deserialize(value).unwrap_or_default()
    }
}

fn event_incident(origin: Origin, value: &Value) -> Result<Incident, PayloadError> {
    let event = Event::read(value);
    let message = event
        .message
        .clone()
        .filter(|m| !m.trim().is_empty())
        .or_else(|| text_at(&event.logentry, "formatted"))
        .or_else(|| text_at(&event.logentry, "message"))
        .or_else(|| text_at(&event.legacy_message, "message"));
    let (frames, exception) = stack(&event);
    let title = event
        .title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| type_and_value(&event.metadata))
        .or(exception)
        .or_else(|| text_at(&event.metadata, "title"))
        .or_else(|| message.clone())
        .ok_or_else(|| {
            PayloadError::new("the Sentry event has no title, exception or message to report")
        })?;
    let environment = event
        .environment
        .clone()
        .or_else(|| tag(&event.tags, "environment"));
    let group = match event.issue_id.clone().or(event.group_id.clone()) {
        Some(id) => GroupKey::Issue(id),
        None if event.fingerprint.iter().any(|f| f != DEFAULT_FINGERPRINT) => {
            GroupKey::Fingerprint(event.fingerprint.clone())
        }
        None => GroupKey::Derived,
    };
    Ok(Incident {
        origin,
        title,
        message,
        culprit: event.culprit,
        environment,
        level: event.level.or_else(|| tag(&event.tags, "level")),
        count: None,
        group,
        frames,
        link: event.web_url.or(event.url),
    }
    .bounded())
}

/// The `issue` resource: Sentry's group, with its event count.
fn issue_incident(issue: &Value) -> Result<Incident, PayloadError> {
    let read = |key: &str| text_at(issue, key);
    let id = read("id").ok_or_else(|| PayloadError::new("a Sentry issue needs its id"))?;
    let metadata = issue.get("metadata").cloned().unwrap_or(Value::Null);
    let title = read("title")
        .filter(|t| !t.trim().is_empty())
        .or_else(|| type_and_value(&metadata))
        .ok_or_else(|| PayloadError::new("the Sentry issue has no title"))?;
    Ok(Incident {
        origin: Origin::SentryIssue,
        title,
        message: None,
        culprit: read("culprit"),
        environment: None,
        level: read("level"),
        count: read("count").and_then(|c| c.parse().ok()),
        group: GroupKey::Issue(id),
        frames: Vec::new(),
        link: read("permalink").or_else(|| read("web_url")),
    }
    .bounded())
}

/// The frames of the exception that ended the program (the last one
/// Sentry lists with a stack trace), most recent call first, and that
/// exception as `Type: value`. Falls back on the event's own stack trace,
/// the crashed thread's, then the legacy interfaces.
fn stack(event: &Event) -> (Vec<Frame>, Option<String>) {
    let exceptions: Vec<&Value> = [&event.exception, &event.legacy_exception]
        .into_iter()
        .flat_map(values)
        .collect();
    let described = exceptions.last().and_then(|e| type_and_value(e));
    let from_exception = exceptions
        .iter()
        .rev()
        .map(|e| frames(e.get("stacktrace").unwrap_or(&Value::Null)))
        .find(|f| !f.is_empty());
    let crashed_thread = values(&event.threads)
        .into_iter()
        .filter(|t| t.get("crashed").and_then(Value::as_bool) == Some(true))
        .map(|t| frames(t.get("stacktrace").unwrap_or(&Value::Null)))
        .find(|f| !f.is_empty());
    let found = from_exception
        .or_else(|| Some(frames(&event.stacktrace)).filter(|f| !f.is_empty()))
        .or(crashed_thread)
        .unwrap_or_else(|| frames(&event.legacy_stacktrace));
    (found, described)
}

/// `{"values": [..]}` or a bare list.
fn values(value: &Value) -> Vec<&Value> {
    let list = value.get("values").unwrap_or(value);
    list.as_array()
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

/// A Sentry stack trace's frames (listed oldest first), most recent first.
fn frames(stacktrace: &Value) -> Vec<Frame> {
    let Some(list) = stacktrace.get("frames").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .rev()
        .take(MAX_FRAMES)
        .filter_map(|raw| RawFrame::deserialize(raw).ok())
        .map(|raw| Frame {
            file: raw.filename.or(raw.module),
            abs_path: raw.abs_path,
            function: raw.function,
            line: raw.lineno,
            in_app: raw.in_app,
        })
        .filter(|f| f.file.is_some() || f.abs_path.is_some() || f.function.is_some())
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFrame {
    #[serde(deserialize_with = "text")]
    filename: Option<String>,
    #[serde(deserialize_with = "text")]
    abs_path: Option<String>,
    #[serde(deserialize_with = "text")]
    module: Option<String>,
    #[serde(deserialize_with = "text")]
    function: Option<String>,
    #[serde(deserialize_with = "number")]
    lineno: Option<u64>,
    #[serde(deserialize_with = "flag")]
    in_app: Option<bool>,
}

/// `Type: value` from an exception or an event's metadata.
fn type_and_value(value: &Value) -> Option<String> {
    let kind = text_at(value, "type");
    let detail = text_at(value, "value");
    match (kind, detail) {
        (Some(kind), Some(detail)) => Some(format!("{kind}: {detail}")),
        (kind, detail) => kind.or(detail),
    }
}

/// A tag's value; Sentry sends tags as `[key, value]` pairs or as
/// `{"key", "value"}` objects.
fn tag(tags: &Value, key: &str) -> Option<String> {
    tags.as_array()?.iter().find_map(|t| {
        let (k, v) = match t {
            Value::Array(pair) => (pair.first()?, pair.get(1)?),
            Value::Object(o) => (o.get("key")?, o.get("value")?),
            _ => return None,
        };
        (k.as_str() == Some(key)).then(|| as_text(v)).flatten()
    })
}

fn text_at(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(as_text)
}

/// A string, or a number or boolean written out; empty strings are absent.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(as_text(&Value::deserialize(d)?))
}

fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(list) => list.iter().filter_map(as_text).collect(),
        other => as_text(&other).into_iter().collect(),
    })
}

fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/sentry/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn incident(report: Report) -> Incident {
        match report {
            Report::Incident(incident) => incident,
            Report::NotAnIncident(why) => panic!("not an incident: {why}"),
        }
    }

    #[test]
    fn an_issue_alert_reads_the_error_its_group_and_its_in_app_frames() {
        let payload = fixture("issue_alert.json");
        let got = incident(integration(Some("event_alert"), &payload).unwrap());
        assert_eq!(got.origin, Origin::SentryIssueAlert);
        assert_eq!(
            got.title,
            "TypeError: Cannot read properties of undefined (reading 'price')"
        );
        assert_eq!(got.group, GroupKey::Issue("4509873425".into()));
        assert_eq!(got.environment.as_deref(), Some("production"));
        assert_eq!(got.culprit.as_deref(), Some("addToCart(src/cart/total.js)"));
        // Most recent call first.
        let top = &got.frames[0];
        assert_eq!(top.file.as_deref(), Some("./src/cart/total.js"));
        assert_eq!(top.line, Some(27));
        assert_eq!(top.in_app, Some(true));
        assert_eq!(got.frames.last().unwrap().in_app, Some(false));
        // Without the header, the payload's shape says the same.
        assert_eq!(incident(integration(None, &payload).unwrap()), got);
    }

    #[test]
    fn the_documented_examples_read_as_incidents() {
        let alert = incident(integration(None, &fixture("docs_event_alert.json")).unwrap());
        assert_eq!(alert.title, "ReferenceError: heck is not defined");
        assert_eq!(alert.group, GroupKey::Issue("1117540176".into()));
        assert_eq!(alert.frames.len(), 3);
        assert_eq!(alert.frames[0].file.as_deref(), Some("<anonymous>"));

        let error = incident(integration(Some("error"), &fixture("docs_error.json")).unwrap());
        assert_eq!(error.origin, Origin::SentryError);
        assert_eq!(error.group, GroupKey::Issue("1170820242".into()));

        let issue = incident(integration(Some("issue"), &fixture("docs_issue.json")).unwrap());
        assert_eq!(issue.count, Some(1));
        assert!(issue.frames.is_empty());
        assert_eq!(issue.group, GroupKey::Issue("1170820242".into()));
    }

    #[test]
    fn the_legacy_plugin_form_reads_its_group_and_legacy_stack() {
        let got = incident(plugin(&fixture("plugin.json")).unwrap());
        assert_eq!(got.origin, Origin::SentryPlugin);
        assert_eq!(got.group, GroupKey::Issue("541485531".into()));
        assert_eq!(got.title, "This is an example Python exception");
        assert_eq!(got.culprit.as_deref(), Some("raven.scripts.runner in main"));
        assert_eq!(got.frames[0].function.as_deref(), Some("main"));
        assert_eq!(got.frames[0].line, Some(112));
    }

    #[test]
    fn resources_that_are_not_errors_are_skipped_and_empty_events_refused() {
        let resolved =
            serde_json::json!({"action": "resolved", "data": {"issue": {"id": "1", "title": "x"}}});
        assert!(matches!(
            integration(Some("issue"), &resolved),
            Ok(Report::NotAnIncident(_))
        ));
        let install = serde_json::json!({"action": "created", "data": {"installation": {}}});
        assert!(matches!(
            integration(Some("installation"), &install),
            Ok(Report::NotAnIncident(_))
        ));
        let empty = serde_json::json!({"action": "triggered", "data": {"event": {"culprit": 3}}});
        assert!(integration(Some("event_alert"), &empty).is_err());
        let missing = serde_json::json!({"action": "triggered", "data": {}});
        assert!(integration(Some("event_alert"), &missing).is_err());
        assert!(integration(None, &missing).is_err());
    }

    #[test]
    fn fields_of_unexpected_types_are_read_leniently() {
        let event = serde_json::json!({
            "exception": {"values": [{"type": "Panic", "value": "boom", "stacktrace": {"frames": [
                {"filename": "src/main.rs", "lineno": "12", "in_app": 1, "function": ["odd"]},
                "not a frame"
            ]}}]},
            "fingerprint": ["checkout", 7],
            "tags": [{"key": "environment", "value": "staging"}]
        });
        let got = event_incident(Origin::SentryError, &event).unwrap();
        assert_eq!(got.title, "Panic: boom");
        assert_eq!(
            got.group,
            GroupKey::Fingerprint(vec!["checkout".into(), "7".into()])
        );
        assert_eq!(got.environment.as_deref(), Some("staging"));
        assert_eq!(got.frames.len(), 1);
        assert_eq!(got.frames[0].line, Some(12));
        assert_eq!(got.frames[0].in_app, Some(true));
        assert_eq!(got.frames[0].function, None);
    }
}
