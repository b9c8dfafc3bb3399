//! What the actions a workload returns change: the records to write, the members
//! to queue for launch and the commands to run, computed without side effects. The
//! actors persist the records, then queue and send.

use std::collections::{BTreeMap, BTreeSet};

use mesos_stateful_store::records::{
    InstanceRecord, InstanceStatus, RecordedCommand, Role, TaskRecord,
};

use crate::domain::lifecycle;
use crate::domain::offers::LaunchJob;
use crate::domain::view::InstanceView;
use crate::workload::{Action, Workload};

/// A command to run in a running member's container.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOrder {
    /// Its id, recorded in the instance's lifecycle with the change it serves.
    pub command_id: String,
    /// Instance of the member.
    pub instance: String,
    /// Ordinal of the member.
    pub ordinal: u32,
    /// Task whose container runs it.
    pub task_id: String,
    /// Agent of that task.
    pub agent_id: String,
    /// Command and arguments.
    pub argv: Vec<String>,
}

/// The effects of a list of actions on one instance.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ActionPlan {
    /// Whether the instance record changed (status, spec).
    pub instance_changed: bool,
    /// Ordinals whose task records changed or were created.
    pub changed_tasks: BTreeSet<u32>,
    /// Members to queue for launch, after the records are durable.
    pub jobs: Vec<LaunchJob>,
    /// Commands to send, after the records are durable.
    pub commands: Vec<CommandOrder>,
    /// Members that took the master role from another.
    pub promotions: u32,
}

impl ActionPlan {
    /// The records to persist: the instance if it changed, and the changed tasks
    /// as they are in `tasks`.
    pub fn records(
        &self,
        instance: &InstanceRecord,
        tasks: &BTreeMap<u32, TaskRecord>,
    ) -> (Vec<InstanceRecord>, Vec<TaskRecord>) {
        let instances = if self.instance_changed {
            vec![instance.clone()]
        } else {
            Vec::new()
        };
        let tasks = self
            .changed_tasks
            .iter()
            .filter_map(|ordinal| tasks.get(ordinal).cloned())
            .collect();
        (instances, tasks)
    }
}

/// The launch job of a member's current incarnation.
pub fn launch_job(instance: &InstanceRecord, task: &TaskRecord) -> LaunchJob {
    LaunchJob::for_member(&instance.spec, task)
}

/// Adds waiting members at the lowest free ordinals until the instance has the
/// members its spec asks for; returns the ordinals added.
pub fn add_missing_members(
    instance: &InstanceRecord,
    tasks: &mut BTreeMap<u32, TaskRecord>,
    trace_parent: Option<&str>,
) -> Vec<u32> {
    let mut added = Vec::new();
    let mut ordinal = 0;
    while tasks.len() < lifecycle::expected_members(instance) {
        if let std::collections::btree_map::Entry::Vacant(slot) = tasks.entry(ordinal) {
            let incarnation = instance
                .lifecycle
                .retired_incarnations
                .get(&ordinal)
                .map_or(1, |last| last + 1);
            let mut task = TaskRecord::waiting(&instance.name, ordinal, Role::Replica, incarnation);
            task.trace_parent = trace_parent.map(String::from);
            slot.insert(task);
            added.push(ordinal);
        }
        ordinal += 1;
    }
    added
}

