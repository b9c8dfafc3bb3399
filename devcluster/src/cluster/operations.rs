//! The offer operations that change an agent's resources: RESERVE, UNRESERVE,
//! CREATE and DESTROY, validated as Mesos validates them, and their feedback.
//!
//! Each operation is checked against the resources still in hand in the ACCEPT
//! (what the offers held, minus what earlier operations of the same ACCEPT used)
//! and applied both to them and to the agent's total, so a RESERVE, a CREATE and
//! a LAUNCH in one ACCEPT see each other's results, as in Mesos.
//!
//! A persistent volume is a directory `<work_dir>/agents/<agent>/volumes/roles/
//! <role>/<id>` that outlives tasks; it is created with the volume and removed by
//! DESTROY. A task or executor using it sees it at `<sandbox>/<container_path>`
//! (a symbolic link). Simulated agents keep volumes in their accounts only.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use mesos_stateful_proto::v1::{self, offer::operation, scheduler, FrameworkId};

use super::{new_uuid_bytes, Cluster, Effect};
use crate::resources::{Quantities, ResourceSet, Volume};
use crate::status_updates::MAX_RETRY_INTERVAL;

/// An operation's status update waiting for ACKNOWLEDGE_OPERATION_STATUS; resent
/// with a doubling interval, as agent task updates are.
#[derive(Debug)]
pub struct PendingOperationStatus {
    status: v1::OperationStatus,
    next_retry: Instant,
    backoff: Duration,
}

fn operation_event(status: v1::OperationStatus) -> scheduler::Event {
    scheduler::Event {
        r#type: Some(scheduler::event::Type::UpdateOperationStatus as i32),
        update_operation_status: Some(scheduler::event::UpdateOperationStatus { status }),
        ..Default::default()
    }
}

/// The directory of a persistent volume of agent `agent_id`.
pub fn volume_dir(work_dir: &Path, agent_id: &str, volume: &Volume) -> PathBuf {
    work_dir
        .join("agents")
        .join(agent_id)
        .join("volumes")
        .join("roles")
        .join(&volume.reservation.role)
        .join(&volume.id)
}

/// Checks a volume's container path: relative, without `..`, not empty.
fn check_container_path(path: &str) -> Result<(), String> {
    let parsed = Path::new(path);
    let normal = parsed
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_empty() || parsed.is_absolute() || !normal {
        return Err(format!(
            "volume container path '{path}' must be relative, without '..'"
        ));
    }
    Ok(())
}

/// Checks a persistence ID: usable as one directory name.
fn check_volume_id(id: &str) -> Result<(), String> {
    if id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(format!("persistent volume ID '{id}' is not a valid name"));
    }
    Ok(())
}

