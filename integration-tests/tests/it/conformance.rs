//! The conformance suite: each rule of `mesos-v1-protocol.md` that our client and
//! devcluster depend on, checked against devcluster with raw HTTP in Mesos's JSON
//! (as a third-party client speaks it). Each test names the section it checks.
//!
//! Most tests use simulated agents (no processes): a task there reports
//! TASK_STARTING at once and TASK_RUNNING after a short delay.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use mesos_stateful_devcluster::testing::ZooKeeper;
use mesos_stateful_devcluster::{Credential, DevCluster, DevClusterConfig, SimulatedAgents};

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";
const STREAM_ID: &str = "Mesos-Stream-Id";
const WAIT: Duration = Duration::from_secs(10);

/// A devcluster of simulated agents with fast timers.
fn config(dir: &std::path::Path, simulated: usize) -> DevClusterConfig {
    DevClusterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        agents: Vec::new(),
        simulated_agents: SimulatedAgents {
            count: simulated,
            cpus: 2.0,
            mem: 1024.0,
            disk: 1024.0,
            delay: Duration::from_millis(50),
            ..SimulatedAgents::default()
        },
        work_dir: dir.to_path_buf(),
        heartbeat_interval: Duration::from_millis(300),
        allocation_interval: Duration::from_millis(100),
        status_update_retry_interval: Duration::from_millis(300),
        agent_removal_timeout: Duration::from_millis(300),
        ..DevClusterConfig::default()
    }
}

async fn cluster(simulated: usize) -> (DevCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path(), simulated))
        .await
        .unwrap();
    (cluster, dir)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn endpoint(master: &str) -> String {
    format!("{master}/api/v1/scheduler")
}

/// POSTs `body` (JSON) with `headers`.
async fn post(url: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = http().post(url).body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn framework_info(extra: Value) -> Value {
    let mut info =
        json!({"user": "conformance", "name": "conformance", "failover_timeout": 3600.0});
    if let (Some(info), Some(extra)) = (info.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            info.insert(key.clone(), value.clone());
        }
    }
    info
}

fn subscribe_call(info: Value) -> Value {
    let mut call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}});
    if let Some(id) = call["subscribe"]["framework_info"].get("id").cloned() {
        call["framework_id"] = id;
    }
    call
}

/// A JSON subscription: its stream ID, framework ID and decoded events (the
/// channel closes when the stream ends).
struct Subscription {
    url: String,
    stream_id: String,
    framework_id: Value,
    events: mpsc::UnboundedReceiver<Value>,
    subscribed: Value,
}

