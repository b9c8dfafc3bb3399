//! The `mesos-stateful instance …` CLI against a running `mesos-stateful dev` with a
//! Docker agent: create with --wait, list, get, endpoints, scale, restart, watch, delete; JSON output;
//! the token from a file; errors exit non-zero with the API's message.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const INSTANCE: &str = "e2e-cli";
const TOKEN: &str = "cli-test-token";

fn cli(api: &str, token_file: &Path, args: &[&str]) -> Output {
    Command::new(workspace_binary("mesos-stateful"))
        .args(["instance", "--api", api, "--token-file"])
        .arg(token_file)
        .args(args)
        .env_remove("MESOS_STATEFUL_TOKEN")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[actix_rt::test]
async fn cli_creates_waits_lists_and_deletes_against_dev() {
    require_image(BUSYBOX_IMAGE);
    remove_containers_of(INSTANCE);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (api_port, mesos_port) = (free_port(), free_port());
    let api = format!("http://127.0.0.1:{api_port}");
    let _dev = Interrupted(
        Command::new(workspace_binary("mesos-stateful"))
            .args(["dev", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .args(["--mesos-listen", &format!("127.0.0.1:{mesos_port}")])
            .args(["--agents", "1", "--api-tokens-file"])
            .arg(&token_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    wait_for("the API", Duration::from_secs(30), || {
        let http = http.clone();
        let url = format!("{api}/health");
        async move {
            http.get(url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;

    // Without the token the API refuses, and the CLI says why.
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "nope").unwrap();
    let refused = cli(&api, &wrong_file, &["list"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthorized"));

    let created = stdout(&cli(
        &api,
        &token_file,
        &[
            "create",
            INSTANCE,
            "--image",
            BUSYBOX_IMAGE,
            "--cpus",
            "0.1",
            "--mem",
            "32",
            "--disk",
            "16",
            "--arg",
            "sleep",
            "--arg",
            "3600",
            "--wait",
            "--timeout",
            "90",
        ],
    ));
    assert!(
        created.contains(&format!("instance {INSTANCE} is RUNNING")),
        "{created}"
    );
    assert!(created.contains("member"), "progress lines: {created}");

    let listed = stdout(&cli(&api, &token_file, &["list"]));
    let row = listed.lines().find(|l| l.starts_with(INSTANCE)).unwrap();
    assert!(row.contains("RUNNING") && row.contains("1/1"), "{listed}");

    let json: Value = serde_json::from_str(&stdout(&cli(
        &api,
        &token_file,
        &["get", INSTANCE, "-o", "json"],
    )))
    .unwrap();
    assert_eq!(json["status"], "RUNNING");
    assert_eq!(json["members"][0]["state"], "TASK_RUNNING");

    let endpoints = stdout(&cli(&api, &token_file, &["endpoints", INSTANCE]));
    assert!(
        endpoints.lines().any(|l| l.starts_with("master")),
        "{endpoints}"
    );
    // Scaling follows the new member until it runs.
    let scaled = stdout(&cli(
        &api,
        &token_file,
        &[
            "scale",
            INSTANCE,
            "--replicas",
            "1",
            "--wait",
            "--timeout",
            "90",
        ],
    ));
    assert!(
        scaled.contains(&format!("instance {INSTANCE} is RUNNING")),
        "{scaled}"
    );
    let listed = stdout(&cli(&api, &token_file, &["list", "--status", "running"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(INSTANCE) && l.contains("2/2")),
        "{listed}"
    );

    // Restarting a member; watching follows it back to running.
    let restarted = stdout(&cli(&api, &token_file, &["restart", INSTANCE, "1"]));
    assert!(restarted.contains(INSTANCE), "{restarted}");
    let watched = stdout(&cli(
        &api,
        &token_file,
        &["watch", INSTANCE, "--timeout", "90"],
    ));
    assert!(watched.contains("RUNNING"), "{watched}");

    // Watching a running instance returns at once.
    let watched = stdout(&cli(
        &api,
        &token_file,
        &["watch", INSTANCE, "--timeout", "10"],
    ));
    assert!(watched.contains("RUNNING"), "{watched}");

    // A stale version is refused; the current one deletes.
    let stale = cli(
        &api,
        &token_file,
        &["delete", INSTANCE, "--if-version", "999999"],
    );
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("precondition_failed"));
    let version = json["version"].as_u64().unwrap().to_string();
    let current: Value = serde_json::from_str(&stdout(&cli(
        &api,
        &token_file,
        &["get", INSTANCE, "-o", "json"],
    )))
    .unwrap();
    let version = current["version"]
        .as_u64()
        .map(|v| v.to_string())
        .unwrap_or(version);
    let deleted = stdout(&cli(
        &api,
        &token_file,
        &["delete", INSTANCE, "--if-version", &version],
    ));
    assert!(deleted.contains(INSTANCE), "{deleted}");
    let missing = cli(&api, &token_file, &["get", "no-such-instance"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not_found"));

    wait_for("DELETED", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{api}/v1/instances/{INSTANCE}");
        async move {
            let body: Value = http
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (body["status"] == "DELETED").then_some(())
        }
    })
    .await;

    let completions = Command::new(workspace_binary("mesos-stateful"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&completions.stdout).contains("mesos-stateful"));
}

#[actix_rt::test]
async fn cli_talks_https_to_an_api_with_a_certificate() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../actors/tests/it/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let (api_port, mesos_port) = (free_port(), free_port());
    let _dev = Interrupted(
        Command::new(workspace_binary("mesos-stateful"))
            .args(["dev", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .args(["--mesos-listen", &format!("127.0.0.1:{mesos_port}")])
            .args(["--agents", "0", "--tls-cert"])
            .arg(fixtures.join("tls-cert.pem"))
            .arg("--tls-key")
            .arg(fixtures.join("tls-key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = format!("https://127.0.0.1:{api_port}");
    let list = |ca: Option<&Path>| {
        let mut command = Command::new(workspace_binary("mesos-stateful"));
        command
            .args(["instance", "--api", &api, "list", "-o", "json"])
            .env_remove("MESOS_STATEFUL_TOKEN")
            .env_remove("MESOS_STATEFUL_CA_FILE");
        if let Some(ca) = ca {
            command.arg("--ca-file").arg(ca);
        }
        command.output().unwrap()
    };
    // Trusting the test CA, the CLI lists (no instance yet).
    let listed = wait_for("the HTTPS API", Duration::from_secs(30), || {
        let output = list(Some(&fixtures.join("tls-ca.pem")));
        async move { output.status.success().then_some(output) }
    })
    .await;
    let json: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert!(json.as_array().is_some_and(|a| a.is_empty()), "{json}");
    // Without it the certificate is not trusted, and the CLI says so.
    let refused = list(None);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(&format!("calling {api}")), "{stderr}");
}
