//! The crate's error type.

use mesos_stateful_store::StoreError;

use crate::domain::request::ValidationError;

/// Errors of the actors, each with a stable REST code.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// The request is invalid; nothing changed.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// No instance has that name.
    #[error("instance {0} not found")]
    NotFound(String),
    /// An instance with that name exists.
    #[error("instance {0} already exists")]
    AlreadyExists(String),
    /// The store failed; the change was not made.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The launch queue is full: the create was refused before anything changed.
    #[error(
        "the launch queue is full ({queued} of {limit} jobs); retry in {retry_after_seconds} s"
    )]
    QueueFull {
        /// Jobs queued.
        queued: usize,
        /// The queue's bound.
        limit: usize,
        /// Seconds the client should wait before retrying.
        retry_after_seconds: u64,
        /// Whether a Mesos subscription is open (the queue drains) or not.
        subscribed: bool,
    },
    /// A write required the instance to be at a version it has moved on from.
    #[error("instance {name} is at version {current}, not {expected}")]
    VersionMoved {
        /// The instance.
        name: String,
        /// The version the write required.
        expected: u64,
        /// Its version now.
        current: u64,
    },
    /// An actor is gone (shutting down) or its mailbox is full.
    #[error("actor {actor} unavailable: {reason}")]
    Unavailable {
        /// Which actor.
        actor: &'static str,
        /// What happened.
        reason: String,
    },
}

impl ActorError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(e) => e.code(),
            Self::NotFound(_) => "not_found",
            Self::AlreadyExists(_) => "already_exists",
            Self::Store(_) => "store_error",
            Self::QueueFull {
                subscribed: true, ..
            } => "rate_limited",
            Self::QueueFull {
                subscribed: false, ..
            } => "not_ready",
            Self::VersionMoved { .. } => "precondition_failed",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    pub(crate) fn mailbox(actor: &'static str, error: actix::MailboxError) -> Self {
        ActorError::Unavailable {
            actor,
            reason: error.to_string(),
        }
    }
}
