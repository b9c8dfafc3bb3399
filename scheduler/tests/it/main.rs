//! Conformance tests of the scheduler client against devcluster, a scripted fake
//! master and a real ZooKeeper.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesos_stateful_actors::mesos::{calls, MesosCalls};
use mesos_stateful_proto::v1::scheduler::{call, event, Call, Event};
use mesos_stateful_proto::{media, v1, STREAM_ID_HEADER};
use mesos_stateful_scheduler::{
    ClientOptions, Credentials, FrameworkSettings, MesosClient, SchedulerError,
};
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use support::{devcluster, eventually, subscribed, FakeMaster, Recorded, Reply, ZooKeeper};

type Events = Arc<Mutex<Vec<Event>>>;

fn quick() -> ClientOptions {
    ClientOptions {
        missed_heartbeats: 3,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..ClientOptions::default()
    }
}

/// Runs `client` in a task, recording events; the sender stops it.
fn spawn_run(
    client: &MesosClient,
) -> (
    Events,
    oneshot::Sender<()>,
    JoinHandle<Result<(), SchedulerError>>,
) {
    let events: Events = Arc::default();
    let recorded = events.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let client = client.clone();
    let task = tokio::spawn(async move {
        client
            .run(
                move |event| {
                    recorded.lock().unwrap().push(event);
                    async {}
                },
                async move {
                    let _ = stopped.await;
                },
            )
            .await
    });
    (events, stop, task)
}

fn count(events: &Events, kind: event::Type) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.r#type == Some(kind as i32))
        .count()
}

