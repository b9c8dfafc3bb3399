//! The state of the whole cluster: the master's frameworks, offers and tasks, and each
//! agent's executors and status update streams, as one synchronous struct.
//!
//! The HTTP layer locks it, calls one method per request or timer tick and runs the
//! returned [`Effect`]s (starting and killing processes) after unlocking. Events are
//! pushed into the subscribers' unbounded channels directly, which never blocks.
//!
//! # Lifecycle of the entities
//! - A framework is created by SUBSCRIBE (new, or recovered with a known ID) and
//!   destroyed by TEARDOWN or when its failover timeout passes while disconnected.
//! - An offer is created by [`Cluster::tick`]'s allocation and destroyed by ACCEPT,
//!   DECLINE, a re-subscription or the framework's disconnection.
//! - A task is created by a valid LAUNCH and forgotten when its terminal update is
//!   acknowledged or its framework is removed.
//! - An executor is created by the first LAUNCH naming it and destroyed when its
//!   process exits or fails to start. It is killed (and so destroyed when its process
//!   exits) by a shutdown, a missed registration deadline, or an agent restart it did
//!   not re-subscribe after (see `recovery`).
//! - A command task (TaskInfo with `command` and no `executor`) gets the agent's
//!   built-in command executor: an [`Executor`] entry whose ID is the task's, whose
//!   process is the task's command itself, and which never speaks the executor API.
//!   The agent reports the task's states on its behalf (see `command_task`).

mod agent_loss;
pub mod bench;
mod command_task;
mod executor_api;
mod masters;
mod operations;
mod recovery;
mod scheduler_api;
mod simulated;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mesos_stateful_proto::v1::{
    self, executor, scheduler, task_status, AgentId, AgentInfo, ExecutorId, ExecutorInfo,
    FrameworkId, FrameworkInfo, MasterInfo, OfferId, TaskId, TaskInfo, TaskState, TaskStatus,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::allocator::OfferFilters;
use crate::process::SpawnRequest;
use crate::resources::{Format, ResourceSet};
use crate::status_updates::StatusUpdateManager;

pub use executor_api::ExecutorConnection;
pub use recovery::AgentPhase;

/// Timing knobs of the cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Interval between HEARTBEAT events (reported in SUBSCRIBED).
    pub heartbeat_interval: Duration,
    /// Interval between allocation rounds.
    pub allocation_interval: Duration,
    /// First retry interval of unacknowledged status updates.
    pub status_update_retry_interval: Duration,
    /// How long a launched executor has to SUBSCRIBE.
    pub executor_registration_timeout: Duration,
    /// Default grace period between an executor's SHUTDOWN and its SIGKILL.
    pub executor_shutdown_grace_period: Duration,
    /// How long a restarted agent waits for its executors to re-subscribe.
    pub executor_reregistration_timeout: Duration,
    /// How long after a lost agent disconnected the master declares it unreachable.
    pub agent_removal_timeout: Duration,
    /// Time between TASK_STARTING and TASK_RUNNING of a task on a simulated agent.
    pub simulated_task_delay: Duration,
    /// Root of the sandboxes.
    pub work_dir: PathBuf,
}

/// What an agent is made of, decided before the cluster state is built.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    /// The agent's hostname (also in offers).
    pub hostname: String,
    /// Where the agent's executor API listens.
    pub endpoint: SocketAddr,
    /// Everything the agent offers.
    pub total: ResourceSet,
    /// Text attributes.
    pub attributes: Vec<(String, String)>,
    /// A simulated agent: no executor API, no processes (see `simulated`).
    pub simulated: bool,
}

/// Work the caller must do outside the lock.
#[derive(Debug)]
pub enum Effect {
    /// Create the sandbox, fetch URIs and start the executor process.
    SpawnExecutor(Box<SpawnRequest>),
    /// Send SIGKILL to the executor's process group after `grace` if it is still
    /// running (`grace` zero: at once), and SIGTERM first if `terminate`.
    ///
    /// As in Mesos, a custom executor gets no SIGTERM: it has had a SHUTDOWN event
    /// and the grace period to exit. The built-in command executor of a command task
    /// does send SIGTERM to its task's command, as Mesos's command executor does.
    KillExecutor {
        /// Index of the agent.
        agent: usize,
        /// The process (group) to signal.
        pid: u32,
        /// The container the process belongs to (to check it is still the same one).
        container_id: String,
        /// Time until SIGKILL.
        grace: Duration,
        /// Send SIGTERM at once.
        terminate: bool,
    },
    /// Create a persistent volume's directory.
    CreateVolume {
        /// The volume's directory.
        path: PathBuf,
    },
    /// Remove a destroyed persistent volume's directory and its data.
    DestroyVolume {
        /// The volume's directory.
        path: PathBuf,
    },
}

