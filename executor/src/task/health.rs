//! Health checks of a running task, from its `TaskInfo.health_check`.
//!
//! [`HealthTracker`] is the plain decision logic, fed with check results and the
//! time since the task started: when the task's health changes (the first result
//! included) and when it has failed often enough to be killed. [`probe`] runs one
//! check (COMMAND by exec in the container, TCP and HTTP against the [`ProbeTarget`]:
//! `127.0.0.1` with host networking, the container's own address with bridge
//! networking, where a published host port is translated to its container port),
//! and [`watch_health`] runs the checks on their schedule inside the task's worker,
//! counting the failures, each probe in an `Executor::Health` span that is a child
//! of the task's launch span.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mesos_stateful_proto::v1::health_check::{HttpCheckInfo, Type};
use mesos_stateful_proto::v1::HealthCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::field::Empty;
use tracing::{debug, info_span, Instrument};

use crate::docker::DockerClient;
use crate::telemetry::SpanParent;

/// The schedule and thresholds of a health check, with Mesos's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthPolicy {
    /// Wait before the first check.
    pub delay: Duration,
    /// Pause between checks.
    pub interval: Duration,
    /// Longest a check may take before it counts as failed.
    pub timeout: Duration,
    /// Failures in a row that get the task killed (0: never).
    pub consecutive_failures: u32,
    /// Time after the start during which failures do not count until a success.
    pub grace_period: Duration,
}

/// Seconds from a proto field, zero when negative or not a number.
fn seconds(value: f64) -> Duration {
    if value.is_finite() && value > 0.0 {
        Duration::from_secs_f64(value.min(1e9))
    } else {
        Duration::ZERO
    }
}

impl HealthPolicy {
    /// The policy of `check` (unset fields take the proto's defaults: delay 15 s,
    /// interval 10 s, timeout 20 s, 3 failures, grace 10 s).
    pub fn of(check: &HealthCheck) -> HealthPolicy {
        HealthPolicy {
            delay: seconds(check.delay_seconds()),
            interval: seconds(check.interval_seconds()),
            timeout: seconds(check.timeout_seconds()),
            consecutive_failures: check.consecutive_failures(),
            grace_period: seconds(check.grace_period_seconds()),
        }
    }
}

/// What a check result means for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthVerdict {
    /// The task's new health, when it changed (or is known for the first time).
    pub changed: Option<bool>,
    /// Set when the task must be killed, to the number of failures in a row.
    pub kill_after: Option<u32>,
}

/// The health of one task, from the check results fed to it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthTracker {
    policy: HealthPolicy,
    healthy: Option<bool>,
    failures: u32,
    ever_passed: bool,
}

impl HealthTracker {
    /// A tracker with no result yet.
    pub fn new(policy: HealthPolicy) -> HealthTracker {
        HealthTracker {
            policy,
            healthy: None,
            failures: 0,
            ever_passed: false,
        }
    }

    /// The last health reported, if any.
    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Records a check result obtained `since_start` after the task started.
    pub fn record(&mut self, passed: bool, since_start: Duration) -> HealthVerdict {
        let mut verdict = HealthVerdict {
            changed: None,
            kill_after: None,
        };
        if passed {
            self.failures = 0;
            self.ever_passed = true;
        } else {
            if !self.ever_passed && since_start < self.policy.grace_period {
                // Still starting: the failure is ignored.
                return verdict;
            }
            self.failures = self.failures.saturating_add(1);
            if self.policy.consecutive_failures > 0
                && self.failures >= self.policy.consecutive_failures
            {
                verdict.kill_after = Some(self.failures);
            }
        }
        if self.healthy != Some(passed) {
            self.healthy = Some(passed);
            verdict.changed = Some(passed);
        }
        verdict
    }
}

