//! Thousands of random and malformed requests (methods, paths, headers, bodies) sent
//! as raw bytes to the real server: never a 5xx, never a dropped connection without
//! an answer, always the JSON error shape with a documented code, and no change in
//! the store from any of them (each is built to be refused).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use proptest::prelude::*;

use mesos_stateful_actors::actor::http_lib::{ApiSettings, ErrorCode};
use mesos_stateful_actors::actor::{System, SystemConfig};
use mesos_stateful_actors::domain::launch::ExecutorLaunch;
use mesos_stateful_actors::mesos::RecordingMesos;
use mesos_stateful_actors::telemetry::Metrics;
use mesos_stateful_store::{MemPersister, StateStore};

use super::Echo;

/// Starts the system on its own thread; returns the API's address and the store.
fn serve_on_a_thread() -> (SocketAddr, StateStore) {
    let store = StateStore::open(Arc::new(MemPersister::new())).unwrap();
    let (sender, receiver) = mpsc::channel();
    let served = store.clone();
    std::thread::spawn(move || {
        let runner = actix::System::new();
        runner.block_on(async move {
            let system = System::start(
                served,
                Arc::new(RecordingMesos::subscribed("fw")),
                Arc::new(Echo),
                SystemConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    executor: ExecutorLaunch::default(),
                    metrics: Arc::new(Metrics::new()),
                    api: ApiSettings {
                        rate_limit: None,
                        max_body_bytes: 4096,
                        ..ApiSettings::default()
                    },
                    queue: Default::default(),
                    recovery: Default::default(),
                },
            )
            .await
            .unwrap();
            sender.send(system.api_addr).unwrap();
            // Keep the system alive for the whole test.
            std::future::pending::<()>().await;
        });
    });
    (receiver.recv().unwrap(), store)
}

/// Sends raw bytes; the status and body of the answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) => panic!("no complete answer: {error}; got {received:?}"),
        }
        if let Some(head_end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
            // A stream (the events) answers forever: its head is enough.
            if head.contains("text/event-stream") {
                break;
            }
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|length| received.len() >= head_end + 4 + length) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&received);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = find(&received, b"\r\n\r\n")
        .map(|i| received[i + 4..].to_vec())
        .unwrap_or_default();
    (status, body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,12}",
        "[A-Za-z0-9%._~!$&'()*+,;=:@-]{0,40}",
        Just("%zz".to_string()),
        Just("..".to_string()),
        "[0-9]{1,25}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (0..12usize, segment(), segment(), segment()).prop_map(|(route, a, b, c)| match route {
        0 => "/v1/instances".to_string(),
        1 => format!("/v1/instances/{a}"),
        2 => format!("/v1/instances/{a}/endpoints"),
        3 => format!("/v1/instances/{a}/members/{b}/exec"),
        4 => format!("/v1/events?{a}={b}"),
        5 => format!("/v1/instances?{a}={b}"),
        // Never a masters count of 1: this create is always refused.
        6 => format!("/v1/CREATE/{a}/{b}/x{c}/{b}"),
        7 => format!("/v1/DELETE/{a}"),
        8 => format!("/v1/STATUS/{a}"),
        9 => format!("/{a}/{b}"),
        10 => "/openapi.json".to_string(),
        _ => format!("/v1/instances/{a}?{b}"),
    })
}

fn header_value() -> impl Strategy<Value = String> {
    "[ -~]{0,60}"
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("content-type".to_string()),
        Just("idempotency-key".to_string()),
        Just("last-event-id".to_string()),
        Just("authorization".to_string()),
        Just("origin".to_string()),
        Just("accept".to_string()),
        "[a-z][a-z0-9-]{0,20}",
    ];
    proptest::collection::vec((name, header_value()), 0..5)
}

/// A create that is always invalid: unknown fields, bad names, bad numbers, bad JSON.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let valid = r#"{"name":"fuzzed","image":"redis:7","replicas":0,"resources":{"cpus":0.1,"mem":64,"disk":10}}"#;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        "[a-z_]{1,10}".prop_map(move |field| valid
            .replace("\"replicas\"", &format!("\"x{field}\":1,\"replicas\""))
            .into_bytes()),
        "[A-Z_ ]{1,10}".prop_map(move |name| valid.replace("fuzzed", &name).into_bytes()),
        prop_oneof![
            Just("-1"),
            Just("0"),
            Just("1e999"),
            Just("\"x\""),
            Just("null"),
            Just("[]")
        ]
        .prop_map(move |number| valid.replace("0.1", number).into_bytes()),
        (1..3000usize).prop_map(|depth| "[".repeat(depth).into_bytes()),
        Just(vec![b'{'; 5000]),
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("DELETE".to_string()),
        Just("PATCH".to_string()),
        Just("PUT".to_string()),
        Just("OPTIONS".to_string()),
        Just("HEAD".to_string()),
        "[A-Z]{1,8}",
    ]
}

fn snapshot(store: &StateStore) -> String {
    format!(
        "{:?}{:?}",
        store.load_instances().unwrap(),
        store.load_all_tasks().unwrap()
    )
}

#[test]
fn api_fuzz_random_requests_never_fail_the_server_or_change_state() {
    let (addr, store) = serve_on_a_thread();
    let before = snapshot(&store);
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(method(), path(), headers(), body(), any::<bool>()),
            |(method, path, headers, body, if_match)| {
                let mut request =
                    format!("{method} {path} HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n");
                for (name, value) in &headers {
                    request.push_str(&format!("{name}: {value}\r\n"));
                }
                if if_match {
                    // Weak tags never match: a delete with it is always refused.
                    request.push_str("if-match: W/\"1\"\r\n");
                }
                request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
                let mut bytes = request.into_bytes();
                bytes.extend_from_slice(&body);
                let (status, answer) = exchange(addr, &bytes);
                prop_assert!(status < 500, "{status} for {method} {path} {headers:?}");
                if status >= 400 && method != "HEAD" && !answer.is_empty() {
                    let json: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| {
                        TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&answer)))
                    })?;
                    let code = json["code"].as_str().unwrap_or_default();
                    prop_assert!(codes.contains(&code), "undocumented code {code:?}");
                    prop_assert!(json.get("details").is_some());
                }
                if method != "GET" && method != "HEAD" && method != "OPTIONS" {
                    prop_assert!(status >= 400, "{status} for {method} {path}");
                }
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(
        snapshot(&store),
        before,
        "refused requests changed the store"
    );
    let (status, _) = exchange(
        addr,
        b"GET /health HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
}
