//! Tests of the cluster state machine, driven without HTTP or processes.

use std::time::{Duration, Instant};

use http::StatusCode;
use mesos_stateful_proto::v1::{
    self, scheduler, task_status, CommandInfo, ExecutorId, ExecutorInfo, FrameworkId,
    FrameworkInfo, TaskId, TaskInfo, TaskState,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::{AgentSetup, Cluster, Effect, Settings};
use crate::resources::{Ranges, ResourceSet};

fn cluster(now: Instant) -> Cluster {
    let settings = Settings {
        heartbeat_interval: Duration::from_secs(15),
        allocation_interval: Duration::from_secs(1),
        status_update_retry_interval: Duration::from_secs(10),
        executor_registration_timeout: Duration::from_secs(60),
        executor_shutdown_grace_period: Duration::from_secs(5),
        executor_reregistration_timeout: Duration::from_secs(2),
        work_dir: "/nonexistent/devcluster".into(),
    };
    let agent = AgentSetup {
        hostname: "127.0.0.1".into(),
        endpoint: "127.0.0.1:5051".parse().unwrap(),
        total: ResourceSet::new(2.0, 1024.0, 0.0, Ranges::new([(31000, 31001)])),
        attributes: Vec::new(),
    };
    Cluster::new(
        settings,
        "127.0.0.1:5050".parse().unwrap(),
        vec![agent],
        now,
    )
}

struct Subscriber {
    framework_id: FrameworkId,
    stream_id: String,
    events: UnboundedReceiver<scheduler::Event>,
}

impl Subscriber {
    fn drain(&mut self) -> Vec<scheduler::Event> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }

    fn offers(&mut self) -> Vec<v1::Offer> {
        self.drain()
            .into_iter()
            .filter_map(|e| e.offers)
            .flat_map(|o| o.offers)
            .collect()
    }

    fn updates(&mut self) -> Vec<v1::TaskStatus> {
        self.drain()
            .into_iter()
            .filter_map(|e| e.update)
            .map(|u| u.status)
            .collect()
    }
}

fn subscribe(cluster: &mut Cluster, failover_timeout: f64) -> Subscriber {
    let (sender, events) = unbounded_channel();
    let info = FrameworkInfo {
        user: "u".into(),
        name: "n".into(),
        failover_timeout: Some(failover_timeout),
        ..Default::default()
    };
    let subscribe = scheduler::call::Subscribe {
        framework_info: info,
        ..Default::default()
    };
    let framework_id = cluster
        .subscribe(subscribe, "stream".into(), sender)
        .unwrap();
    let mut subscriber = Subscriber {
        framework_id,
        stream_id: "stream".into(),
        events,
    };
    let types: Vec<_> = subscriber.drain().iter().map(|e| e.r#type()).collect();
    assert_eq!(
        types,
        [
            scheduler::event::Type::Subscribed,
            scheduler::event::Type::Heartbeat
        ]
    );
    subscriber
}

fn scalar(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    }
}

fn executor_info(id: &str, command: &str) -> ExecutorInfo {
    ExecutorInfo {
        executor_id: ExecutorId { value: id.into() },
        command: Some(CommandInfo {
            value: Some(command.into()),
            ..Default::default()
        }),
        resources: vec![scalar("cpus", 0.1), scalar("mem", 32.0)],
        ..Default::default()
    }
}

fn task(offer: &v1::Offer, id: &str, cpus: f64, executor: Option<ExecutorInfo>) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId { value: id.into() },
        agent_id: offer.agent_id.clone(),
        resources: vec![scalar("cpus", cpus), scalar("mem", 64.0)],
        executor,
        ..Default::default()
    }
}

fn accept(
    cluster: &mut Cluster,
    subscriber: &Subscriber,
    offer: &v1::Offer,
    tasks: Vec<TaskInfo>,
    now: Instant,
) -> Vec<Effect> {
    let call = scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Accept as i32),
        accept: Some(scheduler::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::offer::Operation {
                r#type: Some(v1::offer::operation::Type::Launch as i32),
                launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                ..Default::default()
            }],
            filters: Some(v1::Filters {
                refuse_seconds: Some(0.0),
            }),
        }),
        ..Default::default()
    };
    cluster.scheduler_call(call, now).unwrap()
}

fn cpus_of(offer: &v1::Offer) -> f64 {
    offer
        .resources
        .iter()
        .find(|r| r.name == "cpus")
        .and_then(|r| r.scalar)
        .map(|s| s.value)
        .unwrap_or(0.0)
}

