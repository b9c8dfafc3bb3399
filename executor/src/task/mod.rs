//! One task's container: how it is derived from the TaskInfo, and its lifecycle.
//!
//! The pure part lives here: the container plan (name, image, command, environment,
//! labels, limits, published ports, sandbox mounts, privilege, registry credentials)
//! computed from a `TaskInfo` and its [`ContainerSpec`] under the operator's
//! [`PlanRules`], the kill grace period, and the mapping of a container's exit to a
//! Mesos task state. The async part is in [`launch`] (adoption, sandbox mounts made
//! safe by [`mounts`], image check and pull, create, start), [`kill`] (save logs,
//! stop and remove) and [`worker`] (one task's whole life, reporting states to the
//! event loop). While the container runs, [`sampler`] keeps its streamed stats,
//! [`stats`] reports them to the scheduler, [`health`] runs the task's health check
//! and [`events`] watches for its `die` event; [`commands`] runs the scheduler's
//! commands in it, once per command id.
//!
//! A task's container is created only by [`launch::launch`], and only when no
//! running container carries the task's id and framework labels: such a container
//! (left by an executor that was killed) is adopted and watched instead. It is
//! removed by [`kill::stop_and_remove`] (kill requests, shutdown, lost agent), by the
//! worker after the container exits on its own (both save its logs into the sandbox
//! first), and by `launch` itself when a stopped container of the task exists, a
//! stale container holds the name, or the start fails.

pub mod commands;
pub mod events;
pub mod health;
pub mod kill;
pub mod launch;
pub mod mounts;
pub mod sampler;
pub mod stats;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use mesos_stateful_proto::stateful::container_spec::NetworkMode;
use mesos_stateful_proto::stateful::ContainerSpec;
use mesos_stateful_proto::v1::environment::variable;
use mesos_stateful_proto::v1::task_status::Reason;
use mesos_stateful_proto::v1::{volume, HealthCheck, KillPolicy, Resource, TaskInfo, TaskState};
use mesos_stateful_proto::Message;

use crate::docker::{
    CreateContainer, EmptyObject, HostConfig, ImageReference, PortBinding, RegistryAuth,
};

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
    /// A port mapping publishes a host port the task was not given.
    #[error("task {task} maps host port {port}, which is not among its ports resources")]
    PortNotGiven {
        /// The task id.
        task: String,
        /// The host port.
        port: u32,
    },
    /// A port mapping cannot be published.
    #[error("task {task} has an invalid port mapping: {reason}")]
    InvalidPortMapping {
        /// The task id.
        task: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A volume mount would leave the sandbox or has an unusable path.
    #[error("task {task} has an invalid volume mount {path:?}: {reason}")]
    InvalidMount {
        /// The task id.
        task: String,
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The task asks for a privileged container on an executor not allowed to run one.
    #[error(
        "task {task} asks for a privileged container, which this agent does not allow \
         (MESOS_STATEFUL_ALLOW_PRIVILEGED is not 1)"
    )]
    PrivilegedNotAllowed {
        /// The task id.
        task: String,
    },
}

/// What the executor's operator allows tasks to ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanRules {
    /// Whether privileged containers may run (`MESOS_STATEFUL_ALLOW_PRIVILEGED=1`).
    pub allow_privileged: bool,
}

/// A sandbox directory to bind into the container, checked only lexically so far:
/// [`mounts::prepare_mounts`] creates it and checks where it really leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxMount {
    /// Relative path inside the sandbox, made of plain components only.
    pub sandbox_path: PathBuf,
    /// Absolute path inside the container.
    pub container_path: String,
    /// Whether the container may only read it.
    pub read_only: bool,
    /// The persistence id when this is a persistent volume of the task's resources:
    /// the agent may have put it in the sandbox as a link to its volume directory.
    pub persistence_id: Option<String>,
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
    /// Whether the container runs on Docker's bridge (health checks then reach it at
    /// its own address).
    pub bridge_network: bool,
    /// Published ports, host port to container port (bridge networking only).
    pub published_ports: BTreeMap<u16, u16>,
    /// Sandbox directories to bind into the container (turned into the creation's
    /// `Mounts` at launch, once they exist).
    pub mounts: Vec<SandboxMount>,
    /// The task's own registry credentials, used instead of the agent's for the pull.
    pub registry_auth: Option<RegistryAuth>,
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

