//! OfferManager: matches queued members to offers, persists the placement, then
//! ACCEPTs with RESERVE/CREATE (a member's first volume) and LAUNCH; gives back
//! member reservations nobody wants (DESTROY, UNRESERVE); declines what it does not
//! use; SUPPRESSes offers while nothing is queued and REVIVEs them when work arrives.
//!
//! One offer round is handled at a time (`ctx.wait`), so two rounds never place the
//! same job. The placement (agent, host, port, volume binding, TASK_STAGING) is
//! persisted before the ACCEPT is sent: after a crash the scheduler knows which task
//! may be running where, and which agent may hold a member's volume, and reconciles
//! instead of launching twice or losing the data's location.
//!
//! Rescinded offers are recorded as soon as the RESCIND arrives (through the
//! handle, not the mailbox), and a round drops them before matching.
//!
//! A restart of this actor loses nothing that matters: offers are re-sent by Mesos,
//! the agents' attributes are learned again from them, and the offer flow starts
//! unsuppressed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

use mesos_stateful_proto::v1;
use mesos_stateful_store::records::{InstanceRecord, InstanceStatus, Resources, Role, TaskRecord};

use crate::domain::constraints::AgentFacts;
use crate::domain::launch::{self, ExecutorLaunch};
use crate::domain::lifecycle;
use crate::domain::offers::{match_offers, releases, MatchSettings, OfferSummary};
use crate::domain::placement::{self, FlowCall, OfferFlow};
use crate::domain::view::MemberView;
use crate::mesos::{calls, MesosCalls};
use crate::telemetry::{
    handler_span, link_to, set_remote_parent, traceparent, MessageName, Metrics, Traced,
};
use crate::workload::Workload;
use crate::ActorError;

use super::buffer_manager::BufferManagerHandle;
use super::state_manager::{retry_on_moved, StateManagerHandle};

/// How long Mesos should hold back declined resources while work is queued.
pub const REFUSE_SECONDS_BUSY: f64 = 5.0;
/// How long Mesos should hold back declined resources while nothing is queued; a
/// REVIVE clears the filter as soon as work arrives.
pub const REFUSE_SECONDS_IDLE: f64 = 30.0;

/// How long a member waits for an agent that runs no other member of its instance
/// before it may share one.
pub const SPREAD_PATIENCE: Duration = Duration::from_secs(10);
/// How long an agent counts as part of the cluster after its last offer.
pub const AGENT_MEMORY: Duration = Duration::from_secs(300);
/// How often the offer flow is reconsidered (deferred REVIVE, SUPPRESS when idle).
pub const FLOW_TICK: Duration = Duration::from_millis(250);
/// Most rescinded offer ids remembered; older ones were long handled.
pub const RESCINDED_MEMORY: usize = 4096;
/// Task records a round persists in one write before accepting the offers they
/// were placed on. A round with thousands of launches persists and accepts them
/// group by group, so that a create's write never waits behind one huge batch.
pub const ACCEPT_GROUP_RECORDS: usize = 64;

/// Events of the OfferManager.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum OfferMsg {
    /// Mesos sent offers.
    Offers(Vec<v1::Offer>),
    /// Mesos took an offer back.
    Rescinded(String),
    /// New jobs were queued: offers are needed.
    WorkQueued,
    /// The launch queue became empty.
    QueueDrained,
    /// A (re-)subscription succeeded.
    Subscribed,
    /// An instance with volumes is being deleted: its reservations must be given
    /// back when offered.
    ReleasePending,
}

impl MessageName for OfferMsg {
    fn name(&self) -> &'static str {
        match self {
            OfferMsg::Offers(_) => "Offers",
            OfferMsg::Rescinded(_) => "Rescinded",
            OfferMsg::WorkQueued => "WorkQueued",
            OfferMsg::QueueDrained => "QueueDrained",
            OfferMsg::Subscribed => "Subscribed",
            OfferMsg::ReleasePending => "ReleasePending",
        }
    }
}

