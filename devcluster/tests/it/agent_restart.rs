//! Agent restarts: executors re-subscribe while the agent recovers, or are destroyed
//! when the re-registration timeout passes.

use std::time::Duration;

use bytes::Bytes;
use mesos_stateful_devcluster::{DevCluster, DevClusterError};
use mesos_stateful_proto::v1::{self, executor, scheduler, task_status, TaskId, TaskState};
use mesos_stateful_proto::{media, Message};
use reqwest::StatusCode;

use super::*;

/// A checkpointing framework (only those survive agent restarts).
fn checkpointing(partition_aware: bool) -> v1::FrameworkInfo {
    let mut info = framework_info(None);
    info.checkpoint = Some(true);
    if partition_aware {
        info.capabilities = vec![v1::framework_info::Capability {
            r#type: Some(v1::framework_info::capability::Type::PartitionAware as i32),
        }];
    }
    info
}

/// A cluster whose status updates are not retried during a test, so that every
/// UPDATE event the scheduler sees is a forward, not a retry.
async fn cluster(dir: &std::path::Path) -> DevCluster {
    let mut config = config(dir);
    config.status_update_retry_interval = Duration::from_secs(60);
    DevCluster::start(config).await.unwrap()
}

/// Launches task `t1` on executor `e1` (a sleeping process the test plays), lets the
/// fake executor report it RUNNING and acknowledges that.
async fn running_task(cluster: &DevCluster, scheduler: &mut Scheduler) -> (FakeExecutor, TaskId) {
    let offer = scheduler.offer().await;
    scheduler
        .launch(&offer, task(&offer, "t1", "e1", "exec sleep 30"))
        .await;
    let agent = &cluster.agent_urls()[0];
    let mut executor = FakeExecutor::subscribe(agent, &scheduler.framework_id, "e1").await;
    assert_eq!(
        executor.next().await.r#type(),
        executor::event::Type::Subscribed
    );
    let task_id = executor.next().await.launch.unwrap().task.task_id;
    let (status, _) = executor.update(&task_id, TaskState::TaskRunning).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        executor.next().await.r#type(),
        executor::event::Type::Acknowledged
    );
    let running = scheduler.update().await;
    assert_eq!(running.state(), TaskState::TaskRunning);
    scheduler.acknowledge(&running).await;
    (executor, task_id)
}

/// Asserts the executor's stream has ended (the agent dropped it).
async fn expect_stream_ended(executor: &mut FakeExecutor) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, executor.events.recv()).await {
            Ok(None) => return,
            Ok(Some(_)) => continue,
            Err(_) => panic!("the executor stream did not end"),
        }
    }
}

/// SUBSCRIBEs again as `executor`, replaying `updates`; returns the HTTP status and,
/// on success, the new stream in place of the old one.
async fn resubscribe(executor: &mut FakeExecutor, updates: Vec<v1::TaskStatus>) -> StatusCode {
    let mut call = executor.call(executor::call::Type::Subscribe);
    call.subscribe = Some(executor::call::Subscribe {
        unacknowledged_tasks: Vec::new(),
        unacknowledged_updates: updates
            .into_iter()
            .map(|status| executor::call::Update { status })
            .collect(),
    });
    let response = post(
        &executor.url,
        call.encode_to_vec(),
        &[
            ("Content-Type", media::PROTOBUF),
            ("Accept", media::PROTOBUF),
        ],
    )
    .await;
    let status = response.status();
    if status == StatusCode::OK {
        executor.events = pump(response);
    }
    status
}

async fn message(executor: &FakeExecutor) -> StatusCode {
    let mut call = executor.call(executor::call::Type::Message);
    call.message = Some(executor::call::Message {
        data: Bytes::from_static(b"hello"),
    });
    post(
        &executor.url,
        call.encode_to_vec(),
        &[("Content-Type", media::PROTOBUF)],
    )
    .await
    .status()
}

