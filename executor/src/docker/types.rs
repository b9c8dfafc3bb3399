//! Request and response bodies of the Docker Engine API, in the engine's JSON shape.
//!
//! Only the fields the executor uses are modelled; unknown fields are ignored and
//! fields the engine may send as `null` are optional.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    /// The engine's release, e.g. `20.10.24`.
    #[serde(rename = "Version", default)]
    pub version: String,
    /// The newest API version the engine speaks, e.g. `1.41`.
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    /// The oldest API version the engine accepts; absent on very old engines.
    #[serde(rename = "MinAPIVersion", default)]
    pub min_api_version: Option<String>,
}

/// Body of `POST /containers/create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateContainer {
    /// Image reference.
    pub image: String,
    /// Replaces the image's CMD when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's ENTRYPOINT when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Environment as `NAME=value` strings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Container labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Ports the container listens on (`6379/tcp`), needed for publishing them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, EmptyObject>,
    /// Resource limits and networking.
    pub host_config: HostConfig,
}

/// A JSON `{}`, the value the engine expects in `ExposedPorts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EmptyObject {}

/// Where one container port is published on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// The host address to bind; all addresses when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    /// The host port, as a decimal string.
    pub host_port: String,
}

/// One entry of `HostConfig.Mounts`: a host directory bound into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindMount {
    /// Always `bind`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// The host directory (it must exist).
    pub source: String,
    /// The path inside the container.
    pub target: String,
    /// Whether the container may only read it.
    pub read_only: bool,
}

impl BindMount {
    /// A bind mount of host directory `source` at `target`.
    pub fn new(source: String, target: String, read_only: bool) -> BindMount {
        BindMount {
            kind: "bind",
            source,
            target,
            read_only,
        }
    }
}

/// The `HostConfig` part of a container creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `host`, `bridge`, `none`, … ; the engine's default (bridge) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// CPU quota in billionths of a CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Published ports by container port (`6379/tcp`), with bridge networking.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// Host directories bound into the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<BindMount>,
    /// Whether the container runs privileged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
}

/// Answer of `POST /containers/create`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreatedContainer {
    /// The new container's id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Warnings the engine attached (may be `null`).
    #[serde(rename = "Warnings", default)]
    pub warnings: Option<Vec<String>>,
}

/// Answer of `GET /containers/{id}/json` (the parts we read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerInspect {
    /// Full container id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Name with the engine's leading `/`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Runtime state.
    #[serde(rename = "State")]
    pub state: ContainerState,
    /// Its network addresses (absent on some engines for stopped containers).
    #[serde(rename = "NetworkSettings", default)]
    pub network_settings: Option<NetworkSettings>,
}

/// `NetworkSettings` of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkSettings {
    /// The address on the default bridge (empty with host networking).
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    /// The address on each network the container joined.
    #[serde(rename = "Networks", default)]
    pub networks: Option<BTreeMap<String, EndpointSettings>>,
}

/// One network of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointSettings {
    /// The container's address on that network (may be empty).
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
}

impl NetworkSettings {
    /// The container's address: the default bridge's, else the first non-empty one
    /// of its networks.
    pub fn address(&self) -> Option<&str> {
        if !self.ip_address.is_empty() {
            return Some(&self.ip_address);
        }
        self.networks
            .iter()
            .flatten()
            .map(|(_, endpoint)| endpoint.ip_address.as_str())
            .find(|address| !address.is_empty())
    }
}

/// `State` of an inspected container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    #[serde(rename = "Status", default)]
    pub status: String,
    /// Whether the container's process runs.
    #[serde(rename = "Running", default)]
    pub running: bool,
    /// Exit code of the last run (0 while it runs).
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    /// Whether the kernel killed it for exceeding its memory limit.
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    /// The engine's error when the container could not run, empty otherwise.
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// Condition for `POST /containers/{id}/wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Returns as soon as the container does not run (at once if it already exited).
    NotRunning,
    /// Returns at the container's next exit.
    NextExit,
    /// Returns once the container is removed.
    Removed,
}

impl WaitCondition {
    /// The query value the engine expects.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitCondition::NotRunning => "not-running",
            WaitCondition::NextExit => "next-exit",
            WaitCondition::Removed => "removed",
        }
    }
}

