//! Measures the executor's Docker client against the docker CLI and prints a Markdown
//! table: container create + start latency (ours and the CLI's, interleaved), the
//! latency of one-shot stats samples, and the latency of a stats sample asked of a
//! task's `StatsSampler` (which keeps a streaming stats connection open).
//!
//! Run with `cargo run --release -p mesos-stateful-executor --example bench_docker
//! [IMAGE] [N]`. The image must be local and have `sleep` on its path; the default is
//! the busybox image the integration tests import (`cargo test -p
//! mesos-stateful-executor --test it` creates it). Every container created here is
//! labelled `mesos-stateful.bench` and removed before the program ends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mesos_stateful_executor::docker::{CreateContainer, DockerClient, DockerHost, RemoveOptions};
use mesos_stateful_executor::task::sampler::StatsSampler;

const DEFAULT_IMAGE: &str = "mesos-stateful-it/busybox:1";
const LABEL: &str = "mesos-stateful.bench";
const STATS_SAMPLES: usize = 100;
/// Pause between two samples asked of the sampler, so that the measurement spans
/// several of the engine's one-second updates.
const SAMPLER_PAUSE: Duration = Duration::from_millis(25);

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The `q` quantile (0..=1) of `values` by the nearest-rank method.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn docker_cli(args: &[&str]) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .context("cannot run the docker cli")?;
    if !output.status.success() {
        bail!(
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

async fn remove(docker: &DockerClient, id: &str) {
    let force = RemoveOptions {
        force: true,
        volumes: true,
    };
    if let Err(err) = docker.remove_container(id, force).await {
        eprintln!("cannot remove container {id}: {err}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let image = args.next().unwrap_or_else(|| DEFAULT_IMAGE.to_owned());
    let n: usize = match args.next() {
        Some(n) => n.parse().context("N must be a number")?,
        None => 20,
    };
    let docker = DockerClient::connect(DockerHost::default()).await?;
    if !docker.image_exists(&image).await? {
        bail!("image {image} is not local; run the executor's integration tests first or name another image");
    }
    let spec = CreateContainer {
        image: image.clone(),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        labels: BTreeMap::from([(LABEL.to_owned(), "1".to_owned())]),
        ..Default::default()
    };
    let run = uuid::Uuid::new_v4().simple().to_string();

    // Warm-up: one of each, not counted.
    let warm = format!("bench-{run}-warm");
    let created = docker.create_container(&warm, &spec).await?;
    docker.start_container(&created.id).await?;
    remove(&docker, &created.id).await;

    let (mut ours, mut cli) = (Vec::new(), Vec::new());
    for i in 0..n {
        let name = format!("bench-{run}-ours-{i}");
        let started = Instant::now();
        let created = docker.create_container(&name, &spec).await?;
        docker.start_container(&created.id).await?;
        ours.push(millis(started.elapsed()));
        remove(&docker, &created.id).await;

        let name = format!("bench-{run}-cli-{i}");
        let label = format!("{LABEL}=1");
        let started = Instant::now();
        docker_cli(&[
            "create", "--name", &name, "--label", &label, &image, "sleep", "300",
        ])
        .await?;
        docker_cli(&["start", &name]).await?;
        cli.push(millis(started.elapsed()));
        remove(&docker, &name).await;
    }

    let name = format!("bench-{run}-stats");
    let created = docker.create_container(&name, &spec).await?;
    docker.start_container(&created.id).await?;
    let mut stats = Vec::new();
    let mut failure = None;
    for _ in 0..STATS_SAMPLES {
        let started = Instant::now();
        match docker.container_stats(&created.id).await {
            Ok(_) => stats.push(millis(started.elapsed())),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    // The task's sampler: time to its first streamed sample, then the latency of
    // asking it for a sample.
    let started = Instant::now();
    let sampler = StatsSampler::start(docker.clone(), &created.id);
    while sampler.fresh().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("no streamed stats sample within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first_streamed = millis(started.elapsed());
    let mut sampled = Vec::new();
    for _ in 0..STATS_SAMPLES {
        tokio::time::sleep(SAMPLER_PAUSE).await;
        let started = Instant::now();
        match sampler.sample().await {
            Ok(_) => sampled.push(millis(started.elapsed())),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    drop(sampler);
    remove(&docker, &created.id).await;
    if let Some(err) = failure {
        return Err(err.into());
    }

    println!("| measurement | n | p50 ms | p90 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    // Sub-millisecond latencies keep three decimals (microseconds).
    let row = |label: &str, values: &[f64]| {
        let decimals = if quantile(values, 0.99) < 1.0 { 3 } else { 1 };
        println!(
            "| {label} | {} | {:.*} | {:.*} | {:.*} |",
            values.len(),
            decimals,
            quantile(values, 0.5),
            decimals,
            quantile(values, 0.9),
            decimals,
            quantile(values, 0.99)
        );
    };
    row("create + start, our client", &ours);
    row("create + start, docker CLI", &cli);
    row("one-shot stats sample, our client", &stats);
    row("stats sample from the task's sampler", &sampled);
    row("sampler start to first streamed sample", &[first_streamed]);
    println!();
    println!(
        "api version {}, image {image}, {} cpus",
        docker.api_version(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}
