//! Typed records: what mesos-stateful persists, one record per entity.
//!
//! Records are serialized as JSON with a `schema` field so later versions can migrate
//! them. They are plain data: the rules for changing them (the instance state machine,
//! task state mapping) live in the `actors` crate.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the record layout written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Lifecycle of an instance.
///
/// Transitions: `Creating → Running` (every member RUNNING), `Creating | Running →
/// Failed` (a member failed for good), `Creating | Running | Failed → Deleting` (DELETE),
/// `Deleting → Deleted` (every task terminal). `Deleted` is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl InstanceStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [InstanceStatus; 5] = [
        Self::Creating,
        Self::Running,
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
        }
    }

    /// Whether a DELETE may move the instance to `Deleting`.
    pub fn can_delete(self) -> bool {
        matches!(self, Self::Creating | Self::Running | Self::Failed)
    }
}

/// The role a member plays in its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes writes; started first.
    Master,
    /// Replicates from the master; started once the master runs.
    Replica,
}

/// Cpu, memory and disk asked for each member.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Cpu shares (Mesos `cpus`).
    pub cpus: f64,
    /// Memory in MiB (Mesos `mem`).
    pub mem: f64,
    /// Sandbox disk in MiB (Mesos `disk`).
    pub disk: f64,
}

/// What the user asked for when creating an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Bumped on every write of this record.
    pub version: u64,
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
}
