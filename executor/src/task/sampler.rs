//! The latest stats of a running container, kept by one streaming stats connection.
//!
//! A one-shot stats request waits for the engine's collector (about a second), so a
//! [`StatsSampler`] keeps a `stream=true` stats connection open for as long as the
//! task runs and remembers the last two samples it received; asking it for a sample
//! then costs no engine round trip. The stream is reopened with a growing pause
//! (up to [`MAX_RECONNECT_PAUSE`]) when it drops or cannot be opened; while no fresh
//! streamed sample is at hand, [`StatsSampler::sample`] falls back to a one-shot
//! request.
//!
//! [`SampleWindow`] is the plain bookkeeping (the last two samples, their age and the
//! CPU use between them); the sampler is its async shell.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::docker::{cpu_percent, DockerClient, DockerError, StatsSample};

/// A streamed sample older than this is stale and a one-shot sample is taken
/// instead (the engine streams one per second).
pub const MAX_SAMPLE_AGE: Duration = Duration::from_secs(3);
/// The first pause before reopening a dropped stats stream; it doubles per failure.
pub const MIN_RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause before reopening a dropped stats stream.
pub const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// A sample and the CPU use since the sample before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The engine's sample.
    pub sample: StatsSample,
    /// CPU use between the previous sample and this one, in Docker's percent; `None`
    /// for the first sample or when the two cannot be compared.
    pub cpu_percent: Option<f64>,
}

/// The last two samples of a container and when the last one arrived.
#[derive(Debug, Clone, Default)]
pub struct SampleWindow {
    latest: Option<(StatsSample, Instant)>,
    previous: Option<StatsSample>,
}

impl SampleWindow {
    /// Records `sample`, received at `at`.
    pub fn push(&mut self, sample: StatsSample, at: Instant) {
        if let Some((latest, _)) = self.latest.take() {
            self.previous = Some(latest);
        }
        self.latest = Some((sample, at));
    }

    /// The latest sample if it arrived at most `max_age` before `now`, with the CPU
    /// use since the one before it.
    pub fn fresh(&self, now: Instant, max_age: Duration) -> Option<Sampled> {
        let (sample, at) = self.latest.as_ref()?;
        if now.saturating_duration_since(*at) > max_age {
            return None;
        }
        Some(Sampled {
            sample: sample.clone(),
            cpu_percent: self
                .previous
                .as_ref()
                .and_then(|previous| cpu_percent(previous, sample)),
        })
    }
}

/// The pause before the `failures`-th attempt in a row to reopen the stream.
pub fn reconnect_pause(failures: u32) -> Duration {
    MIN_RECONNECT_PAUSE
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_RECONNECT_PAUSE)
}

/// Keeps the stats of one running container at hand. Dropping it closes its stream.
#[derive(Debug)]
pub struct StatsSampler {
    docker: DockerClient,
    id: String,
    /// Shared with the streaming task, which writes every sample it receives; locked
    /// only to copy a sample in or out, never across an await.
    window: Arc<Mutex<SampleWindow>>,
    /// The streaming task; aborted when the sampler is dropped.
    streaming: JoinHandle<()>,
}

impl StatsSampler {
    /// Starts streaming the stats of container `id`.
    pub fn start(docker: DockerClient, id: &str) -> StatsSampler {
        let window = Arc::new(Mutex::new(SampleWindow::default()));
        let streaming = tokio::spawn(stream_samples(
            docker.clone(),
            id.to_owned(),
            window.clone(),
        ));
        StatsSampler {
            docker,
            id: id.to_owned(),
            window,
            streaming,
        }
    }

    /// The latest streamed sample when it is fresh, else a one-shot sample (which
    /// takes about a second on Docker 20.10).
    pub async fn sample(&self) -> Result<Sampled, DockerError> {
        if let Some(sampled) = self.fresh() {
            return Ok(sampled);
        }
        let sample = self.docker.container_stats(&self.id).await?;
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.push(sample, Instant::now());
        window
            .fresh(Instant::now(), Duration::MAX)
            .ok_or_else(|| DockerError::InvalidResponse {
                method: "GET".into(),
                path: format!("/containers/{}/stats", self.id),
                reason: "no sample recorded".into(),
            })
    }

    /// The latest streamed sample if it is fresh.
    pub fn fresh(&self) -> Option<Sampled> {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fresh(Instant::now(), MAX_SAMPLE_AGE)
    }
}

impl Drop for StatsSampler {
    fn drop(&mut self) {
        self.streaming.abort();
    }
}

/// Reads the stats stream of container `id` into `window`, reopening it whenever it
/// ends or breaks. Runs until aborted.
async fn stream_samples(docker: DockerClient, id: String, window: Arc<Mutex<SampleWindow>>) {
    let mut failures = 0u32;
    loop {
        match docker.stream_stats(&id).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Ok(Some(sample)) => {
                        failures = 0;
                        window
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(sample, Instant::now());
                    }
                    Ok(None) => {
                        debug!(container = %id, "stats stream ended");
                        break;
                    }
                    Err(err) => {
                        debug!(container = %id, error = %err, "stats stream broke");
                        break;
                    }
                }
            },
            Err(err) => debug!(container = %id, error = %err, "cannot open the stats stream"),
        }
        tokio::time::sleep(reconnect_pause(failures)).await;
        failures = failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu: u64, system: u64) -> StatsSample {
        StatsSample {
            cpu_total_usage: cpu,
            system_cpu_usage: Some(system),
            online_cpus: 1,
            ..Default::default()
        }
    }

    #[test]
    fn window_serves_fresh_samples_with_cpu_between_the_last_two() {
        let mut window = SampleWindow::default();
        let start = Instant::now();
        assert_eq!(window.fresh(start, MAX_SAMPLE_AGE), None);
        window.push(sample(10, 100), start);
        assert_eq!(
            window.fresh(start, MAX_SAMPLE_AGE),
            Some(Sampled {
                sample: sample(10, 100),
                cpu_percent: None
            })
        );
        let later = start + Duration::from_secs(1);
        window.push(sample(60, 200), later);
        let fresh = window.fresh(later, MAX_SAMPLE_AGE).unwrap();
        assert_eq!(fresh.sample, sample(60, 200));
        assert_eq!(fresh.cpu_percent, Some(50.0));
        // Too old: the caller must ask the engine.
        assert_eq!(
            window.fresh(later + Duration::from_secs(4), MAX_SAMPLE_AGE),
            None
        );
        assert!(window
            .fresh(later + Duration::from_secs(3), MAX_SAMPLE_AGE)
            .is_some());
    }

    #[test]
    fn reconnect_pauses_double_up_to_the_cap() {
        let check = |failures: u32, millis: u64| {
            assert_eq!(
                reconnect_pause(failures),
                Duration::from_millis(millis),
                "{failures}"
            );
        };
        check(0, 250);
        check(1, 500);
        check(2, 1000);
        check(4, 4000);
        check(5, 5000);
        check(u32::MAX, 5000);
    }
}
