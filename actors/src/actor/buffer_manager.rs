//! BufferManager: the queue of members waiting for an offer, and the queue of
//! task updates on their way to the Maintainer.
//!
//! Launch jobs stay queued until the OfferManager reports them launched (or the
//! instance is deleted), so an offer round that fails leaves them for the next.
//! Task updates are forwarded in arrival order.
//!
//! A restart of this actor loses the queues; they are rebuilt from the store when
//! the scheduler starts (members persisted without an agent are re-queued).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use mesos_stateful_proto::v1;

use crate::domain::offers::LaunchJob;
use crate::telemetry::{handler_span, MessageName, Metrics, Traced};
use crate::ActorError;

use super::maintainer::MaintainerMsg;
use super::offer_manager::OfferMsg;

/// Events and commands of the BufferManager.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum BufferMsg {
    /// Members to launch.
    QueueLaunch(Vec<LaunchJob>),
    /// The OfferManager launched these task ids.
    Launched(Vec<String>),
    /// Drop every queued job of an instance (it is being deleted).
    CancelInstance(String),
    /// A status update from Mesos, for the Maintainer.
    TaskUpdate(Box<v1::TaskStatus>),
}

impl MessageName for BufferMsg {
    fn name(&self) -> &'static str {
        match self {
            BufferMsg::QueueLaunch(_) => "QueueLaunch",
            BufferMsg::Launched(_) => "Launched",
            BufferMsg::CancelInstance(_) => "CancelInstance",
            BufferMsg::TaskUpdate(_) => "TaskUpdate",
        }
    }
}

/// Reads the queued launch jobs, oldest first, with how long each has waited.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(LaunchJob, Duration)>")]
pub struct PendingJobs;

/// The actor.
#[derive(Debug)]
pub struct BufferManager {
    /// Queued jobs with the moment each was queued.
    jobs: VecDeque<(LaunchJob, Instant)>,
    offer_manager: Recipient<Traced<OfferMsg>>,
    maintainer: Recipient<Traced<MaintainerMsg>>,
    metrics: Arc<Metrics>,
}

pub(crate) const ACTOR: &str = "BufferManager";

impl BufferManager {
    /// A BufferManager feeding `offer_manager` and `maintainer`.
    pub fn new(
        offer_manager: Recipient<Traced<OfferMsg>>,
        maintainer: Recipient<Traced<MaintainerMsg>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        BufferManager {
            jobs: VecDeque::new(),
            offer_manager,
            maintainer,
            metrics,
        }
    }

    fn on_queue_launch(&mut self, jobs: Vec<LaunchJob>) {
        let mut added = false;
        for job in jobs {
            if !self
                .jobs
                .iter()
                .any(|(queued, _)| queued.task_id == job.task_id)
            {
                tracing::info!(task_id = %job.task_id, "queued for launch");
                self.jobs.push_back((job, Instant::now()));
                added = true;
            }
        }
        if added {
            self.metrics.sent(super::offer_manager::ACTOR);
            self.offer_manager
                .do_send(Traced::new(OfferMsg::WorkQueued));
        }
    }

    fn on_launched(&mut self, task_ids: Vec<String>) {
        self.jobs
            .retain(|(job, _)| !task_ids.contains(&job.task_id));
    }

    fn on_cancel_instance(&mut self, instance: String) {
        self.jobs.retain(|(job, _)| job.instance != instance);
    }

    fn on_task_update(&mut self, status: Box<v1::TaskStatus>) {
        self.metrics.sent(super::maintainer::ACTOR);
        self.maintainer
            .do_send(Traced::new(MaintainerMsg::TaskUpdate(status)));
    }
}

impl Actor for BufferManager {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.metrics.started(ACTOR);
    }
}

impl Handler<Traced<BufferMsg>> for BufferManager {
    type Result = ();
    fn handle(&mut self, msg: Traced<BufferMsg>, _: &mut Context<Self>) {
        let name = msg.message.name();
        self.metrics.received(ACTOR, name);
        let span = handler_span(ACTOR, name, &msg.parent);
        let _entered = span.enter();
        let started = Instant::now();
        match msg.message {
            BufferMsg::QueueLaunch(jobs) => self.on_queue_launch(jobs),
            BufferMsg::Launched(ids) => self.on_launched(ids),
            BufferMsg::CancelInstance(name) => self.on_cancel_instance(name),
            BufferMsg::TaskUpdate(status) => {
                span.record("task_id", status.task_id.value.as_str());
                self.on_task_update(status)
            }
        }
        self.metrics.handled(ACTOR, name, started, false);
    }
}

impl Handler<Traced<PendingJobs>> for BufferManager {
    type Result = MessageResult<Traced<PendingJobs>>;
    fn handle(&mut self, msg: Traced<PendingJobs>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "PendingJobs");
        let _entered = handler_span(ACTOR, "PendingJobs", &msg.parent).entered();
        MessageResult(
            self.jobs
                .iter()
                .map(|(job, queued_at)| (job.clone(), queued_at.elapsed()))
                .collect(),
        )
    }
}

/// Typed access to the BufferManager.
#[derive(Debug, Clone)]
pub struct BufferManagerHandle {
    addr: Addr<BufferManager>,
    metrics: Arc<Metrics>,
}

impl BufferManagerHandle {
    pub(crate) fn new(addr: Addr<BufferManager>, metrics: Arc<Metrics>) -> Self {
        BufferManagerHandle { addr, metrics }
    }

    fn tell(&self, msg: BufferMsg) {
        self.metrics.sent(ACTOR);
        self.addr.do_send(Traced::new(msg));
    }

    /// Queues members for launch.
    pub fn queue_launch(&self, jobs: Vec<LaunchJob>) {
        self.tell(BufferMsg::QueueLaunch(jobs));
    }

    /// Reports task ids launched.
    pub fn launched(&self, task_ids: Vec<String>) {
        self.tell(BufferMsg::Launched(task_ids));
    }

    /// Drops the queued jobs of an instance.
    pub fn cancel_instance(&self, instance: &str) {
        self.tell(BufferMsg::CancelInstance(instance.to_string()));
    }

    /// Hands a status update to the update queue.
    pub fn task_update(&self, status: v1::TaskStatus) {
        self.tell(BufferMsg::TaskUpdate(Box::new(status)));
    }

    /// The queued jobs with how long each has waited.
    pub async fn pending(&self) -> Result<Vec<(LaunchJob, Duration)>, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(PendingJobs))
            .await
            .map_err(|e| ActorError::mailbox("BufferManager", e))
    }
}
