//! StateManager: the store and its write-through cache.
//!
//! Every read is served from the cache; every write goes to the store first (on a
//! blocking thread, never on the actor thread) and reaches the cache only once it is
//! durable. Only the actor writes the cache; readers read it through the handle on
//! their own threads ([`Cache`]), so the actor's thread serves writes alone and a
//! create never waits in its mailbox behind reads.
//!
//! Writes are group-committed: while one batch is being synced, the writes that
//! arrive are queued, and when it completes they all go to the store as the next
//! single atomic batch (one sync). Each caller is answered once its batch is
//! durable and applied to the cache, in arrival order, so the cache and the store
//! never disagree on the order of writes. Should a merged batch fail, its writes
//! are retried one by one, so that one caller's conflict (a create of a taken name)
//! fails that caller only.
//!
//! A restart of this actor loses nothing: the cache is rebuilt from the store.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use actix::prelude::*;

use mesos_stateful_store::records::{member_name, InstanceRecord, TaskRecord};
use mesos_stateful_store::{Changes, StateStore, StoreError};

use crate::domain::lifecycle;
use crate::domain::view::{InstanceView, MemberStats};
use crate::telemetry::{handler_span, Metrics, Traced};
use crate::ActorError;

/// One instance and its members' task records, ordered by ordinal.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceState {
    /// The instance record.
    pub instance: InstanceRecord,
    /// Task records by ordinal.
    pub tasks: BTreeMap<u32, TaskRecord>,
    /// Latest stats of each member's current task, by ordinal (not persisted).
    pub stats: BTreeMap<u32, MemberStats>,
}

impl InstanceState {
    /// The API view.
    pub fn view(&self) -> InstanceView {
        let tasks: Vec<TaskRecord> = self.tasks.values().cloned().collect();
        let mut view = InstanceView::new(&self.instance, &tasks);
        for member in &mut view.members {
            member.stats = self.stats.get(&member.ordinal).cloned();
        }
        view
    }

    /// Task records in ordinal order.
    pub fn task_list(&self) -> Vec<TaskRecord> {
        self.tasks.values().cloned().collect()
    }
}

/// The cache: the records as they are in the store, and the latest stats of each
/// member's task.
///
/// Written by the [`StateManager`] alone, with durable writes only; read by anyone
/// holding a [`StateManagerHandle`], on the reader's thread. A reader holds a lock
/// only while it finds entries and clones their `Arc`s; copies are made after, so
/// no read holds up a write for longer than that. When both locks are taken,
/// `records` is taken first.
#[derive(Debug, Default)]
pub struct Cache {
    records: RwLock<Records>,
    /// Latest stats by task id, of current tasks that are not terminal. Kept in
    /// memory only: a fresh sample arrives every stats interval.
    stats: Mutex<HashMap<String, MemberStats>>,
}

/// The records of the [`Cache`].
#[derive(Debug, Default)]
struct Records {
    /// Instances (without stats), shared with readers: a write copies an entry only
    /// while a reader still holds it.
    instances: BTreeMap<String, Arc<InstanceState>>,
    /// Task id → (instance, ordinal), for routing status updates.
    task_index: HashMap<String, (String, u32)>,
    framework_id: Option<String>,
}

impl Cache {
    // A panic while a lock was held cannot leave a record half written (every
    // update is a single insert or remove), so a poisoned lock is used as it is.
    fn records(&self) -> RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn records_mut(&self) -> RwLockWriteGuard<'_, Records> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> MutexGuard<'_, HashMap<String, MemberStats>> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One instance with the latest stats of its current tasks.
    pub fn get(&self, name: &str) -> Option<InstanceState> {
        let record = self.records().instances.get(name).cloned()?;
        Some(self.with_stats(&record))
    }

    /// Every instance with the latest stats of its current tasks, by name.
    pub fn list(&self) -> Vec<InstanceState> {
        self.all_records()
            .iter()
            .map(|record| self.with_stats(record))
            .collect()
    }

    /// Every instance's records, shared rather than copied (no stats), by name.
    pub fn all_records(&self) -> Vec<Arc<InstanceState>> {
        self.records().instances.values().cloned().collect()
    }

