//! Offer matching: which queued launch goes on which offer, with which port.
//!
//! Rules, in order: a job fits an offer when the offer still has the job's cpus, mem
//! and disk plus the executor's own overhead, and one free port; among the offers it
//! fits, one on an agent that runs no other member of the same instance is preferred
//! (master and replicas apart when the cluster allows it); offers left with nothing
//! placed are declined. Jobs are taken in queue order.

use std::collections::{BTreeMap, BTreeSet};

use mesos_stateful_proto::v1;
use mesos_stateful_store::records::{Resources, Role};

/// What an offer holds, reduced to what matching needs.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferSummary {
    /// Mesos offer id.
    pub offer_id: String,
    /// Agent the offer's resources are on.
    pub agent_id: String,
    /// Host name of that agent.
    pub hostname: String,
    /// Unreserved cpus.
    pub cpus: f64,
    /// Unreserved memory, MiB.
    pub mem: f64,
    /// Unreserved disk, MiB.
    pub disk: f64,
    /// Port ranges, inclusive.
    pub ports: Vec<(u64, u64)>,
}

impl OfferSummary {
    /// Sums the offer's scalar resources and collects its port ranges.
    pub fn from_offer(offer: &v1::Offer) -> Self {
        let mut summary = OfferSummary {
            offer_id: offer.id.value.clone(),
            agent_id: offer.agent_id.value.clone(),
            hostname: offer.hostname.clone(),
            cpus: 0.0,
            mem: 0.0,
            disk: 0.0,
            ports: Vec::new(),
        };
        for resource in &offer.resources {
            // Reserved resources and persistent volumes are a later concern; only the
            // unreserved pool is matched here.
            let reserved = resource.reservation.is_some()
                || !resource.reservations.is_empty()
                || resource.disk.is_some();
            if reserved {
                continue;
            }
            let scalar = resource.scalar.as_ref().map(|s| s.value).unwrap_or(0.0);
            match resource.name.as_str() {
                "cpus" => summary.cpus += scalar,
                "mem" => summary.mem += scalar,
                "disk" => summary.disk += scalar,
                "ports" => {
                    if let Some(ranges) = &resource.ranges {
                        summary.ports.extend(
                            ranges
                                .range
                                .iter()
                                .filter(|r| r.begin <= r.end)
                                .map(|r| (r.begin, r.end)),
                        );
                    }
                }
                _ => {}
            }
        }
        summary
    }
}

/// A member waiting for an offer.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchJob {
    /// Instance of the member.
    pub instance: String,
    /// Ordinal of the member.
    pub ordinal: u32,
    /// Task id of the incarnation to launch.
    pub task_id: String,
    /// Role the member starts in.
    pub role: Role,
    /// Resources of the member.
    pub resources: Resources,
    /// Whether the member may share an agent with another member of its instance
    /// when no other agent fits. The OfferManager allows it once no other agent is
    /// known, or once the member has waited long enough for one.
    pub colocate: bool,
    /// W3C `traceparent` of the span that queued the job, if spans are exported.
    pub trace_parent: Option<String>,
}

/// One job placed on one offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The job placed.
    pub job: LaunchJob,
    /// Offer that pays for it.
    pub offer_id: String,
    /// Agent it will run on.
    pub agent_id: String,
    /// Host name of the agent.
    pub hostname: String,
    /// Port taken from the offer.
    pub port: u16,
}

/// Outcome of one matching round.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MatchOutcome {
    /// Placements, grouped by offer in offer order.
    pub placements: Vec<Placement>,
    /// Offers used by no placement, to decline.
    pub unused_offers: Vec<String>,
    /// Task ids of jobs no offer could take, with the reason.
    pub unplaced: Vec<(String, String)>,
}

/// Remaining capacity of an offer during matching.
#[derive(Debug)]
struct Remaining {
    cpus: f64,
    mem: f64,
    disk: f64,
    free_ports: Vec<(u64, u64)>,
    used: bool,
}

impl Remaining {
    fn fits(&self, need: &Resources) -> bool {
        // Mesos keeps scalars to three decimals; compare with that tolerance.
        const EPSILON: f64 = 0.0005;
        self.cpus + EPSILON >= need.cpus
            && self.mem + EPSILON >= need.mem
            && self.disk + EPSILON >= need.disk
            && self
                .free_ports
                .iter()
                .any(|&(begin, end)| begin <= end && begin <= u64::from(u16::MAX) && begin > 0)
    }

    fn take(&mut self, need: &Resources) -> Option<u16> {
        let index = self
            .free_ports
            .iter()
            .position(|&(begin, end)| begin <= end && begin > 0 && begin <= u64::from(u16::MAX))?;
        let (begin, end) = self.free_ports[index];
        let port = u16::try_from(begin).ok()?;
        if begin == end {
            self.free_ports.remove(index);
        } else {
            self.free_ports[index] = (begin + 1, end);
        }
        self.cpus -= need.cpus;
        self.mem -= need.mem;
        self.disk -= need.disk;
        self.used = true;
        Some(port)
    }
}

