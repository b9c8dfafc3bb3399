//! Load generator for a real `mesos-stateful dev` on simulated agents. Two scenarios:
//!
//! - `rest`: creates (throughput, p50, p99), then `GET /v1/instances/{name}`
//!   (throughput, p50, p99), with a fixed number of concurrent clients.
//! - `e2e`: creates N instances of one master each while following the member events
//!   of `GET /v1/events` (and `GET /metrics`, once a second by default: each scrape
//!   copies every instance) until every member is TASK_RUNNING: REST create
//!   throughput and latency, tasks launched and running per second, and where the
//!   scheduler's time went (durable writes, offers, actor handlers, CPU by thread).
//!
//! Creates answered 429 or 503 (the launch queue is full, or Mesos is away) are
//! retried after the answer's `Retry-After` and counted as pushed back. Each run
//! starts its own scheduler on a fresh data directory; `--otel both` alternates runs
//! without and with span export (off, on, off, on …, `--rounds` of each) and gives
//! the cost of the export; `off` or `on` alone makes `--rounds` runs of that mode.
//! Writes a Markdown report.
//!
//! ```sh
//! cargo build --release -p mesos-stateful-scheduler -p mesos-stateful-executor --bins
//! cargo run --release -p mesos-stateful-integration-tests --example loadgen -- \
//!     [--scenario rest|e2e] [--creates N] [--gets 20000] [--concurrency 32] \
//!     [--simulated-agents N] [--simulated-delay-ms 5] [--agent-cpus C] [--agent-mem MiB] \
//!     [--create-rate R] [--rate-limit R] [--rate-burst B] [--otel on|off|both] [--rounds 2] \
//!     [--poll-ms 1000] [--timeout-s 600] [--perf-record FILE] \
//!     [--report target/loadgen.md] [--binary target/release/mesos-stateful]
//! ```
//!
//! Defaults by scenario: `rest` makes 500 creates on 8 agents of 1,000 cpus with the
//! rate limit off; `e2e` makes 10,000 creates on 1,000 agents of 16 cpus and
//! 64 GiB, with the rate limit raised to 1,000,000 requests per second (burst as
//! many), so that it stays in the path without refusing anything.
//!
//! Creates are made as fast as `--concurrency` clients get answers (a closed loop:
//! latency then measures the queue at saturation), or, with `--create-rate R`, the
//! i-th create is due i/R seconds after the first (an open loop at a fixed rate,
//! still at most `--concurrency` in flight): its latency is measured from the later
//! of its due time and the moment a client was free to send it, and creates sent
//! more than 2 ms after they were due (every client busy) are counted as late, so
//! the report shows when the rate was more than the scheduler kept up with.
//!
//! With `--otel on` the scheduler exports every span by OTLP to a sink this program
//! runs (it answers 200 to every export), so the cost of tracing is measured without
//! a collector. `--perf-record FILE` runs `perf record -g` on the scheduler from the
//! first create until every member runs (e2e, last run only).

// A command-line tool: a panic with its message is how it reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Rest,
    EndToEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Otel {
    Off,
    On,
    /// Alternate runs without and with export.
    Both,
}

