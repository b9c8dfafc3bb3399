//! Masters in ZooKeeper, laid out as Mesos masters lay themselves out (protocol
//! file §4): each master holds a session with an ephemeral sequential node
//! `<path>/json.info_<sequence>` whose data is its MasterInfo in Mesos JSON; the
//! lowest sequence leads. Closing a master's session removes its node, and the
//! next one leads.
//!
//! devcluster follows the leadership with a session of its own that watches the
//! children of `<path>` and tells the cluster which of its masters leads (none if
//! the lowest node is not one of them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesos_stateful_proto::v1::MasterInfo;
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::error::DevClusterError;
use crate::http::Shared;

/// The name prefix of the masters' nodes.
pub const MEMBER_PREFIX: &str = "json.info_";

/// A parsed `zk://host:port[,host:port…]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkUrl {
    /// `host:port,host:port`.
    pub servers: String,
    /// The group's path, e.g. `/mesos`.
    pub path: String,
}

impl ZkUrl {
    /// Parses `zk://host:port[,host:port…]/path`.
    pub fn parse(url: &str) -> Result<ZkUrl, DevClusterError> {
        let invalid =
            |reason: &str| DevClusterError::Config(format!("zookeeper url '{url}': {reason}"));
        let rest = url
            .strip_prefix("zk://")
            .ok_or_else(|| invalid("expected zk://host:port/path"))?;
        let (servers, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected a path after the servers"))?;
        let path = format!("/{}", path.trim_end_matches('/'));
        if servers.is_empty() || path == "/" {
            return Err(invalid("servers and path must not be empty"));
        }
        Ok(ZkUrl {
            servers: servers.to_string(),
            path,
        })
    }
}

fn zk_error(context: &str) -> impl Fn(zk::Error) -> DevClusterError + '_ {
    move |error| DevClusterError::ZooKeeper(format!("{context}: {error}"))
}

async fn connect(url: &ZkUrl) -> Result<zk::Client, DevClusterError> {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .with_connection_timeout(Duration::from_secs(5))
        .connect(&url.servers)
        .await
        .map_err(zk_error("connecting"))
}

/// Registers a master: a session of its own holding its `json.info_` node.
/// Returns the session (closing it, by dropping it, removes the node) and the
/// node's sequence number.
pub async fn register(
    url: &ZkUrl,
    info: &MasterInfo,
) -> Result<(zk::Client, i64), DevClusterError> {
    let client = connect(url).await?;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.mkdir(&url.path, &persistent).await {
        Ok(()) | Err(zk::Error::NodeExists) => {}
        Err(error) => return Err(zk_error("creating the masters' path")(error)),
    }
    let data = crate::json::to_json_bytes(info)?;
    let ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, sequence) = client
        .create(&format!("{}/{MEMBER_PREFIX}", url.path), &data, &ephemeral)
        .await
        .map_err(zk_error("registering a master"))?;
    Ok((client, sequence.into_i64()))
}

/// The index of the master leading among `children`: the one with the lowest
/// `json.info_` sequence, if that sequence is one of `ours` (sequence, index).
pub fn leader_among(children: &[String], ours: &[(i64, usize)]) -> Option<usize> {
    let lowest = children
        .iter()
        .filter_map(|name| name.strip_prefix(MEMBER_PREFIX))
        .filter_map(|sequence| sequence.parse::<i64>().ok())
        .min()?;
    ours.iter()
        .find(|(sequence, _)| *sequence == lowest)
        .map(|(_, index)| *index)
}

/// Tells the cluster which master leads now.
fn publish(shared: &Shared, leader: Option<usize>) {
    shared.lock().set_leader(leader, Instant::now());
}

/// Reads the current leader once and publishes it.
pub async fn publish_current(
    url: &ZkUrl,
    shared: &Shared,
    ours: &[(i64, usize)],
) -> Result<(), DevClusterError> {
    let client = connect(url).await?;
    let children = client
        .list_children(&url.path)
        .await
        .map_err(zk_error("listing the masters"))?;
    publish(shared, leader_among(&children, ours));
    Ok(())
}

/// Follows the leadership until `shutdown` turns true, reconnecting when the
/// session is lost.
pub async fn follow(
    url: ZkUrl,
    shared: Arc<Shared>,
    ours: Vec<(i64, usize)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let session = tokio::select! {
            _ = shutdown.changed() => return,
            session = connect(&url) => session,
        };
        match session {
            Ok(client) => loop {
                let listed = tokio::select! {
                    _ = shutdown.changed() => return,
                    listed = client.list_and_watch_children(&url.path) => listed,
                };
                let (children, watcher) = match listed {
                    Ok(listed) => listed,
                    Err(error) => {
                        tracing::warn!(%error, "watching the masters in zookeeper failed");
                        break;
                    }
                };
                publish(&shared, leader_among(&children, &ours));
                let event = tokio::select! {
                    _ = shutdown.changed() => return,
                    event = watcher.changed() => event,
                };
                if event.session_state.is_terminated() {
                    tracing::warn!("zookeeper session of the leader watch ended");
                    break;
                }
            },
            Err(error) => tracing::warn!(%error, "connecting to zookeeper failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            ZkUrl::parse("zk://127.0.0.1:2181,127.0.0.1:2182/mesos/").unwrap(),
            ZkUrl {
                servers: "127.0.0.1:2181,127.0.0.1:2182".into(),
                path: "/mesos".into()
            }
        );
        for bad in [
            "http://x/mesos",
            "zk://127.0.0.1:2181",
            "zk:///mesos",
            "zk://h:1/",
        ] {
            assert!(ZkUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lowest_sequence_leads() {
        let children = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let ours = [(3, 0), (5, 1)];
        assert_eq!(
            leader_among(
                &children(&["json.info_0000000003", "json.info_0000000005"]),
                &ours
            ),
            Some(0)
        );
        assert_eq!(
            leader_among(&children(&["json.info_0000000005", "log_replicas"]), &ours),
            Some(1)
        );
        assert_eq!(
            leader_among(
                &children(&["json.info_0000000001", "json.info_0000000005"]),
                &ours
            ),
            None
        );
        assert_eq!(leader_among(&children(&["log_replicas"]), &ours), None);
    }
}
