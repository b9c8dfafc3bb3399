//! Carrying out the actions workloads return, shared by the Creator, the Maintainer
//! and the operations: persist what they change in one atomic write, then queue the
//! members they start. Commands are returned to the caller, which sends them through
//! the Maintainer's command book (re-sent until answered).

use crate::domain::actions::{plan_actions, CommandOrder};
use crate::workload::{Action, Workload};
use crate::ActorError;

use super::buffer_manager::BufferManagerHandle;
use super::state_manager::{InstanceState, StateManagerHandle};

/// Persists what `actions` change in `state`, then queues what they start. Returns
/// the state after the actions and the commands they ask for.
pub(crate) async fn carry_out(
    store: &StateManagerHandle,
    buffer: &BufferManagerHandle,
    workload: &dyn Workload,
    mut state: InstanceState,
    actions: Vec<Action>,
) -> Result<(InstanceState, Vec<CommandOrder>), ActorError> {
    if actions.is_empty() {
        return Ok((state, Vec::new()));
    }
    let trace_parent = crate::telemetry::traceparent(&tracing::Span::current());
    let plan = plan_actions(
        &mut state.instance,
        &mut state.tasks,
        actions,
        workload,
        trace_parent.as_deref(),
    );
    let instances = if plan.instance_changed {
        vec![state.instance.clone()]
    } else {
        Vec::new()
    };
    let tasks: Vec<_> = plan
        .changed_tasks
        .iter()
        .filter_map(|ordinal| state.tasks.get(ordinal).cloned())
        .collect();
    if !instances.is_empty() || !tasks.is_empty() {
        store.write(instances, tasks).await?;
        // The cache bumped the versions; read them back so later writes build on them.
        if let Some(fresh) = store.get(&state.instance.name).await? {
            state.instance = fresh.instance;
            state.tasks = fresh.tasks;
        }
    }
    if plan.promotions > 0 {
        buffer
            .metrics()
            .promotions
            .inc_by(u64::from(plan.promotions));
    }
    if !plan.jobs.is_empty() {
        buffer.queue_launch(plan.jobs);
    }
    Ok((state, plan.commands))
}
