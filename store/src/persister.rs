//! The `Persister` trait: a small versioned key-value interface every backend offers.
//!
//! The interface is shaped after ZooKeeper so that a ZooKeeper backend fits next to the
//! RocksDB and in-memory ones:
//!
//! - keys are `/`-separated paths without a leading slash (`instances/cache1`), which
//!   map one-to-one onto znode paths under a root;
//! - every key carries a version, a per-key counter that starts at 1 when the key is
//!   created and is bumped on every write, like a znode's data version; deleting a key
//!   forgets its version, so re-creating it starts again at 1;
//! - [`Batch`] is a multi-op: puts, deletes and version checks applied all or nothing.
//!
//! The batch semantics are written once here ([`plan`]) and shared by the backends, so
//! they cannot drift apart.

use crate::StoreError;
use std::collections::HashMap;
use std::fmt;

/// A stored value with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes last written.
    pub value: Vec<u8>,
    /// How many times the key was written since it was created; the first write is 1.
    pub version: u64,
}

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write `value` at `key`, creating the key or bumping its version.
    Put {
        /// The key to write.
        key: String,
        /// The bytes to store.
        value: Vec<u8>,
    },
    /// Remove `key`; removing an absent key is not an error.
    Delete {
        /// The key to remove.
        key: String,
    },
    /// Require `key` to be at `expected_version` (`None`: require it to be absent) at
    /// this point of the batch; otherwise the whole batch fails with
    /// [`StoreError::Conflict`].
    Check {
        /// The key to check.
        key: String,
        /// The version the key must have, or `None` if it must not exist.
        expected_version: Option<u64>,
    },
}

/// An ordered list of operations applied atomically by [`Persister::apply`].
///
/// Operations see the effects of the ones before them in the same batch: a `Check`
/// after a `Put` of the same key sees the bumped version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

/// A versioned key-value store that survives restarts of the process.
///
/// Methods are synchronous and every write is durable before it returns, so a call may
/// wait for a disk flush or a network round trip. Callers must run them on a blocking
/// thread pool (`tokio::task::spawn_blocking`, an actix `SyncArbiter`) and never on an
/// async executor thread.
///
/// Keys are `/`-separated paths: not empty, no leading or trailing `/`, no empty, `.`
/// or `..` segment, no NUL character. Invalid keys are refused with
/// [`StoreError::InvalidKey`].
///
/// `Debug` is required so that holders of an `Arc<dyn Persister>` can derive it.
pub trait Persister: Send + Sync + fmt::Debug + 'static {
    /// Reads `key` with its version; `None` if the key does not exist.
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Writes `value` at `key` and returns the new version (1 for a new key).
    fn put(&self, key: &str, value: &[u8]) -> Result<u64, StoreError>;

    /// Removes `key`. Removing an absent key succeeds.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Applies every operation of `batch` in order, all or nothing.
    ///
    /// If a `Check` does not hold, nothing is written and the error is
    /// [`StoreError::Conflict`] naming the checked key.
    fn apply(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Every key that starts with `prefix`, with its value, in key order.
    ///
    /// The match is on the string: `instances/a` also finds `instances/ab`. Callers
    /// that mean a subtree end the prefix with `/`. A ZooKeeper backend lists the
    /// subtree of the prefix's parent and filters it the same way.
    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError>;
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a put of `value` at `key`.
    pub fn put(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Appends a delete of `key`.
    pub fn delete(&mut self, key: impl Into<String>) -> &mut Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }

    /// Appends a check that `key` is at `expected_version` (`None`: absent).
    pub fn check(&mut self, key: impl Into<String>, expected_version: Option<u64>) -> &mut Self {
        self.ops.push(Op::Check {
            key: key.into(),
            expected_version,
        });
        self
    }

    /// Appends an operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// The operations in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl From<Vec<Op>> for Batch {
    fn from(ops: Vec<Op>) -> Self {
        Self { ops }
    }
}

/// A borrowed operation, so single puts and deletes need not copy their value into an
/// [`Op`] before planning.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OpRef<'a> {
    Put {
        key: &'a str,
        value: &'a [u8],
    },
    Delete {
        key: &'a str,
    },
    Check {
        key: &'a str,
        expected_version: Option<u64>,
    },
}

/// One write a backend must perform once the whole batch has been planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write<'a> {
    Put {
        key: &'a str,
        version: u64,
        value: &'a [u8],
    },
    Delete {
        key: &'a str,
    },
}

impl<'a> From<&'a Op> for OpRef<'a> {
    fn from(op: &'a Op) -> Self {
        match op {
            Op::Put { key, value } => OpRef::Put { key, value },
            Op::Delete { key } => OpRef::Delete { key },
            Op::Check {
                key,
                expected_version,
            } => OpRef::Check {
                key,
                expected_version: *expected_version,
            },
        }
    }
}

