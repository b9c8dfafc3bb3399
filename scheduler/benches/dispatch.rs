//! Event dispatch throughput: Mesos events handed to the actor system until the
//! OfferManager has handled them, alone and behind RecordIO and protobuf decoding of
//! the subscription stream. Results are written down in BENCHMARKS.md.
//!
//! Each offer event carries one offer and nothing is queued, so the OfferManager
//! evaluates it and declines it: the path every idle scheduler runs. The store is
//! in memory and Mesos is recorded, so the numbers are the actors' own cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;

use mesos_stateful_actors::actor::{System, SystemConfig};
use mesos_stateful_actors::domain::launch::ExecutorLaunch;
use mesos_stateful_actors::mesos::RecordingMesos;
use mesos_stateful_actors::telemetry::{MessageLabels, Metrics};
use mesos_stateful_proto::recordio::{encode, Decoder};
use mesos_stateful_proto::v1;
use mesos_stateful_proto::v1::scheduler::{event, Event};
use mesos_stateful_scheduler::GenericContainer;
use mesos_stateful_store::{MemPersister, StateStore};

fn offer_event(n: u64) -> Event {
    let scalar = |name: &str, value: f64| v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    };
    Event {
        r#type: Some(event::Type::Offers as i32),
        offers: Some(event::Offers {
            offers: vec![v1::Offer {
                id: v1::OfferId {
                    value: format!("offer-{n}"),
                },
                framework_id: v1::FrameworkId { value: "fw".into() },
                agent_id: v1::AgentId {
                    value: format!("agent-{}", n % 100),
                },
                hostname: format!("agent-{}.example", n % 100),
                resources: vec![
                    scalar("cpus", 4.0),
                    scalar("mem", 4096.0),
                    scalar("disk", 10000.0),
                    v1::Resource {
                        name: "ports".into(),
                        r#type: v1::value::Type::Ranges as i32,
                        ranges: Some(v1::value::Ranges {
                            range: vec![v1::value::Range {
                                begin: 31000,
                                end: 32000,
                            }],
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        }),
        ..Default::default()
    }
}

fn handled_offers(metrics: &Metrics) -> u64 {
    metrics
        .messages
        .get_or_create(&MessageLabels {
            actor: "OfferManager",
            message: "Offers",
        })
        .get()
}

async fn start() -> (System, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let store = StateStore::open(Arc::new(MemPersister::new())).expect("memory store");
    let system = System::start(
        store,
        Arc::new(RecordingMesos::subscribed("fw")),
        Arc::new(GenericContainer),
        SystemConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            executor: ExecutorLaunch::default(),
            metrics: metrics.clone(),
            api: Default::default(),
            recovery: Default::default(),
            queue: Default::default(),
        },
    )
    .await
    .expect("actor system");
    (system, metrics)
}

async fn wait_handled(metrics: &Metrics, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while handled_offers(metrics) < target {
        assert!(Instant::now() < deadline, "offers not handled");
        tokio::task::yield_now().await;
    }
}

/// Dispatches `iters` decoded events and waits until all are handled.
fn events(iters: u64) -> Duration {
    let events: Vec<Event> = (0..iters).map(offer_event).collect();
    actix::System::new().block_on(async move {
        let (system, metrics) = start().await;
        let before = handled_offers(&metrics);
        let started = Instant::now();
        for event in events {
            system.handle_event(event).await.expect("dispatch");
        }
        wait_handled(&metrics, before + iters).await;
        let elapsed = started.elapsed();
        system.stop_http();
        elapsed
    })
}

/// Decodes `iters` events from a RecordIO stream in 4 KiB chunks, dispatches each,
/// and waits until all are handled.
fn stream(iters: u64) -> Duration {
    let mut bytes = BytesMut::new();
    for n in 0..iters {
        encode(&offer_event(n).encode_to_vec(), &mut bytes);
    }
    let bytes: Bytes = bytes.freeze();
    actix::System::new().block_on(async move {
        let (system, metrics) = start().await;
        let before = handled_offers(&metrics);
        let started = Instant::now();
        let mut decoder = Decoder::new();
        for chunk in bytes.chunks(4096) {
            decoder.push(chunk);
            while let Ok(Some(record)) = decoder.next_record() {
                let event = Event::decode(record).expect("valid event");
                system.handle_event(event).await.expect("dispatch");
            }
        }
        wait_handled(&metrics, before + iters).await;
        let elapsed = started.elapsed();
        system.stop_http();
        elapsed
    })
}

fn bench_dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("offer_event_to_offer_manager", |b| b.iter_custom(events));
    group.bench_function("recordio_stream_to_offer_manager", |b| {
        b.iter_custom(stream)
    });
    group.finish();
}

criterion_group!(benches, bench_dispatch);
criterion_main!(benches);
