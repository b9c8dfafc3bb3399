//! The contract every `Persister` backend meets, run against each backend, and a
//! property test that the backends agree on random operation sequences.

use crate::{Batch, MemPersister, Op, Persister, RocksPersister, StoreError, Versioned};
use proptest::prelude::*;

/// One contract case: it gets a fresh, empty persister and panics if the contract is
/// broken.
type ContractCase = fn(&dyn Persister);

/// Every contract case, by name.
const CONTRACT: &[(&str, ContractCase)] = &[
    ("get_put_delete", get_put_delete),
    ("versions_bump_per_key", versions_bump_per_key),
    ("batches_apply_every_op", batches_apply_every_op),
    ("failing_check_writes_nothing", failing_check_writes_nothing),
    ("checks_see_earlier_ops", checks_see_earlier_ops),
    ("prefix_scan_order_and_bounds", prefix_scan_order_and_bounds),
    ("invalid_keys_are_refused", invalid_keys_are_refused),
    ("large_and_binary_values", large_and_binary_values),
    (
        "concurrent_puts_bump_once_each",
        concurrent_puts_bump_once_each,
    ),
];

fn versioned(value: &[u8], version: u64) -> Option<Versioned> {
    Some(Versioned {
        value: value.to_vec(),
        version,
    })
}

fn keys(scanned: Vec<(String, Versioned)>) -> Vec<String> {
    scanned.into_iter().map(|(key, _)| key).collect()
}

fn get_put_delete(store: &dyn Persister) {
    assert_eq!(store.get("instances/a").unwrap(), None);
    assert_eq!(store.put("instances/a", b"one").unwrap(), 1);
    assert_eq!(store.get("instances/a").unwrap(), versioned(b"one", 1));
    store.delete("instances/a").unwrap();
    assert_eq!(store.get("instances/a").unwrap(), None);
    // Deleting an absent key succeeds.
    store.delete("instances/a").unwrap();
    store.delete("never/written").unwrap();
}

fn versions_bump_per_key(store: &dyn Persister) {
    assert_eq!(store.put("a", b"1").unwrap(), 1);
    assert_eq!(store.put("a", b"2").unwrap(), 2);
    assert_eq!(store.put("b", b"1").unwrap(), 1);
    assert_eq!(store.put("a", b"3").unwrap(), 3);
    assert_eq!(store.get("a").unwrap(), versioned(b"3", 3));
    assert_eq!(store.get("b").unwrap(), versioned(b"1", 1));
    // A deleted key starts again at version 1, like a re-created znode.
    store.delete("a").unwrap();
    assert_eq!(store.put("a", b"4").unwrap(), 1);
}

fn batches_apply_every_op(store: &dyn Persister) {
    store.put("a", b"old").unwrap();
    store.put("b", b"old").unwrap();
    let mut batch = Batch::new();
    batch
        .check("a", Some(1))
        .put("a", b"new".to_vec())
        .delete("b")
        .put("c", b"created".to_vec())
        .check("d", None);
    assert_eq!(batch.len(), 5);
    store.apply(&batch).unwrap();
    assert_eq!(store.get("a").unwrap(), versioned(b"new", 2));
    assert_eq!(store.get("b").unwrap(), None);
    assert_eq!(store.get("c").unwrap(), versioned(b"created", 1));
    assert_eq!(store.get("d").unwrap(), None);
    // An empty batch is a valid no-op.
    store.apply(&Batch::new()).unwrap();
    assert_eq!(store.scan_prefix("").unwrap().len(), 2);
}

