//! Creator: accepts validated create requests, persists the new instance with its
//! master's task record in one atomic write, then queues the master for launch.
//!
//! The reply (and so the REST 202) is sent only after the write is durable.
//! A restart of this actor loses nothing: it keeps no state.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::prelude::*;

use mesos_stateful_store::records::{
    InstanceRecord, InstanceSpec, InstanceStatus, Role, TaskRecord, SCHEMA_VERSION,
};

use crate::domain::actions::launch_job;
use crate::domain::view::InstanceView;
use crate::telemetry::{handler_span, Metrics, Traced};
use crate::workload::Workload;
use crate::ActorError;

use super::buffer_manager::BufferManagerHandle;
use super::state_manager::StateManagerHandle;

/// Creates an instance from a validated spec.
#[derive(Debug, Message)]
#[rtype(result = "Result<InstanceView, ActorError>")]
pub struct CreateInstance {
    /// Validated name.
    pub name: String,
    /// Validated spec.
    pub spec: InstanceSpec,
}

/// The actor.
#[derive(Debug)]
pub struct Creator {
    state: StateManagerHandle,
    buffer: BufferManagerHandle,
    workload: Arc<dyn Workload>,
    metrics: Arc<Metrics>,
}

pub(crate) const ACTOR: &str = "Creator";

impl Creator {
    /// A Creator persisting through `state` and queueing on `buffer`.
    pub fn new(
        state: StateManagerHandle,
        buffer: BufferManagerHandle,
        workload: Arc<dyn Workload>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Creator {
            state,
            buffer,
            workload,
            metrics,
        }
    }
}

impl Actor for Creator {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.metrics.started(ACTOR);
    }
}

impl Handler<Traced<CreateInstance>> for Creator {
    type Result = ResponseFuture<Result<InstanceView, ActorError>>;

    fn handle(&mut self, msg: Traced<CreateInstance>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "CreateInstance");
        let span = handler_span(ACTOR, "CreateInstance", &msg.parent);
        span.record("instance", msg.message.name.as_str());
        let (state, buffer, workload) = (
            self.state.clone(),
            self.buffer.clone(),
            self.workload.clone(),
        );
        let metrics = self.metrics.clone();
        let started = std::time::Instant::now();
        let create = async move {
            let CreateInstance { name, spec } = msg.message;
            // Carried by the master's record and job, so its launch and its status
            // updates join this request's trace.
            let trace_parent = crate::telemetry::traceparent(&tracing::Span::current());
            let created_at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let instance = InstanceRecord {
                schema: SCHEMA_VERSION,
                name: name.clone(),
                spec: spec.clone(),
                status: InstanceStatus::Creating,
                status_message: None,
                version: 0,
                created_at_ms,
                lifecycle: Default::default(),
            };
            let mut master = TaskRecord::waiting(&name, 0, Role::Master, 1);
            master.trace_parent = trace_parent.clone();
            let job = launch_job(&instance, &master);
            // Refused before anything is persisted when the launch queue is full.
            buffer.admit(1)?;
            let created = state.create(instance, vec![master]).await?;
            tracing::info!(instance = %name, "instance created");
            buffer.queue_launch(vec![job]);
            let view = created.view();
            let actions = workload.start(&view);
            let (after, commands) =
                super::actions::carry_out(&state, &buffer, workload.as_ref(), created, actions)
                    .await?;
            if !commands.is_empty() {
                // No member runs yet, so no command could reach a container.
                tracing::warn!(instance = %name, count = commands.len(), "commands asked by start dropped: no member runs yet");
            }
            Ok(after.view())
        };
        Box::pin(tracing::Instrument::instrument(
            async move {
                let result = create.await;
                metrics.handled(ACTOR, "CreateInstance", started, result.is_err());
                result
            },
            span,
        ))
    }
}

/// Typed access to the Creator.
#[derive(Debug, Clone)]
pub struct CreatorHandle {
    addr: Addr<Creator>,
    metrics: Arc<Metrics>,
}

impl CreatorHandle {
    pub(crate) fn new(addr: Addr<Creator>, metrics: Arc<Metrics>) -> Self {
        CreatorHandle { addr, metrics }
    }

    /// Creates an instance; returns once it is durable.
    pub async fn create(
        &self,
        name: String,
        spec: InstanceSpec,
    ) -> Result<InstanceView, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(CreateInstance { name, spec }))
            .await
            .map_err(|e| ActorError::mailbox("Creator", e))?
    }
}
