//! Carrying out the actions workloads return, shared by the Creator and the
//! operations (the Maintainer folds them into the write of the update that caused
//! them): persist what they change in one atomic write, then queue the members they
//! start. Commands are returned to the caller, which sends them through
//! the Maintainer's command book (re-sent until answered).

use crate::domain::actions::{plan_actions, CommandOrder};
use crate::domain::offers::LaunchJob;
use crate::workload::{Action, Workload};
use crate::ActorError;

use super::buffer_manager::BufferManagerHandle;
use super::state_manager::{retry_on_moved, InstanceState, StateManagerHandle};

/// Persists what `actions` change in `state`, then queues what they start. Returns
/// the state after the actions and the commands they ask for. When the instance
/// changed since `state` was read, the actions are planned again on a fresh read.
pub(crate) async fn carry_out(
    store: &StateManagerHandle,
    buffer: &BufferManagerHandle,
    workload: &dyn Workload,
    state: InstanceState,
    actions: Vec<Action>,
) -> Result<(InstanceState, Vec<CommandOrder>), ActorError> {
    if actions.is_empty() {
        return Ok((state, Vec::new()));
    }
    let trace_parent = crate::telemetry::traceparent(&tracing::Span::current());
    let name = state.instance.name.clone();
    let mut read = Some(state);
    let (state, plan) = retry_on_moved(|| {
        let first = read.take();
        let actions = actions.clone();
        let trace_parent = trace_parent.clone();
        let name = name.clone();
        async move {
            let mut state = match first {
                Some(state) => state,
                None => store
                    .get(&name)
                    .ok_or_else(|| ActorError::NotFound(name.clone()))?,
            };
            let plan = plan_actions(
                &mut state.instance,
                &mut state.tasks,
                actions,
                workload,
                trace_parent.as_deref(),
            );
            let (instances, tasks) = plan.records(&state.instance, &state.tasks);
            if !instances.is_empty() || !tasks.is_empty() {
                store.write(instances, tasks).await?;
                // The cache bumped the versions; read them back so later writes
                // build on them.
                if let Some(fresh) = store.get(&name) {
                    state.instance = fresh.instance;
                    state.tasks = fresh.tasks;
                }
            }
            Ok::<_, ActorError>((state, plan))
        }
    })
    .await?;
    after_write(buffer, plan.promotions, plan.jobs);
    Ok((state, plan.commands))
}

/// What follows a durable plan: count its promotions and queue its launches.
pub(crate) fn after_write(buffer: &BufferManagerHandle, promotions: u32, jobs: Vec<LaunchJob>) {
    if promotions > 0 {
        buffer.metrics().promotions.inc_by(u64::from(promotions));
    }
    if !jobs.is_empty() {
        buffer.queue_launch(jobs);
    }
}
