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
//! `recent_fix_days`, `intake_max_connections`), read once when the intake
//! starts: a project's config cannot loosen the daemon's secret.
//!
//! Secure by default: without a secret the intake does not start, unless
//! the user says `--intake-insecure`, and then only on a loopback address
//! ([`Access`]). Who may post is checked in [`auth`]; slow and surplus
//! connections are bounded in [`connections`].

mod auth;
mod connections;
pub mod dedupe;
pub mod incident;
pub mod plain;
pub mod sentry;
mod server;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::error::{DaemonError, DaemonResult};
use super::shared::Shared;
use crate::config::DaemonConfig;
use incident::Incident;

pub use auth::WINDOW as SIGNATURE_WINDOW;

/// A slow client's whole request (headers and body) must arrive within this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Who may post reports.
#[derive(Clone, PartialEq, Eq)]
pub enum Access {
    /// The secret in `X-Memofab-Secret`, or a fresh Sentry signature made
    /// with it.
    Secret(String),
    /// `--intake-insecure`: anyone who reaches the address, which must be a
    /// loopback one.
    OpenOnLoopback,
}

/// What the intake needs from the config.
#[derive(Clone, PartialEq, Eq)]
pub struct IntakeSettings {
    pub access: Access,
    /// A group fixed within this many days is not queued again.
    pub recent_fix_days: u32,
    /// Connections served at once; see [`connections`].
    pub max_connections: usize,
    /// The whole request, headers and body, arrives within this.
    pub request_deadline: Duration,
}

/// Never shows the secret.
impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Secret(_) => "Secret(<set>)",
            Access::OpenOnLoopback => "OpenOnLoopback",
        })
    }
}

impl fmt::Debug for IntakeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeSettings")
            .field("access", &self.access)
            .field("recent_fix_days", &self.recent_fix_days)
            .field("max_connections", &self.max_connections)
            .field("request_deadline", &self.request_deadline)
            .finish()
    }
}

impl IntakeSettings {
    /// From the daemon's config; `insecure` is `--intake-insecure`. No
    /// secret and not `insecure` is refused, saying how to set one.
    pub fn from_config(config: &DaemonConfig, insecure: bool) -> DaemonResult<Self> {
        let access = match config.intake_secret.as_deref() {
            Some(secret) if secret.trim().is_empty() => {
                return Err(DaemonError::Invalid(
                    "[daemon] intake_secret is empty; set a long random value".into(),
                ));
            }
            Some(secret) => Access::Secret(secret.to_owned()),
            None if insecure => Access::OpenOnLoopback,
            None => {
                let file = crate::config::Config::user_file()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "your memofab config file".into());
                return Err(DaemonError::Invalid(format!(
                    "the incident intake needs a secret, or anyone who reaches it can queue work \
                     that agents build and merge. Set one in {file} (or the file given with \
                     --config):\n\n  [daemon]\n  intake_secret = \"<for Sentry, its integration's \
                     client secret; else a long random value, e.g. `openssl rand -hex 32`>\"\n\n\
                     and send it as the X-Memofab-Secret header (Sentry signs with it instead). \
                     To accept reports without one from this machine only, add --intake-insecure \
                     with a loopback address (127.0.0.1:PORT)."
                )));
            }
        };
        Ok(Self {
            access,
            recent_fix_days: config.recent_fix_days,
            max_connections: config.intake_max_connections.max(1),
            request_deadline: REQUEST_DEADLINE,
        })
    }

    /// An open intake listens on loopback only; checked before anything
    /// binds.
    pub fn check_address(&self, addr: SocketAddr) -> DaemonResult<()> {
        if self.access == Access::OpenOnLoopback && !addr.ip().is_loopback() {
            return Err(DaemonError::Invalid(format!(
                "--intake-insecure accepts reports without a secret, so it listens on a loopback \
                 address only, not {addr}; set [daemon] intake_secret to listen there"
            )));
        }
        Ok(())
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
    settings.check_address(addr)?;
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
        assert!(IntakeSettings::from_config(&config, false).is_err());
        assert!(IntakeSettings::from_config(&config, true).is_err());
        let settings = IntakeSettings::from_config(
            &DaemonConfig {
                intake_secret: Some("s3cret".into()),
                ..DaemonConfig::default()
            },
            false,
        )
        .unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
        assert_eq!(settings.access, Access::Secret("s3cret".into()));
    }

    #[test]
    fn without_a_secret_only_an_explicit_insecure_intake_on_loopback_starts() {
        let none = DaemonConfig::default();
        assert!(IntakeSettings::from_config(&none, false).is_err());
        let open = IntakeSettings::from_config(&none, true).unwrap();
        assert_eq!(open.access, Access::OpenOnLoopback);
        for ok in ["127.0.0.1:8787", "[::1]:8787", "127.0.0.2:0"] {
            assert!(open.check_address(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for refused in [
            "0.0.0.0:8787",
            "[::]:8787",
            "192.168.1.5:8787",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(
                open.check_address(refused.parse().unwrap()).is_err(),
                "{refused}"
            );
        }
        let secret = IntakeSettings::from_config(
            &DaemonConfig {
                intake_secret: Some("s3cret".into()),
                ..DaemonConfig::default()
            },
            true,
        )
        .unwrap();
        assert!(
            secret
                .check_address("0.0.0.0:8787".parse().unwrap())
                .is_ok()
        );
    }
}
