//! `/health`, `/ready`, `/v1/info`, `/metrics` and `/openapi.json`.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use mesos_stateful_store::records::InstanceStatus;

use crate::telemetry::StatusLabels;

use super::error::{method_not_allowed, ApiError, ErrorBody};
use super::ApiHandles;

/// Adds the routes.
pub fn configure(config: &mut web::ServiceConfig) {
    for (path, handler) in [
        ("/health", web::get().to(health)),
        ("/ready", web::get().to(ready)),
        ("/v1/info", web::get().to(info)),
        ("/metrics", web::get().to(metrics)),
        ("/openapi.json", web::get().to(openapi)),
    ] {
        config.service(
            web::resource(path)
                .route(handler)
                .default_service(web::to(method_not_allowed)),
        );
    }
}

/// Body of `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// Body of `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always `true` on a 200.
    pub ready: bool,
}

/// Body of `/v1/info`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    /// The framework id Mesos gave us, once subscribed.
    pub framework_id: Option<String>,
    /// URL of the master we are subscribed to.
    pub master: Option<String>,
    /// Version of mesos-stateful.
    pub version: String,
}

/// Liveness: the process serves requests. Needs no token.
#[utoipa::path(get, path = "/health", tag = "system", security(()),
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".to_string(),
    })
}

/// Readiness: subscribed to Mesos (the state was loaded before the server started).
#[utoipa::path(get, path = "/ready", tag = "system",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not subscribed to Mesos (code not_ready)", body = ErrorBody),
    ))]
pub async fn ready(handles: web::Data<ApiHandles>) -> Result<HttpResponse, ApiError> {
    match handles.mesos.subscribed_master() {
        Some(_) => Ok(HttpResponse::Ok().json(Ready { ready: true })),
        None => Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            super::ErrorCode::NotReady,
            "not subscribed to Mesos",
        )),
    }
}

/// The framework, its master and our version.
#[utoipa::path(get, path = "/v1/info", tag = "system",
    responses((status = 200, description = "Framework information", body = Info)))]
pub async fn info(handles: web::Data<ApiHandles>) -> HttpResponse {
    HttpResponse::Ok().json(Info {
        framework_id: handles.mesos.framework_id(),
        master: handles.mesos.subscribed_master(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// The Prometheus text format, with the instance gauges computed now.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(handles: web::Data<ApiHandles>) -> Result<HttpResponse, ApiError> {
    let counts = handles.state.count_by_status();
    let gauges = &handles.metrics.instances;
    for status in InstanceStatus::ALL {
        let count = counts.get(status.as_str()).copied().unwrap_or(0);
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

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(super::openapi::document_json())
}
