//! Idempotent creates: the first answer to a create, kept so that a repeat returns it.
//!
//! A create is keyed by its `Idempotency-Key` header, or by the instance name when it
//! has none. The entry holds a fingerprint of the request (the name and the validated
//! spec) and the answer (status and body). A repeat with the same fingerprint gets the
//! same answer; one with another fingerprint is a conflict. Entries expire after
//! [`IDEMPOTENCY_TTL`] and the oldest go first past [`MAX_ENTRIES`], so memory stays
//! bounded. The cache is in memory: after a restart a repeated create finds the
//! instance in the store, and the route compares specs instead.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most answers remembered.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest `Idempotency-Key` accepted.
pub const MAX_KEY_LEN: usize = 256;

/// What a create is remembered by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdempotencyKey {
    /// The client's `Idempotency-Key` header.
    Header(String),
    /// The instance name (no header given).
    Name(String),
}

/// The first answer to a create.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    /// HTTP status of the first answer.
    pub status: u16,
    /// Its body.
    pub body: bytes::Bytes,
    /// Its `Location` header.
    pub location: Option<String>,
    /// The instance it created.
    pub instance: String,
}

/// What to do with an incoming create.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Nothing remembered: carry it out.
    New,
    /// Same request as before: answer what was answered.
    Replay(StoredAnswer),
    /// Same key, other request.
    Conflict,
}

#[derive(Debug, Clone)]
struct Entry {
    fingerprint: String,
    answer: StoredAnswer,
    stored_at: Instant,
}

/// The remembered answers. Plain data; the server keeps it behind a mutex.
#[derive(Debug, Default)]
pub struct IdempotencyCache {
    entries: BTreeMap<IdempotencyKey, Entry>,
    /// Keys in insertion order, for eviction; may hold keys already removed.
    order: VecDeque<(Instant, IdempotencyKey)>,
}

impl IdempotencyCache {
    /// What to do with a create of `fingerprint` under `key` at `now`.
    pub fn lookup(&mut self, key: &IdempotencyKey, fingerprint: &str, now: Instant) -> Lookup {
        self.expire(now);
        match self.entries.get(key) {
            None => Lookup::New,
            Some(entry) if entry.fingerprint == fingerprint => Lookup::Replay(entry.answer.clone()),
            Some(_) => Lookup::Conflict,
        }
    }

    /// Remembers the answer to a create.
    pub fn store(
        &mut self,
        key: IdempotencyKey,
        fingerprint: String,
        answer: StoredAnswer,
        now: Instant,
    ) {
        self.expire(now);
        while self.entries.len() >= MAX_ENTRIES {
            match self.order.pop_front() {
                Some((stored_at, old)) => {
                    if self
                        .entries
                        .get(&old)
                        .is_some_and(|e| e.stored_at == stored_at)
                    {
                        self.entries.remove(&old);
                    }
                }
                None => break,
            }
        }
        self.order.push_back((now, key.clone()));
        self.entries.insert(
            key,
            Entry {
                fingerprint,
                answer,
                stored_at: now,
            },
        );
    }

    /// Forgets every answer about `instance` (it was deleted: a later create of the
    /// same name is a new instance).
    pub fn forget_instance(&mut self, instance: &str) {
        self.entries.retain(|_, e| e.answer.instance != instance);
    }

    /// Number of remembered answers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((stored_at, _)) = self.order.front() {
            if now.duration_since(*stored_at) < IDEMPOTENCY_TTL {
                break;
            }
            if let Some((stored_at, key)) = self.order.pop_front() {
                if self
                    .entries
                    .get(&key)
                    .is_some_and(|e| e.stored_at == stored_at)
                {
                    self.entries.remove(&key);
                }
            }
        }
    }
}

/// Checks an `Idempotency-Key` header value: 1 to 256 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(instance: &str, body: &str) -> StoredAnswer {
        StoredAnswer {
            status: 202,
            body: bytes::Bytes::from(body.to_string()),
            location: Some(format!("/v1/instances/{instance}")),
            instance: instance.into(),
        }
    }

    #[test]
    fn a_repeat_replays_and_another_body_conflicts() {
        let mut cache = IdempotencyCache::default();
        let now = Instant::now();
        let key = IdempotencyKey::Header("k1".into());
        assert_eq!(cache.lookup(&key, "f1", now), Lookup::New);
        cache.store(key.clone(), "f1".into(), answer("a", "first"), now);
        assert_eq!(
            cache.lookup(&key, "f1", now),
            Lookup::Replay(answer("a", "first"))
        );
        assert_eq!(cache.lookup(&key, "f2", now), Lookup::Conflict);
        let by_name = IdempotencyKey::Name("a".into());
        assert_eq!(cache.lookup(&by_name, "f1", now), Lookup::New);
    }

    #[test]
    fn entries_expire_and_the_cache_is_bounded() {
        let mut cache = IdempotencyCache::default();
        let start = Instant::now();
        let key = IdempotencyKey::Header("k".into());
        cache.store(key.clone(), "f".into(), answer("a", "x"), start);
        let later = start + IDEMPOTENCY_TTL + Duration::from_secs(1);
        assert_eq!(cache.lookup(&key, "f", later), Lookup::New);
        assert!(cache.is_empty());
        for i in 0..MAX_ENTRIES + 10 {
            cache.store(
                IdempotencyKey::Header(format!("k{i}")),
                "f".into(),
                answer("a", "x"),
                later,
            );
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        // The oldest went first.
        assert_eq!(
            cache.lookup(&IdempotencyKey::Header("k0".into()), "f", later),
            Lookup::New
        );
    }

    #[test]
    fn a_deleted_instance_is_forgotten() {
        let mut cache = IdempotencyCache::default();
        let now = Instant::now();
        cache.store(
            IdempotencyKey::Name("a".into()),
            "f".into(),
            answer("a", "x"),
            now,
        );
        cache.store(
            IdempotencyKey::Header("k".into()),
            "g".into(),
            answer("b", "y"),
            now,
        );
        cache.forget_instance("a");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn keys_are_checked() {
        assert!(valid_key("3f2a-11"));
        assert!(!valid_key(""));
        assert!(!valid_key("a b"));
        assert!(!valid_key(&"a".repeat(257)));
        assert!(!valid_key("é"));
    }
}
