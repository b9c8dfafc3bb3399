//! One allocation round over many simulated agents carrying tasks, with several
//! frameworks: the cost of a master tick at scale. Results are in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use mesos_stateful_devcluster::bench::AllocationFixture;

fn allocation(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocation_round");
    for (agents, frameworks, tasks_per_agent) in [(1_000, 10, 10), (5_000, 10, 10)] {
        let mut fixture = AllocationFixture::new(agents, frameworks, tasks_per_agent);
        group.throughput(Throughput::Elements(agents as u64));
        let id = format!("{agents}_agents_{frameworks}_frameworks_{tasks_per_agent}_tasks_each");
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                let offers = fixture.round();
                assert_eq!(offers, agents, "every agent is offered");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, allocation);
criterion_main!(benches);
