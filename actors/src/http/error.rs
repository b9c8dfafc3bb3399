//! The one error shape of the API, `{code, message, details}`, and its stable codes.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::operations::OperationError;
use crate::ActorError;

/// Stable machine-readable error codes. Clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON of the expected shape (unknown fields included).
    InvalidJson,
    /// 400: the query string is malformed or has unknown parameters.
    InvalidQuery,
    /// 400: the instance name is not a DNS label of at most 40 characters.
    InvalidName,
    /// 400: a resource is zero, negative, not finite or out of bounds.
    InvalidResources,
    /// 400: the image reference is malformed.
    InvalidImage,
    /// 400: another field is out of bounds.
    InvalidField,
    /// 400: a header (`If-Match`, `Last-Event-ID`, `Idempotency-Key`) is malformed.
    InvalidHeader,
    /// 401: no valid bearer token.
    Unauthorized,
    /// 403: the request asks for what the operator has not allowed (privileged
    /// containers).
    Forbidden,
    /// 404: no such instance, member or route.
    NotFound,
    /// 405: the resource exists but not with this method.
    MethodNotAllowed,
    /// 409: an instance with that name exists with a different spec.
    AlreadyExists,
    /// 409: the `Idempotency-Key` was used before with a different body.
    IdempotencyKeyReused,
    /// 409: the member cannot run commands now.
    MemberUnavailable,
    /// 409: the instance's state does not allow the operation (deleting, failed…).
    Conflict,
    /// 412: `If-Match` names another version than the instance's.
    PreconditionFailed,
    /// 413: the body is larger than the limit.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 429: too many requests from this client; see `Retry-After`.
    RateLimited,
    /// 500: the store failed; nothing changed.
    StoreError,
    /// 500: an unexpected error.
    Internal,
    /// 503: an actor is shutting down or overloaded; retry later.
    Unavailable,
    /// 503: not subscribed to Mesos yet.
    NotReady,
    /// 504: a command in a member's container did not answer in time.
    CommandTimeout,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 24] = [
        Self::InvalidJson,
        Self::InvalidQuery,
        Self::InvalidName,
        Self::InvalidResources,
        Self::InvalidImage,
        Self::InvalidField,
        Self::InvalidHeader,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::AlreadyExists,
        Self::IdempotencyKeyReused,
        Self::MemberUnavailable,
        Self::Conflict,
        Self::PreconditionFailed,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimited,
        Self::StoreError,
        Self::Internal,
        Self::Unavailable,
        Self::NotReady,
        Self::CommandTimeout,
    ];

    /// The code as it appears in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidName => "invalid_name",
            Self::InvalidResources => "invalid_resources",
            Self::InvalidImage => "invalid_image",
            Self::InvalidField => "invalid_field",
            Self::InvalidHeader => "invalid_header",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AlreadyExists => "already_exists",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::MemberUnavailable => "member_unavailable",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::StoreError => "store_error",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::NotReady => "not_ready",
            Self::CommandTimeout => "command_timeout",
        }
    }

    /// The code of a crate error, by its own stable code.
    fn of_actor_error(error: &ActorError) -> Self {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == error.code())
            .unwrap_or(Self::Internal)
    }

    /// The code a bare status gets when the framework (not a handler) refused the
    /// request: a too large body, a malformed query, an unknown route.
    fn of_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::InvalidQuery,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            _ => Self::Internal,
        }
    }
}

/// The body of every failed request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Machine-readable context (the current version on a 412, the key on a 409),
    /// `null` when there is none.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// An error answered to a REST client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    details: Option<serde_json::Value>,
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after_seconds: None,
        }
    }

    /// A 400 with `code`.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// Adds machine-readable details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The body sent to the client.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

