//! The master's side of the scheduler API: SUBSCRIBE and every later call.

use std::time::{Duration, Instant};

use http::StatusCode;
use mesos_stateful_proto::v1::{
    self, executor, offer::operation, scheduler, task_status, FrameworkId, FrameworkInfo, TaskInfo,
    TaskState, TaskStatus,
};
use tokio::sync::mpsc::UnboundedSender;

use super::{
    agent_status, kill_executor, master_status, shutdown_executor, Cluster, Connection, Effect,
    Executor, Framework, Task,
};
use crate::allocator::DEFAULT_REFUSE_SECONDS;
use crate::process::{executor_environment, EnvironmentParams, SpawnRequest};
use crate::resources::ResourceSet;
use crate::status_updates::AckOutcome;
use crate::validation::Rejection;

fn error_event(message: &str) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::Error as i32),
        error: Some(scheduler::event::Error {
            message: message.to_string(),
        }),
        ..Default::default()
    }
}

impl Cluster {
    /// Handles a validated SUBSCRIBE whose stream is `sender`. Sends SUBSCRIBED (or
    /// ERROR, dropping the sender so the stream ends) and returns the framework ID.
    pub fn subscribe(
        &mut self,
        subscribe: scheduler::call::Subscribe,
        stream_id: String,
        sender: UnboundedSender<scheduler::Event>,
    ) -> Option<FrameworkId> {
        let mut info = subscribe.framework_info;
        let framework_id = match info.id.clone() {
            Some(id) if self.removed_frameworks.contains(&id) => {
                let _ = sender.send(error_event("Framework has been removed"));
                return None;
            }
            Some(id) => id,
            None => {
                let id = FrameworkId {
                    value: format!("{}-{:04}", self.master_info.id, self.next_framework),
                };
                self.next_framework += 1;
                id
            }
        };
        info.id = Some(framework_id.clone());
        let suppressed_roles = subscribe.suppressed_roles;
        match self.frameworks.get_mut(&framework_id) {
            Some(framework) => {
                if let Some(old) = framework.connection.take() {
                    tracing::info!(framework_id = %framework_id.value, "framework failed over");
                    let _ = old.sender.send(error_event("Framework failed over"));
                }
                // `checkpoint` cannot change after the first subscription.
                info.checkpoint = framework.info.checkpoint;
                framework.info = info;
            }
            None => {
                tracing::info!(framework_id = %framework_id.value, name = %info.name, "framework subscribed");
                self.frameworks.insert(
                    framework_id.clone(),
                    Framework {
                        id: framework_id.clone(),
                        info,
                        connection: None,
                        failover_deadline: None,
                        suppressed: false,
                    },
                );
            }
        }
        self.remove_offers_of(&framework_id);
        let heartbeat = self.settings.heartbeat_interval.as_secs_f64();
        let master_info = self.master_info.clone();
        let framework = self.frameworks.get_mut(&framework_id)?;
        framework.suppressed = suppressed_roles.contains(&framework.role());
        framework.failover_deadline = None;
        let _ = sender.send(scheduler::Event {
            r#type: Some(scheduler::event::Type::Subscribed as i32),
            subscribed: Some(scheduler::event::Subscribed {
                framework_id: framework_id.clone(),
                heartbeat_interval_seconds: Some(heartbeat),
                master_info: Some(master_info),
            }),
            ..Default::default()
        });
        // The first HEARTBEAT follows SUBSCRIBED at once; the stream's watcher sends
        // the later ones.
        let _ = sender.send(scheduler::Event {
            r#type: Some(scheduler::event::Type::Heartbeat as i32),
            ..Default::default()
        });
        framework.connection = Some(Connection { stream_id, sender });
        // Updates waiting for an acknowledgement are resent to the new stream now
        // rather than at their next retry.
        for index in 0..self.agents.len() {
            for status in self.agents[index].updates.in_flight(&framework_id) {
                self.forward_update(index, &framework_id, status);
            }
        }
        self.resend_operation_updates(&framework_id);
        Some(framework_id)
    }

