//! StateManager: the store and its write-through cache.
//!
//! Every read is served from the cache; every write goes to the store first (on a
//! blocking thread, never on the actor thread) and reaches the cache only once it is
//! durable. Writes are handled one at a time (`AtomicResponse`): the actor does not
//! process its next message until the store has answered, so the cache and the store
//! never disagree on the order of writes.
//!
//! A restart of this actor loses nothing: the cache is rebuilt from the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use mesos_stateful_store::records::{InstanceRecord, TaskRecord};
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

/// The actor.
#[derive(Debug)]
pub struct StateManager {
    store: StateStore,
    instances: BTreeMap<String, InstanceState>,
    /// Task id → (instance, ordinal), for routing status updates.
    task_index: BTreeMap<String, (String, u32)>,
    framework_id: Option<String>,
    metrics: Arc<Metrics>,
    /// Latest stats by task id. Kept in memory only: a fresh sample arrives every
    /// stats interval.
    stats: BTreeMap<String, MemberStats>,
}

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
        let mut instances: BTreeMap<String, InstanceState> = store
            .load_instances()?
            .into_iter()
            .map(|instance| {
                (
                    instance.name.clone(),
                    InstanceState {
                        instance,
                        tasks: BTreeMap::new(),
                        stats: BTreeMap::new(),
                    },
                )
            })
            .collect();
        let mut task_index = BTreeMap::new();
        for task in store.load_all_tasks()? {
            task_index.insert(task.task_id.clone(), (task.instance.clone(), task.ordinal));
            if let Some(state) = instances.get_mut(&task.instance) {
                state.tasks.insert(task.ordinal, task);
            }
        }
        let framework_id = store.framework_id()?;
        Ok(StateManager {
            store,
            instances,
            task_index,
            framework_id,
            metrics,
            stats: BTreeMap::new(),
        })
    }

    fn apply_to_cache(&mut self, instances: Vec<InstanceRecord>, tasks: Vec<TaskRecord>) {
        for instance in instances {
            self.instances
                .entry(instance.name.clone())
                .and_modify(|state| state.instance = instance.clone())
                .or_insert_with(|| InstanceState {
                    instance,
                    tasks: BTreeMap::new(),
                    stats: BTreeMap::new(),
                });
        }
        for task in tasks {
            if lifecycle::is_terminal(task.state.as_deref()) {
                self.stats.remove(&task.task_id);
            }
            self.task_index
                .insert(task.task_id.clone(), (task.instance.clone(), task.ordinal));
            if let Some(state) = self.instances.get_mut(&task.instance) {
                state.tasks.insert(task.ordinal, task);
            }
        }
    }

    /// The cached state of `name` with the latest stats of its current tasks.
    fn snapshot(&self, name: &str) -> Option<InstanceState> {
        let mut state = self.instances.get(name)?.clone();
        state.stats = state
            .tasks
            .iter()
            .filter_map(|(ordinal, task)| Some((*ordinal, self.stats.get(&task.task_id)?.clone())))
            .collect();
        Some(state)
    }

    /// Bumps versions past the cached ones so every write is visible as a change.
    fn bump_versions(&self, instances: &mut [InstanceRecord], tasks: &mut [TaskRecord]) {
        for instance in instances.iter_mut() {
            let current = self
                .instances
                .get(&instance.name)
                .map(|s| s.instance.version)
                .unwrap_or(0);
            instance.version = current + 1;
        }
        for task in tasks.iter_mut() {
            let current = self
                .instances
                .get(&task.instance)
                .and_then(|s| s.tasks.get(&task.ordinal))
                .map(|t| t.version)
                .unwrap_or(0);
            task.version = current + 1;
        }
    }
}

/// Reads one instance.
#[derive(Debug, Message)]
#[rtype(result = "Option<InstanceState>")]
pub struct GetInstance(pub String);

/// Reads every instance.
#[derive(Debug, Message)]
#[rtype(result = "Vec<InstanceState>")]
pub struct ListInstances;

/// Finds the instance of a task id.
#[derive(Debug, Message)]
#[rtype(result = "Option<InstanceState>")]
pub struct FindTask(pub String);

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
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Write {
    /// Instance records to put.
    pub instances: Vec<InstanceRecord>,
    /// Task records to put.
    pub tasks: Vec<TaskRecord>,
}

/// Keeps the latest stats sample of a task (in memory only).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordStats(pub mesos_stateful_proto::stateful::TaskStats);

impl Handler<Traced<RecordStats>> for StateManager {
    type Result = ();
    fn handle(&mut self, traced: Traced<RecordStats>, _: &mut Context<Self>) {
        self.metrics.received(ACTOR, "RecordStats");
        let _entered = handler_span(ACTOR, "RecordStats", &traced.parent).entered();
        let stats = traced.message.0;
        // Only tasks we know: an executor cannot make us hold unbounded garbage.
        if self.task_index.contains_key(&stats.task_id) {
            self.stats
                .insert(stats.task_id.clone(), MemberStats::from(&stats));
        }
    }
}

/// Persists the framework id Mesos gave us.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct SetFrameworkId(pub String);

/// Reads the persisted framework id.
#[derive(Debug, Message)]
#[rtype(result = "Option<String>")]
pub struct GetFrameworkId;

impl Handler<Traced<GetInstance>> for StateManager {
    type Result = Option<InstanceState>;
    fn handle(&mut self, traced: Traced<GetInstance>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "GetInstance");
        let _entered = handler_span(ACTOR, "GetInstance", &traced.parent).entered();
        let msg = traced.message;
        self.snapshot(&msg.0)
    }
}

