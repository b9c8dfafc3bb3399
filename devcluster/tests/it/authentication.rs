//! HTTP Basic authentication of the scheduler endpoint (protocol file §5, §1.5).

use base64::Engine;
use mesos_stateful_devcluster::Credential;
use mesos_stateful_proto::v1::scheduler;

use super::*;

fn basic(principal: &str, secret: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{principal}:{secret}"));
    format!("Basic {token}")
}

async fn subscribe_as(
    url: &str,
    info: FrameworkInfo,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut headers = vec![
        ("Content-Type", media::PROTOBUF),
        ("Accept", media::PROTOBUF),
    ];
    if let Some(value) = authorization {
        headers.push(("Authorization", value));
    }
    post(url, subscribe_call(info).encode_to_vec(), &headers).await
}

/// The first event of a subscription stream.
async fn first_event(response: reqwest::Response) -> scheduler::Event {
    let mut events = pump::<scheduler::Event>(response);
    tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn scheduler_calls_must_authenticate_as_the_framework_principal() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        credentials: vec![
            Credential {
                principal: "ops".into(),
                secret: "s3cret".into(),
            },
            Credential {
                principal: "eve".into(),
                secret: "other".into(),
            },
        ],
        ..config(dir.path())
    })
    .await
    .unwrap();
    let url = format!("{}/api/v1/scheduler", cluster.master_url());

    // Missing or wrong credentials: 401 with the realm's challenge, before any
    // other check (even a wrong content type).
    let ops = basic("ops", "s3cret");
    let wrong = basic("ops", "nope");
    for authorization in [None, Some(wrong.as_str())] {
        let response = subscribe_as(&url, framework_info(None), authorization).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=\"mesos-master-scheduler\""
        );
    }
    let response = post(&url, b"x".to_vec(), &[("Content-Type", "text/plain")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A principal other than the authenticated one: 400.
    let claimed = FrameworkInfo {
        principal: Some("eve".into()),
        ..framework_info(None)
    };
    let response = subscribe_as(&url, claimed, Some(&ops)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // No principal: the authenticated one is filled in.
    let response = subscribe_as(&url, framework_info(None), Some(&ops)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stream_id = response.headers()[STREAM_ID_HEADER]
        .to_str()
        .unwrap()
        .to_string();
    let subscribed = first_event(response).await.subscribed.unwrap();

    let revive = scheduler::Call {
        framework_id: Some(subscribed.framework_id.clone()),
        r#type: Some(scheduler::call::Type::Revive as i32),
        revive: Some(scheduler::call::Revive::default()),
        ..Default::default()
    }
    .encode_to_vec();
    let call = |authorization: Option<String>| {
        let url = url.clone();
        let stream_id = stream_id.clone();
        let body = revive.clone();
        async move {
            let mut headers = vec![
                ("Content-Type", media::PROTOBUF.to_string()),
                (STREAM_ID_HEADER, stream_id),
            ];
            if let Some(value) = authorization {
                headers.push(("Authorization", value));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(&url, body, &headers).await.status()
        }
    };
    assert_eq!(call(Some(ops.clone())).await, StatusCode::ACCEPTED);
    assert_eq!(call(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(Some(basic("eve", "other"))).await,
        StatusCode::BAD_REQUEST,
        "another principal than the framework's"
    );
    cluster.shutdown().await;
}
