//! Wiring: opens the store, starts the actors and the Mesos client, and (for `dev`)
//! the embedded devcluster.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;

use mesos_stateful_actors::actor::{System, SystemConfig};
use mesos_stateful_actors::domain::launch::ExecutorLaunch;
use mesos_stateful_actors::telemetry::Metrics;
use mesos_stateful_actors::workload::Workload;
use mesos_stateful_devcluster::{AgentConfig, DevClusterConfig, DevClusterThread, SimulatedAgents};
use mesos_stateful_store::{RocksPersister, StateStore};

use crate::error::SchedulerError;
use crate::mesos::{FrameworkSettings, MesosClient};
use crate::telemetry;

/// Everything the scheduler needs to run.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Base URL of a Mesos master (`http://host:5050`).
    pub master: String,
    /// Directory of the RocksDB state (created if missing).
    pub data_dir: PathBuf,
    /// Address of the REST API.
    pub listen: SocketAddr,
    /// How tasks get our executor.
    pub executor: ExecutorLaunch,
    /// What the framework registers as (name and role come from the workload).
    pub framework: FrameworkSettings,
    /// The REST API's security, limits and TLS.
    pub api: mesos_stateful_actors::actor::http_lib::ApiSettings,
    /// Backoff of relaunches and the timeout before replacing a member elsewhere.
    pub recovery: mesos_stateful_actors::domain::recovery::RecoveryConfig,
}

/// A running scheduler.
#[derive(Debug)]
pub struct Scheduler {
    system: System,
    client: MesosClient,
    stop: Option<oneshot::Sender<()>>,
    subscription: Option<tokio::task::JoinHandle<Result<(), SchedulerError>>>,
}

impl Scheduler {
    /// Opens the store under `config.data_dir`, starts the actors and the REST API,
    /// and subscribes to Mesos. Must run inside an actix system.
    pub async fn start(
        config: SchedulerConfig,
        workload: Arc<dyn Workload>,
    ) -> Result<Scheduler, SchedulerError> {
        let state_dir = config.data_dir.join("state");
        let store = tokio::task::spawn_blocking(move || -> Result<StateStore, SchedulerError> {
            let persister = RocksPersister::open(&state_dir)?;
            Ok(StateStore::open(Arc::new(persister))?)
        })
        .await
        .map_err(|e| SchedulerError::Config(format!("opening the store: {e}")))??;
        let framework_id = store.framework_id()?;
        let workload_config = workload.config();
        let settings = FrameworkSettings {
            name: workload_config.framework_name,
            roles: vec![workload_config.role],
            ..config.framework
        };
        let client = MesosClient::new(&config.master, settings, framework_id.clone())?;
        let metrics = Arc::new(Metrics::new());
        observe_subscription(&client, metrics.clone());
        if let Some((url, interval)) = telemetry::otlp_metrics::settings_from_env() {
            tracing::info!(%url, ?interval, "exporting metrics by OTLP");
            actix::spawn(telemetry::otlp_metrics::export_periodically(
                metrics.clone(),
                url,
                interval,
                telemetry::service_name(),
            ));
        }
        let system = System::start(
            store,
            Arc::new(client.clone()),
            workload,
            SystemConfig {
                listen: config.listen,
                executor: config.executor,
                metrics,
                api: config.api,
                recovery: config.recovery,
                queue: Default::default(),
            },
        )
        .await?;
        tracing::info!(master = %config.master, framework_id = ?framework_id, api = %system.api_addr, "scheduler started");

        let (stop, stopped) = oneshot::channel::<()>();
        let events = system.clone();
        let subscriber = client.clone();
        let subscription = actix::spawn(async move {
            subscriber
                .run(
                    move |event| {
                        let events = events.clone();
                        async move {
                            if let Err(error) = events.handle_event(event).await {
                                tracing::error!(%error, "event not handled");
                            }
                        }
                    },
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await
        });
        Ok(Scheduler {
            system,
            client,
            stop: Some(stop),
            subscription: Some(subscription),
        })
    }

    /// Where the REST API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.system.api_addr
    }