impl From<ActorError> for ApiError {
    fn from(error: ActorError) -> Self {
        let status = match &error {
            ActorError::Validation(_) => StatusCode::BAD_REQUEST,
            ActorError::NotFound(_) => StatusCode::NOT_FOUND,
            ActorError::AlreadyExists(_) => StatusCode::CONFLICT,
            ActorError::VersionMoved { .. } => StatusCode::PRECONDITION_FAILED,
            ActorError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ActorError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ActorError::QueueFull {
                subscribed: true, ..
            } => StatusCode::TOO_MANY_REQUESTS,
            ActorError::QueueFull {
                subscribed: false, ..
            } => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut api = ApiError::new(status, ErrorCode::of_actor_error(&error), error.to_string());
        if let ActorError::QueueFull {
            retry_after_seconds,
            ..
        } = &error
        {
            api = api.with_retry_after(*retry_after_seconds);
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            api = api.with_retry_after(1);
        }
        api
    }
}

impl From<OperationError> for ApiError {
    fn from(error: OperationError) -> Self {
        if let Some(actor_error) = error.as_actor_error() {
            return ApiError::from(actor_error);
        }
        let message = error.to_string();
        match error {
            OperationError::NotFound(_) => ApiError::not_found(message),
            OperationError::VersionMismatch { current } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::PreconditionFailed,
                message,
            )
            .with_details(serde_json::json!({ "version": current })),
            OperationError::Conflict(_) | OperationError::Moved(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
            }
            OperationError::Invalid(_) => ApiError::bad_request(ErrorCode::InvalidField, message),
            OperationError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                message,
            )
            .with_retry_after(1),
            OperationError::QueueFull { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                message,
            ),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after_seconds {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.body())
    }
}

/// Gives the error shape to responses the framework produced itself (a 413 from the
/// body limit, a 400 from a malformed query, a 404 of a path that matched no
/// route): every failed request answers `{code, message, details}`.
pub fn json_error_shape(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let allow = response.headers().get(header::ALLOW).cloned();
    let www_authenticate = response.headers().get(header::WWW_AUTHENTICATE).cloned();
    let (request, response) = response.into_parts();
    let text = response
        .into_body()
        .try_into_bytes()
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let error = ApiError::new(status, ErrorCode::of_status(status), text);
    let mut rebuilt = error.error_response();
    for (name, value) in [
        (header::RETRY_AFTER, retry_after),
        (header::ALLOW, allow),
        (header::WWW_AUTHENTICATE, www_authenticate),
    ] {
        if let Some(value) = value {
            rebuilt.headers_mut().insert(name, value);
        }
    }
    ServiceResponse::new(request, rebuilt)
}

/// Answer of a known path with a method it does not serve, with its `Allow`.
pub async fn method_not_allowed(request: actix_web::HttpRequest) -> HttpResponse {
    let allow = allowed_methods(request.match_pattern().as_deref().unwrap_or_default());
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("method not allowed on this resource; allowed: {allow}"),
    )
    .error_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

/// The methods a route pattern serves.
fn allowed_methods(pattern: &str) -> &'static str {
    match pattern {
        "/v1/instances" => "GET, POST",
        "/v1/instances/{name}" => "GET, PATCH, DELETE",
        p if p.starts_with("/v1/instances/{name}/members/") => "POST",
        p if p.starts_with("/v1/CREATE/") => "POST",
        p if p.starts_with("/v1/DELETE/") => "DELETE",
        _ => "GET",
    }
}

/// Answer of a path no route matches.
pub async fn no_route(request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no route for {}",
        request.path().chars().take(200).collect::<String>()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serializes_as_its_string() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, serde_json::Value::from(code.as_str()));
        }
    }

    #[test]
    fn actor_errors_keep_their_codes() {
        let check = |error: ActorError, status: u16, code: &str| {
            let api = ApiError::from(error);
            assert_eq!(api.status.as_u16(), status);
            assert_eq!(api.code.as_str(), code);
        };
        check(ActorError::NotFound("a".into()), 404, "not_found");
        check(ActorError::AlreadyExists("a".into()), 409, "already_exists");
        check(
            ActorError::Unavailable {
                actor: "Creator",
                reason: "gone".into(),
            },
            503,
            "unavailable",
        );
        check(
            ActorError::Validation(crate::domain::request::ValidationError::InvalidResources(
                "x".into(),
            )),
            400,
            "invalid_resources",
        );
    }
}
