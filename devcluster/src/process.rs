//! Executor processes: the sandbox, the fetched URIs, the environment of §2.4, the
//! command line of §2.5, and signals.
//!
//! The fetcher copies local files (`file://` or absolute paths) and downloads
//! `http://` URIs, naming the file by `output_file` or the last segment of the path,
//! as Mesos's fetcher does; it has no cache, no extraction and no `https://`.
//!
//! Deviation from Mesos, for convenient local runs: `DOCKER_HOST` and `RUST_LOG` are
//! passed through from devcluster's own environment when set (a real agent builds
//! the environment from scratch). No `user` switching, containerization or resource
//! isolation happens: executors run as devcluster's user, in its network namespace.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mesos_stateful_proto::v1::{CommandInfo, Environment, ExecutorId, FrameworkId};

use crate::error::DevClusterError;

/// Mesos's host default `PATH`, used when `CommandInfo.environment` sets none.
pub const HOST_DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables of devcluster's own environment passed on to executors.
pub const PASSTHROUGH_VARIABLES: [&str; 2] = ["DOCKER_HOST", "RUST_LOG"];

/// Everything needed to start one executor process.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    /// Index of the agent running it.
    pub agent: usize,
    /// The executor's framework.
    pub framework_id: FrameworkId,
    /// The executor.
    pub executor_id: ExecutorId,
    /// The container (one run of the executor).
    pub container_id: String,
    /// The sandbox directory, created before the start.
    pub sandbox: PathBuf,
    /// What to run.
    pub command: CommandInfo,
    /// The complete environment of the process.
    pub environment: Vec<(String, String)>,
    /// Persistent volumes to show in the sandbox: each volume's directory and its
    /// path relative to the sandbox.
    pub volumes: Vec<(PathBuf, String)>,
}

/// Mesos refuses an `--executor_reregistration_timeout` above 15 s.
pub const MAX_REREGISTRATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Inputs of [`executor_environment`].
#[derive(Debug)]
pub struct EnvironmentParams<'a> {
    /// `MESOS_FRAMEWORK_ID`.
    pub framework_id: &'a str,
    /// `MESOS_EXECUTOR_ID`.
    pub executor_id: &'a str,
    /// `MESOS_SLAVE_ID`.
    pub agent_id: &'a str,
    /// The agent's executor API address.
    pub agent_endpoint: SocketAddr,
    /// `MESOS_DIRECTORY` and `MESOS_SANDBOX`.
    pub sandbox: &'a Path,
    /// `FrameworkInfo.checkpoint`.
    pub checkpoint: bool,
    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`.
    pub shutdown_grace_period: Duration,
    /// The agent's executor re-registration timeout, given as
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX` (at most 15 s, as Mesos caps it).
    pub reregistration_timeout: Duration,
    /// `CommandInfo.environment`, applied last.
    pub command_environment: Option<&'a Environment>,
    /// Variables passed through from devcluster's environment.
    pub host_environment: &'a [(String, String)],
}

/// The values of [`PASSTHROUGH_VARIABLES`] set in this process's environment.
pub fn host_passthrough() -> Vec<(String, String)> {
    PASSTHROUGH_VARIABLES
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| (name.to_string(), value))
        })
        .collect()
}

