//! Maintainer: turns Mesos task states into member and instance states, relaunches
//! lost members, and carries out the operations on members (scale, restart,
//! replace, update; see [`super::operations`]).
//!
//! Status updates are applied in batches (`ctx.wait`, so nothing else of this actor
//! runs meanwhile): those of one instance in arrival order, those of different
//! instances side by side. For every status update: find the member whose current
//! task it is, record the new state, run the workload's callback for the transition
//! ([`lifecycle::callback`]) and plan its actions, persist the new state and what
//! the actions change in one write, and only then ACKNOWLEDGE the update (when it
//! carries a uuid; master-generated updates do not and are never acknowledged) and
//! queue the members and send the commands the actions ask for. The write is
//! compared and set on the instance's version: if another actor changed the
//! instance since the read (a deletion), the update is applied again on a fresh
//! read.
//! Updates for tasks we do not know, or for an older incarnation of a member, are
//! acknowledged and, when still live, killed: such a task is an orphan.
//!
//! Lost members are relaunched by the recovery tick ([`RECOVERY_TICK`]) as decided
//! by [`crate::domain::recovery`]: in place after a backoff, elsewhere once their
//! agent stayed gone past the replace timeout. Update batches, recovery and operations
//! all run with `ctx.wait`, one at a time, and within a batch one instance's
//! updates run one after the other, so they never race on a member's record.
//!
//! A restart of this actor loses the commands in flight that nothing recorded (a
//! `RunCommand` request's caller gets an error), the updates not yet applied and
//! the set of instances with lost members. The full scan of the store at start
//! finds the lost members again and sends again the commands workload actions
//! recorded in their instances; Mesos re-sends unacknowledged updates.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use mesos_stateful_proto::stateful::CommandResult;

use actix::prelude::*;

use mesos_stateful_proto::v1;
use mesos_stateful_store::records::{InstanceStatus, RecordedCommand, TaskRecord};

use crate::domain::actions::{launch_job, plan_actions, ActionPlan, CommandOrder};
use crate::domain::commands::{self, CommandBook};
use crate::domain::launch::executor_id;
use crate::domain::lifecycle::{self, Callback};
use crate::domain::recovery::{self, Recovery, RecoveryConfig};
use crate::domain::updates;
use crate::domain::view::MemberView;
use crate::mesos::{calls, MesosCalls};
use crate::telemetry::{
    handler_span, link_to, observe, set_remote_parent, MessageName, Metrics, StateLabels, Traced,
};
use crate::workload::Workload;
use crate::ActorError;

use super::buffer_manager::BufferManagerHandle;
use super::destroyer::DestroyerMsg;
use super::state_manager::{retry_on_moved, InstanceState, StateManagerHandle};

/// Events of the Maintainer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum MaintainerMsg {
    /// A status update from Mesos.
    TaskUpdate(Box<v1::TaskStatus>),
    /// An executor answered a command.
    CommandAnswered(CommandResult),
}

/// Timers of the Maintainer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
enum MaintainerTimer {
    /// Re-send unanswered commands and give up on expired ones.
    Commands,
    /// Relaunch or replace the lost members whose time has come.
    Recovery,
    /// Look at every instance for lost members (at start).
    FullScan,
}

/// How often unanswered commands are checked.
pub const COMMAND_TICK: Duration = Duration::from_millis(500);
/// How often lost members are considered for a relaunch.
pub const RECOVERY_TICK: Duration = Duration::from_millis(500);
/// Most status updates applied in one batch.
pub const UPDATE_BATCH: usize = 1024;
/// Most instances whose updates are applied at once within a batch.
pub const UPDATE_CONCURRENCY: usize = 32;
/// Longest a command asked for by a workload's action may run.
pub const ACTION_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a command in a member's container through its executor.
#[derive(Debug, Message)]
#[rtype(result = "Result<CommandResult, ActorError>")]
pub struct RunCommand {
    /// Instance of the member.
    pub instance: String,
    /// Ordinal of the member.
    pub ordinal: u32,
    /// Command and arguments (no shell unless the command is one).
    pub argv: Vec<String>,
    /// Longest the command may run.
    pub timeout: Duration,
}

impl MessageName for MaintainerMsg {
    fn name(&self) -> &'static str {
        match self {
            MaintainerMsg::TaskUpdate(_) => "TaskUpdate",
            MaintainerMsg::CommandAnswered(_) => "CommandAnswered",
        }
    }
}

