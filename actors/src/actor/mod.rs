//! The actors, their handles, and [`System`], which starts and wires them.
//!
//! Topology (arrows are messages):
//!
//! ```text
//! REST ─► HttpLib ─► Creator ─► StateManager
//!                 │          └► BufferManager ─► OfferManager ─► Mesos ACCEPT/DECLINE/REVIVE
//!                 └► Destroyer ─► Mesos KILL
//! Mesos OFFERS ─► OfferManager ─► StateManager (placement), BufferManager (launched)
//! Mesos UPDATE ─► BufferManager ─► Maintainer ─► StateManager, Mesos ACKNOWLEDGE,
//!                                              Destroyer (terminal while deleting)
//! ```
//!
//! All actors run on the actix system's arbiter; the only blocking work (RocksDB)
//! runs on tokio's blocking pool, awaited by the StateManager.

mod actions;
pub mod buffer_manager;
pub mod creator;
pub mod destroyer;
pub mod http_lib;
pub mod maintainer;
pub mod offer_manager;
pub mod operations;
pub mod state_manager;

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;

use mesos_stateful_proto::v1::scheduler::{event, Event};
use mesos_stateful_store::StateStore;

use crate::domain::launch::ExecutorLaunch;
use crate::domain::offers::LaunchJob;
use crate::mesos::{calls, MesosCalls};
use crate::telemetry::Metrics;
use crate::workload::Workload;
use crate::ActorError;

use buffer_manager::{BufferManager, BufferManagerHandle};
use creator::{Creator, CreatorHandle};
use destroyer::{Destroyer, DestroyerHandle};
use http_lib::{ApiHandles, HttpLib};
use maintainer::{Maintainer, MaintainerHandle};
use offer_manager::{OfferManager, OfferManagerHandle};
use state_manager::{StateManager, StateManagerHandle};

/// Settings of the actor system.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// Address of the REST API (port 0 picks one).
    pub listen: SocketAddr,
    /// How tasks get our executor.
    pub executor: ExecutorLaunch,
    /// Instruments shared by every actor and served on `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// The REST API's security, limits and TLS.
    pub api: http_lib::ApiSettings,
    /// Backoff of relaunches and the timeout before replacing a member elsewhere.
    pub recovery: crate::domain::recovery::RecoveryConfig,
    /// Bounds of the launch queue (backpressure on creates).
    pub queue: buffer_manager::QueueSettings,
}

/// Stops the write path's arbiter and waits for its thread once the runtime that
/// started the actors ends (the guard lives in a task of that runtime), so that the
/// StateManager, and the store it holds, is dropped before the process exits.
struct JoinOnDrop(Option<Arbiter>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(arbiter) = self.0.take() {
            arbiter.stop();
            if arbiter.join().is_err() {
                tracing::error!("the write path's thread panicked");
            }
        }
    }
}

/// The running actors.
#[derive(Debug, Clone)]
pub struct System {
    /// Creates instances.
    pub creator: CreatorHandle,
    /// Deletes instances.
    pub destroyer: DestroyerHandle,
    /// Reads and writes state.
    pub state: StateManagerHandle,
    /// Queues.
    pub buffer: BufferManagerHandle,
    /// Offers.
    pub offers: OfferManagerHandle,
    /// Task states and commands.
    pub maintainer: MaintainerHandle,
    /// The REST server's actor.
    pub http: Addr<HttpLib>,
    /// Where the REST API listens.
    pub api_addr: SocketAddr,
    /// The instruments.
    pub metrics: Arc<Metrics>,
    mesos: Arc<dyn MesosCalls>,
}