/// A duration in stout's format (`5secs`, `15mins`, `250ms`, `1.5hrs`).
pub fn format_duration(duration: Duration) -> String {
    const UNITS: [(&str, u128); 8] = [
        ("weeks", 7 * 24 * 3600 * 1_000_000_000),
        ("days", 24 * 3600 * 1_000_000_000),
        ("hrs", 3600 * 1_000_000_000),
        ("mins", 60 * 1_000_000_000),
        ("secs", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    let nanos = duration.as_nanos();
    for (unit, size) in UNITS {
        if nanos >= size {
            let value = nanos as f64 / size as f64;
            return format!("{value}{unit}");
        }
    }
    "0ns".to_string()
}

/// The executor's environment per §2.4, in a stable order.
pub fn executor_environment(params: &EnvironmentParams<'_>) -> Vec<(String, String)> {
    let sandbox = params.sandbox.display().to_string();
    let endpoint = params.agent_endpoint.to_string();
    let mut env: Vec<(String, String)> = vec![
        ("MESOS_FRAMEWORK_ID".into(), params.framework_id.into()),
        ("MESOS_EXECUTOR_ID".into(), params.executor_id.into()),
        ("MESOS_AGENT_ENDPOINT".into(), endpoint.clone()),
        ("MESOS_SLAVE_PID".into(), format!("slave(1)@{endpoint}")),
        ("MESOS_SLAVE_ID".into(), params.agent_id.into()),
        ("MESOS_DIRECTORY".into(), sandbox.clone()),
        ("MESOS_SANDBOX".into(), sandbox),
        (
            "MESOS_CHECKPOINT".into(),
            if params.checkpoint { "1" } else { "0" }.into(),
        ),
        ("MESOS_HTTP_COMMAND_EXECUTOR".into(), "0".into()),
        (
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
            format_duration(params.shutdown_grace_period),
        ),
    ];
    if params.checkpoint {
        env.push(("MESOS_RECOVERY_TIMEOUT".into(), "15mins".into()));
        env.push((
            "MESOS_SUBSCRIPTION_BACKOFF_MAX".into(),
            format_duration(
                params
                    .reregistration_timeout
                    .min(MAX_REREGISTRATION_TIMEOUT),
            ),
        ));
    }
    let mut set = |name: &str, value: String| match env.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_string(), value)),
    };
    for (name, value) in params.host_environment {
        set(name, value.clone());
    }
    let command_variables = params
        .command_environment
        .map(|e| e.variables.as_slice())
        .unwrap_or_default();
    for variable in command_variables {
        // Secret-typed variables are not resolved by devcluster; they are left out.
        if let Some(value) = &variable.value {
            set(&variable.name, value.clone());
        }
    }
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), HOST_DEFAULT_PATH.into()));
    }
    env
}

/// Makes each persistent volume (its directory, created if missing) visible at
/// `<sandbox>/<container_path>` as a symbolic link; a link already in place is kept.
pub fn link_volumes(sandbox: &Path, volumes: &[(PathBuf, String)]) -> Result<(), DevClusterError> {
    for (volume, container_path) in volumes {
        let link = sandbox.join(container_path);
        let sandbox_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DevClusterError::Sandbox { path, source }
        };
        std::fs::create_dir_all(volume).map_err(sandbox_error(volume))?;
        if std::fs::read_link(&link).is_ok_and(|target| target == *volume) {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(sandbox_error(parent))?;
        }
        std::os::unix::fs::symlink(volume, &link).map_err(sandbox_error(&link))?;
    }
    Ok(())
}

/// Creates the sandbox and copies the local-file URIs of the command into it.
pub fn prepare_sandbox(request: &SpawnRequest) -> Result<(), DevClusterError> {
    std::fs::create_dir_all(&request.sandbox).map_err(|source| DevClusterError::Sandbox {
        path: request.sandbox.clone(),
        source,
    })?;
    link_volumes(&request.sandbox, &request.volumes)?;
    for uri in &request.command.uris {
        if is_remote(&uri.value) {
            continue;
        }
        let source = match uri.value.strip_prefix("file://") {
            Some(path) => PathBuf::from(path),
            None if uri.value.starts_with('/') => PathBuf::from(&uri.value),
            None => return Err(DevClusterError::Fetch {
                uri: uri.value.clone(),
                reason:
                    "only local files (file:// or absolute paths) and http:// URIs can be fetched"
                        .into(),
            }),
        };
        let name = match &uri.output_file {
            Some(name) => PathBuf::from(name),
            None => {
                source
                    .file_name()
                    .map(PathBuf::from)
                    .ok_or_else(|| DevClusterError::Fetch {
                        uri: uri.value.clone(),
                        reason: "the path has no file name".into(),
                    })?
            }
        };
        let target = request.sandbox.join(name);
        std::fs::copy(&source, &target).map_err(|error| DevClusterError::Fetch {
            uri: uri.value.clone(),
            reason: error.to_string(),
        })?;
        if uri.executable.unwrap_or(false) {
            let mut permissions = std::fs::metadata(&target)
                .map_err(|error| DevClusterError::Fetch {
                    uri: uri.value.clone(),
                    reason: error.to_string(),
                })?
                .permissions();
            permissions.set_mode(permissions.mode() | 0o755);
            std::fs::set_permissions(&target, permissions).map_err(|error| {
                DevClusterError::Fetch {
                    uri: uri.value.clone(),
                    reason: error.to_string(),
                }
            })?;
        }
    }
    Ok(())
}

