//! What a task's container spec can ask for, end to end against the real engine:
//! bridge networking with published ports and health checks reaching the container,
//! sandbox mounts and persistent volumes, privileged containers, the task's own
//! registry credentials; and what the executor reports besides task states (launch
//! reports, streamed stats, health check failures), the engine's `die` events, and
//! the kill and shutdown grace periods.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesos_stateful_executor::docker::CreateContainer;
use mesos_stateful_executor::task::events::watch_end_events;
use mesos_stateful_executor::task::sampler::StatsSampler;
use mesos_stateful_executor::task::{container_name, LABEL_TASK_ID};
use mesos_stateful_executor::ExitReason;
use mesos_stateful_proto::stateful::container_spec::{NetworkMode, PortMapping, VolumeMount};
use mesos_stateful_proto::stateful::{executor_message, ContainerSpec, LaunchReport, RegistryAuth};
use mesos_stateful_proto::v1::executor::{event, Event};
use mesos_stateful_proto::v1::health_check::{HttpCheckInfo, Type as CheckType};
use mesos_stateful_proto::v1::{
    self, resource, value, volume, CommandInfo, DurationInfo, HealthCheck, KillPolicy, Resource,
    TaskState, TaskStatus, Volume,
};
use mesos_stateful_proto::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::executor::{kill, shutdown, spec, stats_of, Run};
use crate::support::{
    docker, ensure_test_image, remove_labelled, unique, FakeAgent, Registry, TEST_IMAGE, TEST_LABEL,
};

/// A user of the authenticated test registry and the bcrypt hash of its password
/// (cost 4, so that the registry checks it quickly).
const REGISTRY_USER: (&str, &str) = ("it", "it-secret");
const REGISTRY_HTPASSWD: &str = "it:$2b$04$sE1gXId.56GgxVrQIacoJuxrOCslWV8WgTT.4rGpfPManFqr/BX8K";

/// A LAUNCH of `task` running `spec`, with `resources`, and the rest of `extra`.
fn launch_task(
    task: &str,
    spec: &ContainerSpec,
    resources: Vec<Resource>,
    extra: v1::TaskInfo,
) -> Event {
    Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(event::Launch {
            task: v1::TaskInfo {
                name: task.into(),
                task_id: v1::TaskId { value: task.into() },
                resources,
                data: Some(Bytes::from(spec.encode_to_vec())),
                ..extra
            },
        }),
        ..Default::default()
    }
}

fn ports(port: u16) -> Resource {
    Resource {
        name: "ports".into(),
        r#type: value::Type::Ranges as i32,
        ranges: Some(value::Ranges {
            range: vec![value::Range {
                begin: u64::from(port),
                end: u64::from(port),
            }],
        }),
        ..Default::default()
    }
}

fn persistent_volume(container_path: &str) -> Resource {
    Resource {
        name: "disk".into(),
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar { value: 16.0 }),
        disk: Some(resource::DiskInfo {
            persistence: Some(resource::disk_info::Persistence {
                id: unique("pv"),
                principal: None,
            }),
            volume: Some(Volume {
                container_path: container_path.into(),
                mode: volume::Mode::Rw as i32,
                ..Default::default()
            }),
            source: None,
        }),
        ..Default::default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn last_update(agent: &FakeAgent) -> TaskStatus {
    agent.updates().last().cloned().unwrap()
}

fn launch_reports(agent: &FakeAgent) -> Vec<LaunchReport> {
    agent
        .messages()
        .into_iter()
        .filter_map(|message| match message.payload {
            Some(executor_message::Payload::LaunchReport(report)) => Some(report),
            _ => None,
        })
        .collect()
}

fn seconds(value: f64) -> Option<DurationInfo> {
    Some(DurationInfo {
        nanoseconds: (value * 1e9) as i64,
    })
}

#[tokio::test]
async fn launch_report_precedes_running_and_carries_the_timings() {
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent.send(launch_task(
        &task,
        &spec(TEST_IMAGE, &["sleep", "30"]),
        vec![],
        Default::default(),
    ));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    let reports = launch_reports(&run.agent);
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report.task_id, task);
    assert_eq!((report.pulled, report.adopted), (Some(false), Some(false)));
    assert_eq!(report.pull_seconds, Some(0.0));
    assert!(report.create_seconds.unwrap() > 0.0, "{report:?}");
    assert!(report.start_seconds.unwrap() > 0.0, "{report:?}");
    run.agent.send(kill(&task, Duration::ZERO));
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}

