//! The Mesos v1 executor API client: the SUBSCRIBE event stream and the other calls.
//!
//! Every request goes on its own HTTP/1.1 connection to `POST /api/v1/executor`, in
//! protobuf (the agent compares `Content-Type` byte for byte). The subscription's
//! answer is a RecordIO stream of `executor::Event`s that lives as long as its
//! connection; UPDATE and MESSAGE are answered with 202 and nothing else.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mesos_stateful_proto::recordio::{Decoder, RecordIoError};
use mesos_stateful_proto::v1::executor::{call, Call, Event};
use mesos_stateful_proto::v1::{self, TaskStatus};
use mesos_stateful_proto::{media, Message};
use tracing::debug;

/// The executor API's path on the agent.
pub const EXECUTOR_API_PATH: &str = "/api/v1/executor";
/// Time allowed for a call's answer (for SUBSCRIBE: until the stream's headers).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest error body kept from a refused call.
const MAX_ERROR_BODY: usize = 4096;

/// Why a call to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent could not be reached.
    #[error("cannot connect to the agent at {endpoint}: {source}")]
    Connect {
        /// The agent's `host:port`.
        endpoint: String,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// The HTTP exchange failed (connection reset, malformed HTTP, broken stream).
    #[error("http exchange for {call} with the agent failed: {source}")]
    Http {
        /// The call's type.
        call: &'static str,
        /// The underlying failure.
        source: hyper::Error,
    },
    /// The request could not be built.
    #[error("invalid agent request for {call}: {reason}")]
    InvalidRequest {
        /// The call's type.
        call: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The agent refused the call.
    #[error("agent answered {status} to {call}: {body}")]
    Status {
        /// The call's type.
        call: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The agent's explanation (its body, possibly truncated).
        body: String,
    },
    /// The subscription stream is not protobuf.
    #[error(
        "agent sent the event stream as {content_type:?}, expected {}",
        media::PROTOBUF
    )]
    ContentType {
        /// What the agent said.
        content_type: String,
    },
    /// The event stream's framing is broken.
    #[error("agent event stream is corrupt: {0}")]
    RecordIo(#[from] RecordIoError),
    /// An event could not be decoded.
    #[error("agent sent an undecodable event: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The agent did not answer in time.
    #[error("agent did not answer {call} within {seconds}s")]
    Timeout {
        /// The call's type.
        call: &'static str,
        /// The time allowed.
        seconds: u64,
    },
}

impl AgentError {
    /// Whether trying again later may succeed (agent unreachable, recovering, slow).
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Connect { .. } | AgentError::Http { .. } | AgentError::Timeout { .. } => {
                true
            }
            AgentError::Status { status, .. } => *status == 503,
            _ => false,
        }
    }
}

/// A client of one agent's executor API, for one executor of one framework.
#[derive(Debug, Clone)]
pub struct AgentClient {
    endpoint: String,
    executor_id: v1::ExecutorId,
    framework_id: v1::FrameworkId,
    authentication_token: Option<String>,
    call_timeout: Duration,
}

/// The open subscription: the events the agent sends, in order.
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    decoder: Decoder,
}

