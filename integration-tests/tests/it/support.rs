//! Helpers shared by the end-to-end tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use mesos_stateful_scheduler::run::Scheduler;
use mesos_stateful_scheduler::{
    ExecutorLaunch, FrameworkSettings, GenericContainer, SchedulerConfig,
};

/// The image with redis-server built by `scripts/build-test-images.sh`.
pub const REDIS_IMAGE: &str = "mesos-stateful/redis:test";
/// The busybox image built by the same script.
pub const BUSYBOX_IMAGE: &str = "mesos-stateful/busybox:test";

/// The create body of an instance of one busybox master that sleeps for an hour.
pub fn sleeper(name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "image": BUSYBOX_IMAGE,
        "replicas": 0,
        "resources": {"cpus": 0.1, "mem": 32, "disk": 16},
        "master_args": ["sleep", "3600"]
    })
}

/// A binary of the workspace, next to the test binary's directory.
pub fn workspace_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    // target/debug/deps/it-<hash> → target/debug/<name>
    let dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// The executor of the in-process tests: the workspace's binary, with a short kill
/// grace so deletions end quickly.
pub fn test_executor() -> ExecutorLaunch {
    ExecutorLaunch {
        command: workspace_binary("mesos-stateful-executor")
            .to_string_lossy()
            .into_owned(),
        kill_grace_seconds: 2.0,
        ..ExecutorLaunch::default()
    }
}

/// Starts the generic scheduler against `master`, its state under `dir/data` and
/// its API on a free loopback port.
pub async fn start_scheduler(master: String, dir: &Path, executor: ExecutorLaunch) -> Scheduler {
    Scheduler::start(
        SchedulerConfig {
            recovery: Default::default(),
            master,
            data_dir: dir.join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            executor,
            framework: FrameworkSettings::default(),
            api: Default::default(),
        },
        Arc::new(GenericContainer),
    )
    .await
    .unwrap()
}

/// `GET /v1/instances/{name}` as JSON, `None` on any failure.
pub async fn get_instance(http: &reqwest::Client, api: &str, name: &str) -> Option<Value> {
    http.get(format!("{api}/v1/instances/{name}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Fails the test with a clear message when the image is missing.
pub fn require_image(image: &str) {
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .expect("running the docker CLI");
    assert!(
        output.status.success(),
        "image {image} is missing: run scripts/build-test-images.sh"
    );
}

/// Full ids of the containers carrying `label` (`key=value`); stopped ones too when
/// `all`.
fn containers_labelled(label: &str, all: bool) -> Vec<String> {
    let output = Command::new("docker")
        .args([
            "ps",
            if all { "-aq" } else { "-q" },
            "--no-trunc",
            "--filter",
        ])
        .arg(format!("label={label}"))
        .output()
        .expect("running the docker CLI");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Ids of containers (running or not) labelled as members of `instance`.
pub fn containers_of(instance: &str) -> Vec<String> {
    containers_labelled(&format!("mesos-stateful.instance={instance}"), true)
}

/// Ids of the running containers labelled as members of `instance`.
pub fn running_containers_of(instance: &str) -> Vec<String> {
    containers_labelled(&format!("mesos-stateful.instance={instance}"), false)
}

/// The running container of one member (`cache1-0`), if any.
pub fn running_container_of_member(member: &str) -> Option<String> {
    containers_labelled(&format!("mesos-stateful.member={member}"), false)
        .into_iter()
        .next()
}

/// Waits up to `timeout` for instance `name` to be RUNNING and returns it; panics
/// at once if it FAILED.
pub async fn wait_running(
    http: &reqwest::Client,
    api: &str,
    name: &str,
    timeout: Duration,
) -> Value {
    wait_for(&format!("{name} RUNNING"), timeout, || async {
        let body = get_instance(http, api, name).await?;
        assert_ne!(body["status"], "FAILED", "instance failed: {body}");
        (body["status"] == "RUNNING").then_some(body)
    })
    .await
}

/// Removes leftovers of an earlier failed run of the same test.
pub fn remove_containers_of(instance: &str) {
    for id in containers_of(instance) {
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends one Redis command (as an inline command) and returns the raw reply.
pub fn redis_command(endpoint: &str, command: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(endpoint)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    // Replies used here are small; read until the server has sent a complete one.
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buffer[..n]);
        if is_complete(&reply) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether a RESP reply is complete (simple strings, errors, integers and bulk strings).
fn is_complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    let Some(first_line_end) = text.find("\r\n") else {
        return false;
    };
    match text.as_bytes()[0] {
        b'$' => {
            let len: i64 = text[1..first_line_end].parse().unwrap_or(0);
            len < 0 || text.len() >= first_line_end + 2 + len as usize + 2
        }
        _ => true,
    }
}

/// The sum of every series of `name` in a Prometheus text exposition (`GET /metrics`).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if let Some(labelled) = rest.strip_prefix('{') {
                labelled.split_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// `GET /metrics` of the API at `api`.
pub async fn scrape(http: &reqwest::Client, api: &str) -> String {
    let response = http.get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.unwrap()
}

/// A free TCP port on loopback (free when asked; a test binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A child process (`mesos-stateful dev` or `serve`) interrupted on drop as Ctrl-C
/// would, and killed if it has not exited 30 s later.
pub struct Interrupted(pub std::process::Child);

impl Drop for Interrupted {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
