//! Operations on live instances, for the REST API: scale, restart a member, replace a
//! member. Each is a typed message to the Maintainer answered with the instance's
//! view once the change is durable, or an [`OperationError`].
//!
//! The Maintainer runs them as atomic responses (no other message in between), so an
//! operation and a status update never race on a member's record. Decisions are made
//! by [`crate::domain::operations`]; this file persists and carries them out:
//!
//! - scale: the new replica count and the removal of surplus replicas are written in
//!   one batch, then their tasks are killed; new replicas are added at once when the
//!   master runs (else when it starts);
//! - restart: a new incarnation of the member (same role, agent binding and volume) is
//!   written, the old task killed and the new one queued;
//! - replace: the same, without the volume, so the member starts afresh anywhere;
//! - update: the new spec and a rollout plan are written; members are then restarted
//!   one at a time, each once the previous one is healthy again, replicas first and
//!   the master last, after promoting a replica when the workload has a
//!   `promote_command`. Status updates advance the rollout; it is persisted, so a
//!   restarted scheduler continues it.

use actix::prelude::*;

use mesos_stateful_store::records::TaskRecord;

use crate::domain::actions::launch_job;
use crate::domain::lifecycle;
use crate::domain::view::InstanceView;
use crate::mesos::calls;
use crate::telemetry::{handler_span, Traced};
use crate::workload::Action;
use crate::ActorError;

use crate::domain::actions::CommandOrder;
use crate::domain::operations::{
    check_operable, next_rollout_step, plan_scale, plan_update, restarted, RolloutStep,
};
pub use crate::domain::operations::{OperationError, SpecUpdate};

use super::maintainer::{Followup, Maintainer, MaintainerHandle, UpdateWorker, ACTOR};
use super::state_manager::{retry_on_moved, InstanceState};

/// Sets an instance's replica count.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<InstanceView, OperationError>")]
pub struct ScaleInstance {
    /// Instance name.
    pub name: String,
    /// Replicas wanted besides the master.
    pub replicas: u32,
    /// Version the caller last saw; refused with `VersionMismatch` if it moved on.
    pub if_match: Option<u64>,
}

/// Restarts one member in place: a new incarnation on its agent, with its volume.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<InstanceView, OperationError>")]
pub struct RestartMember {
    /// Instance name.
    pub name: String,
    /// Ordinal of the member.
    pub ordinal: u32,
}

/// Replaces one member: a new incarnation anywhere, with a new volume.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<InstanceView, OperationError>")]
pub struct ReplaceMember {
    /// Instance name.
    pub name: String,
    /// Ordinal of the member.
    pub ordinal: u32,
}

/// Changes an instance's spec and restarts its members one at a time with it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<InstanceView, OperationError>")]
pub struct UpdateInstance {
    /// Instance name.
    pub name: String,
    /// The changes; `None` fields keep their value.
    pub update: SpecUpdate,
    /// Version the caller last saw; refused with `VersionMismatch` if it moved on.
    pub if_match: Option<u64>,
}

impl From<ActorError> for OperationError {
    fn from(error: ActorError) -> Self {
        match error {
            ActorError::NotFound(name) => OperationError::NotFound(name),
            ActorError::QueueFull {
                queued,
                limit,
                retry_after_seconds,
                subscribed,
            } => OperationError::QueueFull {
                queued,
                limit,
                retry_after_seconds,
                subscribed,
            },
            // A status update or a deletion changed the instance between the
            // operation's read and its write; nothing of the operation was written.
            ActorError::VersionMoved { name, .. } => OperationError::Moved(format!(
                "instance {name} changed while the operation ran; read it again and retry"
            )),
            other => OperationError::Unavailable(other.to_string()),
        }
    }
}

type Reply = Result<InstanceView, OperationError>;