/// Answer of `POST /containers/{id}/wait`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WaitResponse {
    /// The container's exit code.
    #[serde(rename = "StatusCode")]
    pub status_code: i64,
    /// Set when waiting itself failed.
    #[serde(rename = "Error", default)]
    pub error: Option<WaitError>,
}

/// The error part of a wait answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WaitError {
    /// What went wrong.
    #[serde(rename = "Message", default)]
    pub message: String,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerSummary {
    /// Full container id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Names, each with a leading `/`.
    #[serde(rename = "Names", default)]
    pub names: Option<Vec<String>>,
    /// Image the container was created from.
    #[serde(rename = "Image", default)]
    pub image: String,
    /// Short state (`running`, `exited`, …).
    #[serde(rename = "State", default)]
    pub state: String,
    /// Human-readable status (`Up 2 minutes`).
    #[serde(rename = "Status", default)]
    pub status: String,
    /// Container labels (may be `null`).
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Options of `DELETE /containers/{id}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoveOptions {
    /// Kill the container first if it runs.
    pub force: bool,
    /// Also remove its anonymous volumes.
    pub volumes: bool,
}

/// The engine's error body.
#[derive(Debug, Deserialize)]
pub(crate) struct EngineMessage {
    pub message: String,
}

/// One line of the progress stream of `POST /images/create`.
#[derive(Debug, Deserialize)]
pub(crate) struct ProgressLine {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(rename = "errorDetail", default)]
    pub error_detail: Option<EngineMessage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_container_serializes_in_engine_shape() {
        let body = CreateContainer {
            image: "busybox:1".into(),
            cmd: Some(vec!["sleep".into(), "30".into()]),
            entrypoint: None,
            env: vec!["A=1".into()],
            labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
            exposed_ports: BTreeMap::from([("6379/tcp".to_string(), EmptyObject {})]),
            host_config: HostConfig {
                network_mode: Some("bridge".into()),
                nano_cpus: Some(500_000_000),
                memory: Some(64 * 1024 * 1024),
                port_bindings: BTreeMap::from([(
                    "6379/tcp".to_string(),
                    vec![PortBinding {
                        host_ip: String::new(),
                        host_port: "31000".into(),
                    }],
                )]),
                mounts: vec![BindMount::new("/sandbox/data".into(), "/data".into(), true)],
                privileged: true,
            },
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Image": "busybox:1",
                "Cmd": ["sleep", "30"],
                "Env": ["A=1"],
                "Labels": {"k": "v"},
                "ExposedPorts": {"6379/tcp": {}},
                "HostConfig": {
                    "NetworkMode": "bridge",
                    "NanoCpus": 500000000,
                    "Memory": 67108864,
                    "PortBindings": {"6379/tcp": [{"HostPort": "31000"}]},
                    "Mounts": [{"Type": "bind", "Source": "/sandbox/data", "Target": "/data", "ReadOnly": true}],
                    "Privileged": true
                }
            })
        );
        let minimal = serde_json::to_value(CreateContainer {
            image: "x".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(minimal, serde_json::json!({"Image": "x", "HostConfig": {}}));
    }

    #[test]
    fn engine_answers_with_nulls_and_extra_fields_parse() {
        let summary: ContainerSummary = serde_json::from_str(
            r#"{"Id":"abc","Names":null,"Image":"i","State":"running","Labels":null,"Extra":1}"#,
        )
        .unwrap();
        assert_eq!(summary.labels, None);
        let wait: WaitResponse = serde_json::from_str(r#"{"StatusCode":3,"Error":null}"#).unwrap();
        assert_eq!(wait.status_code, 3);
        assert_eq!(wait.error, None);
        let inspect: ContainerInspect = serde_json::from_str(
            r#"{"Id":"abc","Name":"/n","State":{"Status":"exited","Running":false,"ExitCode":137,"OOMKilled":true,"Error":""}}"#,
        )
        .unwrap();
        assert_eq!(inspect.state.exit_code, 137);
        assert!(inspect.state.oom_killed);
        assert_eq!(inspect.network_settings, None);
        let bridged: ContainerInspect = serde_json::from_str(
            r#"{"Id":"a","State":{},"NetworkSettings":{"IPAddress":"","Networks":{"n":{"IPAddress":""},"m":{"IPAddress":"172.18.0.2"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            bridged.network_settings.unwrap().address(),
            Some("172.18.0.2")
        );
        assert!(serde_json::from_str::<WaitResponse>(r#"{"Error":null}"#).is_err());
    }
}
