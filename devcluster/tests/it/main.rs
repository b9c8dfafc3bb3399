//! End-to-end tests of devcluster through its HTTP APIs, with a small protobuf
//! scheduler and executor client written here, and JSON clients speaking Mesos's
//! JSON mapping like third-party libraries do.

// Test helpers may unwrap: a panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use mesos_stateful_devcluster::{AgentConfig, DevCluster, DevClusterConfig};
use mesos_stateful_proto::recordio::Decoder;
use mesos_stateful_proto::v1::{
    self, executor, scheduler, task_status, AgentId, ExecutorId, FrameworkId, FrameworkInfo,
    TaskId, TaskState,
};
use mesos_stateful_proto::{media, Message, STREAM_ID_HEADER};
use reqwest::StatusCode;
use tokio::sync::mpsc;

mod agent_loss;
mod agent_restart;
mod authentication;
mod command_tasks;
mod masters;
mod pymesos;
mod simulated_agents;
mod volumes;

const WAIT: Duration = Duration::from_secs(10);

fn config(work_dir: &Path) -> DevClusterConfig {
    DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        agents: vec![AgentConfig {
            cpus: 2.0,
            mem: 1024.0,
            disk: 2048.0,
            ports: (31000, 31009),
            attributes: vec![("rack".into(), "a".into())],
            ..AgentConfig::default()
        }],
        work_dir: work_dir.to_path_buf(),
        heartbeat_interval: Duration::from_millis(500),
        allocation_interval: Duration::from_millis(100),
        status_update_retry_interval: Duration::from_millis(400),
        executor_registration_timeout: Duration::from_secs(30),
        executor_shutdown_grace_period: Duration::from_millis(500),
        executor_reregistration_timeout: Duration::from_secs(1),
        ..DevClusterConfig::default()
    }
}

fn framework_info(failover_timeout: Option<f64>) -> FrameworkInfo {
    FrameworkInfo {
        user: "nobody".into(),
        name: "it".into(),
        failover_timeout,
        ..Default::default()
    }
}

/// Reads a RecordIO stream of protobuf events into a channel.
fn pump<E: Message + Default + 'static>(response: reqwest::Response) -> mpsc::UnboundedReceiver<E> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut decoder = Decoder::new();
        let mut body = response.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            decoder.push(&chunk);
            while let Ok(Some(record)) = decoder.next_record() {
                let Ok(event) = E::decode(record) else { return };
                if sender.send(event).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

async fn post(url: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

struct Scheduler {
    url: String,
    stream_id: String,
    framework_id: FrameworkId,
    events: mpsc::UnboundedReceiver<scheduler::Event>,
    subscribed: scheduler::event::Subscribed,
}

fn subscribe_call(info: FrameworkInfo) -> scheduler::Call {
    scheduler::Call {
        framework_id: info.id.clone(),
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: info,
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Scheduler {
    async fn subscribe(master: &str, info: FrameworkInfo) -> Scheduler {
        let url = format!("{master}/api/v1/scheduler");
        let response = post(
            &url,
            subscribe_call(info).encode_to_vec(),
            &[
                ("Content-Type", media::PROTOBUF),
                ("Accept", media::PROTOBUF),
            ],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], media::PROTOBUF);
        let stream_id = response.headers()[STREAM_ID_HEADER]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(stream_id.len(), 36, "a UUID string");
        let mut events = pump::<scheduler::Event>(response);
        let first = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.r#type(), scheduler::event::Type::Subscribed);
        let subscribed = first.subscribed.unwrap();
        Scheduler {
            url,
            stream_id,
            framework_id: subscribed.framework_id.clone(),
            events,
            subscribed,
        }
    }

    async fn call_raw(&self, call: &scheduler::Call) -> StatusCode {
        post(
            &self.url,
            call.encode_to_vec(),
            &[
                ("Content-Type", media::PROTOBUF),
                (STREAM_ID_HEADER, &self.stream_id),
            ],
        )
        .await
        .status()
    }

    async fn call(&self, call: scheduler::Call) {
        assert_eq!(self.call_raw(&call).await, StatusCode::ACCEPTED, "{call:?}");
    }

    fn base(&self, call_type: scheduler::call::Type) -> scheduler::Call {
        scheduler::Call {
            framework_id: Some(self.framework_id.clone()),
            r#type: Some(call_type as i32),
            ..Default::default()
        }
    }

    /// The next event of `wanted` type, skipping others.
    async fn expect(&mut self, wanted: scheduler::event::Type) -> scheduler::Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {wanted:?} event in time"))
                .expect("stream ended");
            if event.r#type() == wanted {
                return event;
            }
        }
    }

    /// The next UPDATE event.
    async fn update(&mut self) -> v1::TaskStatus {
        self.expect(scheduler::event::Type::Update)
            .await
            .update
            .unwrap()
            .status
    }

    /// Asserts no event of `unwanted` type arrives within `within`.
    async fn expect_none(&mut self, unwanted: scheduler::event::Type, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(event) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            let event = event.expect("stream ended");
            assert_ne!(event.r#type(), unwanted, "unexpected {event:?}");
        }
    }

    async fn offer(&mut self) -> v1::Offer {
        let event = self.expect(scheduler::event::Type::Offers).await;
        event.offers.unwrap().offers.into_iter().next().unwrap()
    }

    async fn decline(&self, offer: &v1::Offer, refuse_seconds: f64) {
        let mut call = self.base(scheduler::call::Type::Decline);
        call.decline = Some(scheduler::call::Decline {
            offer_ids: vec![offer.id.clone()],
            filters: Some(v1::Filters {
                refuse_seconds: Some(refuse_seconds),
            }),
        });
        self.call(call).await;
    }

    async fn launch(&self, offer: &v1::Offer, task: v1::TaskInfo) {
        let mut call = self.base(scheduler::call::Type::Accept);
        call.accept = Some(scheduler::call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![v1::offer::Operation {
                r#type: Some(v1::offer::operation::Type::Launch as i32),
                launch: Some(v1::offer::operation::Launch {
                    task_infos: vec![task],
                }),
                ..Default::default()
            }],
            filters: None,
        });
        self.call(call).await;
    }

    async fn acknowledge(&self, status: &v1::TaskStatus) {
        let mut call = self.base(scheduler::call::Type::Acknowledge);
        call.acknowledge = Some(scheduler::call::Acknowledge {
            agent_id: status.agent_id.clone().unwrap(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone().unwrap(),
        });
        self.call(call).await;
    }

    async fn reconcile(&self, tasks: Vec<(&str, Option<AgentId>)>) {
        let mut call = self.base(scheduler::call::Type::Reconcile);
        call.reconcile = Some(scheduler::call::Reconcile {
            tasks: tasks
                .into_iter()
                .map(|(task, agent_id)| scheduler::call::reconcile::Task {
                    task_id: TaskId { value: task.into() },
                    agent_id,
                })
                .collect(),
        });
        self.call(call).await;
    }
}

