//! The `mesos-stateful` program: `dev` runs everything on this machine (devcluster,
//! RocksDB, the REST API); `serve` runs the scheduler against a Mesos master.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

mod cli;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use mesos_stateful_actors::actor::http_lib::{ApiSettings, TlsFiles};
use mesos_stateful_actors::http::artifacts::{Artifact, Artifacts};
use mesos_stateful_actors::http::security::{RateLimit, Tokens};
use mesos_stateful_scheduler::run::{start_devcluster, DevSettings};
use mesos_stateful_scheduler::telemetry::{self, LogFormat};
use mesos_stateful_scheduler::{
    Configured, ExecutorLaunch, FrameworkSettings, GenericContainer, RedisWorkload,
    SchedulerConfig, WorkloadConfig,
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
    /// Manage instances through the REST API.
    Instance {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::InstanceCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
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
        /// Number of simulated agents: they run no process and report their tasks
        /// TASK_RUNNING after `--simulated-delay-ms` (for load tests).
        #[arg(long, default_value_t = 0)]
        simulated_agents: usize,
        /// Milliseconds between TASK_STARTING and TASK_RUNNING on simulated agents.
        #[arg(long, default_value_t = 100)]
        simulated_delay_ms: u64,
    },
    /// Run the scheduler against a Mesos master.
    Serve {
        #[command(flatten)]
        common: Common,
        /// The Mesos masters: `http://host:port[,http://host:port…]` or
        /// `zk://host:port[,host:port…]/path`.
        #[arg(long, env = "MESOS_STATEFUL_MASTER")]
        master: String,
        /// URI the agents' fetcher downloads the executor from. Without it (and
        /// without --executor-path) the scheduler serves its own executor binary at
        /// `<advertise URL>/v1/artifacts/<sha256>/mesos-stateful-executor`.
        #[arg(long, conflicts_with = "executor_path")]
        executor_uri: Option<String>,
        /// Base URL at which agents reach this scheduler's API, for fetching the
        /// executor it serves (default: the --listen address; required when that is
        /// 0.0.0.0 or ::).
        #[arg(long, env = "MESOS_STATEFUL_ADVERTISE_URL")]
        advertise_url: Option<String>,
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
    /// Listen beyond loopback without bearer tokens (not recommended).
    #[arg(long)]
    insecure: bool,
    /// Let creates ask for privileged containers (`"privileged": true`); the
    /// executors are told to allow them. Off by default.
    #[arg(long)]
    allow_privileged: bool,
    /// File of the API's bearer tokens, one per line (`#` starts a comment); else
    /// MESOS_STATEFUL_API_TOKENS (comma-separated). Without tokens, no authentication.
    #[arg(long, env = "MESOS_STATEFUL_API_TOKENS_FILE")]
    api_tokens_file: Option<PathBuf>,
    /// PEM certificate chain: the API speaks HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The one browser origin allowed to call the API (CORS is off without it).
    #[arg(long)]
    cors_origin: Option<String>,
    /// Requests per second allowed per client address (0 turns the limit off).
    #[arg(long, default_value_t = 100.0)]
    rate_limit: f64,
    /// Requests a client may send in a burst above the rate.
    #[arg(long, default_value_t = 200.0)]
    rate_burst: f64,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Image of instances created through the mr-redis routes (`/v1/CREATE/…`).
    #[arg(long, default_value = "redis:7", env = "MESOS_STATEFUL_COMPAT_IMAGE")]
    compat_image: String,
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
    /// What the instances run: any container, or Redis masters and replicas with
    /// failover.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Generic)]
    workload: WorkloadKind,
    /// Mesos role the framework registers with and reserves resources for. Members
    /// with a persistent volume need a role other than `*`.
    #[arg(long, default_value = "*", env = "MESOS_STATEFUL_ROLE")]
    role: String,
    /// Seconds before the first relaunch of a lost member; doubles per failure.
    #[arg(long, default_value_t = 1.0)]
    relaunch_backoff: f64,
    /// Longest wait between two relaunches of a member, seconds.
    #[arg(long, default_value_t = 60.0)]
    relaunch_backoff_max: f64,
    /// Seconds a member's agent may stay unreachable before the member is replaced
    /// on another agent.
    #[arg(long, default_value_t = 300.0)]
    replace_after: f64,
}

/// The workloads the binary offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WorkloadKind {
    /// The image runs with the args of the request.
    Generic,
    /// Redis master and replicas, with promotion of a replica when the master is lost.
    Redis,
}

