//! The `devcluster` binary: a local Mesos-compatible master with agents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mesos_stateful_devcluster::{
    parse_credentials, run, AgentConfig, DevClusterConfig, SimulatedAgents,
};

/// Runs a single-process Mesos-compatible cluster (master and agents).
#[derive(Debug, Parser)]
#[command(name = "devcluster", version)]
struct Args {
    /// Address of the master.
    #[arg(long, default_value = "127.0.0.1:5050")]
    listen: SocketAddr,
    /// Number of masters; the others listen on the next ports.
    #[arg(long, default_value_t = 1)]
    masters: usize,
    /// `zk://host:port[,host:port…]/path` where the masters register and elect
    /// their leader, as Mesos masters do.
    #[arg(long)]
    zk: Option<String>,
    /// Root directory of the sandboxes.
    #[arg(long, default_value = "/tmp/devcluster")]
    work_dir: PathBuf,
    /// Number of agents that run executors (0 is allowed with simulated agents).
    #[arg(long, default_value_t = 1)]
    agents: usize,
    /// Number of simulated agents (no processes; tasks reach TASK_RUNNING after
    /// `--simulated-delay-ms`), with the same resources as the others.
    #[arg(long, default_value_t = 0)]
    simulated_agents: usize,
    /// Milliseconds between TASK_STARTING and TASK_RUNNING on simulated agents.
    #[arg(long, default_value_t = 100)]
    simulated_delay_ms: u64,
    /// Seconds after which a lost agent is declared unreachable.
    #[arg(long, default_value_t = 75)]
    agent_removal_timeout_secs: u64,
    /// Mesos credentials file (`{"credentials":[{"principal":..,"secret":..}]}`,
    /// optionally as `file://PATH`): schedulers must then authenticate with HTTP Basic.
    #[arg(long)]
    credentials: Option<String>,
    /// CPUs per agent.
    #[arg(long, default_value_t = 4.0)]
    cpus: f64,
    /// Memory per agent, in MB.
    #[arg(long, default_value_t = 4096.0)]
    mem: f64,
    /// Disk per agent, in MB.
    #[arg(long, default_value_t = 10240.0)]
    disk: f64,
    /// Inclusive port range per agent, `BEGIN-END`.
    #[arg(long, default_value = "31000-32000", value_parser = parse_ports)]
    ports: (u64, u64),
}

fn parse_ports(text: &str) -> Result<(u64, u64), String> {
    let (begin, end) = text
        .split_once('-')
        .ok_or_else(|| format!("expected BEGIN-END, got {text}"))?;
    let begin: u64 = begin
        .trim()
        .parse()
        .map_err(|e| format!("port range begin: {e}"))?;
    let end: u64 = end
        .trim()
        .parse()
        .map_err(|e| format!("port range end: {e}"))?;
    if begin > end {
        return Err(format!("port range {begin}-{end} is reversed"));
    }
    Ok((begin, end))
}

async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let agent = AgentConfig {
        cpus: args.cpus,
        mem: args.mem,
        disk: args.disk,
        ports: args.ports,
        ..AgentConfig::default()
    };
    let simulated_agents = SimulatedAgents {
        count: args.simulated_agents,
        cpus: agent.cpus,
        mem: agent.mem,
        disk: agent.disk,
        ports: agent.ports,
        delay: Duration::from_millis(args.simulated_delay_ms),
    };
    let credentials = match &args.credentials {
        Some(location) => {
            let path = location.strip_prefix("file://").unwrap_or(location);
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading credentials from {path}"))?;
            parse_credentials(&text).with_context(|| format!("parsing {path}"))?
        }
        None => Vec::new(),
    };
    let config = DevClusterConfig {
        listen: args.listen,
        masters: args.masters,
        zookeeper: args.zk,
        credentials,
        agent_removal_timeout: Duration::from_secs(args.agent_removal_timeout_secs),
        agents: vec![agent; args.agents],
        work_dir: args.work_dir,
        simulated_agents,
        ..DevClusterConfig::default()
    };
    run(config, stop_signal())
        .await
        .context("devcluster failed")
}
