//! Agent restarts: the agent goes down, comes back recovering, waits for its
//! executors to re-subscribe and destroys those that did not.
//!
//! This follows a Mesos agent restarted with checkpointing and `--recover=reconnect`:
//! - Going down drops every executor's subscription stream; the executor processes
//!   keep running (in this simulation they are not children that die with the agent).
//!   Executors of frameworks without checkpointing cannot be recovered: they are
//!   killed, and their tasks become TASK_LOST (TASK_GONE for partition-aware
//!   frameworks) with REASON_AGENT_RESTARTED.
//! - Coming back starts recovery: SUBSCRIBE works (re-registration), UPDATE and
//!   MESSAGE are answered 503 until recovery completes, which is
//!   `executor_reregistration_timeout` after the agent came back.
//! - When recovery completes, executors that did not re-subscribe are killed; their
//!   non-terminal tasks become TASK_LOST (TASK_GONE for partition-aware frameworks)
//!   with REASON_EXECUTOR_REREGISTRATION_TIMEOUT once their processes exit.
//!
//! The master keeps the agent registered throughout: a short restart is not an agent
//! loss. The built-in command executors live inside the agent and are considered
//! re-registered at once.

use std::time::{Duration, Instant};

use mesos_stateful_proto::v1::task_status;

use super::{kill_executor, Cluster, Effect};

/// Where an agent is in a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentPhase {
    /// Serving normally. Goes to `Down` when a restart begins.
    Running,
    /// The agent process is gone: its executor API does not listen and its status
    /// updates are not retried. Goes to `Recovering` when the agent comes back.
    Down,
    /// The agent is back and waits until `until` for executors to re-subscribe;
    /// UPDATE and MESSAGE calls are refused with 503. Goes to `Running` when `until`
    /// has passed.
    Recovering {
        /// When recovery completes.
        until: Instant,
    },
    /// The agent's host is lost (see `agent_loss`): the master has not noticed
    /// yet and declares the agent unreachable at `deadline`.
    Disconnected {
        /// When the agent is declared unreachable.
        deadline: Instant,
    },
    /// Declared unreachable; its tasks were reported unreachable (or lost).
    Unreachable {
        /// When, in nanoseconds since the epoch (`TaskStatus.unreachable_time`).
        since_nanos: i64,
    },
    /// Removed by the operator (marked gone); its tasks were reported gone.
    Gone,
}

impl AgentPhase {
    /// Whether executors' UPDATE and MESSAGE calls are accepted.
    pub fn can_accept_executor_calls(self) -> bool {
        self == AgentPhase::Running
    }

    /// Whether a restart may begin.
    pub fn can_restart(self) -> bool {
        self == AgentPhase::Running
    }

    /// Whether the agent is lost for good (disconnected, unreachable or gone).
    pub fn is_lost(self) -> bool {
        matches!(
            self,
            AgentPhase::Disconnected { .. } | AgentPhase::Unreachable { .. } | AgentPhase::Gone
        )
    }

    /// Whether the agent runs and retries its status updates.
    pub fn is_up(self) -> bool {
        matches!(self, AgentPhase::Running | AgentPhase::Recovering { .. })
    }
}

impl Cluster {
    /// The phase of agent `index` (`None` if there is no such agent).
    pub fn agent_phase(&self, index: usize) -> Option<AgentPhase> {
        self.agents.get(index).map(|agent| agent.phase)
    }

    /// Agent `index` goes down: every executor stream is dropped, executors of
    /// checkpointing frameworks are awaited for re-registration, the others are
    /// killed. Does nothing unless the agent is running.
    pub fn agent_down(&mut self, index: usize) -> Vec<Effect> {
        let Some(agent) = self.agents.get_mut(index) else {
            return Vec::new();
        };
        if !agent.phase.can_restart() {
            return Vec::new();
        }
        agent.phase = AgentPhase::Down;
        tracing::info!(agent_id = %agent.id.value, "agent going down for a restart");
        let mut effects = Vec::new();
        for executor in agent.executors.values_mut() {
            if executor.command_task.is_some() {
                continue;
            }
            // Dropping the sender ends the HTTP stream, as the agent process dying would.
            executor.connection = None;
            if executor.shutting_down {
                continue;
            }
            if executor.framework_info.checkpoint.unwrap_or(false) {
                executor.awaiting_reregistration = true;
            } else {
                tracing::info!(executor_id = %executor.info.executor_id.value, "executor without checkpointing cannot be recovered, killing it");
                executor.termination_reason = task_status::Reason::AgentRestarted;
                effects.extend(kill_executor(index, executor, Duration::ZERO));
            }
        }
        effects
    }

    /// Agent `index` is back: recovery runs until `executor_reregistration_timeout`
    /// from `now`. Does nothing unless the agent is down.
    pub fn agent_back(&mut self, index: usize, now: Instant) {
        let timeout = self.settings.executor_reregistration_timeout;
        let Some(agent) = self.agents.get_mut(index) else {
            return;
        };
        if agent.phase != AgentPhase::Down {
            return;
        }
        tracing::info!(agent_id = %agent.id.value, "agent back, recovering");
        agent.phase = AgentPhase::Recovering {
            until: now + timeout,
        };
    }

    /// Completes the recoveries whose time has come: executors that did not
    /// re-subscribe are killed.
    pub(super) fn finish_recoveries(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (index, agent) in self.agents.iter_mut().enumerate() {
            let AgentPhase::Recovering { until } = agent.phase else {
                continue;
            };
            if until > now {
                continue;
            }
            agent.phase = AgentPhase::Running;
            tracing::info!(agent_id = %agent.id.value, "agent recovery complete");
            for executor in agent.executors.values_mut() {
                if !executor.awaiting_reregistration {
                    continue;
                }
                executor.awaiting_reregistration = false;
                if executor.shutting_down {
                    continue;
                }
                tracing::warn!(executor_id = %executor.info.executor_id.value, "executor did not re-subscribe in time, killing it");
                executor.termination_reason = task_status::Reason::ExecutorReregistrationTimeout;
                effects.extend(kill_executor(index, executor, Duration::ZERO));
            }
        }
        effects
    }
}

/// Whether an executor destroyed for `reason` loses its tasks (TASK_LOST or
/// TASK_GONE) rather than failing them: the agent cannot know what became of them.
pub(super) fn loses_tasks(reason: task_status::Reason) -> bool {
    matches!(
        reason,
        task_status::Reason::ExecutorReregistrationTimeout | task_status::Reason::AgentRestarted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_predicates() {
        let now = Instant::now();
        let cases = [
            (AgentPhase::Running, true, true),
            (AgentPhase::Down, false, false),
            (AgentPhase::Recovering { until: now }, false, false),
        ];
        for (phase, calls, restart) in cases {
            assert_eq!(phase.can_accept_executor_calls(), calls, "{phase:?}");
            assert_eq!(phase.can_restart(), restart, "{phase:?}");
        }
    }

    #[test]
    fn reasons_that_lose_tasks() {
        let cases = [
            (task_status::Reason::ExecutorReregistrationTimeout, true),
            (task_status::Reason::AgentRestarted, true),
            (task_status::Reason::ExecutorTerminated, false),
            (task_status::Reason::ExecutorRegistrationTimeout, false),
        ];
        for (reason, expected) in cases {
            assert_eq!(loses_tasks(reason), expected, "{reason:?}");
        }
    }
}
