//! SigV4 request signing through the `aws-sigv4` crate: memofab does no
//! cryptography of its own. Only the headers given here are signed (plus
//! `host`, which the signer takes from the URL); the signer adds
//! `x-amz-date`, `x-amz-security-token` and `authorization`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::super::types::LlmError;
use super::credentials::AwsCredentials;

/// Where and when a signature is valid.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub region: &'a str,
    /// The signing name: `bedrock` for the runtime API too.
    pub service: &'a str,
    pub time: SystemTime,
}

/// The headers to add to a request so that it carries a valid signature.
pub fn signed_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    credentials: &AwsCredentials,
    scope: Scope<'_>,
) -> Result<Vec<(String, String)>, LlmError> {
    let failed = |what: String| LlmError::Config(format!("cannot sign the request: {what}"));
    // An unparsable URL would panic inside the signer; refuse it here.
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.host_str().is_some() => {}
        _ => return Err(failed(format!("{url} has no host"))),
    }
    let identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
        credentials.session_token.clone(),
        None,
        "memofab",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(scope.region)
        .name(scope.service)
        .time(scope.time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| failed(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| failed(e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            source: "test".into(),
        }
    }

    #[test]
    fn the_sigv4_suites_vanilla_request_signs_as_published() {
        // `get-vanilla` from AWS's SigV4 test suite.
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let headers = signed_headers(
            "GET",
            "https://example.amazonaws.com/",
            &[],
            b"",
            &example(),
            Scope {
                region: "us-east-1",
                service: "service",
                time: at,
            },
        )
        .unwrap();
        let auth = headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            auth,
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "x-amz-date" && v == "20150830T123600Z")
        );
    }

    fn scope() -> Scope<'static> {
        Scope {
            region: "us-east-1",
            service: "bedrock",
            time: SystemTime::now(),
        }
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let creds = AwsCredentials {
            session_token: Some("session-token-value".into()),
            ..example()
        };
        let headers = signed_headers(
            "POST",
            "http://127.0.0.1:9/model/m%3A0/converse-stream",
            &[("content-type", "application/json")],
            b"{}",
            &creds,
            scope(),
        )
        .unwrap();
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "x-amz-security-token" && v == "session-token-value")
        );
        let auth = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{auth}"
        );
        assert!(signed_headers("POST", "not a url", &[], b"", &creds, scope()).is_err());
    }
}
