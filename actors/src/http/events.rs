//! `GET /v1/events`: instance and member changes as Server-Sent Events.
//!
//! The StateManager publishes every durable write; [`feed`] turns each into events
//! (`instance` for an instance record, `member` for a task record) and hands them to
//! the [`EventHub`], which numbers them and keeps the latest in a bounded
//! [`EventRing`]. A client resuming with `Last-Event-ID` gets what it missed from the
//! ring; when the ring no longer reaches back that far (or the id is from an earlier
//! run of the scheduler) it gets a `reset` event first, telling it to re-read the
//! state. Ids grow across restarts: the first id of a run is derived from the clock.
//! A comment line every heartbeat interval keeps proxies from closing an idle stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use mesos_stateful_store::records::InstanceStatus;

use crate::actor::state_manager::StateChange;
use crate::domain::view::MemberView;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::ApiShared;

/// Events kept for clients that resume.
pub const DEFAULT_RING_CAPACITY: usize = 4096;
/// Events a slow client may fall behind before it gets a `reset`.
const LIVE_CHANNEL_CAPACITY: usize = 1024;

/// Kind of an event, its SSE `event:` field and the `?type=` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An instance record changed.
    Instance,
    /// A member's task record changed.
    Member,
    /// Events were missed: re-read the state, then follow the stream.
    Reset,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Instance => "instance",
            Self::Member => "member",
            Self::Reset => "reset",
        }
    }
}

/// Data of an `instance` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstanceEvent {
    /// Instance name.
    pub instance: String,
    /// Its status after the change.
    pub status: InstanceStatus,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Version of the instance record after the change.
    pub version: u64,
}

/// Data of a `member` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberEvent {
    /// Instance name.
    pub instance: String,
    /// The member after the change.
    pub member: MemberView,
}

/// One numbered event.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// Position in the stream.
    pub id: u64,
    /// What changed.
    pub kind: EventKind,
    /// Instance it concerns (none for `reset`).
    pub instance: Option<String>,
    /// JSON data.
    pub data: String,
}

impl StreamEvent {
    /// The event in the SSE wire format.
    pub fn to_sse(&self) -> String {
        format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            self.id,
            self.kind.as_str(),
            self.data
        )
    }
}

/// The latest events, numbered.
#[derive(Debug)]
pub struct EventRing {
    next_id: u64,
    capacity: usize,
    events: VecDeque<Arc<StreamEvent>>,
}

/// What a resuming client gets from the ring.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    /// Whether it must re-read the state first (its id is too old or unknown).
    pub reset: bool,
    /// Events after its id.
    pub events: Vec<Arc<StreamEvent>>,
}

impl EventRing {
    /// A ring whose first id is `first_id`.
    pub fn new(first_id: u64, capacity: usize) -> Self {
        EventRing {
            next_id: first_id.max(1),
            capacity: capacity.max(1),
            events: VecDeque::new(),
        }
    }

    /// Numbers and keeps an event, dropping the oldest past the capacity.
    pub fn push(
        &mut self,
        kind: EventKind,
        instance: Option<String>,
        data: String,
    ) -> Arc<StreamEvent> {
        let event = Arc::new(StreamEvent {
            id: self.next_id,
            kind,
            instance,
            data,
        });
        self.next_id += 1;
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        event
    }

    /// The id the next event will have.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// What follows `last_id` (`None`: a new client, which gets only new events).
    pub fn since(&self, last_id: Option<u64>) -> Backlog {
        let Some(last_id) = last_id else {
            return Backlog {
                reset: false,
                events: Vec::new(),
            };
        };
        let oldest = self.events.front().map_or(self.next_id, |e| e.id);
        // An id this run never gave, or one whose successors were dropped.
        if last_id >= self.next_id || last_id + 1 < oldest {
            return Backlog {
                reset: true,
                events: self.events.iter().cloned().collect(),
            };
        }
        Backlog {
            reset: false,
            events: self
                .events
                .iter()
                .filter(|e| e.id > last_id)
                .cloned()
                .collect(),
        }
    }
}

