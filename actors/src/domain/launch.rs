//! The `TaskInfo` of a member's launch: our executor, the member's resources taken
//! from its offer, and the container to run carried as a `ContainerSpec` in `data`.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use mesos_stateful_proto::stateful::{
    container_spec::{self, NetworkMode},
    ContainerSpec, RegistryAuth,
};
use mesos_stateful_proto::v1;
use mesos_stateful_store::records::{member_name, Resources, Role};

use super::offers::Placement;

/// How tasks get our executor, fixed for a scheduler's lifetime.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorLaunch {
    /// What the agent runs: an absolute path on the agent, or a file name fetched
    /// into the sandbox from `uri`.
    pub command: String,
    /// Where the agent's fetcher gets the executor binary from, if anywhere.
    pub uri: Option<String>,
    /// Resources of the executor itself, on top of the task's.
    pub resources: Resources,
    /// Grace period between SIGTERM and SIGKILL for the task's container.
    pub kill_grace_seconds: f64,
    /// Extra environment for the executor (for example `RUST_LOG`).
    pub environment: BTreeMap<String, String>,
    /// How often the executor reports each container's stats.
    pub stats_interval_seconds: f64,
}

impl Default for ExecutorLaunch {
    fn default() -> Self {
        ExecutorLaunch {
            command: "mesos-stateful-executor".to_string(),
            uri: None,
            resources: Resources {
                cpus: 0.05,
                mem: 32.0,
                disk: 0.0,
            },
            kill_grace_seconds: 10.0,
            environment: BTreeMap::new(),
            stats_interval_seconds: 10.0,
        }
    }
}

/// The container a workload wants for one member.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerPlan {
    /// Image reference.
    pub image: String,
    /// Container args (CMD), placeholders already substituted.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Command run in the container at each stats interval; its `key:value` output
    /// lines are reported as facts (empty: none).
    pub facts_command: Vec<String>,
    /// Docker bridge networking instead of the agent's network; the member's port is
    /// published per `port_mappings` (empty: on the same container port).
    pub bridge_network: bool,
    /// Ports published with bridge networking; each host port must be the member's.
    pub port_mappings: Vec<container_spec::PortMapping>,
    /// Sandbox directories bound into the container.
    pub mounts: Vec<container_spec::VolumeMount>,
    /// Runs the container privileged (refused by executors not allowed to).
    pub privileged: bool,
    /// Credentials for pulling the image, instead of the agent's Docker config.
    pub registry_auth: Option<RegistryAuth>,
}

/// Label keys put on tasks and containers.
pub mod labels {
    /// Framework that owns the container.
    pub const FRAMEWORK: &str = "mesos-stateful.framework";
    /// Instance the member belongs to.
    pub const INSTANCE: &str = "mesos-stateful.instance";
    /// Member name (`cache1-0`).
    pub const MEMBER: &str = "mesos-stateful.member";
    /// Role of the member at launch.
    pub const ROLE: &str = "mesos-stateful.role";
}

