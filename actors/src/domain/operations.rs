//! Operations on live instances as plain decisions: scaling, restarting and
//! replacing one member. The Maintainer persists and carries them out.

use std::collections::BTreeMap;

use mesos_stateful_store::records::{InstanceRecord, Resources, Role, Rollout, TaskRecord};

use crate::domain::lifecycle;
use crate::domain::request::{CreateInstanceRequest, ResourcesRequest};

/// Why an operation was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OperationError {
    /// No instance has that name.
    #[error("instance {0} not found")]
    NotFound(String),
    /// `if_match` named another version of the instance.
    #[error("instance version is {current}, not the one asked for")]
    VersionMismatch {
        /// The instance's version now.
        current: u64,
    },
    /// The instance's state does not allow it (deleting, failed…).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Another writer changed the instance between the operation's read and its
    /// write; nothing of it was written, and it may run again on a fresh read.
    #[error("conflict: {0}")]
    Moved(String),
    /// The request is invalid.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The store or an actor failed; the change may not have been made.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The launch queue is full (or Mesos is away): nothing changed, retry later.
    #[error(
        "the launch queue is full ({queued} of {limit} jobs); retry in {retry_after_seconds} s"
    )]
    QueueFull {
        /// Jobs queued.
        queued: usize,
        /// The queue's bound.
        limit: usize,
        /// Seconds the client should wait before retrying.
        retry_after_seconds: u64,
        /// Whether a Mesos subscription is open (the queue drains) or not.
        subscribed: bool,
    },
}

impl OperationError {
    /// The error the API answers for it, as a create would.
    pub fn as_actor_error(&self) -> Option<crate::ActorError> {
        match *self {
            Self::QueueFull {
                queued,
                limit,
                retry_after_seconds,
                subscribed,
            } => Some(crate::ActorError::QueueFull {
                queued,
                limit,
                retry_after_seconds,
                subscribed,
            }),
            _ => None,
        }
    }
}

impl OperationError {
    /// Stable machine-readable code, as the REST API's other errors have.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::VersionMismatch { .. } => "version_mismatch",
            Self::Conflict(_) | Self::Moved(_) => "conflict",
            Self::Invalid(_) => "invalid",
            Self::Unavailable(_) => "unavailable",
            Self::QueueFull {
                subscribed: true, ..
            } => "rate_limited",
            Self::QueueFull {
                subscribed: false, ..
            } => "not_ready",
        }
    }
}

/// Largest replica count an instance may be scaled to.
pub const MAX_REPLICAS: u32 = 64;

/// Checks that `instance` accepts an operation and is at `if_match`, when given.
pub fn check_operable(
    instance: &InstanceRecord,
    if_match: Option<u64>,
) -> Result<(), OperationError> {
    if let Some(expected) = if_match {
        if expected != instance.version {
            return Err(OperationError::VersionMismatch {
                current: instance.version,
            });
        }
    }
    if !instance.status.can_operate() {
        return Err(OperationError::Conflict(format!(
            "instance {} is {}",
            instance.name,
            instance.status.as_str()
        )));
    }
    Ok(())
}

/// What scaling changes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScalePlan {
    /// Members to remove (their tasks killed, their records deleted).
    pub removed: Vec<TaskRecord>,
    /// Whether new members may be added now (the master runs); otherwise
    /// `StartReplicas` adds them once it does.
    pub add_now: bool,
}

