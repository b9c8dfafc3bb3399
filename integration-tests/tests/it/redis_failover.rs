//! Redis failover end to end: the Redis workload on devcluster with real Docker. Keys
//! written to the master survive `docker kill` of the master's container: a replica is
//! promoted, the lost member comes back as a replica of the new master, and the
//! endpoints follow.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use mesos_stateful_devcluster::{AgentConfig, DevClusterConfig, DevClusterThread};
use mesos_stateful_scheduler::run::Scheduler;
use mesos_stateful_scheduler::{
    ExecutorLaunch, FrameworkSettings, RecoveryConfig, RedisWorkload, SchedulerConfig,
};

use crate::support::*;

const INSTANCE: &str = "failover-redis";

fn endpoint(member: &Value) -> Option<String> {
    Some(format!(
        "{}:{}",
        member["host"].as_str()?,
        member["port"].as_u64()?
    ))
}

async fn endpoints(http: &reqwest::Client, api: &str) -> Option<Value> {
    http.get(format!("{api}/v1/instances/{INSTANCE}/endpoints"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The running container of a member.
fn container_of(member: &str) -> Option<String> {
    let output = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=mesos-stateful.member={member}"),
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .map(String::from)
}

#[actix_rt::test]
async fn a_killed_master_is_replaced_by_its_most_advanced_replica() {
    require_image(REDIS_IMAGE);
    remove_containers_of(INSTANCE);
    let dir = tempfile::tempdir().unwrap();
    let agent = |ports| AgentConfig {
        cpus: 2.0,
        mem: 2048.0,
        ports,
        ..AgentConfig::default()
    };
    let cluster = DevClusterThread::spawn(DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        agents: vec![
            agent((42000, 42099)),
            agent((42100, 42199)),
            agent((42200, 42299)),
        ],
        work_dir: dir.path().join("cluster"),
        allocation_interval: Duration::from_millis(200),
        ..DevClusterConfig::default()
    })
    .unwrap();
    let scheduler = Scheduler::start(
        SchedulerConfig {
            master: cluster.master_url(),
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: ExecutorLaunch {
                stats_interval_seconds: 1.0,
                ..test_executor()
            },
            framework: FrameworkSettings::default(),
            api: Default::default(),
            recovery: RecoveryConfig {
                backoff_initial: Duration::from_millis(500),
                ..RecoveryConfig::default()
            },
        },
        Arc::new(RedisWorkload),
    )
    .await
    .unwrap();
    let api = format!("http://{}", scheduler.api_addr());
    let http = reqwest::Client::new();

    let response = http
        .post(format!("{api}/v1/instances"))
        .json(&json!({
            "name": INSTANCE,
            "image": REDIS_IMAGE,
            "replicas": 2,
            "resources": {"cpus": 0.2, "mem": 128, "disk": 64},
            "master_args": ["--save", "", "--appendonly", "no"],
            "replica_args": ["--save", "", "--appendonly", "no"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let running = |what: &'static str| {
        let (http, api) = (http.clone(), api.clone());
        wait_for(what, Duration::from_secs(120), move || {
            let (http, api) = (http.clone(), api.clone());
            async move {
                let body = get_instance(&http, &api, INSTANCE).await?;
                assert_ne!(body["status"], "FAILED", "instance failed: {body}");
                (body["status"] == "RUNNING").then_some(body)
            }
        })
    };
    let instance = running("every member RUNNING").await;
    let members = instance["members"].as_array().unwrap().clone();
    let old_master = members
        .iter()
        .find(|m| m["role"] == "master")
        .unwrap()
        .clone();
    let old_master_endpoint = endpoint(&old_master).unwrap();

    // Keys written to the master reach both replicas, and the replicas report their
    // replication offsets as facts.
    for i in 0..20 {
        let reply = redis_command(&old_master_endpoint, &format!("SET key{i} value{i}")).unwrap();
        assert!(reply.starts_with("+OK"), "{reply}");
    }
    wait_for("offsets of both replicas", Duration::from_secs(30), || {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let body = get_instance(&http, &api, INSTANCE).await?;
            let members = body["members"].as_array()?.clone();
            members
                .iter()
                .filter(|m| m["role"] == "replica")
                .all(|m| {
                    m["stats"]["facts"]["slave_repl_offset"]
                        .as_str()
                        .and_then(|o| o.trim().parse::<u64>().ok())
                        .is_some_and(|o| o > 0)
                        && m["stats"]["facts"]["master_link_status"]
                            .as_str()
                            .is_some_and(|s| s.trim() == "up")
                })
                .then_some(())
        }
    })
    .await;

    // Kill the master's container.
    let container =
        container_of(old_master["name"].as_str().unwrap()).expect("the master's container");
    let killed = Command::new("docker")
        .args(["kill", &container])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");

    // A replica is promoted and takes writes; the old keys are there.
    let promoted: Value = wait_for("a new master", Duration::from_secs(60), || {
        let (http, api) = (http.clone(), api.clone());
        let old = old_master["name"].clone();
        async move {
            let body = get_instance(&http, &api, INSTANCE).await?;
            let master = body["members"]
                .as_array()?
                .iter()
                .find(|m| m["role"] == "master")?
                .clone();
            (master["name"] != old && master["state"] == "TASK_RUNNING").then_some(master)
        }
    })
    .await;
    let new_master = endpoint(&promoted).unwrap();
    wait_for(
        "the promoted replica to take writes",
        Duration::from_secs(30),
        || {
            let new_master = new_master.clone();
            async move {
                let info = redis_command(&new_master, "INFO replication").ok()?;
                info.contains("role:master").then_some(())
            }
        },
    )
    .await;
    for i in 0..20 {
        let reply = redis_command(&new_master, &format!("GET key{i}")).unwrap();
        assert!(reply.contains(&format!("value{i}")), "key{i}: {reply}");
    }
    assert!(redis_command(&new_master, "SET after failover")
        .unwrap()
        .starts_with("+OK"));

    // The replica count is restored: the old master's member is back as a replica
    // of the new master, as is the other replica.
    let instance = running("the instance RUNNING again").await;
    let members = instance["members"].as_array().unwrap().clone();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["role"] == "master").count(), 1);
    let back = members
        .iter()
        .find(|m| m["name"] == old_master["name"])
        .unwrap();
    assert_eq!(back["role"], "replica");
    assert_ne!(back["task_id"], old_master["task_id"], "a new incarnation");
    let replicas: Vec<String> = members
        .iter()
        .filter(|m| m["role"] == "replica")
        .filter_map(endpoint)
        .collect();
    for replica in &replicas {
        wait_for(
            "a replica following the new master",
            Duration::from_secs(30),
            || {
                let (replica, new_master) = (replica.clone(), new_master.clone());
                async move {
                    let reply = redis_command(&replica, "GET after").ok()?;
                    let info = redis_command(&replica, "INFO replication").ok()?;
                    let port = new_master.rsplit(':').next()?.to_string();
                    (reply.contains("failover")
                        && info.contains("role:slave")
                        && info.contains(&format!("master_port:{port}")))
                    .then_some(())
                }
            },
        )
        .await;
    }

    // Clients asking for endpoints find the new master.
    let mut expected_replicas = replicas.clone();
    expected_replicas.sort();
    let found = endpoints(&http, &api).await.unwrap();
    let mut found_replicas: Vec<String> = found["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    found_replicas.sort();
    assert_eq!(found["master"], json!(new_master));
    assert_eq!(found_replicas, expected_replicas);

    let response = http
        .delete(format!("{api}/v1/instances/{INSTANCE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    wait_for("no container left", Duration::from_secs(60), || async {
        containers_of(INSTANCE).is_empty().then_some(())
    })
    .await;
    scheduler.stop().await.unwrap();
    cluster.shutdown();
}
