//! Stopping a task's container and removing it (after saving its logs into the
//! sandbox), and watching it until it exits.

use std::path::Path;
use std::time::Duration;

use tracing::{debug, warn};

use super::ExitObservation;
use crate::docker::{ContainerInspect, DockerClient, DockerError, RemoveOptions, WaitCondition};

/// Pause before asking the engine again after a failed `wait`.
const WATCH_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What stopping a container found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// How the container ended, if it could still be inspected.
    pub exit: Option<ExitObservation>,
    /// What went wrong along the way, if anything.
    pub problem: Option<String>,
}

/// The file in the sandbox receiving the container's standard output.
pub const STDOUT_FILE: &str = "container.stdout";
/// The file in the sandbox receiving the container's standard error.
pub const STDERR_FILE: &str = "container.stderr";

/// Stops the container (signal, then SIGKILL after `grace`), saves its logs into
/// `sandbox` when there is one, and removes it with its anonymous volumes. A
/// container that is already gone counts as stopped.
pub async fn stop_and_remove(
    docker: &DockerClient,
    id: &str,
    grace: Duration,
    sandbox: Option<&Path>,
) -> StopReport {
    let mut report = StopReport::default();
    if let Err(err) = docker.stop_container(id, grace).await {
        if !err.is_not_found() {
            warn!(container = %id, error = %err, "cannot stop container; removing it by force");
            report.problem = Some(format!("stop failed: {err}"));
        }
    }
    match docker.inspect_container(id).await {
        Ok(inspect) => report.exit = Some(observation(&inspect)),
        Err(err) if err.is_not_found() => return report,
        Err(err) => warn!(container = %id, error = %err, "cannot inspect a stopped container"),
    }
    if let Err(problem) = remove(docker, id, sandbox).await {
        report.problem = Some(problem);
    }
    report
}

/// Copies the logs of container `id` to [`STDOUT_FILE`] and [`STDERR_FILE`] in
/// `sandbox`. A failure is logged and does not stop the removal.
pub async fn save_logs(docker: &DockerClient, id: &str, sandbox: &Path) {
    let stdout = sandbox.join(STDOUT_FILE);
    let stderr = sandbox.join(STDERR_FILE);
    match docker.copy_logs(id, &stdout, &stderr).await {
        Ok(copied) => debug!(
            container = %id,
            stdout_bytes = copied.stdout_bytes,
            stderr_bytes = copied.stderr_bytes,
            "container logs saved to the sandbox"
        ),
        Err(err) => warn!(container = %id, error = %err, "cannot save the container's logs"),
    }
}

/// Removes a stopped container, after saving its logs into `sandbox` when there is
/// one; a container already gone is fine.
pub async fn remove(docker: &DockerClient, id: &str, sandbox: Option<&Path>) -> Result<(), String> {
    if let Some(sandbox) = sandbox {
        save_logs(docker, id, sandbox).await;
    }
    let options = RemoveOptions {
        force: true,
        volumes: true,
    };
    match docker.remove_container(id, options).await {
        Ok(()) => Ok(()),
        Err(err) if err.is_not_found() => Ok(()),
        Err(err) => {
            warn!(container = %id, error = %err, "cannot remove container");
            Err(format!("remove failed: {err}"))
        }
    }
}

/// Waits until the container stops running and reports how it ended. Lost
/// connections to the engine are retried; a container that vanished is an error.
pub async fn watch_exit(docker: &DockerClient, id: &str) -> Result<ExitObservation, DockerError> {
    loop {
        match docker.wait_container(id, WaitCondition::NotRunning).await {
            Ok(answer) => {
                let mut exit = ExitObservation {
                    exit_code: answer.status_code,
                    oom_killed: false,
                    error: answer
                        .error
                        .map(|error| error.message)
                        .filter(|message| !message.is_empty()),
                };
                // The wait answer lacks the OOM flag; inspect adds it when it can.
                if let Ok(inspect) = docker.inspect_container(id).await {
                    let seen = observation(&inspect);
                    exit.oom_killed = seen.oom_killed;
                    exit.error = exit.error.or(seen.error);
                }
                return Ok(exit);
            }
            Err(err) if err.is_not_found() => return Err(err),
            Err(err) => {
                warn!(container = %id, error = %err, "waiting for the container failed; retrying");
                tokio::time::sleep(WATCH_RETRY_DELAY).await;
                match docker.inspect_container(id).await {
                    Ok(inspect) if !inspect.state.running => return Ok(observation(&inspect)),
                    Ok(_) => {}
                    Err(err) if err.is_not_found() => return Err(err),
                    Err(_) => {}
                }
            }
        }
    }
}

fn observation(inspect: &ContainerInspect) -> ExitObservation {
    ExitObservation {
        exit_code: inspect.state.exit_code,
        oom_killed: inspect.state.oom_killed,
        error: Some(inspect.state.error.clone()).filter(|error| !error.is_empty()),
    }
}
