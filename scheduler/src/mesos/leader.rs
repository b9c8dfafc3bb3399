//! Finding the leading master: a static list of masters (tried in turn, a 307 leads
//! to the leader) or leader detection in ZooKeeper, where every contending master
//! owns an ephemeral sequential znode `<path>/json.info_<seq>` holding its MasterInfo
//! as JSON and the lowest sequence is the leader.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::SchedulerError;

/// Prefix of the znodes masters create for leader election (Mesos 0.24 and later).
pub const MEMBER_PREFIX: &str = "json.info_";

/// Where the masters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterSpec {
    /// Base URLs (`http://host:port`), tried in turn.
    Static(Vec<String>),
    /// ZooKeeper servers (`host:port,host:port`) and the election path (`/mesos`).
    ZooKeeper {
        /// Comma-separated `host:port` list.
        servers: String,
        /// Absolute path of the election znode.
        path: String,
    },
}

impl FromStr for MasterSpec {
    type Err = SchedulerError;

    /// Parses `http://h1:5050,http://h2:5050` (a bare `host:port` gets `http://`) or
    /// `zk://h1:2181,h2:2181/mesos`.
    fn from_str(spec: &str) -> Result<MasterSpec, SchedulerError> {
        let spec = spec.trim();
        if let Some(rest) = spec.strip_prefix("zk://") {
            let (servers, path) = match rest.find('/') {
                Some(slash) => (&rest[..slash], &rest[slash..]),
                None => (rest, ""),
            };
            if servers.contains('@') {
                return Err(SchedulerError::Config(format!(
                    "master {spec:?}: ZooKeeper credentials are not supported"
                )));
            }
            let path = path.trim_end_matches('/');
            if servers.is_empty() || path.is_empty() {
                return Err(SchedulerError::Config(format!(
                    "master {spec:?}: expected zk://host:port[,host:port]/path"
                )));
            }
            return Ok(MasterSpec::ZooKeeper {
                servers: servers.to_string(),
                path: path.to_string(),
            });
        }
        let urls: Vec<String> = spec
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                let url = url.trim_end_matches('/');
                if url.starts_with("http://") || url.starts_with("https://") {
                    url.to_string()
                } else {
                    format!("http://{url}")
                }
            })
            .collect();
        if urls.is_empty() {
            return Err(SchedulerError::Config("no master given".into()));
        }
        if let Some(bad) = urls.iter().find(|url| url.contains(char::is_whitespace)) {
            return Err(SchedulerError::Config(format!("master {bad:?}: not a URL")));
        }
        Ok(MasterSpec::Static(urls))
    }
}

/// Base URL of the leader from a 307's `Location` (`//host:port/master/api/v1/scheduler`).
pub(crate) fn leader_base(current: &str, location: &str) -> Result<String, SchedulerError> {
    let scheme = if current.starts_with("https:") {
        "https:"
    } else {
        "http:"
    };
    let absolute = if location.starts_with("//") {
        format!("{scheme}{location}")
    } else if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        return Err(SchedulerError::Protocol(format!(
            "unusable Location {location:?}"
        )));
    };
    let after_scheme = absolute.find("//").map(|i| i + 2).unwrap_or(0);
    let authority_end = absolute[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(absolute.len());
    let path = &absolute[authority_end..];
    let base = &absolute[..authority_end];
    // Keep a `/master` prefix: `/master/api/v1/scheduler` is the same endpoint.
    if path.starts_with("/master/") {
        Ok(format!("{base}/master"))
    } else {
        Ok(base.to_string())
    }
}

/// The member with the lowest sequence among `json.info_<seq>` children; other
/// children (such as `log_replicas`) are ignored.
pub(crate) fn leading_member(children: &[String]) -> Option<&str> {
    children
        .iter()
        .filter_map(|name| {
            let sequence = name.strip_prefix(MEMBER_PREFIX)?;
            sequence.parse::<u64>().ok().map(|seq| (seq, name.as_str()))
        })
        .min()
        .map(|(_, name)| name)
}

#[derive(Debug, serde::Deserialize)]
struct MasterInfoJson {
    address: Option<AddressJson>,
    pid: Option<String>,
    hostname: Option<String>,
    port: Option<u32>,
}

#[derive(Debug, serde::Deserialize)]
struct AddressJson {
    hostname: Option<String>,
    ip: Option<String>,
    port: Option<u32>,
}

