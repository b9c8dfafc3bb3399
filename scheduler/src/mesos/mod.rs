//! The Mesos v1 scheduler HTTP client.
//!
//! Two HTTP clients, so the event stream and the calls never share a connection (the
//! protocol requires it): one holds the SUBSCRIBE stream open, the other POSTs every
//! later call with the stream's `Mesos-Stream-Id`. With credentials, every request
//! carries `Authorization: Basic …`.
//!
//! The subscription loop picks a master (the next of a static list, or the leader
//! detected in ZooKeeper), subscribes (re-subscribing with the known FrameworkID),
//! follows one 307 redirect to the leading master, reads RecordIO events with a
//! heartbeat watchdog, hands each event to the caller in order, re-subscribes when
//! ZooKeeper elects another leader, and reconnects with jittered exponential backoff
//! when anything breaks.
//!
//! Calls are queued by [`MesosClient::send`] (never blocking an actor) and posted in
//! order by one sender task once a subscription exists (see `calls`).
//!
//! # Layout
//! - `settings`: [`FrameworkSettings`] and the FrameworkInfo built from them.
//! - `auth`: [`Credentials`] from a file or the environment.
//! - `leader`: [`MasterSpec`], redirects and ZooKeeper leader detection.
//! - `subscription`: one SUBSCRIBE and its event stream.
//! - `calls`: the call sender and the status-code rules for calls.

mod auth;
mod calls;
mod leader;
mod settings;
mod subscription;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};

use mesos_stateful_actors::mesos::MesosCalls;
use mesos_stateful_proto::v1::scheduler::{Call, Event};

use crate::error::SchedulerError;

pub use auth::{Credentials, PRINCIPAL_ENV, SECRET_ENV};
pub use leader::MasterSpec;
pub use settings::{FrameworkSettings, DEFAULT_FAILOVER_TIMEOUT};

/// Heartbeats that may be missed before the connection is considered dead.
pub const MISSED_HEARTBEATS: u32 = 5;
/// Heartbeat interval assumed until SUBSCRIBED says otherwise (the protocol's 15 s).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// First reconnection delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest reconnection delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Timing of the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Heartbeat intervals without a byte on the stream before it is declared dead.
    pub missed_heartbeats: u32,
    /// Heartbeat interval assumed before SUBSCRIBED gives the master's.
    pub initial_heartbeat: Duration,
    /// First delay before re-subscribing.
    pub backoff_min: Duration,
    /// Longest delay before re-subscribing.
    pub backoff_max: Duration,
    /// Attempts for an ACCEPT or DECLINE that meets 503s or connection errors (other
    /// calls are retried until delivered or refused).
    pub call_attempts: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            missed_heartbeats: MISSED_HEARTBEATS,
            initial_heartbeat: DEFAULT_HEARTBEAT,
            backoff_min: BACKOFF_MIN,
            backoff_max: BACKOFF_MAX,
            call_attempts: 5,
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
    masters: leader::Masters,
    settings: FrameworkSettings,
    options: ClientOptions,
    /// `Authorization` header value, with credentials.
    authorization: Option<String>,
    /// Known FrameworkID (stored or assigned); set before anything else.
    framework_id: Mutex<Option<String>>,
    session: watch::Sender<Option<Session>>,
    /// Whether a subscription is up (mirrors `session`, for observers).
    subscribed: watch::Sender<bool>,
    stream_http: reqwest::Client,
    calls_http: reqwest::Client,
}

impl Shared {
    fn known_framework_id(&self) -> Option<String> {
        self.framework_id.lock().ok().and_then(|id| id.clone())
    }

    fn set_framework_id(&self, framework_id: &str) {
        if let Ok(mut id) = self.framework_id.lock() {
            *id = Some(framework_id.to_string());
        }
    }
}

/// Handle of the client: clonable, and the actors' [`MesosCalls`].
#[derive(Debug, Clone)]
pub struct MesosClient {
    shared: Arc<Shared>,
    calls: mpsc::UnboundedSender<Call>,
}

/// How one subscription attempt ended.
enum Ended {
    Stream(Result<(), SchedulerError>),
    LeaderChanged,
}

impl MesosClient {
    /// A client for the masters in `master` (see [`MasterSpec`]: a comma-separated
    /// list of `http://host:port`, or `zk://host:port,…/path`), re-subscribing as
    /// `framework_id` if one is known. Starts the call sender (and the ZooKeeper
    /// detector) on the current runtime.
    pub fn new(
        master: &str,
        settings: FrameworkSettings,
        framework_id: Option<String>,
    ) -> Result<MesosClient, SchedulerError> {
        MesosClient::with_options(master, settings, framework_id, ClientOptions::default())
    }

