//! The HTTP layer: hyper servers for the master and the agents. It only translates
//! requests into calls on the locked [`Cluster`] and runs the returned effects.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesos_stateful_proto::v1::{executor, scheduler};
use mesos_stateful_proto::{media, recordio, STREAM_ID_HEADER};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::{Authenticator, SCHEDULER_REALM};
use crate::cluster::{Cluster, Effect, ExecutorConnection};
use crate::json::{self, Described};
use crate::process;
use crate::validation::{self, Media, Rejection};

/// Response body: a full buffer or an endless RecordIO stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// How often [`Cluster::tick`] runs.
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);

/// State shared by every server task.
#[derive(Debug)]
pub struct Shared {
    /// The cluster. A std mutex: it is held only for synchronous work, never across
    /// an await.
    pub cluster: Mutex<Cluster>,
    /// Source of executor connection IDs.
    next_connection: AtomicU64,
    /// Who may call the scheduler endpoint (everyone when it is off).
    authenticator: Authenticator,
}

impl Shared {
    /// Wraps a cluster.
    pub fn new(cluster: Cluster, authenticator: Authenticator) -> Shared {
        Shared {
            cluster: Mutex::new(cluster),
            next_connection: AtomicU64::new(1),
            authenticator,
        }
    }

    /// Locks the cluster. A panic while holding the lock leaves the state as it was
    /// at that point; serving on is more useful to a test harness than poisoning.
    pub fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Which server a connection belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// Master number `n` (scheduler API, /version, /health, /master/redirect).
    Master(usize),
    /// Agent number `n` (executor API).
    Agent(usize),
}

/// What stops a server and its open connections: the cluster's shutdown, and for an
/// agent also its restart. Each is a watch channel that turns true (or whose sender
/// is dropped).
#[derive(Debug, Clone)]
pub struct Stop {
    receivers: Vec<watch::Receiver<bool>>,
}

impl Stop {
    /// Stops when any of `receivers` turns true.
    pub fn new(receivers: Vec<watch::Receiver<bool>>) -> Stop {
        Stop { receivers }
    }

    /// Completes once any receiver has turned true or lost its sender.
    async fn wait(&mut self) {
        if self.receivers.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.receivers.iter_mut().map(|receiver| {
            Box::pin(async move {
                let _ = receiver.wait_for(|stopped| *stopped).await;
            })
        });
        futures_util::future::select_all(waits).await;
    }
}

/// Accepts connections on `listener` until `stop` fires; open connections are
/// dropped at that moment too, and the listener is closed when this returns.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, role: Role, stop: Stop) {
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            _ = stopped.wait() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                };
                let shared = shared.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(shared, role, request).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        result = connection => {
                            if let Err(error) = result {
                                tracing::debug!(%error, "connection ended with an error");
                            }
                        }
                        _ = stop.wait() => {}
                    }
                });
            }
        }
    }
}

/// Runs [`Cluster::tick`] every [`TICK_INTERVAL`] until `shutdown` turns true.
pub async fn run_timers(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = ticker.tick() => {
                let effects = shared.lock().tick(Instant::now());
                run_effects(&shared, effects);
            }
        }
    }
}

/// Starts the processes and signals the effects ask for.
pub fn run_effects(shared: &Arc<Shared>, effects: Vec<Effect>) {
    for effect in effects {
        let shared = shared.clone();
        match effect {
            Effect::SpawnExecutor(request) => {
                tokio::spawn(launch_executor(shared, *request));
            }
            Effect::KillExecutor {
                agent,
                pid,
                container_id,
                grace,
                terminate,
            } => {
                tokio::spawn(async move {
                    if grace.is_zero() {
                        process::signal_group(pid, "KILL").await;
                        return;
                    }
                    if terminate {
                        process::signal_group(pid, "TERM").await;
                    }
                    tokio::time::sleep(grace).await;
                    let still_running =
                        shared.lock().executor_pid(agent, &container_id) == Some(pid);
                    if still_running {
                        process::signal_group(pid, "KILL").await;
                    }
                });
            }
            Effect::CreateVolume { path } => {
                tokio::spawn(async move {
                    if let Err(error) = tokio::fs::create_dir_all(&path).await {
                        tracing::warn!(%error, path = %path.display(), "cannot create the volume directory");
                    }
                });
            }
            Effect::DestroyVolume { path } => {
                tokio::spawn(async move {
                    if let Err(error) = tokio::fs::remove_dir_all(&path).await {
                        tracing::warn!(%error, path = %path.display(), "cannot remove the volume directory");
                    }
                });
            }
        }
    }
}

