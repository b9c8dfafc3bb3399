//! A change of leading master behind ZooKeeper with the real scheduler, executor
//! and container: the scheduler finds the new leader in ZooKeeper, re-subscribes
//! with its FrameworkID and reconciles, and the running member is left alone (same
//! task, same container).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use mesos_stateful_devcluster::testing::ZooKeeper;
use mesos_stateful_devcluster::{DevClusterConfig, DevClusterThread};

use crate::support::*;

const INSTANCE: &str = "e2e-leader-change";

#[actix_rt::test]
async fn scheduler_follows_the_new_leader_and_the_member_keeps_running() {
    require_image(BUSYBOX_IMAGE);
    remove_containers_of(INSTANCE);
    let zookeeper = ZooKeeper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(
        DevClusterThread::spawn(DevClusterConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            work_dir: dir.path().join("cluster"),
            allocation_interval: Duration::from_millis(200),
            masters: 2,
            zookeeper: Some(zookeeper.url("/mesos")),
            ..DevClusterConfig::default()
        })
        .unwrap(),
    );
    let scheduler = start_scheduler(zookeeper.url("/mesos"), dir.path(), test_executor()).await;
    let api = format!("http://{}", scheduler.api_addr());
    let http = reqwest::Client::new();

    let response = http
        .post(format!("{api}/v1/instances"))
        .json(&sleeper(INSTANCE))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let before = wait_running(&http, &api, INSTANCE, Duration::from_secs(60)).await;
    let container = wait_for(
        "the member's container",
        Duration::from_secs(30),
        || async {
            let running = running_containers_of(INSTANCE);
            (running.len() == 1).then(|| running[0].clone())
        },
    )
    .await;
    let frameworks = cluster.subscribed_frameworks();
    assert_eq!(frameworks.len(), 1, "{frameworks:?}");
    assert_eq!(cluster.leader(), Some(0));

    // The leader dies; ZooKeeper makes the second master lead.
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop_master(0))
        .await
        .unwrap()
        .unwrap();
    wait_for(
        "the second master to lead",
        Duration::from_secs(30),
        || async { (cluster.leader() == Some(1)).then_some(()) },
    )
    .await;
    wait_for(
        "the scheduler to re-subscribe to the new leader with its FrameworkID",
        Duration::from_secs(60),
        || async { (cluster.subscribed_frameworks() == frameworks).then_some(()) },
    )
    .await;

    // After reconciliation the member is still the same running task and container.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Value = wait_for("the member TASK_RUNNING", Duration::from_secs(30), || {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let body = get_instance(&http, &api, INSTANCE).await?;
            (body["members"][0]["state"] == "TASK_RUNNING").then_some(body)
        }
    })
    .await;
    assert_eq!(after["status"], "RUNNING", "{after}");
    assert_eq!(
        after["members"][0]["task_id"], before["members"][0]["task_id"],
        "the same task, not a replacement"
    );
    assert_eq!(running_containers_of(INSTANCE), [container]);
    assert_eq!(
        containers_of(INSTANCE).len(),
        1,
        "no other container exists"
    );

    // The new leader carries the deletion through to the executor.
    let response = http
        .delete(format!("{api}/v1/instances/{INSTANCE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    wait_for("DELETED", Duration::from_secs(60), || {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let body = get_instance(&http, &api, INSTANCE).await?;
            (body["status"] == "DELETED").then_some(())
        }
    })
    .await;
    wait_for("no container left", Duration::from_secs(30), || async {
        containers_of(INSTANCE).is_empty().then_some(())
    })
    .await;
    scheduler.stop().await.unwrap();
    Arc::try_unwrap(cluster)
        .expect("the master stop has finished with the cluster")
        .shutdown();
}
