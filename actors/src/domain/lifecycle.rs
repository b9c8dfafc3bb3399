//! Instance lifecycle rules.
//!
//! How instances and members come and go:
//! - created: `POST /v1/instances` → Creator persists the instance (CREATING) and its
//!   master's task record, then queues the master's launch;
//! - replicas: once the master is RUNNING, the workload's `master_running` asks for
//!   them (`StartReplicas`) and the Maintainer persists and queues them; scaling up
//!   adds members the same way (`AddReplica`);
//! - running: when every asked member is healthy the instance is RUNNING; a replica
//!   missing makes it DEGRADED, the master missing RECOVERING (see
//!   [`InstanceStatus`] for the whole table);
//! - lost: a member's task ending (or its agent becoming unreachable) while the
//!   instance is live calls `master_lost` / `replica_lost`, whose actions run first
//!   (promotion, re-pointing, or `MarkFailed`); unless the instance failed, the
//!   member is then relaunched as a new incarnation after a backoff (see
//!   [`super::recovery`]), in place, or elsewhere once its agent stayed gone past the
//!   replace timeout;
//! - restarted or replaced by an operation: the member's task is killed and a new
//!   incarnation queued;
//! - removed: scaling down kills the surplus replicas and deletes their records;
//! - deleted: `DELETE` → Destroyer marks it DELETING and kills every live task; when
//!   all are terminal the instance is DELETED. Records are kept for inspection.

use mesos_stateful_proto::v1::TaskState;
use mesos_stateful_store::records::{InstanceRecord, InstanceStatus, Role, TaskRecord};

/// Mesos's name for a task state (`TASK_RUNNING`).
pub fn state_name(state: TaskState) -> &'static str {
    state.as_str_name()
}

/// Whether a stored state name is terminal. `None` (never launched) is not.
pub fn is_terminal(state: Option<&str>) -> bool {
    state
        .and_then(TaskState::from_str_name)
        .is_some_and(TaskState::is_terminal)
}

/// Whether a task in `state` is lost to us: terminal, on an unreachable agent, or
/// unknown to the master (a launch that never reached it).
pub fn is_gone(state: TaskState) -> bool {
    state.is_terminal() || matches!(state, TaskState::TaskUnreachable | TaskState::TaskUnknown)
}

/// [`is_gone`] for a stored state name; `None` (never launched) is not gone.
pub fn is_gone_name(state: Option<&str>) -> bool {
    state
        .and_then(TaskState::from_str_name)
        .is_some_and(is_gone)
}

/// Whether a member's task is running.
pub fn is_running(task: &TaskRecord) -> bool {
    task.state.as_deref() == Some(TaskState::TaskRunning.as_str_name())
}

/// Whether a member counts as healthy: running, and its latest health check, if
/// any, passed.
pub fn is_healthy(task: &TaskRecord) -> bool {
    is_running(task) && task.healthy != Some(false)
}

/// Number of members an instance should have.
pub fn expected_members(instance: &InstanceRecord) -> usize {
    1 + instance.spec.replicas as usize
}

/// The status an instance moves to after its members changed, ignoring failures
/// (which the workload decides on). Implements the table of [`InstanceStatus`].
pub fn next_status(instance: &InstanceRecord, tasks: &[TaskRecord]) -> InstanceStatus {
    let all_healthy = || {
        tasks.iter().filter(|t| is_healthy(t)).count() >= expected_members(instance)
            && tasks.iter().all(is_healthy)
    };
    match instance.status {
        InstanceStatus::Deleting
            if tasks
                .iter()
                .all(|t| is_terminal(t.state.as_deref()) || t.state.is_none()) =>
        {
            InstanceStatus::Deleted
        }
        InstanceStatus::Creating if all_healthy() => InstanceStatus::Running,
        InstanceStatus::Running | InstanceStatus::Degraded | InstanceStatus::Recovering => {
            let master_healthy = tasks
                .iter()
                .any(|t| t.role == Role::Master && is_healthy(t));
            if !master_healthy {
                InstanceStatus::Recovering
            } else if all_healthy() {
                InstanceStatus::Running
            } else {
                InstanceStatus::Degraded
            }
        }
        status => status,
    }
}

/// A workload callback fired by a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// `master_running`.
    MasterRunning,
    /// `replica_running`.
    ReplicaRunning,
    /// `master_lost`.
    MasterLost,
    /// `replica_lost`.
    ReplicaLost,
}

