//! Simulated agents: agents that run no process and answer for their tasks as a
//! well-behaved executor would.
//!
//! A task launched on a simulated agent (command task or custom executor alike) gets
//! TASK_STARTING at once and TASK_RUNNING `Settings::simulated_task_delay` later; a
//! KILL gives TASK_KILLING (to frameworks with the TASK_KILLING_STATE capability) and
//! TASK_KILLED; a SHUTDOWN of its executor gives TASK_KILLED to each of its tasks and
//! a FAILURE event. Every such update is an executor update (source
//! SOURCE_EXECUTOR, with a uuid) that goes through the agent's status update
//! manager, so it is resent until acknowledged exactly as on a real agent.
//!
//! A custom executor "runs" (holds its resources and is listed in offers'
//! `executor_ids`) from its first task until it has no live task left.
//!
//! Pending TASK_RUNNING transitions wait in the cluster's ordered timer map, so a
//! tick only looks at the transitions that are due.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use mesos_stateful_proto::v1::{
    self, scheduler, task_status, AgentId, ExecutorId, FrameworkId, TaskId, TaskInfo, TaskState,
    TaskStatus,
};

use super::{new_uuid_bytes, timestamp, Cluster, Task};
use crate::resources::ResourceSet;

/// What a simulated agent pretends to run.
#[derive(Debug, Default)]
pub struct Simulation {
    executors: HashMap<(FrameworkId, ExecutorId), SimulatedExecutor>,
    tasks: HashMap<(FrameworkId, TaskId), SimulatedTask>,
}

#[derive(Debug)]
struct SimulatedExecutor {
    resources: ResourceSet,
    /// Its non-terminal tasks.
    live: HashSet<TaskId>,
}

#[derive(Debug)]
struct SimulatedTask {
    /// The custom executor's ID, or the task's own for a command task.
    executor_id: ExecutorId,
    /// Whether the executor is a custom one (an entry of `executors`).
    custom_executor: bool,
    state: TaskState,
}

/// A due state change of a task on a simulated agent.
#[derive(Debug)]
pub struct Transition {
    agent: usize,
    framework_id: FrameworkId,
    task_id: TaskId,
    to: TaskState,
}

impl Simulation {
    /// Takes the resources of the running custom executors out of `free`.
    pub fn subtract_executors(&self, free: &mut ResourceSet) {
        for executor in self.executors.values() {
            free.subtract(&executor.resources);
        }
    }

    /// The IDs of the framework's running custom executors.
    pub fn executor_ids(&self, framework_id: &FrameworkId) -> Vec<ExecutorId> {
        self.executors
            .keys()
            .filter(|(fid, _)| fid == framework_id)
            .map(|(_, eid)| eid.clone())
            .collect()
    }

    /// Whether the executor (custom, or a command task's) is running.
    pub fn has_executor(&self, framework_id: &FrameworkId, executor_id: &ExecutorId) -> bool {
        let key = (framework_id.clone(), executor_id.clone());
        self.executors.contains_key(&key)
            || self
                .tasks
                .get(&(
                    framework_id.clone(),
                    TaskId {
                        value: executor_id.value.clone(),
                    },
                ))
                .is_some_and(|task| !task.custom_executor)
    }

    /// Forgets everything of a removed framework.
    pub fn remove_framework(&mut self, framework_id: &FrameworkId) {
        self.executors.retain(|(fid, _), _| fid != framework_id);
        self.tasks.retain(|(fid, _), _| fid != framework_id);
    }

    /// Records a new state of a task; a terminal one forgets the task and, with its
    /// last task, the custom executor. Returns the task's executor ID, or `None` if
    /// the task is not running here.
    fn set_state(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: TaskState,
    ) -> Option<ExecutorId> {
        let key = (framework_id.clone(), task_id.clone());
        let task = self.tasks.get_mut(&key)?;
        task.state = state;
        let executor_id = task.executor_id.clone();
        if state.is_terminal() {
            let custom = task.custom_executor;
            self.tasks.remove(&key);
            if custom {
                let executor_key = (framework_id.clone(), executor_id.clone());
                if let Some(executor) = self.executors.get_mut(&executor_key) {
                    executor.live.remove(task_id);
                    if executor.live.is_empty() {
                        self.executors.remove(&executor_key);
                    }
                }
            }
        }
        Some(executor_id)
    }

    fn state(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Option<TaskState> {
        self.tasks
            .get(&(framework_id.clone(), task_id.clone()))
            .map(|task| task.state)
    }
}

/// An update of the simulated executor (source SOURCE_EXECUTOR, with a uuid).
fn simulated_status(
    task_id: &TaskId,
    state: TaskState,
    reason: Option<task_status::Reason>,
    agent_id: &AgentId,
    executor_id: &ExecutorId,
) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        state: state as i32,
        source: Some(task_status::Source::Executor as i32),
        reason: reason.map(|r| r as i32),
        agent_id: Some(agent_id.clone()),
        executor_id: Some(executor_id.clone()),
        timestamp: Some(timestamp()),
        uuid: Some(new_uuid_bytes()),
        ..Default::default()
    }
}

