//! Placement on devcluster agents with attributes, and persistent volumes: members
//! spread by a rack constraint; a member RESERVEs and CREATEs its volume on its
//! agent, and a delete DESTROYs and UNRESERVEs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use mesos_stateful_devcluster::{AgentConfig, DevClusterConfig, DevClusterThread};
use mesos_stateful_scheduler::run::Scheduler;
use mesos_stateful_scheduler::{
    Configured, FrameworkSettings, GenericContainer, SchedulerConfig, Workload, WorkloadConfig,
};

use crate::support::*;

/// The generic workload under a role of its own, as `--role db` registers it: volumes
/// need a reservation role. This test is about where volumes are made and released;
/// that a container sees its volume's data across restarts is `redis_failover`'s.
fn generic_with_role() -> Configured<GenericContainer> {
    Configured {
        inner: GenericContainer,
        config: WorkloadConfig {
            role: "db".to_string(),
            ..GenericContainer.config()
        },
    }
}

/// Persistence ids of the volumes devcluster holds for role `db`, on any agent.
fn volumes(work_dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(agents) = std::fs::read_dir(work_dir.join("agents")) else {
        return found;
    };
    for agent in agents.flatten() {
        let dir: PathBuf = agent.path().join("volumes/roles/db");
        if let Ok(entries) = std::fs::read_dir(dir) {
            found.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    found.sort();
    found
}

/// Three agents on this host: two in rack r1, one in rack r2, with host names that
/// say their rack.
fn cluster(work_dir: &Path) -> DevClusterThread {
    let agent = |hostname: &str, rack: &str, ports| AgentConfig {
        hostname: hostname.to_string(),
        cpus: 2.0,
        mem: 2048.0,
        disk: 4096.0,
        ports,
        attributes: vec![("rack".to_string(), rack.to_string())],
    };
    DevClusterThread::spawn(DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        agents: vec![
            agent("r1-a", "r1", (42000, 42099)),
            agent("r1-b", "r1", (42100, 42199)),
            agent("r2-a", "r2", (42200, 42299)),
        ],
        work_dir: work_dir.to_path_buf(),
        allocation_interval: Duration::from_millis(200),
        ..DevClusterConfig::default()
    })
    .unwrap()
}

async fn start(cluster: &DevClusterThread, dir: &Path) -> Scheduler {
    Scheduler::start(
        SchedulerConfig {
            recovery: Default::default(),
            master: cluster.master_url(),
            data_dir: dir.join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: test_executor(),
            framework: FrameworkSettings::default(),
            api: Default::default(),
        },
        Arc::new(generic_with_role()),
    )
    .await
    .unwrap()
}

async fn create(http: &reqwest::Client, api: &str, body: Value) {
    let response = http
        .post(format!("{api}/v1/instances"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{:?}",
        response.text().await
    );
}

#[actix_rt::test]
async fn members_are_spread_by_an_agent_attribute() {
    const NAME: &str = "e2e-racks";
    require_image(BUSYBOX_IMAGE);
    remove_containers_of(NAME);
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(&dir.path().join("cluster"));
    let scheduler = start(&cluster, dir.path()).await;
    let api = format!("http://{}", scheduler.api_addr());
    let http = reqwest::Client::new();
    create(
        &http,
        &api,
        json!({
            "name": NAME,
            "image": BUSYBOX_IMAGE,
            "replicas": 1,
            "resources": {"cpus": 0.1, "mem": 32, "disk": 8},
            "master_args": ["sleep", "300"],
            "placement": {"constraints": [["rack", "UNIQUE"]]}
        }),
    )
    .await;
    let instance = wait_running(&http, &api, NAME, Duration::from_secs(90)).await;
    let members = instance["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let racks: Vec<&str> = members
        .iter()
        .map(|m| &m["host"].as_str().unwrap()[..2])
        .collect();
    assert_ne!(racks[0], racks[1], "rack:UNIQUE holds: {members:?}");
    http.delete(format!("{api}/v1/instances/{NAME}"))
        .send()
        .await
        .unwrap();
    wait_for("the deletion", Duration::from_secs(60), || {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let body = get_instance(&http, &api, NAME).await?;
            (body["status"] == "DELETED").then_some(())
        }
    })
    .await;
    remove_containers_of(NAME);
    scheduler.stop().await.unwrap();
}

#[actix_rt::test]
async fn a_member_volume_is_reserved_and_created_then_released_on_delete() {
    const NAME: &str = "e2e-volume";
    require_image(BUSYBOX_IMAGE);
    remove_containers_of(NAME);
    let dir = tempfile::tempdir().unwrap();
    let work_dir = dir.path().join("cluster");
    let cluster = cluster(&work_dir);
    let scheduler = start(&cluster, dir.path()).await;
    let api = format!("http://{}", scheduler.api_addr());
    let http = reqwest::Client::new();
    create(
        &http,
        &api,
        json!({
            "name": NAME,
            "image": BUSYBOX_IMAGE,
            "replicas": 0,
            "resources": {"cpus": 0.1, "mem": 32, "disk": 8},
            "master_args": ["sleep", "300"],
            "volume": {"size_mb": 16, "container_path": "data"}
        }),
    )
    .await;
    // RESERVE + CREATE + LAUNCH in one ACCEPT: the agent holds the volume.
    wait_for("the volume created", Duration::from_secs(60), || {
        let work_dir = work_dir.clone();
        async move { (volumes(&work_dir) == [format!("{NAME}-0.1")]).then_some(()) }
    })
    .await;
    let body = get_instance(&http, &api, NAME).await.unwrap();
    let agent = body["members"][0]["agent_id"].clone();
    assert!(agent.is_string(), "{body}");

    // Deleted: once its task ended, the reservation comes back in an offer and is
    // given back, DESTROY then UNRESERVE.
    http.delete(format!("{api}/v1/instances/{NAME}"))
        .send()
        .await
        .unwrap();
    wait_for("the volume destroyed", Duration::from_secs(60), || {
        let work_dir = work_dir.clone();
        async move { volumes(&work_dir).is_empty().then_some(()) }
    })
    .await;
    remove_containers_of(NAME);
    scheduler.stop().await.unwrap();
}
