//! The incident intake over real HTTP: Sentry webhooks and plain reports
//! posted to the server on 127.0.0.1:0 become (or do not become) entries of
//! a real queue store in a temp daemon home. Every test asserts on the
//! queue, not only on the status code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use memofab::daemon::intake::{IntakeSettings, spawn};
use memofab::daemon::{DaemonPaths, Shared};
use memofab::domain::RunId;
use memofab::domain::queue::{ItemState, QueuedRequirement, Source};
use memofab::effects::queue::Queue;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

struct Intake {
    home: tempfile::TempDir,
    paths: DaemonPaths,
    shared: Shared,
    base: String,
    client: reqwest::Client,
}

/// A daemon home with the repository `shop` registered (its files are the
/// ones the recorded Sentry payload points at), and the intake listening.
async fn start(secret: Option<&str>) -> Intake {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("shop");
    for file in ["src/cart/total.js", "src/routes/cart.js", "package.json"] {
        let path = repo.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "// shop\n").unwrap();
    }
    let paths = DaemonPaths::in_dir(&home.path().join("daemon"));
    paths.create_dirs().unwrap();
    Queue::open(&paths.queue)
        .unwrap()
        .add_repo(&repo, None)
        .unwrap();
    let shared = Shared::new(paths.clone());
    let settings = IntakeSettings {
        secret: secret.map(str::to_owned),
        recent_fix_days: 7,
    };
    let addr = spawn("127.0.0.1:0".parse().unwrap(), shared.clone(), settings)
        .await
        .unwrap();
    assert_ne!(addr.port(), 0, "the bound port is returned");
    Intake {
        home,
        paths,
        shared,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
    }
}

impl Intake {
    fn queue(&self) -> Queue {
        Queue::open(&self.paths.queue).unwrap()
    }

    fn entries(&self) -> Vec<QueuedRequirement> {
        self.queue().entries(&[]).unwrap()
    }

    fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
    }

    fn sentry_alert(&self, path: &str) -> reqwest::RequestBuilder {
        self.post(path, fixture("issue_alert.json"))
            .header("Sentry-Hook-Resource", "event_alert")
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json::<Value>().await.unwrap();
    (status, body)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sentry")
            .join(name),
    )
    .unwrap()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_sentry_alert_posted_twice_queues_one_incident_with_its_stack_trace() {
    let intake = start(None).await;

    let (status, first) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["queued"], "q1");
    let (status, second) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["entry"], "q1");
    assert!(second.get("queued").is_none());

    let entries = intake.entries();
    assert_eq!(entries.len(), 1, "one requirement for the group");
    let entry = &entries[0];
    assert_eq!(entry.repo, "shop");
    assert_eq!(entry.state, ItemState::Queued);
    assert_eq!(entry.source, Source::Incident);
    assert_eq!(entry.fingerprint.as_deref(), Some("sentry:4509873425"));
    let text = &entry.requirement;
    assert!(
        entry
            .title()
            .contains("Cannot read properties of undefined")
    );
    assert!(text.contains("Environment: production"));
    // The trace, with the application's frames found in the repository.
    assert!(
        text.contains("* src/cart/total.js:27 in addToCart"),
        "{text}"
    );
    assert!(
        text.contains("* src/routes/cart.js:18 in router.post"),
        "{text}"
    );
    let files = text.split("Files it points at:").nth(1).unwrap();
    assert!(files.contains("- src/cart/total.js\n"));
    assert!(files.contains("- src/routes/cart.js\n"));
    assert!(!files.contains("node_modules"));
    insta::assert_snapshot!("sentry_alert_requirement", text);

    // The daemon's workers were told.
    tokio::time::timeout(
        Duration::from_secs(5),
        intake.shared.queue_changed.notified(),
    )
    .await
    .expect("the queue bell rang");
}

#[tokio::test]
async fn reports_of_one_new_group_arriving_together_queue_it_once() {
    let intake = start(None).await;
    let posts = (0..8).map(|_| answer(intake.sentry_alert("/intake/shop")));
    let answers = futures_util::future::join_all(posts).await;
    let queued = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::ACCEPTED)
        .count();
    assert_eq!(queued, 1, "{answers:?}");
    assert_eq!(intake.entries().len(), 1);
}