impl Cluster {
    /// Validates and applies one RESERVE, UNRESERVE, CREATE or DESTROY of agent
    /// `index` to `remaining` and the agent's total. On error nothing changed.
    pub(super) fn apply_operation(
        &mut self,
        index: usize,
        framework_id: &FrameworkId,
        kind: operation::Type,
        operation: &v1::offer::Operation,
        remaining: &mut ResourceSet,
    ) -> Result<Vec<Effect>, String> {
        let framework = self
            .frameworks
            .get(framework_id)
            .ok_or_else(|| "framework is not known".to_string())?;
        let role = framework.role();
        let principal = framework.info.principal.clone();
        let parse = |resources: &[v1::Resource]| ResourceSet::from_resources(resources);
        let check_role = |reservation_role: &str| {
            if reservation_role != role {
                Err(format!(
                    "role '{reservation_role}' is not the framework's role '{role}'"
                ))
            } else {
                Ok(())
            }
        };
        let mut effects = Vec::new();
        let agent_id = self.agents[index].id.value.clone();
        let simulated = self.agents[index].simulation.is_some();
        match kind {
            operation::Type::Reserve => {
                let reserve = operation
                    .reserve
                    .as_ref()
                    .ok_or("RESERVE without 'reserve'")?;
                if !reserve.source.is_empty() {
                    return Err("RESERVE with 'source' (a reservation update) is not allowed for schedulers".into());
                }
                let wanted = parse(&reserve.resources)?;
                if !wanted.unreserved.is_empty() || !wanted.volumes.is_empty() {
                    return Err("RESERVE takes only dynamically reserved resources".into());
                }
                if wanted.reserved.is_empty() {
                    return Err("RESERVE has no resources".into());
                }
                let mut needed = Quantities::default();
                for (reservation, quantities) in &wanted.reserved {
                    check_role(&reservation.role)?;
                    if principal.is_some() && reservation.principal != principal {
                        return Err(format!(
                            "reservation principal {:?} is not the framework's principal {:?}",
                            reservation.principal, principal
                        ));
                    }
                    needed.add(quantities);
                }
                if !remaining.unreserved.contains(&needed) {
                    return Err("the resources to reserve are not unreserved in the offer".into());
                }
                let total = &mut self.agents[index].total;
                for set in [&mut *remaining, total] {
                    set.unreserved.subtract(&needed);
                    for (reservation, quantities) in &wanted.reserved {
                        set.reserved
                            .entry(reservation.clone())
                            .or_default()
                            .add(quantities);
                    }
                }
            }
            operation::Type::Unreserve => {
                let unreserve = operation
                    .unreserve
                    .as_ref()
                    .ok_or("UNRESERVE without 'unreserve'")?;
                let wanted = parse(&unreserve.resources)?;
                if !wanted.volumes.is_empty() {
                    return Err(
                        "persistent volumes must be destroyed before they are unreserved".into(),
                    );
                }
                if !wanted.unreserved.is_empty() || wanted.reserved.is_empty() {
                    return Err("UNRESERVE takes only reserved resources".into());
                }
                for reservation in wanted.reserved.keys() {
                    check_role(&reservation.role)?;
                }
                if !remaining.contains(&wanted) {
                    return Err("the resources to unreserve are not in the offer".into());
                }
                let total = &mut self.agents[index].total;
                for set in [&mut *remaining, total] {
                    set.subtract(&wanted);
                    for quantities in wanted.reserved.values() {
                        set.unreserved.add(quantities);
                    }
                }
            }
            operation::Type::Create => {
                let create = operation.create.as_ref().ok_or("CREATE without 'create'")?;
                let wanted = parse(&create.volumes)?;
                if !wanted.unreserved.is_empty() || !wanted.reserved.is_empty() {
                    return Err("CREATE takes only persistent volumes".into());
                }
                if wanted.volumes.is_empty() {
                    return Err("CREATE has no volumes".into());
                }
                let paths: Vec<&str> = wanted
                    .volumes
                    .values()
                    .map(|v| v.container_path.as_str())
                    .collect();
                let mut disk_by_reservation = std::collections::BTreeMap::new();
                for (key, volume) in &wanted.volumes {
                    check_role(&volume.reservation.role)?;
                    check_volume_id(&volume.id)?;
                    check_container_path(&volume.container_path)?;
                    let nested = paths.iter().any(|other| {
                        *other != volume.container_path
                            && Path::new(&volume.container_path).starts_with(other)
                    });
                    if nested {
                        return Err(format!(
                            "volume container path '{}' is nested in another volume's",
                            volume.container_path
                        ));
                    }
                    if principal.is_some() && volume.principal != principal {
                        return Err(format!(
                            "volume principal {:?} is not the framework's principal {:?}",
                            volume.principal, principal
                        ));
                    }
                    if self.agents[index].total.volumes.contains_key(key) {
                        return Err(format!(
                            "persistent volume ID '{}' is already in use on this agent",
                            volume.id
                        ));
                    }
                    *disk_by_reservation
                        .entry(volume.reservation.clone())
                        .or_insert(0) += volume.disk;
                }
                for (reservation, disk) in &disk_by_reservation {
                    let available = remaining.reserved.get(reservation).map_or(0, |q| q.disk);
                    if available < *disk {
                        return Err(format!(
                            "not enough disk reserved to role '{}' in the offer for the volumes",
                            reservation.role
                        ));
                    }
                }
                let total = &mut self.agents[index].total;
                for set in [&mut *remaining, total] {
                    for volume in wanted.volumes.values() {
                        if let Some(pool) = set.reserved.get_mut(&volume.reservation) {
                            pool.disk -= volume.disk;
                            if pool.is_empty() {
                                set.reserved.remove(&volume.reservation);
                            }
                        }
                    }
                    for (key, volume) in &wanted.volumes {
                        set.volumes.insert(key.clone(), volume.clone());
                    }
                }
                if !simulated {
                    for volume in wanted.volumes.values() {
                        effects.push(Effect::CreateVolume {
                            path: volume_dir(&self.settings.work_dir, &agent_id, volume),
                        });
                    }
                }
            }
            operation::Type::Destroy => {
                let destroy = operation
                    .destroy
                    .as_ref()
                    .ok_or("DESTROY without 'destroy'")?;
                let wanted = parse(&destroy.volumes)?;
                if !wanted.unreserved.is_empty() || !wanted.reserved.is_empty() {
                    return Err("DESTROY takes only persistent volumes".into());
                }
                if wanted.volumes.is_empty() {
                    return Err("DESTROY has no volumes".into());
                }
                for (key, volume) in &wanted.volumes {
                    check_role(&volume.reservation.role)?;
                    if remaining.volumes.get(key) != Some(volume) {
                        return Err(format!(
                            "persistent volume '{}' is not in the offer (unknown or in use)",
                            volume.id
                        ));
                    }
                }
                let total = &mut self.agents[index].total;
                for set in [&mut *remaining, total] {
                    for (key, volume) in &wanted.volumes {
                        set.volumes.remove(key);
                        set.reserved
                            .entry(volume.reservation.clone())
                            .or_default()
                            .disk += volume.disk;
                    }
                }
                if !simulated {
                    for volume in wanted.volumes.values() {
                        effects.push(Effect::DestroyVolume {
                            path: volume_dir(&self.settings.work_dir, &agent_id, volume),
                        });
                    }
                }
            }
            other => {
                return Err(format!(
                    "operation {} is not supported by devcluster",
                    other.as_str_name()
                ))
            }
        }
        tracing::info!(
            operation = kind.as_str_name(),
            agent = index,
            "offer operation applied"
        );
        Ok(effects)
    }

