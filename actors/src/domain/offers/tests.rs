//! Tests of offer matching.

// Pre-refinement resources name their role in the deprecated `role` field.
#![allow(deprecated)]

use super::*;
use mesos_stateful_store::records::{Constraint, ConstraintOperator};

fn offer(id: &str, agent: &str, cpus: f64, mem: f64, ports: (u64, u64)) -> OfferSummary {
    OfferSummary::unreserved(
        id,
        agent,
        Resources {
            cpus,
            mem,
            disk: 1000.0,
        },
        vec![ports],
    )
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
        volume: None,
        bound: None,
        placement: PlacementSpec::default(),
    }
}

const NO_OVERHEAD: Resources = Resources {
    cpus: 0.0,
    mem: 0.0,
    disk: 0.0,
};

fn settings(overhead: Resources) -> MatchSettings {
    MatchSettings {
        role: "db".into(),
        principal: Some("fw".into()),
        framework_id: "f1".into(),
        executor_overhead: overhead,
    }
}

fn run(
    offers: &[OfferSummary],
    jobs: &[LaunchJob],
    peers: &BTreeMap<String, Vec<AgentFacts>>,
) -> MatchOutcome {
    match_offers(offers, jobs, peers, &settings(NO_OVERHEAD))
}

fn facts(agent: &str) -> AgentFacts {
    AgentFacts {
        agent_id: agent.into(),
        hostname: format!("{agent}.local"),
        attributes: BTreeMap::new(),
    }
}

