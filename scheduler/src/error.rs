//! The crate's error type.

/// Errors of the scheduler library.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A setting is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// HTTP to the master failed.
    #[error("http: {0}")]
    Http(String),
    /// The master sent something the protocol does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The master refused the subscription (an ERROR event); retrying will not help.
    #[error("subscription refused by the master: {0}")]
    Refused(String),
    /// The master refused our credentials (401); retrying with the same ones will not help.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] mesos_stateful_store::StoreError),
    /// The actors could not start.
    #[error("actors: {0}")]
    Actors(#[from] mesos_stateful_actors::ActorError),
    /// The embedded devcluster could not start.
    #[error("devcluster: {0}")]
    DevCluster(String),
}