/// Splits a RecordIO body (`<length>\n<bytes>`…) into JSON events (§1.2).
fn pump(mut response: reqwest::Response) -> mpsc::UnboundedReceiver<Value> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer: Vec<u8> = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.extend_from_slice(&chunk);
            while let Some(newline) = buffer.iter().position(|b| *b == b'\n') {
                let length: usize = std::str::from_utf8(&buffer[..newline])
                    .unwrap()
                    .parse()
                    .expect("a RecordIO length is decimal digits");
                if buffer.len() < newline + 1 + length {
                    break;
                }
                let record: Vec<u8> = buffer
                    .drain(..newline + 1 + length)
                    .skip(newline + 1)
                    .collect();
                let event: Value = serde_json::from_slice(&record).unwrap();
                if sender.send(event).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

impl Subscription {
    async fn start(master: &str, info: Value) -> Subscription {
        Self::start_with(master, info, &[]).await
    }

    async fn start_with(master: &str, info: Value, headers: &[(&str, &str)]) -> Subscription {
        let url = endpoint(master);
        let mut all = vec![("Content-Type", JSON), ("Accept", JSON)];
        all.extend_from_slice(headers);
        let response = post(&url, &subscribe_call(info), &all).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], JSON);
        let stream_id = response.headers()[STREAM_ID].to_str().unwrap().to_string();
        let mut events = pump(response);
        let first = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first["type"], "SUBSCRIBED", "{first}");
        Subscription {
            url,
            stream_id,
            framework_id: first["subscribed"]["framework_id"].clone(),
            events,
            subscribed: first["subscribed"].clone(),
        }
    }

    /// POSTs a call of `call_type` with `body` as its sub-message.
    async fn call_with(
        &self,
        call_type: &str,
        field: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> StatusCode {
        let mut call = json!({"type": call_type, "framework_id": self.framework_id});
        if !field.is_empty() {
            call[field] = body;
        }
        let mut all = vec![("Content-Type", JSON), (STREAM_ID, self.stream_id.as_str())];
        all.extend_from_slice(headers);
        post(&self.url, &call, &all).await.status()
    }

    async fn call(&self, call_type: &str, field: &str, body: Value) {
        let status = self.call_with(call_type, field, body, &[]).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{call_type}");
    }

    /// The next event of type `wanted`, skipping others.
    async fn expect(&mut self, wanted: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {wanted} event in time"))
                .unwrap_or_else(|| panic!("stream ended while waiting for {wanted}"));
            if event["type"] == wanted {
                return event;
            }
        }
    }

    /// The events of type `wanted` that arrive within `within`.
    async fn collect(&mut self, wanted: &str, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut found = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if event["type"] == wanted {
                found.push(event);
            }
        }
        found
    }

    async fn offers(&mut self) -> Vec<Value> {
        let event = self.expect("OFFERS").await;
        event["offers"]["offers"].as_array().unwrap().clone()
    }

    async fn update(&mut self) -> Value {
        self.expect("UPDATE").await["update"]["status"].clone()
    }

    async fn acknowledge(&self, status: &Value) {
        self.call(
            "ACKNOWLEDGE",
            "acknowledge",
            json!({"agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]}),
        )
        .await;
    }

    async fn launch(&self, offer: &Value, tasks: Vec<Value>) {
        self.accept(
            offer,
            vec![json!({"type": "LAUNCH", "launch": {"task_infos": tasks}})],
        )
        .await;
    }

    async fn accept(&self, offer: &Value, operations: Vec<Value>) {
        self.call(
            "ACCEPT",
            "accept",
            json!({"offer_ids": [offer["id"]], "operations": operations, "filters": {"refuse_seconds": 0.0}}),
        )
        .await;
    }

    async fn decline(&self, offer: &Value, refuse_seconds: f64) {
        self.call(
            "DECLINE",
            "decline",
            json!({"offer_ids": [offer["id"]], "filters": {"refuse_seconds": refuse_seconds}}),
        )
        .await;
    }

    async fn reconcile(&self, tasks: Vec<Value>) {
        self.call("RECONCILE", "reconcile", json!({"tasks": tasks}))
            .await;
    }

    /// Acknowledges the task's updates up to TASK_RUNNING.
    async fn until_running(&mut self) -> Value {
        loop {
            let status = self.update().await;
            self.acknowledge(&status).await;
            if status["state"] == "TASK_RUNNING" {
                return status;
            }
        }
    }
}

fn scalar(name: &str, value: f64) -> Value {
    json!({"name": name, "type": "SCALAR", "scalar": {"value": value}})
}

fn task(offer: &Value, id: &str) -> Value {
    json!({
        "name": id,
        "task_id": {"value": id},
        "agent_id": offer["agent_id"],
        "resources": [scalar("cpus", 0.5), scalar("mem", 64.0)],
        "command": {"value": "sleep 30"}
    })
}

fn partition_aware() -> Value {
    json!({"capabilities": [{"type": "PARTITION_AWARE"}]})
}

/// §1.1: only POST; the request content type must be exactly one of the two
/// (415 otherwise, 400 when missing); the stream's encoding follows `Accept`, JSON
/// first, and `application/recordio` is refused with 406.
#[tokio::test]
async fn s1_1_transport_rules() {
    let (cluster, _dir) = cluster(1).await;
    let url = endpoint(&cluster.master_url());
    let subscribe = subscribe_call(framework_info(json!({})));

    let get = http().get(&url).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let charset = post(
        &url,
        &subscribe,
        &[("Content-Type", "application/json; charset=utf-8")],
    )
    .await;
    assert_eq!(charset.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let missing = post(&url, &subscribe, &[]).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let recordio = post(
        &url,
        &subscribe,
        &[("Content-Type", JSON), ("Accept", "application/recordio")],
    )
    .await;
    assert_eq!(recordio.status(), StatusCode::NOT_ACCEPTABLE);

    let no_accept = post(&url, &subscribe, &[("Content-Type", JSON)]).await;
    assert_eq!(no_accept.status(), StatusCode::OK);
    assert_eq!(
        no_accept.headers()["content-type"],
        JSON,
        "JSON when Accept is absent"
    );
    let protobuf = post(
        &url,
        &subscribe,
        &[("Content-Type", JSON), ("Accept", PROTOBUF)],
    )
    .await;
    assert_eq!(protobuf.status(), StatusCode::OK);
    assert_eq!(protobuf.headers()["content-type"], PROTOBUF);
    drop((no_accept, protobuf));
    cluster.shutdown().await;
}

/// §1.1 / §1.5: every accepted call but UPDATE_FRAMEWORK is 202 with an empty
/// body; UPDATE_FRAMEWORK is 200; type UNKNOWN is 501.
#[tokio::test]
async fn s1_1_call_answers() {
    let (cluster, _dir) = cluster(1).await;
    let subscription = Subscription::start(&cluster.master_url(), framework_info(json!({}))).await;
    let revive = subscription.call_with("REVIVE", "", Value::Null, &[]).await;
    assert_eq!(revive, StatusCode::ACCEPTED);
    let mut info = framework_info(json!({}));
    info["id"] = subscription.framework_id.clone();
    let update = subscription
        .call_with(
            "UPDATE_FRAMEWORK",
            "update_framework",
            json!({"framework_info": info}),
            &[],
        )
        .await;
    assert_eq!(update, StatusCode::OK);
    let unknown = subscription
        .call_with("UNKNOWN", "", Value::Null, &[])
        .await;
    assert_eq!(unknown, StatusCode::NOT_IMPLEMENTED);
    cluster.shutdown().await;
}

/// §1.4: SUBSCRIBED comes first, then HEARTBEAT at once and every interval; the
/// stream carries `Mesos-Stream-Id`, which must not be sent on SUBSCRIBE and must
/// be sent, unchanged, on every other call; both framework IDs must agree.
#[tokio::test]
async fn s1_4_subscribe_and_stream_id() {
    let (cluster, _dir) = cluster(1).await;
    let master = cluster.master_url();
    let mut subscription = Subscription::start(&master, framework_info(json!({}))).await;
    assert_eq!(subscription.stream_id.len(), 36, "a UUID string");
    assert_eq!(subscription.subscribed["heartbeat_interval_seconds"], 0.3);
    let first = tokio::time::timeout(WAIT, subscription.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first["type"], "HEARTBEAT",
        "a HEARTBEAT follows SUBSCRIBED at once"
    );
    let beats = subscription
        .collect("HEARTBEAT", Duration::from_millis(1000))
        .await;
    assert!(beats.len() >= 2, "heartbeats every 300 ms: {}", beats.len());

    let url = endpoint(&master);
    let with_stream = post(
        &url,
        &subscribe_call(framework_info(json!({}))),
        &[("Content-Type", JSON), (STREAM_ID, "x")],
    )
    .await;
    assert_eq!(with_stream.status(), StatusCode::BAD_REQUEST);
    let mismatch = post(
        &url,
        &json!({"type": "SUBSCRIBE", "framework_id": {"value": "a"},
                "subscribe": {"framework_info": framework_info(json!({"id": {"value": "b"}}))}}),
        &[("Content-Type", JSON)],
    )
    .await;
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);

    let revive = json!({"type": "REVIVE", "framework_id": subscription.framework_id});
    let missing = post(&url, &revive, &[("Content-Type", JSON)]).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let wrong = post(
        &url,
        &revive,
        &[("Content-Type", JSON), (STREAM_ID, "not-the-stream")],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    cluster.shutdown().await;
}

/// §1.4.6: a second SUBSCRIBE of a connected framework wins; the first stream gets
/// ERROR "Framework failed over" and ends.
#[tokio::test]
async fn s1_4_second_subscription_fails_the_first_over() {
    let (cluster, _dir) = cluster(1).await;
    let master = cluster.master_url();
    let mut first = Subscription::start(&master, framework_info(json!({}))).await;
    let info = framework_info(json!({"id": first.framework_id}));
    let second = Subscription::start(&master, info).await;
    assert_eq!(second.framework_id, first.framework_id);
    let error = first.expect("ERROR").await;
    assert_eq!(error["error"]["message"], "Framework failed over");
    let ended =
        tokio::time::timeout(WAIT, async { while first.events.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the old stream ends");
    cluster.shutdown().await;
}

/// §1.4.3: a refused subscription (a torn-down framework ID) is a 200 stream with
/// an ERROR event, then EOF.
#[tokio::test]
async fn s1_4_refused_subscription_is_an_error_event_then_eof() {
    let (cluster, _dir) = cluster(1).await;
    let master = cluster.master_url();
    let subscription = Subscription::start(&master, framework_info(json!({}))).await;
    subscription.call("TEARDOWN", "", Value::Null).await;
    let response = post(
        &endpoint(&master),
        &subscribe_call(framework_info(json!({"id": subscription.framework_id}))),
        &[("Content-Type", JSON)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = pump(response);
    let error = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["error"]["message"], "Framework has been removed");
    let end = tokio::time::timeout(WAIT, events.recv()).await.unwrap();
    assert!(end.is_none(), "EOF after the ERROR");
    cluster.shutdown().await;
}

/// §1.5: an unknown framework is 400 "Framework cannot be found"; a known one
/// whose stream ended (within its failover timeout) is 403 "Framework is not
/// subscribed".
#[tokio::test]
async fn s1_5_unknown_and_unsubscribed_frameworks() {
    let (cluster, _dir) = cluster(1).await;
    let master = cluster.master_url();
    let subscription = Subscription::start(&master, framework_info(json!({}))).await;
    let unknown = post(
        &endpoint(&master),
        &json!({"type": "REVIVE", "framework_id": {"value": "nobody"}}),
        &[("Content-Type", JSON), (STREAM_ID, &subscription.stream_id)],
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert_eq!(unknown.text().await.unwrap(), "Framework cannot be found");

    let Subscription {
        url,
        stream_id,
        framework_id,
        events,
        ..
    } = subscription;
    drop(events);
    let revive = json!({"type": "REVIVE", "framework_id": framework_id});
    let mut status = StatusCode::ACCEPTED;
    for _ in 0..50 {
        // The master notices the closed stream shortly after the client drops it.
        status = post(
            &url,
            &revive,
            &[("Content-Type", JSON), (STREAM_ID, &stream_id)],
        )
        .await
        .status();
        if status == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::FORBIDDEN);
    cluster.shutdown().await;
}

/// §1.5 / §5: with authentication on, a missing or wrong `Authorization` is 401
/// with the realm's challenge; a principal other than the authenticated one is 400.
#[tokio::test]
async fn s5_basic_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        credentials: vec![Credential {
            principal: "ops".into(),
            secret: "pw".into(),
        }],
        ..config(dir.path(), 1)
    })
    .await
    .unwrap();
    let url = endpoint(&cluster.master_url());
    let subscribe = subscribe_call(framework_info(json!({})));
    let anonymous = post(&url, &subscribe, &[("Content-Type", JSON)]).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"mesos-master-scheduler\""
    );
    // base64("ops:pw") = b3BzOnB3, base64("ops:no") = b3BzOm5v
    let wrong = post(
        &url,
        &subscribe,
        &[("Content-Type", JSON), ("Authorization", "Basic b3BzOm5v")],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let other_principal = subscribe_call(framework_info(json!({"principal": "eve"})));
    let refused = post(
        &url,
        &other_principal,
        &[("Content-Type", JSON), ("Authorization", "Basic b3BzOnB3")],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let subscription = Subscription::start_with(
        &cluster.master_url(),
        framework_info(json!({})),
        &[("Authorization", "Basic b3BzOnB3")],
    )
    .await;
    let revive = subscription
        .call_with(
            "REVIVE",
            "",
            Value::Null,
            &[("Authorization", "Basic b3BzOnB3")],
        )
        .await;
    assert_eq!(revive, StatusCode::ACCEPTED);
    let unauthenticated = subscription.call_with("REVIVE", "", Value::Null, &[]).await;
    assert_eq!(unauthenticated, StatusCode::UNAUTHORIZED);
    cluster.shutdown().await;
}

/// §1.5 / §4.2: a standby master answers 307 with a protocol-relative Location
/// under `/master`; `/master/redirect` is 307 to `//host:port` on every master;
/// with no leader both are 503.
#[tokio::test]
async fn s4_2_redirects_and_no_leader() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        masters: 2,
        ..config(dir.path(), 1)
    })
    .await
    .unwrap();
    let urls = cluster.master_urls();
    let leader = urls[0].trim_start_matches("http://");
    let subscribe = subscribe_call(framework_info(json!({})));
    let redirected = post(&endpoint(&urls[1]), &subscribe, &[("Content-Type", JSON)]).await;
    assert_eq!(redirected.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        redirected.headers()["location"],
        format!("//{leader}/master/api/v1/scheduler").as_str()
    );
    for url in &urls {
        let response = http()
            .get(format!("{url}/master/redirect"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            response.headers()["location"],
            format!("//{leader}").as_str()
        );
    }
    cluster.stop_master(0).await.unwrap();
    cluster.stop_master(1).await.unwrap();
    assert_eq!(cluster.leader(), None);
    cluster.shutdown().await;

    // With ZooKeeper, a master whose node is not the lowest is a standby; once
    // every node is gone there is no leader: 503.
    let zookeeper = ZooKeeper::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        masters: 2,
        zookeeper: Some(zookeeper.url("/mesos")),
        ..config(dir.path(), 1)
    })
    .await
    .unwrap();
    let urls = cluster.master_urls();
    cluster.stop_master(0).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while cluster.leader() != Some(1) {
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leading = post(&endpoint(&urls[1]), &subscribe, &[("Content-Type", JSON)]).await;
    assert_eq!(leading.status(), StatusCode::OK);
    drop(leading);
    drop(zookeeper);
    cluster.shutdown().await;
}

/// §1.8 / §1.4.7: a framework that disconnects re-subscribes within its failover
/// timeout with its FrameworkID and finds its task; offers are sent anew.
#[tokio::test]
async fn s1_8_failover_keeps_the_tasks() {
    let (cluster, _dir) = cluster(1).await;
    let master = cluster.master_url();
    let mut first = Subscription::start(&master, framework_info(json!({}))).await;
    let offer = first.offers().await.remove(0);
    first.launch(&offer, vec![task(&offer, "kept")]).await;
    let running = first.until_running().await;
    let framework_id = first.framework_id.clone();
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second =
        Subscription::start(&master, framework_info(json!({"id": framework_id}))).await;
    let offers = second.offers().await;
    assert_eq!(
        offers.len(),
        1,
        "offers are regenerated for the new subscription"
    );
    second
        .reconcile(vec![
            json!({"task_id": {"value": "kept"}, "agent_id": running["agent_id"]}),
        ])
        .await;
    let answer = second.update().await;
    assert_eq!(answer["state"], "TASK_RUNNING");
    assert_eq!(answer["reason"], "REASON_RECONCILIATION");
    cluster.shutdown().await;
}

/// §1.9: agent updates carry a 16-byte uuid and are resent until acknowledged; the
/// next update of the task waits behind the unacknowledged one.
#[tokio::test]
async fn s1_9_updates_are_retried_until_acknowledged() {
    let (cluster, _dir) = cluster(1).await;
    let mut subscription =
        Subscription::start(&cluster.master_url(), framework_info(json!({}))).await;
    let offer = subscription.offers().await.remove(0);
    subscription
        .launch(&offer, vec![task(&offer, "retried")])
        .await;
    let starting = subscription.update().await;
    assert_eq!(starting["state"], "TASK_STARTING");
    let uuid = starting["uuid"].as_str().unwrap();
    assert_eq!(uuid.len(), 24, "base64 of 16 bytes");
    let again = subscription.update().await;
    assert_eq!(
        again["uuid"], starting["uuid"],
        "resent, not TASK_RUNNING yet"
    );
    subscription.acknowledge(&starting).await;
    let mut next = subscription.update().await;
    while next["uuid"] == starting["uuid"] {
        next = subscription.update().await;
    }
    assert_eq!(next["state"], "TASK_RUNNING");
    cluster.shutdown().await;
}

/// §1.10: implicit reconciliation answers every known task; explicit answers per
/// the table (registered agent: GONE / LOST; unknown agent: UNKNOWN / LOST), with
/// REASON_RECONCILIATION, SOURCE_MASTER and no uuid.
#[tokio::test]
async fn s1_10_reconciliation_answers() {
    let (cluster, _dir) = cluster(1).await;
    let master = cluster.master_url();
    let mut aware = Subscription::start(&master, framework_info(partition_aware())).await;
    let offer = aware.offers().await.remove(0);
    aware.launch(&offer, vec![task(&offer, "known")]).await;
    aware.until_running().await;
    aware.reconcile(Vec::new()).await;
    let implicit = aware.update().await;
    assert_eq!(implicit["task_id"]["value"], "known");
    assert_eq!(implicit["state"], "TASK_RUNNING");
    assert_eq!(implicit["source"], "SOURCE_MASTER");
    assert!(implicit.get("uuid").is_none());

    let ask = |task: &str, agent: &Value| json!({"task_id": {"value": task}, "agent_id": agent});
    let nowhere = json!({"value": "no-such-agent"});
    aware
        .reconcile(vec![
            ask("ghost", &offer["agent_id"]),
            ask("ghost", &nowhere),
        ])
        .await;
    let gone = aware.update().await;
    let unknown = aware.update().await;
    assert_eq!(
        (gone["state"].as_str(), unknown["state"].as_str()),
        (Some("TASK_GONE"), Some("TASK_UNKNOWN"))
    );
    assert_eq!(gone["reason"], "REASON_RECONCILIATION");

    let mut plain = Subscription::start(&master, framework_info(json!({}))).await;
    plain
        .reconcile(vec![
            ask("ghost", &offer["agent_id"]),
            ask("ghost", &nowhere),
        ])
        .await;
    assert_eq!(plain.update().await["state"], "TASK_LOST");
    assert_eq!(plain.update().await["state"], "TASK_LOST");
    cluster.shutdown().await;
}

/// §1.11: DECLINE with `refuse_seconds` keeps the resources away from the
/// framework; REVIVE clears the filter; SUPPRESS stops offers.
#[tokio::test]
async fn s1_11_filters_suppress_and_revive() {
    let (cluster, _dir) = cluster(1).await;
    let mut subscription =
        Subscription::start(&cluster.master_url(), framework_info(json!({}))).await;
    let offer = subscription.offers().await.remove(0);
    subscription.decline(&offer, 3600.0).await;
    assert!(
        subscription
            .collect("OFFERS", Duration::from_millis(500))
            .await
            .is_empty(),
        "filtered"
    );
    subscription.call("REVIVE", "", Value::Null).await;
    let offer = subscription.offers().await.remove(0);
    subscription.call("SUPPRESS", "", Value::Null).await;
    subscription.decline(&offer, 0.0).await;
    assert!(
        subscription
            .collect("OFFERS", Duration::from_millis(500))
            .await
            .is_empty(),
        "suppressed"
    );
    subscription.call("REVIVE", "", Value::Null).await;
    assert_eq!(subscription.offers().await.len(), 1);
    cluster.shutdown().await;
}

/// §1.11: a LAUNCH on an offer that is no longer valid gives TASK_LOST
/// (TASK_DROPPED to PARTITION_AWARE frameworks) with REASON_INVALID_OFFERS and
/// no uuid; an operation ID on LAUNCH gives TASK_ERROR.
#[tokio::test]
async fn s1_11_invalid_offers_and_launch_ids() {
    let (cluster, _dir) = cluster(1).await;
    let master = cluster.master_url();
    let mut aware = Subscription::start(&master, framework_info(partition_aware())).await;
    let stale = aware.offers().await.remove(0);
    aware.decline(&stale, 0.0).await;
    let offer = aware.offers().await.remove(0);
    aware.launch(&stale, vec![task(&stale, "late")]).await;
    let dropped = aware.update().await;
    assert_eq!(dropped["state"], "TASK_DROPPED");
    assert_eq!(dropped["reason"], "REASON_INVALID_OFFERS");
    assert!(dropped.get("uuid").is_none());

    aware
        .accept(
            &offer,
            vec![json!({"type": "LAUNCH", "id": {"value": "op"}, "launch": {"task_infos": [task(&offer, "with-id")]}})],
        )
        .await;
    assert_eq!(aware.update().await["state"], "TASK_ERROR");
    cluster.shutdown().await;
}

/// §1.11: RESERVE, CREATE and LAUNCH in one ACCEPT; the reservation and the
/// volume come back to the role with their `reservations` and disk info; operation
/// feedback only for operations with an ID, resent until acknowledged.
#[tokio::test]
async fn s1_11_reservations_and_volumes() {
    let (cluster, _dir) = cluster(1).await;
    let info = framework_info(json!({
        "roles": ["db"], "principal": "ops",
        "capabilities": [{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}]
    }));
    let mut subscription = Subscription::start(&cluster.master_url(), info).await;
    let offer = subscription.offers().await.remove(0);
    let reservation = json!([{"type": "DYNAMIC", "role": "db", "principal": "ops"}]);
    let reserved = |name: &str, value: f64| {
        let mut resource = scalar(name, value);
        resource["reservations"] = reservation.clone();
        resource
    };
    let mut volume = reserved("disk", 64.0);
    volume["disk"] = json!({"persistence": {"id": "data-0", "principal": "ops"},
                            "volume": {"container_path": "data", "mode": "RW"}});
    let mut on_volume = task(&offer, "on-volume");
    on_volume["resources"] = json!([reserved("cpus", 0.5), reserved("mem", 64.0), volume.clone()]);
    subscription
        .accept(
            &offer,
            vec![
                json!({"type": "RESERVE", "id": {"value": "reserve"},
                       "reserve": {"resources": [reserved("cpus", 0.5), reserved("mem", 64.0), reserved("disk", 64.0)]}}),
                json!({"type": "CREATE", "create": {"volumes": [volume.clone()]}}),
                json!({"type": "LAUNCH", "launch": {"task_infos": [on_volume]}}),
            ],
        )
        .await;
    let feedback = subscription.expect("UPDATE_OPERATION_STATUS").await;
    assert_eq!(
        feedback["update_operation_status"]["status"]["operation_id"]["value"],
        "reserve"
    );
    assert_eq!(
        feedback["update_operation_status"]["status"]["state"],
        "OPERATION_FINISHED"
    );
    // Feedback is resent until ACKNOWLEDGE_OPERATION_STATUS.
    let status = &feedback["update_operation_status"]["status"];
    let again = subscription.expect("UPDATE_OPERATION_STATUS").await;
    assert_eq!(
        again["update_operation_status"]["status"]["uuid"],
        status["uuid"]
    );
    subscription
        .call(
            "ACKNOWLEDGE_OPERATION_STATUS",
            "acknowledge_operation_status",
            json!({"agent_id": status["agent_id"], "uuid": status["uuid"]["value"],
                   "operation_id": status["operation_id"]}),
        )
        .await;
    assert!(
        subscription
            .collect("UPDATE_OPERATION_STATUS", Duration::from_millis(800))
            .await
            .is_empty(),
        "acknowledged, and CREATE had no ID"
    );
    let running = subscription.until_running().await;
    subscription
        .call("KILL", "kill", json!({"task_id": running["task_id"]}))
        .await;
    let killed = subscription.update().await;
    assert_eq!(killed["state"], "TASK_KILLED");
    subscription.acknowledge(&killed).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the volume is not offered back"
        );
        let offer = subscription.offers().await.remove(0);
        let offered_volume = offer["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["disk"]["persistence"]["id"] == "data-0")
            .cloned();
        if let Some(offered) = offered_volume {
            assert_eq!(offered["reservations"][0]["role"], "db");
            assert_eq!(offered["disk"]["volume"]["container_path"], "data");
            assert_eq!(offered["allocation_info"]["role"], "db");
            break;
        }
        subscription.decline(&offer, 0.0).await;
    }
    cluster.shutdown().await;
}

