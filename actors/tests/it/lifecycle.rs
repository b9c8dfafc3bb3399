//! Member lifecycle scripts: relaunch with backoff, promotion, replacement of a
//! member whose agent stays gone, and the operations (scale, restart, replace).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;

use mesos_stateful_actors::actor::operations::{OperationError, SpecUpdate};
use mesos_stateful_actors::actor::{System, SystemConfig};
use mesos_stateful_actors::domain::launch::{substitute, ContainerPlan, ExecutorLaunch};
use mesos_stateful_actors::domain::recovery::RecoveryConfig;
use mesos_stateful_actors::domain::view::{InstanceView, MemberView};
use mesos_stateful_actors::mesos::RecordingMesos;
use mesos_stateful_actors::telemetry::Metrics;
use mesos_stateful_actors::workload::{Action, Workload};
use mesos_stateful_proto::stateful::{scheduler_message, ContainerSpec, SchedulerMessage};
use mesos_stateful_proto::v1;
use mesos_stateful_proto::v1::scheduler::call;
use mesos_stateful_store::records::{InstanceStatus, Role};
use mesos_stateful_store::{MemPersister, StateStore};

use super::{eventually, launched_tasks, offers, spec, status_of, update};

/// Records every callback; promotes replica 1 when the master is lost when asked to.
#[derive(Debug, Default)]
struct Scripted {
    promote: bool,
    calls: Mutex<Vec<String>>,
}

impl Scripted {
    fn note(&self, callback: &str, member: &MemberView) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{callback} {}", member.name));
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Workload for Scripted {
    fn start_master(&self, instance: &InstanceView, _: &MemberView, port: u16) -> ContainerPlan {
        ContainerPlan {
            image: instance.spec.image.clone(),
            args: substitute(&instance.spec.master_args, port, None),
            ..Default::default()
        }
    }

    fn start_replica(
        &self,
        instance: &InstanceView,
        _: &MemberView,
        port: u16,
        master: Option<&MemberView>,
    ) -> ContainerPlan {
        let endpoint = master.and_then(MemberView::endpoint);
        ContainerPlan {
            image: instance.spec.image.clone(),
            args: substitute(
                &instance.spec.replica_args,
                port,
                endpoint.as_ref().map(|(h, p)| (h.as_str(), *p)),
            ),
            ..Default::default()
        }
    }

    fn master_running(&self, _: &InstanceView, member: &MemberView) -> Vec<Action> {
        self.note("master_running", member);
        vec![Action::StartReplicas]
    }

    fn replica_running(&self, _: &InstanceView, member: &MemberView) -> Vec<Action> {
        self.note("replica_running", member);
        Vec::new()
    }

    fn master_lost(&self, _: &InstanceView, member: &MemberView) -> Vec<Action> {
        self.note("master_lost", member);
        if !self.promote {
            return Vec::new();
        }
        vec![
            Action::PromoteMember { ordinal: 1 },
            Action::RunCommand {
                ordinal: 1,
                argv: vec!["promote".into()],
            },
            Action::RepointReplicas { to: 1 },
        ]
    }

    fn replica_lost(&self, _: &InstanceView, member: &MemberView) -> Vec<Action> {
        self.note("replica_lost", member);
        Vec::new()
    }

    fn replica_of_command(
        &self,
        _: &InstanceView,
        _: &MemberView,
        master: &MemberView,
    ) -> Option<Vec<String>> {
        Some(vec!["follow".into(), master.name.clone()])
    }

    fn promote_command(&self, _: &InstanceView, _: &MemberView) -> Option<Vec<String>> {
        self.promote.then(|| vec!["promote".into()])
    }
}

async fn start_with(mesos: &RecordingMesos, workload: Arc<Scripted>) -> System {
    start_on(Arc::new(MemPersister::new()), mesos, workload).await
}

/// A system on `persister`, as a scheduler restarted on the same store is.
async fn start_on(
    persister: Arc<MemPersister>,
    mesos: &RecordingMesos,
    workload: Arc<Scripted>,
) -> System {
    System::start(
        StateStore::open(persister).unwrap(),
        Arc::new(mesos.clone()),
        workload,
        SystemConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: ExecutorLaunch::default(),
            metrics: Arc::new(Metrics::new()),
            api: Default::default(),
            queue: Default::default(),
            recovery: RecoveryConfig {
                backoff_initial: Duration::from_millis(50),
                backoff_max: Duration::from_secs(1),
                replace_after: Duration::from_millis(300),
            },
        },
    )
    .await
    .unwrap()
}

