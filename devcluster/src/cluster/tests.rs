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
        agent_removal_timeout: Duration::from_secs(75),
        simulated_task_delay: Duration::from_millis(100),
        work_dir: "/nonexistent/devcluster".into(),
    };
    let agent = AgentSetup {
        hostname: "127.0.0.1".into(),
        endpoint: "127.0.0.1:5051".parse().unwrap(),
        total: ResourceSet::new(2.0, 1024.0, 0.0, Ranges::new([(31000, 31001)])),
        attributes: Vec::new(),
        simulated: false,
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

/// A cluster of `count` simulated agents (2 cpus, 1 GB, ports 31000-31001 each)
/// whose tasks run 100 ms after they start.
fn simulated_cluster(now: Instant, count: usize) -> Cluster {
    let mut cluster = cluster(now);
    let settings = cluster.settings.clone();
    let agents = (0..count)
        .map(|n| AgentSetup {
            hostname: format!("simulated-{n}"),
            endpoint: "127.0.0.1:0".parse().unwrap(),
            total: ResourceSet::new(2.0, 1024.0, 0.0, Ranges::new([(31000, 31001)])),
            attributes: Vec::new(),
            simulated: true,
        })
        .collect();
    cluster = Cluster::new(settings, "127.0.0.1:5050".parse().unwrap(), agents, now);
    cluster
}

fn kill(cluster: &mut Cluster, subscriber: &Subscriber, task_id: &str) {
    let call = scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Kill as i32),
        kill: Some(scheduler::call::Kill {
            task_id: TaskId {
                value: task_id.into(),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    cluster.scheduler_call(call, Instant::now()).unwrap();
}

#[test]
fn simulated_task_starts_then_runs_after_the_delay_each_update_acknowledged() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 1);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    cluster.tick(now);
    let offer = subscriber.offers().remove(0);
    assert_eq!(offer.hostname, "simulated-0");
    assert!(offer.url.is_none(), "a simulated agent has no endpoint");
    let effects = accept(
        &mut cluster,
        &subscriber,
        &offer,
        vec![command_task(&offer, "t", 0.5, Some("sleep 1000"))],
        now,
    );
    assert!(effects.is_empty(), "no process is started");

    let starting = subscriber.updates();
    assert_eq!(starting.len(), 1);
    assert_eq!(starting[0].state(), TaskState::TaskStarting);
    assert_eq!(starting[0].source(), task_status::Source::Executor);
    assert!(starting[0].uuid.as_ref().is_some_and(|u| u.len() == 16));
    assert_eq!(starting[0].agent_id.as_ref(), Some(&offer.agent_id));

    // Before the delay nothing happens; after it, TASK_RUNNING waits behind the
    // unacknowledged TASK_STARTING.
    cluster.tick(now + Duration::from_millis(50));
    assert!(subscriber.updates().is_empty());
    cluster.tick(now + Duration::from_millis(150));
    assert!(subscriber.updates().is_empty(), "held until acknowledged");
    acknowledge(&mut cluster, &subscriber, &starting[0]);
    let running = subscriber.updates();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].state(), TaskState::TaskRunning);
    assert_ne!(running[0].uuid, starting[0].uuid);

    // Unacknowledged, TASK_RUNNING is resent after the retry interval.
    cluster.tick(now + Duration::from_secs(11));
    let resent = subscriber.updates();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].uuid, running[0].uuid);
}

#[test]
fn killed_simulated_task_ends_killed_and_frees_its_resources() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 1);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    cluster.tick(now);
    let offer = subscriber.offers().remove(0);
    accept(
        &mut cluster,
        &subscriber,
        &offer,
        vec![task(&offer, "t", 1.5, Some(executor_info("e", "run")))],
        now,
    );
    // Killed before it runs: the pending TASK_RUNNING is dropped.
    kill(&mut cluster, &subscriber, "t");
    cluster.tick(now + Duration::from_millis(200));
    let states = {
        let mut states = Vec::new();
        loop {
            let updates = subscriber.updates();
            if updates.is_empty() {
                break states;
            }
            for status in updates {
                assert_eq!(status.executor_id, Some(ExecutorId { value: "e".into() }));
                states.push(status.state());
                acknowledge(&mut cluster, &subscriber, &status);
            }
        }
    };
    assert_eq!(states, [TaskState::TaskStarting, TaskState::TaskKilled]);
    cluster.tick(now + Duration::from_secs(2));
    let offers = subscriber.offers();
    assert_eq!(offers.len(), 1);
    assert_eq!(
        cpus_of(&offers[0]),
        2.0,
        "task and executor resources are free"
    );
    assert!(offers[0].executor_ids.is_empty(), "the executor has ended");
}

