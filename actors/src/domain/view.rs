//! Read-only views of instances: what the REST API returns and what workloads see.

use serde::Serialize;

use mesos_stateful_store::records::{
    member_name, InstanceRecord, InstanceSpec, InstanceStatus, Role, TaskRecord,
};

/// An instance as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    /// Instance name.
    pub name: String,
    /// Lifecycle status.
    pub status: InstanceStatus,
    /// Why the instance failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// What was asked for.
    pub spec: InstanceSpec,
    /// Version of the instance record (bumped on each change).
    pub version: u64,
    /// Members in ordinal order.
    pub members: Vec<MemberView>,
}

/// One member as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    /// Stable member name (`cache1-0`).
    pub name: String,
    /// Ordinal of the member.
    pub ordinal: u32,
    /// Current role.
    pub role: Role,
    /// Task id of the current incarnation.
    pub task_id: String,
    /// Agent it runs on, once launched.
    pub agent_id: Option<String>,
    /// Host of that agent.
    pub host: Option<String>,
    /// Port given from its offer.
    pub port: Option<u16>,
    /// Latest Mesos task state, `None` while waiting for an offer.
    pub state: Option<String>,
    /// Message of the latest status update, or why no offer fits yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl MemberView {
    /// `host:port` once placed.
    pub fn endpoint(&self) -> Option<(String, u16)> {
        Some((self.host.clone()?, self.port?))
    }
}

impl InstanceView {
    /// Builds the view from the stored records.
    pub fn new(instance: &InstanceRecord, tasks: &[TaskRecord]) -> Self {
        InstanceView {
            name: instance.name.clone(),
            status: instance.status,
            status_message: instance.status_message.clone(),
            spec: instance.spec.clone(),
            version: instance.version,
            members: tasks.iter().map(MemberView::from).collect(),
        }
    }

    /// The member currently in the master role.
    pub fn master(&self) -> Option<&MemberView> {
        self.members.iter().find(|m| m.role == Role::Master)
    }
}

impl From<&TaskRecord> for MemberView {
    fn from(task: &TaskRecord) -> Self {
        MemberView {
            name: member_name(&task.instance, task.ordinal),
            ordinal: task.ordinal,
            role: task.role,
            task_id: task.task_id.clone(),
            agent_id: task.agent_id.clone(),
            host: task.hostname.clone(),
            port: task.port,
            state: task.state.clone(),
            message: task.message.clone(),
        }
    }
}