    /// The checks of a non-SUBSCRIBE call against the framework, in Mesos's order:
    /// unknown framework 400, disconnected 403, missing or wrong stream ID 400.
    pub fn authorize_call(
        &self,
        framework_id: &FrameworkId,
        stream_id: Option<&str>,
    ) -> Result<(), Rejection> {
        let framework = self
            .frameworks
            .get(framework_id)
            .ok_or_else(|| Rejection::new(StatusCode::BAD_REQUEST, "Framework cannot be found"))?;
        let connection = framework
            .connection
            .as_ref()
            .ok_or_else(|| Rejection::new(StatusCode::FORBIDDEN, "Framework is not subscribed"))?;
        match stream_id {
            None => Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header",
            )),
            Some(id) if id != connection.stream_id => Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "The stream ID '{id}' included in this request didn't match the stream ID currently associated with framework ID {}",
                    framework_id.value
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// A call authenticated as `principal` must come from the framework's own
    /// principal (400 otherwise, as Mesos answers).
    pub fn check_principal(
        &self,
        framework_id: &FrameworkId,
        principal: &str,
    ) -> Result<(), Rejection> {
        let framework_principal = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.info.principal.as_deref());
        if framework_principal == Some(principal) {
            Ok(())
        } else {
            Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "Authenticated principal '{principal}' does not match principal '{}' of framework {}",
                    framework_principal.unwrap_or_default(),
                    framework_id.value
                ),
            ))
        }
    }

    /// The subscription stream `stream_id` of a framework ended.
    pub fn stream_closed(
        &mut self,
        framework_id: &FrameworkId,
        stream_id: &str,
        now: Instant,
    ) -> Vec<Effect> {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return Vec::new();
        };
        if framework
            .connection
            .as_ref()
            .is_none_or(|c| c.stream_id != stream_id)
        {
            return Vec::new();
        }
        framework.connection = None;
        let timeout = framework.info.failover_timeout.unwrap_or(0.0);
        tracing::info!(framework_id = %framework_id.value, failover_timeout = timeout, "framework disconnected");
        self.remove_offers_of(framework_id);
        if timeout > 0.0 && timeout.is_finite() {
            let timeout = Duration::from_secs_f64(timeout.min(1e9));
            if let Some(framework) = self.frameworks.get_mut(framework_id) {
                framework.failover_deadline = Some(now + timeout);
            }
            Vec::new()
        } else {
            self.remove_framework(framework_id)
        }
    }

    /// Runs an authorized, validated call other than SUBSCRIBE.
    pub fn scheduler_call(
        &mut self,
        call: scheduler::Call,
        now: Instant,
    ) -> Result<Vec<Effect>, Rejection> {
        use scheduler::call::Type;
        let framework_id = call.framework_id.clone().ok_or_else(|| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "expecting 'framework_id' to be present",
            )
        })?;
        let call_type = call.r#type();
        let mut effects = Vec::new();
        match call_type {
            Type::Teardown => {
                tracing::info!(framework_id = %framework_id.value, "framework torn down");
                effects = self.remove_framework(&framework_id);
            }
            Type::Accept => {
                if let Some(accept) = call.accept {
                    effects = self.accept(
                        &framework_id,
                        accept.offer_ids,
                        accept.operations,
                        accept.filters,
                        now,
                    );
                }
            }
            Type::Decline => {
                if let Some(decline) = call.decline {
                    effects = self.accept(
                        &framework_id,
                        decline.offer_ids,
                        Vec::new(),
                        decline.filters,
                        now,
                    );
                }
            }
            Type::Revive => {
                self.filters.clear_framework(&framework_id);
                if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                    framework.suppressed = false;
                }
                // Offers go out at the next tick rather than a full interval later.
                self.next_allocation = now;
            }
            Type::Suppress => {
                if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                    framework.suppressed = true;
                }
            }
            Type::Kill => {
                if let Some(kill) = call.kill {
                    effects = self.kill(&framework_id, kill);
                }
            }
            Type::Shutdown => {
                if let Some(shutdown) = call.shutdown {
                    effects = self.shutdown_call(&framework_id, shutdown);
                }
            }
            Type::Acknowledge => {
                if let Some(acknowledge) = call.acknowledge {
                    self.acknowledge(&framework_id, acknowledge, now);
                }
            }
            Type::Reconcile => {
                if let Some(reconcile) = call.reconcile {
                    self.reconcile(&framework_id, reconcile.tasks);
                }
            }
            Type::Message => {
                if let Some(message) = call.message {
                    self.message_to_executor(&framework_id, message);
                }
            }
            Type::ReconcileOperations => {
                if let Some(reconcile) = call.reconcile_operations {
                    self.reconcile_operations(&framework_id, reconcile);
                }
            }
            Type::UpdateFramework => {
                if let Some(update) = call.update_framework {
                    self.update_framework(&framework_id, update)?;
                }
            }
            Type::AcknowledgeOperationStatus => {
                if let Some(acknowledge) = call.acknowledge_operation_status {
                    self.acknowledge_operation_status(&framework_id, &acknowledge);
                }
            }
            Type::AcceptInverseOffers | Type::DeclineInverseOffers | Type::Request => {
                tracing::debug!(
                    call = call_type.as_str_name(),
                    "call has no effect in devcluster"
                );
            }
            Type::Subscribe | Type::Unknown => {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "unexpected call type",
                ));
            }
        }
        Ok(effects)
    }

    /// ACCEPT (and DECLINE, which is ACCEPT without operations).
    fn accept(
        &mut self,
        framework_id: &FrameworkId,
        offer_ids: Vec<v1::OfferId>,
        operations: Vec<v1::offer::Operation>,
        filters: Option<v1::Filters>,
        now: Instant,
    ) -> Vec<Effect> {
        let mut agent = None;
        let mut offered = ResourceSet::default();
        let mut invalid = None;
        if offer_ids.is_empty() {
            invalid = Some("no offers were given".to_string());
        }
        for offer_id in &offer_ids {
            match self.offers.remove(offer_id) {
                Some(offer) if offer.framework_id == *framework_id => {
                    if agent.is_some_and(|index| index != offer.agent) {
                        invalid = Some("offers are from different agents".to_string());
                    }
                    agent = Some(offer.agent);
                    offered.add(&offer.resources);
                }
                Some(offer) => {
                    self.offers.insert(offer_id.clone(), offer);
                    invalid = Some(format!(
                        "offer {} belongs to another framework",
                        offer_id.value
                    ));
                }
                None => invalid = Some(format!("offer {} is no longer valid", offer_id.value)),
            }
        }
        let Some(framework) = self.frameworks.get(framework_id) else {
            return Vec::new();
        };
        let partition_aware = framework.partition_aware();
        let (index, reason) = match (agent, invalid) {
            (Some(index), None) => (index, None),
            (_, reason) => (0, Some(reason.unwrap_or_default())),
        };
        if let Some(reason) = reason {
            // Resources of the valid offers among them simply become free again.
            let state = if partition_aware {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            for operation in operations {
                self.operation_feedback(framework_id, &operation, None, Err(&reason), now);
                for task in launched_tasks(operation) {
                    self.send_master_update(
                        framework_id,
                        master_status(
                            &task.task_id,
                            state,
                            task_status::Reason::InvalidOffers,
                            reason.clone(),
                            None,
                        ),
                    );
                }
            }
            return Vec::new();
        }

        let mut effects = Vec::new();
        let mut remaining = offered;
        for operation in operations {
            let kind = operation
                .r#type
                .and_then(|t| operation::Type::try_from(t).ok());
            match kind {
                Some(operation::Type::Launch) => {
                    let tasks = operation.launch.map(|l| l.task_infos).unwrap_or_default();
                    for task in tasks {
                        if operation.id.is_some() {
                            self.task_error(
                                framework_id,
                                &task,
                                "operation IDs are not allowed on LAUNCH",
                            );
                            continue;
                        }
                        match self.validate_task(index, framework_id, task, &remaining) {
                            Ok((task, needed)) => {
                                remaining.subtract(&needed);
                                effects.extend(self.launch_task(index, framework_id, task, now));
                            }
                            Err((task, message)) => self.task_error(framework_id, &task, &message),
                        }
                    }
                }
                Some(operation::Type::LaunchGroup) => {
                    for task in operation
                        .launch_group
                        .map(|l| l.task_group.tasks)
                        .unwrap_or_default()
                    {
                        self.task_error(
                            framework_id,
                            &task,
                            "LAUNCH_GROUP is not supported by devcluster",
                        );
                    }
                }
                Some(
                    kind @ (operation::Type::Reserve
                    | operation::Type::Unreserve
                    | operation::Type::Create
                    | operation::Type::Destroy),
                ) => {
                    let outcome =
                        self.apply_operation(index, framework_id, kind, &operation, &mut remaining);
                    match outcome {
                        Ok(operation_effects) => {
                            effects.extend(operation_effects);
                            self.operation_feedback(
                                framework_id,
                                &operation,
                                Some(index),
                                Ok(()),
                                now,
                            );
                        }
                        Err(message) => {
                            tracing::warn!(operation = kind.as_str_name(), %message, "offer operation dropped");
                            self.operation_feedback(
                                framework_id,
                                &operation,
                                Some(index),
                                Err(&message),
                                now,
                            );
                        }
                    }
                }
                other => {
                    tracing::warn!(operation = ?other, "offer operation not supported by devcluster, dropped");
                    let message = "operation not supported by devcluster";
                    self.operation_feedback(
                        framework_id,
                        &operation,
                        Some(index),
                        Err(message),
                        now,
                    );
                }
            }
        }
        let refuse_seconds = filters
            .and_then(|f| f.refuse_seconds)
            .unwrap_or(DEFAULT_REFUSE_SECONDS);
        let agent_id = self.agents[index].id.clone();
        self.filters
            .refuse(framework_id, &agent_id, remaining, refuse_seconds, now);
        effects
    }

    fn task_error(&self, framework_id: &FrameworkId, task: &TaskInfo, message: &str) {
        tracing::warn!(task_id = %task.task_id.value, message, "task launch refused");
        self.send_master_update(
            framework_id,
            master_status(
                &task.task_id,
                TaskState::TaskError,
                task_status::Reason::TaskInvalid,
                message,
                Some(task.agent_id.clone()),
            ),
        );
    }

    /// Validates a task of a LAUNCH against the offered resources left; returns the
    /// task (executor's framework ID filled in) and the resources it consumes.
    #[allow(clippy::result_large_err)] // The task is handed back for the TASK_ERROR.
    fn validate_task(
        &self,
        index: usize,
        framework_id: &FrameworkId,
        mut task: TaskInfo,
        remaining: &ResourceSet,
    ) -> Result<(TaskInfo, ResourceSet), (TaskInfo, String)> {
        let agent = &self.agents[index];
        if task.agent_id != agent.id {
            let message = format!(
                "task uses agent {} but the offers are from {}",
                task.agent_id.value, agent.id.value
            );
            return Err((task, message));
        }
        if let Some(existing) = self
            .tasks
            .get(&(framework_id.clone(), task.task_id.clone()))
        {
            if !existing.is_terminal() {
                let message = format!("task ID {} is already in use", task.task_id.value);
                return Err((task, message));
            }
        }
        let executor = match (&mut task.executor, &task.command) {
            (Some(_), Some(_)) | (None, None) => {
                return Err((
                    task,
                    "task should have exactly one of CommandInfo or ExecutorInfo".to_string(),
                ));
            }
            (None, Some(command)) => {
                if command.value.is_none() {
                    return Err((task, "the task's command must have a value".to_string()));
                }
                // The built-in command executor takes the task's ID as its own.
                let executor_id = v1::ExecutorId {
                    value: task.task_id.value.clone(),
                };
                let simulated_in_use = agent
                    .simulation
                    .as_ref()
                    .is_some_and(|s| s.has_executor(framework_id, &executor_id));
                if simulated_in_use
                    || agent
                        .executors
                        .contains_key(&(framework_id.clone(), executor_id))
                {
                    let message = format!(
                        "executor ID {} of the command task is in use",
                        task.task_id.value
                    );
                    return Err((task, message));
                }
                let needed = match ResourceSet::from_resources(&task.resources) {
                    Ok(set) => set,
                    Err(message) => return Err((task, message)),
                };
                if !remaining.contains(&needed) {
                    return Err((task, "task uses more resources than offered".to_string()));
                }
                return Ok((task, needed));
            }
            (Some(executor), None) => executor,
        };
        let executor_type = executor
            .r#type
            .unwrap_or(v1::executor_info::Type::Unknown as i32);
        if executor_type == v1::executor_info::Type::Default as i32 {
            return Err((
                task,
                "the default executor is not supported by devcluster".to_string(),
            ));
        }
        if executor.command.is_none() {
            return Err((task, "custom executor must have a CommandInfo".to_string()));
        }
        match &executor.framework_id {
            None => executor.framework_id = Some(framework_id.clone()),
            Some(fid) if fid != framework_id => {
                return Err((task, "ExecutorInfo has an invalid FrameworkID".to_string()));
            }
            Some(_) => {}
        }
        let existing = agent
            .executors
            .get(&(framework_id.clone(), executor.executor_id.clone()));
        if let Some(existing) = existing {
            if existing.info != *executor {
                let message = format!(
                    "ExecutorInfo is not compatible with the ExecutorInfo of running executor {}",
                    executor.executor_id.value
                );
                return Err((task, message));
            }
            if existing.shutting_down {
                let message = format!("executor {} is shutting down", executor.executor_id.value);
                return Err((task, message));
            }
        }
        let mut needed = match ResourceSet::from_resources(&task.resources) {
            Ok(set) => set,
            Err(message) => return Err((task, message)),
        };
        let simulated_running = agent
            .simulation
            .as_ref()
            .is_some_and(|s| s.has_executor(framework_id, &executor.executor_id));
        if existing.is_none() && !simulated_running {
            match ResourceSet::from_resources(&executor.resources) {
                Ok(set) => needed.add(&set),
                Err(message) => return Err((task, message)),
            }
        }
        if !remaining.contains(&needed) {
            return Err((task, "task uses more resources than offered".to_string()));
        }
        Ok((task, needed))
    }

    /// Records a valid task and hands it to its agent's executor, starting the
    /// executor if it does not run yet.
    fn launch_task(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        task: TaskInfo,
        now: Instant,
    ) -> Vec<Effect> {
        if self.agents[index].simulation.is_some() {
            self.launch_simulated_task(index, framework_id, task, now);
            return Vec::new();
        }
        let Some(executor_info) = task.executor.clone() else {
            return self.launch_command_task(index, framework_id, task);
        };
        let Some(framework_info) = self.frameworks.get(framework_id).map(|f| f.info.clone()) else {
            return Vec::new();
        };
        let task_resources = ResourceSet::from_resources(&task.resources).unwrap_or_default();
        self.tasks.insert(
            (framework_id.clone(), task.task_id.clone()),
            Task {
                agent: index,
                executor_id: Some(executor_info.executor_id.clone()),
                resources: task_resources,
                status: TaskStatus {
                    task_id: task.task_id.clone(),
                    state: TaskState::TaskStaging as i32,
                    source: Some(task_status::Source::Master as i32),
                    agent_id: Some(self.agents[index].id.clone()),
                    executor_id: Some(executor_info.executor_id.clone()),
                    ..Default::default()
                },
            },
        );
        let settings = self.settings.clone();
        let key = (framework_id.clone(), executor_info.executor_id.clone());
        let volumes = self.volume_links(index, &[&task.resources, &executor_info.resources]);
        let agent = &mut self.agents[index];
        if let Some(executor) = agent.executors.get_mut(&key) {
            executor
                .tasks
                .insert(task.task_id.clone(), TaskState::TaskStaging);
            if !volumes.is_empty() {
                // Linked before the task is delivered, as Mesos mounts volumes into
                // a running container before the task reaches it; a few syscalls.
                let sandbox = sandbox_path(
                    &settings.work_dir,
                    &agent.id.value,
                    &framework_id.value,
                    &key.1.value,
                    &executor.container_id,
                );
                if let Err(error) = crate::process::link_volumes(&sandbox, &volumes) {
                    tracing::warn!(%error, "cannot link volumes into the executor's sandbox");
                }
            }
            match &executor.connection {
                Some(connection) => connection.send(executor::Event {
                    r#type: Some(executor::event::Type::Launch as i32),
                    launch: Some(executor::event::Launch { task }),
                    ..Default::default()
                }),
                None => executor.queued.push(task),
            }
            return Vec::new();
        }

        let container_id = uuid::Uuid::new_v4().to_string();
        let sandbox = sandbox_path(
            &settings.work_dir,
            &agent.id.value,
            &framework_id.value,
            &executor_info.executor_id.value,
            &container_id,
        );
        let grace = executor_info
            .shutdown_grace_period
            .and_then(|d| u64::try_from(d.nanoseconds).ok())
            .map(Duration::from_nanos)
            .unwrap_or(settings.executor_shutdown_grace_period);
        let command = executor_info.command.clone().unwrap_or_default();
        let environment = executor_environment(&EnvironmentParams {
            framework_id: &framework_id.value,
            executor_id: &executor_info.executor_id.value,
            agent_id: &agent.id.value,
            agent_endpoint: agent.endpoint,
            sandbox: &sandbox,
            checkpoint: framework_info.checkpoint.unwrap_or(false),
            shutdown_grace_period: grace,
            reregistration_timeout: settings.executor_reregistration_timeout,
            command_environment: command.environment.as_ref(),
            host_environment: &crate::process::host_passthrough(),
        });
        tracing::info!(executor_id = %executor_info.executor_id.value, container_id, "launching executor");
        let mut tasks = std::collections::HashMap::new();
        tasks.insert(task.task_id.clone(), TaskState::TaskStaging);
        agent.executors.insert(
            key,
            Executor {
                info: executor_info.clone(),
                framework_info,
                container_id: container_id.clone(),
                resources: ResourceSet::from_resources(&executor_info.resources)
                    .unwrap_or_default(),
                pid: None,
                connection: None,
                queued: vec![task],
                tasks,
                registration_deadline: Some(now + settings.executor_registration_timeout),
                kill_requested: false,
                shutting_down: false,
                termination_reason: task_status::Reason::ExecutorTerminated,
                command_task: None,
                awaiting_reregistration: false,
            },
        );
        vec![Effect::SpawnExecutor(Box::new(SpawnRequest {
            agent: index,
            framework_id: framework_id.clone(),
            executor_id: executor_info.executor_id,
            container_id,
            sandbox,
            command,
            environment,
            volumes,
        }))]
    }

    fn kill(&mut self, framework_id: &FrameworkId, kill: scheduler::call::Kill) -> Vec<Effect> {
        let key = (framework_id.clone(), kill.task_id.clone());
        let target = self
            .tasks
            .get(&key)
            .filter(|task| !task.is_terminal())
            .map(|task| (task.agent, task.executor_id.clone()));
        let Some((index, Some(executor_id))) = target else {
            // Unknown (or finished) task: answered like an explicit reconciliation.
            let reconcile = scheduler::call::reconcile::Task {
                task_id: kill.task_id,
                agent_id: kill.agent_id,
            };
            self.reconcile(framework_id, vec![reconcile]);
            return Vec::new();
        };
        if self.agents[index].simulation.is_some() {
            self.kill_simulated_task(index, framework_id, &kill.task_id, Instant::now());
            return Vec::new();
        }
        let is_command_task = self.agents[index]
            .executors
            .get(&(framework_id.clone(), executor_id.clone()))
            .is_some_and(|executor| executor.command_task.is_some());
        if is_command_task {
            let now = Instant::now();
            return self.kill_command_task(
                index,
                framework_id,
                &executor_id,
                kill.kill_policy,
                now,
            );
        }
        let agent = &mut self.agents[index];
        let agent_id = agent.id.clone();
        let Some(executor) = agent
            .executors
            .get_mut(&(framework_id.clone(), executor_id.clone()))
        else {
            return Vec::new();
        };
        if let Some(position) = executor
            .queued
            .iter()
            .position(|t| t.task_id == kill.task_id)
        {
            // Not delivered yet: the agent kills it itself.
            executor.queued.remove(position);
            executor
                .tasks
                .insert(kill.task_id.clone(), TaskState::TaskKilled);
            let status = agent_status(
                &kill.task_id,
                TaskState::TaskKilled,
                task_status::Reason::TaskKilledDuringLaunch,
                "task killed before delivery to the executor",
                &agent_id,
                &executor_id,
            );
            let mut effects = Vec::new();
            let idle = executor.queued.is_empty()
                && executor.connection.is_none()
                && executor.tasks.values().all(|state| state.is_terminal());
            if idle {
                effects.extend(kill_executor(index, executor, Duration::ZERO));
            }
            self.push_agent_update(index, framework_id, status, Instant::now());
            return effects;
        }
        match &executor.connection {
            Some(connection) => connection.send(executor::Event {
                r#type: Some(executor::event::Type::Kill as i32),
                kill: Some(executor::event::Kill {
                    task_id: kill.task_id,
                    kill_policy: kill.kill_policy,
                }),
                ..Default::default()
            }),
            None => {
                tracing::warn!(task_id = %kill.task_id.value, "executor disconnected, KILL dropped")
            }
        }
        Vec::new()
    }

    fn shutdown_call(
        &mut self,
        framework_id: &FrameworkId,
        shutdown: scheduler::call::Shutdown,
    ) -> Vec<Effect> {
        let grace = self.settings.executor_shutdown_grace_period;
        let Some(index) = self.agent_index(&shutdown.agent_id) else {
            tracing::warn!(agent_id = %shutdown.agent_id.value, "SHUTDOWN for an unknown agent dropped");
            return Vec::new();
        };
        if self.agents[index].simulation.is_some() {
            let found = self.shutdown_simulated_executor(
                index,
                framework_id,
                &shutdown.executor_id,
                Instant::now(),
            );
            if !found {
                tracing::warn!(executor_id = %shutdown.executor_id.value, "SHUTDOWN for an unknown executor dropped");
            }
            return Vec::new();
        }
        match self.agents[index]
            .executors
            .get_mut(&(framework_id.clone(), shutdown.executor_id.clone()))
        {
            Some(executor) => shutdown_executor(index, executor, grace),
            None => {
                tracing::warn!(executor_id = %shutdown.executor_id.value, "SHUTDOWN for an unknown executor dropped");
                Vec::new()
            }
        }
    }

    fn acknowledge(
        &mut self,
        framework_id: &FrameworkId,
        acknowledge: scheduler::call::Acknowledge,
        now: Instant,
    ) {
        let Some(index) = self.agent_index(&acknowledge.agent_id) else {
            tracing::warn!(agent_id = %acknowledge.agent_id.value, "acknowledgement for an unknown agent dropped");
            return;
        };
        let outcome = self.agents[index].updates.acknowledge(
            framework_id,
            &acknowledge.task_id,
            &acknowledge.uuid,
            now,
        );
        match outcome {
            AckOutcome::Unknown => {
                tracing::warn!(task_id = %acknowledge.task_id.value, "acknowledgement of an unknown update dropped");
            }
            AckOutcome::Acknowledged { acknowledged, next } => {
                let terminal =
                    TaskState::try_from(acknowledged.state).is_ok_and(TaskState::is_terminal);
                if terminal && next.is_none() {
                    let key = (framework_id.clone(), acknowledged.task_id.clone());
                    self.tasks.remove(&key);
                    for executor in self.agents[index].executors.values_mut() {
                        executor.tasks.remove(&acknowledged.task_id);
                    }
                }
                if let Some(next) = next {
                    self.forward_update(index, framework_id, *next);
                }
            }
        }
    }

    /// Answers RECONCILE per §1.10 (no uuid, reason REASON_RECONCILIATION).
    fn reconcile(
        &mut self,
        framework_id: &FrameworkId,
        tasks: Vec<scheduler::call::reconcile::Task>,
    ) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let partition_aware = framework.partition_aware();
        let answer = |task: &Task| {
            let mut status = master_status(
                &task.status.task_id,
                TaskState::try_from(task.status.state).unwrap_or(TaskState::TaskStaging),
                task_status::Reason::Reconciliation,
                "reconciliation: latest task state",
                task.status.agent_id.clone(),
            );
            status.executor_id = task.executor_id.clone();
            status.healthy = task.status.healthy;
            status.container_status = task.status.container_status.clone();
            status.unreachable_time = task.status.unreachable_time;
            status
        };
        let mut answers = Vec::new();
        if tasks.is_empty() {
            for ((fid, _), task) in &self.tasks {
                if fid == framework_id {
                    answers.push(answer(task));
                }
            }
        } else {
            for wanted in tasks {
                match self
                    .tasks
                    .get(&(framework_id.clone(), wanted.task_id.clone()))
                {
                    Some(task) => answers.push(answer(task)),
                    None => {
                        let agent = wanted
                            .agent_id
                            .as_ref()
                            .and_then(|id| self.agent_index(id))
                            .map(|index| self.agents[index].phase);
                        let state = super::agent_loss::unknown_task_state(partition_aware, agent);
                        answers.push(master_status(
                            &wanted.task_id,
                            state,
                            task_status::Reason::Reconciliation,
                            "reconciliation: task is unknown",
                            wanted.agent_id,
                        ));
                    }
                }
            }
        }
        for status in answers {
            self.send_master_update(framework_id, status);
        }
    }

    fn message_to_executor(&self, framework_id: &FrameworkId, message: scheduler::call::Message) {
        let executor = self.agent_index(&message.agent_id).and_then(|index| {
            self.agents[index]
                .executors
                .get(&(framework_id.clone(), message.executor_id.clone()))
        });
        match executor.and_then(|e| e.connection.as_ref()) {
            Some(connection) => connection.send(executor::Event {
                r#type: Some(executor::event::Type::Message as i32),
                message: Some(executor::event::Message { data: message.data }),
                ..Default::default()
            }),
            None => {
                tracing::warn!(executor_id = %message.executor_id.value, "MESSAGE for an unknown or unsubscribed executor dropped")
            }
        }
    }

    fn update_framework(
        &mut self,
        framework_id: &FrameworkId,
        update: scheduler::call::UpdateFramework,
    ) -> Result<(), Rejection> {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "Framework cannot be found",
            ));
        };
        let new: FrameworkInfo = update.framework_info;
        let old = &framework.info;
        if new.user != old.user
            || new.principal != old.principal
            || new.checkpoint.unwrap_or(false) != old.checkpoint.unwrap_or(false)
        {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "'user', 'principal' and 'checkpoint' of a framework cannot be updated",
            ));
        }
        framework.info = new;
        framework.suppressed = update.suppressed_roles.contains(&framework.role());
        Ok(())
    }

    /// Queues an agent-generated (or executor) update in agent `index`'s status
    /// update manager and forwards it if it is now in flight.
    pub(super) fn push_agent_update(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        status: TaskStatus,
        now: Instant,
    ) {
        if let Some(front) = self.agents[index].updates.push(framework_id, status, now) {
            self.forward_update(index, framework_id, front);
        }
    }
}

/// The sandbox of one run (container) of an executor.
pub(super) fn sandbox_path(
    work_dir: &std::path::Path,
    agent_id: &str,
    framework_id: &str,
    executor_id: &str,
    container_id: &str,
) -> std::path::PathBuf {
    work_dir
        .join("agents")
        .join(agent_id)
        .join("frameworks")
        .join(framework_id)
        .join("executors")
        .join(executor_id)
        .join("runs")
        .join(container_id)
}

/// The tasks a LAUNCH or LAUNCH_GROUP operation carries.
fn launched_tasks(operation: v1::offer::Operation) -> Vec<TaskInfo> {
    let mut tasks = operation.launch.map(|l| l.task_infos).unwrap_or_default();
    if let Some(group) = operation.launch_group {
        tasks.extend(group.task_group.tasks);
    }
    tasks
}