    /// How many instances have each status (by its name); statuses no instance has
    /// are absent.
    pub fn count_by_status(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for state in self.records().instances.values() {
            *counts.entry(state.instance.status.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// The instance owning `task_id` (no stats).
    pub fn find_task(&self, task_id: &str) -> Option<InstanceState> {
        let record = {
            let records = self.records();
            let (instance, _) = records.task_index.get(task_id)?;
            records.instances.get(instance).cloned()?
        };
        Some(InstanceState::clone(&record))
    }

    /// The persisted framework id.
    pub fn framework_id(&self) -> Option<String> {
        self.records().framework_id.clone()
    }

    /// Keeps a stats sample if its task is a member's current task and not
    /// terminal: an executor cannot make us hold samples of tasks we do not know,
    /// nor keep those of a task that ended.
    pub fn record_stats(&self, sample: &mesos_stateful_proto::stateful::TaskStats) {
        // The records stay locked until the sample is in, so the task cannot end in
        // between (the StateManager drops an ended task's sample after marking it).
        let records = self.records();
        let current = records
            .task_index
            .get(&sample.task_id)
            .and_then(|(instance, ordinal)| records.instances.get(instance)?.tasks.get(ordinal))
            .is_some_and(|task| {
                task.task_id == sample.task_id && !lifecycle::is_terminal(task.state.as_deref())
            });
        if current {
            self.stats()
                .insert(sample.task_id.clone(), MemberStats::from(sample));
        }
    }

    fn with_stats(&self, record: &InstanceState) -> InstanceState {
        let mut state = record.clone();
        let stats = self.stats();
        state.stats = state
            .tasks
            .iter()
            .filter_map(|(ordinal, task)| Some((*ordinal, stats.get(&task.task_id)?.clone())))
            .collect();
        state
    }
}

/// The actor.
#[derive(Debug)]
pub struct StateManager {
    store: StateStore,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    /// Every durable write, for the API's event stream. Sent after the store
    /// answered, so a subscriber never sees a change that could be lost.
    changes: tokio::sync::broadcast::Sender<StateChange>,

    /// Writes waiting for the batch in flight to complete; owned by this actor.
    commits: GroupCommit<PendingWrite>,
    /// Versions given to records queued or in flight, past the cached ones, so that
    /// two writes of one record in one batch still bump its version twice. Cleared
    /// whenever nothing is queued or in flight.
    assigned_versions: HashMap<(String, Option<u32>), u64>,
    /// Names of instances whose creation is queued or in flight.
    creating: HashSet<String>,
}

/// Writes queued for the next batch, and whether a batch is being synced.
///
/// Plain data: the actor decides when to start a batch and what to do with its
/// outcome. A write marked alone goes in a batch of its own (a retry after a merged
/// batch failed); a write pushed ahead goes before every write pushed plainly (it
/// shares no record with them, so their order does not matter); a batch takes
/// writes until their records reach the limit it is given.
#[derive(Debug)]
pub struct GroupCommit<T> {
    queue: VecDeque<(T, Lane)>,
    in_flight: bool,
}

/// Where a queued write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// A retry, in a batch of its own, before everything else.
    Alone,
    /// Before the plain writes.
    Ahead,
    /// In arrival order.
    Plain,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        GroupCommit {
            queue: VecDeque::new(),
            in_flight: false,
        }
    }
}

impl<T> GroupCommit<T> {
    /// Queues a write.
    pub fn push(&mut self, write: T) {
        self.queue.push_back((write, Lane::Plain));
    }

    /// Queues a write before every write queued by [`push`](Self::push), after
    /// those queued before it by this method. Only for a write that touches no record
    /// of a queued write: the store and the cache then end the same in either order.
    pub fn push_ahead(&mut self, write: T) {
        let at = self
            .queue
            .iter()
            .take_while(|(_, lane)| *lane != Lane::Plain)
            .count();
        self.queue.insert(at, (write, Lane::Ahead));
    }

    /// The writes queued, not those in flight.
    pub fn queued(&self) -> impl Iterator<Item = &T> {
        self.queue.iter().map(|(write, _)| write)
    }

    /// The next batch to sync, unless one is in flight or nothing is queued: a write
    /// that must go alone, alone; else the queued writes in order, up to the first
    /// that must go alone, while the records taken (`size` of each) stay under
    /// `limit` (at least one write).
    pub fn next_batch(&mut self, limit: usize, size: impl Fn(&T) -> usize) -> Option<Vec<T>> {
        if self.in_flight || self.queue.is_empty() {
            return None;
        }
        let mut batch = Vec::new();
        if matches!(self.queue.front(), Some((_, Lane::Alone))) {
            batch.extend(self.queue.pop_front().map(|(write, _)| write));
        } else {
            let mut records = 0;
            while let Some((write, lane)) = self.queue.front() {
                if *lane == Lane::Alone || (!batch.is_empty() && records + size(write) > limit) {
                    break;
                }
                records += size(write);
                batch.extend(self.queue.pop_front().map(|(write, _)| write));
            }
        }
        self.in_flight = true;
        Some(batch)
    }

    /// The batch in flight completed. A failed batch of several writes is handed
    /// back (`Some`) to be queued again, each alone, ahead of later writes; a failed
    /// single write is the caller's to answer (`None`).
    pub fn completed(&mut self, failed: Option<Vec<T>>) -> Option<Vec<T>> {
        self.in_flight = false;
        match failed {
            Some(writes) if writes.len() > 1 => {
                for write in writes.into_iter().rev() {
                    self.queue.push_front((write, Lane::Alone));
                }
                None
            }
            other => other,
        }
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        !self.in_flight && self.queue.is_empty()
    }
}

/// Records one synced batch holds at most (unless one write alone holds more): a
/// create queued behind a batch waits for this many records' write at most.
pub const BATCH_RECORDS: usize = 64;

/// One caller's write waiting in the [`GroupCommit`].
#[derive(Debug)]
struct PendingWrite {
    kind: WriteKind,
    reply: oneshot::Sender<Result<Option<InstanceState>, ActorError>>,
}

#[derive(Debug, Clone)]
enum WriteKind {
    /// A new instance with its first members; fails if the name is taken.
    Create {
        instance: InstanceRecord,
        tasks: Vec<TaskRecord>,
    },
    /// Records to put.
    Put {
        instances: Vec<InstanceRecord>,
        tasks: Vec<TaskRecord>,
    },
    /// An instance record to put and members to remove.
    Remove {
        instance: InstanceRecord,
        ordinals: Vec<u32>,
    },
}

impl WriteKind {
    /// How many records the write puts or deletes.
    fn records(&self) -> usize {
        match self {
            WriteKind::Create { tasks, .. } => 1 + tasks.len(),
            WriteKind::Put { instances, tasks } => instances.len() + tasks.len(),
            WriteKind::Remove { ordinals, .. } => 1 + ordinals.len(),
        }
    }

    /// Whether the write touches a record of instance `name` (its own or a member's).
    fn touches(&self, name: &str) -> bool {
        match self {
            WriteKind::Create { instance, .. } | WriteKind::Remove { instance, .. } => {
                instance.name == name
            }
            WriteKind::Put { instances, tasks } => {
                instances.iter().any(|i| i.name == name) || tasks.iter().any(|t| t.instance == name)
            }
        }
    }