/// §1.7 / §1.10: a lost agent's offers are rescinded; after the removal timeout
/// its tasks are TASK_UNREACHABLE (PARTITION_AWARE) with REASON_AGENT_REMOVED, a
/// FAILURE names the agent, and reconciliation keeps answering TASK_UNREACHABLE.
#[tokio::test]
async fn s1_7_agent_loss() {
    let (cluster, _dir) = cluster(2).await;
    let mut subscription =
        Subscription::start(&cluster.master_url(), framework_info(partition_aware())).await;
    let mut offers = subscription.offers().await;
    offers.sort_by_key(|o| o["hostname"].as_str().unwrap_or_default().to_string());
    let (first, second) = (offers[0].clone(), offers[1].clone());
    subscription
        .launch(&first, vec![task(&first, "doomed")])
        .await;
    let running = subscription.until_running().await;
    // simulated-1 is agent index 1; its offer is outstanding.
    cluster.stop_agent(1).await.unwrap();
    let rescind = subscription.expect("RESCIND").await;
    assert_eq!(rescind["rescind"]["offer_id"], second["id"]);
    cluster.stop_agent(0).await.unwrap();
    let unreachable = subscription.update().await;
    assert_eq!(unreachable["state"], "TASK_UNREACHABLE");
    assert_eq!(unreachable["reason"], "REASON_AGENT_REMOVED");
    assert!(unreachable.get("unreachable_time").is_some());
    let failure = subscription.expect("FAILURE").await;
    assert!(failure["failure"].get("agent_id").is_some());
    subscription
        .reconcile(vec![
            json!({"task_id": running["task_id"], "agent_id": running["agent_id"]}),
        ])
        .await;
    assert_eq!(subscription.update().await["state"], "TASK_UNREACHABLE");
    cluster.shutdown().await;
}

/// §4.2 with our client: the scheduler pointed at a standby master only follows
/// its 307 to the leader and subscribes there.
#[actix_rt::test]
async fn s4_2_our_client_follows_the_redirect_of_a_standby() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = mesos_stateful_devcluster::DevClusterThread::spawn(DevClusterConfig {
        masters: 2,
        ..config(&dir.path().join("cluster"), 1)
    })
    .unwrap();
    let standby = cluster.master_urls()[1].clone();
    let scheduler =
        crate::support::start_scheduler(standby, dir.path(), crate::support::test_executor()).await;
    crate::support::wait_for("the scheduler subscribed to the leader", WAIT, || async {
        (cluster.subscribed_frameworks().len() == 1).then_some(())
    })
    .await;
    assert_eq!(cluster.leader(), Some(0));
    scheduler.stop().await.unwrap();
    cluster.shutdown();
}
