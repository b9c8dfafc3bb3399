//! `/v1/instances…`: create, list, get, delete, endpoints, exec.
//!
//! Creates are idempotent (see [`idempotency`](super::idempotency)); `GET` of one
//! instance answers its record version as `ETag`, and mutating routes honour
//! `If-Match` with it (412 when it moved on).

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use mesos_stateful_store::records::{InstanceSpec, InstanceStatus, Role};

use crate::actor::state_manager::InstanceState;
use crate::domain::request::{validate_name, CreateInstanceRequest};
use crate::domain::view::{InstanceView, MemberView};
use crate::ActorError;

use super::error::{method_not_allowed, ApiError, ErrorBody, ErrorCode};
use super::idempotency::{valid_key, IdempotencyKey, Lookup, StoredAnswer};
use super::{ApiHandles, ApiShared};

/// Adds the routes.
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
                .route(web::patch().to(super::operations::patch_instance))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/instances/{name}/endpoints")
                .route(web::get().to(get_endpoints))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/instances/{name}/members/{ordinal}/exec")
                .route(web::post().to(exec_in_member))
                .default_service(web::to(method_not_allowed)),
        );
}

/// Refuses a body that says it is not JSON (a missing `Content-Type` is accepted).
pub(crate) fn require_json(request: &HttpRequest) -> Result<(), ApiError> {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
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
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "request body must be application/json",
        ))
    }
}

/// Parses a JSON body, unknown fields refused by the type. A number with a zero
/// fraction (`3.0`) is the integer it equals, as JSON Schema counts it.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid = |e: serde_json::Error| {
        ApiError::bad_request(ErrorCode::InvalidJson, format!("invalid request body: {e}"))
    };
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    integral_floats_to_integers(&mut value);
    serde_json::from_value(value).map_err(invalid)
}

fn integral_floats_to_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64()) {
                if float.fract() == 0.0 && float.abs() < 9.0e15 {
                    *value = serde_json::Value::from(float as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(integral_floats_to_integers)
        }
        _ => {}
    }
}

/// A path's instance name; a name that cannot exist is simply not found.
pub(crate) fn checked_name(name: String) -> Result<String, ApiError> {
    validate_name(&name)
        .map_err(|_| ApiError::not_found(format!("instance {name:?} not found")))?;
    Ok(name)
}

/// The `ETag` of an instance record version.
pub(crate) fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Checks `If-Match` against the instance's current version: absent or `*` passes
/// (`None`); a list passes if one strong tag (`"7"`, or bare `7`) is the version,
/// which is returned for a write that must still find the instance at it.
pub(crate) fn check_if_match(request: &HttpRequest, version: u64) -> Result<Option<u64>, ApiError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            ErrorCode::InvalidHeader,
            "If-Match must be an instance version as returned in ETag",
        )
    };
    let value = value.to_str().map_err(|_| invalid())?;
    let mut parsed_any = false;
    for tag in value.split(',').map(str::trim) {
        if tag == "*" {
            return Ok(None);
        }
        // Weak tags never match: If-Match compares strongly.
        if tag.starts_with("W/") {
            parsed_any = true;
            continue;
        }
        let bare = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(tag);
        if let Ok(asked) = bare.parse::<u64>() {
            parsed_any = true;
            if asked == version {
                return Ok(Some(version));
            }
        }
    }
    if !parsed_any {
        return Err(invalid());
    }
    Err(ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        ErrorCode::PreconditionFailed,
        format!("the instance is at version {version}"),
    )
    .with_details(serde_json::json!({ "version": version })))
}

/// What a create is compared by: the name and the spec it validated to.
fn fingerprint(name: &str, spec: &InstanceSpec) -> String {
    format!(
        "{name}\n{}",
        serde_json::to_string(spec).unwrap_or_default()
    )
}

fn lock_cache(
    shared: &ApiShared,
) -> std::sync::MutexGuard<'_, super::idempotency::IdempotencyCache> {
    shared
        .idempotency
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn replay(answer: StoredAnswer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = HttpResponse::build(status);
    if let Some(location) = answer.location {
        response.insert_header((header::LOCATION, location));
    }
    response
        .insert_header(("idempotent-replayed", "true"))
        .content_type("application/json")
        .body(answer.body)
}