#[test]
fn simulated_custom_executor_is_shared_and_shut_down_with_its_tasks() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 1);
    let mut subscriber = subscribe(&mut cluster, 0.0);
    cluster.tick(now);
    let offer = subscriber.offers().remove(0);
    accept(
        &mut cluster,
        &subscriber,
        &offer,
        vec![
            task(&offer, "a", 0.5, Some(executor_info("e", "run"))),
            task(&offer, "b", 0.5, Some(executor_info("e", "run"))),
        ],
        now,
    );
    cluster.tick(now + Duration::from_secs(2));
    let events = subscriber.drain();
    let offers: Vec<v1::Offer> = events
        .iter()
        .filter_map(|e| e.offers.clone())
        .flat_map(|o| o.offers)
        .collect();
    assert_eq!(offers.len(), 1);
    assert!(
        (cpus_of(&offers[0]) - 0.9).abs() < 1e-9,
        "2 - 2 × 0.5 tasks - 0.1 executor once"
    );
    assert_eq!(
        offers[0].executor_ids,
        vec![ExecutorId { value: "e".into() }]
    );
    let starting: Vec<v1::TaskStatus> = events
        .iter()
        .filter_map(|e| e.update.clone())
        .map(|u| u.status)
        .collect();
    assert_eq!(starting.len(), 2);

    let call = scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Shutdown as i32),
        shutdown: Some(scheduler::call::Shutdown {
            executor_id: ExecutorId { value: "e".into() },
            agent_id: offer.agent_id.clone(),
        }),
        ..Default::default()
    };
    cluster.scheduler_call(call, now).unwrap();
    let events = subscriber.drain();
    assert!(events
        .iter()
        .any(|e| e.r#type() == scheduler::event::Type::Failure));
    let mut last = std::collections::HashMap::new();
    for status in &starting {
        acknowledge(&mut cluster, &subscriber, status);
    }
    loop {
        let updates = subscriber.updates();
        if updates.is_empty() {
            break;
        }
        for status in updates {
            last.insert(status.task_id.value.clone(), status.state());
            acknowledge(&mut cluster, &subscriber, &status);
        }
    }
    assert_eq!(last.get("a"), Some(&TaskState::TaskKilled));
    assert_eq!(last.get("b"), Some(&TaskState::TaskKilled));
}

#[test]
fn thousands_of_simulated_agents_are_offered_in_one_event_per_framework() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 2000);
    let mut first = subscribe(&mut cluster, 0.0);
    cluster.tick(now);
    let events = first.drain();
    assert_eq!(events.len(), 1, "one OFFERS event");
    let offers = events[0].offers.as_ref().unwrap().offers.clone();
    assert_eq!(offers.len(), 2000);
    let hosts: std::collections::HashSet<_> = offers.iter().map(|o| o.hostname.clone()).collect();
    assert_eq!(hosts.len(), 2000, "one offer per agent");

    // Launch one task on each agent; all of them run after the delay.
    for offer in &offers {
        let id = format!("t-{}", offer.hostname);
        accept(
            &mut cluster,
            &first,
            offer,
            vec![command_task(offer, &id, 1.0, Some("true"))],
            now,
        );
    }
    for status in first.updates() {
        assert_eq!(status.state(), TaskState::TaskStarting);
        acknowledge(&mut cluster, &first, &status);
    }
    cluster.tick(now + Duration::from_millis(200));
    let running = first.updates();
    assert_eq!(running.len(), 2000);
    assert!(running.iter().all(|s| s.state() == TaskState::TaskRunning));
}

/// Subscribes a framework of role `db` with principal `ops` (and the
/// RESERVATION_REFINEMENT capability if `refined`).
fn subscribe_db(cluster: &mut Cluster, refined: bool) -> Subscriber {
    let (sender, events) = unbounded_channel();
    let capabilities = if refined {
        vec![v1::framework_info::Capability {
            r#type: Some(v1::framework_info::capability::Type::ReservationRefinement as i32),
        }]
    } else {
        Vec::new()
    };
    let info = FrameworkInfo {
        user: "u".into(),
        name: "db".into(),
        roles: vec!["db".into()],
        principal: Some("ops".into()),
        capabilities,
        ..Default::default()
    };
    let subscribe = scheduler::call::Subscribe {
        framework_info: info,
        ..Default::default()
    };
    let framework_id = cluster
        .subscribe(subscribe, "db-stream".into(), sender)
        .unwrap();
    let mut subscriber = Subscriber {
        framework_id,
        stream_id: "db-stream".into(),
        events,
    };
    subscriber.drain();
    subscriber
}