    fn add_to(&self, changes: &mut Changes) {
        match self {
            WriteKind::Create { instance, tasks } => {
                changes.expect_no_instance(instance.name.clone());
                changes.put_instance(instance.clone());
                for task in tasks {
                    changes.put_task(task.clone());
                }
            }
            WriteKind::Put { instances, tasks } => {
                for instance in instances {
                    changes.put_instance(instance.clone());
                }
                for task in tasks {
                    changes.put_task(task.clone());
                }
            }
            WriteKind::Remove { instance, ordinals } => {
                changes.put_instance(instance.clone());
                for ordinal in ordinals {
                    changes.delete_task(instance.name.clone(), *ordinal);
                }
            }
        }
    }
}

/// One durable write: the records as they are now in the store.
#[derive(Debug, Clone)]
pub struct StateChange {
    /// Instance records written.
    pub instances: Vec<InstanceRecord>,
    /// Task records written.
    pub tasks: Vec<TaskRecord>,
}

/// Writes a slow subscriber may fall behind before it is told it lagged.
pub const CHANGE_CHANNEL_CAPACITY: usize = 1024;

pub(crate) const ACTOR: &str = "StateManager";

impl Actor for StateManager {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.metrics.started(ACTOR);
    }
}

impl StateManager {
    /// Loads the cache from `store`. Runs on the caller's thread: call it from a
    /// blocking context before the actor system starts.
    pub fn load(store: StateStore, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let mut instances: BTreeMap<String, Arc<InstanceState>> = store
            .load_instances()?
            .into_iter()
            .map(|instance| {
                (
                    instance.name.clone(),
                    Arc::new(InstanceState {
                        instance,
                        tasks: BTreeMap::new(),
                        stats: BTreeMap::new(),
                    }),
                )
            })
            .collect();
        let mut task_index = HashMap::new();
        for task in store.load_all_tasks()? {
            task_index.insert(task.task_id.clone(), (task.instance.clone(), task.ordinal));
            if let Some(state) = instances.get_mut(&task.instance) {
                Arc::make_mut(state).tasks.insert(task.ordinal, task);
            }
        }
        let framework_id = store.framework_id()?;
        let records = Records {
            instances,
            task_index,
            framework_id,
        };
        Ok(StateManager {
            store,
            cache: Arc::new(Cache {
                records: RwLock::new(records),
                stats: Mutex::default(),
            }),
            metrics,
            changes: tokio::sync::broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
            commits: GroupCommit::default(),
            assigned_versions: HashMap::new(),
            creating: HashSet::new(),
        })
    }

    /// The cache, for the handle's reads.
    pub fn cache(&self) -> Arc<Cache> {
        self.cache.clone()
    }

