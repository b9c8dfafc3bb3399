//! Golden bytes of hand-checked messages, so a change to the `.proto` files that
//! would break wire compatibility with Mesos fails here, and round trips of
//! generated messages.

// A panic is how a test fails.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use mesos_stateful_proto::v1::{self, executor, scheduler};
use mesos_stateful_proto::{recordio, Message};
use proptest::prelude::*;

fn id<T: Default>(set: impl FnOnce(&mut T)) -> T {
    let mut value = T::default();
    set(&mut value);
    value
}

#[test]
fn framework_id_is_a_length_delimited_field_one() {
    let message = v1::FrameworkId {
        value: "fw-1".into(),
    };
    // Field 1, wire type 2 (0x0a), length 4, "fw-1".
    assert_eq!(
        message.encode_to_vec(),
        [0x0a, 0x04, b'f', b'w', b'-', b'1']
    );
}

#[test]
fn scheduler_decline_call() {
    let call = scheduler::Call {
        framework_id: Some(v1::FrameworkId { value: "f".into() }),
        r#type: Some(scheduler::call::Type::Decline as i32),
        decline: Some(scheduler::call::Decline {
            offer_ids: vec![v1::OfferId { value: "o".into() }],
            filters: Some(v1::Filters {
                refuse_seconds: Some(5.0),
            }),
        }),
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x03, 0x0a, 0x01, b'f',             // 1: framework_id { value: "f" }
        0x10, 0x04,                               // 2: type = DECLINE (4)
        0x2a, 0x10,                               // 5: decline, 16 bytes
        0x0a, 0x03, 0x0a, 0x01, b'o',             //   1: offer_ids { value: "o" }
        0x12, 0x09, 0x09,                         //   2: filters { 1: refuse_seconds (fixed64)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x40, // 5.0 little-endian }
    ];
    assert_eq!(call.encode_to_vec(), expected);
    assert_eq!(scheduler::Call::decode(&expected[..]).unwrap(), call);
}

#[test]
fn executor_message_data_is_field_two() {
    let call = executor::Call {
        executor_id: v1::ExecutorId { value: "e".into() },
        framework_id: v1::FrameworkId { value: "f".into() },
        r#type: Some(executor::call::Type::Message as i32),
        message: Some(executor::call::Message {
            data: Bytes::from_static(b"hi"),
        }),
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x03, 0x0a, 0x01, b'e',   // 1: executor_id
        0x12, 0x03, 0x0a, 0x01, b'f',   // 2: framework_id
        0x18, 0x03,                     // 3: type = MESSAGE (3)
        0x32, 0x04, 0x12, 0x02, b'h', b'i', // 6: message { 2: data "hi" }
    ];
    assert_eq!(call.encode_to_vec(), expected);
}

#[test]
fn required_task_state_zero_is_still_encoded() {
    // TASK_STARTING is 0; proto2 `required` fields are always on the wire.
    let status = v1::TaskStatus {
        task_id: v1::TaskId { value: "t".into() },
        state: v1::TaskState::TaskStarting as i32,
        ..Default::default()
    };
    assert_eq!(
        status.encode_to_vec(),
        [0x0a, 0x03, 0x0a, 0x01, b't', 0x10, 0x00]
    );
    let running = v1::TaskStatus {
        state: v1::TaskState::TaskRunning as i32,
        ..status
    };
    assert_eq!(running.encode_to_vec()[5..], [0x10, 0x01]);
}

#[test]
fn proto2_defaults_match_mesos() {
    assert_eq!(v1::Filters::default().refuse_seconds(), 5.0);
    assert!(v1::CommandInfo::default().shell());
    assert!(v1::command_info::Uri::default().extract());
    // TaskState's first declared value is TASK_STAGING, 0 is TASK_STARTING.
    assert_eq!(v1::TaskState::TaskStaging as i32, 6);
    assert_eq!(v1::TaskState::TaskStarting as i32, 0);
}

#[test]
fn heartbeat_event_in_recordio() {
    let event = scheduler::Event {
        r#type: Some(scheduler::event::Type::Heartbeat as i32),
        ..Default::default()
    };
    // type = HEARTBEAT (8): two bytes, framed as "2\n" + payload.
    assert_eq!(
        &recordio::encode_to_bytes(&event.encode_to_vec())[..],
        b"2\n\x08\x08"
    );
}

fn arb_string() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{0,24}"
}

prop_compose! {
    fn arb_task_status()(
        task in arb_string(),
        state in 0i32..14,
        message in proptest::option::of(arb_string()),
        uuid in proptest::option::of(proptest::collection::vec(any::<u8>(), 16)),
        healthy in proptest::option::of(any::<bool>()),
        timestamp in proptest::option::of(0.0f64..1e10),
    ) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: id(|t: &mut v1::TaskId| t.value = task),
            state,
            message,
            uuid: uuid.map(Bytes::from),
            healthy,
            timestamp,
            ..Default::default()
        }
    }
}

proptest! {
    #[test]
    fn task_status_round_trips(status in arb_task_status()) {
        let decoded = v1::TaskStatus::decode(status.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(decoded, status);
    }

    #[test]
    fn update_events_round_trip_through_recordio(statuses in proptest::collection::vec(arb_task_status(), 0..8)) {
        let mut stream = bytes::BytesMut::new();
        let events: Vec<scheduler::Event> = statuses
            .into_iter()
            .map(|status| scheduler::Event {
                r#type: Some(scheduler::event::Type::Update as i32),
                update: Some(scheduler::event::Update { status }),
                ..Default::default()
            })
            .collect();
        for event in &events {
            recordio::encode(&event.encode_to_vec(), &mut stream);
        }
        let mut decoder = recordio::Decoder::new();
        decoder.push(&stream);
        let mut decoded = Vec::new();
        while let Some(record) = decoder.next_record().unwrap() {
            decoded.push(scheduler::Event::decode(record).unwrap());
        }
        prop_assert_eq!(decoded, events);
    }

    #[test]
    fn garbage_never_panics_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = scheduler::Event::decode(bytes.as_slice());
        let _ = executor::Event::decode(bytes.as_slice());
        let _ = v1::TaskInfo::decode(bytes.as_slice());
    }
}
