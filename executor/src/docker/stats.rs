//! Resource usage samples (`GET /containers/{id}/stats`) and the CPU percentage
//! computed between two of them.
//!
//! A one-shot sample ([`DockerClient::container_stats`]) waits for the engine's
//! collector (about a second on Docker 20.10 after the first request), so a running
//! task keeps a [`StatsStream`] open instead (`stream=true`): the engine pushes one
//! sample per second on it. CPU% is computed between two samples with
//! [`cpu_percent`].

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, StatusCode};
use serde::Deserialize;

use super::client::{encode, expect, read_error_body, ApiVersion, DockerClient};
use super::line_stream::JsonLineStream;
use super::DockerError;

/// Longest silence accepted on a stats stream before it counts as broken; the
/// engine sends a sample every second.
pub const STATS_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first API version with `one-shot=true`.
const ONE_SHOT_API_VERSION: ApiVersion = ApiVersion::new(1, 41);

/// One resource usage sample of a container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSample {
    /// When the engine read the sample (RFC 3339).
    pub read: String,
    /// CPU time the container used since it started, in nanoseconds.
    pub cpu_total_usage: u64,
    /// CPU time the whole host used since boot, in nanoseconds (absent on some
    /// platforms and for stopped containers).
    pub system_cpu_usage: Option<u64>,
    /// The CPUs online (`online_cpus`, else the length of `percpu_usage`).
    pub online_cpus: u32,
    /// Memory in use minus the page cache (`cache` on cgroup v1, `inactive_file` on v2).
    pub memory_usage: Option<u64>,
    /// The container's memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// Bytes received on all network interfaces.
    pub network_rx_bytes: u64,
    /// Bytes sent on all network interfaces.
    pub network_tx_bytes: u64,
    /// Bytes read from block devices.
    pub block_read_bytes: u64,
    /// Bytes written to block devices.
    pub block_write_bytes: u64,
    /// Processes and threads in the container.
    pub pids: Option<u64>,
}

/// The CPU use between two samples of the same container, in percent of one CPU
/// (a container busy on two CPUs shows 200): `cpu_delta / system_delta * cpus * 100`.
/// `None` when the samples cannot be compared: no system time, time not moving
/// forward, or a counter that went back (the container restarted).
pub fn cpu_percent(previous: &StatsSample, current: &StatsSample) -> Option<f64> {
    let cpu_delta = current
        .cpu_total_usage
        .checked_sub(previous.cpu_total_usage)?;
    let system_delta = current
        .system_cpu_usage?
        .checked_sub(previous.system_cpu_usage?)?;
    if system_delta == 0 || current.online_cpus == 0 {
        return None;
    }
    Some(cpu_delta as f64 / system_delta as f64 * f64::from(current.online_cpus) * 100.0)
}

#[derive(Debug, Default, Deserialize)]
struct RawStats {
    #[serde(default)]
    read: String,
    #[serde(default)]
    cpu_stats: RawCpuStats,
    #[serde(default)]
    memory_stats: RawMemoryStats,
    #[serde(default)]
    networks: Option<BTreeMap<String, RawNetwork>>,
    #[serde(default)]
    blkio_stats: RawBlkio,
    #[serde(default)]
    pids_stats: RawPids,
}

