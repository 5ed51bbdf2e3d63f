//! Store URLs (`postgres://user:password@host:port/database`, or the
//! `key=value` form): recognised, and shown without their password. A URL
//! may reach an error message, a log line or `memofab doctor`'s report; its
//! password never does.

/// Whether `url` names a PostgreSQL store rather than a SQLite file.
pub fn is_postgres(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://")
        || lower.starts_with("postgresql://")
        || lower.contains("host=")
        || lower.contains("dbname=")
}

/// `url` with its password (and anything that could be one) replaced by `***`.
pub fn redacted(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // The userinfo ends at the last `@` before the query: a password
        // may itself hold `@`, `/` or `:` when not percent-encoded.
        let query_at = rest.find('?').unwrap_or(rest.len());
        let (userinfo, host_and_path) = match rest[..query_at].rfind('@') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => ("", rest),
        };
        let user = match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => userinfo.to_owned(),
        };
        let tail = redact_query(host_and_path);
        return format!("{scheme}://{user}{tail}");
    }
    redact_pairs(url)
}

/// The `password=` parameter of a URL's query, hidden.
fn redact_query(rest: &str) -> String {
    match rest.split_once('?') {
        Some((head, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{head}?{}", params.join("&"))
        }
        None => rest.to_owned(),
    }
}

/// The `password=` of a `key=value key=value` connection string, hidden.
/// A quoted value may hold spaces; everything up to its closing quote goes.
fn redact_pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_key(rest, "password") {
        out.push_str(&rest[..at]);
        out.push_str("password=***");
        let value = rest[at + "password".len()..].trim_start();
        let value = value.strip_prefix('=').unwrap_or(value).trim_start();
        rest = if let Some(quoted) = value.strip_prefix('\'') {
            skip_quoted(quoted)
        } else {
            value
                .find(char::is_whitespace)
                .map_or("", |end| &value[end..])
        };
    }
    out.push_str(rest);
    out
}

/// Where `key` starts a `key =` pair in `text` (case-insensitive).
fn find_key(text: &str, key: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(key) {
        let at = from + found;
        let starts_word = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[at + key.len()..].trim_start();
        if starts_word && after.starts_with('=') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// What follows a quoted value whose opening quote is already consumed.
fn skip_quoted(text: &str) -> &str {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '\'' if !escaped => return &text[i + 1..],
            _ => escaped = false,
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_form_of_url_keeps_its_password() {
        let cases = [
            "postgres://memofab:s3cret@db.example:5432/factory",
            "postgresql://memofab:s3cret@10.0.0.1/factory?sslmode=disable",
            "postgres://memofab:s3c@ret/x@db/factory",
            "postgres://memofab@db/factory?password=s3cret&application_name=m",
            "host=db user=memofab password=s3cret dbname=factory",
            "host=db password = 's3 cret\\' x' dbname=factory",
            "PASSWORD=s3cret host=db",
        ];
        for url in cases {
            assert!(is_postgres(url), "{url}");
            let shown = redacted(url);
            assert!(!shown.contains("s3c"), "{url} -> {shown}");
            assert!(!shown.contains("ret"), "{url} -> {shown}");
            assert!(
                shown.contains("db") || shown.contains("10.0.0.1"),
                "{shown}"
            );
        }
        assert_eq!(
            redacted("postgres://memofab@127.0.0.1:5432/f"),
            "postgres://memofab@127.0.0.1:5432/f"
        );
        assert!(!is_postgres("/home/me/.memofab/memofab.db"));
    }
}
