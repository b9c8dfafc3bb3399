//! Crash test: the scheduler is killed at injected points while 100 creates and
//! deletes run against a simulated cluster, and restarted on the same state each
//! time. A checker then asserts that no accepted instance was lost, that no member
//! ever had two live tasks, that no task id was launched twice, and that every
//! instance converged (RUNNING, or DELETED with no task left).
//!
//! A crash is a `kill -9`: once the persister has durably written the batch that
//! matches the armed crash point, every later write fails and every later Mesos call
//! is dropped; the old actors are abandoned and a new system starts on the same
//! store. The simulated cluster behaves as Mesos does: it re-sends unacknowledged
//! updates to the new subscription and answers reconciliation (TASK_GONE for a task
//! it never saw on a registered agent).
//!
//! The script runs four times, with different crash draws and with the cluster
//! answering every 15 ms or every millisecond: the fast pace is what makes a
//! deletion race a status update, or a crash fall between two writes of one
//! transition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use mesos_stateful_actors::actor::{System, SystemConfig};
use mesos_stateful_actors::domain::launch::ExecutorLaunch;
use mesos_stateful_actors::domain::recovery::RecoveryConfig;
use mesos_stateful_actors::mesos::MesosCalls;
use mesos_stateful_actors::telemetry::Metrics;
use mesos_stateful_actors::ActorError;
use mesos_stateful_proto::v1;
use mesos_stateful_proto::v1::scheduler::{call, event, Call, Event};
use mesos_stateful_store::records::InstanceStatus;
use mesos_stateful_store::{Batch, MemPersister, Op, Persister, StateStore, StoreError, Versioned};

use super::{offers, spec, subscribed, Echo};

/// Where the scheduler dies: right after the batch that makes the named change
/// durable, before whatever follows it (each variant says what is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrashPoint {
    /// A new instance persisted, before the reply and the master's queueing.
    Create,
    /// A placement persisted, before the ACCEPT.
    Placement,
    /// A TASK_RUNNING update persisted, before its ACKNOWLEDGE.
    RunningUpdate,
    /// A terminal update persisted, before its ACKNOWLEDGE and the relaunch.
    TerminalUpdate,
    /// DELETING persisted, before the KILLs.
    Deleting,
}

const POINTS: [CrashPoint; 5] = [
    CrashPoint::Create,
    CrashPoint::Placement,
    CrashPoint::RunningUpdate,
    CrashPoint::TerminalUpdate,
    CrashPoint::Deleting,
];

/// The crash switch shared by a life's persister and Mesos client.
#[derive(Debug)]
struct Crash {
    armed: Mutex<(CrashPoint, u32)>,
    crashed: AtomicBool,
}

impl Crash {
    fn armed(point: CrashPoint, after_matches: u32) -> Arc<Self> {
        Arc::new(Crash {
            armed: Mutex::new((point, after_matches)),
            crashed: AtomicBool::new(false),
        })
    }

    fn never() -> Arc<Self> {
        Crash::armed(CrashPoint::Create, u32::MAX)
    }

    fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Called after a durable write of `ops`: trips when they make the armed change.
    fn written(&self, ops: &[Op]) {
        let mut armed = self.armed.lock().unwrap();
        let (point, left) = *armed;
        if ops.iter().any(|op| matches(point, op)) {
            if left <= 1 {
                self.crashed.store(true, Ordering::SeqCst);
            }
            armed.1 = left.saturating_sub(1);
        }
    }
}

fn matches(point: CrashPoint, op: &Op) -> bool {
    let Op::Put { key, value } = op else {
        return false;
    };
    let Ok(record) = serde_json::from_slice::<serde_json::Value>(value) else {
        return false;
    };
    let state = record["state"].as_str().unwrap_or("");
    let terminal = [
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_LOST",
        "TASK_GONE",
    ];
    match point {
        CrashPoint::Create => key.starts_with("instances/") && record["status"] == "CREATING",
        CrashPoint::Deleting => key.starts_with("instances/") && record["status"] == "DELETING",
        CrashPoint::Placement => key.starts_with("tasks/") && state == "TASK_STAGING",
        CrashPoint::RunningUpdate => key.starts_with("tasks/") && state == "TASK_RUNNING",
        CrashPoint::TerminalUpdate => key.starts_with("tasks/") && terminal.contains(&state),
    }
}

/// A persister that dies with its process: writes fail once crashed.
#[derive(Debug)]
struct CrashingPersister {
    inner: Arc<MemPersister>,
    crash: Arc<Crash>,
}