/// Numbers events, keeps the ring, and fans them out to connected clients.
#[derive(Debug)]
pub struct EventHub {
    /// Held while pushing and sending, and while a client subscribes, so a client
    /// sees every event exactly once: from the backlog or from the channel.
    ring: Mutex<EventRing>,
    live: broadcast::Sender<Arc<StreamEvent>>,
}

impl EventHub {
    /// A hub keeping `capacity` events, ids starting from the clock.
    pub fn new(capacity: usize) -> Self {
        let first_id = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64 * 1000)
            .unwrap_or(1);
        EventHub {
            ring: Mutex::new(EventRing::new(first_id, capacity)),
            live: broadcast::channel(LIVE_CHANNEL_CAPACITY).0,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, EventRing> {
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Numbers, keeps and sends an event.
    pub fn publish(&self, kind: EventKind, instance: Option<String>, data: String) {
        let mut ring = self.ring();
        let event = ring.push(kind, instance, data);
        // No receiver is not an error: nobody is watching.
        let _ = self.live.send(event);
    }

    /// Publishes the events of one durable write.
    pub fn publish_change(&self, change: &StateChange) {
        for instance in &change.instances {
            let data = InstanceEvent {
                instance: instance.name.clone(),
                status: instance.status,
                status_message: instance.status_message.clone(),
                version: instance.version,
            };
            if let Ok(json) = serde_json::to_string(&data) {
                self.publish(EventKind::Instance, Some(instance.name.clone()), json);
            }
        }
        for task in &change.tasks {
            let data = MemberEvent {
                instance: task.instance.clone(),
                member: MemberView::from(task),
            };
            if let Ok(json) = serde_json::to_string(&data) {
                self.publish(EventKind::Member, Some(task.instance.clone()), json);
            }
        }
    }

    /// The backlog after `last_id` and a receiver of what follows it.
    pub fn subscribe(
        &self,
        last_id: Option<u64>,
    ) -> (Backlog, broadcast::Receiver<Arc<StreamEvent>>) {
        let ring = self.ring();
        (ring.since(last_id), self.live.subscribe())
    }

    /// The id the next event will have.
    pub fn next_id(&self) -> u64 {
        self.ring().next_id()
    }
}

/// Forwards the StateManager's changes to the hub until the StateManager stops.
pub async fn feed(mut changes: broadcast::Receiver<StateChange>, hub: Arc<EventHub>) {
    loop {
        match changes.recv().await {
            Ok(change) => hub.publish_change(&change),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "event stream fell behind the state; clients reset");
                hub.publish(EventKind::Reset, None, reset_data(missed));
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn reset_data(missed: u64) -> String {
    serde_json::json!({ "missed": missed }).to_string()
}

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of this instance.
    pub instance: Option<String>,
    /// Only events of this kind (`instance` or `member`; `reset` is always sent).
    #[serde(rename = "type")]
    #[param(inline)]
    pub kind: Option<EventKind>,
}

impl EventsQuery {
    fn wants(&self, event: &StreamEvent) -> bool {
        if event.kind == EventKind::Reset {
            return true;
        }
        self.kind.is_none_or(|kind| kind == event.kind)
            && self
                .instance
                .as_deref()
                .is_none_or(|name| event.instance.as_deref() == Some(name))
    }
}

/// The stream of instance and member changes.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: events `instance` (data: InstanceEvent), `member` (data: MemberEvent) and `reset`, each with an `id:`; comment lines as heartbeats", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed query or `Last-Event-ID`", body = ErrorBody),
    )
)]
pub async fn stream_events(
    request: HttpRequest,
    query: web::Query<EventsQuery>,
    shared: web::Data<ApiShared>,
) -> Result<HttpResponse, ApiError> {
    let last_id = match request.headers().get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidHeader,
                        "Last-Event-ID must be an event id",
                    )
                })?,
        ),
    };
    let query = query.into_inner();
    let (backlog, live) = shared.events.subscribe(last_id);
    let mut pending: VecDeque<String> = VecDeque::new();
    // Tells the client the stream is open before any change happens.
    pending.push_back(": connected\n\n".to_string());
    if backlog.reset {
        let reset = StreamEvent {
            id: shared.events.next_id().saturating_sub(1),
            kind: EventKind::Reset,
            instance: None,
            data: reset_data(0),
        };
        pending.push_back(reset.to_sse());
    }
    pending.extend(
        backlog
            .events
            .iter()
            .filter(|e| query.wants(e))
            .map(|e| e.to_sse()),
    );
    let state = StreamState {
        pending,
        live,
        query,
        heartbeat: shared.settings.heartbeat,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), state))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