/// Applies `actions` to `instance` and `tasks` in order and says what to persist,
/// queue and send. A new instance status follows from the changed members
/// ([`lifecycle::next_status`]), except after `MarkFailed`.
pub fn plan_actions(
    instance: &mut InstanceRecord,
    tasks: &mut BTreeMap<u32, TaskRecord>,
    actions: Vec<Action>,
    workload: &dyn Workload,
    trace_parent: Option<&str>,
) -> ActionPlan {
    let mut plan = ActionPlan::default();
    let mut queued = BTreeSet::new();
    for action in actions {
        match action {
            Action::StartReplicas | Action::AddReplica => {
                if action == Action::AddReplica {
                    instance.spec.replicas += 1;
                    plan.instance_changed = true;
                }
                for ordinal in add_missing_members(instance, tasks, trace_parent) {
                    plan.changed_tasks.insert(ordinal);
                    queued.insert(ordinal);
                }
            }
            Action::PromoteMember { ordinal } => {
                if !tasks.contains_key(&ordinal) {
                    tracing::warn!(instance = %instance.name, ordinal, "cannot promote a member that does not exist");
                    continue;
                }
                if tasks.get(&ordinal).is_some_and(|t| t.role == Role::Master) {
                    continue;
                }
                for task in tasks.values_mut() {
                    let role = if task.ordinal == ordinal {
                        Role::Master
                    } else {
                        Role::Replica
                    };
                    if task.role != role {
                        task.role = role;
                        plan.changed_tasks.insert(task.ordinal);
                    }
                }
                plan.promotions += 1;
                tracing::info!(instance = %instance.name, ordinal, "member promoted to master");
            }
            Action::RepointReplicas { to } => {
                let all: Vec<TaskRecord> = tasks.values().cloned().collect();
                let view = InstanceView::new(instance, &all);
                let Some(master) = view.members.iter().find(|m| m.ordinal == to) else {
                    continue;
                };
                for replica in view.members.iter().filter(|m| m.ordinal != to) {
                    if replica.state.as_deref() != Some("TASK_RUNNING") {
                        continue;
                    }
                    if let Some(argv) = workload.replica_of_command(&view, replica, master) {
                        push_command(&mut plan, instance, tasks, replica.ordinal, argv);
                    }
                }
            }
            Action::RunCommand { ordinal, argv } => {
                push_command(&mut plan, instance, tasks, ordinal, argv);
            }
            Action::MarkFailed { reason } => {
                tracing::warn!(instance = %instance.name, %reason, "instance failed");
                instance.status = InstanceStatus::Failed;
                instance.status_message = Some(reason);
                plan.instance_changed = true;
            }
        }
    }
    if instance.status.is_live() {
        let all: Vec<TaskRecord> = tasks.values().cloned().collect();
        let next = lifecycle::next_status(instance, &all);
        if next != instance.status {
            instance.status = next;
            plan.instance_changed = true;
        }
    }
    plan.jobs = queued
        .iter()
        .filter_map(|ordinal| tasks.get(ordinal))
        .map(|task| launch_job(instance, task))
        .collect();
    plan
}

