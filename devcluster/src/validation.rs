//! Request validation shared by the master's and the agent's endpoints: content
//! negotiation and the structural checks Mesos makes before looking anything up.
//!
//! Every check returns a [`Rejection`] carrying the HTTP status Mesos answers with.

use http::StatusCode;
use mesos_stateful_proto::media;
use mesos_stateful_proto::v1::{executor, scheduler, task_status, TaskState};

/// A request refused before it reached the cluster state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// The body of the answer (plain text, like Mesos).
    pub message: String,
}

impl Rejection {
    /// A rejection with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The two message encodings of the v1 APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

/// Checks the request `Content-Type`: byte-exact match or 415, missing is 400.
pub fn request_media(content_type: Option<&[u8]>) -> Result<Media, Rejection> {
    match content_type {
        None => Err(Rejection::bad_request(
            "expecting 'Content-Type' to be present",
        )),
        Some(value) if value == media::PROTOBUF.as_bytes() => Ok(Media::Protobuf),
        Some(value) if value == media::JSON.as_bytes() => Ok(Media::Json),
        Some(value) => Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "expecting 'Content-Type' of {} or {}, got {:?}",
                media::JSON,
                media::PROTOBUF,
                String::from_utf8_lossy(value)
            ),
        )),
    }
}

/// Whether an `Accept` header admits `wanted` (`type/subtype`); a missing header admits all.
fn accepts(accept: Option<&str>, wanted: &str) -> bool {
    let Some(accept) = accept else {
        return true;
    };
    let (wanted_type, _) = wanted.split_once('/').unwrap_or((wanted, ""));
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media_range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|param| {
            let param = param.trim();
            param
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if refused {
            return false;
        }
        media_range == wanted || media_range == "*/*" || media_range == format!("{wanted_type}/*")
    })
}

/// Chooses the encoding of a SUBSCRIBE stream from the `Accept` header (406 if
/// neither encoding is acceptable).
///
/// JSON is tested first, as Mesos does: a missing header or `*/*` gives JSON, and
/// protobuf is chosen only when the header admits protobuf but not JSON.
pub fn stream_media(accept: Option<&str>) -> Result<Media, Rejection> {
    if accepts(accept, media::JSON) {
        Ok(Media::Json)
    } else if accepts(accept, media::PROTOBUF) {
        Ok(Media::Protobuf)
    } else {
        Err(Rejection::new(
            StatusCode::NOT_ACCEPTABLE,
            "expecting 'Accept' to allow application/json or application/x-protobuf",
        ))
    }
}

/// Whether `bytes` is a 16-byte UUID (the ACKNOWLEDGE rule).
pub fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 16
}

/// Whether `bytes` is a 16-byte UUID with a version nibble of 1 to 5 (the agent's
/// rule for executor updates).
pub fn is_versioned_uuid(bytes: &[u8]) -> bool {
    is_uuid(bytes) && (1..=5).contains(&(bytes[6] >> 4))
}

