//! Dynamic reservations and persistent volumes on a real agent: a volume is a
//! directory that outlives its tasks and shows up in their sandboxes.

use mesos_stateful_proto::v1::{self, scheduler, FrameworkInfo, TaskState};

use super::command_tasks::{command_task, follow, shell, states};
use super::*;

fn db_framework() -> FrameworkInfo {
    FrameworkInfo {
        roles: vec!["db".into()],
        principal: Some("ops".into()),
        capabilities: vec![
            v1::framework_info::Capability {
                r#type: Some(v1::framework_info::capability::Type::MultiRole as i32),
            },
            v1::framework_info::Capability {
                r#type: Some(v1::framework_info::capability::Type::ReservationRefinement as i32),
            },
        ],
        ..framework_info(None)
    }
}

fn reserved(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        reservations: vec![v1::resource::ReservationInfo {
            r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
            role: Some("db".into()),
            principal: Some("ops".into()),
            labels: None,
        }],
        ..scalar(name, value)
    }
}

fn data_volume() -> v1::Resource {
    v1::Resource {
        disk: Some(v1::resource::DiskInfo {
            persistence: Some(v1::resource::disk_info::Persistence {
                id: "data-0".into(),
                principal: Some("ops".into()),
            }),
            volume: Some(v1::Volume {
                mode: v1::volume::Mode::Rw as i32,
                container_path: "data".into(),
                ..Default::default()
            }),
            source: None,
        }),
        ..reserved("disk", 64.0)
    }
}

fn task_on_volume(offer: &v1::Offer, task_id: &str, command: &str) -> v1::TaskInfo {
    let mut task = command_task(offer, task_id, shell(command));
    task.resources = vec![reserved("cpus", 0.5), reserved("mem", 64.0), data_volume()];
    task
}

async fn accept(scheduler: &Scheduler, offer: &v1::Offer, operations: Vec<v1::offer::Operation>) {
    let mut call = scheduler.base(scheduler::call::Type::Accept);
    call.accept = Some(scheduler::call::Accept {
        offer_ids: vec![offer.id.clone()],
        operations,
        filters: Some(v1::Filters {
            refuse_seconds: Some(0.0),
        }),
    });
    scheduler.call(call).await;
}

/// The next offer that holds the volume.
async fn offer_with_volume(scheduler: &mut Scheduler) -> v1::Offer {
    loop {
        let offer = scheduler.offer().await;
        if offer.resources.contains(&v1::Resource {
            allocation_info: Some(v1::resource::AllocationInfo {
                role: Some("db".into()),
            }),
            ..data_volume()
        }) {
            return offer;
        }
        scheduler.decline(&offer, 0.0).await;
    }
}

#[tokio::test]
async fn volume_data_survives_its_task_and_is_seen_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = DevCluster::start(config(dir.path())).await.unwrap();
    let mut scheduler = Scheduler::subscribe(&cluster.master_url(), db_framework()).await;
    let offer = scheduler.offer().await;
    let mut reserve = v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Reserve as i32),
        ..Default::default()
    };
    reserve.reserve = Some(v1::offer::operation::Reserve {
        resources: vec![
            reserved("cpus", 0.5),
            reserved("mem", 64.0),
            reserved("disk", 64.0),
        ],
        ..Default::default()
    });
    let mut create = v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Create as i32),
        ..Default::default()
    };
    create.create = Some(v1::offer::operation::Create {
        volumes: vec![data_volume()],
    });
    let launch = |task: v1::TaskInfo| v1::offer::Operation {
        r#type: Some(v1::offer::operation::Type::Launch as i32),
        launch: Some(v1::offer::operation::Launch {
            task_infos: vec![task],
        }),
        ..Default::default()
    };
    let writer = task_on_volume(&offer, "writer", "echo kept > data/file");
    accept(&scheduler, &offer, vec![reserve, create, launch(writer)]).await;
    let updates = follow(&mut scheduler).await;
    assert_eq!(states(&updates).last(), Some(&TaskState::TaskFinished));

    let offer = offer_with_volume(&mut scheduler).await;
    let reader = task_on_volume(&offer, "reader", "test \"$(cat data/file)\" = kept");
    accept(&scheduler, &offer, vec![launch(reader)]).await;
    let updates = follow(&mut scheduler).await;
    assert_eq!(
        states(&updates).last(),
        Some(&TaskState::TaskFinished),
        "{updates:?}"
    );
    cluster.shutdown().await;
}