pub(crate) const ACTOR: &str = "Maintainer";

/// The actor.
#[derive(Debug)]
pub struct Maintainer {
    worker: Arc<UpdateWorker>,
    metrics: Arc<Metrics>,
    /// Commands in flight; each has waiters in `command_waiters`.
    commands: CommandBook,
    /// Who waits for each command's result. Dropping a sender answers the waiter
    /// with "unavailable".
    command_waiters: BTreeMap<String, Vec<oneshot::Sender<Result<CommandResult, ActorError>>>>,
    /// Status updates waiting for the next batch, in arrival order.
    pending_updates: VecDeque<(Box<v1::TaskStatus>, tracing::Span)>,
    /// Whether a batch is due to start.
    batch_scheduled: bool,
    /// Recorded commands in the book, by id, with their instance: answered or
    /// expired, they are cleared from the instance's record.
    recorded: BTreeMap<String, String>,
    /// Instances with a lost member not yet relaunched. Filled by updates and by the
    /// full scan at start; emptied by the recovery tick once nothing is left to do.
    recovering: BTreeSet<String>,
}

/// Everything handling an update needs, detached from the actor.
#[derive(Debug)]
pub(super) struct UpdateWorker {
    pub(super) state: StateManagerHandle,
    pub(super) buffer: BufferManagerHandle,
    destroyer: Recipient<Traced<DestroyerMsg>>,
    pub(super) mesos: Arc<dyn MesosCalls>,
    pub(super) workload: Arc<dyn Workload>,
    metrics: Arc<Metrics>,
    recovery: RecoveryConfig,
}

