//! BufferManager: the queue of members waiting for an offer, and the queue of
//! task updates on their way to the Maintainer.
//!
//! Launch jobs stay queued until the OfferManager reports them launched (or the
//! instance is deleted), so an offer round that fails leaves them for the next.
//! Task updates are forwarded in arrival order.
//!
//! The launch queue is bounded ([`QueueSettings`]): creates are admitted through
//! the [`QueueGauge`] before anything is persisted, and refused with
//! [`ActorError::QueueFull`] (REST 429, or 503 while not subscribed, with
//! `Retry-After`) once the queue holds `max_queued_launches` jobs. Jobs of members
//! already persisted are always queued, so the bound can be overshot by the creates
//! admitted concurrently, never by more.
//!
//! The OfferManager is told when work arrives (to REVIVE offers) and when the queue
//! drains (to SUPPRESS them after a while).
//!
//! A restart of this actor loses the queues; they are rebuilt from the store when
//! the scheduler starts (members persisted without an agent are re-queued).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use mesos_stateful_proto::v1;

use crate::domain::offers::LaunchJob;
use crate::mesos::MesosCalls;
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

/// Bounds of the launch queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Most launch jobs queued before creates are refused.
    pub max_queued_launches: usize,
    /// What a refused client is told to wait before retrying.
    pub retry_after: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            max_queued_launches: 10_000,
            retry_after: Duration::from_secs(5),
        }
    }
}

/// The length of the launch queue, published by the BufferManager after every
/// change and read by whoever admits new work. An atomic rather than a message so
/// that admission answers at once, without a round trip through the mailbox.
#[derive(Debug)]
pub struct QueueGauge {
    queued: AtomicUsize,
    settings: QueueSettings,
    /// Only asked whether a subscription is open, to tell 429 from 503.
    mesos: Arc<dyn MesosCalls>,
}

impl QueueGauge {
    /// A gauge of an empty queue bounded by `settings`.
    pub fn new(settings: QueueSettings, mesos: Arc<dyn MesosCalls>) -> Self {
        QueueGauge {
            queued: AtomicUsize::new(0),
            settings,
            mesos,
        }
    }

    /// Admits `jobs` more launch jobs, or refuses them with
    /// [`ActorError::QueueFull`] if the queue is full.
    pub fn admit(&self, jobs: usize) -> Result<(), ActorError> {
        let queued = self.queued.load(Ordering::Relaxed);
        admission(
            queued,
            jobs,
            &self.settings,
            self.mesos.subscribed_master().is_some(),
        )
    }

    /// Jobs queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn publish(&self, queued: usize) {
        self.queued.store(queued, Ordering::Relaxed);
    }
}

/// Whether `jobs` more fit a queue holding `queued`.
fn admission(
    queued: usize,
    jobs: usize,
    settings: &QueueSettings,
    subscribed: bool,
) -> Result<(), ActorError> {
    if queued.saturating_add(jobs) <= settings.max_queued_launches {
        return Ok(());
    }
    Err(ActorError::QueueFull {
        queued,
        limit: settings.max_queued_launches,
        retry_after_seconds: settings.retry_after.as_secs().max(1),
        subscribed,
    })
}

/// The actor.
#[derive(Debug)]
pub struct BufferManager {
    /// Queued jobs with the moment each was queued.
    jobs: VecDeque<(LaunchJob, Instant)>,
    /// Task ids of `jobs`, so that a job queued twice is kept once.
    queued_ids: HashSet<String>,
    /// Shared with every handle; updated after every change of `jobs`.
    gauge: Arc<QueueGauge>,
    offer_manager: Recipient<Traced<OfferMsg>>,
    maintainer: Recipient<Traced<MaintainerMsg>>,
    metrics: Arc<Metrics>,
}

pub(crate) const ACTOR: &str = "BufferManager";

