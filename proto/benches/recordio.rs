//! RecordIO decoding and event decoding throughput: the hot path of every event
//! stream (scheduler and executor). Results are written down in BENCHMARKS.md.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prost::Message;

use mesos_stateful_proto::recordio::{encode, Decoder};
use mesos_stateful_proto::v1::{self, scheduler};

/// A realistic UPDATE event (~150 bytes).
fn update_event(n: u64) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::Update as i32),
        update: Some(scheduler::event::Update {
            status: v1::TaskStatus {
                task_id: v1::TaskId {
                    value: format!("cache{n}-0.1"),
                },
                state: v1::TaskState::TaskRunning as i32,
                message: Some("container mesos-stateful-cache-0.1 running".into()),
                agent_id: Some(v1::AgentId {
                    value: "8f2b9a1c-0000-4000-8000-000000000001-S0".into(),
                }),
                executor_id: Some(v1::ExecutorId {
                    value: format!("cache{n}-0.1.executor"),
                }),
                timestamp: Some(1_790_000_000.0 + n as f64),
                uuid: Some(Bytes::from(vec![0x42; 16])),
                source: Some(v1::task_status::Source::Executor as i32),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

fn stream_of(events: usize) -> Bytes {
    let mut stream = BytesMut::new();
    for n in 0..events {
        encode(&update_event(n as u64).encode_to_vec(), &mut stream);
    }
    stream.freeze()
}

fn bench_decode(c: &mut Criterion) {
    let stream = stream_of(10_000);
    let mut group = c.benchmark_group("recordio");
    group.throughput(Throughput::Elements(10_000));
    for chunk in [64usize, 4096, 65_536] {
        group.bench_with_input(
            BenchmarkId::new("frames_only", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| {
                    let mut decoder = Decoder::new();
                    let mut n = 0usize;
                    for piece in stream.chunks(chunk) {
                        decoder.push(piece);
                        while let Ok(Some(_)) = decoder.next_record() {
                            n += 1;
                        }
                    }
                    assert_eq!(n, 10_000);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("frames_and_events", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| {
                    let mut decoder = Decoder::new();
                    let mut running = 0usize;
                    for piece in stream.chunks(chunk) {
                        decoder.push(piece);
                        while let Ok(Some(record)) = decoder.next_record() {
                            let event = scheduler::Event::decode(record).expect("valid event");
                            if event.update.is_some_and(|u| {
                                u.status.state == v1::TaskState::TaskRunning as i32
                            }) {
                                running += 1;
                            }
                        }
                    }
                    assert_eq!(running, 10_000);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
