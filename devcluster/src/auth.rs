//! HTTP Basic authentication of schedulers, as a Mesos master started with
//! `--authenticate_http_frameworks --http_framework_authenticators=basic
//! --credentials=FILE` does it (protocol file §5).
//!
//! Every request to the scheduler endpoint must carry
//! `Authorization: Basic base64(principal:secret)` with known credentials, else it
//! is answered 401 with `WWW-Authenticate: Basic realm="mesos-master-scheduler"`.
//! Mesos's parsing quirks are kept: the header is exactly two space-separated
//! tokens and the decoded text splits on `:` into exactly two parts.

use std::collections::HashMap;

use base64::Engine;

use crate::error::DevClusterError;

/// The authentication realm of the scheduler endpoint.
pub const SCHEDULER_REALM: &str = "mesos-master-scheduler";

/// One principal and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The principal (user name).
    pub principal: String,
    /// Its secret (password).
    pub secret: String,
}

/// Parses a Mesos credentials file: `{"credentials":[{"principal":..,"secret":..}]}`.
pub fn parse_credentials(text: &str) -> Result<Vec<Credential>, DevClusterError> {
    let invalid = |reason: &str| DevClusterError::Config(format!("credentials: {reason}"));
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| invalid(&error.to_string()))?;
    let list = value
        .get("credentials")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| invalid("expected an object with a 'credentials' array"))?;
    list.iter()
        .map(|entry| {
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| invalid(&format!("every credential needs a string '{name}'")))
            };
            Ok(Credential {
                principal: field("principal")?,
                secret: field("secret")?,
            })
        })
        .collect()
}

/// The credentials a master accepts; empty means authentication is off.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    secrets: HashMap<String, String>,
}

impl Authenticator {
    /// Accepts exactly `credentials` (none: authentication off).
    pub fn new(credentials: &[Credential]) -> Authenticator {
        Authenticator {
            secrets: credentials
                .iter()
                .map(|c| (c.principal.clone(), c.secret.clone()))
                .collect(),
        }
    }

    /// Whether requests must authenticate.
    pub fn enabled(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The principal an `Authorization` header value proves, if any.
    pub fn authenticate(&self, header: Option<&str>) -> Option<String> {
        let tokens: Vec<&str> = header?.split(' ').collect();
        let [scheme, encoded] = tokens.as_slice() else {
            return None;
        };
        if *scheme != "Basic" {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let parts: Vec<&str> = text.split(':').collect();
        let [principal, secret] = parts.as_slice() else {
            return None;
        };
        (self.secrets.get(*principal).map(String::as_str) == Some(*secret))
            .then(|| principal.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }

    #[test]
    fn basic_authentication_rules() {
        let authenticator = Authenticator::new(&[Credential {
            principal: "ops".into(),
            secret: "s3cret".into(),
        }]);
        assert!(authenticator.enabled());
        let cases: [(Option<String>, Option<&str>); 7] = [
            (Some(basic("ops:s3cret")), Some("ops")),
            (Some(basic("ops:wrong")), None),
            (Some(basic("eve:s3cret")), None),
            (Some(basic("ops:s3cret:extra")), None),
            (Some(format!("Basic  {}", &basic("ops:s3cret")[6..])), None),
            (Some(basic("ops:s3cret").replace("Basic", "Bearer")), None),
            (None, None),
        ];
        for (header, expected) in cases {
            assert_eq!(
                authenticator.authenticate(header.as_deref()).as_deref(),
                expected,
                "{header:?}"
            );
        }
        assert!(!Authenticator::new(&[]).enabled());
    }

    #[test]
    fn credentials_file() {
        let parsed =
            parse_credentials(r#"{"credentials":[{"principal":"a","secret":"b"}]}"#).unwrap();
        assert_eq!(
            parsed,
            [Credential {
                principal: "a".into(),
                secret: "b".into()
            }]
        );
        assert!(parse_credentials(r#"{"credentials":[{"principal":"a"}]}"#).is_err());
        assert!(parse_credentials("[]").is_err());
        assert!(parse_credentials("not json").is_err());
    }
}
