//! A single-process Mesos-compatible cluster: one master and one or more agents
//! speaking the real Mesos v1 scheduler and executor HTTP APIs, in protobuf and in
//! Mesos's own JSON mapping (so that third-party JSON clients such as pymesos work).
//!
//! It is the embedded default for local runs and the test harness of the project.
//! It is an independent implementation of the Mesos side, written from the protocol
//! facts (wire format, status codes, event order, environment of executors), so that
//! clients tested against it work against a real Mesos unchanged.
//!
//! # Layout
//! - [`DevCluster`] / [`DevClusterThread`]: start and stop a cluster on the current
//!   tokio runtime or on a thread of its own.
//! - `cluster`: the whole state as one synchronous struct (frameworks, offers, tasks,
//!   executors, status update streams) with one method per call and timer. Command
//!   tasks (TaskInfo with `command`, no `executor`) run under the agent's built-in
//!   command executor (`cluster::command_task`), which reports their states as
//!   Mesos's command executor does.
//! - `resources`, `allocator`, `status_updates`, `validation`: the domain rules
//!   (resource arithmetic with port ranges, offer filters, per-task update streams,
//!   request checks), each with table tests.
//! - `process`: sandboxes, executor environment and command line, signals.
//! - `json`: Mesos's JSON rules (snake_case names, enum names, Base64 bytes, emitted
//!   defaults, numbers as strings on input), by reflection over the proto crate's
//!   descriptors: JSON is converted to and from protobuf at the edge, so the cluster
//!   only sees prost types.
//! - `http`: hyper servers that translate requests into cluster calls, negotiate the
//!   stream encoding (JSON first, as Mesos does) and answer `/master/redirect`.
//!
//! # Must not
//! Depend on the store, actors or scheduler crates (only on the proto crate and
//! general crates): devcluster plays Mesos, not our framework.
//!
//! # Missing
//! LAUNCH_GROUP (and with it the default executor), reservations and volumes,
//! isolation, and several masters (there is one, always the leader). In JSON,
//! non-finite doubles are written as the strings `"Infinity"`/`"NaN"` rather than
//! Mesos's bare (invalid JSON) tokens.

mod allocator;
mod cluster;
mod error;
mod http;
mod json;
mod process;
mod resources;
mod status_updates;
mod validation;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::DevClusterError;

/// The Mesos version devcluster reports (`/version`, `MasterInfo.version`).
pub const MESOS_VERSION: &str = "1.11.0";

/// How a cluster is laid out and timed.
#[derive(Debug, Clone)]
pub struct DevClusterConfig {
    /// Where the master listens; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The agents; at least one.
    pub agents: Vec<AgentConfig>,
    /// Sandboxes live under `<work_dir>/agents/...`.
    pub work_dir: PathBuf,
    /// Interval of HEARTBEAT events (Mesos: 15 s).
    pub heartbeat_interval: Duration,
    /// How often offers are (re)sent.
    pub allocation_interval: Duration,
    /// First retry interval of unacknowledged status updates (Mesos: 10 s, doubling).
    pub status_update_retry_interval: Duration,
    /// How long a launched executor has to subscribe (Mesos: 1 min).
    pub executor_registration_timeout: Duration,
    /// Grace between an executor's SHUTDOWN event and its SIGKILL unless
    /// `ExecutorInfo.shutdown_grace_period` says otherwise (Mesos: 5 s); also the
    /// grace between SIGTERM and SIGKILL of command tasks killed by a shutdown.
    pub executor_shutdown_grace_period: Duration,
}

impl Default for DevClusterConfig {
    fn default() -> Self {
        DevClusterConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5050),
            agents: vec![AgentConfig::default()],
            work_dir: std::env::temp_dir().join("devcluster"),
            heartbeat_interval: Duration::from_secs(15),
            allocation_interval: Duration::from_secs(1),
            status_update_retry_interval: Duration::from_secs(10),
            executor_registration_timeout: Duration::from_secs(60),
            executor_shutdown_grace_period: Duration::from_secs(5),
        }
    }
}

