//! The whole executor against a fake agent and the machine's real Docker engine.

use std::time::Duration;

use bytes::Bytes;
use mesos_stateful_executor::config::{ExecutorId, FrameworkId};
use std::collections::BTreeMap;

use mesos_stateful_executor::docker::{CreateContainer, DockerHost, WaitCondition};
use mesos_stateful_executor::task::{
    container_name, LABEL_EXECUTOR_ID, LABEL_FRAMEWORK_ID, LABEL_TASK_ID,
};
use mesos_stateful_executor::{run, Config, Error, ExitReason};
use mesos_stateful_proto::stateful::{
    executor_message, scheduler_message, CommandResult, ContainerSpec, RunCommand,
    SchedulerMessage, TaskStats,
};
use mesos_stateful_proto::v1::executor::{event, Event};
use mesos_stateful_proto::v1::{self, DurationInfo, KillPolicy, TaskState};
use mesos_stateful_proto::Message;
use tokio::task::JoinHandle;

use crate::support::{
    acknowledged, docker, ensure_test_image, remove_labelled, unique, FakeAgent, Registry,
    TEST_IMAGE, TEST_LABEL,
};

/// An executor running against a fake agent.
pub(crate) struct Run {
    pub(crate) agent: FakeAgent,
    pub(crate) executor_id: String,
    handle: JoinHandle<Result<ExitReason, Error>>,
}

impl Run {
    pub(crate) async fn start(checkpoint: bool) -> Run {
        Run::start_in(checkpoint, None).await
    }

    /// Starts an executor whose sandbox is `sandbox`.
    pub(crate) async fn start_in(checkpoint: bool, sandbox: Option<std::path::PathBuf>) -> Run {
        Run::start_with(checkpoint, sandbox, |_| {}).await
    }

    /// Starts an executor whose sandbox is `sandbox`, its configuration changed by
    /// `configure`.
    pub(crate) async fn start_with(
        checkpoint: bool,
        sandbox: Option<std::path::PathBuf>,
        configure: impl FnOnce(&mut Config),
    ) -> Run {
        ensure_test_image(&docker().await).await;
        let agent = FakeAgent::start().await;
        let executor_id = unique("ex");
        let mut config = Config {
            framework_id: FrameworkId("fw-it".into()),
            executor_id: ExecutorId(executor_id.clone()),
            agent_endpoint: agent.endpoint.clone(),
            sandbox_directory: sandbox,
            checkpoint,
            shutdown_grace_period: Duration::from_secs(2),
            recovery_timeout: Duration::from_secs(20),
            subscription_backoff_max: Duration::from_millis(200),
            authentication_token: None,
            docker_host: DockerHost::default(),
            allow_privileged: false,
        };
        configure(&mut config);
        let handle = tokio::spawn(run(config, std::future::pending()));
        agent
            .wait_until(Duration::from_secs(10), |agent| {
                agent.subscribes().len() == 1
            })
            .await;
        Run {
            agent,
            executor_id,
            handle,
        }
    }

    /// Waits for the executor to exit, checks it left no container, and cleans up.
    pub(crate) async fn finish(self) -> Result<ExitReason, Error> {
        let result = tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("executor did not exit")
            .unwrap();
        let docker = docker().await;
        let left = docker
            .list_containers(true, &[format!("{LABEL_EXECUTOR_ID}={}", self.executor_id)])
            .await
            .unwrap();
        remove_labelled(&docker, LABEL_EXECUTOR_ID, &self.executor_id).await;
        assert!(left.is_empty(), "containers left behind: {left:?}");
        result
    }
}

pub(crate) fn spec(image: &str, args: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: image.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        labels: vec![v1::Label {
            key: TEST_LABEL.into(),
            value: Some("executor".into()),
        }],
        ..Default::default()
    }
}

