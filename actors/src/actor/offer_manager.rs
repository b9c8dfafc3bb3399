//! OfferManager: matches queued members to offers, persists the placement, then
//! ACCEPTs with LAUNCH; declines what it does not use.
//!
//! One offer round is handled at a time (`ctx.wait`), so two rounds never place the
//! same job. The placement (agent, host, port, TASK_STAGING) is persisted before the
//! ACCEPT is sent: after a crash the scheduler knows which task may be running where
//! and reconciles it instead of launching it twice.
//!
//! A restart of this actor loses nothing: offers are re-sent by Mesos.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use mesos_stateful_proto::v1;
use mesos_stateful_store::records::{Resources, Role};

use crate::domain::launch::{self, ExecutorLaunch};
use crate::domain::lifecycle;
use crate::domain::offers::{match_offers, OfferSummary};
use crate::domain::view::MemberView;
use crate::mesos::{calls, MesosCalls};
use crate::telemetry::{
    handler_span, link_to, observe, set_remote_parent, traceparent, MessageName, Metrics, Traced,
};
use crate::workload::Workload;
use crate::ActorError;

use super::buffer_manager::BufferManagerHandle;
use super::state_manager::StateManagerHandle;

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

/// Events of the OfferManager.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum OfferMsg {
    /// Mesos sent offers.
    Offers(Vec<v1::Offer>),
    /// Mesos took an offer back.
    Rescinded(String),
    /// New jobs were queued: ask Mesos for offers again.
    WorkQueued,
}

impl MessageName for OfferMsg {
    fn name(&self) -> &'static str {
        match self {
            OfferMsg::Offers(_) => "Offers",
            OfferMsg::Rescinded(_) => "Rescinded",
            OfferMsg::WorkQueued => "WorkQueued",
        }
    }
}

pub(crate) const ACTOR: &str = "OfferManager";

/// The actor.
#[derive(Debug)]
pub struct OfferManager {
    buffer: BufferManagerHandle,
    state: StateManagerHandle,
    mesos: Arc<dyn MesosCalls>,
    workload: Arc<dyn Workload>,
    executor: ExecutorLaunch,
    framework_name: String,
    /// Agents seen in offers, with when they were last offered.
    known_agents: BTreeMap<String, Instant>,
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
        let framework_name = workload.config().framework_name;
        OfferManager {
            buffer,
            state,
            mesos,
            workload,
            executor,
            framework_name,
            known_agents: BTreeMap::new(),
            metrics,
        }
    }

    fn on_offers(&mut self, offers: Vec<v1::Offer>, span: tracing::Span, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.metrics.offers("received", offers.len());
        for offer in &offers {
            self.known_agents.insert(offer.agent_id.value.clone(), now);
        }
        self.known_agents
            .retain(|_, seen| now.duration_since(*seen) < AGENT_MEMORY);
        let round = OfferRound {
            known_agents: self.known_agents.keys().cloned().collect(),
            buffer: self.buffer.clone(),
            state: self.state.clone(),
            mesos: self.mesos.clone(),
            workload: self.workload.clone(),
            executor: self.executor.clone(),
            framework_name: self.framework_name.clone(),
            metrics: self.metrics.clone(),
            received_at: now,
        };
        let mesos = self.mesos.clone();
        let metrics = self.metrics.clone();
        let offer_ids: Vec<String> = offers.iter().map(|o| o.id.value.clone()).collect();
        let work = async move {
            if let Err(error) = round.run(offers).await {
                // Nothing was accepted: give the offers back so Mesos re-offers them.
                tracing::warn!(%error, "offer round failed; declining its offers");
                metrics.offers("declined", offer_ids.len());
                mesos.send(calls::decline(offer_ids, REFUSE_SECONDS_BUSY));
                return true;
            }
            false
        };
        ctx.wait(observe(self.metrics.clone(), ACTOR, "Offers", span, work).into_actor(self));
    }

    fn on_rescinded(&mut self, offer_id: String) {
        // Offers are used or declined within their round and never held, so a rescind
        // has nothing to drop.
        tracing::debug!(%offer_id, "offer rescinded");
    }

    fn on_work_queued(&mut self) {
        self.mesos.send(calls::revive());
    }
}

/// Everything one offer round needs, detached from the actor.
struct OfferRound {
    known_agents: BTreeSet<String>,
    metrics: Arc<Metrics>,
    received_at: Instant,
    buffer: BufferManagerHandle,
    state: StateManagerHandle,
    mesos: Arc<dyn MesosCalls>,
    workload: Arc<dyn Workload>,
    executor: ExecutorLaunch,
    framework_name: String,
}

