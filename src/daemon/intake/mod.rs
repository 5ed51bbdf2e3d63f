//! The incident intake: error reports over HTTP become queued requirements.
//!
//! `POST /intake/REPO` (or `/intake` when one repository is registered)
//! takes a Sentry webhook ([`sentry`]) or the plain JSON form ([`plain`]),
//! normalised into an [`incident::Incident`]. Reports are grouped by
//! fingerprint ([`dedupe`]); a group already queued, running, or fixed
//! within `[daemon] recent_fix_days` queues nothing, a new one becomes a
//! queued requirement tagged as an incident. The HTTP side is [`server`].
//!
//! Settings come from the user's config file (`[daemon] intake_secret`,
//! `recent_fix_days`), read once when the intake starts: a project's config
//! cannot loosen the daemon's secret.

pub mod dedupe;
pub mod incident;
pub mod plain;
pub mod sentry;
mod server;

use std::fmt;
use std::net::SocketAddr;

use serde_json::Value;

use super::error::{DaemonError, DaemonResult};
use super::shared::Shared;
use crate::config::DaemonConfig;
use incident::Incident;

/// What the intake needs from the config.
#[derive(Clone, PartialEq, Eq)]
pub struct IntakeSettings {
    /// Required in `X-Memofab-Secret`, or as the key of a valid
    /// `Sentry-Hook-Signature`; none accepts every request.
    pub secret: Option<String>,
    /// A group fixed within this many days is not queued again.
    pub recent_fix_days: u32,
}

impl fmt::Debug for IntakeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeSettings")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("recent_fix_days", &self.recent_fix_days)
            .finish()
    }
}

impl IntakeSettings {
    pub fn from_config(config: &DaemonConfig) -> DaemonResult<Self> {
        if config
            .intake_secret
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(DaemonError::Invalid(
                "[daemon] intake_secret is empty; set a value, or remove it to accept reports without one"
                    .into(),
            ));
        }
        Ok(Self {
            secret: config.intake_secret.clone(),
            recent_fix_days: config.recent_fix_days,
        })
    }
}

/// Listens at `addr` until the daemon stops; returns the address bound
/// (the port may have been 0). The settings come from the daemon's own
/// config (the user's file and `serve --config`), never a project's.
pub async fn spawn(
    addr: SocketAddr,
    shared: Shared,
    settings: IntakeSettings,
) -> DaemonResult<SocketAddr> {
    server::spawn(addr, shared, settings).await
}

/// A report the intake refuses (400): what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError(pub String);

impl PayloadError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a well-formed payload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Incident(Incident),
    /// A webhook that reports no error (Sentry's installation ping, a
    /// resolved issue): acknowledged, nothing queued.
    NotAnIncident(String),
}

/// Reads a payload in whichever form it came: Sentry's integration platform
/// (named by its `Sentry-Hook-Resource` header, or by a `data` object),
/// Sentry's legacy plugin (an `event` object beside the group's fields),
/// else the plain form.
pub fn read(resource: Option<&str>, body: &[u8]) -> Result<Report, PayloadError> {
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| PayloadError::new(format!("malformed JSON: {e}")))?;
    if resource.is_some() || payload.get("data").is_some_and(Value::is_object) {
        return sentry::integration(resource, &payload);
    }
    let plugin_like = payload.get("event").is_some_and(Value::is_object)
        && ["project", "culprit", "id"]
            .iter()
            .any(|key| payload.get(key).is_some());
    if plugin_like {
        return sentry::plugin(&payload);
    }
    plain::parse(payload).map(Report::Incident)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_is_recognised_by_its_header_or_its_shape() {
        let plain = read(None, br#"{"title": "boom"}"#).unwrap();
        assert!(matches!(plain, Report::Incident(i) if i.origin == incident::Origin::Plain));
        let plugin = br#"{"id": "7", "culprit": "x", "event": {"title": "boom"}}"#;
        assert!(matches!(
            read(None, plugin).unwrap(),
            Report::Incident(i) if i.origin == incident::Origin::SentryPlugin
        ));
        let alert = br#"{"action": "triggered", "data": {"event": {"title": "boom"}}}"#;
        assert!(matches!(
            read(None, alert).unwrap(),
            Report::Incident(i) if i.origin == incident::Origin::SentryIssueAlert
        ));
        assert!(matches!(
            read(Some("installation"), br#"{"action": "created"}"#).unwrap(),
            Report::NotAnIncident(_)
        ));
        assert!(read(None, b"{\"title\": ").is_err());
        assert!(read(None, b"").is_err());
    }

    #[test]
    fn an_empty_secret_is_a_mistake_not_an_open_door() {
        let config = DaemonConfig {
            intake_secret: Some(" ".into()),
            ..DaemonConfig::default()
        };
        assert!(IntakeSettings::from_config(&config).is_err());
        let settings = IntakeSettings::from_config(&DaemonConfig {
            intake_secret: Some("s3cret".into()),
            ..DaemonConfig::default()
        })
        .unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