/// Creates an instance. Repeating a create (same `Idempotency-Key`, or same name and
/// body without one) returns the first answer.
#[utoipa::path(
    post,
    path = "/v1/instances",
    tag = "instances",
    request_body = CreateInstanceRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create return the first answer (1 to 256 visible ASCII characters)"),
    ),
    responses(
        (status = 202, description = "Accepted and durable; members are being placed", body = InstanceView,
            headers(("Location" = String, description = "The instance's URL"))),
        (status = 400, description = "Invalid body (codes invalid_json, invalid_name, invalid_resources, invalid_image, invalid_field, invalid_header)", body = ErrorBody),
        (status = 403, description = "Privileged containers asked for but not allowed by the scheduler (forbidden)", body = ErrorBody),
        (status = 409, description = "The name exists with another spec (already_exists), or the key was used with another body (idempotency_key_reused)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 503, description = "Overloaded or shutting down; retry after `Retry-After`", body = ErrorBody),
    )
)]
pub async fn create_instance(
    request: HttpRequest,
    body: web::Bytes,
    handles: web::Data<ApiHandles>,
    shared: web::Data<ApiShared>,
) -> Result<HttpResponse, ApiError> {
    require_json(&request)?;
    let parsed: CreateInstanceRequest = parse_json(&body)?;
    let (name, spec) = parsed.validate().map_err(ActorError::from)?;
    let key = match request.headers().get("idempotency-key") {
        None => IdempotencyKey::Name(name.clone()),
        Some(value) => match value.to_str() {
            Ok(key) if valid_key(key) => IdempotencyKey::Header(key.to_string()),
            _ => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidHeader,
                    "Idempotency-Key must be 1 to 256 visible ASCII characters",
                ))
            }
        },
    };
    create(&handles, &shared, key, name, spec).await
}

/// The create shared by `POST /v1/instances` and the mr-redis route.
pub(crate) async fn create(
    handles: &ApiHandles,
    shared: &ApiShared,
    key: IdempotencyKey,
    name: String,
    spec: InstanceSpec,
) -> Result<HttpResponse, ApiError> {
    if spec.privileged && !shared.settings.allow_privileged {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "privileged containers are not allowed by this scheduler (--allow-privileged)",
        ));
    }
    let fingerprint = fingerprint(&name, &spec);
    match lock_cache(shared).lookup(&key, &fingerprint, Instant::now()) {
        Lookup::New => {}
        Lookup::Replay(answer) => return Ok(replay(answer)),
        Lookup::Conflict => {
            return Err(match &key {
                IdempotencyKey::Header(key) => ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::IdempotencyKeyReused,
                    format!("idempotency key {key:?} was used with another request"),
                )
                .with_details(serde_json::json!({ "idempotency_key": key })),
                IdempotencyKey::Name(_) => ActorError::AlreadyExists(name).into(),
            })
        }
    }
    let location = format!("/v1/instances/{name}");
    let view = match handles.creator.create(name.clone(), spec.clone()).await {
        Ok(view) => view,
        Err(ActorError::AlreadyExists(existing)) => {
            // A repeat whose first answer is not remembered (a restart, or two
            // concurrent repeats): the same spec is the same request.
            let current = handles.state.get(&existing);
            return match current {
                Some(state)
                    if state.instance.spec == spec
                        && !matches!(
                            state.instance.status,
                            InstanceStatus::Deleting | InstanceStatus::Deleted
                        ) =>
                {
                    Ok(HttpResponse::Accepted()
                        .insert_header((header::LOCATION, location))
                        .insert_header(("idempotent-replayed", "true"))
                        .json(state.view()))
                }
                other => Err(
                    ApiError::from(ActorError::AlreadyExists(existing)).with_details(
                        serde_json::json!({ "version": other.map(|s| s.instance.version) }),
                    ),
                ),
            };
        }
        Err(other) => return Err(other.into()),
    };
    let body = serde_json::to_vec(&view).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("encoding the instance: {e}"),
        )
    })?;
    let answer = StoredAnswer {
        status: StatusCode::ACCEPTED.as_u16(),
        body: body.into(),
        location: Some(location.clone()),
        instance: name,
    };
    lock_cache(shared).store(key, fingerprint, answer.clone(), Instant::now());
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location))
        .insert_header((header::ETAG, etag(view.version)))
        .content_type("application/json")
        .body(answer.body))
}