/// Timers of the OfferManager.
#[derive(Debug, Message)]
#[rtype(result = "()")]
enum OfferTimer {
    /// Reconsider the offer flow.
    Flow,
}

pub(crate) const ACTOR: &str = "OfferManager";

/// Offer ids rescinded recently, shared by the handle (which records them the
/// moment the RESCIND event arrives) and the rounds (which drop them).
#[derive(Debug, Default)]
struct Rescinded {
    ids: BTreeSet<String>,
    order: VecDeque<String>,
}

impl Rescinded {
    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > RESCINDED_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

/// The OfferManager's record of rescinded offers, shared with its handle.
#[derive(Debug, Clone)]
pub struct RescindedRecord(Arc<Mutex<Rescinded>>);

/// The actor.
#[derive(Debug)]
pub struct OfferManager {
    buffer: BufferManagerHandle,
    state: StateManagerHandle,
    mesos: Arc<dyn MesosCalls>,
    workload: Arc<dyn Workload>,
    executor: ExecutorLaunch,
    framework_name: String,
    /// The framework's role: reservations are made for it, SUPPRESS and REVIVE name it.
    role: String,
    /// Agents seen in offers, with what placement rules see of them and when they
    /// were last offered.
    known_agents: BTreeMap<String, (AgentFacts, Instant)>,
    /// Whether offers should flow; owned by this actor only.
    flow: OfferFlow,
    /// Shared with every [`OfferManagerHandle`]; a mutex because the handle writes
    /// from the event dispatcher while rounds read.
    rescinded: Arc<Mutex<Rescinded>>,
    metrics: Arc<Metrics>,
}

impl OfferManager {
    /// An OfferManager launching tasks with `executor`.
    pub fn new(
        buffer: BufferManagerHandle,
        state: StateManagerHandle,
        mesos: Arc<dyn MesosCalls>,
        workload: Arc<dyn Workload>,
        executor: ExecutorLaunch,
        metrics: Arc<Metrics>,
    ) -> Self {
        let config = workload.config();
        OfferManager {
            buffer,
            state,
            mesos,
            workload,
            executor,
            framework_name: config.framework_name,
            role: config.role,
            known_agents: BTreeMap::new(),
            flow: OfferFlow::default(),
            rescinded: Arc::new(Mutex::new(Rescinded::default())),
            metrics,
        }
    }

    /// The record of rescinded offers, to share with the actor's handle.
    pub fn rescinded_record(&self) -> RescindedRecord {
        RescindedRecord(self.rescinded.clone())
    }

    fn on_offers(&mut self, offers: Vec<v1::Offer>, span: tracing::Span, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.metrics.offers("received", offers.len());
        for offer in &offers {
            self.known_agents.insert(
                offer.agent_id.value.clone(),
                (AgentFacts::from_offer(offer), now),
            );
        }
        self.known_agents
            .retain(|_, (_, seen)| now.duration_since(*seen) < AGENT_MEMORY);
        let round = OfferRound {
            known_agents: self
                .known_agents
                .iter()
                .map(|(id, (facts, _))| (id.clone(), facts.clone()))
                .collect(),
            buffer: self.buffer.clone(),
            state: self.state.clone(),
            mesos: self.mesos.clone(),
            workload: self.workload.clone(),
            executor: self.executor.clone(),
            framework_name: self.framework_name.clone(),
            role: self.role.clone(),
            rescinded: self.rescinded.clone(),
            metrics: self.metrics.clone(),
            received_at: now,
            check_releases: self.flow.has_releases_pending(),
        };
        let mesos = self.mesos.clone();
        let metrics = self.metrics.clone();
        let work = async move {
            // A member's record changed between a group's read and its write (a
            // status update, a restart): that group was neither written nor
            // accepted, so the round runs again, on a fresh read, with the offers
            // not accepted yet.
            let remaining = Mutex::new(offers);
            let result = retry_on_moved(|| round.run(&remaining)).await;
            match result {
                Ok(report) => Some(report),
                Err(error) => {
                    // Give the offers not accepted back so Mesos re-offers them.
                    let offer_ids: Vec<String> =
                        lock(&remaining).drain(..).map(|o| o.id.value).collect();
                    tracing::warn!(%error, declined = offer_ids.len(), "offer round failed; declining its offers not accepted");
                    if !offer_ids.is_empty() {
                        metrics.offers("declined", offer_ids.len());
                        mesos.send(calls::decline(offer_ids, REFUSE_SECONDS_BUSY));
                    }
                    None
                }
            }
        };
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let work = tracing::Instrument::instrument(work, span);
        ctx.wait(work.into_actor(self).map(move |queue_empty, actor, _| {
            metrics.handled(ACTOR, "Offers", started, queue_empty.is_none());
            if let Some((empty, releases_pending)) = queue_empty {
                actor
                    .flow
                    .round_done(Instant::now(), empty, releases_pending);
            }
        }));
    }