fn failing_check_writes_nothing(store: &dyn Persister) {
    store.put("a", b"keep").unwrap();
    let check = |batch: &Batch, key: &str, expected: Option<u64>, found: Option<u64>| {
        match store.apply(batch) {
            Err(StoreError::Conflict {
                key: conflict_key,
                expected: conflict_expected,
                found: conflict_found,
            }) => assert_eq!(
                (conflict_key.as_str(), conflict_expected, conflict_found),
                (key, expected, found)
            ),
            other => panic!("expected a conflict on {key}, got {other:?}"),
        }
        assert_eq!(store.get("a").unwrap(), versioned(b"keep", 1));
        assert_eq!(store.get("x").unwrap(), None);
    };

    let mut wrong_version = Batch::new();
    wrong_version
        .put("x", b"1".to_vec())
        .delete("a")
        .check("a", Some(99));
    check(&wrong_version, "a", Some(99), None);

    let mut stale_version = Batch::new();
    stale_version.put("x", b"1".to_vec()).check("a", Some(7));
    check(&stale_version, "a", Some(7), Some(1));

    let mut must_be_absent = Batch::new();
    must_be_absent.put("x", b"1".to_vec()).check("a", None);
    check(&must_be_absent, "a", None, Some(1));

    let mut must_exist = Batch::new();
    must_exist.put("x", b"1".to_vec()).check("missing", Some(1));
    check(&must_exist, "missing", Some(1), None);

    assert_eq!(keys(store.scan_prefix("").unwrap()), ["a"]);
}

fn checks_see_earlier_ops(store: &dyn Persister) {
    let mut batch = Batch::new();
    batch
        .check("n", None)
        .put("n", b"1".to_vec())
        .check("n", Some(1))
        .put("n", b"2".to_vec())
        .check("n", Some(2));
    store.apply(&batch).unwrap();
    assert_eq!(store.get("n").unwrap(), versioned(b"2", 2));
}

fn prefix_scan_order_and_bounds(store: &dyn Persister) {
    for key in [
        "instancesx",
        "instances/ab",
        "tasks/a/00001",
        "instances/a",
        "instances/a/b",
        "instance",
        "tasks/a/00000",
    ] {
        store.put(key, key.as_bytes()).unwrap();
    }
    let check = |prefix: &str, expected: &[&str]| {
        let scanned = store.scan_prefix(prefix).unwrap();
        for (key, stored) in &scanned {
            assert_eq!(stored.value, key.as_bytes(), "value of {key}");
            assert_eq!(stored.version, 1, "version of {key}");
        }
        assert_eq!(keys(scanned), expected, "prefix {prefix:?}");
    };
    check(
        "instances/",
        &["instances/a", "instances/a/b", "instances/ab"],
    );
    check(
        "instances/a",
        &["instances/a", "instances/a/b", "instances/ab"],
    );
    check("instances/a/", &["instances/a/b"]);
    check("instances/ab", &["instances/ab"]);
    check(
        "instances",
        &["instances/a", "instances/a/b", "instances/ab", "instancesx"],
    );
    check("tasks/a/", &["tasks/a/00000", "tasks/a/00001"]);
    check("tasks/b/", &[]);
    check("zzz", &[]);
    check(
        "",
        &[
            "instance",
            "instances/a",
            "instances/a/b",
            "instances/ab",
            "instancesx",
            "tasks/a/00000",
            "tasks/a/00001",
        ],
    );
}

fn invalid_keys_are_refused(store: &dyn Persister) {
    let is_invalid = |result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::InvalidKey { .. })),
            "{result:?}"
        );
    };
    for key in ["", "/a", "a/", "a//b", "a/../b", "a/./b"] {
        is_invalid(store.get(key).map(|_| ()));
        is_invalid(store.put(key, b"x").map(|_| ()));
        is_invalid(store.delete(key));
        let mut batch = Batch::new();
        batch.put("valid", b"x".to_vec()).put(key, b"x".to_vec());
        is_invalid(store.apply(&batch));
    }
    assert!(store.scan_prefix("").unwrap().is_empty());
}

fn large_and_binary_values(store: &dyn Persister) {
    let large: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    store.put("large", &large).unwrap();
    assert_eq!(store.get("large").unwrap(), versioned(&large, 1));
    store.put("empty", b"").unwrap();
    assert_eq!(store.get("empty").unwrap(), versioned(b"", 1));
    store.put("binary", &[0, 0xff, 0, 0x80]).unwrap();
    assert_eq!(
        store.get("binary").unwrap(),
        versioned(&[0, 0xff, 0, 0x80], 1)
    );
}

