//! The Redis workload: a master and replicas of `redis-server`, with failover.
//!
//! - The master starts first (`redis-server --port <port>` and the instance's
//!   `master_args`); replicas start once it is RUNNING, with `--replicaof <master host>
//!   <master port>` after the instance's `replica_args`. Args may use `{port}`.
//! - Every member reports `INFO replication` as its facts (`role`,
//!   `master_repl_offset`, `connected_slaves`…), so the API shows them and the
//!   failover can compare offsets.
//! - Master lost: the running replica with the highest replication offset (from its
//!   latest facts) is promoted: it takes the master role and runs `redis-cli -p <port>
//!   REPLICAOF NO ONE` in its container; the other running replicas are re-pointed to
//!   it. The lost member is relaunched (with backoff) as a replica of the new master,
//!   which restores the replica count. Without a running replica the master is
//!   relaunched in place, keeping its data.
//! - No split brain: once promoted away, the old master's member is a replica. If its
//!   task comes back (its agent was only unreachable), `replica_running` re-points it
//!   (`REPLICAOF <new master>`); its relaunches start with `--replicaof`. A task of it
//!   that comes back after it was replaced elsewhere is an older incarnation and is
//!   killed.

use mesos_stateful_actors::domain::launch::{substitute, ContainerPlan};
use mesos_stateful_actors::domain::view::{InstanceView, MemberView};
use mesos_stateful_actors::workload::{Action, Workload};
use mesos_stateful_store::records::Role;

/// The Redis master/replica workload. Needs an image with `redis-server` and
/// `redis-cli` on its `PATH`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedisWorkload;

/// Facts that carry a member's replication offset, in order of preference: a replica
/// reports how far it has read (`slave_repl_offset`), a master how far it has written.
const OFFSET_FACTS: [&str; 2] = ["slave_repl_offset", "master_repl_offset"];

fn server_args(port: u16, extra: &[String], master: Option<(&str, u16)>) -> Vec<String> {
    let mut args = vec![
        "redis-server".to_string(),
        "--port".to_string(),
        port.to_string(),
    ];
    args.extend(substitute(extra, port, master));
    if let Some((host, master_port)) = master {
        args.extend([
            "--replicaof".to_string(),
            host.to_string(),
            master_port.to_string(),
        ]);
    }
    args
}

fn cli(port: u16, command: &[&str]) -> Vec<String> {
    let mut argv = vec!["redis-cli".to_string(), "-p".to_string(), port.to_string()];
    argv.extend(command.iter().map(|s| s.to_string()));
    argv
}

/// A member's replication offset from its latest facts; 0 when unknown.
pub fn replication_offset(member: &MemberView) -> u64 {
    let Some(stats) = &member.stats else {
        return 0;
    };
    OFFSET_FACTS
        .iter()
        .find_map(|key| stats.facts.get(*key)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The replica to promote when the master is lost: among running, healthy replicas
/// the one with the highest replication offset; the lowest ordinal on a tie.
pub fn promotion_candidate<'a>(
    instance: &'a InstanceView,
    lost: &MemberView,
) -> Option<&'a MemberView> {
    instance
        .members
        .iter()
        .filter(|m| m.ordinal != lost.ordinal && m.role == Role::Replica)
        .filter(|m| m.state.as_deref() == Some("TASK_RUNNING") && m.healthy != Some(false))
        .filter(|m| m.port.is_some())
        .max_by(|a, b| {
            replication_offset(a)
                .cmp(&replication_offset(b))
                .then(b.ordinal.cmp(&a.ordinal))
        })
}

impl Workload for RedisWorkload {
    fn start_master(
        &self,
        instance: &InstanceView,
        _member: &MemberView,
        port: u16,
    ) -> ContainerPlan {
        ContainerPlan {
            image: instance.spec.image.clone(),
            args: server_args(port, &instance.spec.master_args, None),
            env: instance.spec.env.clone(),
            privileged: instance.spec.privileged,
            facts_command: cli(port, &["INFO", "replication"]),
            ..Default::default()
        }
    }

    fn start_replica(
        &self,
        instance: &InstanceView,
        _member: &MemberView,
        port: u16,
        master: Option<&MemberView>,
    ) -> ContainerPlan {
        let endpoint = master.and_then(MemberView::endpoint);
        let master = endpoint.as_ref().map(|(host, port)| (host.as_str(), *port));
        ContainerPlan {
            image: instance.spec.image.clone(),
            args: server_args(port, &instance.spec.replica_args, master),
            env: instance.spec.env.clone(),
            privileged: instance.spec.privileged,
            facts_command: cli(port, &["INFO", "replication"]),
            ..Default::default()
        }
    }

    fn master_running(&self, _instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        // A relaunched master may have a new port: running replicas follow it.
        vec![
            Action::StartReplicas,
            Action::RepointReplicas { to: member.ordinal },
        ]
    }

    fn replica_running(&self, instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        // Idempotent for a replica started with --replicaof; demotes an old master
        // whose task came back after a promotion.
        let Some(master) = instance.master() else {
            return Vec::new();
        };
        match self.replica_of_command(instance, member, master) {
            Some(argv) if master.ordinal != member.ordinal => vec![Action::RunCommand {
                ordinal: member.ordinal,
                argv,
            }],
            _ => Vec::new(),
        }
    }

    fn master_lost(&self, instance: &InstanceView, member: &MemberView) -> Vec<Action> {
        let Some(candidate) = promotion_candidate(instance, member) else {
            return Vec::new();
        };
        let Some(argv) = self.promote_command(instance, candidate) else {
            return Vec::new();
        };
        vec![
            Action::PromoteMember {
                ordinal: candidate.ordinal,
            },
            Action::RunCommand {
                ordinal: candidate.ordinal,
                argv,
            },
            Action::RepointReplicas {
                to: candidate.ordinal,
            },
        ]
    }

