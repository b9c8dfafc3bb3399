//! One task's container: how it is derived from the TaskInfo, and its lifecycle.
//!
//! The pure part lives here: the container plan (name, image, command, environment,
//! labels, limits) computed from a `TaskInfo` and its [`ContainerSpec`], the kill grace
//! period, and the mapping of a container's exit to a Mesos task state. The async
//! part is in [`launch`] (adoption, image check and pull, create, start), [`kill`]
//! (save logs, stop and remove) and [`worker`] (one task's whole life, reporting
//! states to the event loop). While the container runs, [`stats`] samples it for the
//! scheduler and [`health`] runs the task's health check; [`commands`] runs the
//! scheduler's commands in it, once per command id.
//!
//! A task's container is created only by [`launch::launch`], and only when no
//! running container carries the task's id and framework labels: such a container
//! (left by an executor that was killed) is adopted and watched instead. It is
//! removed by [`kill::stop_and_remove`] (kill requests, shutdown, lost agent), by the
//! worker after the container exits on its own (both save its logs into the sandbox
//! first), and by `launch` itself when a stopped container of the task exists, a
//! stale container holds the name, or the start fails.

pub mod commands;
pub mod health;
pub mod kill;
pub mod launch;
pub mod stats;
pub mod worker;

use std::collections::BTreeMap;
use std::time::Duration;

use mesos_stateful_proto::stateful::container_spec::NetworkMode;
use mesos_stateful_proto::stateful::ContainerSpec;
use mesos_stateful_proto::v1::environment::variable;
use mesos_stateful_proto::v1::task_status::Reason;
use mesos_stateful_proto::v1::{HealthCheck, KillPolicy, Resource, TaskInfo, TaskState};
use mesos_stateful_proto::Message;

use crate::docker::{CreateContainer, HostConfig};

/// Prefix of every container this executor creates.
pub const CONTAINER_NAME_PREFIX: &str = "mesos-stateful-";
/// Label holding the task id.
pub const LABEL_TASK_ID: &str = "mesos-stateful.task-id";
/// Label holding the executor id.
pub const LABEL_EXECUTOR_ID: &str = "mesos-stateful.executor-id";
/// Label holding the framework id.
pub const LABEL_FRAMEWORK_ID: &str = "mesos-stateful.framework-id";

const MIB: f64 = 1024.0 * 1024.0;

/// Why a task's description cannot be turned into a container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `TaskInfo.data` is absent.
    #[error("task {task} carries no container spec in its data")]
    MissingSpec {
        /// The task id.
        task: String,
    },
    /// `TaskInfo.data` is not a `ContainerSpec`.
    #[error("task {task} carries an undecodable container spec: {reason}")]
    InvalidSpec {
        /// The task id.
        task: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The spec names no image.
    #[error("task {task} names no container image")]
    EmptyImage {
        /// The task id.
        task: String,
    },
    /// An environment variable cannot be passed to Docker.
    #[error("task {task} environment variable {name} is a secret, which is not supported")]
    SecretVariable {
        /// The task id.
        task: String,
        /// The variable's name.
        name: String,
    },
}

/// Who the containers belong to, written into their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The executor's id.
    pub executor_id: String,
    /// The framework's id.
    pub framework_id: String,
}

/// The container to run for a task.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// The task's id (also in the container's labels).
    pub task_id: String,
    /// The framework's id (also in the container's labels).
    pub framework_id: String,
    /// The Docker container name.
    pub name: String,
    /// The image reference (also in `create`).
    pub image: String,
    /// The creation request.
    pub create: CreateContainer,
    /// How often to send the container's stats to the scheduler.
    pub stats_interval: Duration,
    /// The command whose `key:value` output lines are reported with the stats.
    pub facts_command: Vec<String>,
    /// The task's health check, if it has one.
    pub health_check: Option<HealthCheck>,
}

/// The cpu and memory a task was given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TaskResources {
    /// Sum of the `cpus` scalars.
    pub cpus: Option<f64>,
    /// Sum of the `mem` scalars, in MiB.
    pub mem_mib: Option<f64>,
}

/// How a container ended, as the engine reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitObservation {
    /// The main process's exit code.
    pub exit_code: i64,
    /// Whether the kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
    /// The engine's error, if the container could not run.
    pub error: Option<String>,
}

/// A task state to report, with its reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The Mesos task state.
    pub state: TaskState,
    /// The Mesos reason, when one fits.
    pub reason: Option<Reason>,
    /// A human-readable explanation.
    pub message: String,
}