pub(crate) fn launch(task_id: &str, spec: Option<&ContainerSpec>) -> Event {
    Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(event::Launch {
            task: v1::TaskInfo {
                name: task_id.into(),
                task_id: v1::TaskId {
                    value: task_id.into(),
                },
                data: spec.map(|s| Bytes::from(s.encode_to_vec())),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

pub(crate) fn kill(task_id: &str, grace: Duration) -> Event {
    Event {
        r#type: Some(event::Type::Kill as i32),
        kill: Some(event::Kill {
            task_id: v1::TaskId {
                value: task_id.into(),
            },
            kill_policy: Some(KillPolicy {
                grace_period: Some(DurationInfo {
                    nanoseconds: grace.as_nanos() as i64,
                }),
            }),
        }),
        ..Default::default()
    }
}

pub(crate) fn shutdown() -> Event {
    Event {
        r#type: Some(event::Type::Shutdown as i32),
        ..Default::default()
    }
}

#[tokio::test]
async fn finished_task_reports_starting_running_finished_and_exits() {
    let run = Run::start(false).await;
    // The first UPDATE calls are refused as during agent recovery; they are retried.
    run.agent.refuse_next_updates(2);
    let task = unique("task");
    run.agent.send(launch(
        &task,
        Some(&spec(TEST_IMAGE, &["sh", "-c", "exit 0"])),
    ));
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);

    assert_eq!(agent.n_refused(), 2);
    assert_eq!(
        agent.states(),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    let updates = agent.updates();
    let finished = &updates[2];
    assert_eq!(finished.task_id.value, task);
    assert_eq!(
        finished.message.as_deref(),
        Some("container exited with code 0")
    );
    assert!(updates
        .iter()
        .all(|u| u.executor_id.is_some() && u.timestamp.is_some()));
    let running = updates[1].message.as_deref().unwrap();
    assert!(running.contains(&container_name(&task)), "{running}");
}

#[tokio::test]
async fn failing_container_reports_its_exit_code() {
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent.send(launch(
        &task,
        Some(&spec(TEST_IMAGE, &["sh", "-c", "exit 3"])),
    ));
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    let failed = agent.updates().pop().unwrap();
    assert_eq!(failed.state, TaskState::TaskFailed as i32);
    assert_eq!(
        failed.message.as_deref(),
        Some("container exited with code 3")
    );
}

#[tokio::test]
async fn missing_image_is_pulled_from_its_registry() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let registry = Registry::start().await;
    let image = registry
        .push(&docker, TEST_IMAGE, "mesos-stateful-it/launched")
        .await;
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent
        .send(launch(&task, Some(&spec(&image, &["sh", "-c", "exit 0"]))));
    let agent = run.agent.clone();
    let result = run.finish().await;
    let _ = docker.remove_image(&image, true).await;
    assert_eq!(result.unwrap(), ExitReason::TasksFinished);
    assert_eq!(
        agent.states(),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
}

#[tokio::test]
async fn unknown_image_fails_the_task_with_the_registry_message() {
    let registry = Registry::start().await;
    let image = format!("{}/mesos-stateful-it/absent:1", registry.address);
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent
        .send(launch(&task, Some(&spec(&image, &["true"]))));
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    assert_eq!(
        agent.states(),
        [TaskState::TaskStarting, TaskState::TaskFailed]
    );
    let failed = &agent.updates()[1];
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.starts_with(&format!(
            "cannot pull image {image}: docker image pull of {image} failed: "
        )) && message.contains("manifest unknown"),
        "{message}"
    );
    assert_eq!(
        failed.reason,
        Some(v1::task_status::Reason::ContainerLaunchFailed as i32)
    );
}

#[tokio::test]
async fn container_logs_are_saved_in_the_sandbox() {
    let sandbox = tempfile::tempdir().unwrap();
    let run = Run::start_in(false, Some(sandbox.path().to_owned())).await;
    let task = unique("task");
    run.agent.send(launch(
        &task,
        Some(&spec(
            TEST_IMAGE,
            &["sh", "-c", "echo hello; echo oops >&2; exit 2"],
        )),
    ));
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    assert_eq!(agent.states().last(), Some(&TaskState::TaskFailed));
    let read = |name: &str| std::fs::read_to_string(sandbox.path().join(name)).unwrap();
    assert_eq!(read("container.stdout"), "hello\n");
    assert_eq!(read("container.stderr"), "oops\n");
}

#[tokio::test]
async fn killed_task_logs_are_saved_in_the_sandbox() {
    let sandbox = tempfile::tempdir().unwrap();
    let run = Run::start_in(false, Some(sandbox.path().to_owned())).await;
    let task = unique("task");
    run.agent.send(launch(
        &task,
        Some(&spec(
            TEST_IMAGE,
            &["sh", "-c", "echo started; exec sleep 30"],
        )),
    ));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    run.agent.send(kill(&task, Duration::ZERO));
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    assert_eq!(agent.states().last(), Some(&TaskState::TaskKilled));
    let stdout = std::fs::read_to_string(sandbox.path().join("container.stdout")).unwrap();
    assert_eq!(stdout, "started\n");
}

#[tokio::test]
async fn stopped_container_of_the_task_is_replaced() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let run = Run::start(false).await;
    let task = unique("task");
    // A container an earlier executor left behind for the same task, exited.
    let stale = docker
        .create_container(
            &unique("mesos-stateful-it-stale"),
            &CreateContainer {
                image: TEST_IMAGE.into(),
                cmd: Some(vec!["true".into()]),
                labels: BTreeMap::from([
                    (LABEL_TASK_ID.to_string(), task.clone()),
                    (LABEL_FRAMEWORK_ID.to_string(), "fw-it".to_string()),
                    (LABEL_EXECUTOR_ID.to_string(), run.executor_id.clone()),
                    (TEST_LABEL.to_string(), "executor".to_string()),
                ]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker.start_container(&stale.id).await.unwrap();
    docker
        .wait_container(&stale.id, WaitCondition::NotRunning)
        .await
        .unwrap();

    run.agent
        .send(launch(&task, Some(&spec(TEST_IMAGE, &["sleep", "30"]))));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    let running = docker
        .list_containers(true, &[format!("{LABEL_TASK_ID}={task}")])
        .await
        .unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_ne!(running[0].id, stale.id);
    assert_eq!(running[0].state, "running");
    run.agent.send(kill(&task, Duration::ZERO));
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}

/// Starts the executor binary against `agent` as executor `executor_id`.
fn spawn_executor(agent: &FakeAgent, executor_id: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mesos-stateful-executor"))
        .env_clear()
        .env("MESOS_FRAMEWORK_ID", "fw-it")
        .env("MESOS_EXECUTOR_ID", executor_id)
        .env("MESOS_SLAVE_PID", format!("slave(1)@{}", agent.endpoint))
        .env("MESOS_CHECKPOINT", "1")
        .env("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "2secs")
        .env("RUST_LOG", "debug")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn restarted_executor_adopts_the_running_container() {
    let docker = docker().await;
    ensure_test_image(&docker).await;
    let agent = FakeAgent::start().await;
    let executor_id = unique("ex");
    let task = unique("task");
    let task_filter = [format!("{LABEL_TASK_ID}={task}")];

    let mut first = spawn_executor(&agent, &executor_id);
    agent
        .wait_until(Duration::from_secs(10), |agent| {
            agent.subscribes().len() == 1
        })
        .await;
    agent.send(launch(&task, Some(&spec(TEST_IMAGE, &["sleep", "60"]))));
    agent.wait_for_state(TaskState::TaskRunning).await;
    let before = docker.list_containers(true, &task_filter).await.unwrap();
    // SIGKILL: the executor gets no chance to stop its container.
    first.kill().await.unwrap();

    let mut second = spawn_executor(&agent, &executor_id);
    agent
        .wait_until(Duration::from_secs(10), |agent| {
            agent.subscribes().len() == 2
        })
        .await;
    // The agent hands the task to the new executor again.
    agent.send(launch(&task, Some(&spec(TEST_IMAGE, &["sleep", "60"]))));
    agent
        .wait_until(Duration::from_secs(30), |agent| {
            agent
                .states()
                .iter()
                .filter(|state| **state == TaskState::TaskRunning)
                .count()
                == 2
        })
        .await;
    let after = docker.list_containers(true, &task_filter).await.unwrap();
    agent.send(kill(&task, Duration::ZERO));
    let status = tokio::time::timeout(Duration::from_secs(30), second.wait())
        .await
        .expect("executor did not exit")
        .unwrap();
    let left = docker.list_containers(true, &task_filter).await.unwrap();
    remove_labelled(&docker, LABEL_EXECUTOR_ID, &executor_id).await;

    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(after[0].state, "running");
    let adopted = agent
        .updates()
        .into_iter()
        .rev()
        .find(|u| u.state == TaskState::TaskRunning as i32)
        .unwrap();
    assert!(
        adopted
            .message
            .as_deref()
            .is_some_and(|m| m.ends_with("(adopted)")),
        "{adopted:?}"
    );
    assert_eq!(status.code(), Some(0));
    assert_eq!(agent.states().last(), Some(&TaskState::TaskKilled));
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn task_without_container_spec_fails() {
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent.send(launch(&task, None));
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    assert_eq!(agent.states(), [TaskState::TaskFailed]);
    assert_eq!(
        agent.updates()[0].message,
        Some(format!("task {task} carries no container spec in its data"))
    );
}

#[tokio::test]
async fn kill_stops_the_container_and_reports_killed() {
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent
        .send(launch(&task, Some(&spec(TEST_IMAGE, &["sleep", "30"]))));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    let started = std::time::Instant::now();
    run.agent.send(kill(&task, Duration::from_secs(1)));
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        agent.states(),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskKilled
        ]
    );
}

#[tokio::test]
async fn shutdown_kills_tasks_and_exits() {
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent
        .send(launch(&task, Some(&spec(TEST_IMAGE, &["sleep", "30"]))));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    run.agent.send(shutdown());
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::Shutdown);
    assert_eq!(agent.states().last(), Some(&TaskState::TaskKilled));
}

#[tokio::test]
async fn lost_agent_without_checkpoint_stops_tasks_and_exits() {
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent
        .send(launch(&task, Some(&spec(TEST_IMAGE, &["sleep", "30"]))));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    run.agent.close_stream();
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::AgentDisconnected);
    // No second subscription was attempted.
    assert_eq!(agent.subscribes().len(), 1);
}

#[tokio::test]
async fn resubscription_carries_unacknowledged_updates_and_tasks() {
    let run = Run::start(true).await;
    run.agent.set_acknowledge(false);
    let task = unique("task");
    run.agent
        .send(launch(&task, Some(&spec(TEST_IMAGE, &["sleep", "30"]))));
    // Without acknowledgements only STARTING goes out: RUNNING waits behind it.
    run.agent.wait_for_state(TaskState::TaskStarting).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(run.agent.states(), [TaskState::TaskStarting]);

    // The agent "restarts": the executor re-subscribes with what is pending.
    run.agent.close_stream();
    run.agent
        .wait_until(Duration::from_secs(10), |agent| {
            agent.subscribes().len() == 2
        })
        .await;
    let resubscribe = run.agent.subscribes().pop().unwrap();
    let tasks: Vec<String> = resubscribe
        .unacknowledged_tasks
        .iter()
        .map(|t| t.task_id.value.clone())
        .collect();
    assert_eq!(tasks, std::slice::from_ref(&task));
    let pending: Vec<i32> = resubscribe
        .unacknowledged_updates
        .iter()
        .map(|u| u.status.state)
        .collect();
    assert_eq!(
        pending,
        [
            TaskState::TaskStarting as i32,
            TaskState::TaskRunning as i32
        ]
    );

    // Acknowledge what the re-subscription carried; then kill and finish normally.
    run.agent.set_acknowledge(true);
    for update in &resubscribe.unacknowledged_updates {
        run.agent.send(acknowledged(&update.status));
    }
    run.agent.send(kill(&task, Duration::ZERO));
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
    assert_eq!(agent.states().last(), Some(&TaskState::TaskKilled));
}

#[tokio::test]
async fn binary_without_environment_exits_with_code_1() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesos-stateful-executor"))
        .env_clear()
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("environment variable MESOS_FRAMEWORK_ID is not set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn binary_runs_a_task_for_the_agent_and_exits_0() {
    ensure_test_image(&docker().await).await;
    let agent = FakeAgent::start().await;
    let executor_id = unique("ex");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesos-stateful-executor"))
        .env_clear()
        .env("MESOS_FRAMEWORK_ID", "fw-it")
        .env("MESOS_EXECUTOR_ID", &executor_id)
        .env("MESOS_SLAVE_PID", format!("slave(1)@{}", agent.endpoint))
        .env("MESOS_CHECKPOINT", "0")
        .env("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "2secs")
        .env("RUST_LOG", "debug")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    agent
        .wait_until(Duration::from_secs(10), |agent| {
            agent.subscribes().len() == 1
        })
        .await;
    let task = unique("task");
    agent.send(launch(&task, Some(&spec(TEST_IMAGE, &["echo", "hello"]))));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("executor did not exit")
        .unwrap();
    remove_labelled(&docker().await, LABEL_EXECUTOR_ID, &executor_id).await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(agent.states().last(), Some(&TaskState::TaskFinished));
}

/// The framework MESSAGE event carrying `data`.
fn framework_message(data: Bytes) -> Event {
    Event {
        r#type: Some(event::Type::Message as i32),
        message: Some(event::Message { data }),
        ..Default::default()
    }
}

/// The framework MESSAGE event asking to run `argv` in `task`'s container.
fn run_command(command_id: &str, task: &str, argv: &[&str]) -> Event {
    let message = SchedulerMessage {
        payload: Some(scheduler_message::Payload::RunCommand(RunCommand {
            command_id: command_id.into(),
            task_id: task.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout_seconds: Some(10.0),
        })),
    };
    framework_message(Bytes::from(message.encode_to_vec()))
}

pub(crate) fn stats_of(agent: &FakeAgent) -> Vec<TaskStats> {
    agent
        .messages()
        .into_iter()
        .filter_map(|message| match message.payload {
            Some(executor_message::Payload::Stats(stats)) => Some(stats),
            _ => None,
        })
        .collect()
}

fn results_of(agent: &FakeAgent) -> Vec<CommandResult> {
    agent
        .messages()
        .into_iter()
        .filter_map(|message| match message.payload {
            Some(executor_message::Payload::CommandResult(result)) => Some(result),
            _ => None,
        })
        .collect()
}

fn fact(key: &str, value: &str) -> v1::Label {
    v1::Label {
        key: key.into(),
        value: Some(value.into()),
    }
}

#[tokio::test]
async fn running_task_sends_stats_with_facts() {
    let run = Run::start(false).await;
    let task = unique("task");
    let mut spec = spec(TEST_IMAGE, &["sleep", "30"]);
    spec.stats_interval_seconds = Some(0.5);
    spec.facts_command = [
        "sh",
        "-c",
        "echo role:master; echo '# note'; echo connected_slaves:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run.agent.send(launch(&task, Some(&spec)));
    run.agent.wait_for_state(TaskState::TaskRunning).await;
    let started = std::time::Instant::now();
    run.agent
        .wait_until(Duration::from_secs(10), |agent| stats_of(agent).len() >= 2)
        .await;
    // Two samples half a second apart, each with its facts command, take well
    // under the wait above.
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = stats_of(&run.agent);
    for sample in &stats {
        assert_eq!(sample.task_id, task);
        assert_eq!(
            sample.facts,
            [fact("role", "master"), fact("connected_slaves", "1")]
        );
        assert!(sample.timestamp.unwrap() > 0.0);
        assert!(sample.memory_bytes.is_some());
    }
    assert_eq!(stats[0].cpu_percent, None);
    // The engine streams a sample per second: once a second one arrived, the stats
    // carry the cpu use between the two.
    run.agent
        .wait_until(Duration::from_secs(10), |agent| {
            stats_of(agent).iter().any(|s| s.cpu_percent.is_some())
        })
        .await;
    let stats = stats_of(&run.agent);
    let cpu = stats.iter().find_map(|s| s.cpu_percent).unwrap();
    assert!((0.0..=100.0 * 64.0).contains(&cpu), "{cpu}");
    // No health check, no failure count.
    assert!(stats.iter().all(|s| s.health_failures.is_none()));

    run.agent.send(kill(&task, Duration::ZERO));
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}

#[tokio::test]
async fn repeated_command_runs_once_and_every_copy_is_answered() {
    let run = Run::start(false).await;
    let task = unique("task");
    run.agent
        .send(launch(&task, Some(&spec(TEST_IMAGE, &["sleep", "30"]))));
    run.agent.wait_for_state(TaskState::TaskRunning).await;

    // Garbage and an empty message are ignored.
    run.agent
        .send(framework_message(Bytes::from_static(&[0x0a, 0xff, 0xff])));
    run.agent.send(framework_message(Bytes::new()));

    let argv = [
        "sh",
        "-c",
        "sleep 1; echo once >> /x; busybox cat /x; echo done >&2",
    ];
    run.agent.send(run_command("cmd-1", &task, &argv));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The first copy still runs: this one waits for it.
    run.agent.send(run_command("cmd-1", &task, &argv));
    run.agent
        .wait_until(Duration::from_secs(15), |agent| {
            results_of(agent).len() >= 2
        })
        .await;
    // A copy after the end is answered from the stored result.
    run.agent.send(run_command("cmd-1", &task, &argv));
    // A command for a task this executor does not run fails without running.
    run.agent
        .send(run_command("cmd-2", "no-such-task", &["true"]));
    run.agent
        .wait_until(Duration::from_secs(15), |agent| {
            results_of(agent).len() >= 4
        })
        .await;

    let results = results_of(&run.agent);
    let expected = CommandResult {
        command_id: "cmd-1".into(),
        task_id: task.clone(),
        exit_code: Some(0),
        stdout: Some("once\n".into()),
        stderr: Some("done\n".into()),
        error: None,
    };
    let (ours, others): (Vec<_>, Vec<_>) = results
        .into_iter()
        .partition(|result| result.command_id == "cmd-1");
    assert_eq!(ours, [expected.clone(), expected.clone(), expected]);
    assert_eq!(others.len(), 1);
    assert_eq!(
        others[0].error.as_deref(),
        Some("unknown task no-such-task (no running container)")
    );
    assert_eq!(others[0].exit_code, None);

    // The file in the container shows a single run.
    let docker = docker().await;
    let output = docker
        .exec(
            &container_name(&task),
            &["busybox".into(), "cat".into(), "/x".into()],
        )
        .await
        .unwrap();
    assert_eq!(output.stdout.as_ref(), b"once\n");

    run.agent.send(kill(&task, Duration::ZERO));
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);
}

#[tokio::test]
async fn failing_health_check_reports_unhealthy_and_fails_the_task() {
    let run = Run::start(false).await;
    let task = unique("task");
    let mut launched = launch(
        &task,
        Some(&spec(
            TEST_IMAGE,
            &["sh", "-c", "echo > /ok; exec sleep 60"],
        )),
    );
    if let Some(launch) = &mut launched.launch {
        launch.task.health_check = Some(v1::HealthCheck {
            r#type: Some(v1::health_check::Type::Command as i32),
            command: Some(v1::CommandInfo {
                value: Some("test -f /ok".into()),
                ..Default::default()
            }),
            delay_seconds: Some(0.0),
            interval_seconds: Some(0.3),
            timeout_seconds: Some(5.0),
            consecutive_failures: Some(3),
            grace_period_seconds: Some(20.0),
            ..Default::default()
        });
    }
    run.agent.send(launched);
    let healthy_with = |agent: &FakeAgent, healthy: bool| {
        agent.updates().iter().any(|status| {
            status.state == TaskState::TaskRunning as i32 && status.healthy == Some(healthy)
        })
    };
    run.agent
        .wait_until(Duration::from_secs(20), |agent| healthy_with(agent, true))
        .await;
    let docker = docker().await;
    docker
        .exec(
            &container_name(&task),
            &["busybox".into(), "rm".into(), "/ok".into()],
        )
        .await
        .unwrap();
    let agent = run.agent.clone();
    assert_eq!(run.finish().await.unwrap(), ExitReason::TasksFinished);

    let updates = agent.updates();
    let summary: Vec<(TaskState, Option<bool>)> = updates
        .iter()
        .map(|status| (TaskState::try_from(status.state).unwrap(), status.healthy))
        .collect();
    assert_eq!(
        summary,
        [
            (TaskState::TaskStarting, None),
            (TaskState::TaskRunning, None),
            (TaskState::TaskRunning, Some(true)),
            (TaskState::TaskRunning, Some(false)),
            (TaskState::TaskFailed, Some(false)),
        ]
    );
    let health_reason = Some(v1::task_status::Reason::TaskHealthCheckStatusUpdated as i32);
    assert_eq!(updates[2].reason, health_reason);
    assert_eq!(updates[2].message.as_deref(), Some("task is healthy"));
    assert_eq!(updates[3].reason, health_reason);
    assert_eq!(
        updates[3].message.as_deref(),
        Some("task is unhealthy: health check command exited with code 1")
    );
    assert_eq!(
        updates[4].message.as_deref(),
        Some("task unhealthy: 3 consecutive health check failures")
    );
}
