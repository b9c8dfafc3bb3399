//! The record of launched tasks and of status updates the agent has not acknowledged.
//!
//! Mesos requires an executor to keep every update until the agent's ACKNOWLEDGED
//! event names its uuid, to resend them in the next SUBSCRIBE, and to list the tasks
//! it was given but for which no update was acknowledged yet. This module is that
//! bookkeeping, synchronous and free of I/O; the event loop owns one tracker.
//!
//! Lifecycle of an update: [`UpdateTracker::push`] creates it `Queued`;
//! [`UpdateTracker::take_sendable`] hands it out `InFlight`; the UPDATE call's answer
//! makes it `Delivered` (202) or `Queued` again (failure, to be retried); a successful
//! re-subscription that carried it makes it `Delivered`; the ACKNOWLEDGED event
//! removes it, and so does [`UpdateTracker::discard`] when the agent refuses it for
//! good. Updates of one task go out one at a time, in order, like the agent's own
//! per-task update stream.

use std::collections::HashMap;

use bytes::Bytes;
use mesos_stateful_proto::v1::executor::call;
use mesos_stateful_proto::v1::{TaskId, TaskInfo, TaskState, TaskStatus};

/// Where an unacknowledged update stands on its way to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Not sent yet, or its last sending failed: to be sent.
    Queued,
    /// An UPDATE call carrying it is under way.
    InFlight,
    /// The agent took it (202 or re-subscription); waiting for ACKNOWLEDGED.
    Delivered,
}

/// Result of an ACKNOWLEDGED event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledgement {
    /// The update was pending and is now settled.
    Settled {
        /// The acknowledged update's state.
        state: TaskState,
    },
    /// No pending update has this uuid (a duplicate acknowledgement).
    Unknown,
}

/// Status updates awaiting acknowledgement, and the tasks they belong to.
#[derive(Debug, Default)]
pub struct UpdateTracker {
    /// Every task ever launched through this executor, by id.
    tasks: HashMap<TaskId, TrackedTask>,
    /// Launch order, so that lists sent to the agent are stable.
    task_order: Vec<TaskId>,
    /// Unacknowledged updates in creation order.
    pending: Vec<PendingUpdate>,
}

#[derive(Debug)]
struct TrackedTask {
    info: TaskInfo,
    /// The state of the newest update created for the task.
    latest_state: Option<TaskState>,
    /// Whether the agent acknowledged any update of the task.
    any_acknowledged: bool,
}

#[derive(Debug)]
struct PendingUpdate {
    status: TaskStatus,
    delivery: Delivery,
}

impl UpdateTracker {
    /// An empty tracker.
    pub fn new() -> UpdateTracker {
        UpdateTracker::default()
    }

    /// Records a task the agent asked to launch; false if it was already known.
    pub fn launched(&mut self, info: TaskInfo) -> bool {
        let id = info.task_id.clone();
        if self.tasks.contains_key(&id) {
            return false;
        }
        self.task_order.push(id.clone());
        self.tasks.insert(
            id,
            TrackedTask {
                info,
                latest_state: None,
                any_acknowledged: false,
            },
        );
        true
    }

    /// Whether the task was launched through this executor.
    pub fn knows(&self, task_id: &TaskId) -> bool {
        self.tasks.contains_key(task_id)
    }

    /// The state of the newest update created for the task.
    pub fn latest_state(&self, task_id: &TaskId) -> Option<TaskState> {
        self.tasks.get(task_id).and_then(|task| task.latest_state)
    }

    /// Whether the task's newest update is terminal.
    pub fn is_terminal(&self, task_id: &TaskId) -> bool {
        self.latest_state(task_id)
            .is_some_and(TaskState::is_terminal)
    }

    /// Adds a new update (which must carry a uuid) to be sent.
    pub fn push(&mut self, status: TaskStatus) {
        let state = TaskState::try_from(status.state).ok();
        if let Some(task) = self.tasks.get_mut(&status.task_id) {
            task.latest_state = state;
        }
        self.pending.push(PendingUpdate {
            status,
            delivery: Delivery::Queued,
        });
    }

    /// The updates to send now, marked in flight: for each task, its oldest pending
    /// update if that one is queued (a task's next update waits for the previous one).
    pub fn take_sendable(&mut self) -> Vec<TaskStatus> {
        let mut blocked: Vec<TaskId> = Vec::new();
        let mut sendable = Vec::new();
        for update in &mut self.pending {
            let task_id = &update.status.task_id;
            if blocked.contains(task_id) {
                continue;
            }
            blocked.push(task_id.clone());
            if update.delivery == Delivery::Queued {
                update.delivery = Delivery::InFlight;
                sendable.push(update.status.clone());
            }
        }
        sendable
    }