/// The container name for a task: the prefix plus the task id with every character
/// Docker does not accept in names (`[a-zA-Z0-9_.-]`) replaced by `_`.
pub fn container_name(task_id: &str) -> String {
    let mut name = String::with_capacity(CONTAINER_NAME_PREFIX.len() + task_id.len());
    name.push_str(CONTAINER_NAME_PREFIX);
    name.extend(task_id.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c
        } else {
            '_'
        }
    }));
    name
}

/// Sums the `cpus` and `mem` scalar resources.
pub fn task_resources(resources: &[Resource]) -> TaskResources {
    let mut totals = TaskResources::default();
    for resource in resources {
        let Some(scalar) = &resource.scalar else {
            continue;
        };
        let slot = match resource.name.as_str() {
            "cpus" => &mut totals.cpus,
            "mem" => &mut totals.mem_mib,
            _ => continue,
        };
        *slot = Some(slot.unwrap_or(0.0) + scalar.value);
    }
    totals
}

/// Builds the container for `task` from the [`ContainerSpec`] in its data.
pub fn plan_container(task: &TaskInfo, owner: &Owner) -> Result<ContainerPlan, PlanError> {
    let task_id = task.task_id.value.clone();
    let data = task.data.as_ref().ok_or_else(|| PlanError::MissingSpec {
        task: task_id.clone(),
    })?;
    let spec = ContainerSpec::decode(data.clone()).map_err(|err| PlanError::InvalidSpec {
        task: task_id.clone(),
        reason: err.to_string(),
    })?;
    if spec.image.trim().is_empty() {
        return Err(PlanError::EmptyImage { task: task_id });
    }

    let mut env = Vec::new();
    for var in spec.environment.iter().flat_map(|e| &e.variables) {
        if var.r#type == Some(variable::Type::Secret as i32) {
            return Err(PlanError::SecretVariable {
                task: task_id,
                name: var.name.clone(),
            });
        }
        env.push(format!(
            "{}={}",
            var.name,
            var.value.as_deref().unwrap_or_default()
        ));
    }

    let mut labels: BTreeMap<String, String> = spec
        .labels
        .iter()
        .map(|label| (label.key.clone(), label.value.clone().unwrap_or_default()))
        .collect();
    labels.insert(LABEL_TASK_ID.to_owned(), task_id.clone());
    labels.insert(LABEL_EXECUTOR_ID.to_owned(), owner.executor_id.clone());
    labels.insert(LABEL_FRAMEWORK_ID.to_owned(), owner.framework_id.clone());

    let network = match NetworkMode::try_from(spec.network.unwrap_or(NetworkMode::Host as i32)) {
        Ok(NetworkMode::Bridge) => "bridge",
        // Unknown values fall back to the proto's default.
        _ => "host",
    };
    let resources = task_resources(&task.resources);
    let create = CreateContainer {
        image: spec.image.clone(),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        env,
        labels,
        host_config: HostConfig {
            network_mode: Some(network.to_owned()),
            nano_cpus: resources
                .cpus
                .filter(|cpus| *cpus > 0.0)
                .map(|cpus| (cpus * 1e9).round() as i64),
            memory: resources
                .mem_mib
                .filter(|mem| *mem > 0.0)
                .map(|mem| (mem * MIB).round() as i64),
        },
    };
    Ok(ContainerPlan {
        framework_id: owner.framework_id.clone(),
        name: container_name(&task_id),
        task_id,
        image: spec.image,
        create,
        stats_interval: stats::stats_interval(spec.stats_interval_seconds),
        facts_command: spec.facts_command,
        health_check: task.health_check.clone(),
    })
}

/// The grace period to stop a task with: the kill's own policy, else the task's,
/// else the executor's default.
pub fn kill_grace_period(
    kill_policy: Option<&KillPolicy>,
    task_policy: Option<&KillPolicy>,
    default: Duration,
) -> Duration {
    kill_policy
        .and_then(|policy| policy.grace_period.as_ref())
        .or_else(|| task_policy.and_then(|policy| policy.grace_period.as_ref()))
        .map(|grace| Duration::from_nanos(u64::try_from(grace.nanoseconds).unwrap_or(0)))
        .unwrap_or(default)
}