/// Places `jobs` on `offers`.
///
/// `agents_in_use` maps an instance to the agents already running (or about to run)
/// one of its members. `executor_overhead` is added to each job's needs: every task
/// runs under its own executor whose resources come from the same offer.
pub fn match_offers(
    offers: &[OfferSummary],
    jobs: &[LaunchJob],
    agents_in_use: &BTreeMap<String, BTreeSet<String>>,
    executor_overhead: Resources,
) -> MatchOutcome {
    let mut remaining: Vec<Remaining> = offers
        .iter()
        .map(|offer| Remaining {
            cpus: offer.cpus,
            mem: offer.mem,
            disk: offer.disk,
            free_ports: offer.ports.clone(),
            used: false,
        })
        .collect();
    let mut in_use = agents_in_use.clone();
    let mut outcome = MatchOutcome::default();
    for job in jobs {
        let need = Resources {
            cpus: job.resources.cpus + executor_overhead.cpus,
            mem: job.resources.mem + executor_overhead.mem,
            disk: job.resources.disk + executor_overhead.disk,
        };
        let busy = in_use.get(&job.instance);
        let fitting = |spread_only: bool| {
            (0..offers.len()).find(|&i| {
                remaining[i].fits(&need)
                    && !(spread_only
                        && busy.is_some_and(|agents| agents.contains(&offers[i].agent_id)))
            })
        };
        let spread = fitting(true);
        let Some(index) = spread.or_else(|| if job.colocate { fitting(false) } else { None })
        else {
            let reason = if fitting(false).is_some() {
                "waiting for an offer from an agent without another member of the instance"
                    .to_string()
            } else {
                unplaced_reason(offers, &need)
            };
            outcome.unplaced.push((job.task_id.clone(), reason));
            continue;
        };
        let Some(port) = remaining[index].take(&need) else {
            outcome
                .unplaced
                .push((job.task_id.clone(), "no free port".to_string()));
            continue;
        };
        let offer = &offers[index];
        in_use
            .entry(job.instance.clone())
            .or_default()
            .insert(offer.agent_id.clone());
        outcome.placements.push(Placement {
            job: job.clone(),
            offer_id: offer.offer_id.clone(),
            agent_id: offer.agent_id.clone(),
            hostname: offer.hostname.clone(),
            port,
        });
    }
    outcome.placements.sort_by_key(|p| {
        offers
            .iter()
            .position(|o| o.offer_id == p.offer_id)
            .unwrap_or(usize::MAX)
    });
    outcome.unused_offers = offers
        .iter()
        .zip(&remaining)
        .filter(|(_, r)| !r.used)
        .map(|(o, _)| o.offer_id.clone())
        .collect();
    outcome
}