/// Offers a fresh agent until `task_id` is launched; returns its TaskInfo.
async fn launch(system: &System, mesos: &RecordingMesos, task_id: &str) -> v1::TaskInfo {
    let round = launched_tasks(mesos).len();
    let agent = format!("a{round}");
    system
        .handle_event(offers(&format!("o{round}"), &agent, (31000, 31010)))
        .await
        .unwrap();
    eventually(&format!("the launch of {task_id}"), || async {
        launched_tasks(mesos)
            .iter()
            .any(|t| t.task_id.value == task_id)
    })
    .await;
    launched_tasks(mesos)
        .into_iter()
        .find(|t| t.task_id.value == task_id)
        .unwrap()
}

async fn set_state(system: &System, task: &v1::TaskInfo, state: v1::TaskState, uuid: u8) {
    system
        .handle_event(update(
            &task.task_id.value,
            &task.agent_id.value,
            state,
            Some(uuid),
        ))
        .await
        .unwrap();
}

async fn wait_status(system: &System, name: &str, status: InstanceStatus) {
    eventually(status.as_str(), || async {
        status_of(system, name).await == Some(status)
    })
    .await;
}

/// Creates `name` with one replica and runs both members.
async fn running_pair(
    system: &System,
    mesos: &RecordingMesos,
    name: &str,
) -> (v1::TaskInfo, v1::TaskInfo) {
    system.creator.create(name.into(), spec(1)).await.unwrap();
    let master = launch(system, mesos, &format!("{name}-0.1")).await;
    set_state(system, &master, v1::TaskState::TaskRunning, 1).await;
    wait_task(system, name, 1, &format!("{name}-1.1")).await;
    let replica = launch(system, mesos, &format!("{name}-1.1")).await;
    set_state(system, &replica, v1::TaskState::TaskRunning, 2).await;
    wait_status(system, name, InstanceStatus::Running).await;
    (master, replica)
}

/// Waits until the member at `ordinal` of `name` is the incarnation `task_id`.
async fn wait_task(system: &System, name: &str, ordinal: u32, task_id: &str) {
    eventually(task_id, || async {
        let state = system.state.get(name).unwrap();
        state.tasks.get(&ordinal).map(|t| t.task_id.as_str()) == Some(task_id)
    })
    .await;
}

fn kills(mesos: &RecordingMesos) -> Vec<String> {
    mesos
        .calls_of(call::Type::Kill)
        .into_iter()
        .map(|c| c.kill.unwrap().task_id.value)
        .collect()
}

#[actix_rt::test]
async fn a_lost_replica_is_relaunched_in_place_and_the_instance_recovers() {
    let mesos = RecordingMesos::subscribed("fw");
    let workload = Arc::new(Scripted::default());
    let system = start_with(&mesos, workload.clone()).await;
    let (_, replica) = running_pair(&system, &mesos, "deg").await;

    set_state(&system, &replica, v1::TaskState::TaskFailed, 3).await;
    wait_status(&system, "deg", InstanceStatus::Degraded).await;
    wait_task(&system, "deg", 1, "deg-1.2").await;
    let state = system.state.get("deg").unwrap();
    assert_eq!(state.tasks[&1].failures, 1);
    assert_eq!(state.tasks[&1].role, Role::Replica);

    let relaunched = launch(&system, &mesos, "deg-1.2").await;
    set_state(&system, &relaunched, v1::TaskState::TaskRunning, 4).await;
    wait_status(&system, "deg", InstanceStatus::Running).await;
    assert_eq!(
        workload.calls(),
        [
            "master_running deg-0",
            "replica_running deg-1",
            "replica_lost deg-1",
            "replica_running deg-1"
        ]
    );
    // A repeated update fires nothing.
    set_state(&system, &relaunched, v1::TaskState::TaskRunning, 5).await;
    assert_eq!(workload.calls().len(), 4);
}

