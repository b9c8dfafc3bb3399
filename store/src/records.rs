//! Typed records: what mesos-stateful persists, one record per entity.
//!
//! Records are serialized as JSON with a `schema` field so later versions can migrate
//! them. They are plain data: the rules for changing them (the instance state machine,
//! task state mapping) live in the `actors` crate.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the record layout written by this build. Older stores are migrated
/// when opened (see the store's `migrations`); 2 added volumes and placement.
pub const SCHEMA_VERSION: u32 = 2;

/// Lifecycle of an instance.
///
/// A member is *healthy* when its task is TASK_RUNNING and its latest health check,
/// if any, passed. Transitions (computed by `actors::domain::lifecycle::next_status`
/// after every change of a member, except where an operation is named):
///
/// | from | to | when |
/// |---|---|---|
/// | `Creating` | `Running` | every asked member is healthy |
/// | `Running` | `Degraded` | the master is healthy, a replica is not (lost, relaunching, added) |
/// | `Running`, `Degraded` | `Recovering` | the member in the master role is not healthy |
/// | `Recovering` | `Degraded` | a master is healthy again (promoted or relaunched), not every replica |
/// | `Degraded`, `Recovering` | `Running` | every asked member is healthy again |
/// | `Creating`, `Running`, `Degraded`, `Recovering` | `Failed` | the workload returned `MarkFailed` |
/// | any but `Deleting`, `Deleted` | `Deleting` | DELETE |
/// | `Deleting` | `Deleted` | every task is terminal |
///
/// `Deleted` is terminal; `Failed` only leaves by DELETE. Records written before
/// `Degraded` and `Recovering` existed load unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Accepted and persisted; members are being placed and started.
    Creating,
    /// Every member's task is running.
    Running,
    /// A DELETE was accepted; tasks are being killed.
    Deleting,
    /// Every task is terminal; the record stays for inspection. Terminal.
    Deleted,
    /// A member failed and the instance cannot make progress.
    Failed,
    /// Running with fewer healthy members than asked; the missing ones are being
    /// relaunched or replaced.
    Degraded,
    /// The master is lost; a promotion or a relaunch of the master is under way.
    Recovering,
}

impl InstanceStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [InstanceStatus; 7] = [
        Self::Creating,
        Self::Running,
        Self::Degraded,
        Self::Recovering,
        Self::Deleting,
        Self::Deleted,
        Self::Failed,
    ];

    /// The status's name as the API and the records spell it (`RUNNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Running => "RUNNING",
            Self::Deleting => "DELETING",
            Self::Deleted => "DELETED",
            Self::Failed => "FAILED",
            Self::Degraded => "DEGRADED",
            Self::Recovering => "RECOVERING",
        }
    }

    /// Whether a DELETE may move the instance to `Deleting`.
    pub fn can_delete(self) -> bool {
        matches!(
            self,
            Self::Creating | Self::Running | Self::Degraded | Self::Recovering | Self::Failed
        )
    }

    /// Whether the instance is live: its members are launched, relaunched and
    /// watched (`Creating`, `Running`, `Degraded`, `Recovering`).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Creating | Self::Running | Self::Degraded | Self::Recovering
        )
    }

    /// Whether scale, restart, replace and update operations are accepted.
    pub fn can_operate(self) -> bool {
        self.is_live()
    }
}

/// The role a member plays in its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes writes; started first.
    Master,
    /// Replicates from the master; started once the master runs.
    Replica,
}

/// Cpu, memory and disk asked for each member.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    /// Cpu shares (Mesos `cpus`).
    pub cpus: f64,
    /// Memory in MiB (Mesos `mem`).
    pub mem: f64,
    /// Sandbox disk in MiB (Mesos `disk`).
    pub disk: f64,
}

/// A persistent volume asked for each member: reserved disk that outlives the
/// member's tasks and stays on the agent the member was first placed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeSpec {
    /// Size of the volume in MiB.
    pub size_mb: f64,
    /// Where the volume appears in the member's sandbox: a relative path of one
    /// segment (Mesos refuses nested and absolute paths).
    pub container_path: String,
}

/// Operator of a placement [`Constraint`], as Marathon names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConstraintOperator {
    /// Every member on a different value of the field.
    Unique,
    /// Every member on the given value (or, without one, on the same value).
    Cluster,
    /// Members spread evenly over the field's values.
    GroupBy,
    /// The field's value matches the regular expression.
    Like,
    /// The field's value does not match the regular expression.
    Unlike,
    /// At most the given number of members per value of the field.
    MaxPer,
}

impl ConstraintOperator {
    /// The operator as written in requests (`UNIQUE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unique => "UNIQUE",
            Self::Cluster => "CLUSTER",
            Self::GroupBy => "GROUP_BY",
            Self::Like => "LIKE",
            Self::Unlike => "UNLIKE",
            Self::MaxPer => "MAX_PER",
        }
    }
}