fn scalar(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    }
}

fn task(offer: &v1::Offer, task_id: &str, executor_id: &str, command: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        name: task_id.into(),
        task_id: TaskId {
            value: task_id.into(),
        },
        agent_id: offer.agent_id.clone(),
        resources: vec![scalar("cpus", 0.5), scalar("mem", 64.0)],
        executor: Some(v1::ExecutorInfo {
            executor_id: ExecutorId {
                value: executor_id.into(),
            },
            command: Some(v1::CommandInfo {
                value: Some(command.into()),
                ..Default::default()
            }),
            resources: vec![scalar("cpus", 0.1), scalar("mem", 32.0)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Finds a file named `name` under `root`, waiting for it to appear.
async fn find_file(root: &Path, name: &str) -> PathBuf {
    fn walk(dir: &Path, name: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(found) = walk(&path, name) {
                    return Some(found);
                }
            } else if path.file_name().is_some_and(|n| n == name)
                && path.metadata().is_ok_and(|m| m.len() > 0)
            {
                return Some(path);
            }
        }
        None
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(path) = walk(root, name) {
            // Give the writer a moment to finish.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return path;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} did not appear under {root:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fake executor talking to the agent's executor API.
struct FakeExecutor {
    url: String,
    framework_id: FrameworkId,
    executor_id: ExecutorId,
    events: mpsc::UnboundedReceiver<executor::Event>,
}

impl FakeExecutor {
    fn call(&self, call_type: executor::call::Type) -> executor::Call {
        executor::Call {
            executor_id: self.executor_id.clone(),
            framework_id: self.framework_id.clone(),
            r#type: Some(call_type as i32),
            ..Default::default()
        }
    }

    async fn subscribe(agent: &str, framework_id: &FrameworkId, executor_id: &str) -> FakeExecutor {
        let mut fake = FakeExecutor {
            url: format!("{agent}/slave(1)/api/v1/executor"),
            framework_id: framework_id.clone(),
            executor_id: ExecutorId {
                value: executor_id.into(),
            },
            events: mpsc::unbounded_channel().1,
        };
        let mut call = fake.call(executor::call::Type::Subscribe);
        call.subscribe = Some(executor::call::Subscribe::default());
        let response = post(
            &fake.url,
            call.encode_to_vec(),
            &[
                ("Content-Type", media::PROTOBUF),
                ("Accept", media::PROTOBUF),
            ],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        fake.events = pump(response);
        fake
    }

    async fn next(&mut self) -> executor::Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no executor event in time")
            .expect("executor stream ended")
    }

    async fn update(&self, task_id: &TaskId, state: TaskState) -> (StatusCode, Bytes) {
        let uuid = Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let mut call = self.call(executor::call::Type::Update);
        call.update = Some(executor::call::Update {
            status: v1::TaskStatus {
                task_id: task_id.clone(),
                state: state as i32,
                source: Some(task_status::Source::Executor as i32),
                uuid: Some(uuid.clone()),
                ..Default::default()
            },
        });
        let status = post(
            &self.url,
            call.encode_to_vec(),
            &[("Content-Type", media::PROTOBUF)],
        )
        .await
        .status();
        (status, uuid)
    }
}

#[tokio::test]
async fn subscribe_sends_subscribed_then_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), framework_info(None)).await;
    assert_eq!(scheduler.subscribed.heartbeat_interval_seconds, Some(0.5));
    let master_info = scheduler.subscribed.master_info.clone().unwrap();
    assert_eq!(master_info.version.as_deref(), Some("1.11.0"));
    assert!(cluster
        .master_url()
        .ends_with(&master_info.port.to_string()));
    assert!(!scheduler.framework_id.value.is_empty());
    // The first HEARTBEAT comes right after SUBSCRIBED, then one per interval.
    let next = tokio::time::timeout(WAIT, scheduler.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.r#type(), scheduler::event::Type::Heartbeat);
    scheduler.expect(scheduler::event::Type::Heartbeat).await;

    let version: serde_json::Value = reqwest::get(format!("{}/version", cluster.master_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["version"], "1.11.0");
    let health = reqwest::get(format!("{}/health", cluster.master_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    cluster.shutdown().await;
}

#[tokio::test]
async fn scheduler_endpoint_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let master = cluster.master_url();
    let url = format!("{master}/master/api/v1/scheduler");
    let subscribe = subscribe_call(framework_info(Some(3600.0))).encode_to_vec();
    let protobuf = ("Content-Type", media::PROTOBUF);

    let get = reqwest::get(&url).await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let check =
        |headers: Vec<(&'static str, &'static str)>, body: Vec<u8>, expected: StatusCode| {
            let url = url.clone();
            async move {
                let response = post(&url, body, &headers).await;
                assert_eq!(response.status(), expected, "headers {headers:?}");
            }
        };
    check(vec![], subscribe.clone(), StatusCode::BAD_REQUEST).await;
    check(
        vec![("Content-Type", "application/x-protobuf; charset=utf-8")],
        subscribe.clone(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    check(
        vec![("Content-Type", "text/plain")],
        subscribe.clone(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    check(
        vec![protobuf],
        b"\xff\xff\xff".to_vec(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    check(
        vec![protobuf, ("Accept", "application/recordio")],
        subscribe.clone(),
        StatusCode::NOT_ACCEPTABLE,
    )
    .await;
    check(
        vec![protobuf, (STREAM_ID_HEADER, "x")],
        subscribe.clone(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let unknown_type = scheduler::Call {
        r#type: Some(scheduler::call::Type::Unknown as i32),
        ..Default::default()
    };
    check(
        vec![protobuf],
        unknown_type.encode_to_vec(),
        StatusCode::NOT_IMPLEMENTED,
    )
    .await;
    check(
        vec![protobuf],
        scheduler::Call::default().encode_to_vec(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let mut mismatched = framework_info(None);
    mismatched.id = Some(FrameworkId { value: "a".into() });
    let mut mismatched = subscribe_call(mismatched);
    mismatched.framework_id = Some(FrameworkId { value: "b".into() });
    check(
        vec![protobuf],
        mismatched.encode_to_vec(),
        StatusCode::BAD_REQUEST,
    )
    .await;

    let scheduler = Scheduler::subscribe(&master, framework_info(Some(3600.0))).await;
    let revive = scheduler.base(scheduler::call::Type::Revive);
    let call_with = |stream_id: Option<&str>, call: &scheduler::Call| {
        let url = url.clone();
        let body = call.encode_to_vec();
        let stream_id = stream_id.map(str::to_string);
        async move {
            let mut headers = vec![protobuf];
            if let Some(stream_id) = &stream_id {
                headers.push((STREAM_ID_HEADER, stream_id.as_str()));
            }
            post(&url, body, &headers).await.status()
        }
    };
    assert_eq!(
        call_with(Some(&scheduler.stream_id), &revive).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call_with(None, &revive).await,
        StatusCode::BAD_REQUEST,
        "missing stream id"
    );
    assert_eq!(
        call_with(Some("other"), &revive).await,
        StatusCode::BAD_REQUEST,
        "wrong stream id"
    );
    let mut no_framework = revive.clone();
    no_framework.framework_id = None;
    assert_eq!(
        call_with(Some(&scheduler.stream_id), &no_framework).await,
        StatusCode::BAD_REQUEST
    );
    let mut unknown = revive.clone();
    unknown.framework_id = Some(FrameworkId {
        value: "nope".into(),
    });
    assert_eq!(
        call_with(Some(&scheduler.stream_id), &unknown).await,
        StatusCode::BAD_REQUEST
    );
    let mut bad_ack = scheduler.base(scheduler::call::Type::Acknowledge);
    bad_ack.acknowledge = Some(scheduler::call::Acknowledge {
        uuid: Bytes::from_static(b"short"),
        ..Default::default()
    });
    assert_eq!(
        call_with(Some(&scheduler.stream_id), &bad_ack).await,
        StatusCode::BAD_REQUEST
    );

    // Dropping the stream disconnects the framework; with a failover timeout it
    // stays known, so calls get 403 until it re-subscribes.
    let stream_id = scheduler.stream_id.clone();
    let framework_id = scheduler.framework_id.clone();
    drop(scheduler);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = call_with(Some(&stream_id), &revive).await;
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(tokio::time::Instant::now() < deadline, "never disconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut info = framework_info(Some(3600.0));
    info.id = Some(framework_id.clone());
    let again = Scheduler::subscribe(&master, info).await;
    assert_eq!(
        again.framework_id, framework_id,
        "re-subscription keeps the framework"
    );
    assert_eq!(
        call_with(Some(&again.stream_id), &revive).await,
        StatusCode::ACCEPTED
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn second_subscription_fails_over_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut first = Scheduler::subscribe(&cluster.master_url(), framework_info(Some(60.0))).await;
    let mut info = framework_info(Some(60.0));
    info.id = Some(first.framework_id.clone());
    let second = Scheduler::subscribe(&cluster.master_url(), info).await;
    let error = first.expect(scheduler::event::Type::Error).await;
    assert_eq!(error.error.unwrap().message, "Framework failed over");
    // The old stream ends after the ERROR.
    let end =
        tokio::time::timeout(WAIT, async { while first.events.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "old stream did not end");
    assert_eq!(
        second
            .call_raw(&second.base(scheduler::call::Type::Revive))
            .await,
        StatusCode::ACCEPTED
    );

    // TEARDOWN removes the framework for good.
    second
        .call(second.base(scheduler::call::Type::Teardown))
        .await;
    let mut info = framework_info(None);
    info.id = Some(second.framework_id.clone());
    let response = post(
        &format!("{}/api/v1/scheduler", cluster.master_url()),
        subscribe_call(info).encode_to_vec(),
        &[
            ("Content-Type", media::PROTOBUF),
            ("Accept", media::PROTOBUF),
        ],
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "refusals come as an ERROR event"
    );
    let mut events = pump::<scheduler::Event>(response);
    let error = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error.error.unwrap().message, "Framework has been removed");
    assert!(
        tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .is_none(),
        "then EOF"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn offers_carry_the_agent_resources_and_declines_filter_them() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), framework_info(None)).await;
    let offer = scheduler.offer().await;
    assert_eq!(offer.framework_id, scheduler.framework_id);
    assert_eq!(offer.hostname, "127.0.0.1");
    let find = |name: &str| {
        offer
            .resources
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("cpus").scalar.unwrap().value, 2.0);
    assert_eq!(find("mem").scalar.unwrap().value, 1024.0);
    assert_eq!(find("disk").scalar.unwrap().value, 2048.0);
    let ports = find("ports").ranges.unwrap().range;
    assert_eq!((ports[0].begin, ports[0].end), (31000, 31009));
    #[allow(deprecated)]
    let role = find("cpus").role;
    assert_eq!(role.as_deref(), Some("*"));
    assert_eq!(
        find("cpus").allocation_info.unwrap().role.as_deref(),
        Some("*")
    );
    assert_eq!(offer.attributes[0].name, "rack");
    assert_eq!(offer.attributes[0].text.as_ref().unwrap().value, "a");

    // While an offer is outstanding, nothing else is offered.
    scheduler
        .expect_none(scheduler::event::Type::Offers, Duration::from_millis(400))
        .await;
    scheduler.decline(&offer, 1.5).await;
    scheduler
        .expect_none(scheduler::event::Type::Offers, Duration::from_millis(1200))
        .await;
    let again = scheduler.offer().await;
    assert_ne!(again.id, offer.id, "offer IDs are single-use");

    // REVIVE clears the filter at once.
    scheduler.decline(&again, 60.0).await;
    scheduler
        .expect_none(scheduler::event::Type::Offers, Duration::from_millis(400))
        .await;
    scheduler
        .call(scheduler.base(scheduler::call::Type::Revive))
        .await;
    let revived = scheduler.offer().await;

    // SUPPRESS stops offers.
    scheduler
        .call(scheduler.base(scheduler::call::Type::Suppress))
        .await;
    scheduler.decline(&revived, 0.0).await;
    scheduler
        .expect_none(scheduler::event::Type::Offers, Duration::from_millis(500))
        .await;

    // A stale offer: the task is lost with REASON_INVALID_OFFERS and no uuid.
    scheduler
        .launch(&revived, task(&revived, "t-stale", "e-stale", "sleep 5"))
        .await;
    let status = scheduler.update().await;
    assert_eq!(status.state(), TaskState::TaskLost);
    assert_eq!(status.reason(), task_status::Reason::InvalidOffers);
    assert!(status.uuid.is_none());
    cluster.shutdown().await;
}

#[tokio::test]
async fn shell_executor_gets_the_mesos_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut info = framework_info(None);
    info.checkpoint = Some(true);
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), info).await;
    let offer = scheduler.offer().await;
    let mut launch = task(
        &offer,
        "t-env",
        "e-env",
        "env > env.txt; echo started; exec sleep 30",
    );
    let executor = launch.executor.as_mut().unwrap();
    executor.command.as_mut().unwrap().environment = Some(v1::Environment {
        variables: vec![v1::environment::Variable {
            name: "CUSTOM".into(),
            value: Some("yes".into()),
            ..Default::default()
        }],
    });
    scheduler.launch(&offer, launch).await;
    let env_file = find_file(dir.path(), "env.txt").await;
    let sandbox = env_file.parent().unwrap().to_path_buf();
    let text = std::fs::read_to_string(&env_file).unwrap();
    let env: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let get = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let agent = cluster.agent_urls()[0]
        .trim_start_matches("http://")
        .to_string();
    let sandbox_text = sandbox.display().to_string();
    assert_eq!(
        get("MESOS_FRAMEWORK_ID"),
        Some(scheduler.framework_id.value.as_str())
    );
    assert_eq!(get("MESOS_EXECUTOR_ID"), Some("e-env"));
    assert_eq!(get("MESOS_AGENT_ENDPOINT"), Some(agent.as_str()));
    assert_eq!(
        get("MESOS_SLAVE_PID"),
        Some(format!("slave(1)@{agent}").as_str())
    );
    assert_eq!(get("MESOS_SLAVE_ID"), Some(offer.agent_id.value.as_str()));
    assert_eq!(get("MESOS_DIRECTORY"), Some(sandbox_text.as_str()));
    assert_eq!(get("MESOS_SANDBOX"), Some(sandbox_text.as_str()));
    assert_eq!(get("MESOS_CHECKPOINT"), Some("1"));
    assert_eq!(get("MESOS_HTTP_COMMAND_EXECUTOR"), Some("0"));
    assert_eq!(get("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"), Some("500ms"));
    assert_eq!(get("MESOS_RECOVERY_TIMEOUT"), Some("15mins"));
    assert_eq!(
        get("MESOS_SUBSCRIPTION_BACKOFF_MAX"),
        Some("1secs"),
        "the re-registration timeout"
    );
    assert_eq!(get("CUSTOM"), Some("yes"));
    assert!(get("PATH").is_some());
    assert!(
        get("HOME").is_none(),
        "the agent's environment is not inherited"
    );
    let expected_tail = format!(
        "agents/{}/frameworks/{}/executors/e-env/runs",
        offer.agent_id.value, scheduler.framework_id.value
    );
    assert!(
        sandbox.parent().unwrap().ends_with(&expected_tail),
        "{sandbox:?}"
    );
    let stdout = find_file(&sandbox, "stdout").await;
    assert_eq!(std::fs::read_to_string(stdout).unwrap(), "started\n");
    cluster.shutdown().await;
}

#[tokio::test]
async fn executor_updates_flow_to_the_scheduler_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let agent = cluster.agent_urls()[0].clone();
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), framework_info(None)).await;
    let offer = scheduler.offer().await;
    // The launched process only sleeps; the test plays its executor.
    scheduler
        .launch(&offer, task(&offer, "t1", "e1", "exec sleep 30"))
        .await;

    let unknown = FakeExecutor {
        url: format!("{agent}/api/v1/executor"),
        framework_id: scheduler.framework_id.clone(),
        executor_id: ExecutorId { value: "e1".into() },
        events: mpsc::unbounded_channel().1,
    };
    let (status, _) = unknown
        .update(&TaskId { value: "t1".into() }, TaskState::TaskRunning)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not subscribed yet");

    let mut executor = FakeExecutor::subscribe(&agent, &scheduler.framework_id, "e1").await;
    let subscribed = executor.next().await;
    assert_eq!(subscribed.r#type(), executor::event::Type::Subscribed);
    let subscribed = subscribed.subscribed.unwrap();
    assert_eq!(subscribed.executor_info.executor_id.value, "e1");
    assert_eq!(subscribed.agent_info.id.as_ref(), Some(&offer.agent_id));
    assert!(subscribed.container_id.is_some());
    let launch = executor.next().await;
    assert_eq!(launch.r#type(), executor::event::Type::Launch);
    let task_id = launch.launch.unwrap().task.task_id;
    assert_eq!(task_id.value, "t1");

    let (status, uuid) = executor.update(&task_id, TaskState::TaskRunning).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let acknowledged = executor.next().await;
    assert_eq!(acknowledged.r#type(), executor::event::Type::Acknowledged);
    assert_eq!(acknowledged.acknowledged.unwrap().uuid, uuid);

    let running = scheduler.update().await;
    assert_eq!(running.state(), TaskState::TaskRunning);
    assert_eq!(running.uuid.as_ref(), Some(&uuid));
    assert_eq!(running.agent_id.as_ref(), Some(&offer.agent_id));
    // Not acknowledged: resent after the retry interval.
    let resent = scheduler.update().await;
    assert_eq!(resent.uuid.as_ref(), Some(&uuid));
    scheduler.acknowledge(&running).await;
    scheduler
        .expect_none(scheduler::event::Type::Update, Duration::from_millis(1000))
        .await;

    // Invalid updates are refused.
    let mut bad = executor.call(executor::call::Type::Update);
    bad.update = Some(executor::call::Update {
        status: v1::TaskStatus {
            task_id: task_id.clone(),
            state: TaskState::TaskRunning as i32,
            source: Some(task_status::Source::Executor as i32),
            uuid: Some(Bytes::from_static(&[0; 16])),
            ..Default::default()
        },
    });
    let response = post(
        &executor.url,
        bad.encode_to_vec(),
        &[("Content-Type", media::PROTOBUF)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // MESSAGE both ways.
    let mut message = scheduler.base(scheduler::call::Type::Message);
    message.message = Some(scheduler::call::Message {
        agent_id: offer.agent_id.clone(),
        executor_id: ExecutorId { value: "e1".into() },
        data: Bytes::from_static(b"ping"),
    });
    scheduler.call(message).await;
    let event = executor.next().await;
    assert_eq!(event.message.unwrap().data, Bytes::from_static(b"ping"));
    let mut reply = executor.call(executor::call::Type::Message);
    reply.message = Some(executor::call::Message {
        data: Bytes::from_static(b"pong"),
    });
    let response = post(
        &executor.url,
        reply.encode_to_vec(),
        &[("Content-Type", media::PROTOBUF)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let event = scheduler.expect(scheduler::event::Type::Message).await;
    assert_eq!(event.message.unwrap().data, Bytes::from_static(b"pong"));

    // Reconciliation: known task → its latest state, no uuid.
    scheduler.reconcile(vec![("t1", None)]).await;
    let answer = scheduler.update().await;
    assert_eq!(answer.state(), TaskState::TaskRunning);
    assert_eq!(answer.reason(), task_status::Reason::Reconciliation);
    assert!(answer.uuid.is_none());
    scheduler.reconcile(vec![]).await;
    assert_eq!(scheduler.update().await.task_id.value, "t1");
    scheduler
        .reconcile(vec![("ghost", Some(offer.agent_id.clone()))])
        .await;
    assert_eq!(scheduler.update().await.state(), TaskState::TaskLost);

    // KILL reaches the executor; its TASK_KILLED ends the task.
    let mut kill = scheduler.base(scheduler::call::Type::Kill);
    kill.kill = Some(scheduler::call::Kill {
        task_id: task_id.clone(),
        agent_id: Some(offer.agent_id.clone()),
        kill_policy: None,
    });
    scheduler.call(kill).await;
    let event = executor.next().await;
    assert_eq!(event.r#type(), executor::event::Type::Kill);
    assert_eq!(event.kill.unwrap().task_id, task_id);
    executor.update(&task_id, TaskState::TaskKilled).await;
    let killed = scheduler.update().await;
    assert_eq!(killed.state(), TaskState::TaskKilled);
    scheduler.acknowledge(&killed).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    scheduler
        .reconcile(vec![("t1", Some(offer.agent_id.clone()))])
        .await;
    assert_eq!(
        scheduler.update().await.state(),
        TaskState::TaskLost,
        "forgotten after the terminal ACK"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn partition_aware_reconciliation_answers_gone_and_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut info = framework_info(None);
    info.capabilities = vec![v1::framework_info::Capability {
        r#type: Some(v1::framework_info::capability::Type::PartitionAware as i32),
    }];
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), info).await;
    let offer = scheduler.offer().await;
    scheduler
        .reconcile(vec![("ghost", Some(offer.agent_id.clone()))])
        .await;
    assert_eq!(scheduler.update().await.state(), TaskState::TaskGone);
    scheduler
        .reconcile(vec![(
            "ghost",
            Some(AgentId {
                value: "nowhere".into(),
            }),
        )])
        .await;
    assert_eq!(scheduler.update().await.state(), TaskState::TaskUnknown);
    cluster.shutdown().await;
}

#[tokio::test]
async fn executor_exit_fails_its_tasks_and_reports_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), framework_info(None)).await;
    let offer = scheduler.offer().await;
    scheduler
        .launch(&offer, task(&offer, "t-exit", "e-exit", "exit 3"))
        .await;
    let failed = scheduler.update().await;
    assert_eq!(failed.state(), TaskState::TaskFailed);
    assert_eq!(failed.source(), task_status::Source::Agent);
    assert_eq!(failed.reason(), task_status::Reason::ExecutorTerminated);
    assert!(
        failed.uuid.is_some(),
        "agent-generated updates are acknowledged"
    );
    let failure = scheduler
        .expect(scheduler::event::Type::Failure)
        .await
        .failure
        .unwrap();
    assert_eq!(failure.executor_id.unwrap().value, "e-exit");
    assert_eq!(failure.status, Some(3 << 8), "a wait status");
    scheduler.acknowledge(&failed).await;

    // Invalid launches get TASK_ERROR from the master.
    let offer = scheduler.offer().await;
    let mut greedy = task(&offer, "t-big", "e-big", "sleep 1");
    greedy.resources = vec![scalar("cpus", 64.0)];
    scheduler.launch(&offer, greedy).await;
    let error = scheduler.update().await;
    assert_eq!(error.state(), TaskState::TaskError);
    assert!(error.uuid.is_none());
    cluster.shutdown().await;
}

#[test]
fn devcluster_thread_serves_outside_any_runtime() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let thread = mesos_stateful_devcluster::DevClusterThread::spawn(config(dir.path())).unwrap();
    let address = thread
        .master_url()
        .trim_start_matches("http://")
        .to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    thread.shutdown();
}

/// Reads a RecordIO stream of JSON events into a channel, as raw text.
fn pump_json(response: reqwest::Response) -> mpsc::UnboundedReceiver<String> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut decoder = Decoder::new();
        let mut body = response.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            decoder.push(&chunk);
            while let Ok(Some(record)) = decoder.next_record() {
                let Ok(text) = String::from_utf8(record.to_vec()) else {
                    return;
                };
                if sender.send(text).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// The next JSON event of `wanted` type (its raw text and its value), skipping others.
async fn expect_json(
    events: &mut mpsc::UnboundedReceiver<String>,
    wanted: &str,
) -> (String, serde_json::Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let raw = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {wanted} event in time"))
            .expect("stream ended");
        let event: serde_json::Value = serde_json::from_str(&raw).unwrap();
        if event["type"] == wanted {
            return (raw, event);
        }
    }
}

async fn post_json(url: &str, body: serde_json::Value, headers: &[(&str, &str)]) -> StatusCode {
    let mut all = vec![("Content-Type", media::JSON)];
    all.extend_from_slice(headers);
    post(url, body.to_string().into_bytes(), &all)
        .await
        .status()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn json_scheduler_and_executor_speak_mesos_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // Mesos's real interval, to see it on the wire; the first HEARTBEAT is immediate.
    config.heartbeat_interval = Duration::from_secs(15);
    let cluster = DevCluster::start(config).await.unwrap();
    let url = format!("{}/api/v1/scheduler", cluster.master_url());
    let agent = cluster.agent_urls()[0].clone();

    // No Accept header: the stream is JSON.
    let subscribe = serde_json::json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {"user": "nobody", "name": "json-it"}},
    });
    let response = post(
        &url,
        subscribe.to_string().into_bytes(),
        &[("Content-Type", media::JSON)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], media::JSON);
    let stream_id = response.headers()[STREAM_ID_HEADER]
        .to_str()
        .unwrap()
        .to_string();
    let mut events = pump_json(response);
    let first = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.contains(r#""type":"SUBSCRIBED""#), "{first}");
    let subscribed: serde_json::Value = serde_json::from_str(&first).unwrap();
    let subscribed = &subscribed["subscribed"];
    assert_eq!(
        subscribed["heartbeat_interval_seconds"].as_f64(),
        Some(15.0)
    );
    let framework_id = subscribed["framework_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!framework_id.is_empty());
    let master_info = &subscribed["master_info"];
    assert_eq!(master_info["version"], "1.11.0");
    assert!(master_info["port"].is_u64(), "{master_info}");
    assert!(master_info.get("heartbeatIntervalSeconds").is_none());
    let second = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second, r#"{"type":"HEARTBEAT"}"#);

    // OFFERS arrive as JSON with enum names; launch on the first.
    let (_, offers) = expect_json(&mut events, "OFFERS").await;
    let offer = &offers["offers"]["offers"][0];
    let offer_id = offer["id"].clone();
    let agent_id = offer["agent_id"].clone();
    let cpus = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|resource| resource["name"] == "cpus")
        .unwrap();
    assert_eq!(cpus["type"], "SCALAR");
    assert_eq!(cpus["scalar"]["value"].as_f64(), Some(2.0));
    let headers = [(STREAM_ID_HEADER, stream_id.as_str())];
    let accept = serde_json::json!({
        "framework_id": {"value": framework_id},
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [offer_id],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                "name": "t1",
                "task_id": {"value": "t1"},
                "agent_id": agent_id,
                "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": "0.5"}},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
                ],
                "executor": {
                    "executor_id": {"value": "e1"},
                    "command": {"value": "exec sleep 30"},
                    "resources": [
                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                        {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                    ],
                },
            }]}}],
            "filters": {"refuse_seconds": 0},
        },
    });
    assert_eq!(
        post_json(&url, accept, &headers).await,
        StatusCode::ACCEPTED
    );

    // The remainder comes back; DECLINE it by JSON for good ("Infinity" as a string).
    let (_, offers) = expect_json(&mut events, "OFFERS").await;
    let remainder = offers["offers"]["offers"][0]["id"].clone();
    assert_ne!(remainder, offer_id);
    let decline = serde_json::json!({
        "framework_id": {"value": framework_id},
        "type": "DECLINE",
        "decline": {"offer_ids": [remainder], "filters": {"refuse_seconds": "Infinity"}},
    });
    assert_eq!(
        post_json(&url, decline, &headers).await,
        StatusCode::ACCEPTED
    );

    // A JSON executor subscribes (JSON stream, asked for explicitly) and gets its task.
    let executor_url = format!("{agent}/api/v1/executor");
    let ids = serde_json::json!({
        "executor_id": {"value": "e1"},
        "framework_id": {"value": framework_id},
    });
    let mut executor_subscribe = ids.clone();
    executor_subscribe["type"] = "SUBSCRIBE".into();
    executor_subscribe["subscribe"] = serde_json::json!({});
    let response = post(
        &executor_url,
        executor_subscribe.to_string().into_bytes(),
        &[("Content-Type", media::JSON), ("Accept", media::JSON)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], media::JSON);
    let mut executor_events = pump_json(response);
    let (_, executor_subscribed) = expect_json(&mut executor_events, "SUBSCRIBED").await;
    let executor_subscribed = &executor_subscribed["subscribed"];
    assert_eq!(
        executor_subscribed["executor_info"]["executor_id"]["value"],
        "e1"
    );
    // CommandInfo.shell has a default and is emitted although the scheduler left it unset.
    assert_eq!(
        executor_subscribed["executor_info"]["command"]["shell"],
        true
    );
    assert!(executor_subscribed["container_id"]["value"].is_string());
    let (_, launch) = expect_json(&mut executor_events, "LAUNCH").await;
    assert_eq!(launch["launch"]["task"]["task_id"]["value"], "t1");

    // UPDATE with a Base64 uuid; the agent acknowledges it with the same uuid.
    let uuid = base64(uuid::Uuid::new_v4().as_bytes());
    let mut update = ids.clone();
    update["type"] = "UPDATE".into();
    update["update"] = serde_json::json!({"status": {
        "task_id": {"value": "t1"},
        "state": "TASK_RUNNING",
        "source": "SOURCE_EXECUTOR",
        "uuid": uuid,
    }});
    assert_eq!(
        post_json(&executor_url, update.clone(), &[]).await,
        StatusCode::ACCEPTED
    );
    let (_, acknowledged) = expect_json(&mut executor_events, "ACKNOWLEDGED").await;
    assert_eq!(acknowledged["acknowledged"]["uuid"], uuid.as_str());
    // A status source given as a number is a bad request on the agent too.
    update["update"]["status"]["source"] = 1.into();
    assert_eq!(
        post_json(&executor_url, update, &[]).await,
        StatusCode::BAD_REQUEST
    );

    // The scheduler sees the update and ACKNOWLEDGEs it with the Base64 uuid.
    let (raw, running) = expect_json(&mut events, "UPDATE").await;
    let status = &running["update"]["status"];
    assert_eq!(status["state"], "TASK_RUNNING", "{raw}");
    assert_eq!(status["uuid"], uuid.as_str());
    assert_eq!(status["agent_id"], agent_id);
    let acknowledge = serde_json::json!({
        "framework_id": {"value": framework_id},
        "type": "ACKNOWLEDGE",
        "acknowledge": {
            "agent_id": status["agent_id"],
            "task_id": status["task_id"],
            "uuid": status["uuid"],
        },
    });
    assert_eq!(
        post_json(&url, acknowledge, &headers).await,
        StatusCode::ACCEPTED
    );
    // Acknowledged: no resend; declined for good: no more offers.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
    while let Ok(Some(raw)) = tokio::time::timeout_at(deadline, events.recv()).await {
        let event: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_ne!(event["type"], "UPDATE", "{raw}");
        assert_ne!(event["type"], "OFFERS", "{raw}");
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn json_calls_are_checked_like_mesos_does() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let url = format!("{}/master/api/v1/scheduler", cluster.master_url());
    let executor_url = format!("{}/api/v1/executor", cluster.agent_urls()[0]);
    let info = serde_json::json!({"user": "nobody", "name": "json-it"});

    // camelCase keys are ignored, so the required framework_info is missing.
    let camel = serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"frameworkInfo": info}});
    assert_eq!(post_json(&url, camel, &[]).await, StatusCode::BAD_REQUEST);
    // An enum given as a number.
    let numeric = serde_json::json!({"type": 1, "subscribe": {"framework_info": info}});
    assert_eq!(post_json(&url, numeric, &[]).await, StatusCode::BAD_REQUEST);
    // Invalid JSON, and JSON of the wrong shape.
    let response = post(
        &url,
        b"{\"type\":".to_vec(),
        &[("Content-Type", media::JSON)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        post_json(&url, serde_json::json!(["SUBSCRIBE"]), &[]).await,
        StatusCode::BAD_REQUEST
    );
    // The content type is compared byte for byte.
    let valid = serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}});
    let response = post(
        &url,
        valid.to_string().into_bytes(),
        &[("Content-Type", "application/json; charset=utf-8")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A JSON call may still ask for a protobuf stream.
    let response = post(
        &url,
        valid.to_string().into_bytes(),
        &[("Content-Type", media::JSON), ("Accept", media::PROTOBUF)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], media::PROTOBUF);
    let mut events = pump::<scheduler::Event>(response);
    let first = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.r#type(), scheduler::event::Type::Subscribed);
    // Neither encoding acceptable.
    let response = post(
        &url,
        valid.to_string().into_bytes(),
        &[("Content-Type", media::JSON), ("Accept", "text/html")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);

    // The executor API: required IDs missing, and an unknown executor.
    let heartbeat = serde_json::json!({"type": "HEARTBEAT"});
    assert_eq!(
        post_json(&executor_url, heartbeat, &[]).await,
        StatusCode::BAD_REQUEST
    );
    let heartbeat = serde_json::json!({
        "executor_id": {"value": "e"},
        "framework_id": {"value": "f"},
        "type": "HEARTBEAT",
    });
    assert_eq!(
        post_json(&executor_url, heartbeat, &[]).await,
        StatusCode::ACCEPTED
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn redirect_names_the_single_master() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let master = cluster.master_url();
    let authority = master.trim_start_matches("http://").to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/redirect", "/master/redirect"] {
        let response = client.get(format!("{master}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT, "{path}");
        assert_eq!(
            response.headers()["location"],
            format!("//{authority}").as_str(),
            "{path}"
        );
    }
    // Every master endpoint also answers under the `/master` prefix.
    for path in ["/master/version", "/master/health"] {
        let response = client.get(format!("{master}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // The agents are not masters.
    let agent = &cluster.agent_urls()[0];
    let response = client
        .get(format!("{agent}/master/redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    cluster.shutdown().await;
}
