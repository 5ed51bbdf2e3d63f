//! AWS credentials and region from the standard places, in the SDKs' order:
//! the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), then a profile — the provider's `profile`, else
//! `AWS_PROFILE`, else `default` — from the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials`) and the config file
//! (`AWS_CONFIG_FILE`, `~/.aws/config`, sections `[profile NAME]`).
//!
//! Profiles that need a program to run (SSO, `credential_process`, role
//! assumption) are refused with a way out, not half-followed. Everything is
//! read per request, so rotated keys are picked up without a restart. The
//! secret values never reach `Debug` output or error messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::super::types::LlmError;

/// Static credentials for one request.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Where they came from, e.g. `profile work in /home/me/.aws/credentials`.
    pub source: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("source", &self.source)
            .finish()
    }
}

impl AwsCredentials {
    /// The values to keep out of anything written.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = vec![self.secret_access_key.clone()];
        out.extend(self.session_token.clone());
        out
    }
}

/// The environment credentials are read from: the process's, or a fixed
/// one (tests, which must not touch the process environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsEnv {
    fixed: Option<BTreeMap<String, String>>,
}

impl AwsEnv {
    /// Reads the process environment at each lookup.
    pub fn process() -> Self {
        Self { fixed: None }
    }

    /// Only these variables exist (`HOME` included, if wanted).
    pub fn fixed<K: Into<String>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            fixed: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        let value = match &self.fixed {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn home(&self) -> Option<PathBuf> {
        self.var("HOME")
            .map(PathBuf::from)
            .or_else(|| match self.fixed {
                Some(_) => None,
                None => directories::BaseDirs::new().map(|d| d.home_dir().to_owned()),
            })
    }

    fn file(&self, var: &str, default: &str) -> Option<PathBuf> {
        self.var(var)
            .map(PathBuf::from)
            .or_else(|| Some(self.home()?.join(".aws").join(default)))
    }

    /// The profile to read: the configured one, else `AWS_PROFILE`, else `default`.
    fn profile_name(&self, configured: Option<&str>) -> String {
        configured
            .map(str::to_owned)
            .or_else(|| self.var("AWS_PROFILE"))
            .unwrap_or_else(|| "default".to_owned())
    }

    /// The credentials to sign with.
    pub fn credentials(&self, profile: Option<&str>) -> Result<AwsCredentials, LlmError> {
        let id = self.var("AWS_ACCESS_KEY_ID");
        let secret = self.var("AWS_SECRET_ACCESS_KEY");
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => {
                return Ok(AwsCredentials {
                    access_key_id,
                    secret_access_key,
                    session_token: self.var("AWS_SESSION_TOKEN"),
                    source: "the environment".into(),
                });
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(LlmError::Config(
                    "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; set both, \
                     or neither to use a profile"
                        .into(),
                ));
            }
            (None, None) => {}
        }
        let name = self.profile_name(profile);
        let profile = self.profile(&name)?;
        let (Some(id), Some(secret)) = (
            profile.get("aws_access_key_id"),
            profile.get("aws_secret_access_key"),
        ) else {
            return Err(self.no_keys(&name, &profile));
        };
        Ok(AwsCredentials {
            access_key_id: id.value.clone(),
            secret_access_key: secret.value.clone(),
            session_token: profile
                .get("aws_session_token")
                .map(|t| t.value.clone())
                .filter(|t| !t.is_empty()),
            source: format!("profile {name} in {}", id.file.display()),
        })
    }

    /// The region: `configured`, else `AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// else the profile's `region`.
    pub fn region(
        &self,
        configured: Option<&str>,
        profile: Option<&str>,
    ) -> Result<String, LlmError> {
        if let Some(region) = configured
            .map(str::to_owned)
            .or_else(|| self.var("AWS_REGION"))
            .or_else(|| self.var("AWS_DEFAULT_REGION"))
        {
            return Ok(region);
        }
        let name = self.profile_name(profile);
        self.profile(&name)?
            .get("region")
            .map(|r| r.value.clone())
            .ok_or_else(|| {
                LlmError::Config(format!(
                    "no AWS region: set `region` in the provider's config, AWS_REGION, or \
                     region in profile {name}"
                ))
            })
    }