/// Turns operations into the writes to perform, or the first error.
///
/// `stored_version` reads the version a key has in the backend before the batch. The
/// caller must hold whatever lock makes "plan, then write" atomic. Nothing is written
/// here, so an error leaves the backend untouched.
pub(crate) fn plan<'a>(
    ops: impl IntoIterator<Item = OpRef<'a>>,
    mut stored_version: impl FnMut(&str) -> Result<Option<u64>, StoreError>,
) -> Result<Vec<Write<'a>>, StoreError> {
    // The version of each key as the batch has left it so far.
    let mut staged: HashMap<&'a str, Option<u64>> = HashMap::new();
    let mut writes = Vec::new();
    for op in ops {
        let key = match op {
            OpRef::Put { key, .. } | OpRef::Delete { key } | OpRef::Check { key, .. } => key,
        };
        validate_key(key)?;
        let current = match staged.get(key) {
            Some(version) => *version,
            None => stored_version(key)?,
        };
        match op {
            OpRef::Check {
                expected_version, ..
            } => {
                if current != expected_version {
                    return Err(StoreError::Conflict {
                        key: key.to_owned(),
                        expected: expected_version,
                        found: current,
                    });
                }
            }
            OpRef::Put { value, .. } => {
                let version = match current {
                    None => 1,
                    Some(version) => version.checked_add(1).ok_or_else(|| StoreError::Corrupt {
                        key: key.to_owned(),
                        reason: format!("version {version} cannot be bumped"),
                    })?,
                };
                staged.insert(key, Some(version));
                writes.push(Write::Put {
                    key,
                    version,
                    value,
                });
            }
            OpRef::Delete { .. } => {
                staged.insert(key, None);
                writes.push(Write::Delete { key });
            }
        }
    }
    Ok(writes)
}

/// The version [`plan`] gave the put of a one-put batch.
pub(crate) fn planned_put_version(writes: &[Write<'_>], key: &str) -> Result<u64, StoreError> {
    match writes {
        [Write::Put { version, .. }] => Ok(*version),
        _ => Err(StoreError::Backend {
            context: format!("put of {key}"),
            message: format!(
                "planning produced {} writes instead of one put",
                writes.len()
            ),
        }),
    }
}

/// Refuses keys that do not map onto a ZooKeeper path.
pub(crate) fn validate_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason: &str| {
        Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if key.is_empty() {
        return invalid("key is empty");
    }
    if key.contains('\0') {
        return invalid("key contains a NUL character");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return invalid("key starts or ends with '/'");
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return invalid("key has an empty, '.' or '..' segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_validation() {
        let check = |key: &str, valid: bool| {
            assert_eq!(validate_key(key).is_ok(), valid, "key {key:?}");
        };
        check("instances/cache1", true);
        check("tasks/cache1/00000", true);
        check("a", true);
        check("schema/version", true);
        check("", false);
        check("/instances", false);
        check("instances/", false);
        check("instances//a", false);
        check("instances/./a", false);
        check("instances/../a", false);
        check("a\0b", false);
    }

    #[test]
    fn plan_versions_follow_earlier_ops_of_the_batch() {
        let stored = |key: &str| Ok(if key == "a" { Some(4) } else { None });
        let ops = [
            OpRef::Check {
                key: "a",
                expected_version: Some(4),
            },
            OpRef::Put {
                key: "a",
                value: b"x",
            },
            OpRef::Check {
                key: "a",
                expected_version: Some(5),
            },
            OpRef::Put {
                key: "b",
                value: b"y",
            },
            OpRef::Delete { key: "a" },
            OpRef::Check {
                key: "a",
                expected_version: None,
            },
            OpRef::Put {
                key: "a",
                value: b"z",
            },
        ];
        let writes = plan(ops, stored).unwrap();
        assert_eq!(
            writes,
            vec![
                Write::Put {
                    key: "a",
                    version: 5,
                    value: b"x"
                },
                Write::Put {
                    key: "b",
                    version: 1,
                    value: b"y"
                },
                Write::Delete { key: "a" },
                Write::Put {
                    key: "a",
                    version: 1,
                    value: b"z"
                },
            ]
        );
    }

    #[test]
    fn plan_stops_at_the_first_failing_check() {
        let stored = |_: &str| Ok(Some(2));
        let ops = [
            OpRef::Put {
                key: "a",
                value: b"x",
            },
            OpRef::Check {
                key: "b",
                expected_version: None,
            },
        ];
        match plan(ops, stored) {
            Err(StoreError::Conflict {
                key,
                expected,
                found,
            }) => {
                assert_eq!((key.as_str(), expected, found), ("b", None, Some(2)));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn plan_refuses_a_version_that_cannot_be_bumped() {
        let stored = |_: &str| Ok(Some(u64::MAX));
        let result = plan(
            [OpRef::Put {
                key: "a",
                value: b"x",
            }],
            stored,
        );
        assert!(matches!(result, Err(StoreError::Corrupt { key, .. }) if key == "a"));
    }
}
