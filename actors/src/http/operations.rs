//! Operations on a live instance: `PATCH /v1/instances/{name}` (scale; update image,
//! args, env, resources with a rolling restart) and
//! `POST /v1/instances/{name}/members/{ordinal}/restart|replace`.
//!
//! Each answers 202 with the instance once the change is durable; the members then
//! restart one at a time (follow them on `/v1/events`). `If-Match` with the
//! instance's version guards each of them (412 when it moved on).

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use mesos_stateful_store::records::Resources;

use crate::domain::operations::SpecUpdate;
use crate::domain::request::{CreateInstanceRequest, ResourcesRequest};
use crate::domain::view::InstanceView;
use crate::ActorError;

use super::error::{method_not_allowed, ApiError, ErrorBody, ErrorCode};
use super::instances::{check_if_match, checked_name, etag, parse_json, require_json};
use super::ApiHandles;

/// Adds the routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/v1/instances/{name}/members/{ordinal}/restart")
                .route(web::post().to(restart_member))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/instances/{name}/members/{ordinal}/replace")
                .route(web::post().to(replace_member))
                .default_service(web::to(method_not_allowed)),
        );
}

/// Body of `PATCH /v1/instances/{name}`: the fields to change, others kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchInstanceRequest {
    /// Replicas besides the master.
    pub replicas: Option<u32>,
    /// Docker image of every member.
    pub image: Option<String>,
    /// Args of the master container.
    pub master_args: Option<Vec<String>>,
    /// Args of replica containers.
    pub replica_args: Option<Vec<String>>,
    /// Environment of every member.
    pub env: Option<BTreeMap<String, String>>,
    /// Resources of each member.
    pub resources: Option<ResourcesRequest>,
}

impl PatchInstanceRequest {
    fn changes_spec(&self) -> bool {
        self.image.is_some()
            || self.master_args.is_some()
            || self.replica_args.is_some()
            || self.env.is_some()
            || self.resources.is_some()
    }
}

/// `If-Match` as a version for the operations that check it atomically: `None`
/// when absent or `*`.
fn if_match_version(request: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    bare.parse().map(Some).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::InvalidHeader,
            "If-Match must be one instance version as returned in ETag",
        )
    })
}

fn accepted(view: InstanceView) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::ETAG, etag(view.version)))
        .json(view)
}

/// Scales an instance or changes its spec (members restart one at a time).
#[utoipa::path(
    patch,
    path = "/v1/instances/{name}",
    tag = "instances",
    request_body = PatchInstanceRequest,
    params(
        ("name" = String, Path, description = "Instance name"),
        ("If-Match" = Option<String>, Header, description = "Change only at this version (ETag)"),
    ),
    responses(
        (status = 200, description = "Nothing to change: the instance as it is", body = InstanceView),
        (status = 202, description = "Durable; members restart one at a time", body = InstanceView),
        (status = 400, description = "Invalid body or If-Match", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "The instance's state does not allow it (code conflict)", body = ErrorBody),
        (status = 412, description = "The instance is at another version", body = ErrorBody),
    )
)]
pub async fn patch_instance(
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path.into_inner())?;
    require_json(&request)?;
    let patch: PatchInstanceRequest = parse_json(&body)?;
    let if_match = if_match_version(&request)?;
    let Some(state) = handles.state.get(&name) else {
        return Err(ActorError::NotFound(name).into());
    };
    // The merged spec must pass every check a create does.
    let current = &state.instance.spec;
    let merged = serde_json::json!({
        "name": name,
        "image": patch.image.as_ref().unwrap_or(&current.image),
        "replicas": patch.replicas.unwrap_or(current.replicas),
        "resources": patch.resources.map_or(
            serde_json::json!({"cpus": current.resources.cpus, "mem": current.resources.mem, "disk": current.resources.disk}),
            |r| serde_json::json!({"cpus": r.cpus, "mem": r.mem, "disk": r.disk}),
        ),
        "master_args": patch.master_args.as_ref().unwrap_or(&current.master_args),
        "replica_args": patch.replica_args.as_ref().unwrap_or(&current.replica_args),
        "env": patch.env.as_ref().unwrap_or(&current.env),
    });
    let merged: CreateInstanceRequest = serde_json::from_value(merged).map_err(|e| {
        ApiError::bad_request(ErrorCode::InvalidField, format!("invalid change: {e}"))
    })?;
    merged.validate().map_err(ActorError::from)?;
    if patch.replicas.is_none() && !patch.changes_spec() {
        // Nothing to change: the instance as it is.
        check_if_match(&request, state.instance.version)?;
        return Ok(HttpResponse::Ok()
            .insert_header((header::ETAG, etag(state.instance.version)))
            .json(state.view()));
    }
    let mut if_match = if_match;
    let mut view = None;
    if patch.changes_spec() {
        let update = SpecUpdate {
            image: patch.image,
            master_args: patch.master_args,
            replica_args: patch.replica_args,
            env: patch.env,
            resources: patch.resources.map(|r| Resources {
                cpus: r.cpus,
                mem: r.mem,
                disk: r.disk,
            }),
        };
        view = Some(
            handles
                .maintainer
                .update_instance(&name, update, if_match)
                .await?,
        );
        // The version moved with the update; the scale that follows is its sequel.
        if_match = None;
    }
    if let Some(replicas) = patch.replicas {
        view = Some(handles.maintainer.scale(&name, replicas, if_match).await?);
    }
    match view {
        Some(view) => Ok(accepted(view)),
        None => Err(ActorError::NotFound(name).into()),
    }
}