    /// The UPDATE call carrying `uuid` was accepted with 202.
    pub fn delivered(&mut self, uuid: &[u8]) {
        self.set_delivery(uuid, Delivery::Delivered);
    }

    /// The UPDATE call carrying `uuid` failed; it will be handed out again.
    pub fn failed(&mut self, uuid: &[u8]) {
        self.set_delivery(uuid, Delivery::Queued);
    }

    /// Forgets the update with `uuid` without an acknowledgement (the agent refused it
    /// for good).
    pub fn discard(&mut self, uuid: &[u8]) {
        self.pending
            .retain(|update| update.status.uuid.as_deref() != Some(uuid));
    }

    /// Settles the update with `uuid` of `task_id` (an ACKNOWLEDGED event).
    pub fn acknowledge(&mut self, task_id: &TaskId, uuid: &Bytes) -> Acknowledgement {
        let Some(position) = self.pending.iter().position(|update| {
            &update.status.task_id == task_id && update.status.uuid.as_ref() == Some(uuid)
        }) else {
            return Acknowledgement::Unknown;
        };
        let update = self.pending.remove(position);
        if let Some(task) = self.tasks.get_mut(task_id) {
            task.any_acknowledged = true;
        }
        Acknowledgement::Settled {
            state: TaskState::try_from(update.status.state).unwrap_or(TaskState::TaskStaging),
        }
    }

    /// The delivery state of the update with `uuid`, if it is pending.
    pub fn delivery(&self, uuid: &[u8]) -> Option<Delivery> {
        self.find(uuid).map(|update| update.delivery)
    }

    /// Number of updates not yet acknowledged.
    pub fn n_pending(&self) -> usize {
        self.pending.len()
    }

    /// `Subscribe.unacknowledged_updates`: every pending update, oldest first.
    pub fn unacknowledged_updates(&self) -> Vec<call::Update> {
        self.pending
            .iter()
            .map(|update| call::Update {
                status: update.status.clone(),
            })
            .collect()
    }

    /// `Subscribe.unacknowledged_tasks`: launched tasks with no acknowledged update.
    pub fn unacknowledged_tasks(&self) -> Vec<TaskInfo> {
        self.task_order
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .filter(|task| !task.any_acknowledged)
            .map(|task| task.info.clone())
            .collect()
    }

    /// Whether the executor's work is over: at least one task was launched, every
    /// task reached a terminal state and every update was acknowledged.
    pub fn all_settled(&self) -> bool {
        !self.tasks.is_empty()
            && self.pending.is_empty()
            && self
                .tasks
                .values()
                .all(|task| task.latest_state.is_some_and(TaskState::is_terminal))
    }

    fn find(&self, uuid: &[u8]) -> Option<&PendingUpdate> {
        self.pending
            .iter()
            .find(|update| update.status.uuid.as_deref() == Some(uuid))
    }