fn reserved(name: &str, value: f64, role: &str, principal: &str) -> v1::Resource {
    v1::Resource {
        reservations: vec![v1::resource::ReservationInfo {
            r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
            role: Some(role.into()),
            principal: Some(principal.into()),
            labels: None,
        }],
        ..scalar(name, value)
    }
}

fn volume(id: &str, size: f64, path: &str, role: &str, principal: &str) -> v1::Resource {
    v1::Resource {
        disk: Some(v1::resource::DiskInfo {
            persistence: Some(v1::resource::disk_info::Persistence {
                id: id.into(),
                principal: Some(principal.into()),
            }),
            volume: Some(v1::Volume {
                mode: v1::volume::Mode::Rw as i32,
                container_path: path.into(),
                ..Default::default()
            }),
            source: None,
        }),
        ..reserved("disk", size, role, principal)
    }
}

fn operation(kind: v1::offer::operation::Type, id: Option<&str>) -> v1::offer::Operation {
    v1::offer::Operation {
        r#type: Some(kind as i32),
        id: id.map(|value| v1::OperationId {
            value: value.into(),
        }),
        ..Default::default()
    }
}

fn reserve(resources: Vec<v1::Resource>, id: Option<&str>) -> v1::offer::Operation {
    v1::offer::Operation {
        reserve: Some(v1::offer::operation::Reserve {
            resources,
            ..Default::default()
        }),
        ..operation(v1::offer::operation::Type::Reserve, id)
    }
}

fn unreserve(resources: Vec<v1::Resource>, id: Option<&str>) -> v1::offer::Operation {
    v1::offer::Operation {
        unreserve: Some(v1::offer::operation::Unreserve { resources }),
        ..operation(v1::offer::operation::Type::Unreserve, id)
    }
}

fn create(volumes: Vec<v1::Resource>, id: Option<&str>) -> v1::offer::Operation {
    v1::offer::Operation {
        create: Some(v1::offer::operation::Create { volumes }),
        ..operation(v1::offer::operation::Type::Create, id)
    }
}

fn destroy(volumes: Vec<v1::Resource>, id: Option<&str>) -> v1::offer::Operation {
    v1::offer::Operation {
        destroy: Some(v1::offer::operation::Destroy { volumes }),
        ..operation(v1::offer::operation::Type::Destroy, id)
    }
}

fn launch(tasks: Vec<TaskInfo>) -> v1::offer::Operation {
    v1::offer::Operation {
        launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
        ..operation(v1::offer::operation::Type::Launch, None)
    }
}

fn accept_operations(
    cluster: &mut Cluster,
    subscriber: &Subscriber,
    offer: &v1::Offer,
    operations: Vec<v1::offer::Operation>,
    now: Instant,
) -> Vec<Effect> {
    let call = scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Accept as i32),
        accept: Some(scheduler::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations,
            filters: Some(v1::Filters {
                refuse_seconds: Some(0.0),
            }),
        }),
        ..Default::default()
    };
    cluster.scheduler_call(call, now).unwrap()
}

/// The reserved (role `db`) resources and the volumes of an offer, as plain values.
fn reserved_part(offer: &v1::Offer) -> (f64, Vec<String>) {
    let mut cpus = 0.0;
    let mut volumes = Vec::new();
    for resource in &offer.resources {
        let reserved = resource
            .reservations
            .first()
            .is_some_and(|r| r.role.as_deref() == Some("db"));
        if let Some(persistence) = resource.disk.as_ref().and_then(|d| d.persistence.as_ref()) {
            assert!(reserved, "a volume is on reserved disk");
            volumes.push(persistence.id.clone());
        } else if reserved && resource.name == "cpus" {
            cpus += resource.scalar.unwrap().value;
        }
    }
    (cpus, volumes)
}

fn operation_states(events: &[scheduler::Event]) -> Vec<(String, v1::OperationState)> {
    events
        .iter()
        .filter_map(|e| e.update_operation_status.as_ref())
        .map(|u| {
            (
                u.status.operation_id.clone().unwrap().value,
                u.status.state(),
            )
        })
        .collect()
}

fn volume_cluster(now: Instant) -> Cluster {
    let mut cluster = cluster(now);
    let mut agent = cluster.agents[0].total.clone();
    agent.unreserved.disk = 1_000_000;
    cluster.agents[0].total = agent;
    cluster
}