#[tokio::test]
async fn stats_sampler_serves_streamed_samples_without_asking_the_engine() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let run_label = unique("sampler");
    let create = CreateContainer {
        image: TEST_IMAGE.into(),
        cmd: Some(vec!["sleep".into(), "30".into()]),
        labels: BTreeMap::from([(TEST_LABEL.to_string(), run_label.clone())]),
        ..Default::default()
    };
    let created = docker.create_container(&run_label, &create).await.unwrap();
    docker.start_container(&created.id).await.unwrap();
    let sampler = StatsSampler::start(docker.clone(), &created.id);
    // The stream's first sample arrives at once, the next ones every second; from
    // then on, a sample is served from memory.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sampled = loop {
        if let Some(sampled) = sampler.fresh().filter(|s| s.cpu_percent.is_some()) {
            break sampled;
        }
        assert!(Instant::now() < deadline, "no streamed sample with cpu use");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(sampled.sample.memory_usage.is_some());
    assert!(sampled.sample.pids.is_some());
    let served = sampler.sample().await.unwrap();
    assert!(served.cpu_percent.is_some());
    drop(sampler);
    remove_labelled(&docker, TEST_LABEL, &run_label).await;
}

#[tokio::test]
async fn health_check_failures_are_counted_in_the_stats() {
    let run = Run::start(false).await;
    let task = unique("task");
    let mut spec = spec(TEST_IMAGE, &["sleep", "30"]);
    spec.stats_interval_seconds = Some(0.5);
    let check = HealthCheck {
        r#type: Some(CheckType::Command as i32),
        command: Some(CommandInfo {
            value: Some("false".into()),
            ..Default::default()
        }),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.2),
        grace_period_seconds: Some(0.0),
        consecutive_failures: Some(1000),
        ..Default::default()
    };
    run.agent.send(launch_task(
        &task,
        &spec,
        vec![],
        v1::TaskInfo {
            health_check: Some(check),
            ..Default::default()
        },
    ));
    run.agent
        .wait_until(Duration::from_secs(15), |agent| {
            stats_of(agent)
                .iter()
                .any(|stats| stats.health_failures.unwrap_or(0) >= 3)
        })
        .await;
    let counts: Vec<u64> = stats_of(&run.agent)
        .iter()
        .map(|stats| stats.health_failures.unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|pair| pair[0] <= pair[1]),
        "{counts:?}"
    );
    run.agent.send(kill(&task, Duration::ZERO));
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}

/// An HTTP server on container port 8080 (busybox httpd serving `ok`).
fn web_server() -> Vec<&'static str> {
    vec![
        "sh",
        "-c",
        "busybox mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www",
    ]
}

