//! The engine's event stream (`GET /events`), filtered by type, action and label.
//!
//! The engine writes one JSON object per line for as long as the connection stays
//! open and may stay silent for hours, so the stream has no idle timeout. An
//! undecodable line is an error (the caller reconnects), never a panic.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use serde::Deserialize;

use super::client::{encode, read_error_body, DockerClient};
use super::line_stream::JsonLineStream;
use super::DockerError;

/// One engine event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerEvent {
    /// The object type: `container`, `image`, `network`…
    pub kind: String,
    /// What happened: `start`, `die`, `oom`, `kill`…
    pub action: String,
    /// The object's id (the container id for container events).
    pub actor_id: String,
    /// The event's attributes: the container's labels, `name`, `image`, and
    /// `exitCode` on `die`.
    pub attributes: BTreeMap<String, String>,
    /// When it happened, in nanoseconds since the Unix epoch (0 if the engine did
    /// not say).
    pub time_nano: i64,
}

impl DockerEvent {
    /// The exit code of a `die` event.
    pub fn exit_code(&self) -> Option<i64> {
        self.attributes.get("exitCode")?.parse().ok()
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawEvent {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Action", default)]
    action: String,
    /// The action on engines older than API 1.22.
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "Actor", default)]
    actor: RawActor,
    /// The object id on engines older than API 1.22.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    time: i64,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

#[derive(Debug, Default, Deserialize)]
struct RawActor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: Option<BTreeMap<String, String>>,
}

/// Parses one line of the event stream.
pub fn parse_event(line: &[u8]) -> Result<DockerEvent, serde_json::Error> {
    let raw: RawEvent = serde_json::from_slice(line)?;
    let action = if raw.action.is_empty() {
        raw.status.unwrap_or_default()
    } else {
        raw.action
    };
    let actor_id = if raw.actor.id.is_empty() {
        raw.id.unwrap_or_default()
    } else {
        raw.actor.id
    };
    Ok(DockerEvent {
        kind: raw.kind,
        action,
        actor_id,
        attributes: raw.actor.attributes.unwrap_or_default(),
        time_nano: if raw.time_nano != 0 {
            raw.time_nano
        } else {
            raw.time.saturating_mul(1_000_000_000)
        },
    })
}

/// Which events to receive: every listed value of a key may match, every key must.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilters {
    /// Filter name (`type`, `event`, `label`, `container`) to accepted values.
    pub filters: BTreeMap<&'static str, Vec<String>>,
    /// Replays the events since this Unix time (`seconds.nanoseconds`), so that a
    /// reconnection misses nothing.
    pub since: Option<String>,
}

/// An open event stream: [`JsonLineStream::next`] gives the next event, `None` when
/// the engine closed the stream.
pub type EventStream = JsonLineStream<DockerEvent>;

impl DockerClient {
    /// Subscribes to the engine's events matching `filters`.
    pub async fn events(&self, filters: &EventFilters) -> Result<EventStream, DockerError> {
        let mut path = "/events".to_owned();
        let mut separator = '?';
        if let Some(since) = &filters.since {
            path.push(separator);
            path.push_str("since=");
            path.push_str(&encode(since, b""));
            separator = '&';
        }
        if !filters.filters.is_empty() {
            let json = serde_json::to_string(&filters.filters).map_err(|err| {
                DockerError::InvalidRequest {
                    method: "GET".into(),
                    path: path.clone(),
                    reason: err.to_string(),
                }
            })?;
            path.push(separator);
            path.push_str("filters=");
            path.push_str(&encode(&json, b""));
        }
        let response = self.stream(Method::GET, &path, None, &[]).await?;
        if response.status() != StatusCode::OK {
            return Err(read_error_body(response, "GET", &path).await);
        }
        Ok(JsonLineStream::new(
            path,
            response.into_body(),
            None,
            "event",
            parse_event,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_current_and_old_event_shapes() {
        let die = parse_event(
            br#"{"status":"die","id":"c1","from":"busybox","Type":"container","Action":"die",
                "Actor":{"ID":"c1","Attributes":{"exitCode":"3","mesos-stateful.task-id":"t"}},
                "scope":"local","time":1700000000,"timeNano":1700000000123456789}"#,
        )
        .unwrap();
        assert_eq!(
            die,
            DockerEvent {
                kind: "container".into(),
                action: "die".into(),
                actor_id: "c1".into(),
                attributes: BTreeMap::from([
                    ("exitCode".to_string(), "3".to_string()),
                    ("mesos-stateful.task-id".to_string(), "t".to_string()),
                ]),
                time_nano: 1_700_000_000_123_456_789,
            }
        );
        assert_eq!(die.exit_code(), Some(3));
        let old = parse_event(br#"{"status":"oom","id":"c2","time":5}"#).unwrap();
        assert_eq!(
            (old.action.as_str(), old.actor_id.as_str(), old.time_nano),
            ("oom", "c2", 5_000_000_000)
        );
        assert_eq!(old.exit_code(), None);
        let odd =
            parse_event(br#"{"Action":"die","Actor":{"ID":"c","Attributes":{"exitCode":"x"}}}"#)
                .unwrap();
        assert_eq!(odd.exit_code(), None);
        assert!(parse_event(b"not json").is_err());
        assert!(parse_event(br#"{"Actor":"nope"}"#).is_err());
    }
}