/// One agent's resources and attributes.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Hostname in offers; the agent's HTTP server binds 127.0.0.1:0 regardless.
    pub hostname: String,
    /// CPUs offered.
    pub cpus: f64,
    /// Memory offered, in MB.
    pub mem: f64,
    /// Disk offered, in MB.
    pub disk: f64,
    /// Inclusive range of ports offered.
    pub ports: (u64, u64),
    /// Text attributes.
    pub attributes: Vec<(String, String)>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            hostname: "127.0.0.1".to_string(),
            cpus: 4.0,
            mem: 4096.0,
            disk: 10240.0,
            ports: (31000, 32000),
            attributes: Vec::new(),
        }
    }
}

/// A running cluster on the current tokio runtime.
#[derive(Debug)]
pub struct DevCluster {
    shared: Arc<http::Shared>,
    master_addr: SocketAddr,
    agent_addrs: Vec<SocketAddr>,
    /// Turning it true stops the servers and timers; they own receivers.
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
}

fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

impl DevCluster {
    /// Binds the master and agents and starts serving on the current tokio runtime.
    pub async fn start(config: DevClusterConfig) -> Result<DevCluster, DevClusterError> {
        if config.agents.is_empty() {
            return Err(DevClusterError::Config(
                "at least one agent is needed".into(),
            ));
        }
        for interval in [config.heartbeat_interval, config.allocation_interval] {
            if interval.is_zero() {
                return Err(DevClusterError::Config("intervals must not be zero".into()));
            }
        }
        std::fs::create_dir_all(&config.work_dir).map_err(|source| DevClusterError::Sandbox {
            path: config.work_dir.clone(),
            source,
        })?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DevClusterError::Bind { addr, source })
        };
        let master_listener = bind(config.listen).await?;
        let master_addr =
            reachable(
                master_listener
                    .local_addr()
                    .map_err(|source| DevClusterError::Bind {
                        addr: config.listen,
                        source,
                    })?,
            );
        let agent_bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let mut agent_listeners = Vec::new();
        let mut setups = Vec::new();
        for agent in &config.agents {
            let listener = bind(agent_bind).await?;
            let endpoint = listener
                .local_addr()
                .map_err(|source| DevClusterError::Bind {
                    addr: agent_bind,
                    source,
                })?;
            setups.push(cluster::AgentSetup {
                hostname: agent.hostname.clone(),
                endpoint,
                total: resources::ResourceSet::new(
                    agent.cpus,
                    agent.mem,
                    agent.disk,
                    resources::Ranges::new([agent.ports]),
                ),
                attributes: agent.attributes.clone(),
            });
            agent_listeners.push((listener, endpoint));
        }
        let settings = cluster::Settings {
            heartbeat_interval: config.heartbeat_interval,
            allocation_interval: config.allocation_interval,
            status_update_retry_interval: config.status_update_retry_interval,
            executor_registration_timeout: config.executor_registration_timeout,
            executor_shutdown_grace_period: config.executor_shutdown_grace_period,
            work_dir: config.work_dir.clone(),
        };
        let cluster = cluster::Cluster::new(settings, master_addr, setups, Instant::now());
        let shared = Arc::new(http::Shared::new(cluster));
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(http::serve(
                master_listener,
                shared.clone(),
                http::Role::Master,
                shutdown_receiver.clone(),
            )),
            tokio::spawn(http::run_timers(shared.clone(), shutdown_receiver.clone())),
        ];
        let mut agent_addrs = Vec::new();
        for (index, (listener, endpoint)) in agent_listeners.into_iter().enumerate() {
            agent_addrs.push(endpoint);
            tasks.push(tokio::spawn(http::serve(
                listener,
                shared.clone(),
                http::Role::Agent(index),
                shutdown_receiver.clone(),
            )));
        }
        tracing::info!(master = %master_addr, agents = agent_addrs.len(), "devcluster started");
        Ok(DevCluster {
            shared,
            master_addr,
            agent_addrs,
            shutdown,
            tasks,
            grace: config.executor_shutdown_grace_period,
        })
    }

    /// The master's base URL, e.g. `http://127.0.0.1:5050`.
    pub fn master_url(&self) -> String {
        format!("http://{}", self.master_addr)
    }

    /// The agents' base URLs (their executor API endpoints' origin).
    pub fn agent_urls(&self) -> Vec<String> {
        self.agent_addrs
            .iter()
            .map(|addr| format!("http://{addr}"))
            .collect()
    }

    /// Kills every executor (SHUTDOWN event, SIGKILL after the grace period; SIGTERM
    /// first for command tasks) and stops the servers.
    pub async fn shutdown(self) {
        let (effects, grace) = {
            let mut cluster = self.shared.lock();
            // Each executor has its own grace period (ExecutorInfo.shutdown_grace_period).
            let grace = cluster.longest_shutdown_grace().max(self.grace);
            (cluster.shutdown(), grace)
        };
        http::run_effects(&self.shared, effects);
        let deadline = Instant::now() + grace + Duration::from_secs(1);
        while self.shared.lock().has_executors() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leftover = self.shared.lock().executor_pids();
        for pid in leftover {
            process::signal_group(pid, "KILL").await;
        }
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        tracing::info!("devcluster stopped");
    }
}