    fn on_rescinded(&mut self, offer_id: String) {
        // Recorded by the handle already; this only logs.
        tracing::debug!(%offer_id, "offer rescinded");
    }

    fn on_work_queued(&mut self) {
        let call = self.flow.work_queued(Instant::now());
        self.send_flow(call);
    }

    fn on_queue_drained(&mut self) {
        self.flow.queue_seen(Instant::now(), true);
    }

    fn on_release_pending(&mut self) {
        let call = self.flow.releases_pending(Instant::now());
        self.send_flow(call);
    }

    fn on_subscribed(&mut self) {
        let call = self.flow.subscribed(Instant::now());
        self.send_flow(Some(call));
    }

    fn on_flow_tick(&mut self) {
        let call = self.flow.tick(Instant::now());
        self.send_flow(call);
    }

    fn send_flow(&self, call: Option<FlowCall>) {
        match call {
            Some(FlowCall::Revive) => {
                tracing::debug!(role = %self.role, "reviving offers");
                self.mesos
                    .send(calls::revive_roles(vec![self.role.clone()]));
            }
            Some(FlowCall::Suppress) => {
                tracing::debug!(role = %self.role, "suppressing offers: nothing queued");
                self.mesos.send(calls::suppress(vec![self.role.clone()]));
            }
            None => {}
        }
    }
}

/// Everything one offer round needs, detached from the actor.
struct OfferRound {
    known_agents: BTreeMap<String, AgentFacts>,
    metrics: Arc<Metrics>,
    received_at: Instant,
    buffer: BufferManagerHandle,
    state: StateManagerHandle,
    mesos: Arc<dyn MesosCalls>,
    workload: Arc<dyn Workload>,
    executor: ExecutorLaunch,
    framework_name: String,
    role: String,
    rescinded: Arc<Mutex<Rescinded>>,
    /// Whether reservations of deleted instances are known to wait for release, so
    /// the round must look at the store even with nothing queued.
    check_releases: bool,
}

/// What a round tells the offer flow: whether the launch queue was empty, and
/// whether reservations still wait for release (`None`: not looked at).
type RoundReport = (bool, Option<bool>);

impl OfferRound {
    /// Runs the round on the offers of `remaining`, taking out of it every offer
    /// once it is accepted or declined: should the round fail part way (a record
    /// moved under one group's write), what is left there is all that was neither.
    async fn run(&self, remaining: &Mutex<Vec<v1::Offer>>) -> Result<RoundReport, ActorError> {
        let jobs = self.buffer.pending().await?;
        let offers = lock(remaining).clone();
        let offers: Vec<v1::Offer> = match self.rescinded.lock() {
            Ok(rescinded) => offers
                .into_iter()
                .filter(|o| !rescinded.ids.contains(&o.id.value))
                .collect(),
            Err(_) => offers,
        };
        let offer_ids: Vec<String> = offers.iter().map(|o| o.id.value.clone()).collect();
        if offers.is_empty() {
            lock(remaining).clear();
            return Ok((jobs.is_empty(), None));
        }
        let Some(framework_id) = self.mesos.framework_id() else {
            lock(remaining).clear();
            self.mesos
                .send(calls::decline(offer_ids, REFUSE_SECONDS_BUSY));
            return Ok((jobs.is_empty(), None));
        };
        let summaries: Vec<OfferSummary> = offers
            .iter()
            .map(|o| OfferSummary::from_offer(o, &self.role))
            .collect();
        let holds_reservations = summaries.iter().any(|s| !s.member_reservations.is_empty());
        if jobs.is_empty() && !holds_reservations && !self.check_releases {
            lock(remaining).clear();
            self.metrics.offers("declined", offer_ids.len());
            self.mesos
                .send(calls::decline(offer_ids, REFUSE_SECONDS_IDLE));
            return Ok((true, None));
        }
        let states: BTreeMap<String, (InstanceRecord, BTreeMap<u32, TaskRecord>)> = self
            .state
            .records()
            .into_iter()
            .map(|s| {
                let s = Arc::unwrap_or_clone(s);
                (s.instance.name.clone(), (s.instance, s.tasks))
            })
            .collect();

        // Reservations of deleted instances and replaced members go back.
        let released = releases(
            &summaries,
            &framework_id,
            |id, member| placement::volume_wanted(&states, id, member),
            |member| placement::instance_of_member(member).is_some_and(|i| states.contains_key(i)),
        );
        let mut release_records: BTreeMap<String, Vec<TaskRecord>> = BTreeMap::new();
        for release in &released {
            tracing::info!(persistence_id = %release.persistence_id, offer_id = %release.offer_id, "releasing a member's reservation and volume");
            for (record, tasks) in states.values() {
                if record.status.is_live() || record.status == InstanceStatus::Failed {
                    continue;
                }
                for task in tasks.values() {
                    if task
                        .volume
                        .as_ref()
                        .is_some_and(|v| v.persistence_id == release.persistence_id)
                    {
                        let mut task = task.clone();
                        task.volume = None;
                        release_records
                            .entry(release.offer_id.clone())
                            .or_default()
                            .push(task);
                    }
                }
            }
        }

        // Bindings of deleted instances not released by this round.
        let released_ids: BTreeSet<&str> =
            released.iter().map(|r| r.persistence_id.as_str()).collect();
        let releases_pending = states.values().any(|(record, tasks)| {
            matches!(
                record.status,
                InstanceStatus::Deleting | InstanceStatus::Deleted
            ) && tasks.values().any(|t| {
                t.volume
                    .as_ref()
                    .is_some_and(|v| !released_ids.contains(v.persistence_id.as_str()))
            })
        });
        let jobs_empty = jobs.is_empty();
        // Jobs of instances that vanished or stopped being live are dropped; the
        // others are brought up to date with their records.
        let mut live_jobs = Vec::new();
        let mut stale = Vec::new();
        for (mut job, waited) in jobs {
            let current = states.get(&job.instance).and_then(|(record, tasks)| {
                let task = tasks.get(&job.ordinal)?;
                (record.status.is_live() && task.task_id == job.task_id).then_some((record, task))
            });
            match current {
                Some((record, task)) => {
                    job.refresh(&record.spec, task);
                    live_jobs.push((job, waited));
                }
                None => stale.push(job.task_id),
            }
        }
        if !stale.is_empty() {
            self.buffer.launched(stale);
        }
        let all_tasks = states.values().flat_map(|(_, tasks)| tasks.values());
        let peers = placement::peers(all_tasks, &self.known_agents);
        // A job may share an agent with its instance's other members once every known
        // agent already has one, or once it has waited long enough for another.
        let jobs: Vec<_> = live_jobs
            .into_iter()
            .map(|(mut job, waited)| {
                let busy: BTreeSet<&str> = peers
                    .get(&job.instance)
                    .map(|p| p.iter().map(|f| f.agent_id.as_str()).collect())
                    .unwrap_or_default();
                let all_busy = self
                    .known_agents
                    .keys()
                    .all(|agent| busy.contains(agent.as_str()));
                job.colocate = all_busy || waited >= SPREAD_PATIENCE;
                job
            })
            .collect();
        let settings = MatchSettings {
            role: self.role.clone(),
            principal: self.mesos.principal(),
            framework_id: framework_id.clone(),
            executor_overhead: Resources {
                cpus: self.executor.resources.cpus,
                mem: self.executor.resources.mem,
                disk: self.executor.resources.disk,
            },
        };
        let role_allows_volumes = self.role != "*";
        let (jobs, no_role): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .partition(|job| job.volume.is_none() || job.bound.is_some() || role_allows_volumes);
        // Matching is pure and, with thousands of queued jobs and offers, takes tens
        // of milliseconds: it runs on the blocking pool, so the actor thread serves
        // creates and status updates meanwhile.
        let (jobs, mut outcome) = tokio::task::spawn_blocking(move || {
            let outcome = match_offers(&summaries, &jobs, &peers, &settings);
            (jobs, outcome)
        })
        .await
        .map_err(|e| ActorError::Unavailable {
            actor: ACTOR,
            reason: format!("offer matching stopped: {e}"),
        })?;
        outcome.unplaced.extend(no_role.iter().map(|job| {
            (
                job.task_id.clone(),
                "persistent volumes need the framework to have a role other than *".to_string(),
            )
        }));

        // Persist every placement first, then launch.
        let allocations: BTreeMap<&str, Option<v1::resource::AllocationInfo>> = offers
            .iter()
            .map(|o| (o.id.value.as_str(), allocation_of(o)))
            .collect();
        let mut records_by_offer = release_records;
        let mut operations_by_offer: BTreeMap<String, Vec<v1::offer::Operation>> = BTreeMap::new();
        let mut tasks_by_offer: BTreeMap<String, Vec<v1::TaskInfo>> = BTreeMap::new();
        for release in &released {
            operations_by_offer
                .entry(release.offer_id.clone())
                .or_default()
                .extend(release.operations());
        }
        for placement in &outcome.placements {
            let Some((instance, tasks)) = states.get(&placement.job.instance) else {
                continue;
            };
            let Some(record) = tasks.get(&placement.job.ordinal) else {
                continue;
            };
            let task_list: Vec<TaskRecord> = tasks.values().cloned().collect();
            let view = crate::domain::view::InstanceView::new(instance, &task_list);
            let mut member = MemberView::from(record);
            member.host = Some(placement.hostname.clone());
            member.port = Some(placement.port);
            let plan = match placement.job.role {
                Role::Master => self.workload.start_master(&view, &member, placement.port),
                Role::Replica => {
                    self.workload
                        .start_replica(&view, &member, placement.port, view.master())
                }
            };
            // The launch joins the trace of the request that queued the member; the
            // offer round that placed it is linked.
            let launch_span = handler_span(ACTOR, "Launch", &tracing::Span::none());
            set_remote_parent(&launch_span, placement.job.trace_parent.as_deref());
            link_to(&launch_span, &tracing::Span::current());
            launch_span.record("instance", placement.job.instance.as_str());
            launch_span.record("task_id", placement.job.task_id.as_str());
            launch_span.record("offer_id", placement.offer_id.as_str());
            launch_span.record("agent_id", placement.agent_id.as_str());
            let launch_parent = traceparent(&launch_span);
            let allocation = allocations
                .get(placement.offer_id.as_str())
                .and_then(Option::as_ref);
            let mut task = launch::task_info(
                placement,
                &plan,
                &framework_id,
                &self.framework_name,
                &self.executor,
                allocation,
            );
            if let Some(parent) = &launch_parent {
                // The executor's spans join the trace through this label.
                if let Some(labels) = &mut task.labels {
                    labels.labels.push(v1::Label {
                        key: "traceparent".to_string(),
                        value: Some(parent.clone()),
                    });
                }
            }
            drop(launch_span);
            let mut record = record.clone();
            record.agent_id = Some(placement.agent_id.clone());
            record.hostname = Some(placement.hostname.clone());
            record.port = Some(placement.port);
            record.state = Some(lifecycle::state_name(v1::TaskState::TaskStaging).to_string());
            record.message = None;
            if let Some(volume) = &placement.volume {
                record.volume = Some(volume.as_ref().clone());
            }
            if launch_parent.is_some() {
                record.trace_parent = launch_parent;
            }
            records_by_offer
                .entry(placement.offer_id.clone())
                .or_default()
                .push(record);
            operations_by_offer
                .entry(placement.offer_id.clone())
                .or_default()
                .extend(placement.operations());
            tasks_by_offer
                .entry(placement.offer_id.clone())
                .or_default()
                .push(task);
        }

        // Members still waiting say why.
        let mut waiting_records = Vec::new();
        for (task_id, reason) in &outcome.unplaced {
            let Some(job) = jobs
                .iter()
                .chain(no_role.iter())
                .find(|j| &j.task_id == task_id)
            else {
                continue;
            };
            let Some(record) = states
                .get(&job.instance)
                .and_then(|(_, tasks)| tasks.get(&job.ordinal))
            else {
                continue;
            };
            let message = format!("waiting for an offer: {reason}");
            if record.message.as_deref() != Some(message.as_str()) {
                let mut record = record.clone();
                record.message = Some(message);
                waiting_records.push(record);
            }
        }

        // Offers are accepted group by group, each group's records persisted first
        // in one atomic write; the waiting members' messages go with the first.
        let groups = launch::group_by_size(
            operations_by_offer
                .keys()
                .map(|id| {
                    let records = records_by_offer.get(id).map_or(0, Vec::len);
                    (id.clone(), records)
                })
                .collect(),
            ACCEPT_GROUP_RECORDS,
        );
        let mut pending_records = waiting_records;
        let mut first_accept = true;
        for group in groups {
            let mut to_write = std::mem::take(&mut pending_records);
            for offer_id in &group {
                to_write.extend(records_by_offer.remove(offer_id).unwrap_or_default());
            }
            if !to_write.is_empty() {
                self.state.write(Vec::new(), to_write).await?;
            }
            if first_accept && group.iter().any(|id| tasks_by_offer.contains_key(id)) {
                first_accept = false;
                self.metrics
                    .offer_to_accept_seconds
                    .observe(self.received_at.elapsed().as_secs_f64());
            }
            self.metrics.offers("accepted", group.len());
            let mut launched = Vec::new();
            for offer_id in &group {
                let mut operations = operations_by_offer.remove(offer_id).unwrap_or_default();
                if let Some(tasks) = tasks_by_offer.remove(offer_id) {
                    launched.extend(tasks.iter().map(|t| t.task_id.value.clone()));
                    for task in &tasks {
                        tracing::info!(task_id = %task.task_id.value, agent_id = %task.agent_id.value, %offer_id, "launching");
                    }
                    operations.push(calls::launch(tasks));
                }
                self.mesos.send(calls::accept(
                    vec![offer_id.clone()],
                    operations,
                    REFUSE_SECONDS_BUSY,
                ));
            }
            lock(remaining).retain(|o| !group.contains(&o.id.value));
            self.metrics.launches.inc_by(launched.len() as u64);
            self.buffer.launched(launched);
        }
        if !pending_records.is_empty() {
            self.state.write(Vec::new(), pending_records).await?;
        }
        let released_offers: BTreeSet<&str> =
            released.iter().map(|r| r.offer_id.as_str()).collect();
        let unused: Vec<String> = outcome
            .unused_offers
            .into_iter()
            .filter(|id| !released_offers.contains(id.as_str()))
            .collect();
        lock(remaining).clear();
        if !unused.is_empty() {
            self.metrics.offers("declined", unused.len());
            let refuse = if jobs_empty {
                REFUSE_SECONDS_IDLE
            } else {
                REFUSE_SECONDS_BUSY
            };
            self.mesos.send(calls::decline(unused, refuse));
        }
        Ok((jobs_empty, Some(releases_pending)))
    }
}

/// The guarded value, also after a panic elsewhere left the lock poisoned (the
/// offers in it stay valid).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The allocation info the master gave the offer's resources.
fn allocation_of(offer: &v1::Offer) -> Option<v1::resource::AllocationInfo> {
    offer.allocation_info.clone().or_else(|| {
        offer
            .resources
            .iter()
            .find_map(|r| r.allocation_info.clone())
    })
}

impl Actor for OfferManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.started(ACTOR);
        ctx.run_interval(FLOW_TICK, |_, ctx| ctx.notify(OfferTimer::Flow));
        // Deletions of instances with volumes are learned from the durable writes:
        // their reservations come back only in offers, which must flow for them.
        let state = self.state.clone();
        let addr = ctx.address();
        actix::spawn(async move {
            let Ok(mut changes) = state.subscribe_changes().await else {
                return;
            };
            loop {
                let pending = match changes.recv().await {
                    Ok(change) => change.instances.iter().any(|i| {
                        i.spec.volume.is_some()
                            && matches!(
                                i.status,
                                InstanceStatus::Deleting | InstanceStatus::Deleted
                            )
                    }),
                    // Missed writes may have been deletions: look.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if pending {
                    addr.do_send(Traced::new(OfferMsg::ReleasePending));
                }
            }
        });
    }
}