/// Sets the replica count of `instance` to `replicas`. Scaling down removes the
/// surplus replicas, those not running first, then the highest ordinals; the master
/// is never removed. Retired incarnations are noted so re-added ordinals get fresh
/// task ids.
pub fn plan_scale(
    instance: &mut InstanceRecord,
    tasks: &BTreeMap<u32, TaskRecord>,
    replicas: u32,
) -> Result<ScalePlan, OperationError> {
    if replicas > MAX_REPLICAS {
        return Err(OperationError::Invalid(format!(
            "replicas {replicas} is more than {MAX_REPLICAS}"
        )));
    }
    instance.spec.replicas = replicas;
    let expected = lifecycle::expected_members(instance);
    let mut removed = Vec::new();
    if tasks.len() > expected {
        let mut candidates: Vec<&TaskRecord> =
            tasks.values().filter(|t| t.role == Role::Replica).collect();
        candidates.sort_by_key(|t| (lifecycle::is_running(t), std::cmp::Reverse(t.ordinal)));
        for task in candidates.into_iter().take(tasks.len() - expected) {
            instance
                .lifecycle
                .retired_incarnations
                .insert(task.ordinal, task.incarnation);
            removed.push(task.clone());
        }
    }
    let add_now = tasks
        .values()
        .any(|t| t.role == Role::Master && lifecycle::is_running(t));
    Ok(ScalePlan { removed, add_now })
}

/// The next incarnation of a member restarted by an operator: same role, agent
/// binding and volume (`in_place`), or a fresh volume anywhere (`!in_place`). The
/// failure count starts over.
pub fn restarted(task: &TaskRecord, in_place: bool) -> TaskRecord {
    let mut next = task.next_incarnation();
    next.failures = 0;
    if !in_place {
        next.volume = None;
    }
    next.message = Some(if in_place {
        "restarting".to_string()
    } else {
        "replacing on another agent".to_string()
    });
    next
}

/// Changes to an instance's spec; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecUpdate {
    /// Docker image of every member.
    pub image: Option<String>,
    /// Args of the master container.
    pub master_args: Option<Vec<String>>,
    /// Args of replica containers.
    pub replica_args: Option<Vec<String>>,
    /// Environment of every member.
    pub env: Option<BTreeMap<String, String>>,
    /// Resources of each member.
    pub resources: Option<Resources>,
}

/// Applies `update` to the spec of `instance` and starts a rolling restart of
/// `tasks` (replicas first, then the master). Returns false, changing nothing, when
/// the spec stays the same.
pub fn plan_update(
    instance: &mut InstanceRecord,
    tasks: &BTreeMap<u32, TaskRecord>,
    update: SpecUpdate,
) -> Result<bool, OperationError> {
    if instance.lifecycle.rollout.is_some() {
        return Err(OperationError::Conflict(format!(
            "a rolling update of instance {} is under way",
            instance.name
        )));
    }
    let mut spec = instance.spec.clone();
    spec.image = update.image.unwrap_or(spec.image);
    spec.master_args = update.master_args.unwrap_or(spec.master_args);
    spec.replica_args = update.replica_args.unwrap_or(spec.replica_args);
    spec.env = update.env.unwrap_or(spec.env);
    spec.resources = update.resources.unwrap_or(spec.resources);
    // The same checks as a create, on the fields an update may change.
    CreateInstanceRequest {
        name: instance.name.clone(),
        image: spec.image.clone(),
        replicas: spec.replicas,
        resources: ResourcesRequest {
            cpus: spec.resources.cpus,
            mem: spec.resources.mem,
            disk: spec.resources.disk,
        },
        master_args: spec.master_args.clone(),
        replica_args: Some(spec.replica_args.clone()),
        env: spec.env.clone(),
        volume: None,
        placement: None,
        privileged: spec.privileged,
    }
    .validate()
    .map_err(|e| OperationError::Invalid(e.to_string()))?;
    if spec == instance.spec {
        return Ok(false);
    }
    instance.spec = spec;
    let mut order: Vec<&TaskRecord> = tasks.values().collect();
    order.sort_by_key(|t| (t.role == Role::Master, t.ordinal));
    instance.lifecycle.rollout = Some(Rollout {
        pending: order.iter().map(|t| t.ordinal).collect(),
        waiting_for: None,
    });
    Ok(true)
}

/// What a rolling restart does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutStep {
    /// The member restarted last is not healthy yet.
    Wait,
    /// Every member was restarted: the rollout ends.
    Done,
    /// Restart this member in place with the updated spec.
    Restart(u32),
    /// Promote the replica `to`, then restart the member `master` (a replica by then).
    PromoteThenRestart {
        /// The master being restarted.
        master: u32,
        /// The replica taking its role.
        to: u32,
    },
}