fn scalar_of(resources: &[v1::Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
        .sum()
}

#[test]
fn places_jobs_in_order_and_declines_unused_offers() {
    let offers = [
        offer("o1", "a1", 1.0, 1000.0, (31000, 31001)),
        offer("o2", "a2", 1.0, 1000.0, (31000, 31000)),
    ];
    let outcome = run(&offers, &[job("c", 0, 0.5)], &BTreeMap::new());
    assert_eq!(outcome.placements.len(), 1);
    let placement = &outcome.placements[0];
    assert_eq!(placement.offer_id, "o1");
    assert_eq!(placement.port, 31000);
    assert_eq!(scalar_of(&placement.task_resources(), "cpus"), 0.5);
    assert_eq!(scalar_of(&placement.task_resources(), "mem"), 100.0);
    assert_eq!(scalar_of(&placement.task_resources(), "disk"), 10.0);
    assert!(placement.reserve().is_empty() && placement.create().is_empty());
    assert_eq!(placement.volume, None);
    assert_eq!(outcome.unused_offers, vec!["o2".to_string()]);
    assert!(outcome.unplaced.is_empty());
}

#[test]
fn a_round_spreads_its_launches_over_its_offers() {
    let offers = [
        offer("o1", "a1", 100.0, 100_000.0, (31000, 31999)),
        offer("o2", "a2", 0.05, 100_000.0, (31000, 31999)),
        offer("o3", "a3", 100.0, 100_000.0, (31000, 31999)),
    ];
    // Instances of one member that would all fit on the first offer.
    let count = 2 * OFFER_STEP + 1;
    let jobs: Vec<LaunchJob> = (0..count).map(|i| job(&format!("c{i}"), 0, 0.1)).collect();
    let outcome = run(&offers, &jobs, &BTreeMap::new());
    assert!(outcome.unplaced.is_empty());
    let on = |offer: &str| {
        outcome
            .placements
            .iter()
            .filter(|p| p.offer_id == offer)
            .map(|p| p.job.instance.clone())
            .collect::<Vec<_>>()
    };
    // Each offer takes OFFER_STEP jobs in a row, then the search starts at the next
    // offer, wrapping around and skipping the one too small (o2).
    let names = |range: std::ops::Range<usize>| range.map(|i| format!("c{i}")).collect::<Vec<_>>();
    let mut first = names(0..OFFER_STEP);
    first.extend(names(2 * OFFER_STEP..count));
    assert_eq!(on("o1"), first);
    assert_eq!(on("o3"), names(OFFER_STEP..2 * OFFER_STEP));
    assert!(on("o2").is_empty() && outcome.unused_offers == vec!["o2".to_string()]);
}

#[test]
fn spreads_members_of_one_instance_across_agents_when_possible() {
    let offers = [
        offer("o1", "a1", 4.0, 4000.0, (31000, 31010)),
        offer("o2", "a2", 4.0, 4000.0, (31000, 31010)),
    ];
    let outcome = run(
        &offers,
        &[job("c", 0, 0.5), job("c", 1, 0.5)],
        &BTreeMap::new(),
    );
    let agents: Vec<_> = outcome
        .placements
        .iter()
        .map(|p| p.agent_id.as_str())
        .collect();
    assert_eq!(agents, vec!["a1", "a2"]);

    // One agent only: both go there, on different ports.
    let offers = [offer("o1", "a1", 4.0, 4000.0, (31000, 31010))];
    let outcome = run(
        &offers,
        &[job("c", 0, 0.5), job("c", 1, 0.5)],
        &BTreeMap::new(),
    );
    let ports: Vec<_> = outcome.placements.iter().map(|p| p.port).collect();
    assert_eq!(ports, vec![31000, 31001]);

    // The master already runs on a1: the replica prefers a2 even if offered second.
    let busy = BTreeMap::from([("c".to_string(), vec![facts("a1")])]);
    let offers = [
        offer("o1", "a1", 4.0, 4000.0, (31000, 31010)),
        offer("o2", "a2", 4.0, 4000.0, (31000, 31010)),
    ];
    let outcome = run(&offers, &[job("c", 1, 0.5)], &busy);
    assert_eq!(outcome.placements[0].agent_id, "a2");

    // Only the busy agent is offered: a job that must spread waits, with the reason.
    let offers = [offer("o1", "a1", 4.0, 4000.0, (31000, 31010))];
    let mut spreading = job("c", 1, 0.5);
    spreading.colocate = false;
    let outcome = run(&offers, &[spreading.clone()], &busy);
    assert!(outcome.placements.is_empty());
    assert!(outcome.unplaced[0].1.contains("without another member"));
    assert_eq!(outcome.unused_offers, vec!["o1".to_string()]);
    // It may still go to a fresh agent at once.
    let offers = [offer("o2", "a2", 4.0, 4000.0, (31000, 31010))];
    assert_eq!(run(&offers, &[spreading], &busy).placements.len(), 1);
}

#[test]
fn reports_why_a_job_does_not_fit() {
    let check = |offers: &[OfferSummary], cpus: f64, reason: &str| {
        let outcome = run(offers, &[job("c", 0, cpus)], &BTreeMap::new());
        assert!(outcome.placements.is_empty());
        assert_eq!(outcome.unplaced[0].1, reason);
    };
    check(
        &[offer("o1", "a1", 1.0, 1000.0, (1, 2))],
        4.0,
        "no agent with 4 cpus",
    );
    check(
        &[offer("o1", "a1", 8.0, 10.0, (1, 2))],
        1.0,
        "no agent with 100 MiB of memory",
    );
    check(&[], 1.0, "no offers");
    let mut portless = offer("o1", "a1", 8.0, 1000.0, (1, 2));
    portless.slices[0].ports.clear();
    portless.ports.clear();
    check(&[portless], 1.0, "no agent with a free port");
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
        &settings(overhead),
    );
    assert_eq!(outcome.placements.len(), 2);
    assert_eq!(outcome.unplaced.len(), 1);
    let executor = &outcome.placements[0].executor_resources();
    assert_eq!(scalar_of(executor, "cpus"), 0.1);
    assert_eq!(scalar_of(executor, "mem"), 32.0);
}

fn scalar(name: &str, value: f64) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        role: Some("*".into()),
        ..Default::default()
    }
}

fn ports(begin: u64, end: u64) -> v1::Resource {
    v1::Resource {
        name: "ports".into(),
        r#type: v1::value::Type::Ranges as i32,
        ranges: Some(v1::value::Ranges {
            range: vec![v1::value::Range { begin, end }],
        }),
        role: Some("*".into()),
        ..Default::default()
    }
}

fn reserved(mut resource: v1::Resource, role: &str, labels: &[(&str, &str)]) -> v1::Resource {
    resource.role = Some(role.into());
    resource.reservation = Some(v1::resource::ReservationInfo {
        principal: Some("fw".into()),
        labels: (!labels.is_empty()).then(|| v1::Labels {
            labels: labels
                .iter()
                .map(|(k, v)| v1::Label {
                    key: k.to_string(),
                    value: Some(v.to_string()),
                })
                .collect(),
        }),
        ..Default::default()
    });
    resource
}