#[test]
fn offers_hold_the_free_resources_once() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    cluster.tick(now);
    let offers = subscriber.offers();
    assert_eq!(offers.len(), 1);
    assert_eq!(cpus_of(&offers[0]), 2.0);
    assert_eq!(offers[0].agent_id, cluster.agent_ids()[0]);
    cluster.tick(now + Duration::from_secs(2));
    assert!(
        subscriber.offers().is_empty(),
        "everything is already offered"
    );

    let effects = accept(
        &mut cluster,
        &subscriber,
        &offers[0],
        vec![task(&offers[0], "t", 0.5, Some(executor_info("e", "run")))],
        now,
    );
    assert!(matches!(effects.as_slice(), [Effect::SpawnExecutor(_)]));
    cluster.tick(now + Duration::from_secs(4));
    let offers = subscriber.offers();
    assert_eq!(offers.len(), 1);
    assert!(
        (cpus_of(&offers[0]) - 1.4).abs() < 1e-9,
        "2 - 0.5 task - 0.1 executor"
    );
    assert_eq!(
        offers[0].executor_ids,
        vec![ExecutorId { value: "e".into() }]
    );
}

#[test]
fn launch_validation() {
    struct Case {
        name: &'static str,
        build: fn(&v1::Offer) -> Vec<TaskInfo>,
        expected: &'static [TaskState],
    }
    let cases = [
        Case {
            name: "valid",
            build: |o| vec![task(o, "a", 1.0, Some(executor_info("e", "x")))],
            expected: &[],
        },
        Case {
            name: "too many cpus",
            build: |o| vec![task(o, "a", 3.0, Some(executor_info("e", "x")))],
            expected: &[TaskState::TaskError],
        },
        Case {
            name: "second task no longer fits",
            build: |o| {
                vec![
                    task(o, "a", 1.5, Some(executor_info("e", "x"))),
                    task(o, "b", 1.0, Some(executor_info("e", "x"))),
                ]
            },
            expected: &[TaskState::TaskError],
        },
        Case {
            name: "same executor, different info",
            build: |o| {
                vec![
                    task(o, "a", 0.5, Some(executor_info("e", "x"))),
                    task(o, "b", 0.5, Some(executor_info("e", "y"))),
                ]
            },
            expected: &[TaskState::TaskError],
        },
        Case {
            name: "no executor nor command",
            build: |o| vec![task(o, "a", 0.5, None)],
            expected: &[TaskState::TaskError],
        },
        Case {
            name: "both executor and command",
            build: |o| {
                let mut t = task(o, "a", 0.5, Some(executor_info("e", "x")));
                t.command = Some(CommandInfo::default());
                vec![t]
            },
            expected: &[TaskState::TaskError],
        },
        Case {
            name: "duplicate task id",
            build: |o| {
                vec![
                    task(o, "a", 0.5, Some(executor_info("e", "x"))),
                    task(o, "a", 0.5, Some(executor_info("e", "x"))),
                ]
            },
            expected: &[TaskState::TaskError],
        },
    ];
    for case in cases {
        let now = Instant::now();
        let mut cluster = cluster(now);
        let mut subscriber = subscribe(&mut cluster, 0.0);
        cluster.tick(now);
        let offer = subscriber.offers().remove(0);
        accept(&mut cluster, &subscriber, &offer, (case.build)(&offer), now);
        let states: Vec<TaskState> = subscriber.updates().iter().map(|s| s.state()).collect();
        assert_eq!(states, case.expected, "{}", case.name);
    }
}

#[test]
fn disconnect_without_failover_timeout_removes_the_framework() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    cluster.tick(now);
    let offer = subscriber.offers().remove(0);
    let effects = accept(
        &mut cluster,
        &subscriber,
        &offer,
        vec![task(&offer, "t", 0.5, Some(executor_info("e", "x")))],
        now,
    );
    let Some(Effect::SpawnExecutor(request)) = effects.into_iter().next() else {
        panic!("no spawn");
    };
    assert!(cluster
        .executor_spawned(0, &request.container_id, 4242, now)
        .is_empty());

    let effects = cluster.stream_closed(&subscriber.framework_id, &subscriber.stream_id, now);
    assert!(
        matches!(effects.as_slice(), [Effect::KillExecutor { pid: 4242, grace, terminate: false, .. }] if grace.is_zero()),
        "{effects:?}"
    );
    let rejection = cluster
        .authorize_call(&subscriber.framework_id, Some("stream"))
        .unwrap_err();
    assert_eq!(rejection.status, StatusCode::BAD_REQUEST);
}