#[actix_rt::test]
async fn a_lost_master_is_promoted_away_and_comes_back_as_a_replica() {
    let mesos = RecordingMesos::subscribed("fw");
    let workload = Arc::new(Scripted {
        promote: true,
        ..Scripted::default()
    });
    let system = start_with(&mesos, workload.clone()).await;
    let (master, replica) = running_pair(&system, &mesos, "pro").await;

    set_state(&system, &master, v1::TaskState::TaskFailed, 3).await;
    // The promotion is persisted, then the command goes to the new master's executor.
    eventually("the promote command", || async {
        !mesos.calls_of(call::Type::Message).is_empty()
    })
    .await;
    let message = mesos.calls_of(call::Type::Message)[0]
        .message
        .clone()
        .unwrap();
    assert_eq!(message.agent_id.value, replica.agent_id.value);
    let Some(scheduler_message::Payload::RunCommand(run)) =
        SchedulerMessage::decode(message.data).unwrap().payload
    else {
        panic!("not a command");
    };
    assert_eq!(
        (run.task_id.as_str(), run.argv),
        ("pro-1.1", vec!["promote".to_string()])
    );
    let state = system.state.get("pro").unwrap();
    assert_eq!(state.tasks[&1].role, Role::Master);
    assert_eq!(state.tasks[&0].role, Role::Replica);
    assert_eq!(state.instance.status, InstanceStatus::Degraded);
    assert_eq!(
        state.view().master().map(|m| m.name.as_str()),
        Some("pro-1")
    );

    // The old master comes back as a replica of the new one.
    wait_task(&system, "pro", 0, "pro-0.2").await;
    let back = launch(&system, &mesos, "pro-0.2").await;
    let container = ContainerSpec::decode(back.data.clone().unwrap()).unwrap();
    let port = replica
        .resources
        .iter()
        .find(|r| r.name == "ports")
        .unwrap();
    let port = port.ranges.as_ref().unwrap().range[0].begin.to_string();
    assert!(
        container.args.windows(3).any(|w| w[0] == "--replicaof"
            && w[1] == format!("{}.example", replica.agent_id.value)
            && w[2] == port),
        "{:?}",
        container.args
    );
    set_state(&system, &back, v1::TaskState::TaskRunning, 4).await;
    wait_status(&system, "pro", InstanceStatus::Running).await;
    assert_eq!(
        workload.calls(),
        [
            "master_running pro-0",
            "replica_running pro-1",
            "master_lost pro-0",
            "replica_running pro-0"
        ]
    );
}

#[actix_rt::test]
async fn a_member_whose_agent_stays_gone_is_replaced_and_its_return_killed() {
    let mesos = RecordingMesos::subscribed("fw");
    let system = start_with(&mesos, Arc::new(Scripted::default())).await;
    system.creator.create("gone".into(), spec(0)).await.unwrap();
    let first = launch(&system, &mesos, "gone-0.1").await;
    set_state(&system, &first, v1::TaskState::TaskRunning, 1).await;
    wait_status(&system, "gone", InstanceStatus::Running).await;

    set_state(&system, &first, v1::TaskState::TaskUnreachable, 2).await;
    wait_status(&system, "gone", InstanceStatus::Recovering).await;
    // Not before the replace timeout…
    let state = system.state.get("gone").unwrap();
    assert_eq!(state.tasks[&0].task_id, "gone-0.1");
    // …then elsewhere, and the unreachable task is killed.
    wait_task(&system, "gone", 0, "gone-0.2").await;
    let second = launch(&system, &mesos, "gone-0.2").await;
    assert!(kills(&mesos).contains(&"gone-0.1".to_string()));
    set_state(&system, &second, v1::TaskState::TaskRunning, 3).await;
    wait_status(&system, "gone", InstanceStatus::Running).await;

    // The old agent comes back with the old task: an orphan, killed again.
    let before = kills(&mesos).len();
    set_state(&system, &first, v1::TaskState::TaskRunning, 4).await;
    eventually("the orphan killed", || async {
        kills(&mesos).len() > before
    })
    .await;
    let state = system.state.get("gone").unwrap();
    assert_eq!(state.tasks[&0].task_id, "gone-0.2");
}