#[test]
fn reserve_create_and_launch_in_one_accept_then_volume_is_offered_back() {
    let now = Instant::now();
    let mut cluster = volume_cluster(now);
    let mut db = subscribe_db(&mut cluster, true);
    cluster.tick(now);
    let offer = db.offers().remove(0);
    let mut task = task(&offer, "t", 0.5, Some(executor_info("e", "run")));
    task.resources = vec![
        reserved("cpus", 0.5, "db", "ops"),
        reserved("mem", 64.0, "db", "ops"),
        volume("v1", 100.0, "data", "db", "ops"),
    ];
    let effects = accept_operations(
        &mut cluster,
        &db,
        &offer,
        vec![
            reserve(
                vec![
                    reserved("cpus", 1.0, "db", "ops"),
                    reserved("mem", 128.0, "db", "ops"),
                    reserved("disk", 100.0, "db", "ops"),
                ],
                Some("reserve-1"),
            ),
            create(
                vec![volume("v1", 100.0, "data", "db", "ops")],
                Some("create-1"),
            ),
            launch(vec![task]),
        ],
        now,
    );
    let volume_path = std::path::Path::new("/nonexistent/devcluster/agents")
        .join(&offer.agent_id.value)
        .join("volumes/roles/db/v1");
    assert!(matches!(
        effects.as_slice(),
        [Effect::CreateVolume { path }, Effect::SpawnExecutor(spawn)]
            if *path == volume_path && spawn.volumes == [(volume_path.clone(), "data".to_string())]
    ));
    assert_eq!(
        operation_states(&db.drain()),
        [
            (
                "reserve-1".to_string(),
                v1::OperationState::OperationFinished
            ),
            (
                "create-1".to_string(),
                v1::OperationState::OperationFinished
            ),
        ]
    );

    // The rest of the reservation comes back to the role; the volume is in use.
    cluster.tick(now + Duration::from_secs(2));
    let offer = db.offers().remove(0);
    assert_eq!(reserved_part(&offer), (0.5, Vec::new()));

    // Once the executor is gone (the task failed and was acknowledged), the volume
    // is offered back with its persistence and container path.
    let container_id = match &effects[1] {
        Effect::SpawnExecutor(spawn) => spawn.container_id.clone(),
        Effect::CreateVolume { .. }
        | Effect::DestroyVolume { .. }
        | Effect::KillExecutor { .. } => {
            unreachable!()
        }
    };
    cluster.executor_launch_failed(0, &container_id, "test", now);
    for status in db.updates() {
        acknowledge(&mut cluster, &db, &status);
    }
    let decline = scheduler::Call {
        framework_id: Some(db.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Decline as i32),
        decline: Some(scheduler::call::Decline {
            offer_ids: vec![offer.id.clone()],
            filters: Some(v1::Filters {
                refuse_seconds: Some(0.0),
            }),
        }),
        ..Default::default()
    };
    cluster.scheduler_call(decline, now).unwrap();
    cluster.tick(now + Duration::from_secs(4));
    let offer = db.offers().remove(0);
    assert_eq!(reserved_part(&offer), (1.0, vec!["v1".to_string()]));
    let offered_volume = offer.resources.iter().find(|r| r.disk.is_some()).unwrap();
    assert_eq!(
        offered_volume
            .disk
            .as_ref()
            .and_then(|d| d.volume.as_ref())
            .map(|v| v.container_path.as_str()),
        Some("data")
    );

    // DESTROY then UNRESERVE gives everything back to the unreserved pool.
    let effects = accept_operations(
        &mut cluster,
        &db,
        &offer,
        vec![
            destroy(vec![volume("v1", 100.0, "data", "db", "ops")], None),
            unreserve(
                vec![
                    reserved("cpus", 1.0, "db", "ops"),
                    reserved("mem", 128.0, "db", "ops"),
                    reserved("disk", 100.0, "db", "ops"),
                ],
                None,
            ),
        ],
        now,
    );
    assert!(matches!(effects.as_slice(), [Effect::DestroyVolume { path }] if *path == volume_path));
    assert!(
        operation_states(&db.drain()).is_empty(),
        "no IDs, no feedback"
    );
    cluster.tick(now + Duration::from_secs(6));
    let offer = db.offers().remove(0);
    assert_eq!(reserved_part(&offer), (0.0, Vec::new()));
    assert_eq!(cpus_of(&offer), 2.0);
}

