//! A task container's end, as the engine's event stream reports it.
//!
//! The worker watches its container both by `wait` ([`super::kill::watch_exit`]) and
//! by the engine's `die` and `oom` events of containers carrying the task's label,
//! whichever reports first: the event arrives as soon as the engine reaps the
//! process, and carries the exit code. [`EndTracker`] is the plain bookkeeping (which
//! events concern the container, whether the kernel killed it for memory, where to
//! resume after a reconnection); [`watch_end_events`] is its async loop, which
//! reopens a dropped or garbled stream with a growing pause and replays the events
//! missed meanwhile (`since`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, warn};

use super::sampler::reconnect_pause;
use super::{ExitObservation, LABEL_TASK_ID};
use crate::docker::{DockerClient, DockerEvent, EventFilters};

/// What the events seen so far say about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTracker {
    container_id: String,
    oom_killed: bool,
    /// Time of the last event seen, or of the first subscription (ns since epoch).
    resume_at_nano: i64,
}

impl EndTracker {
    /// A tracker of container `container_id`, subscribed first at `subscribed_nano`.
    pub fn new(container_id: &str, subscribed_nano: i64) -> EndTracker {
        EndTracker {
            container_id: container_id.to_owned(),
            oom_killed: false,
            resume_at_nano: subscribed_nano,
        }
    }

    /// Takes `event` into account; returns how the container ended on its `die`.
    /// Events of other objects are ignored.
    pub fn observe(&mut self, event: &DockerEvent) -> Option<ExitObservation> {
        if event.actor_id != self.container_id
            || !(event.kind.is_empty() || event.kind == "container")
        {
            return None;
        }
        self.resume_at_nano = self.resume_at_nano.max(event.time_nano);
        match event.action.as_str() {
            "oom" => {
                self.oom_killed = true;
                None
            }
            "die" => Some(ExitObservation {
                // A die event without a readable code is still an end.
                exit_code: event.exit_code().unwrap_or(-1),
                oom_killed: self.oom_killed,
                error: None,
            }),
            _ => None,
        }
    }

    /// The engine's `since` value resuming where the tracker left off.
    pub fn since(&self) -> String {
        let nanos = self.resume_at_nano.max(0);
        format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
    }

    /// The event filters of the container of task `task_id`.
    pub fn filters(&self, task_id: &str, resume: bool) -> EventFilters {
        EventFilters {
            filters: [
                ("type", vec!["container".to_owned()]),
                ("event", vec!["die".to_owned(), "oom".to_owned()]),
                ("label", vec![format!("{LABEL_TASK_ID}={task_id}")]),
            ]
            .into_iter()
            .collect(),
            since: resume.then(|| self.since()),
        }
    }
}

/// Resolves with how container `id` of task `task_id` ended, as soon as the engine
/// reports its `die` event; never if it keeps running. A dropped, refused or garbled
/// stream is reopened (replaying the events since the last one seen).
pub async fn watch_end_events(docker: &DockerClient, id: &str, task_id: &str) -> ExitObservation {
    let mut tracker = EndTracker::new(id, unix_nanos());
    let mut failures = 0u32;
    let mut resume = false;
    loop {
        match docker.events(&tracker.filters(task_id, resume)).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Ok(Some(event)) => {
                        failures = 0;
                        if let Some(mut exit) = tracker.observe(&event) {
                            // The event lacks the engine's error and, when the oom
                            // event was missed, the OOM flag; inspect adds them.
                            if let Ok(inspect) = docker.inspect_container(id).await {
                                exit.oom_killed |= inspect.state.oom_killed;
                                exit.error =
                                    Some(inspect.state.error).filter(|error| !error.is_empty());
                            }
                            debug!(container = %id, exit_code = exit.exit_code, "die event");
                            return exit;
                        }
                    }
                    Ok(None) => {
                        debug!(container = %id, "event stream ended");
                        break;
                    }
                    Err(err) => {
                        warn!(container = %id, error = %err, "event stream broke; reconnecting");
                        break;
                    }
                }
            },
            Err(err) => {
                warn!(container = %id, error = %err, "cannot subscribe to engine events")
            }
        }
        resume = true;
        tokio::time::sleep(reconnect_pause(failures)).await;
        failures = failures.saturating_add(1);
    }
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
        .try_into()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event(
        kind: &str,
        action: &str,
        actor: &str,
        exit_code: Option<&str>,
        time: i64,
    ) -> DockerEvent {
        DockerEvent {
            kind: kind.into(),
            action: action.into(),
            actor_id: actor.into(),
            attributes: exit_code
                .map(|code| BTreeMap::from([("exitCode".to_string(), code.to_string())]))
                .unwrap_or_default(),
            time_nano: time,
        }
    }

    #[test]
    fn die_ends_the_container_with_its_code_and_any_oom_seen_before() {
        let mut tracker = EndTracker::new("c1", 1_000);
        assert_eq!(
            tracker.observe(&event("container", "start", "c1", None, 2_000)),
            None
        );
        assert_eq!(
            tracker.observe(&event("container", "die", "c2", Some("1"), 3_000)),
            None
        );
        assert_eq!(
            tracker.observe(&event("image", "die", "c1", Some("1"), 3_000)),
            None
        );
        assert_eq!(tracker.since(), "0.000002000");
        assert_eq!(
            tracker.observe(&event("container", "die", "c1", Some("3"), 4_000)),
            Some(ExitObservation {
                exit_code: 3,
                oom_killed: false,
                error: None
            })
        );
        assert_eq!(
            tracker.observe(&event("container", "oom", "c1", None, 5_000)),
            None
        );
        assert_eq!(
            tracker.observe(&event("", "die", "c1", None, 6_000_000_001)),
            Some(ExitObservation {
                exit_code: -1,
                oom_killed: true,
                error: None
            })
        );
        assert_eq!(tracker.since(), "6.000000001");
    }

    #[test]
    fn filters_name_the_task_and_resume_after_the_last_event() {
        let mut tracker = EndTracker::new("c1", 1_700_000_000_000_000_000);
        let first = tracker.filters("t.1", false);
        assert_eq!(first.since, None);
        assert_eq!(
            first.filters.get("label"),
            Some(&vec![format!("{LABEL_TASK_ID}=t.1")])
        );
        assert_eq!(
            first.filters.get("event"),
            Some(&vec!["die".to_string(), "oom".to_string()])
        );
        tracker.observe(&event(
            "container",
            "oom",
            "c1",
            None,
            1_700_000_001_500_000_000,
        ));
        assert_eq!(
            tracker.filters("t.1", true).since.as_deref(),
            Some("1700000001.500000000")
        );
    }
}
