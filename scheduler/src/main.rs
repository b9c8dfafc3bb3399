//! The `mesos-stateful` program: `dev` runs everything on this machine (devcluster,
//! RocksDB, the REST API); `serve` runs the scheduler against a Mesos master.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use mesos_stateful_scheduler::run::{start_devcluster, DevSettings};
use mesos_stateful_scheduler::telemetry::{self, LogFormat};
use mesos_stateful_scheduler::{
    ExecutorLaunch, FrameworkSettings, GenericContainer, SchedulerConfig,
};

#[derive(Debug, Parser)]
#[command(
    name = "mesos-stateful",
    version,
    about = "Stateful services on Apache Mesos"
)]
struct Cli {
    /// Log line format.
    #[arg(
        long,
        value_enum,
        default_value = "pretty",
        global = true,
        env = "MESOS_STATEFUL_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an embedded Mesos-compatible cluster and the scheduler on this machine.
    Dev {
        #[command(flatten)]
        common: Common,
        /// Address of the embedded master.
        #[arg(long, default_value = "127.0.0.1:5050")]
        mesos_listen: SocketAddr,
        /// Number of embedded agents.
        #[arg(long, default_value_t = 2)]
        agents: usize,
        /// Cpus of each agent.
        #[arg(long, default_value_t = 4.0)]
        agent_cpus: f64,
        /// Memory of each agent, MiB.
        #[arg(long, default_value_t = 4096.0)]
        agent_mem: f64,
    },
    /// Run the scheduler against a Mesos master.
    Serve {
        #[command(flatten)]
        common: Common,
        /// The Mesos masters: `http://host:port[,http://host:port…]` or
        /// `zk://host:port[,host:port…]/path`.
        #[arg(long, env = "MESOS_STATEFUL_MASTER")]
        master: String,
        /// URI the agents' fetcher downloads the executor from (instead of a path
        /// present on every agent).
        #[arg(long)]
        executor_uri: Option<String>,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// Directory of the persisted state.
    #[arg(long, default_value = ".data", env = "MESOS_STATEFUL_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:8080", env = "MESOS_STATEFUL_LISTEN")]
    listen: SocketAddr,
    /// Listen beyond loopback without authentication (the API has none yet).
    #[arg(long)]
    insecure: bool,
    /// Path of the executor binary on the agents (default: next to this program).
    #[arg(long, env = "MESOS_STATEFUL_EXECUTOR")]
    executor_path: Option<PathBuf>,
    /// User tasks run as.
    #[arg(long)]
    user: Option<String>,
    /// File with the framework's Mesos credentials (JSON `{"principal","secret"}` or
    /// two lines); else MESOS_STATEFUL_PRINCIPAL and MESOS_STATEFUL_SECRET.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// Seconds between two stats samples of each member's container (at least 0.5).
    #[arg(long, default_value_t = 10.0, value_parser = parse_stats_interval)]
    stats_interval: f64,
}

fn parse_stats_interval(value: &str) -> Result<f64, String> {
    let seconds: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if seconds.is_finite() && (0.5..=3600.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err("must be between 0.5 and 3600 seconds".to_string())
    }
}

fn executor_launch(common: &Common, uri: Option<String>) -> anyhow::Result<ExecutorLaunch> {
    let command = match (&common.executor_path, &uri) {
        (Some(path), _) => path.clone(),
        (None, Some(uri)) => PathBuf::from(
            uri.rsplit('/')
                .next()
                .filter(|name| !name.is_empty())
                .unwrap_or("mesos-stateful-executor"),
        ),
        (None, None) => std::env::current_exe()
            .context("locating this program")?
            .with_file_name("mesos-stateful-executor"),
    };
    let mut launch = ExecutorLaunch {
        command: command.to_string_lossy().into_owned(),
        uri,
        stats_interval_seconds: common.stats_interval,
        ..ExecutorLaunch::default()
    };
    if let Ok(filter) = std::env::var("RUST_LOG") {
        launch.environment.insert("RUST_LOG".to_string(), filter);
    }
    // Executors export their spans where the scheduler does, under their own
    // service name.
    for (name, value) in std::env::vars() {
        if name.starts_with("OTEL_") && name != "OTEL_SERVICE_NAME" {
            launch.environment.insert(name, value);
        }
    }
    Ok(launch)
}

fn scheduler_config(
    common: &Common,
    master: String,
    uri: Option<String>,
) -> anyhow::Result<SchedulerConfig> {
    if !common.listen.ip().is_loopback() && !common.insecure {
        bail!(
            "refusing to serve the REST API on {} without authentication; listen on loopback or pass --insecure",
            common.listen
        );
    }
    let mut framework = FrameworkSettings::default();
    if let Some(user) = &common.user {
        framework.user = user.clone();
    }
    framework.credentials =
        mesos_stateful_scheduler::Credentials::load(common.credentials_file.as_deref())?;
    Ok(SchedulerConfig {
        master,
        data_dir: common.data_dir.clone(),
        listen: common.listen,
        executor: executor_launch(common, uri)?,
        framework,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = telemetry::init(cli.log_format);
    let system = actix::System::new();
    match cli.command {
        Command::Dev {
            common,
            mesos_listen,
            agents,
            agent_cpus,
            agent_mem,
        } => {
            std::fs::create_dir_all(&common.data_dir)
                .with_context(|| format!("creating {}", common.data_dir.display()))?;
            let settings = DevSettings {
                master_listen: mesos_listen,
                agents,
                cpus: agent_cpus,
                mem: agent_mem,
            };
            let cluster = start_devcluster(&settings, common.data_dir.join("devcluster"))?;
            let config = scheduler_config(&common, cluster.master_url(), None)?;
            let result = system.block_on(mesos_stateful_scheduler::run(
                config,
                Arc::new(GenericContainer),
                shutdown_signal(),
            ));
            cluster.shutdown();
            telemetry.shutdown();
            result?;
        }
        Command::Serve {
            common,
            master,
            executor_uri,
        } => {
            let config = scheduler_config(&common, master, executor_uri)?;
            let result = system.block_on(mesos_stateful_scheduler::run(
                config,
                Arc::new(GenericContainer),
                shutdown_signal(),
            ));
            telemetry.shutdown();
            result?;
        }
    }
    Ok(())
}
