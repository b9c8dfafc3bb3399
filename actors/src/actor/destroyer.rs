//! Destroyer: deletes instances. Marks the instance DELETING (persisted), drops its
//! queued launches, KILLs every live task, and marks it DELETED once every task is
//! terminal. Kills are re-sent periodically until then, in case one was lost.
//!
//! A restart of this actor loses nothing: DELETING instances are found again in the
//! store by the sweep, which runs at start and then periodically.

use std::time::Duration;

use actix::prelude::*;
use std::sync::Arc;

use mesos_stateful_store::records::InstanceStatus;

use crate::domain::lifecycle;
use crate::domain::view::InstanceView;
use crate::mesos::{calls, MesosCalls};
use crate::telemetry::{handler_span, MessageName, Metrics, Traced};
use crate::ActorError;

use super::buffer_manager::BufferManagerHandle;
use super::state_manager::{retry_on_moved, InstanceState, StateManagerHandle};

/// How often kills of DELETING instances' live tasks are re-sent.
pub const KILL_RETRY_INTERVAL: Duration = Duration::from_secs(15);

/// Events of the Destroyer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum DestroyerMsg {
    /// A task of a DELETING instance became terminal.
    TaskTerminal(String),
}

impl MessageName for DestroyerMsg {
    fn name(&self) -> &'static str {
        match self {
            DestroyerMsg::TaskTerminal(_) => "TaskTerminal",
        }
    }
}

pub(crate) const ACTOR: &str = "Destroyer";

/// Timers of the Destroyer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
enum DestroyerTimer {
    /// Re-send kills and finish deletions.
    Sweep,
}

/// Deletes an instance; with `if_version`, only if the instance is at that version
/// when the deletion is recorded.
#[derive(Debug, Message)]
#[rtype(result = "Result<InstanceView, ActorError>")]
pub struct DeleteInstance {
    /// Instance name.
    pub name: String,
    /// The version the caller saw (`If-Match`).
    pub if_version: Option<u64>,
}

/// The actor.
#[derive(Debug)]
pub struct Destroyer {
    state: StateManagerHandle,
    buffer: BufferManagerHandle,
    mesos: Arc<dyn MesosCalls>,
    metrics: Arc<Metrics>,
}

impl Destroyer {
    /// A Destroyer killing through `mesos`.
    pub fn new(
        state: StateManagerHandle,
        buffer: BufferManagerHandle,
        mesos: Arc<dyn MesosCalls>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Destroyer {
            state,
            buffer,
            mesos,
            metrics,
        }
    }

    fn kill_live_tasks(mesos: &dyn MesosCalls, state: &InstanceState) {
        for task in state.tasks.values() {
            if task.agent_id.is_some() && !lifecycle::is_terminal(task.state.as_deref()) {
                tracing::info!(task_id = %task.task_id, "killing");
                mesos.send(calls::kill(&task.task_id, task.agent_id.as_deref()));
            }
        }
    }

    /// Marks the instance DELETED when every task is terminal or was never launched.
    async fn finish_if_done(
        store: &StateManagerHandle,
        name: &str,
    ) -> Result<Option<InstanceState>, ActorError> {
        retry_on_moved(|| Self::finish_if_done_once(store, name)).await
    }

    async fn finish_if_done_once(
        store: &StateManagerHandle,
        name: &str,
    ) -> Result<Option<InstanceState>, ActorError> {
        let Some(mut state) = store.get(name) else {
            return Ok(None);
        };
        if state.instance.status != InstanceStatus::Deleting {
            return Ok(Some(state));
        }
        let next = lifecycle::next_status(&state.instance, &state.task_list());
        if next == InstanceStatus::Deleted {
            state.instance.status = InstanceStatus::Deleted;
            store
                .write(vec![state.instance.clone()], Vec::new())
                .await?;
            tracing::info!(instance = %name, "instance deleted");
            return Ok(store.get(name));
        }
        Ok(Some(state))
    }

    fn on_task_terminal(&mut self, name: String, ctx: &mut Context<Self>) {
        let store = self.state.clone();
        ctx.spawn(
            async move {
                if let Err(error) = Self::finish_if_done(&store, &name).await {
                    tracing::warn!(instance = %name, %error, "finishing deletion failed");
                }
            }
            .into_actor(self),
        );
    }