/// A scheduler's subscription stream.
#[derive(Debug)]
struct Connection {
    stream_id: String,
    sender: UnboundedSender<scheduler::Event>,
}

#[derive(Debug)]
struct Framework {
    id: FrameworkId,
    info: FrameworkInfo,
    /// `None` while disconnected; the sender is owned here so that dropping it ends
    /// the HTTP stream (TEARDOWN, failover).
    connection: Option<Connection>,
    /// When a disconnected framework is removed.
    failover_deadline: Option<Instant>,
    suppressed: bool,
}

impl Framework {
    fn role(&self) -> String {
        #[allow(deprecated)] // `FrameworkInfo.role` is the pre-MULTI_ROLE field.
        let legacy = self.info.role.clone();
        self.info
            .roles
            .first()
            .cloned()
            .or(legacy)
            .unwrap_or_else(|| "*".to_string())
    }

    fn has_capability(&self, capability: v1::framework_info::capability::Type) -> bool {
        self.info
            .capabilities
            .iter()
            .any(|c| c.r#type == Some(capability as i32))
    }

    /// The reservation format the framework reads and writes.
    fn resource_format(&self) -> Format {
        if self.has_capability(v1::framework_info::capability::Type::ReservationRefinement) {
            Format::Refined
        } else {
            Format::Legacy
        }
    }

    fn partition_aware(&self) -> bool {
        self.has_capability(v1::framework_info::capability::Type::PartitionAware)
    }

    fn send(&self, event: scheduler::Event) {
        if let Some(connection) = &self.connection {
            // A closed stream is noticed by its watcher; nothing to do here.
            let _ = connection.sender.send(event);
        }
    }
}

#[derive(Debug)]
struct Task {
    agent: usize,
    executor_id: Option<ExecutorId>,
    resources: ResourceSet,
    /// The latest status the master knows (STAGING until the first update).
    status: TaskStatus,
}

impl Task {
    fn is_terminal(&self) -> bool {
        TaskState::try_from(self.status.state).is_ok_and(TaskState::is_terminal)
    }
}

#[derive(Debug)]
struct Offer {
    framework_id: FrameworkId,
    agent: usize,
    resources: ResourceSet,
}

#[derive(Debug)]
struct Executor {
    info: ExecutorInfo,
    framework_info: FrameworkInfo,
    container_id: String,
    resources: ResourceSet,
    /// Known once the process has started.
    pid: Option<u32>,
    /// The subscribed executor's stream; dropping it ends the HTTP stream.
    connection: Option<ExecutorConnection>,
    /// Tasks launched before the executor subscribed, delivered on SUBSCRIBE.
    queued: Vec<TaskInfo>,
    /// The agent's latest state of every task given to this executor.
    tasks: HashMap<TaskId, TaskState>,
    /// Kill the executor if it has not subscribed by then.
    registration_deadline: Option<Instant>,
    /// A kill was asked before the process started.
    kill_requested: bool,
    /// Set once SHUTDOWN or a kill has been decided.
    shutting_down: bool,
    /// Reason given to the tasks failed when the process exits.
    termination_reason: task_status::Reason,
    /// Set for the built-in command executor of a command task.
    command_task: Option<command_task::CommandTask>,
    /// Set when the agent restarts, cleared when the executor re-subscribes; an
    /// executor still awaited when recovery completes is destroyed.
    awaiting_reregistration: bool,
}

#[derive(Debug)]
struct Agent {
    id: AgentId,
    info: AgentInfo,
    endpoint: SocketAddr,
    total: ResourceSet,
    executors: HashMap<(FrameworkId, ExecutorId), Executor>,
    updates: StatusUpdateManager,
    /// Running, down for a restart, or recovering after one.
    phase: AgentPhase,
    /// Set for a simulated agent: the executors and tasks it pretends to run.
    simulation: Option<simulated::Simulation>,
}

/// The cluster state. See the module documentation.
#[derive(Debug)]
pub struct Cluster {
    settings: Settings,
    /// The leading master's info (the last leader's while none leads).
    master_info: MasterInfo,
    /// Every master of the cluster, by index.
    masters: Vec<MasterInfo>,
    /// The index of the leading master, if one leads.
    leader: Option<usize>,
    frameworks: HashMap<FrameworkId, Framework>,
    /// IDs of torn-down frameworks: re-subscribing with one gets an ERROR.
    removed_frameworks: HashSet<FrameworkId>,
    offers: HashMap<OfferId, Offer>,
    filters: OfferFilters,
    tasks: HashMap<(FrameworkId, TaskId), Task>,
    agents: Vec<Agent>,
    /// Index of each agent by ID.
    agent_indices: HashMap<AgentId, usize>,
    /// Unacknowledged operation status updates, by framework and operation ID.
    operation_updates: HashMap<(FrameworkId, String), operations::PendingOperationStatus>,
    /// Due state changes of tasks on simulated agents, by time and sequence number.
    simulated_transitions: BTreeMap<(Instant, u64), simulated::Transition>,
    next_transition: u64,
    next_framework: u64,
    next_offer: u64,
    next_allocation: Instant,
    allocation_round: usize,
}

/// Seconds since the epoch, as Mesos puts in `TaskStatus.timestamp`.
fn timestamp() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn new_uuid_bytes() -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes())
}