impl System {
    /// Loads state from `store` and starts every actor on the current actix system.
    pub async fn start(
        store: StateStore,
        mesos: Arc<dyn MesosCalls>,
        workload: Arc<dyn Workload>,
        config: SystemConfig,
    ) -> Result<System, ActorError> {
        let metrics = config.metrics.clone();
        let loading_metrics = metrics.clone();
        let state_manager =
            tokio::task::spawn_blocking(move || StateManager::load(store, loading_metrics))
                .await
                .map_err(|e| ActorError::Unavailable {
                    actor: "StateManager",
                    reason: e.to_string(),
                })??;
        // The write path (the StateManager and the Creator) gets a thread of its
        // own, so that a create is never queued behind an offer round or a batch of
        // status updates on the main actor thread.
        let write_arbiter = Arbiter::new();
        let write_path = write_arbiter.handle();
        let guard = JoinOnDrop(Some(write_arbiter));
        actix::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let cache = state_manager.cache();
        let state = StateManagerHandle::new(
            StateManager::start_in_arbiter(&write_path, move |_| state_manager),
            cache,
            metrics.clone(),
        );

        // Contexts first, so actors that feed each other can hold each other's address.
        let buffer_ctx = Context::<BufferManager>::new();
        let offer_ctx = Context::<OfferManager>::new();
        let maintainer_ctx = Context::<Maintainer>::new();
        let destroyer_ctx = Context::<Destroyer>::new();
        let buffer = BufferManagerHandle::new(
            buffer_ctx.address(),
            Arc::new(buffer_manager::QueueGauge::new(config.queue, mesos.clone())),
            metrics.clone(),
        );

        let destroyer_addr = destroyer_ctx.run(Destroyer::new(
            state.clone(),
            buffer.clone(),
            mesos.clone(),
            metrics.clone(),
        ));
        let maintainer_addr = maintainer_ctx.run(Maintainer::new(
            state.clone(),
            buffer.clone(),
            destroyer_addr.clone().recipient(),
            mesos.clone(),
            workload.clone(),
            metrics.clone(),
            config.recovery,
        ));
        let offer_manager = OfferManager::new(
            buffer.clone(),
            state.clone(),
            mesos.clone(),
            workload.clone(),
            config.executor.clone(),
            metrics.clone(),
        );
        let rescinded = offer_manager.rescinded_record();
        let offer_addr = offer_ctx.run(offer_manager);
        let maintainer = MaintainerHandle::new(maintainer_addr.clone(), metrics.clone());
        buffer_ctx.run(BufferManager::new(
            offer_addr.clone().recipient(),
            maintainer_addr.recipient(),
            buffer.gauge(),
            metrics.clone(),
        ));
        let creator = {
            let creator = Creator::new(state.clone(), buffer.clone(), workload, metrics.clone());
            CreatorHandle::new(
                Creator::start_in_arbiter(&write_path, move |_| creator),
                metrics.clone(),
            )
        };
        let destroyer = DestroyerHandle::new(destroyer_addr, metrics.clone());

        let http = HttpLib::start_server(
            config.listen,
            ApiHandles {
                creator: creator.clone(),
                destroyer: destroyer.clone(),
                state: state.clone(),
                maintainer: maintainer.clone(),
                mesos: mesos.clone(),
                metrics: metrics.clone(),
            },
            config.api.clone(),
        )
        .map_err(|e| ActorError::Unavailable {
            actor: "HttpLib",
            reason: format!("cannot listen on {}: {e}", config.listen),
        })?;
        let api_addr = http
            .send(http_lib::LocalAddr)
            .await
            .map_err(|e| ActorError::mailbox("HttpLib", e))?;

        let system = System {
            creator,
            destroyer,
            state,
            buffer,
            offers: OfferManagerHandle::new(offer_addr, rescinded, metrics.clone()),
            maintainer,
            http,
            api_addr,
            metrics,
            mesos,
        };
        system.requeue_unplaced();
        Ok(system)
    }

    /// Queues again the members persisted without a placement (after a restart).
    fn requeue_unplaced(&self) {
        let mut jobs = Vec::new();
        for state in self.state.records() {
            if !state.instance.status.is_live() {
                continue;
            }
            for task in state.tasks.values() {
                if task.agent_id.is_none() && task.state.is_none() {
                    jobs.push(LaunchJob::for_member(&state.instance.spec, task));
                }
            }
        }
        if !jobs.is_empty() {
            tracing::info!(
                count = jobs.len(),
                "re-queueing members waiting for an offer"
            );
            self.buffer.queue_launch(jobs);
        }
    }

    /// The framework id persisted by an earlier run, for re-subscribing.
    pub fn stored_framework_id(&self) -> Option<String> {
        self.state.framework_id()
    }