impl BufferManager {
    /// A BufferManager feeding `offer_manager` and `maintainer`, publishing its
    /// queue length on `gauge` (the one of its [`BufferManagerHandle`]).
    pub fn new(
        offer_manager: Recipient<Traced<OfferMsg>>,
        maintainer: Recipient<Traced<MaintainerMsg>>,
        gauge: Arc<QueueGauge>,
        metrics: Arc<Metrics>,
    ) -> Self {
        BufferManager {
            jobs: VecDeque::new(),
            queued_ids: HashSet::new(),
            gauge,
            offer_manager,
            maintainer,
            metrics,
        }
    }

    fn tell_offer_manager(&self, msg: OfferMsg) {
        self.metrics.sent(super::offer_manager::ACTOR);
        self.offer_manager.do_send(Traced::new(msg));
    }

    fn on_queue_launch(&mut self, jobs: Vec<LaunchJob>) {
        let mut added = false;
        for job in jobs {
            if self.queued_ids.insert(job.task_id.clone()) {
                tracing::info!(task_id = %job.task_id, "queued for launch");
                self.jobs.push_back((job, Instant::now()));
                added = true;
            }
        }
        self.gauge.publish(self.jobs.len());
        if added {
            self.tell_offer_manager(OfferMsg::WorkQueued);
        }
    }

    fn on_launched(&mut self, task_ids: Vec<String>) {
        let task_ids: HashSet<String> = task_ids.into_iter().collect();
        self.remove(|job| task_ids.contains(&job.task_id));
    }

    fn on_cancel_instance(&mut self, instance: String) {
        self.remove(|job| job.instance == instance);
    }

    fn remove(&mut self, unwanted: impl Fn(&LaunchJob) -> bool) {
        let before = self.jobs.len();
        let queued_ids = &mut self.queued_ids;
        self.jobs.retain(|(job, _)| {
            let drop = unwanted(job);
            if drop {
                queued_ids.remove(&job.task_id);
            }
            !drop
        });
        self.gauge.publish(self.jobs.len());
        if before > 0 && self.jobs.is_empty() {
            self.tell_offer_manager(OfferMsg::QueueDrained);
        }
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
    gauge: Arc<QueueGauge>,
    metrics: Arc<Metrics>,
}

impl BufferManagerHandle {
    pub(crate) fn new(
        addr: Addr<BufferManager>,
        gauge: Arc<QueueGauge>,
        metrics: Arc<Metrics>,
    ) -> Self {
        BufferManagerHandle {
            addr,
            gauge,
            metrics,
        }
    }

    /// The instruments, for the actions carried out on its behalf.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The gauge of the launch queue, to hand to the actor.
    pub(crate) fn gauge(&self) -> Arc<QueueGauge> {
        self.gauge.clone()
    }

    /// Admits `jobs` more launch jobs, or refuses them because the queue is full.
    /// Call it before persisting the members the jobs will launch.
    pub fn admit(&self, jobs: usize) -> Result<(), ActorError> {
        self.gauge.admit(jobs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_refuses_past_the_limit_and_says_whether_subscribed() {
        let settings = QueueSettings {
            max_queued_launches: 10,
            retry_after: Duration::from_secs(3),
        };
        assert!(admission(0, 10, &settings, true).is_ok());
        assert!(admission(9, 1, &settings, true).is_ok());
        let refused = admission(9, 2, &settings, true).unwrap_err();
        assert!(matches!(
            refused,
            ActorError::QueueFull {
                queued: 9,
                limit: 10,
                retry_after_seconds: 3,
                subscribed: true
            }
        ));
        assert_eq!(refused.code(), "rate_limited");
        let refused = admission(10, 1, &settings, false).unwrap_err();
        assert_eq!(refused.code(), "not_ready");
        // Never a zero Retry-After.
        let instant = QueueSettings {
            max_queued_launches: 0,
            retry_after: Duration::ZERO,
        };
        assert!(matches!(
            admission(0, 1, &instant, true),
            Err(ActorError::QueueFull {
                retry_after_seconds: 1,
                ..
            })
        ));
    }
}
