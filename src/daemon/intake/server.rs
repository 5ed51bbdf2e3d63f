//! The intake's HTTP/1.1 server (hyper): routes, limits, the access
//! check ([`super::auth`]), and the answers. Every answer is a JSON object:
//! 202 `{"queued": "q3", ..}` for a new group, 200 `{"ignored": why, ..}`
//! for a known one or a webhook that reports no error, 4xx `{"error": why}`
//! with nothing queued.
//!
//! Limits: a body over [`MAX_BODY`] is refused while it is read (never
//! buffered whole); each connection carries one request, whose headers and
//! body must arrive within the settings' deadline (408, or closed, after);
//! at most `max_connections` are open at once ([`super::connections`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use super::connections::{Admission, Connections, Slot};
use super::dedupe::{self, Known};
use super::incident::{self, Incident};
use super::{IntakeSettings, Report, auth};
use crate::daemon::error::{DaemonError, DaemonResult};
use crate::daemon::shared::Shared;
use crate::domain::queue::{QueuedRequirement, RegisteredRepo, Source};
use crate::effects::queue::{NewRequirement, Queue};
use crate::engine::EngineError;

/// The largest body accepted. Sentry's event payloads are tens of KiB.
pub const MAX_BODY: usize = 1024 * 1024;
/// Time to answer once the request has arrived (the queue's lock, SQLite),
/// past the request's deadline, before the connection is closed regardless.
const ANSWER_GRACE: Duration = Duration::from_secs(10);
/// Written, without waiting, to a connection refused for want of room.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

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
    tokio::spawn(accept(listener, intake));
    tracing::info!(%bound, "incident intake listening");
    Ok(bound)
}

/// Accepts without waiting for room: a connection is served, makes room
/// by dropping the oldest slow one, or is refused at once.
async fn accept(listener: TcpListener, intake: Arc<Intake>) {
    let connections = Connections::new(intake.settings.max_connections);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, usually: wait rather than spin.
                tracing::warn!("incident intake: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let slot = match connections.admit() {
            Admission::Admitted(slot) => Arc::new(slot),
            Admission::Refused => {
                tracing::debug!("incident intake: every connection is being answered; one refused");
                // Never waits on the client: what does not fit is dropped.
                let _ = stream.try_write(BUSY);
                continue;
            }
        };
        let task = tokio::spawn(serve(stream, Arc::clone(&intake), Arc::clone(&slot)));
        slot.set_abort(task.abort_handle());
    }
}

/// One connection, one request, within the deadline.
async fn serve(stream: TcpStream, intake: Arc<Intake>, slot: Arc<Slot>) {
    let started = Instant::now();
    let deadline = intake.settings.request_deadline;
    let service = {
        let slot = Arc::clone(&slot);
        service_fn(move |request| {
            let intake = Arc::clone(&intake);
            let slot = Arc::clone(&slot);
            async move {
                let answer = match respond(&intake, &slot, started, request).await {
                    Ok(answer) | Err(answer) => answer,
                };
                Ok::<_, Infallible>(answer.into_response())
            }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(deadline)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(deadline + ANSWER_GRACE, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("incident intake: connection ended: {e}"),
        Err(_) => tracing::debug!("incident intake: connection past its deadline closed"),
    }
    drop(slot);
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

async fn respond(
    intake: &Arc<Intake>,
    slot: &Slot,
    started: Instant,
    request: Request<Incoming>,
) -> Result<Answer, Answer> {
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
    let left = intake
        .settings
        .request_deadline
        .saturating_sub(started.elapsed());
    let body = read_body(&parts.headers, body, left).await?;
    slot.answering();
    let now_s = crate::effects::clock::now_ms() / 1000;
    auth::check(&intake.settings.access, &parts.headers, &body, now_s)
        .map_err(|refusal| Answer::refuse(StatusCode::UNAUTHORIZED, refusal.reason()))?;
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
            // A report no run could take (over `max_requirement_bytes`, or
            // too long for the planner's window) is refused, as `submit` is.
            let status = match &e {
                DaemonError::Engine(
                    EngineError::RequirementTooLarge { .. }
                    | EngineError::RequirementTooLong { .. },
                ) => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Answer::refuse(status, e.to_string())
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

/// The body, refused (413) as soon as it passes [`MAX_BODY`], or (408) when
/// it has not arrived within `left`.
async fn read_body(headers: &HeaderMap, body: Incoming, left: Duration) -> Result<Bytes, Answer> {
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
    let read = tokio::time::timeout(left, Limited::new(body, MAX_BODY).collect()).await;
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
/// Through the one way onto the queue, so it is checked as its run would be.
fn take(intake: &Intake, repo: &RegisteredRepo, incident: &Incident) -> DaemonResult<Taken> {
    let fingerprint = dedupe::fingerprint(incident);
    let located = incident::locate_frames(&incident.frames, &repo.path);
    let mut queue = intake.queue();
    let entries = queue.with_fingerprint(&repo.name, &fingerprint)?;
    let now = crate::effects::clock::now_ms();
    if let Some(known) = dedupe::known(&entries, now, intake.settings.recent_fix_days) {
        return Ok(Taken::Known { known, fingerprint });
    }
    let entry = crate::daemon::submit::submit(
        &mut queue,
        NewRequirement {
            repo: repo.name.clone(),
            requirement: incident::requirement(incident, &located),
            priority: 0,
            source: Source::Incident,
            fingerprint: Some(fingerprint),
        },
    )?;
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
}
