//! Command tasks (TaskInfo with `command` and no `executor`) run by the agent's
//! built-in command executor.

use std::time::{Duration, Instant};

use mesos_stateful_devcluster::DevCluster;
use mesos_stateful_proto::v1::{self, task_status, TaskId, TaskState};

use super::{config, find_file, framework_info, scalar, Scheduler, WAIT};

pub(crate) fn command_task(
    offer: &v1::Offer,
    task_id: &str,
    command: v1::CommandInfo,
) -> v1::TaskInfo {
    v1::TaskInfo {
        name: task_id.into(),
        task_id: TaskId {
            value: task_id.into(),
        },
        agent_id: offer.agent_id.clone(),
        resources: vec![scalar("cpus", 0.5), scalar("mem", 64.0)],
        command: Some(command),
        ..Default::default()
    }
}

pub(crate) fn shell(value: &str) -> v1::CommandInfo {
    v1::CommandInfo {
        value: Some(value.into()),
        ..Default::default()
    }
}

/// Receives and acknowledges the updates of a task until a terminal one; returns
/// them all and the FAILURE events seen meanwhile.
async fn follow_with_failures(
    scheduler: &mut Scheduler,
) -> (Vec<v1::TaskStatus>, Vec<v1::scheduler::event::Failure>) {
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    loop {
        let event = tokio::time::timeout(WAIT, scheduler.events.recv())
            .await
            .expect("no update in time")
            .expect("stream ended");
        if let Some(failure) = event.failure {
            failures.push(failure);
        }
        let Some(update) = event.update else {
            continue;
        };
        let status = update.status;
        assert_eq!(status.source(), task_status::Source::Executor);
        assert_eq!(
            status.executor_id.as_ref().map(|e| e.value.clone()),
            Some(status.task_id.value.clone()),
            "the command executor is named after its task"
        );
        scheduler.acknowledge(&status).await;
        let terminal = status.state().is_terminal();
        seen.push(status);
        if terminal {
            return (seen, failures);
        }
    }
}

/// [`follow_with_failures`] without the failures.
pub(crate) async fn follow(scheduler: &mut Scheduler) -> Vec<v1::TaskStatus> {
    follow_with_failures(scheduler).await.0
}

pub(crate) fn states(updates: &[v1::TaskStatus]) -> Vec<TaskState> {
    updates.iter().map(|s| s.state()).collect()
}

#[tokio::test]
async fn shell_command_task_runs_in_a_sandbox_with_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), framework_info(None)).await;
    let offer = scheduler.offer().await;
    let mut command = shell("echo \"$GREETING from $MESOS_SANDBOX\"; pwd >&2");
    command.environment = Some(v1::Environment {
        variables: vec![v1::environment::Variable {
            name: "GREETING".into(),
            value: Some("hello".into()),
            ..Default::default()
        }],
    });
    scheduler
        .launch(&offer, command_task(&offer, "echo", command))
        .await;
    let (updates, mut failures) = follow_with_failures(&mut scheduler).await;
    assert_eq!(
        states(&updates),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    let finished = updates.last().unwrap();
    assert_eq!(
        finished.message.as_deref(),
        Some("Command exited with status 0")
    );
    assert!(finished.uuid.is_some());

    let stdout = find_file(dir.path(), "stdout").await;
    let sandbox = stdout.parent().unwrap();
    assert!(sandbox.to_string_lossy().contains("/executors/echo/runs/"));
    let output = std::fs::read_to_string(&stdout).unwrap();
    assert_eq!(output.trim(), format!("hello from {}", sandbox.display()));
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).unwrap();
    assert_eq!(stderr.trim(), sandbox.display().to_string());

    // The command executor's end is reported as FAILURE, as Mesos does, in no
    // particular order with the held-back terminal update.
    if failures.is_empty() {
        let event = scheduler.expect(v1::scheduler::event::Type::Failure).await;
        failures.extend(event.failure);
    }
    let failure = failures.remove(0);
    assert_eq!(failure.executor_id.unwrap().value, "echo");
    assert_eq!(failure.status, Some(0));
    cluster.shutdown().await;
}