/// What handling an update leaves for the actor to do.
#[derive(Debug, Default)]
pub(super) struct Followup {
    /// Commands the workload's actions asked for.
    pub(super) commands: Vec<CommandOrder>,
    /// Instance with a member to relaunch.
    pub(super) recover: Option<String>,
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Maintainer {
    /// A Maintainer writing through `state` and acknowledging through `mesos`.
    pub fn new(
        state: StateManagerHandle,
        buffer: BufferManagerHandle,
        destroyer: Recipient<Traced<DestroyerMsg>>,
        mesos: Arc<dyn MesosCalls>,
        workload: Arc<dyn Workload>,
        metrics: Arc<Metrics>,
        recovery: RecoveryConfig,
    ) -> Self {
        Maintainer {
            worker: Arc::new(UpdateWorker {
                state,
                buffer,
                destroyer,
                mesos,
                workload,
                metrics: metrics.clone(),
                recovery,
            }),
            metrics,
            commands: CommandBook::default(),
            command_waiters: BTreeMap::new(),
            recovering: BTreeSet::new(),
            pending_updates: VecDeque::new(),
            batch_scheduled: false,
            recorded: BTreeMap::new(),
        }
    }

    pub(super) fn worker(&self) -> Arc<UpdateWorker> {
        self.worker.clone()
    }

    pub(super) fn metrics_ref(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Sends the commands of workload actions (recorded with the change they
    /// serve); their results are only logged.
    pub(super) fn follow_up(&mut self, followup: Followup, ctx: &mut Context<Self>) {
        if let Some(instance) = followup.recover {
            self.recovering.insert(instance);
        }
        if followup.commands.is_empty() {
            return;
        }
        for order in followup.commands {
            tracing::info!(instance = %order.instance, ordinal = order.ordinal, command_id = %order.command_id, argv = ?order.argv, "running command for the workload");
            self.start_recorded(
                order.instance,
                order.command_id,
                &order.task_id,
                &order.agent_id,
                order.argv,
            );
        }
        self.on_commands_tick(ctx);
    }

    /// Puts a recorded command in the book; its record is cleared once answered.
    fn start_recorded(
        &mut self,
        instance: String,
        command_id: String,
        task_id: &str,
        agent_id: &str,
        argv: Vec<String>,
    ) {
        self.commands.start_as(
            command_id.clone(),
            task_id,
            agent_id,
            &executor_id(task_id),
            argv,
            ACTION_COMMAND_TIMEOUT,
            Instant::now(),
        );
        self.recorded.insert(command_id, instance);
    }

    /// Removes answered or abandoned commands from their instance's record, with
    /// `ctx.wait` like every other write of this actor, so an operation never reads
    /// the instance just before this write lands.
    fn forget_commands(&mut self, instance: String, ids: Vec<String>, ctx: &mut Context<Self>) {
        let state = self.worker.state.clone();
        let work = async move {
            let result = retry_on_moved(|| async {
                let Some(current) = state.get(&instance) else {
                    return Ok(());
                };
                let mut record = current.instance;
                let before = record.lifecycle.commands.len();
                record
                    .lifecycle
                    .commands
                    .retain(|c| !ids.contains(&c.command_id));
                if record.lifecycle.commands.len() == before {
                    return Ok(());
                }
                state.write(vec![record], Vec::new()).await
            })
            .await;
            if let Err(error) = result {
                // Kept: a restart sends them again, and the executor runs an id once.
                tracing::warn!(%instance, %error, "cannot clear answered commands from the record");
            }
        };
        ctx.wait(work.into_actor(self));
    }

    fn on_recovery_tick(&mut self, ctx: &mut Context<Self>) {
        if self.recovering.is_empty() {
            return;
        }
        let names = std::mem::take(&mut self.recovering);
        let worker = self.worker.clone();
        let span = handler_span(ACTOR, "Recovery", &tracing::Span::none());
        let work = async move { worker.recover(names, now_ms()).await };
        ctx.wait(
            tracing::Instrument::instrument(work, span)
                .into_actor(self)
                .map(|left, actor, _| actor.recovering.extend(left)),
        );
    }

    fn on_full_scan(&mut self, ctx: &mut Context<Self>) {
        let state = self.worker.state.clone();
        let work = async move { scan(state.records()) };
        ctx.wait(work.into_actor(self).map(|found: Scan, actor, ctx| {
            actor.recovering.extend(found.recovering);
            for (instance, command, agent_id) in found.resend {
                tracing::info!(%instance, command_id = %command.command_id, argv = ?command.argv, "sending an unanswered command again");
                actor.start_recorded(instance, command.command_id, &command.task_id, &agent_id, command.argv);
            }
            for (instance, ids) in found.stale {
                tracing::warn!(%instance, ?ids, "dropping commands for members that no longer run the task they were for");
                actor.forget_commands(instance, ids, ctx);
            }
            actor.on_commands_tick(ctx);
        }));
    }

    fn on_command_answered(&mut self, result: CommandResult, ctx: &mut Context<Self>) {
        if !self.commands.complete(&result.command_id) {
            tracing::debug!(command_id = %result.command_id, "answer to a command no longer waited for");
            return;
        }
        if let Some(instance) = self.recorded.remove(&result.command_id) {
            self.forget_commands(instance, vec![result.command_id.clone()], ctx);
        }
        tracing::info!(command_id = %result.command_id, exit_code = ?result.exit_code, "command answered");
        for waiter in self
            .command_waiters
            .remove(&result.command_id)
            .unwrap_or_default()
        {
            let _ = waiter.send(Ok(result.clone()));
        }
    }

    fn on_commands_tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for expired in self.commands.expire(now) {
            tracing::warn!(command_id = %expired, "no answer to command");
            if let Some(instance) = self.recorded.remove(&expired) {
                self.forget_commands(instance, vec![expired.clone()], ctx);
            }
            for waiter in self.command_waiters.remove(&expired).unwrap_or_default() {
                let _ = waiter.send(Err(ActorError::Unavailable {
                    actor: "executor",
                    reason: format!("no answer to command {expired}"),
                }));
            }
        }
        for command in self.commands.due(now) {
            tracing::debug!(command_id = %command.command_id, attempt = command.attempts, "sending command");
            self.worker.mesos.send(calls::message(
                &command.agent_id,
                &command.executor_id,
                command.payload.clone(),
            ));
        }
    }

    /// Queues an update for the next batch, which starts once the updates already
    /// in the mailbox have joined it.
    fn on_task_update(
        &mut self,
        status: Box<v1::TaskStatus>,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) {
        span.record("task_id", status.task_id.value.as_str());
        if let Some(agent) = &status.agent_id {
            span.record("agent_id", agent.value.as_str());
        }
        self.pending_updates.push_back((status, span));
        if !self.batch_scheduled {
            self.batch_scheduled = true;
            ctx.run_later(Duration::ZERO, |actor, ctx| actor.apply_batch(ctx));
        }
    }

    /// Applies the queued updates (at most [`UPDATE_BATCH`]) with `ctx.wait`: those
    /// of one instance in order, those of different instances side by side
    /// ([`updates::group_in_order`], at most [`UPDATE_CONCURRENCY`] instances at
    /// once), so their writes share synced batches.
    fn apply_batch(&mut self, ctx: &mut Context<Self>) {
        self.batch_scheduled = false;
        let take = self.pending_updates.len().min(UPDATE_BATCH);
        if take == 0 {
            return;
        }
        let batch: Vec<_> = self.pending_updates.drain(..take).collect();
        if !self.pending_updates.is_empty() {
            self.batch_scheduled = true;
            ctx.run_later(Duration::ZERO, |actor, ctx| actor.apply_batch(ctx));
        }
        let followups = Rc::new(RefCell::new(Vec::new()));
        let groups = updates::group_in_order(batch, |(status, _)| {
            updates::update_key(&status.task_id.value)
        });
        let chains = groups
            .into_iter()
            .map(|group| {
                let worker = self.worker.clone();
                let metrics = self.metrics.clone();
                let sink = followups.clone();
                async move {
                    for (status, span) in group {
                        let worker = worker.clone();
                        let sink = sink.clone();
                        let work = async move {
                            let task_id = status.task_id.value.clone();
                            // Another actor may change the instance between the read and
                            // the write (a deletion): the update is then applied again on
                            // a fresh read.
                            match retry_on_moved(|| worker.apply((*status).clone())).await {
                                Ok(done) => {
                                    sink.borrow_mut().push(done);
                                    false
                                }
                                Err(error) => {
                                    // Not acknowledged: Mesos will send the update again.
                                    tracing::error!(%task_id, %error, "status update not applied");
                                    true
                                }
                            }
                        };
                        observe(metrics.clone(), ACTOR, "TaskUpdate", span, work).await;
                    }
                }
            })
            .collect::<Vec<_>>();
        // At most UPDATE_CONCURRENCY instances at once: enough for full synced
        // batches, few enough that a create's messages to the StateManager do not
        // queue behind a thousand of ours.
        let applied =
            futures_util::StreamExt::collect::<Vec<()>>(futures_util::StreamExt::buffer_unordered(
                futures_util::stream::iter(chains),
                UPDATE_CONCURRENCY,
            ));
        ctx.wait(applied.into_actor(self).map(move |_, actor, ctx| {
            for followup in followups.take() {
                actor.follow_up(followup, ctx);
            }
        }));
    }
}

/// What the scan at start finds.
#[derive(Debug, Default)]
struct Scan {
    /// Live instances with a lost member.
    recovering: BTreeSet<String>,
    /// Recorded commands whose member still runs their task, with its agent.
    resend: Vec<(String, RecordedCommand, String)>,
    /// Recorded commands whose member moved on (or whose instance is not live).
    stale: Vec<(String, Vec<String>)>,
}

fn scan(states: Vec<Arc<InstanceState>>) -> Scan {
    let mut found = Scan::default();
    for state in states {
        let name = state.instance.name.clone();
        let live = state.instance.status.is_live();
        if live
            && state
                .tasks
                .values()
                .any(|t| lifecycle::is_gone_name(t.state.as_deref()))
        {
            found.recovering.insert(name.clone());
        }
        let (resend, stale) = commands::recorded_commands(&state.instance, &state.tasks);
        found.resend.extend(
            resend
                .into_iter()
                .map(|(command, agent)| (name.clone(), command, agent)),
        );
        if !stale.is_empty() {
            found.stale.push((name, stale));
        }
    }
    found
}

impl UpdateWorker {
    async fn apply(&self, status: v1::TaskStatus) -> Result<Followup, ActorError> {
        let task_id = status.task_id.value.clone();
        let state = v1::TaskState::try_from(status.state).unwrap_or(v1::TaskState::TaskUnknown);
        let state_name = lifecycle::state_name(state);
        let agent_id = status.agent_id.as_ref().map(|a| a.value.clone());
        self.metrics
            .task_updates
            .get_or_create(&StateLabels {
                state: state_name.to_string(),
            })
            .inc();
        tracing::info!(%task_id, state = state_name, message = status.message.as_deref().unwrap_or(""), "status update");

        let instance = self.state.find_task(&task_id);
        let current = instance
            .as_ref()
            .and_then(|i| i.tasks.values().find(|t| t.task_id == task_id).cloned());
        let (Some(instance), Some(record)) = (instance, current) else {
            self.acknowledge(&status);
            if !state.is_terminal() {
                tracing::warn!(%task_id, "killing a task we do not know");
                self.mesos.send(calls::kill(&task_id, agent_id.as_deref()));
            }
            return Ok(Followup::default());
        };

        // The rest joins the trace that launched the task (the request that created
        // the member), linked to the Mesos event that carried the update.
        let update_span = handler_span(ACTOR, "ApplyUpdate", &tracing::Span::none());
        set_remote_parent(&update_span, record.trace_parent.as_deref());
        link_to(&update_span, &tracing::Span::current());
        update_span.record("instance", record.instance.as_str());
        update_span.record("task_id", task_id.as_str());
        tracing::Instrument::instrument(
            self.apply_known(status, state, agent_id, instance, record),
            update_span,
        )
        .await
    }

    async fn apply_known(
        &self,
        status: v1::TaskStatus,
        state: v1::TaskState,
        agent_id: Option<String>,
        instance: InstanceState,
        record: TaskRecord,
    ) -> Result<Followup, ActorError> {
        let task_id = status.task_id.value.clone();
        let previous = record.state.clone();
        let mut updated = record.clone();
        lifecycle::record_state(
            &mut updated,
            state,
            now_ms(),
            self.recovery.backoff_max.as_millis() as u64,
        );
        updated.message = status.message.clone();
        // Updates without a health result (reconciliation) keep the last one.
        if status.healthy.is_some() {
            updated.healthy = status.healthy;
        }
        if updated.agent_id.is_none() {
            updated.agent_id = agent_id;
        }
        let mut tasks = instance.tasks.clone();
        tasks.insert(updated.ordinal, updated.clone());
        let task_list: Vec<TaskRecord> = tasks.values().cloned().collect();
        let mut instance_record = instance.instance.clone();
        let next = if instance_record.status == InstanceStatus::Deleting {
            instance_record.status
        } else {
            lifecycle::next_status(&instance_record, &task_list)
        };
        let mut instance_changed = next != instance_record.status;
        if instance_changed {
            tracing::info!(instance = %instance_record.name, from = instance_record.status.as_str(), to = next.as_str(), "instance status");
        }
        instance_record.status = next;
        let mut after = InstanceState {
            instance: instance_record,
            tasks,
            stats: instance.stats.clone(),
        };

        // The workload's callback for the transition is planned before anything is
        // written, so the new state and what the callback changes (members started,
        // a promotion) are durable together. Written apart, a crash between the two
        // writes would lose the callback for good: the update is re-sent, but a
        // repeated state fires nothing.
        let mut plan = ActionPlan::default();
        if after.instance.status.is_live() {
            let view = after.view();
            let member = MemberView::from(&updated);
            let callback = lifecycle::callback(updated.role, previous.as_deref(), state);
            let actions = match callback {
                Some(Callback::MasterRunning) => self.workload.master_running(&view, &member),
                Some(Callback::ReplicaRunning) => self.workload.replica_running(&view, &member),
                Some(Callback::MasterLost) => self.workload.master_lost(&view, &member),
                Some(Callback::ReplicaLost) => self.workload.replica_lost(&view, &member),
                None => Vec::new(),
            };
            if let Some(callback) = callback {
                tracing::info!(instance = %after.instance.name, member = %member.name, ?callback, ?actions, "workload callback");
            }
            if !actions.is_empty() {
                let trace_parent = crate::telemetry::traceparent(&tracing::Span::current());
                plan = plan_actions(
                    &mut after.instance,
                    &mut after.tasks,
                    actions,
                    self.workload.as_ref(),
                    trace_parent.as_deref(),
                );
            }
        }
        instance_changed |= plan.instance_changed;
        plan.changed_tasks.insert(updated.ordinal);
        plan.instance_changed = instance_changed;
        let (instances, task_writes) = plan.records(&after.instance, &after.tasks);
        self.state.write(instances, task_writes).await?;
        self.acknowledge(&status);

        if matches!(
            after.instance.status,
            InstanceStatus::Deleting | InstanceStatus::Deleted
        ) {
            if !state.is_terminal() {
                // Launched before the delete took effect: stop it too.
                self.mesos
                    .send(calls::kill(&task_id, updated.agent_id.as_deref()));
            } else {
                self.metrics.sent(super::destroyer::ACTOR);
                self.destroyer
                    .do_send(Traced::new(DestroyerMsg::TaskTerminal(
                        after.instance.name.clone(),
                    )));
            }
            return Ok(Followup::default());
        }
        super::actions::after_write(&self.buffer, plan.promotions, plan.jobs);
        let recover = (lifecycle::is_gone(state) && after.instance.status.is_live())
            .then(|| after.instance.name.clone());
        let mut commands = plan.commands;
        if after.instance.lifecycle.rollout.is_some() {
            commands.extend(self.advance_rollout(&after.instance.name).await?);
        }
        Ok(Followup { commands, recover })
    }

    /// Relaunches the lost members of `names` whose backoff or replace timeout has
    /// passed; returns the instances still having lost members to look at later.
    async fn recover(&self, names: BTreeSet<String>, now_ms: u64) -> BTreeSet<String> {
        let mut left = BTreeSet::new();
        for name in names {
            match self.recover_instance(&name, now_ms).await {
                Ok(true) => {
                    left.insert(name);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(instance = %name, %error, "relaunch failed; will retry");
                    left.insert(name);
                }
            }
        }
        left
    }

    /// Returns whether members are still waiting for their relaunch.
    async fn recover_instance(&self, name: &str, now_ms: u64) -> Result<bool, ActorError> {
        let Some(state) = self.state.get(name) else {
            return Ok(false);
        };
        if !state.instance.status.is_live() {
            return Ok(false);
        }
        let mut relaunched = Vec::new();
        let mut waiting = false;
        for task in state.tasks.values() {
            if !lifecycle::is_gone_name(task.state.as_deref()) {
                continue;
            }
            let Some(how) = recovery::plan(task, now_ms, &self.recovery) else {
                waiting = true;
                continue;
            };
            let mut next = task.next_incarnation();
            next.message = Some(match how {
                Recovery::RelaunchInPlace => format!(
                    "relaunching after {}",
                    task.state.as_deref().unwrap_or("an end")
                ),
                Recovery::ReplaceElsewhere => {
                    // A new agent, so a new volume: the old one stays with its agent.
                    next.volume = None;
                    // The agent may come back: its task is an orphan by now.
                    self.mesos
                        .send(calls::kill(&task.task_id, task.agent_id.as_deref()));
                    "replacing on another agent".to_string()
                }
            });
            tracing::info!(instance = %name, ordinal = task.ordinal, task_id = %next.task_id, recovery = ?how, failures = task.failures, "relaunching member");
            relaunched.push(next);
        }
        if !relaunched.is_empty() {
            let mut instance = state.instance.clone();
            let mut tasks = state.tasks.clone();
            for task in &relaunched {
                tasks.insert(task.ordinal, task.clone());
            }
            let next =
                lifecycle::next_status(&instance, &tasks.values().cloned().collect::<Vec<_>>());
            let instances = if next != instance.status {
                instance.status = next;
                vec![instance.clone()]
            } else {
                Vec::new()
            };
            self.state.write(instances, relaunched.clone()).await?;
            self.metrics.relaunches.inc_by(relaunched.len() as u64);
            self.buffer.queue_launch(
                relaunched
                    .iter()
                    .map(|task| launch_job(&instance, task))
                    .collect(),
            );
        }
        Ok(waiting)
    }

    fn acknowledge(&self, status: &v1::TaskStatus) {
        // Updates without a uuid come from the master and must not be acknowledged.
        let (Some(uuid), Some(agent)) = (&status.uuid, &status.agent_id) else {
            return;
        };
        self.mesos.send(calls::acknowledge(
            &agent.value,
            &status.task_id.value,
            uuid.clone(),
        ));
    }
}

impl Actor for Maintainer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.started(ACTOR);
        ctx.run_interval(COMMAND_TICK, |_, ctx| ctx.notify(MaintainerTimer::Commands));
        ctx.run_interval(RECOVERY_TICK, |_, ctx| {
            ctx.notify(MaintainerTimer::Recovery)
        });
        ctx.notify(MaintainerTimer::FullScan);
    }
}