#[derive(Debug)]
struct Settings {
    scenario: Scenario,
    creates: usize,
    gets: usize,
    concurrency: usize,
    /// Creates per second in an open loop; `None`: as fast as answered.
    create_rate: Option<f64>,
    simulated_agents: usize,
    simulated_delay_ms: u64,
    agent_cpus: f64,
    agent_mem: f64,
    rate_limit: f64,
    rate_burst: f64,
    otel: Otel,
    rounds: usize,
    poll: Duration,
    timeout: Duration,
    perf_record: Option<PathBuf>,
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
    // Flags whose default depends on the scenario, resolved after parsing.
    let mut creates = None;
    let mut simulated_agents = None;
    let mut agent_cpus = None;
    let mut agent_mem = None;
    let mut rate_limit = None;
    let mut rate_burst = None;
    let mut settings = Settings {
        scenario: Scenario::Rest,
        creates: 0,
        gets: 20_000,
        concurrency: 32,
        create_rate: None,
        simulated_agents: 0,
        simulated_delay_ms: 5,
        agent_cpus: 0.0,
        agent_mem: 0.0,
        rate_limit: 0.0,
        rate_burst: 0.0,
        otel: Otel::Off,
        rounds: 2,
        poll: Duration::from_millis(1000),
        timeout: Duration::from_secs(600),
        perf_record: None,
        report: PathBuf::from("target/loadgen.md"),
        binary: default_binary,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => {
                settings.scenario = match value()?.as_str() {
                    "rest" => Scenario::Rest,
                    "e2e" => Scenario::EndToEnd,
                    other => bail!("--scenario takes rest or e2e, not {other}"),
                }
            }
            "--creates" => creates = Some(value()?.parse()?),
            "--gets" => settings.gets = value()?.parse()?,
            "--concurrency" => settings.concurrency = value()?.parse::<usize>()?.max(1),
            "--create-rate" => {
                let rate: f64 = value()?.parse()?;
                if !rate.is_finite() || rate <= 0.0 {
                    bail!("--create-rate takes a positive number of creates per second");
                }
                settings.create_rate = Some(rate);
            }
            "--simulated-agents" => simulated_agents = Some(value()?.parse()?),
            "--simulated-delay-ms" => settings.simulated_delay_ms = value()?.parse()?,
            "--agent-cpus" => agent_cpus = Some(value()?.parse()?),
            "--agent-mem" => agent_mem = Some(value()?.parse()?),
            "--rate-limit" => rate_limit = Some(value()?.parse()?),
            "--rate-burst" => rate_burst = Some(value()?.parse()?),
            "--otel" => {
                settings.otel = match value()?.as_str() {
                    "on" => Otel::On,
                    "off" => Otel::Off,
                    "both" => Otel::Both,
                    other => bail!("--otel takes on, off or both, not {other}"),
                }
            }
            "--rounds" => settings.rounds = value()?.parse::<usize>()?.max(1),
            "--poll-ms" => settings.poll = Duration::from_millis(value()?.parse::<u64>()?.max(1)),
            "--timeout-s" => settings.timeout = Duration::from_secs(value()?.parse()?),
            "--perf-record" => settings.perf_record = Some(value()?.into()),
            "--report" => settings.report = value()?.into(),
            "--binary" => settings.binary = value()?.into(),
            other => bail!("unknown flag {other}"),
        }
    }
    let e2e = settings.scenario == Scenario::EndToEnd;
    settings.creates = creates.unwrap_or(if e2e { 10_000 } else { 500 });
    settings.simulated_agents = simulated_agents.unwrap_or(if e2e { 1_000 } else { 8 });
    settings.agent_cpus = agent_cpus.unwrap_or(if e2e { 16.0 } else { 1_000.0 });
    settings.agent_mem = agent_mem.unwrap_or(if e2e { 65_536.0 } else { 10_000_000.0 });
    settings.rate_limit = rate_limit.unwrap_or(if e2e { 1_000_000.0 } else { 0.0 });
    settings.rate_burst = rate_burst.unwrap_or(if e2e { 1_000_000.0 } else { 200.0 });
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

/// The scheduler process; interrupted (then killed) when dropped.
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

/// A started `mesos-stateful dev` and what talks to it.
struct Running {
    dev: Dev,
    api: String,
    http: reqwest::Client,
    /// OTLP export requests received by the sink (stays 0 without export).
    exports: Arc<AtomicUsize>,
    /// Owned so the data directory lives as long as the process.
    _dir: tempfile::TempDir,
}

