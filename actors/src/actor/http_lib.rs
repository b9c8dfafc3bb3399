//! HttpLib: the REST API (actix-web). Handlers only translate: parse and validate a
//! request, send it to an actor handle, map the answer to HTTP. They never touch the
//! store.
//!
//! Routes:
//! - `POST /v1/instances` → 202 + `Location`, the instance as JSON;
//! - `GET /v1/instances`, `GET /v1/instances/{name}`;
//! - `DELETE /v1/instances/{name}` → 202;
//! - `GET /health`.
//!
//! Errors are JSON `{"code": "...", "message": "..."}` with stable codes.

use std::net::SocketAddr;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde::Serialize;

use std::sync::Arc;

use actix_web::dev::{Service, ServiceRequest};
use tracing::Instrument;

use mesos_stateful_store::records::InstanceStatus;

use crate::domain::request::{validate_name, CreateInstanceRequest};
use crate::telemetry::{Metrics, RequestLabels, StatusLabels};
use crate::ActorError;

use super::creator::CreatorHandle;
use super::destroyer::DestroyerHandle;
use super::maintainer::MaintainerHandle;
use super::state_manager::StateManagerHandle;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The error body of every failed request.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// An error answered to a REST client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<ActorError> for ApiError {
    fn from(error: ActorError) -> Self {
        let status = match &error {
            ActorError::Validation(_) => StatusCode::BAD_REQUEST,
            ActorError::NotFound(_) => StatusCode::NOT_FOUND,
            ActorError::AlreadyExists(_) => StatusCode::CONFLICT,
            ActorError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ActorError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody {
            code: self.code,
            message: self.message.clone(),
        })
    }
}

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

/// Adds the API's routes to an app.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/v1/instances")
                .route(web::post().to(create_instance))
                .route(web::get().to(list_instances))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/instances/{name}")
                .route(web::get().to(get_instance))
                .route(web::delete().to(delete_instance))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/instances/{name}/endpoints")
                .route(web::get().to(get_endpoints))
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/v1/info").route(web::get().to(info)))
        .service(web::resource("/ready").route(web::get().to(ready)))
        .service(
            web::resource("/v1/instances/{name}/members/{ordinal}/exec")
                .route(web::post().to(exec_in_member))
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/metrics").route(web::get().to(metrics)));
}

async fn create_instance(
    request: HttpRequest,
    body: web::Bytes,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        let json = content_type
            .to_str()
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "request body must be application/json",
            ));
        }
    }
    let parsed: CreateInstanceRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid request body: {e}"),
        )
    })?;
    let (name, spec) = parsed.validate().map_err(ActorError::from)?;
    let view = handles.creator.create(name.clone(), spec).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/instances/{name}")))
        .json(view))
}

/// Query of `GET /v1/instances`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only instances with this status (`RUNNING` …).
    status: Option<String>,
}

async fn list_instances(
    query: web::Query<ListQuery>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let wanted = match query.status.as_deref() {
        None => None,
        Some(status) => Some(
            InstanceStatus::ALL
                .into_iter()
                .find(|s| s.as_str().eq_ignore_ascii_case(status))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_field",
                        format!("unknown status {status:?}"),
                    )
                })?,
        ),
    };
    let views: Vec<_> = handles
        .state
        .list()
        .await?
        .iter()
        .filter(|s| wanted.is_none_or(|status| s.instance.status == status))
        .map(|s| s.view())
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Where clients find an instance's members now.
#[derive(Debug, Serialize)]
struct Endpoints {
    /// `host:port` of the running master, if it runs.
    master: Option<String>,
    /// `host:port` of every running replica.
    replicas: Vec<String>,
}

async fn get_endpoints(
    path: web::Path<String>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path)?;
    let Some(state) = handles.state.get(&name).await? else {
        return Err(ActorError::NotFound(name).into());
    };
    let view = state.view();
    let running = |m: &&crate::domain::view::MemberView| m.state.as_deref() == Some("TASK_RUNNING");
    let address = |m: &crate::domain::view::MemberView| {
        m.endpoint().map(|(host, port)| format!("{host}:{port}"))
    };
    let master = view
        .members
        .iter()
        .filter(running)
        .find(|m| m.role == mesos_stateful_store::records::Role::Master)
        .and_then(address);
    let replicas = view
        .members
        .iter()
        .filter(running)
        .filter(|m| m.role == mesos_stateful_store::records::Role::Replica)
        .filter_map(address)
        .collect();
    Ok(HttpResponse::Ok().json(Endpoints { master, replicas }))
}

/// Ready when subscribed to Mesos (the state was loaded before the server started).
async fn ready(handles: web::Data<ApiHandles>) -> HttpResponse {
    match handles.mesos.subscribed_master() {
        Some(_) => HttpResponse::Ok().json(serde_json::json!({"ready": true})),
        None => HttpResponse::ServiceUnavailable().json(ErrorBody {
            code: "not_ready",
            message: "not subscribed to Mesos".to_string(),
        }),
    }
}

async fn info(handles: web::Data<ApiHandles>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "framework_id": handles.mesos.framework_id(),
        "master": handles.mesos.subscribed_master(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

fn checked_name(path: web::Path<String>) -> Result<String, ApiError> {
    let name = path.into_inner();
    validate_name(&name).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("instance {name:?} not found"),
        )
    })?;
    Ok(name)
}

