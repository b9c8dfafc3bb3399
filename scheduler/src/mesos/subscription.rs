//! One subscription: POST SUBSCRIBE (following one 307 to the leader), then read
//! RecordIO events under a heartbeat watchdog until the stream ends or breaks.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message;

use mesos_stateful_proto::recordio::Decoder;
use mesos_stateful_proto::v1::scheduler::{call, event, Call, Event};
use mesos_stateful_proto::{media, v1, STREAM_ID_HEADER};

use super::leader::leader_base;
use super::{Session, Shared};
use crate::error::SchedulerError;

/// The SUBSCRIBE call, with both framework ids set (and equal) on a re-subscription.
pub(crate) fn subscribe_call(shared: &Shared) -> Call {
    let framework_id = shared.known_framework_id();
    Call {
        framework_id: framework_id.clone().map(|value| v1::FrameworkId { value }),
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(call::Subscribe {
            framework_info: shared.settings.framework_info(framework_id),
            suppressed_roles: Vec::new(),
            offer_constraints: None,
        }),
        ..Default::default()
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Opens the event stream at `master`, following one redirect.
async fn open(
    shared: &Shared,
    master: &str,
) -> Result<(String, reqwest::Response), SchedulerError> {
    let body = Bytes::from(subscribe_call(shared).encode_to_vec());
    let mut master = master.to_string();
    let mut redirected = false;
    loop {
        let mut request = shared
            .stream_http
            .post(format!("{master}/api/v1/scheduler"))
            .header(reqwest::header::CONTENT_TYPE, media::PROTOBUF)
            .header(reqwest::header::ACCEPT, media::PROTOBUF)
            .body(body.clone());
        if let Some(authorization) = &shared.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|e| SchedulerError::Http(format!("subscribe to {master}: {e}")))?;
        let status = response.status().as_u16();
        match status {
            200 => return Ok((master, response)),
            307 if !redirected => {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        SchedulerError::Protocol(format!("307 from {master} without Location"))
                    })?;
                master = leader_base(&master, location)?;
                tracing::info!(%master, "following redirect to the leading master");
                redirected = true;
            }
            401 => {
                let text = response.text().await.unwrap_or_default();
                return Err(SchedulerError::Unauthorized(format!(
                    "master {master} answered 401 to SUBSCRIBE: credentials missing or wrong ({})",
                    excerpt(&text)
                )));
            }
            // No leader elected yet, or the leader is still recovering: try again later.
            503 | 307 => {
                let text = response.text().await.unwrap_or_default();
                return Err(SchedulerError::Http(format!(
                    "subscribe to {master}: status {status}: {}",
                    excerpt(&text)
                )));
            }
            _ => {
                let text = response.text().await.unwrap_or_default();
                return Err(SchedulerError::Refused(format!(
                    "master {master} answered {status} to SUBSCRIBE: {}",
                    excerpt(&text)
                )));
            }
        }
    }
}

/// Subscribes at `master` and hands events to `on_event` until the stream ends
/// (`Ok`) or fails. An ERROR event is [`SchedulerError::Refused`].
pub(crate) async fn subscribe_once<F, Fut>(
    shared: &Shared,
    master: &str,
    on_event: &mut F,
) -> Result<(), SchedulerError>
where
    F: FnMut(Event) -> Fut,
    Fut: Future<Output = ()>,
{
    let (master, response) = open(shared, master).await?;
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
    let missed = shared.options.missed_heartbeats.max(1);
    let mut heartbeat = shared.options.initial_heartbeat;
    loop {
        let silence = heartbeat * missed;
        let chunk = match tokio::time::timeout(silence, chunks.next()).await {
            Err(_) => {
                return Err(SchedulerError::Protocol(format!(
                    "no bytes from {master} for {silence:?} ({missed} heartbeats)"
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
            let kind = event
                .r#type
                .and_then(|t| event::Type::try_from(t).ok())
                .unwrap_or(event::Type::Unknown);
            match kind {
                event::Type::Subscribed => {
                    let Some(subscribed) = &event.subscribed else {
                        return Err(SchedulerError::Protocol("SUBSCRIBED without body".into()));
                    };
                    let framework_id = subscribed.framework_id.value.clone();
                    if let Some(seconds) = subscribed.heartbeat_interval_seconds {
                        if seconds.is_finite() && seconds > 0.0 {
                            heartbeat = Duration::from_secs_f64(seconds.min(3600.0));
                        }
                    }
                    shared.set_framework_id(&framework_id);
                    tracing::info!(%framework_id, %master, "subscribed");
                    // The event handler persists the id before any call is sent.
                    on_event(event).await;
                    shared.session.send_replace(Some(Session {
                        master: master.clone(),
                        stream_id: stream_id.clone(),
                        framework_id,
                    }));
                    shared.subscribed.send_replace(true);
                    continue;
                }
                event::Type::Error => {
                    let message = event
                        .error
                        .map(|e| e.message)
                        .unwrap_or_else(|| "no message".into());
                    return Err(SchedulerError::Refused(message));
                }
                event::Type::Heartbeat => tracing::trace!("heartbeat"),
                event::Type::InverseOffers => {
                    let count = event
                        .inverse_offers
                        .as_ref()
                        .map_or(0, |i| i.inverse_offers.len());
                    tracing::info!(count, "inverse offers (maintenance) received");
                }
                event::Type::RescindInverseOffer => {
                    tracing::info!(inverse_offer = ?event.rescind_inverse_offer.as_ref().map(|r| &r.inverse_offer_id.value), "inverse offer rescinded");
                }
                event::Type::UpdateOperationStatus => {
                    tracing::info!(status = ?event.update_operation_status.as_ref().map(|u| &u.status), "operation status update");
                }
                event::Type::Unknown => {
                    tracing::warn!(r#type = ?event.r#type, "event of unknown type")
                }
                other => tracing::debug!(event = ?other, "event"),
            }
            on_event(event).await;
        }
    }
}