    fn set_delivery(&mut self, uuid: &[u8], delivery: Delivery) {
        if let Some(update) = self
            .pending
            .iter_mut()
            .find(|update| update.status.uuid.as_deref() == Some(uuid))
        {
            update.delivery = delivery;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> TaskInfo {
        TaskInfo {
            name: id.into(),
            task_id: TaskId { value: id.into() },
            ..Default::default()
        }
    }

    fn status(task: &str, state: TaskState, uuid: u8) -> TaskStatus {
        TaskStatus {
            task_id: TaskId { value: task.into() },
            state: state as i32,
            uuid: Some(Bytes::from(vec![uuid; 16])),
            ..Default::default()
        }
    }

    fn id(task: &str) -> TaskId {
        TaskId { value: task.into() }
    }

    fn uuids(statuses: &[TaskStatus]) -> Vec<u8> {
        statuses
            .iter()
            .map(|s| s.uuid.as_ref().unwrap()[0])
            .collect()
    }

    #[test]
    fn updates_of_one_task_go_out_in_order_one_at_a_time() {
        let mut tracker = UpdateTracker::new();
        assert!(tracker.launched(task("a")));
        assert!(tracker.launched(task("b")));
        assert!(!tracker.launched(task("a")));
        tracker.push(status("a", TaskState::TaskStarting, 1));
        tracker.push(status("a", TaskState::TaskRunning, 2));
        tracker.push(status("b", TaskState::TaskStarting, 3));

        // Step by step: (action, expected sendable uuids).
        assert_eq!(uuids(&tracker.take_sendable()), [1, 3]);
        assert_eq!(uuids(&tracker.take_sendable()), Vec::<u8>::new());
        tracker.failed(&[1; 16]);
        assert_eq!(tracker.delivery(&[1; 16]), Some(Delivery::Queued));
        assert_eq!(uuids(&tracker.take_sendable()), [1]);
        tracker.delivered(&[1; 16]);
        // Delivered but not acknowledged still holds back the task's next update.
        assert_eq!(uuids(&tracker.take_sendable()), Vec::<u8>::new());
        assert_eq!(
            tracker.acknowledge(&id("a"), &Bytes::from(vec![1; 16])),
            Acknowledgement::Settled {
                state: TaskState::TaskStarting
            }
        );
        assert_eq!(uuids(&tracker.take_sendable()), [2]);
        assert_eq!(tracker.n_pending(), 2);
    }

    #[test]
    fn acknowledgements_match_task_and_uuid() {
        let mut tracker = UpdateTracker::new();
        tracker.launched(task("a"));
        tracker.push(status("a", TaskState::TaskRunning, 1));
        let check = |tracker: &mut UpdateTracker, task: &str, uuid: u8, expected| {
            assert_eq!(
                tracker.acknowledge(&id(task), &Bytes::from(vec![uuid; 16])),
                expected
            );
        };
        check(&mut tracker, "b", 1, Acknowledgement::Unknown);
        check(&mut tracker, "a", 2, Acknowledgement::Unknown);
        check(
            &mut tracker,
            "a",
            1,
            Acknowledgement::Settled {
                state: TaskState::TaskRunning,
            },
        );
        check(&mut tracker, "a", 1, Acknowledgement::Unknown);
    }

    #[test]
    fn subscribe_lists_pending_updates_and_unacknowledged_tasks() {
        let mut tracker = UpdateTracker::new();
        tracker.launched(task("a"));
        tracker.launched(task("b"));
        tracker.launched(task("c"));
        tracker.push(status("a", TaskState::TaskStarting, 1));
        tracker.push(status("b", TaskState::TaskStarting, 2));
        tracker.acknowledge(&id("a"), &Bytes::from(vec![1; 16]));
        tracker.push(status("a", TaskState::TaskRunning, 3));

        let tasks: Vec<String> = tracker
            .unacknowledged_tasks()
            .into_iter()
            .map(|t| t.task_id.value)
            .collect();
        assert_eq!(tasks, ["b", "c"]);
        let updates: Vec<TaskStatus> = tracker
            .unacknowledged_updates()
            .into_iter()
            .map(|u| u.status)
            .collect();
        assert_eq!(uuids(&updates), [2, 3]);

        // A re-subscription carrying them counts as delivery.
        tracker.take_sendable();
        for update in &updates {
            tracker.delivered(update.uuid.as_ref().unwrap());
        }
        assert_eq!(tracker.delivery(&[2; 16]), Some(Delivery::Delivered));
        assert_eq!(tracker.delivery(&[3; 16]), Some(Delivery::Delivered));
        assert!(tracker.take_sendable().is_empty());

        // A refused update is forgotten and unblocks the task's next one.
        tracker.push(status("c", TaskState::TaskStarting, 4));
        tracker.push(status("c", TaskState::TaskRunning, 5));
        assert_eq!(uuids(&tracker.take_sendable()), [4]);
        tracker.discard(&[4; 16]);
        assert_eq!(tracker.delivery(&[4; 16]), None);
        assert_eq!(uuids(&tracker.take_sendable()), [5]);
    }

    #[test]
    fn settled_only_when_every_task_is_terminal_and_acknowledged() {
        let mut tracker = UpdateTracker::new();
        assert!(!tracker.all_settled(), "no task launched yet");
        tracker.launched(task("a"));
        assert!(!tracker.all_settled(), "task without updates");
        tracker.push(status("a", TaskState::TaskRunning, 1));
        tracker.push(status("a", TaskState::TaskFinished, 2));
        assert!(tracker.is_terminal(&id("a")));
        assert!(!tracker.all_settled(), "updates pending");
        tracker.acknowledge(&id("a"), &Bytes::from(vec![1; 16]));
        assert!(!tracker.all_settled(), "terminal update pending");
        tracker.acknowledge(&id("a"), &Bytes::from(vec![2; 16]));
        assert!(tracker.all_settled());
        tracker.launched(task("b"));
        assert!(!tracker.all_settled(), "new task running");
    }
}
