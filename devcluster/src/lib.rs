//! A single-process Mesos-compatible cluster: one or more masters and agents
//! speaking the real Mesos v1 scheduler and executor HTTP APIs, in protobuf and in
//! Mesos's own JSON mapping (so that third-party JSON clients such as pymesos work).
//!
//! It is the embedded default for local runs and the test harness of the project.
//! It is an independent implementation of the Mesos side, written from the protocol
//! facts (wire format, status codes, event order, environment of executors), so that
//! clients tested against it work against a real Mesos unchanged. User
//! documentation: `docs/devcluster.md`.
//!
//! # Layout
//! - [`DevCluster`] / [`DevClusterThread`]: start and stop a cluster on the current
//!   tokio runtime or on a thread of its own, and the test hooks: restart an agent
//!   ([`DevCluster::restart_agent`]) as a checkpointing Mesos agent restarts, lose
//!   one ([`DevCluster::stop_agent`], [`DevCluster::remove_agent`]), stop a master
//!   ([`DevCluster::stop_master`]). [`SimulatedAgents`] adds agents that run no
//!   process, for scale tests.
//! - `cluster`: the whole state as one synchronous struct (masters and leader,
//!   frameworks, offers, tasks, executors, status update streams) with one method
//!   per call and timer. Command tasks (TaskInfo with `command`, no `executor`) run
//!   under the agent's built-in command executor (`cluster::command_task`), which
//!   reports their states as Mesos's command executor does. `cluster::recovery`
//!   holds agent restarts; `cluster::agent_loss` lost and removed agents;
//!   `cluster::operations` RESERVE / UNRESERVE / CREATE / DESTROY and persistent
//!   volumes; `cluster::masters` leader changes (master failover);
//!   `cluster::simulated` the tasks of simulated agents.
//! - `resources`, `allocator`, `status_updates`, `validation`: the domain rules
//!   (resource pools with reservations and volumes, port ranges, offer filters,
//!   per-task update streams, request checks), each with table tests.
//! - `process`: sandboxes, volume links, executor environment and command line,
//!   signals.
//! - `json`: Mesos's JSON rules (snake_case names, enum names, Base64 bytes, emitted
//!   defaults, numbers as strings on input), by reflection over the proto crate's
//!   descriptors: JSON is converted to and from protobuf at the edge, so the cluster
//!   only sees prost types.
//! - `http`: hyper servers that translate requests into cluster calls, negotiate the
//!   stream encoding (JSON first, as Mesos does), authenticate schedulers (`auth`),
//!   redirect to the leader and answer `/master/redirect`.
//! - `zk`: the masters' registration in ZooKeeper and the leader watch.
//! - [`testing`]: a ZooKeeper server for the project's tests.
//!
//! # Must not
//! Depend on the store, actors or scheduler crates (only on the proto crate and
//! general crates): devcluster plays Mesos, not our framework.
//!
//! # Missing
//! LAUNCH_GROUP (and with it the default executor), isolation (volumes are
//! symbolic links, not mounts), refined (multi-level) and static reservations, disk
//! sources, hierarchical roles, a lost agent coming back, the fetcher's cache,
//! archive extraction and `https://`, and masters of another
//! process in the same ZooKeeper group (a foreign leader is seen as "no leader"). In JSON,
//! non-finite doubles are written as the strings `"Infinity"`/`"NaN"` rather than
//! Mesos's bare (invalid JSON) tokens.

mod allocator;
mod auth;
mod cluster;
mod error;
mod http;
mod json;
mod process;
mod resources;
mod status_updates;
pub mod testing;
mod validation;
mod zk;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::{parse_credentials, Credential};
pub use error::DevClusterError;

/// Benchmark support (the allocation fixture); not a stable API.
#[doc(hidden)]
pub use cluster::bench;

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
    /// How long a restarted agent waits for its executors to re-subscribe before it
    /// destroys them (Mesos: 2 s, at most 15 s); also the executors'
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX`.
    pub executor_reregistration_timeout: Duration,
    /// How long after an agent is lost ([`DevCluster::stop_agent`]) the master
    /// declares it unreachable (Mesos: 5 missed pings of 15 s, 75 s).
    pub agent_removal_timeout: Duration,
    /// Agents that run no process, after the real ones (see [`SimulatedAgents`]).
    pub simulated_agents: SimulatedAgents,
    /// Number of masters (at least 1), sharing the agents. The first listens on
    /// `listen`, the others on the same IP and the next ports (free ports when
    /// `listen`'s port is 0). One leads; the others redirect to it.
    pub masters: usize,
    /// `zk://host:port[,host:port…]/path`: the masters register there as Mesos
    /// masters do and the lowest sequence leads. Without it the lowest-indexed
    /// running master leads.
    pub zookeeper: Option<String>,
    /// Scheduler credentials: when not empty, every scheduler API request must
    /// authenticate with HTTP Basic as one of them (see [`parse_credentials`]).
    pub credentials: Vec<Credential>,
}

