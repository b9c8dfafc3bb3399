//! Instance lifecycle rules.
//!
//! How instances and members come and go:
//! - created: `POST /v1/instances` → Creator persists the instance (CREATING) and its
//!   master's task record, then queues the master's launch;
//! - replicas: once the master is RUNNING, the workload's `master_running` asks for
//!   them and the Maintainer persists and queues them;
//! - running: when every member's task is TASK_RUNNING the instance is RUNNING;
//! - failed: a member's task ending while the instance is CREATING or RUNNING calls
//!   `master_lost` / `replica_lost`, whose actions decide (the generic workload marks
//!   the instance FAILED);
//! - deleted: `DELETE` → Destroyer marks it DELETING and kills every live task; when
//!   all are terminal the instance is DELETED. Records are kept for inspection.

use mesos_stateful_proto::v1::TaskState;
use mesos_stateful_store::records::{InstanceRecord, InstanceStatus, TaskRecord};

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

/// Whether a member's task is running.
pub fn is_running(task: &TaskRecord) -> bool {
    task.state.as_deref() == Some(TaskState::TaskRunning.as_str_name())
}

/// Number of members an instance should have.
pub fn expected_members(instance: &InstanceRecord) -> usize {
    1 + instance.spec.replicas as usize
}

/// The status an instance moves to after its members changed, ignoring failures
/// (which the workload decides on).
pub fn next_status(instance: &InstanceRecord, tasks: &[TaskRecord]) -> InstanceStatus {
    match instance.status {
        InstanceStatus::Deleting
            if tasks
                .iter()
                .all(|t| is_terminal(t.state.as_deref()) || t.state.is_none()) =>
        {
            InstanceStatus::Deleted
        }
        InstanceStatus::Creating
            if tasks.len() == expected_members(instance) && tasks.iter().all(is_running) =>
        {
            InstanceStatus::Running
        }
        status => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_store::records::{InstanceSpec, Resources, Role, SCHEMA_VERSION};

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
            },
            status,
            status_message: None,
            version: 1,
            created_at_ms: 0,
        }
    }

    fn task(ordinal: u32, state: Option<&str>) -> TaskRecord {
        TaskRecord {
            schema: SCHEMA_VERSION,
            instance: "c".into(),
            ordinal,
            role: if ordinal == 0 {
                Role::Master
            } else {
                Role::Replica
            },
            incarnation: 1,
            task_id: format!("c-{ordinal}.1"),
            agent_id: None,
            hostname: None,
            port: None,
            state: state.map(String::from),
            message: None,
            healthy: None,
            trace_parent: None,
            version: 1,
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
        check(Running, 1, &[task(0, killed), task(1, running)], Running);
        check(Failed, 0, &[task(0, running)], Failed);
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
