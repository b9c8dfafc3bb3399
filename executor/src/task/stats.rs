//! Periodic stats of a running task for the scheduler: the latest engine sample of
//! the task's [`StatsSampler`], the facts printed by the task's facts command and the
//! count of failed health checks, sent as `ExecutorMessage{stats}`.
//!
//! The parsing of facts and the making of a `TaskStats` are plain functions; the
//! loop [`report_stats`] runs inside the task's worker for as long as the container
//! runs, each sample in an `Executor::Stats` span that is a child of the task's
//! launch span. Every failure is logged and the next interval tries again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mesos_stateful_proto::stateful::{executor_message, ExecutorMessage, TaskStats};
use mesos_stateful_proto::v1::Label;
use mesos_stateful_proto::Message;
use tracing::{debug, info_span, warn, Instrument};

use super::sampler::{Sampled, StatsSampler};
use crate::docker::DockerClient;
use crate::telemetry::SpanParent;

/// The stats interval when the spec names none.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest stats interval accepted.
pub const MIN_STATS_INTERVAL: Duration = Duration::from_millis(500);

/// The stats interval for a spec's `stats_interval_seconds`: the default when unset,
/// zero or invalid, and never below [`MIN_STATS_INTERVAL`].
pub fn stats_interval(seconds: Option<f64>) -> Duration {
    match seconds {
        Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
            Duration::from_secs_f64(seconds.min(1e9)).max(MIN_STATS_INTERVAL)
        }
        _ => DEFAULT_STATS_INTERVAL,
    }
}

/// The facts in a facts command's output: one per `key:value` line (split at the
/// first colon, both sides trimmed), skipping blank lines, `#` comments and lines
/// without a colon or with an empty key.
pub fn parse_facts(output: &str) -> Vec<Label> {
    output
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim(), value.trim()))
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| Label {
            key: key.to_owned(),
            value: Some(value.to_owned()),
        })
        .collect()
}

/// The `TaskStats` for `sampled`, with the task's failed health checks when it has
/// a health check.
pub fn task_stats(
    task_id: &str,
    sampled: &Sampled,
    facts: Vec<Label>,
    health_failures: Option<u64>,
    timestamp: f64,
) -> TaskStats {
    let sample = &sampled.sample;
    TaskStats {
        task_id: task_id.to_owned(),
        timestamp: Some(timestamp),
        cpu_percent: sampled.cpu_percent,
        memory_bytes: sample.memory_usage,
        memory_limit_bytes: sample.memory_limit,
        network_rx_bytes: Some(sample.network_rx_bytes),
        network_tx_bytes: Some(sample.network_tx_bytes),
        block_read_bytes: Some(sample.block_read_bytes),
        block_write_bytes: Some(sample.block_write_bytes),
        facts,
        health_failures,
    }
}

/// The bytes of an executor MESSAGE carrying `stats`.
pub fn stats_message(stats: TaskStats) -> Bytes {
    Bytes::from(
        ExecutorMessage {
            payload: Some(executor_message::Payload::Stats(stats)),
        }
        .encode_to_vec(),
    )
}

/// What [`report_stats`] samples and where it sends the result.
#[derive(Debug)]
pub struct StatsSource<'a> {
    /// The client running the facts command.
    pub docker: &'a DockerClient,
    /// The container's stats.
    pub sampler: &'a StatsSampler,
    /// The container's id.
    pub id: &'a str,
    /// The task's id.
    pub task_id: &'a str,
    /// The task's failed health checks, when it has a health check.
    pub health_failures: Option<&'a AtomicU64>,
}

/// Samples the container of `source` every `interval`, runs `facts_command` (when
/// not empty, bounded by the interval) and hands each encoded stats message to
/// `send`. Never returns; the worker drops it when the container stops. Every sample
/// (engine stats and facts) runs in an `Executor::Stats` span, child of `parent`.
pub async fn report_stats(
    source: StatsSource<'_>,
    interval: Duration,
    facts_command: &[String],
    parent: &SpanParent,
    send: impl Fn(Bytes),
) {
    let StatsSource {
        docker,
        sampler,
        id,
        task_id,
        health_failures,
    } = source;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let span = info_span!(parent: None, "Executor::Stats", task_id, container_id = id);
        parent.adopt(&span);
        let sampled = async {
            let sample = match sampler.sample().await {
                Ok(sample) => sample,
                Err(err) => {
                    warn!(task = %task_id, error = %err, "cannot sample the container's stats");
                    return None;
                }
            };
            let facts = if facts_command.is_empty() {
                Vec::new()
            } else {
                run_facts_command(docker, id, task_id, interval, facts_command).await
            };
            Some((sample, facts))
        }
        .instrument(span)
        .await;
        let Some((sample, facts)) = sampled else {
            continue;
        };
        let failures = health_failures.map(|count| count.load(Ordering::Relaxed));
        let stats = task_stats(task_id, &sample, facts, failures, unix_seconds());
        debug!(task = %task_id, cpu_percent = ?stats.cpu_percent, "stats sample");
        send(stats_message(stats));
    }
}