impl Cluster {
    /// A cluster whose master answers at `master_addr` and with the given agents.
    pub fn new(
        settings: Settings,
        master_addr: SocketAddr,
        agents: Vec<AgentSetup>,
        now: Instant,
    ) -> Cluster {
        let master_info = masters::master_info(master_addr);
        let master_id = master_info.id.clone();
        let retry = settings.status_update_retry_interval;
        let agents = agents
            .into_iter()
            .enumerate()
            .map(|(index, setup)| {
                let id = AgentId {
                    value: format!("{master_id}-S{index}"),
                };
                let info = AgentInfo {
                    hostname: setup.hostname,
                    port: (!setup.simulated).then(|| i32::from(setup.endpoint.port())),
                    resources: setup.total.to_resources("*", Format::Refined),
                    attributes: setup
                        .attributes
                        .into_iter()
                        .map(|(name, value)| v1::Attribute {
                            name,
                            r#type: v1::value::Type::Text as i32,
                            text: Some(v1::value::Text { value }),
                            ..Default::default()
                        })
                        .collect(),
                    id: Some(id.clone()),
                    domain: None,
                };
                Agent {
                    id,
                    info,
                    endpoint: setup.endpoint,
                    total: setup.total,
                    executors: HashMap::new(),
                    updates: StatusUpdateManager::new(retry),
                    phase: AgentPhase::Running,
                    simulation: setup.simulated.then(simulated::Simulation::default),
                }
            })
            .collect::<Vec<Agent>>();
        let agent_indices = agents
            .iter()
            .enumerate()
            .map(|(index, agent)| (agent.id.clone(), index))
            .collect();
        Cluster {
            settings,
            masters: vec![master_info.clone()],
            leader: Some(0),
            master_info,
            frameworks: HashMap::new(),
            removed_frameworks: HashSet::new(),
            offers: HashMap::new(),
            filters: OfferFilters::default(),
            tasks: HashMap::new(),
            agents,
            agent_indices,
            operation_updates: HashMap::new(),
            simulated_transitions: BTreeMap::new(),
            next_transition: 0,
            next_framework: 0,
            next_offer: 0,
            next_allocation: now,
            allocation_round: 0,
        }
    }

    /// Interval between HEARTBEAT events.
    pub fn heartbeat_interval(&self) -> Duration {
        self.settings.heartbeat_interval
    }