impl Handler<OfferTimer> for OfferManager {
    type Result = ();
    fn handle(&mut self, msg: OfferTimer, _: &mut Context<Self>) {
        match msg {
            OfferTimer::Flow => self.on_flow_tick(),
        }
    }
}

impl Handler<Traced<OfferMsg>> for OfferManager {
    type Result = ();
    fn handle(&mut self, msg: Traced<OfferMsg>, ctx: &mut Context<Self>) {
        let name = msg.message.name();
        self.metrics.received(ACTOR, name);
        let span = handler_span(ACTOR, name, &msg.parent);
        if let OfferMsg::Offers(offers) = msg.message {
            // Timed by the round itself, which outlives this call.
            self.on_offers(offers, span, ctx);
            return;
        }
        let started = Instant::now();
        let _entered = span.entered();
        match msg.message {
            OfferMsg::Offers(_) => {}
            OfferMsg::Rescinded(id) => {
                self.metrics.offers("rescinded", 1);
                self.on_rescinded(id)
            }
            OfferMsg::WorkQueued => self.on_work_queued(),
            OfferMsg::QueueDrained => self.on_queue_drained(),
            OfferMsg::Subscribed => self.on_subscribed(),
            OfferMsg::ReleasePending => self.on_release_pending(),
        }
        self.metrics.handled(ACTOR, name, started, false);
    }
}

