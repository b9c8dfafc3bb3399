//! Agent loss, as the Mesos master sees it.
//!
//! - [`Cluster::agent_lost`]: the agent's host is gone (crash, partition that
//!   never heals). Its executors and their processes are gone with it (killed, no
//!   updates), its unacknowledged updates are lost, and its outstanding offers are
//!   rescinded. The master does not know yet: the agent is `Disconnected` and its
//!   tasks keep their last known state until `agent_removal_timeout` has passed
//!   (Mesos: 5 missed pings of 15 s). Then the agent is `Unreachable`: each of its
//!   non-terminal tasks gets a master update (no uuid, source SOURCE_MASTER, reason
//!   REASON_AGENT_REMOVED) TASK_UNREACHABLE with `unreachable_time` for
//!   PARTITION_AWARE frameworks, which keep knowing the task, TASK_LOST for the
//!   others, which forget it; and every framework gets a FAILURE event naming the
//!   agent.
//! - [`Cluster::agent_gone`]: the operator marks the agent gone; at once, its tasks
//!   become TASK_GONE_BY_OPERATOR (REASON_AGENT_REMOVED_BY_OPERATOR) for
//!   PARTITION_AWARE frameworks, TASK_LOST for the others, and are forgotten.
//!
//! Explicit reconciliation of a task the master does not know answers by the state
//! of the agent named (§1.10): TASK_UNREACHABLE on an unreachable agent,
//! TASK_GONE_BY_OPERATOR on a gone one, TASK_GONE on a registered one and
//! TASK_UNKNOWN on an unknown one (TASK_LOST to frameworks that are not
//! PARTITION_AWARE). A lost agent never comes back.

use std::time::{Duration, Instant};

use mesos_stateful_proto::v1::{self, scheduler, task_status, AgentId, FrameworkId, TaskState};

use super::{master_status, timestamp, AgentPhase, Cluster, Effect};

/// The state a reconciliation of a task unknown to the master reports, by what
/// the master knows of the agent named (`None`: no such agent).
pub(super) fn unknown_task_state(partition_aware: bool, agent: Option<AgentPhase>) -> TaskState {
    if !partition_aware {
        return TaskState::TaskLost;
    }
    match agent {
        None => TaskState::TaskUnknown,
        Some(AgentPhase::Unreachable { .. }) => TaskState::TaskUnreachable,
        Some(AgentPhase::Gone) => TaskState::TaskGoneByOperator,
        Some(_) => TaskState::TaskGone,
    }
}

impl Cluster {
    /// Agent `index` is lost: see the module documentation. Returns the kills of
    /// its executors' processes; does nothing if it is already lost.
    pub fn agent_lost(&mut self, index: usize, now: Instant) -> Vec<Effect> {
        let deadline = now + self.settings.agent_removal_timeout;
        let Some(agent) = self.agents.get_mut(index) else {
            return Vec::new();
        };
        if agent.phase.is_lost() {
            return Vec::new();
        }
        tracing::info!(agent_id = %agent.id.value, "agent lost");
        agent.phase = AgentPhase::Disconnected { deadline };
        let effects = self.forget_agent_state(index);
        self.rescind_offers_on(index);
        effects
    }

    /// The operator marks agent `index` gone: see the module documentation.
    pub fn agent_gone(&mut self, index: usize) -> Vec<Effect> {
        let Some(agent) = self.agents.get_mut(index) else {
            return Vec::new();
        };
        if agent.phase == AgentPhase::Gone {
            return Vec::new();
        }
        tracing::info!(agent_id = %agent.id.value, "agent marked gone");
        agent.phase = AgentPhase::Gone;
        let effects = self.forget_agent_state(index);
        self.rescind_offers_on(index);
        self.report_agent_tasks(
            index,
            TaskState::TaskGoneByOperator,
            task_status::Reason::AgentRemovedByOperator,
        );
        effects
    }

    /// Declares the disconnected agents whose deadline has passed unreachable.
    pub(super) fn declare_unreachable(&mut self, now: Instant) {
        for index in 0..self.agents.len() {
            let AgentPhase::Disconnected { deadline } = self.agents[index].phase else {
                continue;
            };
            if deadline > now {
                continue;
            }
            let since = timestamp();
            let since_nanos = (since * 1e9) as i64;
            tracing::warn!(agent_id = %self.agents[index].id.value, "agent unreachable");
            self.agents[index].phase = AgentPhase::Unreachable { since_nanos };
            self.report_agent_tasks(
                index,
                TaskState::TaskUnreachable,
                task_status::Reason::AgentRemoved,
            );
        }
    }