impl Handler<Traced<ListInstances>> for StateManager {
    type Result = MessageResult<Traced<ListInstances>>;
    fn handle(&mut self, traced: Traced<ListInstances>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "ListInstances");
        let _entered = handler_span(ACTOR, "ListInstances", &traced.parent).entered();
        MessageResult(
            self.instances
                .keys()
                .filter_map(|name| self.snapshot(name))
                .collect(),
        )
    }
}

impl Handler<Traced<FindTask>> for StateManager {
    type Result = Option<InstanceState>;
    fn handle(&mut self, traced: Traced<FindTask>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "FindTask");
        let _entered = handler_span(ACTOR, "FindTask", &traced.parent).entered();
        let msg = traced.message;
        let (instance, _) = self.task_index.get(&msg.0)?;
        self.instances.get(instance).cloned()
    }
}

impl Handler<Traced<GetFrameworkId>> for StateManager {
    type Result = Option<String>;
    fn handle(&mut self, traced: Traced<GetFrameworkId>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "GetFrameworkId");
        let _entered = handler_span(ACTOR, "GetFrameworkId", &traced.parent).entered();
        self.framework_id.clone()
    }
}

impl Handler<Traced<CreateInstance>> for StateManager {
    type Result = AtomicResponse<Self, Result<InstanceState, ActorError>>;

    fn handle(&mut self, traced: Traced<CreateInstance>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "CreateInstance");
        let _entered = handler_span(ACTOR, "CreateInstance", &traced.parent).entered();
        let msg = traced.message;
        let CreateInstance {
            mut instance,
            mut tasks,
        } = msg;
        if self.instances.contains_key(&instance.name) {
            let name = instance.name.clone();
            return AtomicResponse::new(Box::pin(
                async move { Err(ActorError::AlreadyExists(name)) }.into_actor(self),
            ));
        }
        instance.version = 1;
        for task in &mut tasks {
            task.version = 1;
        }
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let (written_instance, written_tasks) = (instance.clone(), tasks.clone());
        let write = async move {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let result = store.create_instance(&instance, &tasks);
                metrics
                    .store_write_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics
                    .store_batch_records
                    .observe((1 + tasks.len()) as f64);
                result
            })
            .await
            .map_err(|e| ActorError::Unavailable {
                actor: "StateManager",
                reason: e.to_string(),
            })?
            .map_err(|e| match e {
                StoreError::AlreadyExists { .. } => {
                    ActorError::AlreadyExists(written_instance_name(&e))
                }
                other => ActorError::Store(other),
            })
        };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |result, actor, _| {
                result?;
                let name = written_instance.name.clone();
                actor.apply_to_cache(vec![written_instance], written_tasks);
                actor
                    .instances
                    .get(&name)
                    .cloned()
                    .ok_or(ActorError::NotFound(name))
            },
        )))
    }
}

fn written_instance_name(error: &StoreError) -> String {
    match error {
        StoreError::AlreadyExists { key } => key.trim_start_matches("instances/").to_string(),
        other => other.to_string(),
    }
}

impl Handler<Traced<Write>> for StateManager {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    fn handle(&mut self, traced: Traced<Write>, _: &mut Context<Self>) -> Self::Result {
        self.metrics.received(ACTOR, "Write");
        let _entered = handler_span(ACTOR, "Write", &traced.parent).entered();
        let msg = traced.message;
        let Write {
            mut instances,
            mut tasks,
        } = msg;
        self.bump_versions(&mut instances, &mut tasks);
        let mut changes = Changes::default();
        for instance in &instances {
            changes.put_instance(instance.clone());
        }
        for task in &tasks {
            changes.put_task(task.clone());
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
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
            move |result, actor, _| {
                result?;
                actor.apply_to_cache(instances, tasks);
                Ok(())
            },
        )))
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
                actor.framework_id = Some(msg.0);
                Ok(())
            },
        )))
    }
}

/// Typed access to the StateManager.
#[derive(Debug, Clone)]
pub struct StateManagerHandle {
    addr: Addr<StateManager>,
    metrics: Arc<Metrics>,
}

impl StateManagerHandle {
    pub(crate) fn new(addr: Addr<StateManager>, metrics: Arc<Metrics>) -> Self {
        StateManagerHandle { addr, metrics }
    }

    /// One instance.
    pub async fn get(&self, name: &str) -> Result<Option<InstanceState>, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(GetInstance(name.to_string())))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))
    }

    /// Every instance.
    pub async fn list(&self) -> Result<Vec<InstanceState>, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(ListInstances))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))
    }

    /// The instance owning `task_id`.
    pub async fn find_task(&self, task_id: &str) -> Result<Option<InstanceState>, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(FindTask(task_id.to_string())))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))
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

    /// Writes records atomically.
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

    /// Persists the framework id.
    pub async fn set_framework_id(&self, id: &str) -> Result<(), ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(SetFrameworkId(id.to_string())))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))?
    }

    /// The persisted framework id.
    pub async fn framework_id(&self) -> Result<Option<String>, ActorError> {
        self.metrics.sent(ACTOR);
        self.addr
            .send(Traced::new(GetFrameworkId))
            .await
            .map_err(|e| ActorError::mailbox("StateManager", e))
    }

    /// Keeps the latest stats sample of a task.
    pub fn record_stats(&self, stats: mesos_stateful_proto::stateful::TaskStats) {
        self.metrics.sent(ACTOR);
        self.addr.do_send(Traced::new(RecordStats(stats)));
    }

    /// Tasks that are launched and not terminal, with their agents.
    pub async fn live_tasks(&self) -> Result<Vec<TaskRecord>, ActorError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .flat_map(|state| state.tasks.into_values())
            .filter(|t| t.agent_id.is_some() && !lifecycle::is_terminal(t.state.as_deref()))
            .collect())
    }
}
