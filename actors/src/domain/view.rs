//! Read-only views of instances: what the REST API returns and what workloads see.

use std::collections::BTreeMap;

use serde::Serialize;

use mesos_stateful_proto::stateful::TaskStats;

use mesos_stateful_store::records::{
    member_name, InstanceRecord, InstanceSpec, InstanceStatus, Role, TaskRecord,
};

/// An instance as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    /// Result of the latest health check, once one has run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Latest stats sample of the member's container, as its executor reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<MemberStats>,
}

/// One stats sample of a member's container.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MemberStats {
    /// Seconds since the Unix epoch when it was taken.
    pub timestamp: Option<f64>,
    /// Cpu use since the previous sample, percent of one cpu.
    pub cpu_percent: Option<f64>,
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// Memory limit, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// Bytes received over the network.
    pub network_rx_bytes: Option<u64>,
    /// Bytes sent over the network.
    pub network_tx_bytes: Option<u64>,
    /// Bytes read from block devices.
    pub block_read_bytes: Option<u64>,
    /// Bytes written to block devices.
    pub block_write_bytes: Option<u64>,
    /// Facts the workload reported (for Redis, `INFO replication` fields).
    pub facts: BTreeMap<String, String>,
}

impl From<&TaskStats> for MemberStats {
    fn from(stats: &TaskStats) -> Self {
        MemberStats {
            timestamp: stats.timestamp,
            cpu_percent: stats.cpu_percent,
            memory_bytes: stats.memory_bytes,
            memory_limit_bytes: stats.memory_limit_bytes,
            network_rx_bytes: stats.network_rx_bytes,
            network_tx_bytes: stats.network_tx_bytes,
            block_read_bytes: stats.block_read_bytes,
            block_write_bytes: stats.block_write_bytes,
            facts: stats
                .facts
                .iter()
                .map(|label| (label.key.clone(), label.value.clone().unwrap_or_default()))
                .collect(),
        }
    }
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
            healthy: task.healthy,
            stats: None,
        }
    }
}
