//! The agent's built-in command executor for command tasks (TaskInfo with `command`
//! and no `executor`).
//!
//! Mesos runs such a task under its command executor, which starts the command as a
//! child process and reports the task's states. devcluster does the same work inside
//! the agent: the task's command is the process of an [`Executor`] entry whose ID is
//! the task ID, and the agent emits the updates the command executor would (source
//! SOURCE_EXECUTOR, with a uuid, through the status update manager): TASK_STARTING and
//! TASK_RUNNING once the process runs, then TASK_FINISHED (exit status 0),
//! TASK_FAILED (anything else) or TASK_KILLED (after a KILL or a shutdown). A KILL
//! sends SIGTERM, then SIGKILL after the kill policy's grace period (3 s by default).

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use mesos_stateful_proto::v1::{
    self, task_status, AgentId, ExecutorId, ExecutorInfo, FrameworkId, KillPolicy, TaskId,
    TaskInfo, TaskState, TaskStatus,
};

use super::{kill_executor, new_uuid_bytes, timestamp, Cluster, Effect, Executor, Task};
use crate::process::{executor_environment, EnvironmentParams, SpawnRequest};
use crate::resources::ResourceSet;

/// The grace period between SIGTERM and SIGKILL of Mesos's command executor when no
/// kill policy says otherwise.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// What the built-in command executor remembers about its task.
#[derive(Debug, Clone)]
pub struct CommandTask {
    /// The task (also the executor's ID).
    pub task_id: TaskId,
    /// `TaskInfo.kill_policy`.
    pub kill_policy: Option<KillPolicy>,
    /// Set once a kill or shutdown was decided: the exit is then TASK_KILLED.
    pub killed: bool,
}

/// The grace period of a kill: the KILL call's policy, else the task's, else 3 s.
pub fn kill_grace(call_policy: Option<&KillPolicy>, task_policy: Option<&KillPolicy>) -> Duration {
    let grace = |policy: Option<&KillPolicy>| {
        policy
            .and_then(|p| p.grace_period)
            .and_then(|d| u64::try_from(d.nanoseconds).ok())
            .map(Duration::from_nanos)
    };
    grace(call_policy)
        .or_else(|| grace(task_policy))
        .unwrap_or(DEFAULT_KILL_GRACE)
}

/// The terminal state and message of a command whose process ended with the raw
/// wait status `wait_status` (-1 when waiting for it failed).
pub fn exit_outcome(wait_status: i32, killed: bool) -> (TaskState, String) {
    let status = ExitStatus::from_raw(wait_status);
    let message = match (status.code(), status.signal()) {
        (Some(code), _) => format!("Command exited with status {code}"),
        (None, Some(signal)) => format!("Command terminated with signal {signal}"),
        (None, None) => format!("Command ended with wait status {wait_status}"),
    };
    let state = if killed {
        TaskState::TaskKilled
    } else if status.success() {
        TaskState::TaskFinished
    } else {
        TaskState::TaskFailed
    };
    (state, message)
}

/// An update of the command executor (source SOURCE_EXECUTOR, with a uuid).
fn executor_status(
    task_id: &TaskId,
    state: TaskState,
    message: Option<String>,
    agent_id: &AgentId,
) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        state: state as i32,
        message,
        source: Some(task_status::Source::Executor as i32),
        agent_id: Some(agent_id.clone()),
        executor_id: Some(ExecutorId {
            value: task_id.value.clone(),
        }),
        timestamp: Some(timestamp()),
        uuid: Some(new_uuid_bytes()),
        ..Default::default()
    }
}

/// The ExecutorInfo Mesos would make up for a command task's command executor.
fn command_executor_info(framework_id: &FrameworkId, task: &TaskInfo) -> ExecutorInfo {
    let command = task.command.clone().unwrap_or_default();
    let shown = command.value.clone().unwrap_or_default();
    ExecutorInfo {
        executor_id: ExecutorId {
            value: task.task_id.value.clone(),
        },
        framework_id: Some(framework_id.clone()),
        name: Some(format!(
            "Command Executor (Task: {}) (Command: sh -c '{shown}')",
            task.task_id.value
        )),
        command: Some(command),
        ..Default::default()
    }
}

