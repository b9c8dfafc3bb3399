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
use mesos_stateful_devcluster::{AgentConfig, DevClusterConfig, DevClusterThread};
use mesos_stateful_store::{RocksPersister, StateStore};

use crate::error::SchedulerError;
use crate::mesos::{FrameworkSettings, MesosClient};

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
        let system = System::start(
            store,
            Arc::new(client.clone()),
            workload,
            SystemConfig {
                listen: config.listen,
                executor: config.executor,
                metrics: Arc::new(Metrics::new()),
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
}

/// Starts the embedded devcluster with `settings`, sandboxes under `work_dir`. Agents
/// share the host, so each gets its own port range (31000–31999, 32000–32999 …) and
/// members with host networking never collide.
pub fn start_devcluster(
    settings: &DevSettings,
    work_dir: PathBuf,
) -> Result<DevClusterThread, SchedulerError> {
    let agents = (0..settings.agents.max(1))
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
        ..DevClusterConfig::default()
    };
    DevClusterThread::spawn(config).map_err(|e| SchedulerError::DevCluster(e.to_string()))
}