/// The argv to exec for a COMMAND check: `sh -c value` with the shell (the
/// default), else the arguments (or the value alone when there are none).
pub fn command_argv(check: &HealthCheck) -> Result<Vec<String>, String> {
    let command = check
        .command
        .as_ref()
        .ok_or("command health check without a command")?;
    if command.shell.unwrap_or(true) {
        let value = command
            .value
            .clone()
            .filter(|value| !value.trim().is_empty())
            .ok_or("command health check with an empty command")?;
        return Ok(vec!["sh".into(), "-c".into(), value]);
    }
    if !command.arguments.is_empty() {
        return Ok(command.arguments.clone());
    }
    match command.value.clone().filter(|value| !value.is_empty()) {
        Some(value) => Ok(vec![value]),
        None => Err("command health check with an empty command".to_owned()),
    }
}

/// Whether `status` counts as healthy for `statuses` (empty: 200 to 399).
pub fn status_is_healthy(status: u16, statuses: &[u32]) -> bool {
    if statuses.is_empty() {
        (200..400).contains(&status)
    } else {
        statuses.contains(&u32::from(status))
    }
}

/// The status code in an HTTP status line (`HTTP/1.1 200 OK`).
pub fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Where TCP and HTTP checks connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The address the task listens on, seen from the agent.
    pub address: IpAddr,
    /// Published host ports and their container ports (bridge networking): a check
    /// naming a host port connects to its container port at `address`.
    pub ports: BTreeMap<u16, u16>,
}

impl ProbeTarget {
    /// The task on the agent's own network (host networking).
    pub fn local() -> ProbeTarget {
        ProbeTarget {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: BTreeMap::new(),
        }
    }

    /// The port to connect to for a check naming `port`.
    pub fn port(&self, port: u16) -> u16 {
        self.ports.get(&port).copied().unwrap_or(port)
    }
}

/// Runs `check` once against the task's container `id`; `Err` explains a failure.
/// Each check is bounded by the policy's timeout.
pub async fn probe(
    docker: &DockerClient,
    id: &str,
    check: &HealthCheck,
    target: &ProbeTarget,
) -> Result<(), String> {
    let timeout = HealthPolicy::of(check).timeout;
    match tokio::time::timeout(timeout, probe_once(docker, id, check, target)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "health check timed out after {:.1}s",
            timeout.as_secs_f64()
        )),
    }
}

async fn probe_once(
    docker: &DockerClient,
    id: &str,
    check: &HealthCheck,
    target: &ProbeTarget,
) -> Result<(), String> {
    let kind = check
        .r#type
        .and_then(|kind| Type::try_from(kind).ok())
        .unwrap_or(Type::Unknown);
    match kind {
        Type::Command => {
            let argv = command_argv(check)?;
            let result = docker
                .exec(id, &argv)
                .await
                .map_err(|err| format!("cannot run the health check command: {err}"))?;
            if result.exit_code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "health check command exited with code {}",
                    result.exit_code
                ))
            }
        }
        Type::Tcp => {
            let port = check
                .tcp
                .as_ref()
                .ok_or("tcp health check without a port")?
                .port;
            let address = (target.address, target.port(port_number(port)?));
            TcpStream::connect(address)
                .await
                .map(drop)
                .map_err(|err| format!("cannot connect to {}:{}: {err}", address.0, address.1))
        }
        Type::Http => {
            let http = check
                .http
                .as_ref()
                .ok_or("http health check without a port")?;
            http_check(http, target).await
        }
        Type::Unknown => Err("health check of unknown type".to_owned()),
    }
}

fn port_number(port: u32) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("invalid port {port}"))
}

