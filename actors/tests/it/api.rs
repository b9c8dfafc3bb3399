//! The REST API served for real (HttpLib's server with its middleware) against a
//! recording Mesos and an in-memory store: idempotency, conditional deletes, events,
//! authentication, rate limits, CORS, limits, the mr-redis routes, the document.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use mesos_stateful_actors::actor::http_lib::ApiSettings;
use mesos_stateful_actors::actor::{System, SystemConfig};
use mesos_stateful_actors::domain::launch::ExecutorLaunch;
use mesos_stateful_actors::http::artifacts::{Artifact, Artifacts};
use mesos_stateful_actors::http::security::{RateLimit, Tokens};
use mesos_stateful_actors::mesos::RecordingMesos;
use mesos_stateful_actors::telemetry::Metrics;
use mesos_stateful_store::{MemPersister, StateStore};

use super::Echo;

/// A system whose API listens on a free loopback port with `settings`.
async fn serve(settings: ApiSettings) -> (System, String) {
    let mesos = RecordingMesos::subscribed("fw");
    let store = StateStore::open(Arc::new(MemPersister::new())).unwrap();
    let system = System::start(
        store,
        Arc::new(mesos),
        Arc::new(Echo),
        SystemConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: ExecutorLaunch::default(),
            metrics: Arc::new(Metrics::new()),
            api: settings,
            queue: Default::default(),
            recovery: Default::default(),
        },
    )
    .await
    .unwrap();
    let url = format!("http://{}", system.api_addr);
    (system, url)
}

fn unlimited() -> ApiSettings {
    ApiSettings {
        rate_limit: None,
        heartbeat: Duration::from_millis(200),
        ..ApiSettings::default()
    }
}

