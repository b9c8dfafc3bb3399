//! The gate every request passes: CORS, rate limit per client address, bearer-token
//! authentication; and on the way out, the JSON error shape.
//!
//! Order: a CORS preflight is answered first (browsers send it without credentials);
//! then the client's token bucket is charged (so a client guessing tokens is slowed
//! down too); then the token is checked. `GET /health` passes without either, so a
//! liveness probe works with authentication on and under load; the artifacts under
//! `/v1/artifacts/` need no token (agents' fetchers cannot send one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};

use super::error::{json_error_shape, ApiError, ErrorCode};
use super::ApiShared;

/// Most client addresses tracked by the rate limiter; past it, full buckets are
/// forgotten (a full bucket is the state of an address never seen).
pub const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The bearer tokens that grant access. Empty: authentication is off.
#[derive(Clone, Default)]
pub struct Tokens(Vec<String>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    /// Tokens from a file or variable: one per line or separated by commas; blank
    /// lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Tokens {
        Tokens(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.starts_with('#'))
                .flat_map(|line| line.split(','))
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `presented` is one of the tokens. Compares against every token in time
    /// independent of where the bytes differ, so timing tells nothing about them.
    pub fn accepts(&self, presented: &str) -> bool {
        let mut found = false;
        for token in &self.0 {
            found |= constant_time_eq(token.as_bytes(), presented.as_bytes());
        }
        found
    }
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= x ^ y;
    }
    difference == 0
}

/// Requests allowed per client address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by client address.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// A limiter applying `limit` to each address.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// Charges one request of `client` at `now`: `Ok` if allowed, else the seconds
    /// until one is.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let limit = self.limit;
        if self.buckets.len() >= MAX_TRACKED_CLIENTS && !self.buckets.contains_key(&client) {
            self.buckets.retain(|_, bucket| {
                let refill = now.duration_since(bucket.updated).as_secs_f64() * limit.per_second;
                bucket.tokens + refill < limit.burst
            });
        }
        let bucket = self.buckets.entry(client).or_insert(Bucket {
            tokens: limit.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / limit.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// The middleware (`actix_web::middleware::from_fn`).
pub async fn gate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(shared) = request.app_data::<web::Data<ApiShared>>().cloned() else {
        let response = next.call(request).await?.map_into_boxed_body();
        return Ok(json_error_shape(response));
    };
    let settings = &shared.settings;
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .filter(|origin| {
            settings.cors_origin.as_deref().map(str::as_bytes) == Some(origin.as_bytes())
        })
        .cloned();
    if request.method() == Method::OPTIONS && origin.is_some() {
        let mut preflight = HttpResponse::NoContent();
        preflight
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, POST, PATCH, DELETE",
            ))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type, if-match, idempotency-key, last-event-id",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
        let response = request.into_response(preflight.finish());
        return Ok(with_cors(response, origin.as_ref()));
    }
    let open = request.path() == "/health";
    if !open {
        if let (Some(limiter), Some(peer)) = (&shared.rate_limiter, request.peer_addr()) {
            let verdict = match limiter.lock() {
                Ok(mut limiter) => limiter.check(peer.ip(), Instant::now()),
                Err(poisoned) => poisoned.into_inner().check(peer.ip(), Instant::now()),
            };
            if let Err(seconds) = verdict {
                let error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    format!("too many requests from {}", peer.ip()),
                )
                .with_retry_after(seconds);
                let response = request.into_response(error.error_response());
                return Ok(with_cors(response, origin.as_ref()));
            }
        }
        // By the route matched, not by a path prefix a crafted path could share.
        let public = request.match_pattern().as_deref() == Some(super::artifacts::ROUTE);
        if settings.tokens.enabled() && !public && !authorized(&request, &settings.tokens) {
            let error = ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "a valid bearer token is required",
            );
            let mut response = error.error_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mesos-stateful\""),
            );
            let response = request.into_response(response);
            return Ok(with_cors(response, origin.as_ref()));
        }
    }
    let response = next.call(request).await?.map_into_boxed_body();
    Ok(with_cors(json_error_shape(response), origin.as_ref()))
}

fn authorized(request: &ServiceRequest, tokens: &Tokens) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .is_some_and(|token| tokens.accepts(token))
}

fn with_cors(
    mut response: ServiceResponse<BoxBody>,
    origin: Option<&HeaderValue>,
) -> ServiceResponse<BoxBody> {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("etag, location, retry-after"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_parse_and_compare() {
        let tokens = Tokens::parse("# operators\nalpha\n\n beta , gamma\n");
        assert!(tokens.enabled());
        for (presented, ok) in [
            ("alpha", true),
            ("beta", true),
            ("gamma", true),
            ("alph", false),
            ("alphaa", false),
            ("", false),
            ("# operators", false),
        ] {
            assert_eq!(tokens.accepts(presented), ok, "{presented:?}");
        }
        assert!(!Tokens::parse("\n# none\n").enabled());
        assert_eq!(format!("{tokens:?}"), "Tokens(3 configured)");
    }

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3.0,
        });
        let client: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(client, start), Ok(()));
        }
        assert_eq!(limiter.check(client, start), Err(1));
        assert_eq!(limiter.check(other, start), Ok(()));
        let later = start + Duration::from_millis(500);
        assert_eq!(limiter.check(client, later), Ok(()));
        assert_eq!(limiter.check(client, later), Err(1));
    }

    #[test]
    fn the_limiter_forgets_idle_clients_when_full() {
        let mut limiter = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 1.0,
        });
        let start = Instant::now();
        for i in 0..MAX_TRACKED_CLIENTS as u32 {
            let _ = limiter.check(IpAddr::from(i.to_be_bytes()), start);
        }
        let later = start + Duration::from_secs(5);
        assert_eq!(limiter.check([255, 0, 0, 1].into(), later), Ok(()));
        assert!(limiter.buckets.len() < 10);
    }
}