#[test]
fn reservation_operations_are_validated_like_mesos() {
    type Build = fn() -> Vec<v1::offer::Operation>;
    struct Case {
        name: &'static str,
        build: Build,
        expected: &'static [v1::OperationState],
    }
    use v1::OperationState::{OperationError as Error, OperationFinished as Finished};
    let cases: [Case; 9] = [
        Case {
            name: "reserve for another role",
            build: || {
                vec![reserve(
                    vec![reserved("cpus", 1.0, "web", "ops")],
                    Some("a"),
                )]
            },
            expected: &[Error],
        },
        Case {
            name: "reserve with another principal",
            build: || vec![reserve(vec![reserved("cpus", 1.0, "db", "eve")], Some("a"))],
            expected: &[Error],
        },
        Case {
            name: "reserve more than offered",
            build: || vec![reserve(vec![reserved("cpus", 3.0, "db", "ops")], Some("a"))],
            expected: &[Error],
        },
        Case {
            name: "volume on unreserved disk",
            build: || {
                let mut unreserved_volume = volume("v", 10.0, "data", "db", "ops");
                unreserved_volume.reservations.clear();
                vec![create(vec![unreserved_volume], Some("a"))]
            },
            expected: &[Error],
        },
        Case {
            name: "volume without reserved disk in the offer",
            build: || {
                vec![create(
                    vec![volume("v", 10.0, "data", "db", "ops")],
                    Some("a"),
                )]
            },
            expected: &[Error],
        },
        Case {
            name: "absolute container path",
            build: || {
                vec![
                    reserve(vec![reserved("disk", 10.0, "db", "ops")], Some("a")),
                    create(vec![volume("v", 10.0, "/data", "db", "ops")], Some("b")),
                ]
            },
            expected: &[Finished, Error],
        },
        Case {
            name: "volume ID used twice on the agent",
            build: || {
                vec![
                    reserve(vec![reserved("disk", 20.0, "db", "ops")], Some("a")),
                    create(vec![volume("v", 10.0, "one", "db", "ops")], Some("b")),
                    create(vec![volume("v", 10.0, "two", "db", "ops")], Some("c")),
                ]
            },
            expected: &[Finished, Finished, Error],
        },
        Case {
            name: "unreserve a volume",
            build: || {
                vec![
                    reserve(vec![reserved("disk", 10.0, "db", "ops")], Some("a")),
                    create(vec![volume("v", 10.0, "data", "db", "ops")], Some("b")),
                    unreserve(vec![volume("v", 10.0, "data", "db", "ops")], Some("c")),
                ]
            },
            expected: &[Finished, Finished, Error],
        },
        Case {
            name: "destroy a volume that does not exist",
            build: || {
                vec![destroy(
                    vec![volume("v", 10.0, "data", "db", "ops")],
                    Some("a"),
                )]
            },
            expected: &[Error],
        },
    ];
    for case in cases {
        let now = Instant::now();
        let mut cluster = volume_cluster(now);
        let mut db = subscribe_db(&mut cluster, true);
        cluster.tick(now);
        let offer = db.offers().remove(0);
        accept_operations(&mut cluster, &db, &offer, (case.build)(), now);
        let states: Vec<v1::OperationState> = operation_states(&db.drain())
            .into_iter()
            .map(|(_, state)| state)
            .collect();
        assert_eq!(states, case.expected, "{}", case.name);
    }
}

#[test]
fn frameworks_without_refinement_use_role_and_reservation() {
    let now = Instant::now();
    let mut cluster = volume_cluster(now);
    let mut db = subscribe_db(&mut cluster, false);
    cluster.tick(now);
    let offer = db.offers().remove(0);
    #[allow(deprecated)] // The pre-refinement format is the point.
    let legacy = v1::Resource {
        role: Some("db".into()),
        reservation: Some(v1::resource::ReservationInfo {
            principal: Some("ops".into()),
            ..Default::default()
        }),
        ..scalar("cpus", 1.0)
    };
    accept_operations(
        &mut cluster,
        &db,
        &offer,
        vec![reserve(vec![legacy], Some("r"))],
        now,
    );
    assert_eq!(
        operation_states(&db.drain()),
        [("r".to_string(), v1::OperationState::OperationFinished)]
    );
    cluster.tick(now + Duration::from_secs(2));
    let offer = db.offers().remove(0);
    #[allow(deprecated)]
    let reserved_cpus: Vec<_> = offer
        .resources
        .iter()
        .filter(|r| r.role.as_deref() == Some("db"))
        .map(|r| {
            assert!(
                r.reservations.is_empty(),
                "no refined stack for this framework"
            );
            (
                r.name.clone(),
                r.reservation.as_ref().and_then(|i| i.principal.clone()),
            )
        })
        .collect();
    assert_eq!(
        reserved_cpus,
        [("cpus".to_string(), Some("ops".to_string()))]
    );
}

