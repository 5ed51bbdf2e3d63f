//! Keeps API keys out of everything memofab writes: errors, events, logs.

/// Secrets shorter than this are not redacted: they would match ordinary text.
const MIN_SECRET: usize = 8;

pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        out = out.replace(secret.as_str(), "[REDACTED]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_replaced_short_strings_are_not() {
        let secrets = vec!["sk-live-1234567890".to_owned(), "abc".to_owned()];
        assert_eq!(
            redact("bad key sk-live-1234567890 for abc", &secrets),
            "bad key [REDACTED] for abc"
        );
    }
}
