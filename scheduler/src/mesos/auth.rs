//! HTTP Basic credentials of the framework (Mesos framework authentication over HTTP).
//!
//! The master's built-in authenticator reads `Authorization: Basic base64(principal:secret)`
//! on every request of the scheduler API and splits the decoded text on `:` into exactly
//! two parts, so neither the principal nor the secret may contain a colon.

use std::fmt;
use std::path::Path;

use base64::Engine;

use crate::error::SchedulerError;

/// Environment variable holding the principal.
pub const PRINCIPAL_ENV: &str = "MESOS_STATEFUL_PRINCIPAL";
/// Environment variable holding the secret.
pub const SECRET_ENV: &str = "MESOS_STATEFUL_SECRET";

/// A principal and its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The principal the framework authenticates as (also `FrameworkInfo.principal`).
    pub principal: String,
    secret: String,
}

#[derive(serde::Deserialize)]
struct CredentialsFile {
    principal: String,
    secret: String,
}

impl Credentials {
    /// Credentials from a principal and a secret, refusing values Mesos can never accept.
    pub fn new(principal: &str, secret: &str) -> Result<Credentials, SchedulerError> {
        if principal.is_empty() {
            return Err(SchedulerError::Config(
                "credentials: empty principal".into(),
            ));
        }
        if principal.contains(':') || secret.contains(':') {
            return Err(SchedulerError::Config(
                "credentials: the principal and the secret must not contain ':' (Mesos splits on it)"
                    .into(),
            ));
        }
        Ok(Credentials {
            principal: principal.to_string(),
            secret: secret.to_string(),
        })
    }

    /// Parses the content of a credentials file: a JSON object
    /// `{"principal": "...", "secret": "..."}`, or the principal on the first line and
    /// the secret on the second.
    pub fn parse(text: &str) -> Result<Credentials, SchedulerError> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            let file: CredentialsFile = serde_json::from_str(trimmed)
                .map_err(|e| SchedulerError::Config(format!("credentials file: {e}")))?;
            return Credentials::new(&file.principal, &file.secret);
        }
        let mut lines = trimmed.lines().map(|line| line.trim_end_matches('\r'));
        match (lines.next(), lines.next(), lines.next()) {
            (Some(principal), Some(secret), None) => Credentials::new(principal.trim(), secret),
            _ => Err(SchedulerError::Config(
                "credentials file: expected a JSON object or exactly two lines (principal, secret)"
                    .into(),
            )),
        }
    }

    /// Reads a credentials file (see [`Credentials::parse`]).
    pub fn from_file(path: &Path) -> Result<Credentials, SchedulerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SchedulerError::Config(format!("reading credentials file {}: {e}", path.display()))
        })?;
        Credentials::parse(&text)
    }

    /// Credentials from [`PRINCIPAL_ENV`] and [`SECRET_ENV`]; `None` when the principal
    /// is unset, an error when only one of the two is set.
    pub fn from_env() -> Result<Option<Credentials>, SchedulerError> {
        Credentials::from_vars(
            std::env::var(PRINCIPAL_ENV).ok(),
            std::env::var(SECRET_ENV).ok(),
        )
    }

    fn from_vars(
        principal: Option<String>,
        secret: Option<String>,
    ) -> Result<Option<Credentials>, SchedulerError> {
        match (principal, secret) {
            (None, None) => Ok(None),
            (Some(principal), Some(secret)) => Credentials::new(&principal, &secret).map(Some),
            _ => Err(SchedulerError::Config(format!(
                "credentials: set both {PRINCIPAL_ENV} and {SECRET_ENV}, or neither"
            ))),
        }
    }

    /// Credentials from `file` when given, else from the environment.
    pub fn load(file: Option<&Path>) -> Result<Option<Credentials>, SchedulerError> {
        match file {
            Some(path) => Credentials::from_file(path).map(Some),
            None => Credentials::from_env(),
        }
    }

    /// The value of the `Authorization` header.
    pub fn authorization(&self) -> String {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.principal, self.secret));
        format!("Basic {token}")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("principal", &self.principal)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_files_parse() {
        let ok = |text: &str, principal: &str| {
            let credentials = Credentials::parse(text).unwrap();
            assert_eq!(credentials.principal, principal);
            credentials
        };
        let json = ok(r#"{"principal": "fw", "secret": "s3cret"}"#, "fw");
        assert_eq!(json.secret, "s3cret");
        let lines = ok("fw\ns3cret\n", "fw");
        assert_eq!(lines, json);
        ok("fw\r\ns3cret\r\n", "fw");
        for bad in [
            "",
            "only-one-line",
            "a\nb\nc",
            r#"{"principal": "fw"}"#,
            "fw:x\nsecret",
            "fw\nse:cret",
            "\nsecret",
        ] {
            assert!(
                Credentials::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn environment_needs_both_variables() {
        assert_eq!(Credentials::from_vars(None, None).unwrap(), None);
        let both = Credentials::from_vars(Some("p".into()), Some("s".into())).unwrap();
        assert_eq!(both.unwrap().principal, "p");
        assert!(Credentials::from_vars(Some("p".into()), None).is_err());
        assert!(Credentials::from_vars(None, Some("s".into())).is_err());
    }

    #[test]
    fn header_is_basic_and_debug_hides_the_secret() {
        let credentials = Credentials::new("principal", "secret").unwrap();
        // base64("principal:secret")
        assert_eq!(
            credentials.authorization(),
            "Basic cHJpbmNpcGFsOnNlY3JldA=="
        );
        assert!(!format!("{credentials:?}").contains("secret\""));
        assert!(format!("{credentials:?}").contains("redacted"));
    }

    #[test]
    fn credentials_load_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        std::fs::write(&path, r#"{"principal":"p1","secret":"s1"}"#).unwrap();
        let loaded = Credentials::load(Some(&path)).unwrap().unwrap();
        assert_eq!(loaded.principal, "p1");
        assert!(Credentials::load(Some(&dir.path().join("missing"))).is_err());
    }
}