    /// The IDs of the agents, in configuration order.
    #[cfg(test)]
    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.agents.iter().map(|agent| agent.id.clone()).collect()
    }

    /// Runs the timers: failover timeouts, executor registration timeouts, status
    /// update retries and (when due) an allocation round.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();

        let expired: Vec<FrameworkId> = self
            .frameworks
            .values()
            .filter(|f| f.failover_deadline.is_some_and(|deadline| deadline <= now))
            .map(|f| f.id.clone())
            .collect();
        for framework_id in expired {
            tracing::info!(framework_id = %framework_id.value, "failover timeout passed, removing framework");
            effects.extend(self.remove_framework(&framework_id));
        }

        for (index, agent) in self.agents.iter_mut().enumerate() {
            for executor in agent.executors.values_mut() {
                let timed_out = executor.connection.is_none()
                    && executor
                        .registration_deadline
                        .is_some_and(|deadline| deadline <= now);
                if timed_out {
                    tracing::warn!(executor_id = %executor.info.executor_id.value, "executor did not subscribe in time, killing it");
                    executor.registration_deadline = None;
                    executor.termination_reason = task_status::Reason::ExecutorRegistrationTimeout;
                    effects.extend(kill_executor(index, executor, Duration::ZERO));
                }
            }
        }

        effects.extend(self.finish_recoveries(now));
        self.declare_unreachable(now);
        self.run_simulated_transitions(now);
        self.retry_operation_updates(now);

        for index in 0..self.agents.len() {
            // An agent that is down (or lost) does not retry its updates.
            if !self.agents[index].phase.is_up() {
                continue;
            }
            let due = self.agents[index].updates.due_retries(now);
            for (framework_id, status) in due {
                tracing::debug!(task_id = %status.task_id.value, "resending unacknowledged status update");
                self.forward_update(index, &framework_id, status);
            }
        }

        if now >= self.next_allocation {
            self.next_allocation = now + self.settings.allocation_interval;
            self.allocate(now);
        }
        effects
    }

    /// Resources of every agent (by index) not used by tasks, executors or
    /// outstanding offers: one pass over the tasks and offers, whatever the number
    /// of agents.
    fn free_resources(&self) -> Vec<ResourceSet> {
        let mut free: Vec<ResourceSet> = self
            .agents
            .iter()
            .map(|agent| {
                let mut free = agent.total.clone();
                for executor in agent.executors.values() {
                    free.subtract(&executor.resources);
                }
                if let Some(simulation) = &agent.simulation {
                    simulation.subtract_executors(&mut free);
                }
                free
            })
            .collect();
        for task in self.tasks.values() {
            if !task.is_terminal() {
                if let Some(slot) = free.get_mut(task.agent) {
                    slot.subtract(&task.resources);
                }
            }
        }
        for offer in self.offers.values() {
            if let Some(slot) = free.get_mut(offer.agent) {
                slot.subtract(&offer.resources);
            }
        }
        free
    }

    /// One allocation round: each agent's free resources go, as one offer, to the
    /// first connected, unsuppressed framework (rotating) that has not filtered them.
    /// A framework gets all its offers of the round in one OFFERS event.
    ///
    /// Cost: one pass over tasks and offers, then per agent a filter lookup per
    /// candidate framework until one takes it (O(agents × frameworks) at worst).
    fn allocate(&mut self, now: Instant) {
        self.filters.expire(now);
        let mut candidates: Vec<(FrameworkId, String)> = self
            .frameworks
            .values()
            .filter(|f| f.connection.is_some() && !f.suppressed)
            .map(|f| (f.id.clone(), f.role()))
            .collect();
        if candidates.is_empty() {
            return;
        }
        candidates.sort_by(|a, b| a.0.value.cmp(&b.0.value));
        let start = self.allocation_round % candidates.len();
        candidates.rotate_left(start);
        self.allocation_round = self.allocation_round.wrapping_add(1);

        let mut batches: HashMap<FrameworkId, Vec<v1::Offer>> = HashMap::new();
        for (index, free) in self.free_resources().into_iter().enumerate() {
            if !free.is_allocatable() || self.agents[index].phase.is_lost() {
                continue;
            }
            let agent_id = &self.agents[index].id;
            // Each framework is offered the unreserved resources and those of its role.
            let Some((framework_id, offerable)) = candidates.iter().find_map(|(fid, role)| {
                let offerable = free.for_role(role);
                (offerable.is_allocatable()
                    && !self.filters.is_filtered(fid, agent_id, &offerable, now))
                .then(|| (fid.clone(), offerable))
            }) else {
                continue;
            };
            if let Some(offer) = self.make_offer(index, &framework_id, offerable) {
                batches.entry(framework_id).or_default().push(offer);
            }
        }
        for (framework_id, offers) in batches {
            if let Some(framework) = self.frameworks.get(&framework_id) {
                tracing::debug!(framework_id = %framework_id.value, count = offers.len(), "sending offers");
                framework.send(scheduler::Event {
                    r#type: Some(scheduler::event::Type::Offers as i32),
                    offers: Some(scheduler::event::Offers { offers }),
                    ..Default::default()
                });
            }
        }
    }

    /// Records an offer of `resources` on agent `index` to a framework and returns
    /// it for sending.
    fn make_offer(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        resources: ResourceSet,
    ) -> Option<v1::Offer> {
        let framework = self.frameworks.get(framework_id)?;
        self.next_offer += 1;
        let offer_id = OfferId {
            value: format!("{}-O{}", self.master_info.id, self.next_offer),
        };
        let agent = &self.agents[index];
        let role = framework.role();
        let mut executor_ids: Vec<ExecutorId> = agent
            .executors
            .keys()
            .filter(|(fid, _)| fid == framework_id)
            .map(|(_, eid)| eid.clone())
            .collect();
        if let Some(simulation) = &agent.simulation {
            executor_ids.extend(simulation.executor_ids(framework_id));
        }
        // A simulated agent has no endpoint to point at.
        let url = agent.simulation.is_none().then(|| v1::Url {
            scheme: "http".to_string(),
            address: v1::Address {
                hostname: Some(agent.info.hostname.clone()),
                ip: Some(agent.endpoint.ip().to_string()),
                port: i32::from(agent.endpoint.port()),
            },
            path: Some("/slave(1)".to_string()),
            ..Default::default()
        });
        let offer = v1::Offer {
            id: offer_id.clone(),
            framework_id: framework_id.clone(),
            agent_id: agent.id.clone(),
            hostname: agent.info.hostname.clone(),
            url,
            resources: resources.to_resources(&role, framework.resource_format()),
            attributes: agent.info.attributes.clone(),
            executor_ids,
            allocation_info: Some(v1::resource::AllocationInfo { role: Some(role) }),
            ..Default::default()
        };
        self.offers.insert(
            offer_id,
            Offer {
                framework_id: framework_id.clone(),
                agent: index,
                resources,
            },
        );
        Some(offer)
    }

    /// Drops the outstanding offers of a framework; their resources become free.
    fn remove_offers_of(&mut self, framework_id: &FrameworkId) {
        self.offers
            .retain(|_, offer| offer.framework_id != *framework_id);
    }

    /// Hands a status update from agent `index` to the master: record the task's
    /// state and send UPDATE to the framework if it is connected.
    fn forward_update(&mut self, index: usize, framework_id: &FrameworkId, status: TaskStatus) {
        if let Some(task) = self
            .tasks
            .get_mut(&(framework_id.clone(), status.task_id.clone()))
        {
            if task.agent == index {
                task.status = status.clone();
            }
        }
        if let Some(framework) = self.frameworks.get(framework_id) {
            framework.send(update_event(status));
        }
    }

    /// Sends a master-generated update (no uuid) to the framework.
    fn send_master_update(&self, framework_id: &FrameworkId, status: TaskStatus) {
        if let Some(framework) = self.frameworks.get(framework_id) {
            framework.send(update_event(status));
        }
    }

    /// Removes a framework: shuts its executors down, forgets its tasks, offers,
    /// filters and updates, and ends its stream.
    fn remove_framework(&mut self, framework_id: &FrameworkId) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.frameworks.remove(framework_id);
        self.removed_frameworks.insert(framework_id.clone());
        self.remove_offers_of(framework_id);
        self.filters.clear_framework(framework_id);
        self.tasks.retain(|(fid, _), _| fid != framework_id);
        self.operation_updates
            .retain(|(fid, _), _| fid != framework_id);
        let grace = self.settings.executor_shutdown_grace_period;
        for (index, agent) in self.agents.iter_mut().enumerate() {
            agent.updates.remove_framework(framework_id);
            if let Some(simulation) = &mut agent.simulation {
                simulation.remove_framework(framework_id);
            }
            for ((fid, _), executor) in agent.executors.iter_mut() {
                if fid == framework_id {
                    effects.extend(shutdown_executor(index, executor, grace));
                }
            }
        }
        effects
    }

    /// Kills every executor (SHUTDOWN, then SIGKILL) for the cluster's shutdown.
    pub fn shutdown(&mut self) -> Vec<Effect> {
        let grace = self.settings.executor_shutdown_grace_period;
        let mut effects = Vec::new();
        for (index, agent) in self.agents.iter_mut().enumerate() {
            for executor in agent.executors.values_mut() {
                effects.extend(shutdown_executor(index, executor, grace));
            }
        }
        for framework in self.frameworks.values_mut() {
            framework.connection = None;
        }
        effects
    }

    /// The longest shutdown grace period of the running executors (their
    /// `ExecutorInfo.shutdown_grace_period`, else the cluster's default).
    pub fn longest_shutdown_grace(&self) -> Duration {
        self.agents
            .iter()
            .flat_map(|agent| agent.executors.values())
            .map(|executor| executor_grace(executor, self.settings.executor_shutdown_grace_period))
            .max()
            .unwrap_or(self.settings.executor_shutdown_grace_period)
    }

    /// Whether any executor process is still known to run.
    pub fn has_executors(&self) -> bool {
        self.agents.iter().any(|agent| !agent.executors.is_empty())
    }

    /// The pid of the executor in `container_id` on agent `index`, if it still runs.
    pub fn executor_pid(&self, index: usize, container_id: &str) -> Option<u32> {
        self.agents.get(index).and_then(|agent| {
            agent
                .executors
                .values()
                .find(|executor| executor.container_id == container_id)
                .and_then(|executor| executor.pid)
        })
    }

    /// Pids of all running executor processes.
    pub fn executor_pids(&self) -> Vec<u32> {
        self.agents
            .iter()
            .flat_map(|agent| agent.executors.values().filter_map(|e| e.pid))
            .collect()
    }

    fn agent_index(&self, agent_id: &AgentId) -> Option<usize> {
        self.agent_indices.get(agent_id).copied()
    }
}