async fn http_check(http: &HttpCheckInfo, target: &ProbeTarget) -> Result<(), String> {
    if let Some(scheme) = http.scheme.as_deref().filter(|s| *s != "http") {
        return Err(format!(
            "http health check scheme {scheme} is not supported"
        ));
    }
    let port = target.port(port_number(http.port)?);
    let address = target.address;
    let path = http.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let mut stream = TcpStream::connect((address, port))
        .await
        .map_err(|err| format!("cannot connect to {address}:{port}: {err}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}:{port}\r\nUser-Agent: mesos-stateful-executor\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("cannot send the http request to port {port}: {err}"))?;
    // Only the status line matters; read until its end.
    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 8192 {
        let n = stream
            .read(&mut buffer)
            .await
            .map_err(|err| format!("cannot read the http answer from port {port}: {err}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    let status = parse_status_line(line)
        .ok_or_else(|| format!("invalid http answer from port {port}: {line:?}"))?;
    if status_is_healthy(status, &http.statuses) {
        Ok(())
    } else {
        Err(format!("GET {path} on port {port} answered {status}"))
    }
}

/// A change of the task's health, or the end of its patience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    /// The task's health changed (or is known for the first time).
    Changed {
        /// Whether the task is healthy.
        healthy: bool,
        /// The failed check's explanation when unhealthy.
        detail: Option<String>,
    },
}

/// The container a health check probes.
#[derive(Debug, Clone, Copy)]
pub struct HealthSubject<'a> {
    /// The client running COMMAND checks.
    pub docker: &'a DockerClient,
    /// The container's id.
    pub id: &'a str,
    /// The task's id.
    pub task_id: &'a str,
    /// Where TCP and HTTP checks connect.
    pub target: &'a ProbeTarget,
}

/// Runs `check` on its schedule against the container of `subject` (TCP and HTTP
/// checks at its target), adding one to `failures` per failed check, handing every health change
/// to `changed`, and returns the number of consecutive failures once the task must
/// be killed. Never returns for a check that cannot kill. Every probe runs in an
/// `Executor::Health` span, child of `parent`.
pub async fn watch_health(
    subject: HealthSubject<'_>,
    check: &HealthCheck,
    failures: &AtomicU64,
    parent: &SpanParent,
    changed: impl Fn(HealthEvent),
) -> u32 {
    let HealthSubject {
        docker,
        id,
        task_id,
        target,
    } = subject;
    let policy = HealthPolicy::of(check);
    let started = tokio::time::Instant::now();
    let mut tracker = HealthTracker::new(policy);
    tokio::time::sleep(policy.delay).await;
    loop {
        let span = info_span!(
            parent: None,
            "Executor::Health",
            task_id,
            container_id = id,
            healthy = Empty,
        );
        parent.adopt(&span);
        let result = probe(docker, id, check, target)
            .instrument(span.clone())
            .await;
        if result.is_err() {
            failures.fetch_add(1, Ordering::Relaxed);
        }
        span.record("healthy", result.is_ok());
        drop(span);
        debug!(task = %task_id, ?result, "health check");
        let verdict = tracker.record(result.is_ok(), started.elapsed());
        if let Some(healthy) = verdict.changed {
            changed(HealthEvent::Changed {
                healthy,
                detail: result.err(),
            });
        }
        if let Some(failures) = verdict.kill_after {
            return failures;
        }
        tokio::time::sleep(policy.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_proto::v1::CommandInfo;

    fn policy(consecutive_failures: u32, grace_secs: u64) -> HealthPolicy {
        HealthPolicy {
            delay: Duration::ZERO,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            consecutive_failures,
            grace_period: Duration::from_secs(grace_secs),
        }
    }

    /// Feeds `(passed, seconds since start)` results and compares each verdict as
    /// `(changed, kill_after)`.
    fn check(policy: HealthPolicy, steps: &[(bool, u64, Option<bool>, Option<u32>)]) {
        let mut tracker = HealthTracker::new(policy);
        for (i, &(passed, at, changed, kill_after)) in steps.iter().enumerate() {
            let verdict = tracker.record(passed, Duration::from_secs(at));
            assert_eq!(
                verdict,
                HealthVerdict {
                    changed,
                    kill_after
                },
                "step {i}"
            );
        }
    }

    #[test]
    fn health_changes_are_reported_once() {
        check(
            policy(3, 0),
            &[
                (true, 0, Some(true), None),
                (true, 1, None, None),
                (false, 2, Some(false), None),
                (false, 3, None, None),
                (true, 4, Some(true), None),
            ],
        );
    }

    #[test]
    fn consecutive_failures_kill_and_a_success_resets_them() {
        check(
            policy(3, 0),
            &[
                (false, 0, Some(false), None),
                (false, 1, None, None),
                (true, 2, Some(true), None),
                (false, 3, Some(false), None),
                (false, 4, None, None),
                (false, 5, None, Some(3)),
            ],
        );
        check(policy(1, 0), &[(false, 0, Some(false), Some(1))]);
        // Zero never kills.
        check(
            policy(0, 0),
            &[(false, 0, Some(false), None), (false, 100, None, None)],
        );
    }

    #[test]
    fn failures_in_the_grace_period_count_only_after_a_success() {
        check(
            policy(2, 10),
            &[
                (false, 0, None, None),
                (false, 5, None, None),
                (false, 9, None, None),
                // The grace period is over.
                (false, 10, Some(false), None),
                (false, 11, None, Some(2)),
            ],
        );
        check(
            policy(2, 10),
            &[
                (false, 1, None, None),
                (true, 2, Some(true), None),
                // After a success, failures count even within the grace period.
                (false, 3, Some(false), None),
                (false, 4, None, Some(2)),
            ],
        );
    }

    #[test]
    fn policy_defaults_follow_mesos() {
        assert_eq!(
            HealthPolicy::of(&HealthCheck::default()),
            HealthPolicy {
                delay: Duration::from_secs(15),
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(20),
                consecutive_failures: 3,
                grace_period: Duration::from_secs(10),
            }
        );
        let negative = HealthCheck {
            delay_seconds: Some(-1.0),
            interval_seconds: Some(0.5),
            ..Default::default()
        };
        let policy = HealthPolicy::of(&negative);
        assert_eq!(policy.delay, Duration::ZERO);
        assert_eq!(policy.interval, Duration::from_millis(500));
    }

    #[test]
    fn command_checks_use_the_shell_unless_told_not_to() {
        let with = |command: Option<CommandInfo>| HealthCheck {
            r#type: Some(Type::Command as i32),
            command,
            ..Default::default()
        };
        let ok = |check: HealthCheck, argv: &[&str]| {
            assert_eq!(command_argv(&check).unwrap(), argv);
        };
        ok(
            with(Some(CommandInfo {
                value: Some("test -f /ok".into()),
                ..Default::default()
            })),
            &["sh", "-c", "test -f /ok"],
        );
        ok(
            with(Some(CommandInfo {
                shell: Some(false),
                value: Some("/bin/check".into()),
                arguments: vec!["check".into(), "--quick".into()],
                ..Default::default()
            })),
            &["check", "--quick"],
        );
        ok(
            with(Some(CommandInfo {
                shell: Some(false),
                value: Some("/bin/check".into()),
                ..Default::default()
            })),
            &["/bin/check"],
        );
        assert!(command_argv(&with(None)).is_err());
        assert!(command_argv(&with(Some(CommandInfo::default()))).is_err());
    }

    #[test]
    fn http_statuses() {
        let check = |status: u16, statuses: &[u32], healthy: bool| {
            assert_eq!(status_is_healthy(status, statuses), healthy, "{status}");
        };
        check(200, &[], true);
        check(302, &[], true);
        check(399, &[], true);
        check(404, &[], false);
        check(500, &[], false);
        check(503, &[200, 503], true);
        check(200, &[204], false);
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status_line("HTTP/1.0 500"), Some(500));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 abc"), None);
        assert_eq!(parse_status_line(""), None);
    }

    #[tokio::test]
    async fn http_check_reads_the_status_of_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buffer = [0u8; 1024];
                let n = stream.read(&mut buffer).await.unwrap();
                assert!(buffer[..n].starts_with(b"GET /health HTTP/1.1\r\n"));
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let info = HttpCheckInfo {
            port: u32::from(port),
            path: Some("health".into()),
            ..Default::default()
        };
        assert_eq!(http_check(&info, &ProbeTarget::local()).await, Ok(()));
        // A published host port is translated to the container's port.
        let bridged = ProbeTarget {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: BTreeMap::from([(9, port)]),
        };
        let published = HttpCheckInfo {
            port: 9,
            ..info.clone()
        };
        assert_eq!(
            http_check(&published, &bridged).await,
            Err(format!("GET /health on port {port} answered 503"))
        );
    }
}
