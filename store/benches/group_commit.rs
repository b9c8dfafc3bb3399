//! Group commit on RocksDB: the same task-record writes made one synced batch each
//! (what the StateManager did before) and grouped into batches of 16 and 256 (what
//! it does when writes arrive while a sync is in flight). Results are in
//! BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use mesos_stateful_store::records::{Role, TaskRecord};
use mesos_stateful_store::{Changes, RocksPersister, StateStore};

const WRITES: usize = 256;

fn record(n: usize) -> TaskRecord {
    let mut task =
        TaskRecord::waiting(&format!("cache{}", n / 4), (n % 4) as u32, Role::Replica, 1);
    task.agent_id = Some("8f2b9a1c-0000-4000-8000-000000000001-S0".into());
    task.hostname = Some("agent-1.example".into());
    task.port = Some(31000 + (n % 1000) as u16);
    task.state = Some("TASK_RUNNING".into());
    task
}

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let persister = RocksPersister::open(dir.path()).expect("rocksdb opens");
    let store = StateStore::open(Arc::new(persister)).expect("the store opens");
    let records: Vec<TaskRecord> = (0..WRITES).map(record).collect();
    let mut group = c.benchmark_group("task_record_writes");
    group.throughput(Throughput::Elements(WRITES as u64));
    group.sample_size(10);
    for per_batch in [1usize, 16, WRITES] {
        group.bench_with_input(
            BenchmarkId::new("writes_per_synced_batch", per_batch),
            &per_batch,
            |b, &per_batch| {
                b.iter(|| {
                    for chunk in records.chunks(per_batch) {
                        let mut changes = Changes::new();
                        for task in chunk {
                            changes.put_task(task.clone());
                        }
                        store
                            .write(black_box(&changes))
                            .expect("the write succeeds");
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
