//! `StateStore`: the typed records of mesos-stateful on top of a [`Persister`].

use crate::persister::validate_key;
use crate::records::{FrameworkRecord, InstanceRecord, TaskRecord, SCHEMA_VERSION};
use crate::{Batch, Persister, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Key of the layout version the store is written in.
const SCHEMA_VERSION_KEY: &str = "schema/version";
/// Key of the framework's identity.
const FRAMEWORK_ID_KEY: &str = "framework/id";
/// Parent of every instance record.
const INSTANCES_PREFIX: &str = "instances/";
/// Parent of every task record.
const TASKS_PREFIX: &str = "tasks/";

/// The typed state of mesos-stateful: instances, their members' tasks, the framework
/// id and the schema version, one JSON record per entity.
///
/// Key layout:
///
/// ```text
/// schema/version                  u32 as JSON; written on the first open
/// framework/id                    FrameworkRecord
/// instances/
/// ├── cache1                      InstanceRecord of instance cache1
/// └── cache2                      InstanceRecord of instance cache2
/// tasks/
/// ├── cache1/
/// │   ├── 00000                   TaskRecord of member cache1-0 (the master at creation)
/// │   └── 00001                   TaskRecord of member cache1-1
/// └── cache2/
///     └── 00000                   TaskRecord of member cache2-0
/// ```
///
/// Ordinals are zero-padded to five digits so that a prefix scan returns an instance's
/// tasks in ordinal order. Instance names are single key segments: no `/`.
///
/// Records are written whole, never one key per field, and every [`Changes`] set is
/// one atomic batch: an instance's creation writes its instance record and its first
/// task records together or not at all.
///
/// The store is cheap to clone and shares its persister. Like the [`Persister`], every
/// method is synchronous and must run on a blocking thread pool, never on an async
/// executor thread.
#[derive(Debug, Clone)]
pub struct StateStore {
    persister: Arc<dyn Persister>,
}

/// One change of a [`Changes`] set.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Write an instance record at `instances/<name>`.
    PutInstance(InstanceRecord),
    /// Write a task record at `tasks/<instance>/<ordinal>`.
    PutTask(TaskRecord),
    /// Remove the instance record `instances/<name>` (not its tasks).
    DeleteInstance {
        /// Name of the instance.
        name: String,
    },
    /// Require that no record `instances/<name>` exists at this point of the batch;
    /// otherwise the whole batch fails with [`StoreError::Conflict`] on that key.
    ExpectNoInstance {
        /// Name of the instance.
        name: String,
    },
    /// Remove the task record `tasks/<instance>/<ordinal>`.
    DeleteTask {
        /// Name of the instance.
        instance: String,
        /// Ordinal of the member.
        ordinal: u32,
    },
}

/// Records to write and remove together, as one atomic batch, in the order added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    changes: Vec<Change>,
}

