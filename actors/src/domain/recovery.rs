//! Recovery of lost members: when to relaunch a member whose task is gone, and
//! whether in place or elsewhere.
//!
//! A member whose task ended (failed, killed, finished, lost, or gone from a
//! registered agent) is relaunched *in place* as a new incarnation once its backoff
//! has passed:
//! the backoff doubles with each consecutive failure, from `backoff_initial` up to
//! `backoff_max`. In place means the member keeps everything that binds it (its
//! role, and a bound agent and volume once it has one), so the offer matching puts it
//! back where its data is. A member whose agent is unreachable (TASK_UNREACHABLE) is
//! left alone until `replace_after` has passed, in case the agent comes back; then it
//! is *replaced*: relaunched without its binding, on any agent. A member whose agent
//! is gone for good (TASK_GONE_BY_OPERATOR: removed by an operator; TASK_UNKNOWN: the
//! master does not know the agent) is replaced after its backoff: there is nothing to
//! wait for. (TASK_GONE is what reconciliation answers for a task unknown on a
//! registered agent, e.g. a launch lost in a crash: the agent is there, so in place.) The Maintainer applies these decisions on every recovery tick, so they also
//! hold after a scheduler restart (the times are persisted in the task records).

use std::time::Duration;

use mesos_stateful_proto::v1::TaskState;
use mesos_stateful_store::records::TaskRecord;

/// Timing of relaunches and replacements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Wait before the first relaunch of a member.
    pub backoff_initial: Duration,
    /// Longest wait between relaunches; a task that ran this long before ending
    /// counts as a first failure again.
    pub backoff_max: Duration,
    /// How long a member's agent may stay gone before the member is replaced on
    /// another agent.
    pub replace_after: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            replace_after: Duration::from_secs(300),
        }
    }
}

impl RecoveryConfig {
    /// The wait before relaunching a member after `failures` consecutive failures.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }
}

/// What to do now with one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Relaunch a new incarnation with the member's binding.
    RelaunchInPlace,
    /// Relaunch a new incarnation anywhere: its agent stayed gone.
    ReplaceElsewhere,
}

/// Whether a task state means its agent is gone for good.
pub fn agent_gone(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::TaskGoneByOperator | TaskState::TaskUnknown
    )
}

/// The recovery due for `task` at `now_ms`, if any: `None` while the task is live,
/// waits for an offer, or its backoff or replace timeout has not passed.
pub fn plan(task: &TaskRecord, now_ms: u64, config: &RecoveryConfig) -> Option<Recovery> {
    let state = TaskState::from_str_name(task.state.as_deref()?)?;
    if !super::lifecycle::is_gone(state) {
        return None;
    }
    let ended = task.ended_at_ms.unwrap_or(0);
    if state == TaskState::TaskUnreachable {
        let due = ended.saturating_add(config.replace_after.as_millis() as u64);
        return (now_ms >= due).then_some(Recovery::ReplaceElsewhere);
    }
    let due = ended.saturating_add(config.backoff(task.failures).as_millis() as u64);
    if now_ms < due {
        return None;
    }
    Some(if agent_gone(state) {
        Recovery::ReplaceElsewhere
    } else {
        Recovery::RelaunchInPlace
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_store::records::Role;

    fn config() -> RecoveryConfig {
        RecoveryConfig {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            replace_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let c = config();
        let seconds: Vec<u64> = (0..7).map(|f| c.backoff(f).as_secs()).collect();
        assert_eq!(seconds, [1, 1, 2, 4, 8, 8, 8]);
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(8));
    }

    #[test]
    fn plans_relaunches_and_replacements() {
        let check = |state: Option<&str>, failures, ended: Option<u64>, now, expected| {
            let mut task = TaskRecord::waiting("c", 1, Role::Replica, 1);
            task.state = state.map(String::from);
            task.failures = failures;
            task.ended_at_ms = ended;
            assert_eq!(
                plan(&task, now, &config()),
                expected,
                "{state:?} failures={failures} ended={ended:?} now={now}"
            );
        };
        use Recovery::*;
        // State, failures, ended at, now, expected.
        type Row = (
            Option<&'static str>,
            u32,
            Option<u64>,
            u64,
            Option<Recovery>,
        );
        #[rustfmt::skip]
        let table: [Row; 16] = [
            (None, 0, None, 10_000, None),
            (Some("TASK_RUNNING"), 0, None, 10_000, None),
            (Some("TASK_STAGING"), 0, None, 10_000, None),
            (Some("TASK_FAILED"), 1, Some(10_000), 10_500, None),
            (Some("TASK_FAILED"), 1, Some(10_000), 11_000, Some(RelaunchInPlace)),
            (Some("TASK_FAILED"), 3, Some(10_000), 13_000, None),
            (Some("TASK_FAILED"), 3, Some(10_000), 14_000, Some(RelaunchInPlace)),
            (Some("TASK_KILLED"), 1, Some(0), 1_000, Some(RelaunchInPlace)),
            (Some("TASK_LOST"), 1, Some(0), 1_000, Some(RelaunchInPlace)),
            // Reconciliation of a launch lost in a crash: the agent is there.
            (Some("TASK_GONE"), 1, Some(0), 1_000, Some(RelaunchInPlace)),
            (Some("TASK_UNREACHABLE"), 1, Some(0), 29_999, None),
            (Some("TASK_UNREACHABLE"), 1, Some(0), 30_000, Some(ReplaceElsewhere)),
            (Some("TASK_UNKNOWN"), 1, Some(0), 999, None),
            (Some("TASK_UNKNOWN"), 1, Some(0), 1_000, Some(ReplaceElsewhere)),
            (Some("TASK_GONE_BY_OPERATOR"), 1, Some(0), 1_000, Some(ReplaceElsewhere)),
            (Some("TASK_GONE_BY_OPERATOR"), 2, Some(0), 1_000, None),
        ];
        for (state, failures, ended, now, expected) in table {
            check(state, failures, ended, now, expected);
        }
    }
}