/// One placement rule on an agent field: `hostname` or an agent attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Constraint {
    /// `hostname` or the name of an agent attribute.
    pub field: String,
    /// How the field is constrained.
    pub operator: ConstraintOperator,
    /// The operator's argument, when it takes one.
    #[serde(default)]
    pub value: Option<String>,
}

/// Where an instance's members may go. The default keeps the master and the
/// replicas on distinct agents whenever the cluster allows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementSpec {
    /// Most members of the instance on one agent, if limited.
    #[serde(default)]
    pub max_per_agent: Option<u32>,
    /// Marathon-style constraints, all of which must hold.
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

/// What the user asked for when creating an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceSpec {
    /// Docker image reference of every member.
    pub image: String,
    /// Number of replicas besides the master.
    pub replicas: u32,
    /// Resources of each member.
    pub resources: Resources,
    /// Container args of the master; may use `{port}`.
    pub master_args: Vec<String>,
    /// Container args of replicas; may use `{port}`, `{master_host}`, `{master_port}`.
    pub replica_args: Vec<String>,
    /// Environment of every member.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Persistent volume of each member, if any.
    #[serde(default)]
    pub volume: Option<VolumeSpec>,
    /// Placement rules of the members.
    #[serde(default)]
    pub placement: PlacementSpec,
    /// Whether the members' containers run privileged. Accepted by the API only when
    /// the operator allows it (`--allow-privileged`).
    #[serde(default)]
    pub privileged: bool,
}

/// One instance: its spec and where it stands. Key: `instances/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Layout version of this record.
    pub schema: u32,
    /// DNS label naming the instance.
    pub name: String,
    /// What was asked.
    pub spec: InstanceSpec,
    /// Where the instance stands.
    pub status: InstanceStatus,
    /// Why the instance is `Failed`, if it is.
    #[serde(default)]
    pub status_message: Option<String>,
    /// Bumped on every write of this record.
    pub version: u64,
    /// Milliseconds since the Unix epoch when the create was accepted.
    pub created_at_ms: u64,
    /// Bookkeeping of members' lifecycle across operations.
    #[serde(default)]
    pub lifecycle: InstanceLifecycle,
}

/// Lifecycle bookkeeping of an instance, kept in its record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceLifecycle {
    /// Last incarnation of each member removed by scaling down, by ordinal, so a
    /// member added again at that ordinal never reuses a task id.
    #[serde(default)]
    pub retired_incarnations: BTreeMap<u32, u32>,
    /// The rolling restart under way after an update of the spec, if any.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// Commands that workload actions asked for, written with the change they serve
    /// and kept until their executor answers (or they expire), so a scheduler that
    /// restarts sends them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<RecordedCommand>,
}

/// A command for a member's container, decided by a workload action and not
/// answered yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCommand {
    /// The executor's idempotency key: the same id is never run twice.
    pub command_id: String,
    /// Ordinal of the member.
    pub ordinal: u32,
    /// The member's task the command is for; another incarnation does not get it.
    pub task_id: String,
    /// Command and arguments.
    pub argv: Vec<String>,
}

/// A rolling restart: members restarted one at a time with the updated spec,
/// replicas first, the master last (after a promotion when the workload can promote).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Ordinals still to restart, in order.
    pub pending: Vec<u32>,
    /// Ordinal of the member restarted last: the next member is restarted once it
    /// is healthy again (whatever incarnation it took to get there).
    #[serde(default)]
    pub waiting_for: Option<u32>,
}

/// One member's current task. Key: `tasks/<instance>/<ordinal>`.
///
/// A member keeps its ordinal for its whole life (`cache1-0`, `cache1-1` …); each
/// launch of it is a new incarnation with a new, deterministic task id
/// (`<instance>-<ordinal>.<incarnation>`), so a relaunch can never be confused with
/// the task it replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Layout version of this record.
    pub schema: u32,
    /// Instance the member belongs to.
    pub instance: String,
    /// Stable position of the member in its instance; 0 is the master at creation.
    pub ordinal: u32,
    /// Current role of the member.
    pub role: Role,
    /// Launch counter of the member, starting at 1.
    pub incarnation: u32,
    /// Mesos task id of the current incarnation.
    pub task_id: String,
    /// Agent the task was launched on, once launched.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Host name of that agent.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Port given to the member from its offer.
    #[serde(default)]
    pub port: Option<u16>,
    /// Latest Mesos task state (`TASK_RUNNING` …), `None` before the launch.
    #[serde(default)]
    pub state: Option<String>,
    /// Message of the latest status update.
    #[serde(default)]
    pub message: Option<String>,
    /// Result of the task's health check, once one has run.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// W3C `traceparent` of the span that launched (or queued) this task, so its
    /// status updates join the trace of the request that caused it.
    #[serde(default)]
    pub trace_parent: Option<String>,
    /// The member's persistent volume once placed, binding it to one agent.
    #[serde(default)]
    pub volume: Option<MemberVolume>,
    /// Incarnations of this member that ended since it last reached TASK_RUNNING;
    /// the relaunch backoff grows with it.
    #[serde(default)]
    pub failures: u32,
    /// Milliseconds since the Unix epoch when the current task ended or its agent
    /// became unreachable; `None` while it is live or before its launch.
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
    /// Milliseconds since the Unix epoch when the current task reached TASK_RUNNING;
    /// a task that ran long enough before ending restarts the backoff.
    #[serde(default)]
    pub running_since_ms: Option<u64>,
    /// Bumped on every write of this record.
    pub version: u64,
}

