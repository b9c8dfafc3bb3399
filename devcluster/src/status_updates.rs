//! The agent's status update manager: per-task streams of updates that carry a uuid.
//!
//! Each task has one stream. Only its oldest unacknowledged update is in flight (sent
//! to the master, and from there to the scheduler); newer ones queue behind it until
//! the scheduler ACKNOWLEDGEs the one in flight. An update in flight is resent after
//! the retry interval, which doubles up to [`MAX_RETRY_INTERVAL`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesos_stateful_proto::v1::{FrameworkId, TaskId, TaskStatus};

/// The retry interval stops doubling here (Mesos: 10 min).
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct UpdateStream {
    /// Front = in flight; the rest wait for its acknowledgement.
    pending: VecDeque<TaskStatus>,
    next_retry: Instant,
    backoff: Duration,
}

/// What an ACKNOWLEDGE did.
#[derive(Debug, PartialEq)]
pub enum AckOutcome {
    /// No stream holds an in-flight update of that task with that uuid.
    Unknown,
    /// The in-flight update was acknowledged; `next` is the update to send now, if any.
    Acknowledged {
        /// The update that was acknowledged.
        acknowledged: Box<TaskStatus>,
        /// The next update of the task, now in flight.
        next: Option<Box<TaskStatus>>,
    },
}

/// All update streams of one agent.
#[derive(Debug)]
pub struct StatusUpdateManager {
    streams: HashMap<(FrameworkId, TaskId), UpdateStream>,
    retry_interval: Duration,
}

impl StatusUpdateManager {
    /// A manager retrying unacknowledged updates every `retry_interval` (doubling).
    pub fn new(retry_interval: Duration) -> StatusUpdateManager {
        StatusUpdateManager {
            streams: HashMap::new(),
            retry_interval,
        }
    }

    /// Queues `status` (which must carry a uuid). Returns it back if it is now in
    /// flight and must be sent at once. An update whose uuid is already queued for the
    /// task is a duplicate and is dropped (executors replay unacknowledged updates).
    pub fn push(
        &mut self,
        framework_id: &FrameworkId,
        status: TaskStatus,
        now: Instant,
    ) -> Option<TaskStatus> {
        let key = (framework_id.clone(), status.task_id.clone());
        let stream = self.streams.entry(key).or_insert_with(|| UpdateStream {
            pending: VecDeque::new(),
            next_retry: now,
            backoff: self.retry_interval,
        });
        if stream
            .pending
            .iter()
            .any(|queued| queued.uuid.is_some() && queued.uuid == status.uuid)
        {
            return None;
        }
        stream.pending.push_back(status);
        if stream.pending.len() == 1 {
            stream.backoff = self.retry_interval;
            stream.next_retry = now + stream.backoff;
            return stream.pending.front().cloned();
        }
        None
    }