/// The ports of the task's `ports` range resources, in order, without repeats.
pub fn task_ports(resources: &[Resource]) -> Vec<u16> {
    let mut seen = BTreeSet::new();
    let mut ports = Vec::new();
    let ranges = resources
        .iter()
        .filter(|resource| resource.name == "ports")
        .filter_map(|resource| resource.ranges.as_ref())
        .flat_map(|ranges| &ranges.range);
    for range in ranges {
        let Ok(begin) = u16::try_from(range.begin) else {
            continue;
        };
        let end = u16::try_from(range.end).unwrap_or(u16::MAX);
        for port in begin..=end {
            if seen.insert(port) {
                ports.push(port);
            }
        }
    }
    ports
}

/// Whether `path` is relative and made of plain components only (no `..`, no root).
fn is_plain_relative(path: &Path) -> bool {
    path.components()
        .all(|component| matches!(component, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)))
}

/// Whether `path` is an absolute container path without `..`.
fn is_clean_absolute(path: &str) -> bool {
    let path = Path::new(path);
    path.is_absolute()
        && path
            .components()
            .all(|component| !matches!(component, Component::ParentDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)))
}

/// The published ports of a bridge container: the spec's mappings, each host port
/// one of `given`; or, when there are none, every given port on itself.
fn plan_port_mappings(
    task: &str,
    spec: &ContainerSpec,
    given: &[u16],
) -> Result<BTreeMap<String, Vec<PortBinding>>, PlanError> {
    let invalid = |reason: String| PlanError::InvalidPortMapping {
        task: task.to_owned(),
        reason,
    };
    let mut mappings = Vec::new();
    if spec.port_mappings.is_empty() {
        mappings.extend(given.iter().map(|port| (*port, *port, "tcp".to_owned())));
    }
    for mapping in &spec.port_mappings {
        let host = u16::try_from(mapping.host_port)
            .ok()
            .filter(|port| given.contains(port))
            .ok_or_else(|| PlanError::PortNotGiven {
                task: task.to_owned(),
                port: mapping.host_port,
            })?;
        let container_port = mapping.container_port.unwrap_or(mapping.host_port);
        let container = u16::try_from(container_port)
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid(format!("container port {container_port} is not a port")))?;
        let protocol = mapping.protocol().to_ascii_lowercase();
        if protocol != "tcp" && protocol != "udp" {
            return Err(invalid(format!(
                "protocol {protocol:?} is neither tcp nor udp"
            )));
        }
        mappings.push((host, container, protocol));
    }
    let mut bindings: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    let mut used = BTreeSet::new();
    for (host, container, protocol) in mappings {
        if !used.insert((host, protocol.clone())) {
            return Err(invalid(format!(
                "host port {host}/{protocol} is mapped twice"
            )));
        }
        bindings
            .entry(format!("{container}/{protocol}"))
            .or_default()
            .push(PortBinding {
                host_ip: String::new(),
                host_port: host.to_string(),
            });
    }
    Ok(bindings)
}