    fn apply_to_cache(&mut self, instances: Vec<InstanceRecord>, tasks: Vec<TaskRecord>) {
        // Only durable writes reach the cache; publish them (nobody listening is fine).
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(StateChange {
                instances: instances.clone(),
                tasks: tasks.clone(),
            });
        }
        let mut ended = Vec::new();
        {
            let mut records = self.cache.records_mut();
            let records = &mut *records;
            for instance in instances {
                records
                    .instances
                    .entry(instance.name.clone())
                    .and_modify(|state| Arc::make_mut(state).instance = instance.clone())
                    .or_insert_with(|| {
                        Arc::new(InstanceState {
                            instance,
                            tasks: BTreeMap::new(),
                            stats: BTreeMap::new(),
                        })
                    });
            }
            for task in tasks {
                records
                    .task_index
                    .insert(task.task_id.clone(), (task.instance.clone(), task.ordinal));
                if let Some(state) = records.instances.get_mut(&task.instance) {
                    let state = Arc::make_mut(state);
                    if let Some(replaced) = state.tasks.get(&task.ordinal) {
                        if replaced.task_id != task.task_id {
                            ended.push(replaced.task_id.clone());
                        }
                    }
                    if lifecycle::is_terminal(task.state.as_deref()) {
                        ended.push(task.task_id.clone());
                    }
                    state.tasks.insert(task.ordinal, task);
                }
            }
        }
        self.forget_stats(ended);
    }

    /// Drops the stats of tasks that ended or are no longer a member's.
    fn forget_stats(&self, task_ids: Vec<String>) {
        if task_ids.is_empty() {
            return;
        }
        let mut stats = self.cache.stats();
        for task_id in task_ids {
            stats.remove(&task_id);
        }
    }

    /// The version of a record (an instance's with `ordinal` `None`, else one of its
    /// members') once the writes queued so far are done; 0 for no record.
    fn current_version(&self, name: &str, ordinal: Option<u32>) -> u64 {
        let records = self.cache.records();
        let state = records.instances.get(name);
        let cached = match ordinal {
            None => state.map(|s| s.instance.version),
            Some(ordinal) => state.and_then(|s| s.tasks.get(&ordinal)).map(|t| t.version),
        };
        self.assigned_versions
            .get(&(name.to_string(), ordinal))
            .copied()
            .unwrap_or(0)
            .max(cached.unwrap_or(0))
    }

    /// Refuses a write of a record built on version `expected` when the record has
    /// moved past it (a durable or a queued write).
    fn check_version(
        &self,
        name: &str,
        ordinal: Option<u32>,
        expected: u64,
    ) -> Result<(), ActorError> {
        let current = self.current_version(name, ordinal);
        if current == expected {
            return Ok(());
        }
        Err(ActorError::VersionMoved {
            name: match ordinal {
                None => name.to_string(),
                Some(ordinal) => member_name(name, ordinal),
            },
            expected,
            current,
        })
    }

    /// Bumps versions past the cached ones, and past those given to writes still
    /// queued or in flight, so every write is visible as a change.
    fn bump_versions(&mut self, instances: &mut [InstanceRecord], tasks: &mut [TaskRecord]) {
        for instance in instances.iter_mut() {
            instance.version = self.current_version(&instance.name, None) + 1;
            self.assigned_versions
                .insert((instance.name.clone(), None), instance.version);
        }
        for task in tasks.iter_mut() {
            task.version = self.current_version(&task.instance, Some(task.ordinal)) + 1;
            self.assigned_versions
                .insert((task.instance.clone(), Some(task.ordinal)), task.version);
        }
    }

    /// Queues a write and starts a batch if none is in flight; the receiver answers
    /// once the write is durable.
    fn enqueue(
        &mut self,
        kind: WriteKind,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<Option<InstanceState>, ActorError>> {
        let (reply, answer) = oneshot::channel();
        // A create goes before the status updates and placements queued (a request
        // waits on it), unless one of them touches a record of the same name.
        let ahead = match &kind {
            WriteKind::Create { instance, .. } => !self
                .commits
                .queued()
                .any(|queued| queued.kind.touches(&instance.name)),
            _ => false,
        };
        let write = PendingWrite { kind, reply };
        if ahead {
            self.commits.push_ahead(write);
        } else {
            self.commits.push(write);
        }
        self.flush(ctx);
        answer
    }

    /// Sends the queued writes to the store as one batch, unless one is in flight.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let Some(batch) = self
            .commits
            .next_batch(BATCH_RECORDS, |write| write.kind.records())
        else {
            if self.commits.is_idle() {
                self.assigned_versions.clear();
            }
            return;
        };
        let mut changes = Changes::default();
        for write in &batch {
            write.kind.add_to(&mut changes);
        }
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let write = async move {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let result = store.write(&changes);
                metrics
                    .store_write_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.store_batch_records.observe(changes.len() as f64);
                result
            })
            .await
            .map_err(|e| ActorError::Unavailable {
                actor: "StateManager",
                reason: e.to_string(),
            })?
            .map_err(ActorError::Store)
        };
        ctx.spawn(
            write
                .into_actor(self)
                .map(move |result, actor, ctx| actor.on_committed(batch, result, ctx)),
        );
    }

    /// A batch completed: apply and answer, or retry its writes one by one.
    fn on_committed(
        &mut self,
        batch: Vec<PendingWrite>,
        result: Result<(), ActorError>,
        ctx: &mut Context<Self>,
    ) {
        match result {
            Ok(()) => {
                self.commits.completed(None);
                // The next batch syncs while this one is applied and answered: the
                // cache still takes the batches in order, as this runs to its end
                // before the next one's outcome can.
                self.flush(ctx);
                for write in batch {
                    let answer = self.apply_write(write.kind);
                    let _ = write.reply.send(Ok(answer));
                }
            }
            Err(error) => {
                if let Some(failed) = self.commits.completed(Some(batch)) {
                    // A batch of one write: its error is that caller's.
                    let mut error = Some(error);
                    for write in failed {
                        if let WriteKind::Create { instance, .. } = &write.kind {
                            self.creating.remove(&instance.name);
                        }
                        let error = match error.take() {
                            Some(ActorError::Store(StoreError::Conflict { key, .. }))
                                if key.starts_with("instances/") =>
                            {
                                ActorError::AlreadyExists(
                                    key.trim_start_matches("instances/").to_string(),
                                )
                            }
                            Some(other) => other,
                            None => ActorError::Unavailable {
                                actor: "StateManager",
                                reason: "write failed".to_string(),
                            },
                        };
                        let _ = write.reply.send(Err(error));
                    }
                } else {
                    tracing::warn!(%error, "a merged write failed; retrying its writes one by one");
                }
            }
        }
        self.flush(ctx);
    }

    /// Applies a durable write to the cache; a create answers with the new state.
    fn apply_write(&mut self, kind: WriteKind) -> Option<InstanceState> {
        match kind {
            WriteKind::Create { instance, tasks } => {
                let name = instance.name.clone();
                self.creating.remove(&name);
                self.apply_to_cache(vec![instance], tasks);
                self.cache.get(&name)
            }
            WriteKind::Put { instances, tasks } => {
                self.apply_to_cache(instances, tasks);
                None
            }
            WriteKind::Remove { instance, ordinals } => {
                let name = instance.name.clone();
                self.apply_to_cache(vec![instance], Vec::new());
                let mut removed = Vec::new();
                if let Some(state) = self.cache.records_mut().instances.get_mut(&name) {
                    let state = Arc::make_mut(state);
                    for ordinal in &ordinals {
                        removed.extend(state.tasks.remove(ordinal).map(|task| task.task_id));
                    }
                }
                self.forget_stats(removed);
                // Task ids of removed members stay in the index: late updates of
                // their tasks find the instance but no current task, and are killed.
                None
            }
        }
    }
}

/// Creates an instance with its first task records, failing if the name is taken.
#[derive(Debug, Message)]
#[rtype(result = "Result<InstanceState, ActorError>")]
pub struct CreateInstance {
    /// The new instance.
    pub instance: InstanceRecord,
    /// Its first members.
    pub tasks: Vec<TaskRecord>,
}

/// Writes instance and task records as one atomic batch.
///
/// Records are compared and set: each must carry the version it was read at (0 for
/// a new member), which must still be the record's version now (its cached
/// version, or that of a write still queued). A record built on an older read would
/// undo whatever changed since (a deletion, a promotion, a released volume), so
/// such a write is refused with [`ActorError::VersionMoved`] and nothing changes;
/// the writer reads again and decides again ([`retry_on_moved`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Write {
    /// Instance records to put, each at the version it was read at.
    pub instances: Vec<InstanceRecord>,
    /// Task records to put, each at the version it was read at.
    pub tasks: Vec<TaskRecord>,
}

/// Subscribes to the durable writes.
#[derive(Debug, Message)]
#[rtype(result = "tokio::sync::broadcast::Receiver<StateChange>")]
pub struct SubscribeChanges;

