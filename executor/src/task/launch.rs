//! Starting a task's container: adoption of a running container left by an earlier
//! executor, image check and pull, creation (replacing a stale container of the same
//! name) and start.
//!
//! [`launch`] runs inside the task's `Executor::Launch` span; the pull, the creation
//! and the start each get a child span (`Executor::Pull`, `Executor::Create`,
//! `Executor::Start`).

use mesos_stateful_proto::v1::task_status::Reason;
use mesos_stateful_proto::v1::TaskState;
use tracing::field::Empty;
use tracing::{debug, info, info_span, warn, Instrument};

use super::{ContainerPlan, Outcome, LABEL_FRAMEWORK_ID, LABEL_TASK_ID};
use crate::docker::{
    load_registry_auth, CreatedContainer, DockerClient, ImageReference, RemoveOptions,
};

/// How the task's container came to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// The container's id.
    pub id: String,
    /// Whether a container of an earlier executor for the same task was found running
    /// and adopted instead of creating a new one.
    pub adopted: bool,
}

/// Makes the planned container run and returns its id, or the TASK_FAILED outcome
/// that explains why it could not run.
///
/// A running container labelled with the same task (left by an executor that died)
/// is adopted; a stopped one is removed and replaced. A missing image is pulled, with
/// the registry credentials of the agent's Docker config file if it has some.
pub async fn launch(docker: &DockerClient, plan: &ContainerPlan) -> Result<Launched, Outcome> {
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

    match docker.image_exists(&plan.image).await {
        Ok(true) => {}
        Ok(false) => {
            let span = info_span!(
                "Executor::Pull",
                task_id = %plan.task_id,
                image = %plan.image,
            );
            pull(docker, &plan.image).instrument(span).await?
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
    let created = create(docker, plan).instrument(create_span.clone()).await?;
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
    start(docker, plan, &created.id)
        .instrument(start_span)
        .await?;
    info!(container = %plan.name, id = %created.id, "container started");
    Ok(Launched {
        id: created.id,
        adopted: false,
    })
}

/// Creates the planned container, replacing a stale container holding its name.
async fn create(docker: &DockerClient, plan: &ContainerPlan) -> Result<CreatedContainer, Outcome> {
    match docker.create_container(&plan.name, &plan.create).await {
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
                .create_container(&plan.name, &plan.create)
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

/// Pulls `image`, failing the task with the registry's message if it cannot.
async fn pull(docker: &DockerClient, image: &str) -> Result<(), Outcome> {
    let reference = ImageReference::parse(image)
        .map_err(|err| failed(format!("cannot pull image {image}: {err}")))?;
    let registry = reference.registry.clone();
    // Reading the config file is blocking file I/O.
    let auth = tokio::task::spawn_blocking(move || load_registry_auth(&registry))
        .await
        .unwrap_or(None);
    info!(%image, authenticated = auth.is_some(), "pulling image");
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
