//! Measures the executor's Docker client against the docker CLI and prints a Markdown
//! table: container create + start latency (ours and the CLI's, interleaved) and the
//! latency of one-shot stats samples.
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

const DEFAULT_IMAGE: &str = "mesos-stateful-it/busybox:1";
const LABEL: &str = "mesos-stateful.bench";
const STATS_SAMPLES: usize = 100;

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
    remove(&docker, &created.id).await;
    if let Some(err) = failure {
        return Err(err.into());
    }

    println!("| measurement | n | p50 ms | p90 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    let row = |label: &str, values: &[f64]| {
        println!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} |",
            values.len(),
            quantile(values, 0.5),
            quantile(values, 0.9),
            quantile(values, 0.99)
        );
    };
    row("create + start, our client", &ours);
    row("create + start, docker CLI", &cli);
    row("one-shot stats sample, our client", &stats);
    println!();
    println!(
        "api version {}, image {image}, {} cpus",
        docker.api_version(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}