impl Handler<SubscribeChanges> for StateManager {
    type Result = MessageResult<SubscribeChanges>;
    fn handle(&mut self, _: SubscribeChanges, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.changes.subscribe())
    }
}

/// Persists the framework id Mesos gave us.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct SetFrameworkId(pub String);

impl Handler<Traced<CreateInstance>> for StateManager {
    type Result = ResponseFuture<Result<InstanceState, ActorError>>;

    fn handle(&mut self, traced: Traced<CreateInstance>, ctx: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "CreateInstance");
        let _entered = handler_span(ACTOR, "CreateInstance", &traced.parent).entered();
        let CreateInstance {
            mut instance,
            mut tasks,
        } = traced.message;
        let name = instance.name.clone();
        if self.cache.records().instances.contains_key(&name) || !self.creating.insert(name.clone())
        {
            return Box::pin(async move { Err(ActorError::AlreadyExists(name)) });
        }
        instance.version = 1;
        for task in &mut tasks {
            task.version = 1;
        }
        let answer = self.enqueue(WriteKind::Create { instance, tasks }, ctx);
        Box::pin(async move {
            answer
                .await
                .map_err(|_| unavailable())??
                .ok_or(ActorError::NotFound(name))
        })
    }
}

/// How many times [`retry_on_moved`] reads again before giving up.
pub const MOVED_ATTEMPTS: u32 = 12;

/// An error that says a write met a record changed since it was read.
pub trait MovedError: std::fmt::Display {
    /// Whether nothing was written because another writer came first.
    fn is_moved(&self) -> bool;
}

impl MovedError for ActorError {
    fn is_moved(&self) -> bool {
        matches!(self, ActorError::VersionMoved { .. })
    }
}

impl MovedError for crate::domain::operations::OperationError {
    fn is_moved(&self) -> bool {
        matches!(self, Self::Moved(_))
    }
}

/// Runs `attempt` (a read, a decision and a write) again while its write is refused
/// because another writer changed a record since the read
/// ([`ActorError::VersionMoved`]). The pause between attempts lets a write still in
/// flight become durable, and so readable (1 ms, doubling up to 64 ms; about half a
/// second in all).
pub async fn retry_on_moved<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    E: MovedError,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut pause = std::time::Duration::from_millis(1);
    for _ in 1..MOVED_ATTEMPTS {
        match attempt().await {
            Err(error) if error.is_moved() => {
                tracing::debug!(%error, "a record changed since it was read; reading again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(64));
            }
            other => return other,
        }
    }
    attempt().await
}

fn unavailable() -> ActorError {
    ActorError::Unavailable {
        actor: "StateManager",
        reason: "stopped before the write completed".to_string(),
    }
}

impl Handler<Traced<Write>> for StateManager {
    type Result = ResponseFuture<Result<(), ActorError>>;

    fn handle(&mut self, traced: Traced<Write>, ctx: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "Write");
        let _entered = handler_span(ACTOR, "Write", &traced.parent).entered();
        let Write {
            mut instances,
            mut tasks,
        } = traced.message;
        let checked = instances
            .iter()
            .try_for_each(|instance| self.check_version(&instance.name, None, instance.version))
            .and_then(|()| {
                tasks.iter().try_for_each(|task| {
                    self.check_version(&task.instance, Some(task.ordinal), task.version)
                })
            });
        if let Err(moved) = checked {
            return Box::pin(async move { Err(moved) });
        }
        self.bump_versions(&mut instances, &mut tasks);
        let answer = self.enqueue(WriteKind::Put { instances, tasks }, ctx);
        Box::pin(async move {
            answer.await.map_err(|_| unavailable())??;
            Ok(())
        })
    }
}

/// Puts an instance record and deletes members' task records as one atomic batch
/// (scaling down).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct RemoveTasks {
    /// The instance record to put.
    pub instance: InstanceRecord,
    /// Ordinals of the members to delete.
    pub ordinals: Vec<u32>,
}

impl Handler<Traced<RemoveTasks>> for StateManager {
    type Result = ResponseFuture<Result<(), ActorError>>;

    fn handle(&mut self, traced: Traced<RemoveTasks>, ctx: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "RemoveTasks");
        let _entered = handler_span(ACTOR, "RemoveTasks", &traced.parent).entered();
        let RemoveTasks {
            mut instance,
            ordinals,
        } = traced.message;
        if let Err(moved) = self.check_version(&instance.name, None, instance.version) {
            return Box::pin(async move { Err(moved) });
        }
        self.bump_versions(std::slice::from_mut(&mut instance), &mut []);
        let answer = self.enqueue(WriteKind::Remove { instance, ordinals }, ctx);
        Box::pin(async move {
            answer.await.map_err(|_| unavailable())??;
            Ok(())
        })
    }
}

impl Handler<Traced<SetFrameworkId>> for StateManager {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    fn handle(&mut self, traced: Traced<SetFrameworkId>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "SetFrameworkId");
        let _entered = handler_span(ACTOR, "SetFrameworkId", &traced.parent).entered();
        let msg = traced.message;
        let store = self.store.clone();
        let id = msg.0.clone();
        let write = async move {
            tokio::task::spawn_blocking(move || store.set_framework_id(&id))
                .await
                .map_err(|e| ActorError::Unavailable {
                    actor: "StateManager",
                    reason: e.to_string(),
                })?
                .map_err(ActorError::Store)
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |result, actor, _| {
                result?;
                actor.cache.records_mut().framework_id = Some(msg.0);
                Ok(())
            },
        )))
    }
}

/// Typed access to the StateManager: reads from its cache on the caller's thread,
/// writes through its mailbox.
#[derive(Debug, Clone)]
pub struct StateManagerHandle {
    addr: Addr<StateManager>,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
}

