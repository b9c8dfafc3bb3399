//! A typed client for the parts of the Docker Engine API the executor uses.
//!
//! It speaks HTTP/1.1 with hyper over the engine's unix socket (or plain TCP when
//! `DOCKER_HOST` says so), one connection per request, negotiates the API version
//! once with `GET /version`, and turns every answer into a typed value or a
//! [`DockerError`]: a garbled or unexpected answer is an error, never a panic.
//!
//! Streamed answers (image pull progress, exec output, logs, stats, events) are
//! decoded as they arrive by the incremental decoders of [`stream`], so that an
//! error reported inside a 200 stream or a stream cut in the middle of a message is
//! an error too.

mod client;
mod events;
mod exec;
mod line_stream;
mod logs;
mod pull;
mod stats;
pub mod stream;
mod types;

use std::path::PathBuf;

pub use client::{
    negotiate_api_version, ApiVersion, DockerClient, DEFAULT_REQUEST_TIMEOUT, MAX_API_VERSION,
    MIN_API_VERSION,
};
pub use events::{parse_event, DockerEvent, EventFilters, EventStream};
pub use exec::{ExecInspect, ExecResult, MAX_EXEC_OUTPUT};
pub use line_stream::JsonLineStream;
pub use logs::LogsCopied;
pub use pull::{
    docker_config_path, load_registry_auth, parse_pull_line, registry_auth_from_config,
    ImageReference, ProgressDetail, PullMessage, PullProgress, ReferenceError, RegistryAuth,
    DEFAULT_REGISTRY,
};
pub use stats::{cpu_percent, StatsSample, StatsStream, STATS_STREAM_IDLE_TIMEOUT};
pub use types::{
    BindMount, ContainerInspect, ContainerState, ContainerSummary, CreateContainer,
    CreatedContainer, EmptyObject, EndpointSettings, HostConfig, NetworkSettings, PortBinding,
    RemoveOptions, VersionInfo, WaitCondition, WaitError, WaitResponse,
};

/// The engine's socket when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Where the Docker engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// A unix socket (`unix:///var/run/docker.sock`).
    Unix(PathBuf),
    /// A plain-HTTP TCP endpoint `host:port` (`tcp://host:port`); TLS is not supported.
    Tcp(String),
}

impl Default for DockerHost {
    fn default() -> Self {
        DockerHost::Unix(PathBuf::from(DEFAULT_DOCKER_SOCKET))
    }
}

impl DockerHost {
    /// Parses a `DOCKER_HOST` value: `unix:///path` or `tcp://host:port`.
    pub fn parse(value: &str) -> Result<DockerHost, String> {
        if let Some(path) = value.strip_prefix("unix://") {
            if path.starts_with('/') {
                return Ok(DockerHost::Unix(PathBuf::from(path)));
            }
            return Err("a unix socket path must be absolute".to_owned());
        }
        if let Some(address) = value.strip_prefix("tcp://") {
            let address = address.trim_end_matches('/');
            match address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    return Ok(DockerHost::Tcp(address.to_owned()));
                }
                _ => return Err("expected tcp://host:port".to_owned()),
            }
        }
        Err("expected unix:///path or tcp://host:port".to_owned())
    }
}

impl std::fmt::Display for DockerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerHost::Unix(path) => write!(f, "unix://{}", path.display()),
            DockerHost::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

/// Why a Docker Engine request failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine's socket or port could not be reached.
    #[error("cannot connect to the docker engine at {host}: {source}")]
    Connect {
        /// The engine's address.
        host: String,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// The HTTP exchange itself failed (connection reset, malformed HTTP).
    #[error("http exchange {method} {path} with the docker engine failed: {source}")]
    Http {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The underlying failure.
        source: hyper::Error,
    },
    /// The request could not be built (a name that is not valid in a URI).
    #[error("invalid docker request {method} {path}: {reason}")]
    InvalidRequest {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine answered with a status the operation does not expect.
    #[error("docker engine answered {status} to {method} {path}: {message}")]
    Engine {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The HTTP status code.
        status: u16,
        /// The engine's `message`, or the start of the body if it was not JSON.
        message: String,
    },
    /// The engine's body could not be read or decoded.
    #[error("invalid docker engine response to {method} {path}: {reason}")]
    InvalidResponse {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The engine did not answer in time.
    #[error("docker engine did not answer {method} {path} within {seconds}s")]
    Timeout {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The time allowed, in seconds.
        seconds: u64,
    },
    /// The engine speaks no API version this client was written for.
    #[error(
        "docker engine api versions {engine_min}..={engine_max} do not overlap the supported {}..={}",
        MIN_API_VERSION,
        MAX_API_VERSION
    )]
    UnsupportedApiVersion {
        /// The oldest version the engine accepts.
        engine_min: ApiVersion,
        /// The newest version the engine speaks.
        engine_max: ApiVersion,
    },
    /// An image pull was refused, or reported an error inside its stream.
    #[error("docker image pull of {reference} failed: {message}")]
    Pull {
        /// The image being pulled.
        reference: String,
        /// The registry's or engine's message.
        message: String,
    },
    /// A multiplexed output stream (logs, exec) could not be decoded.
    #[error("invalid output stream from {path}: {source}")]
    Demux {
        /// The request path.
        path: String,
        /// What was wrong with it.
        source: stream::DemuxError,
    },
    /// Writing container output to a file failed.
    #[error("cannot write container output to {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// An image import (`POST /images/create`) reported an error inside its stream.
    #[error("docker image import of {reference} failed: {message}")]
    Import {
        /// The image being imported.
        reference: String,
        /// The engine's error message.
        message: String,
    },
}

impl DockerError {
    /// The HTTP status the engine answered with, if this is an engine error.
    pub fn status(&self) -> Option<u16> {
        match self {
            DockerError::Engine { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the engine said the object does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the engine reported a conflict (409: name in use, container not running).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_host() {
        let check = |input: &str, expected: Result<DockerHost, ()>| {
            assert_eq!(
                DockerHost::parse(input).map_err(|_| ()),
                expected,
                "{input}"
            );
        };
        check(
            "unix:///var/run/docker.sock",
            Ok(DockerHost::Unix("/var/run/docker.sock".into())),
        );
        check(
            "tcp://127.0.0.1:2375",
            Ok(DockerHost::Tcp("127.0.0.1:2375".into())),
        );
        check(
            "tcp://docker:2375/",
            Ok(DockerHost::Tcp("docker:2375".into())),
        );
        check("unix://relative.sock", Err(()));
        check("tcp://nohost", Err(()));
        check("ssh://user@host", Err(()));
        check("/var/run/docker.sock", Err(()));
        assert_eq!(
            DockerHost::default().to_string(),
            "unix:///var/run/docker.sock"
        );
    }
}