/// Longest a download of one URI may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest file the fetcher downloads.
const FETCH_LIMIT_BYTES: usize = 1 << 30;

/// Whether the fetcher downloads `uri` over the network rather than copying it.
fn is_remote(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// Downloads the `http://` URIs of the command into the sandbox (made by
/// [`prepare_sandbox`] first).
pub async fn fetch_remote(request: &SpawnRequest) -> Result<(), DevClusterError> {
    let remote: Vec<_> = request
        .command
        .uris
        .iter()
        .filter(|uri| is_remote(&uri.value))
        .collect();
    if remote.is_empty() {
        return Ok(());
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for uri in remote {
        let fail = |reason: String| DevClusterError::Fetch {
            uri: uri.value.clone(),
            reason,
        };
        let parsed: hyper::Uri = uri
            .value
            .parse()
            .map_err(|e| fail(format!("not a URI: {e}")))?;
        if parsed.scheme_str() != Some("http") {
            return Err(fail(
                "https:// is not supported by devcluster's fetcher".into(),
            ));
        }
        let name = match &uri.output_file {
            Some(name) => PathBuf::from(name),
            None => parsed
                .path()
                .rsplit('/')
                .next()
                .filter(|name| !name.is_empty() && *name != "." && *name != "..")
                .map(PathBuf::from)
                .ok_or_else(|| fail("the path has no file name".into()))?,
        };
        let download = async {
            let response = client
                .get(parsed.clone())
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !response.status().is_success() {
                return Err(fail(format!("the server answered {}", response.status())));
            }
            let body = http_body_util::Limited::new(response.into_body(), FETCH_LIMIT_BYTES);
            http_body_util::BodyExt::collect(body)
                .await
                .map(|collected| collected.to_bytes())
                .map_err(|e| fail(format!("reading the body: {e}")))
        };
        let bytes = tokio::time::timeout(FETCH_TIMEOUT, download)
            .await
            .map_err(|_| fail(format!("no answer within {FETCH_TIMEOUT:?}")))??;
        let target = request.sandbox.join(name);
        tokio::fs::write(&target, &bytes)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if uri.executable.unwrap_or(false) {
            tokio::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(())
}

/// Starts the executor's command in its sandbox, in a new process group, with its
/// output in `stdout` and `stderr` files of the sandbox.
pub fn spawn(request: &SpawnRequest) -> Result<tokio::process::Child, DevClusterError> {
    let spawn_error = |source: std::io::Error| DevClusterError::Spawn {
        executor_id: request.executor_id.value.clone(),
        source,
    };
    let value = request.command.value.clone().unwrap_or_default();
    let mut command = if request.command.shell.unwrap_or(true) {
        let mut command = tokio::process::Command::new("/bin/sh");
        command.arg("-c").arg(value);
        command
    } else {
        let mut command = tokio::process::Command::new(&value);
        if let Some(argv0) = request.command.arguments.first() {
            command.arg0(argv0);
        }
        command.args(request.command.arguments.iter().skip(1));
        command
    };
    let stdout = std::fs::File::create(request.sandbox.join("stdout")).map_err(spawn_error)?;
    let stderr = std::fs::File::create(request.sandbox.join("stderr")).map_err(spawn_error)?;
    command
        .current_dir(&request.sandbox)
        .env_clear()
        .envs(request.environment.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    command.spawn().map_err(spawn_error)
}

/// Sends `signal` (`TERM`, `KILL`) to the process group led by `pid`, using the
/// system's `kill` command (the workspace forbids unsafe code, so no `libc::kill`).
pub async fn signal_group(pid: u32, signal: &str) {
    let result = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(error) = result {
        tracing::warn!(pid, signal, %error, "could not signal the executor process group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_proto::v1::environment::Variable;

    #[test]
    fn durations_use_stout_units() {
        let check = |duration: Duration, expected: &str| {
            assert_eq!(format_duration(duration), expected);
        };
        check(Duration::from_secs(5), "5secs");
        check(Duration::from_secs(900), "15mins");
        check(Duration::from_millis(250), "250ms");
        check(Duration::from_secs(90), "1.5mins");
        check(Duration::from_secs(7200), "2hrs");
        check(Duration::ZERO, "0ns");
    }

    fn env_of(
        checkpoint: bool,
        command: Option<&Environment>,
        host: &[(String, String)],
    ) -> Vec<(String, String)> {
        executor_environment(&EnvironmentParams {
            framework_id: "fw",
            executor_id: "ex",
            agent_id: "ag",
            agent_endpoint: "127.0.0.1:4242".parse().unwrap(),
            sandbox: Path::new("/tmp/sb"),
            checkpoint,
            shutdown_grace_period: Duration::from_secs(5),
            reregistration_timeout: Duration::from_secs(2),
            command_environment: command,
            host_environment: host,
        })
    }

    fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn environment_follows_the_agent() {
        let env = env_of(false, None, &[]);
        let expected = [
            ("MESOS_FRAMEWORK_ID", Some("fw")),
            ("MESOS_EXECUTOR_ID", Some("ex")),
            ("MESOS_AGENT_ENDPOINT", Some("127.0.0.1:4242")),
            ("MESOS_SLAVE_PID", Some("slave(1)@127.0.0.1:4242")),
            ("MESOS_SLAVE_ID", Some("ag")),
            ("MESOS_DIRECTORY", Some("/tmp/sb")),
            ("MESOS_SANDBOX", Some("/tmp/sb")),
            ("MESOS_CHECKPOINT", Some("0")),
            ("MESOS_HTTP_COMMAND_EXECUTOR", Some("0")),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", Some("5secs")),
            ("MESOS_RECOVERY_TIMEOUT", None),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", None),
            ("PATH", Some(HOST_DEFAULT_PATH)),
        ];
        for (name, value) in expected {
            assert_eq!(get(&env, name), value, "{name}");
        }
        let env = env_of(true, None, &[]);
        assert_eq!(get(&env, "MESOS_CHECKPOINT"), Some("1"));
        assert_eq!(get(&env, "MESOS_RECOVERY_TIMEOUT"), Some("15mins"));
        assert_eq!(get(&env, "MESOS_SUBSCRIPTION_BACKOFF_MAX"), Some("2secs"));
    }

    #[test]
    fn command_environment_wins_and_host_variables_pass_through() {
        let command = Environment {
            variables: vec![
                Variable {
                    name: "PATH".into(),
                    value: Some("/opt/bin".into()),
                    ..Default::default()
                },
                Variable {
                    name: "FOO".into(),
                    value: Some("bar".into()),
                    ..Default::default()
                },
            ],
        };
        let host = [("RUST_LOG".to_string(), "debug".to_string())];
        let env = env_of(false, Some(&command), &host);
        assert_eq!(get(&env, "PATH"), Some("/opt/bin"));
        assert_eq!(get(&env, "FOO"), Some("bar"));
        assert_eq!(get(&env, "RUST_LOG"), Some("debug"));
        assert_eq!(env.iter().filter(|(n, _)| n == "PATH").count(), 1);
    }
}