fn framework_id_of(events: &Events) -> Option<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| e.subscribed.as_ref().map(|s| s.framework_id.value.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_keeps_the_stream_through_short_heartbeats_and_surfaces_failover() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = devcluster(dir.path(), Duration::from_millis(200)).await;
    let client = MesosClient::with_options(
        &cluster.master_url(),
        FrameworkSettings::default(),
        None,
        quick(),
    )
    .unwrap();
    let (events, _stop, task) = spawn_run(&client);
    assert!(
        eventually(Duration::from_secs(10), || framework_id_of(&events)
            .is_some())
        .await
    );
    // The watchdog (3 × 200 ms) never fires while heartbeats flow.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&events, event::Type::Subscribed), 1);
    assert!(count(&events, event::Type::Heartbeat) >= 4);
    assert_eq!(client.subscribed_master(), Some(cluster.master_url()));
    let framework_id = framework_id_of(&events).unwrap();
    assert_eq!(client.framework_id(), Some(framework_id.clone()));

    // Another scheduler subscribes with our framework id: the master fails us over.
    let mut info = FrameworkSettings::default().framework_info(Some(framework_id.clone()));
    info.name = "intruder".into();
    let takeover = Call {
        framework_id: Some(v1::FrameworkId {
            value: framework_id.clone(),
        }),
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(call::Subscribe {
            framework_info: info,
            ..Default::default()
        }),
        ..Default::default()
    };
    let raw = reqwest::Client::new()
        .post(format!("{}/api/v1/scheduler", cluster.master_url()))
        .header("Content-Type", media::PROTOBUF)
        .header("Accept", media::PROTOBUF)
        .body(takeover.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 200);
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    match result {
        Err(SchedulerError::Refused(message)) => assert_eq!(message, "Framework failed over"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(raw);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_the_same_framework_id_after_the_master_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = devcluster(dir.path(), Duration::from_millis(200)).await;
    let url = cluster.master_url();
    let client =
        MesosClient::with_options(&url, FrameworkSettings::default(), None, quick()).unwrap();
    let (events, stop, task) = spawn_run(&client);
    assert!(
        eventually(Duration::from_secs(10), || framework_id_of(&events)
            .is_some())
        .await
    );
    let framework_id = framework_id_of(&events).unwrap();
    cluster.shutdown().await;

    // A new master on the same address knows nothing of us; re-SUBSCRIBE recovers us.
    let restarted =
        mesos_stateful_devcluster::DevCluster::start(mesos_stateful_devcluster::DevClusterConfig {
            listen: url.trim_start_matches("http://").parse().unwrap(),
            work_dir: dir.path().join("second"),
            heartbeat_interval: Duration::from_millis(200),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(15), || count(
            &events,
            event::Type::Subscribed
        ) >= 2)
        .await
    );
    let ids: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.subscribed.as_ref().map(|s| s.framework_id.value.clone()))
        .collect();
    assert!(ids.iter().all(|id| *id == framework_id), "{ids:?}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_auth_and_403_requeue_against_a_silent_master() {
    // Streams go silent after SUBSCRIBED; the first call is answered 403.
    let master = FakeMaster::start(|request: &Recorded, _| {
        if request.call.r#type == Some(call::Type::Subscribe as i32) {
            Reply::SilentStream(
                uuid_like(request.headers.len()),
                vec![subscribed("fw-fake", 0.1)],
            )
        } else if request.headers.get("mesos-stream-id").map(String::as_str)
            == Some(uuid_like_first())
        {
            Reply::Status(403, Vec::new())
        } else {
            Reply::Status(202, Vec::new())
        }
    })
    .await;
    let settings = FrameworkSettings {
        credentials: Some(Credentials::new("fw-principal", "s3cret").unwrap()),
        ..FrameworkSettings::default()
    };
    let client = MesosClient::with_options(&master.url, settings, None, quick()).unwrap();
    let (events, stop, task) = spawn_run(&client);
    assert!(
        eventually(Duration::from_secs(5), || framework_id_of(&events)
            .is_some())
        .await
    );
    client.send(calls::kill("task-1", Some("agent-1")));
    // 3 × 100 ms of silence kills the stream; the client re-subscribes as fw-fake and
    // resends the KILL that met a 403 on the old stream.
    let delivered = eventually(Duration::from_secs(10), || {
        master
            .requests()
            .iter()
            .filter(|r| r.call.r#type == Some(call::Type::Kill as i32))
            .count()
            >= 2
    })
    .await;
    assert!(delivered, "{:#?}", master.requests());
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    let requests = master.requests();
    let subscribes: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.call.r#type == Some(call::Type::Subscribe as i32))
        .collect();
    assert!(subscribes.len() >= 2);
    assert!(subscribes[0].call.framework_id.is_none());
    let again = &subscribes[1].call;
    assert_eq!(again.framework_id.as_ref().unwrap().value, "fw-fake");
    let info = &again.subscribe.as_ref().unwrap().framework_info;
    assert_eq!(info.id.as_ref().unwrap().value, "fw-fake");
    assert_eq!(info.principal.as_deref(), Some("fw-principal"));
    assert!(!subscribes[0]
        .headers
        .contains_key(&STREAM_ID_HEADER.to_ascii_lowercase()));
    for request in &requests {
        assert_eq!(
            request.headers.get("authorization").map(String::as_str),
            Some("Basic ZnctcHJpbmNpcGFsOnMzY3JldA=="),
            "{request:?}"
        );
        assert_eq!(
            request.headers.get("content-type").map(String::as_str),
            Some(media::PROTOBUF)
        );
    }
    let kills: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.call.r#type == Some(call::Type::Kill as i32))
        .collect();
    assert_ne!(
        kills[0].headers.get("mesos-stream-id"),
        kills[1].headers.get("mesos-stream-id")
    );
    assert_eq!(
        kills[1].call.framework_id.as_ref().unwrap().value,
        "fw-fake"
    );
}

/// Stream ids of the fake master: the first SUBSCRIBE (no stream id header, fewer
/// headers than later ones does not matter) gets a fixed id; later ones differ.
fn uuid_like(seed: usize) -> String {
    static SUBSCRIPTIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SUBSCRIPTIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if n == 0 {
        uuid_like_first().to_string()
    } else {
        format!("stream-{n}-{seed}")
    }
}

fn uuid_like_first() -> &'static str {
    "stream-first"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_lists_skip_dead_and_unavailable_masters_and_follow_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = devcluster(dir.path(), Duration::from_secs(1)).await;
    let leader = cluster.master_url();
    let unavailable = FakeMaster::start(|_: &Recorded, _| Reply::Status(503, Vec::new())).await;
    let location = format!(
        "{}/master/api/v1/scheduler",
        leader.trim_start_matches("http:")
    );
    let redirecting = FakeMaster::start(move |_: &Recorded, _| {
        Reply::Status(307, vec![("Location".into(), location.clone())])
    })
    .await;
    // A closed port, a master without a leader, then a follower that redirects.
    let spec = format!("http://127.0.0.1:1,{},{}", unavailable.url, redirecting.url);
    let client =
        MesosClient::with_options(&spec, FrameworkSettings::default(), None, quick()).unwrap();
    let (events, stop, task) = spawn_run(&client);
    assert!(
        eventually(Duration::from_secs(15), || framework_id_of(&events)
            .is_some())
        .await
    );
    assert_eq!(client.subscribed_master(), Some(format!("{leader}/master")));
    assert!(!unavailable.requests().is_empty());
    assert_eq!(redirecting.requests()[0].path, "/api/v1/scheduler");
    // The redirect was followed by re-POSTing the SUBSCRIBE body.
    assert_eq!(
        redirecting.requests()[0].call.r#type,
        Some(call::Type::Subscribe as i32)
    );
    // Calls go to the leader too: an implicit reconciliation is accepted.
    client.send(calls::reconcile(Vec::new()));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_and_bad_requests_end_the_run_with_clear_errors() {
    let unauthorized = FakeMaster::start(|_: &Recorded, _| {
        Reply::Status(
            401,
            vec![(
                "WWW-Authenticate".into(),
                "Basic realm=\"mesos-master-scheduler\"".into(),
            )],
        )
    })
    .await;
    let client = MesosClient::with_options(
        &unauthorized.url,
        FrameworkSettings::default(),
        None,
        quick(),
    )
    .unwrap();
    let (_, _stop, task) = spawn_run(&client);
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(SchedulerError::Unauthorized(_))),
        "{result:?}"
    );

    let bad = FakeMaster::start(|_: &Recorded, _| Reply::Status(400, Vec::new())).await;
    let client =
        MesosClient::with_options(&bad.url, FrameworkSettings::default(), None, quick()).unwrap();
    let (_, _stop, task) = spawn_run(&client);
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(SchedulerError::Refused(_))),
        "{result:?}"
    );
}