/// Structural validation of a scheduler call; returns its type.
pub fn scheduler_call(call: &scheduler::Call) -> Result<scheduler::call::Type, Rejection> {
    use scheduler::call::Type;
    let raw_type = call
        .r#type
        .ok_or_else(|| Rejection::bad_request("expecting 'type' to be present"))?;
    let call_type = Type::try_from(raw_type)
        .map_err(|_| Rejection::bad_request(format!("unknown call type {raw_type}")))?;
    if call_type == Type::Unknown {
        return Err(Rejection::new(
            StatusCode::NOT_IMPLEMENTED,
            "received an unexpected 'UNKNOWN' call",
        ));
    }
    let missing =
        |field: &str| Rejection::bad_request(format!("expecting '{field}' to be present"));
    if call_type == Type::Subscribe {
        let subscribe = call
            .subscribe
            .as_ref()
            .ok_or_else(|| missing("subscribe"))?;
        if call.framework_id != subscribe.framework_info.id {
            return Err(Rejection::bad_request(
                "'framework_id' differs from 'subscribe.framework_info.id'",
            ));
        }
        return Ok(call_type);
    }
    if call.framework_id.is_none() {
        return Err(missing("framework_id"));
    }
    let present = match call_type {
        Type::Accept => call.accept.is_some(),
        Type::Decline => call.decline.is_some(),
        Type::AcceptInverseOffers => call.accept_inverse_offers.is_some(),
        Type::DeclineInverseOffers => call.decline_inverse_offers.is_some(),
        Type::Kill => call.kill.is_some(),
        Type::Shutdown => call.shutdown.is_some(),
        Type::Acknowledge => call.acknowledge.is_some(),
        Type::AcknowledgeOperationStatus => call.acknowledge_operation_status.is_some(),
        Type::Reconcile => call.reconcile.is_some(),
        Type::ReconcileOperations => call.reconcile_operations.is_some(),
        Type::Message => call.message.is_some(),
        Type::Request => call.request.is_some(),
        Type::UpdateFramework => call.update_framework.is_some(),
        // REVIVE and SUPPRESS may omit their (roles-only) sub-message.
        Type::Teardown | Type::Revive | Type::Suppress | Type::Subscribe | Type::Unknown => true,
    };
    if !present {
        let field = match call_type {
            Type::AcceptInverseOffers => "accept_inverse_offers",
            Type::DeclineInverseOffers => "decline_inverse_offers",
            Type::AcknowledgeOperationStatus => "acknowledge_operation_status",
            Type::ReconcileOperations => "reconcile_operations",
            Type::UpdateFramework => "update_framework",
            other => match other.as_str_name() {
                "ACCEPT" => "accept",
                "DECLINE" => "decline",
                "KILL" => "kill",
                "SHUTDOWN" => "shutdown",
                "ACKNOWLEDGE" => "acknowledge",
                "RECONCILE" => "reconcile",
                "MESSAGE" => "message",
                _ => "request",
            },
        };
        return Err(missing(field));
    }
    if let Some(acknowledge) = &call.acknowledge {
        if call_type == Type::Acknowledge && !is_uuid(&acknowledge.uuid) {
            return Err(Rejection::bad_request(
                "'acknowledge.uuid' is not a valid UUID",
            ));
        }
    }
    if let Some(update) = &call.update_framework {
        if call_type == Type::UpdateFramework && update.framework_info.id != call.framework_id {
            return Err(Rejection::bad_request(
                "'framework_id' differs from 'update_framework.framework_info.id'",
            ));
        }
    }
    Ok(call_type)
}

/// Structural validation of an executor call; returns its type.
pub fn executor_call(call: &executor::Call) -> Result<executor::call::Type, Rejection> {
    use executor::call::Type;
    let raw_type = call
        .r#type
        .ok_or_else(|| Rejection::bad_request("expecting 'type' to be present"))?;
    let call_type = Type::try_from(raw_type)
        .map_err(|_| Rejection::bad_request(format!("unknown call type {raw_type}")))?;
    match call_type {
        Type::Unknown => Err(Rejection::new(
            StatusCode::NOT_IMPLEMENTED,
            "received an unexpected 'UNKNOWN' call",
        )),
        Type::Subscribe if call.subscribe.is_none() => Err(Rejection::bad_request(
            "expecting 'subscribe' to be present",
        )),
        Type::Message if call.message.is_none() => {
            Err(Rejection::bad_request("expecting 'message' to be present"))
        }
        Type::Update => {
            let update = call
                .update
                .as_ref()
                .ok_or_else(|| Rejection::bad_request("expecting 'update' to be present"))?;
            executor_update(call, &update.status)?;
            Ok(call_type)
        }
        _ => Ok(call_type),
    }
}