impl AgentClient {
    /// A client of the agent at `endpoint` (`host:port`).
    pub fn new(
        endpoint: impl Into<String>,
        executor_id: v1::ExecutorId,
        framework_id: v1::FrameworkId,
    ) -> AgentClient {
        AgentClient {
            endpoint: endpoint.into(),
            executor_id,
            framework_id,
            authentication_token: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// Sends `Authorization: Bearer <token>` on every request.
    pub fn with_authentication_token(mut self, token: Option<String>) -> AgentClient {
        self.authentication_token = token;
        self
    }

    /// Replaces the time allowed for each call's answer.
    pub fn with_call_timeout(mut self, timeout: Duration) -> AgentClient {
        self.call_timeout = timeout;
        self
    }

    /// The agent's `host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Subscribes and returns the event stream (200 with a RecordIO body).
    pub async fn subscribe(&self, subscribe: call::Subscribe) -> Result<EventStream, AgentError> {
        let call = self.call(call::Type::Subscribe, |c| c.subscribe = Some(subscribe));
        let response = self.post("SUBSCRIBE", &call).await?;
        if response.status() != StatusCode::OK {
            return Err(self.refusal("SUBSCRIBE", response).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if content_type != media::PROTOBUF {
            return Err(AgentError::ContentType { content_type });
        }
        Ok(EventStream {
            body: response.into_body(),
            decoder: Decoder::new(),
        })
    }

    /// Sends a status update (UPDATE, answered with 202).
    pub async fn update(&self, status: TaskStatus) -> Result<(), AgentError> {
        let call = self.call(call::Type::Update, |c| {
            c.update = Some(call::Update { status })
        });
        self.accepted("UPDATE", &call).await
    }

    /// Sends a best-effort message for the scheduler (MESSAGE, answered with 202).
    pub async fn message(&self, data: Bytes) -> Result<(), AgentError> {
        let call = self.call(call::Type::Message, |c| {
            c.message = Some(call::Message { data })
        });
        self.accepted("MESSAGE", &call).await
    }

    fn call(&self, kind: call::Type, fill: impl FnOnce(&mut Call)) -> Call {
        let mut call = Call {
            executor_id: self.executor_id.clone(),
            framework_id: self.framework_id.clone(),
            r#type: Some(kind as i32),
            ..Default::default()
        };
        fill(&mut call);
        call
    }

    async fn accepted(&self, name: &'static str, call: &Call) -> Result<(), AgentError> {
        let response = self.post(name, call).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.refusal(name, response).await);
        }
        Ok(())
    }

    /// Reads a refused call's body (briefly) into an error.
    async fn refusal(&self, name: &'static str, response: hyper::Response<Incoming>) -> AgentError {
        let status = response.status().as_u16();
        let read = Limited::new(response.into_body(), MAX_ERROR_BODY).collect();
        let body = match tokio::time::timeout(self.call_timeout, read).await {
            Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes())
                .trim()
                .to_owned(),
            _ => String::from("(body unreadable)"),
        };
        AgentError::Status {
            call: name,
            status,
            body,
        }
    }

    /// POSTs `call` on a fresh connection and returns the answer's head.
    async fn post(
        &self,
        name: &'static str,
        call: &Call,
    ) -> Result<hyper::Response<Incoming>, AgentError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(EXECUTOR_API_PATH)
            .header(HOST, &self.endpoint)
            .header(CONTENT_TYPE, media::PROTOBUF)
            .header(ACCEPT, media::PROTOBUF);
        if let Some(token) = &self.authentication_token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = builder
            .body(Full::new(Bytes::from(call.encode_to_vec())))
            .map_err(|err| AgentError::InvalidRequest {
                call: name,
                reason: err.to_string(),
            })?;
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(&self.endpoint)
                .await
                .map_err(|source| AgentError::Connect {
                    endpoint: self.endpoint.clone(),
                    source,
                })?;
            let http = |source| AgentError::Http { call: name, source };
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(http)?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    debug!(error = %err, "agent connection ended with an error");
                }
            });
            sender.send_request(request).await.map_err(http)
        };
        tokio::time::timeout(self.call_timeout, exchange)
            .await
            .map_err(|_| AgentError::Timeout {
                call: name,
                seconds: self.call_timeout.as_secs(),
            })?
    }
}