fn proto_offer(id: &str, agent: &str, resources: Vec<v1::Resource>) -> v1::Offer {
    v1::Offer {
        id: v1::OfferId { value: id.into() },
        agent_id: v1::AgentId {
            value: agent.into(),
        },
        hostname: format!("{agent}.local"),
        resources,
        ..Default::default()
    }
}

#[test]
fn reads_offers_from_protobuf() {
    let offer = proto_offer(
        "o1",
        "a1",
        vec![
            scalar("cpus", 2.0),
            scalar("mem", 512.0),
            scalar("disk", 100.0),
            ports(31000, 31005),
            // Reserved for another role: never ours.
            reserved(scalar("cpus", 8.0), "other", &[]),
            // Reserved for our role without a member label: usable.
            reserved(scalar("mem", 256.0), "db", &[]),
        ],
    );
    let summary = OfferSummary::from_offer(&offer, "db");
    assert_eq!(
        (summary.cpus, summary.mem, summary.disk),
        (2.0, 768.0, 100.0)
    );
    assert_eq!(summary.ports, vec![(31000, 31005)]);
    assert!(!summary.refinement);
    assert!(summary.member_reservations.is_empty());
}

#[test]
fn role_reserved_resources_are_used_first_and_keep_their_reservation() {
    let offer = proto_offer(
        "o1",
        "a1",
        vec![
            scalar("cpus", 2.0),
            scalar("mem", 512.0),
            scalar("disk", 100.0),
            ports(31000, 31005),
            reserved(scalar("cpus", 0.3), "db", &[]),
        ],
    );
    let summary = OfferSummary::from_offer(&offer, "db");
    let outcome = run(&[summary], &[job("c", 0, 0.5)], &BTreeMap::new());
    let resources = &outcome.placements[0].task_resources();
    let cpus: Vec<(Option<&str>, f64)> = resources
        .iter()
        .filter(|r| r.name == "cpus")
        .map(|r| {
            (
                r.role.as_deref(),
                r.scalar.as_ref().map(|s| s.value).unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(cpus, vec![(Some("db"), 0.3), (Some("*"), 0.2)]);
}

fn volume_job() -> LaunchJob {
    let mut job = job("c", 0, 0.5);
    job.resources.disk = 0.0;
    job.volume = Some(VolumeSpec {
        size_mb: 200.0,
        container_path: "data".into(),
    });
    job
}

#[test]
fn first_placement_reserves_creates_and_binds_the_volume() {
    let offers = [offer("o1", "a1", 4.0, 4000.0, (31000, 31010))];
    let outcome = run(&offers, &[volume_job()], &BTreeMap::new());
    let placement = &outcome.placements[0];
    let binding = placement.volume.clone().expect("the member is bound");
    assert_eq!(binding.agent_id, "a1");
    assert_eq!(binding.persistence_id, "c-0.1");
    assert_eq!(binding.role, "db");
    assert_eq!(binding.principal.as_deref(), Some("fw"));

    // RESERVE cpus, mem and the volume's disk for the role, labelled for the member.
    assert_eq!(scalar_of(&placement.reserve(), "cpus"), 0.5);
    assert_eq!(scalar_of(&placement.reserve(), "mem"), 100.0);
    assert_eq!(scalar_of(&placement.reserve(), "disk"), 200.0);
    for resource in &placement.reserve() {
        assert_eq!(resource.role.as_deref(), Some("db"));
        let reservation = resource.reservation.as_ref().unwrap();
        assert_eq!(reservation.principal.as_deref(), Some("fw"));
        assert_eq!(
            label(reservation_labels(resource), PERSISTENCE_LABEL),
            Some("c-0.1")
        );
        assert_eq!(
            label(reservation_labels(resource), MEMBER_LABEL),
            Some("c-0")
        );
    }
    // CREATE the volume on the reserved disk.
    let volume = &placement.create()[0];
    let disk = volume.disk.as_ref().unwrap();
    assert_eq!(disk.persistence.as_ref().unwrap().id, "c-0.1");
    assert_eq!(
        disk.persistence.as_ref().unwrap().principal.as_deref(),
        Some("fw")
    );
    assert_eq!(disk.volume.as_ref().unwrap().container_path, "data");
    // LAUNCH with the reserved cpus and mem and the volume.
    assert!(placement.task_resources().contains(volume));
    assert!(placement
        .task_resources()
        .iter()
        .filter(|r| r.name == "cpus" || r.name == "mem")
        .all(|r| r.role.as_deref() == Some("db")));
    let kinds: Vec<i32> = placement
        .operations()
        .iter()
        .filter_map(|o| o.r#type)
        .collect();
    assert_eq!(
        kinds,
        vec![
            v1::offer::operation::Type::Reserve as i32,
            v1::offer::operation::Type::Create as i32
        ]
    );
}

fn bound_job(agent: &str) -> LaunchJob {
    let mut job = volume_job();
    job.task_id = "c-0.2".into();
    job.bound = Some(Box::new(MemberVolume {
        agent_id: agent.into(),
        hostname: Some(format!("{agent}.local")),
        persistence_id: "c-0.1".into(),
        role: "db".into(),
        principal: Some("fw".into()),
        size_mb: 200.0,
        container_path: "data".into(),
        reserved: Resources {
            cpus: 0.5,
            mem: 100.0,
            disk: 200.0,
        },
    }));
    job
}

fn member_labels() -> [(&'static str, &'static str); 3] {
    [
        (FRAMEWORK_ID_LABEL, "f1"),
        (MEMBER_LABEL, "c-0"),
        (PERSISTENCE_LABEL, "c-0.1"),
    ]
}

fn volume_disk(with_volume: bool) -> v1::Resource {
    let mut disk = reserved(scalar("disk", 200.0), "db", &member_labels());
    if with_volume {
        disk.disk = Some(v1::resource::DiskInfo {
            persistence: Some(v1::resource::disk_info::Persistence {
                id: "c-0.1".into(),
                principal: Some("fw".into()),
            }),
            volume: Some(v1::Volume {
                mode: v1::volume::Mode::Rw as i32,
                container_path: "data".into(),
                ..Default::default()
            }),
            source: None,
        });
    }
    disk
}

fn offer_with_reservation(agent: &str, with_volume: bool) -> OfferSummary {
    let offer = proto_offer(
        "o1",
        agent,
        vec![
            scalar("cpus", 1.0),
            scalar("mem", 512.0),
            ports(31000, 31005),
            reserved(scalar("cpus", 0.5), "db", &member_labels()),
            reserved(scalar("mem", 100.0), "db", &member_labels()),
            volume_disk(with_volume),
        ],
    );
    OfferSummary::from_offer(&offer, "db")
}

#[test]
fn a_bound_member_relaunches_on_its_volume() {
    let summary = offer_with_reservation("a1", true);
    assert!(summary.member_reservations["c-0.1"].has_volume);
    // Reserved resources of a member are not for anyone else.
    assert_eq!((summary.cpus, summary.mem), (1.0, 512.0));
    let outcome = run(&[summary], &[bound_job("a1")], &BTreeMap::new());
    let placement = &outcome.placements[0];
    assert!(placement.reserve().is_empty() && placement.create().is_empty());
    assert!(placement.task_resources().contains(&volume_disk(true)));
    assert_eq!(scalar_of(&placement.task_resources(), "cpus"), 0.5);
    assert!(placement
        .task_resources()
        .iter()
        .filter(|r| r.name == "cpus")
        .all(|r| r.role.as_deref() == Some("db")));
    assert_eq!(placement.volume.as_ref().unwrap().persistence_id, "c-0.1");
}

#[test]
fn a_reservation_without_its_volume_gets_the_volume_created() {
    let outcome = run(
        &[offer_with_reservation("a1", false)],
        &[bound_job("a1")],
        &BTreeMap::new(),
    );
    let placement = &outcome.placements[0];
    assert!(placement.reserve().is_empty());
    assert_eq!(placement.create(), vec![volume_disk(true)]);
    assert!(placement.task_resources().contains(&volume_disk(true)));
}

#[test]
fn a_bound_member_waits_for_its_agent_and_reserves_again_if_nothing_is_there() {
    // Another agent is offered: the member waits, saying for which agent.
    let outcome = run(
        &[offer("o2", "a2", 8.0, 8000.0, (31000, 31005))],
        &[bound_job("a1")],
        &BTreeMap::new(),
    );
    assert!(outcome.placements.is_empty());
    assert!(
        outcome.unplaced[0].1.contains("from agent a1"),
        "{:?}",
        outcome.unplaced
    );
    // Its agent is offered without the reservation (the ACCEPT that made it was
    // lost): reserve and create again with the same persistence id.
    let outcome = run(
        &[offer("o1", "a1", 8.0, 8000.0, (31000, 31005))],
        &[bound_job("a1")],
        &BTreeMap::new(),
    );
    let placement = &outcome.placements[0];
    assert_eq!(scalar_of(&placement.reserve(), "disk"), 200.0);
    assert_eq!(
        placement.create()[0]
            .disk
            .as_ref()
            .unwrap()
            .persistence
            .as_ref()
            .unwrap()
            .id,
        "c-0.1"
    );
}

#[test]
fn reservations_nobody_wants_are_destroyed_then_unreserved() {
    let summary = offer_with_reservation("a1", true);
    assert!(releases(
        std::slice::from_ref(&summary),
        "f1",
        |id, _| id == "c-0.1",
        |_| true
    )
    .is_empty());
    // Another framework's reservations are never released.
    assert!(releases(std::slice::from_ref(&summary), "f2", |_, _| false, |_| true).is_empty());
    let released = releases(&[summary], "f1", |_, _| false, |_| true);
    assert_eq!(released.len(), 1);
    let release = &released[0];
    assert_eq!(release.destroy, vec![volume_disk(true)]);
    assert!(release.unreserve.contains(&volume_disk(false)));
    assert_eq!(release.unreserve.len(), 3);
    let kinds: Vec<i32> = release
        .operations()
        .iter()
        .filter_map(|o| o.r#type)
        .collect();
    assert_eq!(
        kinds,
        vec![
            v1::offer::operation::Type::Destroy as i32,
            v1::offer::operation::Type::Unreserve as i32
        ]
    );
}

#[test]
fn refinement_offers_get_refinement_reservations() {
    let mut resources = vec![
        scalar("cpus", 4.0),
        scalar("mem", 4000.0),
        scalar("disk", 4000.0),
        ports(1, 9),
    ];
    for resource in &mut resources {
        resource.role = None;
    }
    let summary = OfferSummary::from_offer(&proto_offer("o1", "a1", resources), "db");
    assert!(summary.refinement);
    let outcome = run(&[summary], &[volume_job()], &BTreeMap::new());
    let reserve = &outcome.placements[0].reserve();
    assert!(reserve
        .iter()
        .all(|r| r.role.is_none() && r.reservation.is_none()));
    assert!(reserve.iter().all(|r| {
        r.reservations.len() == 1
            && r.reservations[0].role.as_deref() == Some("db")
            && r.reservations[0].r#type
                == Some(v1::resource::reservation_info::Type::Dynamic as i32)
    }));
    // A reservation in that format is read back as the member's.
    let mut offered = reserve.clone();
    offered.push(ports(31000, 31001));
    let back = OfferSummary::from_offer(&proto_offer("o2", "a1", offered), "db");
    assert!(back.member_reservations.contains_key("c-0.1"));
}

#[test]
fn placement_rules_choose_the_agent_and_explain_waits() {
    let rack = |id: &str, agent: &str, rack: &str| {
        let mut offer = offer(id, agent, 4.0, 4000.0, (31000, 31010));
        offer.facts.attributes.insert("rack".into(), rack.into());
        offer
    };
    let mut constrained = job("c", 1, 0.5);
    constrained.placement.constraints.push(Constraint {
        field: "rack".into(),
        operator: ConstraintOperator::Like,
        value: Some("r2".into()),
    });
    let outcome = run(
        &[rack("o1", "a1", "r1"), rack("o2", "a2", "r2")],
        &[constrained.clone()],
        &BTreeMap::new(),
    );
    assert_eq!(outcome.placements[0].agent_id, "a2");
    let outcome = run(&[rack("o1", "a1", "r1")], &[constrained], &BTreeMap::new());
    assert_eq!(outcome.unplaced[0].1, "constraint rack:LIKE:r2 unmet");

    // UNIQUE hostname forbids sharing even when the job may colocate.
    let mut unique = job("c", 1, 0.5);
    unique.placement.constraints.push(Constraint {
        field: "hostname".into(),
        operator: ConstraintOperator::Unique,
        value: None,
    });
    let busy = BTreeMap::from([("c".to_string(), vec![facts("a1")])]);
    let outcome = run(
        &[offer("o1", "a1", 4.0, 4000.0, (1, 9))],
        &[unique.clone()],
        &busy,
    );
    assert_eq!(outcome.unplaced[0].1, "constraint hostname:UNIQUE unmet");
    // Members placed in the same round count too.
    let mut first = unique.clone();
    first.ordinal = 0;
    first.task_id = "c-0.1".into();
    let outcome = run(
        &[offer("o1", "a1", 4.0, 4000.0, (1, 9))],
        &[first, unique],
        &BTreeMap::new(),
    );
    assert_eq!(outcome.placements.len(), 1);
    assert_eq!(outcome.unplaced[0].1, "constraint hostname:UNIQUE unmet");

    // Resources are reported before rules when nothing is big enough.
    let mut big = job("c", 0, 64.0);
    big.placement.max_per_agent = Some(1);
    let outcome = run(
        &[offer("o1", "a1", 4.0, 4000.0, (1, 9))],
        &[big],
        &BTreeMap::new(),
    );
    assert_eq!(outcome.unplaced[0].1, "no agent with 64 cpus");
}

#[test]
fn invalid_placement_rules_keep_the_job_waiting_with_the_reason() {
    let mut bad = job("c", 0, 0.5);
    bad.placement.constraints.push(Constraint {
        field: "rack".into(),
        operator: ConstraintOperator::MaxPer,
        value: None,
    });
    let outcome = run(
        &[offer("o1", "a1", 4.0, 4000.0, (1, 9))],
        &[bad],
        &BTreeMap::new(),
    );
    assert!(outcome.unplaced[0].1.starts_with("invalid placement"));
}

#[test]
fn jobs_are_built_from_task_records() {
    let spec = InstanceSpec {
        image: "redis".into(),
        replicas: 1,
        resources: Resources {
            cpus: 1.0,
            mem: 64.0,
            disk: 1.0,
        },
        master_args: Vec::new(),
        replica_args: Vec::new(),
        env: BTreeMap::new(),
        volume: Some(VolumeSpec {
            size_mb: 10.0,
            container_path: "data".into(),
        }),
        placement: PlacementSpec {
            max_per_agent: Some(1),
            constraints: Vec::new(),
        },
        privileged: false,
    };
    let mut task = TaskRecord::waiting("c", 1, Role::Replica, 3);
    task.volume = bound_job("a7").bound.map(|b| *b);
    let job = LaunchJob::for_member(&spec, &task);
    assert_eq!(job.task_id, "c-1.3");
    assert_eq!(job.bound_agent(), Some("a7"));
    assert_eq!(job.placement.max_per_agent, Some(1));
    assert_eq!(job.volume, spec.volume);
}

#[test]
fn volumes_offered_without_labels_are_found_by_persistence_id() {
    // A master that keeps only role and principal of a reservation.
    let mut disk = volume_disk(true);
    if let Some(reservation) = &mut disk.reservation {
        reservation.labels = None;
    }
    let offer = proto_offer(
        "o1",
        "a1",
        vec![
            scalar("cpus", 1.0),
            scalar("mem", 512.0),
            ports(31000, 31005),
            reserved(scalar("cpus", 0.5), "db", &[]),
            reserved(scalar("mem", 100.0), "db", &[]),
            disk.clone(),
        ],
    );
    let summary = OfferSummary::from_offer(&offer, "db");
    let reservation = &summary.member_reservations["c-0.1"];
    assert_eq!(reservation.member, "c-0");
    assert!(reservation.has_volume && reservation.framework_id.is_none());
    // The unlabelled reserved cpus and mem are the role's: usable by anyone.
    assert_eq!((summary.cpus, summary.mem), (1.5, 612.0));
    let outcome = run(
        std::slice::from_ref(&summary),
        &[bound_job("a1")],
        &BTreeMap::new(),
    );
    let placement = &outcome.placements[0];
    assert!(placement.create().is_empty() && placement.reserve().is_empty());
    assert!(placement.task_resources().contains(&disk));
    // Released only when its instance is known to be ours.
    assert!(releases(
        std::slice::from_ref(&summary),
        "f1",
        |_, _| false,
        |_| false
    )
    .is_empty());
    let released = releases(&[summary], "f1", |_, _| false, |member| member == "c-0");
    assert_eq!(released[0].destroy, vec![disk]);
}