/// Query of `GET /v1/instances`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only instances with this status (`RUNNING` …, any case).
    pub status: Option<String>,
}

/// Lists instances.
#[utoipa::path(
    get,
    path = "/v1/instances",
    tag = "instances",
    params(ListQuery),
    responses(
        (status = 200, description = "Every instance, by name", body = Vec<InstanceView>),
        (status = 400, description = "Unknown status or query parameter", body = ErrorBody),
    )
)]
pub async fn list_instances(
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
                    ApiError::bad_request(
                        ErrorCode::InvalidField,
                        format!(
                            "unknown status {:?}",
                            status.chars().take(40).collect::<String>()
                        ),
                    )
                })?,
        ),
    };
    let views: Vec<_> = handles
        .state
        .list()
        .iter()
        .filter(|s| wanted.is_none_or(|status| s.instance.status == status))
        .map(InstanceState::view)
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Reads one instance; its version is the `ETag`.
#[utoipa::path(
    get,
    path = "/v1/instances/{name}",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name")),
    responses(
        (status = 200, description = "The instance", body = InstanceView,
            headers(("ETag" = String, description = "The record version, for If-Match"))),
        (status = 404, description = "No such instance", body = ErrorBody),
    )
)]
pub async fn get_instance(
    path: web::Path<String>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path.into_inner())?;
    match handles.state.get(&name) {
        Some(state) => Ok(HttpResponse::Ok()
            .insert_header((header::ETAG, etag(state.instance.version)))
            .json(state.view())),
        None => Err(ActorError::NotFound(name).into()),
    }
}

/// Deletes an instance: its tasks are killed, the record stays as `DELETED`.
#[utoipa::path(
    delete,
    path = "/v1/instances/{name}",
    tag = "instances",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("If-Match" = Option<String>, Header, description = "Delete only at this version (ETag)"),
    ),
    responses(
        (status = 202, description = "Deletion under way", body = InstanceView),
        (status = 400, description = "Malformed If-Match", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 412, description = "The instance is at another version", body = ErrorBody),
    )
)]
pub async fn delete_instance(
    request: HttpRequest,
    path: web::Path<String>,
    handles: web::Data<ApiHandles>,
    shared: web::Data<ApiShared>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path.into_inner())?;
    delete(&request, &handles, &shared, name).await
}

/// The delete shared by `DELETE /v1/instances/{name}` and the mr-redis route.
pub(crate) async fn delete(
    request: &HttpRequest,
    handles: &ApiHandles,
    shared: &ApiShared,
    name: String,
) -> Result<HttpResponse, ApiError> {
    // The version that matched `If-Match` is the one the deletion requires when it
    // is recorded: a change in between answers 412 and deletes nothing.
    let mut if_version = None;
    if request.headers().contains_key(header::IF_MATCH) {
        let Some(state) = handles.state.get(&name) else {
            return Err(ActorError::NotFound(name).into());
        };
        if_version = check_if_match(request, state.instance.version)?;
    }
    let view = handles
        .destroyer
        .delete_if_version(&name, if_version)
        .await?;
    lock_cache(shared).forget_instance(&name);
    Ok(HttpResponse::Accepted().json(view))
}

/// Where clients find an instance's members now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Endpoints {
    /// `host:port` of the running master, if it runs.
    pub master: Option<String>,
    /// `host:port` of every running replica.
    pub replicas: Vec<String>,
}

/// The addresses of an instance's running members.
#[utoipa::path(
    get,
    path = "/v1/instances/{name}/endpoints",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name")),
    responses(
        (status = 200, description = "Running members' addresses", body = Endpoints),
        (status = 404, description = "No such instance", body = ErrorBody),
    )
)]
pub async fn get_endpoints(
    path: web::Path<String>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path.into_inner())?;
    let Some(state) = handles.state.get(&name) else {
        return Err(ActorError::NotFound(name).into());
    };
    Ok(HttpResponse::Ok().json(endpoints(&state.view())))
}

/// The running members' addresses of `view`.
pub(crate) fn endpoints(view: &InstanceView) -> Endpoints {
    let running = |m: &&MemberView| m.state.as_deref() == Some("TASK_RUNNING");
    let address = |m: &MemberView| m.endpoint().map(|(host, port)| format!("{host}:{port}"));
    let master = view
        .members
        .iter()
        .filter(running)
        .find(|m| m.role == Role::Master)
        .and_then(address);
    let replicas = view
        .members
        .iter()
        .filter(running)
        .filter(|m| m.role == Role::Replica)
        .filter_map(address)
        .collect();
    Endpoints { master, replicas }
}