/// Runs a cluster until `stop` completes, then shuts it down (the binary's body).
pub async fn run(
    config: DevClusterConfig,
    stop: impl Future<Output = ()>,
) -> Result<(), DevClusterError> {
    let cluster = DevCluster::start(config).await?;
    tracing::info!(master = %cluster.master_url(), agents = ?cluster.agent_urls(), "serving");
    stop.await;
    cluster.shutdown().await;
    Ok(())
}

/// A [`DevCluster`] on its own thread with its own multi-thread tokio runtime, for
/// programs whose main runtime is not tokio's (actix).
#[derive(Debug)]
pub struct DevClusterThread {
    master_url: String,
    agent_urls: Vec<String>,
    /// Dropping or firing it makes the thread shut the cluster down and exit.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Started = Result<(String, Vec<String>), DevClusterError>;

impl DevClusterThread {
    /// Starts the thread and waits until the cluster serves (or failed to start).
    pub fn spawn(config: DevClusterConfig) -> Result<DevClusterThread, DevClusterError> {
        let (ready_sender, ready) = std::sync::mpsc::channel::<Started>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("devcluster".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("devcluster-worker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_sender.send(Err(DevClusterError::Thread(error.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match DevCluster::start(config).await {
                        Ok(cluster) => {
                            let urls = (cluster.master_url(), cluster.agent_urls());
                            let _ = ready_sender.send(Ok(urls));
                            let _ = stopped.await;
                            cluster.shutdown().await;
                        }
                        Err(error) => {
                            let _ = ready_sender.send(Err(error));
                        }
                    }
                });
            })
            .map_err(|error| DevClusterError::Thread(error.to_string()))?;
        match ready.recv() {
            Ok(Ok((master_url, agent_urls))) => Ok(DevClusterThread {
                master_url,
                agent_urls,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(DevClusterError::Thread(
                    "the thread stopped before the cluster started".into(),
                ))
            }
        }
    }

    /// The master's base URL.
    pub fn master_url(&self) -> String {
        self.master_url.clone()
    }

    /// The agents' base URLs.
    pub fn agent_urls(&self) -> Vec<String> {
        self.agent_urls.clone()
    }

    /// Shuts the cluster down and waits for the thread to end.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DevClusterThread {
    fn drop(&mut self) {
        // Never leave executor processes behind.
        self.stop_and_join();
    }
}
