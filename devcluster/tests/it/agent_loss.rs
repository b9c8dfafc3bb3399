//! Agent loss through the HTTP API: a lost agent's running task is reported
//! unreachable once the removal timeout has passed, and the agent is gone for good.

use mesos_stateful_proto::v1::{self, scheduler, task_status, TaskState};

use super::command_tasks::{command_task, shell};
use super::*;

#[tokio::test]
async fn stopped_agent_becomes_unreachable_and_its_task_too() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        agent_removal_timeout: Duration::from_millis(300),
        ..config(dir.path())
    })
    .await
    .unwrap();
    let info = FrameworkInfo {
        capabilities: vec![v1::framework_info::Capability {
            r#type: Some(v1::framework_info::capability::Type::PartitionAware as i32),
        }],
        ..framework_info(None)
    };
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), info).await;
    let offer = scheduler.offer().await;
    scheduler
        .launch(&offer, command_task(&offer, "sleeper", shell("sleep 100")))
        .await;
    loop {
        let status = scheduler.update().await;
        scheduler.acknowledge(&status).await;
        if status.state() == TaskState::TaskRunning {
            break;
        }
    }

    cluster.stop_agent(0).await.unwrap();
    let status = scheduler.update().await;
    assert_eq!(status.state(), TaskState::TaskUnreachable);
    assert_eq!(status.reason(), task_status::Reason::AgentRemoved);
    assert!(status.uuid.is_none());
    let failure = scheduler.expect(scheduler::event::Type::Failure).await;
    assert_eq!(
        failure.failure.unwrap().agent_id,
        Some(offer.agent_id.clone())
    );
    assert!(
        cluster.restart_agent(0, Duration::ZERO).await.is_err(),
        "a lost agent does not come back"
    );
    assert!(cluster.stop_agent(7).await.is_err(), "no such agent");
    cluster.shutdown().await;
}
