//! Carrying out the actions workloads return, shared by the Creator and the Maintainer.

use mesos_stateful_store::records::{task_id, InstanceStatus, Role, TaskRecord, SCHEMA_VERSION};

use crate::domain::offers::LaunchJob;
use crate::workload::Action;
use crate::ActorError;

use super::buffer_manager::BufferManagerHandle;
use super::state_manager::{InstanceState, StateManagerHandle};

/// Persists what `actions` change in `state`, then queues what they start.
pub(crate) async fn carry_out(
    store: &StateManagerHandle,
    buffer: &BufferManagerHandle,
    mut state: InstanceState,
    actions: Vec<Action>,
) -> Result<(), ActorError> {
    let trace_parent = crate::telemetry::traceparent(&tracing::Span::current());
    for action in actions {
        match action {
            Action::StartReplicas => {
                let spec = &state.instance.spec;
                let name = state.instance.name.clone();
                let new: Vec<TaskRecord> = (1..=spec.replicas)
                    .filter(|ordinal| !state.tasks.contains_key(ordinal))
                    .map(|ordinal| TaskRecord {
                        schema: SCHEMA_VERSION,
                        instance: name.clone(),
                        ordinal,
                        role: Role::Replica,
                        incarnation: 1,
                        task_id: task_id(&name, ordinal, 1),
                        agent_id: None,
                        hostname: None,
                        port: None,
                        state: None,
                        message: Some("waiting for an offer".to_string()),
                        healthy: None,
                        trace_parent: trace_parent.clone(),
                        version: 0,
                    })
                    .collect();
                if new.is_empty() {
                    continue;
                }
                store.write(Vec::new(), new.clone()).await?;
                let jobs = new
                    .iter()
                    .map(|t| LaunchJob {
                        instance: name.clone(),
                        ordinal: t.ordinal,
                        task_id: t.task_id.clone(),
                        role: Role::Replica,
                        resources: spec.resources,
                        colocate: false,
                        trace_parent: trace_parent.clone(),
                    })
                    .collect();
                for task in new {
                    state.tasks.insert(task.ordinal, task);
                }
                buffer.queue_launch(jobs);
            }
            Action::MarkFailed { reason } => {
                tracing::warn!(instance = %state.instance.name, %reason, "instance failed");
                state.instance.status = InstanceStatus::Failed;
                state.instance.status_message = Some(reason);
                store
                    .write(vec![state.instance.clone()], Vec::new())
                    .await?;
            }
        }
    }
    Ok(())
}
