//! Periodic stats of a running task for the scheduler: a one-shot engine sample, the
//! facts printed by the task's facts command, sent as `ExecutorMessage{stats}`.
//!
//! The parsing of facts and the making of a `TaskStats` are plain functions; the
//! loop [`report_stats`] runs inside the task's worker for as long as the container
//! runs, each sample in an `Executor::Stats` span that is a child of the task's
//! launch span. Every failure is logged and the next interval tries again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mesos_stateful_proto::stateful::{executor_message, ExecutorMessage, TaskStats};
use mesos_stateful_proto::v1::Label;
use mesos_stateful_proto::Message;
use tracing::{debug, info_span, warn, Instrument};

use crate::docker::{cpu_percent, DockerClient, StatsSample};
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

/// The `TaskStats` for `sample`, with the cpu use since `previous` when there is one.
pub fn task_stats(
    task_id: &str,
    sample: &StatsSample,
    previous: Option<&StatsSample>,
    facts: Vec<Label>,
    timestamp: f64,
) -> TaskStats {
    TaskStats {
        task_id: task_id.to_owned(),
        timestamp: Some(timestamp),
        cpu_percent: previous.and_then(|previous| cpu_percent(previous, sample)),
        memory_bytes: sample.memory_usage,
        memory_limit_bytes: sample.memory_limit,
        network_rx_bytes: Some(sample.network_rx_bytes),
        network_tx_bytes: Some(sample.network_tx_bytes),
        block_read_bytes: Some(sample.block_read_bytes),
        block_write_bytes: Some(sample.block_write_bytes),
        facts,
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

/// Samples container `id` of task `task_id` every `interval`, runs `facts_command`
/// (when not empty, bounded by the interval) and hands each encoded stats message to
/// `send`. Never returns; the worker drops it when the container stops. Every sample
/// (engine stats and facts) runs in an `Executor::Stats` span, child of `parent`.
pub async fn report_stats(
    docker: &DockerClient,
    id: &str,
    task_id: &str,
    interval: Duration,
    facts_command: &[String],
    parent: &SpanParent,
    send: impl Fn(Bytes),
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<StatsSample> = None;
    loop {
        ticks.tick().await;
        let span = info_span!(parent: None, "Executor::Stats", task_id, container_id = id);
        parent.adopt(&span);
        let sampled = async {
            let sample = match docker.container_stats(id).await {
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
        let stats = task_stats(task_id, &sample, previous.as_ref(), facts, unix_seconds());
        debug!(task = %task_id, cpu_percent = ?stats.cpu_percent, "stats sample");
        send(stats_message(stats));
        previous = Some(sample);
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
    fn stats_carry_the_sample_and_cpu_since_the_previous_one() {
        let sample = |cpu, system| StatsSample {
            cpu_total_usage: cpu,
            system_cpu_usage: Some(system),
            online_cpus: 2,
            memory_usage: Some(100),
            memory_limit: Some(1000),
            network_rx_bytes: 1,
            network_tx_bytes: 2,
            block_read_bytes: 3,
            block_write_bytes: 4,
            ..Default::default()
        };
        let first = task_stats("t", &sample(0, 0), None, vec![], 1.5);
        assert_eq!(
            first,
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
            }
        );
        let second = task_stats(
            "t",
            &sample(50, 100),
            Some(&sample(0, 0)),
            vec![label("role", "master")],
            2.5,
        );
        assert_eq!(second.cpu_percent, Some(100.0));
        assert_eq!(second.facts, [label("role", "master")]);
        let decoded = ExecutorMessage::decode(stats_message(second.clone())).unwrap();
        assert_eq!(
            decoded.payload,
            Some(executor_message::Payload::Stats(second))
        );
    }
}
