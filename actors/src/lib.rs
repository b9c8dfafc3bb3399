//! The actors of mesos-stateful and the domain logic they carry out.
//!
//! Seven actix actors turn REST calls and Mesos events into persisted state and Mesos
//! calls. Each is a thin shell: decisions live in plain structs and functions under
//! [`domain`], unit-tested without a runtime.
//!
//! | actor | owns | inputs |
//! |---|---|---|
//! | [`HttpLib`](actor::http_lib) | the actix-web server | REST requests |
//! | [`Creator`](actor::creator) | creation of instances | create requests |
//! | [`Destroyer`](actor::destroyer) | deletion of instances | delete requests, terminal tasks |
//! | [`BufferManager`](actor::buffer_manager) | the launch queue and the update queue | jobs, Mesos UPDATEs |
//! | [`OfferManager`](actor::offer_manager) | offers: match, ACCEPT, DECLINE | Mesos OFFERS/RESCIND |
//! | [`Maintainer`](actor::maintainer) | task states → member and instance states | updates |
//! | [`StateManager`](actor::state_manager) | the store and its in-memory cache | reads and writes |
//!
//! # Layout
//! - [`domain`]: validation, offer matching, launch descriptions, lifecycle rules, views.
//! - [`workload`]: the trait framework developers implement, and its actions.
//! - [`mesos`]: the [`MesosCalls`](mesos::MesosCalls) trait through which actors talk to
//!   Mesos, implemented by the scheduler's client, and the router of Mesos events.
//! - [`actor`]: the actors and their handles; [`System`](actor::System) wires them.
//! - [`http`]: the REST API's routes, errors, security, event stream and OpenAPI document.
//! - [`telemetry`]: the span of each handled message and the Prometheus instruments.
//!
//! # Must not
//! Speak HTTP to Mesos (that is the scheduler crate's client, behind `MesosCalls`),
//! touch RocksDB directly (only through the store crate, on blocking threads), or block
//! an actor thread.

pub mod actor;
pub mod domain;
pub mod error;
pub mod http;
pub mod mesos;
pub mod telemetry;
pub mod workload;

pub use error::ActorError;