    /// [`MesosClient::new`] with explicit timing.
    pub fn with_options(
        master: &str,
        settings: FrameworkSettings,
        framework_id: Option<String>,
        options: ClientOptions,
    ) -> Result<MesosClient, SchedulerError> {
        settings.validate()?;
        let spec: MasterSpec = master.parse()?;
        let build = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| SchedulerError::Config(format!("http client: {e}")))
        };
        let (session, _) = watch::channel(None);
        let (subscribed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            masters: leader::Masters::start(spec),
            authorization: settings
                .credentials
                .as_ref()
                .map(Credentials::authorization),
            settings,
            options,
            framework_id: Mutex::new(framework_id),
            session,
            subscribed,
            stream_http: build()?,
            calls_http: build()?,
        });
        let (calls, receiver) = mpsc::unbounded_channel();
        tokio::spawn(calls::send_calls(shared.clone(), receiver));
        Ok(MesosClient { shared, calls })
    }

    /// Whether a subscription is up, as it changes: `true` once SUBSCRIBED has been
    /// handled, `false` when the stream ends for any reason.
    pub fn watch_subscribed(&self) -> watch::Receiver<bool> {
        self.shared.subscribed.subscribe()
    }

    /// Base URL of the master of the current subscription, if subscribed.
    pub fn subscribed_master(&self) -> Option<String> {
        self.shared
            .session
            .borrow()
            .as_ref()
            .map(|session| session.master.clone())
    }

    /// The SUBSCRIBE call the next subscription sends.
    pub fn subscribe_call(&self) -> Call {
        subscription::subscribe_call(&self.shared)
    }

    /// Subscribes and keeps subscribed until `shutdown` completes, handing every
    /// event to `on_event` in order. Returns an error only for a refusal that
    /// retrying cannot fix: [`SchedulerError::Refused`] (an ERROR event such as
    /// "Framework failed over" or "Framework has been removed", or a 4xx answer to
    /// SUBSCRIBE) or [`SchedulerError::Unauthorized`].
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
        let options = &self.shared.options;
        let mut backoff = options.backoff_min;
        loop {
            let master = tokio::select! {
                master = self.shared.masters.target() => master,
                _ = &mut shutdown => return Ok(()),
            };
            let ended = {
                let attempt = subscription::subscribe_once(&self.shared, &master, &mut on_event);
                let changed = self.shared.masters.changed_from(&master);
                tokio::select! {
                    result = attempt => Ended::Stream(result),
                    _ = changed => Ended::LeaderChanged,
                    _ = &mut shutdown => return Ok(()),
                }
            };
            let was_subscribed = self.shared.session.send_replace(None).is_some();
            self.shared.subscribed.send_replace(false);
            match ended {
                Ended::LeaderChanged => {
                    tracing::info!(previous = %master, "leading master changed; re-subscribing");
                    backoff = options.backoff_min;
                }
                Ended::Stream(Ok(())) => {
                    tracing::warn!(%master, "subscription stream ended; reconnecting");
                }
                Ended::Stream(Err(
                    error @ (SchedulerError::Refused(_) | SchedulerError::Unauthorized(_)),
                )) => {
                    tracing::error!(%error, %master, "subscription refused");
                    return Err(error);
                }
                Ended::Stream(Err(error)) => {
                    tracing::warn!(%error, %master, "subscription failed; reconnecting");
                    self.shared.masters.failed();
                }
            }
            if was_subscribed {
                backoff = options.backoff_min;
            }
            let delay = backoff.mul_f64(rand::rng().random_range(0.5..1.0));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut shutdown => return Ok(()),
            }
            backoff = (backoff * 2).min(options.backoff_max.max(options.backoff_min));
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
        self.shared.known_framework_id()
    }

    fn subscribed_master(&self) -> Option<String> {
        MesosClient::subscribed_master(self)
    }

    fn principal(&self) -> Option<String> {
        self.shared.settings.effective_principal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn zero_failover_timeout_is_refused() {
        let settings = FrameworkSettings {
            failover_timeout: Duration::ZERO,
            ..Default::default()
        };
        let runtime = runtime();
        let _guard = runtime.enter();
        assert!(MesosClient::new("http://127.0.0.1:1", settings, None).is_err());
        assert!(MesosClient::new("", FrameworkSettings::default(), None).is_err());
    }

    #[test]
    fn resubscription_sets_both_framework_ids() {
        let runtime = runtime();
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
        assert_eq!(fresh.framework_id(), None);
    }
}