impl Handler<MaintainerTimer> for Maintainer {
    type Result = ();
    fn handle(&mut self, msg: MaintainerTimer, ctx: &mut Context<Self>) {
        match msg {
            MaintainerTimer::Commands => self.on_commands_tick(ctx),
            MaintainerTimer::Recovery => self.on_recovery_tick(ctx),
            MaintainerTimer::FullScan => self.on_full_scan(ctx),
        }
    }
}

impl Handler<Traced<RunCommand>> for Maintainer {
    type Result = ResponseActFuture<Self, Result<CommandResult, ActorError>>;

    fn handle(&mut self, msg: Traced<RunCommand>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "RunCommand");
        let span = handler_span(ACTOR, "RunCommand", &msg.parent);
        let RunCommand {
            instance,
            ordinal,
            argv,
            timeout,
        } = msg.message;
        span.record("instance", instance.as_str());
        let state = self.worker.state.clone();
        let lookup = async move {
            let found = state.get(&instance);
            let task = found
                .and_then(|s| s.tasks.get(&ordinal).cloned())
                .ok_or_else(|| ActorError::NotFound(format!("{instance}-{ordinal}")))?;
            let running = lifecycle::is_running(&task);
            match (&task.agent_id, running) {
                (Some(agent), true) => Ok((task.task_id.clone(), agent.clone())),
                _ => Err(ActorError::Unavailable {
                    actor: "executor",
                    reason: format!("member {instance}-{ordinal} is not running"),
                }),
            }
        };
        Box::pin(
            lookup
                .into_actor(self)
                .map(move |found, actor, ctx| {
                    let (task_id, agent_id) = found?;
                    let epoch_nanos = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    let command = actor.commands.start(
                        &task_id,
                        &agent_id,
                        &executor_id(&task_id),
                        argv,
                        timeout,
                        Instant::now(),
                        epoch_nanos,
                    );
                    let (sender, receiver) = oneshot::channel();
                    actor
                        .command_waiters
                        .entry(command.command_id.clone())
                        .or_default()
                        .push(sender);
                    // Sent at once; the tick re-sends it until answered.
                    actor.on_commands_tick(ctx);
                    Ok(receiver)
                })
                .then(|receiver, actor, _| {
                    async move {
                        match receiver {
                            Ok(receiver) => receiver.await.unwrap_or_else(|_| {
                                Err(ActorError::Unavailable {
                                    actor: "Maintainer",
                                    reason: "stopped before the command was answered".into(),
                                })
                            }),
                            Err(error) => Err(error),
                        }
                    }
                    .into_actor(actor)
                }),
        )
    }
}