/// Builds the `TaskInfo` launching `placement` with `plan`.
pub fn task_info(
    placement: &Placement,
    plan: &ContainerPlan,
    framework_id: &str,
    framework_name: &str,
    executor: &ExecutorLaunch,
    allocation: Option<&v1::resource::AllocationInfo>,
) -> v1::TaskInfo {
    let job = &placement.job;
    let member = member_name(&job.instance, job.ordinal);
    let role = match job.role {
        Role::Master => "master",
        Role::Replica => "replica",
    };
    let label = |key: &str, value: &str| v1::Label {
        key: key.to_string(),
        value: Some(value.to_string()),
    };
    let container_labels = vec![
        label(labels::FRAMEWORK, framework_name),
        label(labels::INSTANCE, &job.instance),
        label(labels::MEMBER, &member),
        label(labels::ROLE, role),
    ];
    let spec = ContainerSpec {
        image: plan.image.clone(),
        args: plan.args.clone(),
        entrypoint: Vec::new(),
        environment: Some(environment(&plan.env)),
        network: Some(if plan.bridge_network {
            NetworkMode::Bridge as i32
        } else {
            NetworkMode::Host as i32
        }),
        labels: container_labels.clone(),
        stats_interval_seconds: Some(executor.stats_interval_seconds),
        facts_command: plan.facts_command.clone(),
        port_mappings: plan.port_mappings.clone(),
        mounts: plan.mounts.clone(),
        privileged: plan.privileged.then_some(true),
        registry_auth: plan.registry_auth.clone(),
    };
    let resources = task_resources(placement, allocation);
    let mut executor_env = executor.environment.clone();
    executor_env
        .entry("MESOS_STATEFUL_TASK_ID".to_string())
        .or_insert_with(|| job.task_id.clone());
    v1::TaskInfo {
        name: member,
        task_id: v1::TaskId {
            value: job.task_id.clone(),
        },
        agent_id: v1::AgentId {
            value: placement.agent_id.clone(),
        },
        resources,
        executor: Some(v1::ExecutorInfo {
            r#type: Some(v1::executor_info::Type::Custom as i32),
            executor_id: v1::ExecutorId {
                value: executor_id(&job.task_id),
            },
            framework_id: Some(v1::FrameworkId {
                value: framework_id.to_string(),
            }),
            command: Some(executor_command(executor, &executor_env)),
            resources: if placement.executor_takes.is_empty() {
                scalars(&executor.resources, allocation)
            } else {
                with_allocation(placement.executor_resources(), allocation)
            },
            name: Some(format!("{framework_name} executor")),
            shutdown_grace_period: Some(duration(executor.kill_grace_seconds + 5.0)),
            ..Default::default()
        }),
        kill_policy: Some(v1::KillPolicy {
            grace_period: Some(duration(executor.kill_grace_seconds)),
        }),
        data: Some(Bytes::from(spec.encode_to_vec())),
        labels: Some(v1::Labels {
            labels: container_labels,
        }),
        ..Default::default()
    }
}

/// The task's resources: those matching took from the offer (reservations and the
/// volume included), or, for a placement made without them, the job's scalars and
/// its port as unreserved resources.
fn task_resources(
    placement: &Placement,
    allocation: Option<&v1::resource::AllocationInfo>,
) -> Vec<v1::Resource> {
    if !placement.reserved.is_empty() || !placement.takes.is_empty() {
        return with_allocation(placement.task_resources(), allocation);
    }
    let port = u64::from(placement.port);
    let mut resources = scalars(&placement.job.resources, allocation);
    resources.push(v1::Resource {
        name: "ports".to_string(),
        r#type: v1::value::Type::Ranges as i32,
        ranges: Some(v1::value::Ranges {
            range: vec![v1::value::Range {
                begin: port,
                end: port,
            }],
        }),
        allocation_info: allocation.cloned(),
        ..Default::default()
    });
    resources
}

/// Fills in the allocation info of resources that do not carry their own.
fn with_allocation(
    mut resources: Vec<v1::Resource>,
    allocation: Option<&v1::resource::AllocationInfo>,
) -> Vec<v1::Resource> {
    for resource in &mut resources {
        if resource.allocation_info.is_none() {
            resource.allocation_info = allocation.cloned();
        }
    }
    resources
}

/// Executor id of a task: one executor per task.
pub fn executor_id(task_id: &str) -> String {
    format!("{task_id}.executor")
}

fn executor_command(
    executor: &ExecutorLaunch,
    environment_vars: &BTreeMap<String, String>,
) -> v1::CommandInfo {
    let uris = executor
        .uri
        .iter()
        .map(|uri| v1::command_info::Uri {
            value: uri.clone(),
            executable: Some(true),
            extract: Some(false),
            ..Default::default()
        })
        .collect();
    v1::CommandInfo {
        uris,
        environment: Some(environment(environment_vars)),
        shell: Some(false),
        value: Some(executor.command.clone()),
        arguments: vec![executor.command.clone()],
        ..Default::default()
    }
}

fn environment(vars: &BTreeMap<String, String>) -> v1::Environment {
    v1::Environment {
        variables: vars
            .iter()
            .map(|(name, value)| v1::environment::Variable {
                name: name.clone(),
                r#type: Some(v1::environment::variable::Type::Value as i32),
                value: Some(value.clone()),
                ..Default::default()
            })
            .collect(),
    }
}

