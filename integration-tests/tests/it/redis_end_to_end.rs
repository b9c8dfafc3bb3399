//! The walking skeleton, end to end: a REST call starts a Redis master and a replica
//! in Docker through devcluster and the real executor; the replica replicates; a
//! delete leaves no container behind.

use std::time::Duration;

use serde_json::{json, Value};

use mesos_stateful_devcluster::{AgentConfig, DevClusterConfig, DevClusterThread};

use mesos_stateful_scheduler::ExecutorLaunch;

use crate::support::*;

const INSTANCE: &str = "e2e-redis";

fn endpoint(member: &Value) -> String {
    format!(
        "{}:{}",
        member["host"].as_str().expect("host"),
        member["port"].as_u64().expect("port")
    )
}

#[actix_rt::test]
async fn redis_master_and_replica_replicate_and_are_deleted() {
    require_image(REDIS_IMAGE);
    remove_containers_of(INSTANCE);
    let dir = tempfile::tempdir().unwrap();

    // Two agents on this host, with disjoint port ranges (host networking).
    let agent = |ports| AgentConfig {
        cpus: 2.0,
        mem: 2048.0,
        ports,
        ..AgentConfig::default()
    };
    let cluster = DevClusterThread::spawn(DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        agents: vec![agent((41000, 41099)), agent((41100, 41199))],
        work_dir: dir.path().join("cluster"),
        allocation_interval: Duration::from_millis(200),
        ..DevClusterConfig::default()
    })
    .unwrap();
    let executor = ExecutorLaunch {
        stats_interval_seconds: 1.0,
        ..test_executor()
    };
    let scheduler = start_scheduler(cluster.master_url(), dir.path(), executor).await;
    let api = format!("http://{}", scheduler.api_addr());
    let http = reqwest::Client::new();

    let response = http
        .post(format!("{api}/v1/instances"))
        .json(&json!({
            "name": INSTANCE,
            "image": REDIS_IMAGE,
            "replicas": 1,
            "resources": {"cpus": 0.2, "mem": 128, "disk": 64},
            "master_args": ["redis-server", "--port", "{port}", "--save", "", "--appendonly", "no"],
            "replica_args": ["redis-server", "--port", "{port}", "--save", "", "--appendonly", "no",
                             "--replicaof", "{master_host}", "{master_port}"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("/v1/instances/{INSTANCE}")
    );

    let instance = wait_running(&http, &api, INSTANCE, Duration::from_secs(90)).await;
    let members = instance["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["role"], "master");
    assert_eq!(members[1]["role"], "replica");
    assert!(members.iter().all(|m| m["state"] == "TASK_RUNNING"));
    assert_ne!(
        members[0]["agent_id"], members[1]["agent_id"],
        "master and replica on different agents"
    );
    let (master, replica) = (endpoint(&members[0]), endpoint(&members[1]));

    let endpoints: Value = http
        .get(format!("{api}/v1/instances/{INSTANCE}/endpoints"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        endpoints,
        json!({"master": master.clone(), "replicas": [replica.clone()]})
    );
    assert!(redis_command(&master, "PING").unwrap().starts_with("+PONG"));
    wait_for(
        "the replica's link to the master",
        Duration::from_secs(30),
        || {
            let replica = replica.clone();
            async move {
                let info = redis_command(&replica, "INFO replication").ok()?;
                (info.contains("role:slave") && info.contains("master_link_status:up"))
                    .then_some(())
            }
        },
    )
    .await;
    let master_port = members[0]["port"].as_u64().unwrap();
    let info = redis_command(&replica, "INFO replication").unwrap();
    assert!(
        info.contains(&format!("master_port:{master_port}")),
        "{info}"
    );
    assert!(redis_command(&master, "SET skeleton walks")
        .unwrap()
        .starts_with("+OK"));
    wait_for("the key on the replica", Duration::from_secs(10), || {
        let replica = replica.clone();
        async move {
            let reply = redis_command(&replica, "GET skeleton").ok()?;
            reply.contains("walks").then_some(())
        }
    })
    .await;

    // The executors' stats samples reach the REST API.
    let stats: Value = wait_for("stats of both members", Duration::from_secs(15), || {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let body = get_instance(&http, &api, INSTANCE).await?;
            let members = body["members"].as_array()?.clone();
            members
                .iter()
                .all(|m| m["stats"]["memory_bytes"].as_u64().is_some_and(|b| b > 0))
                .then_some(body)
        }
    })
    .await;
    assert!(stats["members"][0]["stats"]["timestamp"].as_f64().is_some());

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
    cluster.shutdown();
}
