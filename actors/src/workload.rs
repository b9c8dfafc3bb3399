//! The workload trait: what a framework developer implements.
//!
//! mesos-stateful calls these callbacks at fixed moments of an instance's life and
//! carries out the declarative [`Action`]s they return. Callbacks see a read-only
//! [`InstanceView`]; they never talk to Mesos or the store themselves.
//!
//! | callback | when |
//! |---|---|
//! | `config` | once, when the scheduler starts |
//! | `start` | a create was accepted and persisted |
//! | `start_master` | the master is about to be launched on an offer |
//! | `start_replica` | a replica is about to be launched on an offer |
//! | `master_running` | the master's task reached TASK_RUNNING |
//! | `replica_running` | a replica's task reached TASK_RUNNING |
//! | `master_lost` | the master's task ended while the instance was live |
//! | `replica_lost` | a replica's task ended while the instance was live |

use std::fmt::Debug;

use crate::domain::launch::ContainerPlan;
use crate::domain::view::{InstanceView, MemberView};

/// Settings a workload gives the scheduler once.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadConfig {
    /// Framework name registered with Mesos.
    pub framework_name: String,
    /// Mesos role of the framework.
    pub role: String,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            framework_name: "mesos-stateful".to_string(),
            role: "*".to_string(),
        }
    }
}

/// What a workload asks the actors to do after a callback.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create and queue the instance's replicas (once; later calls do nothing).
    StartReplicas,
    /// Give up on the instance: status FAILED with `reason`.
    MarkFailed {
        /// Shown in the instance's status.
        reason: String,
    },
}

/// A stateful service's behaviour. Implementations must be cheap and never block:
/// callbacks run on actor threads.
pub trait Workload: Send + Sync + Debug + 'static {
    /// Settings of the framework.
    fn config(&self) -> WorkloadConfig {
        WorkloadConfig::default()
    }

    /// A create was accepted and persisted.
    fn start(&self, _instance: &InstanceView) -> Vec<Action> {
        Vec::new()
    }

    /// The master's container, given its port.
    fn start_master(
        &self,
        instance: &InstanceView,
        member: &MemberView,
        port: u16,
    ) -> ContainerPlan;

    /// A replica's container, given its port and the master's member.
    fn start_replica(
        &self,
        instance: &InstanceView,
        member: &MemberView,
        port: u16,
        master: Option<&MemberView>,
    ) -> ContainerPlan;

    /// The master runs.
    fn master_running(&self, _instance: &InstanceView, _member: &MemberView) -> Vec<Action> {
        vec![Action::StartReplicas]
    }

    /// A replica runs.
    fn replica_running(&self, _instance: &InstanceView, _member: &MemberView) -> Vec<Action> {
        Vec::new()
    }

    /// The master's task ended while the instance was live.
    fn master_lost(&self, _instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        vec![Action::MarkFailed {
            reason: format!(
                "master {} ended: {}",
                member.name,
                member.message.as_deref().unwrap_or("no message")
            ),
        }]
    }

    /// A replica's task ended while the instance was live.
    fn replica_lost(&self, _instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        vec![Action::MarkFailed {
            reason: format!(
                "replica {} ended: {}",
                member.name,
                member.message.as_deref().unwrap_or("no message")
            ),
        }]
    }
}