    /// The agent's executors, their processes, simulated tasks and pending updates
    /// disappear with it.
    fn forget_agent_state(&mut self, index: usize) -> Vec<Effect> {
        let agent = &mut self.agents[index];
        let mut effects = Vec::new();
        for executor in agent.executors.values() {
            if let Some(pid) = executor.pid {
                effects.push(Effect::KillExecutor {
                    agent: index,
                    pid,
                    container_id: executor.container_id.clone(),
                    grace: Duration::ZERO,
                    terminate: false,
                });
            }
        }
        // Dropping the executors drops their connections; a process that has not
        // started yet is killed when it reports its pid.
        agent.executors.clear();
        agent.updates = crate::status_updates::StatusUpdateManager::new(
            self.settings.status_update_retry_interval,
        );
        if let Some(simulation) = &mut agent.simulation {
            *simulation = super::simulated::Simulation::default();
        }
        effects
    }

    /// Rescinds every outstanding offer of agent `index`.
    fn rescind_offers_on(&mut self, index: usize) {
        let rescinded: Vec<(v1::OfferId, FrameworkId)> = self
            .offers
            .iter()
            .filter(|(_, offer)| offer.agent == index)
            .map(|(id, offer)| (id.clone(), offer.framework_id.clone()))
            .collect();
        for (offer_id, framework_id) in rescinded {
            self.offers.remove(&offer_id);
            if let Some(framework) = self.frameworks.get(&framework_id) {
                framework.send(scheduler::Event {
                    r#type: Some(scheduler::event::Type::Rescind as i32),
                    rescind: Some(scheduler::event::Rescind { offer_id }),
                    ..Default::default()
                });
            }
        }
    }

    /// Reports the non-terminal tasks of lost agent `index` to their frameworks:
    /// `partition_aware_state` to PARTITION_AWARE frameworks (an UNREACHABLE task
    /// stays known), TASK_LOST to the others, both with `reason`. Every framework
    /// then gets a FAILURE naming the agent.
    fn report_agent_tasks(
        &mut self,
        index: usize,
        partition_aware_state: TaskState,
        reason: task_status::Reason,
    ) {
        let agent_id: AgentId = self.agents[index].id.clone();
        let unreachable_time = match self.agents[index].phase {
            AgentPhase::Unreachable { since_nanos } => Some(v1::TimeInfo {
                nanoseconds: since_nanos,
            }),
            _ => None,
        };
        let mut keys: Vec<(FrameworkId, v1::TaskId)> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.agent == index && !task.is_terminal())
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort_by(|a, b| (&a.0.value, &a.1.value).cmp(&(&b.0.value, &b.1.value)));
        for key in keys {
            let (framework_id, task_id) = &key;
            let partition_aware = self
                .frameworks
                .get(framework_id)
                .is_some_and(|f| f.partition_aware());
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            let state = if partition_aware {
                partition_aware_state
            } else {
                TaskState::TaskLost
            };
            let mut status = master_status(
                task_id,
                state,
                reason,
                format!("agent {} is lost", agent_id.value),
                Some(agent_id.clone()),
            );
            status.executor_id = task.executor_id.clone();
            if state == TaskState::TaskUnreachable {
                status.unreachable_time = unreachable_time;
                task.status = status.clone();
            } else {
                self.tasks.remove(&key);
            }
            self.send_master_update(framework_id, status);
        }
        for framework in self.frameworks.values() {
            framework.send(scheduler::Event {
                r#type: Some(scheduler::event::Type::Failure as i32),
                failure: Some(scheduler::event::Failure {
                    agent_id: Some(agent_id.clone()),
                    executor_id: None,
                    status: None,
                }),
                ..Default::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_task_answers_follow_the_agent_state() {
        let running = Some(AgentPhase::Running);
        let unreachable = Some(AgentPhase::Unreachable { since_nanos: 1 });
        let gone = Some(AgentPhase::Gone);
        let cases = [
            (true, running, TaskState::TaskGone),
            (true, unreachable, TaskState::TaskUnreachable),
            (true, gone, TaskState::TaskGoneByOperator),
            (true, None, TaskState::TaskUnknown),
            (false, running, TaskState::TaskLost),
            (false, unreachable, TaskState::TaskLost),
            (false, gone, TaskState::TaskLost),
            (false, None, TaskState::TaskLost),
        ];
        for (partition_aware, agent, expected) in cases {
            assert_eq!(
                unknown_task_state(partition_aware, agent),
                expected,
                "{partition_aware} {agent:?}"
            );
        }
    }
}
