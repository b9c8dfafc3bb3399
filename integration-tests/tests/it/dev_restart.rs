//! `mesos-stateful dev` as a user runs it: create an instance through the REST API,
//! stop the program, start it again on the same data directory, and find the
//! instance again (it was persisted in RocksDB).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const INSTANCE: &str = "e2e-restart";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

struct Dev {
    child: Child,
}

impl Dev {
    fn start(data_dir: &std::path::Path, api_port: u16, mesos_port: u16) -> Dev {
        let child = Command::new(workspace_binary("mesos-stateful"))
            .args([
                "dev",
                "--data-dir",
                &data_dir.to_string_lossy(),
                "--listen",
                &format!("127.0.0.1:{api_port}"),
                "--mesos-listen",
                &format!("127.0.0.1:{mesos_port}"),
                "--agents",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Dev { child }
    }

    /// Stops the program as Ctrl-C would.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        // Members get their kill grace period (10 s by default) to stop.
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

#[actix_rt::test]
async fn dev_keeps_instances_across_a_restart() {
    require_image(BUSYBOX_IMAGE);
    remove_containers_of(INSTANCE);
    let dir = tempfile::tempdir().unwrap();
    let (api_port, mesos_port) = (free_port(), free_port());
    let api = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::new();

    let dev = Dev::start(dir.path(), api_port, mesos_port);
    wait_for("the API", Duration::from_secs(30), || {
        let http = http.clone();
        let url = format!("{api}/health");
        async move { get(&http, &url).await }
    })
    .await;
    let response = http
        .post(format!("{api}/v1/instances"))
        .json(&sleeper(INSTANCE))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    wait_for("RUNNING", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{api}/v1/instances/{INSTANCE}");
        async move {
            let body = get(&http, &url).await?;
            (body["status"] == "RUNNING").then_some(())
        }
    })
    .await;
    dev.stop();

    let dev = Dev::start(dir.path(), api_port, mesos_port);
    let listed: Value = wait_for("the API after the restart", Duration::from_secs(30), || {
        let http = http.clone();
        let url = format!("{api}/v1/instances");
        async move { get(&http, &url).await }
    })
    .await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, [INSTANCE]);

    // Deleting after the restart ends with no container left.
    let response = http
        .delete(format!("{api}/v1/instances/{INSTANCE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    wait_for("DELETED", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{api}/v1/instances/{INSTANCE}");
        async move {
            let body = get(&http, &url).await?;
            (body["status"] == "DELETED").then_some(())
        }
    })
    .await;
    dev.stop();
    wait_for("no container left", Duration::from_secs(30), || async {
        containers_of(INSTANCE).is_empty().then_some(())
    })
    .await;
}
