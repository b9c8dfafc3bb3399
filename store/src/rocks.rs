//! `RocksPersister`: the durable backend on a local RocksDB database.
//!
//! On disk each key is stored as its UTF-8 bytes in the default column family; each
//! value is the key's version as 8 big-endian bytes followed by the value's bytes.

use crate::persister::{plan, planned_put_version, validate_key, OpRef, Write};
use crate::{Batch, Persister, StoreError, Versioned};
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Length of the version header in front of every stored value.
const VERSION_HEADER_LEN: usize = 8;

/// A [`Persister`] on a RocksDB database in a local directory.
///
/// Writes are synced to disk before they return. Batches are atomic on disk (one
/// RocksDB `WriteBatch`) and their checks are atomic with their writes within this
/// process; RocksDB's lock file keeps other processes from opening the same directory.
pub struct RocksPersister {
    db: DB,
    /// Serializes writers so that reading the versions a batch checks and bumps and
    /// writing the batch happen as one step. Readers do not take it: RocksDB reads are
    /// consistent on their own and only ever see whole batches.
    write_lock: Mutex<()>,
    path: PathBuf,
}

impl RocksPersister {
    /// Opens the database in `path`, creating the directory and the database if
    /// missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
            context: format!("creating the store directory {}", path.display()),
            source,
        })?;
        let mut options = Options::default();
        options.create_if_missing(true);
        // Every write is synced. Writing back the WAL and new table files as they
        // grow (every MiB) keeps a sync from waiting behind a burst of dirty pages,
        // and a pipelined write lets the next batch reach the WAL while the previous
        // one is still going into the memtable: fewer, shorter latency spikes.
        options.set_bytes_per_sync(1 << 20);
        options.set_wal_bytes_per_sync(1 << 20);
        options.set_enable_pipelined_write(true);
        let db = DB::open(&options, path).map_err(|error| StoreError::Backend {
            context: format!("opening rocksdb at {}", path.display()),
            message: error.into_string(),
        })?;
        tracing::debug!(path = %path.display(), "opened the rocksdb store");
        Ok(Self {
            db,
            write_lock: Mutex::new(()),
            path: path.to_owned(),
        })
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let stored = self.db.get(key).map_err(|error| StoreError::Backend {
            context: format!("reading {key} from rocksdb"),
            message: error.into_string(),
        })?;
        stored.map(|bytes| decode(key, &bytes)).transpose()
    }

    fn write<'a>(
        &self,
        what: &str,
        ops: impl IntoIterator<Item = OpRef<'a>>,
    ) -> Result<Vec<Write<'a>>, StoreError> {
        // The guarded value is `()`, so a poisoned lock protects nothing broken.
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let writes = plan(ops, |key| Ok(self.read(key)?.map(|stored| stored.version)))?;
        let mut batch = WriteBatch::default();
        for write in &writes {
            match *write {
                Write::Put {
                    key,
                    version,
                    value,
                } => batch.put(key, encode(version, value)),
                Write::Delete { key } => batch.delete(key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|error| StoreError::Backend {
                context: format!("writing {what} to rocksdb"),
                message: error.into_string(),
            })?;
        Ok(writes)
    }
}

impl fmt::Debug for RocksPersister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksPersister")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Persister for RocksPersister {
    fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        validate_key(key)?;
        self.read(key)
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
        self.write(
            &format!("a batch of {} operations", batch.len()),
            batch.ops().iter().map(OpRef::from),
        )?;
        Ok(())
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, StoreError> {
        let mut found = Vec::new();
        let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
        for item in self.db.iterator(mode) {
            let (raw_key, bytes) = item.map_err(|error| StoreError::Backend {
                context: format!("scanning {prefix:?} in rocksdb"),
                message: error.into_string(),
            })?;
            if !raw_key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key =
                String::from_utf8(raw_key.into_vec()).map_err(|error| StoreError::Corrupt {
                    key: String::from_utf8_lossy(error.as_bytes()).into_owned(),
                    reason: "stored key is not UTF-8".to_owned(),
                })?;
            let stored = decode(&key, &bytes)?;
            found.push((key, stored));
        }
        Ok(found)
    }
}

/// The stored form of a value: its version, then its bytes.
fn encode(version: u64, value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(VERSION_HEADER_LEN + value.len());
    stored.extend_from_slice(&version.to_be_bytes());
    stored.extend_from_slice(value);
    stored
}

/// Splits a stored value into its version and bytes.
fn decode(key: &str, stored: &[u8]) -> Result<Versioned, StoreError> {
    let Some((header, value)) = stored.split_first_chunk::<VERSION_HEADER_LEN>() else {
        return Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!(
                "stored value has {} bytes, fewer than its {VERSION_HEADER_LEN}-byte version header",
                stored.len()
            ),
        });
    };
    Ok(Versioned {
        value: value.to_vec(),
        version: u64::from_be_bytes(*header),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_their_stored_form() {
        let check = |version: u64, value: &[u8]| {
            let stored = encode(version, value);
            assert_eq!(stored.len(), VERSION_HEADER_LEN + value.len());
            assert_eq!(
                decode("k", &stored).unwrap(),
                Versioned {
                    value: value.to_vec(),
                    version
                }
            );
        };
        check(1, b"");
        check(7, b"{\"a\":1}");
        check(u64::MAX, &[0, 255, 8]);
    }

    #[test]
    fn reopening_reads_back_values_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("store");
        {
            let store = RocksPersister::open(&path).unwrap();
            store.put("instances/a", b"one").unwrap();
            store.put("instances/a", b"two").unwrap();
            store.put("instances/b", b"three").unwrap();
            store.put("gone", b"x").unwrap();
            store.delete("gone").unwrap();
        }
        let store = RocksPersister::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert_eq!(
            store.get("instances/a").unwrap(),
            Some(Versioned {
                value: b"two".to_vec(),
                version: 2
            })
        );
        assert_eq!(store.get("gone").unwrap(), None);
        let keys: Vec<String> = store
            .scan_prefix("instances/")
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, ["instances/a", "instances/b"]);
        assert_eq!(store.put("instances/b", b"four").unwrap(), 2);
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RocksPersister::open(dir.path()).unwrap();
        assert!(matches!(
            RocksPersister::open(dir.path()),
            Err(StoreError::Backend { .. })
        ));
    }

    #[test]
    fn a_value_without_its_version_header_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksPersister::open(dir.path()).unwrap();
        store.db.put("instances/short", [1, 2, 3]).unwrap();
        let check = |result: Result<_, StoreError>| match result {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "instances/short"),
            other => panic!("expected a corrupt value, got {other:?}"),
        };
        check(store.get("instances/short").map(|_| ()));
        check(store.scan_prefix("instances/").map(|_| ()));
        check(store.put("instances/short", b"x").map(|_| ()));
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"not a directory").unwrap();
        assert!(matches!(
            RocksPersister::open(&file.join("store")),
            Err(StoreError::Io { .. })
        ));
    }
}