async fn start_dev(settings: &Settings, otel: bool) -> anyhow::Result<Running> {
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
        .arg("--simulated-delay-ms")
        .arg(settings.simulated_delay_ms.to_string())
        .arg("--agent-cpus")
        .arg(settings.agent_cpus.to_string())
        .arg("--agent-mem")
        .arg(settings.agent_mem.to_string())
        .arg("--rate-limit")
        .arg(settings.rate_limit.to_string())
        .arg("--rate-burst")
        .arg(settings.rate_burst.to_string())
        // Our spans on (info) in both modes, so `--otel` changes only their export.
        .env(
            "RUST_LOG",
            "warn,mesos_stateful_actors=info,mesos_stateful_scheduler=info",
        )
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if otel {
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
    let dev = Dev(command.spawn().context("starting mesos-stateful dev")?);

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
    Ok(Running {
        dev,
        api,
        http,
        exports,
        _dir: dir,
    })
}

/// What one request came to.
enum Attempt {
    /// Answered as expected.
    Done,
    /// Refused for now: try again after this long.
    RetryAfter(Duration),
    /// Failed; not retried.
    Failed,
}

/// Latencies of one phase.
#[derive(Debug)]
struct Phase {
    name: &'static str,
    wall: Duration,
    /// Of the requests answered as expected, sorted.
    latencies: Vec<Duration>,
    /// Answers 429 or 503 that were retried after their `Retry-After`.
    pushed_back: usize,
    failures: usize,
    /// Open loop only: requests sent more than [`LATE`] after they were due.
    late: usize,
}

/// How far past its due time an open-loop request may be sent before it counts as
/// late (the timer's own slack is about a millisecond).
const LATE: Duration = Duration::from_millis(2);

impl Phase {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index]
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} req/s | {} | {} | {} | {} | {} |",
            self.name,
            self.latencies.len(),
            self.throughput(),
            millis(self.percentile(0.5)),
            millis(self.percentile(0.99)),
            millis(self.percentile(1.0)),
            self.pushed_back,
            self.failures,
        )
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// Runs `total` requests made by `request(i)` over `concurrency` clients, as fast
/// as they are answered or, with `rate`, the i-th due i/rate seconds after the start;
/// a request pushed back is made again after the wait it was told, and only its
/// answered attempt counts as a latency.
async fn run_phase<F, Fut>(
    name: &'static str,
    total: usize,
    concurrency: usize,
    rate: Option<f64>,
    request: F,
) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Attempt> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut pushed_back, mut failures, mut late) = (0, 0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return (latencies, pushed_back, failures, late);
                }
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    if due.elapsed() > LATE {
                        late += 1;
                    }
                }
                loop {
                    let sent = Instant::now();
                    match request(i).await {
                        Attempt::Done => latencies.push(sent.elapsed()),
                        Attempt::Failed => failures += 1,
                        Attempt::RetryAfter(wait) => {
                            pushed_back += 1;
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    break;
                }
            }
        }));
    }
    let mut phase = Phase {
        name,
        wall: Duration::ZERO,
        latencies: Vec::new(),
        pushed_back: 0,
        failures: 0,
        late: 0,
    };
    for worker in workers {
        let (latencies, pushed_back, failures, late) = worker.await.unwrap();
        phase.latencies.extend(latencies);
        phase.pushed_back += pushed_back;
        phase.failures += failures;
        phase.late += late;
    }
    phase.wall = started.elapsed();
    phase.latencies.sort();
    phase
}

/// Creates `load0` … `load{total-1}`, one master each, honouring `Retry-After`.
async fn create_phase(
    running: &Running,
    total: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> Phase {
    let (http, api) = (running.http.clone(), running.api.clone());
    run_phase(
        "create (POST /v1/instances)",
        total,
        concurrency,
        rate,
        move |i| {
            let (http, api) = (http.clone(), api.clone());
            async move {
                let body = json!({"name": format!("load{i}"), "image": "redis:7", "replicas": 0,
                    "resources": {"cpus": 0.01, "mem": 16, "disk": 1}});
                let Ok(response) = http
                    .post(format!("{api}/v1/instances"))
                    .json(&body)
                    .send()
                    .await
                else {
                    return Attempt::Failed;
                };
                match response.status() {
                    StatusCode::ACCEPTED => Attempt::Done,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        let seconds = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .unwrap_or(1);
                        Attempt::RetryAfter(Duration::from_secs(seconds))
                    }
                    _ => Attempt::Failed,
                }
            }
        },
    )
    .await
}

/// One scrape of `GET /metrics`: `name{labels}` → value.
type Scrape = HashMap<String, f64>;

fn parse_metrics(text: &str) -> Scrape {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(running: &Running) -> anyhow::Result<Scrape> {
    let text = running
        .http
        .get(format!("{}/metrics", running.api))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(parse_metrics(&text))
}

fn value(scrape: &Scrape, key: &str) -> f64 {
    scrape.get(key).copied().unwrap_or(0.0)
}

const LAUNCHES: &str = "mesos_stateful_task_launches_total";
const RUNNING_INSTANCES: &str = "mesos_stateful_instances{status=\"RUNNING\"}";
const MAILBOX: &str = "mesos_stateful_actor_mailbox_depth{";

/// What the load generator saw of the launches, as offsets from the first create.
#[derive(Debug, Default)]
struct Progress {
    /// From `GET /v1/events`: the first and last member whose record became
    /// TASK_STAGING (its placement persisted, the launch under way) …
    first_launch: Option<Duration>,
    last_launch: Option<Duration>,
    /// … and the first and last member whose record became TASK_RUNNING.
    first_running: Option<Duration>,
    all_running: Option<Duration>,
    /// Members seen launched and running.
    launched: usize,
    running: usize,
    /// Member events read, and `reset` events (events missed by a slow client).
    events: usize,
    resets: usize,
    /// From `GET /metrics`: scrapes, their time summed, and the longest.
    scrapes: usize,
    scrape_time: Duration,
    longest_scrape: Duration,
    /// First scrape that counted every launch.
    metrics_all_launched: Option<Duration>,
    /// Deepest mailbox seen, by actor label.
    max_mailbox: BTreeMap<String, f64>,
}

/// The string value after the first `key` (`"name":"`) in `json`, unescaped ones only.
fn json_string<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(key)? + key.len();
    let length = json[start..].find('"')?;
    Some(&json[start..start + length])
}

