//! The Mesos v1 scheduler HTTP client.
//!
//! Two HTTP clients, so the event stream and the calls never share a connection (the
//! protocol requires it): one holds the SUBSCRIBE stream open, the other POSTs every
//! later call with the stream's `Mesos-Stream-Id`.
//!
//! The subscription loop subscribes (re-subscribing with the known FrameworkID after
//! a failover), follows one 307 redirect to the leading master, reads RecordIO events
//! with a heartbeat watchdog (no bytes for [`MISSED_HEARTBEATS`] heartbeat intervals
//! means the connection is dead), hands each event to the caller in order, and
//! reconnects with jittered exponential backoff when anything breaks.
//!
//! Calls are queued by [`MesosClient::send`] (never blocking an actor) and posted in
//! order by one sender task once a subscription exists.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message;
use rand::Rng;
use tokio::sync::{mpsc, watch};

use mesos_stateful_actors::mesos::MesosCalls;
use mesos_stateful_proto::recordio::Decoder;
use mesos_stateful_proto::v1::scheduler::{call, event, Call, Event};
use mesos_stateful_proto::{media, v1, STREAM_ID_HEADER};

use crate::error::SchedulerError;

/// Heartbeats that may be missed before the connection is considered dead.
pub const MISSED_HEARTBEATS: u32 = 5;
/// Heartbeat interval assumed until SUBSCRIBED says otherwise (the protocol's 15 s).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// First reconnection delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest reconnection delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// Attempts for a call that failed for a transient reason (connection, 503).
const CALL_ATTEMPTS: u32 = 5;

/// What the framework registers as.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameworkSettings {
    /// Framework name.
    pub name: String,
    /// User tasks run as on agents.
    pub user: String,
    /// Mesos role.
    pub role: String,
    /// How long Mesos keeps our tasks running while we are away. Never zero: zero
    /// would make Mesos kill every task the moment the connection drops.
    pub failover_timeout: Duration,
}

