//! The REST API: routes, errors, security, the event stream and the OpenAPI document.
//!
//! Handlers only translate: parse and validate a request, send it to an actor handle,
//! map the answer to HTTP. They never touch the store. The server itself (bind, TLS,
//! workers) is the [`HttpLib`](crate::actor::http_lib) actor's.
//!
//! # Layout
//! - [`error`]: the error shape `{code, message, details}` and its stable codes.
//! - [`instances`]: `/v1/instances…`: create (idempotent), list, get (`ETag`),
//!   delete (`If-Match`), endpoints, exec.
//! - [`operations`]: `PATCH /v1/instances/{name}` (scale, rolling update), restart
//!   and replace of one member.
//! - [`events`]: `GET /v1/events`, Server-Sent Events of instance and member changes.
//! - [`system`]: `/health`, `/ready`, `/v1/info`, `/metrics`, `/openapi.json`.
//! - [`compat`]: the routes of mr-redis (`/v1/CREATE…`, `/v1/DELETE…`, `/v1/STATUS…`).
//! - [`artifacts`]: `/v1/artifacts/{sha256}/{file}`, the executor binary for agents'
//!   fetchers.
//! - [`security`]: bearer tokens, the rate limiter, CORS, as one middleware.
//! - [`idempotency`]: the remembered answers of creates.
//! - [`openapi`]: the OpenAPI 3 document, derived from the types.

pub mod artifacts;
pub mod compat;
pub mod error;
pub mod events;
pub mod idempotency;
pub mod instances;
pub mod openapi;
pub mod operations;
pub mod security;
pub mod system;
pub mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web;

use crate::telemetry::Metrics;

use crate::actor::creator::CreatorHandle;
use crate::actor::destroyer::DestroyerHandle;
use crate::actor::maintainer::MaintainerHandle;
use crate::actor::state_manager::StateManagerHandle;

pub use error::{ApiError, ErrorBody, ErrorCode};
use events::EventHub;
use idempotency::IdempotencyCache;
use security::{RateLimit, RateLimiter, Tokens};

/// Largest request body accepted by default.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default interval of the event stream's heartbeat comments.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// What the handlers reach.
#[derive(Debug, Clone)]
pub struct ApiHandles {
    /// Creates instances.
    pub creator: CreatorHandle,
    /// Deletes instances.
    pub destroyer: DestroyerHandle,
    /// Reads state.
    pub state: StateManagerHandle,
    /// Runs commands in members' containers.
    pub maintainer: MaintainerHandle,
    /// The subscription to Mesos, for `/ready` and `/v1/info`.
    pub mesos: Arc<dyn crate::mesos::MesosCalls>,
    /// The instruments, for `GET /metrics`.
    pub metrics: Arc<Metrics>,
}

/// The operator's settings of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Bearer tokens; empty turns authentication off.
    pub tokens: Tokens,
    /// The one origin allowed by CORS; `None` sends no CORS headers.
    pub cors_origin: Option<String>,
    /// Requests allowed per client address; `None` turns the limit off.
    pub rate_limit: Option<RateLimit>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Interval of the event stream's heartbeat comments.
    pub heartbeat: Duration,
    /// Events kept for clients resuming with `Last-Event-ID`.
    pub event_ring: usize,
    /// Image of instances created through the mr-redis routes.
    pub compat_image: String,
    /// PEM certificate chain and key; with them the API speaks HTTPS only.
    pub tls: Option<TlsFiles>,
    /// Files served to agents' fetchers under `/v1/artifacts/` (the executor).
    pub artifacts: artifacts::Artifacts,
    /// Whether creates may ask for privileged containers. The executors must be
    /// allowed too (`MESOS_STATEFUL_ALLOW_PRIVILEGED=1` in their environment).
    pub allow_privileged: bool,
}

/// Where the TLS certificate and key are.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            tokens: Tokens::default(),
            cors_origin: None,
            rate_limit: Some(RateLimit {
                per_second: 100.0,
                burst: 200.0,
            }),
            max_body_bytes: MAX_BODY_BYTES,
            heartbeat: DEFAULT_HEARTBEAT,
            event_ring: events::DEFAULT_RING_CAPACITY,
            compat_image: "redis:7".to_string(),
            tls: None,
            artifacts: artifacts::Artifacts::default(),
            allow_privileged: false,
        }
    }
}

/// State shared by every worker of one server.
#[derive(Debug)]
pub struct ApiShared {
    /// The operator's settings.
    pub settings: ApiSettings,
    /// First answers of creates.
    pub idempotency: Mutex<IdempotencyCache>,
    /// The event stream.
    pub events: Arc<EventHub>,
    /// Token buckets by client; `None` when the limit is off.
    pub rate_limiter: Option<Mutex<RateLimiter>>,
}

impl ApiShared {
    /// Fresh state for `settings`.
    pub fn new(settings: ApiSettings) -> Self {
        ApiShared {
            events: Arc::new(EventHub::new(settings.event_ring)),
            idempotency: Mutex::new(IdempotencyCache::default()),
            rate_limiter: settings.rate_limit.map(|l| Mutex::new(RateLimiter::new(l))),
            settings,
        }
    }
}

/// Adds the API's routes to an app, with default settings and an event stream fed by
/// nothing (for tests that drive the routes alone).
pub fn configure(config: &mut web::ServiceConfig) {
    let shared = web::Data::new(ApiShared::new(ApiSettings::default()));
    config
        .app_data(shared)
        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES));
    routes(config);
}

/// Adds the API's routes; the app provides `web::Data<ApiHandles>` and
/// `web::Data<ApiShared>`.
pub fn routes(config: &mut web::ServiceConfig) {
    instances::configure(config);
    operations::configure(config);
    config.service(
        web::resource("/v1/events")
            .route(web::get().to(events::stream_events))
            .default_service(web::to(error::method_not_allowed)),
    );
    system::configure(config);
    compat::configure(config);
    artifacts::configure(config);
}
