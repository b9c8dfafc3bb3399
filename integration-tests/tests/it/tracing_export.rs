//! Spans reach an OTLP collector: a receiver inside the test decodes the
//! OTLP/HTTP protobuf requests the scheduler exports, and the spans of one create
//! form one trace: `HttpLib::POST /v1/instances` → `Creator::CreateInstance` →
//! `StateManager::CreateInstance` and `BufferManager::QueueLaunch`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;
use serde_json::json;

use mesos_stateful_devcluster::{DevClusterConfig, DevClusterThread};
use mesos_stateful_scheduler::run::Scheduler;
use mesos_stateful_scheduler::telemetry::{self, LogFormat};
use mesos_stateful_scheduler::{
    ExecutorLaunch, FrameworkSettings, GenericContainer, SchedulerConfig,
};

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

#[actix_rt::test]
async fn a_create_is_one_connected_trace_across_actors() {
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
    let scheduler = Scheduler::start(
        SchedulerConfig {
            master: cluster.master_url(),
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: ExecutorLaunch {
                command: workspace_binary("mesos-stateful-executor")
                    .to_string_lossy()
                    .into_owned(),
                ..ExecutorLaunch::default()
            },
            framework: FrameworkSettings::default(),
        },
        Arc::new(GenericContainer),
    )
    .await
    .unwrap();
    let api = format!("http://{}", scheduler.api_addr());
    let response = reqwest::Client::new()
        .post(format!("{api}/v1/instances"))
        .json(&json!({
            "name": "traced",
            "image": "mesos-stateful/not-needed:here",
            "replicas": 0,
            "resources": {"cpus": 0.1, "mem": 32, "disk": 16},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);

    let wanted = [
        "HttpLib::POST /v1/instances",
        "Creator::CreateInstance",
        "StateManager::CreateInstance",
        "BufferManager::QueueLaunch",
    ];
    let by_name: HashMap<String, Span> =
        wait_for("the exported spans", Duration::from_secs(30), || {
            let spans = spans.clone();
            async move {
                let spans = spans.lock().unwrap();
                let by_name: HashMap<String, Span> = spans
                    .iter()
                    .map(|span| (span.name.clone(), span.clone()))
                    .collect();
                wanted
                    .iter()
                    .all(|name| by_name.contains_key(*name))
                    .then_some(by_name)
            }
        })
        .await;

    let root = &by_name["HttpLib::POST /v1/instances"];
    let creator = &by_name["Creator::CreateInstance"];
    let store = &by_name["StateManager::CreateInstance"];
    let queue = &by_name["BufferManager::QueueLaunch"];
    for span in [creator, store, queue] {
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

    scheduler.stop().await.unwrap();
    cluster.shutdown();
    telemetry.shutdown();
}
