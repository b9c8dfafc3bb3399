//! Starting a task's container: image check, creation (replacing a stale container of
//! the same name) and start.

use mesos_stateful_proto::v1::task_status::Reason;
use mesos_stateful_proto::v1::TaskState;
use tracing::{info, warn};

use super::{ContainerPlan, Outcome};
use crate::docker::{DockerClient, RemoveOptions};

/// Creates and starts the planned container and returns its id, or the TASK_FAILED
/// outcome that explains why it could not run. Images are never pulled: a missing
/// image fails the task.
pub async fn launch(docker: &DockerClient, plan: &ContainerPlan) -> Result<String, Outcome> {
    match docker.image_exists(&plan.image).await {
        Ok(true) => {}
        Ok(false) => return Err(failed(format!("image {} not found locally", plan.image))),
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
    Ok(created.id)
}

fn failed(message: String) -> Outcome {
    Outcome {
        state: TaskState::TaskFailed,
        reason: Some(Reason::ContainerLaunchFailed),
        message,
    }
}