async fn get_instance(
    path: web::Path<String>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path)?;
    match handles.state.get(&name).await? {
        Some(state) => Ok(HttpResponse::Ok().json(state.view())),
        None => Err(ActorError::NotFound(name).into()),
    }
}

async fn delete_instance(
    path: web::Path<String>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path)?;
    let view = handles.destroyer.delete(&name).await?;
    Ok(HttpResponse::Accepted().json(view))
}

/// The Prometheus text format, with the instance gauges computed now.
async fn metrics(handles: web::Data<ApiHandles>) -> Result<HttpResponse, ApiError> {
    let states = handles.state.list().await?;
    let gauges = &handles.metrics.instances;
    for status in InstanceStatus::ALL {
        let count = states
            .iter()
            .filter(|s| s.instance.status == status)
            .count();
        gauges
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .set(count as i64);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(handles.metrics.encode()))
}

/// Body of `POST /v1/instances/{name}/members/{ordinal}/exec`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecRequest {
    /// Command and arguments, run without a shell.
    argv: Vec<String>,
    /// Longest the command may run (default 30 s, at most 300 s).
    #[serde(default)]
    timeout_seconds: Option<f64>,
}

/// Result of a command run in a member's container.
#[derive(Debug, Serialize)]
struct ExecResponse {
    command_id: String,
    exit_code: Option<i64>,
    stdout: String,
    stderr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn exec_in_member(
    path: web::Path<(String, String)>,
    body: web::Bytes,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let (name, ordinal) = path.into_inner();
    validate_name(&name).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("instance {name:?} not found"),
        )
    })?;
    let ordinal: u32 = ordinal.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("member {ordinal:?} not found"),
        )
    })?;
    let request: ExecRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid request body: {e}"),
        )
    })?;
    let invalid = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", reason);
    if request.argv.is_empty() || request.argv.len() > 256 {
        return Err(invalid("argv must hold 1 to 256 arguments".into()));
    }
    if request
        .argv
        .iter()
        .any(|a| a.len() > 4096 || a.contains('\0'))
    {
        return Err(invalid("an argument is too long or contains NUL".into()));
    }
    let timeout = request.timeout_seconds.unwrap_or(30.0);
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 300.0) {
        return Err(invalid("timeout_seconds must be in (0, 300]".into()));
    }
    let result = handles
        .maintainer
        .run_command(
            &name,
            ordinal,
            request.argv,
            std::time::Duration::from_secs_f64(timeout),
        )
        .await
        .map_err(|error| match error {
            ActorError::Unavailable {
                actor: "executor",
                reason,
            } if reason.starts_with("no answer") => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "command_timeout", reason)
            }
            ActorError::Unavailable {
                actor: "executor",
                reason,
            } => ApiError::new(StatusCode::CONFLICT, "member_unavailable", reason),
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(ExecResponse {
        command_id: result.command_id,
        exit_code: result.exit_code,
        stdout: result.stdout.unwrap_or_default(),
        stderr: result.stderr.unwrap_or_default(),
        error: result.error,
    }))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this resource",
    ))
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", request.path()),
    ))
}

/// The actor owning the HTTP server; stopping it stops the server gracefully.
#[derive(Debug)]
pub struct HttpLib {
    server: ServerHandle,
    /// Address the server is bound to (port 0 resolved).
    pub local_addr: SocketAddr,
}

impl HttpLib {
    /// Binds `listen` and starts serving on the current actix system.
    pub fn start_server(listen: SocketAddr, handles: ApiHandles) -> std::io::Result<Addr<HttpLib>> {
        let metrics = handles.metrics.clone();
        let data = web::Data::new(handles);
        let server = HttpServer::new(move || {
            let metrics = metrics.clone();
            App::new()
                .wrap_fn(move |request: ServiceRequest, service| {
                    // One span per request, the root of the trace of what it causes.
                    let method = request.method().to_string();
                    let route = request
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_string());
                    let span = tracing::info_span!(
                        "http_request",
                        otel.name = %format_args!("HttpLib::{method} {route}"),
                        http.method = %method,
                        http.route = %route,
                        http.status = tracing::field::Empty,
                    );
                    let metrics = metrics.clone();
                    let response = service.call(request).instrument(span.clone());
                    async move {
                        let response = response.await?;
                        let status = response.status().as_u16();
                        span.record("http.status", status);
                        metrics
                            .requests
                            .get_or_create(&RequestLabels {
                                method,
                                route,
                                status: status.to_string(),
                            })
                            .inc();
                        Ok(response)
                    }
                })
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .configure(configure)
                .default_service(web::to(not_found))
        })
        .workers(2)
        .disable_signals()
        .bind(listen)?;
        let local_addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("server bound to no address"))?;
        let server = server.run();
        let handle = server.handle();
        actix::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "http server stopped");
            }
        });
        tracing::info!(%local_addr, "REST API listening");
        Ok(HttpLib {
            server: handle,
            local_addr,
        }
        .start())
    }
}

impl Actor for HttpLib {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        let server = self.server.clone();
        actix::spawn(async move { server.stop(true).await });
        Running::Stop
    }
}

/// Asks the HttpLib for its bound address.
#[derive(Debug, Message)]
#[rtype(result = "SocketAddr")]
pub struct LocalAddr;

impl Handler<LocalAddr> for HttpLib {
    type Result = MessageResult<LocalAddr>;
    fn handle(&mut self, _: LocalAddr, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.local_addr)
    }
}
