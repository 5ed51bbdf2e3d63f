//! Telling local models apart: a server on this machine or the local
//! network (Ollama, llama.cpp, LM Studio), and how big its model is. Small
//! local models need shorter replies and prompts than hosted ones.

pub use crate::config::model_options::is_local_base_url;

/// Below this many parameters a model gets the small profile.
pub const SMALL_MODEL_PARAMS: u64 = 7_000_000_000;

/// The parameter count a model's name states, such as `qwen2.5-coder-1.5b`
/// or `llama3.2:3b` (a number followed by `b` or `m`, standing alone).
pub fn params_from_name(name: &str) -> Option<u64> {
    let name = name.to_ascii_lowercase();
    // A path names the model by its file.
    let name = name.rsplit(['/', '\\']).next().unwrap_or(&name);
    let bytes = name.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric());
        if !starts {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
            end += 1;
        }
        let unit = bytes.get(end).copied();
        let alone = bytes
            .get(end + 1)
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let scale = match unit {
            Some(b'b') if alone => 1e9,
            Some(b'm') if alone => 1e6,
            _ => {
                i = end.max(i + 1);
                continue;
            }
        };
        if let Ok(n) = name[i..end].parse::<f64>() {
            // `8x7b` and friends: the largest figure named counts.
            let params = (n * scale) as u64;
            found = Some(found.map_or(params, |f: u64| f.max(params)));
        }
        i = end + 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_from_model_names() {
        let b = 1_000_000_000;
        assert_eq!(
            params_from_name("qwen2.5-coder-1.5b-instruct"),
            Some(3 * b / 2)
        );
        assert_eq!(
            params_from_name("/models/qwen2.5-coder-0.5b-instruct-q4.gguf"),
            Some(b / 2)
        );
        assert_eq!(params_from_name("llama3.2:3b"), Some(3 * b));
        assert_eq!(params_from_name("qwen2.5-coder:32b"), Some(32 * b));
        assert_eq!(params_from_name("SmolLM2-360M-Instruct"), Some(360_000_000));
        assert_eq!(params_from_name("gpt-4.1"), None);
        assert_eq!(params_from_name("claude-sonnet-4-5"), None);
        assert_eq!(params_from_name("qwen2.5-coder"), None);
    }
}