impl StateStore {
    /// Opens the typed store on `persister`.
    ///
    /// On a new store this writes [`SCHEMA_VERSION`]. An existing store at an older
    /// version is migrated step by step, each step one atomic batch; a newer layout was
    /// written by a newer build and is refused with [`StoreError::UnsupportedSchema`],
    /// as is a version no migration starts from.
    pub fn open(persister: Arc<dyn Persister>) -> Result<Self, StoreError> {
        let store = Self { persister };
        match store.stored_schema_version()? {
            Some(found) if found > 0 && found < SCHEMA_VERSION => {
                crate::migrations::migrate(
                    store.persister.as_ref(),
                    SCHEMA_VERSION_KEY,
                    found,
                    SCHEMA_VERSION,
                    crate::migrations::MIGRATIONS,
                )?;
            }
            Some(found) => check_schema_version(found)?,
            None => {
                let mut batch = Batch::new();
                batch.check(SCHEMA_VERSION_KEY, None).put(
                    SCHEMA_VERSION_KEY,
                    encode(SCHEMA_VERSION_KEY, &SCHEMA_VERSION)?,
                );
                match store.persister.apply(&batch) {
                    Ok(()) => {
                        tracing::info!(schema_version = SCHEMA_VERSION, "initialized the store");
                    }
                    // Another opener wrote the version between our read and our write;
                    // its version must suit us too.
                    Err(conflict @ StoreError::Conflict { .. }) => {
                        match store.stored_schema_version()? {
                            Some(found) => check_schema_version(found)?,
                            None => return Err(conflict),
                        }
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(store)
    }

    /// The framework id a previous run stored, if any.
    pub fn framework_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .read::<FrameworkRecord>(FRAMEWORK_ID_KEY)?
            .map(|record| record.framework_id))
    }

    /// Stores the framework id Mesos assigned, replacing any earlier one.
    pub fn set_framework_id(&self, framework_id: &str) -> Result<(), StoreError> {
        let record = FrameworkRecord {
            schema: SCHEMA_VERSION,
            framework_id: framework_id.to_owned(),
        };
        self.persister
            .put(FRAMEWORK_ID_KEY, &encode(FRAMEWORK_ID_KEY, &record)?)?;
        Ok(())
    }

    /// The record of instance `name`, if stored.
    pub fn get_instance(&self, name: &str) -> Result<Option<InstanceRecord>, StoreError> {
        let key = instance_key(name)?;
        let Some(record) = self.read::<InstanceRecord>(&key)? else {
            return Ok(None);
        };
        check_instance_key(&key, &record)?;
        Ok(Some(record))
    }

    /// Every stored instance record, ordered by name.
    pub fn load_instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.persister
            .scan_prefix(INSTANCES_PREFIX)?
            .into_iter()
            .map(|(key, stored)| {
                let record: InstanceRecord = decode(&key, &stored.value)?;
                check_instance_key(&key, &record)?;
                Ok(record)
            })
            .collect()
    }

    /// The task records of instance `instance`, ordered by ordinal.
    pub fn load_tasks(&self, instance: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let prefix = format!("{}/", instance_segment(TASKS_PREFIX, instance)?);
        self.load_task_records(&prefix)
    }

    /// Every stored task record, ordered by instance name, then ordinal.
    pub fn load_all_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.load_task_records(TASKS_PREFIX)
    }

    /// Writes `changes` as one atomic batch. An empty set writes nothing.
    pub fn write(&self, changes: &Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.persister.apply(&changes_to_batch(changes)?)
    }

    /// Creates instance `instance` with its first task records, atomically, provided
    /// no record `instances/<name>` exists; otherwise fails with
    /// [`StoreError::AlreadyExists`] and writes nothing.
    ///
    /// Every task must belong to the instance ([`StoreError::InvalidRecord`]
    /// otherwise). Task records left by an earlier instance of the same name are
    /// overwritten, not checked.
    pub fn create_instance(
        &self,
        instance: &InstanceRecord,
        tasks: &[TaskRecord],
    ) -> Result<(), StoreError> {
        let key = instance_key(&instance.name)?;
        for task in tasks {
            if task.instance != instance.name {
                return Err(StoreError::InvalidRecord {
                    key: task_key(&task.instance, task.ordinal)?,
                    reason: format!(
                        "the task belongs to instance {}, not to {}",
                        task.instance, instance.name
                    ),
                });
            }
        }
        let mut changes = Changes::new();
        changes.put_instance(instance.clone());
        for task in tasks {
            changes.put_task(task.clone());
        }
        let mut batch = Batch::new();
        batch.check(key.clone(), None);
        for op in changes_to_batch(&changes)?.ops() {
            batch.push(op.clone());
        }
        match self.persister.apply(&batch) {
            Err(StoreError::Conflict {
                key: conflicting, ..
            }) if conflicting == key => Err(StoreError::AlreadyExists { key }),
            other => other,
        }
    }

    fn stored_schema_version(&self) -> Result<Option<u32>, StoreError> {
        self.read::<u32>(SCHEMA_VERSION_KEY)
    }

    fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.persister
            .get(key)?
            .map(|stored| decode(key, &stored.value))
            .transpose()
    }

    fn load_task_records(&self, prefix: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let mut tasks = self
            .persister
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(key, stored)| {
                let record: TaskRecord = decode(&key, &stored.value)?;
                let expected = task_key(&record.instance, record.ordinal).map_err(|_| {
                    StoreError::Corrupt {
                        key: key.clone(),
                        reason: format!("the record names instance {:?}", record.instance),
                    }
                })?;
                if expected != key {
                    return Err(StoreError::Corrupt {
                        reason: format!("the record belongs at {expected}"),
                        key,
                    });
                }
                Ok(record)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Key order already matches for ordinals below 100000; sorting keeps the
        // promised order for larger ones too.
        tasks.sort_by(|a, b| (&a.instance, a.ordinal).cmp(&(&b.instance, b.ordinal)));
        Ok(tasks)
    }
}

