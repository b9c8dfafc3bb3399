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
}