/// The task state for a container that stopped, whether or not a kill was asked for.
pub fn exit_outcome(exit: &ExitObservation, kill_requested: bool) -> Outcome {
    let code = exit.exit_code;
    if kill_requested {
        return Outcome {
            state: TaskState::TaskKilled,
            reason: None,
            message: format!("container stopped on request (exit code {code})"),
        };
    }
    if exit.oom_killed {
        return Outcome {
            state: TaskState::TaskFailed,
            reason: Some(Reason::ContainerLimitationMemory),
            message: format!("container exceeded its memory limit (exit code {code})"),
        };
    }
    match (code, exit.error.as_deref().filter(|e| !e.is_empty())) {
        (_, Some(error)) => Outcome {
            state: TaskState::TaskFailed,
            reason: None,
            message: format!("container exited with code {code}: {error}"),
        },
        (0, None) => Outcome {
            state: TaskState::TaskFinished,
            reason: None,
            message: "container exited with code 0".to_owned(),
        },
        (_, None) => Outcome {
            state: TaskState::TaskFailed,
            reason: None,
            message: format!("container exited with code {code}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mesos_stateful_proto::v1::{environment, value, DurationInfo, Environment, Label, TaskId};

    fn scalar(name: &str, value: f64) -> Resource {
        Resource {
            name: name.into(),
            r#type: value::Type::Scalar as i32,
            scalar: Some(value::Scalar { value }),
            ..Default::default()
        }
    }

    fn owner() -> Owner {
        Owner {
            executor_id: "ex-1".into(),
            framework_id: "fw-1".into(),
        }
    }

    fn task_with(spec: Option<&ContainerSpec>, resources: Vec<Resource>) -> TaskInfo {
        TaskInfo {
            name: "redis".into(),
            task_id: TaskId {
                value: "redis-a.1".into(),
            },
            resources,
            data: spec.map(|s| Bytes::from(s.encode_to_vec())),
            ..Default::default()
        }
    }

    #[test]
    fn container_names_are_docker_safe() {
        let check = |task: &str, expected: &str| assert_eq!(container_name(task), expected);
        check("redis-a.1", "mesos-stateful-redis-a.1");
        check("a b/c:d", "mesos-stateful-a_b_c_d");
        check("täsk_1", "mesos-stateful-t_sk_1");
        check("", "mesos-stateful-");
    }

    #[test]
    fn resources_sum_cpus_and_mem() {
        let check = |resources: Vec<Resource>, expected: TaskResources| {
            assert_eq!(task_resources(&resources), expected);
        };
        check(vec![], TaskResources::default());
        check(
            vec![
                scalar("cpus", 0.5),
                scalar("mem", 128.0),
                scalar("disk", 10.0),
            ],
            TaskResources {
                cpus: Some(0.5),
                mem_mib: Some(128.0),
            },
        );
        check(
            vec![scalar("cpus", 0.25), scalar("cpus", 0.25)],
            TaskResources {
                cpus: Some(0.5),
                mem_mib: None,
            },
        );
    }

    #[test]
    fn plan_maps_spec_and_resources_to_a_container() {
        let spec = ContainerSpec {
            image: "redis:7".into(),
            args: vec!["redis-server".into(), "--port".into(), "7000".into()],
            entrypoint: vec![],
            environment: Some(Environment {
                variables: vec![environment::Variable {
                    name: "ROLE".into(),
                    value: Some("master".into()),
                    ..Default::default()
                }],
            }),
            network: Some(NetworkMode::Bridge as i32),
            labels: vec![
                Label {
                    key: "instance".into(),
                    value: Some("redis-a".into()),
                },
                Label {
                    key: LABEL_TASK_ID.into(),
                    value: Some("spoofed".into()),
                },
            ],
            ..Default::default()
        };
        let task = task_with(Some(&spec), vec![scalar("cpus", 0.5), scalar("mem", 64.0)]);
        let plan = plan_container(&task, &owner()).unwrap();
        assert_eq!(plan.name, "mesos-stateful-redis-a.1");
        assert_eq!(plan.image, "redis:7");
        let create = plan.create;
        assert_eq!(create.image, "redis:7");
        assert_eq!(
            create.cmd.as_deref(),
            Some(&["redis-server".to_string(), "--port".into(), "7000".into()][..])
        );
        assert_eq!(create.entrypoint, None);
        assert_eq!(create.env, ["ROLE=master"]);
        assert_eq!(
            create.labels,
            BTreeMap::from([
                ("instance".to_string(), "redis-a".to_string()),
                (LABEL_TASK_ID.into(), "redis-a.1".into()),
                (LABEL_EXECUTOR_ID.into(), "ex-1".into()),
                (LABEL_FRAMEWORK_ID.into(), "fw-1".into()),
            ])
        );
        assert_eq!(
            create.host_config,
            HostConfig {
                network_mode: Some("bridge".into()),
                nano_cpus: Some(500_000_000),
                memory: Some(64 * 1024 * 1024),
            }
        );
    }

    #[test]
    fn plan_defaults_to_host_network_and_no_limits() {
        let spec = ContainerSpec {
            image: "busybox".into(),
            entrypoint: vec!["/bin/sh".into()],
            ..Default::default()
        };
        let plan = plan_container(&task_with(Some(&spec), vec![]), &owner()).unwrap();
        assert_eq!(
            plan.create.host_config.network_mode.as_deref(),
            Some("host")
        );
        assert_eq!(plan.create.host_config.nano_cpus, None);
        assert_eq!(plan.create.host_config.memory, None);
        assert_eq!(plan.create.cmd, None);
        assert_eq!(
            plan.create.entrypoint.as_deref(),
            Some(&["/bin/sh".to_string()][..])
        );
    }

    #[test]
    fn bad_task_data_is_a_plan_error() {
        let check = |task: TaskInfo, expected: &str| {
            let err = plan_container(&task, &owner()).unwrap_err();
            assert_eq!(err.to_string(), expected);
        };
        check(
            task_with(None, vec![]),
            "task redis-a.1 carries no container spec in its data",
        );
        let mut garbage = task_with(None, vec![]);
        garbage.data = Some(Bytes::from_static(&[0x0a, 0xff]));
        let err = plan_container(&garbage, &owner()).unwrap_err();
        assert!(matches!(err, PlanError::InvalidSpec { .. }), "{err}");
        check(
            task_with(Some(&ContainerSpec::default()), vec![]),
            "task redis-a.1 names no container image",
        );
        let secret = ContainerSpec {
            image: "x".into(),
            environment: Some(Environment {
                variables: vec![environment::Variable {
                    name: "PASSWORD".into(),
                    r#type: Some(variable::Type::Secret as i32),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        check(
            task_with(Some(&secret), vec![]),
            "task redis-a.1 environment variable PASSWORD is a secret, which is not supported",
        );
    }

    #[test]
    fn grace_period_prefers_kill_then_task_then_default() {
        let policy = |secs: i64| KillPolicy {
            grace_period: Some(DurationInfo {
                nanoseconds: secs * 1_000_000_000,
            }),
        };
        let default = Duration::from_secs(5);
        let check = |kill: Option<&KillPolicy>, task: Option<&KillPolicy>, expected: u64| {
            assert_eq!(
                kill_grace_period(kill, task, default),
                Duration::from_secs(expected)
            );
        };
        check(Some(&policy(1)), Some(&policy(2)), 1);
        check(None, Some(&policy(2)), 2);
        check(Some(&KillPolicy::default()), Some(&policy(2)), 2);
        check(None, None, 5);
        check(Some(&policy(-3)), None, 0);
    }

    #[test]
    fn container_exits_map_to_task_states() {
        let exit = |exit_code, oom_killed, error: Option<&str>| ExitObservation {
            exit_code,
            oom_killed,
            error: error.map(str::to_owned),
        };
        let check = |observation: ExitObservation,
                     killed: bool,
                     state: TaskState,
                     reason: Option<Reason>,
                     message: &str| {
            assert_eq!(
                exit_outcome(&observation, killed),
                Outcome {
                    state,
                    reason,
                    message: message.into()
                }
            );
        };
        check(
            exit(0, false, None),
            false,
            TaskState::TaskFinished,
            None,
            "container exited with code 0",
        );
        check(
            exit(3, false, None),
            false,
            TaskState::TaskFailed,
            None,
            "container exited with code 3",
        );
        check(
            exit(0, false, Some("")),
            false,
            TaskState::TaskFinished,
            None,
            "container exited with code 0",
        );
        check(
            exit(127, false, Some("exec: not found")),
            false,
            TaskState::TaskFailed,
            None,
            "container exited with code 127: exec: not found",
        );
        check(
            exit(137, true, None),
            false,
            TaskState::TaskFailed,
            Some(Reason::ContainerLimitationMemory),
            "container exceeded its memory limit (exit code 137)",
        );
        check(
            exit(143, false, None),
            true,
            TaskState::TaskKilled,
            None,
            "container stopped on request (exit code 143)",
        );
    }
}
