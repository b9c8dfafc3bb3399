//! Schema migrations: ordered steps from one layout version to the next, run when
//! the store is opened.
//!
//! Each step `v → v+1` reads what it needs, then writes its changes and the new
//! `schema/version` as one atomic batch that also checks the version key (and every
//! rewritten key) is unchanged since it was read. A crash between two steps leaves
//! the store at a consistent intermediate version, and the next open resumes there.
//!
//! Steps work on the stored JSON, never on today's record types: a migration must
//! read the layout that was written, whatever the structs look like now.
//!
//! | step | change |
//! |---|---|
//! | 1 → 2 | instance specs gain `volume` and `placement`, task records gain `volume`: written out with their defaults and `schema: 2` |

use serde_json::Value;

use crate::{Batch, Persister, StoreError};

/// One step from layout `from` to `from + 1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// The layout version this step reads.
    pub from: u32,
    /// What the step changes, for the log.
    pub description: &'static str,
    /// Adds the step's writes (and checks) to the batch.
    pub apply: fn(&dyn Persister, &mut Batch) -> Result<(), StoreError>,
}

/// Every step, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    from: 1,
    description: "volume and placement fields written out",
    apply: v1_to_v2,
}];

/// Migrates a store at version `found` to `target` with `steps`, one atomic batch per
/// step; `version_key` holds the version. Returns the version reached (`target`).
pub(crate) fn migrate(
    persister: &dyn Persister,
    version_key: &str,
    found: u32,
    target: u32,
    steps: &[Migration],
) -> Result<u32, StoreError> {
    let mut version = found;
    while version < target {
        let Some(step) = steps.iter().find(|s| s.from == version) else {
            return Err(StoreError::UnsupportedSchema {
                found: version,
                supported: target,
            });
        };
        let stored = persister.get(version_key)?;
        let mut batch = Batch::new();
        batch.check(version_key, stored.map(|s| s.version));
        (step.apply)(persister, &mut batch)?;
        let next = version + 1;
        batch.put(version_key, next.to_string().into_bytes());
        persister.apply(&batch)?;
        tracing::info!(
            from = version,
            to = next,
            step = step.description,
            "migrated the store"
        );
        version = next;
    }
    Ok(version)
}

/// 1 → 2: writes the new fields out with their defaults and marks every record
/// `schema: 2`.
fn v1_to_v2(persister: &dyn Persister, batch: &mut Batch) -> Result<(), StoreError> {
    rewrite(persister, batch, "instances/", |record| {
        if let Some(spec) = record.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("volume").or_insert(Value::Null);
            spec.entry("placement")
                .or_insert_with(|| serde_json::json!({ "max_per_agent": null, "constraints": [] }));
        }
    })?;
    rewrite(persister, batch, "tasks/", |record| {
        record.entry("volume").or_insert(Value::Null);
    })?;
    Ok(())
}