#[tokio::test]
async fn bad_payloads_get_a_400_and_queue_nothing() {
    let intake = start(None).await;
    for body in [
        &b"{\"title\": \"cut short"[..],
        b"not json at all",
        b"{\"message\": \"a plain report needs a title\"}",
        b"{\"action\": \"triggered\", \"data\": {\"event\": {\"culprit\": \"x\"}}}",
        b"[1, 2]",
    ] {
        let (status, reply) = answer(intake.post("/intake/shop", body)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert!(intake.entries().is_empty());
}

#[tokio::test]
async fn an_oversize_body_gets_a_413_and_queues_nothing() {
    let intake = start(None).await;
    // A valid report, padded past the bound.
    let padding = "x".repeat(2 * 1024 * 1024);
    let body = format!(r#"{{"title": "boom", "message": "{padding}"}}"#);
    let (status, _) = answer(intake.post("/intake/shop", body.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Streamed without a declared length: refused while reading.
    let chunks = body
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
        .collect::<Vec<_>>();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, _) = answer(intake.post("/intake/shop", stream)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(intake.entries().is_empty());
}

#[tokio::test]
async fn with_a_secret_only_the_secret_or_a_sentry_signature_gets_in() {
    let intake = start(Some("s3cret")).await;
    let body = fixture("issue_alert.json");

    let (status, _) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no secret");
    let (status, _) = answer(
        intake
            .sentry_alert("/intake/shop")
            .header("X-Memofab-Secret", "guess"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong secret");
    let forged = sign("guess", &body);
    let (status, _) = answer(
        intake
            .sentry_alert("/intake/shop")
            .header("Sentry-Hook-Signature", forged),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed with another key");
    // Unauthenticated callers learn nothing about repositories.
    let (status, _) = answer(intake.sentry_alert("/intake/elsewhere")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(intake.entries().is_empty());

    let (status, reply) = answer(
        intake
            .sentry_alert("/intake/shop")
            .header("Sentry-Hook-Signature", sign("s3cret", &body)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let plain = br#"{"title": "KeyError: 'sku'", "environment": "staging"}"#;
    let (status, reply) = answer(
        intake
            .post("/intake/shop", &plain[..])
            .header("X-Memofab-Secret", "s3cret"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(intake.entries().len(), 2);
}

#[tokio::test]
async fn unknown_repositories_paths_and_methods_are_refused() {
    let intake = start(None).await;
    let (status, _) = answer(intake.sentry_alert("/intake/elsewhere")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = answer(intake.sentry_alert("/somewhere")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = intake
        .client
        .get(format!("{}/intake/shop", intake.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    assert!(intake.entries().is_empty());

    // One repository: `/intake` is enough. Two: it must be named.
    let (status, reply) = answer(intake.sentry_alert("/intake")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let other = intake.home.path().join("admin");
    std::fs::create_dir(&other).unwrap();
    intake.queue().add_repo(&other, None).unwrap();
    let plain = br#"{"title": "boom"}"#;
    let (status, _) = answer(intake.post("/intake", &plain[..])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = answer(intake.post("/intake/admin", &plain[..])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let repos: Vec<String> = intake.entries().into_iter().map(|e| e.repo).collect();
    assert_eq!(repos, ["admin", "shop"]);
}

#[tokio::test]
async fn a_group_fixed_recently_is_ignored_and_one_fixed_long_ago_is_queued_again() {
    let intake = start(None).await;
    let (status, _) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let first = intake.entries().remove(0);
    let mut queue = intake.queue();
    queue.mark_running(first.id, &RunId::new("r1")).unwrap();
    let (status, reply) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::OK, "running: {reply}");
    queue.mark_finished(first.id, ItemState::Done).unwrap();

    let (status, reply) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::OK, "fixed today: {reply}");
    assert_eq!(intake.entries().len(), 1);

    // The fix is a month old now: the error is back, it is queued again.
    let month_ago = memofab::engine::recorder::now_ms() - 30 * DAY_MS;
    rusqlite::Connection::open(&intake.paths.queue)
        .unwrap()
        .execute(
            "UPDATE requirements SET finished_ms = ?1 WHERE id = ?2",
            rusqlite::params![month_ago as i64, first.id.0],
        )
        .unwrap();
    let (status, reply) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let open = intake.queue().entries(&[ItemState::Queued]).unwrap();
    assert_eq!(open.len(), 1);
    assert_ne!(open[0].id, first.id);
    assert_eq!(open[0].fingerprint, first.fingerprint);
}

#[tokio::test]
async fn webhooks_that_report_no_error_are_acknowledged_without_queuing() {
    let intake = start(None).await;
    let install = br#"{"action": "created", "data": {"installation": {"uuid": "a8e5"}}}"#;
    let (status, reply) = answer(
        intake
            .post("/intake/shop", &install[..])
            .header("Sentry-Hook-Resource", "installation"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(reply["ignored"].is_string());
    assert!(intake.entries().is_empty());
}

/// Kills the daemon when the test ends, however it ends.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn memofab_serve_takes_incidents_at_the_address_it_prints() {
    serve_and_post(SecretIn::UserConfig).await;
}

#[tokio::test]
async fn a_secret_in_serves_own_config_file_applies_too() {
    serve_and_post(SecretIn::ConfigFlag).await;
}

/// Where the daemon's intake secret is set.
enum SecretIn {
    /// The user's config file.
    UserConfig,
    /// `memofab --config FILE serve`.
    ConfigFlag,
}

/// The real `memofab serve --intake 127.0.0.1:0`: the secret applies, a
/// signed Sentry alert is queued once however often it comes.
async fn serve_and_post(secret_in: SecretIn) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("memofab")).unwrap();
    let secret = "[daemon]\nintake_secret = \"s3cret\"\n";
    let flag = dir.path().join("daemon.toml");
    match secret_in {
        SecretIn::UserConfig => std::fs::write(xdg.join("memofab/config.toml"), secret).unwrap(),
        SecretIn::ConfigFlag => std::fs::write(&flag, secret).unwrap(),
    }
    let repo = dir.path().join("shop");
    std::fs::create_dir_all(repo.join("src/cart")).unwrap();
    std::fs::write(repo.join("src/cart/total.js"), "// shop\n").unwrap();
    Queue::open(&home.join("queue.sqlite"))
        .unwrap()
        .add_repo(&repo, None)
        .unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_memofab"));
    if let SecretIn::ConfigFlag = secret_in {
        command.arg("--config").arg(&flag);
    }
    let mut child = command
        .args(["serve", "--intake", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("MEMOFAB_HOME", &home)
        .env("XDG_CONFIG_HOME", &xdg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let serving = Serving(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = lines
        .by_ref()
        .take(5)
        .map(Result::unwrap)
        .find_map(|line| {
            line.split_once("incidents accepted at ")
                .map(|(_, url)| url.trim().to_owned())
        })
        .expect("serve prints where it takes incidents");
    assert!(!url.ends_with(":0"), "the bound port, not 0: {url}");

    let client = reqwest::Client::new();
    let body = fixture("issue_alert.json");
    let post = || {
        client
            .post(format!("{url}/intake/shop"))
            .header("Sentry-Hook-Resource", "event_alert")
            .body(body.clone())
    };
    let (status, _) = answer(post()).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the user's secret applies"
    );
    let (status, reply) =
        answer(post().header("Sentry-Hook-Signature", sign("s3cret", &body))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    // The same alert again: whether the daemon's worker has taken the entry
    // (this directory is no repository, so its attempt fails) or not, the
    // group is known and nothing more is queued.
    let (status, reply) =
        answer(post().header("Sentry-Hook-Signature", sign("s3cret", &body))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    // The daemon's worker may already have taken it; it is in the queue,
    // as an incident, either way.
    let entries = Queue::open(&home.join("queue.sqlite"))
        .unwrap()
        .entries(&[])
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].source, Source::Incident);
    assert_eq!(entries[0].fingerprint.as_deref(), Some("sentry:4509873425"));
    assert!(entries[0].requirement.contains("src/cart/total.js:27"));
    drop(serving);
}