#[test]
fn disconnect_with_failover_timeout_keeps_the_framework_until_it_passes() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let subscriber = subscribe(&mut cluster, 10.0);
    assert!(cluster
        .stream_closed(&subscriber.framework_id, &subscriber.stream_id, now)
        .is_empty());
    let rejection = cluster
        .authorize_call(&subscriber.framework_id, Some("stream"))
        .unwrap_err();
    assert_eq!(rejection.status, StatusCode::FORBIDDEN);
    cluster.tick(now + Duration::from_secs(5));
    assert_eq!(
        cluster
            .authorize_call(&subscriber.framework_id, Some("stream"))
            .unwrap_err()
            .status,
        StatusCode::FORBIDDEN
    );
    cluster.tick(now + Duration::from_secs(11));
    assert_eq!(
        cluster
            .authorize_call(&subscriber.framework_id, Some("stream"))
            .unwrap_err()
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn executor_exit_fails_its_tasks_one_update_at_a_time() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    cluster.tick(now);
    let offer = subscriber.offers().remove(0);
    let tasks = vec![
        task(&offer, "a", 0.5, Some(executor_info("e", "x"))),
        task(&offer, "b", 0.5, Some(executor_info("e", "x"))),
    ];
    let effects = accept(&mut cluster, &subscriber, &offer, tasks, now);
    let Some(Effect::SpawnExecutor(request)) = effects.into_iter().next() else {
        panic!("no spawn");
    };
    cluster.executor_spawned(0, &request.container_id, 7, now);
    cluster.executor_exited(0, &request.container_id, 256, now);
    let events = subscriber.drain();
    let updates: Vec<_> = events
        .iter()
        .filter_map(|e| e.update.as_ref())
        .map(|u| &u.status)
        .collect();
    assert_eq!(updates.len(), 2, "one stream per task");
    for status in &updates {
        assert_eq!(status.state(), TaskState::TaskFailed);
        assert_eq!(status.reason(), task_status::Reason::ExecutorTerminated);
        assert_eq!(status.source(), task_status::Source::Agent);
        assert_eq!(status.uuid.as_ref().map(|u| u.len()), Some(16));
    }
    let failure = events.iter().find_map(|e| e.failure.as_ref()).unwrap();
    assert_eq!(failure.status, Some(256));
    // Terminal states free the resources (the executor's too).
    cluster.tick(now + Duration::from_secs(2));
    let offers = subscriber.offers();
    assert_eq!(cpus_of(&offers[0]), 2.0);
}

fn command_task(offer: &v1::Offer, id: &str, cpus: f64, command: Option<&str>) -> TaskInfo {
    let mut task = task(offer, id, cpus, None);
    task.command = Some(CommandInfo {
        value: command.map(str::to_string),
        environment: Some(v1::Environment {
            variables: vec![v1::environment::Variable {
                name: "GREETING".into(),
                value: Some("hello".into()),
                ..Default::default()
            }],
        }),
        ..Default::default()
    });
    task
}

fn acknowledge(cluster: &mut Cluster, subscriber: &Subscriber, status: &v1::TaskStatus) {
    let call = scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Acknowledge as i32),
        acknowledge: Some(scheduler::call::Acknowledge {
            agent_id: status.agent_id.clone().unwrap(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone().unwrap(),
        }),
        ..Default::default()
    };
    cluster.scheduler_call(call, Instant::now()).unwrap();
}

/// Acknowledges every update as it arrives and returns the states seen.
fn acknowledge_all(cluster: &mut Cluster, subscriber: &mut Subscriber) -> Vec<TaskState> {
    let mut states = Vec::new();
    loop {
        let updates = subscriber.updates();
        if updates.is_empty() {
            return states;
        }
        for status in updates {
            assert_eq!(status.source(), task_status::Source::Executor);
            assert_eq!(
                status.executor_id.as_ref().map(|e| e.value.as_str()),
                Some(status.task_id.value.as_str())
            );
            states.push(status.state());
            acknowledge(cluster, subscriber, &status);
        }
    }
}