impl OfferRound {
    async fn run(self, offers: Vec<v1::Offer>) -> Result<(), ActorError> {
        let jobs = self.buffer.pending().await?;
        let offer_ids: Vec<String> = offers.iter().map(|o| o.id.value.clone()).collect();
        if jobs.is_empty() {
            self.mesos
                .send(calls::decline(offer_ids, REFUSE_SECONDS_IDLE));
            return Ok(());
        }
        let Some(framework_id) = self.mesos.framework_id() else {
            self.mesos
                .send(calls::decline(offer_ids, REFUSE_SECONDS_BUSY));
            return Ok(());
        };
        let states = self.state.list().await?;
        let states: BTreeMap<String, _> = states
            .into_iter()
            .map(|s| (s.instance.name.clone(), s))
            .collect();
        let mut agents_in_use: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for state in states.values() {
            for task in state.tasks.values() {
                if let Some(agent) = &task.agent_id {
                    if !lifecycle::is_terminal(task.state.as_deref()) {
                        agents_in_use
                            .entry(task.instance.clone())
                            .or_default()
                            .insert(agent.clone());
                    }
                }
            }
        }
        // A job may share an agent with its instance's other members once every known
        // agent already has one, or once it has waited long enough for another.
        let jobs: Vec<_> = jobs
            .into_iter()
            .map(|(mut job, waited)| {
                let busy = agents_in_use.get(&job.instance);
                let all_busy = self
                    .known_agents
                    .iter()
                    .all(|agent| busy.is_some_and(|b| b.contains(agent)));
                job.colocate = all_busy || waited >= SPREAD_PATIENCE;
                job
            })
            .collect();
        // Jobs of instances that vanished or are being deleted are dropped.
        let (jobs, stale): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|job| {
            states.get(&job.instance).is_some_and(|s| {
                matches!(
                    s.instance.status,
                    mesos_stateful_store::records::InstanceStatus::Creating
                        | mesos_stateful_store::records::InstanceStatus::Running
                )
            })
        });
        if !stale.is_empty() {
            self.buffer
                .launched(stale.iter().map(|j| j.task_id.clone()).collect());
        }
        let summaries: Vec<OfferSummary> = offers.iter().map(OfferSummary::from_offer).collect();
        let overhead = Resources {
            cpus: self.executor.resources.cpus,
            mem: self.executor.resources.mem,
            disk: self.executor.resources.disk,
        };
        let outcome = match_offers(&summaries, &jobs, &agents_in_use, overhead);

        // Persist every placement first, then launch.
        let mut placed_records = Vec::new();
        let mut tasks_by_offer: BTreeMap<String, Vec<v1::TaskInfo>> = BTreeMap::new();
        for placement in &outcome.placements {
            let Some(state) = states.get(&placement.job.instance) else {
                continue;
            };
            let Some(record) = state.tasks.get(&placement.job.ordinal) else {
                continue;
            };
            let view = state.view();
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
            let offer = offers.iter().find(|o| o.id.value == placement.offer_id);
            let allocation = offer.and_then(allocation_of);
            let mut task = launch::task_info(
                placement,
                &plan,
                &framework_id,
                &self.framework_name,
                &self.executor,
                allocation.as_ref(),
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
            if launch_parent.is_some() {
                record.trace_parent = launch_parent;
            }
            placed_records.push(record);
            tasks_by_offer
                .entry(placement.offer_id.clone())
                .or_default()
                .push(task);
        }

        // Members still waiting say why.
        let mut waiting_records = Vec::new();
        for (task_id, reason) in &outcome.unplaced {
            let Some(job) = jobs.iter().find(|j| &j.task_id == task_id) else {
                continue;
            };
            let Some(record) = states
                .get(&job.instance)
                .and_then(|s| s.tasks.get(&job.ordinal))
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

        let mut to_write = placed_records;
        to_write.extend(waiting_records);
        if !to_write.is_empty() {
            self.state.write(Vec::new(), to_write).await?;
        }
        let mut launched = Vec::new();
        if !tasks_by_offer.is_empty() {
            self.metrics
                .offer_to_accept_seconds
                .observe(self.received_at.elapsed().as_secs_f64());
        }
        self.metrics.offers("accepted", tasks_by_offer.len());
        for (offer_id, tasks) in tasks_by_offer {
            launched.extend(tasks.iter().map(|t| t.task_id.value.clone()));
            for task in &tasks {
                tracing::info!(task_id = %task.task_id.value, agent_id = %task.agent_id.value, %offer_id, "launching");
            }
            self.mesos.send(calls::accept(
                vec![offer_id],
                vec![calls::launch(tasks)],
                REFUSE_SECONDS_BUSY,
            ));
        }
        self.metrics.launches.inc_by(launched.len() as u64);
        self.buffer.launched(launched);
        if !outcome.unused_offers.is_empty() {
            self.metrics.offers("declined", outcome.unused_offers.len());
            self.mesos
                .send(calls::decline(outcome.unused_offers, REFUSE_SECONDS_BUSY));
        }
        Ok(())
    }
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

    fn started(&mut self, _: &mut Context<Self>) {
        self.metrics.started(ACTOR);
    }
}

impl Handler<Traced<OfferMsg>> for OfferManager {
    type Result = ();
    fn handle(&mut self, msg: Traced<OfferMsg>, ctx: &mut Context<Self>) {
        let name = msg.message.name();
        self.metrics.received(ACTOR, name);
        let span = handler_span(ACTOR, name, &msg.parent);
        match msg.message {
            // Timed by the round itself, which outlives this call.
            OfferMsg::Offers(offers) => self.on_offers(offers, span, ctx),
            OfferMsg::Rescinded(id) => {
                let _entered = span.entered();
                self.metrics.offers("rescinded", 1);
                self.on_rescinded(id)
            }
            OfferMsg::WorkQueued => {
                let started = Instant::now();
                let _entered = span.entered();
                self.on_work_queued();
                self.metrics.handled(ACTOR, name, started, false);
            }
        }
    }
}

/// Typed access to the OfferManager.
#[derive(Debug, Clone)]
pub struct OfferManagerHandle {
    addr: Addr<OfferManager>,
    metrics: Arc<Metrics>,
}

impl OfferManagerHandle {
    pub(crate) fn new(addr: Addr<OfferManager>, metrics: Arc<Metrics>) -> Self {
        OfferManagerHandle { addr, metrics }
    }

    /// Hands offers over.
    pub fn offers(&self, offers: Vec<v1::Offer>) {
        self.metrics.sent(ACTOR);
        self.addr.do_send(Traced::new(OfferMsg::Offers(offers)));
    }

    /// Reports a rescinded offer.
    pub fn rescinded(&self, offer_id: String) {
        self.metrics.sent(ACTOR);
        self.addr
            .do_send(Traced::new(OfferMsg::Rescinded(offer_id)));
    }
}
