//! `mesos-stateful serve` with neither `--executor-path` nor `--executor-uri`: the
//! scheduler serves its own executor binary under its SHA-256, the agent's fetcher
//! downloads it over HTTP into the sandbox, and the task runs. The artifact route
//! needs no token (a fetcher cannot send one) even with authentication on.

use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use mesos_stateful_devcluster::{AgentConfig, DevClusterConfig, DevClusterThread};

use crate::support::*;

const INSTANCE: &str = "e2e-served";
const TOKEN: &str = "served-executor-token";

/// Every file named `name` under `dir`, at any depth.
fn find_files(dir: &std::path::Path, name: &str, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_files(&path, name, found);
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
}

#[actix_rt::test]
async fn agents_fetch_the_executor_the_scheduler_serves() {
    require_image(BUSYBOX_IMAGE);
    remove_containers_of(INSTANCE);
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevClusterThread::spawn(DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        agents: vec![AgentConfig {
            ports: (42500, 42599),
            ..AgentConfig::default()
        }],
        work_dir: dir.path().join("cluster"),
        allocation_interval: Duration::from_millis(200),
        ..DevClusterConfig::default()
    })
    .unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let serve = Interrupted(
        Command::new(workspace_binary("mesos-stateful"))
            .args(["serve", "--master", &cluster.master_url()])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--api-tokens-file")
            .arg(&token_file)
            .env_remove("MESOS_STATEFUL_EXECUTOR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    wait_for("the scheduler ready", Duration::from_secs(30), || {
        let request = http.get(format!("{api}/ready")).bearer_auth(TOKEN);
        async move {
            request
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;

    // The binary is served under its digest, to anyone; another digest is unknown.
    let executor = std::fs::read(workspace_binary("mesos-stateful-executor")).unwrap();
    let sha256: String = Sha256::digest(&executor)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!("{api}/v1/artifacts/{sha256}/mesos-stateful-executor");
    let served = http.get(&url).send().await.unwrap();
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(
        served.headers()["etag"].to_str().unwrap(),
        format!("\"{sha256}\"")
    );
    assert!(served.bytes().await.unwrap() == executor, "the same bytes");
    let other = format!(
        "{api}/v1/artifacts/{}/mesos-stateful-executor",
        "0".repeat(64)
    );
    let unknown = http.get(&other).send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    // The rest of the API still wants the token.
    let listed = http
        .get(format!("{api}/v1/instances"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 401);

    let created = http
        .post(format!("{api}/v1/instances"))
        .bearer_auth(TOKEN)
        .json(&sleeper(INSTANCE))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 202);
    wait_for("the instance RUNNING", Duration::from_secs(90), || {
        let request = http
            .get(format!("{api}/v1/instances/{INSTANCE}"))
            .bearer_auth(TOKEN);
        async move {
            let body: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
            assert_ne!(body["status"], "FAILED", "{body}");
            (body["status"] == "RUNNING").then_some(())
        }
    })
    .await;

    // The executor that runs it is the fetched copy in its sandbox.
    let mut fetched = Vec::new();
    find_files(
        &dir.path().join("cluster"),
        "mesos-stateful-executor",
        &mut fetched,
    );
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(fetched[0].to_string_lossy().contains("/runs/"));
    assert!(std::fs::read(&fetched[0]).unwrap() == executor);

    let deleted = http
        .delete(format!("{api}/v1/instances/{INSTANCE}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    wait_for("the container gone", Duration::from_secs(60), || async {
        containers_of(INSTANCE).is_empty().then_some(())
    })
    .await;
    drop(serve);
    cluster.shutdown();
}