#[test]
fn command_task_validation() {
    struct Case {
        name: &'static str,
        build: fn(&v1::Offer) -> Vec<TaskInfo>,
        expected: &'static [TaskState],
    }
    let cases = [
        Case {
            name: "valid",
            build: |o| vec![command_task(o, "a", 2.0, Some("true"))],
            expected: &[],
        },
        Case {
            name: "no command value",
            build: |o| vec![command_task(o, "a", 0.5, None)],
            expected: &[TaskState::TaskError],
        },
        Case {
            name: "more than offered",
            build: |o| vec![command_task(o, "a", 2.5, Some("true"))],
            expected: &[TaskState::TaskError],
        },
        Case {
            name: "task ID taken by an executor",
            build: |o| {
                vec![
                    task(o, "a", 0.5, Some(executor_info("b", "x"))),
                    command_task(o, "b", 0.5, Some("true")),
                ]
            },
            expected: &[TaskState::TaskError],
        },
    ];
    for case in cases {
        let now = Instant::now();
        let mut cluster = cluster(now);
        let mut subscriber = subscribe(&mut cluster, 0.0);
        cluster.tick(now);
        let offer = subscriber.offers().remove(0);
        accept(&mut cluster, &subscriber, &offer, (case.build)(&offer), now);
        let states: Vec<TaskState> = subscriber.updates().iter().map(|s| s.state()).collect();
        assert_eq!(states, case.expected, "{}", case.name);
    }
}

/// Launches one command task and returns its spawn request.
fn launch_command(
    cluster: &mut Cluster,
    subscriber: &mut Subscriber,
    task_id: &str,
    now: Instant,
) -> crate::process::SpawnRequest {
    cluster.tick(now);
    let offer = subscriber.offers().remove(0);
    let tasks = vec![command_task(&offer, task_id, 0.5, Some("echo $GREETING"))];
    let effects = accept(cluster, subscriber, &offer, tasks, now);
    let Some(Effect::SpawnExecutor(request)) = effects.into_iter().next() else {
        panic!("no spawn");
    };
    *request
}

#[test]
fn command_task_runs_as_its_own_executor() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    let request = launch_command(&mut cluster, &mut subscriber, "t", now);
    assert_eq!(request.executor_id.value, "t");
    assert_eq!(request.command.value.as_deref(), Some("echo $GREETING"));
    assert!(request
        .environment
        .contains(&("GREETING".to_string(), "hello".to_string())));
    assert!(request
        .environment
        .contains(&("MESOS_EXECUTOR_ID".to_string(), "t".to_string())));
    assert!(request
        .sandbox
        .ends_with(format!("executors/t/runs/{}", request.container_id)));

    // Only the task's own resources are used: no executor overhead.
    cluster.tick(now + Duration::from_secs(2));
    let offers = subscriber.offers();
    assert!((cpus_of(&offers[0]) - 1.5).abs() < 1e-9);
    assert!(offers[0]
        .executor_ids
        .contains(&ExecutorId { value: "t".into() }));
    accept(&mut cluster, &subscriber, &offers[0], Vec::new(), now);

    assert!(cluster
        .executor_spawned(0, &request.container_id, 99, now)
        .is_empty());
    let first = subscriber.updates();
    assert_eq!(
        first.len(),
        1,
        "RUNNING waits for STARTING's acknowledgement"
    );
    assert_eq!(first[0].state(), TaskState::TaskStarting);
    assert_eq!(first[0].uuid.as_ref().map(|u| u.len()), Some(16));
    acknowledge(&mut cluster, &subscriber, &first[0]);
    assert_eq!(
        acknowledge_all(&mut cluster, &mut subscriber),
        [TaskState::TaskRunning]
    );

    cluster.executor_exited(0, &request.container_id, 0, now);
    let events = subscriber.drain();
    let finished = events
        .iter()
        .find_map(|e| e.update.as_ref())
        .map(|u| u.status.clone())
        .unwrap();
    assert_eq!(finished.state(), TaskState::TaskFinished);
    assert_eq!(
        finished.message.as_deref(),
        Some("Command exited with status 0")
    );
    let failure = events.iter().find_map(|e| e.failure.as_ref()).unwrap();
    assert_eq!(failure.executor_id, Some(ExecutorId { value: "t".into() }));
    assert_eq!(failure.status, Some(0));
    acknowledge(&mut cluster, &subscriber, &finished);
    assert!(!cluster.has_executors());
    cluster.tick(now + Duration::from_secs(4));
    assert_eq!(cpus_of(&subscriber.offers()[0]), 2.0);
}

