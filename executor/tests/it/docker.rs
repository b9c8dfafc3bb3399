//! The Docker client against the machine's real engine.

use std::collections::BTreeMap;
use std::time::Duration;

use mesos_stateful_executor::docker::{
    CreateContainer, DockerClient, HostConfig, RemoveOptions, WaitCondition, MAX_API_VERSION,
    MIN_API_VERSION,
};

use crate::support::{docker, ensure_test_image, remove_labelled, unique, TEST_IMAGE, TEST_LABEL};

fn container(cmd: &[&str], run: &str) -> CreateContainer {
    CreateContainer {
        image: TEST_IMAGE.into(),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: BTreeMap::from([(TEST_LABEL.to_string(), run.to_string())]),
        host_config: HostConfig {
            network_mode: Some("host".into()),
            nano_cpus: Some(500_000_000),
            memory: Some(64 * 1024 * 1024),
        },
        ..Default::default()
    }
}

/// Runs `body`, then removes every container labelled with this run, even on failure.
async fn with_run<F, Fut>(body: F)
where
    F: FnOnce(DockerClient, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let run = unique("run");
    let outcome = tokio::spawn(body(docker.clone(), run.clone())).await;
    remove_labelled(&docker, TEST_LABEL, &run).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

#[tokio::test]
async fn engine_api_version_is_negotiated() {
    let docker = docker().await;
    let version = docker.api_version();
    assert!(
        version >= MIN_API_VERSION && version <= MAX_API_VERSION,
        "{version}"
    );
    let info = docker.version().await.unwrap();
    assert!(!info.api_version.is_empty());
}

#[tokio::test]
async fn container_lifecycle_create_start_inspect_stop_remove() {
    with_run(|docker, run| async move {
        let name = unique("mesos-stateful-it");
        let created = docker
            .create_container(&name, &container(&["sleep", "30"], &run))
            .await
            .unwrap();
        docker.start_container(&created.id).await.unwrap();
        // Starting twice is not an error.
        docker.start_container(&created.id).await.unwrap();

        let inspect = docker.inspect_container(&name).await.unwrap();
        assert_eq!(inspect.id, created.id);
        assert_eq!(inspect.name, format!("/{name}"));
        assert!(inspect.state.running);
        assert_eq!(inspect.state.status, "running");

        let listed = docker
            .list_containers(false, &[format!("{TEST_LABEL}={run}")])
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, created.id);
        assert_eq!(
            listed[0].labels.as_ref().unwrap().get(TEST_LABEL),
            Some(&run)
        );

        // `sleep` as pid 1 ignores SIGTERM, so the stop ends with SIGKILL after 1s.
        docker
            .stop_container(&created.id, Duration::from_secs(1))
            .await
            .unwrap();
        let inspect = docker.inspect_container(&created.id).await.unwrap();
        assert!(!inspect.state.running);
        assert_eq!(inspect.state.status, "exited");
        assert_eq!(inspect.state.exit_code, 137);
        // Stopping a stopped container is not an error; killing one is a conflict.
        docker
            .stop_container(&created.id, Duration::ZERO)
            .await
            .unwrap();
        let err = docker
            .kill_container(&created.id, "SIGKILL")
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{err}");

        docker
            .remove_container(
                &created.id,
                RemoveOptions {
                    force: false,
                    volumes: true,
                },
            )
            .await
            .unwrap();
        let err = docker.inspect_container(&created.id).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
    })
    .await;
}

#[tokio::test]
async fn exit_code_is_seen_through_wait() {
    with_run(|docker, run| async move {
        let name = unique("mesos-stateful-it");
        let created = docker
            .create_container(&name, &container(&["sh", "-c", "exit 3"], &run))
            .await
            .unwrap();
        docker.start_container(&created.id).await.unwrap();
        let waited = docker
            .wait_container(&created.id, WaitCondition::NotRunning)
            .await
            .unwrap();
        assert_eq!(waited.status_code, 3);
        let inspect = docker.inspect_container(&created.id).await.unwrap();
        assert_eq!(inspect.state.exit_code, 3);
        assert!(!inspect.state.oom_killed);
    })
    .await;
}

#[tokio::test]
async fn kill_and_name_conflicts_are_reported() {
    with_run(|docker, run| async move {
        let name = unique("mesos-stateful-it");
        let spec = container(&["sleep", "30"], &run);
        let created = docker.create_container(&name, &spec).await.unwrap();
        let err = docker.create_container(&name, &spec).await.unwrap_err();
        assert!(err.is_conflict(), "{err}");
        docker.start_container(&created.id).await.unwrap();
        docker.kill_container(&created.id, "SIGKILL").await.unwrap();
        let waited = docker
            .wait_container(&created.id, WaitCondition::NotRunning)
            .await
            .unwrap();
        assert_eq!(waited.status_code, 137);
        docker
            .remove_container(
                &created.id,
                RemoveOptions {
                    force: true,
                    volumes: true,
                },
            )
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn missing_images_and_containers_are_not_found() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    assert!(docker.image_exists(TEST_IMAGE).await.unwrap());
    assert!(!docker
        .image_exists("mesos-stateful-it/absent:1")
        .await
        .unwrap());
    let err = docker
        .create_container(
            &unique("mesos-stateful-it"),
            &CreateContainer {
                image: "mesos-stateful-it/absent:1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = docker
        .remove_container("mesos-stateful-it-no-such", RemoveOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn imported_image_can_be_found_and_removed() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let tag = unique("import");
    let tar = crate::support::busybox_rootfs_tar();
    docker
        .import_image("mesos-stateful-it/imported", &tag, bytes::Bytes::from(tar))
        .await
        .unwrap();
    let reference = format!("mesos-stateful-it/imported:{tag}");
    assert!(docker.image_exists(&reference).await.unwrap());
    docker.remove_image(&reference, true).await.unwrap();
    assert!(!docker.image_exists(&reference).await.unwrap());
}

#[tokio::test]
async fn garbage_import_is_an_error() {
    let docker = docker().await;
    let err = docker
        .import_image(
            "mesos-stateful-it/garbage",
            "1",
            bytes::Bytes::from_static(b"not a tarball"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            mesos_stateful_executor::docker::DockerError::Import { .. }
                | mesos_stateful_executor::docker::DockerError::Engine { .. }
        ),
        "{err}"
    );
}
