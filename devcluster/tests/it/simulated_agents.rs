//! Simulated agents through the HTTP API: offers from every agent, tasks that run
//! without a process, updates that wait for their acknowledgement.

use mesos_stateful_devcluster::SimulatedAgents;

use super::*;

#[tokio::test]
async fn simulated_agents_offer_and_run_tasks_without_processes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(DevClusterConfig {
        agents: Vec::new(),
        simulated_agents: SimulatedAgents {
            count: 50,
            delay: Duration::from_millis(200),
            ..SimulatedAgents::default()
        },
        // No retry of TASK_STARTING may race its acknowledgement below.
        status_update_retry_interval: Duration::from_secs(10),
        ..config(dir.path())
    })
    .await
    .unwrap();
    assert!(cluster.agent_urls().is_empty(), "no agent listens");
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), framework_info(None)).await;
    let offers = scheduler
        .expect(scheduler::event::Type::Offers)
        .await
        .offers
        .unwrap()
        .offers;
    assert_eq!(offers.len(), 50, "one offer per agent, in one event");
    let offer = &offers[7];
    assert_eq!(offer.hostname, "simulated-7");

    scheduler
        .launch(
            offer,
            task(offer, "sim-task", "sim-executor", "/nonexistent"),
        )
        .await;
    let starting = scheduler.update().await;
    assert_eq!(starting.state(), TaskState::TaskStarting);
    assert_eq!(starting.source(), task_status::Source::Executor);
    // TASK_RUNNING is due after 200 ms but waits for the acknowledgement.
    scheduler
        .expect_none(scheduler::event::Type::Update, Duration::from_millis(400))
        .await;
    scheduler.acknowledge(&starting).await;
    let running = scheduler.update().await;
    assert_eq!(running.state(), TaskState::TaskRunning);
    scheduler.acknowledge(&running).await;

    let mut kill = scheduler.base(scheduler::call::Type::Kill);
    kill.kill = Some(scheduler::call::Kill {
        task_id: running.task_id.clone(),
        ..Default::default()
    });
    scheduler.call(kill).await;
    let killed = scheduler.update().await;
    assert_eq!(killed.state(), TaskState::TaskKilled);
    scheduler.acknowledge(&killed).await;

    // Once acknowledged, the task is gone: reconciliation answers it as unknown.
    scheduler
        .reconcile(vec![("sim-task", Some(offer.agent_id.clone()))])
        .await;
    let answer = scheduler.update().await;
    assert_eq!(answer.reason(), task_status::Reason::Reconciliation);
    assert_eq!(answer.state(), TaskState::TaskLost, "not partition-aware");
    assert!(!dir.path().join("agents").exists(), "no sandbox was made");
    cluster.shutdown().await;
}