    /// The persistent volumes among `resources` of agent `index`, as (directory,
    /// container path) pairs to show in a sandbox.
    pub(super) fn volume_links(
        &self,
        index: usize,
        resources: &[&[v1::Resource]],
    ) -> Vec<(PathBuf, String)> {
        let agent_id = &self.agents[index].id.value;
        resources
            .iter()
            .filter_map(|list| ResourceSet::from_resources(list).ok())
            .flat_map(|set| set.volumes.into_values())
            .map(|volume| {
                (
                    volume_dir(&self.settings.work_dir, agent_id, &volume),
                    volume.container_path,
                )
            })
            .collect()
    }

    /// Sends operation feedback (UPDATE_OPERATION_STATUS, with a uuid) for an
    /// operation that carried an ID, and resends it until it is acknowledged;
    /// operations without one get none.
    pub(super) fn operation_feedback(
        &mut self,
        framework_id: &FrameworkId,
        operation: &v1::offer::Operation,
        agent: Option<usize>,
        outcome: Result<(), &str>,
        now: Instant,
    ) {
        let Some(operation_id) = operation.id.clone() else {
            return;
        };
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let (state, message) = match outcome {
            Ok(()) => (v1::OperationState::OperationFinished, None),
            Err(message) => (
                v1::OperationState::OperationError,
                Some(message.to_string()),
            ),
        };
        let status = v1::OperationStatus {
            operation_id: Some(operation_id.clone()),
            state: state as i32,
            message,
            uuid: Some(v1::Uuid {
                value: new_uuid_bytes(),
            }),
            agent_id: agent.map(|index| self.agents[index].id.clone()),
            ..Default::default()
        };
        framework.send(operation_event(status.clone()));
        let backoff = self.settings.status_update_retry_interval;
        self.operation_updates.insert(
            (framework_id.clone(), operation_id.value),
            PendingOperationStatus {
                status,
                next_retry: now + backoff,
                backoff,
            },
        );
    }