/// Base URL of a master from its MasterInfo JSON: `address.ip` (or
/// `address.hostname`) and `address.port`, else the `pid` (`master@IP:PORT`), else
/// `hostname` and `port`. The integer `ip` field (network byte order) is never used.
pub(crate) fn master_url(data: &[u8]) -> Result<String, SchedulerError> {
    let info: MasterInfoJson = serde_json::from_slice(data)
        .map_err(|e| SchedulerError::Protocol(format!("MasterInfo JSON in ZooKeeper: {e}")))?;
    if let Some(address) = &info.address {
        let host = address
            .ip
            .as_deref()
            .filter(|h| !h.is_empty())
            .or(address.hostname.as_deref().filter(|h| !h.is_empty()));
        if let (Some(host), Some(port)) = (host, address.port) {
            return Ok(format!("http://{}", host_port(host, port)));
        }
    }
    if let Some(endpoint) = info.pid.as_deref().and_then(|pid| pid.split_once('@')) {
        if let Some((host, port)) = endpoint.1.rsplit_once(':') {
            if let Ok(port) = port.parse::<u32>() {
                return Ok(format!("http://{}", host_port(host, port)));
            }
        }
    }
    if let (Some(host), Some(port)) = (info.hostname.as_deref(), info.port) {
        return Ok(format!("http://{}", host_port(host, port)));
    }
    Err(SchedulerError::Protocol(
        "MasterInfo JSON in ZooKeeper has no usable address".into(),
    ))
}

