//! Who may post a report: the shared secret in `X-Memofab-Secret`, or a
//! Sentry signature made with it and sent recently.
//!
//! Sentry's integration platform signs each webhook's raw body,
//! `Sentry-Hook-Signature: hex(HMAC-SHA256(client secret, body))`, and says
//! when it sent it, `Sentry-Hook-Timestamp: <Unix seconds>` (Sentry builds it
//! as `str(int(time()))`, getsentry/sentry `AppPlatformEvent`; documented at
//! docs.sentry.io, Integration Platform → Webhooks → Headers). A signed
//! request is taken only within [`WINDOW`] of that time, either way, so a
//! recorded request replayed later, headers and all, is refused.
//!
//! The signature covers the body only, not the timestamp: a replay that
//! also rewrites the header is not caught here. It can only repeat a report
//! already taken, whose group [`super::dedupe`] then ignores.

use std::time::Duration;

use hmac::{Hmac, Mac};
use hyper::header::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::Access;

pub(super) const SECRET_HEADER: &str = "x-memofab-secret";
pub(super) const SIGNATURE_HEADER: &str = "sentry-hook-signature";
pub(super) const TIMESTAMP_HEADER: &str = "sentry-hook-timestamp";

/// How far a signed request's timestamp may be from our clock.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

/// Why a request is not let in (401); the answer says what is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Neither the secret nor a valid signature.
    NoCredential,
    /// Validly signed, but without a readable `Sentry-Hook-Timestamp`.
    NoTimestamp,
    /// Validly signed, but sent outside the window.
    Stale,
}

impl Refusal {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::NoCredential => {
                "a valid X-Memofab-Secret header or Sentry-Hook-Signature is required"
            }
            Refusal::NoTimestamp => {
                "a signed request needs its Sentry-Hook-Timestamp (Unix seconds when it was sent)"
            }
            Refusal::Stale => {
                "the Sentry-Hook-Timestamp is more than 5 minutes from this machine's clock: \
                 a replayed request, or a clock to set right"
            }
        }
    }
}

/// Lets the request in, or says why not. `now_s` is Unix seconds.
pub(super) fn check(
    access: &Access,
    headers: &HeaderMap,
    body: &[u8],
    now_s: u64,
) -> Result<(), Refusal> {
    let secret = match access {
        Access::OpenOnLoopback => return Ok(()),
        Access::Secret(secret) => secret.as_bytes(),
    };
    let given = headers.get(SECRET_HEADER).map(HeaderValue::as_bytes);
    if given.is_some_and(|given| same_secret(given, secret)) {
        return Ok(());
    }
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if !signature.is_some_and(|signature| signed(secret, body, signature)) {
        return Err(Refusal::NoCredential);
    }
    let sent = headers
        .get(TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(unix_seconds)
        .ok_or(Refusal::NoTimestamp)?;
    if sent.abs_diff(now_s) > WINDOW.as_secs() {
        return Err(Refusal::Stale);
    }
    Ok(())
}

/// `1741079564`, or with a fraction (`1741079564.12`); nothing else.
fn unix_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    whole.parse().ok()
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

fn signed(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(expected) = from_hex(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_765_000_000;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_secret_or_a_fresh_sentry_signature_made_with_it_is_accepted() {
        let secret = Access::Secret("s3cret".into());
        let body = br#"{"title":"x"}"#;
        let signature = sign(b"s3cret", body);
        let now = NOW.to_string();
        let check = |pairs: &[(&'static str, &str)], body: &[u8]| {
            super::check(&secret, &headers(pairs), body, NOW)
        };
        assert_eq!(
            super::check(&Access::OpenOnLoopback, &HeaderMap::new(), body, NOW),
            Ok(())
        );
        assert_eq!(check(&[], body), Err(Refusal::NoCredential));
        assert_eq!(check(&[(SECRET_HEADER, "s3cret")], body), Ok(()));
        assert_eq!(
            check(&[(SECRET_HEADER, "s3cre")], body),
            Err(Refusal::NoCredential)
        );
        let signed = [
            (SIGNATURE_HEADER, signature.as_str()),
            (TIMESTAMP_HEADER, &now),
        ];
        assert_eq!(check(&signed, body), Ok(()));
        assert_eq!(check(&signed, b"{}"), Err(Refusal::NoCredential));
        assert_eq!(
            super::check(
                &Access::Secret("other".into()),
                &headers(&signed),
                body,
                NOW
            ),
            Err(Refusal::NoCredential)
        );
        assert_eq!(
            check(&[(SIGNATURE_HEADER, "zz"), (TIMESTAMP_HEADER, &now)], body),
            Err(Refusal::NoCredential)
        );
    }

    #[test]
    fn a_signed_request_is_taken_only_within_five_minutes_of_when_it_was_sent() {
        let secret = Access::Secret("s3cret".into());
        let body = b"{}";
        let signature = sign(b"s3cret", body);
        let at = |stamp: &str| {
            check(
                &secret,
                &headers(&[(SIGNATURE_HEADER, &signature), (TIMESTAMP_HEADER, stamp)]),
                body,
                NOW,
            )
        };
        assert_eq!(at(&(NOW - 300).to_string()), Ok(()));
        assert_eq!(at(&(NOW + 300).to_string()), Ok(()));
        assert_eq!(at(&format!("{}.75", NOW - 10)), Ok(()));
        assert_eq!(at(&(NOW - 301).to_string()), Err(Refusal::Stale));
        assert_eq!(at(&(NOW + 301).to_string()), Err(Refusal::Stale));
        let month_ago = NOW - 30 * 24 * 60 * 60;
        assert_eq!(at(&month_ago.to_string()), Err(Refusal::Stale));
        for unreadable in [
            "",
            "soon",
            "-1",
            "1e9",
            "NaN",
            "0x10",
            "12.3.4",
            "+1765000000",
        ] {
            assert_eq!(at(unreadable), Err(Refusal::NoTimestamp), "{unreadable:?}");
        }
        let unstamped = check(
            &secret,
            &headers(&[(SIGNATURE_HEADER, &signature)]),
            body,
            NOW,
        );
        assert_eq!(unstamped, Err(Refusal::NoTimestamp));
        // The shared secret needs no timestamp.
        assert_eq!(
            check(&secret, &headers(&[(SECRET_HEADER, "s3cret")]), body, NOW),
            Ok(())
        );
    }
}