#[tokio::test]
async fn bridge_task_publishes_its_port_and_health_checks_reach_it() {
    let run = Run::start(false).await;
    let task = unique("task");
    let host_port = free_port();
    let mut spec = spec(TEST_IMAGE, &web_server());
    spec.network = Some(NetworkMode::Bridge as i32);
    spec.port_mappings = vec![PortMapping {
        host_port: u32::from(host_port),
        container_port: Some(8080),
        protocol: None,
    }];
    // The check names the task's (host) port: the executor reaches the container
    // at its own address and port.
    let check = HealthCheck {
        r#type: Some(CheckType::Http as i32),
        http: Some(HttpCheckInfo {
            port: u32::from(host_port),
            path: Some("/".into()),
            ..Default::default()
        }),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.3),
        grace_period_seconds: Some(10.0),
        consecutive_failures: Some(3),
        ..Default::default()
    };
    run.agent.send(launch_task(
        &task,
        &spec,
        vec![ports(host_port)],
        v1::TaskInfo {
            health_check: Some(check),
            ..Default::default()
        },
    ));
    run.agent
        .wait_until(Duration::from_secs(15), |agent| {
            agent
                .updates()
                .iter()
                .any(|status| status.healthy == Some(true))
        })
        .await;
    // The port is published on the agent.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", host_port))
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    run.agent.send(kill(&task, Duration::ZERO));
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}

#[tokio::test]
async fn bridge_mapping_of_a_port_not_given_fails_the_task() {
    let run = Run::start(false).await;
    let task = unique("task");
    let given = free_port();
    let mut spec = spec(TEST_IMAGE, &["sleep", "30"]);
    spec.network = Some(NetworkMode::Bridge as i32);
    spec.port_mappings = vec![PortMapping {
        host_port: u32::from(given) ^ 1,
        container_port: Some(8080),
        protocol: None,
    }];
    run.agent.send(launch_task(
        &task,
        &spec,
        vec![ports(given)],
        Default::default(),
    ));
    let failed = run.agent.wait_for_state(TaskState::TaskFailed).await;
    assert_eq!(
        failed.message.as_deref(),
        Some(
            format!(
                "task {task} maps host port {}, which is not among its ports resources",
                u32::from(given) ^ 1
            )
            .as_str()
        )
    );
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}

#[tokio::test]
async fn sandbox_mounts_and_persistent_volumes_are_bound_into_the_container() {
    let sandbox = tempfile::tempdir().unwrap();
    // The agent makes a persistent volume visible at `<sandbox>/<container_path>`.
    std::fs::create_dir(sandbox.path().join("pv")).unwrap();
    std::fs::write(
        sandbox.path().join("pv/before"),
        b"from an earlier incarnation\n",
    )
    .unwrap();
    let run = Run::start_in(false, Some(sandbox.path().to_path_buf())).await;
    let task = unique("task");
    let mut spec = spec(
        TEST_IMAGE,
        &[
            "sh",
            "-c",
            "echo hello > /data/out && busybox cat /pv/before > /pv/after",
        ],
    );
    spec.mounts = vec![VolumeMount {
        sandbox_path: "app/data".into(),
        container_path: "/data".into(),
        read_only: None,
    }];
    run.agent.send(launch_task(
        &task,
        &spec,
        vec![persistent_volume("pv")],
        Default::default(),
    ));
    let finished = run.agent.wait_for_state(TaskState::TaskFinished).await;
    assert_eq!(
        finished.message.as_deref(),
        Some("container exited with code 0")
    );
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("app/data/out")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.path().join("pv/after")).unwrap(),
        "from an earlier incarnation\n"
    );
}

