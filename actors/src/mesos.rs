//! How actors talk to Mesos, and how Mesos events reach actors.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use mesos_stateful_proto::v1;
use mesos_stateful_proto::v1::scheduler::{call, Call};

/// Outgoing calls to the Mesos master. The scheduler's HTTP client implements it;
/// [`RecordingMesos`] records calls for tests.
///
/// `send` never blocks: implementations queue the call and deliver it in order on
/// the current subscription, filling in the framework id and the stream id.
pub trait MesosCalls: Send + Sync + Debug + 'static {
    /// Queues `call` for the current subscription.
    fn send(&self, call: Call);
    /// The framework id of the current subscription, once subscribed.
    fn framework_id(&self) -> Option<String>;
    /// The master the current subscription is open on, `None` while not subscribed.
    fn subscribed_master(&self) -> Option<String>;
    /// The principal the framework registered with (`FrameworkInfo.principal`), if
    /// any; reservations and persistent volumes are made with it.
    fn principal(&self) -> Option<String> {
        None
    }
}

/// Builds calls with their type and sub-message set consistently.
pub mod calls {
    use super::*;

    /// ACCEPT of `offer_ids` with `operations`, declining leftovers for `refuse_seconds`.
    pub fn accept(
        offer_ids: Vec<String>,
        operations: Vec<v1::offer::Operation>,
        refuse_seconds: f64,
    ) -> Call {
        Call {
            r#type: Some(call::Type::Accept as i32),
            accept: Some(call::Accept {
                offer_ids: offer_ids
                    .into_iter()
                    .map(|value| v1::OfferId { value })
                    .collect(),
                operations,
                filters: Some(v1::Filters {
                    refuse_seconds: Some(refuse_seconds),
                }),
            }),
            ..Default::default()
        }
    }

    /// LAUNCH operation of `tasks`.
    pub fn launch(tasks: Vec<v1::TaskInfo>) -> v1::offer::Operation {
        v1::offer::Operation {
            r#type: Some(v1::offer::operation::Type::Launch as i32),
            launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
            ..Default::default()
        }
    }

    /// DECLINE of `offer_ids` for `refuse_seconds`.
    pub fn decline(offer_ids: Vec<String>, refuse_seconds: f64) -> Call {
        Call {
            r#type: Some(call::Type::Decline as i32),
            decline: Some(call::Decline {
                offer_ids: offer_ids
                    .into_iter()
                    .map(|value| v1::OfferId { value })
                    .collect(),
                filters: Some(v1::Filters {
                    refuse_seconds: Some(refuse_seconds),
                }),
            }),
            ..Default::default()
        }
    }

    /// REVIVE of every role.
    pub fn revive() -> Call {
        Call {
            r#type: Some(call::Type::Revive as i32),
            revive: Some(call::Revive { roles: Vec::new() }),
            ..Default::default()
        }
    }

    /// KILL of `task_id` on `agent_id`.
    pub fn kill(task_id: &str, agent_id: Option<&str>) -> Call {
        Call {
            r#type: Some(call::Type::Kill as i32),
            kill: Some(call::Kill {
                task_id: v1::TaskId {
                    value: task_id.to_string(),
                },
                agent_id: agent_id.map(|value| v1::AgentId {
                    value: value.to_string(),
                }),
                kill_policy: None,
            }),
            ..Default::default()
        }
    }

    /// ACKNOWLEDGE of a status update that carried a uuid.
    pub fn acknowledge(agent_id: &str, task_id: &str, uuid: bytes::Bytes) -> Call {
        Call {
            r#type: Some(call::Type::Acknowledge as i32),
            acknowledge: Some(call::Acknowledge {
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
                task_id: v1::TaskId {
                    value: task_id.to_string(),
                },
                uuid,
            }),
            ..Default::default()
        }
    }