/// Names the first resource that no offer had enough of.
fn unplaced_reason(offers: &[OfferSummary], need: &Resources) -> String {
    if offers.is_empty() {
        return "no offers".to_string();
    }
    let max = |f: fn(&OfferSummary) -> f64| offers.iter().map(f).fold(0.0, f64::max);
    if max(|o| o.cpus) < need.cpus {
        format!("no offer with {} cpus", need.cpus)
    } else if max(|o| o.mem) < need.mem {
        format!("no offer with {} MiB of memory", need.mem)
    } else if max(|o| o.disk) < need.disk {
        format!("no offer with {} MiB of disk", need.disk)
    } else if offers.iter().all(|o| o.ports.is_empty()) {
        "no offer with a free port".to_string()
    } else {
        "no single offer with enough cpus, memory, disk and a port".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, agent: &str, cpus: f64, mem: f64, ports: (u64, u64)) -> OfferSummary {
        OfferSummary {
            offer_id: id.into(),
            agent_id: agent.into(),
            hostname: format!("{agent}.local"),
            cpus,
            mem,
            disk: 1000.0,
            ports: vec![ports],
        }
    }

    fn job(instance: &str, ordinal: u32, cpus: f64) -> LaunchJob {
        LaunchJob {
            instance: instance.into(),
            ordinal,
            task_id: format!("{instance}-{ordinal}.1"),
            role: if ordinal == 0 {
                Role::Master
            } else {
                Role::Replica
            },
            resources: Resources {
                cpus,
                mem: 100.0,
                disk: 10.0,
            },
            colocate: true,
            trace_parent: None,
        }
    }

    const NO_OVERHEAD: Resources = Resources {
        cpus: 0.0,
        mem: 0.0,
        disk: 0.0,
    };

    #[test]
    fn places_jobs_in_order_and_declines_unused_offers() {
        let offers = [
            offer("o1", "a1", 1.0, 1000.0, (31000, 31001)),
            offer("o2", "a2", 1.0, 1000.0, (31000, 31000)),
        ];
        let outcome = match_offers(&offers, &[job("c", 0, 0.5)], &BTreeMap::new(), NO_OVERHEAD);
        assert_eq!(outcome.placements.len(), 1);
        assert_eq!(outcome.placements[0].offer_id, "o1");
        assert_eq!(outcome.placements[0].port, 31000);
        assert_eq!(outcome.unused_offers, vec!["o2".to_string()]);
        assert!(outcome.unplaced.is_empty());
    }

    #[test]
    fn spreads_members_of_one_instance_across_agents_when_possible() {
        let offers = [
            offer("o1", "a1", 4.0, 4000.0, (31000, 31010)),
            offer("o2", "a2", 4.0, 4000.0, (31000, 31010)),
        ];
        let outcome = match_offers(
            &offers,
            &[job("c", 0, 0.5), job("c", 1, 0.5)],
            &BTreeMap::new(),
            NO_OVERHEAD,
        );
        let agents: Vec<_> = outcome
            .placements
            .iter()
            .map(|p| p.agent_id.as_str())
            .collect();
        assert_eq!(agents, vec!["a1", "a2"]);

        // One agent only: both go there, on different ports.
        let offers = [offer("o1", "a1", 4.0, 4000.0, (31000, 31010))];
        let outcome = match_offers(
            &offers,
            &[job("c", 0, 0.5), job("c", 1, 0.5)],
            &BTreeMap::new(),
            NO_OVERHEAD,
        );
        let ports: Vec<_> = outcome.placements.iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![31000, 31001]);

        // The master already runs on a1: the replica prefers a2 even if offered second.
        let busy = BTreeMap::from([("c".to_string(), BTreeSet::from(["a1".to_string()]))]);
        let offers = [
            offer("o1", "a1", 4.0, 4000.0, (31000, 31010)),
            offer("o2", "a2", 4.0, 4000.0, (31000, 31010)),
        ];
        let outcome = match_offers(&offers, &[job("c", 1, 0.5)], &busy, NO_OVERHEAD);
        assert_eq!(outcome.placements[0].agent_id, "a2");

        // Only the busy agent is offered: a job that must spread waits, with the reason.
        let offers = [offer("o1", "a1", 4.0, 4000.0, (31000, 31010))];
        let mut spreading = job("c", 1, 0.5);
        spreading.colocate = false;
        let outcome = match_offers(&offers, &[spreading.clone()], &busy, NO_OVERHEAD);
        assert!(outcome.placements.is_empty());
        assert!(outcome.unplaced[0].1.contains("without another member"));
        assert_eq!(outcome.unused_offers, vec!["o1".to_string()]);
        // It may still go to a fresh agent at once.
        let offers = [offer("o2", "a2", 4.0, 4000.0, (31000, 31010))];
        assert_eq!(
            match_offers(&offers, &[spreading], &busy, NO_OVERHEAD)
                .placements
                .len(),
            1
        );
    }

    #[test]
    fn reports_why_a_job_does_not_fit() {
        let check = |offers: &[OfferSummary], cpus: f64, reason: &str| {
            let outcome = match_offers(offers, &[job("c", 0, cpus)], &BTreeMap::new(), NO_OVERHEAD);
            assert!(outcome.placements.is_empty());
            assert_eq!(outcome.unplaced[0].1, reason);
        };
        check(
            &[offer("o1", "a1", 1.0, 1000.0, (1, 2))],
            4.0,
            "no offer with 4 cpus",
        );
        check(
            &[offer("o1", "a1", 8.0, 10.0, (1, 2))],
            1.0,
            "no offer with 100 MiB of memory",
        );
        check(&[], 1.0, "no offers");
        let mut portless = offer("o1", "a1", 8.0, 1000.0, (1, 2));
        portless.ports.clear();
        check(&[portless], 1.0, "no offer with a free port");
    }

    #[test]
    fn counts_executor_overhead_and_consumes_capacity() {
        let overhead = Resources {
            cpus: 0.1,
            mem: 32.0,
            disk: 0.0,
        };
        let offers = [offer("o1", "a1", 1.0, 300.0, (31000, 31010))];
        // Two jobs of 100 MiB each need 264 MiB with overhead: both fit; a third does not.
        let outcome = match_offers(
            &offers,
            &[job("a", 0, 0.2), job("b", 0, 0.2), job("c", 0, 0.2)],
            &BTreeMap::new(),
            overhead,
        );
        assert_eq!(outcome.placements.len(), 2);
        assert_eq!(outcome.unplaced.len(), 1);
    }

    #[test]
    fn reads_offers_from_protobuf() {
        let scalar = |name: &str, value: f64| v1::Resource {
            name: name.into(),
            r#type: v1::value::Type::Scalar as i32,
            scalar: Some(v1::value::Scalar { value }),
            ..Default::default()
        };
        let offer = v1::Offer {
            id: v1::OfferId { value: "o1".into() },
            agent_id: v1::AgentId { value: "a1".into() },
            hostname: "h".into(),
            resources: vec![
                scalar("cpus", 2.0),
                scalar("mem", 512.0),
                scalar("disk", 100.0),
                v1::Resource {
                    name: "ports".into(),
                    r#type: v1::value::Type::Ranges as i32,
                    ranges: Some(v1::value::Ranges {
                        range: vec![v1::value::Range {
                            begin: 31000,
                            end: 31005,
                        }],
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let summary = OfferSummary::from_offer(&offer);
        assert_eq!(
            (summary.cpus, summary.mem, summary.disk),
            (2.0, 512.0, 100.0)
        );
        assert_eq!(summary.ports, vec![(31000, 31005)]);
    }
}