/// The callback an update from `previous` to `next` fires for a member in `role`:
/// `*_running` when the task reaches TASK_RUNNING from any other state (first start,
/// relaunch, or return from an unreachable agent), `*_lost` when a task that was not
/// already gone becomes gone. Repeated states (reconciliation, health updates) fire
/// nothing.
pub fn callback(role: Role, previous: Option<&str>, next: TaskState) -> Option<Callback> {
    let was_running = previous == Some(TaskState::TaskRunning.as_str_name());
    if next == TaskState::TaskRunning && !was_running {
        return Some(match role {
            Role::Master => Callback::MasterRunning,
            Role::Replica => Callback::ReplicaRunning,
        });
    }
    if is_gone(next) && !is_gone_name(previous) {
        return Some(match role {
            Role::Master => Callback::MasterLost,
            Role::Replica => Callback::ReplicaLost,
        });
    }
    None
}

/// Records `next` in a member's record at `now_ms`: the state, the running and
/// ended times, and the failure count that drives the relaunch backoff. A task that
/// ran at least `reset_after_ms` before ending counts as a first failure again.
pub fn record_state(task: &mut TaskRecord, next: TaskState, now_ms: u64, reset_after_ms: u64) {
    let previous = task.state.clone();
    task.state = Some(state_name(next).to_string());
    if next == TaskState::TaskRunning {
        if previous.as_deref() != Some(TaskState::TaskRunning.as_str_name()) {
            task.running_since_ms = Some(now_ms);
        }
        task.ended_at_ms = None;
    } else if is_gone(next) && !is_gone_name(previous.as_deref()) {
        let ran_long = task
            .running_since_ms
            .is_some_and(|since| now_ms.saturating_sub(since) >= reset_after_ms);
        task.failures = if ran_long { 1 } else { task.failures + 1 };
        task.ended_at_ms = Some(now_ms);
        task.running_since_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_store::records::{InstanceSpec, Resources, SCHEMA_VERSION};

    fn instance(status: InstanceStatus, replicas: u32) -> InstanceRecord {
        InstanceRecord {
            schema: SCHEMA_VERSION,
            name: "c".into(),
            spec: InstanceSpec {
                image: "i".into(),
                replicas,
                resources: Resources {
                    cpus: 1.0,
                    mem: 1.0,
                    disk: 1.0,
                },
                master_args: vec![],
                replica_args: vec![],
                env: Default::default(),
                volume: None,
                placement: Default::default(),
                privileged: false,
            },
            status,
            status_message: None,
            version: 1,
            created_at_ms: 0,
            lifecycle: Default::default(),
        }
    }

    fn task(ordinal: u32, state: Option<&str>) -> TaskRecord {
        let role = if ordinal == 0 {
            Role::Master
        } else {
            Role::Replica
        };
        let mut task = TaskRecord::waiting("c", ordinal, role, 1);
        task.state = state.map(String::from);
        task.message = None;
        task
    }

    fn master_at(task: TaskRecord, master: bool) -> TaskRecord {
        TaskRecord {
            role: if master { Role::Master } else { Role::Replica },
            ..task
        }
    }

    #[test]
    fn status_transitions() {
        use InstanceStatus::*;
        let check = |status, replicas, tasks: &[TaskRecord], expected| {
            assert_eq!(next_status(&instance(status, replicas), tasks), expected);
        };
        let running = Some("TASK_RUNNING");
        let killed = Some("TASK_KILLED");
        check(Creating, 1, &[task(0, running)], Creating);
        check(
            Creating,
            1,
            &[task(0, running), task(1, Some("TASK_STARTING"))],
            Creating,
        );
        check(Creating, 1, &[task(0, running), task(1, running)], Running);
        check(Creating, 0, &[task(0, running)], Running);
        check(Deleting, 1, &[task(0, killed), task(1, running)], Deleting);
        check(
            Deleting,
            1,
            &[task(0, killed), task(1, Some("TASK_FAILED"))],
            Deleted,
        );
        check(Deleting, 1, &[task(0, killed), task(1, None)], Deleted);
        check(Running, 1, &[task(0, killed), task(1, running)], Recovering);
        check(Running, 1, &[task(0, running), task(1, killed)], Degraded);
        check(Running, 1, &[task(0, running), task(1, None)], Degraded);
        check(Degraded, 1, &[task(0, running), task(1, running)], Running);
        check(
            Degraded,
            1,
            &[task(0, Some("TASK_LOST")), task(1, None)],
            Recovering,
        );
        check(
            Recovering,
            1,
            &[task(0, killed), task(1, running)],
            Recovering,
        );
        // A promoted replica is the master: the instance is only degraded.
        check(
            Recovering,
            1,
            &[
                master_at(task(0, killed), false),
                master_at(task(1, running), true),
            ],
            Degraded,
        );
        check(
            Recovering,
            1,
            &[
                master_at(task(0, running), false),
                master_at(task(1, running), true),
            ],
            Running,
        );
        // Scaled up: the new replica is not there yet.
        check(Running, 2, &[task(0, running), task(1, running)], Degraded);
        // A failing health check counts as missing.
        let mut sick = task(1, running);
        sick.healthy = Some(false);
        check(Running, 1, &[task(0, running), sick.clone()], Degraded);
        check(Creating, 1, &[task(0, running), sick], Creating);
        check(Failed, 0, &[task(0, running)], Failed);
        check(Failed, 0, &[task(0, killed)], Failed);
    }

    #[test]
    fn callbacks_fire_on_the_right_transitions() {
        use Callback::*;
        use TaskState::*;
        let check = |role, previous: Option<TaskState>, next, expected: Option<Callback>| {
            assert_eq!(
                callback(role, previous.map(state_name), next),
                expected,
                "{role:?} {previous:?} -> {next:?}"
            );
        };
        let (m, r) = (Role::Master, Role::Replica);
        check(m, Some(TaskStaging), TaskStarting, None);
        check(m, Some(TaskStarting), TaskRunning, Some(MasterRunning));
        check(r, Some(TaskStaging), TaskRunning, Some(ReplicaRunning));
        check(m, Some(TaskRunning), TaskRunning, None);
        check(m, Some(TaskRunning), TaskFailed, Some(MasterLost));
        check(r, Some(TaskRunning), TaskKilled, Some(ReplicaLost));
        check(r, Some(TaskStaging), TaskFailed, Some(ReplicaLost));
        check(m, Some(TaskRunning), TaskUnreachable, Some(MasterLost));
        check(m, Some(TaskStaging), TaskUnknown, Some(MasterLost));
        check(m, Some(TaskUnreachable), TaskGone, None);
        check(m, Some(TaskFailed), TaskFailed, None);
        check(r, Some(TaskUnreachable), TaskRunning, Some(ReplicaRunning));
        check(r, None, TaskRunning, Some(ReplicaRunning));
        check(r, Some(TaskRunning), TaskKilling, None);
    }

    #[test]
    fn recorded_states_drive_the_failure_count() {
        let mut t = task(0, Some("TASK_STAGING"));
        record_state(&mut t, TaskState::TaskRunning, 1_000, 60_000);
        assert_eq!(t.running_since_ms, Some(1_000));
        record_state(&mut t, TaskState::TaskRunning, 2_000, 60_000);
        assert_eq!(t.running_since_ms, Some(1_000), "a repeated state keeps it");
        record_state(&mut t, TaskState::TaskFailed, 3_000, 60_000);
        assert_eq!((t.failures, t.ended_at_ms), (1, Some(3_000)));
        record_state(&mut t, TaskState::TaskFailed, 4_000, 60_000);
        assert_eq!(
            (t.failures, t.ended_at_ms),
            (1, Some(3_000)),
            "counted once"
        );
        let mut next = t.next_incarnation();
        record_state(&mut next, TaskState::TaskFailed, 5_000, 60_000);
        assert_eq!(next.failures, 2, "a crash loop grows the count");
        let mut long = next.next_incarnation();
        record_state(&mut long, TaskState::TaskRunning, 10_000, 60_000);
        record_state(&mut long, TaskState::TaskFailed, 80_000, 60_000);
        assert_eq!(long.failures, 1, "a long run starts over");
    }

    #[test]
    fn terminal_states() {
        assert!(is_terminal(Some("TASK_FINISHED")));
        assert!(is_terminal(Some("TASK_LOST")));
        assert!(!is_terminal(Some("TASK_RUNNING")));
        assert!(!is_terminal(Some("TASK_STAGING")));
        assert!(!is_terminal(None));
        assert!(!is_terminal(Some("NOT_A_STATE")));
    }
}
