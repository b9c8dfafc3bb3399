//! The crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong when running a devcluster.
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    /// The configuration cannot describe a cluster.
    #[error("invalid devcluster configuration: {0}")]
    Config(String),
    /// A listening socket could not be opened.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A sandbox directory could not be created.
    #[error("creating sandbox {path}: {source}")]
    Sandbox {
        /// The sandbox path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A `CommandInfo.uris` entry could not be fetched.
    #[error("fetching {uri}: {reason}")]
    Fetch {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// An executor process could not be started.
    #[error("starting executor {executor_id}: {source}")]
    Spawn {
        /// The executor.
        executor_id: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON document does not follow Mesos's JSON mapping of the message.
    #[error("invalid json message: {0}")]
    Json(String),
    /// The embedded protobuf descriptors cannot be used.
    #[error("protobuf descriptors: {0}")]
    Descriptors(String),
    /// An agent could not be restarted.
    #[error("restarting agent {index}: {reason}")]
    AgentRestart {
        /// The agent's index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// An agent could not be stopped or removed.
    #[error("agent {index}: {reason}")]
    AgentControl {
        /// The agent's index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// ZooKeeper could not be used.
    #[error("zookeeper: {0}")]
    ZooKeeper(String),
    /// The dedicated runtime thread of a [`crate::DevClusterThread`] failed.
    #[error("devcluster runtime thread: {0}")]
    Thread(String),
}