    /// Routes one Mesos event to the actor that owns it. SUBSCRIBED is handled
    /// before returning (the framework id is durable before anything else happens).
    pub async fn handle_event(&self, event: Event) -> Result<(), ActorError> {
        let kind = event
            .r#type
            .and_then(|t| event::Type::try_from(t).ok())
            .unwrap_or(event::Type::Unknown);
        // Every event starts a trace; the actor spans it causes are its children.
        let span = tracing::info_span!(
            "mesos_event",
            otel.name = %format_args!("Mesos::{}", kind.as_str_name()),
        );
        tracing::Instrument::instrument(self.dispatch(kind, event), span).await
    }

    async fn dispatch(&self, kind: event::Type, event: Event) -> Result<(), ActorError> {
        match kind {
            event::Type::Subscribed => {
                self.metrics.subscriptions.inc();
                if let Some(subscribed) = event.subscribed {
                    self.on_subscribed(&subscribed.framework_id.value).await?;
                }
            }
            event::Type::Offers => {
                if let Some(offers) = event.offers {
                    self.offers.offers(offers.offers);
                }
            }
            event::Type::Rescind => {
                if let Some(rescind) = event.rescind {
                    self.offers.rescinded(rescind.offer_id.value);
                }
            }
            event::Type::Update => {
                if let Some(update) = event.update {
                    self.buffer.task_update(update.status);
                }
            }
            event::Type::Message => {
                if let Some(message) = event.message {
                    self.on_executor_message(&message.executor_id.value, message.data);
                }
            }
            event::Type::Failure => {
                if let Some(failure) = event.failure {
                    tracing::warn!(agent_id = ?failure.agent_id.map(|a| a.value), executor_id = ?failure.executor_id.map(|e| e.value), status = ?failure.status, "failure");
                }
            }
            event::Type::Error => {
                tracing::error!(message = ?event.error.map(|e| e.message), "error from Mesos");
            }
            event::Type::Heartbeat => tracing::trace!("heartbeat"),
            other => tracing::debug!(event = ?other, "event ignored"),
        }
        Ok(())
    }

    /// Executor messages carry stats and command results; anything else is logged
    /// and dropped (an executor is outside our trust boundary).
    fn on_executor_message(&self, executor_id: &str, data: bytes::Bytes) {
        use mesos_stateful_proto::stateful::{executor_message::Payload, ExecutorMessage};
        use prost::Message as _;
        match ExecutorMessage::decode(data) {
            Ok(ExecutorMessage {
                payload: Some(Payload::Stats(stats)),
            }) => {
                if let Some(failures) = stats.health_failures {
                    self.metrics.health_failures(&stats.task_id, failures);
                }
                self.state.record_stats(&stats)
            }
            Ok(ExecutorMessage {
                payload: Some(Payload::CommandResult(result)),
            }) => self.maintainer.command_answered(result),
            Ok(ExecutorMessage {
                payload: Some(Payload::LaunchReport(report)),
            }) => {
                tracing::debug!(%executor_id, ?report, "launch report");
                self.metrics.launch_report(&report);
            }
            Ok(ExecutorMessage { payload: None }) => {
                tracing::debug!(%executor_id, "empty executor message ignored")
            }
            Err(error) => {
                tracing::warn!(%executor_id, %error, "undecodable executor message ignored")
            }
        }
    }

    async fn on_subscribed(&self, framework_id: &str) -> Result<(), ActorError> {
        if self.state.framework_id().as_deref() != Some(framework_id) {
            self.state.set_framework_id(framework_id).await?;
        }
        // Ask for the state of every task we think is live, then of all tasks.
        let live: Vec<(String, Option<String>)> = self
            .state
            .live_tasks()
            .into_iter()
            .map(|t| (t.task_id, t.agent_id))
            .collect();
        if !live.is_empty() {
            tracing::info!(count = live.len(), "reconciling tasks");
            self.mesos.send(calls::reconcile(live));
        }
        self.mesos.send(calls::reconcile(Vec::new()));
        // Queued work may have been declined away under the previous subscription:
        // the OfferManager REVIVEs the framework's role.
        self.offers.subscribed();
        Ok(())
    }

    /// Stops the REST server.
    pub fn stop_http(&self) {
        self.http.do_send(StopHttp);
    }
}

/// Stops the HttpLib.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct StopHttp;

impl Handler<StopHttp> for HttpLib {
    type Result = ();
    fn handle(&mut self, _: StopHttp, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
