//! Several masters: redirects from the standby masters, and a leader change that
//! keeps the agents' tasks, without and with ZooKeeper.

use mesos_stateful_devcluster::testing::ZooKeeper;
use mesos_stateful_proto::v1::{self, scheduler, TaskState};
use zookeeper_client as zk;

use super::command_tasks::{command_task, shell};
use super::*;

async fn post_subscribe(url: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    client
        .post(format!("{url}/api/v1/scheduler"))
        .header("Content-Type", media::PROTOBUF)
        .body(subscribe_call(framework_info(Some(3600.0))).encode_to_vec())
        .send()
        .await
        .unwrap()
}

async fn get_redirect(url: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    client
        .get(format!("{url}/master/redirect"))
        .send()
        .await
        .unwrap()
}

fn authority(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Subscribes to `master`, launches a long command task and acknowledges it up to
/// TASK_RUNNING.
async fn running_task(master: &str) -> (Scheduler, v1::TaskStatus) {
    let mut scheduler = Scheduler::subscribe(master, framework_info(Some(3600.0))).await;
    let offer = scheduler.offer().await;
    scheduler
        .launch(&offer, command_task(&offer, "long", shell("sleep 100")))
        .await;
    loop {
        let status = scheduler.update().await;
        scheduler.acknowledge(&status).await;
        if status.state() == TaskState::TaskRunning {
            return (scheduler, status);
        }
    }
}

/// Re-subscribes `framework_id` to `master` and checks that its task still runs
/// there, untouched.
async fn resubscribe_and_reconcile(master: &str, old: Scheduler, running: &v1::TaskStatus) {
    let mut events = old.events;
    let ended = tokio::time::timeout(WAIT, async { while events.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the old leader's stream ends");
    let info = FrameworkInfo {
        id: Some(old.framework_id.clone()),
        ..framework_info(Some(3600.0))
    };
    let mut scheduler = Scheduler::subscribe(master, info).await;
    assert_eq!(scheduler.framework_id, old.framework_id);
    let master_info = scheduler.subscribed.master_info.clone().unwrap();
    assert_eq!(
        format!("127.0.0.1:{}", master_info.port),
        authority(master),
        "SUBSCRIBED names the new leader"
    );
    scheduler
        .reconcile(vec![("long", running.agent_id.clone())])
        .await;
    let answer = scheduler.update().await;
    assert_eq!(answer.state(), TaskState::TaskRunning);
    assert_eq!(answer.executor_id, running.executor_id);
    scheduler
        .expect_none(scheduler::event::Type::Update, Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn standby_masters_redirect_and_take_over_the_running_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        masters: 2,
        ..config(dir.path())
    })
    .await
    .unwrap();
    let urls = cluster.master_urls();
    assert_eq!(cluster.leader(), Some(0));

    // §1.5 / §4.2: the standby answers 307 with a protocol-relative Location.
    let response = post_subscribe(&urls[1]).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        response.headers()["location"],
        format!("//{}/master/api/v1/scheduler", authority(&urls[0])).as_str()
    );
    for url in &urls {
        let response = get_redirect(url).await;
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            response.headers()["location"],
            format!("//{}", authority(&urls[0])).as_str()
        );
    }

    let (scheduler, running) = running_task(&urls[0]).await;
    cluster.stop_master(0).await.unwrap();
    assert_eq!(cluster.leader(), Some(1));
    resubscribe_and_reconcile(&urls[1], scheduler, &running).await;

    cluster.stop_master(1).await.unwrap();
    assert_eq!(cluster.leader(), None);
    cluster.shutdown().await;
}

#[tokio::test]
async fn masters_register_in_zookeeper_and_the_next_leads_when_the_leader_stops() {
    let zookeeper = ZooKeeper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        masters: 2,
        zookeeper: Some(zookeeper.url("/mesos")),
        ..config(dir.path())
    })
    .await
    .unwrap();
    let urls = cluster.master_urls();
    assert_eq!(cluster.leader(), Some(0));

    // Two sequential `json.info_` nodes holding MasterInfo JSON.
    let client = zk::Client::connect(&zookeeper.address).await.unwrap();
    let mut children = client.list_children("/mesos").await.unwrap();
    children.sort();
    assert_eq!(children.len(), 2);
    assert!(children.iter().all(|c| c.starts_with("json.info_")));
    let (data, _) = client
        .get_data(&format!("/mesos/{}", children[0]))
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        format!("127.0.0.1:{}", info["address"]["port"]),
        authority(&urls[0])
    );
    assert_eq!(info["address"]["ip"], "127.0.0.1");

    let (scheduler, running) = running_task(&urls[0]).await;
    cluster.stop_master(0).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while cluster.leader() != Some(1) {
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let children = client.list_children("/mesos").await.unwrap();
    assert_eq!(children.len(), 1, "the stopped master's node is gone");
    resubscribe_and_reconcile(&urls[1], scheduler, &running).await;
    cluster.shutdown().await;
}

/// §1.5 / §4.2: while the lowest `json.info_` node is not one of devcluster's
/// masters, none of them leads: the scheduler API and `/master/redirect` answer
/// 503; once that node is gone, the first master leads.
#[tokio::test]
async fn no_leader_means_503_until_the_foreign_zookeeper_node_goes() {
    let zookeeper = ZooKeeper::start().await.unwrap();
    let foreign = zk::Client::connect(&zookeeper.address).await.unwrap();
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    foreign.mkdir("/mesos", &persistent).await.unwrap();
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    foreign
        .create("/mesos/json.info_", b"{}", &ephemeral)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        masters: 2,
        zookeeper: Some(zookeeper.url("/mesos")),
        ..config(dir.path())
    })
    .await
    .unwrap();
    let url = cluster.master_url();
    assert_eq!(cluster.leader(), None);
    let response = post_subscribe(&url).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text().await.unwrap(), "No leader elected");
    assert_eq!(
        get_redirect(&url).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    drop(foreign);
    let deadline = tokio::time::Instant::now() + WAIT;
    while cluster.leader() != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader after the foreign node went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = post_subscribe(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    cluster.shutdown().await;
}
