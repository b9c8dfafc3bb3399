//! The generic container workload: runs the image with the args of the request,
//! replicas once the master runs; a lost member (master or replica) is relaunched in
//! place with backoff, keeping its role, its agent and its volume.

use mesos_stateful_actors::domain::launch::{substitute, ContainerPlan};
use mesos_stateful_actors::domain::view::{InstanceView, MemberView};
use mesos_stateful_actors::workload::Workload;

/// Runs any image; `{port}`, `{master_host}` and `{master_port}` in args are
/// replaced by the member's port and the master's endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct GenericContainer;

impl Workload for GenericContainer {
    fn start_master(
        &self,
        instance: &InstanceView,
        _member: &MemberView,
        port: u16,
    ) -> ContainerPlan {
        ContainerPlan {
            image: instance.spec.image.clone(),
            args: substitute(&instance.spec.master_args, port, None),
            env: instance.spec.env.clone(),
            privileged: instance.spec.privileged,
            facts_command: Vec::new(),
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
            args: substitute(&instance.spec.replica_args, port, master),
            env: instance.spec.env.clone(),
            privileged: instance.spec.privileged,
            facts_command: Vec::new(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_actors::workload::Action;
    use mesos_stateful_store::records::{InstanceSpec, InstanceStatus, Resources, Role};

    fn view() -> InstanceView {
        InstanceView {
            name: "c".into(),
            status: InstanceStatus::Creating,
            status_message: None,
            spec: InstanceSpec {
                image: "redis".into(),
                replicas: 1,
                resources: Resources {
                    cpus: 1.0,
                    mem: 64.0,
                    disk: 10.0,
                },
                master_args: vec!["--port".into(), "{port}".into()],
                replica_args: vec![
                    "--port".into(),
                    "{port}".into(),
                    "--replicaof".into(),
                    "{master_host}".into(),
                    "{master_port}".into(),
                ],
                env: Default::default(),
                volume: None,
                placement: Default::default(),
                privileged: false,
            },
            version: 1,
            members: vec![],
        }
    }

    fn member(ordinal: u32, host: Option<&str>, port: Option<u16>) -> MemberView {
        MemberView {
            name: format!("c-{ordinal}"),
            ordinal,
            role: if ordinal == 0 {
                Role::Master
            } else {
                Role::Replica
            },
            task_id: format!("c-{ordinal}.1"),
            agent_id: None,
            host: host.map(String::from),
            port,
            state: None,
            message: None,
            healthy: None,
            stats: None,
        }
    }

    #[test]
    fn plans_master_and_replica_containers() {
        let master = member(0, Some("10.0.0.1"), Some(31000));
        let plan = GenericContainer.start_master(&view(), &master, 31000);
        assert_eq!(plan.args, ["--port", "31000"]);
        let plan =
            GenericContainer.start_replica(&view(), &member(1, None, None), 31001, Some(&master));
        assert_eq!(
            plan.args,
            ["--port", "31001", "--replicaof", "10.0.0.1", "31000"]
        );
        assert_eq!(plan.image, "redis");
        assert!(!plan.privileged);
        // Privilege comes from the spec (which the API accepts only when allowed).
        let mut privileged = view();
        privileged.spec.privileged = true;
        assert!(
            GenericContainer
                .start_master(&privileged, &master, 1)
                .privileged
        );
        assert!(
            GenericContainer
                .start_replica(&privileged, &member(1, None, None), 2, Some(&master))
                .privileged
        );
    }

    #[test]
    fn starts_replicas_when_the_master_runs_and_relaunches_lost_members() {
        let master = member(0, Some("h"), Some(1));
        assert_eq!(
            GenericContainer.master_running(&view(), &master),
            vec![Action::StartReplicas]
        );
        assert!(GenericContainer
            .replica_running(&view(), &member(1, None, None))
            .is_empty());
        // No action: the Maintainer relaunches the member itself.
        assert!(GenericContainer.master_lost(&view(), &master).is_empty());
        assert!(GenericContainer
            .replica_lost(&view(), &member(1, None, None))
            .is_empty());
        assert!(GenericContainer
            .replica_of_command(&view(), &member(1, None, None), &master)
            .is_none());
    }
}