    fn on_sweep(&mut self, ctx: &mut Context<Self>) {
        let store = self.state.clone();
        let mesos = self.mesos.clone();
        ctx.spawn(
            async move {
                for state in store.list() {
                    if state.instance.status == InstanceStatus::Deleting {
                        Self::kill_live_tasks(mesos.as_ref(), &state);
                        if let Err(error) = Self::finish_if_done(&store, &state.instance.name).await {
                            tracing::warn!(instance = %state.instance.name, %error, "finishing deletion failed");
                        }
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Destroyer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.started(ACTOR);
        // At once: deletions interrupted by a restart resume without waiting.
        ctx.notify(DestroyerTimer::Sweep);
        ctx.run_interval(KILL_RETRY_INTERVAL, |_, ctx| {
            ctx.notify(DestroyerTimer::Sweep);
        });
    }
}

impl Handler<Traced<DestroyerMsg>> for Destroyer {
    type Result = ();
    fn handle(&mut self, msg: Traced<DestroyerMsg>, ctx: &mut Context<Self>) {
        let name = msg.message.name();
        self.metrics.received(ACTOR, name);
        let span = handler_span(ACTOR, name, &msg.parent);
        let _entered = span.enter();
        match msg.message {
            DestroyerMsg::TaskTerminal(instance) => {
                span.record("instance", instance.as_str());
                self.on_task_terminal(instance, ctx)
            }
        }
    }
}

impl Handler<DestroyerTimer> for Destroyer {
    type Result = ();
    fn handle(&mut self, msg: DestroyerTimer, ctx: &mut Context<Self>) {
        match msg {
            DestroyerTimer::Sweep => self.on_sweep(ctx),
        }
    }
}

impl Handler<Traced<DeleteInstance>> for Destroyer {
    type Result = ResponseFuture<Result<InstanceView, ActorError>>;

    fn handle(&mut self, msg: Traced<DeleteInstance>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "DeleteInstance");
        let span = handler_span(ACTOR, "DeleteInstance", &msg.parent);
        span.record("instance", msg.message.name.as_str());
        let (store, buffer, mesos) = (self.state.clone(), self.buffer.clone(), self.mesos.clone());
        let metrics = self.metrics.clone();
        let started = std::time::Instant::now();
        Box::pin(tracing::Instrument::instrument(
            async move {
                let DeleteInstance { name, if_version } = msg.message;
                let result = Self::delete(store, buffer, mesos, name, if_version).await;
                metrics.handled(ACTOR, "DeleteInstance", started, result.is_err());
                result
            },
            span,
        ))
    }
}

impl Destroyer {
    async fn delete(
        store: StateManagerHandle,
        buffer: BufferManagerHandle,
        mesos: Arc<dyn MesosCalls>,
        name: String,
        if_version: Option<u64>,
    ) -> Result<InstanceView, ActorError> {
        match if_version {
            // The caller's version is the condition: a change since is its answer.
            Some(_) => Self::delete_once(&store, &buffer, mesos.as_ref(), &name, if_version).await,
            // Else a change since the read (a status update) is read again.
            None => {
                retry_on_moved(|| Self::delete_once(&store, &buffer, mesos.as_ref(), &name, None))
                    .await
            }
        }
    }

    async fn delete_once(
        store: &StateManagerHandle,
        buffer: &BufferManagerHandle,
        mesos: &dyn MesosCalls,
        name: &str,
        if_version: Option<u64>,
    ) -> Result<InstanceView, ActorError> {
        let name = name.to_string();
        let Some(mut state) = store.get(&name) else {
            return Err(ActorError::NotFound(name));
        };
        if let Some(expected) = if_version.filter(|v| *v != state.instance.version) {
            return Err(ActorError::VersionMoved {
                name,
                expected,
                current: state.instance.version,
            });
        }
        if state.instance.status.can_delete() {
            state.instance.status = InstanceStatus::Deleting;
            // Compared and set inside the StateManager against the version read
            // above, counting writes still queued: a status update written since
            // cannot be undone by this record, nor can it undo the deletion.
            store
                .write(vec![state.instance.clone()], Vec::new())
                .await?;
            tracing::info!(instance = %name, "deleting instance");
        }
        if state.instance.status == InstanceStatus::Deleting {
            buffer.cancel_instance(&name);
            Self::kill_live_tasks(mesos, &state);
        }
        let state = Self::finish_if_done(store, &name)
            .await?
            .ok_or_else(|| ActorError::NotFound(name.clone()))?;
        Ok(state.view())
    }
}

/// Typed access to the Destroyer.
#[derive(Debug, Clone)]
pub struct DestroyerHandle {
    addr: Addr<Destroyer>,
    metrics: Arc<Metrics>,
}

impl DestroyerHandle {
    pub(crate) fn new(addr: Addr<Destroyer>, metrics: Arc<Metrics>) -> Self {
        DestroyerHandle { addr, metrics }
    }

    /// Deletes an instance; returns once DELETING is durable.
    pub async fn delete(&self, name: &str) -> Result<InstanceView, ActorError> {
        self.delete_if_version(name, None).await
    }

    /// Deletes an instance if it is at `if_version` (when given) as the deletion is
    /// recorded; else [`ActorError::VersionMoved`] and nothing changes.
    pub async fn delete_if_version(
        &self,
        name: &str,
        if_version: Option<u64>,
    ) -> Result<InstanceView, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(DeleteInstance {
                name: name.to_string(),
                if_version,
            }))
            .await
            .map_err(|e| ActorError::mailbox("Destroyer", e))?
    }
}
