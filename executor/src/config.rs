//! The executor's configuration, read from the environment the agent sets (protocol §2.4).

use std::path::PathBuf;
use std::time::Duration;

use crate::docker::DockerHost;

/// Grace period for stopping containers when the agent does not say otherwise.
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// How long to keep re-subscribing after the agent went away (agent `--recovery_timeout`).
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Upper bound of the random wait between subscription attempts (agent
/// `--executor_reregistration_timeout`).
pub const DEFAULT_SUBSCRIPTION_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The variable that lets tasks run privileged containers when it is `1`.
pub const ALLOW_PRIVILEGED_VARIABLE: &str = "MESOS_STATEFUL_ALLOW_PRIVILEGED";

/// Why the environment could not be turned into a [`Config`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable the executor cannot work without is not set.
    #[error("environment variable {name} is not set")]
    Missing {
        /// The variable's name.
        name: &'static str,
    },
    /// A variable is set but its value cannot be used.
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// The value found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Framework this executor belongs to (`MESOS_FRAMEWORK_ID`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameworkId(pub String);

/// This executor's identity on the agent (`MESOS_EXECUTOR_ID`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecutorId(pub String);

/// Everything the executor needs to know before it talks to anyone.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `MESOS_FRAMEWORK_ID`, sent in every call.
    pub framework_id: FrameworkId,
    /// `MESOS_EXECUTOR_ID`, sent in every call.
    pub executor_id: ExecutorId,
    /// The agent's `host:port`, from `MESOS_AGENT_ENDPOINT` or else `MESOS_SLAVE_PID`.
    pub agent_endpoint: String,
    /// `MESOS_DIRECTORY`: the sandbox on the host, when the agent gives one.
    pub sandbox_directory: Option<PathBuf>,
    /// `MESOS_CHECKPOINT == "1"`: whether to survive agent restarts by re-subscribing.
    pub checkpoint: bool,
    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`: time given to tasks to stop on SHUTDOWN,
    /// and the kill grace period when neither the kill nor the task names one.
    pub shutdown_grace_period: Duration,
    /// `MESOS_RECOVERY_TIMEOUT`: how long to keep re-subscribing after a disconnection.
    pub recovery_timeout: Duration,
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX`: upper bound of the random wait between attempts.
    pub subscription_backoff_max: Duration,
    /// `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`: bearer token for every agent call, if any.
    pub authentication_token: Option<String>,
    /// `DOCKER_HOST`, else the default unix socket.
    pub docker_host: DockerHost,
    /// `MESOS_STATEFUL_ALLOW_PRIVILEGED == "1"`: whether tasks may run privileged
    /// containers. The scheduler sets it only when its operator allows them.
    pub allow_privileged: bool,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, which returns a variable's value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.is_empty())
                .ok_or(ConfigError::Missing { name })
        };
        let duration = |name: &'static str, default: Duration| match lookup(name) {
            None => Ok(default),
            Some(value) => parse_duration(&value).map_err(|reason| ConfigError::Invalid {
                name,
                value: value.clone(),
                reason,
            }),
        };

        let framework_id = FrameworkId(required("MESOS_FRAMEWORK_ID")?);
        let executor_id = ExecutorId(required("MESOS_EXECUTOR_ID")?);
        let agent_endpoint = match lookup("MESOS_AGENT_ENDPOINT").filter(|v| !v.is_empty()) {
            Some(endpoint) => {
                parse_agent_endpoint(&endpoint).map_err(|reason| ConfigError::Invalid {
                    name: "MESOS_AGENT_ENDPOINT",
                    value: endpoint.clone(),
                    reason,
                })?
            }
            None => match lookup("MESOS_SLAVE_PID").filter(|v| !v.is_empty()) {
                Some(pid) => parse_agent_pid(&pid).map_err(|reason| ConfigError::Invalid {
                    name: "MESOS_SLAVE_PID",
                    value: pid.clone(),
                    reason,
                })?,
                None => {
                    return Err(ConfigError::Missing {
                        name: "MESOS_AGENT_ENDPOINT",
                    })
                }
            },
        };
        let checkpoint = match lookup("MESOS_CHECKPOINT").as_deref() {
            None | Some("0") | Some("") => false,
            Some("1") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "MESOS_CHECKPOINT",
                    value: other.to_owned(),
                    reason: "expected \"1\" or \"0\"".to_owned(),
                })
            }
        };
        let docker_host = match lookup("DOCKER_HOST").filter(|v| !v.is_empty()) {
            None => DockerHost::default(),
            Some(value) => DockerHost::parse(&value).map_err(|reason| ConfigError::Invalid {
                name: "DOCKER_HOST",
                value: value.clone(),
                reason,
            })?,
        };

        Ok(Config {
            framework_id,
            executor_id,
            agent_endpoint,
            sandbox_directory: lookup("MESOS_DIRECTORY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            checkpoint,
            shutdown_grace_period: duration(
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
                DEFAULT_SHUTDOWN_GRACE_PERIOD,
            )?,
            recovery_timeout: duration("MESOS_RECOVERY_TIMEOUT", DEFAULT_RECOVERY_TIMEOUT)?,
            subscription_backoff_max: duration(
                "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                DEFAULT_SUBSCRIPTION_BACKOFF_MAX,
            )?,
            authentication_token: lookup("MESOS_EXECUTOR_AUTHENTICATION_TOKEN")
                .filter(|v| !v.is_empty()),
            docker_host,
            allow_privileged: lookup(ALLOW_PRIVILEGED_VARIABLE).as_deref() == Some("1"),
        })
    }
}

