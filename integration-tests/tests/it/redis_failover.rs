//! Redis failover end to end: the Redis workload on devcluster with real Docker. Keys
//! written to the master survive `docker kill` of the master's container: a replica is
//! promoted, the lost member comes back as a replica of the new master, and the
//! endpoints follow. A restarted replica comes back on its agent with its persistent
//! volume's data.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use mesos_stateful_devcluster::{AgentConfig, DevClusterConfig, DevClusterThread};
use mesos_stateful_scheduler::run::Scheduler;
use mesos_stateful_scheduler::{
    Configured, ExecutorLaunch, FrameworkSettings, RecoveryConfig, RedisWorkload, SchedulerConfig,
    Workload, WorkloadConfig,
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
    let instance = wait_running(&http, &api, INSTANCE, Duration::from_secs(120)).await;
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
    let container = running_container_of_member(old_master["name"].as_str().unwrap())
        .expect("the master's container");
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
    let instance = wait_running(&http, &api, INSTANCE, Duration::from_secs(120)).await;
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

    // The instruments moved: offers taken, three launches and a relaunch, one
    // promotion, updates by state, executors' container timings.
    let metrics = scrape(&http, &api).await;
    let at_least = |name: &str, floor: f64| {
        let value = metric_sum(&metrics, name);
        assert!(
            value >= floor,
            "{name} = {value}, expected at least {floor}"
        );
    };
    at_least("mesos_stateful_offers_total", 1.0);
    at_least("mesos_stateful_task_launches_total", 4.0);
    at_least("mesos_stateful_relaunches_total", 1.0);
    at_least("mesos_stateful_promotions_total", 1.0);
    at_least("mesos_stateful_task_updates_total", 6.0);
    at_least("mesos_stateful_executor_create_seconds_count", 3.0);
    at_least("mesos_stateful_store_write_seconds_count", 1.0);
    at_least("mesos_stateful_actor_messages_total", 10.0);
    assert_eq!(metric_sum(&metrics, "mesos_stateful_mesos_subscribed"), 1.0);
    assert!(
        metrics.contains("mesos_stateful_instances{status=\"RUNNING\"} 1"),
        "one RUNNING instance:\n{metrics}"
    );
    assert_eq!(metric_sum(&metrics, "mesos_stateful_instances"), 1.0);

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

/// Runs `sh -c script` in a container; its stdout.
fn exec_in(container: &str, script: &str) -> String {
    let output = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .unwrap();
    assert!(output.status.success(), "{script}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[actix_rt::test]
async fn a_restarted_replica_keeps_its_agent_and_its_volume() {
    const NAME: &str = "volume-redis";
    require_image(REDIS_IMAGE);
    remove_containers_of(NAME);
    let dir = tempfile::tempdir().unwrap();
    let agent = |ports| AgentConfig {
        cpus: 2.0,
        mem: 2048.0,
        disk: 4096.0,
        ports,
        ..AgentConfig::default()
    };
    let cluster = DevClusterThread::spawn(DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        agents: vec![agent((42300, 42399)), agent((42400, 42499))],
        work_dir: dir.path().join("cluster"),
        allocation_interval: Duration::from_millis(200),
        ..DevClusterConfig::default()
    })
    .unwrap();
    // Volumes need a reservation role: the Redis workload under role `redis`, as
    // `--role redis` registers it.
    let workload = Configured {
        inner: RedisWorkload,
        config: WorkloadConfig {
            role: "redis".into(),
            ..RedisWorkload.config()
        },
    };
    let scheduler = Scheduler::start(
        SchedulerConfig {
            master: cluster.master_url(),
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: test_executor(),
            framework: FrameworkSettings::default(),
            api: Default::default(),
            recovery: RecoveryConfig::default(),
        },
        Arc::new(workload),
    )
    .await
    .unwrap();
    let api = format!("http://{}", scheduler.api_addr());
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{api}/v1/instances"))
        .json(&json!({
            "name": NAME,
            "image": REDIS_IMAGE,
            "replicas": 1,
            "resources": {"cpus": 0.2, "mem": 128, "disk": 16},
            "volume": {"size_mb": 32, "container_path": "data"},
            "master_args": ["--dir", "/data", "--appendonly", "yes"],
            "replica_args": ["--dir", "/data", "--appendonly", "yes"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{:?}",
        response.text().await
    );
    let replica = |what: &'static str, not_task: Option<String>| {
        let (http, api) = (http.clone(), api.clone());
        wait_for(what, Duration::from_secs(120), move || {
            let (http, api, not_task) = (http.clone(), api.clone(), not_task.clone());
            async move {
                let body = get_instance(&http, &api, NAME).await?;
                assert_ne!(body["status"], "FAILED", "instance failed: {body}");
                let member = body["members"]
                    .as_array()?
                    .iter()
                    .find(|m| m["ordinal"] == 1)?
                    .clone();
                (body["status"] == "RUNNING"
                    && member["state"] == "TASK_RUNNING"
                    && not_task.is_none_or(|old| member["task_id"] != old.as_str()))
                .then_some(member)
            }
        })
    };
    let before = replica("the instance RUNNING", None).await;
    let member = before["name"].as_str().unwrap().to_string();
    let container = running_container_of_member(&member).expect("the replica's container");
    // The volume is the container's /data: the replica's append-only file is there,
    // and a file written into it now must outlive the container.
    exec_in(&container, "echo before-restart > /data/marker");
    let listing = exec_in(&container, "ls /data");
    assert!(listing.contains("marker"), "{listing}");

    let restarted = http
        .post(format!("{api}/v1/instances/{NAME}/members/1/restart"))
        .send()
        .await
        .unwrap();
    assert!(
        restarted.status().is_success(),
        "{:?}",
        restarted.text().await
    );
    let after = replica(
        "the replica's next incarnation RUNNING",
        before["task_id"].as_str().map(String::from),
    )
    .await;
    assert_eq!(after["agent_id"], before["agent_id"], "same agent");
    let new_container = wait_for("the new container", Duration::from_secs(30), || {
        let (member, old) = (member.clone(), container.clone());
        async move { running_container_of_member(&member).filter(|c| *c != old) }
    })
    .await;
    assert_eq!(
        exec_in(&new_container, "cat /data/marker").trim(),
        "before-restart"
    );
    // The file lives in the agent's volume directory, not in a sandbox.
    let on_agent = std::fs::read_dir(dir.path().join("cluster/agents"))
        .unwrap()
        .flatten()
        .filter_map(|agent| std::fs::read_dir(agent.path().join("volumes/roles/redis")).ok())
        .flatten()
        .flatten()
        .filter(|volume| volume.file_name().to_string_lossy().starts_with(&member))
        .any(|volume| volume.path().join("marker").is_file());
    assert!(on_agent, "the marker is in {member}'s volume on its agent");

    let deleted = http
        .delete(format!("{api}/v1/instances/{NAME}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    scheduler.stop().await.unwrap();
    cluster.shutdown();
    remove_containers_of(NAME);
}
