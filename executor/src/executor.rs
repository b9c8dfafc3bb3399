//! The executor's event loop: subscription, task workers, status updates, exit.
//!
//! One loop owns all state ([`UpdateTracker`], the workers' kill switches, the
//! connection state) and reacts to messages from three kinds of helpers it spawns:
//! the subscription task (agent events, then the end of the stream), UPDATE calls
//! (their answers) and task workers (task states, then their exit). Nothing else
//! mutates the state, so no locks are needed.
//!
//! Framework MESSAGE events carry a `SchedulerMessage`; its `RunCommand` runs in the
//! task's container once per command id (the loop's [`CommandTable`]) and every copy
//! is answered with an executor MESSAGE carrying `ExecutorMessage{command_result}`.
//! Workers send their stats the same way (`ExecutorMessage{stats}`), and health
//! changes as TASK_RUNNING updates with `healthy` set. MESSAGE calls are best effort:
//! one that fails, or comes while unsubscribed, is dropped.
//!
//! Paths to exit: every launched task terminal and acknowledged
//! ([`ExitReason::TasksFinished`]); SHUTDOWN event or signal, once tasks are stopped
//! and their updates acknowledged or the grace period is over; the stream broke
//! without checkpointing ([`ExitReason::AgentDisconnected`]); no subscription within
//! the recovery timeout ([`ExitReason::AgentUnreachable`]); an initial subscription
//! the agent refuses for good (an error).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mesos_stateful_proto::stateful::{
    executor_message, scheduler_message, CommandResult, ExecutorMessage, RunCommand,
    SchedulerMessage,
};
use mesos_stateful_proto::v1::executor::{call, event, Event};
use mesos_stateful_proto::v1::task_status::{Reason, Source};
use mesos_stateful_proto::v1::{self, KillPolicy, TaskId, TaskInfo, TaskState, TaskStatus};
use mesos_stateful_proto::Message;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::agent::{AgentClient, AgentError};
use crate::config::Config;
use crate::task::commands::{run_command, Admission, CommandTable};
use crate::task::worker::{run_task, LazyDocker, WorkerReport};
use crate::task::{kill_grace_period, plan_container, Outcome, Owner, PlanRules};
use crate::telemetry::traceparent_label;
use crate::updates::{Acknowledgement, UpdateTracker};
use crate::Error;

/// How often failed UPDATE calls are retried.
pub const UPDATE_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How long to try the first subscription when checkpointing is off (the agent's
/// default `--executor_registration_timeout`).
pub const INITIAL_SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time kept, out of the shutdown grace period, to report after containers stopped.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);
/// Time allowed, beyond the grace period, for Docker calls when stopping after the
/// agent was lost.
const STOP_MARGIN: Duration = Duration::from_secs(10);

/// Why the executor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Every task reached a terminal state that the agent acknowledged.
    TasksFinished,
    /// The agent sent SHUTDOWN.
    Shutdown,
    /// The process was asked to stop (SIGTERM, Ctrl-C).
    Interrupted,
    /// The subscription broke and checkpointing is off.
    AgentDisconnected,
    /// No subscription succeeded within the recovery (or registration) timeout.
    AgentUnreachable,
}

impl ExitReason {
    /// The process exit code for this reason.
    pub fn exit_code(self) -> u8 {
        match self {
            ExitReason::TasksFinished | ExitReason::Shutdown | ExitReason::Interrupted => 0,
            ExitReason::AgentDisconnected | ExitReason::AgentUnreachable => 1,
        }
    }
}

/// What the loop hears from the tasks it spawned.
#[derive(Debug)]
enum LoopMsg {
    /// An event from the subscription of `generation`.
    Event { generation: u64, event: Box<Event> },
    /// The subscription of `generation` ended (cleanly if `error` is `None`).
    StreamEnded {
        generation: u64,
        error: Option<AgentError>,
    },
    /// An UPDATE call carrying `uuid` was answered.
    UpdateAnswered {
        uuid: Bytes,
        result: Result<(), AgentError>,
    },
    /// A worker reported something (a new state, its container, health, stats).
    Worker {
        task_id: TaskId,
        report: WorkerReport,
    },
    /// A scheduler's command finished.
    CommandDone { result: CommandResult },
    /// A worker ended (after its terminal state).
    WorkerExited { task_id: TaskId },
}

