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
//! | `master_lost` | the master's task ended, or its agent became unreachable, while the instance was live |
//! | `replica_lost` | the same for a replica |
//!
//! `*_running` fire each time a member's task reaches TASK_RUNNING from another state
//! (first start, relaunch, return of an unreachable agent); `*_lost` once per task
//! that goes. After the `*_lost` actions are carried out the member is relaunched with
//! backoff unless the instance was marked failed: a workload only says what else must
//! happen (a promotion, re-pointing the replicas).

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

/// What a workload asks the actors to do after a callback. Actions are carried out
/// in order; changes to records are persisted before any command is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create and queue the members missing to reach the asked replica count (the
    /// lowest free ordinals); does nothing when none is missing.
    StartReplicas,
    /// Ask for one replica more (the spec's replica count grows by one) and queue it.
    AddReplica,
    /// Give the master role to the member at `ordinal`; the member that held it
    /// becomes a replica (and is relaunched as one).
    PromoteMember {
        /// Member to promote.
        ordinal: u32,
    },
    /// Run the workload's [`Workload::replica_of_command`] in every running replica
    /// other than `to`, pointing it at the member at `to`.
    RepointReplicas {
        /// The member replicas must follow.
        to: u32,
    },
    /// Run `argv` in the container of the member at `ordinal` through its executor,
    /// re-sent until the executor answers, also by a scheduler that restarted before
    /// the answer (the command is recorded with the change it serves). The executor
    /// runs a command id once; a command should still be safe to run twice, since an
    /// executor that restarted has forgotten the ids it ran. Skipped (with a
    /// warning) when the member does not run.
    RunCommand {
        /// Member whose container runs it.
        ordinal: u32,
        /// Command and arguments.
        argv: Vec<String>,
    },
    /// Give up on the instance: status FAILED with `reason`; nothing is relaunched.
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

    /// The master's task ended, or its agent became unreachable, while the instance
    /// was live. `member` shows the lost task. The default relaunches it in place.
    fn master_lost(&self, _instance: &InstanceView, _member: &MemberView) -> Vec<Action> {
        Vec::new()
    }

    /// A replica's task ended, or its agent became unreachable, while the instance was
    /// live. The default relaunches it in place.
    fn replica_lost(&self, _instance: &InstanceView, _member: &MemberView) -> Vec<Action> {
        Vec::new()
    }

    /// The command that makes a running `replica` follow `master`, run by
    /// [`Action::RepointReplicas`]; `None` (the default) when replicas need no telling.
    fn replica_of_command(
        &self,
        _instance: &InstanceView,
        _replica: &MemberView,
        _master: &MemberView,
    ) -> Option<Vec<String>> {
        None
    }

    /// The command that makes a running replica take writes. When it is `Some`, a
    /// rolling update promotes a replica before restarting the master; `None` (the
    /// default) restarts the master in place.
    fn promote_command(
        &self,
        _instance: &InstanceView,
        _member: &MemberView,
    ) -> Option<Vec<String>> {
        None
    }
}

/// A workload registered under another framework name or role (the operator's
/// `--role`): `config` answers `config`, every other callback goes to `inner`.
#[derive(Debug, Clone)]
pub struct Configured<W> {
    /// The workload whose behaviour is kept.
    pub inner: W,
    /// The settings that replace the inner workload's.
    pub config: WorkloadConfig,
}

impl<W: Workload> Workload for Configured<W> {
    fn config(&self) -> WorkloadConfig {
        self.config.clone()
    }

    fn start(&self, instance: &InstanceView) -> Vec<Action> {
        self.inner.start(instance)
    }

    fn start_master(
        &self,
        instance: &InstanceView,
        member: &MemberView,
        port: u16,
    ) -> ContainerPlan {
        self.inner.start_master(instance, member, port)
    }

    fn start_replica(
        &self,
        instance: &InstanceView,
        member: &MemberView,
        port: u16,
        master: Option<&MemberView>,
    ) -> ContainerPlan {
        self.inner.start_replica(instance, member, port, master)
    }

    fn master_running(&self, instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        self.inner.master_running(instance, member)
    }

    fn replica_running(&self, instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        self.inner.replica_running(instance, member)
    }

    fn master_lost(&self, instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        self.inner.master_lost(instance, member)
    }

    fn replica_lost(&self, instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        self.inner.replica_lost(instance, member)
    }

    fn replica_of_command(
        &self,
        instance: &InstanceView,
        replica: &MemberView,
        master: &MemberView,
    ) -> Option<Vec<String>> {
        self.inner.replica_of_command(instance, replica, master)
    }

    fn promote_command(&self, instance: &InstanceView, member: &MemberView) -> Option<Vec<String>> {
        self.inner.promote_command(instance, member)
    }
}