async fn launch_executor(shared: Arc<Shared>, request: process::SpawnRequest) {
    let started = match process::prepare_sandbox(&request) {
        Ok(()) => process::fetch_remote(&request).await,
        Err(error) => Err(error),
    }
    .and_then(|()| process::spawn(&request));
    let mut child = match started {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(framework_id = %request.framework_id.value, executor_id = %request.executor_id.value, %error, "executor could not be started");
            shared.lock().executor_launch_failed(
                request.agent,
                &request.container_id,
                &error.to_string(),
                Instant::now(),
            );
            return;
        }
    };
    let pid = child.id().unwrap_or_default();
    let effects =
        shared
            .lock()
            .executor_spawned(request.agent, &request.container_id, pid, Instant::now());
    run_effects(&shared, effects);
    let wait_status = match child.wait().await {
        Ok(status) => std::os::unix::process::ExitStatusExt::into_raw(status),
        Err(error) => {
            tracing::warn!(%error, "waiting for the executor failed");
            -1
        }
    };
    shared.lock().executor_exited(
        request.agent,
        &request.container_id,
        wait_status,
        Instant::now(),
    );
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(message.into())).boxed());
    *response.status_mut() = status;
    response
}

fn reject(rejection: Rejection) -> Response<Body> {
    text(rejection.status, rejection.message)
}

/// A RecordIO event stream in one encoding, whose drop (the client went away, or
/// the sender was dropped and the stream ended) is signalled through `_closed`.
struct EventStream<T> {
    events: mpsc::UnboundedReceiver<T>,
    media: Media,
    _closed: oneshot::Sender<()>,
}

/// One event as the payload of a record in `media`.
fn encode_event<T: Described>(event: &T, media: Media) -> Option<Vec<u8>> {
    match media {
        Media::Protobuf => Some(event.encode_to_vec()),
        Media::Json => match json::to_json_bytes(event) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                tracing::warn!(%error, "an event could not be written as json; it is skipped");
                None
            }
        },
    }
}

impl<T: Described> Stream for EventStream<T> {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let event = match self.events.poll_recv(cx) {
                Poll::Ready(Some(event)) => event,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            if let Some(payload) = encode_event(&event, self.media) {
                return Poll::Ready(Some(Ok(Frame::data(recordio::encode_to_bytes(&payload)))));
            }
        }
    }
}

fn stream_response<T: Described + Send + Sync + 'static>(
    events: mpsc::UnboundedReceiver<T>,
    media: Media,
    closed: oneshot::Sender<()>,
    stream_id: Option<&str>,
) -> Response<Body> {
    let body = StreamBody::new(EventStream {
        events,
        media,
        _closed: closed,
    });
    let mut response = Response::new(BodyExt::boxed(body));
    let headers = response.headers_mut();
    let content_type = match media {
        Media::Protobuf => media::PROTOBUF,
        Media::Json => media::JSON,
    };
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if let Some(stream_id) = stream_id.and_then(|id| header::HeaderValue::from_str(id).ok()) {
        headers.insert(STREAM_ID_HEADER, stream_id);
    }
    response
}

async fn route(shared: Arc<Shared>, role: Role, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    match (role, path.as_str()) {
        (Role::Master(index), "/api/v1/scheduler" | "/master/api/v1/scheduler") => {
            // Authentication comes first, before any other check of the request.
            let principal = if shared.authenticator.enabled() {
                let header = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok());
                match shared.authenticator.authenticate(header) {
                    Some(principal) => Some(principal),
                    None => return unauthorized(),
                }
            } else {
                None
            };
            // Only the leader serves; the others point at it.
            let (leader, authority) = {
                let cluster = shared.lock();
                (cluster.leader(), cluster.leader_authority())
            };
            if leader != Some(index) {
                return match authority {
                    Some(authority) => redirect(&format!("//{authority}/master/api/v1/scheduler")),
                    None => text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected"),
                };
            }
            scheduler_endpoint(shared, request, principal).await
        }
        (Role::Agent(index), "/api/v1/executor" | "/slave(1)/api/v1/executor") => {
            executor_endpoint(shared, index, request).await
        }
        (_, "/version" | "/master/version" | "/slave(1)/version")
            if request.method() == Method::GET =>
        {
            let body = serde_json::json!({
                "version": crate::MESOS_VERSION,
                "build_user": "devcluster",
                "build_date": "",
                "build_time": 0,
                "git_sha": "",
                "git_tag": crate::MESOS_VERSION,
            });
            let mut response = text(StatusCode::OK, body.to_string());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(media::JSON),
            );
            response
        }
        (_, "/health" | "/master/health" | "/slave(1)/health") => text(StatusCode::OK, ""),
        (Role::Master(_), "/redirect" | "/master/redirect") => {
            // A protocol-relative redirect without a path, even from the leader
            // itself, as Mesos gives it.
            let authority = shared.lock().leader_authority();
            match authority {
                Some(authority) => redirect(&format!("//{authority}")),
                None => text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, format!("no endpoint {path}")),
    }
}

