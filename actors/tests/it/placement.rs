//! Placement through the whole actor system: persistent volumes reserved, created and
//! released, rescinded offers dropped, SUPPRESS and REVIVE, and backpressure.

use std::sync::Arc;

use mesos_stateful_actors::actor::{System, SystemConfig};
use mesos_stateful_actors::domain::launch::{ContainerPlan, ExecutorLaunch};
use mesos_stateful_actors::domain::offers::{FRAMEWORK_ID_LABEL, MEMBER_LABEL, PERSISTENCE_LABEL};
use mesos_stateful_actors::domain::operations::OperationError;
use mesos_stateful_actors::domain::view::{InstanceView, MemberView};
use mesos_stateful_actors::mesos::RecordingMesos;
use mesos_stateful_actors::telemetry::Metrics;
use mesos_stateful_actors::workload::{Workload, WorkloadConfig};
use mesos_stateful_actors::ActorError;
use mesos_stateful_proto::v1;
use mesos_stateful_proto::v1::offer::operation::Type as Operation;
use mesos_stateful_proto::v1::scheduler::{call, event, Event};
use mesos_stateful_store::records::{InstanceStatus, VolumeSpec};
use mesos_stateful_store::{MemPersister, StateStore};

use super::{eventually, offers, spec, update, Echo};

/// [`Echo`] registered with a role of its own, so that it may reserve.
#[derive(Debug)]
struct Reserving;

impl Workload for Reserving {
    fn config(&self) -> WorkloadConfig {
        WorkloadConfig {
            role: "db".to_string(),
            ..WorkloadConfig::default()
        }
    }

    fn start_master(
        &self,
        instance: &InstanceView,
        member: &MemberView,
        port: u16,
    ) -> ContainerPlan {
        Echo.start_master(instance, member, port)
    }

    fn start_replica(
        &self,
        instance: &InstanceView,
        member: &MemberView,
        port: u16,
        master: Option<&MemberView>,
    ) -> ContainerPlan {
        Echo.start_replica(instance, member, port, master)
    }
}

async fn start_with(
    mesos: &RecordingMesos,
    workload: Arc<dyn Workload>,
    queue: mesos_stateful_actors::actor::buffer_manager::QueueSettings,
) -> System {
    System::start(
        StateStore::open(Arc::new(MemPersister::new())).unwrap(),
        Arc::new(mesos.clone()),
        workload,
        SystemConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: ExecutorLaunch::default(),
            metrics: Arc::new(Metrics::new()),
            api: Default::default(),
            recovery: Default::default(),
            queue,
        },
    )
    .await
    .unwrap()
}

