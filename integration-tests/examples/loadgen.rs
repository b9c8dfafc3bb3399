//! Load generator for the REST API of a real `mesos-stateful dev` on simulated agents:
//! creates (throughput, p50, p99) then `GET /v1/instances/{name}` (throughput, p50,
//! p99), with a fixed number of concurrent clients. Writes a Markdown report.
//!
//! ```sh
//! cargo build --release -p mesos-stateful-scheduler -p mesos-stateful-executor --bins
//! cargo run --release -p mesos-stateful-integration-tests --example loadgen -- \
//!     [--creates 500] [--gets 20000] [--concurrency 32] [--simulated-agents 8] \
//!     [--otel on|off] [--report target/loadgen.md] [--binary target/release/mesos-stateful]
//! ```
//!
//! With `--otel on` the scheduler exports every span by OTLP to a sink this program
//! runs (it answers 200 to every export), so the cost of tracing is measured without
//! a collector.

// A command-line tool: a panic with its message is how it reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
struct Settings {
    creates: usize,
    gets: usize,
    concurrency: usize,
    simulated_agents: usize,
    otel: bool,
    report: PathBuf,
    binary: PathBuf,
}

fn settings() -> anyhow::Result<Settings> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/loadgen → target/<profile>/mesos-stateful
    let default_binary = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("mesos-stateful"))
        .context("locating the binary")?;
    let mut settings = Settings {
        creates: 500,
        gets: 20_000,
        concurrency: 32,
        simulated_agents: 8,
        otel: false,
        report: PathBuf::from("target/loadgen.md"),
        binary: default_binary,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--creates" => settings.creates = value()?.parse()?,
            "--gets" => settings.gets = value()?.parse()?,
            "--concurrency" => settings.concurrency = value()?.parse::<usize>()?.max(1),
            "--simulated-agents" => settings.simulated_agents = value()?.parse()?,
            "--otel" => {
                settings.otel = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => bail!("--otel takes on or off, not {other}"),
                }
            }
            "--report" => settings.report = value()?.into(),
            "--binary" => settings.binary = value()?.into(),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(settings)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Answers 200 to every HTTP request: an OTLP endpoint that drops what it gets.
async fn otlp_sink(listener: tokio::net::TcpListener, exports: Arc<AtomicUsize>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let exports = exports.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                // One request: the head, then content-length bytes.
                let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buffer.len() < head_end + 4 + length {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
                buffer.drain(..head_end + 4 + length);
                exports.fetch_add(1, Ordering::Relaxed);
                let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Latencies of one phase.
#[derive(Debug)]
struct Phase {
    name: &'static str,
    wall: Duration,
    latencies: Vec<Duration>,
    failures: usize,
}

impl Phase {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} req/s | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            self.name,
            self.latencies.len(),
            self.latencies.len() as f64 / self.wall.as_secs_f64(),
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.percentile(1.0).as_secs_f64() * 1e3,
            self.failures,
        )
    }
}

/// Runs `total` requests made by `request(i)` over `concurrency` clients.
async fn run_phase<F, Fut>(
    name: &'static str,
    total: usize,
    concurrency: usize,
    request: F,
) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return (latencies, failures);
                }
                let sent = Instant::now();
                if request(i).await {
                    latencies.push(sent.elapsed());
                } else {
                    failures += 1;
                }
            }
        }));
    }
    let mut phase = Phase {
        name,
        wall: Duration::ZERO,
        latencies: Vec::new(),
        failures: 0,
    };
    for worker in workers {
        let (latencies, failures) = worker.await.unwrap();
        phase.latencies.extend(latencies);
        phase.failures += failures;
    }
    phase.wall = started.elapsed();
    phase
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let settings = settings()?;
    if !settings.binary.exists() {
        bail!(
            "{} is missing: build it first (cargo build --release -p mesos-stateful-scheduler --bins)",
            settings.binary.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let (api_port, mesos_port) = (free_port(), free_port());
    let api = format!("http://127.0.0.1:{api_port}");
    let exports = Arc::new(AtomicUsize::new(0));
    let mut command = Command::new(&settings.binary);
    command
        .args(["--log-format", "json", "dev", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{api_port}")])
        .args(["--mesos-listen", &format!("127.0.0.1:{mesos_port}")])
        .args(["--agents", "0", "--simulated-agents"])
        .arg(settings.simulated_agents.to_string())
        .args([
            "--agent-cpus",
            "1000",
            "--agent-mem",
            "10000000",
            "--rate-limit",
            "0",
        ])
        // Our spans on (info) in both modes, so `--otel` changes only their export.
        .env(
            "RUST_LOG",
            "warn,mesos_stateful_actors=info,mesos_stateful_scheduler=info",
        )
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if settings.otel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(otlp_sink(listener, exports.clone()));
        command
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            // Export during the run, not only at exit.
            .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    }
    let _dev = Dev(command.spawn().context("starting mesos-stateful dev")?);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.concurrency)
        .build()?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{api}/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > ready_by {
            bail!("the scheduler was not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let creates = {
        let (http, api) = (http.clone(), api.clone());
        run_phase(
            "create (POST /v1/instances)",
            settings.creates,
            settings.concurrency,
            move |i| {
                let (http, api) = (http.clone(), api.clone());
                async move {
                    let body = json!({"name": format!("load{i}"), "image": "redis:7", "replicas": 0,
                    "resources": {"cpus": 0.01, "mem": 16, "disk": 1}});
                    http.post(format!("{api}/v1/instances"))
                        .json(&body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 202)
                }
            },
        )
        .await
    };
    let names = settings.creates.max(1);
    let gets = {
        let (http, api) = (http.clone(), api.clone());
        run_phase(
            "get (GET /v1/instances/{name})",
            settings.gets,
            settings.concurrency,
            move |i| {
                let (http, api) = (http.clone(), api.clone());
                async move {
                    let url = format!("{api}/v1/instances/load{}", i % names);
                    match http.get(url).send().await {
                        Ok(response) if response.status().is_success() => {
                            response.bytes().await.is_ok()
                        }
                        _ => false,
                    }
                }
            },
        )
        .await
    };

    let report = format!(
        "# REST API load\n\n`mesos-stateful dev` ({}), {} simulated agents, {} concurrent clients, OTLP export {}{}.\n\n\
         | phase | requests | throughput | p50 | p99 | max | failures |\n|---|---|---|---|---|---|---|\n{}\n{}\n",
        settings.binary.display(),
        settings.simulated_agents,
        settings.concurrency,
        if settings.otel { "on" } else { "off" },
        if settings.otel {
            format!(" ({} export requests received)", exports.load(Ordering::Relaxed))
        } else {
            String::new()
        },
        creates.row(),
        gets.row(),
    );
    if let Some(parent) = settings.report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&settings.report, &report)
        .with_context(|| format!("writing {}", settings.report.display()))?;
    print!("{report}");
    if creates.failures + gets.failures > 0 {
        bail!("{} requests failed", creates.failures + gets.failures);
    }
    Ok(())
}
