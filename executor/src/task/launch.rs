//! Starting a task's container: adoption of a running container left by an earlier
//! executor, image check and pull, creation (replacing a stale container of the same
//! name) and start.
//!
//! [`launch`] runs inside the task's `Executor::Launch` span; the pull, the creation
//! and the start each get a child span (`Executor::Pull`, `Executor::Create`,
//! `Executor::Start`), and their durations are reported to the scheduler in a
//! `LaunchReport` ([`launch_report_message`]).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesos_stateful_proto::stateful::{executor_message, ExecutorMessage, LaunchReport};
use mesos_stateful_proto::v1::task_status::Reason;
use mesos_stateful_proto::v1::TaskState;
use mesos_stateful_proto::Message;
use tracing::field::Empty;
use tracing::{debug, info, info_span, warn, Instrument};

use super::mounts::prepare_mounts;
use super::{ContainerPlan, Outcome, LABEL_FRAMEWORK_ID, LABEL_TASK_ID};
use crate::docker::{
    load_registry_auth, CreateContainer, CreatedContainer, DockerClient, ImageReference,
    RegistryAuth, RemoveOptions,
};

/// How the task's container came to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launched {
    /// The container's id.
    pub id: String,
    /// Whether a container of an earlier executor for the same task was found running
    /// and adopted instead of creating a new one.
    pub adopted: bool,
    /// Whether the image was pulled (it was not on the agent).
    pub pulled: bool,
    /// Time spent pulling the image (zero when it was present).
    pub pull_time: Duration,
    /// Time spent creating the container.
    pub create_time: Duration,
    /// Time spent starting it.
    pub start_time: Duration,
}

/// The bytes of an executor MESSAGE reporting how the container of `task_id` came to
/// run.
pub fn launch_report_message(task_id: &str, launched: &Launched) -> Bytes {
    let report = LaunchReport {
        task_id: task_id.to_owned(),
        pull_seconds: Some(launched.pull_time.as_secs_f64()),
        create_seconds: Some(launched.create_time.as_secs_f64()),
        start_seconds: Some(launched.start_time.as_secs_f64()),
        pulled: Some(launched.pulled),
        adopted: Some(launched.adopted),
    };
    Bytes::from(
        ExecutorMessage {
            payload: Some(executor_message::Payload::LaunchReport(report)),
        }
        .encode_to_vec(),
    )
}

/// Makes the planned container run and returns its id, or the TASK_FAILED outcome
/// that explains why it could not run.
///
/// A running container labelled with the same task (left by an executor that died)
/// is adopted; a stopped one is removed and replaced. A missing image is pulled, with
/// the task's own registry credentials, else those of the agent's Docker config file
/// if it has some. The plan's sandbox mounts are created under `sandbox` and checked
/// before the container is created.
pub async fn launch(
    docker: &DockerClient,
    plan: &ContainerPlan,
    sandbox: Option<&Path>,
) -> Result<Launched, Outcome> {
    let filters = [
        format!("{LABEL_TASK_ID}={}", plan.task_id),
        format!("{LABEL_FRAMEWORK_ID}={}", plan.framework_id),
    ];
    let existing = docker
        .list_containers(true, &filters)
        .await
        .map_err(|err| {
            failed(format!(
                "cannot list containers of task {}: {err}",
                plan.task_id
            ))
        })?;
    for container in existing {
        if container.state == "running" {
            info!(container = %plan.name, id = %container.id, "adopting the task's running container");
            return Ok(Launched {
                id: container.id,
                adopted: true,
                ..Launched::default()
            });
        }
        warn!(container = %plan.name, id = %container.id, state = %container.state, "removing the task's stopped container");
        let force = RemoveOptions {
            force: true,
            volumes: true,
        };
        if let Err(err) = docker.remove_container(&container.id, force).await {
            if !err.is_not_found() {
                return Err(failed(format!(
                    "cannot remove stopped container {} of task {}: {err}",
                    container.id, plan.task_id
                )));
            }
        }
    }

    let mut create = plan.create.clone();
    create.host_config.mounts = if plan.mounts.is_empty() {
        Vec::new()
    } else {
        let Some(sandbox) = sandbox.map(Path::to_path_buf) else {
            return Err(invalid(format!(
                "task {} mounts sandbox paths but the agent gave no sandbox (MESOS_DIRECTORY)",
                plan.task_id
            )));
        };
        let mounts = plan.mounts.clone();
        // Creating and resolving the directories is blocking file I/O.
        tokio::task::spawn_blocking(move || prepare_mounts(&sandbox, &mounts))
            .await
            .map_err(|err| failed(format!("sandbox mount preparation failed: {err}")))?
            .map_err(|reason| invalid(format!("task {}: {reason}", plan.task_id)))?
    };

    let mut launched = Launched::default();
    match docker.image_exists(&plan.image).await {
        Ok(true) => {}
        Ok(false) => {
            let span = info_span!(
                "Executor::Pull",
                task_id = %plan.task_id,
                image = %plan.image,
            );
            let started = Instant::now();
            pull(docker, &plan.image, plan.registry_auth.as_ref())
                .instrument(span)
                .await?;
            launched.pulled = true;
            launched.pull_time = started.elapsed();
        }
        Err(err) => {
            return Err(failed(format!(
                "cannot look up image {}: {err}",
                plan.image
            )))
        }
    }

    let create_span = info_span!(
        "Executor::Create",
        task_id = %plan.task_id,
        image = %plan.image,
        container = %plan.name,
        container_id = Empty,
    );
    let started = Instant::now();
    let created = create_container(docker, plan, &create)
        .instrument(create_span.clone())
        .await?;
    launched.create_time = started.elapsed();
    create_span.record("container_id", created.id.as_str());
    drop(create_span);
    for warning in created.warnings.iter().flatten() {
        warn!(container = %plan.name, %warning, "docker warned on container creation");
    }

    let start_span = info_span!(
        "Executor::Start",
        task_id = %plan.task_id,
        image = %plan.image,
        container = %plan.name,
        container_id = %created.id,
    );
    let started = Instant::now();
    start(docker, plan, &created.id)
        .instrument(start_span)
        .await?;
    launched.start_time = started.elapsed();
    info!(container = %plan.name, id = %created.id, "container started");
    launched.id = created.id;
    Ok(launched)
}