async fn run_facts_command(
    docker: &DockerClient,
    id: &str,
    task_id: &str,
    timeout: Duration,
    command: &[String],
) -> Vec<Label> {
    match tokio::time::timeout(timeout, docker.exec(id, command)).await {
        Ok(Ok(result)) => {
            if result.exit_code != 0 {
                debug!(task = %task_id, exit_code = result.exit_code, "facts command failed");
            }
            parse_facts(&String::from_utf8_lossy(&result.stdout))
        }
        Ok(Err(err)) => {
            warn!(task = %task_id, error = %err, "cannot run the facts command");
            Vec::new()
        }
        Err(_) => {
            warn!(task = %task_id, ?timeout, "facts command did not finish in time");
            Vec::new()
        }
    }
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::StatsSample;

    fn label(key: &str, value: &str) -> Label {
        Label {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    #[test]
    fn facts_are_key_value_lines() {
        let check = |output: &str, expected: Vec<Label>| {
            assert_eq!(parse_facts(output), expected, "{output:?}");
        };
        check("", vec![]);
        check("role:master\n", vec![label("role", "master")]);
        check(
            "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\r\n",
            vec![label("role", "master"), label("connected_slaves", "1")],
        );
        check(
            "no colon here\n  # indented comment\nslave0:ip=10.0.0.1,port=6379\n",
            vec![label("slave0", "ip=10.0.0.1,port=6379")],
        );
        check(
            " key : value \n:empty key\nempty value:\n",
            vec![label("key", "value"), label("empty value", "")],
        );
    }

    #[test]
    fn stats_intervals_are_clamped() {
        let check = |seconds: Option<f64>, expected: Duration| {
            assert_eq!(stats_interval(seconds), expected, "{seconds:?}");
        };
        check(None, DEFAULT_STATS_INTERVAL);
        check(Some(0.0), DEFAULT_STATS_INTERVAL);
        check(Some(-3.0), DEFAULT_STATS_INTERVAL);
        check(Some(f64::INFINITY), DEFAULT_STATS_INTERVAL);
        check(Some(0.1), MIN_STATS_INTERVAL);
        check(Some(0.5), Duration::from_millis(500));
        check(Some(2.0), Duration::from_secs(2));
    }

    #[test]
    fn stats_carry_the_sample_its_cpu_use_and_health_failures() {
        let sample = StatsSample {
            cpu_total_usage: 50,
            system_cpu_usage: Some(100),
            online_cpus: 2,
            memory_usage: Some(100),
            memory_limit: Some(1000),
            network_rx_bytes: 1,
            network_tx_bytes: 2,
            block_read_bytes: 3,
            block_write_bytes: 4,
            ..Default::default()
        };
        let first = Sampled {
            sample: sample.clone(),
            cpu_percent: None,
        };
        assert_eq!(
            task_stats("t", &first, vec![], None, 1.5),
            TaskStats {
                task_id: "t".into(),
                timestamp: Some(1.5),
                cpu_percent: None,
                memory_bytes: Some(100),
                memory_limit_bytes: Some(1000),
                network_rx_bytes: Some(1),
                network_tx_bytes: Some(2),
                block_read_bytes: Some(3),
                block_write_bytes: Some(4),
                facts: vec![],
                health_failures: None,
            }
        );
        let second = Sampled {
            sample,
            cpu_percent: Some(100.0),
        };
        let stats = task_stats("t", &second, vec![label("role", "master")], Some(3), 2.5);
        assert_eq!(stats.cpu_percent, Some(100.0));
        assert_eq!(stats.facts, [label("role", "master")]);
        assert_eq!(stats.health_failures, Some(3));
        let decoded = ExecutorMessage::decode(stats_message(stats.clone())).unwrap();
        assert_eq!(
            decoded.payload,
            Some(executor_message::Payload::Stats(stats))
        );
    }
}