fn update_event(status: TaskStatus) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::Update as i32),
        update: Some(scheduler::event::Update { status }),
        ..Default::default()
    }
}

/// A status generated by the master (no uuid).
fn master_status(
    task_id: &TaskId,
    state: TaskState,
    reason: task_status::Reason,
    message: impl Into<String>,
    agent_id: Option<AgentId>,
) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        state: state as i32,
        message: Some(message.into()),
        source: Some(task_status::Source::Master as i32),
        reason: Some(reason as i32),
        agent_id,
        timestamp: Some(timestamp()),
        ..Default::default()
    }
}

/// A status generated by an agent (with a uuid, so it goes through the status
/// update manager and must be acknowledged).
fn agent_status(
    task_id: &TaskId,
    state: TaskState,
    reason: task_status::Reason,
    message: impl Into<String>,
    agent_id: &AgentId,
    executor_id: &ExecutorId,
) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        state: state as i32,
        message: Some(message.into()),
        source: Some(task_status::Source::Agent as i32),
        reason: Some(reason as i32),
        agent_id: Some(agent_id.clone()),
        executor_id: Some(executor_id.clone()),
        timestamp: Some(timestamp()),
        uuid: Some(new_uuid_bytes()),
        ..Default::default()
    }
}

/// Decides to stop an executor: SHUTDOWN event and SIGKILL after the grace period
/// if subscribed, SIGKILL at once if not; a command task's command gets SIGTERM,
/// then SIGKILL after the grace period.
fn shutdown_executor(
    index: usize,
    executor: &mut Executor,
    default_grace: Duration,
) -> Vec<Effect> {
    if executor.shutting_down {
        return Vec::new();
    }
    let grace = executor_grace(executor, default_grace);
    if let Some(command) = &mut executor.command_task {
        // The built-in command executor kills its task, which ends as TASK_KILLED.
        command.killed = true;
        return kill_executor(index, executor, grace);
    }
    if let Some(connection) = &executor.connection {
        connection.send(executor::Event {
            r#type: Some(executor::event::Type::Shutdown as i32),
            ..Default::default()
        });
        kill_executor(index, executor, grace)
    } else {
        kill_executor(index, executor, Duration::ZERO)
    }
}

/// An executor's grace period between SHUTDOWN and SIGKILL.
fn executor_grace(executor: &Executor, default_grace: Duration) -> Duration {
    executor
        .info
        .shutdown_grace_period
        .and_then(|d| u64::try_from(d.nanoseconds).ok())
        .map(Duration::from_nanos)
        .unwrap_or(default_grace)
}

/// Signals an executor's process, or remembers to once it has started.
fn kill_executor(index: usize, executor: &mut Executor, grace: Duration) -> Vec<Effect> {
    executor.shutting_down = true;
    match executor.pid {
        Some(pid) => vec![Effect::KillExecutor {
            agent: index,
            pid,
            container_id: executor.container_id.clone(),
            grace,
            terminate: executor.command_task.is_some() && !grace.is_zero(),
        }],
        None => {
            executor.kill_requested = true;
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests;