fn host_port(host: &str, port: u32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running form of a [`MasterSpec`].
#[derive(Debug)]
pub(crate) enum Masters {
    Static {
        urls: Vec<String>,
        next: AtomicUsize,
    },
    ZooKeeper {
        leader: watch::Receiver<Option<String>>,
        _detector: AbortOnDrop,
    },
}

impl Masters {
    /// Starts leader detection (a task on the current runtime for ZooKeeper).
    pub(crate) fn start(spec: MasterSpec) -> Masters {
        match spec {
            MasterSpec::Static(urls) => Masters::Static {
                urls,
                next: AtomicUsize::new(0),
            },
            MasterSpec::ZooKeeper { servers, path } => {
                let (sender, leader) = watch::channel(None);
                let detector = tokio::spawn(detect(servers, path, sender));
                Masters::ZooKeeper {
                    leader,
                    _detector: AbortOnDrop(detector),
                }
            }
        }
    }

    /// The master to subscribe to next (waits for a leader in ZooKeeper).
    pub(crate) async fn target(&self) -> String {
        match self {
            Masters::Static { urls, next } => {
                let index = next.load(Ordering::Relaxed) % urls.len().max(1);
                urls.get(index).cloned().unwrap_or_default()
            }
            Masters::ZooKeeper { leader, .. } => {
                let mut leader = leader.clone();
                loop {
                    if let Some(url) = leader.borrow_and_update().clone() {
                        return url;
                    }
                    if leader.changed().await.is_err() {
                        // The detector is gone: nothing will ever be elected.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Notes that `target()` failed, so that a static list moves to its next master.
    pub(crate) fn failed(&self) {
        if let Masters::Static { next, .. } = self {
            next.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Completes when the detected leader is no longer `url` (never for a static list).
    pub(crate) async fn changed_from(&self, url: &str) {
        match self {
            Masters::Static { .. } => std::future::pending::<()>().await,
            Masters::ZooKeeper { leader, .. } => {
                let mut leader = leader.clone();
                loop {
                    if leader.borrow_and_update().as_deref() != Some(url) {
                        return;
                    }
                    if leader.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// Keeps `leader` set to the current leader's URL, reconnecting to ZooKeeper with
/// backoff whenever the session is lost.
async fn detect(servers: String, path: String, leader: watch::Sender<Option<String>>) {
    let mut backoff = super::BACKOFF_MIN;
    loop {
        let connected = zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_connection_timeout(Duration::from_secs(5))
            .connect(&servers)
            .await;
        match connected {
            Ok(client) => {
                backoff = super::BACKOFF_MIN;
                tracing::info!(%servers, %path, "connected to ZooKeeper");
                let error = watch_leader(&client, &path, &leader).await;
                tracing::warn!(%error, %servers, "ZooKeeper leader detection interrupted");
            }
            Err(error) => tracing::warn!(%error, %servers, "connecting to ZooKeeper failed"),
        }
        let delay = backoff.mul_f64(rand::rng().random_range(0.5..1.0));
        tokio::time::sleep(delay).await;
        backoff = (backoff * 2).min(super::BACKOFF_MAX);
    }
}

/// Watches the children of `path` and publishes the leader until the session fails.
async fn watch_leader(
    client: &zookeeper_client::Client,
    path: &str,
    leader: &watch::Sender<Option<String>>,
) -> zookeeper_client::Error {
    loop {
        let (children, watcher) = match client.list_and_watch_children(path).await {
            Ok(listed) => listed,
            Err(zookeeper_client::Error::NoNode) => {
                // No master has registered yet; look again shortly.
                publish(leader, None);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(error) => return error,
        };
        let url = match leading_member(&children) {
            None => None,
            Some(member) => match client.get_data(&format!("{path}/{member}")).await {
                Ok((data, _)) => match master_url(&data) {
                    Ok(url) => Some(url),
                    Err(error) => {
                        tracing::warn!(%error, %member, "unusable leader znode");
                        None
                    }
                },
                // The leader went away between listing and reading: list again.
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(error) => return error,
            },
        };
        publish(leader, url);
        let event = watcher.changed().await;
        if event.session_state.is_terminated() {
            return zookeeper_client::Error::SessionExpired;
        }
    }
}

fn publish(leader: &watch::Sender<Option<String>>, url: Option<String>) {
    leader.send_if_modified(|current| {
        if *current == url {
            return false;
        }
        tracing::info!(leader = ?url, "leading master changed");
        *current = url;
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_specs_parse() {
        let statics = |spec: &str, urls: &[&str]| {
            assert_eq!(
                spec.parse::<MasterSpec>().unwrap(),
                MasterSpec::Static(urls.iter().map(|u| u.to_string()).collect()),
                "{spec}"
            );
        };
        statics("http://m1:5050", &["http://m1:5050"]);
        statics("http://m1:5050/", &["http://m1:5050"]);
        statics(
            "http://m1:5050, http://m2:5050,https://m3:5050",
            &["http://m1:5050", "http://m2:5050", "https://m3:5050"],
        );
        statics("m1:5050,m2:5050", &["http://m1:5050", "http://m2:5050"]);
        assert_eq!(
            "zk://z1:2181,z2:2181/mesos".parse::<MasterSpec>().unwrap(),
            MasterSpec::ZooKeeper {
                servers: "z1:2181,z2:2181".into(),
                path: "/mesos".into()
            }
        );
        assert_eq!(
            "zk://z1:2181/a/b/".parse::<MasterSpec>().unwrap(),
            MasterSpec::ZooKeeper {
                servers: "z1:2181".into(),
                path: "/a/b".into()
            }
        );
        for bad in [
            "",
            " , ",
            "zk://z1:2181",
            "zk:///mesos",
            "zk://u:p@z1:2181/mesos",
        ] {
            assert!(bad.parse::<MasterSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redirect_locations_resolve_to_the_leader() {
        let check = |location: &str, expected: &str| {
            assert_eq!(leader_base("http://m1:5050", location).unwrap(), expected);
        };
        check("//m2:5050/master/api/v1/scheduler", "http://m2:5050/master");
        check("//m2:5050", "http://m2:5050");
        check("http://m3:5050/api/v1/scheduler", "http://m3:5050");
        assert!(leader_base("http://m1:5050", "m2:5050").is_err());
        assert_eq!(
            leader_base("https://m1:5050", "//m2:5050/master/api/v1/scheduler").unwrap(),
            "https://m2:5050/master"
        );
    }

    #[test]
    fn the_lowest_sequence_leads() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&["log_replicas"], None),
            (
                &[
                    "json.info_0000000012",
                    "json.info_0000000003",
                    "log_replicas",
                ],
                Some("json.info_0000000003"),
            ),
            // Numeric, not lexical: 10 digits are zero-padded, but be safe anyway.
            (&["json.info_9", "json.info_10"], Some("json.info_9")),
            // Pre-0.24 labels and garbage are not JSON members.
            (
                &["info_0000000001", "json.info_x", "json.info_0000000007"],
                Some("json.info_0000000007"),
            ),
        ];
        for (children, expected) in cases {
            assert_eq!(leading_member(&names(children)), *expected, "{children:?}");
        }
    }

    #[test]
    fn master_info_json_gives_the_address() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"{"id":"x","ip":16777343,"port":5050,"pid":"master@127.0.0.1:5050","hostname":"localhost",
                   "address":{"hostname":"localhost","ip":"127.0.0.1","port":5050}}"#,
                Some("http://127.0.0.1:5050"),
            ),
            (
                r#"{"address":{"hostname":"m1.example","port":5051}}"#,
                Some("http://m1.example:5051"),
            ),
            (
                r#"{"ip":16777343,"pid":"master@10.0.0.2:5050"}"#,
                Some("http://10.0.0.2:5050"),
            ),
            (
                r#"{"ip":16777343,"hostname":"m2","port":5052}"#,
                Some("http://m2:5052"),
            ),
            (
                r#"{"address":{"ip":"::1","port":5050}}"#,
                Some("http://[::1]:5050"),
            ),
            (r#"{"ip":16777343,"port":5050}"#, None),
            ("not json", None),
        ];
        for (json, expected) in cases {
            assert_eq!(
                master_url(json.as_bytes()).ok().as_deref(),
                *expected,
                "{json}"
            );
        }
    }
}