/// Orders a command and records it in the instance's lifecycle, so it is written
/// with the change it serves and sent again by a scheduler that restarts before
/// its answer. Its id is unique: the instance's version is compared and set by the
/// write that records it, so no other plan is built on the same version.
fn push_command(
    plan: &mut ActionPlan,
    instance: &mut InstanceRecord,
    tasks: &BTreeMap<u32, TaskRecord>,
    ordinal: u32,
    argv: Vec<String>,
) {
    match tasks.get(&ordinal) {
        Some(task) if lifecycle::is_running(task) && task.agent_id.is_some() => {
            let command_id = format!(
                "{}/v{}-{}",
                task.task_id,
                instance.version,
                plan.commands.len()
            );
            instance.lifecycle.commands.push(RecordedCommand {
                command_id: command_id.clone(),
                ordinal,
                task_id: task.task_id.clone(),
                argv: argv.clone(),
            });
            plan.instance_changed = true;
            plan.commands.push(CommandOrder {
                command_id,
                instance: instance.name.clone(),
                ordinal,
                task_id: task.task_id.clone(),
                agent_id: task.agent_id.clone().unwrap_or_default(),
                argv,
            });
        }
        _ => {
            tracing::warn!(instance = %instance.name, ordinal, ?argv, "command skipped: the member does not run");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::launch::ContainerPlan;
    use crate::domain::view::MemberView;
    use mesos_stateful_store::records::SCHEMA_VERSION;

    #[derive(Debug)]
    struct Follow;

    impl Workload for Follow {
        fn start_master(&self, _: &InstanceView, _: &MemberView, _: u16) -> ContainerPlan {
            ContainerPlan::default()
        }
        fn start_replica(
            &self,
            _: &InstanceView,
            _: &MemberView,
            _: u16,
            _: Option<&MemberView>,
        ) -> ContainerPlan {
            ContainerPlan::default()
        }
        fn replica_of_command(
            &self,
            _: &InstanceView,
            _: &MemberView,
            master: &MemberView,
        ) -> Option<Vec<String>> {
            Some(vec!["follow".into(), master.name.clone()])
        }
    }

    fn instance(status: InstanceStatus, replicas: u32) -> InstanceRecord {
        let json = serde_json::json!({
            "schema": SCHEMA_VERSION, "name": "c", "status": status, "version": 1,
            "created_at_ms": 0,
            "spec": {"image": "i", "replicas": replicas, "master_args": [], "replica_args": [],
                     "resources": {"cpus": 1.0, "mem": 1.0, "disk": 1.0}},
        });
        // Built from JSON so spec fields added later with serde defaults need no change.
        serde_json::from_value(json).unwrap()
    }

    fn member(ordinal: u32, role: Role, state: Option<&str>) -> (u32, TaskRecord) {
        let mut task = TaskRecord::waiting("c", ordinal, role, 1);
        task.state = state.map(String::from);
        if state.is_some() {
            task.agent_id = Some(format!("a{ordinal}"));
        }
        (ordinal, task)
    }

    #[test]
    fn promotion_repoints_running_replicas_and_skips_the_rest() {
        let mut instance = instance(InstanceStatus::Recovering, 2);
        let mut tasks = BTreeMap::from([
            member(0, Role::Master, Some("TASK_FAILED")),
            member(1, Role::Replica, Some("TASK_RUNNING")),
            member(2, Role::Replica, Some("TASK_RUNNING")),
        ]);
        let plan = plan_actions(
            &mut instance,
            &mut tasks,
            vec![
                Action::PromoteMember { ordinal: 1 },
                Action::RunCommand {
                    ordinal: 1,
                    argv: vec!["promote".into()],
                },
                Action::RepointReplicas { to: 1 },
                Action::RunCommand {
                    ordinal: 0,
                    argv: vec!["not running".into()],
                },
            ],
            &Follow,
            None,
        );
        assert_eq!(tasks[&1].role, Role::Master);
        assert_eq!(tasks[&0].role, Role::Replica);
        assert_eq!(plan.changed_tasks, BTreeSet::from([0, 1]));
        assert_eq!(plan.promotions, 1);
        let sent: Vec<(u32, Vec<String>)> = plan
            .commands
            .iter()
            .map(|c| (c.ordinal, c.argv.clone()))
            .collect();
        assert_eq!(
            sent,
            [
                (1, vec!["promote".to_string()]),
                (2, vec!["follow".to_string(), "c-1".to_string()])
            ]
        );
        assert_eq!(plan.commands[0].agent_id, "a1");
        assert_eq!(instance.status, InstanceStatus::Degraded);
        assert!(plan.instance_changed && plan.jobs.is_empty());
        // Both commands are recorded in the instance, under the ids they are sent
        // with, and each id names the task and the version the plan was built on.
        let recorded: Vec<(String, u32, String, Vec<String>)> = instance
            .lifecycle
            .commands
            .iter()
            .map(|c| {
                (
                    c.command_id.clone(),
                    c.ordinal,
                    c.task_id.clone(),
                    c.argv.clone(),
                )
            })
            .collect();
        assert_eq!(
            recorded,
            [
                (
                    "c-1.1/v1-0".to_string(),
                    1,
                    "c-1.1".to_string(),
                    vec!["promote".to_string()]
                ),
                (
                    "c-2.1/v1-1".to_string(),
                    2,
                    "c-2.1".to_string(),
                    vec!["follow".to_string(), "c-1".to_string()]
                ),
            ]
        );
        let ids: Vec<&str> = plan
            .commands
            .iter()
            .map(|c| c.command_id.as_str())
            .collect();
        assert_eq!(ids, ["c-1.1/v1-0", "c-2.1/v1-1"]);
    }

    #[test]
    fn a_plan_without_commands_records_none() {
        let mut instance = instance(InstanceStatus::Running, 1);
        let mut tasks = BTreeMap::from([
            member(0, Role::Master, Some("TASK_RUNNING")),
            member(1, Role::Replica, Some("TASK_RUNNING")),
        ]);
        let plan = plan_actions(
            &mut instance,
            &mut tasks,
            vec![Action::RunCommand {
                ordinal: 3,
                argv: vec!["nobody".into()],
            }],
            &Follow,
            None,
        );
        assert!(plan.commands.is_empty());
        assert!(instance.lifecycle.commands.is_empty());
        assert!(!plan.instance_changed);
    }

    #[test]
    fn replicas_fill_free_ordinals_without_reusing_task_ids() {
        let mut instance = instance(InstanceStatus::Running, 1);
        instance.lifecycle.retired_incarnations.insert(2, 3);
        let mut tasks = BTreeMap::from([member(0, Role::Master, Some("TASK_RUNNING"))]);
        let plan = plan_actions(
            &mut instance,
            &mut tasks,
            vec![
                Action::StartReplicas,
                Action::AddReplica,
                Action::StartReplicas,
            ],
            &Follow,
            Some("00-t-s-01"),
        );
        assert_eq!(instance.spec.replicas, 2);
        let ids: Vec<&str> = plan.jobs.iter().map(|j| j.task_id.as_str()).collect();
        assert_eq!(ids, ["c-1.1", "c-2.4"]);
        assert!(plan.jobs.iter().all(|j| j.role == Role::Replica));
        assert_eq!(tasks[&2].trace_parent.as_deref(), Some("00-t-s-01"));
        assert_eq!(instance.status, InstanceStatus::Degraded);
    }

    #[test]
    fn a_failed_instance_stays_failed() {
        let mut instance = instance(InstanceStatus::Running, 0);
        let mut tasks = BTreeMap::from([member(0, Role::Master, Some("TASK_FAILED"))]);
        let plan = plan_actions(
            &mut instance,
            &mut tasks,
            vec![Action::MarkFailed {
                reason: "gave up".into(),
            }],
            &Follow,
            None,
        );
        assert!(plan.instance_changed);
        assert_eq!(instance.status, InstanceStatus::Failed);
        assert_eq!(instance.status_message.as_deref(), Some("gave up"));
    }
}