fn concurrent_puts_bump_once_each(store: &dyn Persister) {
    const THREADS: u64 = 4;
    const PUTS_PER_THREAD: u64 = 10;
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            scope.spawn(move || {
                for put in 0..PUTS_PER_THREAD {
                    store
                        .put("shared", format!("{thread}-{put}").as_bytes())
                        .unwrap();
                }
            });
        }
    });
    let stored = store.get("shared").unwrap().unwrap();
    assert_eq!(stored.version, THREADS * PUTS_PER_THREAD);
}

#[test]
fn memory_backend_meets_the_contract() {
    for (name, case) in CONTRACT {
        eprintln!("contract case {name}");
        case(&MemPersister::new());
    }
}

#[test]
fn rocks_backend_meets_the_contract() {
    for (name, case) in CONTRACT {
        eprintln!("contract case {name}");
        let dir = tempfile::tempdir().unwrap();
        case(&RocksPersister::open(dir.path()).unwrap());
    }
}

/// One call on a persister, for the property test.
#[derive(Debug, Clone)]
enum Action {
    Get(String),
    Put(String, Vec<u8>),
    Delete(String),
    Apply(Vec<Op>),
    Scan(String),
}

/// What a call returned, comparable across backends.
#[derive(Debug, PartialEq)]
enum Outcome {
    Got(Option<Versioned>),
    Version(u64),
    Done,
    Scanned(Vec<(String, Versioned)>),
}

fn key_strategy() -> impl Strategy<Value = String> {
    // Few keys so that operations collide; nested, sibling and invalid ones included.
    prop::sample::select(vec!["a", "a/b", "ab", "b", "b/c/d", "a/"]).prop_map(str::to_owned)
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..6)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (key_strategy(), value_strategy()).prop_map(|(key, value)| Op::Put { key, value }),
        key_strategy().prop_map(|key| Op::Delete { key }),
        (key_strategy(), prop::option::of(1..4_u64)).prop_map(|(key, expected_version)| {
            Op::Check {
                key,
                expected_version,
            }
        }),
    ]
}

fn action_strategy() -> impl Strategy<Value = Action> {
    prop_oneof![
        1 => key_strategy().prop_map(Action::Get),
        3 => (key_strategy(), value_strategy()).prop_map(|(key, value)| Action::Put(key, value)),
        1 => key_strategy().prop_map(Action::Delete),
        3 => prop::collection::vec(op_strategy(), 0..5).prop_map(Action::Apply),
        1 => prop::sample::select(vec!["", "a", "a/", "b", "c"])
            .prop_map(|prefix| Action::Scan(prefix.to_owned())),
    ]
}

fn perform(store: &dyn Persister, action: &Action) -> Result<Outcome, String> {
    let outcome = match action {
        Action::Get(key) => store.get(key).map(Outcome::Got),
        Action::Put(key, value) => store.put(key, value).map(Outcome::Version),
        Action::Delete(key) => store.delete(key).map(|()| Outcome::Done),
        Action::Apply(ops) => store
            .apply(&Batch::from(ops.clone()))
            .map(|()| Outcome::Done),
        Action::Scan(prefix) => store.scan_prefix(prefix).map(Outcome::Scanned),
    };
    outcome.map_err(|error| error.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn backends_agree_on_random_operations(
        actions in prop::collection::vec(action_strategy(), 1..30)
    ) {
        let memory = MemPersister::new();
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksPersister::open(dir.path()).unwrap();
        for (step, action) in actions.iter().enumerate() {
            let from_memory = perform(&memory, action);
            let from_rocks = perform(&rocks, action);
            prop_assert_eq!(from_memory, from_rocks, "step {} {:?}", step, action);
        }
        prop_assert_eq!(memory.scan_prefix("").unwrap(), rocks.scan_prefix("").unwrap());
    }
}
