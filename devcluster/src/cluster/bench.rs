//! A fixture for benchmarks of the cluster state machine without HTTP: many
//! simulated agents carrying tasks, several subscribed frameworks, and one
//! allocation round at a time. Not a stable API.

use std::time::{Duration, Instant};

use mesos_stateful_proto::v1::{self, scheduler, FrameworkInfo, TaskId, TaskInfo};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::{AgentSetup, Cluster, Settings};
use crate::resources::{Ranges, ResourceSet};

/// A cluster of simulated agents with tasks, and its frameworks' event streams.
#[derive(Debug)]
pub struct AllocationFixture {
    cluster: Cluster,
    streams: Vec<UnboundedReceiver<scheduler::Event>>,
    now: Instant,
}

fn scalar(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..Default::default()
    }
}

impl AllocationFixture {
    /// `agents` simulated agents of 64 cpus each, `frameworks` subscribed
    /// frameworks, and `tasks_per_agent` running tasks (0.1 cpu) on each agent.
    pub fn new(agents: usize, frameworks: usize, tasks_per_agent: usize) -> AllocationFixture {
        let now = Instant::now();
        let settings = Settings {
            heartbeat_interval: Duration::from_secs(15),
            allocation_interval: Duration::from_secs(1),
            status_update_retry_interval: Duration::from_secs(10),
            executor_registration_timeout: Duration::from_secs(60),
            executor_shutdown_grace_period: Duration::from_secs(5),
            executor_reregistration_timeout: Duration::from_secs(2),
            agent_removal_timeout: Duration::from_secs(75),
            simulated_task_delay: Duration::ZERO,
            work_dir: std::env::temp_dir().join("devcluster-bench"),
        };
        let setups = (0..agents)
            .map(|n| AgentSetup {
                hostname: format!("simulated-{n}"),
                endpoint: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                total: ResourceSet::new(64.0, 262_144.0, 0.0, Ranges::new([(31000, 32000)])),
                attributes: Vec::new(),
                simulated: true,
            })
            .collect();
        let master = std::net::SocketAddr::from(([127, 0, 0, 1], 5050));
        let mut cluster = Cluster::new(settings, master, setups, now);
        let mut streams = Vec::new();
        let mut framework_ids = Vec::new();
        for n in 0..frameworks {
            let (sender, receiver) = unbounded_channel();
            let subscribe = scheduler::call::Subscribe {
                framework_info: FrameworkInfo {
                    user: "bench".into(),
                    name: format!("bench-{n}"),
                    ..Default::default()
                },
                ..Default::default()
            };
            if let Some(id) = cluster.subscribe(subscribe, format!("stream-{n}"), sender) {
                framework_ids.push(id);
            }
            streams.push(receiver);
        }
        // Tasks go straight onto the agents, spread over the frameworks.
        for index in 0..agents {
            for t in 0..tasks_per_agent {
                let Some(framework_id) = framework_ids.get((index + t) % frameworks.max(1)) else {
                    continue;
                };
                let task = TaskInfo {
                    name: "bench".into(),
                    task_id: TaskId {
                        value: format!("task-{index}-{t}"),
                    },
                    agent_id: cluster.agents[index].id.clone(),
                    resources: vec![scalar("cpus", 0.1), scalar("mem", 32.0)],
                    command: Some(v1::CommandInfo {
                        value: Some("true".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                cluster.launch_simulated_task(index, &framework_id.clone(), task, now);
            }
        }
        let mut fixture = AllocationFixture {
            cluster,
            streams,
            now,
        };
        fixture.drain();
        fixture
    }

    fn drain(&mut self) -> usize {
        let mut offers = 0;
        for stream in &mut self.streams {
            while let Ok(event) = stream.try_recv() {
                offers += event.offers.map_or(0, |o| o.offers.len());
            }
        }
        offers
    }

    /// Runs one allocation round after dropping the outstanding offers (so every
    /// agent is offered again) and returns the number of offers sent.
    pub fn round(&mut self) -> usize {
        self.cluster.offers.clear();
        self.now += Duration::from_secs(1);
        self.cluster.allocate(self.now);
        self.drain()
    }
}