#[test]
fn reserved_resources_are_offered_only_to_their_role() {
    let now = Instant::now();
    let mut cluster = volume_cluster(now);
    let mut db = subscribe_db(&mut cluster, true);
    cluster.tick(now);
    let offer = db.offers().remove(0);
    accept_operations(
        &mut cluster,
        &db,
        &offer,
        vec![reserve(vec![reserved("cpus", 1.5, "db", "ops")], None)],
        now,
    );
    // The db framework leaves; another role is offered the unreserved rest only.
    let teardown = scheduler::Call {
        framework_id: Some(db.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Teardown as i32),
        ..Default::default()
    };
    cluster.scheduler_call(teardown, now).unwrap();
    let mut other = subscribe(&mut cluster, 0.0);
    cluster.tick(now + Duration::from_secs(2));
    let offer = other.offers().remove(0);
    assert_eq!(cpus_of(&offer), 0.5);
    assert!(offer.resources.iter().all(|r| r.reservations.is_empty()));
}

fn subscribe_partition_aware(cluster: &mut Cluster) -> Subscriber {
    let (sender, events) = unbounded_channel();
    let info = FrameworkInfo {
        user: "u".into(),
        name: "pa".into(),
        capabilities: vec![v1::framework_info::Capability {
            r#type: Some(v1::framework_info::capability::Type::PartitionAware as i32),
        }],
        ..Default::default()
    };
    let subscribe = scheduler::call::Subscribe {
        framework_info: info,
        ..Default::default()
    };
    let framework_id = cluster
        .subscribe(subscribe, "pa-stream".into(), sender)
        .unwrap();
    let mut subscriber = Subscriber {
        framework_id,
        stream_id: "pa-stream".into(),
        events,
    };
    subscriber.drain();
    subscriber
}

/// Launches task `t` on the first offer's agent (simulated) and acknowledges it up
/// to TASK_RUNNING; returns that agent's ID and the offers of the other agents.
fn running_simulated_task(
    cluster: &mut Cluster,
    subscriber: &mut Subscriber,
    now: Instant,
) -> (v1::AgentId, Vec<v1::Offer>) {
    cluster.tick(now);
    let mut offers = subscriber.offers();
    offers.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    let offer = offers.remove(0);
    accept(
        cluster,
        subscriber,
        &offer,
        vec![command_task(&offer, "t", 1.0, Some("sleep 100"))],
        now,
    );
    cluster.tick(now + Duration::from_millis(200));
    let mut states = Vec::new();
    loop {
        let updates = subscriber.updates();
        if updates.is_empty() {
            break;
        }
        for status in updates {
            states.push(status.state());
            acknowledge(cluster, subscriber, &status);
        }
    }
    assert_eq!(states, [TaskState::TaskStarting, TaskState::TaskRunning]);
    (offer.agent_id, offers)
}

fn reconcile(cluster: &mut Cluster, subscriber: &mut Subscriber, tasks: &[(&str, &v1::AgentId)]) {
    let call = scheduler::Call {
        framework_id: Some(subscriber.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Reconcile as i32),
        reconcile: Some(scheduler::call::Reconcile {
            tasks: tasks
                .iter()
                .map(|(task, agent)| scheduler::call::reconcile::Task {
                    task_id: TaskId {
                        value: (*task).into(),
                    },
                    agent_id: Some((*agent).clone()),
                })
                .collect(),
        }),
        ..Default::default()
    };
    cluster.scheduler_call(call, Instant::now()).unwrap();
}

fn reconciled_states(subscriber: &mut Subscriber) -> Vec<(String, TaskState)> {
    subscriber
        .updates()
        .into_iter()
        .map(|status| {
            assert_eq!(status.reason(), task_status::Reason::Reconciliation);
            assert!(status.uuid.is_none());
            (status.task_id.value.clone(), status.state())
        })
        .collect()
}

