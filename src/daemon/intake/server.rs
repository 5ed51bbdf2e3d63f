//! The intake's HTTP/1.1 server (hyper): routes, limits, the shared-secret
//! check, and the answers. Every answer is a JSON object:
//! 202 `{"queued": "q3", ..}` for a new group, 200 `{"ignored": why, ..}`
//! for a known one or a webhook that reports no error, 4xx `{"error": why}`
//! with nothing queued.
//!
//! Limits: a body over [`MAX_BODY`] is refused while it is read (never
//! buffered whole), headers and body each have a deadline, and at most
//! [`MAX_CONNECTIONS`] connections are served at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::dedupe::{self, Known};
use super::incident::{self, Incident};
use super::{IntakeSettings, Report};
use crate::daemon::error::{DaemonError, DaemonResult};
use crate::daemon::shared::Shared;
use crate::domain::queue::{QueuedRequirement, RegisteredRepo, Source};
use crate::effects::queue::{NewRequirement, Queue, QueueError};

/// The largest body accepted. Sentry's event payloads are tens of KiB.
pub const MAX_BODY: usize = 1024 * 1024;
/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

const SECRET_HEADER: &str = "x-memofab-secret";
const SIGNATURE_HEADER: &str = "sentry-hook-signature";
const RESOURCE_HEADER: &str = "sentry-hook-resource";

struct Intake {
    shared: Shared,
    /// One connection, behind a lock: checking a group and queuing it are
    /// one step, so two reports of a new group queue it once.
    queue: Mutex<Queue>,
    settings: IntakeSettings,
}

impl Intake {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic mid-request leaves no half-written state: each write is
        // one SQLite statement.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) async fn spawn(
    addr: SocketAddr,
    shared: Shared,
    settings: IntakeSettings,
) -> DaemonResult<SocketAddr> {
    let queue = shared.queue()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(DaemonError::io(format!(
            "cannot listen for incidents at {addr} (give `--intake` another address, or stop what listens there)"
        )))?;
    let bound = listener
        .local_addr()
        .map_err(DaemonError::io("reading the intake's address"))?;
    let intake = Arc::new(Intake {
        shared,
        queue: Mutex::new(queue),
        settings,
    });
    if intake.settings.secret.is_none() && !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the incident intake has no [daemon] intake_secret: anyone who reaches it can queue work");
    }
    tokio::spawn(accept(listener, intake));
    tracing::info!(%bound, "incident intake listening");
    Ok(bound)
}

async fn accept(listener: TcpListener, intake: Arc<Intake>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, usually: wait rather than spin.
                tracing::warn!("incident intake: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let intake = Arc::clone(&intake);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let intake = Arc::clone(&intake);
                async move { Ok::<_, Infallible>(handle(&intake, request).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("incident intake: connection ended: {e}");
            }
            drop(slot);
        });
    }
}

/// One answer: a status and a JSON body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn refuse(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": reason.into() }),
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body.to_string())));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

async fn handle(intake: &Arc<Intake>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match respond(intake, request).await {
        Ok(answer) | Err(answer) => answer.into_response(),
    }
}

/// Which repository the path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `/intake`: the one registered repository.
    Only,
    /// `/intake/NAME`.
    Named(String),
}

fn route(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/intake")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Target::Only);
    }
    let name = rest.strip_prefix('/')?;
    // Registered names are letters, digits, '-', '_' and '.': anything else
    // names no repository (and is never looked up as a path).
    let plausible = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plausible.then(|| Target::Named(name.to_owned()))
}

async fn respond(intake: &Arc<Intake>, request: Request<Incoming>) -> Result<Answer, Answer> {
    let target = route(request.uri().path()).ok_or_else(|| {
        Answer::refuse(
            StatusCode::NOT_FOUND,
            "no such endpoint; reports go to POST /intake/REPO",
        )
    })?;
    if request.method() != Method::POST {
        return Err(Answer::refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "reports are POSTed",
        ));
    }
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body).await?;
    if !authorised(intake.settings.secret.as_deref(), &parts.headers, &body) {
        return Err(Answer::refuse(
            StatusCode::UNAUTHORIZED,
            "a valid X-Memofab-Secret header or Sentry-Hook-Signature is required",
        ));
    }
    let repo = blocking(intake, move |intake| find_repo(&intake.queue(), &target)).await??;
    let resource = parts
        .headers
        .get(RESOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let incident = match super::read(resource.as_deref(), &body) {
        Ok(Report::Incident(incident)) => incident,
        Ok(Report::NotAnIncident(why)) => {
            return Ok(Answer {
                status: StatusCode::OK,
                body: json!({ "ignored": why }),
            });
        }
        Err(e) => return Err(Answer::refuse(StatusCode::BAD_REQUEST, e.0)),
    };
    let outcome = blocking(intake, move |intake| take(intake, &repo, &incident))
        .await?
        .map_err(|e| {
            tracing::warn!("incident intake: {e}");
            Answer::refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        })?;
    Ok(match outcome {
        Taken::Queued(entry) => {
            ring(&intake.shared);
            tracing::info!(entry = %entry.id, repo = %entry.repo, "incident queued");
            Answer {
                status: StatusCode::ACCEPTED,
                body: json!({
                    "queued": entry.id.to_string(),
                    "repo": entry.repo,
                    "fingerprint": entry.fingerprint,
                }),
            }
        }
        Taken::Known { known, fingerprint } => Answer {
            status: StatusCode::OK,
            body: json!({
                "ignored": known.to_string(),
                "entry": known.entry().to_string(),
                "fingerprint": fingerprint,
            }),
        },
    })
}