impl StateManagerHandle {
    pub(crate) fn new(addr: Addr<StateManager>, cache: Arc<Cache>, metrics: Arc<Metrics>) -> Self {
        StateManagerHandle {
            addr,
            cache,
            metrics,
        }
    }

    /// One instance, as durable, with the latest stats of its members.
    pub fn get(&self, name: &str) -> Option<InstanceState> {
        self.cache.get(name)
    }

    /// Every instance, by name.
    pub fn list(&self) -> Vec<InstanceState> {
        self.cache.list()
    }

    /// Every instance's records, shared with the cache (no stats), by name. Cheap
    /// whatever the number of instances; the caller copies what it keeps.
    pub fn records(&self) -> Vec<Arc<InstanceState>> {
        self.cache.all_records()
    }

    /// How many instances have each status (by its name); statuses no instance has
    /// are absent.
    pub fn count_by_status(&self) -> BTreeMap<&'static str, usize> {
        self.cache.count_by_status()
    }

    /// The instance owning `task_id` (no stats).
    pub fn find_task(&self, task_id: &str) -> Option<InstanceState> {
        self.cache.find_task(task_id)
    }

    /// The persisted framework id.
    pub fn framework_id(&self) -> Option<String> {
        self.cache.framework_id()
    }

    /// Keeps the latest stats sample of a member's current task (in memory only).
    pub fn record_stats(&self, stats: &mesos_stateful_proto::stateful::TaskStats) {
        self.cache.record_stats(stats);
    }

    /// Tasks that are launched and not terminal, with their agents.
    pub fn live_tasks(&self) -> Vec<TaskRecord> {
        self.records()
            .iter()
            .flat_map(|state| state.tasks.values())
            .filter(|t| t.agent_id.is_some() && !lifecycle::is_terminal(t.state.as_deref()))
            .cloned()
            .collect()
    }

    /// Creates an instance atomically.
    pub async fn create(
        &self,
        instance: InstanceRecord,
        tasks: Vec<TaskRecord>,
    ) -> Result<InstanceState, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(CreateInstance { instance, tasks }))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))?
    }

    /// Writes records atomically; each record must still be at the version it
    /// carries (see [`Write`]).
    pub async fn write(
        &self,
        instances: Vec<InstanceRecord>,
        tasks: Vec<TaskRecord>,
    ) -> Result<(), ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(Write { instances, tasks }))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))?
    }

    /// Puts `instance` and deletes the task records of `ordinals`, atomically.
    pub async fn remove_tasks(
        &self,
        instance: InstanceRecord,
        ordinals: Vec<u32>,
    ) -> Result<(), ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(RemoveTasks { instance, ordinals }))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))?
    }

    /// Persists the framework id.
    pub async fn set_framework_id(&self, id: &str) -> Result<(), ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(SetFrameworkId(id.to_string())))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))?
    }

    /// Every durable write from now on.
    pub async fn subscribe_changes(
        &self,
    ) -> Result<tokio::sync::broadcast::Receiver<StateChange>, ActorError> {
        self.addr
            .send(SubscribeChanges)
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_store::records::Role;
    use mesos_stateful_store::MemPersister;

    #[test]
    fn group_commit_batches_what_arrives_during_a_sync_and_retries_alone() {
        let mut commits = GroupCommit::default();
        let next = |commits: &mut GroupCommit<&'static str>| commits.next_batch(100, |_| 1);
        commits.push("a");
        assert_eq!(next(&mut commits), Some(vec!["a"]));
        // Arriving while "a" syncs: queued, not started.
        commits.push("b");
        commits.push("c");
        assert_eq!(next(&mut commits), None);
        assert_eq!(commits.completed(None), None);
        assert_eq!(next(&mut commits), Some(vec!["b", "c"]));
        commits.push("d");
        // The merged batch failed: its writes go again, each alone, before "d".
        assert_eq!(commits.completed(Some(vec!["b", "c"])), None);
        assert_eq!(next(&mut commits), Some(vec!["b"]));
        // A single write that fails is the caller's.
        assert_eq!(commits.completed(Some(vec!["b"])), Some(vec!["b"]));
        assert_eq!(next(&mut commits), Some(vec!["c"]));
        assert_eq!(commits.completed(None), None);
        assert_eq!(next(&mut commits), Some(vec!["d"]));
        assert!(!commits.is_idle());
        commits.completed(None);
        assert!(commits.is_idle());
        assert_eq!(next(&mut commits), None);
    }

    #[test]
    fn a_write_knows_its_records_and_the_instances_it_touches() {
        let create = WriteKind::Create {
            instance: instance("c1"),
            tasks: vec![TaskRecord::waiting("c1", 0, Role::Master, 1)],
        };
        assert_eq!(create.records(), 2);
        assert!(create.touches("c1") && !create.touches("c2"));
        let put = WriteKind::Put {
            instances: vec![instance("c3")],
            tasks: vec![
                TaskRecord::waiting("c2", 0, Role::Master, 1),
                TaskRecord::waiting("c2", 1, Role::Replica, 1),
            ],
        };
        assert_eq!(put.records(), 3);
        assert!(put.touches("c2") && put.touches("c3") && !put.touches("c1"));
        let remove = WriteKind::Remove {
            instance: instance("c4"),
            ordinals: vec![1, 2],
        };
        assert_eq!(remove.records(), 3);
        assert!(remove.touches("c4") && !remove.touches("c2"));
    }

    #[test]
    fn group_commit_puts_writes_pushed_ahead_first_and_caps_a_batch() {
        let mut commits = GroupCommit::default();
        // Sizes are the numbers in the names.
        let next = |commits: &mut GroupCommit<(&'static str, usize)>| {
            commits
                .next_batch(10, |(_, size)| *size)
                .map(|batch| batch.into_iter().map(|(name, _)| name).collect::<Vec<_>>())
        };
        commits.push(("first", 1));
        assert_eq!(next(&mut commits), Some(vec!["first"]));
        commits.push(("p1", 4));
        commits.push(("p2", 4));
        commits.push(("p3", 4));
        commits.push_ahead(("a1", 1));
        commits.push_ahead(("a2", 1));
        assert_eq!(
            commits.queued().map(|(name, _)| *name).collect::<Vec<_>>(),
            vec!["a1", "a2", "p1", "p2", "p3"]
        );
        commits.completed(None);
        // 1 + 1 + 4 + 4 records; p3 would pass the limit of 10.
        assert_eq!(next(&mut commits), Some(vec!["a1", "a2", "p1", "p2"]));
        // A write larger than the limit still goes, alone.
        commits.push(("huge", 50));
        commits.push(("p4", 1));
        commits.completed(None);
        assert_eq!(next(&mut commits), Some(vec!["p3"]));
        commits.completed(None);
        assert_eq!(next(&mut commits), Some(vec!["huge"]));
        // Retries alone stay before writes pushed ahead later.
        commits.push_ahead(("a3", 1));
        assert_eq!(commits.completed(Some(vec![("x", 1), ("y", 1)])), None);
        commits.push_ahead(("a4", 1));
        assert_eq!(
            commits.queued().map(|(name, _)| *name).collect::<Vec<_>>(),
            vec!["x", "y", "a3", "a4", "p4"]
        );
        assert_eq!(next(&mut commits), Some(vec!["x"]));
    }

    fn instance(name: &str) -> InstanceRecord {
        serde_json::from_value(serde_json::json!({
            "schema": 2, "name": name, "status": "CREATING", "version": 0,
            "created_at_ms": 0,
            "spec": {"image": "i", "replicas": 0, "master_args": [], "replica_args": [],
                     "resources": {"cpus": 1.0, "mem": 8.0, "disk": 1.0}},
        }))
        .unwrap()
    }

    fn start(persister: Arc<MemPersister>) -> (StateManagerHandle, StateStore) {
        let store = StateStore::open(persister).unwrap();
        let metrics = Arc::new(Metrics::new());
        let manager = StateManager::load(store.clone(), metrics.clone()).unwrap();
        let cache = manager.cache();
        (
            StateManagerHandle::new(manager.start(), cache, metrics),
            store,
        )
    }

    #[actix_rt::test]
    async fn a_write_built_on_an_older_read_is_refused_even_behind_a_queued_write() {
        let persister = Arc::new(MemPersister::new());
        let (state, _) = start(persister.clone());
        state.create(instance("c"), Vec::new()).await.unwrap();
        let seen = state.get("c").unwrap().instance;
        assert_eq!(seen.version, 1);
        // Another write is sent first, without waiting for it: the second, built
        // on the same read of version 1, must see the first and refuse.
        let mut other = seen.clone();
        other.status_message = Some("moved on".into());
        let first = state.write(vec![other], Vec::new());
        let mut deleting = seen.clone();
        deleting.status = mesos_stateful_store::records::InstanceStatus::Deleting;
        let second = state.write(vec![deleting.clone()], Vec::new());
        let (first, second) = futures_util::future::join(first, second).await;
        first.unwrap();
        match second {
            Err(ActorError::VersionMoved {
                expected: 1,
                current: 2,
                ..
            }) => {}
            other => panic!("expected a refusal, got {other:?}"),
        }
        let now = state.get("c").unwrap().instance;
        assert_eq!(
            (now.version, now.status),
            (2, mesos_stateful_store::records::InstanceStatus::Creating),
            "the refused write changed nothing"
        );
        // Built on a fresh read it goes through.
        deleting.version = 2;
        state.write(vec![deleting], Vec::new()).await.unwrap();
        let now = state.get("c").unwrap().instance;
        assert_eq!(
            (now.version, now.status),
            (3, mesos_stateful_store::records::InstanceStatus::Deleting)
        );
    }

    #[actix_rt::test]
    async fn a_moved_write_is_tried_again_on_a_fresh_read_then_given_up() {
        use crate::domain::operations::OperationError;
        let moved = || ActorError::VersionMoved {
            name: "c".into(),
            expected: 1,
            current: 2,
        };
        // Moved twice, then written: the caller sees the write.
        let mut attempts = 0;
        let result = retry_on_moved(|| {
            attempts += 1;
            let outcome = if attempts < 3 {
                Err(moved())
            } else {
                Ok(attempts)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        // Another error is not tried again.
        let mut attempts = 0;
        let result: Result<(), ActorError> = retry_on_moved(|| {
            attempts += 1;
            async { Err(ActorError::NotFound("c".into())) }
        })
        .await;
        assert!(matches!(result, Err(ActorError::NotFound(_))));
        assert_eq!(attempts, 1);
        // Always moved: given up after MOVED_ATTEMPTS, with the last refusal.
        let mut attempts = 0;
        let result: Result<(), OperationError> = retry_on_moved(|| {
            attempts += 1;
            async { Err(OperationError::Moved("c".into())) }
        })
        .await;
        assert!(matches!(result, Err(OperationError::Moved(_))));
        assert_eq!(attempts, MOVED_ATTEMPTS);
    }

    fn sample(task_id: &str, cpu: f64) -> mesos_stateful_proto::stateful::TaskStats {
        mesos_stateful_proto::stateful::TaskStats {
            task_id: task_id.into(),
            cpu_percent: Some(cpu),
            ..Default::default()
        }
    }

    #[actix_rt::test]
    async fn stats_are_kept_for_a_members_current_live_task_only() {
        let (state, _) = start(Arc::new(MemPersister::new()));
        let mut master = TaskRecord::waiting("c", 0, Role::Master, 1);
        master.state = Some("TASK_RUNNING".into());
        let first_task = master.task_id.clone();
        state.create(instance("c"), vec![master]).await.unwrap();
        let cpu = |state: &StateManagerHandle| {
            state
                .get("c")
                .and_then(|s| s.stats.get(&0).and_then(|stats| stats.cpu_percent))
        };

        state.record_stats(&sample("nobody", 1.0));
        state.record_stats(&sample(&first_task, 10.0));
        assert_eq!(cpu(&state), Some(10.0));
        assert_eq!(state.list()[0].stats[&0].cpu_percent, Some(10.0));
        // Scans and task lookups carry records only.
        assert!(state.records()[0].stats.is_empty());
        assert!(state.find_task(&first_task).unwrap().stats.is_empty());

        // The task ends: its sample goes, and a late one is not kept.
        let mut ended = state.get("c").unwrap().tasks[&0].clone();
        ended.state = Some("TASK_FAILED".into());
        state.write(Vec::new(), vec![ended.clone()]).await.unwrap();
        assert_eq!(cpu(&state), None);
        state.record_stats(&sample(&first_task, 20.0));
        assert_eq!(cpu(&state), None);

        // Its next incarnation gets samples; the old task id still finds the
        // instance (a late update of the old task is recognised), not its samples.
        let mut next = ended.next_incarnation();
        next.version = 2;
        next.state = Some("TASK_RUNNING".into());
        let second_task = next.task_id.clone();
        state.write(Vec::new(), vec![next]).await.unwrap();
        state.record_stats(&sample(&first_task, 30.0));
        state.record_stats(&sample(&second_task, 40.0));
        assert_eq!(cpu(&state), Some(40.0));
        assert_eq!(state.find_task(&first_task).unwrap().instance.name, "c");

        // A member scaled away takes its samples with it.
        let record = state.get("c").unwrap().instance;
        state.remove_tasks(record, vec![0]).await.unwrap();
        assert!(state.cache.stats().is_empty());
    }

    #[actix_rt::test]
    async fn reads_on_other_threads_see_each_write_once_it_is_answered() {
        let (state, _) = start(Arc::new(MemPersister::new()));
        let reader = state.clone();
        let (written, seen) = std::sync::mpsc::channel::<u32>();
        let (done, finished) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            for count in seen {
                let tasks = reader.get("c").map(|s| s.tasks.len() as u32);
                if tasks != Some(count) {
                    let _ = done.send(Err(format!("{count} written, {tasks:?} read")));
                    return;
                }
                assert_eq!(reader.count_by_status().get("CREATING"), Some(&1));
            }
            let _ = done.send(Ok(()));
        });
        state.create(instance("c"), Vec::new()).await.unwrap();
        written.send(0).unwrap();
        for ordinal in 0..50u32 {
            let task = TaskRecord::waiting("c", ordinal, Role::Replica, 1);
            state.write(Vec::new(), vec![task]).await.unwrap();
            written.send(ordinal + 1).unwrap();
        }
        drop(written);
        finished.recv().unwrap().unwrap();
        thread.join().unwrap();
    }

    #[actix_rt::test]
    async fn concurrent_writes_share_synced_batches() {
        let persister = Arc::new(MemPersister::new());
        let (state, _) = start(persister.clone());
        state.create(instance("c"), Vec::new()).await.unwrap();
        let before = persister.write_count();
        let writes = (0..100u32).map(|i| {
            let state = state.clone();
            let mut task = TaskRecord::waiting("c", i, Role::Replica, 1);
            task.message = Some(format!("write {i}"));
            async move { state.write(Vec::new(), vec![task]).await }
        });
        for result in futures_util::future::join_all(writes).await {
            result.unwrap();
        }
        let batches = persister.write_count() - before;
        assert!(batches < 50, "100 writes took {batches} synced batches");
        let cached = state.get("c").unwrap();
        assert_eq!(cached.tasks.len(), 100);
        assert_eq!(cached.tasks[&3].message.as_deref(), Some("write 3"));
        assert_eq!(cached.tasks[&3].version, 1);

        // Two writes of one member sent together, each built on version 1: the
        // first wins, the second is refused, whichever batch carries them.
        let first = cached.tasks[&3].clone();
        let mut second = first.clone();
        second.message = Some("second".into());
        let (first, second) = futures_util::future::join(
            state.write(Vec::new(), vec![first]),
            state.write(Vec::new(), vec![second]),
        )
        .await;
        first.unwrap();
        assert!(
            matches!(
                second,
                Err(ActorError::VersionMoved {
                    expected: 1,
                    current: 2,
                    ..
                })
            ),
            "{second:?}"
        );
        let cached = state.get("c").unwrap();
        assert_eq!(
            (
                cached.tasks[&3].version,
                cached.tasks[&3].message.as_deref()
            ),
            (2, Some("write 3"))
        );
    }

    #[actix_rt::test]
    async fn a_conflict_in_a_merged_batch_fails_only_its_writer() {
        let persister = Arc::new(MemPersister::new());
        let (state, store) = start(persister.clone());
        // Written behind the cache's back: only the store knows "x" is taken.
        store.create_instance(&instance("x"), &[]).unwrap();
        let (y, x, z) = tokio::join!(
            state.create(instance("y"), Vec::new()),
            state.create(instance("x"), Vec::new()),
            state.create(instance("z"), Vec::new()),
        );
        assert!(y.is_ok() && z.is_ok());
        assert!(matches!(x, Err(ActorError::AlreadyExists(name)) if name == "x"));
        // A second create of a name being created is refused at once.
        let (first, second) = tokio::join!(
            state.create(instance("w"), Vec::new()),
            state.create(instance("w"), Vec::new()),
        );
        assert!(first.is_ok());
        assert!(matches!(second, Err(ActorError::AlreadyExists(_))));
        assert_eq!(store.load_instances().unwrap().len(), 4);
    }
}