#[tokio::test]
async fn mounts_escaping_the_sandbox_fail_the_task() {
    let outside = tempfile::tempdir().unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), sandbox.path().join("escape")).unwrap();
    let run = Run::start_in(false, Some(sandbox.path().to_path_buf())).await;
    let task = unique("task");
    let mut spec = spec(TEST_IMAGE, &["sh", "-c", "echo owned > /data/x"]);
    spec.mounts = vec![VolumeMount {
        sandbox_path: "escape/sub".into(),
        container_path: "/data".into(),
        read_only: None,
    }];
    run.agent
        .send(launch_task(&task, &spec, vec![], Default::default()));
    let failed = run.agent.wait_for_state(TaskState::TaskFailed).await;
    let message = failed.message.unwrap();
    assert!(message.contains("leads outside the sandbox"), "{message}");
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn privileged_containers_run_only_where_the_operator_allows_them() {
    let mut spec = spec(TEST_IMAGE, &["sleep", "30"]);
    spec.privileged = Some(true);

    let refusing = Run::start(false).await;
    let task = unique("task");
    refusing
        .agent
        .send(launch_task(&task, &spec, vec![], Default::default()));
    let failed = refusing.agent.wait_for_state(TaskState::TaskFailed).await;
    assert_eq!(
        failed.message.as_deref(),
        Some(
            format!(
                "task {task} asks for a privileged container, which this agent does not allow \
                 (MESOS_STATEFUL_ALLOW_PRIVILEGED is not 1)"
            )
            .as_str()
        )
    );
    assert_eq!(refusing.finish().await.unwrap(), ExitReason::TasksFinished);

    let allowing = Run::start_with(false, None, |config| config.allow_privileged = true).await;
    let task = unique("task");
    allowing
        .agent
        .send(launch_task(&task, &spec, vec![], Default::default()));
    allowing
        .agent
        .wait_until(Duration::from_secs(15), |agent| {
            let states = agent.states();
            states.contains(&TaskState::TaskRunning) || states.contains(&TaskState::TaskFailed)
        })
        .await;
    let update = last_update(&allowing.agent);
    if update.state == TaskState::TaskFailed as i32 {
        // Engines inside unprivileged sandboxes cannot grant the capabilities: the
        // task then fails at the engine's start, past the executor's gate.
        let message = update.message.unwrap_or_default();
        assert!(
            message.starts_with("cannot start container") && message.contains("caps"),
            "{message}"
        );
        assert_eq!(
            update.reason,
            Some(v1::task_status::Reason::ContainerLaunchFailed as i32)
        );
    } else {
        let output = tokio::process::Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{.HostConfig.Privileged}}",
                &container_name(&task),
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "true");
        allowing.agent.send(kill(&task, Duration::ZERO));
    }
    assert_eq!(allowing.finish().await.unwrap(), ExitReason::TasksFinished);
}

#[tokio::test]
async fn task_registry_credentials_are_used_for_its_pull() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let registry = Registry::start_with_users(Some(REGISTRY_HTPASSWD)).await;
    let image = registry
        .push_as(&docker, TEST_IMAGE, "it/private", REGISTRY_USER)
        .await;

    // Without credentials the registry refuses the pull.
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent.send(launch_task(
        &task,
        &spec(&image, &["true"]),
        vec![],
        Default::default(),
    ));
    let failed = run.agent.wait_for_state(TaskState::TaskFailed).await;
    let message = failed.message.unwrap();
    assert!(message.contains("no basic auth credentials"), "{message}");
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);

    // With the task's credentials it is pulled and runs.
    let run = Run::start(false).await;
    let task = unique("task");
    let mut spec = spec(&image, &["true"]);
    spec.registry_auth = Some(RegistryAuth {
        username: Some(REGISTRY_USER.0.into()),
        password: Some(REGISTRY_USER.1.into()),
        server_address: None,
        identity_token: None,
    });
    run.agent
        .send(launch_task(&task, &spec, vec![], Default::default()));
    run.agent.wait_for_state(TaskState::TaskFinished).await;
    let reports = launch_reports(&run.agent);
    assert_eq!(reports[0].pulled, Some(true));
    assert!(reports[0].pull_seconds.unwrap() > 0.0);
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    docker.remove_image(&image, true).await.unwrap();
}