/// Simulated agents: agents without an executor API server that run no process.
///
/// A task launched on one is answered as if a well-behaved executor ran it:
/// TASK_STARTING at once, TASK_RUNNING `delay` later, TASK_KILLED on KILL, each an
/// agent update with a uuid that waits for its acknowledgement like a real agent's.
/// They are cheap (a few hundred bytes each), for scale tests with thousands of
/// agents. They take the agent indices after the real agents and have hostnames
/// `simulated-<n>` (n from 0).
#[derive(Debug, Clone)]
pub struct SimulatedAgents {
    /// How many; 0 for none.
    pub count: usize,
    /// CPUs of each.
    pub cpus: f64,
    /// Memory of each, in MB.
    pub mem: f64,
    /// Disk of each, in MB.
    pub disk: f64,
    /// Inclusive range of ports of each.
    pub ports: (u64, u64),
    /// Time between a task's TASK_STARTING and its TASK_RUNNING.
    pub delay: Duration,
}

impl Default for SimulatedAgents {
    fn default() -> Self {
        SimulatedAgents {
            count: 0,
            cpus: 4.0,
            mem: 4096.0,
            disk: 10240.0,
            ports: (31000, 32000),
            delay: Duration::from_millis(100),
        }
    }
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
            executor_reregistration_timeout: Duration::from_secs(2),
            agent_removal_timeout: Duration::from_secs(75),
            simulated_agents: SimulatedAgents::default(),
            masters: 1,
            zookeeper: None,
            credentials: Vec::new(),
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
    master_addrs: Vec<SocketAddr>,
    agent_addrs: Vec<SocketAddr>,
    /// Turning it true stops the servers and timers; they own receivers.
    shutdown: watch::Sender<bool>,
    /// The timers and the ZooKeeper leader watch.
    tasks: Vec<JoinHandle<()>>,
    /// Each master's scheduler API server, by master index (`None` once stopped).
    master_servers: std::sync::Mutex<Vec<Option<Server>>>,
    /// Each master's ZooKeeper session holding its node (`None` without ZooKeeper
    /// or once stopped).
    zk_sessions: std::sync::Mutex<Vec<Option<zookeeper_client::Client>>>,
    /// Whether masters register in ZooKeeper (which then decides who leads).
    zookeeper: bool,
    /// Each agent's executor API server, by agent index. A std mutex held only to
    /// take or put a server: a restart takes its agent's server out (`None` while the
    /// agent is down) and puts the new one back; `shutdown` takes them all.
    agent_servers: std::sync::Mutex<Vec<Option<Server>>>,
    grace: Duration,
}

/// A running HTTP server of one master or agent.
#[derive(Debug)]
struct Server {
    /// Turning it true stops this server alone and drops its connections.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `role` on `listener` until the cluster shuts down or the server is
    /// stopped.
    fn start(
        listener: TcpListener,
        shared: Arc<http::Shared>,
        role: http::Role,
        shutdown: watch::Receiver<bool>,
    ) -> Server {
        let (stop, stop_receiver) = watch::channel(false);
        let task = tokio::spawn(http::serve(
            listener,
            shared,
            role,
            http::Stop::new(vec![shutdown, stop_receiver]),
        ));
        Server { stop, task }
    }

    /// Stops the server and waits until its port is closed.
    async fn stop(self) {
        let _ = self.stop.send(true);
        // The serve loop owns the listener: once it has ended, the port is closed.
        let _ = self.task.await;
    }
}

/// How long a restarted agent keeps trying to bind its old port.
const REBIND_PATIENCE: Duration = Duration::from_secs(5);