    /// ACKNOWLEDGE_OPERATION_STATUS: forgets the operation if the uuid is its
    /// pending update's.
    pub(super) fn acknowledge_operation_status(
        &mut self,
        framework_id: &FrameworkId,
        acknowledge: &scheduler::call::AcknowledgeOperationStatus,
    ) {
        let key = (framework_id.clone(), acknowledge.operation_id.value.clone());
        let matches = self.operation_updates.get(&key).is_some_and(|pending| {
            pending.status.uuid.as_ref().map(|u| &u.value) == Some(&acknowledge.uuid)
        });
        if matches {
            self.operation_updates.remove(&key);
        } else {
            tracing::warn!(operation_id = %acknowledge.operation_id.value, "acknowledgement of an unknown operation update dropped");
        }
    }

    /// Resends the operation updates whose retry time has come.
    pub(super) fn retry_operation_updates(&mut self, now: Instant) {
        for ((framework_id, _), pending) in &mut self.operation_updates {
            if pending.next_retry > now {
                continue;
            }
            pending.backoff = (pending.backoff * 2).min(MAX_RETRY_INTERVAL);
            pending.next_retry = now + pending.backoff;
            if let Some(framework) = self.frameworks.get(framework_id) {
                framework.send(operation_event(pending.status.clone()));
            }
        }
    }

    /// Resends a (re-)subscribed framework's unacknowledged operation updates.
    pub(super) fn resend_operation_updates(&self, framework_id: &FrameworkId) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        for ((fid, _), pending) in &self.operation_updates {
            if fid == framework_id {
                framework.send(operation_event(pending.status.clone()));
            }
        }
    }

    /// RECONCILE_OPERATIONS: the latest state of each operation asked about (of all
    /// unacknowledged ones when none is listed), without a uuid; OPERATION_UNKNOWN
    /// for operations the master does not know (acknowledged ones are forgotten).
    pub(super) fn reconcile_operations(
        &self,
        framework_id: &FrameworkId,
        reconcile: scheduler::call::ReconcileOperations,
    ) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let answer = |status: &v1::OperationStatus| v1::OperationStatus {
            uuid: None,
            ..status.clone()
        };
        if reconcile.operations.is_empty() {
            for ((fid, _), pending) in &self.operation_updates {
                if fid == framework_id {
                    framework.send(operation_event(answer(&pending.status)));
                }
            }
            return;
        }
        for operation in reconcile.operations {
            let key = (framework_id.clone(), operation.operation_id.value.clone());
            let status = match self.operation_updates.get(&key) {
                Some(pending) => answer(&pending.status),
                None => v1::OperationStatus {
                    operation_id: Some(operation.operation_id),
                    state: v1::OperationState::OperationUnknown as i32,
                    agent_id: operation.agent_id,
                    resource_provider_id: operation.resource_provider_id,
                    ..Default::default()
                },
            };
            framework.send(operation_event(status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths() {
        for good in ["data", "a/b", "./data"] {
            assert!(check_container_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/data", "../data", "a/../../b"] {
            assert!(check_container_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_ids() {
        assert!(check_volume_id("redis-0").is_ok());
        for bad in [".", "..", "a/b"] {
            assert!(check_volume_id(bad).is_err(), "{bad}");
        }
    }
}