/// The agent's checks on an executor's status update.
fn executor_update(
    call: &executor::Call,
    status: &mesos_stateful_proto::v1::TaskStatus,
) -> Result<(), Rejection> {
    let uuid = status
        .uuid
        .as_ref()
        .ok_or_else(|| Rejection::bad_request("expecting 'uuid' to be present"))?;
    if !is_versioned_uuid(uuid) {
        return Err(Rejection::bad_request("'uuid' is not a valid UUID"));
    }
    if status.source != Some(task_status::Source::Executor as i32) {
        return Err(Rejection::bad_request(
            "received wrong source 'source', expecting SOURCE_EXECUTOR",
        ));
    }
    if TaskState::try_from(status.state).is_err() {
        return Err(Rejection::bad_request(format!(
            "unknown task state {}",
            status.state
        )));
    }
    if status.state == TaskState::TaskStaging as i32 {
        return Err(Rejection::bad_request(
            "received TASK_STAGING from executor",
        ));
    }
    if let Some(executor_id) = &status.executor_id {
        if *executor_id != call.executor_id {
            return Err(Rejection::bad_request(
                "ExecutorID in Call differs from the one in the status update",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mesos_stateful_proto::v1::{ExecutorId, FrameworkId, FrameworkInfo, TaskId, TaskStatus};

    #[test]
    fn content_type_rules() {
        let check = |header: Option<&str>, expected: Result<Media, StatusCode>| {
            let got = request_media(header.map(str::as_bytes)).map_err(|r| r.status);
            assert_eq!(got, expected, "{header:?}");
        };
        check(Some("application/x-protobuf"), Ok(Media::Protobuf));
        check(Some("application/json"), Ok(Media::Json));
        check(None, Err(StatusCode::BAD_REQUEST));
        check(
            Some("application/json; charset=utf-8"),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        );
        check(
            Some("Application/X-Protobuf"),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        );
        check(Some("text/plain"), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }

    #[test]
    fn accept_rules() {
        let check = |header: Option<&str>, expected: Result<Media, StatusCode>| {
            assert_eq!(
                stream_media(header).map_err(|r| r.status),
                expected,
                "{header:?}"
            );
        };
        check(Some("application/x-protobuf"), Ok(Media::Protobuf));
        check(None, Ok(Media::Json));
        check(Some("*/*"), Ok(Media::Json));
        check(Some("application/*"), Ok(Media::Json));
        check(Some("application/json"), Ok(Media::Json));
        // JSON wins even when protobuf is listed first or preferred.
        check(
            Some("application/x-protobuf, application/json;q=0.1"),
            Ok(Media::Json),
        );
        check(
            Some("application/x-protobuf, application/json;q=0"),
            Ok(Media::Protobuf),
        );
        check(
            Some("text/html, application/x-protobuf;q=0.5"),
            Ok(Media::Protobuf),
        );
        check(
            Some("application/recordio"),
            Err(StatusCode::NOT_ACCEPTABLE),
        );
        check(
            Some("application/x-protobuf;q=0"),
            Err(StatusCode::NOT_ACCEPTABLE),
        );
        check(Some("text/html"), Err(StatusCode::NOT_ACCEPTABLE));
    }

    #[test]
    fn uuid_rules() {
        let v4 = uuid::Uuid::new_v4();
        assert!(is_versioned_uuid(v4.as_bytes()));
        assert!(!is_versioned_uuid(uuid::Uuid::nil().as_bytes()));
        let mut v7 = *v4.as_bytes();
        v7[6] = 0x70 | (v7[6] & 0x0f);
        assert!(!is_versioned_uuid(&v7));
        assert!(!is_versioned_uuid(&[1; 15]));
        assert!(is_uuid(&[0; 16]));
        assert!(!is_uuid(&[0; 37]));
    }

    fn fid(value: &str) -> Option<FrameworkId> {
        Some(FrameworkId {
            value: value.into(),
        })
    }

    #[test]
    fn scheduler_call_rules() {
        use scheduler::call::{self, Type};
        let subscribe =
            |call_fid: Option<FrameworkId>, info_fid: Option<FrameworkId>| scheduler::Call {
                framework_id: call_fid,
                r#type: Some(Type::Subscribe as i32),
                subscribe: Some(call::Subscribe {
                    framework_info: FrameworkInfo {
                        id: info_fid,
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                ..Default::default()
            };
        let check = |call: scheduler::Call, expected: Result<Type, StatusCode>| {
            assert_eq!(
                scheduler_call(&call).map_err(|r| r.status),
                expected,
                "{call:?}"
            );
        };
        check(subscribe(None, None), Ok(Type::Subscribe));
        check(subscribe(fid("a"), fid("a")), Ok(Type::Subscribe));
        check(subscribe(fid("a"), None), Err(StatusCode::BAD_REQUEST));
        check(subscribe(None, fid("a")), Err(StatusCode::BAD_REQUEST));
        check(subscribe(fid("a"), fid("b")), Err(StatusCode::BAD_REQUEST));
        check(scheduler::Call::default(), Err(StatusCode::BAD_REQUEST));
        check(
            scheduler::Call {
                r#type: Some(Type::Unknown as i32),
                ..Default::default()
            },
            Err(StatusCode::NOT_IMPLEMENTED),
        );
        check(
            scheduler::Call {
                r#type: Some(Type::Teardown as i32),
                ..Default::default()
            },
            Err(StatusCode::BAD_REQUEST),
        );
        check(
            scheduler::Call {
                framework_id: fid("a"),
                r#type: Some(Type::Teardown as i32),
                ..Default::default()
            },
            Ok(Type::Teardown),
        );
        check(
            scheduler::Call {
                framework_id: fid("a"),
                r#type: Some(Type::Accept as i32),
                ..Default::default()
            },
            Err(StatusCode::BAD_REQUEST),
        );
        let acknowledge = |uuid: Vec<u8>| scheduler::Call {
            framework_id: fid("a"),
            r#type: Some(Type::Acknowledge as i32),
            acknowledge: Some(call::Acknowledge {
                uuid: Bytes::from(uuid),
                ..Default::default()
            }),
            ..Default::default()
        };
        check(acknowledge(vec![4; 16]), Ok(Type::Acknowledge));
        check(acknowledge(vec![4; 37]), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn executor_update_rules() {
        use executor::call::{self, Type};
        let v4 = Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let update = |uuid: Option<Bytes>,
                      source: Option<task_status::Source>,
                      state: TaskState,
                      eid: Option<&str>| {
            executor::Call {
                executor_id: ExecutorId { value: "e".into() },
                framework_id: FrameworkId { value: "f".into() },
                r#type: Some(Type::Update as i32),
                update: Some(call::Update {
                    status: TaskStatus {
                        task_id: TaskId { value: "t".into() },
                        state: state as i32,
                        source: source.map(|s| s as i32),
                        uuid,
                        executor_id: eid.map(|value| ExecutorId {
                            value: value.into(),
                        }),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }
        };
        let check = |call: executor::Call, expected: bool| {
            assert_eq!(executor_call(&call).is_ok(), expected, "{call:?}");
        };
        let executor = Some(task_status::Source::Executor);
        check(
            update(Some(v4.clone()), executor, TaskState::TaskRunning, None),
            true,
        );
        check(
            update(
                Some(v4.clone()),
                executor,
                TaskState::TaskRunning,
                Some("e"),
            ),
            true,
        );
        check(
            update(
                Some(v4.clone()),
                executor,
                TaskState::TaskRunning,
                Some("x"),
            ),
            false,
        );
        check(update(None, executor, TaskState::TaskRunning, None), false);
        check(
            update(
                Some(Bytes::from(vec![0; 16])),
                executor,
                TaskState::TaskRunning,
                None,
            ),
            false,
        );
        check(
            update(
                Some(v4.clone()),
                Some(task_status::Source::Agent),
                TaskState::TaskRunning,
                None,
            ),
            false,
        );
        check(
            update(Some(v4.clone()), None, TaskState::TaskRunning, None),
            false,
        );
        check(
            update(Some(v4), executor, TaskState::TaskStaging, None),
            false,
        );
        let subscribe_without_body = executor::Call {
            r#type: Some(Type::Subscribe as i32),
            ..Default::default()
        };
        check(subscribe_without_body, false);
    }
}
