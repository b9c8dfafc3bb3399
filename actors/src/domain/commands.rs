//! Commands run in members' containers through their executors: each is sent as a
//! framework MESSAGE and re-sent until its result comes back or its deadline passes.
//! The executor runs each command id once, so re-sending is safe.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;

use mesos_stateful_proto::stateful::{scheduler_message, RunCommand, SchedulerMessage};
use mesos_stateful_store::records::{InstanceRecord, RecordedCommand, TaskRecord};

use super::lifecycle;

/// Splits an instance's recorded commands, at start, into those to send again
/// (with the agent of their member, which still runs the task they were for) and
/// the ids of those to drop (the member moved on, or the instance is not live).
pub fn recorded_commands(
    instance: &InstanceRecord,
    tasks: &BTreeMap<u32, TaskRecord>,
) -> (Vec<(RecordedCommand, String)>, Vec<String>) {
    let mut resend = Vec::new();
    let mut stale = Vec::new();
    for command in &instance.lifecycle.commands {
        let agent = tasks
            .get(&command.ordinal)
            .filter(|t| {
                instance.status.is_live()
                    && t.task_id == command.task_id
                    && lifecycle::is_running(t)
            })
            .and_then(|t| t.agent_id.clone());
        match agent {
            Some(agent) => resend.push((command.clone(), agent)),
            None => stale.push(command.command_id.clone()),
        }
    }
    (resend, stale)
}

/// How long to wait for a result before sending a command again.
pub const RESEND_AFTER: Duration = Duration::from_secs(2);
/// How long past its own timeout a command may take to be answered.
pub const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// A command waiting for its result.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCommand {
    /// Unique id; the executor's idempotency key.
    pub command_id: String,
    /// Task whose container runs it.
    pub task_id: String,
    /// Agent of that task.
    pub agent_id: String,
    /// Executor of that task.
    pub executor_id: String,
    /// The encoded `SchedulerMessage`.
    pub payload: Bytes,
    /// When the command is given up.
    pub deadline: Instant,
    /// When to send it (again).
    pub next_send: Instant,
    /// Sends so far.
    pub attempts: u32,
}

/// Every command in flight.
#[derive(Debug, Default)]
pub struct CommandBook {
    pending: BTreeMap<String, PendingCommand>,
    issued: u64,
}

impl CommandBook {
    /// Registers a command and returns it, due for sending now.
    #[allow(clippy::too_many_arguments)] // One call site; each argument is part of the command.
    pub fn start(
        &mut self,
        task_id: &str,
        agent_id: &str,
        executor_id: &str,
        argv: Vec<String>,
        timeout: Duration,
        now: Instant,
        epoch_nanos: u128,
    ) -> PendingCommand {
        self.issued += 1;
        // Unique across scheduler restarts too: the executor remembers ids it ran.
        let command_id = format!("{task_id}/{epoch_nanos:x}-{}", self.issued);
        self.start_as(
            command_id,
            task_id,
            agent_id,
            executor_id,
            argv,
            timeout,
            now,
        )
    }

    /// Registers a command under an id chosen by the caller (a recorded command,
    /// sent again under its id after a restart), due for sending now.
    #[allow(clippy::too_many_arguments)] // Each argument is part of the command.
    pub fn start_as(
        &mut self,
        command_id: String,
        task_id: &str,
        agent_id: &str,
        executor_id: &str,
        argv: Vec<String>,
        timeout: Duration,
        now: Instant,
    ) -> PendingCommand {
        let message = SchedulerMessage {
            payload: Some(scheduler_message::Payload::RunCommand(RunCommand {
                command_id: command_id.clone(),
                task_id: task_id.to_string(),
                argv,
                timeout_seconds: Some(timeout.as_secs_f64()),
            })),
        };
        let command = PendingCommand {
            command_id: command_id.clone(),
            task_id: task_id.to_string(),
            agent_id: agent_id.to_string(),
            executor_id: executor_id.to_string(),
            payload: Bytes::from(message.encode_to_vec()),
            deadline: now + timeout + ANSWER_GRACE,
            next_send: now,
            attempts: 0,
        };
        self.pending.insert(command_id, command.clone());
        command
    }

    /// Commands due for a (re)send at `now`; each is scheduled for its next resend.
    pub fn due(&mut self, now: Instant) -> Vec<PendingCommand> {
        self.pending
            .values_mut()
            .filter(|c| c.next_send <= now && c.deadline > now)
            .map(|c| {
                c.attempts += 1;
                c.next_send = now + RESEND_AFTER;
                c.clone()
            })
            .collect()
    }

