//! Spans reach an OTLP collector: a receiver inside the test decodes the
//! OTLP/HTTP protobuf requests the scheduler exports, and the spans of one create
//! form one trace: `HttpLib::POST /v1/instances` → `Creator::CreateInstance` →
//! `StateManager::CreateInstance`, `BufferManager::QueueLaunch` and, once an offer
//! placed the member, `OfferManager::Launch` → (Mesos UPDATE) →
//! `Maintainer::ApplyUpdate` → `StateManager::Write`, and in the executor
//! `Executor::Launch` → `Executor::Create`, `Executor::Start`. The same receiver
//! gets the scheduler's metrics by OTLP (`/v1/metrics`), with the counters moved.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;

use mesos_stateful_devcluster::{DevClusterConfig, DevClusterThread};
use mesos_stateful_scheduler::telemetry::{self, LogFormat};

use mesos_stateful_scheduler::ExecutorLaunch;

use crate::support::*;

/// The parts of OTLP's `ExportTraceServiceRequest` this test reads (field numbers
/// from opentelemetry-proto's trace service and trace messages).
#[derive(Clone, PartialEq, Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}

/// The parts of OTLP's `ExportMetricsServiceRequest` this test reads: monotonic
/// sums and their double values (field numbers from opentelemetry-proto's metrics
/// messages).
#[derive(Clone, PartialEq, Message)]
struct ExportMetricsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceMetrics {
    #[prost(message, repeated, tag = "2")]
    scope_metrics: Vec<ScopeMetrics>,
}

#[derive(Clone, PartialEq, Message)]
struct ScopeMetrics {
    #[prost(message, repeated, tag = "2")]
    metrics: Vec<Metric>,
}

#[derive(Clone, PartialEq, Message)]
struct Metric {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "7")]
    sum: Option<Sum>,
}

#[derive(Clone, PartialEq, Message)]
struct Sum {
    #[prost(message, repeated, tag = "1")]
    data_points: Vec<NumberDataPoint>,
    #[prost(bool, tag = "3")]
    is_monotonic: bool,
}

#[derive(Clone, PartialEq, Message)]
struct NumberDataPoint {
    #[prost(double, optional, tag = "4")]
    as_double: Option<f64>,
}

/// What the receiver got.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    /// Latest value of each monotonic sum, summed over its points.
    sums: std::collections::HashMap<String, f64>,
}

#[derive(Clone, PartialEq, Message)]
struct Span {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    name: String,
}

