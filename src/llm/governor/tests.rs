use super::*;

fn rate_limit(retry_after: Option<Duration>) -> Limit {
    Limit {
        kind: LimitKind::RateLimit,
        retry_after,
        message: "Rate limit reached".into(),
    }
}

#[test]
fn aimd_halves_on_a_limit_and_never_below_one() {
    let mut aimd = Aimd::new(8);
    assert_eq!(aimd.limit(), 8);
    assert!(aimd.on_limit(aimd.epoch()));
    assert_eq!(aimd.limit(), 4);
    assert!(aimd.on_limit(aimd.epoch()));
    assert!(aimd.on_limit(aimd.epoch()));
    assert_eq!(aimd.limit(), 1);
    assert!(!aimd.on_limit(aimd.epoch()), "already at the floor");
    assert_eq!(aimd.limit(), 1);
}

#[test]
fn aimd_counts_one_decrease_per_congestion_signal() {
    let mut aimd = Aimd::new(8);
    let admitted = aimd.epoch();
    assert!(aimd.on_limit(admitted));
    // A second request admitted before the cut reports the same limit.
    assert!(!aimd.on_limit(admitted));
    assert_eq!(aimd.limit(), 4);
}

#[test]
fn aimd_grows_back_additively_up_to_the_ceiling() {
    let mut aimd = Aimd::new(4);
    aimd.on_limit(aimd.epoch());
    aimd.on_limit(aimd.epoch());
    assert_eq!(aimd.limit(), 1);
    // One success fills a window of 1: grow to 2.
    assert!(aimd.on_success());
    assert_eq!(aimd.limit(), 2);
    // A window of 2 needs two successes.
    assert!(!aimd.on_success());
    assert!(aimd.on_success());
    assert_eq!(aimd.limit(), 3);
    for _ in 0..3 {
        aimd.on_success();
    }
    assert_eq!(aimd.limit(), 4);
    for _ in 0..20 {
        assert!(!aimd.on_success(), "never above the ceiling");
    }
    assert_eq!(aimd.limit(), 4);
}

#[test]
fn a_zero_ceiling_still_admits_one() {
    let aimd = Aimd::new(0);
    assert_eq!((aimd.limit(), aimd.ceiling()), (1, 1));
}

#[test]
fn usage_limits_are_told_from_rate_limits_by_their_text() {
    let of = |message: &str| {
        Limit::of(&LlmError::RateLimited {
            message: message.into(),
            retry_after: None,
        })
        .map(|l| l.kind)
    };
    assert_eq!(
        of("You exceeded your current quota, please check your plan and billing details."),
        Some(LimitKind::UsageLimit)
    );
    assert_eq!(
        of("Your credit balance is too low to access the Anthropic API."),
        Some(LimitKind::UsageLimit)
    );
    assert_eq!(
        of("Rate limit reached for gpt-4o on tokens per min"),
        Some(LimitKind::RateLimit)
    );
    assert_eq!(Limit::of(&LlmError::Timeout), None);
}

#[test]
fn the_default_wait_grows_and_is_capped() {
    let rate = rate_limit(None);
    assert_eq!(rate.default_wait(0), Duration::from_secs(2));
    assert_eq!(rate.default_wait(2), Duration::from_secs(8));
    assert_eq!(rate.default_wait(30), Duration::from_secs(120));
    let usage = Limit {
        kind: LimitKind::UsageLimit,
        ..rate
    };
    assert_eq!(usage.default_wait(0), Duration::from_secs(60));
    assert_eq!(usage.default_wait(30), Duration::from_secs(1800));
}

fn governor(ceiling: u32) -> Arc<Governor> {
    Governor::new(
        "openai",
        GovernorConfig {
            max_concurrency: ceiling,
            ..GovernorConfig::default()
        },
    )
}