    /// Removes and returns the ids of commands past their deadline.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .pending
            .values()
            .filter(|c| c.deadline <= now)
            .map(|c| c.command_id.clone())
            .collect();
        for id in &expired {
            self.pending.remove(id);
        }
        expired
    }

    /// Marks a command answered; false for an unknown or already answered one.
    pub fn complete(&mut self, command_id: &str) -> bool {
        self.pending.remove(command_id).is_some()
    }

    /// Commands in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no command is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_store::records::{InstanceStatus, Role, SCHEMA_VERSION};

    fn recorded(ordinal: u32, task_id: &str) -> RecordedCommand {
        RecordedCommand {
            command_id: format!("{task_id}/v1-{ordinal}"),
            ordinal,
            task_id: task_id.into(),
            argv: vec!["x".into()],
        }
    }

    #[test]
    fn recorded_commands_go_again_only_to_members_still_running_their_task() {
        let mut instance: InstanceRecord = serde_json::from_value(serde_json::json!({
            "schema": SCHEMA_VERSION, "name": "c", "status": "DEGRADED", "version": 4,
            "created_at_ms": 0,
            "spec": {"image": "i", "replicas": 3, "master_args": [], "replica_args": [],
                     "resources": {"cpus": 1.0, "mem": 1.0, "disk": 1.0}},
        }))
        .unwrap();
        let member = |ordinal: u32, incarnation: u32, state: &str| {
            let mut task = TaskRecord::waiting("c", ordinal, Role::Replica, incarnation);
            task.state = Some(state.into());
            task.agent_id = Some(format!("a{ordinal}"));
            (ordinal, task)
        };
        let tasks = BTreeMap::from([
            member(0, 1, "TASK_RUNNING"),
            member(1, 2, "TASK_RUNNING"),
            member(2, 1, "TASK_FAILED"),
        ]);
        instance.lifecycle.commands = vec![
            recorded(0, "c-0.1"),
            // Member 1 was relaunched since: its new task never gets it.
            recorded(1, "c-1.1"),
            // Member 2's task ended.
            recorded(2, "c-2.1"),
            // No member 3.
            recorded(3, "c-3.1"),
        ];
        let (resend, stale) = recorded_commands(&instance, &tasks);
        assert_eq!(resend, vec![(recorded(0, "c-0.1"), "a0".to_string())]);
        assert_eq!(stale, ["c-1.1/v1-1", "c-2.1/v1-2", "c-3.1/v1-3"]);

        // An instance being deleted gets none of them.
        instance.status = InstanceStatus::Deleting;
        let (resend, stale) = recorded_commands(&instance, &tasks);
        assert!(resend.is_empty());
        assert_eq!(stale.len(), 4);
    }

    #[test]
    fn commands_are_resent_until_answered_or_expired() {
        let mut book = CommandBook::default();
        let t0 = Instant::now();
        let command = book.start(
            "t-0.1",
            "a1",
            "e1",
            vec!["true".into()],
            Duration::from_secs(5),
            t0,
            0xabc,
        );
        assert!(command.command_id.starts_with("t-0.1/abc-"));
        let sent = book.due(t0);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].attempts, 1);
        assert!(
            book.due(t0 + Duration::from_secs(1)).is_empty(),
            "not yet due again"
        );
        let resent = book.due(t0 + RESEND_AFTER);
        assert_eq!(resent[0].attempts, 2);
        let decoded = SchedulerMessage::decode(resent[0].payload.clone()).unwrap();
        let Some(scheduler_message::Payload::RunCommand(run)) = decoded.payload else {
            panic!("not a RunCommand");
        };
        assert_eq!(run.argv, ["true"]);
        assert_eq!(run.timeout_seconds, Some(5.0));

        assert!(book.complete(&command.command_id));
        assert!(
            !book.complete(&command.command_id),
            "a second answer is ignored"
        );
        assert!(book.is_empty());

        let late = book.start("t-0.1", "a1", "e1", vec![], Duration::from_secs(1), t0, 1);
        assert!(book.expire(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(
            book.expire(t0 + Duration::from_secs(1) + ANSWER_GRACE),
            vec![late.command_id]
        );
        assert!(book.due(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn command_ids_are_unique() {
        let mut book = CommandBook::default();
        let now = Instant::now();
        let a = book.start("t", "a", "e", vec![], Duration::from_secs(1), now, 7);
        let b = book.start("t", "a", "e", vec![], Duration::from_secs(1), now, 7);
        assert_ne!(a.command_id, b.command_id);
        assert_eq!(book.len(), 2);
    }
}