/// Starts an OTLP/HTTP receiver on 127.0.0.1; returns its endpoint and what it got.
async fn start_receiver() -> (String, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let spans = Arc::new(Mutex::new(Received::default()));
    let received = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let received = received.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if path == "/v1/traces" {
                            if let Ok(export) = ExportTraceServiceRequest::decode(body) {
                                let mut received = received.lock().unwrap();
                                for resource in export.resource_spans {
                                    for scope in resource.scope_spans {
                                        received.spans.extend(scope.spans);
                                    }
                                }
                            }
                        } else if path == "/v1/metrics" {
                            if let Ok(export) = ExportMetricsServiceRequest::decode(body) {
                                let mut received = received.lock().unwrap();
                                for resource in export.resource_metrics {
                                    for scope in resource.scope_metrics {
                                        for metric in scope.metrics {
                                            let Some(sum) = metric.sum else { continue };
                                            assert!(sum.is_monotonic, "{}", metric.name);
                                            let total = sum
                                                .data_points
                                                .iter()
                                                .filter_map(|p| p.as_double)
                                                .sum();
                                            received.sums.insert(metric.name, total);
                                        }
                                    }
                                }
                            }
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::new(),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (endpoint, spans)
}

const INSTANCE: &str = "e2e-traced";

#[actix_rt::test]
async fn a_create_is_one_connected_trace_across_actors() {
    require_image(BUSYBOX_IMAGE);
    remove_containers_of(INSTANCE);
    let (endpoint, receiver) = start_receiver().await;
    // This test binary process is the only one reading these variables.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    std::env::set_var("OTEL_SERVICE_NAME", "mesos-stateful-test");
    // Every trace, not the default tenth: this test follows one create.
    std::env::set_var("OTEL_TRACES_SAMPLER", "parentbased_always_on");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "300");
    let telemetry = telemetry::init(LogFormat::Pretty);
    assert!(telemetry.exporting());

    let dir = tempfile::tempdir().unwrap();
    let cluster = DevClusterThread::spawn(DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        work_dir: dir.path().join("cluster"),
        ..DevClusterConfig::default()
    })
    .unwrap();
    let executor = ExecutorLaunch {
        // The executor exports to the same receiver.
        environment: [
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()),
        ]
        .into(),
        ..test_executor()
    };
    let scheduler = start_scheduler(cluster.master_url(), dir.path(), executor).await;
    let api = format!("http://{}", scheduler.api_addr());
    let response = reqwest::Client::new()
        .post(format!("{api}/v1/instances"))
        .json(&sleeper(INSTANCE))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);

    let spans: Vec<Span> = wait_for("the exported spans", Duration::from_secs(60), || {
        let receiver = receiver.clone();
        async move {
            let spans = receiver.lock().unwrap().spans.clone();
            let applied_running = spans.iter().any(|s| s.name == "Maintainer::ApplyUpdate")
                && spans.iter().any(|s| s.name == "OfferManager::Launch")
                && spans.iter().any(|s| s.name == "Executor::Start");
            applied_running.then_some(spans)
        }
    })
    .await;
    let named = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let one = |name: &str| -> &Span {
        let found = named(name);
        assert!(!found.is_empty(), "no span {name}");
        found[0]
    };
    let root = one("HttpLib::POST /v1/instances");
    let creator = one("Creator::CreateInstance");
    let store = one("StateManager::CreateInstance");
    let queue = one("BufferManager::QueueLaunch");
    let launch = one("OfferManager::Launch");
    for span in [creator, store, queue, launch] {
        assert_eq!(
            span.trace_id, root.trace_id,
            "{} is in the request's trace",
            span.name
        );
    }
    assert_eq!(
        creator.parent_span_id, root.span_id,
        "the Creator's parent is the request"
    );
    assert_eq!(
        store.parent_span_id, creator.span_id,
        "the StateManager's parent is the Creator"
    );
    assert_eq!(
        queue.parent_span_id, creator.span_id,
        "the BufferManager's parent is the Creator"
    );
    assert_eq!(
        launch.parent_span_id, creator.span_id,
        "the launch's parent is the Creator"
    );
    // The executor's spans join the trace under the launch, through the task's label.
    let executor_launch = one("Executor::Launch");
    assert_eq!(
        executor_launch.trace_id, root.trace_id,
        "the executor is in the request's trace"
    );
    assert_eq!(
        executor_launch.parent_span_id, launch.span_id,
        "the executor's parent is the launch"
    );
    for name in ["Executor::Create", "Executor::Start"] {
        assert_eq!(
            one(name).parent_span_id,
            executor_launch.span_id,
            "{name} is a child of Executor::Launch"
        );
    }
    // Status updates of the launched task join the same trace under the launch, and
    // their writes under them.
    let applied: Vec<&Span> = named("Maintainer::ApplyUpdate")
        .into_iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    assert!(!applied.is_empty(), "an update joined the request's trace");
    assert!(applied.iter().all(|s| s.parent_span_id == launch.span_id));
    assert!(
        named("StateManager::Write")
            .iter()
            .any(|w| applied.iter().any(|a| w.parent_span_id == a.span_id)),
        "the update's write is a child of the update"
    );

    // The metrics arrive by OTLP too, with the launch counted.
    wait_for("the exported metrics", Duration::from_secs(30), || {
        let receiver = receiver.clone();
        async move {
            let received = receiver.lock().unwrap();
            let launches = received.sums.get("mesos_stateful_task_launches").copied();
            let subscriptions = received
                .sums
                .get("mesos_stateful_mesos_subscriptions")
                .copied();
            (launches >= Some(1.0) && subscriptions >= Some(1.0)).then_some(())
        }
    })
    .await;

    let http = reqwest::Client::new();
    let response = http
        .delete(format!("{api}/v1/instances/{INSTANCE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    wait_for("no container left", Duration::from_secs(60), || async {
        containers_of(INSTANCE).is_empty().then_some(())
    })
    .await;

    scheduler.stop().await.unwrap();
    cluster.shutdown();
    telemetry.shutdown();
}