impl Changes {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write of `record` at `instances/<name>`.
    pub fn put_instance(&mut self, record: InstanceRecord) -> &mut Self {
        self.changes.push(Change::PutInstance(record));
        self
    }

    /// Adds a write of `record` at `tasks/<instance>/<ordinal>`.
    pub fn put_task(&mut self, record: TaskRecord) -> &mut Self {
        self.changes.push(Change::PutTask(record));
        self
    }

    /// Adds the removal of the instance record `instances/<name>`; its task records
    /// stay unless removed with [`Changes::delete_task`].
    pub fn delete_instance(&mut self, name: impl Into<String>) -> &mut Self {
        self.changes
            .push(Change::DeleteInstance { name: name.into() });
        self
    }

    /// Adds a check that no record `instances/<name>` exists; the batch fails
    /// otherwise. Put it before the instance's creation to merge creates into one
    /// batch with other writes.
    pub fn expect_no_instance(&mut self, name: impl Into<String>) -> &mut Self {
        self.changes
            .push(Change::ExpectNoInstance { name: name.into() });
        self
    }

    /// Appends every change of `other`, in order.
    pub fn extend(&mut self, other: Changes) -> &mut Self {
        self.changes.extend(other.changes);
        self
    }

    /// Adds the removal of the task record `tasks/<instance>/<ordinal>`.
    pub fn delete_task(&mut self, instance: impl Into<String>, ordinal: u32) -> &mut Self {
        self.changes.push(Change::DeleteTask {
            instance: instance.into(),
            ordinal,
        });
        self
    }

    /// The changes in the order added.
    pub fn iter(&self) -> std::slice::Iter<'_, Change> {
        self.changes.iter()
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether the set has no change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl<'a> IntoIterator for &'a Changes {
    type Item = &'a Change;
    type IntoIter = std::slice::Iter<'a, Change>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The persister batch that performs `changes`.
fn changes_to_batch(changes: &Changes) -> Result<Batch, StoreError> {
    let mut batch = Batch::new();
    for change in changes {
        match change {
            Change::PutInstance(record) => {
                let key = instance_key(&record.name)?;
                let value = encode(&key, record)?;
                batch.put(key, value);
            }
            Change::PutTask(record) => {
                let key = task_key(&record.instance, record.ordinal)?;
                let value = encode(&key, record)?;
                batch.put(key, value);
            }
            Change::DeleteInstance { name } => {
                batch.delete(instance_key(name)?);
            }
            Change::ExpectNoInstance { name } => {
                batch.check(instance_key(name)?, None);
            }
            Change::DeleteTask { instance, ordinal } => {
                batch.delete(task_key(instance, *ordinal)?);
            }
        }
    }
    Ok(batch)
}

/// `instances/<name>`.
fn instance_key(name: &str) -> Result<String, StoreError> {
    instance_segment(INSTANCES_PREFIX, name)
}

/// `tasks/<instance>/<ordinal:05>`.
fn task_key(instance: &str, ordinal: u32) -> Result<String, StoreError> {
    Ok(format!(
        "{}/{ordinal:05}",
        instance_segment(TASKS_PREFIX, instance)?
    ))
}

/// `<parent><name>`, refusing names that are not exactly one key segment.
fn instance_segment(parent: &str, name: &str) -> Result<String, StoreError> {
    if name.contains('/') {
        return Err(StoreError::InvalidKey {
            key: name.to_owned(),
            reason: "an instance name cannot contain '/'".to_owned(),
        });
    }
    let key = format!("{parent}{name}");
    validate_key(&key).map_err(|_| StoreError::InvalidKey {
        key: name.to_owned(),
        reason: "an instance name must be a non-empty key segment other than '.' and '..'"
            .to_owned(),
    })?;
    Ok(key)
}

/// Refuses an instance record stored under another instance's key.
fn check_instance_key(key: &str, record: &InstanceRecord) -> Result<(), StoreError> {
    if key.strip_prefix(INSTANCES_PREFIX) == Some(record.name.as_str()) {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("the record names instance {:?}", record.name),
        })
    }
}