impl Cluster {
    /// Records a validated task on simulated agent `index`: TASK_STARTING now,
    /// TASK_RUNNING after the simulated delay.
    pub(super) fn launch_simulated_task(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        task: TaskInfo,
        now: Instant,
    ) {
        let agent_id = self.agents[index].id.clone();
        let (executor_id, custom_executor) = match &task.executor {
            Some(executor) => (executor.executor_id.clone(), true),
            None => (
                ExecutorId {
                    value: task.task_id.value.clone(),
                },
                false,
            ),
        };
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
        let Some(simulation) = self.agents[index].simulation.as_mut() else {
            return;
        };
        if let Some(executor) = &task.executor {
            let executor_resources =
                ResourceSet::from_resources(&executor.resources).unwrap_or_default();
            simulation
                .executors
                .entry((framework_id.clone(), executor_id.clone()))
                .or_insert_with(|| SimulatedExecutor {
                    resources: executor_resources,
                    live: HashSet::new(),
                })
                .live
                .insert(task.task_id.clone());
        }
        simulation.tasks.insert(
            (framework_id.clone(), task.task_id.clone()),
            SimulatedTask {
                executor_id: executor_id.clone(),
                custom_executor,
                state: TaskState::TaskStarting,
            },
        );
        tracing::debug!(task_id = %task.task_id.value, agent = index, "task launched on a simulated agent");
        let status = simulated_status(
            &task.task_id,
            TaskState::TaskStarting,
            None,
            &agent_id,
            &executor_id,
        );
        self.push_agent_update(index, framework_id, status, now);
        self.next_transition += 1;
        self.simulated_transitions.insert(
            (
                now + self.settings.simulated_task_delay,
                self.next_transition,
            ),
            Transition {
                agent: index,
                framework_id: framework_id.clone(),
                task_id: task.task_id,
                to: TaskState::TaskRunning,
            },
        );
    }

    /// Applies the simulated transitions due at `now`. A transition of a task that
    /// has been killed (or forgotten) meanwhile is dropped.
    pub(super) fn run_simulated_transitions(&mut self, now: Instant) {
        while let Some(entry) = self.simulated_transitions.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let transition = entry.remove();
            let Some(simulation) = self
                .agents
                .get_mut(transition.agent)
                .and_then(|agent| agent.simulation.as_mut())
            else {
                continue;
            };
            let current = simulation.state(&transition.framework_id, &transition.task_id);
            if current != Some(TaskState::TaskStarting) {
                continue;
            }
            let Some(executor_id) =
                simulation.set_state(&transition.framework_id, &transition.task_id, transition.to)
            else {
                continue;
            };
            let agent_id = self.agents[transition.agent].id.clone();
            let status = simulated_status(
                &transition.task_id,
                transition.to,
                None,
                &agent_id,
                &executor_id,
            );
            self.push_agent_update(transition.agent, &transition.framework_id, status, now);
        }
    }

    /// KILL of a task on simulated agent `index`: TASK_KILLING (if the framework
    /// understands it), then TASK_KILLED.
    pub(super) fn kill_simulated_task(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        now: Instant,
    ) {
        let killing_capable = self.frameworks.get(framework_id).is_some_and(|f| {
            f.has_capability(v1::framework_info::capability::Type::TaskKillingState)
        });
        let agent_id = self.agents[index].id.clone();
        let Some(simulation) = self.agents[index].simulation.as_mut() else {
            return;
        };
        if simulation.state(framework_id, task_id).is_none() {
            return;
        }
        let mut statuses = Vec::new();
        if killing_capable {
            if let Some(executor_id) =
                simulation.set_state(framework_id, task_id, TaskState::TaskKilling)
            {
                statuses.push(simulated_status(
                    task_id,
                    TaskState::TaskKilling,
                    None,
                    &agent_id,
                    &executor_id,
                ));
            }
        }
        if let Some(executor_id) =
            simulation.set_state(framework_id, task_id, TaskState::TaskKilled)
        {
            statuses.push(simulated_status(
                task_id,
                TaskState::TaskKilled,
                None,
                &agent_id,
                &executor_id,
            ));
        }
        tracing::debug!(task_id = %task_id.value, agent = index, "task killed on a simulated agent");
        for status in statuses {
            self.push_agent_update(index, framework_id, status, now);
        }
    }

    /// SHUTDOWN of an executor on simulated agent `index`: its tasks become
    /// TASK_KILLED (REASON_EXECUTOR_TERMINATED) and the framework gets a FAILURE
    /// event. Returns false if no such executor runs there.
    pub(super) fn shutdown_simulated_executor(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        now: Instant,
    ) -> bool {
        let agent_id = self.agents[index].id.clone();
        let Some(simulation) = self.agents[index].simulation.as_mut() else {
            return false;
        };
        if !simulation.has_executor(framework_id, executor_id) {
            return false;
        }
        let mut tasks: Vec<TaskId> = simulation
            .tasks
            .iter()
            .filter(|((fid, _), task)| fid == framework_id && task.executor_id == *executor_id)
            .map(|((_, task_id), _)| task_id.clone())
            .collect();
        tasks.sort_by(|a, b| a.value.cmp(&b.value));
        let mut statuses = Vec::new();
        for task_id in tasks {
            simulation.set_state(framework_id, &task_id, TaskState::TaskKilled);
            statuses.push(simulated_status(
                &task_id,
                TaskState::TaskKilled,
                Some(task_status::Reason::ExecutorTerminated),
                &agent_id,
                executor_id,
            ));
        }
        simulation
            .executors
            .remove(&(framework_id.clone(), executor_id.clone()));
        for status in statuses {
            self.push_agent_update(index, framework_id, status, now);
        }
        if let Some(framework) = self.frameworks.get(framework_id) {
            framework.send(scheduler::Event {
                r#type: Some(scheduler::event::Type::Failure as i32),
                failure: Some(scheduler::event::Failure {
                    agent_id: Some(agent_id),
                    executor_id: Some(executor_id.clone()),
                    status: Some(0),
                }),
                ..Default::default()
            });
        }
        true
    }
}