/// The next step of `rollout` given the members now. Members that no longer exist
/// are skipped. A master is restarted after a promotion when `can_promote` and a
/// healthy replica exists (the lowest ordinal), else in place.
pub fn next_rollout_step(
    rollout: &mut Rollout,
    tasks: &BTreeMap<u32, TaskRecord>,
    can_promote: bool,
) -> RolloutStep {
    if let Some(ordinal) = rollout.waiting_for {
        if tasks
            .get(&ordinal)
            .is_some_and(|t| !lifecycle::is_healthy(t))
        {
            return RolloutStep::Wait;
        }
        rollout.waiting_for = None;
    }
    while let Some(&head) = rollout.pending.first() {
        let Some(task) = tasks.get(&head) else {
            rollout.pending.remove(0);
            continue;
        };
        if task.role == Role::Master && can_promote {
            let candidate = tasks
                .values()
                .find(|t| t.role == Role::Replica && lifecycle::is_healthy(t));
            if let Some(candidate) = candidate {
                return RolloutStep::PromoteThenRestart {
                    master: head,
                    to: candidate.ordinal,
                };
            }
        }
        return RolloutStep::Restart(head);
    }
    RolloutStep::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_store::records::{InstanceStatus, SCHEMA_VERSION};

    fn instance(status: InstanceStatus, replicas: u32) -> InstanceRecord {
        serde_json::from_value(serde_json::json!({
            "schema": SCHEMA_VERSION, "name": "c", "status": status, "version": 4,
            "created_at_ms": 0,
            "spec": {"image": "i", "replicas": replicas, "master_args": [], "replica_args": [],
                     "resources": {"cpus": 1.0, "mem": 64.0, "disk": 10.0}},
        }))
        .unwrap()
    }

    fn tasks(states: &[(Role, &str)]) -> BTreeMap<u32, TaskRecord> {
        states
            .iter()
            .enumerate()
            .map(|(ordinal, (role, state))| {
                let mut task = TaskRecord::waiting("c", ordinal as u32, *role, 2);
                task.state = Some(state.to_string());
                (ordinal as u32, task)
            })
            .collect()
    }

    #[test]
    fn operations_need_a_live_instance_at_the_asked_version() {
        let live = instance(InstanceStatus::Degraded, 1);
        assert_eq!(check_operable(&live, None), Ok(()));
        assert_eq!(check_operable(&live, Some(4)), Ok(()));
        assert_eq!(
            check_operable(&live, Some(3)),
            Err(OperationError::VersionMismatch { current: 4 })
        );
        for status in [
            InstanceStatus::Deleting,
            InstanceStatus::Deleted,
            InstanceStatus::Failed,
        ] {
            assert!(matches!(
                check_operable(&instance(status, 1), None),
                Err(OperationError::Conflict(_))
            ));
        }
    }

    #[test]
    fn scaling_down_removes_idle_replicas_first_and_never_the_master() {
        let mut record = instance(InstanceStatus::Running, 3);
        // Ordinal 0 was promoted away: ordinal 1 is the master now.
        let members = tasks(&[
            (Role::Replica, "TASK_RUNNING"),
            (Role::Master, "TASK_RUNNING"),
            (Role::Replica, "TASK_FAILED"),
            (Role::Replica, "TASK_RUNNING"),
        ]);
        let plan = plan_scale(&mut record, &members, 1).unwrap();
        let removed: Vec<u32> = plan.removed.iter().map(|t| t.ordinal).collect();
        assert_eq!(removed, [2, 3]);
        assert_eq!(record.spec.replicas, 1);
        assert_eq!(
            record.lifecycle.retired_incarnations,
            BTreeMap::from([(2, 2), (3, 2)])
        );
        assert!(plan.add_now);

        let plan = plan_scale(&mut record, &members, 0).unwrap();
        let removed: Vec<u32> = plan.removed.iter().map(|t| t.ordinal).collect();
        assert_eq!(removed, [2, 3, 0]);
    }

    #[test]
    fn scaling_up_waits_for_the_master() {
        let mut record = instance(InstanceStatus::Creating, 0);
        let members = tasks(&[(Role::Master, "TASK_STAGING")]);
        let plan = plan_scale(&mut record, &members, 2).unwrap();
        assert!(plan.removed.is_empty() && !plan.add_now);
        assert_eq!(record.spec.replicas, 2);
        assert!(matches!(
            plan_scale(&mut record, &members, MAX_REPLICAS + 1),
            Err(OperationError::Invalid(_))
        ));
    }

    #[test]
    fn updates_validate_and_order_replicas_before_the_master() {
        let mut record = instance(InstanceStatus::Running, 2);
        let members = tasks(&[
            (Role::Master, "TASK_RUNNING"),
            (Role::Replica, "TASK_RUNNING"),
            (Role::Replica, "TASK_RUNNING"),
        ]);
        assert_eq!(
            plan_update(&mut record, &members, SpecUpdate::default()),
            Ok(false)
        );
        assert!(record.lifecycle.rollout.is_none());
        let bad = SpecUpdate {
            image: Some(String::new()),
            ..SpecUpdate::default()
        };
        assert!(matches!(
            plan_update(&mut record, &members, bad),
            Err(OperationError::Invalid(_))
        ));
        let update = SpecUpdate {
            image: Some("redis:8".into()),
            ..SpecUpdate::default()
        };
        assert_eq!(plan_update(&mut record, &members, update.clone()), Ok(true));
        assert_eq!(record.spec.image, "redis:8");
        assert_eq!(
            record.lifecycle.rollout,
            Some(Rollout {
                pending: vec![1, 2, 0],
                waiting_for: None
            })
        );
        assert!(matches!(
            plan_update(&mut record, &members, update),
            Err(OperationError::Conflict(_))
        ));
    }

    #[test]
    fn rollouts_restart_one_member_at_a_time_and_promote_before_the_master() {
        let mut members = tasks(&[
            (Role::Master, "TASK_RUNNING"),
            (Role::Replica, "TASK_RUNNING"),
            (Role::Replica, "TASK_RUNNING"),
        ]);
        let mut rollout = Rollout {
            pending: vec![1, 2, 0],
            waiting_for: None,
        };
        assert_eq!(
            next_rollout_step(&mut rollout, &members, true),
            RolloutStep::Restart(1)
        );
        // The carrying out pops the head and waits for it.
        rollout.pending.remove(0);
        rollout.waiting_for = Some(1);
        members.get_mut(&1).unwrap().state = None;
        assert_eq!(
            next_rollout_step(&mut rollout, &members, true),
            RolloutStep::Wait
        );
        members.get_mut(&1).unwrap().state = Some("TASK_RUNNING".into());
        assert_eq!(
            next_rollout_step(&mut rollout, &members, true),
            RolloutStep::Restart(2)
        );
        rollout.pending.remove(0);
        assert_eq!(
            next_rollout_step(&mut rollout, &members, true),
            RolloutStep::PromoteThenRestart { master: 0, to: 1 }
        );
        assert_eq!(
            next_rollout_step(&mut rollout, &members, false),
            RolloutStep::Restart(0)
        );
        rollout.pending.remove(0);
        assert_eq!(
            next_rollout_step(&mut rollout, &members, true),
            RolloutStep::Done
        );

        // A member removed meanwhile is skipped.
        let mut rollout = Rollout {
            pending: vec![7, 0],
            waiting_for: Some(7),
        };
        assert_eq!(
            next_rollout_step(&mut rollout, &members, false),
            RolloutStep::Restart(0)
        );
    }

    #[test]
    fn restarts_keep_the_volume_and_replacements_drop_it() {
        let mut task = TaskRecord::waiting("c", 1, Role::Replica, 3);
        task.failures = 4;
        task.state = Some("TASK_RUNNING".into());
        let next = restarted(&task, true);
        assert_eq!((next.task_id.as_str(), next.failures), ("c-1.4", 0));
        assert_eq!(next.state, None);
        let replaced = restarted(&task, false);
        assert_eq!(replaced.volume, None);
        assert_eq!(replaced.role, Role::Replica);
    }
}