    /// Explicit RECONCILE of `(task_id, agent_id)` pairs; empty is implicit.
    pub fn reconcile(tasks: Vec<(String, Option<String>)>) -> Call {
        Call {
            r#type: Some(call::Type::Reconcile as i32),
            reconcile: Some(call::Reconcile {
                tasks: tasks
                    .into_iter()
                    .map(|(task_id, agent_id)| call::reconcile::Task {
                        task_id: v1::TaskId { value: task_id },
                        agent_id: agent_id.map(|value| v1::AgentId { value }),
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    /// TEARDOWN: removes the framework and kills all its tasks.
    pub fn teardown() -> Call {
        Call {
            r#type: Some(call::Type::Teardown as i32),
            ..Default::default()
        }
    }

    /// SHUTDOWN of the custom executor `executor_id` on `agent_id`.
    pub fn shutdown(executor_id: &str, agent_id: &str) -> Call {
        Call {
            r#type: Some(call::Type::Shutdown as i32),
            shutdown: Some(call::Shutdown {
                executor_id: v1::ExecutorId {
                    value: executor_id.to_string(),
                },
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
            }),
            ..Default::default()
        }
    }

    /// MESSAGE of `data` to the executor `executor_id` on `agent_id` (best effort).
    pub fn message(agent_id: &str, executor_id: &str, data: bytes::Bytes) -> Call {
        Call {
            r#type: Some(call::Type::Message as i32),
            message: Some(call::Message {
                agent_id: v1::AgentId {
                    value: agent_id.to_string(),
                },
                executor_id: v1::ExecutorId {
                    value: executor_id.to_string(),
                },
                data,
            }),
            ..Default::default()
        }
    }

    /// SUPPRESS of offers for `roles` (empty = every role).
    pub fn suppress(roles: Vec<String>) -> Call {
        Call {
            r#type: Some(call::Type::Suppress as i32),
            suppress: Some(call::Suppress { roles }),
            ..Default::default()
        }
    }

    /// REVIVE of `roles` (empty = every role).
    pub fn revive_roles(roles: Vec<String>) -> Call {
        Call {
            r#type: Some(call::Type::Revive as i32),
            revive: Some(call::Revive { roles }),
            ..Default::default()
        }
    }

    /// RESERVE operation of `resources` (each carrying its reservation).
    pub fn reserve(resources: Vec<v1::Resource>) -> v1::offer::Operation {
        v1::offer::Operation {
            r#type: Some(v1::offer::operation::Type::Reserve as i32),
            reserve: Some(v1::offer::operation::Reserve {
                source: Vec::new(),
                resources,
            }),
            ..Default::default()
        }
    }

    /// UNRESERVE operation of `resources`.
    pub fn unreserve(resources: Vec<v1::Resource>) -> v1::offer::Operation {
        v1::offer::Operation {
            r#type: Some(v1::offer::operation::Type::Unreserve as i32),
            unreserve: Some(v1::offer::operation::Unreserve { resources }),
            ..Default::default()
        }
    }

    /// CREATE operation of persistent `volumes`.
    pub fn create(volumes: Vec<v1::Resource>) -> v1::offer::Operation {
        v1::offer::Operation {
            r#type: Some(v1::offer::operation::Type::Create as i32),
            create: Some(v1::offer::operation::Create { volumes }),
            ..Default::default()
        }
    }

    /// DESTROY operation of persistent `volumes`.
    pub fn destroy(volumes: Vec<v1::Resource>) -> v1::offer::Operation {
        v1::offer::Operation {
            r#type: Some(v1::offer::operation::Type::Destroy as i32),
            destroy: Some(v1::offer::operation::Destroy { volumes }),
            ..Default::default()
        }
    }

    /// LAUNCH_GROUP operation of `tasks` under `executor`.
    pub fn launch_group(
        executor: v1::ExecutorInfo,
        tasks: Vec<v1::TaskInfo>,
    ) -> v1::offer::Operation {
        v1::offer::Operation {
            r#type: Some(v1::offer::operation::Type::LaunchGroup as i32),
            launch_group: Some(v1::offer::operation::LaunchGroup {
                executor,
                task_group: v1::TaskGroupInfo { tasks },
            }),
            ..Default::default()
        }
    }
}

/// A [`MesosCalls`] that records every call, for tests.
#[derive(Debug, Default, Clone)]
pub struct RecordingMesos {
    calls: Arc<Mutex<Vec<Call>>>,
    framework_id: Arc<Mutex<Option<String>>>,
}

impl RecordingMesos {
    /// A recorder already subscribed as `framework_id`.
    pub fn subscribed(framework_id: &str) -> Self {
        let recorder = Self::default();
        if let Ok(mut id) = recorder.framework_id.lock() {
            *id = Some(framework_id.to_string());
        }
        recorder
    }

    /// Every call sent so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Calls of one type.
    pub fn calls_of(&self, kind: call::Type) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.r#type == Some(kind as i32))
            .collect()
    }
}

impl MesosCalls for RecordingMesos {
    fn send(&self, call: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    fn framework_id(&self) -> Option<String> {
        self.framework_id.lock().ok().and_then(|id| id.clone())
    }

    fn subscribed_master(&self) -> Option<String> {
        self.framework_id().map(|_| "recorded".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::calls;
    use mesos_stateful_proto::v1;
    use mesos_stateful_proto::v1::offer::operation::Type as Op;
    use mesos_stateful_proto::v1::scheduler::call::Type;

    #[test]
    fn call_builders_set_type_and_sub_message() {
        let teardown = calls::teardown();
        assert_eq!(teardown.r#type, Some(Type::Teardown as i32));

        let shutdown = calls::shutdown("exec-1", "agent-1").shutdown.unwrap();
        assert_eq!(shutdown.executor_id.value, "exec-1");
        assert_eq!(shutdown.agent_id.value, "agent-1");

        let message = calls::message("agent-1", "exec-1", bytes::Bytes::from_static(b"hi"));
        assert_eq!(message.r#type, Some(Type::Message as i32));
        let body = message.message.unwrap();
        assert_eq!(body.agent_id.value, "agent-1");
        assert_eq!(body.executor_id.value, "exec-1");
        assert_eq!(&body.data[..], b"hi");

        let suppress = calls::suppress(vec!["db".into()]);
        assert_eq!(suppress.r#type, Some(Type::Suppress as i32));
        assert_eq!(suppress.suppress.unwrap().roles, vec!["db".to_string()]);

        let revive = calls::revive_roles(vec!["db".into()]);
        assert_eq!(revive.r#type, Some(Type::Revive as i32));
        assert_eq!(revive.revive.unwrap().roles, vec!["db".to_string()]);
        assert!(calls::revive().revive.unwrap().roles.is_empty());
    }

    #[test]
    fn operation_builders_set_type_and_payload() {
        let disk = v1::Resource {
            name: "disk".into(),
            ..Default::default()
        };
        let cases = [
            (calls::reserve(vec![disk.clone()]), Op::Reserve),
            (calls::unreserve(vec![disk.clone()]), Op::Unreserve),
            (calls::create(vec![disk.clone()]), Op::Create),
            (calls::destroy(vec![disk.clone()]), Op::Destroy),
            (
                calls::launch_group(v1::ExecutorInfo::default(), vec![v1::TaskInfo::default()]),
                Op::LaunchGroup,
            ),
        ];
        for (operation, kind) in cases {
            assert_eq!(operation.r#type, Some(kind as i32));
            let payload_len = match kind {
                Op::Reserve => operation.reserve.map(|r| r.resources.len()),
                Op::Unreserve => operation.unreserve.map(|r| r.resources.len()),
                Op::Create => operation.create.map(|c| c.volumes.len()),
                Op::Destroy => operation.destroy.map(|d| d.volumes.len()),
                Op::LaunchGroup => operation.launch_group.map(|l| l.task_group.tasks.len()),
                _ => None,
            };
            assert_eq!(payload_len, Some(1), "{kind:?}");
        }
        let accept = calls::accept(vec!["o1".into()], vec![calls::reserve(vec![disk])], 5.0);
        assert_eq!(accept.r#type, Some(Type::Accept as i32));
        assert_eq!(accept.accept.unwrap().operations.len(), 1);
    }
}