async fn go(governor: &Arc<Governor>) -> Permit {
    match governor.admit().await {
        Admission::Go(permit) => permit,
        Admission::Parked(park) => panic!("parked: {}", park.reason),
    }
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_for_a_free_slot() {
    let g = governor(1);
    let first = go(&g).await;
    let waiter = tokio::spawn({
        let g = g.clone();
        async move { g.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "the only slot is taken");
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.in_flight(), 1);
    drop(second);
    assert_eq!(g.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_limit_parks_everyone_and_halves_the_limit() {
    let g = governor(4);
    let permit = go(&g).await;
    let limited = permit.limited(&rate_limit(Some(Duration::from_secs(3))));
    assert_eq!(limited.new_limit, Some(2));
    assert!(
        limited.park.reason.starts_with("rate limited by openai"),
        "{}",
        limited.park.reason
    );
    assert_eq!(g.in_flight(), 0, "the limited permit was returned");

    // Another agent asking now is told to wait, and for how long.
    match g.admit().await {
        Admission::Parked(park) => assert_eq!(park, limited.park),
        Admission::Go(_) => panic!("admitted while parked"),
    }
    let started = Instant::now();
    let permit = g.acquire().await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "acquire blocked"
    );
    assert!(g.parked().is_none());
    assert_eq!(
        permit.succeeded(),
        None,
        "a window of 2 needs two successes"
    );
    assert_eq!(go(&g).await.succeeded(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn a_shorter_park_does_not_cut_a_longer_one() {
    let g = governor(4);
    let a = go(&g).await;
    let b = go(&g).await;
    let long = a.limited(&rate_limit(Some(Duration::from_secs(30))));
    let short = b.limited(&rate_limit(Some(Duration::from_secs(1))));
    assert_eq!(short.park, long.park);
    assert_eq!(short.new_limit, None, "one decrease for one signal");
    assert_eq!(g.limit(), 2);
}

#[tokio::test(start_paused = true)]
async fn without_retry_after_the_park_grows_until_a_success() {
    let g = governor(4);
    let first = go(&g).await.limited(&rate_limit(None));
    tokio::time::sleep_until(first.park.until).await;
    let second = go(&g).await.limited(&rate_limit(None));
    let waited = |l: &Limited, from: Instant| l.park.until - from;
    assert_eq!(waited(&second, Instant::now()), Duration::from_secs(4));
    tokio::time::sleep_until(second.park.until).await;
    go(&g).await.succeeded();
    let third = go(&g).await.limited(&rate_limit(None));
    assert_eq!(waited(&third, Instant::now()), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_zero_still_parks_briefly() {
    let g = governor(4);
    let limited = go(&g).await.limited(&rate_limit(Some(Duration::ZERO)));
    assert_eq!(limited.park.until - Instant::now(), MIN_PARK);
}

#[tokio::test(start_paused = true)]
async fn a_human_can_lift_a_park_before_it_ends() {
    let g = governor(4);
    let permit = go(&g).await;
    let limited = permit.limited(&rate_limit(Some(Duration::from_secs(3600))));
    let sitter = tokio::spawn({
        let g = g.clone();
        async move { g.sit_until(limited.park.until).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!sitter.is_finished(), "still parked");
    assert!(g.lift_park());
    tokio::time::timeout(Duration::from_secs(1), sitter)
        .await
        .expect("woken at once")
        .unwrap();
    assert!(g.parked().is_none());
    assert!(matches!(g.admit().await, Admission::Go(_)));
    assert!(!g.lift_park(), "nothing left to lift");
}

#[tokio::test(start_paused = true)]
async fn a_server_error_mid_stream_backs_off_briefly_for_everyone() {
    let g = governor(4);
    let error = LlmError::StreamServer {
        status: 529,
        message: "Overloaded".into(),
    };
    let limit = Limit::of(&error).expect("a mid-stream server error backs off");
    assert_eq!(limit.kind, LimitKind::ServerError);
    let limited = go(&g).await.limited(&limit);
    assert_eq!(limited.park.until - Instant::now(), Duration::from_secs(1));
    assert!(
        limited.park.reason.contains("failed mid-reply"),
        "{}",
        limited.park.reason
    );
    assert_eq!(
        limited.new_limit,
        Some(2),
        "overload halves the concurrency"
    );
    assert!(matches!(g.admit().await, Admission::Parked(_)));
    assert_eq!(
        Limit::of(&LlmError::Server {
            status: 503,
            message: "down".into(),
            retry_after: None
        }),
        None,
        "a 5xx before the stream was already retried by the HTTP layer"
    );
}