fn body(name: &str, image: &str) -> Value {
    json!({"name": name, "image": image, "replicas": 0,
           "resources": {"cpus": 0.1, "mem": 64, "disk": 10}})
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn api_creates_are_idempotent_and_if_match_guards_deletes() {
    let (_system, url) = serve(unlimited()).await;
    let http = reqwest::Client::new();
    let post = |body: Value, key: Option<&str>| {
        let mut request = http.post(format!("{url}/v1/instances")).json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send()
    };

    let (status, first) = answer(post(body("web1", "redis:7"), Some("k1")).await.unwrap()).await;
    assert_eq!(status, 202, "{first}");
    let again = post(body("web1", "redis:7"), Some("k1")).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(answer(again).await, (202, first.clone()));
    // Same body, no key: the same instance, the first answer.
    assert_eq!(
        answer(post(body("web1", "redis:7"), None).await.unwrap()).await,
        (202, first.clone())
    );
    let (status, error) = answer(post(body("web1", "redis:8"), Some("k1")).await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let (status, error) = answer(post(body("web1", "redis:8"), None).await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (status, error) = answer(
        post(body("web2", "redis:7"), Some("bad key"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_header"))
    );

    let got = http
        .get(format!("{url}/v1/instances/web1"))
        .send()
        .await
        .unwrap();
    let etag = got.headers()["etag"].to_str().unwrap().to_string();
    let (_, view) = answer(got).await;
    assert_eq!(etag, format!("\"{}\"", view["version"]));

    let delete = |if_match: &str| {
        http.delete(format!("{url}/v1/instances/web1"))
            .header("if-match", if_match)
            .send()
    };
    let (status, error) = answer(delete("\"999\"").await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (412, Some("precondition_failed"))
    );
    assert_eq!(error["details"]["version"], view["version"]);
    let (status, error) = answer(delete("nonsense").await.unwrap()).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_header"))
    );
    let (status, deleted) = answer(delete(&etag).await.unwrap()).await;
    assert_eq!(status, 202, "{deleted}");
}

/// Reads SSE frames from `response` until `until` holds for one, at most 5 s.
async fn read_events(
    response: reqwest::Response,
    until: impl Fn(&str, &Value) -> bool,
) -> Vec<(Option<u64>, String, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("timed out reading events")
            .expect("stream ended")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, String::new(), Value::Null);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            if kind.is_empty() {
                continue; // a comment: connected or heartbeat
            }
            let done = until(&kind, &data);
            events.push((id, kind, data));
            if done {
                return events;
            }
        }
    }
}

#[actix_rt::test]
async fn api_events_follow_changes_and_resume_after_the_last_id() {
    let (_system, url) = serve(unlimited()).await;
    let http = reqwest::Client::new();
    let stream = http
        .get(format!("{url}/v1/events?instance=ev1"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    http.post(format!("{url}/v1/instances"))
        .json(&body("other", "redis:7"))
        .send()
        .await
        .unwrap();
    http.post(format!("{url}/v1/instances"))
        .json(&body("ev1", "redis:7"))
        .send()
        .await
        .unwrap();
    let events = read_events(stream, |kind, _| kind == "member").await;
    assert!(
        events.iter().all(|(_, _, data)| data["instance"] == "ev1"),
        "{events:?}"
    );
    let (instance_id, _, instance) = events.iter().find(|(_, k, _)| k == "instance").unwrap();
    assert_eq!(instance["status"], "CREATING");
    let instance_id = instance_id.unwrap();
    let (member_id, _, member) = events.last().unwrap();
    assert_eq!(member["member"]["name"], "ev1-0");
    assert!(member_id.unwrap() > instance_id);

    // Resuming after the instance event replays what followed it.
    let resumed = http
        .get(format!("{url}/v1/events?instance=ev1&type=member"))
        .header("last-event-id", instance_id.to_string())
        .send()
        .await
        .unwrap();
    let replayed = read_events(resumed, |kind, _| kind == "member").await;
    assert_eq!(replayed[0].0, *member_id);
    assert_eq!(replayed[0].1, "member");

    // An id from before this run: reset first.
    let stale = http
        .get(format!("{url}/v1/events"))
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    let first = read_events(stale, |_, _| true).await;
    assert_eq!(first[0].1, "reset");

    let bad = http
        .get(format!("{url}/v1/events"))
        .header("last-event-id", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(bad).await.1["code"], "invalid_header");
    let bad = http
        .get(format!("{url}/v1/events?type=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(bad).await.0, 400);
}

#[actix_rt::test]
async fn api_requires_a_bearer_token_when_tokens_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("mesos-stateful-executor");
    std::fs::write(&binary, b"executor bytes").unwrap();
    let artifact = Artifact::load(&binary).unwrap();
    let (_system, url) = serve(ApiSettings {
        tokens: Tokens::parse("s3cret\nother"),
        artifacts: Artifacts(vec![artifact.clone()]),
        ..unlimited()
    })
    .await;
    let http = reqwest::Client::new();
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Agents' fetchers get the executor without a token.
    let fetched = http
        .get(format!("{url}{}", artifact.url_path()))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(&fetched.bytes().await.unwrap()[..], b"executor bytes");
    // Only that route: a path merely starting like it still needs the token.
    let lookalike = http
        .get(format!("{url}/v1/artifacts/a/b/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(lookalike.status(), 401);
    for path in ["/v1/instances", "/metrics", "/openapi.json", "/v1/events"] {
        let refused = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        assert!(refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_eq!(answer(refused).await.1["code"], "unauthorized");
    }
    let wrong = http
        .get(format!("{url}/v1/instances"))
        .bearer_auth("s3cre")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(format!("{url}/v1/instances"))
        .bearer_auth("other")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
}

#[actix_rt::test]
async fn api_rate_limits_each_client_with_retry_after() {
    let (_system, url) = serve(ApiSettings {
        rate_limit: Some(RateLimit {
            per_second: 0.5,
            burst: 3.0,
        }),
        ..unlimited()
    })
    .await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let ok = http
            .get(format!("{url}/v1/instances"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
    let limited = http
        .get(format!("{url}/v1/instances"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(answer(limited).await.1["code"], "rate_limited");
    // Liveness is never limited.
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[actix_rt::test]
async fn api_allows_cors_only_for_the_configured_origin_and_limits_bodies() {
    let (_system, url) = serve(ApiSettings {
        cors_origin: Some("https://console.example".into()),
        max_body_bytes: 1024,
        ..unlimited()
    })
    .await;
    let http = reqwest::Client::new();
    let allowed = http
        .get(format!("{url}/v1/instances"))
        .header("origin", "https://console.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://console.example"
    );
    let other = http
        .get(format!("{url}/v1/instances"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{url}/v1/instances"))
        .header("origin", "https://console.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));

    let big = http
        .post(format!("{url}/v1/instances"))
        .header("content-type", "application/json")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    let (status, error) = answer(big).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, error) = answer(
        http.get(format!("{url}/no/such/route"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (404, Some("not_found")));
    let (status, error) = answer(
        http.get(format!("{url}/v1/instances?bogus=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_query"))
    );
}

#[actix_rt::test]
async fn api_serves_the_mr_redis_routes() {
    let (_system, url) = serve(unlimited()).await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{url}/v1/CREATE/mrr1/128/1/1"))
        .send()
        .await
        .unwrap();
    let (status, view) = answer(created).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["spec"]["resources"]["mem"], 128.0);
    assert_eq!(view["spec"]["replicas"], 1);
    let (status, error) = answer(
        http.post(format!("{url}/v1/CREATE/mrr2/128/2/1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_field"))
    );

    let (status, one) = answer(
        http.get(format!("{url}/v1/STATUS/mrr1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["Name"], "mrr1");
    assert_eq!(one["Type"], "MS");
    assert_eq!(one["Status"], "CREATING");
    assert_eq!(one["Capacity"], 128);
    let (_, all) = answer(http.get(format!("{url}/v1/STATUS")).send().await.unwrap()).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let (status, _) = answer(
        http.get(format!("{url}/v1/STATUS/nope"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = answer(
        http.delete(format!("{url}/v1/DELETE/mrr1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202);
}

#[actix_rt::test]
async fn api_serves_its_openapi_document() {
    let (_system, url) = serve(unlimited()).await;
    let served = reqwest::get(format!("{url}/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        served,
        mesos_stateful_actors::http::openapi::document_json()
    );
    let document: Value = serde_json::from_str(&served).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
}

/// The checked-in `openapi.json` is the generated document.
#[test]
fn api_openapi_json_in_the_repository_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let generated = format!(
        "{}\n",
        mesos_stateful_actors::http::openapi::document_json()
    );
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "openapi.json is out of date; regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p mesos-stateful-actors --test it openapi`"
    );
}

#[actix_rt::test]
async fn api_scales_updates_and_restarts_through_patch_and_member_routes() {
    let (_system, url) = serve(unlimited()).await;
    let http = reqwest::Client::new();
    let (status, created) = answer(
        http.post(format!("{url}/v1/instances"))
            .json(&body("ops1", "redis:7"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let patch = |body: Value, if_match: Option<String>| {
        let mut request = http.patch(format!("{url}/v1/instances/ops1")).json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    let (status, error) = answer(
        patch(json!({"replicas": 1}), Some("\"999\"".into()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (412, Some("precondition_failed")),
        "{error}"
    );
    let current = answer(
        http.get(format!("{url}/v1/instances/ops1"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .1;
    let (status, scaled) = answer(
        patch(
            json!({"replicas": 1}),
            Some(format!("\"{}\"", current["version"])),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{scaled}");
    assert_eq!(scaled["spec"]["replicas"], 1);
    let (status, updated) = answer(patch(json!({"image": "redis:8"}), None).await.unwrap()).await;
    assert_eq!(status, 202, "{updated}");
    assert_eq!(updated["spec"]["image"], "redis:8");
    for (bad, code) in [
        (json!({"image": "bad image"}), "invalid_image"),
        (json!({"replicas": 1000}), "invalid_field"),
        (json!({"name": "x"}), "invalid_json"),
    ] {
        let (status, error) = answer(patch(bad.clone(), None).await.unwrap()).await;
        assert_eq!((status, error["code"].as_str()), (400, Some(code)), "{bad}");
    }
    let (status, same) = answer(patch(json!({}), None).await.unwrap()).await;
    assert_eq!((status, &same["spec"]["image"]), (200, &json!("redis:8")));
    let missing = http
        .patch(format!("{url}/v1/instances/nope"))
        .json(&json!({"replicas": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    for operation in ["restart", "replace"] {
        let response = http
            .post(format!("{url}/v1/instances/ops1/members/0/{operation}"))
            .send()
            .await
            .unwrap();
        let (status, answered) = answer(response).await;
        assert!(
            status == 202 || status == 409,
            "{operation}: {status} {answered}"
        );
        let response = http
            .post(format!("{url}/v1/instances/ops1/members/x/{operation}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        let response = http
            .post(format!("{url}/v1/instances/ops1/members/0/{operation}"))
            .header("if-match", "\"999\"")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 412);
    }
}

/// A GET over TLS to `addr`, trusting the test CA; the status line. The fixtures are a
/// test CA (`tls-ca.pem`) and a `localhost` certificate it signed with its key
/// (`tls-cert.pem`, `tls-key.pem`), made with openssl, valid for 100 years.
fn get_over_tls(addr: std::net::SocketAddr, path: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures");
    let mut roots = rustls::RootCertStore::empty();
    let ca =
        rustls_pki_types::CertificateDer::from_pem_file(format!("{fixtures}/tls-ca.pem")).unwrap();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[actix_rt::test]
async fn api_serves_https_with_the_configured_certificate() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures");
    let (system, _) = serve(ApiSettings {
        tls: Some(mesos_stateful_actors::actor::http_lib::TlsFiles {
            cert: format!("{fixtures}/tls-cert.pem").into(),
            key: format!("{fixtures}/tls-key.pem").into(),
        }),
        ..unlimited()
    })
    .await;
    let addr = system.api_addr;
    let status = tokio::task::spawn_blocking(move || get_over_tls(addr, "/health"))
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Plain HTTP gets no answer from a TLS server.
    let plain = reqwest::get(format!("http://{addr}/health")).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
}

#[actix_rt::test]
async fn api_refuses_privileged_containers_unless_the_operator_allows_them() {
    let privileged = || {
        let mut body = body("priv1", "redis:7");
        body["privileged"] = json!(true);
        body
    };
    let (_system, url) = serve(unlimited()).await;
    let http = reqwest::Client::new();
    let (status, error) = answer(
        http.post(format!("{url}/v1/instances"))
            .json(&privileged())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (403, Some("forbidden")));
    // Nothing was stored.
    let missing = http
        .get(format!("{url}/v1/instances/priv1"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    let (_allowed, url) = serve(ApiSettings {
        allow_privileged: true,
        ..unlimited()
    })
    .await;
    let (status, created) = answer(
        http.post(format!("{url}/v1/instances"))
            .json(&privileged())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let (status, got) = answer(
        http.get(format!("{url}/v1/instances/priv1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["spec"]["privileged"], json!(true), "{got}");
}