/// Creates the planned container from `create`, replacing a stale container holding
/// its name.
async fn create_container(
    docker: &DockerClient,
    plan: &ContainerPlan,
    create: &CreateContainer,
) -> Result<CreatedContainer, Outcome> {
    match docker.create_container(&plan.name, create).await {
        Ok(created) => Ok(created),
        Err(err) if err.is_conflict() => {
            // A container of a previous incarnation of this task holds the name.
            warn!(container = %plan.name, "removing a stale container holding the task's name");
            let force = RemoveOptions {
                force: true,
                volumes: true,
            };
            if let Err(err) = docker.remove_container(&plan.name, force).await {
                if !err.is_not_found() {
                    return Err(failed(format!(
                        "cannot remove stale container {}: {err}",
                        plan.name
                    )));
                }
            }
            docker
                .create_container(&plan.name, create)
                .await
                .map_err(|err| failed(format!("cannot create container {}: {err}", plan.name)))
        }
        Err(err) => Err(failed(format!(
            "cannot create container {}: {err}",
            plan.name
        ))),
    }
}

/// Starts the created container `id`, removing it if it cannot start.
async fn start(docker: &DockerClient, plan: &ContainerPlan, id: &str) -> Result<(), Outcome> {
    let Err(err) = docker.start_container(id).await else {
        return Ok(());
    };
    let force = RemoveOptions {
        force: true,
        volumes: true,
    };
    if let Err(remove_err) = docker.remove_container(id, force).await {
        warn!(container = %plan.name, error = %remove_err, "cannot remove a container that failed to start");
    }
    Err(failed(format!(
        "cannot start container {}: {err}",
        plan.name
    )))
}

/// Pulls `image` with `task_auth` when the task has credentials, else with the
/// agent's, failing the task with the registry's message if it cannot.
async fn pull(
    docker: &DockerClient,
    image: &str,
    task_auth: Option<&RegistryAuth>,
) -> Result<(), Outcome> {
    let reference = ImageReference::parse(image)
        .map_err(|err| failed(format!("cannot pull image {image}: {err}")))?;
    let auth = match task_auth {
        Some(auth) => Some(auth.clone()),
        None => {
            let registry = reference.registry.clone();
            // Reading the config file is blocking file I/O.
            tokio::task::spawn_blocking(move || load_registry_auth(&registry))
                .await
                .unwrap_or(None)
        }
    };
    // The credentials themselves are never logged.
    info!(
        %image,
        authenticated = auth.is_some(),
        task_credentials = task_auth.is_some(),
        "pulling image"
    );
    docker
        .pull_image(&reference, auth.as_ref(), |progress| {
            debug!(%image, status = ?progress.status, layer = ?progress.id, "pull progress");
        })
        .await
        .map_err(|err| failed(format!("cannot pull image {image}: {err}")))?;
    match docker.image_exists(image).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(failed(format!(
            "image {image} still not present after its pull"
        ))),
        Err(err) => Err(failed(format!("cannot look up image {image}: {err}"))),
    }
}

fn failed(message: String) -> Outcome {
    Outcome {
        state: TaskState::TaskFailed,
        reason: Some(Reason::ContainerLaunchFailed),
        message,
    }
}

fn invalid(message: String) -> Outcome {
    Outcome {
        state: TaskState::TaskFailed,
        reason: Some(Reason::TaskInvalid),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_reports_carry_the_timings() {
        let launched = Launched {
            id: "c1".into(),
            adopted: false,
            pulled: true,
            pull_time: Duration::from_millis(1500),
            create_time: Duration::from_millis(250),
            start_time: Duration::from_millis(125),
        };
        let decoded = ExecutorMessage::decode(launch_report_message("t.1", &launched)).unwrap();
        assert_eq!(
            decoded.payload,
            Some(executor_message::Payload::LaunchReport(LaunchReport {
                task_id: "t.1".into(),
                pull_seconds: Some(1.5),
                create_seconds: Some(0.25),
                start_seconds: Some(0.125),
                pulled: Some(true),
                adopted: Some(false),
            }))
        );
    }
}