/// The common front of both APIs: method, content type, body; returns the body
/// and its encoding.
async fn read_call(
    request: Request<Incoming>,
) -> Result<(http::request::Parts, Media, Bytes), Response<Body>> {
    if request.method() != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "expecting a 'POST' request");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return Err(response);
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    let media = validation::request_media(content_type).map_err(reject)?;
    let (parts, body) = request.into_parts();
    match body.collect().await {
        Ok(collected) => Ok((parts, media, collected.to_bytes())),
        Err(error) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("failed to read the body: {error}"),
        )),
    }
}

/// Decodes a call body in its encoding (400 if it does not parse).
fn decode_call<T: Described>(media: Media, body: Bytes) -> Result<T, Rejection> {
    let decoded = match media {
        Media::Protobuf => T::decode(body).map_err(|error| error.to_string()),
        Media::Json => json::from_json(&body).map_err(|error| error.to_string()),
    };
    decoded.map_err(|error| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            format!("failed to parse the call: {error}"),
        )
    })
}

fn header_str<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// 307 to `location`.
fn redirect(location: &str) -> Response<Body> {
    let mut response = text(StatusCode::TEMPORARY_REDIRECT, "");
    if let Ok(value) = header::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// 401 with the challenge of the scheduler endpoint's realm.
fn unauthorized() -> Response<Body> {
    let mut response = text(StatusCode::UNAUTHORIZED, "");
    let challenge = format!("Basic realm=\"{SCHEDULER_REALM}\"");
    if let Ok(value) = header::HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The scheduler endpoint; `principal` is the authenticated one when
/// authentication is on.
async fn scheduler_endpoint(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    principal: Option<String>,
) -> Response<Body> {
    let (parts, media, body) = match read_call(request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let call: scheduler::Call = match decode_call(media, body) {
        Ok(call) => call,
        Err(rejection) => return reject(rejection),
    };
    let call_type = match validation::scheduler_call(&call) {
        Ok(call_type) => call_type,
        Err(rejection) => return reject(rejection),
    };
    let stream_id = header_str(&parts, STREAM_ID_HEADER);
    if call_type == scheduler::call::Type::Subscribe {
        if stream_id.is_some() {
            return text(
                StatusCode::BAD_REQUEST,
                "Subscribe calls should not include the 'Mesos-Stream-Id' header",
            );
        }
        let stream_media = match validation::stream_media(header_str(&parts, "accept")) {
            Ok(stream_media) => stream_media,
            Err(rejection) => return reject(rejection),
        };
        let Some(mut subscribe) = call.subscribe else {
            return text(
                StatusCode::BAD_REQUEST,
                "expecting 'subscribe' to be present",
            );
        };
        if let Some(principal) = principal {
            // An unset principal is filled in; a different one is refused.
            let info = &mut subscribe.framework_info;
            match &info.principal {
                None => info.principal = Some(principal),
                Some(claimed) if *claimed != principal => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("Authenticated principal '{principal}' does not match principal '{claimed}' set in `FrameworkInfo`"),
                    );
                }
                Some(_) => {}
            }
        }
        return subscribe_scheduler(shared, subscribe, stream_media);
    }

    let Some(framework_id) = call.framework_id.clone() else {
        return text(
            StatusCode::BAD_REQUEST,
            "expecting 'framework_id' to be present",
        );
    };
    let result = {
        let mut cluster = shared.lock();
        cluster
            .authorize_call(&framework_id, stream_id)
            .and_then(|()| match &principal {
                Some(principal) => cluster.check_principal(&framework_id, principal),
                None => Ok(()),
            })
            .and_then(|()| cluster.scheduler_call(call, Instant::now()))
    };
    match result {
        Ok(effects) => {
            run_effects(&shared, effects);
            if call_type == scheduler::call::Type::UpdateFramework {
                text(StatusCode::OK, "")
            } else {
                text(StatusCode::ACCEPTED, "")
            }
        }
        Err(rejection) => reject(rejection),
    }
}

fn subscribe_scheduler(
    shared: Arc<Shared>,
    subscribe: scheduler::call::Subscribe,
    media: Media,
) -> Response<Body> {
    let (sender, events) = mpsc::unbounded_channel();
    let (closed_sender, closed) = oneshot::channel();
    // The watcher holds only a weak sender, so that the cluster dropping its sender
    // (TEARDOWN, failover) ends the stream.
    let weak = sender.downgrade();
    let stream_id = uuid::Uuid::new_v4().to_string();
    let (framework_id, heartbeat_interval) = {
        let mut cluster = shared.lock();
        let framework_id = cluster.subscribe(subscribe, stream_id.clone(), sender);
        (framework_id, cluster.heartbeat_interval())
    };
    if let Some(framework_id) = framework_id {
        let watcher_stream_id = stream_id.clone();
        tokio::spawn(async move {
            let mut closed = closed;
            let start = tokio::time::Instant::now() + heartbeat_interval;
            let mut ticker = tokio::time::interval_at(start, heartbeat_interval);
            loop {
                tokio::select! {
                    _ = &mut closed => {
                        let effects = shared
                            .lock()
                            .stream_closed(&framework_id, &watcher_stream_id, Instant::now());
                        run_effects(&shared, effects);
                        break;
                    }
                    _ = ticker.tick() => match weak.upgrade() {
                        Some(sender) => {
                            let _ = sender.send(scheduler::Event {
                                r#type: Some(scheduler::event::Type::Heartbeat as i32),
                                ..Default::default()
                            });
                        }
                        None => break,
                    },
                }
            }
        });
    }
    stream_response(events, media, closed_sender, Some(&stream_id))
}

async fn executor_endpoint(
    shared: Arc<Shared>,
    index: usize,
    request: Request<Incoming>,
) -> Response<Body> {
    let (parts, media, body) = match read_call(request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let call: executor::Call = match decode_call(media, body) {
        Ok(call) => call,
        Err(rejection) => return reject(rejection),
    };
    let call_type = match validation::executor_call(&call) {
        Ok(call_type) => call_type,
        Err(rejection) => return reject(rejection),
    };
    let now = Instant::now();
    let result = match call_type {
        executor::call::Type::Heartbeat => Ok(()),
        executor::call::Type::Subscribe => {
            return match validation::stream_media(header_str(&parts, "accept")) {
                Ok(stream_media) => subscribe_executor(shared, index, call, stream_media),
                Err(rejection) => reject(rejection),
            };
        }
        executor::call::Type::Update => shared.lock().executor_update(index, call, now),
        executor::call::Type::Message => shared.lock().executor_message(index, call),
        executor::call::Type::Unknown => {
            Err(Rejection::new(StatusCode::NOT_IMPLEMENTED, "unknown call"))
        }
    };
    match result {
        Ok(()) => text(StatusCode::ACCEPTED, ""),
        Err(rejection) => reject(rejection),
    }
}

fn subscribe_executor(
    shared: Arc<Shared>,
    index: usize,
    call: executor::Call,
    media: Media,
) -> Response<Body> {
    let (sender, events) = mpsc::unbounded_channel();
    let (closed_sender, closed) = oneshot::channel::<()>();
    let connection_id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let framework_id = call.framework_id.clone();
    let executor_id = call.executor_id.clone();
    let connection = ExecutorConnection {
        id: connection_id,
        sender,
    };
    if let Err(rejection) =
        shared
            .lock()
            .executor_subscribe(index, call, connection, Instant::now())
    {
        return reject(rejection);
    }
    tokio::spawn(async move {
        let _ = closed.await;
        let effects =
            shared
                .lock()
                .executor_stream_closed(index, &framework_id, &executor_id, connection_id);
        run_effects(&shared, effects);
    });
    stream_response(events, media, closed_sender, None)
}
