//! The `mesos-stateful-executor` binary: reads the agent's environment, installs
//! logging to stderr (and span export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), runs
//! the executor, and flushes the pending spans before it exits.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use mesos_stateful_executor::{run, telemetry, Config};

fn main() -> ExitCode {
    // The agent usually sends stderr to a sandbox file: colour only on terminals.
    let telemetry = telemetry::init(std::io::stderr().is_terminal());
    let code = match try_main() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            tracing::error!("mesos-stateful-executor: {err:#}");
            ExitCode::from(1)
        }
    };
    // Every way out passes here, after the runtime is gone (the exporter's blocking
    // client must not run inside it).
    telemetry.shutdown();
    code
}

fn try_main() -> anyhow::Result<u8> {
    let config = Config::from_env().context("cannot read the executor's environment")?;
    tracing::info!(
        framework = %config.framework_id.0,
        executor = %config.executor_id.0,
        agent = %config.agent_endpoint,
        checkpoint = config.checkpoint,
        "starting executor"
    );
    // One executor runs one task: a single thread is plenty.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let reason = runtime.block_on(run(config, shutdown_signal()))?;
    Ok(reason.exit_code())
}

/// Resolves on SIGTERM or Ctrl-C; if the handlers cannot be installed it never
/// resolves, and the agent's SIGKILL remains the way out.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