#[actix_rt::test]
async fn scale_restart_and_replace_members() {
    let mesos = RecordingMesos::subscribed("fw");
    let system = start_with(&mesos, Arc::new(Scripted::default())).await;
    let (master, replica) = running_pair(&system, &mesos, "ops").await;
    let version = system.state.get("ops").unwrap().instance.version;

    assert_eq!(
        system.maintainer.scale("ops", 2, Some(version + 7)).await,
        Err(OperationError::VersionMismatch { current: version })
    );
    assert!(matches!(
        system.maintainer.scale("nope", 2, None).await,
        Err(OperationError::NotFound(_))
    ));
    let view = system
        .maintainer
        .scale("ops", 2, Some(version))
        .await
        .unwrap();
    assert_eq!(view.spec.replicas, 2);
    assert_eq!(view.members.len(), 3);
    assert_eq!(view.status, InstanceStatus::Degraded);
    launch(&system, &mesos, "ops-2.1").await;

    // Down to none: the replicas go, their tasks are killed.
    let view = system.maintainer.scale("ops", 0, None).await.unwrap();
    assert_eq!(view.members.len(), 1);
    assert_eq!(view.status, InstanceStatus::Running);
    eventually("the replicas killed", || async {
        let killed = kills(&mesos);
        killed.contains(&replica.task_id.value) && killed.contains(&"ops-2.1".to_string())
    })
    .await;
    // Up again: the re-added ordinal gets a task id never used before.
    let view = system.maintainer.scale("ops", 1, None).await.unwrap();
    assert_eq!(view.members[1].task_id, "ops-1.2");

    // Restart in place: the old task is killed, a new incarnation launched.
    let view = system.maintainer.restart_member("ops", 0).await.unwrap();
    assert_eq!(view.members[0].task_id, "ops-0.2");
    assert_eq!(view.members[0].role, Role::Master);
    assert!(kills(&mesos).contains(&master.task_id.value));
    let view = system.maintainer.replace_member("ops", 1).await.unwrap();
    assert_eq!(view.members[1].task_id, "ops-1.3");
    assert!(matches!(
        system.maintainer.restart_member("ops", 9).await,
        Err(OperationError::Invalid(_))
    ));

    system.destroyer.delete("ops").await.unwrap();
    assert!(matches!(
        system.maintainer.scale("ops", 3, None).await,
        Err(OperationError::Conflict(_))
    ));
}

fn commands_sent(mesos: &RecordingMesos) -> Vec<(String, Vec<String>)> {
    command_ids_sent(mesos)
        .into_iter()
        .map(|(_, task_id, argv)| (task_id, argv))
        .collect()
}

