//! Spans reach an OTLP collector: a receiver inside the test decodes the
//! OTLP/HTTP protobuf requests the scheduler exports, and the spans of one create
//! form one trace: `HttpLib::POST /v1/instances` → `Creator::CreateInstance` →
//! `StateManager::CreateInstance`, `BufferManager::QueueLaunch` and, once an offer
//! placed the member, `OfferManager::Launch` → (Mesos UPDATE) →
//! `Maintainer::ApplyUpdate` → `StateManager::Write`, and in the executor
//! `Executor::Launch` → `Executor::Create`, `Executor::Start`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;
use serde_json::json;

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

/// Starts an OTLP/HTTP receiver on 127.0.0.1; returns its endpoint and the spans.
async fn start_receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let spans = Arc::new(Mutex::new(Vec::new()));
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
                                let mut spans = received.lock().unwrap();
                                for resource in export.resource_spans {
                                    for scope in resource.scope_spans {
                                        spans.extend(scope.spans);
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
    let (endpoint, spans) = start_receiver().await;
    // This test binary process is the only one reading these variables.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    std::env::set_var("OTEL_SERVICE_NAME", "mesos-stateful-test");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
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
        .json(&json!({
            "name": INSTANCE,
            "image": BUSYBOX_IMAGE,
            "replicas": 0,
            "resources": {"cpus": 0.1, "mem": 32, "disk": 16},
            "master_args": ["sleep", "3600"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);

    let spans: Vec<Span> = wait_for("the exported spans", Duration::from_secs(60), || {
        let spans = spans.clone();
        async move {
            let spans = spans.lock().unwrap().clone();
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