#[test]
fn lost_agent_is_declared_unreachable_after_the_timeout() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 2);
    let mut pa = subscribe_partition_aware(&mut cluster);
    let (agent_id, _) = running_simulated_task(&mut cluster, &mut pa, now);
    // The framework holds an offer of the agent when it is lost: it is rescinded.
    let effects = cluster.tick(now + Duration::from_secs(2));
    assert!(effects.is_empty());
    let held: Vec<v1::Offer> = pa.offers();
    let held_on_lost = held
        .iter()
        .find(|o| o.agent_id == agent_id)
        .map(|o| o.id.clone())
        .unwrap();
    let index = cluster.agent_index(&agent_id).unwrap();
    cluster.agent_lost(index, now + Duration::from_secs(3));
    let events = pa.drain();
    let rescinded: Vec<_> = events
        .iter()
        .filter_map(|e| e.rescind.as_ref())
        .map(|r| r.offer_id.clone())
        .collect();
    assert_eq!(rescinded, [held_on_lost]);

    // Before the timeout the master still believes the task runs.
    reconcile(&mut cluster, &mut pa, &[("t", &agent_id)]);
    assert_eq!(
        reconciled_states(&mut pa),
        [("t".to_string(), TaskState::TaskRunning)]
    );

    cluster.tick(now + Duration::from_secs(79));
    let events = pa.drain();
    let updates: Vec<&v1::TaskStatus> = events
        .iter()
        .filter_map(|e| e.update.as_ref().map(|u| &u.status))
        .collect();
    assert_eq!(updates.len(), 1);
    let status = updates[0];
    assert_eq!(status.state(), TaskState::TaskUnreachable);
    assert_eq!(status.reason(), task_status::Reason::AgentRemoved);
    assert_eq!(status.source(), task_status::Source::Master);
    assert!(status.uuid.is_none(), "master updates are not acknowledged");
    assert!(status.unreachable_time.is_some());
    assert!(events.iter().any(|e| e
        .failure
        .as_ref()
        .is_some_and(|f| f.agent_id.as_ref() == Some(&agent_id) && f.executor_id.is_none())));
    assert!(
        events
            .iter()
            .filter_map(|e| e.offers.as_ref())
            .flat_map(|o| &o.offers)
            .all(|o| o.agent_id != agent_id),
        "a lost agent is not offered"
    );

    // The task stays known as unreachable; an unknown task there is unreachable too.
    reconcile(
        &mut cluster,
        &mut pa,
        &[("t", &agent_id), ("other", &agent_id)],
    );
    assert_eq!(
        reconciled_states(&mut pa),
        [
            ("t".to_string(), TaskState::TaskUnreachable),
            ("other".to_string(), TaskState::TaskUnreachable),
        ]
    );
    let unknown_agent = v1::AgentId {
        value: "no-such-agent".into(),
    };
    reconcile(&mut cluster, &mut pa, &[("other", &unknown_agent)]);
    assert_eq!(
        reconciled_states(&mut pa),
        [("other".to_string(), TaskState::TaskUnknown)]
    );
}

#[test]
fn lost_agent_tasks_are_lost_for_frameworks_that_are_not_partition_aware() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 1);
    let mut plain = subscribe(&mut cluster, 0.0);
    let (agent_id, _) = running_simulated_task(&mut cluster, &mut plain, now);
    cluster.agent_lost(0, now);
    cluster.tick(now + Duration::from_secs(76));
    let updates = plain.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].state(), TaskState::TaskLost);
    assert_eq!(updates[0].reason(), task_status::Reason::AgentRemoved);
    reconcile(&mut cluster, &mut plain, &[("t", &agent_id)]);
    assert_eq!(
        reconciled_states(&mut plain),
        [("t".to_string(), TaskState::TaskLost)]
    );
    // Implicit reconciliation: the task is forgotten.
    reconcile(&mut cluster, &mut plain, &[]);
    assert!(plain.updates().is_empty());
}

#[test]
fn agent_marked_gone_reports_its_tasks_gone_by_operator() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 1);
    let mut pa = subscribe_partition_aware(&mut cluster);
    let (agent_id, _) = running_simulated_task(&mut cluster, &mut pa, now);
    cluster.agent_gone(0);
    let updates = pa.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].state(), TaskState::TaskGoneByOperator);
    assert_eq!(
        updates[0].reason(),
        task_status::Reason::AgentRemovedByOperator
    );
    reconcile(&mut cluster, &mut pa, &[("t", &agent_id)]);
    assert_eq!(
        reconciled_states(&mut pa),
        [("t".to_string(), TaskState::TaskGoneByOperator)]
    );
}

#[test]
fn unknown_task_on_a_registered_agent_is_gone() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 1);
    let mut pa = subscribe_partition_aware(&mut cluster);
    let agent_id = cluster.agent_ids()[0].clone();
    reconcile(&mut cluster, &mut pa, &[("never", &agent_id)]);
    assert_eq!(
        reconciled_states(&mut pa),
        [("never".to_string(), TaskState::TaskGone)]
    );
}