fn scalars(
    resources: &Resources,
    allocation: Option<&v1::resource::AllocationInfo>,
) -> Vec<v1::Resource> {
    [
        ("cpus", resources.cpus),
        ("mem", resources.mem),
        ("disk", resources.disk),
    ]
    .into_iter()
    .filter(|(_, value)| *value > 0.0)
    .map(|(name, value)| v1::Resource {
        name: name.to_string(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        allocation_info: allocation.cloned(),
        ..Default::default()
    })
    .collect()
}

fn duration(seconds: f64) -> v1::DurationInfo {
    v1::DurationInfo {
        nanoseconds: (seconds * 1e9) as i64,
    }
}

/// Substitutes `{port}`, `{master_host}` and `{master_port}` in `args`.
pub fn substitute(args: &[String], port: u16, master: Option<(&str, u16)>) -> Vec<String> {
    args.iter()
        .map(|arg| {
            let mut arg = arg.replace("{port}", &port.to_string());
            if let Some((host, master_port)) = master {
                arg = arg
                    .replace("{master_host}", host)
                    .replace("{master_port}", &master_port.to_string());
            }
            arg
        })
        .collect()
}

/// Splits `items` (each with its size), in order, into consecutive groups whose
/// sizes add up to at least `limit`, the last group holding what is left. No item is
/// split: one larger than `limit` forms a group of its own, and items of size 0 join
/// the group being filled.
pub fn group_by_size<T>(items: Vec<(T, usize)>, limit: usize) -> Vec<Vec<T>> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut size = 0;
    for (item, item_size) in items {
        group.push(item);
        size += item_size;
        if size >= limit.max(1) {
            groups.push(std::mem::take(&mut group));
            size = 0;
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::offers::LaunchJob;

    fn placement() -> Placement {
        Placement {
            job: LaunchJob {
                instance: "cache1".into(),
                ordinal: 1,
                task_id: "cache1-1.1".into(),
                role: Role::Replica,
                resources: Resources {
                    cpus: 0.2,
                    mem: 128.0,
                    disk: 64.0,
                },
                colocate: false,
                trace_parent: None,
                volume: None,
                bound: None,
                placement: Default::default(),
            },
            offer_id: "o1".into(),
            agent_id: "a1".into(),
            hostname: "127.0.0.1".into(),
            port: 31005,
            reserved: Vec::new(),
            takes: Vec::new(),
            executor_takes: Vec::new(),
            new_reservation: None,
            create_on_reserved: None,
            volume: None,
        }
    }

    #[test]
    fn substitutes_placeholders() {
        let args: Vec<String> = [
            "redis-server",
            "--port",
            "{port}",
            "--replicaof",
            "{master_host}",
            "{master_port}",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            substitute(&args, 31005, Some(("10.0.0.1", 31000))),
            [
                "redis-server",
                "--port",
                "31005",
                "--replicaof",
                "10.0.0.1",
                "31000"
            ]
        );
        // Without a master the master placeholders stay as written.
        assert_eq!(substitute(&args, 1, None)[4], "{master_host}");
    }

    #[test]
    fn task_info_carries_resources_executor_and_container() {
        let plan = ContainerPlan {
            image: "redis:7".into(),
            args: vec!["redis-server".into()],
            env: BTreeMap::from([("A".into(), "1".into())]),
            facts_command: vec!["true".into()],
            ..Default::default()
        };
        let executor = ExecutorLaunch {
            command: "/opt/bin/mesos-stateful-executor".into(),
            ..Default::default()
        };
        let task = task_info(
            &placement(),
            &plan,
            "fw1",
            "mesos-stateful",
            &executor,
            None,
        );
        assert_eq!(task.name, "cache1-1");
        assert_eq!(task.task_id.value, "cache1-1.1");
        assert_eq!(task.agent_id.value, "a1");
        assert!(
            task.command.is_none(),
            "a task has either a command or an executor"
        );
        let names: Vec<_> = task.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["cpus", "mem", "disk", "ports"]);
        let ports = task.resources[3].ranges.as_ref().unwrap();
        assert_eq!((ports.range[0].begin, ports.range[0].end), (31005, 31005));
        let exec = task.executor.as_ref().unwrap();
        assert_eq!(exec.executor_id.value, "cache1-1.1.executor");
        let command = exec.command.as_ref().unwrap();
        assert_eq!(command.shell, Some(false));
        assert_eq!(
            command.value.as_deref(),
            Some("/opt/bin/mesos-stateful-executor")
        );
        let spec = ContainerSpec::decode(task.data.clone().unwrap()).unwrap();
        assert_eq!(spec.image, "redis:7");
        assert_eq!(spec.args, ["redis-server"]);
        assert_eq!(spec.network, Some(NetworkMode::Host as i32));
        assert!(spec
            .labels
            .iter()
            .any(|l| l.key == labels::INSTANCE && l.value.as_deref() == Some("cache1")));
        assert!(spec.port_mappings.is_empty() && spec.mounts.is_empty());
        assert_eq!((spec.privileged, spec.registry_auth), (None, None));
        // Round trip through the wire format.
        let decoded = v1::TaskInfo::decode(task.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, task);
    }

    #[test]
    fn task_info_carries_bridge_ports_mounts_privilege_and_registry_auth() {
        let mapping = container_spec::PortMapping {
            host_port: 31005,
            container_port: Some(6379),
            protocol: None,
        };
        let mount = container_spec::VolumeMount {
            sandbox_path: "data".into(),
            container_path: "/data".into(),
            read_only: None,
        };
        let auth = RegistryAuth {
            username: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        };
        let plan = ContainerPlan {
            image: "redis:7".into(),
            bridge_network: true,
            port_mappings: vec![mapping.clone()],
            mounts: vec![mount.clone()],
            privileged: true,
            registry_auth: Some(auth.clone()),
            ..Default::default()
        };
        let task = task_info(
            &placement(),
            &plan,
            "fw1",
            "mesos-stateful",
            &ExecutorLaunch::default(),
            None,
        );
        let spec = ContainerSpec::decode(task.data.clone().unwrap()).unwrap();
        assert_eq!(spec.network, Some(NetworkMode::Bridge as i32));
        assert_eq!(spec.port_mappings, [mapping]);
        assert_eq!(spec.mounts, [mount]);
        assert_eq!(spec.privileged, Some(true));
        assert_eq!(spec.registry_auth, Some(auth));
    }

    #[test]
    fn task_info_launches_with_the_resources_matching_took() {
        let volume = v1::Resource {
            name: "disk".into(),
            r#type: v1::value::Type::Scalar as i32,
            scalar: Some(v1::value::Scalar { value: 512.0 }),
            disk: Some(v1::resource::DiskInfo {
                persistence: Some(v1::resource::disk_info::Persistence {
                    id: "cache1-1.1".into(),
                    principal: None,
                }),
                volume: Some(v1::Volume {
                    mode: v1::volume::Mode::Rw as i32,
                    container_path: "data".into(),
                    ..Default::default()
                }),
                source: None,
            }),
            ..Default::default()
        };
        let executor_cpus = crate::domain::offers::Take {
            name: "cpus",
            scalar: 0.05,
            port: 0,
            template: Default::default(),
        };
        let mut placement = placement();
        placement.reserved = vec![volume.clone()];
        placement.executor_takes = vec![executor_cpus.clone()];
        let allocation = v1::resource::AllocationInfo {
            role: Some("db".into()),
        };
        let task = task_info(
            &placement,
            &ContainerPlan::default(),
            "fw1",
            "mesos-stateful",
            &ExecutorLaunch::default(),
            Some(&allocation),
        );
        // The volume goes as taken, with the offer's allocation filled in.
        assert_eq!(task.resources.len(), 1);
        assert_eq!(task.resources[0].disk, volume.disk);
        assert_eq!(task.resources[0].allocation_info, Some(allocation.clone()));
        let executor = task.executor.unwrap();
        assert_eq!(executor.resources.len(), 1);
        assert_eq!(executor.resources[0], {
            let mut cpus = executor_cpus.resource();
            cpus.allocation_info = Some(allocation);
            cpus
        });
    }

    #[test]
    fn groups_fill_up_to_the_limit_and_never_split_an_item() {
        let items = vec![
            ("a", 100),
            ("b", 200),
            ("c", 10),
            ("d", 0),
            ("e", 600),
            ("f", 5),
        ];
        assert_eq!(
            group_by_size(items, 256),
            vec![vec!["a", "b"], vec!["c", "d", "e"], vec!["f"]]
        );
        assert_eq!(
            group_by_size(vec![("big", 1000), ("small", 1)], 256),
            vec![vec!["big"], vec!["small"]]
        );
        assert!(group_by_size(Vec::<(u8, usize)>::new(), 256).is_empty());
        // Items of size 0 (offers whose ACCEPT persists no record) join the group.
        assert_eq!(group_by_size(vec![(1, 0), (2, 0)], 256), vec![vec![1, 2]]);
        // A limit of 0 acts as 1: every item with a size closes its group.
        assert_eq!(
            group_by_size(vec![(1, 1), (2, 1)], 0),
            vec![vec![1], vec![2]]
        );
    }
}