impl Cluster {
    /// Records a validated command task and starts its command as the process of a
    /// built-in command executor.
    pub(super) fn launch_command_task(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        task: TaskInfo,
    ) -> Vec<Effect> {
        let Some(framework_info) = self.frameworks.get(framework_id).map(|f| f.info.clone()) else {
            return Vec::new();
        };
        let Some(command) = task.command.clone() else {
            return Vec::new();
        };
        let executor_info = command_executor_info(framework_id, &task);
        let executor_id = executor_info.executor_id.clone();
        let agent_id = self.agents[index].id.clone();
        self.tasks.insert(
            (framework_id.clone(), task.task_id.clone()),
            Task {
                agent: index,
                executor_id: Some(executor_id.clone()),
                resources: ResourceSet::from_resources(&task.resources).unwrap_or_default(),
                status: TaskStatus {
                    task_id: task.task_id.clone(),
                    state: TaskState::TaskStaging as i32,
                    source: Some(task_status::Source::Master as i32),
                    agent_id: Some(agent_id.clone()),
                    executor_id: Some(executor_id.clone()),
                    ..Default::default()
                },
            },
        );
        let settings = self.settings.clone();
        let volumes = self.volume_links(index, &[&task.resources]);
        let agent = &mut self.agents[index];
        let container_id = uuid::Uuid::new_v4().to_string();
        let sandbox = super::scheduler_api::sandbox_path(
            &settings.work_dir,
            &agent.id.value,
            &framework_id.value,
            &executor_id.value,
            &container_id,
        );
        let environment = executor_environment(&EnvironmentParams {
            framework_id: &framework_id.value,
            executor_id: &executor_id.value,
            agent_id: &agent.id.value,
            agent_endpoint: agent.endpoint,
            sandbox: &sandbox,
            checkpoint: framework_info.checkpoint.unwrap_or(false),
            shutdown_grace_period: settings.executor_shutdown_grace_period,
            reregistration_timeout: settings.executor_reregistration_timeout,
            command_environment: command.environment.as_ref(),
            host_environment: &crate::process::host_passthrough(),
        });
        tracing::info!(task_id = %task.task_id.value, container_id, "launching command task");
        let mut tasks = HashMap::new();
        tasks.insert(task.task_id.clone(), TaskState::TaskStaging);
        agent.executors.insert(
            (framework_id.clone(), executor_id.clone()),
            Executor {
                info: executor_info,
                framework_info,
                container_id: container_id.clone(),
                // The command runs in the task's own resources.
                resources: ResourceSet::default(),
                pid: None,
                connection: None,
                queued: Vec::new(),
                tasks,
                registration_deadline: None,
                kill_requested: false,
                shutting_down: false,
                termination_reason: task_status::Reason::ExecutorTerminated,
                command_task: Some(CommandTask {
                    task_id: task.task_id.clone(),
                    kill_policy: task.kill_policy,
                    killed: false,
                }),
                awaiting_reregistration: false,
            },
        );
        vec![Effect::SpawnExecutor(Box::new(SpawnRequest {
            agent: index,
            framework_id: framework_id.clone(),
            executor_id,
            container_id,
            sandbox,
            command,
            environment,
            volumes,
        }))]
    }

    /// KILL of a command task: SIGTERM now, SIGKILL after the grace period, and
    /// TASK_KILLING first if the framework understands it.
    pub(super) fn kill_command_task(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        call_policy: Option<KillPolicy>,
        now: Instant,
    ) -> Vec<Effect> {
        let killing_capable = self.frameworks.get(framework_id).is_some_and(|f| {
            f.has_capability(v1::framework_info::capability::Type::TaskKillingState)
        });
        let agent_id = self.agents[index].id.clone();
        let Some(executor) = self.agents[index]
            .executors
            .get_mut(&(framework_id.clone(), executor_id.clone()))
        else {
            return Vec::new();
        };
        let Some(command) = executor.command_task.as_mut() else {
            return Vec::new();
        };
        if command.killed {
            return Vec::new();
        }
        command.killed = true;
        let task_id = command.task_id.clone();
        let grace = kill_grace(call_policy.as_ref(), command.kill_policy.as_ref());
        tracing::info!(task_id = %task_id.value, ?grace, "killing command task");
        let effects = kill_executor(index, executor, grace);
        if killing_capable {
            executor
                .tasks
                .insert(task_id.clone(), TaskState::TaskKilling);
            let status = executor_status(&task_id, TaskState::TaskKilling, None, &agent_id);
            self.push_agent_update(index, framework_id, status, now);
        }
        effects
    }