    fn promote_command(
        &self,
        _instance: &InstanceView,
        member: &MemberView,
    ) -> Option<Vec<String>> {
        Some(cli(member.port?, &["REPLICAOF", "NO", "ONE"]))
    }

    fn replica_of_command(
        &self,
        _instance: &InstanceView,
        replica: &MemberView,
        master: &MemberView,
    ) -> Option<Vec<String>> {
        let port = replica.port?;
        let (host, master_port) = master.endpoint()?;
        Some(cli(port, &["REPLICAOF", &host, &master_port.to_string()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_actors::domain::view::MemberStats;
    use mesos_stateful_store::records::InstanceStatus;

    fn member(ordinal: u32, role: Role, state: &str, offset: Option<u64>) -> MemberView {
        MemberView {
            name: format!("r-{ordinal}"),
            ordinal,
            role,
            task_id: format!("r-{ordinal}.1"),
            agent_id: Some(format!("a{ordinal}")),
            host: Some(format!("h{ordinal}")),
            port: Some(7000 + ordinal as u16),
            state: Some(state.to_string()),
            message: None,
            healthy: None,
            stats: offset.map(|offset| MemberStats {
                timestamp: None,
                cpu_percent: None,
                memory_bytes: None,
                memory_limit_bytes: None,
                network_rx_bytes: None,
                network_tx_bytes: None,
                block_read_bytes: None,
                block_write_bytes: None,
                facts: [
                    ("role".to_string(), "slave".to_string()),
                    ("slave_repl_offset".to_string(), offset.to_string()),
                ]
                .into(),
            }),
        }
    }

    fn instance(members: Vec<MemberView>) -> InstanceView {
        let spec = serde_json::from_value(serde_json::json!({
            "image": "mesos-stateful/redis:test", "replicas": members.len() - 1,
            "resources": {"cpus": 0.1, "mem": 64.0, "disk": 10.0},
            "master_args": ["--save", ""], "replica_args": ["--save", ""],
        }))
        .unwrap();
        InstanceView {
            name: "r".into(),
            status: InstanceStatus::Running,
            status_message: None,
            spec,
            version: 1,
            members,
        }
    }

    #[test]
    fn plans_master_then_replicas_with_replication_facts() {
        let master = member(0, Role::Master, "TASK_RUNNING", None);
        let view = instance(vec![master.clone()]);
        let plan = RedisWorkload.start_master(&view, &master, 7000);
        assert_eq!(plan.args, ["redis-server", "--port", "7000", "--save", ""]);
        assert_eq!(
            plan.facts_command,
            ["redis-cli", "-p", "7000", "INFO", "replication"]
        );
        let replica = member(1, Role::Replica, "TASK_STAGING", None);
        let plan = RedisWorkload.start_replica(&view, &replica, 7001, Some(&master));
        assert_eq!(
            plan.args,
            [
                "redis-server",
                "--port",
                "7001",
                "--save",
                "",
                "--replicaof",
                "h0",
                "7000"
            ]
        );
        assert_eq!(
            RedisWorkload.master_running(&view, &master),
            [Action::StartReplicas, Action::RepointReplicas { to: 0 }]
        );
    }

    #[test]
    fn promotes_the_running_replica_with_the_highest_offset() {
        let lost = member(0, Role::Master, "TASK_FAILED", None);
        let view = instance(vec![
            lost.clone(),
            member(1, Role::Replica, "TASK_RUNNING", Some(100)),
            member(2, Role::Replica, "TASK_RUNNING", Some(250)),
            member(3, Role::Replica, "TASK_STAGING", Some(900)),
        ]);
        assert_eq!(
            RedisWorkload.master_lost(&view, &lost),
            [
                Action::PromoteMember { ordinal: 2 },
                Action::RunCommand {
                    ordinal: 2,
                    argv: cli(7002, &["REPLICAOF", "NO", "ONE"]),
                },
                Action::RepointReplicas { to: 2 },
            ]
        );
        let master = &view.members[2];
        assert_eq!(
            RedisWorkload.replica_of_command(&view, &view.members[1], master),
            Some(cli(7001, &["REPLICAOF", "h2", "7002"]))
        );
    }

    #[test]
    fn ties_and_unknown_offsets_pick_the_lowest_ordinal() {
        let lost = member(0, Role::Master, "TASK_KILLED", None);
        let view = instance(vec![
            lost.clone(),
            member(1, Role::Replica, "TASK_RUNNING", None),
            member(2, Role::Replica, "TASK_RUNNING", None),
        ]);
        assert_eq!(
            promotion_candidate(&view, &lost).map(|m| m.ordinal),
            Some(1)
        );
    }

    #[test]
    fn without_a_running_replica_the_master_is_relaunched() {
        let lost = member(0, Role::Master, "TASK_FAILED", None);
        let view = instance(vec![
            lost.clone(),
            member(1, Role::Replica, "TASK_FAILED", Some(10)),
        ]);
        assert!(RedisWorkload.master_lost(&view, &lost).is_empty());
        assert!(RedisWorkload
            .replica_lost(&view, &view.members[1])
            .is_empty());
    }

    #[test]
    fn a_returning_replica_is_pointed_at_the_current_master() {
        // Member 0 was the master, lost while unreachable; member 1 was promoted.
        let old = member(0, Role::Replica, "TASK_RUNNING", None);
        let view = instance(vec![
            old.clone(),
            member(1, Role::Master, "TASK_RUNNING", None),
        ]);
        assert_eq!(
            RedisWorkload.replica_running(&view, &old),
            [Action::RunCommand {
                ordinal: 0,
                argv: cli(7000, &["REPLICAOF", "h1", "7001"]),
            }]
        );
    }
}