#[derive(Debug, Default, Deserialize)]
struct RawCpuStats {
    #[serde(default)]
    cpu_usage: RawCpuUsage,
    #[serde(default)]
    system_cpu_usage: Option<u64>,
    #[serde(default)]
    online_cpus: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCpuUsage {
    #[serde(default)]
    total_usage: u64,
    #[serde(default)]
    percpu_usage: Option<Vec<u64>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMemoryStats {
    #[serde(default)]
    usage: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    stats: Option<BTreeMap<String, u64>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawNetwork {
    #[serde(default)]
    rx_bytes: u64,
    #[serde(default)]
    tx_bytes: u64,
}

#[derive(Debug, Default, Deserialize)]
struct RawBlkio {
    #[serde(default)]
    io_service_bytes_recursive: Option<Vec<RawBlkioEntry>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawBlkioEntry {
    #[serde(default)]
    op: String,
    #[serde(default)]
    value: u64,
}

#[derive(Debug, Default, Deserialize)]
struct RawPids {
    #[serde(default)]
    current: Option<u64>,
}

impl From<RawStats> for StatsSample {
    fn from(raw: RawStats) -> StatsSample {
        let online_cpus = raw
            .cpu_stats
            .online_cpus
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                raw.cpu_stats
                    .cpu_usage
                    .percpu_usage
                    .as_ref()
                    .map_or(0, |per_cpu| {
                        u32::try_from(per_cpu.len()).unwrap_or(u32::MAX)
                    })
            });
        let memory = &raw.memory_stats;
        let cache = memory.stats.as_ref().and_then(|stats| {
            stats
                .get("cache")
                .or_else(|| stats.get("inactive_file"))
                .copied()
        });
        let memory_usage = memory
            .usage
            .map(|usage| usage.saturating_sub(cache.unwrap_or(0)));
        let networks = raw.networks.unwrap_or_default();
        let blkio = raw
            .blkio_stats
            .io_service_bytes_recursive
            .unwrap_or_default();
        let block_total = |op: &str| -> u64 {
            blkio
                .iter()
                .filter(|entry| entry.op.eq_ignore_ascii_case(op))
                .map(|entry| entry.value)
                .sum()
        };
        StatsSample {
            read: raw.read,
            cpu_total_usage: raw.cpu_stats.cpu_usage.total_usage,
            system_cpu_usage: raw.cpu_stats.system_cpu_usage,
            online_cpus,
            memory_usage,
            memory_limit: memory.limit,
            network_rx_bytes: networks.values().map(|n| n.rx_bytes).sum(),
            network_tx_bytes: networks.values().map(|n| n.tx_bytes).sum(),
            block_read_bytes: block_total("read"),
            block_write_bytes: block_total("write"),
            pids: raw.pids_stats.current,
        }
    }
}

/// Parses a stats answer; every missing or null field is optional.
fn parse_stats(body: &[u8]) -> Result<StatsSample, serde_json::Error> {
    serde_json::from_slice::<RawStats>(body).map(StatsSample::from)
}

impl DockerClient {
    /// Takes one resource usage sample (`GET /containers/{id}/stats?stream=false`,
    /// with `one-shot=true` from API 1.41 on so that the engine answers at once).
    pub async fn container_stats(&self, id: &str) -> Result<StatsSample, DockerError> {
        let mut path = format!("/containers/{}/stats?stream=false", encode(id, b""));
        if self.api_version() >= ONE_SHOT_API_VERSION {
            path.push_str("&one-shot=true");
        }
        let answer = self
            .call(Method::GET, &path, true, None, Some(self.request_timeout()))
            .await?;
        let answer = expect(answer, &[StatusCode::OK], "GET", &path)?;
        parse_stats(&answer.body).map_err(|err| DockerError::InvalidResponse {
            method: "GET".into(),
            path: path.clone(),
            reason: err.to_string(),
        })
    }
}

/// An open `GET /containers/{id}/stats?stream=true` answer: one sample per line, as
/// the engine produces them. [`JsonLineStream::next`] gives the next sample, `None`
/// when the container stopped; a stream silent for [`STATS_STREAM_IDLE_TIMEOUT`] is
/// an error.
pub type StatsStream = JsonLineStream<StatsSample>;

impl DockerClient {
    /// Opens a stats stream of container `id` (`stream=true`); the engine then sends
    /// a sample every second until the container stops or the stream is dropped.
    pub async fn stream_stats(&self, id: &str) -> Result<StatsStream, DockerError> {
        let path = format!("/containers/{}/stats?stream=true", encode(id, b""));
        let response = self.stream(Method::GET, &path, None, &[]).await?;
        if response.status() != StatusCode::OK {
            return Err(read_error_body(response, "GET", &path).await);
        }
        Ok(JsonLineStream::new(
            path,
            response.into_body(),
            Some(STATS_STREAM_IDLE_TIMEOUT),
            "stats sample",
            parse_stats,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu: u64, system: Option<u64>, cpus: u32) -> StatsSample {
        StatsSample {
            cpu_total_usage: cpu,
            system_cpu_usage: system,
            online_cpus: cpus,
            ..Default::default()
        }
    }

    #[test]
    fn cpu_percent_between_samples() {
        let check = |previous: StatsSample, current: StatsSample, expected: Option<f64>| {
            let got = cpu_percent(&previous, &current);
            match (got, expected) {
                (Some(got), Some(expected)) => {
                    assert!((got - expected).abs() < 1e-9, "{got} != {expected}")
                }
                _ => assert_eq!(got, expected),
            }
        };
        // Half of the host's time on a 2-CPU host is one whole CPU.
        check(sample(0, Some(0), 2), sample(50, Some(100), 2), Some(100.0));
        check(
            sample(100, Some(1000), 4),
            sample(125, Some(2000), 4),
            Some(10.0),
        );
        check(sample(7, Some(10), 1), sample(7, Some(20), 1), Some(0.0));
        // Two CPUs fully busy on a 2-CPU host.
        check(
            sample(0, Some(0), 2),
            sample(100, Some(100), 2),
            Some(200.0),
        );
        // No system time, no progress, a restart, or no CPU count: nothing to say.
        check(sample(0, None, 2), sample(50, Some(100), 2), None);
        check(sample(0, Some(100), 2), sample(50, Some(100), 2), None);
        check(sample(0, Some(200), 2), sample(50, Some(100), 2), None);
        check(sample(100, Some(0), 2), sample(50, Some(100), 2), None);
        check(sample(0, Some(0), 0), sample(50, Some(100), 0), None);
    }

    #[test]
    fn parses_cgroup_v1_stats() {
        let body = br#"{
            "read": "2026-11-22T05:00:00.5Z",
            "pids_stats": {"current": 3},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 100},
                {"major": 8, "minor": 16, "op": "Read", "value": 1},
                {"major": 8, "minor": 0, "op": "Total", "value": 4197}
            ]},
            "cpu_stats": {"cpu_usage": {"total_usage": 500, "percpu_usage": [200, 300]},
                          "system_cpu_usage": 9000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}},
            "memory_stats": {"usage": 10000, "limit": 67108864,
                             "stats": {"cache": 4000, "inactive_file": 1000}},
            "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20},
                         "eth1": {"rx_bytes": 1, "tx_bytes": 2}}
        }"#;
        assert_eq!(
            parse_stats(body).unwrap(),
            StatsSample {
                read: "2026-11-22T05:00:00.5Z".into(),
                cpu_total_usage: 500,
                system_cpu_usage: Some(9000),
                online_cpus: 2,
                memory_usage: Some(6000),
                memory_limit: Some(67108864),
                network_rx_bytes: 11,
                network_tx_bytes: 22,
                block_read_bytes: 4097,
                block_write_bytes: 100,
                pids: Some(3),
            }
        );
    }

    #[test]
    fn parses_sparse_stats() {
        // cgroup v2 without percpu or cache, host networking, and a stopped container.
        let v2 = br#"{"cpu_stats": {"cpu_usage": {"total_usage": 5, "percpu_usage": [1, 2, 2]},
                      "system_cpu_usage": 9},
                      "memory_stats": {"usage": 100, "stats": {"inactive_file": 30}},
                      "blkio_stats": {"io_service_bytes_recursive": null}}"#;
        let parsed = parse_stats(v2).unwrap();
        assert_eq!(parsed.online_cpus, 3);
        assert_eq!(parsed.memory_usage, Some(70));
        assert_eq!(parsed.network_rx_bytes, 0);
        assert_eq!(parsed.block_read_bytes, 0);
        let stopped = parse_stats(br#"{"read": "0001-01-01T00:00:00Z", "cpu_stats": {"cpu_usage": {"total_usage": 0}}, "memory_stats": {}}"#).unwrap();
        assert_eq!(stopped.system_cpu_usage, None);
        assert_eq!(stopped.memory_usage, None);
        assert!(parse_stats(b"{\"cpu_stats\": 1}").is_err());
    }
}
