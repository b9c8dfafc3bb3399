//! Persistence of mesos-stateful's state.
//!
//! This crate owns everything the scheduler keeps across restarts: which instances
//! exist, the current task of each of their members, the framework id Mesos assigned,
//! and the version of the layout all of that is written in. It is the only crate that
//! touches RocksDB.
//!
//! Two levels are offered. [`Persister`] is a small key-value interface (get, put,
//! delete, atomic batch with version checks, prefix scan) shaped after ZooKeeper so
//! that a ZooKeeper backend can be added next to [`RocksPersister`] and
//! [`MemPersister`]. [`StateStore`] sits on top and reads and writes the typed
//! [`records`], one record per entity, each change set as one atomic batch.
//!
//! Every call is synchronous and may wait for a disk flush: callers run it on a
//! blocking thread pool (`spawn_blocking`, a `SyncArbiter`) and never on an async
//! executor thread.
//!
//! # Layout
//! - [`records`]: the serde records and [`records::SCHEMA_VERSION`].
//! - `persister`: the [`Persister`] trait, [`Versioned`], [`Batch`] and [`Op`], and the
//!   batch semantics both backends share.
//! - `rocks`: [`RocksPersister`], the durable backend.
//! - `memory`: [`MemPersister`], the in-memory backend with fault injection for tests.
//! - `state`: [`StateStore`] and [`Changes`], the typed layer and its key layout.
//! - `migrations`: the ordered steps that bring an older layout to
//!   [`records::SCHEMA_VERSION`] when the store is opened.
//! - `error`: [`StoreError`], the one error type of the crate.
//! - `contract_tests` (tests only): the behaviour every backend must show, run
//!   against each backend, and a property test that the backends agree.
//!
//! # What this crate must not do
//! It knows nothing about actors, Mesos or HTTP: no runtime, no protobuf, no web
//! types. The rules for changing records (the instance state machine, the mapping of
//! Mesos task states) belong to the `actors` crate; this crate stores what it is given.

#[cfg(test)]
mod contract_tests;
mod error;
mod memory;
mod migrations;
mod persister;
pub mod records;
mod rocks;
mod state;

pub use error::StoreError;
pub use memory::MemPersister;
pub use persister::{Batch, Op, Persister, Versioned};
pub use rocks::RocksPersister;
pub use state::{Change, Changes, StateStore};
