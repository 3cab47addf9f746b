//! Plain kv gets and sets that the caller carries out itself against the key-value store.
//!
//! A custom JS adapter lives on the JS thread, so a get or set that goes through the async core
//! crosses threads four times (JS → tokio → JS to call the adapter → tokio → JS). Here the
//! binding calls the adapter itself, and the core still decides everything but the call: the
//! key rules, the stored key, the version and expiry, the stored record, the per-key lock that
//! keeps plain sets ordered with compare-and-set, `update` and `setMany`, and what a record read
//! back means (ttl, shape). Anything else (`ifVersion`, a key already locked) takes the async
//! path as before.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use super::{layout, new_kv_entry, Inner};
use crate::backend::DirectKv;
use crate::clock::now_ms;
use crate::error::Result;
use crate::model::{IfVersion, KvEntry, KvSet};

/// A set the caller is to write: the record `KV_RECORD_HEAD` + the value's JSON +
/// `record_tail` at `stored_key`, then report it done. The caller holds the value's text, so
/// it never comes here (the entry's `value` is empty).
pub struct PlannedSet {
    /// Position in the batch the plan was made for.
    pub index: usize,
    pub stored_key: String,
    pub record_tail: String,
    pub entry: KvEntry,
}

pub struct SetPlan {
    /// Names the locks the planned sets hold until `sets_done`.
    pub ticket: u64,
    pub planned: Vec<PlannedSet>,
    /// Positions of the sets the caller must send through the async path (a condition, or a
    /// key locked by another operation, this batch included).
    pub deferred: Vec<usize>,
}

/// A planned set's key and its lock.
type HeldLock = (String, tokio::sync::OwnedMutexGuard<()>);

/// Locks held by planned sets, by (ticket, index), until the caller reports them done.
#[derive(Default)]
pub(super) struct Held {
    next_ticket: Mutex<u64>,
    locks: Mutex<HashMap<(u64, usize), HeldLock>>,
}

impl Inner {
    /// Plans the plain sets of a batch (`index`, set), locking each key that is free.
    pub fn direct_set_plan(&self, sets: Vec<(usize, KvSet)>) -> Result<SetPlan> {
        let ticket = {
            let mut next = self
                .held
                .next_ticket
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        let now = now_ms();
        let mut plan = SetPlan {
            ticket,
            planned: Vec::with_capacity(sets.len()),
            deferred: Vec::new(),
        };
        // Once a set of a key is deferred, so are the later sets of that key in the batch:
        // the deferred ones run in order behind its lock, so sets land in the order made.
        let mut deferred_keys = HashSet::new();
        for (index, set) in sets {
            let stored_key = layout::kv(&set.key);
            let guard = if set.if_version != IfVersion::Any || deferred_keys.contains(&stored_key) {
                None
            } else {
                self.locks.try_lock_owned(&stored_key)
            };
            let Some(guard) = guard else {
                plan.deferred.push(index);
                deferred_keys.insert(stored_key);
                continue;
            };
            let (entry, record_tail) = new_kv_entry(set, now);
            self.held
                .locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((ticket, index), (stored_key.clone(), guard));
            plan.planned.push(PlannedSet {
                index,
                stored_key,
                record_tail,
                entry,
            });
        }
        Ok(plan)
    }

    /// Releases the locks of planned sets whose write has settled (or timed out). Unknown
    /// pairs are ignored, so reporting twice is harmless.
    pub fn direct_sets_done(&self, ticket: u64, indexes: impl IntoIterator<Item = usize>) {
        let released: Vec<_> = {
            let mut held = self.held.locks.lock().unwrap_or_else(|e| e.into_inner());
            indexes
                .into_iter()
                .filter_map(|i| held.remove(&(ticket, i)))
                .collect()
        };
        for (key, guard) in released {
            self.locks.release(&key, guard);
        }
    }

    /// The value of a kv record the caller read back, or None when it has expired.
    pub fn direct_value(&self, stored_key: &str, record: &str) -> Result<Option<String>> {
        Ok(Inner::kv_entry("", stored_key, record, now_ms())?.map(|e| e.value))
    }
}

impl DirectKv for Inner {
    fn timeout(&self) -> Duration {
        self.store.call_timeout().unwrap_or_default()
    }
    fn stored_key(&self, key: &str) -> String {
        layout::kv(key)
    }
    fn plan_sets(&self, sets: Vec<(usize, KvSet)>) -> Result<SetPlan> {
        self.direct_set_plan(sets)
    }
    fn sets_done(&self, ticket: u64, indexes: &[usize]) {
        self.direct_sets_done(ticket, indexes.iter().copied())
    }
    fn value(&self, stored_key: &str, record: &str) -> Result<Option<String>> {
        self.direct_value(stored_key, record)
    }
}

impl super::KeyLocks {
    /// The key's lock if nobody holds or waits for it, without waiting.
    pub(super) fn try_lock_owned(&self, key: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let mutex = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        match mutex.clone().try_lock_owned() {
            Ok(guard) => Some(guard),
            Err(_) => {
                // Someone else holds it: let go of our reference the way a guard would.
                drop(mutex);
                self.forget_if_unused(key);
                None
            }
        }
    }