/// Rewrites every JSON object under `prefix` with `change` and `schema: 2`, checking
/// each key's version so that a concurrent writer fails the step.
fn rewrite(
    persister: &dyn Persister,
    batch: &mut Batch,
    prefix: &str,
    change: impl Fn(&mut serde_json::Map<String, Value>),
) -> Result<(), StoreError> {
    for (key, stored) in persister.scan_prefix(prefix)? {
        let mut value: Value =
            serde_json::from_slice(&stored.value).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        let Some(record) = value.as_object_mut() else {
            return Err(StoreError::Corrupt {
                key,
                reason: "not a JSON object".to_string(),
            });
        };
        change(record);
        record.insert("schema".to_string(), Value::from(2));
        let bytes = serde_json::to_vec(&value).map_err(|e| StoreError::Encode {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        batch
            .check(key.clone(), Some(stored.version))
            .put(key, bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{InstanceRecord, TaskRecord, SCHEMA_VERSION};
    use crate::{MemPersister, RocksPersister, StateStore};
    use std::sync::Arc;

    /// Instance and task records exactly as version 1 wrote them.
    const V1_INSTANCE: &str = r#"{"schema":1,"name":"cache1","spec":{"image":"redis:7","replicas":1,
        "resources":{"cpus":0.5,"mem":256.0,"disk":64.0},"master_args":["--port","{port}"],
        "replica_args":[],"env":{}},"status":"RUNNING","status_message":null,"version":4,
        "created_at_ms":1700000000000}"#;
    const V1_TASK: &str = r#"{"schema":1,"instance":"cache1","ordinal":0,"role":"master",
        "incarnation":2,"task_id":"cache1-0.2","agent_id":"a1","hostname":"h1","port":31000,
        "state":"TASK_RUNNING","message":null,"healthy":true,"trace_parent":null,"version":7}"#;

    fn v1_store(persister: &dyn Persister) {
        persister.put("schema/version", b"1").unwrap();
        persister
            .put("framework/id", br#"{"schema":1,"framework_id":"fw-1"}"#)
            .unwrap();
        persister
            .put("instances/cache1", V1_INSTANCE.as_bytes())
            .unwrap();
        persister
            .put("tasks/cache1/00000", V1_TASK.as_bytes())
            .unwrap();
    }

    #[test]
    fn a_version_1_store_is_migrated_at_open() {
        let check = |persister: Arc<dyn Persister>| {
            v1_store(persister.as_ref());
            let store = StateStore::open(persister.clone()).unwrap();
            let version = persister.get("schema/version").unwrap().unwrap();
            assert_eq!(version.value, SCHEMA_VERSION.to_string().as_bytes());
            let instances: Vec<InstanceRecord> = store.load_instances().unwrap();
            assert_eq!(instances.len(), 1);
            assert_eq!(instances[0].schema, 2);
            assert_eq!(instances[0].version, 4);
            assert_eq!(instances[0].spec.volume, None);
            assert!(instances[0].spec.placement.constraints.is_empty());
            let tasks: Vec<TaskRecord> = store.load_all_tasks().unwrap();
            assert_eq!(tasks[0].schema, 2);
            assert_eq!(tasks[0].task_id, "cache1-0.2");
            assert_eq!(tasks[0].volume, None);
            assert_eq!(store.framework_id().unwrap().as_deref(), Some("fw-1"));
            // The new fields are really in the stored JSON.
            let raw = persister.get("tasks/cache1/00000").unwrap().unwrap();
            let json: Value = serde_json::from_slice(&raw.value).unwrap();
            assert!(json.as_object().unwrap().contains_key("volume"));
            // A second open has nothing to do.
            StateStore::open(persister.clone()).unwrap();
            assert_eq!(persister.get("schema/version").unwrap().unwrap().version, 2);
        };
        check(Arc::new(MemPersister::new()));
        let dir = tempfile::tempdir().unwrap();
        check(Arc::new(RocksPersister::open(dir.path()).unwrap()));
    }

    fn mark(tag: &'static str) -> fn(&dyn Persister, &mut Batch) -> Result<(), StoreError> {
        match tag {
            "a" => |_, batch| {
                batch.put("steps/a", b"done".to_vec());
                Ok(())
            },
            "b" => |_, batch| {
                batch.put("steps/b", b"done".to_vec());
                Ok(())
            },
            _ => |_, _| {
                Err(StoreError::Corrupt {
                    key: "steps/c".into(),
                    reason: "step c fails".into(),
                })
            },
        }
    }

    #[test]
    fn steps_run_in_order_each_atomically_with_its_version() {
        let steps = [
            Migration {
                from: 2,
                description: "b",
                apply: mark("b"),
            },
            Migration {
                from: 1,
                description: "a",
                apply: mark("a"),
            },
            Migration {
                from: 3,
                description: "c",
                apply: mark("c"),
            },
        ];
        let persister = MemPersister::new();
        persister.put("v", b"1").unwrap();
        assert_eq!(migrate(&persister, "v", 1, 3, &steps).unwrap(), 3);
        assert!(persister.get("steps/a").unwrap().is_some());
        assert!(persister.get("steps/b").unwrap().is_some());
        assert_eq!(persister.get("v").unwrap().unwrap().value, b"3");

        // A failing step leaves the store at the last completed version.
        assert!(migrate(&persister, "v", 3, 4, &steps).is_err());
        assert_eq!(persister.get("v").unwrap().unwrap().value, b"3");

        // A gap in the steps is refused without writing anything.
        let fresh = MemPersister::new();
        fresh.put("v", b"0").unwrap();
        assert!(matches!(
            migrate(&fresh, "v", 0, 2, &steps),
            Err(StoreError::UnsupportedSchema {
                found: 0,
                supported: 2
            })
        ));
        assert_eq!(fresh.get("v").unwrap().unwrap().value, b"0");
    }

    #[test]
    fn a_concurrent_write_fails_the_step() {
        // The version key changed between the read and the batch: the step's
        // check refuses it, so a step never applies on top of another writer.
        let persister = MemPersister::new();
        persister.put("v", b"1").unwrap();
        let steps = [Migration {
            from: 1,
            description: "bumps the version behind our back",
            apply: |persister, batch| {
                persister.put("v", b"1")?;
                batch.put("steps/x", b"done".to_vec());
                Ok(())
            },
        }];
        assert!(matches!(
            migrate(&persister, "v", 1, 2, &steps),
            Err(StoreError::Conflict { .. })
        ));
        assert!(persister.get("steps/x").unwrap().is_none());
    }
}