#[test]
fn leader_change_ends_streams_and_keeps_tasks_for_the_resubscribing_framework() {
    let now = Instant::now();
    let mut cluster = simulated_cluster(now, 1);
    let standby = cluster.add_master("127.0.0.1:5051".parse().unwrap());
    let mut first = subscribe(&mut cluster, 3600.0);
    cluster.tick(now);
    let offer = first.offers().remove(0);
    accept(
        &mut cluster,
        &first,
        &offer,
        vec![command_task(&offer, "t", 1.0, Some("sleep 100"))],
        now,
    );
    let starting = first.updates();
    assert_eq!(starting.len(), 1, "TASK_STARTING, not acknowledged");
    cluster.tick(now + Duration::from_secs(1));
    assert!(!first.drain().is_empty(), "an offer is outstanding");

    cluster.set_leader(Some(standby), now + Duration::from_secs(2));
    assert_eq!(cluster.leader(), Some(standby));
    assert!(first.events.try_recv().is_err());
    assert!(first.events.is_closed(), "the old leader's stream ended");
    assert!(cluster.offers.is_empty());

    // Re-subscription with the same ID: the new master's info, the task is known and
    // its unacknowledged update comes again.
    let (sender, events) = unbounded_channel();
    let info = FrameworkInfo {
        id: Some(first.framework_id.clone()),
        user: "u".into(),
        name: "n".into(),
        failover_timeout: Some(3600.0),
        ..Default::default()
    };
    let subscribe = scheduler::call::Subscribe {
        framework_info: info,
        ..Default::default()
    };
    let id = cluster
        .subscribe(subscribe, "again".into(), sender)
        .unwrap();
    assert_eq!(id, first.framework_id);
    let mut again = Subscriber {
        framework_id: id,
        stream_id: "again".into(),
        events,
    };
    let events = again.drain();
    let subscribed = events[0].subscribed.clone().unwrap();
    assert_eq!(subscribed.master_info.unwrap().port, 5051);
    let resent: Vec<_> = events
        .iter()
        .filter_map(|e| e.update.as_ref())
        .map(|u| u.status.uuid.clone())
        .collect();
    assert_eq!(resent, [starting[0].uuid.clone()]);
}

#[test]
fn operation_feedback_is_resent_until_acknowledged_and_reconciled() {
    let now = Instant::now();
    let mut cluster = volume_cluster(now);
    let mut db = subscribe_db(&mut cluster, true);
    cluster.tick(now);
    let offer = db.offers().remove(0);
    accept_operations(
        &mut cluster,
        &db,
        &offer,
        vec![reserve(vec![reserved("cpus", 1.0, "db", "ops")], Some("r"))],
        now,
    );
    let statuses = |events: Vec<scheduler::Event>| -> Vec<v1::OperationStatus> {
        events
            .into_iter()
            .filter_map(|e| e.update_operation_status)
            .map(|u| u.status)
            .collect()
    };
    let first = statuses(db.drain());
    assert_eq!(first.len(), 1);
    assert!(first[0].uuid.is_some());
    assert_eq!(first[0].agent_id.as_ref(), Some(&offer.agent_id));

    // Unacknowledged: resent after the retry interval, same uuid.
    cluster.tick(now + Duration::from_secs(11));
    let resent = statuses(db.drain());
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].uuid, first[0].uuid);

    let framework_id = db.framework_id.clone();
    let reconcile = |cluster: &mut Cluster| {
        let call = scheduler::Call {
            framework_id: Some(framework_id.clone()),
            r#type: Some(scheduler::call::Type::ReconcileOperations as i32),
            reconcile_operations: Some(scheduler::call::ReconcileOperations {
                operations: vec![scheduler::call::reconcile_operations::Operation {
                    operation_id: v1::OperationId { value: "r".into() },
                    agent_id: Some(offer.agent_id.clone()),
                    resource_provider_id: None,
                }],
            }),
            ..Default::default()
        };
        cluster.scheduler_call(call, now).unwrap();
    };
    reconcile(&mut cluster);
    let answer = statuses(db.drain());
    assert_eq!(answer[0].state(), v1::OperationState::OperationFinished);
    assert!(
        answer[0].uuid.is_none(),
        "reconciliation answers are not acknowledged"
    );

    let acknowledge = scheduler::Call {
        framework_id: Some(db.framework_id.clone()),
        r#type: Some(scheduler::call::Type::AcknowledgeOperationStatus as i32),
        acknowledge_operation_status: Some(scheduler::call::AcknowledgeOperationStatus {
            agent_id: Some(offer.agent_id.clone()),
            resource_provider_id: None,
            uuid: first[0].uuid.clone().unwrap().value,
            operation_id: v1::OperationId { value: "r".into() },
        }),
        ..Default::default()
    };
    cluster.scheduler_call(acknowledge, now).unwrap();
    cluster.tick(now + Duration::from_secs(60));
    assert!(statuses(db.drain()).is_empty(), "no more retries");
    reconcile(&mut cluster);
    let answer = statuses(db.drain());
    assert_eq!(answer[0].state(), v1::OperationState::OperationUnknown);
}
