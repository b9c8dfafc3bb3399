//! Offer evaluation: one round of 100 offers against 1,000 queued members, the hot
//! path of every OFFERS event. The target is under 1 ms per round at the 99th
//! percentile; `p99` below measures it directly. Results are in BENCHMARKS.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

use mesos_stateful_actors::domain::offers::{match_offers, LaunchJob, MatchSettings, OfferSummary};
use mesos_stateful_proto::v1;
use mesos_stateful_store::records::{
    Constraint, ConstraintOperator, PlacementSpec, Resources, Role, VolumeSpec,
};

const JOBS: usize = 1_000;
const OFFERS: usize = 100;

fn offer(n: usize) -> v1::Offer {
    let scalar = |name: &str, value: f64| v1::Resource {
        name: name.into(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        #[allow(deprecated)]
        role: Some("*".into()),
        ..Default::default()
    };
    v1::Offer {
        id: v1::OfferId {
            value: format!("offer-{n}"),
        },
        agent_id: v1::AgentId {
            value: format!("agent-{n}"),
        },
        hostname: format!("host-{n}"),
        attributes: vec![v1::Attribute {
            name: "rack".into(),
            r#type: v1::value::Type::Text as i32,
            text: Some(v1::value::Text {
                value: format!("rack-{}", n % 10),
            }),
            ..Default::default()
        }],
        resources: vec![
            scalar("cpus", 16.0),
            scalar("mem", 65536.0),
            scalar("disk", 1_000_000.0),
            v1::Resource {
                name: "ports".into(),
                r#type: v1::value::Type::Ranges as i32,
                ranges: Some(v1::value::Ranges {
                    range: vec![v1::value::Range {
                        begin: 31000,
                        end: 32000,
                    }],
                }),
                #[allow(deprecated)]
                role: Some("*".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// 500 instances of a master and a replica, with placement rules (UNIQUE hostname
/// and a rack LIKE) and a persistent volume each if asked.
fn jobs(with_rules: bool, with_volumes: bool) -> Vec<LaunchJob> {
    (0..JOBS)
        .map(|n| {
            let instance = format!("cache{}", n / 2);
            let ordinal = (n % 2) as u32;
            let mut placement = PlacementSpec::default();
            if with_rules {
                placement.constraints = vec![
                    Constraint {
                        field: "hostname".into(),
                        operator: ConstraintOperator::Unique,
                        value: None,
                    },
                    Constraint {
                        field: "rack".into(),
                        operator: ConstraintOperator::Like,
                        value: Some("rack-[0-8]".into()),
                    },
                ];
            }
            LaunchJob {
                task_id: format!("{instance}-{ordinal}.1"),
                instance,
                ordinal,
                role: if ordinal == 0 {
                    Role::Master
                } else {
                    Role::Replica
                },
                resources: Resources {
                    cpus: 0.1,
                    mem: 256.0,
                    disk: 64.0,
                },
                colocate: false,
                trace_parent: None,
                volume: with_volumes.then(|| VolumeSpec {
                    size_mb: 512.0,
                    container_path: "data".into(),
                }),
                bound: None,
                placement,
            }
        })
        .collect()
}

fn settings() -> MatchSettings {
    MatchSettings {
        role: "db".into(),
        principal: Some("mesos-stateful".into()),
        framework_id: "framework-1".into(),
        executor_overhead: Resources {
            cpus: 0.05,
            mem: 32.0,
            disk: 0.0,
        },
    }
}

/// One round as the OfferManager runs it: read the offers, then match.
fn round(offers: &[v1::Offer], jobs: &[LaunchJob], settings: &MatchSettings) -> usize {
    let summaries: Vec<OfferSummary> = offers
        .iter()
        .map(|o| OfferSummary::from_offer(o, &settings.role))
        .collect();
    let outcome = match_offers(&summaries, jobs, &BTreeMap::new(), settings);
    outcome.placements.len()
}

fn p99(name: &str, offers: &[v1::Offer], jobs: &[LaunchJob], settings: &MatchSettings) {
    let mut samples: Vec<Duration> = (0..500)
        .map(|_| {
            let started = Instant::now();
            black_box(round(offers, jobs, settings));
            started.elapsed()
        })
        .collect();
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{name}: p50 {:?}, p99 {:?}, max {:?} per round of {OFFERS} offers and {JOBS} jobs",
        at(0.50),
        at(0.99),
        at(1.0)
    );
}

fn offer_rounds(c: &mut Criterion) {
    let offers: Vec<v1::Offer> = (0..OFFERS).map(offer).collect();
    let settings = settings();
    let cases = [
        ("plain", jobs(false, false)),
        ("constraints", jobs(true, false)),
        ("volumes", jobs(false, true)),
    ];
    for (name, jobs) in &cases {
        assert_eq!(
            round(&offers, jobs, &settings),
            JOBS,
            "{name}: every job fits"
        );
    }
    let mut group = c.benchmark_group("offer_round_100_offers_1000_jobs");
    for (name, jobs) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| round(black_box(&offers), black_box(jobs), &settings))
        });
    }
    group.finish();
    for (name, jobs) in &cases {
        p99(name, &offers, jobs, &settings);
    }
}

criterion_group!(benches, offer_rounds);
criterion_main!(benches);