#[test]
fn command_task_exit_status_decides_its_state() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    let request = launch_command(&mut cluster, &mut subscriber, "t", now);
    cluster.executor_spawned(0, &request.container_id, 99, now);
    cluster.executor_exited(0, &request.container_id, 2 << 8, now);
    let states = acknowledge_all(&mut cluster, &mut subscriber);
    assert_eq!(
        states,
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFailed
        ]
    );
}

#[test]
fn killing_a_command_task_signals_it_with_the_kill_policy_grace() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    let request = launch_command(&mut cluster, &mut subscriber, "t", now);
    cluster.executor_spawned(0, &request.container_id, 99, now);
    acknowledge_all(&mut cluster, &mut subscriber);

    let kill = |policy: Option<v1::KillPolicy>| scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Kill as i32),
        kill: Some(scheduler::call::Kill {
            task_id: TaskId { value: "t".into() },
            agent_id: None,
            kill_policy: policy,
        }),
        ..Default::default()
    };
    let policy = v1::KillPolicy {
        grace_period: Some(v1::DurationInfo {
            nanoseconds: 1_500_000_000,
        }),
    };
    let effects = cluster.scheduler_call(kill(Some(policy)), now).unwrap();
    assert!(
        matches!(effects.as_slice(), [Effect::KillExecutor { pid: 99, grace, terminate: true, .. }] if *grace == Duration::from_millis(1500)),
        "{effects:?}"
    );
    // A second KILL does not signal again.
    assert!(cluster.scheduler_call(kill(None), now).unwrap().is_empty());
    // The framework lacks TASK_KILLING_STATE, so the next update is TASK_KILLED.
    cluster.executor_exited(0, &request.container_id, 15, now);
    assert_eq!(
        acknowledge_all(&mut cluster, &mut subscriber),
        [TaskState::TaskKilled]
    );
}

#[test]
fn killing_a_command_task_before_it_starts_kills_at_once() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    let request = launch_command(&mut cluster, &mut subscriber, "t", now);
    let call = scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Kill as i32),
        kill: Some(scheduler::call::Kill {
            task_id: TaskId { value: "t".into() },
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(cluster.scheduler_call(call, now).unwrap().is_empty());
    let effects = cluster.executor_spawned(0, &request.container_id, 99, now);
    assert!(
        matches!(effects.as_slice(), [Effect::KillExecutor { grace, .. }] if grace.is_zero()),
        "{effects:?}"
    );
    assert!(
        subscriber.updates().is_empty(),
        "no STARTING for a killed task"
    );
    cluster.executor_exited(0, &request.container_id, 9, now);
    assert_eq!(
        acknowledge_all(&mut cluster, &mut subscriber),
        [TaskState::TaskKilled]
    );
}

#[test]
fn subscribed_executors_get_shutdown_then_sigkill_without_sigterm() {
    let now = Instant::now();
    let mut cluster = cluster(now);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    cluster.tick(now);
    let offer = subscriber.offers().remove(0);
    let effects = accept(
        &mut cluster,
        &subscriber,
        &offer,
        vec![task(&offer, "t", 0.5, Some(executor_info("e", "x")))],
        now,
    );
    let Some(Effect::SpawnExecutor(request)) = effects.into_iter().next() else {
        panic!("no spawn");
    };
    cluster.executor_spawned(0, &request.container_id, 4242, now);
    let (sender, mut events) = unbounded_channel();
    let call = v1::executor::Call {
        executor_id: ExecutorId { value: "e".into() },
        framework_id: subscriber.framework_id.clone(),
        r#type: Some(v1::executor::call::Type::Subscribe as i32),
        subscribe: Some(v1::executor::call::Subscribe::default()),
        ..Default::default()
    };
    let connection = super::ExecutorConnection { id: 1, sender };
    cluster
        .executor_subscribe(0, call, connection, now)
        .unwrap();

    let teardown = scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Teardown as i32),
        ..Default::default()
    };
    let effects = cluster.scheduler_call(teardown, now).unwrap();
    assert!(
        matches!(effects.as_slice(), [Effect::KillExecutor { pid: 4242, grace, terminate: false, .. }] if *grace == Duration::from_secs(5)),
        "{effects:?}"
    );
    let mut types = Vec::new();
    while let Ok(event) = events.try_recv() {
        types.push(event.r#type());
    }
    assert_eq!(types.last(), Some(&v1::executor::event::Type::Shutdown));
}
