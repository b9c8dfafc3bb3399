//! schemathesis (from PyPI) against the OpenAPI document served by a running
//! `mesos-stateful dev` on simulated agents, with authentication on: every check
//! passes (see `integration-tests/python/schemathesis_check.py` for what it runs).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "schemathesis-token";

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[actix_rt::test]
async fn schemathesis_finds_no_failure_in_the_served_openapi_document() {
    let available = Command::new("python3")
        .args(["-c", "import schemathesis"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        available,
        "schemathesis is not installed: run scripts/install-deps.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let _dev = Dev(Command::new(workspace_binary("mesos-stateful"))
        .args(["dev", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{api_port}")])
        .args(["--mesos-listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--agents",
            "0",
            "--simulated-agents",
            "2",
            "--rate-limit",
            "0",
        ])
        .arg("--api-tokens-file")
        .arg(&tokens)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let http = reqwest::Client::new();
    wait_for("the API to be ready", Duration::from_secs(30), || {
        let http = http.clone();
        let url = format!("{api}/ready");
        async move {
            let response = http.get(url).bearer_auth(TOKEN).send().await.ok()?;
            response.status().is_success().then_some(())
        }
    })
    .await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join("schemathesis_check.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .args([api.as_str(), TOKEN])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "schemathesis failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
