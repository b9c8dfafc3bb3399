//! The executor binary's spans, exported over OTLP/HTTP to a receiver in the test,
//! join the trace named by the task's `traceparent` label.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mesos_stateful_executor::task::LABEL_EXECUTOR_ID;
use mesos_stateful_proto::stateful::ContainerSpec;
use mesos_stateful_proto::v1::executor::{event, Event};
use mesos_stateful_proto::v1::{self, TaskState};
use mesos_stateful_proto::Message;
use tokio::net::TcpListener;

use crate::support::{docker, ensure_test_image, remove_labelled, unique, FakeAgent, TEST_IMAGE};

/// The parts of OTLP's `ExportTraceServiceRequest` the test reads.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}

#[derive(Clone, PartialEq, prost::Message)]
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

/// An OTLP/HTTP receiver on a loopback port keeping every span it is sent.
#[derive(Clone)]
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Receiver {
            endpoint,
            spans: Arc::default(),
            paths: Arc::default(),
        };
        let server = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let receiver = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, Infallible>(receiver.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        self.paths
            .lock()
            .unwrap()
            .push(request.uri().path().to_owned());
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let export = ExportTraceServiceRequest::decode(body).unwrap();
        let mut spans = self.spans.lock().unwrap();
        for resource in export.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Response::builder()
            .status(200)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the executor binary, exporting to a fresh receiver, for one task of `spec`
/// (with `health_check`) labelled `labels`; waits for it to exit 0 after the task
/// finished and returns every span received.
async fn run_traced(
    spec: ContainerSpec,
    health_check: Option<v1::HealthCheck>,
    labels: Vec<v1::Label>,
) -> (Receiver, Vec<Span>) {
    ensure_test_image(&docker().await).await;
    let receiver = Receiver::start().await;
    let agent = FakeAgent::start().await;
    let executor_id = unique("ex");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesos-stateful-executor"))
        .env_clear()
        .env("MESOS_FRAMEWORK_ID", "fw-it")
        .env("MESOS_EXECUTOR_ID", &executor_id)
        .env("MESOS_SLAVE_PID", format!("slave(1)@{}", agent.endpoint))
        .env("MESOS_CHECKPOINT", "0")
        .env("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "2secs")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    agent
        .wait_until(Duration::from_secs(10), |agent| {
            agent.subscribes().len() == 1
        })
        .await;
    let task = unique("task");
    agent.send(Event {
        r#type: Some(event::Type::Launch as i32),
        launch: Some(event::Launch {
            task: v1::TaskInfo {
                name: task.clone(),
                task_id: v1::TaskId {
                    value: task.clone(),
                },
                data: Some(Bytes::from(spec.encode_to_vec())),
                labels: Some(v1::Labels { labels }),
                health_check,
                ..Default::default()
            },
        }),
        ..Default::default()
    });
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("executor did not exit")
        .unwrap();
    remove_labelled(&docker().await, LABEL_EXECUTOR_ID, &executor_id).await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(agent.states().last(), Some(&TaskState::TaskFinished));
    // The executor flushes its spans before it exits.
    let spans = receiver.spans();
    (receiver, spans)
}

fn container_spec(args: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: TEST_IMAGE.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        labels: vec![v1::Label {
            key: crate::support::TEST_LABEL.into(),
            value: Some("spans".into()),
        }],
        ..Default::default()
    }
}

fn traceparent_label(value: &str) -> v1::Label {
    v1::Label {
        key: "traceparent".into(),
        value: Some(value.into()),
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|span| span.name == name).collect()
}

#[tokio::test]
async fn launch_spans_join_the_trace_of_the_task_label() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";
    let mut spec = container_spec(&["sleep", "2"]);
    spec.stats_interval_seconds = Some(0.5);
    let health_check = v1::HealthCheck {
        r#type: Some(v1::health_check::Type::Command as i32),
        command: Some(v1::CommandInfo {
            value: Some("true".into()),
            ..Default::default()
        }),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.3),
        timeout_seconds: Some(5.0),
        ..Default::default()
    };
    let (receiver, spans) = run_traced(
        spec,
        Some(health_check),
        vec![
            v1::Label {
                key: "other".into(),
                value: Some("x".into()),
            },
            traceparent_label(&format!("00-{TRACE}-{PARENT}-01")),
        ],
    )
    .await;
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert!(
        receiver
            .paths
            .lock()
            .unwrap()
            .iter()
            .all(|path| path == "/v1/traces"),
        "{:?}",
        receiver.paths
    );

    let launches = named(&spans, "Executor::Launch");
    assert_eq!(launches.len(), 1, "{names:?}");
    let launch = launches[0];
    assert_eq!(hex(&launch.trace_id), TRACE);
    assert_eq!(hex(&launch.parent_span_id), PARENT);
    assert_eq!(launch.span_id.len(), 8);
    assert_ne!(hex(&launch.span_id), PARENT);

    // The image is present: no pull.
    assert!(named(&spans, "Executor::Pull").is_empty(), "{names:?}");
    for name in ["Executor::Create", "Executor::Start"] {
        let children = named(&spans, name);
        assert_eq!(children.len(), 1, "{name} in {names:?}");
        assert_eq!(hex(&children[0].trace_id), TRACE, "{name}");
        assert_eq!(children[0].parent_span_id, launch.span_id, "{name}");
    }
    // The two-second task had time for several probes and samples, every one a
    // child of the launch span.
    for name in ["Executor::Health", "Executor::Stats"] {
        let children = named(&spans, name);
        assert!(!children.is_empty(), "{name} in {names:?}");
        for child in children {
            assert_eq!(hex(&child.trace_id), TRACE, "{name}");
            assert_eq!(child.parent_span_id, launch.span_id, "{name}");
        }
    }
}

#[tokio::test]
async fn malformed_traceparent_makes_a_root_launch_span() {
    let (_receiver, spans) = run_traced(
        container_spec(&["true"]),
        None,
        vec![traceparent_label("00-not-a-trace-01")],
    )
    .await;
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    let launches = named(&spans, "Executor::Launch");
    assert_eq!(launches.len(), 1, "{names:?}");
    let launch = launches[0];
    assert!(
        launch.parent_span_id.is_empty(),
        "{:?}",
        launch.parent_span_id
    );
    assert_eq!(launch.trace_id.len(), 16);
    for name in ["Executor::Create", "Executor::Start"] {
        let children = named(&spans, name);
        assert_eq!(children.len(), 1, "{name} in {names:?}");
        assert_eq!(children[0].trace_id, launch.trace_id, "{name}");
        assert_eq!(children[0].parent_span_id, launch.span_id, "{name}");
    }
}
