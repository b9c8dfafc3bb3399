//! A third-party client against devcluster: the pymesos checks of
//! `integration-tests/python/` (pymesos speaks JSON only). They fail, rather than
//! skip, when python3 or pymesos is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesos_stateful_devcluster::DevCluster;

use super::config;

const INSTALL_HINT: &str =
    "run integration-tests/python/install-pymesos.sh to install pymesos 0.3.15 for python3";

fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("integration-tests")
        .join("python")
}

async fn require_pymesos() {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import pymesos"])
        .output()
        .await
        .unwrap_or_else(|error| panic!("python3 cannot be run ({error}); {INSTALL_HINT}"));
    assert!(
        probe.status.success(),
        "pymesos is not importable ({}); {INSTALL_HINT}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
}

/// Runs `pymesos_check.py` against a fresh cluster with `extra` arguments; asserts
/// it succeeded and returns its standard output.
async fn run_check(work_dir: &Path, extra: &[&str]) -> String {
    require_pymesos().await;
    let cluster = DevCluster::start(config(work_dir)).await.unwrap();
    let run = tokio::process::Command::new("python3")
        .arg(python_dir().join("pymesos_check.py"))
        .arg(cluster.master_url())
        .args(["--tasks", "2", "--timeout", "60"])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the pymesos check did not end within 90 s")
        .unwrap();
    cluster.shutdown().await;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the pymesos check failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("version 1.11.0"), "{stdout}");
    for task in ["pymesos-check-0", "pymesos-check-1"] {
        for state in ["TASK_RUNNING", "TASK_FINISHED"] {
            let line = format!("update {task} {state}");
            assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
        }
    }
    assert!(stdout.trim_end().ends_with("CHECK OK"), "{stdout}");
    stdout
}

/// The sandbox files named `name` under `root`.
fn sandbox_files(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn pymesos_scheduler_runs_command_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_check(dir.path(), &[]).await;
    for task in ["pymesos-check-0", "pymesos-check-1"] {
        let states = format!("task {task} states TASK_STARTING TASK_RUNNING TASK_FINISHED");
        assert!(stdout.contains(&states), "no `{states}` in:\n{stdout}");
    }
    // Each task wrote to the stdout file of its own sandbox.
    let outputs: Vec<String> = sandbox_files(dir.path(), "stdout")
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    assert_eq!(outputs, ["hello\n", "hello\n"]);
}

#[tokio::test]
async fn pymesos_executor_runs_tasks_and_sends_messages() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_check(dir.path(), &["--executor"]).await;
    for task in ["pymesos-check-0", "pymesos-check-1"] {
        let message = format!("message from pymesos-check-executor: hello from {task}");
        assert!(stdout.contains(&message), "no `{message}` in:\n{stdout}");
    }
    // One executor ran both tasks and was shut down when the framework left.
    let logs = sandbox_files(dir.path(), "stdout");
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    for line in [
        "registered executor pymesos-check-executor",
        "finished pymesos-check-0",
        "finished pymesos-check-1",
        "shutting down",
    ] {
        assert!(
            log.contains(line),
            "no `{line}` in the executor's stdout:\n{log}"
        );
    }
}