    /// Releases a guard from `try_lock_owned`, dropping the map entry when nobody else uses it.
    pub(super) fn release(&self, key: &str, guard: tokio::sync::OwnedMutexGuard<()>) {
        drop(guard);
        self.forget_if_unused(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::{KeyValue, KeyspaceBackend, MemoryKeyValue, Stored, KV_RECORD_HEAD};
    use std::sync::Arc;

    fn plain(key: &str, value: &str) -> KvSet {
        KvSet {
            key: key.to_string(),
            value: value.to_string(),
            ttl_ms: None,
            if_version: IfVersion::Any,
        }
    }

    #[tokio::test]
    async fn planned_sets_hold_their_key_until_done_and_defer_what_they_cannot_take() {
        let mem = Arc::new(MemoryKeyValue::default());
        let backend = KeyspaceBackend::new(mem.clone());
        let conditional = KvSet {
            if_version: IfVersion::Absent,
            ..plain("c", "3")
        };
        let plan = backend
            .direct_set_plan(vec![
                (0, plain("a", "{\"x\":1}")),
                (1, plain("a", "2")),
                (2, conditional),
                (
                    3,
                    KvSet {
                        ttl_ms: Some(1000),
                        ..plain("b.c/d", "true")
                    },
                ),
                (4, plain("c", "4")),
            ])
            .unwrap();
        // The repeated key, the conditional set and the set of its key made after it go the
        // async way (in order).
        assert_eq!(plan.deferred, vec![1, 2, 4]);
        let keys: Vec<&str> = plan.planned.iter().map(|p| p.stored_key.as_str()).collect();
        assert_eq!(keys, vec!["kv/a", "kv/b.-c.~d"]);
        // The record around the value the caller holds (`true` here).
        let record = |p: &PlannedSet, value: &str| [KV_RECORD_HEAD, value, &p.record_tail].concat();
        let rec: serde_json::Value =
            serde_json::from_str(&record(&plan.planned[1], "true")).unwrap();
        assert_eq!(rec["value"], serde_json::json!(true));
        assert_eq!(
            rec["version"],
            serde_json::json!(plan.planned[1].entry.version)
        );
        assert!(rec["expiresAt"].as_i64().unwrap() > now_ms());

        // While planned, a set of the same key through the async path waits for the lock.
        let inner = backend.inner.clone();
        let blocked = tokio::spawn({
            let backend = KeyspaceBackend {
                inner: inner.clone(),
            };
            async move {
                use crate::backend::Backend;
                backend.kv_set(plain("a", "\"later\"")).await.unwrap()
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !blocked.is_finished(),
            "the async set waits for the planned one"
        );
        for (p, value) in plan.planned.iter().zip(["{\"x\":1}", "true"]) {
            mem.put(&p.stored_key, Stored::Json(record(p, value)))
                .await
                .unwrap();
        }
        backend.direct_sets_done(plan.ticket, [0, 3]);
        backend.direct_sets_done(plan.ticket, [0, 3]);
        let later = blocked.await.unwrap();
        assert_eq!(later.value, "\"later\"");
        // Every lock entry is gone once nobody holds it.
        assert!(backend.locks.locks.lock().unwrap().is_empty());

        let Some(Stored::Json(stored)) = mem.get("kv/a").await.unwrap() else {
            panic!("kv/a missing")
        };
        let value = backend.direct_value("kv/a", &stored).unwrap().unwrap();
        assert_eq!(value, "\"later\"");
        let expired = "{\"value\":1,\"version\":\"v\",\"expiresAt\":1}";
        assert!(backend.direct_value("kv/a", expired).unwrap().is_none());
        assert!(backend.direct_value("kv/a", "[1]").is_err());
    }
}
