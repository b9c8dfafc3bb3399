//! Posting calls: one task sends queued calls in order on the current subscription
//! and decides from the answer's status whether a call is done, refused, to be
//! retried, or to be kept for the next subscription.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::sync::{mpsc, watch};

use mesos_stateful_proto::v1::scheduler::{call, Call};
use mesos_stateful_proto::{media, v1, STREAM_ID_HEADER};

use super::{Session, Shared, BACKOFF_MAX};

/// What to do after one attempt at a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted (202, or 200 for UPDATE_FRAMEWORK).
    Delivered,
    /// Refused for a reason resending cannot fix; logged and dropped.
    Refused,
    /// 403: the master no longer has us subscribed. Kept for the next subscription.
    Resubscribe,
    /// 403 for a call about offers, which are gone with the subscription; dropped.
    Stale,
    /// 503 or a connection error: retry after a backoff.
    Retry,
}

/// Whether a call still means something on a later subscription (offers do not
/// survive a subscription).
pub(crate) fn survives_resubscription(kind: call::Type) -> bool {
    !matches!(
        kind,
        call::Type::Accept
            | call::Type::Decline
            | call::Type::AcceptInverseOffers
            | call::Type::DeclineInverseOffers
    )
}

/// Classifies the answer to a call: `status` is `None` for a connection error.
pub(crate) fn classify(kind: call::Type, status: Option<u16>) -> Outcome {
    match status {
        Some(202) | Some(200) => Outcome::Delivered,
        None | Some(503) => Outcome::Retry,
        Some(403) if survives_resubscription(kind) => Outcome::Resubscribe,
        Some(403) => Outcome::Stale,
        Some(_) => Outcome::Refused,
    }
}

fn call_kind(call: &Call) -> call::Type {
    call.r#type
        .and_then(|t| call::Type::try_from(t).ok())
        .unwrap_or(call::Type::Unknown)
}

/// Waits for a subscription whose stream is not `stale`; `None` once the client is gone.
async fn usable_session(
    sessions: &mut watch::Receiver<Option<Session>>,
    stale: Option<&str>,
) -> Option<Session> {
    loop {
        if let Some(session) = sessions.borrow_and_update().clone() {
            if Some(session.stream_id.as_str()) != stale {
                return Some(session);
            }
        }
        sessions.changed().await.ok()?;
    }
}

/// Posts queued calls in order, each once a subscription exists.
pub(crate) async fn send_calls(shared: Arc<Shared>, mut receiver: mpsc::UnboundedReceiver<Call>) {
    let mut sessions = shared.session.subscribe();
    // The stream id a 403 told us is no longer subscribed.
    let mut stale: Option<String> = None;
    while let Some(mut call) = receiver.recv().await {
        let kind = call_kind(&call);
        let mut delay = Duration::from_millis(100);
        let mut attempts = 0u32;
        loop {
            let Some(session) = usable_session(&mut sessions, stale.as_deref()).await else {
                return;
            };
            call.framework_id = Some(v1::FrameworkId {
                value: session.framework_id.clone(),
            });
            let body = Bytes::from(call.encode_to_vec());
            let mut request = shared
                .calls_http
                .post(format!("{}/api/v1/scheduler", session.master))
                .header(reqwest::header::CONTENT_TYPE, media::PROTOBUF)
                .header(STREAM_ID_HEADER, session.stream_id.as_str())
                .body(body);
            if let Some(authorization) = &shared.authorization {
                request = request.header(reqwest::header::AUTHORIZATION, authorization.as_str());
            }
            let (status, detail) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    (Some(status), text.chars().take(300).collect::<String>())
                }
                Err(error) => (None, error.to_string()),
            };
            attempts += 1;
            match classify(kind, status) {
                Outcome::Delivered => break,
                Outcome::Refused => {
                    tracing::warn!(call = ?kind, ?status, body = %detail, "call refused by the master");
                    break;
                }
                Outcome::Stale => {
                    tracing::info!(call = ?kind, body = %detail, "not subscribed any more; dropping the offer call");
                    stale = Some(session.stream_id);
                    break;
                }
                Outcome::Resubscribe => {
                    tracing::info!(call = ?kind, body = %detail, "not subscribed any more; call kept for the next subscription");
                    stale = Some(session.stream_id);
                }
                Outcome::Retry => {
                    if !survives_resubscription(kind) && attempts >= shared.options.call_attempts {
                        tracing::warn!(call = ?kind, ?status, error = %detail, attempts, "offer call undeliverable; dropped");
                        break;
                    }
                    tracing::debug!(call = ?kind, ?status, error = %detail, attempts, "call not delivered; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_per_status_code() {
        use call::Type::*;
        use Outcome::*;
        let cases = [
            (Acknowledge, Some(202), Delivered),
            (UpdateFramework, Some(200), Delivered),
            (Accept, Some(202), Delivered),
            (Kill, None, Retry),
            (Accept, None, Retry),
            (Reconcile, Some(503), Retry),
            (Acknowledge, Some(403), Resubscribe),
            (Kill, Some(403), Resubscribe),
            (Reconcile, Some(403), Resubscribe),
            (Message, Some(403), Resubscribe),
            (Accept, Some(403), Stale),
            (Decline, Some(403), Stale),
            (AcceptInverseOffers, Some(403), Stale),
            (Kill, Some(400), Refused),
            (Kill, Some(401), Refused),
            (Kill, Some(415), Refused),
            (Unknown, Some(501), Refused),
            (Kill, Some(500), Refused),
        ];
        for (kind, status, expected) in cases {
            assert_eq!(classify(kind, status), expected, "{kind:?} {status:?}");
        }
    }
}