impl Handler<Traced<MaintainerMsg>> for Maintainer {
    type Result = ();
    fn handle(&mut self, msg: Traced<MaintainerMsg>, ctx: &mut Context<Self>) {
        let name = msg.message.name();
        self.metrics.received(ACTOR, name);
        let span = handler_span(ACTOR, name, &msg.parent);
        match msg.message {
            MaintainerMsg::TaskUpdate(status) => self.on_task_update(status, span, ctx),
            MaintainerMsg::CommandAnswered(result) => {
                let _entered = span.entered();
                self.on_command_answered(result, ctx)
            }
        }
    }
}

/// Typed access to the Maintainer.
#[derive(Debug, Clone)]
pub struct MaintainerHandle {
    addr: Addr<Maintainer>,
    metrics: Arc<Metrics>,
}

impl MaintainerHandle {
    pub(crate) fn new(addr: Addr<Maintainer>, metrics: Arc<Metrics>) -> Self {
        MaintainerHandle { addr, metrics }
    }

    pub(super) fn addr(&self) -> &Addr<Maintainer> {
        &self.addr
    }

    pub(super) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs `argv` in a member's container; answers once its executor reported the
    /// result, or with an error if the member does not run or no answer came.
    pub async fn run_command(
        &self,
        instance: &str,
        ordinal: u32,
        argv: Vec<String>,
        timeout: Duration,
    ) -> Result<CommandResult, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(RunCommand {
                instance: instance.to_string(),
                ordinal,
                argv,
                timeout,
            }))
            .await
            .map_err(|e| ActorError::mailbox(ACTOR, e))?
    }

    /// Hands over an executor's answer to a command.
    pub fn command_answered(&self, result: CommandResult) {
        self.metrics.sent(ACTOR);
        self.addr
            .do_send(Traced::new(MaintainerMsg::CommandAnswered(result)));
    }
}
