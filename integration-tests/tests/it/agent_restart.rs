//! An agent restart with the real executor: the executor re-subscribes within the
//! agent's re-registration window, so its task and its container survive; a delete
//! afterwards still leaves no container behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use mesos_stateful_devcluster::{DevClusterConfig, DevClusterThread};

use crate::support::*;

const INSTANCE: &str = "e2e-agent-restart";
const DOWN_FOR: Duration = Duration::from_secs(1);

#[actix_rt::test]
async fn executor_reregisters_after_an_agent_restart() {
    require_image(BUSYBOX_IMAGE);
    remove_containers_of(INSTANCE);
    let dir = tempfile::tempdir().unwrap();
    let config = DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        work_dir: dir.path().join("cluster"),
        allocation_interval: Duration::from_millis(200),
        ..DevClusterConfig::default()
    };
    let reregistration_timeout = config.executor_reregistration_timeout;
    let cluster = Arc::new(DevClusterThread::spawn(config).unwrap());
    let scheduler = start_scheduler(cluster.master_url(), dir.path(), test_executor()).await;
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

    // The agent goes away for a second and comes back recovering.
    let restarted_at = Instant::now();
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart_agent(0, DOWN_FOR))
        .await
        .unwrap()
        .unwrap();

    // Once the re-registration window has passed, an executor that did not
    // re-subscribe would have been destroyed and its task lost.
    let window_end = restarted_at + DOWN_FOR + reregistration_timeout + Duration::from_millis(500);
    tokio::time::sleep(window_end.saturating_duration_since(Instant::now())).await;
    let after: Value = wait_for(
        "the member still TASK_RUNNING after recovery",
        Duration::from_secs(10),
        || {
            let (http, api) = (http.clone(), api.clone());
            async move {
                let body = get_instance(&http, &api, INSTANCE).await?;
                let state = body["members"][0]["state"].clone();
                assert!(
                    state == "TASK_RUNNING" || state == "TASK_STARTING",
                    "the member left RUNNING across the agent restart: {body}"
                );
                (state == "TASK_RUNNING").then_some(body)
            }
        },
    )
    .await;
    assert_eq!(after["status"], "RUNNING", "{after}");
    assert_eq!(
        after["members"][0]["task_id"], before["members"][0]["task_id"],
        "the same task, not a replacement"
    );
    assert_eq!(
        running_containers_of(INSTANCE),
        [container],
        "exactly the original container runs"
    );
    assert_eq!(
        containers_of(INSTANCE).len(),
        1,
        "no other container exists"
    );

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
        .expect("the restart has finished with the cluster")
        .shutdown();
}
