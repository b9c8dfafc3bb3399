//! The mesos-stateful scheduler: the Mesos v1 scheduler client, the SDK surface
//! framework developers program against, and the `mesos-stateful` program.
//!
//! A framework developer implements [`Workload`] (or uses [`GenericContainer`]) and
//! calls [`run`] with a [`SchedulerConfig`]; everything else (the REST API, offers,
//! persistence, the executor, failover) comes with it.
//!
//! # Layout
//! - [`client`]: the Mesos v1 scheduler HTTP client ([`MesosClient`]).
//! - [`generic`]: the generic container workload.
//! - [`redis`]: the Redis master/replica workload with failover.
//! - [`run`](mod@run): wiring of store, actors and client; the embedded devcluster for `dev`.
//! - [`telemetry`]: logging set-up for the binary.
//!
//! # Must not
//! Touch RocksDB except through the store crate, or hold domain logic (that lives in
//! the actors crate's plain structs).

pub mod error;
pub mod generic;
pub mod mesos;
pub mod redis;
pub mod run;
pub mod telemetry;

pub use error::SchedulerError;
pub use generic::GenericContainer;
pub use mesos::{ClientOptions, Credentials, FrameworkSettings, MasterSpec, MesosClient};
pub use mesos_stateful_actors::domain::launch::{ContainerPlan, ExecutorLaunch};
pub use mesos_stateful_actors::domain::recovery::RecoveryConfig;
pub use mesos_stateful_actors::domain::view::{InstanceView, MemberView};
pub use mesos_stateful_actors::workload::{Action, Configured, Workload, WorkloadConfig};
pub use redis::RedisWorkload;
pub use run::{run, SchedulerConfig};