    /// The command of a command task started: TASK_STARTING, then TASK_RUNNING.
    pub(super) fn command_task_started(&mut self, index: usize, container_id: &str, now: Instant) {
        let agent_id = self.agents[index].id.clone();
        let Some(((framework_id, _), executor)) = self.agents[index]
            .executors
            .iter_mut()
            .find(|(_, e)| e.container_id == container_id)
        else {
            return;
        };
        let Some(command) = &executor.command_task else {
            return;
        };
        if command.killed {
            return;
        }
        let task_id = command.task_id.clone();
        let framework_id = framework_id.clone();
        executor
            .tasks
            .insert(task_id.clone(), TaskState::TaskRunning);
        for state in [TaskState::TaskStarting, TaskState::TaskRunning] {
            let status = executor_status(&task_id, state, None, &agent_id);
            self.push_agent_update(index, &framework_id, status, now);
        }
    }

    /// The command of a command task ended: its terminal update. The executor entry
    /// itself is removed by the caller like any other executor's.
    pub(super) fn command_task_exited(
        &mut self,
        index: usize,
        container_id: &str,
        wait_status: i32,
        now: Instant,
    ) {
        let agent_id = self.agents[index].id.clone();
        let Some(((framework_id, _), executor)) = self.agents[index]
            .executors
            .iter_mut()
            .find(|(_, e)| e.container_id == container_id)
        else {
            return;
        };
        let Some(command) = &executor.command_task else {
            return;
        };
        let task_id = command.task_id.clone();
        let (state, message) = exit_outcome(wait_status, command.killed);
        let framework_id = framework_id.clone();
        executor.tasks.insert(task_id.clone(), state);
        tracing::info!(task_id = %task_id.value, state = state.as_str_name(), message, "command task ended");
        let status = executor_status(&task_id, state, Some(message), &agent_id);
        if self.frameworks.contains_key(&framework_id) {
            self.push_agent_update(index, &framework_id, status, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_proto::v1::DurationInfo;

    fn policy(seconds: i64) -> KillPolicy {
        KillPolicy {
            grace_period: Some(DurationInfo {
                nanoseconds: seconds * 1_000_000_000,
            }),
        }
    }

    #[test]
    fn kill_grace_prefers_the_call_then_the_task() {
        let cases = [
            (None, None, DEFAULT_KILL_GRACE),
            (None, Some(policy(7)), Duration::from_secs(7)),
            (Some(policy(1)), Some(policy(7)), Duration::from_secs(1)),
            (Some(policy(0)), None, Duration::ZERO),
            (
                Some(KillPolicy { grace_period: None }),
                None,
                DEFAULT_KILL_GRACE,
            ),
            (Some(policy(-1)), Some(policy(2)), Duration::from_secs(2)),
        ];
        for (call, task, expected) in cases {
            assert_eq!(
                kill_grace(call.as_ref(), task.as_ref()),
                expected,
                "{call:?} {task:?}"
            );
        }
    }

    #[test]
    fn exit_outcomes_follow_the_command_executor() {
        // Raw wait statuses: exit code in the second byte, signal in the low bits.
        let cases = [
            (
                0,
                false,
                TaskState::TaskFinished,
                "Command exited with status 0",
            ),
            (
                3 << 8,
                false,
                TaskState::TaskFailed,
                "Command exited with status 3",
            ),
            (
                9,
                false,
                TaskState::TaskFailed,
                "Command terminated with signal 9",
            ),
            (
                15,
                true,
                TaskState::TaskKilled,
                "Command terminated with signal 15",
            ),
            (
                0,
                true,
                TaskState::TaskKilled,
                "Command exited with status 0",
            ),
        ];
        for (wait_status, killed, state, message) in cases {
            assert_eq!(
                exit_outcome(wait_status, killed),
                (state, message.to_string()),
                "{wait_status} {killed}"
            );
        }
    }

    #[test]
    fn command_executor_info_names_the_task() {
        let task = TaskInfo {
            name: "t".into(),
            task_id: TaskId { value: "t1".into() },
            command: Some(v1::CommandInfo {
                value: Some("echo hi".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let framework_id = FrameworkId { value: "f".into() };
        let info = command_executor_info(&framework_id, &task);
        assert_eq!(info.executor_id.value, "t1");
        assert_eq!(info.framework_id, Some(framework_id));
        assert_eq!(info.command, task.command);
        assert!(info.name.unwrap_or_default().contains("echo hi"));
    }
}