    /// Handles the scheduler's ACKNOWLEDGE of `uuid` for a task.
    pub fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        uuid: &Bytes,
        now: Instant,
    ) -> AckOutcome {
        let key = (framework_id.clone(), task_id.clone());
        let Some(stream) = self.streams.get_mut(&key) else {
            return AckOutcome::Unknown;
        };
        let in_flight = stream
            .pending
            .front()
            .is_some_and(|front| front.uuid.as_ref() == Some(uuid));
        if !in_flight {
            return AckOutcome::Unknown;
        }
        let Some(acknowledged) = stream.pending.pop_front() else {
            return AckOutcome::Unknown;
        };
        stream.backoff = self.retry_interval;
        stream.next_retry = now + stream.backoff;
        let next = stream.pending.front().cloned().map(Box::new);
        if stream.pending.is_empty() {
            self.streams.remove(&key);
        }
        AckOutcome::Acknowledged {
            acknowledged: Box::new(acknowledged),
            next,
        }
    }

    /// In-flight updates whose retry time has come; their next retry is pushed back
    /// by the doubled interval.
    pub fn due_retries(&mut self, now: Instant) -> Vec<(FrameworkId, TaskStatus)> {
        let mut due = Vec::new();
        for ((framework_id, _), stream) in self.streams.iter_mut() {
            if stream.next_retry > now {
                continue;
            }
            if let Some(front) = stream.pending.front() {
                due.push((framework_id.clone(), front.clone()));
                stream.backoff = (stream.backoff * 2).min(MAX_RETRY_INTERVAL);
                stream.next_retry = now + stream.backoff;
            }
        }
        due
    }

    /// The in-flight update of every stream of `framework_id` (resent when the
    /// framework re-subscribes, so it does not wait for the retry timer).
    pub fn in_flight(&self, framework_id: &FrameworkId) -> Vec<TaskStatus> {
        self.streams
            .iter()
            .filter(|((fid, _), _)| fid == framework_id)
            .filter_map(|(_, stream)| stream.pending.front().cloned())
            .collect()
    }

    /// Whether the task has updates not yet acknowledged.
    #[cfg(test)]
    pub fn has_pending(&self, framework_id: &FrameworkId, task_id: &TaskId) -> bool {
        self.streams
            .contains_key(&(framework_id.clone(), task_id.clone()))
    }

    /// Drops all streams of a removed framework.
    pub fn remove_framework(&mut self, framework_id: &FrameworkId) {
        self.streams.retain(|(fid, _), _| fid != framework_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_proto::v1::TaskState;

    fn fid() -> FrameworkId {
        FrameworkId { value: "f".into() }
    }

    fn status(task: &str, state: TaskState, uuid: u8) -> TaskStatus {
        TaskStatus {
            task_id: TaskId { value: task.into() },
            state: state as i32,
            uuid: Some(Bytes::from(vec![uuid; 16])),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_oldest_update_of_a_task_is_in_flight() {
        let now = Instant::now();
        let mut manager = StatusUpdateManager::new(Duration::from_secs(10));
        let running = status("t", TaskState::TaskRunning, 1);
        let finished = status("t", TaskState::TaskFinished, 2);
        assert_eq!(
            manager.push(&fid(), running.clone(), now),
            Some(running.clone())
        );
        assert_eq!(
            manager.push(&fid(), finished.clone(), now),
            None,
            "queued behind RUNNING"
        );
        assert_eq!(
            manager.push(&fid(), running.clone(), now),
            None,
            "duplicate"
        );
        let other = status("u", TaskState::TaskRunning, 3);
        assert_eq!(
            manager.push(&fid(), other.clone(), now),
            Some(other),
            "other task, own stream"
        );

        let wrong = Bytes::from(vec![2; 16]);
        assert_eq!(
            manager.acknowledge(&fid(), &running.task_id, &wrong, now),
            AckOutcome::Unknown
        );
        let ack = manager.acknowledge(&fid(), &running.task_id, &Bytes::from(vec![1; 16]), now);
        assert_eq!(
            ack,
            AckOutcome::Acknowledged {
                acknowledged: Box::new(running.clone()),
                next: Some(Box::new(finished.clone())),
            }
        );
        let ack = manager.acknowledge(&fid(), &running.task_id, &Bytes::from(vec![2; 16]), now);
        assert!(matches!(ack, AckOutcome::Acknowledged { next: None, .. }));
        assert!(!manager.has_pending(&fid(), &running.task_id));
    }

    #[test]
    fn unacknowledged_updates_are_retried_with_doubling_interval() {
        let start = Instant::now();
        let mut manager = StatusUpdateManager::new(Duration::from_secs(10));
        let running = status("t", TaskState::TaskRunning, 1);
        manager.push(&fid(), running.clone(), start);
        let check = |manager: &mut StatusUpdateManager, after_secs: u64, expected: usize| {
            let due = manager.due_retries(start + Duration::from_secs(after_secs));
            assert_eq!(due.len(), expected, "after {after_secs} s");
        };
        check(&mut manager, 9, 0);
        check(&mut manager, 10, 1); // Next retry 20 s later, at 30 s.
        check(&mut manager, 29, 0);
        check(&mut manager, 30, 1); // Next retry 40 s later, at 70 s.
        check(&mut manager, 69, 0);
        check(&mut manager, 70, 1);
        manager.acknowledge(&fid(), &running.task_id, &Bytes::from(vec![1; 16]), start);
        check(&mut manager, 1000, 0);
    }

    #[test]
    fn removing_a_framework_drops_its_streams() {
        let now = Instant::now();
        let mut manager = StatusUpdateManager::new(Duration::from_secs(10));
        manager.push(&fid(), status("t", TaskState::TaskRunning, 1), now);
        assert_eq!(manager.in_flight(&fid()).len(), 1);
        manager.remove_framework(&fid());
        assert!(manager.in_flight(&fid()).is_empty());
    }
}
