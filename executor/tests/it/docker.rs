//! The Docker client against the machine's real engine.

use std::collections::BTreeMap;
use std::time::Duration;

use mesos_stateful_executor::docker::{
    cpu_percent, CreateContainer, DockerClient, DockerError, HostConfig, ImageReference,
    RemoveOptions, WaitCondition, MAX_API_VERSION, MIN_API_VERSION,
};

use crate::support::{
    docker, ensure_test_image, remove_labelled, unique, Registry, TEST_IMAGE, TEST_LABEL,
};

fn container(cmd: &[&str], run: &str) -> CreateContainer {
    CreateContainer {
        image: TEST_IMAGE.into(),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: BTreeMap::from([(TEST_LABEL.to_string(), run.to_string())]),
        host_config: HostConfig {
            network_mode: Some("host".into()),
            nano_cpus: Some(500_000_000),
            memory: Some(64 * 1024 * 1024),
            ..Default::default()
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

#[tokio::test]
async fn image_is_pulled_from_a_local_registry() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let registry = Registry::start().await;
    let reference = registry
        .push(&docker, TEST_IMAGE, "mesos-stateful-it/pulled")
        .await;

    let mut statuses = Vec::new();
    let pulled = docker
        .pull_image(&ImageReference::parse(&reference).unwrap(), None, |p| {
            statuses.extend(p.status.clone())
        })
        .await;
    let present = docker.image_exists(&reference).await.unwrap();
    let _ = docker.remove_image(&reference, false).await;
    pulled.unwrap();
    assert!(present);
    assert!(
        statuses
            .last()
            .is_some_and(|s| s.starts_with("Status: ") && s.contains(&reference)),
        "{statuses:?}"
    );

    let unknown = format!("{}/mesos-stateful-it/unknown:1", registry.address);
    let err = docker
        .pull_image(&ImageReference::parse(&unknown).unwrap(), None, |_| {})
        .await
        .unwrap_err();
    match &err {
        DockerError::Pull { reference, message } => {
            assert_eq!(reference, &unknown);
            assert!(message.contains("manifest unknown"), "{message}");
        }
        other => panic!("expected a pull error, got {other}"),
    }
}

#[tokio::test]
async fn exec_runs_a_command_and_reports_its_exit_code_and_output() {
    with_run(|docker, run| async move {
        let created = docker
            .create_container(
                &unique("mesos-stateful-it"),
                &container(&["sleep", "30"], &run),
            )
            .await
            .unwrap();
        docker.start_container(&created.id).await.unwrap();
        let cmd = |script: &str| vec!["sh".to_string(), "-c".into(), script.into()];
        let result = docker
            .exec(&created.id, &cmd("echo out; echo err >&2; exit 4"))
            .await
            .unwrap();
        assert_eq!(result.exit_code, 4);
        assert_eq!(&result.stdout[..], b"out\n");
        assert_eq!(&result.stderr[..], b"err\n");
        assert!(!result.truncated);
        let result = docker.exec(&created.id, &cmd("true")).await.unwrap();
        assert_eq!(result.exit_code, 0);
        assert!(result.stdout.is_empty() && result.stderr.is_empty());
        let err = docker
            .exec("mesos-stateful-it-no-such", &cmd("true"))
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
    })
    .await;
}

#[tokio::test]
async fn stats_show_a_busy_container_using_cpu() {
    with_run(|docker, run| async move {
        let created = docker
            .create_container(
                &unique("mesos-stateful-it"),
                &container(&["sh", "-c", "while :; do :; done"], &run),
            )
            .await
            .unwrap();
        docker.start_container(&created.id).await.unwrap();
        let first = docker.container_stats(&created.id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let second = docker.container_stats(&created.id).await.unwrap();
        let percent = cpu_percent(&first, &second).expect("samples are comparable");
        // The container spins but may use half a CPU; allow for scheduling noise
        // without letting it reach a whole CPU.
        assert!(percent > 5.0 && percent < 100.0, "cpu {percent}%");
        assert!(second.online_cpus >= 1);
        assert!(second.memory_usage.is_some_and(|used| used > 0));
        assert!(second
            .memory_limit
            .is_some_and(|limit| limit == 64 * 1024 * 1024));
        assert!(second.pids.is_some_and(|pids| pids >= 1));
    })
    .await;
}

#[tokio::test]
async fn logs_of_an_exited_container_are_copied_by_stream() {
    with_run(|docker, run| async move {
        let created = docker
            .create_container(
                &unique("mesos-stateful-it"),
                &container(&["sh", "-c", "echo one; echo two >&2; echo three"], &run),
            )
            .await
            .unwrap();
        docker.start_container(&created.id).await.unwrap();
        docker
            .wait_container(&created.id, WaitCondition::NotRunning)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (stdout, stderr) = (dir.path().join("out"), dir.path().join("err"));
        let copied = docker
            .copy_logs(&created.id, &stdout, &stderr)
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&stdout).unwrap(), "one\nthree\n");
        assert_eq!(std::fs::read_to_string(&stderr).unwrap(), "two\n");
        assert_eq!((copied.stdout_bytes, copied.stderr_bytes), (10, 4));
    })
    .await;
}