#[actix_rt::test]
async fn an_update_restarts_replicas_first_and_the_master_after_a_promotion() {
    let mesos = RecordingMesos::subscribed("fw");
    let workload = Arc::new(Scripted {
        promote: true,
        ..Scripted::default()
    });
    let system = start_with(&mesos, workload).await;
    let (master, replica) = running_pair(&system, &mesos, "upd").await;
    let update = SpecUpdate {
        image: Some("redis:next".into()),
        ..SpecUpdate::default()
    };
    let view = system
        .maintainer
        .update_instance("upd", update, None)
        .await
        .unwrap();
    assert_eq!(view.spec.image, "redis:next");
    // The replica first: its task is killed and a new incarnation launched.
    assert_eq!(view.members[1].task_id, "upd-1.2");
    assert_eq!(view.members[0].task_id, "upd-0.1", "the master waits");
    assert!(kills(&mesos).contains(&replica.task_id.value));
    let second = launch(&system, &mesos, "upd-1.2").await;
    let container = ContainerSpec::decode(second.data.clone().unwrap()).unwrap();
    assert_eq!(container.image, "redis:next");
    assert!(matches!(
        system
            .maintainer
            .update_instance("upd", SpecUpdate::default(), None)
            .await,
        Err(OperationError::Conflict(_))
    ));

    // Once it runs, the replica is promoted and the old master restarted as a replica.
    set_state(&system, &second, v1::TaskState::TaskRunning, 3).await;
    wait_task(&system, "upd", 0, "upd-0.2").await;
    assert!(kills(&mesos).contains(&master.task_id.value));
    eventually("the promote command", || async {
        commands_sent(&mesos).contains(&("upd-1.2".to_string(), vec!["promote".to_string()]))
    })
    .await;
    let state = system.state.get("upd").unwrap();
    assert_eq!(state.tasks[&1].role, Role::Master);
    assert_eq!(state.tasks[&0].role, Role::Replica);

    let third = launch(&system, &mesos, "upd-0.2").await;
    set_state(&system, &third, v1::TaskState::TaskRunning, 4).await;
    wait_status(&system, "upd", InstanceStatus::Running).await;
    eventually("the rollout done", || async {
        let state = system.state.get("upd").unwrap();
        state.instance.lifecycle.rollout.is_none()
    })
    .await;
}

/// `(command id, task id, argv)` of every command sent.
fn command_ids_sent(mesos: &RecordingMesos) -> Vec<(String, String, Vec<String>)> {
    mesos
        .calls_of(call::Type::Message)
        .into_iter()
        .filter_map(|c| {
            let data = c.message?.data;
            match SchedulerMessage::decode(data).ok()?.payload? {
                scheduler_message::Payload::RunCommand(run) => {
                    Some((run.command_id, run.task_id, run.argv))
                }
            }
        })
        .collect()
}

#[actix_rt::test]
async fn an_unanswered_command_is_sent_again_after_a_restart_and_cleared_once_answered() {
    let persister = Arc::new(MemPersister::new());
    let mesos = RecordingMesos::subscribed("fw");
    let workload = Arc::new(Scripted {
        promote: true,
        ..Scripted::default()
    });
    let system = start_on(persister.clone(), &mesos, workload.clone()).await;
    let (master, _) = running_pair(&system, &mesos, "cmd").await;

    // The master is lost: the promotion and its command are one write, then the
    // command is sent.
    set_state(&system, &master, v1::TaskState::TaskFailed, 3).await;
    eventually("the promote command", || async {
        !command_ids_sent(&mesos).is_empty()
    })
    .await;
    let (command_id, task_id, argv) = command_ids_sent(&mesos)[0].clone();
    assert_eq!(
        (task_id.as_str(), argv.clone()),
        ("cmd-1.1", vec!["promote".to_string()])
    );
    let recorded = system.state.get("cmd").unwrap().instance;
    let ids: Vec<&str> = recorded
        .lifecycle
        .commands
        .iter()
        .map(|c| c.command_id.as_str())
        .collect();
    assert_eq!(ids, [command_id.as_str()]);
    // Let the old master's relaunch be written before this scheduler "dies".
    wait_task(&system, "cmd", 0, "cmd-0.2").await;
    system.stop_http();

    // A scheduler restarted on the same store, before any answer, sends it again
    // under the same id: the executor runs an id once.
    let after = RecordingMesos::subscribed("fw");
    let restarted = start_on(persister, &after, workload).await;
    eventually("the command sent again", || async {
        !command_ids_sent(&after).is_empty()
    })
    .await;
    assert_eq!(
        command_ids_sent(&after)[0],
        (command_id.clone(), "cmd-1.1".to_string(), argv)
    );

    // The answer clears it from the record.
    restarted
        .maintainer
        .command_answered(mesos_stateful_proto::stateful::CommandResult {
            command_id: command_id.clone(),
            task_id: "cmd-1.1".into(),
            exit_code: Some(0),
            ..Default::default()
        });
    eventually("the record cleared", || async {
        restarted
            .state
            .get("cmd")
            .unwrap()
            .instance
            .lifecycle
            .commands
            .is_empty()
    })
    .await;
}