struct StreamState {
    pending: VecDeque<String>,
    live: broadcast::Receiver<Arc<StreamEvent>>,
    query: EventsQuery,
    heartbeat: Duration,
}

impl StreamState {
    /// The next bytes to send; `None` ends the stream (the server is stopping).
    async fn next_chunk(&mut self) -> Option<String> {
        if let Some(chunk) = self.pending.pop_front() {
            return Some(chunk);
        }
        loop {
            let received = tokio::time::timeout(self.heartbeat, self.live.recv()).await;
            match received {
                Err(_) => return Some(": heartbeat\n\n".to_string()),
                Ok(Ok(event)) if self.query.wants(&event) => return Some(event.to_sse()),
                Ok(Ok(_)) => continue,
                Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    let reset = StreamEvent {
                        id: 0,
                        kind: EventKind::Reset,
                        instance: None,
                        data: reset_data(missed),
                    };
                    // Without an id: the client's Last-Event-ID stays the last event
                    // it really got.
                    return Some(format!("event: reset\ndata: {}\n\n", reset.data));
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(ids: u64) -> EventRing {
        let mut ring = EventRing::new(100, 3);
        for i in 0..ids {
            ring.push(EventKind::Member, Some("a".into()), format!("{i}"));
        }
        ring
    }

    fn ids(backlog: &Backlog) -> Vec<u64> {
        backlog.events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn resuming_gets_what_was_missed_or_a_reset() {
        let ring = ring_with(5); // ids 100..=104, keeps 102..=104
        let check = |last: Option<u64>, reset: bool, expected: &[u64]| {
            let backlog = ring.since(last);
            assert_eq!(backlog.reset, reset, "{last:?}");
            assert_eq!(ids(&backlog), expected, "{last:?}");
        };
        check(None, false, &[]);
        check(Some(104), false, &[]);
        check(Some(102), false, &[103, 104]);
        check(Some(101), false, &[102, 103, 104]);
        check(Some(100), true, &[102, 103, 104]);
        check(Some(7), true, &[102, 103, 104]);
        check(Some(500), true, &[102, 103, 104]);
    }

    #[test]
    fn sse_lines_carry_id_and_kind() {
        let mut ring = EventRing::new(1, 10);
        let event = ring.push(EventKind::Instance, Some("a".into()), "{}".into());
        assert_eq!(event.to_sse(), "id: 1\nevent: instance\ndata: {}\n\n");
        assert_eq!(ring.next_id(), 2);
    }

    #[test]
    fn filters_by_instance_and_kind_but_always_pass_resets() {
        let event = |kind, instance: Option<&str>| StreamEvent {
            id: 1,
            kind,
            instance: instance.map(str::to_string),
            data: String::new(),
        };
        let query = EventsQuery {
            instance: Some("a".into()),
            kind: Some(EventKind::Member),
        };
        assert!(query.wants(&event(EventKind::Member, Some("a"))));
        assert!(!query.wants(&event(EventKind::Member, Some("b"))));
        assert!(!query.wants(&event(EventKind::Instance, Some("a"))));
        assert!(query.wants(&event(EventKind::Reset, None)));
    }

    #[test]
    fn a_subscriber_sees_each_event_once() {
        let hub = EventHub::new(10);
        hub.publish(EventKind::Member, Some("a".into()), "1".into());
        let first = hub.next_id() - 1;
        let (backlog, mut live) = hub.subscribe(Some(first - 1));
        hub.publish(EventKind::Member, Some("a".into()), "2".into());
        assert_eq!(ids(&backlog), vec![first]);
        let next = live.try_recv().map(|e| e.id).ok();
        assert_eq!(next, Some(first + 1));
        assert!(live.try_recv().is_err());
    }
}
