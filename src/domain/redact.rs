//! Keeps API keys out of everything memofab writes: errors, events, logs.
//! Pure replacement of known secret values; which values are secret is
//! gathered by `engine::secrets`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Secrets shorter than this are not redacted: they would match ordinary text.
pub const MIN_SECRET: usize = 8;

pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        out = out.replace(secret.as_str(), "[REDACTED]");
    }
    out
}

/// `value` with every secret replaced in every string it holds. Cheap when
/// none occurs (one serialisation to look).
pub fn redact_value<T: Serialize + DeserializeOwned>(value: T, secrets: &[String]) -> T {
    let secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= MIN_SECRET).collect();
    if secrets.is_empty() {
        return value;
    }
    let Ok(text) = serde_json::to_string(&value) else {
        return value;
    };
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return value;
    }
    let Ok(mut tree) = serde_json::to_value(&value) else {
        return value;
    };
    redact_tree(&mut tree, &secrets);
    serde_json::from_value(tree).unwrap_or(value)
}

fn redact_tree(value: &mut serde_json::Value, secrets: &[&String]) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "[REDACTED]");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_tree(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_tree(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_strings_are_redacted() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Out {
            text: String,
            lines: Vec<String>,
            n: u32,
        }
        let secrets = vec!["sk-ant-0123456789".to_owned()];
        let out = redact_value(
            Out {
                text: "key=sk-ant-0123456789!".into(),
                lines: vec!["a".into(), "sk-ant-0123456789".into()],
                n: 3,
            },
            &secrets,
        );
        assert_eq!(out.text, "key=[REDACTED]!");
        assert_eq!(out.lines, ["a", "[REDACTED]"]);
        assert_eq!(out.n, 3);
    }

    #[test]
    fn keys_are_replaced_short_strings_are_not() {
        let secrets = vec!["sk-live-1234567890".to_owned(), "abc".to_owned()];
        assert_eq!(
            redact("bad key sk-live-1234567890 for abc", &secrets),
            "bad key [REDACTED] for abc"
        );
    }
}
