//! Image pulls: reference parsing, registry credentials from the Docker CLI's config
//! file, the `X-Registry-Auth` header, and the streamed `POST /images/create`.
//!
//! Only the `auths` entries of `config.json` are read (inline `user:pass` and identity
//! tokens); credential helpers (`credsStore`, `credHelpers`) run external programs and
//! are not supported: a registry served only through a helper is pulled anonymously.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::client::{encode, next_chunk, read_error_body, DockerClient};
use super::stream::JsonLines;
use super::DockerError;

/// The registry an image reference without a registry part comes from.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The key under which the Docker CLI stores Docker Hub credentials.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
/// The header carrying registry credentials.
const REGISTRY_AUTH_HEADER: &str = "X-Registry-Auth";

/// An image reference split the way the engine's pull endpoint wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The registry host (with port), or [`DEFAULT_REGISTRY`].
    pub registry: String,
    /// Everything before the tag or digest, as written (registry included).
    pub repository: String,
    /// The tag, if the reference has one.
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if the reference has one.
    pub digest: Option<String>,
}

/// Why an image reference cannot be pulled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The reference as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ImageReference {
    /// Parses `[registry[:port]/]path[:tag][@algorithm:hex]`.
    pub fn parse(reference: &str) -> Result<ImageReference, ReferenceError> {
        let error = |reason| ReferenceError {
            reference: reference.to_owned(),
            reason,
        };
        if reference.is_empty() || reference.chars().any(|c| c.is_whitespace()) {
            return Err(error("empty or contains whitespace"));
        }
        let (named, digest) = match reference.split_once('@') {
            Some((named, digest)) => {
                let (algorithm, hex) = digest
                    .split_once(':')
                    .ok_or_else(|| error("digest is not algorithm:hex"))?;
                if algorithm.is_empty()
                    || hex.len() < 32
                    || !hex.chars().all(|c| c.is_ascii_hexdigit())
                {
                    return Err(error("digest is not algorithm:hex"));
                }
                (named, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A colon after the last slash starts the tag; one before it is a port.
        let last_slash = named.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match named[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                (&named[..colon], Some(named[colon + 1..].to_owned()))
            }
            None => (named, None),
        };
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                return Err(error("invalid tag"));
            }
        }
        if repository.is_empty()
            || repository.starts_with('/')
            || repository.ends_with('/')
            || repository.contains("//")
        {
            return Err(error("invalid repository"));
        }
        let registry = match repository.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first.to_owned()
            }
            _ => DEFAULT_REGISTRY.to_owned(),
        };
        if let Some((_, port)) = registry.split_once(':') {
            if port.parse::<u16>().is_err() {
                return Err(error("invalid registry port"));
            }
        }
        Ok(ImageReference {
            registry,
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }

    /// The `tag` query value: the digest if there is one, else the tag, else `latest`
    /// (an empty tag would pull every tag).
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Credentials for one registry, sent base64url-encoded as `X-Registry-Auth`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct RegistryAuth {
    /// The user name (empty with an identity token).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// The password (empty with an identity token).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// An OAuth identity token, used instead of user and password.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    /// The registry the credentials are for.
    pub serveraddress: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .finish_non_exhaustive()
    }
}

impl RegistryAuth {
    /// The `X-Registry-Auth` header value.
    pub fn header_value(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }
}

/// One entry of `auths` in the Docker CLI's `config.json`.
#[derive(Debug, Default, Deserialize)]
struct ConfigAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, ConfigAuth>,
}

/// The Docker CLI's config file: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn docker_config_path(docker_config: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    match docker_config {
        Some(dir) => Some(dir.join("config.json")),
        None => home.map(|home| home.join(".docker").join("config.json")),
    }
}