impl Default for FrameworkSettings {
    fn default() -> Self {
        FrameworkSettings {
            name: "mesos-stateful".to_string(),
            user: std::env::var("USER").unwrap_or_else(|_| "root".to_string()),
            role: "*".to_string(),
            failover_timeout: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The current subscription, shared between the stream and the call sender.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    /// Base URL of the master the stream is open on (after redirects).
    master: String,
    stream_id: String,
    framework_id: String,
}

#[derive(Debug)]
struct Shared {
    /// Where to subscribe first.
    master: String,
    settings: FrameworkSettings,
    /// Known FrameworkID (stored or assigned); set before anything else.
    framework_id: Mutex<Option<String>>,
    session: watch::Sender<Option<Session>>,
    stream_http: reqwest::Client,
    calls_http: reqwest::Client,
}

/// Handle of the client: clonable, and the actors' [`MesosCalls`].
#[derive(Debug, Clone)]
pub struct MesosClient {
    shared: Arc<Shared>,
    calls: mpsc::UnboundedSender<Call>,
}

impl MesosClient {
    /// A client for the master at `master` (`http://host:port`), re-subscribing as
    /// `framework_id` if one is known. Starts the call sender on the current runtime.
    pub fn new(
        master: &str,
        settings: FrameworkSettings,
        framework_id: Option<String>,
    ) -> Result<MesosClient, SchedulerError> {
        if settings.failover_timeout.is_zero() {
            return Err(SchedulerError::Config(
                "failover_timeout must not be zero: Mesos would kill every task on disconnect"
                    .to_string(),
            ));
        }
        let build = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| SchedulerError::Config(format!("http client: {e}")))
        };
        let (session, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            master: master.trim_end_matches('/').to_string(),
            settings,
            framework_id: Mutex::new(framework_id),
            session,
            stream_http: build()?,
            calls_http: build()?,
        });
        let (calls, receiver) = mpsc::unbounded_channel();
        tokio::spawn(send_calls(shared.clone(), receiver));
        Ok(MesosClient { shared, calls })
    }

    /// Subscribes and keeps subscribed until `shutdown` completes, handing every
    /// event to `on_event` in order. Returns an error only for a refusal that
    /// retrying cannot fix (an ERROR event such as "Framework has been removed").
    pub async fn run<F, Fut>(
        &self,
        mut on_event: F,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SchedulerError>
    where
        F: FnMut(Event) -> Fut,
        Fut: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let mut backoff = BACKOFF_MIN;
        loop {
            let attempt = self.subscribe_once(&mut on_event);
            let result = tokio::select! {
                result = attempt => result,
                _ = &mut shutdown => return Ok(()),
            };
            let was_subscribed = self.shared.session.borrow().is_some();
            self.shared.session.send_replace(None);
            match result {
                Ok(()) => tracing::warn!("subscription stream ended; reconnecting"),
                Err(SchedulerError::Refused(message)) => {
                    return Err(SchedulerError::Refused(message));
                }
                Err(error) => tracing::warn!(%error, "subscription failed; reconnecting"),
            }
            if was_subscribed {
                backoff = BACKOFF_MIN;
            }
            let jitter = rand::rng().random_range(0.5..1.0);
            let delay = backoff.mul_f64(jitter);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut shutdown => return Ok(()),
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn subscribe_call(&self) -> Call {
        let framework_id = self.framework_id().map(|value| v1::FrameworkId { value });
        let settings = &self.shared.settings;
        Call {
            // Both ids set (and equal) on a re-subscription, neither on the first.
            framework_id: framework_id.clone(),
            r#type: Some(call::Type::Subscribe as i32),
            subscribe: Some(call::Subscribe {
                framework_info: v1::FrameworkInfo {
                    user: settings.user.clone(),
                    name: settings.name.clone(),
                    id: framework_id,
                    failover_timeout: Some(settings.failover_timeout.as_secs_f64()),
                    checkpoint: Some(true),
                    // Without the MULTI_ROLE capability Mesos reads the single `role`.
                    #[allow(deprecated)]
                    role: Some(settings.role.clone()),
                    ..Default::default()
                },
                suppressed_roles: Vec::new(),
                offer_constraints: None,
            }),
            ..Default::default()
        }
    }

    async fn subscribe_once<F, Fut>(&self, on_event: &mut F) -> Result<(), SchedulerError>
    where
        F: FnMut(Event) -> Fut,
        Fut: Future<Output = ()>,
    {
        let body = Bytes::from(self.subscribe_call().encode_to_vec());
        let mut master = self.shared.master.clone();
        let mut redirected = false;
        let response = loop {
            let response = self
                .shared
                .stream_http
                .post(format!("{master}/api/v1/scheduler"))
                .header(reqwest::header::CONTENT_TYPE, media::PROTOBUF)
                .header(reqwest::header::ACCEPT, media::PROTOBUF)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| SchedulerError::Http(format!("subscribe to {master}: {e}")))?;
            let status = response.status().as_u16();
            if status == 307 && !redirected {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| SchedulerError::Protocol("307 without Location".into()))?;
                master = leader_base(&master, location)?;
                tracing::info!(%master, "following redirect to the leading master");
                redirected = true;
                continue;
            }
            if status != 200 {
                let text = response.text().await.unwrap_or_default();
                return Err(SchedulerError::Http(format!(
                    "subscribe to {master}: status {status}: {}",
                    text.chars().take(200).collect::<String>()
                )));
            }
            break response;
        };
        let stream_id = response
            .headers()
            .get(STREAM_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .ok_or_else(|| {
                SchedulerError::Protocol("SUBSCRIBE answer without Mesos-Stream-Id".into())
            })?;

        let mut chunks = response.bytes_stream();
        let mut decoder = Decoder::new();
        let mut heartbeat = DEFAULT_HEARTBEAT;
        loop {
            let next = tokio::time::timeout(heartbeat * MISSED_HEARTBEATS, chunks.next()).await;
            let chunk = match next {
                Err(_) => {
                    return Err(SchedulerError::Protocol(format!(
                        "no heartbeat for {:?}",
                        heartbeat * MISSED_HEARTBEATS
                    )))
                }
                Ok(None) => {
                    decoder
                        .finish()
                        .map_err(|e| SchedulerError::Protocol(e.to_string()))?;
                    return Ok(());
                }
                Ok(Some(Err(e))) => return Err(SchedulerError::Http(format!("event stream: {e}"))),
                Ok(Some(Ok(chunk))) => chunk,
            };
            decoder.push(&chunk);
            while let Some(record) = decoder
                .next_record()
                .map_err(|e| SchedulerError::Protocol(e.to_string()))?
            {
                let event = Event::decode(record)
                    .map_err(|e| SchedulerError::Protocol(format!("undecodable event: {e}")))?;
                let kind = event.r#type.and_then(|t| event::Type::try_from(t).ok());
                match kind {
                    Some(event::Type::Subscribed) => {
                        let Some(subscribed) = &event.subscribed else {
                            return Err(SchedulerError::Protocol("SUBSCRIBED without body".into()));
                        };
                        let framework_id = subscribed.framework_id.value.clone();
                        if let Some(seconds) = subscribed.heartbeat_interval_seconds {
                            if seconds.is_finite() && seconds > 0.0 {
                                heartbeat = Duration::from_secs_f64(seconds.min(3600.0));
                            }
                        }
                        if let Ok(mut id) = self.shared.framework_id.lock() {
                            *id = Some(framework_id.clone());
                        }
                        tracing::info!(%framework_id, %master, "subscribed");
                        // The event handler persists the id before any call is sent.
                        on_event(event).await;
                        self.shared.session.send_replace(Some(Session {
                            master: master.clone(),
                            stream_id: stream_id.clone(),
                            framework_id,
                        }));
                        continue;
                    }
                    Some(event::Type::Error) => {
                        let message = event
                            .error
                            .map(|e| e.message)
                            .unwrap_or_else(|| "no message".into());
                        return Err(SchedulerError::Refused(message));
                    }
                    _ => {}
                }
                on_event(event).await;
            }
        }
    }
}