#[tokio::test]
async fn reregistered_executor_keeps_its_task_and_its_replayed_update_is_forwarded_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), checkpointing(false)).await;
    let (mut executor, task_id) = running_task(&cluster, &mut scheduler).await;

    cluster
        .restart_agent(0, Duration::from_millis(300))
        .await
        .unwrap();
    expect_stream_ended(&mut executor).await;

    // An update the agent never acknowledged is replayed in the re-SUBSCRIBE.
    let uuid = Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let replayed = v1::TaskStatus {
        task_id: task_id.clone(),
        state: TaskState::TaskRunning as i32,
        source: Some(task_status::Source::Executor as i32),
        message: Some("replayed".into()),
        uuid: Some(uuid.clone()),
        ..Default::default()
    };
    assert_eq!(
        resubscribe(&mut executor, vec![replayed.clone()]).await,
        StatusCode::OK
    );
    assert_eq!(
        executor.next().await.r#type(),
        executor::event::Type::Subscribed
    );
    let acknowledged = executor.next().await;
    assert_eq!(acknowledged.r#type(), executor::event::Type::Acknowledged);
    assert_eq!(acknowledged.acknowledged.unwrap().uuid, uuid);
    let forwarded = scheduler.update().await;
    assert_eq!(forwarded.uuid.as_ref(), Some(&uuid));
    assert_eq!(forwarded.message.as_deref(), Some("replayed"));

    // The same update replayed again is a duplicate: not forwarded a second time.
    assert_eq!(
        resubscribe(&mut executor, vec![replayed]).await,
        StatusCode::OK
    );
    scheduler
        .expect_none(scheduler::event::Type::Update, Duration::from_millis(500))
        .await;
    scheduler.acknowledge(&forwarded).await;

    // Past the re-registration timeout the executor and its task live on.
    tokio::time::sleep(Duration::from_millis(800)).await;
    scheduler
        .expect_none(scheduler::event::Type::Update, Duration::from_millis(300))
        .await;
    scheduler.reconcile(vec![("t1", None)]).await;
    assert_eq!(scheduler.update().await.state(), TaskState::TaskRunning);
    let (status, _) = executor.update(&task_id, TaskState::TaskRunning).await;
    assert_eq!(status, StatusCode::ACCEPTED, "recovery is complete");
    cluster.shutdown().await;
}

#[tokio::test]
async fn executor_that_does_not_reregister_is_destroyed_and_its_task_lost() {
    for (partition_aware, expected) in [(false, TaskState::TaskLost), (true, TaskState::TaskGone)] {
        let dir = tempfile::tempdir().unwrap();
        let cluster = cluster(dir.path()).await;
        let mut scheduler =
            Scheduler::subscribe(&cluster.master_url(), checkpointing(partition_aware)).await;
        let (mut executor, task_id) = running_task(&cluster, &mut scheduler).await;

        cluster
            .restart_agent(0, Duration::from_millis(200))
            .await
            .unwrap();
        let back = tokio::time::Instant::now();
        expect_stream_ended(&mut executor).await;

        let lost = scheduler.update().await;
        assert!(
            back.elapsed() >= Duration::from_millis(900),
            "not before the re-registration timeout"
        );
        assert_eq!(lost.task_id, task_id);
        assert_eq!(lost.state(), expected, "partition aware: {partition_aware}");
        assert_eq!(
            lost.reason(),
            task_status::Reason::ExecutorReregistrationTimeout
        );
        assert_eq!(lost.source(), task_status::Source::Agent);
        assert!(lost.uuid.is_some(), "an agent update, to be acknowledged");
        let failure = scheduler
            .expect(scheduler::event::Type::Failure)
            .await
            .failure
            .unwrap();
        assert_eq!(failure.executor_id.unwrap().value, "e1");
        scheduler.acknowledge(&lost).await;

        // The executor is gone: a late SUBSCRIBE names an unknown executor.
        assert_eq!(
            resubscribe(&mut executor, Vec::new()).await,
            StatusCode::BAD_REQUEST
        );
        cluster.shutdown().await;
    }
}

#[tokio::test]
async fn updates_and_messages_get_503_until_recovery_completes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), checkpointing(false)).await;
    let (mut executor, task_id) = running_task(&cluster, &mut scheduler).await;

    let unknown = cluster.restart_agent(7, Duration::ZERO).await;
    assert!(
        matches!(unknown, Err(DevClusterError::AgentRestart { index: 7, .. })),
        "{unknown:?}"
    );

    cluster
        .restart_agent(0, Duration::from_millis(100))
        .await
        .unwrap();
    expect_stream_ended(&mut executor).await;
    assert_eq!(resubscribe(&mut executor, Vec::new()).await, StatusCode::OK);
    assert_eq!(
        executor.next().await.r#type(),
        executor::event::Type::Subscribed
    );

    let (status, _) = executor.update(&task_id, TaskState::TaskRunning).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(message(&executor).await, StatusCode::SERVICE_UNAVAILABLE);
    scheduler
        .expect_none(scheduler::event::Type::Update, Duration::from_millis(300))
        .await;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, uuid) = executor.update(&task_id, TaskState::TaskRunning).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(message(&executor).await, StatusCode::ACCEPTED);
    assert_eq!(scheduler.update().await.uuid.as_ref(), Some(&uuid));
    cluster.shutdown().await;
}
