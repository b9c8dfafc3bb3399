//! Scripted runs of the whole actor system against a recording Mesos and an
//! in-memory store: send events, expect calls and stored states.

// Helpers outside #[test] functions unwrap too: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod crash;
mod fuzz;
mod lifecycle;
mod placement;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web, App};
use bytes::Bytes;
use prost::Message;

use mesos_stateful_actors::actor::http_lib::{configure, ApiHandles};
use mesos_stateful_actors::actor::{System, SystemConfig};
use mesos_stateful_actors::domain::launch::{substitute, ContainerPlan, ExecutorLaunch};
use mesos_stateful_actors::domain::view::{InstanceView, MemberView};
use mesos_stateful_actors::mesos::RecordingMesos;
use mesos_stateful_actors::telemetry::Metrics;
use mesos_stateful_actors::workload::Workload;
use mesos_stateful_proto::stateful::ContainerSpec;
use mesos_stateful_proto::v1;
use mesos_stateful_proto::v1::scheduler::{call, event, Event};
use mesos_stateful_store::records::{InstanceSpec, InstanceStatus, Resources};
use mesos_stateful_store::{MemPersister, StateStore};

#[derive(Debug)]
struct Echo;

impl Workload for Echo {
    fn start_master(&self, instance: &InstanceView, _: &MemberView, port: u16) -> ContainerPlan {
        ContainerPlan {
            image: instance.spec.image.clone(),
            args: substitute(&instance.spec.master_args, port, None),
            env: Default::default(),
            facts_command: Vec::new(),
            ..Default::default()
        }
    }

    fn start_replica(
        &self,
        instance: &InstanceView,
        _: &MemberView,
        port: u16,
        master: Option<&MemberView>,
    ) -> ContainerPlan {
        let endpoint = master.and_then(MemberView::endpoint);
        ContainerPlan {
            image: instance.spec.image.clone(),
            args: substitute(
                &instance.spec.replica_args,
                port,
                endpoint.as_ref().map(|(h, p)| (h.as_str(), *p)),
            ),
            env: Default::default(),
            facts_command: Vec::new(),
            ..Default::default()
        }
    }
}

fn spec(replicas: u32) -> InstanceSpec {
    InstanceSpec {
        image: "redis:test".into(),
        replicas,
        resources: Resources {
            cpus: 0.2,
            mem: 128.0,
            disk: 64.0,
        },
        master_args: vec!["redis-server".into(), "--port".into(), "{port}".into()],
        replica_args: vec![
            "redis-server".into(),
            "--port".into(),
            "{port}".into(),
            "--replicaof".into(),
            "{master_host}".into(),
            "{master_port}".into(),
        ],
        env: Default::default(),
        volume: None,
        placement: Default::default(),
        privileged: false,
    }
}

async fn start(mesos: &RecordingMesos, store: StateStore) -> System {
    System::start(
        store,
        Arc::new(mesos.clone()),
        Arc::new(Echo),
        SystemConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: ExecutorLaunch::default(),
            metrics: Arc::new(Metrics::new()),
            api: Default::default(),
            recovery: Default::default(),
            queue: Default::default(),
        },
    )
    .await
    .unwrap()
}

fn subscribed(id: &str) -> Event {
    Event {
        r#type: Some(event::Type::Subscribed as i32),
        subscribed: Some(event::Subscribed {
            framework_id: v1::FrameworkId { value: id.into() },
            heartbeat_interval_seconds: Some(15.0),
            master_info: None,
        }),
        ..Default::default()
    }
}

