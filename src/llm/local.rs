//! Telling local models apart: a server on this machine or the local
//! network (Ollama, llama.cpp, LM Studio), and how big its model is. Small
//! local models need shorter replies and prompts than hosted ones.

/// Below this many parameters a model gets the small profile.
pub const SMALL_MODEL_PARAMS: u64 = 7_000_000_000;

/// Whether `base_url` is a server on this machine or a private network:
/// loopback, RFC 1918 and link-local addresses, `localhost`, `*.local`.
pub fn is_local_base_url(base_url: &str) -> bool {
    let rest = base_url.split("://").nth(1).unwrap_or(base_url);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    }
    .to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00 // unique local
        }
        Err(_) => false,
    }
}

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
    fn local_servers_are_told_from_hosted_ones() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://localhost:11434/v1",
            "http://[::1]:8080/v1",
            "http://192.168.1.20:1234/v1",
            "http://10.0.0.5/v1",
            "http://gpu-box.local:8000/v1",
        ] {
            assert!(is_local_base_url(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "https://openrouter.ai/api/v1",
            "http://8.8.8.8/v1",
            "https://localhost.example.com/v1",
        ] {
            assert!(!is_local_base_url(url), "{url}");
        }
    }

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
