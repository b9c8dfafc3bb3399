//! The agents' side: the executor API and the lifecycle of executor processes.

use std::time::{Duration, Instant};

use http::StatusCode;
use mesos_stateful_proto::v1::{
    executor, scheduler, task_status, ExecutorId, FrameworkId, TaskState, TaskStatus,
};
use tokio::sync::mpsc::UnboundedSender;

use super::recovery::loses_tasks;
use super::{agent_status, shutdown_executor, Cluster, Effect, Executor};
use crate::validation::Rejection;

/// A subscribed executor's event stream.
#[derive(Debug)]
pub struct ExecutorConnection {
    /// Distinguishes successive subscriptions of the same executor.
    pub id: u64,
    /// The stream; dropping it ends the HTTP response.
    pub sender: UnboundedSender<executor::Event>,
}

impl ExecutorConnection {
    /// Sends an event; a closed stream is noticed by its watcher.
    pub fn send(&self, event: executor::Event) {
        let _ = self.sender.send(event);
    }
}

impl Cluster {
    fn find_executor(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) -> Result<&mut Executor, Rejection> {
        let agent = self
            .agents
            .get_mut(index)
            .ok_or_else(|| Rejection::new(StatusCode::NOT_FOUND, "unknown agent"))?;
        if !agent.executors.keys().any(|(fid, _)| fid == framework_id) {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "Framework cannot be found",
            ));
        }
        agent
            .executors
            .get_mut(&(framework_id.clone(), executor_id.clone()))
            // The built-in command executors live inside the agent and never call.
            .filter(|executor| executor.command_task.is_none())
            .ok_or_else(|| Rejection::new(StatusCode::BAD_REQUEST, "Executor cannot be found"))
    }

    /// Refuses UPDATE and MESSAGE while agent `index` has not finished recovery.
    fn check_recovered(&self, index: usize) -> Result<(), Rejection> {
        match self.agents.get(index) {
            Some(agent) if !agent.phase.can_accept_executor_calls() => Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Agent has not finished recovery",
            )),
            _ => Ok(()),
        }
    }

    /// SUBSCRIBE from an executor on agent `index`: sends SUBSCRIBED and the queued
    /// LAUNCH events on `sender`, and replays the executor's unacknowledged updates
    /// (each is ACKNOWLEDGED to the executor; duplicates of queued updates are
    /// dropped). After an agent restart this is the executor's re-registration.
    pub fn executor_subscribe(
        &mut self,
        index: usize,
        call: executor::Call,
        connection: ExecutorConnection,
        now: Instant,
    ) -> Result<(), Rejection> {
        let framework_id = call.framework_id.clone();
        let agent_info = self.agents[index].info.clone();
        let agent_id = self.agents[index].id.clone();
        let executor = self.find_executor(index, &framework_id, &call.executor_id)?;
        tracing::info!(executor_id = %call.executor_id.value, reregistered = executor.awaiting_reregistration, "executor subscribed");
        executor.registration_deadline = None;
        executor.awaiting_reregistration = false;
        connection.send(executor::Event {
            r#type: Some(executor::event::Type::Subscribed as i32),
            subscribed: Some(executor::event::Subscribed {
                executor_info: executor.info.clone(),
                framework_info: executor.framework_info.clone(),
                agent_info,
                container_id: Some(mesos_stateful_proto::v1::ContainerId {
                    value: executor.container_id.clone(),
                    parent: None,
                }),
            }),
            ..Default::default()
        });
        if executor.shutting_down {
            connection.send(executor::Event {
                r#type: Some(executor::event::Type::Shutdown as i32),
                ..Default::default()
            });
        }
        for task in executor.queued.drain(..) {
            connection.send(executor::Event {
                r#type: Some(executor::event::Type::Launch as i32),
                launch: Some(executor::event::Launch { task }),
                ..Default::default()
            });
        }
        // A previous subscription's stream, if any, ends here.
        executor.connection = Some(connection);
        let replayed: Vec<TaskStatus> = call
            .subscribe
            .map(|s| {
                s.unacknowledged_updates
                    .into_iter()
                    .map(|u| u.status)
                    .collect()
            })
            .unwrap_or_default();
        for status in &replayed {
            if let Ok(state) = TaskState::try_from(status.state) {
                executor.tasks.insert(status.task_id.clone(), state);
            }
            if let (Some(connection), Some(uuid)) = (&executor.connection, &status.uuid) {
                connection.send(executor::Event {
                    r#type: Some(executor::event::Type::Acknowledged as i32),
                    acknowledged: Some(executor::event::Acknowledged {
                        task_id: status.task_id.clone(),
                        uuid: uuid.clone(),
                    }),
                    ..Default::default()
                });
            }
        }
        for mut status in replayed {
            status.agent_id = Some(agent_id.clone());
            status.executor_id = Some(call.executor_id.clone());
            self.push_agent_update(index, &framework_id, status, now);
        }
        Ok(())
    }

    /// UPDATE from an executor (already validated structurally).
    pub fn executor_update(
        &mut self,
        index: usize,
        call: executor::Call,
        now: Instant,
    ) -> Result<(), Rejection> {
        self.check_recovered(index)?;
        let framework_id = call.framework_id.clone();
        let agent_id = self.agents[index].id.clone();
        let executor = self.find_executor(index, &framework_id, &call.executor_id)?;
        let connection = executor
            .connection
            .as_ref()
            .ok_or_else(|| Rejection::new(StatusCode::FORBIDDEN, "Executor is not subscribed"))?;
        let Some(update) = call.update else {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "expecting 'update' to be present",
            ));
        };
        let mut status = update.status;
        status.agent_id = Some(agent_id);
        status.executor_id = Some(call.executor_id.clone());
        if status.timestamp.is_none() {
            status.timestamp = Some(super::timestamp());
        }
        if let Ok(state) = TaskState::try_from(status.state) {
            executor.tasks.insert(status.task_id.clone(), state);
        }
        connection.send(executor::Event {
            r#type: Some(executor::event::Type::Acknowledged as i32),
            acknowledged: Some(executor::event::Acknowledged {
                task_id: status.task_id.clone(),
                uuid: status.uuid.clone().unwrap_or_default(),
            }),
            ..Default::default()
        });
        self.push_agent_update(index, &framework_id, status, now);
        Ok(())
    }

    /// MESSAGE from an executor: forwarded to its scheduler as a MESSAGE event.
    pub fn executor_message(
        &mut self,
        index: usize,
        call: executor::Call,
    ) -> Result<(), Rejection> {
        self.check_recovered(index)?;
        let framework_id = call.framework_id.clone();
        let agent_id = self.agents[index].id.clone();
        let executor = self.find_executor(index, &framework_id, &call.executor_id)?;
        if executor.connection.is_none() {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "Executor is not subscribed",
            ));
        }
        let data = call.message.map(|m| m.data).unwrap_or_default();
        if let Some(framework) = self.frameworks.get(&framework_id) {
            framework.send(scheduler::Event {
                r#type: Some(scheduler::event::Type::Message as i32),
                message: Some(scheduler::event::Message {
                    agent_id,
                    executor_id: call.executor_id,
                    data,
                }),
                ..Default::default()
            });
        }
        Ok(())
    }

    /// An executor's subscription stream ended. Without checkpointing the agent
    /// shuts the executor down, as Mesos does.
    pub fn executor_stream_closed(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        connection_id: u64,
    ) -> Vec<Effect> {
        let grace = self.settings.executor_shutdown_grace_period;
        let Some(executor) = self.agents[index]
            .executors
            .get_mut(&(framework_id.clone(), executor_id.clone()))
        else {
            return Vec::new();
        };
        if executor
            .connection
            .as_ref()
            .is_none_or(|c| c.id != connection_id)
        {
            return Vec::new();
        }
        executor.connection = None;
        tracing::info!(executor_id = %executor_id.value, "executor disconnected");
        if executor.framework_info.checkpoint.unwrap_or(false) {
            Vec::new()
        } else {
            shutdown_executor(index, executor, grace)
        }
    }

    /// The process of the executor in `container_id` started as `pid`.
    pub fn executor_spawned(
        &mut self,
        index: usize,
        container_id: &str,
        pid: u32,
        now: Instant,
    ) -> Vec<Effect> {
        let Some(executor) = self.agents[index]
            .executors
            .values_mut()
            .find(|e| e.container_id == container_id)
        else {
            // Its executor was forgotten meanwhile (its agent was lost): it must not run.
            return vec![Effect::KillExecutor {
                agent: index,
                pid,
                container_id: container_id.to_string(),
                grace: Duration::ZERO,
                terminate: false,
            }];
        };
        executor.pid = Some(pid);
        if executor.kill_requested {
            executor.kill_requested = false;
            return vec![Effect::KillExecutor {
                agent: index,
                pid,
                container_id: container_id.to_string(),
                grace: Duration::ZERO,
                terminate: false,
            }];
        }
        self.command_task_started(index, container_id, now);
        Vec::new()
    }

    /// The executor in `container_id` could not be started.
    pub fn executor_launch_failed(
        &mut self,
        index: usize,
        container_id: &str,
        message: &str,
        now: Instant,
    ) {
        tracing::warn!(container_id, message, "executor launch failed");
        self.executor_gone(
            index,
            container_id,
            None,
            task_status::Reason::ContainerLaunchFailed,
            message,
            now,
        );
    }

    /// The process of the executor in `container_id` exited with `wait_status`.
    pub fn executor_exited(
        &mut self,
        index: usize,
        container_id: &str,
        wait_status: i32,
        now: Instant,
    ) {
        let reason = self.agents[index]
            .executors
            .values()
            .find(|e| e.container_id == container_id)
            .map(|e| e.termination_reason)
            .unwrap_or(task_status::Reason::ExecutorTerminated);
        tracing::info!(container_id, wait_status, "executor exited");
        self.command_task_exited(index, container_id, wait_status, now);
        let message = match reason {
            task_status::Reason::ExecutorReregistrationTimeout => {
                "executor did not re-register within the re-registration timeout"
            }
            task_status::Reason::AgentRestarted => {
                "agent restarted and could not recover the executor"
            }
            _ => "executor terminated",
        };
        self.executor_gone(index, container_id, Some(wait_status), reason, message, now);
    }

    /// Removes an executor: its non-terminal tasks become TASK_FAILED (agent
    /// updates with a uuid), or TASK_LOST / TASK_GONE (partition-aware) when it was
    /// destroyed by an agent restart, and the framework gets a FAILURE event.
    fn executor_gone(
        &mut self,
        index: usize,
        container_id: &str,
        wait_status: Option<i32>,
        reason: task_status::Reason,
        message: &str,
        now: Instant,
    ) {
        let agent = &mut self.agents[index];
        let Some(key) = agent
            .executors
            .iter()
            .find(|(_, e)| e.container_id == container_id)
            .map(|(key, _)| key.clone())
        else {
            return;
        };
        let Some(executor) = agent.executors.remove(&key) else {
            return;
        };
        let (framework_id, executor_id) = key;
        if !self.frameworks.contains_key(&framework_id) {
            return;
        }
        let agent_id = self.agents[index].id.clone();
        let state = if !loses_tasks(reason) {
            TaskState::TaskFailed
        } else if self
            .frameworks
            .get(&framework_id)
            .is_some_and(|framework| framework.partition_aware())
        {
            TaskState::TaskGone
        } else {
            TaskState::TaskLost
        };
        let mut failed: Vec<_> = executor
            .tasks
            .iter()
            .filter(|(_, state)| !state.is_terminal())
            .map(|(task_id, _)| task_id.clone())
            .collect();
        failed.sort_by(|a, b| a.value.cmp(&b.value));
        for task_id in failed {
            let status = agent_status(&task_id, state, reason, message, &agent_id, &executor_id);
            self.push_agent_update(index, &framework_id, status, now);
        }
        if let Some(framework) = self.frameworks.get(&framework_id) {
            framework.send(scheduler::Event {
                r#type: Some(scheduler::event::Type::Failure as i32),
                failure: Some(scheduler::event::Failure {
                    agent_id: Some(agent_id),
                    executor_id: Some(executor_id),
                    status: wait_status,
                }),
                ..Default::default()
            });
        }
    }
}