fn master_info_json(url: &str) -> String {
    let address = url.trim_start_matches("http://");
    let (ip, port) = address.rsplit_once(':').unwrap();
    format!(
        r#"{{"id":"m-{port}","ip":16777343,"port":{port},"pid":"master@{ip}:{port}","hostname":"localhost","version":"1.11.0","address":{{"hostname":"localhost","ip":"{ip}","port":{port}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_detection_follows_the_lowest_sequence() {
    let Some(zk) = ZooKeeper::start().await else {
        panic!("ZooKeeper is not installed (apt-get install zookeeper)");
    };
    let dir = tempfile::tempdir().unwrap();
    let first = devcluster(&dir.path().join("a"), Duration::from_millis(300)).await;
    let second = devcluster(&dir.path().join("b"), Duration::from_millis(300)).await;

    // Two contending "masters", registered as Mesos masters do.
    let zk_client = zookeeper_client::Client::connect(&zk.address)
        .await
        .unwrap();
    let persistent =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    zk_client.create("/mesos", b"", &persistent).await.unwrap();
    zk_client
        .create("/mesos/log_replicas", b"", &persistent)
        .await
        .unwrap();
    let ephemeral = zookeeper_client::CreateMode::EphemeralSequential
        .with_acls(zookeeper_client::Acls::anyone_all());
    let (_, leader_seq) = zk_client
        .create(
            "/mesos/json.info_",
            master_info_json(&first.master_url()).as_bytes(),
            &ephemeral,
        )
        .await
        .unwrap();
    zk_client
        .create(
            "/mesos/json.info_",
            master_info_json(&second.master_url()).as_bytes(),
            &ephemeral,
        )
        .await
        .unwrap();

    let spec = format!("zk://{}/mesos", zk.address);
    let client =
        MesosClient::with_options(&spec, FrameworkSettings::default(), None, quick()).unwrap();
    let (events, stop, task) = spawn_run(&client);
    assert!(
        eventually(Duration::from_secs(20), || framework_id_of(&events)
            .is_some())
        .await
    );
    assert_eq!(client.subscribed_master(), Some(first.master_url()));
    let framework_id = framework_id_of(&events).unwrap();

    // The leader's znode disappears: the client re-subscribes to the other master.
    zk_client
        .delete(&format!("/mesos/json.info_{leader_seq}"), None)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || client.subscribed_master()
            == Some(second.master_url()))
        .await
    );
    let ids: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.subscribed.as_ref().map(|s| s.framework_id.value.clone()))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|id| *id == framework_id), "{ids:?}");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    first.shutdown().await;
    second.shutdown().await;
    drop(zk);
}