/// Base URL of the leader from a 307's `Location` (`//host:port/master/api/v1/scheduler`).
fn leader_base(current: &str, location: &str) -> Result<String, SchedulerError> {
    let scheme = if current.starts_with("https:") {
        "https:"
    } else {
        "http:"
    };
    let absolute = if location.starts_with("//") {
        format!("{scheme}{location}")
    } else if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        return Err(SchedulerError::Protocol(format!(
            "unusable Location {location:?}"
        )));
    };
    let after_scheme = absolute.find("//").map(|i| i + 2).unwrap_or(0);
    let authority_end = absolute[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(absolute.len());
    let path = &absolute[authority_end..];
    let base = &absolute[..authority_end];
    // Keep a `/master` prefix: `/master/api/v1/scheduler` is the same endpoint.
    if path.starts_with("/master/") {
        Ok(format!("{base}/master"))
    } else {
        Ok(base.to_string())
    }
}

/// Posts queued calls in order, each once a subscription exists.
async fn send_calls(shared: Arc<Shared>, mut receiver: mpsc::UnboundedReceiver<Call>) {
    let mut sessions = shared.session.subscribe();
    while let Some(mut call) = receiver.recv().await {
        let session = loop {
            if let Some(session) = sessions.borrow_and_update().clone() {
                break session;
            }
            if sessions.changed().await.is_err() {
                return;
            }
        };
        call.framework_id = Some(v1::FrameworkId {
            value: session.framework_id.clone(),
        });
        let kind = call
            .r#type
            .and_then(|t| call::Type::try_from(t).ok())
            .unwrap_or(call::Type::Unknown);
        let body = Bytes::from(call.encode_to_vec());
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=CALL_ATTEMPTS {
            let result = shared
                .calls_http
                .post(format!("{}/api/v1/scheduler", session.master))
                .header(reqwest::header::CONTENT_TYPE, media::PROTOBUF)
                .header(STREAM_ID_HEADER, session.stream_id.as_str())
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(response) if response.status().as_u16() == 202 => break,
                Ok(response) if response.status().as_u16() == 503 => {
                    tracing::debug!(call = ?kind, attempt, "master unavailable; retrying call");
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    tracing::warn!(call = ?kind, status, body = %text.chars().take(200).collect::<String>(), "call refused");
                    break;
                }
                Err(error) => {
                    tracing::debug!(call = ?kind, attempt, %error, "call failed; retrying")
                }
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}

impl MesosCalls for MesosClient {
    fn send(&self, call: Call) {
        if self.calls.send(call).is_err() {
            tracing::warn!("call dropped: the call sender has stopped");
        }
    }

    fn framework_id(&self) -> Option<String> {
        self.shared
            .framework_id
            .lock()
            .ok()
            .and_then(|id| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations_resolve_to_the_leader() {
        let check = |location: &str, expected: &str| {
            assert_eq!(leader_base("http://m1:5050", location).unwrap(), expected);
        };
        check("//m2:5050/master/api/v1/scheduler", "http://m2:5050/master");
        check("//m2:5050", "http://m2:5050");
        check("http://m3:5050/api/v1/scheduler", "http://m3:5050");
        assert!(leader_base("http://m1:5050", "m2:5050").is_err());
        assert_eq!(
            leader_base("https://m1:5050", "//m2:5050/master/api/v1/scheduler").unwrap(),
            "https://m2:5050/master"
        );
    }

    #[test]
    fn zero_failover_timeout_is_refused() {
        let settings = FrameworkSettings {
            failover_timeout: Duration::ZERO,
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        assert!(MesosClient::new("http://127.0.0.1:1", settings, None).is_err());
    }

    #[test]
    fn resubscription_sets_both_framework_ids() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let client = MesosClient::new(
            "http://127.0.0.1:1",
            FrameworkSettings::default(),
            Some("fw-1".into()),
        )
        .unwrap();
        let call = client.subscribe_call();
        assert_eq!(call.framework_id.as_ref().unwrap().value, "fw-1");
        let info = call.subscribe.unwrap().framework_info;
        assert_eq!(info.id.unwrap().value, "fw-1");
        assert_eq!(info.checkpoint, Some(true));
        assert!(info.failover_timeout.unwrap() > 0.0);

        let fresh =
            MesosClient::new("http://127.0.0.1:1", FrameworkSettings::default(), None).unwrap();
        let call = fresh.subscribe_call();
        assert!(call.framework_id.is_none());
        assert!(call.subscribe.unwrap().framework_info.id.is_none());
    }
}