/// The subscription's state.
#[derive(Debug)]
enum Connection {
    /// A SUBSCRIBE is under way, carrying the updates with these uuids.
    Subscribing { included: Vec<Bytes> },
    /// The agent sent SUBSCRIBED on the current stream.
    Subscribed,
    /// Waiting for the next attempt.
    Waiting { retry_at: Instant },
    /// No more attempts: the executor is on its way out.
    Closed,
}

/// The loop's handle on a running worker.
#[derive(Debug)]
struct Worker {
    /// Set to `Some(grace)` to stop the task; the worker holds the receiver.
    kill: watch::Sender<Option<Duration>>,
    /// The task's own kill policy, the fallback for kills that carry none.
    task_policy: Option<KillPolicy>,
    /// The id of the task's container once it runs.
    container: Option<String>,
    /// The task's last known health, carried by all its later updates.
    healthy: Option<bool>,
}

/// An exit in progress.
#[derive(Debug)]
struct Stopping {
    reason: ExitReason,
    /// Exit at this point whatever is left.
    deadline: Instant,
    /// Whether to wait for the agent to acknowledge the terminal updates (false when
    /// the agent is gone anyway).
    wait_for_acknowledgements: bool,
}

/// The executor: one per Mesos executor process.
#[derive(Debug)]
pub struct Executor {
    config: Config,
    agent: AgentClient,
    docker: LazyDocker,
    owner: Owner,
    tracker: UpdateTracker,
    /// Running workers by task; an entry is removed when its worker exits.
    workers: HashMap<TaskId, Worker>,
    /// Sender cloned into every helper; the loop keeps it so `recv` never ends.
    inbox: mpsc::UnboundedSender<LoopMsg>,
    /// Taken by [`Executor::run`].
    inbox_receiver: Option<mpsc::UnboundedReceiver<LoopMsg>>,
    connection: Connection,
    /// Incremented per SUBSCRIBE, so that messages of an old stream are ignored.
    generation: u64,
    /// The subscription task; aborted when the loop ends.
    subscription: Option<JoinHandle<()>>,
    ever_subscribed: bool,
    /// Since when there is no subscription (start of the process, or the break).
    disconnected_since: Instant,
    /// Updates whose UPDATE call failed, requeued at the next retry tick.
    failed_sends: Vec<Bytes>,
    stopping: Option<Stopping>,
    outcome: Option<Result<ExitReason, Error>>,
    /// The scheduler's commands, running or recently run.
    commands: CommandTable,
}

impl Executor {
    /// An executor for `config`, talking to `agent` and running containers through
    /// `docker`.
    pub fn new(config: Config, agent: AgentClient, docker: LazyDocker) -> Executor {
        let (inbox, inbox_receiver) = mpsc::unbounded_channel();
        let owner = Owner {
            executor_id: config.executor_id.0.clone(),
            framework_id: config.framework_id.0.clone(),
        };
        Executor {
            config,
            agent,
            docker,
            owner,
            tracker: UpdateTracker::new(),
            workers: HashMap::new(),
            inbox,
            inbox_receiver: Some(inbox_receiver),
            connection: Connection::Closed,
            generation: 0,
            subscription: None,
            ever_subscribed: false,
            disconnected_since: Instant::now(),
            failed_sends: Vec::new(),
            stopping: None,
            outcome: None,
            commands: CommandTable::default(),
        }
    }