impl TaskRecord {
    /// The record of a member's incarnation waiting for an offer: not placed, no
    /// state yet.
    pub fn waiting(instance: &str, ordinal: u32, role: Role, incarnation: u32) -> Self {
        TaskRecord {
            schema: SCHEMA_VERSION,
            instance: instance.to_string(),
            ordinal,
            role,
            incarnation,
            task_id: task_id(instance, ordinal, incarnation),
            agent_id: None,
            hostname: None,
            port: None,
            state: None,
            message: Some("waiting for an offer".to_string()),
            healthy: None,
            trace_parent: None,
            volume: None,
            failures: 0,
            ended_at_ms: None,
            running_since_ms: None,
            version: 0,
        }
    }

    /// The next incarnation of this member, waiting for an offer. Everything that
    /// binds the member (its role, a bound agent or volume) is kept; what belongs to
    /// the ended task (its agent, port, state) is cleared.
    pub fn next_incarnation(&self) -> Self {
        let incarnation = self.incarnation + 1;
        TaskRecord {
            incarnation,
            task_id: task_id(&self.instance, self.ordinal, incarnation),
            agent_id: None,
            hostname: None,
            port: None,
            state: None,
            message: Some("waiting for an offer".to_string()),
            healthy: None,
            ended_at_ms: None,
            running_since_ms: None,
            ..self.clone()
        }
    }
}

/// A member's persistent volume and the reservation holding it, bound to one agent.
///
/// Written into the member's [`TaskRecord`] before the ACCEPT that reserves and
/// creates it, so that after a crash the member is still tied to the agent that may
/// hold its data. Removed once the reservation is released on delete, or replaced
/// by a new one (new persistence id) when the member is replaced elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberVolume {
    /// Agent holding the reservation and the volume.
    pub agent_id: String,
    /// Host name of that agent.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Mesos persistence id of the volume, unique per member generation
    /// (`<instance>-<ordinal>.<incarnation that created it>`).
    pub persistence_id: String,
    /// Role the resources are reserved for.
    pub role: String,
    /// Principal the reservation and the volume were made with, if any.
    #[serde(default)]
    pub principal: Option<String>,
    /// Size of the volume in MiB.
    pub size_mb: f64,
    /// Path of the volume in the member's sandbox.
    pub container_path: String,
    /// Cpus and memory reserved with the volume for the member's task.
    pub reserved: Resources,
}

/// The framework's identity, kept so a restarted scheduler re-subscribes as the same
/// framework. Key: `framework/id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    /// Layout version of this record.
    pub schema: u32,
    /// The FrameworkID Mesos assigned.
    pub framework_id: String,
}

/// Member name for an ordinal: `cache1-0`.
pub fn member_name(instance: &str, ordinal: u32) -> String {
    format!("{instance}-{ordinal}")
}

/// Task id of a member's incarnation: `cache1-0.1`.
pub fn task_id(instance: &str, ordinal: u32, incarnation: u32) -> String {
    format!("{instance}-{ordinal}.{incarnation}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_the_serialized_form() {
        for status in InstanceStatus::ALL {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json.as_str(), Some(status.as_str()));
        }
    }

    #[test]
    fn records_without_lifecycle_fields_load() {
        let old = r#"{"schema":1,"instance":"c","ordinal":1,"role":"replica","incarnation":2,
            "task_id":"c-1.2","state":"TASK_RUNNING","version":3}"#;
        let task: TaskRecord = serde_json::from_str(old).unwrap();
        assert_eq!((task.failures, task.ended_at_ms), (0, None));
        let status: InstanceStatus = serde_json::from_str("\"RUNNING\"").unwrap();
        assert_eq!(status, InstanceStatus::Running);
        for status in [InstanceStatus::Degraded, InstanceStatus::Recovering] {
            assert!(status.is_live() && status.can_delete());
        }
        assert!(!InstanceStatus::Failed.is_live());
        assert!(!InstanceStatus::Deleted.can_delete());
    }
}