    /// The Mesos client.
    pub fn client(&self) -> &MesosClient {
        &self.client
    }

    /// Stops subscribing and serving. Running tasks are left to Mesos (the framework
    /// fails over when it comes back).
    pub async fn stop(mut self) -> Result<(), SchedulerError> {
        self.system.stop_http();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(subscription) = self.subscription.take() {
            return subscription
                .await
                .map_err(|e| SchedulerError::Config(format!("subscription task: {e}")))?;
        }
        Ok(())
    }
}

/// Mirrors the client's subscription state into `metrics`: the subscribed gauge,
/// and a disconnect each time an up subscription goes down.
fn observe_subscription(client: &MesosClient, metrics: Arc<Metrics>) {
    let mut subscribed = client.watch_subscribed();
    actix::spawn(async move {
        let mut up = false;
        while subscribed.changed().await.is_ok() {
            let now = *subscribed.borrow_and_update();
            metrics.mesos_subscribed.set(i64::from(now));
            if up && !now {
                metrics.mesos_disconnects.inc();
            }
            up = now;
        }
    });
}

/// Runs the scheduler until `shutdown` completes or Mesos refuses us for good.
pub async fn run(
    config: SchedulerConfig,
    workload: Arc<dyn Workload>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SchedulerError> {
    let mut scheduler = Scheduler::start(config, workload).await?;
    let Some(subscription) = scheduler.subscription.take() else {
        return Ok(());
    };
    tokio::pin!(subscription);
    tokio::select! {
        _ = shutdown => scheduler.stop().await,
        result = &mut subscription => {
            scheduler.system.stop_http();
            result.map_err(|e| SchedulerError::Config(format!("subscription task: {e}")))?
        }
    }
}

/// Settings of the embedded devcluster of `mesos-stateful dev`.
#[derive(Debug, Clone)]
pub struct DevSettings {
    /// Address of the devcluster master.
    pub master_listen: SocketAddr,
    /// Number of agents.
    pub agents: usize,
    /// Cpus of each agent.
    pub cpus: f64,
    /// Memory of each agent, MiB.
    pub mem: f64,
    /// Number of simulated agents (no processes; tasks report TASK_RUNNING after
    /// `simulated_delay`), with the same cpus and memory, after the real ones.
    pub simulated_agents: usize,
    /// Time between TASK_STARTING and TASK_RUNNING on simulated agents.
    pub simulated_delay: std::time::Duration,
}

/// Starts the embedded devcluster with `settings`, sandboxes under `work_dir`. Agents
/// share the host, so each gets its own port range (31000–31999, 32000–32999 …) and
/// members with host networking never collide.
pub fn start_devcluster(
    settings: &DevSettings,
    work_dir: PathBuf,
) -> Result<DevClusterThread, SchedulerError> {
    // Real agents may be left out only when simulated ones stand in.
    let real = if settings.simulated_agents > 0 {
        settings.agents
    } else {
        settings.agents.max(1)
    };
    let agents = (0..real)
        .map(|i| {
            let base = 31000 + 1000 * i as u64;
            AgentConfig {
                cpus: settings.cpus,
                mem: settings.mem,
                ports: (base, base + 999),
                ..AgentConfig::default()
            }
        })
        .collect();
    let config = DevClusterConfig {
        listen: settings.master_listen,
        agents,
        work_dir,
        simulated_agents: SimulatedAgents {
            count: settings.simulated_agents,
            cpus: settings.cpus,
            mem: settings.mem,
            delay: settings.simulated_delay,
            ..SimulatedAgents::default()
        },
        ..DevClusterConfig::default()
    };
    DevClusterThread::spawn(config).map_err(|e| SchedulerError::DevCluster(e.to_string()))
}
