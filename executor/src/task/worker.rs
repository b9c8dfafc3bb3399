//! One task's life: launch its container, watch it, stop it on request, and report
//! every state change to the event loop.
//!
//! A worker is a tokio task spawned by the event loop per launched task. It reports
//! through a callback and ends right after reporting a terminal state; a kill request
//! arrives as a grace period on a `watch` channel whose sender the loop keeps. Once
//! the container runs, the worker sends the scheduler a launch report; while it runs,
//! the worker keeps its streamed stats and reports them, runs the task's health check
//! (killing the task when the check fails too often), and watches for the
//! container's end through both `wait` and the engine's `die` events.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mesos_stateful_proto::v1::task_status::Reason;
use mesos_stateful_proto::v1::TaskState;
use tokio::sync::{watch, OnceCell};
use tracing::field::Empty;
use tracing::{info_span, warn, Instrument};

use super::events::watch_end_events;
use super::health::{watch_health, HealthEvent, HealthSubject, ProbeTarget};
use super::kill::{remove, stop_and_remove, watch_exit};
use super::launch::{launch, launch_report_message, Launched};
use super::sampler::StatsSampler;
use super::stats::{report_stats, StatsSource};
use super::{exit_outcome, ContainerPlan, ExitObservation, Outcome, PlanError};
use crate::docker::{DockerClient, DockerError, DockerHost};
use crate::telemetry::{set_remote_parent, SpanParent};

/// A Docker client connected on first use and shared by all workers, so that an
/// engine that is down when the executor starts only fails the tasks launched while
/// it is down.
#[derive(Debug, Clone)]
pub struct LazyDocker {
    host: DockerHost,
    client: Arc<OnceCell<DockerClient>>,
}

impl LazyDocker {
    /// A client of the engine at `host`, not connected yet.
    pub fn new(host: DockerHost) -> LazyDocker {
        LazyDocker {
            host,
            client: Arc::new(OnceCell::new()),
        }
    }

    /// A handle around an already connected client.
    pub fn connected(client: DockerClient) -> LazyDocker {
        LazyDocker {
            host: client.host().clone(),
            client: Arc::new(OnceCell::new_with(Some(client))),
        }
    }

    /// The connected client, connecting (and negotiating the version) if needed.
    pub async fn get(&self) -> Result<DockerClient, DockerError> {
        self.client
            .get_or_try_init(|| DockerClient::connect(self.host.clone()))
            .await
            .cloned()
    }
}

/// What a worker tells the event loop.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerReport {
    /// A new task state; the last one is terminal.
    State(Outcome),
    /// The task's container runs under this id (sent before TASK_RUNNING).
    Container(String),
    /// The task's health changed (or is known for the first time).
    Health {
        /// Whether the task is healthy.
        healthy: bool,
        /// Why the check failed, when unhealthy.
        detail: Option<String>,
    },
    /// An encoded `ExecutorMessage` to send to the scheduler (stats, launch report).
    Message(Bytes),
}

