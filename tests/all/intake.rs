//! The incident intake over real HTTP: Sentry webhooks and plain reports
//! posted to the server on 127.0.0.1:0 become (or do not become) entries of
//! a real queue store in a temp daemon home. Every test asserts on the
//! queue, not only on the status code.

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use memofab::config::DaemonConfig;
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
/// ones the recorded Sentry payload points at), and the intake listening:
/// with the secret, or open (as `--intake-insecure`) on 127.0.0.1.
async fn start(secret: Option<&str>) -> Intake {
    start_with(secret, |_| {}).await
}

/// [`start`], with the settings changed by `adjust` first.
async fn start_with(secret: Option<&str>, adjust: impl FnOnce(&mut IntakeSettings)) -> Intake {
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
    let config = DaemonConfig {
        intake_secret: secret.map(str::to_owned),
        ..DaemonConfig::default()
    };
    let mut settings = IntakeSettings::from_config(&config, true).unwrap();
    adjust(&mut settings);
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

/// Unix seconds now, as Sentry writes `Sentry-Hook-Timestamp`.
fn now_s() -> u64 {
    memofab::effects::clock::now_ms() / 1000
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

/// A report whose requirement the repository's planner could not hold is
/// refused as `memofab submit` refuses it, and nothing is queued: the
/// intake goes through the same way onto the queue.
#[tokio::test]
async fn a_report_too_long_for_the_planners_window_is_refused_and_queues_nothing() {
    let intake = start(None).await;
    let factory = intake.home.path().join("shop/.memofab");
    std::fs::create_dir_all(&factory).unwrap();
    let planner_window = |tokens: u32| {
        let config = format!(
            "[roles.default]\nprovider = \"local\"\nmodel = \"some-model\"\n\
             [providers.local]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             context_tokens = {tokens}\n"
        );
        std::fs::write(factory.join("config.toml"), config).unwrap();
    };
    // A window that holds the planner's own prompt and little more.
    planner_window(4100);
    let (status, _) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(intake.entries().is_empty());

    // The same report fits a window of the usual size.
    planner_window(32000);
    let (status, _) = answer(intake.sentry_alert("/intake/shop")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(intake.entries().len(), 1);
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
            .header("Sentry-Hook-Signature", forged)
            .header("Sentry-Hook-Timestamp", now_s().to_string()),
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
            .header("Sentry-Hook-Signature", sign("s3cret", &body))
            .header("Sentry-Hook-Timestamp", now_s().to_string()),
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
    let month_ago = memofab::effects::clock::now_ms() - 30 * DAY_MS;
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
            .header("Sentry-Hook-Timestamp", now_s().to_string())
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

#[tokio::test]
async fn a_signed_sentry_request_sent_a_month_ago_is_refused_and_queues_nothing() {
    let intake = start(Some("s3cret")).await;
    let body = fixture("issue_alert.json");
    let signed = |stamp: String| {
        intake
            .sentry_alert("/intake/shop")
            .header("Sentry-Hook-Signature", sign("s3cret", &body))
            .header("Sentry-Hook-Timestamp", stamp)
    };
    let month_ago = now_s() - 30 * DAY_MS / 1000;
    let (status, reply) = answer(signed(month_ago.to_string())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, _) = answer(signed((now_s() + 3600).to_string())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "from the future");
    let (status, _) = answer(
        intake
            .sentry_alert("/intake/shop")
            .header("Sentry-Hook-Signature", sign("s3cret", &body)),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed without a time");
    assert!(intake.entries().is_empty(), "nothing queued");

    let (status, reply) = answer(signed(now_s().to_string())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(intake.entries().len(), 1);
}

/// `POST` headers sent in part, the rest never: a slow client.
async fn slow_client(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /intake/shop HTTP/1.1\r\nHost: x\r\nContent-Type: applic")
        .await
        .unwrap();
    stream
}

/// The server closed the connection within `within` (end of stream, a
/// reset, or an answer such as a 408 or 503 followed by the end).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn host(intake: &Intake) -> String {
    intake.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn thirty_two_slow_connections_do_not_hold_up_a_report() {
    let intake = start(None).await;
    let addr = host(&intake);
    let mut slow = Vec::new();
    for _ in 0..32 {
        slow.push(slow_client(&addr).await);
    }
    let began = std::time::Instant::now();
    let (status, reply) = answer(intake.post("/intake/shop", &br#"{"title": "boom"}"#[..])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        began.elapsed()
    );
    assert_eq!(intake.entries().len(), 1);
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_oldest_slow_one_first() {
    let intake = start_with(None, |s| s.max_connections = 4).await;
    let addr = host(&intake);
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(slow_client(&addr).await);
    }
    let mut second = Vec::new();
    for _ in 0..4 {
        second.push(slow_client(&addr).await);
    }
    for (i, stream) in first.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(2)).await,
            "connection {i} past the cap is still open"
        );
    }
    for (i, stream) in second.iter_mut().enumerate() {
        assert!(
            !closed_within(stream, Duration::from_millis(200)).await,
            "the newest connection {i} was closed"
        );
    }
}

#[tokio::test]
async fn a_client_trickling_its_headers_or_body_is_dropped_at_the_deadline() {
    use tokio::io::AsyncWriteExt;
    let intake = start_with(None, |s| s.request_deadline = Duration::from_secs(1)).await;
    let addr = host(&intake);

    // Headers, a byte every 100 ms, never finished.
    let mut headers = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let began = std::time::Instant::now();
    let trickle = async {
        for byte in
            b"POST /intake/shop HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if headers.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::future::pending::<()>().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    assert!(
        closed_within(&mut headers, Duration::from_millis(100)).await,
        "still open after {:?}",
        began.elapsed()
    );
    assert!(began.elapsed() < Duration::from_millis(2500));

    // Headers whole, the body trickled: a 408, then the end.
    let mut body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    body.write_all(
        b"POST /intake/shop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"title\"",
    )
    .await
    .unwrap();
    let began = std::time::Instant::now();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_end(&mut body, &mut reply),
    )
    .await;
    assert!(read.is_ok(), "still open after 3 s");
    assert!(began.elapsed() < Duration::from_millis(2000));
    assert!(
        reply.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(intake.entries().is_empty());
}

/// `memofab serve --intake ADDR` and its other arguments, in a temp home
/// with the user config `user_config` (none if empty).
struct ServeSetup {
    dir: tempfile::TempDir,
    home: PathBuf,
}

impl ServeSetup {
    fn new(user_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let xdg = dir.path().join("xdg");
        std::fs::create_dir_all(xdg.join("memofab")).unwrap();
        if !user_config.is_empty() {
            std::fs::write(xdg.join("memofab/config.toml"), user_config).unwrap();
        }
        let repo = dir.path().join("shop");
        std::fs::create_dir_all(&repo).unwrap();
        Queue::open(&home.join("queue.sqlite"))
            .unwrap()
            .add_repo(&repo, None)
            .unwrap();
        Self { dir, home }
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        use std::process::{Command, Stdio};
        Command::new(env!("CARGO_BIN_EXE_memofab"))
            .arg("serve")
            .args(args)
            .current_dir(self.dir.path())
            .env("MEMOFAB_HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `serve` to exit, checking all along that nothing listens at
/// 127.0.0.1:`port`; its exit status and stderr.
fn exits_without_listening(mut child: std::process::Child, port: u16) -> (i32, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the intake listened at {port}"
        );
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "serve kept running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn serve_refuses_an_intake_without_a_secret_and_never_listens() {
    let setup = ServeSetup::new("");
    let port = free_port();
    let child = setup.spawn(&["--intake", &format!("127.0.0.1:{port}")]);
    let (code, stderr) = exits_without_listening(child, port);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("intake_secret"), "says how: {stderr}");
    assert!(
        !setup.home.join("daemon.sock").exists(),
        "nothing else was started either"
    );
}

#[test]
fn intake_insecure_is_refused_on_an_address_other_machines_reach() {
    let setup = ServeSetup::new("");
    let port = free_port();
    let child = setup.spawn(&["--intake", &format!("0.0.0.0:{port}"), "--intake-insecure"]);
    let (code, stderr) = exits_without_listening(child, port);
    assert_ne!(code, 0, "{stderr}");
    assert!(!setup.home.join("daemon.sock").exists());
}

#[tokio::test]
async fn intake_insecure_on_loopback_takes_reports_without_a_secret() {
    use std::io::{BufRead, BufReader};
    let setup = ServeSetup::new("");
    let mut child = setup.spawn(&["--intake", "127.0.0.1:0", "--intake-insecure"]);
    let stdout = child.stdout.take().unwrap();
    let _serving = Serving(child);
    let url = BufReader::new(stdout)
        .lines()
        .take(5)
        .map(Result::unwrap)
        .find_map(|line| {
            line.split_once("incidents accepted at ")
                .map(|(_, url)| url.trim().to_owned())
        })
        .expect("serve prints where it takes incidents");
    let (status, reply) = answer(
        reqwest::Client::new()
            .post(format!("{url}/intake/shop"))
            .body(r#"{"title": "boom"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let entries = Queue::open(&setup.home.join("queue.sqlite"))
        .unwrap()
        .entries(&[])
        .unwrap();
    assert_eq!(entries.len(), 1);
}