impl EventStream {
    /// The next event, or `None` when the agent closed the stream cleanly.
    pub async fn next(&mut self) -> Result<Option<Event>, AgentError> {
        loop {
            if let Some(record) = self.decoder.next_record()? {
                return Ok(Some(Event::decode(record)?));
            }
            match self.body.frame().await {
                None => {
                    self.decoder.finish()?;
                    return Ok(None);
                }
                Some(Err(source)) => {
                    return Err(AgentError::Http {
                        call: "SUBSCRIBE",
                        source,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.decoder.push(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_proto::recordio;
    use mesos_stateful_proto::v1::executor::event;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    /// What the fake agent answers: status, content type and body chunks.
    type Answer = (u16, &'static str, Vec<Bytes>);

    /// A fake agent on a loopback port recording the calls it receives.
    struct FakeAgent {
        endpoint: String,
        calls: Arc<Mutex<Vec<(http::HeaderMap, Call)>>>,
    }

    impl FakeAgent {
        async fn start(answer: impl Fn(&Call) -> Answer + Send + Sync + 'static) -> FakeAgent {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = listener.local_addr().unwrap().to_string();
            let calls = Arc::new(Mutex::new(Vec::new()));
            let answer = Arc::new(answer);
            let recorded = calls.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let answer = answer.clone();
                    let recorded = recorded.clone();
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let answer = answer.clone();
                        let recorded = recorded.clone();
                        async move {
                            let headers = request.headers().clone();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let call = Call::decode(body).unwrap();
                            let (status, content_type, chunks) = answer(&call);
                            recorded.lock().unwrap().push((headers, call));
                            let stream = ChunkedBody(chunks.into());
                            let response = hyper::Response::builder()
                                .status(status)
                                .header(CONTENT_TYPE, content_type)
                                .body(stream)
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            FakeAgent { endpoint, calls }
        }

        fn client(&self) -> AgentClient {
            AgentClient::new(
                self.endpoint.clone(),
                v1::ExecutorId {
                    value: "ex-1".into(),
                },
                v1::FrameworkId {
                    value: "fw-1".into(),
                },
            )
            .with_authentication_token(Some("secret".into()))
        }
    }

    /// A response body sending each chunk as its own frame.
    struct ChunkedBody(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for ChunkedBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
            std::task::Poll::Ready(
                self.0
                    .pop_front()
                    .map(|chunk| Ok(hyper::body::Frame::data(chunk))),
            )
        }
    }

    fn event_record(event: &Event) -> Bytes {
        recordio::encode_to_bytes(&event.encode_to_vec())
    }

    fn acknowledged(task: &str) -> Event {
        Event {
            r#type: Some(event::Type::Acknowledged as i32),
            acknowledged: Some(event::Acknowledged {
                task_id: v1::TaskId { value: task.into() },
                uuid: Bytes::from_static(&[7; 16]),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn subscribe_streams_events_across_chunk_boundaries() {
        let agent = FakeAgent::start(|_| {
            let mut stream = Vec::new();
            for task in ["t1", "t2", "t3"] {
                stream.extend_from_slice(&event_record(&acknowledged(task)));
            }
            // Re-chunk the stream at awkward places.
            let chunks = stream.chunks(5).map(Bytes::copy_from_slice).collect();
            (200, media::PROTOBUF, chunks)
        })
        .await;
        let client = agent.client();
        let subscribe = call::Subscribe {
            unacknowledged_tasks: vec![],
            unacknowledged_updates: vec![call::Update {
                status: TaskStatus {
                    task_id: v1::TaskId { value: "t0".into() },
                    ..Default::default()
                },
            }],
        };
        let mut stream = client.subscribe(subscribe.clone()).await.unwrap();
        let mut tasks = Vec::new();
        while let Some(event) = stream.next().await.unwrap() {
            tasks.push(event.acknowledged.unwrap().task_id.value);
        }
        assert_eq!(tasks, ["t1", "t2", "t3"]);

        let calls = agent.calls.lock().unwrap();
        let (headers, call) = &calls[0];
        assert_eq!(headers[CONTENT_TYPE], media::PROTOBUF);
        assert_eq!(headers[ACCEPT], media::PROTOBUF);
        assert_eq!(headers[AUTHORIZATION], "Bearer secret");
        assert_eq!(call.r#type, Some(call::Type::Subscribe as i32));
        assert_eq!(call.executor_id.value, "ex-1");
        assert_eq!(call.framework_id.value, "fw-1");
        assert_eq!(call.subscribe.as_ref(), Some(&subscribe));
    }

    #[tokio::test]
    async fn broken_streams_and_refusals_are_errors() {
        let agent = FakeAgent::start(|call| match call.r#type {
            Some(t) if t == call::Type::Update as i32 => (
                503,
                "text/plain",
                vec![Bytes::from_static(b"Agent has not finished recovery")],
            ),
            Some(t) if t == call::Type::Message as i32 => (202, "text/plain", vec![]),
            _ => {
                let mut record = event_record(&acknowledged("t1")).to_vec();
                record.truncate(record.len() - 3);
                (200, media::PROTOBUF, vec![Bytes::from(record)])
            }
        })
        .await;
        let client = agent.client();
        let mut stream = client.subscribe(call::Subscribe::default()).await.unwrap();
        let err = stream.next().await.unwrap_err();
        assert!(
            matches!(err, AgentError::RecordIo(RecordIoError::Truncated { .. })),
            "{err}"
        );

        let err = client.update(TaskStatus::default()).await.unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(
            err.to_string(),
            "agent answered 503 to UPDATE: Agent has not finished recovery"
        );

        client.message(Bytes::from_static(b"hi")).await.unwrap();
        let calls = agent.calls.lock().unwrap();
        assert_eq!(
            calls[2].1.message.as_ref().unwrap().data,
            Bytes::from_static(b"hi")
        );
    }

    #[tokio::test]
    async fn json_stream_and_undecodable_events_are_refused() {
        let agent = FakeAgent::start(|call| match call.subscribe {
            Some(ref s) if s.unacknowledged_tasks.is_empty() => (200, media::JSON, vec![]),
            _ => (
                200,
                media::PROTOBUF,
                vec![recordio::encode_to_bytes(&[0xff, 0xff, 0xff])],
            ),
        })
        .await;
        let client = agent.client();
        let err = client
            .subscribe(call::Subscribe::default())
            .await
            .unwrap_err();
        assert!(matches!(err, AgentError::ContentType { .. }), "{err}");
        assert!(!err.is_retryable());
        let subscribe = call::Subscribe {
            unacknowledged_tasks: vec![v1::TaskInfo::default()],
            unacknowledged_updates: vec![],
        };
        let mut stream = client.subscribe(subscribe).await.unwrap();
        assert!(matches!(stream.next().await, Err(AgentError::Decode(_))));
    }

    #[tokio::test]
    async fn unreachable_agent_is_retryable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        drop(listener);
        let client = AgentClient::new(
            endpoint,
            v1::ExecutorId::default(),
            v1::FrameworkId::default(),
        );
        let err = client.update(TaskStatus::default()).await.unwrap_err();
        assert!(matches!(err, AgentError::Connect { .. }), "{err}");
        assert!(err.is_retryable());
    }
}