impl UpdateWorker {
    fn live_instance(
        &self,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<InstanceState, OperationError> {
        let state = self
            .state
            .get(name)
            .ok_or_else(|| OperationError::NotFound(name.to_string()))?;
        check_operable(&state.instance, if_match)?;
        Ok(state)
    }

    fn fresh_view(&self, name: &str) -> Reply {
        Ok(self
            .state
            .get(name)
            .ok_or_else(|| OperationError::NotFound(name.to_string()))?
            .view())
    }

    async fn scale(&self, msg: ScaleInstance) -> Reply {
        let state = self.live_instance(&msg.name, msg.if_match)?;
        let mut instance = state.instance.clone();
        let plan = plan_scale(&mut instance, &state.tasks, msg.replicas)?;
        // Members added now are admitted to the launch queue before anything is
        // persisted: a full queue refuses the scale and changes nothing.
        let adding = (msg.replicas as usize + 1).saturating_sub(state.tasks.len());
        if plan.add_now && adding > 0 {
            self.buffer.admit(adding)?;
        }
        tracing::info!(instance = %msg.name, replicas = msg.replicas, removed = plan.removed.len(), "scaling");
        let mut tasks = state.tasks.clone();
        for task in &plan.removed {
            tasks.remove(&task.ordinal);
        }
        let list: Vec<TaskRecord> = tasks.values().cloned().collect();
        instance.status = lifecycle::next_status(&instance, &list);
        let ordinals = plan.removed.iter().map(|t| t.ordinal).collect();
        self.state.remove_tasks(instance, ordinals).await?;
        for task in &plan.removed {
            if task.agent_id.is_some() && !lifecycle::is_terminal(task.state.as_deref()) {
                self.mesos
                    .send(calls::kill(&task.task_id, task.agent_id.as_deref()));
            }
        }
        if plan.add_now {
            let state = self
                .state
                .get(&msg.name)
                .ok_or_else(|| OperationError::NotFound(msg.name.clone()))?;
            super::actions::carry_out(
                &self.state,
                &self.buffer,
                self.workload.as_ref(),
                state,
                vec![Action::StartReplicas],
            )
            .await?;
        }
        self.fresh_view(&msg.name)
    }

    async fn update(&self, msg: UpdateInstance) -> (Reply, Vec<CommandOrder>) {
        let mut commands = Vec::new();
        let reply = async {
            let state = self.live_instance(&msg.name, msg.if_match)?;
            let mut instance = state.instance.clone();
            if plan_update(&mut instance, &state.tasks, msg.update)? {
                tracing::info!(instance = %msg.name, image = %instance.spec.image, "rolling update");
                self.state.write(vec![instance], Vec::new()).await?;
                commands = self.advance_rollout(&msg.name).await?;
            }
            self.fresh_view(&msg.name)
        }
        .await;
        (reply, commands)
    }

    /// Takes the next step of the instance's rolling update, if one is under way;
    /// returns the commands a promotion asks for.
    pub(super) async fn advance_rollout(
        &self,
        name: &str,
    ) -> Result<Vec<CommandOrder>, ActorError> {
        let Some(state) = self.state.get(name) else {
            return Ok(Vec::new());
        };
        let Some(mut rollout) = state.instance.lifecycle.rollout.clone() else {
            return Ok(Vec::new());
        };
        if !state.instance.status.is_live() {
            return Ok(Vec::new());
        }
        let view = state.view();
        let can_promote = view
            .members
            .iter()
            .any(|m| self.workload.promote_command(&view, m).is_some());
        let step = next_rollout_step(&mut rollout, &state.tasks, can_promote);
        tracing::debug!(instance = %name, ?step, "rollout step");
        let mut commands = Vec::new();
        let (state, ordinal) = match step {
            RolloutStep::Wait => return Ok(commands),
            RolloutStep::Done => {
                tracing::info!(instance = %name, "rolling update done");
                let mut instance = state.instance.clone();
                instance.lifecycle.rollout = None;
                self.state.write(vec![instance], Vec::new()).await?;
                return Ok(commands);
            }
            RolloutStep::Restart(ordinal) => (state, ordinal),
            RolloutStep::PromoteThenRestart { master, to } => {
                let member = view.members.iter().find(|m| m.ordinal == to);
                let argv = member.and_then(|m| self.workload.promote_command(&view, m));
                let mut actions = vec![Action::PromoteMember { ordinal: to }];
                if let Some(argv) = argv {
                    actions.push(Action::RunCommand { ordinal: to, argv });
                }
                actions.push(Action::RepointReplicas { to });
                let (after, promote) = super::actions::carry_out(
                    &self.state,
                    &self.buffer,
                    self.workload.as_ref(),
                    state,
                    actions,
                )
                .await?;
                commands = promote;
                (after, master)
            }
        };
        let Some(task) = state.tasks.get(&ordinal) else {
            return Ok(commands);
        };
        rollout.pending.retain(|o| *o != ordinal);
        rollout.waiting_for = Some(ordinal);
        let mut next = restarted(task, true);
        next.message = Some("restarting with the updated spec".to_string());
        let mut instance = state.instance.clone();
        instance.lifecycle.rollout = Some(rollout);
        let mut tasks = state.tasks.clone();
        tasks.insert(ordinal, next.clone());
        let list: Vec<TaskRecord> = tasks.values().cloned().collect();
        instance.status = lifecycle::next_status(&instance, &list);
        tracing::info!(instance = %name, ordinal, task_id = %next.task_id, "rolling update restarts member");
        self.state
            .write(vec![instance.clone()], vec![next.clone()])
            .await?;
        if task.agent_id.is_some() && !lifecycle::is_terminal(task.state.as_deref()) {
            self.mesos
                .send(calls::kill(&task.task_id, task.agent_id.as_deref()));
        }
        self.buffer.queue_launch(vec![launch_job(&instance, &next)]);
        Ok(commands)
    }

    async fn restart(&self, name: &str, ordinal: u32, in_place: bool) -> Reply {
        let state = self.live_instance(name, None)?;
        let Some(task) = state.tasks.get(&ordinal) else {
            return Err(OperationError::Invalid(format!(
                "instance {name} has no member {ordinal}"
            )));
        };
        self.buffer.admit(1)?;
        let next = restarted(task, in_place);
        tracing::info!(instance = %name, ordinal, task_id = %next.task_id, in_place, "restarting member");
        let mut instance = state.instance.clone();
        let mut tasks = state.tasks.clone();
        tasks.insert(ordinal, next.clone());
        let list: Vec<TaskRecord> = tasks.values().cloned().collect();
        let status = lifecycle::next_status(&instance, &list);
        let instances = if status != instance.status {
            instance.status = status;
            vec![instance.clone()]
        } else {
            Vec::new()
        };
        self.state.write(instances, vec![next.clone()]).await?;
        if task.agent_id.is_some() && !lifecycle::is_terminal(task.state.as_deref()) {
            self.mesos
                .send(calls::kill(&task.task_id, task.agent_id.as_deref()));
        }
        self.buffer.queue_launch(vec![launch_job(&instance, &next)]);
        self.fresh_view(name)
    }
}

fn reply<M>(
    actor: &mut Maintainer,
    name: &'static str,
    parent: &tracing::Span,
    instance: &str,
    work: impl FnOnce(std::sync::Arc<UpdateWorker>) -> M,
) -> AtomicResponse<Maintainer, Reply>
where
    M: std::future::Future<Output = Reply> + 'static,
{
    actor.metrics_ref().received(ACTOR, name);
    let span = handler_span(ACTOR, name, parent);
    span.record("instance", instance);
    let future = work(actor.worker());
    AtomicResponse::new(Box::pin(
        tracing::Instrument::instrument(future, span).into_actor(actor),
    ))
}

impl Handler<Traced<ScaleInstance>> for Maintainer {
    type Result = AtomicResponse<Self, Reply>;
    fn handle(&mut self, msg: Traced<ScaleInstance>, _: &mut Context<Self>) -> Self::Result {
        let name = msg.message.name.clone();
        reply(
            self,
            "ScaleInstance",
            &msg.parent,
            &name,
            |worker| async move {
                let msg = msg.message;
                retry_on_moved(|| worker.scale(msg.clone())).await
            },
        )
    }
}

impl Handler<Traced<RestartMember>> for Maintainer {
    type Result = AtomicResponse<Self, Reply>;
    fn handle(&mut self, msg: Traced<RestartMember>, _: &mut Context<Self>) -> Self::Result {
        let RestartMember { name, ordinal } = msg.message;
        let instance = name.clone();
        reply(
            self,
            "RestartMember",
            &msg.parent,
            &instance,
            move |worker| async move { retry_on_moved(|| worker.restart(&name, ordinal, true)).await },
        )
    }
}

impl Handler<Traced<ReplaceMember>> for Maintainer {
    type Result = AtomicResponse<Self, Reply>;
    fn handle(&mut self, msg: Traced<ReplaceMember>, _: &mut Context<Self>) -> Self::Result {
        let ReplaceMember { name, ordinal } = msg.message;
        let instance = name.clone();
        reply(
            self,
            "ReplaceMember",
            &msg.parent,
            &instance,
            move |worker| async move { retry_on_moved(|| worker.restart(&name, ordinal, false)).await },
        )
    }
}

impl Handler<Traced<UpdateInstance>> for Maintainer {
    type Result = AtomicResponse<Self, Reply>;
    fn handle(&mut self, msg: Traced<UpdateInstance>, _: &mut Context<Self>) -> Self::Result {
        self.metrics_ref().received(ACTOR, "UpdateInstance");
        let span = handler_span(ACTOR, "UpdateInstance", &msg.parent);
        span.record("instance", msg.message.name.as_str());
        let worker = self.worker();
        let future = async move { worker.update(msg.message).await };
        AtomicResponse::new(Box::pin(
            tracing::Instrument::instrument(future, span)
                .into_actor(self)
                .map(|(reply, commands), actor, ctx| {
                    actor.follow_up(
                        Followup {
                            commands,
                            recover: None,
                        },
                        ctx,
                    );
                    reply
                }),
        ))
    }
}

impl MaintainerHandle {
    async fn operate<M>(&self, msg: M) -> Reply
    where
        M: Message<Result = Reply> + Send + 'static,
        Maintainer: Handler<Traced<M>>,
        Traced<M>: Message<Result = Reply>,
    {
        self.metrics().sent(ACTOR);
        self.addr()
            .send(Traced::new(msg))
            .await
            .map_err(|e| OperationError::Unavailable(format!("actor {ACTOR}: {e}")))?
    }

    /// Sets the replica count of an instance; answers once the change is durable.
    pub async fn scale(&self, name: &str, replicas: u32, if_match: Option<u64>) -> Reply {
        self.operate(ScaleInstance {
            name: name.to_string(),
            replicas,
            if_match,
        })
        .await
    }

    /// Restarts a member in place; answers once its new incarnation is durable.
    pub async fn restart_member(&self, name: &str, ordinal: u32) -> Reply {
        self.operate(RestartMember {
            name: name.to_string(),
            ordinal,
        })
        .await
    }

    /// Updates an instance's spec; answers once the new spec is durable and the
    /// first member's restart is under way.
    pub async fn update_instance(
        &self,
        name: &str,
        update: SpecUpdate,
        if_match: Option<u64>,
    ) -> Reply {
        self.operate(UpdateInstance {
            name: name.to_string(),
            update,
            if_match,
        })
        .await
    }

    /// Replaces a member on any agent with a new volume; answers once its new
    /// incarnation is durable.
    pub async fn replace_member(&self, name: &str, ordinal: u32) -> Reply {
        self.operate(ReplaceMember {
            name: name.to_string(),
            ordinal,
        })
        .await
    }
}