fn operations(mesos: &RecordingMesos) -> Vec<(String, Vec<i32>)> {
    mesos
        .calls_of(call::Type::Accept)
        .into_iter()
        .filter_map(|c| c.accept)
        .map(|accept| {
            (
                accept.offer_ids[0].value.clone(),
                accept.operations.iter().filter_map(|o| o.r#type).collect(),
            )
        })
        .collect()
}

/// An offer from agent `a1` carrying the reservation and volume made for `c-0`.
fn reservation_offer(id: &str) -> Event {
    let labels = v1::Labels {
        labels: [
            (FRAMEWORK_ID_LABEL, "fw"),
            (MEMBER_LABEL, "c-0"),
            (PERSISTENCE_LABEL, "c-0.1"),
        ]
        .into_iter()
        .map(|(key, value)| v1::Label {
            key: key.into(),
            value: Some(value.into()),
        })
        .collect(),
    };
    #[allow(deprecated)]
    let reserved = |name: &str, value: f64| v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        role: Some("db".into()),
        reservation: Some(v1::resource::ReservationInfo {
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut volume = reserved("disk", 256.0);
    volume.disk = Some(v1::resource::DiskInfo {
        persistence: Some(v1::resource::disk_info::Persistence {
            id: "c-0.1".into(),
            principal: None,
        }),
        volume: Some(v1::Volume {
            mode: v1::volume::Mode::Rw as i32,
            container_path: "data".into(),
            ..Default::default()
        }),
        source: None,
    });
    let mut event = offers(id, "a1", (31000, 31010));
    if let Some(offers) = &mut event.offers {
        offers.offers[0]
            .resources
            .extend([reserved("cpus", 0.2), reserved("mem", 128.0), volume]);
    }
    event
}

#[actix_rt::test]
async fn a_volume_is_reserved_created_and_launched_then_released_on_delete() {
    let mesos = RecordingMesos::subscribed("fw");
    let system = start_with(&mesos, Arc::new(Reserving), Default::default()).await;
    let mut with_volume = spec(0);
    with_volume.volume = Some(VolumeSpec {
        size_mb: 256.0,
        container_path: "data".into(),
    });
    system
        .creator
        .create("c".into(), with_volume)
        .await
        .unwrap();
    system
        .handle_event(offers("o1", "a1", (31000, 31010)))
        .await
        .unwrap();
    eventually("the accept", || async { !operations(&mesos).is_empty() }).await;
    assert_eq!(
        operations(&mesos)[0],
        (
            "o1".to_string(),
            vec![
                Operation::Reserve as i32,
                Operation::Create as i32,
                Operation::Launch as i32
            ]
        )
    );
    // The binding was persisted with the placement.
    let state = system.state.get("c").unwrap();
    let binding = state.tasks[&0].volume.clone().expect("the member is bound");
    assert_eq!(
        (binding.agent_id.as_str(), binding.persistence_id.as_str()),
        ("a1", "c-0.1")
    );

    system.destroyer.delete("c").await.unwrap();
    system
        .handle_event(update("c-0.1", "a1", v1::TaskState::TaskKilled, Some(1)))
        .await
        .unwrap();
    // The reservation comes back in an offer: DESTROY, then UNRESERVE.
    system.handle_event(reservation_offer("o2")).await.unwrap();
    eventually("the release", || async { operations(&mesos).len() == 2 }).await;
    assert_eq!(
        operations(&mesos)[1],
        (
            "o2".to_string(),
            vec![Operation::Destroy as i32, Operation::Unreserve as i32]
        )
    );
    eventually("the binding removed", || async {
        let state = system.state.get("c").unwrap();
        state.tasks[&0].volume.is_none()
    })
    .await;
    let status = system.state.get("c").unwrap().instance.status;
    assert!(matches!(
        status,
        InstanceStatus::Deleting | InstanceStatus::Deleted
    ));
}

#[actix_rt::test]
async fn rescinded_offers_are_dropped_before_matching() {
    let mesos = RecordingMesos::subscribed("fw");
    let system = start_with(&mesos, Arc::new(Echo), Default::default()).await;
    system.creator.create("r".into(), spec(0)).await.unwrap();
    system
        .handle_event(offers("gone", "a1", (31000, 31010)))
        .await
        .unwrap();
    system
        .handle_event(Event {
            r#type: Some(event::Type::Rescind as i32),
            rescind: Some(event::Rescind {
                offer_id: v1::OfferId {
                    value: "gone".into(),
                },
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    system
        .handle_event(offers("kept", "a2", (31000, 31010)))
        .await
        .unwrap();
    eventually("the launch", || async { !operations(&mesos).is_empty() }).await;
    assert_eq!(operations(&mesos)[0].0, "kept");
    let mentions_gone = mesos.calls().iter().any(|c| {
        let ids = c
            .accept
            .iter()
            .flat_map(|a| a.offer_ids.iter())
            .chain(c.decline.iter().flat_map(|d| d.offer_ids.iter()));
        ids.into_iter().any(|id| id.value == "gone")
    });
    assert!(!mentions_gone, "a rescinded offer was answered");
}

#[actix_rt::test]
async fn offers_are_revived_for_work_and_suppressed_when_idle() {
    let mesos = RecordingMesos::subscribed("fw");
    let system = start_with(&mesos, Arc::new(Reserving), Default::default()).await;
    system.handle_event(super::subscribed("fw")).await.unwrap();
    eventually("the revive after subscribing", || async {
        mesos
            .calls_of(call::Type::Revive)
            .iter()
            .any(|c| c.revive.as_ref().is_some_and(|r| r.roles == ["db"]))
    })
    .await;
    // Nothing queued for a while: offers are suppressed for the role.
    system
        .handle_event(offers("o1", "a1", (31000, 31010)))
        .await
        .unwrap();
    eventually_long(&mesos, call::Type::Suppress, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let suppress = mesos.calls_of(call::Type::Suppress);
    assert_eq!(suppress.len(), 1, "suppressed once");
    assert_eq!(suppress[0].suppress.as_ref().unwrap().roles, ["db"]);
    // Work arrives: revived at once.
    let revives = mesos.calls_of(call::Type::Revive).len();
    system.creator.create("w".into(), spec(0)).await.unwrap();
    eventually("the revive for work", || async {
        mesos.calls_of(call::Type::Revive).len() == revives + 1
    })
    .await;
}

/// Waits up to ten seconds for `count` calls of `kind`.
async fn eventually_long(mesos: &RecordingMesos, kind: call::Type, count: usize) {
    for _ in 0..100 {
        if mesos.calls_of(kind).len() >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {count} {kind:?} calls");
}

#[actix_rt::test]
async fn creates_are_refused_while_the_launch_queue_is_full() {
    let mesos = RecordingMesos::subscribed("fw");
    let queue = mesos_stateful_actors::actor::buffer_manager::QueueSettings {
        max_queued_launches: 1,
        retry_after: std::time::Duration::from_secs(7),
    };
    let system = start_with(&mesos, Arc::new(Echo), queue).await;
    system
        .creator
        .create("first".into(), spec(0))
        .await
        .unwrap();
    eventually("the first job queued", || async {
        system.buffer.pending().await.unwrap().len() == 1
    })
    .await;
    match system.creator.create("second".into(), spec(0)).await {
        Err(ActorError::QueueFull {
            queued: 1,
            limit: 1,
            retry_after_seconds: 7,
            subscribed: true,
        }) => {}
        other => panic!("expected a full queue, got {other:?}"),
    }
    // Nothing of the refused create was stored.
    assert!(system.state.get("second").is_none());
    // An operation that would queue a launch is refused the same way, before it
    // changes anything.
    let before = system.state.get("first").unwrap();
    match system.maintainer.restart_member("first", 0).await {
        Err(OperationError::QueueFull {
            queued: 1,
            retry_after_seconds: 7,
            ..
        }) => {}
        other => panic!("expected a full queue, got {other:?}"),
    }
    let after = system.state.get("first").unwrap();
    assert_eq!(after.tasks, before.tasks);
    // Once the queue drains, creates are admitted again.
    system
        .handle_event(offers("o1", "a1", (31000, 31010)))
        .await
        .unwrap();
    eventually("the queue drained", || async {
        system.buffer.pending().await.unwrap().is_empty()
    })
    .await;
    system
        .creator
        .create("second".into(), spec(0))
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_large_round_launches_every_member_once_over_many_offers() {
    let mesos = RecordingMesos::subscribed("fw");
    let store = StateStore::open(Arc::new(MemPersister::new())).unwrap();
    let system = super::start(&mesos, store.clone()).await;
    const INSTANCES: usize = 300;
    for i in 0..INSTANCES {
        system
            .creator
            .create(format!("g{i}"), spec(0))
            .await
            .unwrap();
    }
    // One OFFERS event of 24 offers of 4 cpus: each holds 16 members (0.2 cpus and
    // the executor's 0.05), so the round uses 19 of them and persists more records
    // than one group holds.
    let mut event = offers("o0", "a0", (31000, 31100));
    for i in 1..24 {
        let more = offers(&format!("o{i}"), &format!("a{i}"), (31000, 31100));
        if let (Some(all), Some(more)) = (&mut event.offers, more.offers) {
            all.offers.extend(more.offers);
        }
    }
    system.handle_event(event).await.unwrap();
    eventually("every launch", || async {
        super::launched_tasks(&mesos).len() >= INSTANCES
    })
    .await;

    let accepts: Vec<v1::scheduler::call::Accept> = mesos
        .calls_of(call::Type::Accept)
        .into_iter()
        .filter_map(|c| c.accept)
        .collect();
    assert_eq!(accepts.len(), 19, "one ACCEPT per offer used");
    let mut launched = std::collections::BTreeMap::new();
    for accept in &accepts {
        assert_eq!(accept.offer_ids.len(), 1);
        let offer = accept.offer_ids[0].value.clone();
        for task in accept
            .operations
            .iter()
            .filter_map(|op| op.launch.as_ref())
            .flat_map(|l| l.task_infos.iter())
        {
            let agent = format!("a{}", offer.trim_start_matches('o'));
            assert_eq!(task.agent_id.value, agent);
            assert!(
                launched.insert(task.task_id.value.clone(), agent).is_none(),
                "{} launched twice",
                task.task_id.value
            );
        }
    }
    assert_eq!(launched.len(), INSTANCES);
    // Every placement was persisted, on the agent it was launched on.
    for i in 0..INSTANCES {
        let tasks = store.load_tasks(&format!("g{i}")).unwrap();
        let master = &tasks[0];
        assert_eq!(master.state.as_deref(), Some("TASK_STAGING"));
        assert_eq!(master.agent_id.as_ref(), launched.get(&master.task_id));
    }
    let unused: usize = mesos
        .calls_of(call::Type::Decline)
        .into_iter()
        .filter_map(|c| c.decline)
        .map(|d| d.offer_ids.len())
        .sum();
    assert_eq!(unused, 5, "the offers left over are declined");
}
