//! Starting a task's container: adoption of a running container left by an earlier
//! executor, image check and pull, creation (replacing a stale container of the same
//! name) and start.

use mesos_stateful_proto::v1::task_status::Reason;
use mesos_stateful_proto::v1::TaskState;
use tracing::{debug, info, warn};

use super::{ContainerPlan, Outcome, LABEL_FRAMEWORK_ID, LABEL_TASK_ID};
use crate::docker::{load_registry_auth, DockerClient, ImageReference, RemoveOptions};

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
        Ok(false) => pull(docker, &plan.image).await?,
        Err(err) => {
            return Err(failed(format!(
                "cannot look up image {}: {err}",
                plan.image
            )))
        }
    }

    let created = match docker.create_container(&plan.name, &plan.create).await {
        Ok(created) => created,
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
                .map_err(|err| failed(format!("cannot create container {}: {err}", plan.name)))?
        }
        Err(err) => {
            return Err(failed(format!(
                "cannot create container {}: {err}",
                plan.name
            )))
        }
    };
    for warning in created.warnings.iter().flatten() {
        warn!(container = %plan.name, %warning, "docker warned on container creation");
    }

    if let Err(err) = docker.start_container(&created.id).await {
        let force = RemoveOptions {
            force: true,
            volumes: true,
        };
        if let Err(remove_err) = docker.remove_container(&created.id, force).await {
            warn!(container = %plan.name, error = %remove_err, "cannot remove a container that failed to start");
        }
        return Err(failed(format!(
            "cannot start container {}: {err}",
            plan.name
        )));
    }
    info!(container = %plan.name, id = %created.id, "container started");
    Ok(Launched {
        id: created.id,
        adopted: false,
    })
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