    /// Runs until the executor's work is over; `shutdown` resolving acts like a
    /// SHUTDOWN event.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<ExitReason, Error> {
        let Some(mut inbox) = self.inbox_receiver.take() else {
            unreachable!("the receiver is taken once, by run, which consumes the executor")
        };
        self.disconnected_since = Instant::now();
        self.start_subscription();
        let mut retry = tokio::time::interval(UPDATE_RETRY_INTERVAL);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut shutdown_seen = false;

        let result = loop {
            if let Some(outcome) = self.outcome.take() {
                break outcome;
            }
            let reconnect_at = match self.connection {
                Connection::Waiting { retry_at } => Some(retry_at),
                _ => None,
            };
            let stop_deadline = self.stopping.as_ref().map(|stopping| stopping.deadline);
            tokio::select! {
                Some(message) = inbox.recv() => self.on_message(message),
                () = sleep_until(reconnect_at) => self.start_subscription(),
                () = sleep_until(stop_deadline) => self.on_stop_deadline(),
                _ = retry.tick() => self.on_retry_tick(),
                () = &mut shutdown, if !shutdown_seen => {
                    shutdown_seen = true;
                    info!("shutdown requested by signal");
                    self.on_shutdown(ExitReason::Interrupted);
                }
            }
            self.flush_updates();
            self.check_done();
        };
        if let Some(subscription) = self.subscription.take() {
            subscription.abort();
        }
        match &result {
            Ok(reason) => info!(?reason, "executor exiting"),
            Err(err) => error!(error = %err, "executor failed"),
        }
        result
    }

    fn on_message(&mut self, message: LoopMsg) {
        match message {
            LoopMsg::Event { generation, event } if generation == self.generation => {
                self.on_event(*event)
            }
            LoopMsg::StreamEnded { generation, error } if generation == self.generation => {
                self.on_stream_ended(error)
            }
            LoopMsg::Event { .. } | LoopMsg::StreamEnded { .. } => {
                debug!("message from an old subscription ignored")
            }
            LoopMsg::UpdateAnswered { uuid, result } => self.on_update_answered(uuid, result),
            LoopMsg::Worker { task_id, report } => self.on_worker_report(task_id, report),
            LoopMsg::CommandDone { result } => {
                let copies = self.commands.finish(result.clone());
                debug!(command = %result.command_id, copies, "command finished");
                for _ in 0..copies {
                    self.send_command_result(result.clone());
                }
            }
            LoopMsg::WorkerExited { task_id } => {
                self.workers.remove(&task_id);
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let kind = event
            .r#type
            .and_then(|kind| event::Type::try_from(kind).ok())
            .unwrap_or(event::Type::Unknown);
        debug!(event = kind.as_str_name(), "agent event");
        match kind {
            event::Type::Subscribed => self.on_subscribed(event.subscribed),
            event::Type::Launch => match event.launch {
                Some(launch) => self.on_launch(launch.task),
                None => warn!("LAUNCH event without a task ignored"),
            },
            event::Type::LaunchGroup => match event.launch_group {
                Some(group) => self.on_launch_group(group.task_group.tasks),
                None => warn!("LAUNCH_GROUP event without a group ignored"),
            },
            event::Type::Kill => match event.kill {
                Some(kill) => self.on_kill(kill.task_id, kill.kill_policy),
                None => warn!("KILL event without a task ignored"),
            },
            event::Type::Acknowledged => match event.acknowledged {
                Some(ack) => self.on_acknowledged(ack.task_id, ack.uuid),
                None => warn!("ACKNOWLEDGED event without content ignored"),
            },
            event::Type::Message => match event.message {
                Some(message) => self.on_scheduler_message(message.data),
                None => warn!("MESSAGE event without content ignored"),
            },
            event::Type::Error => {
                let message = event.error.map(|e| e.message).unwrap_or_default();
                warn!(%message, "agent reported an error");
            }
            event::Type::Shutdown => {
                info!("agent asked the executor to shut down");
                self.on_shutdown(ExitReason::Shutdown);
            }
            event::Type::Heartbeat => {}
            event::Type::Unknown => warn!(kind = ?event.r#type, "unknown agent event ignored"),
        }
    }

    fn on_subscribed(&mut self, subscribed: Option<event::Subscribed>) {
        if let Connection::Subscribing { included } =
            std::mem::replace(&mut self.connection, Connection::Subscribed)
        {
            // The agent replays the updates the SUBSCRIBE carried.
            for uuid in included {
                self.tracker.delivered(&uuid);
            }
        }
        self.ever_subscribed = true;
        let agent = subscribed
            .as_ref()
            .and_then(|s| s.agent_info.id.as_ref())
            .map(|id| id.value.clone())
            .unwrap_or_default();
        info!(%agent, endpoint = %self.agent.endpoint(), "subscribed to the agent");
    }

    fn on_launch(&mut self, task: TaskInfo) {
        let task_id = task.task_id.clone();
        if self.tracker.knows(&task_id) {
            warn!(task = %task_id.value, "duplicate LAUNCH ignored");
            return;
        }
        let rules = PlanRules {
            allow_privileged: self.config.allow_privileged,
        };
        let plan = plan_container(&task, &self.owner, &rules);
        let traceparent = traceparent_label(task.labels.as_ref()).map(str::to_owned);
        let task_policy = task.kill_policy;
        self.tracker.launched(task);
        if self.stopping.is_some() {
            self.report(
                task_id,
                Outcome {
                    state: TaskState::TaskKilled,
                    reason: Some(Reason::TaskKilledDuringLaunch),
                    message: "executor is shutting down".to_owned(),
                },
            );
            return;
        }
        info!(task = %task_id.value, "launching task");
        let (kill, kill_receiver) = watch::channel(None);
        let inbox = self.inbox.clone();
        let docker = self.docker.clone();
        let sandbox = self.config.sandbox_directory.clone();
        let worker_task_id = task_id.clone();
        let health_kill_grace = kill_grace_period(
            None,
            task_policy.as_ref(),
            self.config.shutdown_grace_period,
        );
        tokio::spawn(async move {
            let reporter = inbox.clone();
            let reported_id = worker_task_id.clone();
            run_task(
                docker,
                plan,
                traceparent,
                sandbox,
                kill_receiver,
                health_kill_grace,
                move |report| {
                    let _ = reporter.send(LoopMsg::Worker {
                        task_id: reported_id.clone(),
                        report,
                    });
                },
            )
            .await;
            let _ = inbox.send(LoopMsg::WorkerExited {
                task_id: worker_task_id,
            });
        });
        self.workers.insert(
            task_id,
            Worker {
                kill,
                task_policy,
                container: None,
                healthy: None,
            },
        );
    }

    fn on_worker_report(&mut self, task_id: TaskId, report: WorkerReport) {
        match report {
            WorkerReport::State(outcome) => self.report(task_id, outcome),
            WorkerReport::Container(id) => {
                if let Some(worker) = self.workers.get_mut(&task_id) {
                    worker.container = Some(id);
                }
            }
            WorkerReport::Health { healthy, detail } => {
                if let Some(worker) = self.workers.get_mut(&task_id) {
                    worker.healthy = Some(healthy);
                }
                let message = match (healthy, detail) {
                    (true, _) => "task is healthy".to_owned(),
                    (false, Some(detail)) => format!("task is unhealthy: {detail}"),
                    (false, None) => "task is unhealthy".to_owned(),
                };
                self.report(
                    task_id,
                    Outcome {
                        state: TaskState::TaskRunning,
                        reason: Some(Reason::TaskHealthCheckStatusUpdated),
                        message,
                    },
                );
            }
            WorkerReport::Message(data) => self.send_message(data),
        }
    }

    /// Handles the data of a framework MESSAGE: a `SchedulerMessage`, or ignored.
    fn on_scheduler_message(&mut self, data: Bytes) {
        match SchedulerMessage::decode(data.clone()) {
            Ok(SchedulerMessage {
                payload: Some(scheduler_message::Payload::RunCommand(run)),
            }) => self.on_run_command(run),
            Ok(SchedulerMessage { payload: None }) => {
                warn!(
                    n_bytes = data.len(),
                    "scheduler message without payload ignored"
                )
            }
            Err(err) => {
                warn!(n_bytes = data.len(), error = %err, "undecodable scheduler message ignored")
            }
        }
    }

    fn on_run_command(&mut self, run: RunCommand) {
        match self.commands.admit(&run.command_id) {
            Admission::Answer(result) => {
                debug!(command = %run.command_id, "repeated command answered from its result");
                self.send_command_result(result);
            }
            Admission::Wait => {
                debug!(command = %run.command_id, "repeated command waits for its first run")
            }
            Admission::Run => {
                info!(command = %run.command_id, task = %run.task_id, argv = ?run.argv, "running command");
                let container = self
                    .workers
                    .get(&TaskId {
                        value: run.task_id.clone(),
                    })
                    .and_then(|worker| worker.container.clone());
                let docker = self.docker.clone();
                let inbox = self.inbox.clone();
                tokio::spawn(async move {
                    let client = match container {
                        Some(_) => docker.get().await.map_err(|err| err.to_string()),
                        None => Err("no container".to_owned()),
                    };
                    let result = run_command(client, container, &run).await;
                    let _ = inbox.send(LoopMsg::CommandDone { result });
                });
            }
        }
    }

    fn send_command_result(&mut self, result: CommandResult) {
        let message = ExecutorMessage {
            payload: Some(executor_message::Payload::CommandResult(result)),
        };
        self.send_message(Bytes::from(message.encode_to_vec()));
    }

    /// Sends `data` to the scheduler in a MESSAGE call, best effort.
    fn send_message(&mut self, data: Bytes) {
        if !matches!(self.connection, Connection::Subscribed) {
            debug!(
                n_bytes = data.len(),
                "not subscribed; message to the scheduler dropped"
            );
            return;
        }
        let agent = self.agent.clone();
        tokio::spawn(async move {
            if let Err(err) = agent.message(data).await {
                warn!(error = %err, "message to the scheduler not delivered");
            }
        });
    }

    fn on_launch_group(&mut self, tasks: Vec<TaskInfo>) {
        for task in tasks {
            let task_id = task.task_id.clone();
            if !self.tracker.launched(task) {
                continue;
            }
            self.report(
                task_id,
                Outcome {
                    state: TaskState::TaskError,
                    reason: Some(Reason::TaskGroupInvalid),
                    message: "task groups are not supported by this executor".to_owned(),
                },
            );
        }
    }

    fn on_kill(&mut self, task_id: TaskId, kill_policy: Option<KillPolicy>) {
        match self.workers.get(&task_id) {
            Some(worker) => {
                let grace = kill_grace_period(
                    kill_policy.as_ref(),
                    worker.task_policy.as_ref(),
                    self.config.shutdown_grace_period,
                );
                info!(task = %task_id.value, ?grace, "killing task");
                worker.kill.send_if_modified(|current| {
                    // A kill already under way keeps its grace period.
                    current.is_none() && {
                        *current = Some(grace);
                        true
                    }
                });
            }
            None if self.tracker.knows(&task_id) => {
                debug!(task = %task_id.value, "KILL for a finished task ignored");
            }
            None => {
                // Nothing runs under that id, so it is as dead as a kill would make it.
                info!(task = %task_id.value, "KILL for an unknown task; reporting it killed");
                self.report(
                    task_id,
                    Outcome {
                        state: TaskState::TaskKilled,
                        reason: None,
                        message: "task unknown to this executor".to_owned(),
                    },
                );
            }
        }
    }

    fn on_acknowledged(&mut self, task_id: TaskId, uuid: Bytes) {
        match self.tracker.acknowledge(&task_id, &uuid) {
            Acknowledgement::Settled { state } => {
                debug!(task = %task_id.value, state = state.as_str_name(), "update acknowledged");
            }
            Acknowledgement::Unknown => {
                debug!(task = %task_id.value, "acknowledgement of an unknown update ignored");
            }
        }
    }

    fn on_shutdown(&mut self, reason: ExitReason) {
        if self.stopping.is_some() {
            return;
        }
        let total = self.config.shutdown_grace_period;
        let stop_grace = total.saturating_sub(SHUTDOWN_MARGIN);
        for worker in self.workers.values() {
            let grace =
                kill_grace_period(None, worker.task_policy.as_ref(), stop_grace).min(stop_grace);
            worker.kill.send_if_modified(|current| {
                current.is_none() && {
                    *current = Some(grace);
                    true
                }
            });
        }
        self.stopping = Some(Stopping {
            reason,
            deadline: Instant::now() + total,
            wait_for_acknowledgements: true,
        });
    }

    /// Stops every task because the agent is gone; their updates cannot be delivered.
    fn abandon(&mut self, reason: ExitReason) {
        self.connection = Connection::Closed;
        let grace = self.config.shutdown_grace_period;
        for worker in self.workers.values() {
            worker.kill.send_if_modified(|current| {
                current.is_none() && {
                    *current = Some(grace);
                    true
                }
            });
        }
        let deadline = Instant::now() + grace + STOP_MARGIN;
        match &mut self.stopping {
            Some(stopping) => {
                stopping.wait_for_acknowledgements = false;
                stopping.deadline = stopping.deadline.min(deadline);
            }
            None => {
                self.stopping = Some(Stopping {
                    reason,
                    deadline,
                    wait_for_acknowledgements: false,
                })
            }
        }
    }

    fn on_stream_ended(&mut self, error: Option<AgentError>) {
        self.subscription = None;
        if matches!(self.connection, Connection::Subscribed) {
            self.disconnected_since = Instant::now();
        }
        match &error {
            Some(err) => warn!(error = %err, "agent subscription ended"),
            None => warn!("agent closed the subscription"),
        }
        if !self.config.checkpoint && self.ever_subscribed {
            warn!("checkpointing is off: stopping all tasks and exiting");
            self.abandon(ExitReason::AgentDisconnected);
            return;
        }
        if let Some(err) = error {
            if !self.ever_subscribed && !err.is_retryable() {
                self.connection = Connection::Closed;
                self.outcome = Some(Err(Error::Agent(err)));
                return;
            }
        }
        let limit = if self.config.checkpoint {
            self.config.recovery_timeout
        } else {
            INITIAL_SUBSCRIBE_TIMEOUT
        };
        if self.disconnected_since.elapsed() >= limit {
            warn!(
                ?limit,
                "no subscription within the timeout: stopping all tasks and exiting"
            );
            self.abandon(ExitReason::AgentUnreachable);
            return;
        }
        let delay = random_backoff(self.config.subscription_backoff_max);
        debug!(?delay, "re-subscribing after a pause");
        self.connection = Connection::Waiting {
            retry_at: Instant::now() + delay,
        };
    }

    fn on_update_answered(&mut self, uuid: Bytes, result: Result<(), AgentError>) {
        match result {
            Ok(()) => self.tracker.delivered(&uuid),
            Err(AgentError::Status { status, body, .. })
                if (400..500).contains(&status) && status != 403 =>
            {
                // The agent will never take this update: retrying cannot help.
                error!(status, %body, "agent refused a status update; dropping it");
                self.tracker.discard(&uuid);
            }
            Err(err) => {
                warn!(error = %err, "status update not delivered; will retry");
                self.failed_sends.push(uuid);
            }
        }
    }

    fn on_retry_tick(&mut self) {
        for uuid in std::mem::take(&mut self.failed_sends) {
            self.tracker.failed(&uuid);
        }
    }

    fn on_stop_deadline(&mut self) {
        if let Some(stopping) = &self.stopping {
            warn!(
                n_workers = self.workers.len(),
                n_pending_updates = self.tracker.n_pending(),
                "grace period over with work left; exiting anyway"
            );
            self.outcome = Some(Ok(stopping.reason));
        }
    }

    fn check_done(&mut self) {
        if self.outcome.is_some() || !self.workers.is_empty() {
            return;
        }
        match &self.stopping {
            Some(stopping) => {
                if !stopping.wait_for_acknowledgements || self.tracker.n_pending() == 0 {
                    self.outcome = Some(Ok(stopping.reason));
                }
            }
            None => {
                if self.tracker.all_settled() {
                    self.outcome = Some(Ok(ExitReason::TasksFinished));
                }
            }
        }
    }

    /// Records a new status update for `task_id`; it goes out with the next flush.
    fn report(&mut self, task_id: TaskId, outcome: Outcome) {
        info!(
            task = %task_id.value,
            state = outcome.state.as_str_name(),
            message = %outcome.message,
            "task status"
        );
        let healthy = self.workers.get(&task_id).and_then(|worker| worker.healthy);
        let status = TaskStatus {
            task_id,
            state: outcome.state as i32,
            message: Some(outcome.message),
            source: Some(Source::Executor as i32),
            reason: outcome.reason.map(|reason| reason as i32),
            executor_id: Some(v1::ExecutorId {
                value: self.config.executor_id.0.clone(),
            }),
            timestamp: Some(unix_seconds()),
            uuid: Some(Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes())),
            healthy,
            ..Default::default()
        };
        self.tracker.push(status);
    }

    /// Sends every update that may go now, when subscribed.
    fn flush_updates(&mut self) {
        if !matches!(self.connection, Connection::Subscribed) {
            return;
        }
        for status in self.tracker.take_sendable() {
            let uuid = status.uuid.clone().unwrap_or_default();
            let agent = self.agent.clone();
            let inbox = self.inbox.clone();
            tokio::spawn(async move {
                let result = agent.update(status).await;
                let _ = inbox.send(LoopMsg::UpdateAnswered { uuid, result });
            });
        }
    }

    fn start_subscription(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        let unacknowledged_updates = self.tracker.unacknowledged_updates();
        let included = unacknowledged_updates
            .iter()
            .filter_map(|update| update.status.uuid.clone())
            .collect();
        let subscribe = call::Subscribe {
            unacknowledged_tasks: self.tracker.unacknowledged_tasks(),
            unacknowledged_updates,
        };
        self.connection = Connection::Subscribing { included };
        let agent = self.agent.clone();
        let inbox = self.inbox.clone();
        self.subscription = Some(tokio::spawn(async move {
            let mut stream = match agent.subscribe(subscribe).await {
                Ok(stream) => stream,
                Err(error) => {
                    let _ = inbox.send(LoopMsg::StreamEnded {
                        generation,
                        error: Some(error),
                    });
                    return;
                }
            };
            loop {
                match stream.next().await {
                    Ok(Some(event)) => {
                        let event = Box::new(event);
                        if inbox.send(LoopMsg::Event { generation, event }).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = inbox.send(LoopMsg::StreamEnded {
                            generation,
                            error: None,
                        });
                        return;
                    }
                    Err(error) => {
                        let _ = inbox.send(LoopMsg::StreamEnded {
                            generation,
                            error: Some(error),
                        });
                        return;
                    }
                }
            }
        }));
    }
}

/// A random pause in `[0, max]`, as the agent expects between subscription attempts.
pub fn random_backoff(max: Duration) -> Duration {
    let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=max_nanos))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_bounds() {
        for max in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_secs(2),
        ] {
            for _ in 0..100 {
                assert!(random_backoff(max) <= max);
            }
        }
    }

    #[test]
    fn only_agent_loss_is_a_failure_exit() {
        let check = |reason: ExitReason, code: u8| assert_eq!(reason.exit_code(), code);
        check(ExitReason::TasksFinished, 0);
        check(ExitReason::Shutdown, 0);
        check(ExitReason::Interrupted, 0);
        check(ExitReason::AgentDisconnected, 1);
        check(ExitReason::AgentUnreachable, 1);
    }
}