#[tokio::test]
async fn die_events_report_the_exit_code_and_oom_kills() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let check = |cmd: Vec<&'static str>, memory: Option<i64>| {
        let docker = docker.clone();
        async move {
            let task = unique("events");
            let mut create = CreateContainer {
                image: TEST_IMAGE.into(),
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                labels: BTreeMap::from([
                    (TEST_LABEL.to_string(), task.clone()),
                    (LABEL_TASK_ID.to_string(), task.clone()),
                ]),
                ..Default::default()
            };
            create.host_config.memory = memory;
            let created = docker.create_container(&task, &create).await.unwrap();
            docker.start_container(&created.id).await.unwrap();
            let exit = tokio::time::timeout(
                Duration::from_secs(20),
                watch_end_events(&docker, &created.id, &task),
            )
            .await
            .expect("no die event");
            remove_labelled(&docker, TEST_LABEL, &task).await;
            exit
        }
    };
    let exit = check(vec!["sh", "-c", "sleep 1; exit 3"], None).await;
    assert_eq!((exit.exit_code, exit.oom_killed), (3, false));
    // 16 MiB of memory, and a process keeping the last 100 MiB of an endless input.
    let exit = check(
        vec!["busybox", "tail", "-c", "104857600", "/dev/zero"],
        Some(16 * 1024 * 1024),
    )
    .await;
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.exit_code, 137);
}

#[tokio::test]
async fn kill_waits_the_grace_period_before_killing_a_container_ignoring_sigterm() {
    let run = Run::start(false).await;
    let task = unique("task");
    // `sleep` as the container's first process ignores SIGTERM.
    let task_policy = KillPolicy {
        grace_period: seconds(2.0),
    };
    run.agent.send(launch_task(
        &task,
        &spec(TEST_IMAGE, &["sleep", "60"]),
        vec![],
        v1::TaskInfo {
            kill_policy: Some(task_policy),
            ..Default::default()
        },
    ));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    // A KILL without a policy of its own: the task's grace period applies.
    let started = Instant::now();
    run.agent.send(Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: v1::TaskId {
                value: task.clone(),
            },
            kill_policy: None,
        }),
        ..Default::default()
    });
    run.agent.wait_for_state(TaskState::TaskKilled).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);

    // A container that stops on SIGTERM does not wait out a long grace period.
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent.send(launch_task(
        &task,
        &spec(
            TEST_IMAGE,
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            ],
        ),
        vec![],
        Default::default(),
    ));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    let started = Instant::now();
    run.agent.send(kill(&task, Duration::from_secs(20)));
    run.agent.wait_for_state(TaskState::TaskKilled).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}

#[tokio::test]
async fn shutdown_stops_tasks_within_the_agents_grace_period() {
    // The agent's grace period is 3 s; the executor keeps 1 s of it for itself.
    let run = Run::start_with(false, None, |config| {
        config.shutdown_grace_period = Duration::from_secs(3)
    })
    .await;
    let task = unique("task");
    // The task's own policy asks for more than the agent grants.
    run.agent.send(launch_task(
        &task,
        &spec(TEST_IMAGE, &["sleep", "60"]),
        vec![],
        v1::TaskInfo {
            kill_policy: Some(KillPolicy {
                grace_period: seconds(30.0),
            }),
            ..Default::default()
        },
    ));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    let started = Instant::now();
    run.agent.send(shutdown());
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::Shutdown);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    assert_eq!(last_update(&agent).state, TaskState::TaskKilled as i32);
}

#[tokio::test]
async fn docker_cli_sees_the_published_port() {
    // The bridge container's port bindings are the engine's own, as `docker port`
    // shows them.
    let run = Run::start(false).await;
    let task = unique("task");
    let host_port = free_port();
    let mut spec = spec(TEST_IMAGE, &["sleep", "30"]);
    spec.network = Some(NetworkMode::Bridge as i32);
    run.agent.send(launch_task(
        &task,
        &spec,
        vec![ports(host_port)],
        Default::default(),
    ));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    let output = tokio::process::Command::new("docker")
        .args(["port", &container_name(&task)])
        .output()
        .await
        .unwrap();
    let ports = String::from_utf8_lossy(&output.stdout);
    assert!(
        ports.contains(&format!("{host_port}/tcp -> 0.0.0.0:{host_port}")),
        "{ports}"
    );
    run.agent.send(kill(&task, Duration::ZERO));
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}
