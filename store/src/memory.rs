//! `MemPersister`: the in-memory backend, with fault injection for tests.

use crate::persister::{plan, planned_put_version, validate_key, OpRef, Write};
use crate::{Batch, Persister, StoreError, Versioned};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A [`Persister`] that keeps everything in a `BTreeMap`; nothing survives the process.
///
/// It has the same semantics as [`crate::RocksPersister`] (the contract tests run
/// against both) and adds what tests need: [`MemPersister::fail_next_writes`] makes
/// writes fail without changing anything, and [`MemPersister::write_count`] tells how
/// many writes went through.
#[derive(Debug, Default)]
pub struct MemPersister {
    /// The map, the fault plan and the counters. One lock for all of them so that a
    /// batch plans, fails or writes, and counts as one step.
    state: Mutex<MemState>,
}

#[derive(Debug, Default)]
struct MemState {
    entries: BTreeMap<String, Versioned>,
    /// How many of the coming write calls fail with an injected backend error.
    failures_left: u64,
    /// Write calls (`put`, `delete`, `apply`) that succeeded.
    writes: u64,
    /// Write calls refused by an injected fault.
    injected_failures: u64,
}

impl MemPersister {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `count` write calls (`put`, `delete` or `apply`) fail with
    /// [`StoreError::Backend`] without writing anything. Replaces any earlier plan.
    pub fn fail_next_writes(&self, count: u64) {
        self.lock().failures_left = count;
    }

    /// Number of write calls (`put`, `delete`, `apply`) that succeeded; a batch counts
    /// once whatever its size.
    pub fn write_count(&self) -> u64 {
        self.lock().writes
    }

    /// Number of write calls refused by [`MemPersister::fail_next_writes`].
    pub fn injected_failure_count(&self) -> u64 {
        self.lock().injected_failures
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        // The state is only changed after a batch has been fully planned, so a panic
        // while the lock was held cannot have left a half-applied batch behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Plans and applies `ops` under the lock; returns the writes performed.
    fn write<'a>(
        &self,
        what: &str,
        ops: impl IntoIterator<Item = OpRef<'a>>,
    ) -> Result<Vec<Write<'a>>, StoreError> {
        let mut state = self.lock();
        if state.failures_left > 0 {
            state.failures_left -= 1;
            state.injected_failures += 1;
            return Err(StoreError::Backend {
                context: format!("in-memory {what}"),
                message: "injected write failure".to_owned(),
            });
        }
        let writes = plan(ops, |key| {
            Ok(state.entries.get(key).map(|stored| stored.version))
        })?;
        for write in &writes {
            match *write {
                Write::Put {
                    key,
                    version,
                    value,
                } => {
                    state.entries.insert(
                        key.to_owned(),
                        Versioned {
                            value: value.to_vec(),
                            version,
                        },
                    );
                }
                Write::Delete { key } => {
                    state.entries.remove(key);
                }
            }
        }
        state.writes += 1;
        Ok(writes)
    }
}

impl Persister for MemPersister {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        validate_key(key)?;
        Ok(self.lock().entries.get(key).cloned())
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        let writes = self.write(&format!("put of {key}"), [OpRef::Put { key, value }])?;
        planned_put_version(&writes, key)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.write(&format!("delete of {key}"), [OpRef::Delete { key }])?;
        Ok(())
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        self.write("batch", batch.ops().iter().map(OpRef::from))?;
        Ok(())
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let state = self.lock();
        Ok(state
            .entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, stored)| (key.clone(), stored.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_failures_write_nothing_and_run_out() {
        let store = MemPersister::new();
        store.put("a", b"1").unwrap();
        store.fail_next_writes(2);

        assert!(matches!(
            store.put("a", b"2"),
            Err(StoreError::Backend { .. })
        ));
        let mut batch = Batch::new();
        batch.put("b", b"1".to_vec()).delete("a");
        assert!(matches!(
            store.apply(&batch),
            Err(StoreError::Backend { .. })
        ));
        assert_eq!(
            store.get("a").unwrap(),
            Some(Versioned {
                value: b"1".to_vec(),
                version: 1
            })
        );
        assert_eq!(store.get("b").unwrap(), None);

        assert_eq!(store.put("a", b"3").unwrap(), 2);
        assert_eq!(store.write_count(), 2);
        assert_eq!(store.injected_failure_count(), 2);
    }

    #[test]
    fn reads_do_not_consume_injected_failures() {
        let store = MemPersister::new();
        store.fail_next_writes(1);
        assert_eq!(store.get("a").unwrap(), None);
        assert!(store.scan_prefix("").unwrap().is_empty());
        assert!(store.delete("a").is_err());
        store.delete("a").unwrap();
        assert_eq!(store.write_count(), 1);
    }

    #[test]
    fn a_conflicting_batch_is_not_counted() {
        let store = MemPersister::new();
        let mut batch = Batch::new();
        batch.check("a", Some(1)).put("a", b"x".to_vec());
        assert!(matches!(
            store.apply(&batch),
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(store.write_count(), 0);
    }
}