impl WorkloadKind {
    fn workload(self, role: &str) -> Arc<dyn mesos_stateful_scheduler::Workload> {
        fn with_role<W: mesos_stateful_scheduler::Workload>(
            inner: W,
            role: &str,
        ) -> Arc<dyn mesos_stateful_scheduler::Workload> {
            let config = WorkloadConfig {
                role: role.to_string(),
                ..inner.config()
            };
            Arc::new(Configured { inner, config })
        }
        match self {
            WorkloadKind::Generic => with_role(GenericContainer, role),
            WorkloadKind::Redis => with_role(RedisWorkload, role),
        }
    }
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|e| anyhow::anyhow!("--{flag} {value}: {e}"))
}

fn parse_stats_interval(value: &str) -> Result<f64, String> {
    let seconds: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if seconds.is_finite() && (0.5..=3600.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err("must be between 0.5 and 3600 seconds".to_string())
    }
}

fn executor_launch(
    common: &Common,
    uri: Option<String>,
    log_format: LogFormat,
) -> anyhow::Result<ExecutorLaunch> {
    let command = match (&common.executor_path, &uri) {
        (Some(path), _) => path.clone(),
        // The fetcher puts the file in the sandbox, the executor's working directory;
        // without a slash the agent would search PATH for it instead.
        (None, Some(uri)) => PathBuf::from(format!(
            "./{}",
            uri.rsplit('/')
                .next()
                .filter(|name| !name.is_empty())
                .unwrap_or("mesos-stateful-executor")
        )),
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
    if common.allow_privileged {
        launch.environment.insert(
            "MESOS_STATEFUL_ALLOW_PRIVILEGED".to_string(),
            "1".to_string(),
        );
    }
    // Executors log in the scheduler's format.
    if log_format == LogFormat::Json {
        launch
            .environment
            .insert("MESOS_STATEFUL_LOG_FORMAT".to_string(), "json".to_string());
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

/// The executor binary next to this program, hashed, and the URL agents fetch it
/// from: `advertise_url` (else the API's listen address) and the artifact's path.
fn served_executor(
    common: &Common,
    advertise_url: Option<&str>,
) -> anyhow::Result<(Artifact, String)> {
    let path = std::env::current_exe()
        .context("locating this program")?
        .with_file_name("mesos-stateful-executor");
    let artifact = Artifact::load(&path).with_context(|| {
        format!(
            "reading the executor at {} to serve it; give --executor-path or --executor-uri if it is elsewhere",
            path.display()
        )
    })?;
    let base = match advertise_url {
        Some(url) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--advertise-url {url}: must start with http:// or https://");
            }
            url.trim_end_matches('/').to_string()
        }
        None if common.listen.ip().is_unspecified() => bail!(
            "listening on {}: give --advertise-url with an address the agents reach, so they can fetch the executor",
            common.listen
        ),
        None => {
            let scheme = if common.tls_cert.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", common.listen)
        }
    };
    let uri = format!("{base}{}", artifact.url_path());
    Ok((artifact, uri))
}

/// The API's settings from the command line and the environment.
fn api_settings(common: &Common) -> anyhow::Result<ApiSettings> {
    let tokens = match &common.api_tokens_file {
        Some(path) => Tokens::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading API tokens from {}", path.display()))?,
        ),
        None => Tokens::parse(&std::env::var("MESOS_STATEFUL_API_TOKENS").unwrap_or_default()),
    };
    if common.api_tokens_file.is_some() && !tokens.enabled() {
        bail!("the API tokens file holds no token");
    }
    if !common.listen.ip().is_loopback() && !tokens.enabled() && !common.insecure {
        bail!(
            "refusing to serve the REST API on {} without authentication; give --api-tokens-file, listen on loopback or pass --insecure",
            common.listen
        );
    }
    let rate_limit = if common.rate_limit > 0.0 {
        if !(common.rate_limit.is_finite()
            && common.rate_burst.is_finite()
            && common.rate_burst >= 1.0)
        {
            bail!("--rate-limit and --rate-burst must be finite, and the burst at least 1");
        }
        Some(RateLimit {
            per_second: common.rate_limit,
            burst: common.rate_burst,
        })
    } else {
        None
    };
    let tls = match (&common.tls_cert, &common.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    Ok(ApiSettings {
        tokens,
        cors_origin: common.cors_origin.clone(),
        rate_limit,
        max_body_bytes: common.max_body_bytes,
        compat_image: common.compat_image.clone(),
        tls,
        allow_privileged: common.allow_privileged,
        ..ApiSettings::default()
    })
}

fn scheduler_config(
    common: &Common,
    master: String,
    uri: Option<String>,
    log_format: LogFormat,
) -> anyhow::Result<SchedulerConfig> {
    let api = api_settings(common)?;
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
        executor: executor_launch(common, uri, log_format)?,
        framework,
        api,
        recovery: mesos_stateful_scheduler::RecoveryConfig {
            backoff_initial: seconds("relaunch-backoff", common.relaunch_backoff)?,
            backoff_max: seconds("relaunch-backoff-max", common.relaunch_backoff_max)?,
            replace_after: seconds("replace-after", common.replace_after)?,
        },
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
        Command::Instance { api, command } => {
            let code = system.block_on(cli::run(api, command));
            telemetry.shutdown();
            let code = code?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                shell,
                &mut command,
                "mesos-stateful",
                &mut std::io::stdout(),
            );
        }
        Command::Dev {
            common,
            mesos_listen,
            agents,
            agent_cpus,
            agent_mem,
            simulated_agents,
            simulated_delay_ms,
        } => {
            std::fs::create_dir_all(&common.data_dir)
                .with_context(|| format!("creating {}", common.data_dir.display()))?;
            let settings = DevSettings {
                master_listen: mesos_listen,
                agents,
                cpus: agent_cpus,
                mem: agent_mem,
                simulated_agents,
                simulated_delay: std::time::Duration::from_millis(simulated_delay_ms),
            };
            let cluster = start_devcluster(&settings, common.data_dir.join("devcluster"))?;
            let config = scheduler_config(&common, cluster.master_url(), None, cli.log_format)?;
            let result = system.block_on(mesos_stateful_scheduler::run(
                config,
                common.workload.workload(&common.role),
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
            advertise_url,
        } => {
            let mut artifacts = Artifacts::default();
            let uri = match (executor_uri, &common.executor_path) {
                (Some(uri), _) => Some(uri),
                (None, Some(_)) => None,
                (None, None) => {
                    let (artifact, uri) = served_executor(&common, advertise_url.as_deref())?;
                    tracing::info!(%uri, sha256 = %artifact.sha256_hex(), "serving the executor to the agents");
                    artifacts.0.push(artifact);
                    Some(uri)
                }
            };
            let mut config = scheduler_config(&common, master, uri, cli.log_format)?;
            config.api.artifacts = artifacts;
            let result = system.block_on(mesos_stateful_scheduler::run(
                config,
                common.workload.workload(&common.role),
                shutdown_signal(),
            ));
            telemetry.shutdown();
            result?;
        }
    }
    Ok(())
}