/// Runs one task to its end. `kill` carries `Some(grace)` once the task must stop;
/// `report` receives every state in order, the last one terminal, with the other
/// reports in between. The container's logs are copied into `sandbox` (when given)
/// before it is removed. A task killed for failing its health check is stopped with
/// `health_kill_grace`.
///
/// The launch (engine connection, adoption, pull, create, start) runs in an
/// `Executor::Launch` span whose parent is the span named by `traceparent` (the
/// task's label) when it is a valid W3C value, and which is a root span otherwise.
/// The launch span ends once the container runs; every later health probe
/// (`Executor::Health`) and stats sample (`Executor::Stats`) is a child of its
/// context, so a long-running task does not keep one span open for its whole life.
pub async fn run_task(
    docker: LazyDocker,
    plan: Result<ContainerPlan, PlanError>,
    traceparent: Option<String>,
    sandbox: Option<PathBuf>,
    mut kill: watch::Receiver<Option<Duration>>,
    health_kill_grace: Duration,
    report: impl Fn(WorkerReport),
) {
    let report_state = |outcome: Outcome| report(WorkerReport::State(outcome));
    let plan = match plan {
        Ok(plan) => plan,
        Err(err) => {
            report_state(Outcome {
                state: TaskState::TaskFailed,
                reason: Some(Reason::TaskInvalid),
                message: err.to_string(),
            });
            return;
        }
    };
    if kill.borrow().is_some() {
        report_state(killed_during_launch());
        return;
    }
    report_state(Outcome {
        state: TaskState::TaskStarting,
        reason: None,
        message: format!("creating container {} from image {}", plan.name, plan.image),
    });
    let launch_span = info_span!(
        parent: None,
        "Executor::Launch",
        task_id = %plan.task_id,
        image = %plan.image,
        container = %plan.name,
        container_id = Empty,
        adopted = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    set_remote_parent(&launch_span, traceparent.as_deref());
    let sandbox = sandbox.as_deref();
    let started = async {
        let docker = docker.get().await.map_err(|err| Outcome {
            state: TaskState::TaskFailed,
            reason: Some(Reason::ContainerLaunchFailed),
            message: format!("docker engine unavailable: {err}"),
        })?;
        let launched = launch(&docker, &plan, sandbox).await?;
        Ok::<_, Outcome>((docker, launched))
    }
    .instrument(launch_span.clone())
    .await;
    let (docker, launched) = match started {
        Ok(started) => started,
        Err(outcome) => {
            launch_span.record("otel.status_code", "ERROR");
            launch_span.record("otel.status_description", outcome.message.as_str());
            drop(launch_span);
            report_state(outcome);
            return;
        }
    };
    let Launched { id, adopted, .. } = launched.clone();
    launch_span.record("container_id", id.as_str());
    launch_span.record("adopted", adopted);
    let parent = SpanParent::of(&launch_span);
    drop(launch_span);
    let pending_kill = *kill.borrow();
    if let Some(grace) = pending_kill {
        let stopped = stop_and_remove(&docker, &id, grace, sandbox).await;
        let mut outcome = killed_during_launch();
        if let Some(problem) = stopped.problem {
            outcome.message = format!("{}; {problem}", outcome.message);
        }
        report_state(outcome);
        return;
    }
    report(WorkerReport::Message(launch_report_message(
        &plan.task_id,
        &launched,
    )));
    report(WorkerReport::Container(id.clone()));
    report_state(Outcome {
        state: TaskState::TaskRunning,
        reason: None,
        message: if adopted {
            format!("container {} running as {id} (adopted)", plan.name)
        } else {
            format!("container {} running as {id}", plan.name)
        },
    });

    let sampler = StatsSampler::start(docker.clone(), &id);
    let health_failures = AtomicU64::new(0);
    tokio::select! {
        exit = container_end(&docker, &id, &plan.task_id) => match exit {
            Ok(exit) => {
                let outcome = exit_outcome(&exit, false);
                if let Err(problem) = remove(&docker, &id, sandbox).await {
                    warn!(container = %plan.name, %problem, "exited container left behind");
                }
                report_state(outcome);
            }
            Err(err) => report_state(Outcome {
                state: TaskState::TaskFailed,
                reason: None,
                message: format!("container {} disappeared: {err}", plan.name),
            }),
        },
        grace = kill_requested(&mut kill) => {
            let stopped = stop_and_remove(&docker, &id, grace, sandbox).await;
            let mut outcome = exit_outcome(&stopped.exit.unwrap_or_default(), true);
            if let Some(problem) = stopped.problem {
                outcome.message = format!("{}; {problem}", outcome.message);
            }
            report_state(outcome);
        }
        failures = check_health(&docker, &id, &plan, &health_failures, &parent, &report) => {
            warn!(container = %plan.name, failures, "task unhealthy; killing it");
            let stopped = stop_and_remove(&docker, &id, health_kill_grace, sandbox).await;
            let mut message = format!("task unhealthy: {failures} consecutive health check failures");
            if let Some(problem) = stopped.problem {
                message = format!("{message}; {problem}");
            }
            report_state(Outcome {
                state: TaskState::TaskFailed,
                reason: None,
                message,
            });
        }
        () = report_stats(
            StatsSource {
                docker: &docker,
                sampler: &sampler,
                id: &id,
                task_id: &plan.task_id,
                health_failures: plan.health_check.is_some().then_some(&health_failures),
            },
            plan.stats_interval,
            &plan.facts_command,
            &parent,
            |data| report(WorkerReport::Message(data)),
        ) => {}
    }
}

/// Resolves with how container `id` ended, as soon as either its `wait` or its
/// `die` event reports it.
async fn container_end(
    docker: &DockerClient,
    id: &str,
    task_id: &str,
) -> Result<ExitObservation, DockerError> {
    tokio::select! {
        exit = watch_exit(docker, id) => exit,
        exit = watch_end_events(docker, id, task_id) => Ok(exit),
    }
}

/// Where the task's TCP and HTTP health checks connect: the agent's loopback with
/// host networking; the container's address (from inspect) with bridge networking,
/// or, if the engine shows no address, the loopback, where the published host ports
/// answer.
async fn probe_target(docker: &DockerClient, id: &str, plan: &ContainerPlan) -> ProbeTarget {
    if !plan.bridge_network {
        return ProbeTarget::local();
    }
    let address = match docker.inspect_container(id).await {
        Ok(inspect) => inspect
            .network_settings
            .as_ref()
            .and_then(|settings| settings.address())
            .and_then(|address| address.parse::<IpAddr>().ok()),
        Err(err) => {
            warn!(container = %plan.name, error = %err, "cannot inspect the container's address");
            None
        }
    };
    match address {
        Some(address) => ProbeTarget {
            address,
            ports: plan.published_ports.clone(),
        },
        None => ProbeTarget::local(),
    }
}

/// Runs the task's health check, if it has one, and resolves with the number of
/// consecutive failures once the task must be killed; never without a check.
async fn check_health(
    docker: &DockerClient,
    id: &str,
    plan: &ContainerPlan,
    failures: &AtomicU64,
    parent: &SpanParent,
    report: &impl Fn(WorkerReport),
) -> u32 {
    let Some(check) = &plan.health_check else {
        return std::future::pending().await;
    };
    let target = probe_target(docker, id, plan).await;
    let subject = HealthSubject {
        docker,
        id,
        task_id: &plan.task_id,
        target: &target,
    };
    watch_health(subject, check, failures, parent, |event| match event {
        HealthEvent::Changed { healthy, detail } => {
            report(WorkerReport::Health { healthy, detail })
        }
    })
    .await
}

/// Resolves with the grace period once a kill is requested; never if the loop is gone.
async fn kill_requested(kill: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        let current = *kill.borrow_and_update();
        if let Some(grace) = current {
            return grace;
        }
        if kill.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn killed_during_launch() -> Outcome {
    Outcome {
        state: TaskState::TaskKilled,
        reason: Some(Reason::TaskKilledDuringLaunch),
        message: "task killed before its container ran".to_owned(),
    }
}