    /// The settings of profile `name`, the credentials file's over the
    /// config file's. Missing files are empty; unreadable ones are errors.
    fn profile(&self, name: &str) -> Result<BTreeMap<String, Setting>, LlmError> {
        let mut merged = BTreeMap::new();
        let config_section = if name == "default" {
            "default".to_owned()
        } else {
            format!("profile {name}")
        };
        let files = [
            (self.file("AWS_CONFIG_FILE", "config"), config_section),
            (
                self.file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
                name.to_owned(),
            ),
        ];
        for (path, section) in files {
            let Some(path) = path else { continue };
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(LlmError::Config(format!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                }
            };
            if let Some(settings) = parse_ini(&text).remove(&section) {
                merged.extend(settings.into_iter().map(|(key, value)| {
                    let file = path.clone();
                    (key, Setting { value, file })
                }));
            }
        }
        Ok(merged)
    }

    fn no_keys(&self, name: &str, profile: &BTreeMap<String, Setting>) -> LlmError {
        const NEEDS_A_PROGRAM: [&str; 5] = [
            "sso_session",
            "sso_start_url",
            "credential_process",
            "role_arn",
            "web_identity_token_file",
        ];
        if let Some(key) = NEEDS_A_PROGRAM.iter().find(|k| profile.contains_key(**k)) {
            return LlmError::Config(format!(
                "AWS profile {name} gets its credentials through {key}, which memofab does not \
                 run; export temporary ones first, e.g. \
                 `eval \"$(aws configure export-credentials --profile {name} --format env)\"`"
            ));
        }
        LlmError::Config(format!(
            "no AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and profile \
             {name} has no aws_access_key_id/aws_secret_access_key (looked in {} and {})",
            shown(self.file("AWS_SHARED_CREDENTIALS_FILE", "credentials")),
            shown(self.file("AWS_CONFIG_FILE", "config")),
        ))
    }
}

fn shown(path: Option<PathBuf>) -> String {
    path.as_deref().map_or_else(
        || "(no home directory)".to_owned(),
        |p: &Path| p.display().to_string(),
    )
}

/// One profile setting and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    value: String,
    file: PathBuf,
}