/// Opens `GET /v1/events?type=member`; once this returns, no change is missed.
async fn subscribe_events(running: &Running) -> anyhow::Result<reqwest::Response> {
    Ok(running
        .http
        .get(format!("{}/v1/events?type=member", running.api))
        .send()
        .await?
        .error_for_status()?)
}

/// Reads member events until `total` members run, `done` is set, or `timeout`;
/// sets `done` when every member runs.
async fn follow_events(
    mut events: reqwest::Response,
    progress: &std::sync::Mutex<Progress>,
    total: usize,
    started: Instant,
    timeout: Duration,
    done: &AtomicBool,
) {
    let mut launched = std::collections::HashSet::new();
    let mut running = std::collections::HashSet::new();
    let mut buffer = String::new();
    while started.elapsed() < timeout && !done.load(Ordering::Relaxed) {
        let chunk = match tokio::time::timeout(Duration::from_millis(200), events.chunk()).await {
            Err(_) => continue,
            Ok(Ok(Some(chunk))) => chunk,
            Ok(_) => return,
        };
        let at = started.elapsed();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        let mut progress = progress.lock().unwrap();
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: reset") {
                progress.resets += 1;
                continue;
            }
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            // A plain scan rather than a JSON parse, so this client keeps up with
            // the stream: `{"instance":…,"member":{"name":"load7-0",…,"state":"TASK_RUNNING",…}}`.
            let Some(name) = json_string(data, "\"name\":\"") else {
                continue;
            };
            progress.events += 1;
            let name = name.to_string();
            match json_string(data, "\"state\":\"") {
                Some("TASK_STAGING") if launched.insert(name.clone()) => {
                    progress.first_launch.get_or_insert(at);
                    progress.last_launch = Some(at);
                    progress.launched = launched.len();
                }
                Some("TASK_RUNNING") if running.insert(name) => {
                    progress.first_running.get_or_insert(at);
                    progress.running = running.len();
                    if running.len() == total {
                        progress.all_running = Some(at);
                        done.store(true, Ordering::Relaxed);
                        return;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Scrapes `/metrics` every `every` until `done`, or `timeout`; sets `done` if the
/// scrape shows every instance RUNNING (events missed by the stream).
async fn follow_metrics(
    running: &Running,
    progress: &std::sync::Mutex<Progress>,
    total: usize,
    started: Instant,
    every: Duration,
    timeout: Duration,
    done: &AtomicBool,
) {
    let total = total as f64;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < timeout && !done.load(Ordering::Relaxed) {
        ticks.tick().await;
        if done.load(Ordering::Relaxed) {
            return;
        }
        let sent = Instant::now();
        let Ok(scrape) = scrape(running).await else {
            continue;
        };
        let took = sent.elapsed();
        let at = started.elapsed();
        let mut progress = progress.lock().unwrap();
        progress.scrapes += 1;
        progress.scrape_time += took;
        progress.longest_scrape = progress.longest_scrape.max(took);
        if value(&scrape, LAUNCHES) >= total && progress.metrics_all_launched.is_none() {
            progress.metrics_all_launched = Some(at);
        }
        for (key, depth) in scrape.iter().filter(|(k, _)| k.starts_with(MAILBOX)) {
            let actor = key[MAILBOX.len()..].trim_end_matches('}').to_string();
            let max = progress.max_mailbox.entry(actor).or_insert(0.0);
            *max = max.max(*depth);
        }
        if value(&scrape, RUNNING_INSTANCES) >= total && progress.all_running.is_none() {
            progress.all_running = Some(at);
            done.store(true, Ordering::Relaxed);
        }
    }
}

/// CPU time of every thread of `pid`, seconds, by thread name with trailing digits
/// removed (`tokio-runtime-w`, `rocksdb:low` …). Empty off Linux.
fn cpu_by_thread(pid: u32) -> BTreeMap<String, f64> {
    let ticks = clock_ticks();
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return groups;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // pid (comm) state … utime stime: fields 14 and 15, the comm may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close]
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '#')
            .to_string();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
            continue;
        };
        let seconds =
            (utime.parse::<f64>().unwrap_or(0.0) + stime.parse::<f64>().unwrap_or(0.0)) / ticks;
        *groups.entry(name).or_insert(0.0) += seconds;
    }
    groups
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds of this process (the load generator, the sink included).
fn own_cpu() -> f64 {
    cpu_by_thread(std::process::id()).values().sum()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// One run of a scenario on its own scheduler.
struct Run {
    otel: bool,
    load_average: String,
    creates: Phase,
    gets: Option<Phase>,
    launch: Option<Launch>,
    exports: usize,
}

/// The end-to-end part of a run.
struct Launch {
    instances: usize,
    progress: Progress,
    /// Scheduler CPU seconds from the first create to all running, by thread.
    cpu: BTreeMap<String, f64>,
    /// Load generator CPU seconds over the same span.
    own_cpu: f64,
    /// The scrape after every member runs.
    metrics: Scrape,
}

impl Launch {
    /// Members running per second from the first create to the last running.
    fn end_to_end_rate(&self) -> Option<f64> {
        let all = self.progress.all_running?;
        Some(self.instances as f64 / all.as_secs_f64())
    }

    /// Launches (as counted by the scheduler) per second from the first launch
    /// seen to the last.
    fn launch_rate(&self) -> Option<f64> {
        let span = self.progress.last_launch? - self.progress.first_launch?;
        Some(value(&self.metrics, LAUNCHES) / span.as_secs_f64().max(1e-3))
    }
}

async fn run_rest(settings: &Settings, running: &Running) -> (Phase, Phase) {
    let creates = create_phase(
        running,
        settings.creates,
        settings.concurrency,
        settings.create_rate,
    )
    .await;
    let names = settings.creates.max(1);
    let gets = {
        let (http, api) = (running.http.clone(), running.api.clone());
        run_phase(
            "get (GET /v1/instances/{name})",
            settings.gets,
            settings.concurrency,
            None,
            move |i| {
                let (http, api) = (http.clone(), api.clone());
                async move {
                    let url = format!("{api}/v1/instances/load{}", i % names);
                    match http.get(url).send().await {
                        Ok(response) if response.status().is_success() => {
                            if response.bytes().await.is_ok() {
                                Attempt::Done
                            } else {
                                Attempt::Failed
                            }
                        }
                        _ => Attempt::Failed,
                    }
                }
            },
        )
        .await
    };
    (creates, gets)
}

/// Starts `perf record` on `pid`; stopped (and waited for) when dropped.
struct Perf(Child);

impl Perf {
    fn start(pid: u32, output: &PathBuf) -> anyhow::Result<Perf> {
        let child = Command::new("perf")
            .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
            .arg(output)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record")?;
        Ok(Perf(child))
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

async fn run_end_to_end(
    settings: &Settings,
    running: &Running,
    perf: Option<&PathBuf>,
) -> anyhow::Result<(Phase, Launch)> {
    let pid = running.dev.0.id();
    let perf = perf.map(|output| Perf::start(pid, output)).transpose()?;
    let cpu_before = cpu_by_thread(pid);
    let own_before = own_cpu();
    let events = subscribe_events(running).await?;
    let progress = std::sync::Mutex::new(Progress::default());
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (creates, (), ()) = tokio::join!(
        async {
            let phase = create_phase(
                running,
                settings.creates,
                settings.concurrency,
                settings.create_rate,
            )
            .await;
            if phase.latencies.len() < settings.creates {
                // Not every member will run: stop following.
                done.store(true, Ordering::Relaxed);
            }
            phase
        },
        follow_events(
            events,
            &progress,
            settings.creates,
            started,
            settings.timeout,
            &done,
        ),
        follow_metrics(
            running,
            &progress,
            settings.creates,
            started,
            settings.poll,
            settings.timeout,
            &done,
        ),
    );
    let progress = progress.into_inner().unwrap();
    let cpu_after = cpu_by_thread(pid);
    let own = own_cpu() - own_before;
    drop(perf);
    let cpu = cpu_after
        .into_iter()
        .map(|(name, after)| {
            let before = cpu_before.get(&name).copied().unwrap_or(0.0);
            (name, after - before)
        })
        .collect();
    let metrics = scrape(running).await?;
    Ok((
        creates,
        Launch {
            instances: settings.creates,
            progress,
            cpu,
            own_cpu: own,
            metrics,
        },
    ))
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or("–".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn rate(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.0}/s"))
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let values: Vec<f64> = values.collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn on_off(otel: bool) -> &'static str {
    if otel {
        "on"
    } else {
        "off"
    }
}

fn rest_report(settings: &Settings, runs: &[Run]) -> String {
    let mut report = format!(
        "# REST API load\n\n`mesos-stateful dev` ({}), {} simulated agents, {} concurrent clients, \
         rate limit {} req/s (burst {}).\n\n\
         | run | OTLP export | load average | phase | requests | throughput | p50 | p99 | max | pushed back | failures |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        settings.binary.display(),
        settings.simulated_agents,
        settings.concurrency,
        settings.rate_limit,
        settings.rate_burst,
    );
    for (index, run) in runs.iter().enumerate() {
        let prefix = format!(
            "| {} | {}{} | {} ",
            index + 1,
            on_off(run.otel),
            exports_note(run),
            run.load_average
        );
        report += &format!("{prefix}{}\n", run.creates.row());
        if let Some(gets) = &run.gets {
            report += &format!("{prefix}{}\n", gets.row());
        }
    }
    report
}

fn exports_note(run: &Run) -> String {
    if run.otel {
        format!(" ({} exports)", run.exports)
    } else {
        String::new()
    }
}

fn end_to_end_report(settings: &Settings, runs: &[Run]) -> String {
    let mut report = format!(
        "# End to end on simulated agents\n\n`mesos-stateful dev` ({}), {} simulated agents of {} cpus \
         and {} MiB, TASK_RUNNING {} ms after TASK_STARTING; {} instances of one master \
         (0.01 cpus, 16 MiB) created {}; rate limit {} req/s (burst {}). \
         Launch and running times from the member events of `GET /v1/events` (a member \
         launched: its record TASK_STAGING; running: TASK_RUNNING); `/metrics` scraped \
         every {} ms.\n\n\
         | run | OTLP export | load average | creates/s | create p50 | p99 | max | pushed back | late | failures \
         | first create → first launch | → all running | tasks running/s (end to end) | launch span | launches/s | scheduler CPU | event resets |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        settings.binary.display(),
        settings.simulated_agents,
        settings.agent_cpus,
        settings.agent_mem,
        settings.simulated_delay_ms,
        settings.creates,
        match settings.create_rate {
            None => format!("by {} concurrent clients, each sending its next create once answered", settings.concurrency),
            Some(rate) => format!(
                "at {rate} per second (open loop, at most {} in flight; *late*: sent over {} ms after due)",
                settings.concurrency,
                LATE.as_millis()
            ),
        },
        settings.rate_limit,
        settings.rate_burst,
        settings.poll.as_millis(),
    );
    for (index, run) in runs.iter().enumerate() {
        let Some(launch) = &run.launch else {
            continue;
        };
        let progress = &launch.progress;
        let span = progress
            .last_launch
            .zip(progress.first_launch)
            .map(|(last, first)| last - first);
        report += &format!(
            "| {} | {}{} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} |\n",
            index + 1,
            on_off(run.otel),
            exports_note(run),
            run.load_average,
            run.creates.throughput(),
            millis(run.creates.percentile(0.5)),
            millis(run.creates.percentile(0.99)),
            millis(run.creates.percentile(1.0)),
            run.creates.pushed_back,
            run.creates.late,
            run.creates.failures,
            seconds(progress.first_launch),
            seconds(progress.all_running),
            rate(launch.end_to_end_rate()),
            seconds(span),
            rate(launch.launch_rate()),
            launch.cpu.values().sum::<f64>(),
            progress.resets,
        );
    }
    if runs.iter().any(|r| r.otel) && runs.iter().any(|r| !r.otel) {
        report += &overhead_table(runs);
    }
    if let Some(run) = runs.last() {
        if let Some(launch) = &run.launch {
            report += &format!(
                "\n## Where the time went (run {}, OTLP export {})\n\n",
                runs.len(),
                on_off(run.otel)
            );
            report += &diagnostics(launch);
        }
    }
    report
}

/// Means of the runs without and with export, and the cost of export.
fn overhead_table(runs: &[Run]) -> String {
    type Measure = fn(&Run) -> Option<f64>;
    let measures: [(&str, Measure, bool); 4] = [
        ("creates/s", |r| Some(r.creates.throughput()), true),
        (
            "create p99 (ms)",
            |r| Some(r.creates.percentile(0.99).as_secs_f64() * 1e3),
            false,
        ),
        (
            "tasks running/s (end to end)",
            |r| r.launch.as_ref()?.end_to_end_rate(),
            true,
        ),
        (
            "scheduler CPU (s)",
            |r| Some(r.launch.as_ref()?.cpu.values().sum()),
            false,
        ),
    ];
    let mut table = String::from(
        "\n## Tracing overhead\n\n| measure | export off (mean) | export on (mean) | cost |\n|---|---|---|---|\n",
    );
    for (name, measure, higher_is_better) in measures {
        let off = mean(runs.iter().filter(|r| !r.otel).filter_map(measure));
        let on = mean(runs.iter().filter(|r| r.otel).filter_map(measure));
        let (Some(off), Some(on)) = (off, on) else {
            continue;
        };
        let cost = if higher_is_better {
            (off - on) / off * 100.0
        } else {
            (on - off) / off * 100.0
        };
        let _ = writeln!(table, "| {name} | {off:.1} | {on:.1} | {cost:+.1} % |");
    }
    // Where the extra CPU goes: each thread group's CPU, mean over the runs.
    let threads: std::collections::BTreeSet<&String> = runs
        .iter()
        .filter_map(|r| r.launch.as_ref())
        .flat_map(|l| l.cpu.keys())
        .collect();
    for thread in threads {
        let cpu = |otel: bool| {
            mean(
                runs.iter()
                    .filter(|r| r.otel == otel)
                    .filter_map(|r| r.launch.as_ref())
                    .map(|l| l.cpu.get(thread).copied().unwrap_or(0.0)),
            )
            .unwrap_or(0.0)
        };
        let (off, on) = (cpu(false), cpu(true));
        if off.max(on) >= 0.05 {
            let _ = writeln!(
                table,
                "| CPU of `{thread}` threads (s) | {off:.2} | {on:.2} | {:+.2} s |",
                on - off
            );
        }
    }
    table
}

/// Durable writes, offers, handler time by actor and message, mailboxes, CPU.
fn diagnostics(launch: &Launch) -> String {
    let m = &launch.metrics;
    let mut text = String::new();
    let writes = value(m, "mesos_stateful_store_write_seconds_count");
    let _ = writeln!(
        text,
        "- Durable writes: {:.0}, mean {:.2} ms, {:.1} records per write.",
        writes,
        value(m, "mesos_stateful_store_write_seconds_sum") / writes.max(1.0) * 1e3,
        value(m, "mesos_stateful_store_batch_records_sum")
            / value(m, "mesos_stateful_store_batch_records_count").max(1.0),
    );
    let buckets: Vec<String> = ["0.0008", "0.0032", "0.0128", "0.0512"]
        .iter()
        .map(|le| {
            let within = value(
                m,
                &format!("mesos_stateful_store_write_seconds_bucket{{le=\"{le}\"}}"),
            );
            let bound: f64 = le.parse().unwrap_or(0.0);
            format!(
                "{:.1} % within {} ms",
                within / writes.max(1.0) * 100.0,
                bound * 1e3
            )
        })
        .collect();
    let _ = writeln!(text, "- Durable write times: {}.", buckets.join(", "));
    let _ = writeln!(
        text,
        "- Offers: {:.0} received, {:.0} accepted, {:.0} declined; offer → ACCEPT mean {:.2} ms over {:.0} accepts.",
        value(m, "mesos_stateful_offers_total{outcome=\"received\"}"),
        value(m, "mesos_stateful_offers_total{outcome=\"accepted\"}"),
        value(m, "mesos_stateful_offers_total{outcome=\"declined\"}"),
        value(m, "mesos_stateful_offer_to_accept_seconds_sum")
            / value(m, "mesos_stateful_offer_to_accept_seconds_count").max(1.0)
            * 1e3,
        value(m, "mesos_stateful_offer_to_accept_seconds_count"),
    );
    let _ =
        writeln!(
        text,
        "- Launches {:.0}, TASK_STARTING updates {:.0}, TASK_RUNNING updates {:.0}, spans dropped {:.0}.",
        value(m, LAUNCHES),
        value(m, "mesos_stateful_task_updates_total{state=\"TASK_STARTING\"}"),
        value(m, "mesos_stateful_task_updates_total{state=\"TASK_RUNNING\"}"),
        value(m, "mesos_stateful_spans_dropped_total"),
    );
    let progress = &launch.progress;
    let _ = writeln!(
        text,
        "- Member events read: {} ({} launched, {} running), resets {}; first scrape counting every launch at {}.",
        progress.events,
        progress.launched,
        progress.running,
        progress.resets,
        seconds(progress.metrics_all_launched),
    );
    let _ = writeln!(
        text,
        "- `/metrics` scrapes: {}, mean {}, longest {}.",
        progress.scrapes,
        millis(progress.scrape_time / progress.scrapes.max(1) as u32),
        millis(progress.longest_scrape),
    );
    let state_prefix = "mesos_stateful_actor_messages_total{actor=\"StateManager\",message=\"";
    let mut state_messages: Vec<String> = m
        .iter()
        .filter_map(|(k, count)| {
            let message = k.strip_prefix(state_prefix)?.trim_end_matches("\"}");
            Some(format!("{message} {count:.0}"))
        })
        .collect();
    state_messages.sort();
    let _ = writeln!(
        text,
        "- StateManager messages (no handler timings): {}.",
        state_messages.join(", ")
    );
    let mailboxes: Vec<String> = launch
        .progress
        .max_mailbox
        .iter()
        .map(|(actor, depth)| format!("{actor} {depth:.0}"))
        .collect();
    let _ = writeln!(text, "- Deepest mailboxes seen: {}.", mailboxes.join(", "));
    let _ = writeln!(
        text,
        "- Load generator CPU over the same span: {:.1} s.",
        launch.own_cpu
    );

    let prefix = "mesos_stateful_actor_handler_seconds_sum{";
    let mut handlers: Vec<(String, f64, f64)> = m
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, sum)| {
            let labels = &k[prefix.len() - 1..];
            let count = value(
                m,
                &format!("mesos_stateful_actor_handler_seconds_count{labels}"),
            );
            (labels.to_string(), *sum, count)
        })
        .collect();
    handlers.sort_by(|a, b| b.1.total_cmp(&a.1));
    text += "\nActor handlers, by total time (whole run):\n\n| actor, message | handled | total | mean |\n|---|---|---|---|\n";
    for (labels, sum, count) in handlers.iter().take(10) {
        let _ = writeln!(
            text,
            "| `{labels}` | {count:.0} | {sum:.2} s | {:.3} ms |",
            sum / count.max(1.0) * 1e3
        );
    }

    let mut cpu: Vec<(&String, &f64)> = launch.cpu.iter().filter(|(_, s)| **s >= 0.05).collect();
    cpu.sort_by(|a, b| b.1.total_cmp(a.1));
    text += "\nScheduler CPU from the first create to all running, by thread:\n\n| threads | CPU |\n|---|---|\n";
    for (name, seconds) in cpu {
        let _ = writeln!(text, "| `{name}` | {seconds:.2} s |");
    }
    text
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
    let plan: Vec<bool> = match settings.otel {
        Otel::Off => vec![false; settings.rounds],
        Otel::On => vec![true; settings.rounds],
        Otel::Both => (0..settings.rounds).flat_map(|_| [false, true]).collect(),
    };
    let mut runs = Vec::new();
    for (index, &otel) in plan.iter().enumerate() {
        let load_average = load_average();
        eprintln!(
            "run {}/{}: OTLP export {}, load average {load_average}",
            index + 1,
            plan.len(),
            on_off(otel)
        );
        let running = start_dev(&settings, otel).await?;
        let run = match settings.scenario {
            Scenario::Rest => {
                let (creates, gets) = run_rest(&settings, &running).await;
                Run {
                    otel,
                    load_average,
                    creates,
                    gets: Some(gets),
                    launch: None,
                    exports: running.exports.load(Ordering::Relaxed),
                }
            }
            Scenario::EndToEnd => {
                let perf = settings
                    .perf_record
                    .as_ref()
                    .filter(|_| index + 1 == plan.len());
                let (creates, launch) = run_end_to_end(&settings, &running, perf).await?;
                Run {
                    otel,
                    load_average,
                    creates,
                    gets: None,
                    launch: Some(launch),
                    exports: running.exports.load(Ordering::Relaxed),
                }
            }
        };
        drop(running);
        eprintln!(
            "  {:.0} creates/s, p99 {}{}",
            run.creates.throughput(),
            millis(run.creates.percentile(0.99)),
            run.launch
                .as_ref()
                .map(|l| format!(", all running after {}", seconds(l.progress.all_running)))
                .unwrap_or_default()
        );
        runs.push(run);
    }

    let report = match settings.scenario {
        Scenario::Rest => rest_report(&settings, &runs),
        Scenario::EndToEnd => end_to_end_report(&settings, &runs),
    };
    if let Some(parent) = settings.report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&settings.report, &report)
        .with_context(|| format!("writing {}", settings.report.display()))?;
    print!("{report}");
    let failures: usize = runs
        .iter()
        .map(|r| r.creates.failures + r.gets.as_ref().map_or(0, |g| g.failures))
        .sum();
    if failures > 0 {
        bail!("{failures} requests failed");
    }
    if runs
        .iter()
        .filter_map(|r| r.launch.as_ref())
        .any(|l| l.progress.all_running.is_none())
    {
        bail!("not every member was running within {:?}", settings.timeout);
    }
    Ok(())
}