/// Finds the credentials for `registry` in the text of a `config.json`. Keys may be
/// bare hosts (`127.0.0.1:5000`) or URLs (`https://index.docker.io/v1/`). A file
/// that is not JSON, or an entry that is not valid base64 `user:pass`, gives `None`.
pub fn registry_auth_from_config(config_json: &str, registry: &str) -> Option<RegistryAuth> {
    let config: DockerConfigFile = serde_json::from_str(config_json).ok()?;
    let wanted = normalize_registry(registry);
    let (key, entry) = config
        .auths
        .iter()
        .find(|(key, _)| normalize_registry(key) == wanted)?;
    let server = if wanted == DEFAULT_REGISTRY {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        key.clone()
    };
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Some(RegistryAuth {
            username: String::new(),
            password: String::new(),
            identitytoken: token.clone(),
            serveraddress: server,
        });
    }
    let (username, password) = match entry.auth.as_ref().filter(|a| !a.is_empty()) {
        Some(auth) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, pass) = text.split_once(':')?;
            (user.to_owned(), pass.to_owned())
        }
        None => (entry.username.clone()?, entry.password.clone()?),
    };
    Some(RegistryAuth {
        username,
        password,
        identitytoken: String::new(),
        serveraddress: server,
    })
}

/// Reads the credentials for `registry` from the agent's Docker config file, if any.
pub fn load_registry_auth(registry: &str) -> Option<RegistryAuth> {
    let docker_config = std::env::var_os("DOCKER_CONFIG").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = docker_config_path(docker_config.as_deref(), home.as_deref())?;
    let text = std::fs::read_to_string(&path).ok()?;
    let auth = registry_auth_from_config(&text, registry);
    debug!(path = %path.display(), %registry, found = auth.is_some(), "looked up registry credentials");
    auth
}

/// The host part of a registry name or config key: no scheme, no path, and every
/// Docker Hub alias mapped to [`DEFAULT_REGISTRY`].
fn normalize_registry(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DEFAULT_REGISTRY.to_owned(),
        other => other.to_owned(),
    }
}

/// One progress message of a pull.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PullProgress {
    /// What is happening (`Pulling fs layer`, `Downloading`, `Status: …`).
    #[serde(default)]
    pub status: Option<String>,
    /// The layer the message is about.
    #[serde(default)]
    pub id: Option<String>,
    /// Bytes done and total, for transfers.
    #[serde(rename = "progressDetail", default)]
    pub detail: Option<ProgressDetail>,
}

/// Bytes done and total of a transfer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ProgressDetail {
    /// Bytes done.
    #[serde(default)]
    pub current: Option<u64>,
    /// Bytes in all.
    #[serde(default)]
    pub total: Option<u64>,
}

/// One line of the pull stream: progress or the error that ends the pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullMessage {
    /// The pull goes on.
    Progress(PullProgress),
    /// The pull failed with the registry's or engine's message.
    Error(String),
}