/// Binds `addr` with `SO_REUSEADDR`, so that an agent can listen again on its port
/// while connections of its previous life linger in TIME_WAIT.
fn bind_reusing(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
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
        if config.agents.is_empty() && config.simulated_agents.count == 0 {
            return Err(DevClusterError::Config(
                "at least one agent (real or simulated) is needed".into(),
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
        if config.masters == 0 {
            return Err(DevClusterError::Config(
                "at least one master is needed".into(),
            ));
        }
        let zookeeper = config
            .zookeeper
            .as_deref()
            .map(zk::ZkUrl::parse)
            .transpose()?;
        let mut master_listeners = Vec::new();
        let mut master_addrs = Vec::new();
        for index in 0..config.masters {
            let port = match config.listen.port() {
                0 => 0,
                port => u16::try_from(usize::from(port) + index)
                    .map_err(|_| DevClusterError::Config("master ports run past 65535".into()))?,
            };
            let addr = SocketAddr::new(config.listen.ip(), port);
            let listener = bind(addr).await?;
            let local = listener
                .local_addr()
                .map_err(|source| DevClusterError::Bind { addr, source })?;
            master_addrs.push(reachable(local));
            master_listeners.push(listener);
        }
        let master_addr = master_addrs[0];
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
                simulated: false,
            });
            agent_listeners.push((listener, endpoint));
        }
        let simulated = &config.simulated_agents;
        for n in 0..simulated.count {
            setups.push(cluster::AgentSetup {
                hostname: format!("simulated-{n}"),
                // Nothing listens there: a simulated agent has no executor API.
                endpoint: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                total: resources::ResourceSet::new(
                    simulated.cpus,
                    simulated.mem,
                    simulated.disk,
                    resources::Ranges::new([simulated.ports]),
                ),
                attributes: Vec::new(),
                simulated: true,
            });
        }
        let settings = cluster::Settings {
            heartbeat_interval: config.heartbeat_interval,
            allocation_interval: config.allocation_interval,
            status_update_retry_interval: config.status_update_retry_interval,
            executor_registration_timeout: config.executor_registration_timeout,
            executor_shutdown_grace_period: config.executor_shutdown_grace_period,
            executor_reregistration_timeout: config.executor_reregistration_timeout,
            agent_removal_timeout: config.agent_removal_timeout,
            simulated_task_delay: config.simulated_agents.delay,
            work_dir: config.work_dir.clone(),
        };
        let mut cluster = cluster::Cluster::new(settings, master_addr, setups, Instant::now());
        for addr in &master_addrs[1..] {
            cluster.add_master(*addr);
        }
        let master_infos: Vec<_> = (0..master_addrs.len())
            .filter_map(|index| cluster.master(index).cloned())
            .collect();
        let authenticator = auth::Authenticator::new(&config.credentials);
        let shared = Arc::new(http::Shared::new(cluster, authenticator));
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(http::run_timers(
            shared.clone(),
            shutdown_receiver.clone(),
        ))];
        let mut zk_sessions = Vec::new();
        if let Some(url) = &zookeeper {
            // Registered in index order, so the first master leads at first.
            let mut ours = Vec::new();
            for (index, info) in master_infos.iter().enumerate() {
                let (session, sequence) = zk::register(url, info).await?;
                zk_sessions.push(Some(session));
                ours.push((sequence, index));
            }
            zk::publish_current(url, &shared, &ours).await?;
            tasks.push(tokio::spawn(zk::follow(
                url.clone(),
                shared.clone(),
                ours,
                shutdown_receiver.clone(),
            )));
        }
        let master_servers = master_listeners
            .into_iter()
            .enumerate()
            .map(|(index, listener)| {
                Some(Server::start(
                    listener,
                    shared.clone(),
                    http::Role::Master(index),
                    shutdown_receiver.clone(),
                ))
            })
            .collect();
        let mut agent_addrs = Vec::new();
        let mut agent_servers = Vec::new();
        for (index, (listener, endpoint)) in agent_listeners.into_iter().enumerate() {
            agent_addrs.push(endpoint);
            agent_servers.push(Some(Server::start(
                listener,
                shared.clone(),
                http::Role::Agent(index),
                shutdown_receiver.clone(),
            )));
        }
        tracing::info!(masters = ?master_addrs, agents = agent_addrs.len(), "devcluster started");
        Ok(DevCluster {
            shared,
            master_addrs,
            agent_addrs,
            shutdown,
            tasks,
            master_servers: std::sync::Mutex::new(master_servers),
            zk_sessions: std::sync::Mutex::new(zk_sessions),
            zookeeper: zookeeper.is_some(),
            agent_servers: std::sync::Mutex::new(agent_servers),
            grace: config.executor_shutdown_grace_period,
        })
    }

    fn agent_servers(&self) -> std::sync::MutexGuard<'_, Vec<Option<Server>>> {
        // The guarded vector is consistent after any panic: slots are only swapped.
        self.agent_servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Restarts agent `index` as a checkpointing Mesos agent restarts: its executor
    /// API stops listening and every open executor stream is dropped (the executor
    /// processes keep running), for `down_for`; then it listens again on the same
    /// port, recovering. While recovering, executors may SUBSCRIBE again
    /// (re-registration) and UPDATE / MESSAGE calls get 503. Recovery completes
    /// `executor_reregistration_timeout` after the agent came back: executors that
    /// did not re-subscribe are killed and their tasks become TASK_LOST (TASK_GONE
    /// for partition-aware frameworks) with REASON_EXECUTOR_REREGISTRATION_TIMEOUT.
    /// Executors of frameworks without checkpointing are killed when the agent goes
    /// down. The master keeps the agent registered throughout.
    ///
    /// Returns once the agent listens again (recovery still running). If the port
    /// cannot be bound again, the agent stays down and the error says so.
    pub async fn restart_agent(
        &self,
        index: usize,
        down_for: Duration,
    ) -> Result<(), DevClusterError> {
        let restart_error = |reason: &str| DevClusterError::AgentRestart {
            index,
            reason: reason.to_string(),
        };
        let addr = *self
            .agent_addrs
            .get(index)
            .ok_or_else(|| restart_error("no such agent"))?;
        let server = {
            let mut servers = self.agent_servers();
            let running = self
                .shared
                .lock()
                .agent_phase(index)
                .is_some_and(|phase| phase.can_restart());
            if !running {
                return Err(restart_error("the agent is still down or recovering"));
            }
            servers
                .get_mut(index)
                .and_then(Option::take)
                .ok_or_else(|| restart_error("the agent is already restarting"))?
        };
        tracing::info!(agent = index, down_for = ?down_for, "restarting agent");
        let effects = self.shared.lock().agent_down(index);
        http::run_effects(&self.shared, effects);
        server.stop().await;

        tokio::time::sleep(down_for).await;

        let deadline = Instant::now() + REBIND_PATIENCE;
        let listener = loop {
            match bind_reusing(addr) {
                Ok(listener) => break listener,
                Err(source) if Instant::now() >= deadline => {
                    return Err(DevClusterError::Bind { addr, source });
                }
                Err(error) => {
                    tracing::debug!(%error, %addr, "agent port not free yet, retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.shared.lock().agent_back(index, Instant::now());
        let server = Server::start(
            listener,
            self.shared.clone(),
            http::Role::Agent(index),
            self.shutdown.subscribe(),
        );
        if let Some(slot) = self.agent_servers().get_mut(index) {
            *slot = Some(server);
        }
        tracing::info!(agent = index, %addr, "agent listening again, recovering");
        Ok(())
    }

    /// Loses agent `index` (real or simulated) as a crashed host is lost: its
    /// executor API stops, its executors' processes are killed without updates and
    /// its offers are rescinded; `agent_removal_timeout` later the master declares
    /// it unreachable and reports its tasks TASK_UNREACHABLE (TASK_LOST to
    /// frameworks that are not PARTITION_AWARE). The agent never comes back.
    pub async fn stop_agent(&self, index: usize) -> Result<(), DevClusterError> {
        self.take_agent_down(index, "stop").await?;
        let effects = self.shared.lock().agent_lost(index, Instant::now());
        http::run_effects(&self.shared, effects);
        Ok(())
    }

    /// Marks agent `index` gone as an operator does (stopping it first if it still
    /// runs): its tasks become TASK_GONE_BY_OPERATOR (TASK_LOST to frameworks that
    /// are not PARTITION_AWARE) at once.
    pub async fn remove_agent(&self, index: usize) -> Result<(), DevClusterError> {
        self.take_agent_down(index, "remove").await?;
        let effects = self.shared.lock().agent_gone(index);
        http::run_effects(&self.shared, effects);
        Ok(())
    }

    /// Stops agent `index`'s executor API server, if it has one running.
    async fn take_agent_down(&self, index: usize, action: &str) -> Result<(), DevClusterError> {
        let phase = self.shared.lock().agent_phase(index);
        let Some(phase) = phase else {
            return Err(DevClusterError::AgentControl {
                index,
                reason: format!("cannot {action} it: no such agent"),
            });
        };
        if matches!(phase, cluster::AgentPhase::Down) {
            return Err(DevClusterError::AgentControl {
                index,
                reason: format!("cannot {action} it while it restarts"),
            });
        }
        let server = self.agent_servers().get_mut(index).and_then(Option::take);
        if let Some(server) = server {
            tracing::info!(agent = index, action, "stopping the agent's executor API");
            server.stop().await;
        }
        Ok(())
    }

    /// The first master's base URL, e.g. `http://127.0.0.1:5050` (the leader
    /// unless masters were stopped).
    pub fn master_url(&self) -> String {
        format!("http://{}", self.master_addrs[0])
    }

    /// Every master's base URL, by master index.
    pub fn master_urls(&self) -> Vec<String> {
        self.master_addrs
            .iter()
            .map(|addr| format!("http://{addr}"))
            .collect()
    }

    /// The index of the leading master, if one leads.
    pub fn leader(&self) -> Option<usize> {
        self.shared.lock().leader()
    }

    /// The IDs of the frameworks subscribed to the leading master, sorted.
    pub fn subscribed_frameworks(&self) -> Vec<String> {
        self.shared.lock().subscribed_frameworks()
    }

    /// Stops master `index` as a killed master process stops: its HTTP server
    /// closes (with every connection to it) and its ZooKeeper session ends, which
    /// removes its node. If it led, the next master leads (the lowest remaining
    /// sequence in ZooKeeper, else the lowest running index) and fails over: the
    /// agents, executors and tasks stay; frameworks must re-subscribe to it.
    pub async fn stop_master(&self, index: usize) -> Result<(), DevClusterError> {
        let server = {
            let mut servers = self.lock_slots(&self.master_servers);
            servers.get_mut(index).and_then(Option::take)
        };
        let Some(server) = server else {
            return Err(DevClusterError::Config(format!(
                "master {index} does not exist or is already stopped"
            )));
        };
        tracing::info!(master = index, "stopping master");
        server.stop().await;
        if self.zookeeper {
            let session = self
                .lock_slots(&self.zk_sessions)
                .get_mut(index)
                .and_then(Option::take);
            // Dropping the only handle closes the session; ZooKeeper then removes
            // the master's ephemeral node and the leader watch sees it.
            drop(session);
        } else {
            let next = self
                .lock_slots(&self.master_servers)
                .iter()
                .position(Option::is_some);
            self.shared.lock().set_leader(next, Instant::now());
        }
        Ok(())
    }

    fn lock_slots<'a, T>(
        &self,
        slots: &'a std::sync::Mutex<Vec<Option<T>>>,
    ) -> std::sync::MutexGuard<'a, Vec<Option<T>>> {
        // The guarded vectors are consistent after any panic: slots are only swapped.
        slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let mut server_tasks: Vec<JoinHandle<()>> = self
            .agent_servers()
            .iter_mut()
            .filter_map(Option::take)
            .map(|server| server.task)
            .collect();
        server_tasks.extend(
            self.lock_slots(&self.master_servers)
                .iter_mut()
                .filter_map(Option::take)
                .map(|server| server.task),
        );
        // Closing the sessions removes the masters' nodes.
        self.lock_slots(&self.zk_sessions).clear();
        for task in self.tasks.into_iter().chain(server_tasks) {
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
    tracing::info!(masters = ?cluster.master_urls(), agents = ?cluster.agent_urls(), "serving");
    stop.await;
    cluster.shutdown().await;
    Ok(())
}

/// A [`DevCluster`] on its own thread with its own multi-thread tokio runtime, for
/// programs whose main runtime is not tokio's (actix).
#[derive(Debug)]
pub struct DevClusterThread {
    master_urls: Vec<String>,
    /// The cluster's state, for read-only queries from the caller's thread.
    shared: Arc<http::Shared>,
    agent_urls: Vec<String>,
    /// Dropping or firing it makes the thread shut the cluster down and exit.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Requests for the cluster on the thread, handled one at a time.
    commands: tokio::sync::mpsc::UnboundedSender<ThreadCommand>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Started = Result<(Vec<String>, Vec<String>, Arc<http::Shared>), DevClusterError>;

/// A request to the cluster running on a [`DevClusterThread`].
#[derive(Debug)]
enum ThreadCommand {
    /// [`DevCluster::restart_agent`], answered on `reply`.
    Restart {
        index: usize,
        down_for: Duration,
        reply: std::sync::mpsc::Sender<Result<(), DevClusterError>>,
    },
    /// [`DevCluster::stop_agent`].
    Stop {
        index: usize,
        reply: std::sync::mpsc::Sender<Result<(), DevClusterError>>,
    },
    /// [`DevCluster::remove_agent`].
    Remove {
        index: usize,
        reply: std::sync::mpsc::Sender<Result<(), DevClusterError>>,
    },
    /// [`DevCluster::stop_master`].
    StopMaster {
        index: usize,
        reply: std::sync::mpsc::Sender<Result<(), DevClusterError>>,
    },
}

/// The thread's body once the cluster serves: handles commands until stopped.
async fn serve_commands(
    cluster: &DevCluster,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<ThreadCommand>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            command = commands.recv() => match command {
                Some(ThreadCommand::Restart { index, down_for, reply }) => {
                    let _ = reply.send(cluster.restart_agent(index, down_for).await);
                }
                Some(ThreadCommand::Stop { index, reply }) => {
                    let _ = reply.send(cluster.stop_agent(index).await);
                }
                Some(ThreadCommand::Remove { index, reply }) => {
                    let _ = reply.send(cluster.remove_agent(index).await);
                }
                Some(ThreadCommand::StopMaster { index, reply }) => {
                    let _ = reply.send(cluster.stop_master(index).await);
                }
                // The handle is gone, and with it the stop sender.
                None => return,
            },
        }
    }
}

impl DevClusterThread {
    /// Starts the thread and waits until the cluster serves (or failed to start).
    pub fn spawn(config: DevClusterConfig) -> Result<DevClusterThread, DevClusterError> {
        let (ready_sender, ready) = std::sync::mpsc::channel::<Started>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (commands, command_receiver) = tokio::sync::mpsc::unbounded_channel();
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
                            let urls = (
                                cluster.master_urls(),
                                cluster.agent_urls(),
                                cluster.shared.clone(),
                            );
                            let _ = ready_sender.send(Ok(urls));
                            serve_commands(&cluster, stopped, command_receiver).await;
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
            Ok(Ok((master_urls, agent_urls, shared))) => Ok(DevClusterThread {
                master_urls,
                shared,
                agent_urls,
                stop: Some(stop),
                commands,
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

    /// The first master's base URL.
    pub fn master_url(&self) -> String {
        self.master_urls.first().cloned().unwrap_or_default()
    }

    /// Every master's base URL, by master index.
    pub fn master_urls(&self) -> Vec<String> {
        self.master_urls.clone()
    }

    /// The index of the leading master, if one leads.
    pub fn leader(&self) -> Option<usize> {
        self.shared.lock().leader()
    }

    /// The IDs of the frameworks subscribed to the leading master, sorted.
    pub fn subscribed_frameworks(&self) -> Vec<String> {
        self.shared.lock().subscribed_frameworks()
    }

    /// [`DevCluster::stop_master`] on the cluster's thread.
    pub fn stop_master(&self, index: usize) -> Result<(), DevClusterError> {
        self.command(|reply| ThreadCommand::StopMaster { index, reply })
    }

    /// The agents' base URLs.
    pub fn agent_urls(&self) -> Vec<String> {
        self.agent_urls.clone()
    }

    /// [`DevCluster::restart_agent`] on the cluster's thread; blocks the caller until
    /// the agent listens again (about `down_for`).
    pub fn restart_agent(&self, index: usize, down_for: Duration) -> Result<(), DevClusterError> {
        self.command(|reply| ThreadCommand::Restart {
            index,
            down_for,
            reply,
        })
    }

    /// [`DevCluster::stop_agent`] on the cluster's thread.
    pub fn stop_agent(&self, index: usize) -> Result<(), DevClusterError> {
        self.command(|reply| ThreadCommand::Stop { index, reply })
    }

    /// [`DevCluster::remove_agent`] on the cluster's thread.
    pub fn remove_agent(&self, index: usize) -> Result<(), DevClusterError> {
        self.command(|reply| ThreadCommand::Remove { index, reply })
    }

    /// Sends a command to the cluster's thread and waits for its answer.
    fn command(
        &self,
        make: impl FnOnce(std::sync::mpsc::Sender<Result<(), DevClusterError>>) -> ThreadCommand,
    ) -> Result<(), DevClusterError> {
        let (reply, answer) = std::sync::mpsc::channel();
        let gone = || DevClusterError::Thread("the cluster thread has stopped".into());
        self.commands.send(make(reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
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