/// The sections of an AWS INI file: `[name]` headers, `key = value` lines,
/// `#` and `;` comments. Keys are lower-cased; indented lines continue a
/// nested setting (e.g. `s3 =` blocks) and are skipped.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            current = header.split(']').next().map(|name| {
                // `[profile  work]` and `[ default ]` name the same profiles.
                name.split_whitespace().collect::<Vec<_>>().join(" ")
            });
            if let Some(name) = &current {
                sections.entry(name.clone()).or_default();
            }
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, line.split_once('=')) else {
            continue;
        };
        let value = value.trim();
        // A trailing ` # comment` is not part of the value.
        let value = value
            .find(" #")
            .or_else(|| value.find(" ;"))
            .map_or(value, |at| value[..at].trim_end());
        if let Some(settings) = sections.get_mut(section) {
            settings.insert(key.trim().to_ascii_lowercase(), value.to_owned());
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "\
# a comment
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret-key-1234

[work]
AWS_ACCESS_KEY_ID=AKIDWORK
aws_secret_access_key = work/secret+key=5678   ; trailing comment
aws_session_token = work-session-token-abcdef
";

    const CONFIG: &str = "\
[default]
region = eu-west-3

[profile work]
region = us-west-2
s3 =
  max_concurrent_requests = 20

[profile sso]
sso_session = corp
region = us-east-1
";

    fn home_with(credentials: &str, config: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(home.path().join(".aws/credentials"), credentials).unwrap();
        std::fs::write(home.path().join(".aws/config"), config).unwrap();
        home
    }

    fn env(home: &tempfile::TempDir, extra: &[(&str, &str)]) -> AwsEnv {
        let mut vars = vec![("HOME".to_owned(), home.path().display().to_string())];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        AwsEnv::fixed(vars)
    }

    #[test]
    fn ini_sections_keys_and_comments_parse() {
        let ini = parse_ini(CREDENTIALS);
        assert_eq!(ini["default"]["aws_access_key_id"], "AKIDDEFAULT");
        assert_eq!(ini["work"]["aws_access_key_id"], "AKIDWORK");
        assert_eq!(ini["work"]["aws_secret_access_key"], "work/secret+key=5678");
        let config = parse_ini(CONFIG);
        assert_eq!(config["profile work"]["region"], "us-west-2");
        assert!(!config["profile work"].contains_key("max_concurrent_requests"));
    }

    #[test]
    fn the_environment_comes_first_then_the_profile() {
        let home = home_with(CREDENTIALS, CONFIG);
        let from_env = env(
            &home,
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret-key-0000"),
                ("AWS_SESSION_TOKEN", "env-token-0000000"),
            ],
        )
        .credentials(Some("work"))
        .unwrap();
        assert_eq!(from_env.access_key_id, "AKIDENV");
        assert_eq!(from_env.session_token.as_deref(), Some("env-token-0000000"));

        let default = env(&home, &[]).credentials(None).unwrap();
        assert_eq!(default.access_key_id, "AKIDDEFAULT");
        assert_eq!(default.session_token, None);

        let work = env(&home, &[("AWS_PROFILE", "work")])
            .credentials(None)
            .unwrap();
        assert_eq!(work.secret_access_key, "work/secret+key=5678");
        assert_eq!(
            work.session_token.as_deref(),
            Some("work-session-token-abcdef")
        );
        // The configured profile wins over AWS_PROFILE.
        let configured = env(&home, &[("AWS_PROFILE", "work")])
            .credentials(Some("default"))
            .unwrap();
        assert_eq!(configured.access_key_id, "AKIDDEFAULT");
        // Secrets stay out of Debug output.
        let shown = format!("{work:?}");
        assert!(
            !shown.contains("work/secret") && !shown.contains("work-session"),
            "{shown}"
        );
    }

    #[test]
    fn file_locations_follow_their_variables() {
        let home = tempfile::tempdir().unwrap();
        let creds = home.path().join("creds.ini");
        let config = home.path().join("conf.ini");
        std::fs::write(
            &creds,
            "[ci]\naws_access_key_id=AKIDCI\naws_secret_access_key=ci-secret-key-99\n",
        )
        .unwrap();
        std::fs::write(&config, "[profile ci]\nregion = ap-south-1\n").unwrap();
        let e = AwsEnv::fixed([
            ("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string()),
            ("AWS_CONFIG_FILE", config.display().to_string()),
            ("AWS_PROFILE", "ci".to_owned()),
        ]);
        assert_eq!(e.credentials(None).unwrap().access_key_id, "AKIDCI");
        assert_eq!(e.region(None, None).unwrap(), "ap-south-1");
    }

    #[test]
    fn region_comes_from_config_env_or_profile() {
        let home = home_with(CREDENTIALS, CONFIG);
        assert_eq!(env(&home, &[]).region(None, None).unwrap(), "eu-west-3");
        assert_eq!(
            env(&home, &[]).region(None, Some("work")).unwrap(),
            "us-west-2"
        );
        assert_eq!(
            env(&home, &[("AWS_DEFAULT_REGION", "ca-central-1")])
                .region(None, Some("work"))
                .unwrap(),
            "ca-central-1"
        );
        assert_eq!(
            env(&home, &[("AWS_REGION", "sa-east-1")])
                .region(Some("us-east-2"), None)
                .unwrap(),
            "us-east-2"
        );
        let bare = tempfile::tempdir().unwrap();
        assert!(matches!(
            env(&bare, &[]).region(None, None),
            Err(LlmError::Config(_))
        ));
    }

    #[test]
    fn missing_and_unsupported_credentials_say_what_to_do() {
        let home = home_with(CREDENTIALS, CONFIG);
        let sso = env(&home, &[]).credentials(Some("sso")).unwrap_err();
        assert!(sso.to_string().contains("export-credentials"), "{sso}");
        let bare = tempfile::tempdir().unwrap();
        let none = env(&bare, &[]).credentials(None).unwrap_err();
        assert!(matches!(none, LlmError::Config(_)));
        let half = env(&bare, &[("AWS_ACCESS_KEY_ID", "AKIDHALF")])
            .credentials(None)
            .unwrap_err();
        assert!(half.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{half}");
    }
}