fn offers(id: &str, agent: &str, ports: (u64, u64)) -> Event {
    let scalar = |name: &str, value: f64| v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    };
    Event {
        r#type: Some(event::Type::Offers as i32),
        offers: Some(event::Offers {
            offers: vec![v1::Offer {
                id: v1::OfferId { value: id.into() },
                framework_id: v1::FrameworkId { value: "fw".into() },
                agent_id: v1::AgentId {
                    value: agent.into(),
                },
                hostname: format!("{agent}.example"),
                resources: vec![
                    scalar("cpus", 4.0),
                    scalar("mem", 4096.0),
                    scalar("disk", 10000.0),
                    v1::Resource {
                        name: "ports".into(),
                        r#type: v1::value::Type::Ranges as i32,
                        ranges: Some(v1::value::Ranges {
                            range: vec![v1::value::Range {
                                begin: ports.0,
                                end: ports.1,
                            }],
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        }),
        ..Default::default()
    }
}

fn update(task_id: &str, agent: &str, state: v1::TaskState, uuid: Option<u8>) -> Event {
    Event {
        r#type: Some(event::Type::Update as i32),
        update: Some(event::Update {
            status: v1::TaskStatus {
                task_id: v1::TaskId {
                    value: task_id.into(),
                },
                state: state as i32,
                agent_id: Some(v1::AgentId {
                    value: agent.into(),
                }),
                uuid: uuid.map(|b| Bytes::from(vec![b; 16])),
                message: Some(format!("{state:?}")),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// Waits until `check` holds, for at most five seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn launched_tasks(mesos: &RecordingMesos) -> Vec<v1::TaskInfo> {
    mesos
        .calls_of(call::Type::Accept)
        .into_iter()
        .flat_map(|c| c.accept.unwrap().operations)
        .flat_map(|op| op.launch.map(|l| l.task_infos).unwrap_or_default())
        .collect()
}

async fn status_of(system: &System, name: &str) -> Option<InstanceStatus> {
    system.state.get(name).map(|s| s.instance.status)
}

#[actix_rt::test]
async fn create_launch_replicate_run_and_delete() {
    let mesos = RecordingMesos::subscribed("fw");
    let store = StateStore::open(Arc::new(MemPersister::new())).unwrap();
    let system = start(&mesos, store.clone()).await;

    system.handle_event(subscribed("fw")).await.unwrap();
    assert_eq!(store.framework_id().unwrap().as_deref(), Some("fw"));
    let view = system
        .creator
        .create("cache1".into(), spec(1))
        .await
        .unwrap();
    assert_eq!(view.status, InstanceStatus::Creating);
    assert_eq!(
        store.load_tasks("cache1").unwrap().len(),
        1,
        "master persisted with the instance"
    );

    // The master goes on the first offer, on its first port.
    system
        .handle_event(offers("o1", "a1", (31000, 31010)))
        .await
        .unwrap();
    eventually("the master's launch", || async {
        launched_tasks(&mesos).len() == 1
    })
    .await;
    let master = &launched_tasks(&mesos)[0];
    assert_eq!(master.task_id.value, "cache1-0.1");
    let container = ContainerSpec::decode(master.data.clone().unwrap()).unwrap();
    assert_eq!(container.args, ["redis-server", "--port", "31000"]);
    // The placement was durable before the ACCEPT was sent.
    let stored = store.load_tasks("cache1").unwrap();
    assert_eq!(stored[0].agent_id.as_deref(), Some("a1"));
    assert_eq!(stored[0].port, Some(31000));

    // Master RUNNING: acknowledged, and the replica is queued and launched elsewhere.
    system
        .handle_event(update(
            "cache1-0.1",
            "a1",
            v1::TaskState::TaskRunning,
            Some(1),
        ))
        .await
        .unwrap();
    eventually("the acknowledgement", || async {
        mesos.calls_of(call::Type::Acknowledge).len() == 1
    })
    .await;
    eventually("the replica's record", || async {
        store.load_tasks("cache1").unwrap().len() == 2
    })
    .await;
    system
        .handle_event(offers("o2", "a2", (32000, 32010)))
        .await
        .unwrap();
    eventually("the replica's launch", || async {
        launched_tasks(&mesos).len() == 2
    })
    .await;
    let replica = &launched_tasks(&mesos)[1];
    assert_eq!(replica.task_id.value, "cache1-1.1");
    assert_eq!(replica.agent_id.value, "a2");
    let container = ContainerSpec::decode(replica.data.clone().unwrap()).unwrap();
    assert_eq!(
        container.args,
        [
            "redis-server",
            "--port",
            "32000",
            "--replicaof",
            "a1.example",
            "31000"
        ]
    );

    system
        .handle_event(update(
            "cache1-1.1",
            "a2",
            v1::TaskState::TaskRunning,
            Some(2),
        ))
        .await
        .unwrap();
    eventually("RUNNING", || async {
        status_of(&system, "cache1").await == Some(InstanceStatus::Running)
    })
    .await;

    // A reconciliation answer has no uuid and is not acknowledged. It is still
    // applied (its record is written again) before the delete below, which would
    // otherwise race it: applied after the delete, it would kill its task again.
    let replica_version = |system: &System| system.state.get("cache1").unwrap().tasks[&1].version;
    let before = replica_version(&system);
    system
        .handle_event(update("cache1-1.1", "a2", v1::TaskState::TaskRunning, None))
        .await
        .unwrap();
    eventually("the reconciliation answer applied", || async {
        replica_version(&system) > before
    })
    .await;

    // Delete: both tasks are killed, and the instance is DELETED once both ended.
    let view = system.destroyer.delete("cache1").await.unwrap();
    assert_eq!(view.status, InstanceStatus::Deleting);
    let kills: Vec<String> = mesos
        .calls_of(call::Type::Kill)
        .into_iter()
        .map(|c| c.kill.unwrap().task_id.value)
        .collect();
    assert_eq!(kills, ["cache1-0.1", "cache1-1.1"]);
    for (task, agent, uuid) in [("cache1-0.1", "a1", 3), ("cache1-1.1", "a2", 4)] {
        system
            .handle_event(update(task, agent, v1::TaskState::TaskKilled, Some(uuid)))
            .await
            .unwrap();
    }
    eventually("DELETED", || async {
        status_of(&system, "cache1").await == Some(InstanceStatus::Deleted)
    })
    .await;
    assert_eq!(
        mesos.calls_of(call::Type::Acknowledge).len(),
        4,
        "only updates with a uuid are acknowledged"
    );
}

#[actix_rt::test]
async fn declines_offers_when_idle_and_kills_unknown_tasks() {
    let mesos = RecordingMesos::subscribed("fw");
    let system = start(
        &mesos,
        StateStore::open(Arc::new(MemPersister::new())).unwrap(),
    )
    .await;
    system
        .handle_event(offers("o1", "a1", (31000, 31010)))
        .await
        .unwrap();
    eventually("the decline", || async {
        mesos.calls_of(call::Type::Decline).len() == 1
    })
    .await;

    system
        .handle_event(update(
            "ghost-0.1",
            "a1",
            v1::TaskState::TaskRunning,
            Some(9),
        ))
        .await
        .unwrap();
    eventually("the orphan's kill", || async {
        mesos.calls_of(call::Type::Kill).len() == 1
    })
    .await;
    assert_eq!(mesos.calls_of(call::Type::Acknowledge).len(), 1);
}

#[actix_rt::test]
async fn state_survives_a_restart_and_unplaced_members_are_requeued() {
    let persister = Arc::new(MemPersister::new());
    let mesos = RecordingMesos::subscribed("fw");
    let system = start(&mesos, StateStore::open(persister.clone()).unwrap()).await;
    system.creator.create("kept".into(), spec(1)).await.unwrap();
    system.stop_http();

    let mesos = RecordingMesos::subscribed("fw");
    let system = start(&mesos, StateStore::open(persister).unwrap()).await;
    let views = system.state.list();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].instance.name, "kept");
    // The master never got an offer before the restart: it is queued again.
    system
        .handle_event(offers("o1", "a1", (31000, 31010)))
        .await
        .unwrap();
    eventually("the launch after restart", || async {
        launched_tasks(&mesos).len() == 1
    })
    .await;
}

#[actix_rt::test]
async fn rest_api_answers_and_refuses_bad_requests() {
    let mesos = RecordingMesos::subscribed("fw");
    let store = StateStore::open(Arc::new(MemPersister::new())).unwrap();
    let system = start(&mesos, store.clone()).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(ApiHandles {
                creator: system.creator.clone(),
                destroyer: system.destroyer.clone(),
                state: system.state.clone(),
                maintainer: system.maintainer.clone(),
                mesos: Arc::new(mesos.clone()),
                metrics: system.metrics.clone(),
            }))
            .configure(configure),
    )
    .await;
    let post = |body: &str| {
        test::TestRequest::post()
            .uri("/v1/instances")
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_string())
            .to_request()
    };
    let valid = r#"{"name":"web1","image":"redis:7","replicas":0,"resources":{"cpus":0.1,"mem":64,"disk":10}}"#;

    let cases: &[(&str, u16, &str)] = &[
        ("not json", 400, "invalid_json"),
        (r#"{"name":"web1"}"#, 400, "invalid_json"),
        (
            r#"{"name":"web1","image":"r","resources":{"cpus":0.1,"mem":64,"disk":10},"x":1}"#,
            400,
            "invalid_json",
        ),
        (
            r#"{"name":"Web_1","image":"r","resources":{"cpus":0.1,"mem":64,"disk":10}}"#,
            400,
            "invalid_name",
        ),
        (
            r#"{"name":"web1","image":"r","resources":{"cpus":0,"mem":64,"disk":10}}"#,
            400,
            "invalid_resources",
        ),
        (
            r#"{"name":"web1","image":"r","resources":{"cpus":1e9,"mem":64,"disk":10}}"#,
            400,
            "invalid_resources",
        ),
        (
            r#"{"name":"web1","image":"bad image","resources":{"cpus":1,"mem":64,"disk":10}}"#,
            400,
            "invalid_image",
        ),
        (
            r#"{"name":"web1","image":"r","replicas":-1,"resources":{"cpus":1,"mem":64,"disk":10}}"#,
            400,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let response = test::call_service(&app, post(body)).await;
        assert_eq!(response.status().as_u16(), *status, "{body}");
        let json: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(json["code"], *code, "{body}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(
        store.load_instances().unwrap().is_empty(),
        "refused requests change nothing"
    );

    let response = test::call_service(&app, post(valid)).await;
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(
        response.headers().get("location").unwrap(),
        "/v1/instances/web1"
    );
    // A repeated create is answered as the first; another body for the name conflicts.
    let response = test::call_service(&app, post(valid)).await;
    assert_eq!(response.status().as_u16(), 202);
    let response = test::call_service(&app, post(&valid.replace("redis:7", "redis:8"))).await;
    assert_eq!(response.status().as_u16(), 409);

    let wrong_type = test::TestRequest::post()
        .uri("/v1/instances")
        .insert_header(("content-type", "text/plain"))
        .set_payload(valid)
        .to_request();
    assert_eq!(
        test::call_service(&app, wrong_type).await.status().as_u16(),
        415
    );

    let get = test::TestRequest::get()
        .uri("/v1/instances/web1")
        .to_request();
    let json: serde_json::Value = test::read_body_json(test::call_service(&app, get).await).await;
    assert_eq!(json["status"], "CREATING");
    assert_eq!(json["members"][0]["name"], "web1-0");
    assert_eq!(json["members"][0]["role"], "master");

    let list = test::TestRequest::get().uri("/v1/instances").to_request();
    let json: serde_json::Value = test::read_body_json(test::call_service(&app, list).await).await;
    assert_eq!(json.as_array().unwrap().len(), 1);

    let missing = test::TestRequest::get()
        .uri("/v1/instances/nope")
        .to_request();
    assert_eq!(
        test::call_service(&app, missing).await.status().as_u16(),
        404
    );
    let bad = test::TestRequest::delete()
        .uri("/v1/instances/NOPE")
        .to_request();
    assert_eq!(test::call_service(&app, bad).await.status().as_u16(), 404);
    let put = test::TestRequest::put()
        .uri("/v1/instances/web1")
        .to_request();
    assert_eq!(test::call_service(&app, put).await.status().as_u16(), 405);

    let delete = test::TestRequest::delete()
        .uri("/v1/instances/web1")
        .to_request();
    let response = test::call_service(&app, delete).await;
    assert_eq!(response.status().as_u16(), 202);
    let json: serde_json::Value = test::read_body_json(response).await;
    // Never launched: nothing to kill, so it is DELETED at once.
    assert_eq!(json["status"], "DELETED");
}

fn executor_message(
    executor_id: &str,
    payload: mesos_stateful_proto::stateful::executor_message::Payload,
) -> Event {
    use mesos_stateful_proto::stateful::ExecutorMessage;
    Event {
        r#type: Some(event::Type::Message as i32),
        message: Some(event::Message {
            agent_id: v1::AgentId { value: "a1".into() },
            executor_id: v1::ExecutorId {
                value: executor_id.into(),
            },
            data: Bytes::from(
                ExecutorMessage {
                    payload: Some(payload),
                }
                .encode_to_vec(),
            ),
        }),
        ..Default::default()
    }
}

#[actix_rt::test]
async fn commands_are_resent_until_answered_and_stats_and_health_are_served() {
    use mesos_stateful_proto::stateful::{
        executor_message::Payload, scheduler_message, CommandResult, SchedulerMessage, TaskStats,
    };
    let mesos = RecordingMesos::subscribed("fw");
    let system = start(
        &mesos,
        StateStore::open(Arc::new(MemPersister::new())).unwrap(),
    )
    .await;
    system.creator.create("cmd".into(), spec(0)).await.unwrap();
    system
        .handle_event(offers("o1", "a1", (31000, 31010)))
        .await
        .unwrap();
    eventually("the launch", || async { launched_tasks(&mesos).len() == 1 }).await;

    // Not running yet: refused at once.
    let refused = system
        .maintainer
        .run_command("cmd", 0, vec!["true".into()], Duration::from_secs(5))
        .await;
    assert!(refused.unwrap_err().to_string().contains("not running"));

    let mut running = update("cmd-0.1", "a1", v1::TaskState::TaskRunning, Some(1));
    if let Some(update) = &mut running.update {
        update.status.healthy = Some(true);
    }
    system.handle_event(running).await.unwrap();
    eventually("RUNNING", || async {
        status_of(&system, "cmd").await == Some(InstanceStatus::Running)
    })
    .await;

    let maintainer = system.maintainer.clone();
    let command = actix_rt::spawn(async move {
        maintainer
            .run_command(
                "cmd",
                0,
                vec!["redis-cli".into(), "ping".into()],
                Duration::from_secs(5),
            )
            .await
    });
    // Sent at once, then again after the resend delay while unanswered.
    eventually("the command's first send", || async {
        mesos.calls_of(call::Type::Message).len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let sends = mesos.calls_of(call::Type::Message);
    assert!(sends.len() >= 2, "resent while unanswered");
    let message = sends[0].message.clone().unwrap();
    assert_eq!(message.executor_id.value, "cmd-0.1.executor");
    assert_eq!(message.agent_id.value, "a1");
    let Some(scheduler_message::Payload::RunCommand(run)) =
        SchedulerMessage::decode(message.data).unwrap().payload
    else {
        panic!("not a RunCommand");
    };
    assert_eq!(run.argv, ["redis-cli", "ping"]);
    assert_eq!(
        sends[1].message.clone().unwrap().data,
        sends[0].message.clone().unwrap().data,
        "same command id"
    );

    let result = CommandResult {
        command_id: run.command_id.clone(),
        task_id: "cmd-0.1".into(),
        exit_code: Some(0),
        stdout: Some("PONG\n".into()),
        stderr: None,
        error: None,
    };
    system
        .handle_event(executor_message(
            "cmd-0.1.executor",
            Payload::CommandResult(result.clone()),
        ))
        .await
        .unwrap();
    // A duplicate answer (from a resent command) is ignored.
    system
        .handle_event(executor_message(
            "cmd-0.1.executor",
            Payload::CommandResult(result.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(command.await.unwrap().unwrap(), result);
    let sent = mesos.calls_of(call::Type::Message).len();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(
        mesos.calls_of(call::Type::Message).len(),
        sent,
        "no resend once answered"
    );

    // Stats from the executor are served with the member; garbage is ignored.
    let stats = TaskStats {
        task_id: "cmd-0.1".into(),
        timestamp: Some(1.0),
        cpu_percent: Some(12.5),
        memory_bytes: Some(1024),
        facts: vec![v1::Label {
            key: "role".into(),
            value: Some("master".into()),
        }],
        ..Default::default()
    };
    system
        .handle_event(executor_message("cmd-0.1.executor", Payload::Stats(stats)))
        .await
        .unwrap();
    let mut garbage = executor_message("cmd-0.1.executor", Payload::Stats(TaskStats::default()));
    if let Some(message) = &mut garbage.message {
        message.data = Bytes::from_static(b"\xff\xff\xff");
    }
    system.handle_event(garbage).await.unwrap();
    let view = system.state.get("cmd").unwrap().view();
    let member = &view.members[0];
    assert_eq!(member.healthy, Some(true));
    let served = member.stats.as_ref().expect("stats served");
    assert_eq!(served.cpu_percent, Some(12.5));
    assert_eq!(served.facts["role"], "master");
}