fn check_schema_version(found: u32) -> Result<(), StoreError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(StoreError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        })
    }
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Encode {
        key: key.to_owned(),
        reason: error.to_string(),
    })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        key: key.to_owned(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{InstanceSpec, InstanceStatus, Resources, Role};
    use crate::{MemPersister, RocksPersister};

    fn instance(name: &str) -> InstanceRecord {
        InstanceRecord {
            schema: SCHEMA_VERSION,
            name: name.to_owned(),
            spec: InstanceSpec {
                image: "redis:7".to_owned(),
                replicas: 1,
                resources: Resources {
                    cpus: 0.5,
                    mem: 256.0,
                    disk: 100.0,
                },
                master_args: vec!["--port".to_owned(), "{port}".to_owned()],
                replica_args: vec!["--replicaof".to_owned(), "{master_host}".to_owned()],
                env: [("MODE".to_owned(), "cache".to_owned())].into(),
                volume: None,
                placement: Default::default(),
                privileged: false,
            },
            status: InstanceStatus::Creating,
            status_message: None,
            version: 1,
            created_at_ms: 1_700_000_000_000,
            lifecycle: Default::default(),
        }
    }

    fn task(instance: &str, ordinal: u32) -> TaskRecord {
        TaskRecord {
            schema: SCHEMA_VERSION,
            instance: instance.to_owned(),
            ordinal,
            role: if ordinal == 0 {
                Role::Master
            } else {
                Role::Replica
            },
            incarnation: 1,
            task_id: crate::records::task_id(instance, ordinal, 1),
            agent_id: None,
            hostname: None,
            port: None,
            state: None,
            message: None,
            healthy: None,
            trace_parent: None,
            volume: None,
            failures: 0,
            ended_at_ms: None,
            running_since_ms: None,
            version: 1,
        }
    }

    /// Runs `test` on a fresh in-memory store and a fresh RocksDB store.
    fn on_every_backend(test: impl Fn(Arc<dyn Persister>)) {
        test(Arc::new(MemPersister::new()));
        let dir = tempfile::tempdir().unwrap();
        test(Arc::new(RocksPersister::open(dir.path()).unwrap()));
    }

    fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_key: &str) {
        match result {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, expected_key),
            other => panic!("expected {expected_key} to be corrupt, got {other:?}"),
        }
    }

    #[test]
    fn open_writes_the_schema_version_once() {
        on_every_backend(|persister| {
            StateStore::open(persister.clone()).unwrap();
            let stored = persister.get(SCHEMA_VERSION_KEY).unwrap().unwrap();
            assert_eq!(stored.value, SCHEMA_VERSION.to_string().as_bytes());
            StateStore::open(persister.clone()).unwrap();
            assert_eq!(
                persister.get(SCHEMA_VERSION_KEY).unwrap().unwrap().version,
                1
            );
        });
    }

    #[test]
    fn open_refuses_other_schema_versions() {
        let check = |stored: &[u8], expected_found: u32| {
            on_every_backend(|persister| {
                persister.put(SCHEMA_VERSION_KEY, stored).unwrap();
                match StateStore::open(persister) {
                    Err(StoreError::UnsupportedSchema { found, supported }) => {
                        assert_eq!((found, supported), (expected_found, SCHEMA_VERSION));
                    }
                    other => panic!("expected an unsupported schema, got {other:?}"),
                }
            });
        };
        check(b"3", 3);
        check(b"0", 0);
    }

    #[test]
    fn open_refuses_an_unreadable_schema_version() {
        on_every_backend(|persister| {
            persister.put(SCHEMA_VERSION_KEY, b"one").unwrap();
            expect_corrupt(StateStore::open(persister), SCHEMA_VERSION_KEY);
        });
    }

    #[test]
    fn framework_id_round_trips() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister).unwrap();
            assert_eq!(store.framework_id().unwrap(), None);
            store.set_framework_id("fw-1").unwrap();
            assert_eq!(store.framework_id().unwrap().as_deref(), Some("fw-1"));
            store.set_framework_id("fw-2").unwrap();
            assert_eq!(store.framework_id().unwrap().as_deref(), Some("fw-2"));
        });
    }

    #[test]
    fn create_instance_writes_instance_and_tasks_and_refuses_a_second_create() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister.clone()).unwrap();
            store
                .create_instance(&instance("cache1"), &[task("cache1", 0)])
                .unwrap();
            assert_eq!(
                store.get_instance("cache1").unwrap(),
                Some(instance("cache1"))
            );
            assert_eq!(store.load_tasks("cache1").unwrap(), vec![task("cache1", 0)]);
            assert!(persister.get("tasks/cache1/00000").unwrap().is_some());

            let mut again = instance("cache1");
            again.spec.replicas = 5;
            let mut replaced_task = task("cache1", 0);
            replaced_task.incarnation = 9;
            match store.create_instance(&again, &[replaced_task, task("cache1", 1)]) {
                Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "instances/cache1"),
                other => panic!("expected already exists, got {other:?}"),
            }
            assert_eq!(store.load_instances().unwrap(), vec![instance("cache1")]);
            assert_eq!(store.load_tasks("cache1").unwrap(), vec![task("cache1", 0)]);
        });
    }

    #[test]
    fn create_instance_is_one_batch() {
        let persister = Arc::new(MemPersister::new());
        let store = StateStore::open(persister.clone()).unwrap();
        let before = persister.write_count();
        store
            .create_instance(&instance("cache1"), &[task("cache1", 0), task("cache1", 1)])
            .unwrap();
        assert_eq!(persister.write_count(), before + 1);

        persister.fail_next_writes(1);
        assert!(matches!(
            store.create_instance(&instance("cache2"), &[task("cache2", 0)]),
            Err(StoreError::Backend { .. })
        ));
        assert_eq!(store.get_instance("cache2").unwrap(), None);
        assert!(store.load_tasks("cache2").unwrap().is_empty());
    }

    #[test]
    fn create_instance_refuses_tasks_of_another_instance() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister).unwrap();
            match store.create_instance(&instance("cache1"), &[task("cache2", 0)]) {
                Err(StoreError::InvalidRecord { key, .. }) => {
                    assert_eq!(key, "tasks/cache2/00000");
                }
                other => panic!("expected an invalid record, got {other:?}"),
            }
            assert!(store.load_instances().unwrap().is_empty());
            assert!(store.load_all_tasks().unwrap().is_empty());
        });
    }

    #[test]
    fn write_applies_puts_and_deletes_together() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister).unwrap();
            let mut changes = Changes::new();
            changes
                .put_instance(instance("a"))
                .put_task(task("a", 0))
                .put_task(task("a", 1));
            store.write(&changes).unwrap();

            let mut running = instance("a");
            running.status = InstanceStatus::Running;
            running.version = 2;
            let mut changes = Changes::new();
            changes.put_instance(running.clone()).delete_task("a", 1);
            assert_eq!(changes.len(), 2);
            store.write(&changes).unwrap();

            assert_eq!(store.get_instance("a").unwrap(), Some(running));
            assert_eq!(store.load_tasks("a").unwrap(), vec![task("a", 0)]);

            let mut changes = Changes::new();
            changes.delete_instance("a").delete_task("a", 0);
            store.write(&changes).unwrap();
            assert_eq!(store.get_instance("a").unwrap(), None);
            assert!(store.load_all_tasks().unwrap().is_empty());
        });
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let persister = Arc::new(MemPersister::new());
        let store = StateStore::open(persister.clone()).unwrap();
        store.write(Changes::new().put_task(task("a", 0))).unwrap();
        let writes = persister.write_count();

        persister.fail_next_writes(1);
        let mut changes = Changes::new();
        changes
            .put_instance(instance("a"))
            .delete_task("a", 0)
            .put_task(task("a", 1));
        assert!(store.write(&changes).is_err());
        assert_eq!(store.load_instances().unwrap(), vec![]);
        assert_eq!(store.load_all_tasks().unwrap(), vec![task("a", 0)]);

        store.write(&Changes::new()).unwrap();
        assert_eq!(persister.write_count(), writes);
    }

    #[test]
    fn loads_are_ordered_and_keep_instances_apart() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister).unwrap();
            let mut changes = Changes::new();
            for (name, ordinals) in [("ab", &[1, 0][..]), ("a", &[20_000, 2, 100_000][..])] {
                changes.put_instance(instance(name));
                for ordinal in ordinals {
                    changes.put_task(task(name, *ordinal));
                }
            }
            store.write(&changes).unwrap();

            let names: Vec<String> = store
                .load_instances()
                .unwrap()
                .into_iter()
                .map(|record| record.name)
                .collect();
            assert_eq!(names, ["a", "ab"]);
            let ordinals = |tasks: Vec<TaskRecord>| -> Vec<(String, u32)> {
                tasks
                    .into_iter()
                    .map(|task| (task.instance, task.ordinal))
                    .collect()
            };
            assert_eq!(
                ordinals(store.load_tasks("a").unwrap()),
                [("a".into(), 2), ("a".into(), 20_000), ("a".into(), 100_000)]
            );
            assert_eq!(
                ordinals(store.load_tasks("ab").unwrap()),
                [("ab".into(), 0), ("ab".into(), 1)]
            );
            assert_eq!(store.load_all_tasks().unwrap().len(), 5);
            assert_eq!(
                ordinals(store.load_all_tasks().unwrap())[..3],
                [("a".into(), 2), ("a".into(), 20_000), ("a".into(), 100_000)]
            );
        });
    }

    #[test]
    fn corrupt_records_are_errors_naming_their_key() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister.clone()).unwrap();
            store
                .create_instance(&instance("good"), &[task("good", 0)])
                .unwrap();
            persister.put("instances/bad", b"{\"name\":").unwrap();
            persister.put("tasks/bad/00000", b"\xff\xfe").unwrap();
            persister.put(FRAMEWORK_ID_KEY, b"[]").unwrap();

            expect_corrupt(store.get_instance("bad"), "instances/bad");
            expect_corrupt(store.load_instances(), "instances/bad");
            expect_corrupt(store.load_tasks("bad"), "tasks/bad/00000");
            expect_corrupt(store.load_all_tasks(), "tasks/bad/00000");
            expect_corrupt(store.framework_id(), FRAMEWORK_ID_KEY);
            assert_eq!(store.load_tasks("good").unwrap(), vec![task("good", 0)]);
        });
    }

    #[test]
    fn records_under_the_wrong_key_are_corrupt() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister.clone()).unwrap();
            let misplaced_instance = serde_json::to_vec(&instance("other")).unwrap();
            persister.put("instances/one", &misplaced_instance).unwrap();
            let misplaced_task = serde_json::to_vec(&task("one", 3)).unwrap();
            persister.put("tasks/one/00001", &misplaced_task).unwrap();

            expect_corrupt(store.get_instance("one"), "instances/one");
            expect_corrupt(store.load_instances(), "instances/one");
            expect_corrupt(store.load_tasks("one"), "tasks/one/00001");
        });
    }

    #[test]
    fn instance_names_must_be_one_key_segment() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister).unwrap();
            for name in ["", "a/b", "..", "."] {
                assert!(
                    matches!(store.get_instance(name), Err(StoreError::InvalidKey { .. })),
                    "name {name:?}"
                );
                assert!(matches!(
                    store.create_instance(&instance(name), &[]),
                    Err(StoreError::InvalidKey { .. })
                ));
                assert!(matches!(
                    store.load_tasks(name),
                    Err(StoreError::InvalidKey { .. })
                ));
            }
            assert!(store.load_instances().unwrap().is_empty());
        });
    }

    #[test]
    fn state_survives_reopening_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store =
                StateStore::open(Arc::new(RocksPersister::open(dir.path()).unwrap())).unwrap();
            store.set_framework_id("fw-1").unwrap();
            store
                .create_instance(&instance("cache1"), &[task("cache1", 0)])
                .unwrap();
        }
        let store = StateStore::open(Arc::new(RocksPersister::open(dir.path()).unwrap())).unwrap();
        assert_eq!(store.framework_id().unwrap().as_deref(), Some("fw-1"));
        assert_eq!(store.load_instances().unwrap(), vec![instance("cache1")]);
        assert_eq!(store.load_all_tasks().unwrap(), vec![task("cache1", 0)]);
    }

    #[test]
    fn clones_share_the_persister() {
        let store = StateStore::open(Arc::new(MemPersister::new())).unwrap();
        let clone = store.clone();
        clone.set_framework_id("fw-9").unwrap();
        assert_eq!(store.framework_id().unwrap().as_deref(), Some("fw-9"));
    }

    #[test]
    fn creates_merge_into_batches_with_a_check_per_instance() {
        on_every_backend(|persister| {
            let store = StateStore::open(persister).unwrap();
            let mut merged = Changes::new();
            for name in ["a", "b"] {
                merged
                    .expect_no_instance(name)
                    .put_instance(instance(name))
                    .put_task(task(name, 0));
            }
            store.write(&merged).unwrap();
            assert_eq!(store.load_instances().unwrap().len(), 2);
            // A batch creating a taken name fails whole, naming the key.
            let mut again = Changes::new();
            again.expect_no_instance("c").put_instance(instance("c"));
            let mut taken = Changes::new();
            taken.expect_no_instance("a").put_instance(instance("a"));
            again.extend(taken);
            match store.write(&again) {
                Err(StoreError::Conflict { key, .. }) => assert_eq!(key, "instances/a"),
                other => panic!("expected a conflict, got {other:?}"),
            }
            assert!(store.get_instance("c").unwrap().is_none());
        });
    }
}