/// The sandbox mounts of a task: the spec's, then each persistent volume of its
/// resources that no spec mount names, at `/<container_path>`.
fn plan_mounts(task: &TaskInfo, spec: &ContainerSpec) -> Result<Vec<SandboxMount>, PlanError> {
    let task_id = &task.task_id.value;
    let invalid = |path: &str, reason: &str| PlanError::InvalidMount {
        task: task_id.clone(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut mounts = Vec::new();
    for mount in &spec.mounts {
        let sandbox_path = Path::new(&mount.sandbox_path);
        if !is_plain_relative(sandbox_path) {
            return Err(invalid(
                &mount.sandbox_path,
                "a sandbox path must be relative, without `..`",
            ));
        }
        if !is_clean_absolute(&mount.container_path) {
            return Err(invalid(
                &mount.container_path,
                "a container path must be absolute, without `..`",
            ));
        }
        mounts.push(SandboxMount {
            sandbox_path: normalized(sandbox_path),
            container_path: mount.container_path.clone(),
            read_only: mount.read_only(),
            persistence_id: None,
        });
    }
    for resource in &task.resources {
        let Some((disk, persistence)) = resource
            .disk
            .as_ref()
            .and_then(|d| d.persistence.as_ref().map(|p| (d, p)))
        else {
            continue;
        };
        let Some(volume) = &disk.volume else {
            continue;
        };
        let path = Path::new(&volume.container_path);
        if !is_plain_relative(path) {
            return Err(invalid(
                &volume.container_path,
                "a persistent volume's container path must be relative, without `..`",
            ));
        }
        let sandbox_path = normalized(path);
        if let Some(mount) = mounts
            .iter_mut()
            .find(|mount| mount.sandbox_path == sandbox_path)
        {
            mount.persistence_id = Some(persistence.id.clone());
            continue;
        }
        mounts.push(SandboxMount {
            container_path: format!("/{}", sandbox_path.display()),
            sandbox_path,
            read_only: volume.mode() == volume::Mode::Ro,
            persistence_id: Some(persistence.id.clone()),
        });
    }
    Ok(mounts)
}

/// `path` without its `.` components.
fn normalized(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| !matches!(component, Component::CurDir))
        .collect()
}

/// Builds the container for `task` from the [`ContainerSpec`] in its data.
pub fn plan_container(
    task: &TaskInfo,
    owner: &Owner,
    rules: &PlanRules,
) -> Result<ContainerPlan, PlanError> {
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

    // Unknown values fall back to the proto's default.
    let bridge_network = matches!(
        NetworkMode::try_from(spec.network.unwrap_or(NetworkMode::Host as i32)),
        Ok(NetworkMode::Bridge)
    );
    let port_bindings = if bridge_network {
        plan_port_mappings(&task_id, &spec, &task_ports(&task.resources))?
    } else {
        BTreeMap::new()
    };
    let published_ports = port_bindings
        .iter()
        .filter(|(port, _)| port.ends_with("/tcp"))
        .flat_map(|(port, bindings)| {
            let container = port
                .split_once('/')
                .and_then(|(number, _)| number.parse::<u16>().ok());
            bindings.iter().filter_map(move |binding| {
                Some((binding.host_port.parse::<u16>().ok()?, container?))
            })
        })
        .collect();
    let mounts = plan_mounts(task, &spec)?;
    let privileged = spec.privileged();
    if privileged && !rules.allow_privileged {
        return Err(PlanError::PrivilegedNotAllowed { task: task_id });
    }
    let registry_auth = spec.registry_auth.as_ref().map(|auth| RegistryAuth {
        username: auth.username().to_owned(),
        password: auth.password().to_owned(),
        identitytoken: auth.identity_token().to_owned(),
        serveraddress: match auth.server_address() {
            "" => ImageReference::parse(&spec.image)
                .map(|reference| reference.registry)
                .unwrap_or_default(),
            address => address.to_owned(),
        },
    });
    let resources = task_resources(&task.resources);
    let create = CreateContainer {
        image: spec.image.clone(),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        env,
        labels,
        exposed_ports: port_bindings
            .keys()
            .map(|port| (port.clone(), EmptyObject {}))
            .collect(),
        host_config: HostConfig {
            network_mode: Some(if bridge_network { "bridge" } else { "host" }.to_owned()),
            port_bindings,
            privileged,
            // Filled in at launch, once the sandbox directories exist.
            mounts: Vec::new(),
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
        bridge_network,
        published_ports,
        mounts,
        registry_auth,
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
    use mesos_stateful_proto::stateful::container_spec::{PortMapping, VolumeMount};
    use mesos_stateful_proto::v1::{
        environment, resource, value, DurationInfo, Environment, Label, TaskId, Volume,
    };

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
        let plan = plan_container(&task, &owner(), &PlanRules::default()).unwrap();
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
                ..Default::default()
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
        let plan = plan_container(
            &task_with(Some(&spec), vec![]),
            &owner(),
            &PlanRules::default(),
        )
        .unwrap();
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
            let err = plan_container(&task, &owner(), &PlanRules::default()).unwrap_err();
            assert_eq!(err.to_string(), expected);
        };
        check(
            task_with(None, vec![]),
            "task redis-a.1 carries no container spec in its data",
        );
        let mut garbage = task_with(None, vec![]);
        garbage.data = Some(Bytes::from_static(&[0x0a, 0xff]));
        let err = plan_container(&garbage, &owner(), &PlanRules::default()).unwrap_err();
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

    fn ports(ranges: &[(u64, u64)]) -> Resource {
        Resource {
            name: "ports".into(),
            r#type: value::Type::Ranges as i32,
            ranges: Some(value::Ranges {
                range: ranges
                    .iter()
                    .map(|&(begin, end)| value::Range { begin, end })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    fn mapping(host: u32, container: Option<u32>, protocol: Option<&str>) -> PortMapping {
        PortMapping {
            host_port: host,
            container_port: container,
            protocol: protocol.map(str::to_owned),
        }
    }

    fn bridge(mappings: Vec<PortMapping>) -> ContainerSpec {
        ContainerSpec {
            image: "redis".into(),
            network: Some(NetworkMode::Bridge as i32),
            port_mappings: mappings,
            ..Default::default()
        }
    }

    #[test]
    fn task_ports_flatten_ranges() {
        assert_eq!(
            task_ports(&[
                ports(&[(31000, 31002), (31001, 31001)]),
                scalar("cpus", 1.0)
            ]),
            [31000, 31001, 31002]
        );
        assert_eq!(task_ports(&[ports(&[(70000, 70001)])]), Vec::<u16>::new());
    }

    #[test]
    fn bridge_publishes_the_given_ports() {
        let given = vec![ports(&[(31000, 31001)])];
        let binding = |port: &str| PortBinding {
            host_ip: String::new(),
            host_port: port.into(),
        };
        // No mappings: every given port on itself.
        let plan = plan_container(
            &task_with(Some(&bridge(vec![])), given.clone()),
            &owner(),
            &PlanRules::default(),
        )
        .unwrap();
        assert!(plan.bridge_network);
        assert_eq!(
            plan.create.host_config.port_bindings,
            BTreeMap::from([
                ("31000/tcp".to_string(), vec![binding("31000")]),
                ("31001/tcp".to_string(), vec![binding("31001")]),
            ])
        );
        assert_eq!(
            plan.create.exposed_ports.keys().collect::<Vec<_>>(),
            ["31000/tcp", "31001/tcp"]
        );
        assert_eq!(
            plan.published_ports,
            BTreeMap::from([(31000, 31000), (31001, 31001)])
        );
        // Explicit mappings.
        let spec = bridge(vec![
            mapping(31000, Some(6379), None),
            mapping(31001, Some(53), Some("UDP")),
        ]);
        let plan = plan_container(
            &task_with(Some(&spec), given.clone()),
            &owner(),
            &PlanRules::default(),
        )
        .unwrap();
        assert_eq!(
            plan.create.host_config.port_bindings,
            BTreeMap::from([
                ("6379/tcp".to_string(), vec![binding("31000")]),
                ("53/udp".to_string(), vec![binding("31001")]),
            ])
        );
        assert_eq!(plan.published_ports, BTreeMap::from([(31000, 6379)]));
        // Host networking publishes nothing.
        let mut host = bridge(vec![mapping(1, None, None)]);
        host.network = Some(NetworkMode::Host as i32);
        let plan = plan_container(
            &task_with(Some(&host), given.clone()),
            &owner(),
            &PlanRules::default(),
        )
        .unwrap();
        assert!(plan.create.host_config.port_bindings.is_empty());
        assert_eq!(
            plan.create.host_config.network_mode.as_deref(),
            Some("host")
        );
    }

    #[test]
    fn bad_port_mappings_are_plan_errors() {
        let given = vec![ports(&[(31000, 31001)])];
        let check = |mappings: Vec<PortMapping>, expected: &str| {
            let task = task_with(Some(&bridge(mappings)), given.clone());
            let err = plan_container(&task, &owner(), &PlanRules::default()).unwrap_err();
            assert_eq!(err.to_string(), expected);
        };
        check(
            vec![mapping(8080, None, None)],
            "task redis-a.1 maps host port 8080, which is not among its ports resources",
        );
        check(
            vec![mapping(31000, Some(0), None)],
            "task redis-a.1 has an invalid port mapping: container port 0 is not a port",
        );
        check(
            vec![mapping(31000, None, Some("sctp"))],
            "task redis-a.1 has an invalid port mapping: protocol \"sctp\" is neither tcp nor udp",
        );
        check(
            vec![mapping(31000, Some(1), None), mapping(31000, Some(2), None)],
            "task redis-a.1 has an invalid port mapping: host port 31000/tcp is mapped twice",
        );
    }

    fn persistent_volume(container_path: &str, read_only: bool) -> Resource {
        Resource {
            name: "disk".into(),
            r#type: value::Type::Scalar as i32,
            scalar: Some(value::Scalar { value: 64.0 }),
            disk: Some(resource::DiskInfo {
                persistence: Some(resource::disk_info::Persistence {
                    id: format!("pv-{container_path}"),
                    principal: None,
                }),
                volume: Some(Volume {
                    container_path: container_path.into(),
                    mode: if read_only {
                        volume::Mode::Ro
                    } else {
                        volume::Mode::Rw
                    } as i32,
                    ..Default::default()
                }),
                source: None,
            }),
            ..Default::default()
        }
    }

    fn mount(sandbox_path: &str, container_path: &str, read_only: bool) -> VolumeMount {
        VolumeMount {
            sandbox_path: sandbox_path.into(),
            container_path: container_path.into(),
            read_only: Some(read_only),
        }
    }

    fn sandbox_mount(sandbox_path: &str, container_path: &str, read_only: bool) -> SandboxMount {
        SandboxMount {
            sandbox_path: sandbox_path.into(),
            container_path: container_path.into(),
            read_only,
            persistence_id: None,
        }
    }

    fn volume_mount(sandbox_path: &str, container_path: &str, read_only: bool) -> SandboxMount {
        SandboxMount {
            persistence_id: Some(format!("pv-{sandbox_path}")),
            ..sandbox_mount(sandbox_path, container_path, read_only)
        }
    }

    #[test]
    fn mounts_come_from_the_spec_and_persistent_volumes() {
        let spec = ContainerSpec {
            image: "redis".into(),
            mounts: vec![
                mount("./conf/", "/etc/redis", true),
                mount("data", "/var/lib/redis", false),
            ],
            ..Default::default()
        };
        let task = task_with(
            Some(&spec),
            vec![
                persistent_volume("data", false),
                persistent_volume("backups", true),
                scalar("disk", 10.0),
            ],
        );
        let plan = plan_container(&task, &owner(), &PlanRules::default()).unwrap();
        assert_eq!(
            plan.mounts,
            [
                sandbox_mount("conf", "/etc/redis", true),
                volume_mount("data", "/var/lib/redis", false),
                volume_mount("backups", "/backups", true),
            ]
        );
    }

    #[test]
    fn mounts_leaving_the_sandbox_are_plan_errors() {
        let check = |mounts: Vec<VolumeMount>, resources: Vec<Resource>, path: &str| {
            let spec = ContainerSpec {
                image: "redis".into(),
                mounts,
                ..Default::default()
            };
            let err = plan_container(
                &task_with(Some(&spec), resources),
                &owner(),
                &PlanRules::default(),
            )
            .unwrap_err();
            assert!(
                matches!(&err, PlanError::InvalidMount { path: p, .. } if p == path),
                "{err}"
            );
        };
        check(vec![mount("/etc", "/etc", false)], vec![], "/etc");
        check(vec![mount("../up", "/up", false)], vec![], "../up");
        check(vec![mount("a/../../b", "/b", false)], vec![], "a/../../b");
        check(vec![mount("", "/x", false)], vec![], "");
        check(vec![mount(".", "/x", false)], vec![], ".");
        check(vec![mount("ok", "relative", false)], vec![], "relative");
        check(vec![mount("ok", "/a/../b", false)], vec![], "/a/../b");
        check(vec![mount("ok", "/", false)], vec![], "/");
        check(vec![], vec![persistent_volume("/abs", false)], "/abs");
        check(vec![], vec![persistent_volume("../pv", false)], "../pv");
    }

    #[test]
    fn privileged_containers_need_the_operators_consent() {
        let spec = ContainerSpec {
            image: "redis".into(),
            privileged: Some(true),
            ..Default::default()
        };
        let task = task_with(Some(&spec), vec![]);
        let err = plan_container(&task, &owner(), &PlanRules::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "task redis-a.1 asks for a privileged container, which this agent does not allow \
             (MESOS_STATEFUL_ALLOW_PRIVILEGED is not 1)"
        );
        let allowed = PlanRules {
            allow_privileged: true,
        };
        let plan = plan_container(&task, &owner(), &allowed).unwrap();
        assert!(plan.create.host_config.privileged);
        let plain = plan_container(
            &task_with(
                Some(&ContainerSpec {
                    image: "redis".into(),
                    ..Default::default()
                }),
                vec![],
            ),
            &owner(),
            &PlanRules::default(),
        )
        .unwrap();
        assert!(!plain.create.host_config.privileged);
    }

    #[test]
    fn registry_auth_defaults_to_the_images_registry() {
        let check = |image: &str, server: Option<&str>, expected_server: &str| {
            let spec = ContainerSpec {
                image: image.into(),
                registry_auth: Some(mesos_stateful_proto::stateful::RegistryAuth {
                    username: Some("u".into()),
                    password: Some("p".into()),
                    server_address: server.map(str::to_owned),
                    identity_token: None,
                }),
                ..Default::default()
            };
            let plan = plan_container(
                &task_with(Some(&spec), vec![]),
                &owner(),
                &PlanRules::default(),
            )
            .unwrap();
            let auth = plan.registry_auth.unwrap();
            assert_eq!(
                (
                    auth.username.as_str(),
                    auth.password.as_str(),
                    auth.serveraddress.as_str()
                ),
                ("u", "p", expected_server)
            );
        };
        check("localhost:5000/app:1", None, "localhost:5000");
        check("redis:7", None, "docker.io");
        check("redis:7", Some("mirror.example:443"), "mirror.example:443");
        let none = plan_container(
            &task_with(
                Some(&ContainerSpec {
                    image: "redis".into(),
                    ..Default::default()
                }),
                vec![],
            ),
            &owner(),
            &PlanRules::default(),
        )
        .unwrap();
        assert_eq!(none.registry_auth, None);
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