async fn member_operation(
    request: &HttpRequest,
    path: (String, String),
    handles: &ApiHandles,
    replace: bool,
) -> Result<HttpResponse, ApiError> {
    let (name, ordinal) = path;
    let name = checked_name(name)?;
    let ordinal: u32 = ordinal
        .parse()
        .map_err(|_| ApiError::not_found(format!("member {ordinal:?} not found")))?;
    let Some(state) = handles.state.get(&name) else {
        return Err(ActorError::NotFound(name).into());
    };
    if !state.tasks.contains_key(&ordinal) {
        return Err(ApiError::not_found(format!(
            "instance {name} has no member {ordinal}"
        )));
    }
    check_if_match(request, state.instance.version)?;
    let view = if replace {
        handles.maintainer.replace_member(&name, ordinal).await?
    } else {
        handles.maintainer.restart_member(&name, ordinal).await?
    };
    Ok(accepted(view))
}

/// Restarts one member in place (same agent, same volume).
#[utoipa::path(
    post,
    path = "/v1/instances/{name}/members/{ordinal}/restart",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("ordinal" = u32, Path, description = "Member ordinal"),
        ("If-Match" = Option<String>, Header, description = "Only at this version (ETag)"),
    ),
    responses(
        (status = 202, description = "The new incarnation is durable", body = InstanceView),
        (status = 404, description = "No such instance or member", body = ErrorBody),
        (status = 409, description = "The instance's state does not allow it", body = ErrorBody),
        (status = 412, description = "The instance is at another version", body = ErrorBody),
    )
)]
pub async fn restart_member(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    member_operation(&request, path.into_inner(), &handles, false).await
}

/// Replaces one member (any agent, a new volume).
#[utoipa::path(
    post,
    path = "/v1/instances/{name}/members/{ordinal}/replace",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("ordinal" = u32, Path, description = "Member ordinal"),
        ("If-Match" = Option<String>, Header, description = "Only at this version (ETag)"),
    ),
    responses(
        (status = 202, description = "The new incarnation is durable", body = InstanceView),
        (status = 404, description = "No such instance or member", body = ErrorBody),
        (status = 409, description = "The instance's state does not allow it", body = ErrorBody),
        (status = 412, description = "The instance is at another version", body = ErrorBody),
    )
)]
pub async fn replace_member(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    member_operation(&request, path.into_inner(), &handles, true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn if_match_for_operations_is_one_version_or_star() {
        let check = |value: Option<&str>, expected: Result<Option<u64>, ()>| {
            let mut request = TestRequest::default();
            if let Some(value) = value {
                request = request.insert_header((header::IF_MATCH, value));
            }
            let got = if_match_version(&request.to_http_request()).map_err(|_| ());
            assert_eq!(got, expected, "{value:?}");
        };
        check(None, Ok(None));
        check(Some("*"), Ok(None));
        check(Some("\"4\""), Ok(Some(4)));
        check(Some("4"), Ok(Some(4)));
        check(Some("W/\"4\""), Err(()));
        check(Some("x"), Err(()));
    }

    #[test]
    fn patches_refuse_unknown_fields() {
        assert!(serde_json::from_str::<PatchInstanceRequest>(r#"{"replicas":2}"#).is_ok());
        assert!(serde_json::from_str::<PatchInstanceRequest>(r#"{"name":"x"}"#).is_err());
        assert!(serde_json::from_str::<PatchInstanceRequest>(r#"{"replicas":-1}"#).is_err());
    }
}