/// Body of `POST /v1/instances/{name}/members/{ordinal}/exec`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Command and arguments, run without a shell (1 to 256, each at most 4096 bytes).
    pub argv: Vec<String>,
    /// Longest the command may run (default 30 s, at most 300 s).
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

/// Result of a command run in a member's container.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecResponse {
    /// Id of the command.
    pub command_id: String,
    /// Exit code, when it exited.
    pub exit_code: Option<i64>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Why it could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs a command in a member's container.
#[utoipa::path(
    post,
    path = "/v1/instances/{name}/members/{ordinal}/exec",
    tag = "instances",
    request_body = ExecRequest,
    params(
        ("name" = String, Path, description = "Instance name"),
        ("ordinal" = u32, Path, description = "Member ordinal"),
    ),
    responses(
        (status = 200, description = "The command ran (or could not start: see error)", body = ExecResponse),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 404, description = "No such instance or member", body = ErrorBody),
        (status = 409, description = "The member is not running", body = ErrorBody),
        (status = 504, description = "The command did not answer in time", body = ErrorBody),
    )
)]
pub async fn exec_in_member(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let (name, ordinal) = path.into_inner();
    let name = checked_name(name)?;
    let ordinal: u32 = ordinal
        .parse()
        .map_err(|_| ApiError::not_found(format!("member {ordinal:?} not found")))?;
    require_json(&request)?;
    let request: ExecRequest = parse_json(&body)?;
    let invalid = |reason: &str| ApiError::bad_request(ErrorCode::InvalidField, reason);
    if request.argv.is_empty() || request.argv.len() > 256 {
        return Err(invalid("argv must hold 1 to 256 arguments"));
    }
    if request
        .argv
        .iter()
        .any(|a| a.len() > 4096 || a.contains('\0'))
    {
        return Err(invalid("an argument is too long or contains NUL"));
    }
    let timeout = request.timeout_seconds.unwrap_or(30.0);
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 300.0) {
        return Err(invalid("timeout_seconds must be in (0, 300]"));
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
            } if reason.starts_with("no answer") => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::CommandTimeout,
                reason,
            ),
            ActorError::Unavailable {
                actor: "executor",
                reason,
            } => ApiError::new(StatusCode::CONFLICT, ErrorCode::MemberUnavailable, reason),
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn if_match_compares_strong_versions() {
        let check = |value: Option<&str>, version: u64, expected: Result<Option<u64>, u16>| {
            let mut request = TestRequest::default();
            if let Some(value) = value {
                request = request.insert_header((header::IF_MATCH, value));
            }
            let result = check_if_match(&request.to_http_request(), version)
                .map_err(|e| actix_web::ResponseError::status_code(&e).as_u16());
            assert_eq!(result, expected, "{value:?}");
        };
        // Absent or `*`: any version, none to hold the write to.
        check(None, 3, Ok(None));
        check(Some("*"), 3, Ok(None));
        check(Some("\"3\""), 3, Ok(Some(3)));
        check(Some("3"), 3, Ok(Some(3)));
        check(Some("\"1\", \"3\""), 3, Ok(Some(3)));
        check(Some("\"2\""), 3, Err(412));
        check(Some("W/\"3\""), 3, Err(412));
        check(Some("abc"), 3, Err(400));
        check(Some(""), 3, Err(400));
    }

    #[test]
    fn fingerprints_differ_by_name_and_spec() {
        let spec = |image: &str| {
            let body = format!(
                r#"{{"name":"a","image":"{image}","resources":{{"cpus":0.1,"mem":64,"disk":10}}}}"#
            );
            let request: CreateInstanceRequest = serde_json::from_str(&body).unwrap();
            request.validate().unwrap().1
        };
        assert_eq!(fingerprint("a", &spec("r")), fingerprint("a", &spec("r")));
        assert_ne!(fingerprint("a", &spec("r")), fingerprint("b", &spec("r")));
        assert_ne!(fingerprint("a", &spec("r")), fingerprint("a", &spec("s")));
    }
}