#[tokio::test]
async fn command_without_shell_fails_with_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), framework_info(None)).await;
    let offer = scheduler.offer().await;
    let command = v1::CommandInfo {
        shell: Some(false),
        value: Some("/bin/sh".into()),
        arguments: vec!["sh".into(), "-c".into(), "exit 4".into()],
        ..Default::default()
    };
    scheduler
        .launch(&offer, command_task(&offer, "exit-4", command))
        .await;
    let updates = follow(&mut scheduler).await;
    assert_eq!(
        states(&updates),
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFailed
        ]
    );
    assert_eq!(
        updates.last().unwrap().message.as_deref(),
        Some("Command exited with status 4")
    );

    // A missing program cannot start: TASK_FAILED from the agent.
    let offer = scheduler.offer().await;
    let command = v1::CommandInfo {
        shell: Some(false),
        value: Some("/nonexistent/program".into()),
        ..Default::default()
    };
    scheduler
        .launch(&offer, command_task(&offer, "missing", command))
        .await;
    let failed = scheduler.update().await;
    assert_eq!(failed.state(), TaskState::TaskFailed);
    assert_eq!(failed.source(), task_status::Source::Agent);
    assert_eq!(failed.reason(), task_status::Reason::ContainerLaunchFailed);
    scheduler.acknowledge(&failed).await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn killed_command_task_gets_sigkill_after_the_kill_policy_grace() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut info = framework_info(None);
    info.capabilities = vec![v1::framework_info::Capability {
        r#type: Some(v1::framework_info::capability::Type::TaskKillingState as i32),
    }];
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), info).await;
    let offer = scheduler.offer().await;
    // SIGTERM is ignored (by the shell and the sleep it starts), so only the
    // SIGKILL after the grace period ends the task.
    let mut task = command_task(&offer, "stubborn", shell("trap '' TERM; echo up; sleep 60"));
    task.kill_policy = Some(v1::KillPolicy {
        grace_period: Some(v1::DurationInfo {
            nanoseconds: 700_000_000,
        }),
    });
    scheduler.launch(&offer, task).await;
    for expected in [TaskState::TaskStarting, TaskState::TaskRunning] {
        let status = scheduler.update().await;
        assert_eq!(status.state(), expected);
        scheduler.acknowledge(&status).await;
    }
    find_file(dir.path(), "stdout").await;

    let started = Instant::now();
    let mut kill = scheduler.base(v1::scheduler::call::Type::Kill);
    kill.kill = Some(v1::scheduler::call::Kill {
        task_id: TaskId {
            value: "stubborn".into(),
        },
        agent_id: Some(offer.agent_id.clone()),
        kill_policy: None,
    });
    scheduler.call(kill).await;
    let updates = follow(&mut scheduler).await;
    assert_eq!(
        states(&updates),
        [TaskState::TaskKilling, TaskState::TaskKilled]
    );
    assert_eq!(
        updates.last().unwrap().message.as_deref(),
        Some("Command terminated with signal 9")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "SIGKILL came before the grace period: {:?}",
        started.elapsed()
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn cluster_shutdown_kills_running_command_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), framework_info(None)).await;
    let offer = scheduler.offer().await;
    scheduler
        .launch(
            &offer,
            command_task(&offer, "sleeper", shell("echo $$; exec sleep 60")),
        )
        .await;
    for expected in [TaskState::TaskStarting, TaskState::TaskRunning] {
        let status = scheduler.update().await;
        assert_eq!(status.state(), expected);
        scheduler.acknowledge(&status).await;
    }
    let stdout = find_file(dir.path(), "stdout").await;
    let pid = std::fs::read_to_string(stdout).unwrap().trim().to_string();
    let started = Instant::now();
    cluster.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the command's process {pid} survived the shutdown"
    );
}
