//! The mesos-stateful executor: runs one task's Docker container for a Mesos agent.
//!
//! A Mesos agent (or devcluster's agent) starts this executor as a child process, one
//! per task. The crate owns the executor side of the Mesos v1 executor HTTP API
//! (subscribe, status updates with their acknowledgement bookkeeping, reconnection
//! after agent restarts) and a typed Docker Engine API client over the engine's unix
//! socket, through which it pulls the task's image when it is missing, creates,
//! watches, stops and removes the task's container, adopts a container left running
//! by an earlier executor of the same task, and copies the container's logs into the
//! sandbox before removing it. The container spec may ask for bridge networking with
//! published ports (host ports only among the task's `ports` resources), sandbox
//! directories and persistent volumes bound into the container (never a path outside
//! the sandbox), a privileged container (only with `MESOS_STATEFUL_ALLOW_PRIVILEGED=1`
//! in the executor's environment) and its own registry credentials for the pull.
//! Once the container runs, the executor sends a `LaunchReport` (pull, create and
//! start times) to the scheduler; while it runs, it keeps a streaming stats
//! connection open and sends its stats (with the facts its facts command prints and
//! the count of failed health checks) in executor MESSAGE calls, runs its Mesos
//! health check and reports health changes (killing the task after too many
//! failures), watches the engine's `die` and `oom` events next to `wait`, and runs
//! the scheduler's `RunCommand`s in its container once per command id, answering
//! each copy with the same `CommandResult`.
//!
//! # Layout
//! - [`config`]: the environment the agent sets (`MESOS_*`, `DOCKER_HOST`), durations.
//! - [`agent`]: the executor API client (SUBSCRIBE stream, UPDATE, MESSAGE).
//! - [`docker`]: the Docker Engine client (`client.rs` transport and container
//!   lifecycle; `pull.rs`, `exec.rs`, `stats.rs` (one-shot and streamed), `logs.rs`,
//!   `events.rs` one operation each; `stream.rs` the incremental decoders of streamed
//!   bodies, `line_stream.rs` the open JSON-lines answers built on them) and its types.
//! - [`updates`]: unacknowledged status updates and tasks (plain, synchronous).
//! - [`task`]: the container plan for a task (ports, mounts, privilege, registry
//!   credentials checked there), exit-to-state mapping, and the async launch (adopt,
//!   sandbox mounts, pull, create, start), kill (save logs, stop, remove) and per-task
//!   worker; `mounts.rs` (sandbox paths resolved safely), `sampler.rs` (the streamed
//!   stats of a running container), `stats.rs` (facts parsing, stats messages),
//!   `health.rs` (the `HealthTracker` decisions and the probes), `events.rs` (a
//!   container's end from the engine's events) and `commands.rs` (the idempotent
//!   `CommandTable` and command runs).
//! - [`executor`]: the event loop tying them together.
//! - [`telemetry`]: logs and OTLP span export; the task's `traceparent` label as the
//!   parent of its `Executor::Launch` span, and of its health and stats spans.
//! - `main.rs`: the thin `mesos-stateful-executor` binary.
//!
//! # Must not
//! Depend on the `store`, `actors` or `scheduler` crates (the executor runs on agents,
//! next to nothing but Docker), run registry credential helpers (only the `auths`
//! entries of the Docker config file are read), create a second container for a task
//! whose container still runs, mount a host path outside the task's sandbox, run a
//! privileged container its operator did not allow, log registry credentials, or
//! panic on anything the agent or the engine sends.

pub mod agent;
pub mod config;
pub mod docker;
pub mod executor;
pub mod task;
pub mod telemetry;
pub mod updates;

use std::future::Future;

use tracing::warn;

pub use config::Config;
pub use executor::{Executor, ExitReason};

/// Everything that can end the executor with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The environment does not describe a usable executor.
    #[error("invalid executor configuration: {0}")]
    Config(#[from] config::ConfigError),
    /// The agent refused or broke the conversation for good.
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    /// The Docker engine failed.
    #[error(transparent)]
    Docker(#[from] docker::DockerError),
}

/// Runs the executor described by `config` until its work is over or `shutdown`
/// resolves (which stops the tasks like a SHUTDOWN event).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<ExitReason, Error> {
    let docker = task::worker::LazyDocker::new(config.docker_host.clone());
    // Connect now so that a broken engine shows in the log before any task arrives;
    // a failure here is retried at each launch.
    if let Err(err) = docker.get().await {
        warn!(error = %err, "docker engine not available yet");
    }
    let agent = agent::AgentClient::new(
        config.agent_endpoint.clone(),
        mesos_stateful_proto::v1::ExecutorId {
            value: config.executor_id.0.clone(),
        },
        mesos_stateful_proto::v1::FrameworkId {
            value: config.framework_id.0.clone(),
        },
    )
    .with_authentication_token(config.authentication_token.clone());
    Executor::new(config, agent, docker).run(shutdown).await
}