/// Typed access to the OfferManager.
#[derive(Debug, Clone)]
pub struct OfferManagerHandle {
    addr: Addr<OfferManager>,
    /// The actor's record of rescinded offers, written here so that a round already
    /// queued behind the RESCIND sees it.
    rescinded: Arc<Mutex<Rescinded>>,
    metrics: Arc<Metrics>,
}

impl OfferManagerHandle {
    /// A handle on `addr`, sharing `rescinded` (from
    /// [`OfferManager::rescinded_record`]) with the actor started there.
    pub(crate) fn new(
        addr: Addr<OfferManager>,
        rescinded: RescindedRecord,
        metrics: Arc<Metrics>,
    ) -> Self {
        OfferManagerHandle {
            addr,
            rescinded: rescinded.0,
            metrics,
        }
    }

    /// Hands offers over.
    pub fn offers(&self, offers: Vec<v1::Offer>) {
        self.metrics.sent(ACTOR);
        self.addr.do_send(Traced::new(OfferMsg::Offers(offers)));
    }

    /// Reports a rescinded offer.
    pub fn rescinded(&self, offer_id: String) {
        if let Ok(mut rescinded) = self.rescinded.lock() {
            rescinded.insert(offer_id.clone());
        }
        self.metrics.sent(ACTOR);
        self.addr
            .do_send(Traced::new(OfferMsg::Rescinded(offer_id)));
    }

    /// Reports a (re-)subscription: offers flow again.
    pub fn subscribed(&self) {
        self.metrics.sent(ACTOR);
        self.addr.do_send(Traced::new(OfferMsg::Subscribed));
    }
}