impl CrashingPersister {
    fn dead(&self) -> Result<(), StoreError> {
        if self.crash.crashed() {
            return Err(StoreError::Backend {
                context: "crash test".into(),
                message: "the process was killed".into(),
            });
        }
        Ok(())
    }
}

impl Persister for CrashingPersister {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(key)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        self.dead()?;
        let version = self.inner.put(key, value)?;
        self.crash.written(&[Op::Put {
            key: key.into(),
            value: value.into(),
        }]);
        Ok(version)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.dead()?;
        self.inner.delete(key)
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        self.dead()?;
        self.inner.apply(batch)?;
        self.crash.written(batch.ops());
        Ok(())
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        self.inner.scan_prefix(prefix)
    }
}

/// The scheduler's Mesos connection in one life: calls are queued for the simulated
/// cluster, and dropped once the process is dead.
#[derive(Debug)]
struct SimConnection {
    crash: Arc<Crash>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl MesosCalls for SimConnection {
    fn send(&self, call: Call) {
        if !self.crash.crashed() {
            self.calls.lock().unwrap().push(call);
        }
    }

    fn framework_id(&self) -> Option<String> {
        Some("fw".into())
    }

    fn subscribed_master(&self) -> Option<String> {
        Some("sim".into())
    }
}

/// A simulated cluster of three agents that run whatever they are given.
#[derive(Debug, Default)]
struct Cluster {
    /// Every task ever launched, with its agent and state.
    tasks: BTreeMap<String, (String, v1::TaskState)>,
    /// Updates not acknowledged yet, re-sent to each new subscription.
    unacked: Vec<(String, String, v1::TaskState, Bytes)>,
    launched_twice: Vec<String>,
    /// Members seen with two live tasks at once.
    doubles: Vec<String>,
    next_uuid: u64,
    offer_round: u64,
}

fn status_event(task_id: &str, agent: &str, state: v1::TaskState, uuid: Option<Bytes>) -> Event {
    Event {
        r#type: Some(event::Type::Update as i32),
        update: Some(event::Update {
            status: v1::TaskStatus {
                task_id: v1::TaskId {
                    value: task_id.into(),
                },
                state: state as i32,
                agent_id: Some(v1::AgentId {
                    value: agent.into(),
                }),
                uuid,
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// `(instance, ordinal)` of a task id `<instance>-<ordinal>.<incarnation>`.
fn member_of(task_id: &str) -> Option<(String, u32)> {
    let (member, _) = task_id.rsplit_once('.')?;
    let (instance, ordinal) = member.rsplit_once('-')?;
    Some((instance.to_string(), ordinal.parse().ok()?))
}

impl Cluster {
    fn update(&mut self, task_id: &str, agent: &str, state: v1::TaskState) -> Event {
        self.next_uuid += 1;
        let uuid = Bytes::from(self.next_uuid.to_be_bytes().repeat(2));
        self.unacked
            .push((task_id.into(), agent.into(), state, uuid.clone()));
        status_event(task_id, agent, state, Some(uuid))
    }

    fn offers(&mut self) -> Vec<Event> {
        self.offer_round += 1;
        (0..3)
            .map(|agent| {
                let begin = 10_000 + (self.offer_round * 3 + agent) % 50_000;
                offers(
                    &format!("o{}-{agent}", self.offer_round),
                    &format!("agent{agent}"),
                    (begin, begin),
                )
            })
            .collect()
    }

    /// Carries out the calls of the scheduler; returns the events they cause.
    fn process(&mut self, calls: Vec<Call>) -> Vec<Event> {
        let mut events = Vec::new();
        for call in calls {
            match call.r#type.and_then(|t| call::Type::try_from(t).ok()) {
                Some(call::Type::Accept) => {
                    for operation in call.accept.map(|a| a.operations).unwrap_or_default() {
                        for task in operation.launch.map(|l| l.task_infos).unwrap_or_default() {
                            let (id, agent) = (task.task_id.value, task.agent_id.value);
                            if self.tasks.contains_key(&id) {
                                self.launched_twice.push(id.clone());
                            }
                            self.tasks
                                .insert(id.clone(), (agent.clone(), v1::TaskState::TaskRunning));
                            events.push(self.update(&id, &agent, v1::TaskState::TaskRunning));
                        }
                    }
                }
                Some(call::Type::Kill) => {
                    let id = call.kill.map(|k| k.task_id.value).unwrap_or_default();
                    if let Some((agent, state)) = self.tasks.get_mut(&id) {
                        if !state.is_terminal() {
                            *state = v1::TaskState::TaskKilled;
                            let agent = agent.clone();
                            events.push(self.update(&id, &agent, v1::TaskState::TaskKilled));
                        }
                    }
                }
                Some(call::Type::Acknowledge) => {
                    if let Some(ack) = call.acknowledge {
                        self.unacked.retain(|(_, _, _, uuid)| *uuid != ack.uuid);
                    }
                }
                Some(call::Type::Reconcile) => {
                    let asked = call.reconcile.map(|r| r.tasks).unwrap_or_default();
                    if asked.is_empty() {
                        for (id, (agent, state)) in &self.tasks {
                            if !state.is_terminal() {
                                events.push(status_event(id, agent, *state, None));
                            }
                        }
                    }
                    for task in asked {
                        let id = task.task_id.value;
                        let agent = task.agent_id.map(|a| a.value).unwrap_or_default();
                        let state = self
                            .tasks
                            .get(&id)
                            .map_or(v1::TaskState::TaskGone, |(_, state)| *state);
                        events.push(status_event(&id, &agent, state, None));
                    }
                }
                _ => {}
            }
        }
        self.check_members();
        events
    }

    fn check_members(&mut self) {
        let mut live: BTreeMap<(String, u32), Vec<&str>> = BTreeMap::new();
        for (id, (_, state)) in &self.tasks {
            if !state.is_terminal() {
                if let Some(member) = member_of(id) {
                    live.entry(member).or_default().push(id);
                }
            }
        }
        for ((instance, ordinal), ids) in live {
            if ids.len() > 1 {
                self.doubles.push(format!("{instance}-{ordinal}: {ids:?}"));
            }
        }
    }

    fn live_tasks_of(&self, instance: &str) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|(id, (_, state))| {
                !state.is_terminal() && member_of(id).is_some_and(|(i, _)| i == instance)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// One client operation of the script.
#[derive(Debug, Clone, PartialEq)]
enum Operation {
    Create(String),
    Delete(String),
}

/// The script: 60 creates and 40 deletes, each delete some steps after its create.
fn script() -> Vec<Operation> {
    let mut operations = Vec::new();
    for i in 0..60 {
        operations.push(Operation::Create(format!("c{i}")));
        if i >= 5 && (i - 5) % 3 != 2 && operations.len() < 100 {
            operations.push(Operation::Delete(format!("c{}", i - 5)));
        }
    }
    while operations.len() < 100 {
        let created = operations
            .iter()
            .filter(|o| matches!(o, Operation::Create(_)))
            .count();
        let deleted: BTreeSet<_> = operations
            .iter()
            .filter_map(|o| match o {
                Operation::Delete(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let next = (0..created)
            .map(|i| format!("c{i}"))
            .find(|name| !deleted.contains(name))
            .expect("an instance left to delete");
        operations.push(Operation::Delete(next));
    }
    operations
}

async fn start_life(
    persister: &Arc<MemPersister>,
    crash: &Arc<Crash>,
) -> (System, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let store = StateStore::open(Arc::new(CrashingPersister {
        inner: persister.clone(),
        crash: crash.clone(),
    }))
    .unwrap();
    let system = System::start(
        store,
        Arc::new(SimConnection {
            crash: crash.clone(),
            calls: calls.clone(),
        }),
        Arc::new(Echo),
        SystemConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            executor: ExecutorLaunch::default(),
            metrics: Arc::new(Metrics::new()),
            api: Default::default(),
            queue: Default::default(),
            recovery: RecoveryConfig {
                backoff_initial: Duration::from_millis(20),
                backoff_max: Duration::from_millis(200),
                replace_after: Duration::from_secs(60),
            },
        },
    )
    .await
    .unwrap();
    (system, calls)
}

/// Delivers events and offers and carries out the calls they cause, once; `pause`
/// is how long the actors get to act before the cluster looks at their calls.
async fn step(
    system: &System,
    cluster: &mut Cluster,
    calls: &Arc<Mutex<Vec<Call>>>,
    pause: Duration,
) {
    for offer in cluster.offers() {
        let _ = system.handle_event(offer).await;
    }
    tokio::time::sleep(pause).await;
    let sent = std::mem::take(&mut *calls.lock().unwrap());
    for event in cluster.process(sent) {
        let _ = system.handle_event(event).await;
    }
}

/// A small deterministic generator, so a failing run can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// The script under crashes with the crash points drawn from `seed`, the cluster
/// looking at the scheduler's calls every `pause`. A short pause makes the
/// actors' work overlap (a deletion racing a status update, a crash between two
/// writes of one transition), as a loaded machine does.
#[actix_rt::test]
async fn crashes_at_injected_points_lose_nothing_and_every_instance_converges() {
    for (seed, pause_ms) in [(0x5eed, 15), (5, 1), (6, 1), (11, 1)] {
        run_script_with_crashes(seed, Duration::from_millis(pause_ms)).await;
    }
}

async fn run_script_with_crashes(seed: u64, pause: Duration) {
    let persister = Arc::new(MemPersister::new());
    let mut cluster = Cluster::default();
    let mut random = Lcg(seed);
    let operations = script();
    let mut next_operation = 0;
    let mut accepted = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    let mut crashes = BTreeMap::<String, u32>::new();

    // Lives that end in a crash, until the script is done.
    while next_operation < operations.len() {
        let point = POINTS[random.next(POINTS.len() as u64) as usize];
        let crash = Crash::armed(point, 1 + random.next(3) as u32);
        let (system, calls) = start_life(&persister, &crash).await;
        system.handle_event(subscribed("fw")).await.unwrap();
        // Agents re-send what the previous life did not acknowledge.
        for (task, agent, state, uuid) in cluster.unacked.clone() {
            let _ = system
                .handle_event(status_event(&task, &agent, state, Some(uuid)))
                .await;
        }
        let mut steps = 0;
        while !crash.crashed() && steps < 400 {
            steps += 1;
            if next_operation < operations.len() && steps % 2 == 0 {
                let done = match &operations[next_operation] {
                    Operation::Create(name) => {
                        match system.creator.create(name.clone(), spec(1)).await {
                            Ok(_) | Err(ActorError::AlreadyExists(_)) => {
                                accepted.insert(name.clone());
                                true
                            }
                            Err(_) => false,
                        }
                    }
                    Operation::Delete(name) => system.destroyer.delete(name).await.is_ok(),
                };
                if done {
                    if let Operation::Delete(name) = &operations[next_operation] {
                        deleted.insert(name.clone());
                    }
                    next_operation += 1;
                }
            }
            step(&system, &mut cluster, &calls, pause).await;
        }
        if crash.crashed() {
            *crashes.entry(format!("{point:?}")).or_default() += 1;
        }
        // The process is gone: nothing it queued reaches the cluster.
        calls.lock().unwrap().clear();
        system.stop_http();
    }

    // A last life without crash: everything converges.
    let crash = Crash::never();
    let (system, calls) = start_life(&persister, &crash).await;
    system.handle_event(subscribed("fw")).await.unwrap();
    for (task, agent, state, uuid) in cluster.unacked.clone() {
        let _ = system
            .handle_event(status_event(&task, &agent, state, Some(uuid)))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let converged = loop {
        step(&system, &mut cluster, &calls, pause).await;
        let states = system.state.list();
        let done = states.iter().all(|state| {
            let name = &state.instance.name;
            if deleted.contains(name) {
                state.instance.status == InstanceStatus::Deleted
                    && cluster.live_tasks_of(name).is_empty()
            } else {
                state.instance.status == InstanceStatus::Running
            }
        });
        if done || Instant::now() > deadline {
            break done;
        }
    };

    let states = system.state.list();
    let names: BTreeSet<String> = states.iter().map(|s| s.instance.name.clone()).collect();
    let lost: Vec<_> = accepted.difference(&names).collect();
    let unconverged: Vec<String> = states
        .iter()
        .filter(|s| {
            let expected = if deleted.contains(&s.instance.name) {
                InstanceStatus::Deleted
            } else {
                InstanceStatus::Running
            };
            s.instance.status != expected
        })
        .map(|s| format!("{} {:?}", s.instance.name, s.instance.status))
        .collect();
    let total_crashes: u32 = crashes.values().sum();
    println!(
        "seed {seed}, pause {pause:?}: crashes by point: {crashes:?}; instances: {}",
        names.len()
    );
    assert!(
        total_crashes >= 10,
        "too few crashes to mean anything: {crashes:?}"
    );
    assert!(
        lost.is_empty(),
        "seed {seed}: accepted instances lost: {lost:?}"
    );
    assert!(
        cluster.doubles.is_empty(),
        "members with two live tasks: {:?}",
        cluster.doubles
    );
    assert!(
        cluster.launched_twice.is_empty(),
        "task ids launched twice: {:?}",
        cluster.launched_twice
    );
    assert!(converged, "seed {seed}: not converged: {unconverged:?}");
    assert_eq!(accepted.len(), 60);
    assert_eq!(deleted.len(), 40);
}