/// Parses a Mesos (stout) duration such as `2secs`, `250ms`, `1.5mins` or `15mins`.
///
/// The number may be fractional; the units are `ns`, `us`, `ms`, `secs`, `mins`,
/// `hrs`, `days` and `weeks`. Negative durations have no use here and are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {text:?} has no unit"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("duration {text:?} does not start with a number"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} has an invalid number {number:?}"))?;
    let unit_seconds = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "secs" => 1.0,
        "mins" => 60.0,
        "hrs" => 3600.0,
        "days" => 86_400.0,
        "weeks" => 604_800.0,
        other => return Err(format!("duration {text:?} has an unknown unit {other:?}")),
    };
    Duration::try_from_secs_f64(value * unit_seconds)
        .map_err(|err| format!("duration {text:?} is out of range: {err}"))
}

/// Checks an agent endpoint of the form `host:port` (no scheme, no path).
pub fn parse_agent_endpoint(endpoint: &str) -> Result<String, String> {
    let endpoint = endpoint.trim();
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err("expected host:port".to_owned());
    };
    if host.is_empty() || host.contains('/') {
        return Err("expected host:port".to_owned());
    }
    port.parse::<u16>()
        .map_err(|_| format!("invalid port {port:?}"))?;
    Ok(endpoint.to_owned())
}