/// The body, refused (413) as soon as it passes [`MAX_BODY`].
async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Bytes, Answer> {
    let too_large = || {
        Answer::refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a report is at most {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await;
    match read {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Answer::refuse(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {e}"),
        )),
        Err(_) => Err(Answer::refuse(
            StatusCode::REQUEST_TIMEOUT,
            "the body took too long to arrive",
        )),
    }
}

/// No secret configured, the secret in `X-Memofab-Secret`, or a Sentry
/// signature (HMAC-SHA256 of the raw body, hex) made with it.
fn authorised(secret: Option<&str>, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(secret) = secret else {
        return true;
    };
    let given = headers.get(SECRET_HEADER).map(HeaderValue::as_bytes);
    if given.is_some_and(|given| same_secret(given, secret.as_bytes())) {
        return true;
    }
    headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|signature| signed(secret, body, signature))
}

/// Compares digests, not the values: the time taken says nothing about the
/// secret, not even its length.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(secret));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn signed(secret: &str, body: &[u8], signature: &str) -> bool {
    let Some(expected) = from_hex(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    // Constant time.
    mac.verify_slice(&expected).is_ok()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn find_repo(queue: &Queue, target: &Target) -> Result<RegisteredRepo, Answer> {
    let repos = queue.repos().map_err(internal)?;
    match target {
        Target::Named(name) => repos.into_iter().find(|r| &r.name == name).ok_or_else(|| {
            Answer::refuse(
                StatusCode::NOT_FOUND,
                format!(
                    "{name} is not a registered repository; `memofab repo list` shows the names to post to"
                ),
            )
        }),
        Target::Only => match <[RegisteredRepo; 1]>::try_from(repos) {
            Ok([only]) => Ok(only),
            Err(repos) if repos.is_empty() => Err(Answer::refuse(
                StatusCode::NOT_FOUND,
                "no repository is registered; `memofab repo add PATH` registers one",
            )),
            Err(repos) => Err(Answer::refuse(
                StatusCode::NOT_FOUND,
                format!(
                    "{} repositories are registered; name one: POST /intake/REPO",
                    repos.len()
                ),
            )),
        },
    }
}

enum Taken {
    Queued(QueuedRequirement),
    Known { known: Known, fingerprint: String },
}

/// Queues the incident unless its group is known; under the queue's lock.
fn take(intake: &Intake, repo: &RegisteredRepo, incident: &Incident) -> Result<Taken, QueueError> {
    let fingerprint = dedupe::fingerprint(incident);
    let located = incident::locate_frames(&incident.frames, &repo.path);
    let mut queue = intake.queue();
    let entries = queue.with_fingerprint(&repo.name, &fingerprint)?;
    let now = crate::engine::recorder::now_ms();
    if let Some(known) = dedupe::known(&entries, now, intake.settings.recent_fix_days) {
        return Ok(Taken::Known { known, fingerprint });
    }
    let entry = queue.submit(NewRequirement {
        repo: repo.name.clone(),
        requirement: incident::requirement(incident, &located),
        priority: 0,
        source: Source::Incident,
        fingerprint: Some(fingerprint),
    })?;
    Ok(Taken::Queued(entry))
}

/// Runs queue and file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    intake: &Arc<Intake>,
    work: impl FnOnce(&Intake) -> T + Send + 'static,
) -> Result<T, Answer> {
    let intake = Arc::clone(intake);
    tokio::task::spawn_blocking(move || work(&intake))
        .await
        .map_err(|e| internal(format!("the intake's worker stopped: {e}")))
}

fn internal(e: impl ToString) -> Answer {
    Answer::refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Wakes every worker waiting now, and leaves a permit for one that is
/// between two looks at the queue.
fn ring(shared: &Shared) {
    shared.queue_changed.notify_waiters();
    shared.queue_changed.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_only_repository_or_a_plausible_name() {
        assert_eq!(route("/intake"), Some(Target::Only));
        assert_eq!(route("/intake/"), Some(Target::Only));
        assert_eq!(
            route("/intake/shop-2"),
            Some(Target::Named("shop-2".into()))
        );
        assert_eq!(route("/intake/a/b"), None);
        assert_eq!(route("/intake/..%2Fetc"), None);
        assert_eq!(route("/intake/.hidden"), None);
        assert_eq!(route("/intakes"), None);
        assert_eq!(route("/"), None);
    }

    #[test]
    fn the_secret_or_a_sentry_signature_made_with_it_is_accepted() {
        let body = br#"{"title":"x"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let with = |name: &'static str, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(authorised(None, &HeaderMap::new(), body));
        assert!(!authorised(Some("s3cret"), &HeaderMap::new(), body));
        assert!(authorised(
            Some("s3cret"),
            &with(SECRET_HEADER, "s3cret"),
            body
        ));
        assert!(!authorised(
            Some("s3cret"),
            &with(SECRET_HEADER, "s3cre"),
            body
        ));
        assert!(authorised(
            Some("s3cret"),
            &with(SIGNATURE_HEADER, &signature),
            body
        ));
        assert!(!authorised(
            Some("s3cret"),
            &with(SIGNATURE_HEADER, &signature),
            b"{}"
        ));
        assert!(!authorised(
            Some("other"),
            &with(SIGNATURE_HEADER, &signature),
            body
        ));
        assert!(!authorised(
            Some("s3cret"),
            &with(SIGNATURE_HEADER, "zz"),
            body
        ));
    }
}