#[derive(Deserialize)]
struct PullLine {
    #[serde(default)]
    error: Option<String>,
    #[serde(rename = "errorDetail", default)]
    error_detail: Option<ErrorDetail>,
    #[serde(flatten)]
    progress: PullProgress,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

/// Parses one line of the pull stream. `errorDetail.message` wins over the
/// deprecated `error`.
pub fn parse_pull_line(line: &[u8]) -> Result<PullMessage, serde_json::Error> {
    let line: PullLine = serde_json::from_slice(line)?;
    let detail = line
        .error_detail
        .and_then(|detail| detail.message)
        .filter(|message| !message.is_empty());
    match detail.or(line.error) {
        Some(message) => Ok(PullMessage::Error(message)),
        None => Ok(PullMessage::Progress(line.progress)),
    }
}

impl DockerClient {
    /// Pulls `reference` (`POST /images/create?fromImage=&tag=`), calling `progress`
    /// for each message as it arrives. An error inside the 200 stream is a
    /// [`DockerError::Pull`] carrying the registry's message; a stream cut inside a
    /// message, or silent for longer than the request timeout, is an error too.
    pub async fn pull_image(
        &self,
        reference: &ImageReference,
        auth: Option<&RegistryAuth>,
        mut progress: impl FnMut(&PullProgress),
    ) -> Result<(), DockerError> {
        let path = format!(
            "/images/create?fromImage={}&tag={}",
            encode(&reference.repository, b""),
            encode(reference.tag_or_digest(), b"")
        );
        let headers: Vec<(&'static str, String)> = auth
            .map(|auth| (REGISTRY_AUTH_HEADER, auth.header_value()))
            .into_iter()
            .collect();
        let response = self.stream(Method::POST, &path, None, &headers).await?;
        if response.status() != StatusCode::OK {
            let err = read_error_body(response, "POST", &path).await;
            return Err(match err {
                DockerError::Engine { message, .. } => DockerError::Pull {
                    reference: reference.to_string(),
                    message,
                },
                other => other,
            });
        }
        let invalid = |reason: String| DockerError::InvalidResponse {
            method: "POST".into(),
            path: path.clone(),
            reason,
        };
        let mut body = response.into_body();
        let mut lines = JsonLines::new();
        let idle = Some(self.request_timeout());
        let mut handle = |line: &[u8]| -> Result<(), DockerError> {
            match parse_pull_line(line) {
                Ok(PullMessage::Progress(message)) => {
                    progress(&message);
                    Ok(())
                }
                Ok(PullMessage::Error(message)) => Err(DockerError::Pull {
                    reference: reference.to_string(),
                    message,
                }),
                Err(err) => Err(invalid(format!("undecodable progress message: {err}"))),
            }
        };
        while let Some(chunk) = next_chunk(&mut body, idle, "POST", &path).await? {
            for line in lines.push(&chunk) {
                handle(&line)?;
            }
        }
        if let Some(rest) = lines.finish() {
            // A whole object without its newline is fine; a piece of one is not.
            if serde_json::from_slice::<serde_json::Value>(&rest).is_err() {
                return Err(invalid(format!(
                    "pull stream ended inside a message ({} bytes)",
                    rest.len()
                )));
            }
            handle(&rest)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_image_references() {
        let check = |input: &str,
                     registry: &str,
                     repository: &str,
                     tag: Option<&str>,
                     digest: Option<&str>,
                     query_tag: &str| {
            let parsed = ImageReference::parse(input).unwrap();
            assert_eq!(
                parsed,
                ImageReference {
                    registry: registry.into(),
                    repository: repository.into(),
                    tag: tag.map(str::to_owned),
                    digest: digest.map(str::to_owned),
                },
                "{input}"
            );
            assert_eq!(parsed.tag_or_digest(), query_tag, "{input}");
            assert_eq!(parsed.to_string(), input);
        };
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        check("busybox", "docker.io", "busybox", None, None, "latest");
        check("redis:7", "docker.io", "redis", Some("7"), None, "7");
        check(
            "library/redis:7.2-alpine",
            "docker.io",
            "library/redis",
            Some("7.2-alpine"),
            None,
            "7.2-alpine",
        );
        check(
            "127.0.0.1:5000/team/img:1",
            "127.0.0.1:5000",
            "127.0.0.1:5000/team/img",
            Some("1"),
            None,
            "1",
        );
        check(
            "127.0.0.1:5000/img",
            "127.0.0.1:5000",
            "127.0.0.1:5000/img",
            None,
            None,
            "latest",
        );
        check(
            "localhost/img:2",
            "localhost",
            "localhost/img",
            Some("2"),
            None,
            "2",
        );
        check(
            "quay.io/org/app",
            "quay.io",
            "quay.io/org/app",
            None,
            None,
            "latest",
        );
        check(
            &format!("img@{digest}"),
            "docker.io",
            "img",
            None,
            Some(digest),
            digest,
        );
        check(
            &format!("reg:5000/img:1@{digest}"),
            "reg:5000",
            "reg:5000/img",
            Some("1"),
            Some(digest),
            digest,
        );
    }

    #[test]
    fn rejects_invalid_references() {
        for input in [
            "",
            "img:",
            "a b",
            "img:bad/tag",
            "img@sha256",
            "img@sha256:xyz",
            "/img",
            "img/",
            "reg//img",
            ":1",
        ] {
            assert!(ImageReference::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn finds_credentials_in_docker_config() {
        let config = r#"{
            "auths": {
                "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "http://quay.io/v2/": {"identitytoken": "tok"},
                "broken.example": {"auth": "!!!"},
                "plain.example": {"username": "u", "password": "p"}
            },
            "credsStore": "desktop"
        }"#;
        let auth = registry_auth_from_config(config, "127.0.0.1:5000").unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(auth.serveraddress, "127.0.0.1:5000");
        let hub = registry_auth_from_config(config, DEFAULT_REGISTRY).unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        assert_eq!(hub.serveraddress, "https://index.docker.io/v1/");
        let quay = registry_auth_from_config(config, "quay.io").unwrap();
        assert_eq!(quay.identitytoken, "tok");
        let plain = registry_auth_from_config(config, "plain.example").unwrap();
        assert_eq!(plain.username, "u");
        assert_eq!(registry_auth_from_config(config, "broken.example"), None);
        assert_eq!(registry_auth_from_config(config, "other:5000"), None);
        assert_eq!(
            registry_auth_from_config("not json", "127.0.0.1:5000"),
            None
        );
        assert_eq!(registry_auth_from_config("{}", "127.0.0.1:5000"), None);
    }

    #[test]
    fn auth_header_is_base64url_json() {
        let auth = RegistryAuth {
            username: "user".into(),
            password: "p?>?".into(),
            identitytoken: String::new(),
            serveraddress: "127.0.0.1:5000".into(),
        };
        let header = auth.header_value();
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        let decoded = base64::engine::general_purpose::URL_SAFE
            .decode(&header)
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"username": "user", "password": "p?>?", "serveraddress": "127.0.0.1:5000"})
        );
        assert!(!format!("{auth:?}").contains("p?>?"));
    }

    #[test]
    fn config_path_prefers_docker_config() {
        assert_eq!(
            docker_config_path(Some(Path::new("/etc/dc")), Some(Path::new("/home/u"))),
            Some(PathBuf::from("/etc/dc/config.json"))
        );
        assert_eq!(
            docker_config_path(None, Some(Path::new("/home/u"))),
            Some(PathBuf::from("/home/u/.docker/config.json"))
        );
        assert_eq!(docker_config_path(None, None), None);
    }

    #[test]
    fn parses_pull_lines() {
        let check = |line: &str, expected: PullMessage| {
            assert_eq!(
                parse_pull_line(line.as_bytes()).unwrap(),
                expected,
                "{line}"
            );
        };
        check(
            r#"{"status":"Pulling from team/img","id":"1"}"#,
            PullMessage::Progress(PullProgress {
                status: Some("Pulling from team/img".into()),
                id: Some("1".into()),
                detail: None,
            }),
        );
        check(
            r#"{"status":"Downloading","progressDetail":{"current":10,"total":20},"progress":"[=>  ]","id":"abc"}"#,
            PullMessage::Progress(PullProgress {
                status: Some("Downloading".into()),
                id: Some("abc".into()),
                detail: Some(ProgressDetail {
                    current: Some(10),
                    total: Some(20),
                }),
            }),
        );
        check(
            r#"{"status":"Extracting","progressDetail":{}}"#,
            PullMessage::Progress(PullProgress {
                status: Some("Extracting".into()),
                id: None,
                detail: Some(ProgressDetail::default()),
            }),
        );
        check(
            r#"{"errorDetail":{"message":"manifest unknown"},"error":"old text"}"#,
            PullMessage::Error("manifest unknown".into()),
        );
        check(
            r#"{"error":"only old"}"#,
            PullMessage::Error("only old".into()),
        );
        check(
            r#"{"errorDetail":{},"error":"fallback"}"#,
            PullMessage::Error("fallback".into()),
        );
        assert!(parse_pull_line(b"{\"status\":").is_err());
        assert!(parse_pull_line(b"[1]").is_err());
    }
}