/// Extracts `host:port` from a libprocess pid such as `slave(1)@10.0.0.1:5051`.
pub fn parse_agent_pid(pid: &str) -> Result<String, String> {
    let Some((_, address)) = pid.trim().split_once('@') else {
        return Err("expected id@host:port".to_owned());
    };
    parse_agent_endpoint(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parses_stout_durations() {
        let check = |input: &str, expected: Result<Duration, ()>| {
            assert_eq!(parse_duration(input).map_err(|_| ()), expected, "{input}");
        };
        check("2secs", Ok(Duration::from_secs(2)));
        check("250ms", Ok(Duration::from_millis(250)));
        check("15mins", Ok(Duration::from_secs(900)));
        check("1.5mins", Ok(Duration::from_secs(90)));
        check("3hrs", Ok(Duration::from_secs(3 * 3600)));
        check("1days", Ok(Duration::from_secs(86_400)));
        check("2weeks", Ok(Duration::from_secs(2 * 604_800)));
        check("10us", Ok(Duration::from_micros(10)));
        check("7ns", Ok(Duration::from_nanos(7)));
        check(" 5secs ", Ok(Duration::from_secs(5)));
        check("0secs", Ok(Duration::ZERO));
        check("5", Err(()));
        check("secs", Err(()));
        check("5s", Err(()));
        check("5 secs", Err(()));
        check("-5secs", Err(()));
        check("1.2.3secs", Err(()));
        check("", Err(()));
    }

    #[test]
    fn parses_agent_addresses() {
        assert_eq!(
            parse_agent_endpoint("127.0.0.1:5051").as_deref(),
            Ok("127.0.0.1:5051")
        );
        assert_eq!(
            parse_agent_endpoint("agent.local:5051").as_deref(),
            Ok("agent.local:5051")
        );
        assert!(parse_agent_endpoint("127.0.0.1").is_err());
        assert!(parse_agent_endpoint("http://127.0.0.1:5051").is_err());
        assert!(parse_agent_endpoint(":5051").is_err());
        assert!(parse_agent_endpoint("host:99999").is_err());
        assert_eq!(
            parse_agent_pid("slave(1)@10.1.2.3:5051").as_deref(),
            Ok("10.1.2.3:5051")
        );
        assert!(parse_agent_pid("10.1.2.3:5051").is_err());
    }

    fn config_from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    const MINIMAL: [(&str, &str); 3] = [
        ("MESOS_FRAMEWORK_ID", "fw-1"),
        ("MESOS_EXECUTOR_ID", "ex-1"),
        ("MESOS_AGENT_ENDPOINT", "127.0.0.1:5051"),
    ];

    #[test]
    fn minimal_environment_gets_defaults() {
        let config = config_from(&MINIMAL).unwrap();
        assert_eq!(config.framework_id, FrameworkId("fw-1".into()));
        assert_eq!(config.executor_id, ExecutorId("ex-1".into()));
        assert_eq!(config.agent_endpoint, "127.0.0.1:5051");
        assert!(!config.checkpoint);
        assert_eq!(config.shutdown_grace_period, DEFAULT_SHUTDOWN_GRACE_PERIOD);
        assert_eq!(config.recovery_timeout, DEFAULT_RECOVERY_TIMEOUT);
        assert_eq!(
            config.subscription_backoff_max,
            DEFAULT_SUBSCRIPTION_BACKOFF_MAX
        );
        assert_eq!(config.sandbox_directory, None);
        assert_eq!(config.docker_host, DockerHost::default());
        assert!(!config.allow_privileged);
    }

    #[test]
    fn privileged_containers_are_allowed_only_by_1() {
        let check = |value: &str, expected: bool| {
            let mut vars = MINIMAL.to_vec();
            vars.push((ALLOW_PRIVILEGED_VARIABLE, value));
            assert_eq!(
                config_from(&vars).unwrap().allow_privileged,
                expected,
                "{value:?}"
            );
        };
        check("1", true);
        check("0", false);
        check("true", false);
        check("", false);
    }

    #[test]
    fn full_environment_is_read() {
        let mut vars = MINIMAL.to_vec();
        vars.extend([
            ("MESOS_CHECKPOINT", "1"),
            ("MESOS_DIRECTORY", "/var/sandbox"),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "10secs"),
            ("MESOS_RECOVERY_TIMEOUT", "1mins"),
            ("MESOS_SUBSCRIPTION_BACKOFF_MAX", "500ms"),
            ("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", "jwt"),
            ("DOCKER_HOST", "unix:///tmp/docker.sock"),
        ]);
        let config = config_from(&vars).unwrap();
        assert!(config.checkpoint);
        assert_eq!(
            config.sandbox_directory,
            Some(PathBuf::from("/var/sandbox"))
        );
        assert_eq!(config.shutdown_grace_period, Duration::from_secs(10));
        assert_eq!(config.recovery_timeout, Duration::from_secs(60));
        assert_eq!(config.subscription_backoff_max, Duration::from_millis(500));
        assert_eq!(config.authentication_token.as_deref(), Some("jwt"));
        assert_eq!(
            config.docker_host,
            DockerHost::Unix(PathBuf::from("/tmp/docker.sock"))
        );
    }

    #[test]
    fn agent_pid_is_the_fallback_endpoint() {
        let config = config_from(&[
            ("MESOS_FRAMEWORK_ID", "fw-1"),
            ("MESOS_EXECUTOR_ID", "ex-1"),
            ("MESOS_SLAVE_PID", "slave(1)@10.0.0.7:5051"),
        ])
        .unwrap();
        assert_eq!(config.agent_endpoint, "10.0.0.7:5051");
    }

    #[test]
    fn missing_and_invalid_variables_are_named() {
        let check = |vars: &[(&str, &str)], expected_name: &str| {
            let err = config_from(vars).unwrap_err();
            let name = match &err {
                ConfigError::Missing { name } | ConfigError::Invalid { name, .. } => *name,
            };
            assert_eq!(name, expected_name, "{err}");
        };
        check(&MINIMAL[1..], "MESOS_FRAMEWORK_ID");
        check(&[MINIMAL[0], MINIMAL[2]], "MESOS_EXECUTOR_ID");
        check(&MINIMAL[..2], "MESOS_AGENT_ENDPOINT");
        let with = |extra: (&'static str, &'static str)| {
            let mut vars = MINIMAL.to_vec();
            vars.push(extra);
            vars
        };
        check(&with(("MESOS_CHECKPOINT", "true")), "MESOS_CHECKPOINT");
        check(
            &with(("MESOS_RECOVERY_TIMEOUT", "15m")),
            "MESOS_RECOVERY_TIMEOUT",
        );
        check(&with(("DOCKER_HOST", "ssh://host")), "DOCKER_HOST");
        check(
            &[
                MINIMAL[0],
                MINIMAL[1],
                ("MESOS_AGENT_ENDPOINT", "http://x:1"),
            ],
            "MESOS_AGENT_ENDPOINT",
        );
        assert_eq!(
            config_from(&MINIMAL[1..]).unwrap_err().to_string(),
            "environment variable MESOS_FRAMEWORK_ID is not set"
        );
    }
}
