//! The generic backend: every namespace of a store built on four calls (`KeyValue`: get, put,
//! delete, list by prefix), the `PersistAdapter` contract. JavaScript custom adapters and S3
//! implement `KeyValue`; SQLite, Postgres and P2P implement `Backend` natively instead.
//!
//! What a four-call store cannot give, this layer gives within one process: per-key locks make
//! compare-and-set, `update` and event seq allocation atomic against other calls of the same
//! store object. A multi-event append becomes visible all at once (through the stream head,
//! written last). `setMany` is all or nothing in its outcome: on a failure every key is put back
//! as it was once all its writes have settled (and the error says so if some could not be), but
//! a `get` made while it runs may see some of its keys already written: four calls give no
//! snapshot to read from. Several processes sharing one custom adapter get none of that from
//! us: see the README.

pub mod direct;
pub mod layout;
mod memory;

pub use layout::{escape, unescape};
pub use memory::MemoryKeyValue;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::backend::{Backend, BlobReader, BlobUpload};
use crate::chunks::{locate, Chunker};
use crate::clock::{iso8601, new_id, new_version, now_ms};
use crate::error::{PersistError, Result};
use crate::model::*;
use crate::query::{compare_docs, FieldPath, Filter, SortKey};
use crate::records::merge_patch;
use crate::versions::{check_kv, check_record};

/// A value in a `KeyValue` store: JSON text, or bytes (blob chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Json(String),
    Bytes(Vec<u8>),
}

/// The four calls of `PersistAdapter`.
#[async_trait]
pub trait KeyValue: Send + Sync + 'static {
    /// The store's `adapter` name (`"custom"`, `"s3"`).
    fn kind(&self) -> &'static str;
    /// Some(the bound on each call) when the binding may call this store itself for plain kv
    /// gets and sets (a custom JS adapter, which lives on the JS thread: see `direct`).
    fn call_timeout(&self) -> Option<Duration> {
        None
    }
    async fn get(&self, key: &str) -> Result<Option<Stored>>;
    async fn put(&self, key: &str, value: Stored) -> Result<()>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in pages, in any order.
    async fn list(&self, prefix: &str) -> Result<Box<dyn KeyLister>>;
    /// Releases what the store holds; the default has nothing to release.
    async fn close(&self) -> Result<()> {
        Ok(())
    }

    // ---- optional capabilities (provided defaults keep the four-call contract whole) ----

    /// True when `put_if`, `get_with_etag` and `delete_if` are atomic against every other
    /// client of the same store (S3 conditional requests). The keyspace then keeps versions,
    /// `expectedSeq` and event seqs correct across processes; otherwise only its in-process
    /// per-key locks protect them, and the defaults below are what it falls back to.
    fn atomic_conditions(&self) -> bool {
        false
    }

    /// The value and an opaque tag that changes whenever the value does. The default derives
    /// the tag from the content.
    async fn get_with_etag(&self, key: &str) -> Result<Option<(Stored, String)>> {
        Ok(self.get(key).await?.map(|v| {
            let tag = content_etag(&v);
            (v, tag)
        }))
    }

    /// Writes only if `condition` holds; `Ok(None)` when it does not, else the new tag. The
    /// default reads, compares and writes: atomic only under the keyspace's per-key lock.
    async fn put_if(
        &self,
        key: &str,
        value: Stored,
        condition: Condition,
    ) -> Result<Option<String>> {
        let current = self.get(key).await?;
        let holds = match (&condition, &current) {
            (Condition::Absent, None) => true,
            (Condition::Etag(tag), Some(v)) => content_etag(v) == *tag,
            _ => false,
        };
        if !holds {
            return Ok(None);
        }
        let tag = content_etag(&value);
        self.put(key, value).await?;
        Ok(Some(tag))
    }

    /// Deletes only if the value's tag is still `etag`; false when it is not (or absent).
    async fn delete_if(&self, key: &str, etag: &str) -> Result<bool> {
        match self.get(key).await? {
            Some(v) if content_etag(&v) == etag => {
                self.delete(key).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Ordered listing: keys under `prefix` in ascending byte order, strictly after
    /// `start_after` when given, with their values only when `with_values`. `page_hint` is
    /// how many keys the caller expects to need. None when the store cannot list in order
    /// (the keyspace then scans `list` and sorts).
    async fn list_ordered(
        &self,
        _prefix: &str,
        _start_after: Option<&str>,
        _with_values: bool,
        _page_hint: usize,
    ) -> Result<Option<Box<dyn OrderedLister>>> {
        Ok(None)
    }

    /// Blobs kept natively (S3 objects) instead of as chunk entries.
    fn native_blobs(&self) -> Option<&dyn NativeBlobs> {
        None
    }
}

/// The condition of a `put_if`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Create only: the key must not exist (`If-None-Match: *`).
    Absent,
    /// Compare and set: the key's current tag must be this (`If-Match`).
    Etag(String),
}

/// The default tag of a value: a hash of its content (stable within one build).
pub fn content_etag(value: &Stored) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    match value {
        Stored::Json(j) => (0u8, j).hash(&mut h),
        Stored::Bytes(b) => (1u8, b).hash(&mut h),
    }
    format!("{:016x}", h.finish())
}

/// Pages of an ordered listing; `None` when done. Values are None unless asked for.
#[async_trait]
pub trait OrderedLister: Send {
    async fn next_page(&mut self) -> Result<Option<Vec<(String, Option<Stored>)>>>;
}

/// Blob operations a `KeyValue` implements natively; the keyspace delegates to them.
#[async_trait]
pub trait NativeBlobs: Send + Sync {
    async fn blob_put(&self, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>>;
    async fn blob_head(&self, key: String) -> Result<Option<BlobInfo>>;
    async fn blob_read(&self, key: String, range: ByteRange)
        -> Result<Option<Box<dyn BlobReader>>>;
    async fn blob_delete(&self, key: String) -> Result<bool>;
    async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>>;
}

/// Pages of a `list`; `None` when done.
#[async_trait]
pub trait KeyLister: Send {
    async fn next_page(&mut self) -> Result<Option<Vec<(String, Stored)>>>;
}

/// Bytes per chunk entry of a blob body.
pub const CHUNK: usize = 256 * 1024;
/// How often `ev_wait` looks at a stream head for appends made by other store objects.
/// Adapter calls of one operation (setMany, dropping a blob body) kept in flight at once.
const IO_CONCURRENCY: usize = 64;
const EVENT_POLL: Duration = Duration::from_millis(250);

fn corrupt(key: &str, what: impl std::fmt::Display) -> PersistError {
    PersistError::new(
        crate::error::ErrorCode::Adapter,
        format!("the adapter returned an unreadable value for {key:?}: {what}"),
    )
}

fn json_of(key: &str, stored: Stored) -> Result<String> {
    match stored {
        Stored::Json(json) => Ok(json),
        Stored::Bytes(_) => Err(corrupt(key, "bytes where JSON was stored")),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| corrupt(key, e))
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| PersistError::internal(e.to_string()))
}

#[derive(Serialize, Deserialize)]
struct KvRecord {
    value: Box<RawValue>,
    version: String,
    #[serde(rename = "expiresAt", skip_serializing_if = "Option::is_none", default)]
    expires_at: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct DocRecord {
    id: String,
    version: u64,
    #[serde(rename = "createdAt")]
    created_at: String,
    #[serde(rename = "updatedAt")]
    updated_at: String,
    data: Box<RawValue>,
}

impl DocRecord {
    fn into_doc(self) -> Doc {
        Doc {
            id: self.id,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            data: self.data.get().to_string(),
        }
    }
    fn from_doc(doc: &Doc) -> Result<Self> {
        Ok(DocRecord {
            id: doc.id.clone(),
            version: doc.version,
            created_at: doc.created_at.clone(),
            updated_at: doc.updated_at.clone(),
            data: raw(&doc.data)?,
        })
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct BlobRecord {
    size: u64,
    #[serde(rename = "contentType")]
    content_type: String,
    etag: String,
    metadata: std::collections::BTreeMap<String, String>,
    #[serde(rename = "updatedAt")]
    updated_at: String,
    body: String,
    chunks: u64,
}

#[derive(Serialize, Deserialize, Clone)]
struct EventRecord {
    #[serde(rename = "type")]
    kind: String,
    data: Box<RawValue>,
    time: String,
    id: String,
    /// On stores with atomic conditions, the first event of a multi-event append carries the
    /// others: its create-only write claims the whole seq range at once (see `ev_append`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    rest: Option<Vec<EventBody>>,
    /// On the later events of such an append: the seq of the batch's first event.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    first: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone)]
struct EventBody {
    #[serde(rename = "type")]
    kind: String,
    data: Box<RawValue>,
    time: String,
    id: String,
}

impl EventRecord {
    fn stored(self, stream: &str, seq: u64) -> StoredEvent {
        StoredEvent {
            stream: stream.to_string(),
            seq,
            kind: self.kind,
            data: self.data.get().to_string(),
            time: self.time,
            id: self.id,
        }
    }
    /// The batch member at `seq`, where `self` is the batch's first event at `start`.
    fn member(&self, start: u64, seq: u64) -> Option<EventRecord> {
        if seq == start {
            return Some(EventRecord {
                rest: None,
                ..self.clone()
            });
        }
        let body = self
            .rest
            .as_ref()?
            .get(usize::try_from(seq.checked_sub(start + 1)?).ok()?)?;
        Some(EventRecord {
            kind: body.kind.clone(),
            data: body.data.clone(),
            time: body.time.clone(),
            id: body.id.clone(),
            rest: None,
            first: Some(start),
        })
    }
    fn batch_last(&self, start: u64) -> u64 {
        start + self.rest.as_ref().map_or(0, |r| r.len() as u64)
    }
}

/// What a conditional write compares against: the key was absent, or had this tag; or nothing
/// (stores without atomic conditions, where the per-key lock is the whole protection).
enum Seen {
    Unchecked,
    Absent,
    Tag(String),
}

#[derive(Serialize, Deserialize)]
struct StreamHead {
    #[serde(rename = "lastSeq")]
    last_seq: u64,
}

/// What a set writes: its entry (a new version, the expiry of its ttl from `now`) and the
/// stored record (JSON text).
fn new_kv_record(set: KvSet, now: i64) -> Result<(KvEntry, String)> {
    // Checked, not copied: the record is built around the value's text.
    serde_json::from_str::<&RawValue>(&set.value)
        .map_err(|e| PersistError::invalid_value(format!("not valid JSON: {e}")))?;
    let (entry, tail) = new_kv_entry(set, now);
    let record = [KV_RECORD_HEAD, &entry.value, &tail].concat();
    Ok((entry, record))
}

/// The text of a stored kv record before its value: a record is `KV_RECORD_HEAD`, the value's
/// JSON, then the tail of [`new_kv_entry`] (the JSON of [`KvRecord`], built around the value
/// so that a caller holding the value's text need not send it here: the direct path).
pub(crate) const KV_RECORD_HEAD: &str = "{\"value\":";

/// A new version and expiry for a set, and the record's text after the value.
pub(crate) fn new_kv_entry(set: KvSet, now: i64) -> (KvEntry, String) {
    let entry = KvEntry {
        key: set.key,
        value: set.value,
        version: new_version(),
        expires_at: set.ttl_ms.map(|ttl| now.saturating_add(ttl as i64)),
    };
    let mut tail = String::with_capacity(64);
    tail.push_str(",\"version\":");
    tail.push_str(&serde_json::to_string(&entry.version).unwrap_or_default());
    if let Some(at) = entry.expires_at {
        tail.push_str(",\"expiresAt\":");
        tail.push_str(&at.to_string());
    }
    tail.push('}');
    (entry, tail)
}

fn raw(json: &str) -> Result<Box<RawValue>> {
    RawValue::from_string(json.to_string())
        .map_err(|e| PersistError::invalid_value(format!("not valid JSON: {e}")))
}

/// In-process locks by key. An entry lives while someone holds or waits for it.
#[derive(Default)]
struct KeyLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        self.locks.forget_if_unused(&self.key);
    }
}

impl KeyLocks {
    /// Drops the key's entry once nobody holds or waits for its lock (the map's own reference
    /// is the last one).
    fn forget_if_unused(&self, key: &str) {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(key);
        }
    }

    async fn lock(&self, key: String) -> KeyGuard<'_> {
        let mutex = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            locks: self,
            key,
            guard: Some(guard),
        }
    }
}

/// Keeps the `limit` smallest items seen under `cmp`, in order, without holding the rest.
struct TopK<T, F: Fn(&T, &T) -> Ordering> {
    items: Vec<T>,
    limit: usize,
    cmp: F,
}

impl<T, F: Fn(&T, &T) -> Ordering> TopK<T, F> {
    fn new(limit: usize, cmp: F) -> Self {
        TopK {
            items: Vec::new(),
            limit,
            cmp,
        }
    }
    fn offer(&mut self, item: T) {
        if self.limit == 0 {
            return;
        }
        if self.items.len() == self.limit
            && (self.cmp)(&item, self.items.last().expect("non-empty")) != Ordering::Less
        {
            return;
        }
        let at = self
            .items
            .partition_point(|x| (self.cmp)(x, &item) != Ordering::Greater);
        self.items.insert(at, item);
        self.items.truncate(self.limit);
    }
}

pub struct KeyspaceBackend {
    inner: Arc<Inner>,
}

/// The backend's state; blob uploads hold it too, since they outlive the `blob_put` call.
pub struct Inner {
    store: Arc<dyn KeyValue>,
    locks: KeyLocks,
    changed: tokio::sync::watch::Sender<u64>,
    /// Key locks held by sets the binding performs itself (`direct`).
    held: direct::Held,
}

impl std::ops::Deref for KeyspaceBackend {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl KeyspaceBackend {
    pub fn new(store: Arc<dyn KeyValue>) -> Self {
        let inner = Inner {
            store,
            locks: KeyLocks::default(),
            changed: tokio::sync::watch::channel(0).0,
            held: Default::default(),
        };
        KeyspaceBackend {
            inner: Arc::new(inner),
        }
    }
}

impl Inner {
    async fn get_json(&self, key: &str) -> Result<Option<String>> {
        self.store
            .get(key)
            .await?
            .map(|s| json_of(key, s))
            .transpose()
    }

    async fn put_json(&self, key: &str, json: String) -> Result<()> {
        self.store.put(key, Stored::Json(json)).await
    }

    /// Reads JSON and what a later `put_checked` compares against.
    async fn get_checked(&self, key: &str) -> Result<(Option<String>, Seen)> {
        if !self.store.atomic_conditions() {
            return Ok((self.get_json(key).await?, Seen::Unchecked));
        }
        Ok(match self.store.get_with_etag(key).await? {
            Some((value, tag)) => (Some(json_of(key, value)?), Seen::Tag(tag)),
            None => (None, Seen::Absent),
        })
    }

    /// Writes if the key is still as `seen`; false when another client changed it meanwhile.
    async fn put_checked(&self, key: &str, json: String, seen: Seen) -> Result<bool> {
        let value = Stored::Json(json);
        let condition = match seen {
            Seen::Unchecked => return self.store.put(key, value).await.map(|_| true),
            Seen::Absent => Condition::Absent,
            Seen::Tag(tag) => Condition::Etag(tag),
        };
        Ok(self.store.put_if(key, value, condition).await?.is_some())
    }

    /// Deletes if the key is still as `seen` (when given); false when it changed meanwhile.
    async fn delete_checked(&self, key: &str, seen: Seen) -> Result<bool> {
        match seen {
            Seen::Tag(tag) => self.store.delete_if(key, &tag).await,
            _ => self.store.delete(key).await.map(|_| true),
        }
    }

    fn kv_entry(key: &str, stored_key: &str, json: &str, now: i64) -> Result<Option<KvEntry>> {
        let rec: KvRecord = parse(stored_key, json)?;
        if rec.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        Ok(Some(KvEntry {
            key: key.to_string(),
            value: rec.value.get().to_string(),
            version: rec.version,
            expires_at: rec.expires_at,
        }))
    }

    async fn kv_read(&self, key: &str, now: i64) -> Result<(Option<KvEntry>, Seen)> {
        let stored_key = layout::kv(key);
        let (json, seen) = self.get_checked(&stored_key).await?;
        let entry = match json {
            Some(json) => Self::kv_entry(key, &stored_key, &json, now)?,
            None => None,
        };
        Ok((entry, seen))
    }

    async fn doc_read(&self, coll: &str, id: &str) -> Result<(Option<Doc>, Seen)> {
        let key = layout::record(coll, id);
        let (json, seen) = self.get_checked(&key).await?;
        let doc = match json {
            Some(json) => Some(parse::<DocRecord>(&key, &json)?.into_doc()),
            None => None,
        };
        Ok((doc, seen))
    }

    async fn write_doc_checked(&self, coll: &str, doc: &Doc, seen: Seen) -> Result<bool> {
        self.put_checked(
            &layout::record(coll, &doc.id),
            to_json(&DocRecord::from_doc(doc)?)?,
            seen,
        )
        .await
    }

    async fn event_at(&self, stream: &str, seq: u64) -> Result<Option<EventRecord>> {
        let key = layout::event(stream, seq);
        match self.get_json(&key).await? {
            Some(json) => Ok(Some(parse(&key, &json)?)),
            None => Ok(None),
        }
    }

    /// The event at `seq` on a store with atomic conditions, also when it belongs to a batch
    /// whose later entries are not written out yet (its first entry holds them all).
    async fn event_member(&self, stream: &str, seq: u64) -> Result<Option<EventRecord>> {
        if let Some(rec) = self.event_at(stream, seq).await? {
            return Ok(Some(rec));
        }
        if seq <= 1 {
            return Ok(None);
        }
        let Some(prev) = self.event_at(stream, seq - 1).await? else {
            return Ok(None);
        };
        let start = prev.first.unwrap_or(seq - 1);
        let head = if start == seq - 1 {
            prev
        } else {
            match self.event_at(stream, start).await? {
                Some(h) => h,
                None => return Ok(None),
            }
        };
        Ok(head.member(start, seq))
    }

    /// Writes out the later entries of the batch that starts at `start` (create-only, so a
    /// writer finishing another's batch and its owner never disagree). Returns its last seq.
    async fn expand_batch(&self, stream: &str, start: u64, head: &EventRecord) -> Result<u64> {
        let last = head.batch_last(start);
        for seq in start + 1..=last {
            let rec = head.member(start, seq).expect("inside the batch");
            self.store
                .put_if(
                    &layout::event(stream, seq),
                    Stored::Json(to_json(&rec)?),
                    Condition::Absent,
                )
                .await?;
        }
        Ok(last)
    }

    /// The true last seq of a stream on a store with atomic conditions: the highest event key
    /// at or after `floor` (a seq known to exist, or 0), extended over a batch it belongs to.
    async fn true_last(&self, stream: &str, floor: u64) -> Result<u64> {
        let prefix = format!("events/{}/", escape(stream));
        let start_after = (floor > 0).then(|| layout::event(stream, floor));
        let mut last = floor;
        if let Some(mut lister) = self
            .store
            .list_ordered(&prefix, start_after.as_deref(), false, 1000)
            .await?
        {
            while let Some(page) = lister.next_page().await? {
                for (key, _) in page {
                    if let Some(seq) = key
                        .strip_prefix(&prefix)
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        last = last.max(seq);
                    }
                }
            }
        } else {
            self.scan(&prefix, |key, _| {
                if let Some(seq) = key
                    .strip_prefix(&prefix)
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    last = last.max(seq);
                }
                Ok(())
            })
            .await?;
        }
        if last == 0 {
            return Ok(0);
        }
        let Some(rec) = self.event_at(stream, last).await? else {
            return Ok(last);
        };
        let start = rec.first.unwrap_or(last);
        let head = if start == last {
            rec
        } else {
            match self.event_at(stream, start).await? {
                Some(h) => h,
                None => return Ok(last),
            }
        };
        Ok(self.expand_batch(stream, start, &head).await?.max(last))
    }

    /// Visits every listed entry under `prefix`.
    async fn scan(
        &self,
        prefix: &str,
        mut visit: impl FnMut(String, Stored) -> Result<()> + Send,
    ) -> Result<()> {
        let mut lister = self.store.list(prefix).await?;
        while let Some(page) = lister.next_page().await? {
            for (key, value) in page {
                if key.starts_with(prefix) {
                    visit(key, value)?;
                }
            }
        }
        Ok(())
    }

    async fn kv_live(&self, key: &str, now: i64) -> Result<Option<KvEntry>> {
        let stored_key = layout::kv(key);
        let Some(json) = self.get_json(&stored_key).await? else {
            return Ok(None);
        };
        Inner::kv_entry(key, &stored_key, &json, now)
    }

    async fn kv_write(&self, set: KvSet) -> Result<KvEntry> {
        let (entry, record) = new_kv_record(set, now_ms())?;
        self.put_json(&layout::kv(&entry.key), record).await?;
        Ok(entry)
    }

    async fn doc(&self, coll: &str, id: &str) -> Result<Option<Doc>> {
        let key = layout::record(coll, id);
        Ok(match self.get_json(&key).await? {
            Some(json) => Some(parse::<DocRecord>(&key, &json)?.into_doc()),
            None => None,
        })
    }

    async fn blob_record(&self, key: &str) -> Result<Option<BlobRecord>> {
        let stored_key = layout::blob(key);
        match self.get_json(&stored_key).await? {
            Some(json) => Ok(Some(parse(&stored_key, &json)?)),
            None => Ok(None),
        }
    }

    async fn drop_body(&self, body: &str, chunks: u64) -> Result<()> {
        stream::iter(0..chunks)
            .map(|index| async move { self.store.delete(&layout::chunk(body, index)).await })
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    async fn last_seq(&self, stream: &str) -> Result<u64> {
        let key = layout::stream_head(stream);
        Ok(match self.get_json(&key).await? {
            Some(json) => parse::<StreamHead>(&key, &json)?.last_seq,
            None => 0,
        })
    }

    /// Collects matching documents of a collection as (doc, parsed data).
    async fn matching_docs(
        &self,
        coll: &str,
        filter: Option<&Filter>,
    ) -> Result<Vec<(Doc, serde_json::Value)>> {
        let mut out = Vec::new();
        self.scan(&layout::records_of(coll), |key, value| {
            let doc = parse::<DocRecord>(&key, &json_of(&key, value)?)?.into_doc();
            let data: serde_json::Value = parse(&key, &doc.data)?;
            if filter.is_none_or(|f| f.matches(&data)) {
                out.push((doc, data));
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }
}

impl Inner {
    /// Appends on a store with atomic conditions, correct against other processes: the first
    /// event (carrying the batch's others) is written create-only at the next seq, which
    /// claims the whole range; on 412 the true end is found and the claim retried. Later
    /// entries are then written out, and the stream head last, as a hint only.
    async fn ev_append_claimed(
        &self,
        stream: &str,
        events: Vec<NewEvent>,
        expected_seq: Option<u64>,
    ) -> Result<u64> {
        let time = iso8601(now_ms());
        let mut bodies = Vec::with_capacity(events.len());
        for event in events {
            bodies.push(EventBody {
                kind: event.kind,
                data: raw(&event.data)?,
                time: time.clone(),
                id: new_id(),
            });
        }
        if bodies.is_empty() {
            return self.true_last(stream, self.last_seq(stream).await?).await;
        }
        let first = bodies.remove(0);
        let head = EventRecord {
            kind: first.kind,
            data: first.data,
            time: first.time,
            id: first.id,
            rest: (!bodies.is_empty()).then_some(bodies),
            first: None,
        };
        let json = to_json(&head)?;
        // The head hint never runs ahead of the events, so `last + 1` being free proves
        // `last` is the true end: a claim that succeeds needs no listing.
        let mut last = self.last_seq(stream).await?;
        let mut verified = false;
        loop {
            if let Some(expected) = expected_seq {
                if expected != last {
                    if !verified {
                        last = self.true_last(stream, last).await?;
                        verified = true;
                        continue;
                    }
                    return Err(PersistError::conflict(format!(
                        "stream {stream:?}: expectedSeq is {expected} but the stream is at seq {last}"
                    )));
                }
            }
            let claimed = self
                .store
                .put_if(
                    &layout::event(stream, last + 1),
                    Stored::Json(json.clone()),
                    Condition::Absent,
                )
                .await?;
            if claimed.is_some() {
                break;
            }
            last = self.true_last(stream, last + 1).await?;
            verified = true;
        }
        let start = last + 1;
        let end = self.expand_batch(stream, start, &head).await?;
        self.put_json(
            &layout::stream_head(stream),
            to_json(&StreamHead { last_seq: end })?,
        )
        .await?;
        self.changed.send_modify(|n| *n += 1);
        Ok(end)
    }

    async fn ev_read_claimed(
        &self,
        stream: &str,
        from: u64,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        if reverse {
            let last = self.true_last(stream, self.last_seq(stream).await?).await?;
            let mut seq = from.min(last);
            while seq >= 1 && out.len() < limit {
                let key = layout::event(stream, seq);
                let rec = self
                    .event_member(stream, seq)
                    .await?
                    .ok_or_else(|| corrupt(&key, "an event below the stream's end is missing"))?;
                out.push(rec.stored(stream, seq));
                seq -= 1;
            }
            return Ok(out);
        }
        let mut seq = from.max(1);
        // Listing in order fetches a page of events at once; it stops at the first gap.
        let prefix = format!("events/{}/", escape(stream));
        let start_after = (seq > 1).then(|| layout::event(stream, seq - 1));
        if let Some(mut lister) = self
            .store
            .list_ordered(
                &prefix,
                start_after.as_deref(),
                true,
                limit.saturating_add(1),
            )
            .await?
        {
            'pages: while let Some(page) = lister.next_page().await? {
                for (key, value) in page {
                    let Some(at) = key
                        .strip_prefix(&prefix)
                        .and_then(|s| s.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    if at < seq {
                        continue; // written out from a batch already returned whole
                    }
                    let Some(value) = value.filter(|_| at == seq) else {
                        break 'pages;
                    };
                    let rec: EventRecord = parse(&key, &json_of(&key, value)?)?;
                    let last = rec.batch_last(seq);
                    for s in seq..=last {
                        if out.len() < limit {
                            out.push(
                                rec.member(seq, s)
                                    .expect("inside the batch")
                                    .stored(stream, s),
                            );
                        }
                    }
                    seq = last + 1;
                    if out.len() >= limit {
                        break 'pages;
                    }
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        // The first read may land inside a batch still being written out.
        let Some(mut rec) = self.event_member(stream, seq).await? else {
            return Ok(out);
        };
        loop {
            let member = rec.first.is_some();
            if rec.rest.is_some() {
                // A batch's first event: it holds the whole batch.
                let last = rec.batch_last(seq);
                for s in seq..=last {
                    if out.len() < limit {
                        out.push(
                            rec.member(seq, s)
                                .expect("inside the batch")
                                .stored(stream, s),
                        );
                    }
                }
                seq = last + 1;
            } else {
                out.push(rec.stored(stream, seq));
                seq += 1;
            }
            if out.len() >= limit {
                break;
            }
            // After a batch member written out by itself, the next may not be written yet.
            let next = if member {
                self.event_member(stream, seq).await?
            } else {
                self.event_at(stream, seq).await?
            };
            match next {
                Some(next) => rec = next,
                None => break,
            }
        }
        Ok(out)
    }
}

fn range_order(reverse: bool) -> impl Fn(&String, &String) -> Ordering {
    move |a: &String, b: &String| if reverse { b.cmp(a) } else { a.cmp(b) }
}

#[async_trait]
impl Backend for KeyspaceBackend {
    fn kind(&self) -> &'static str {
        self.store.kind()
    }

    fn direct_kv(&self) -> Option<&dyn crate::backend::DirectKv> {
        self.store
            .call_timeout()
            .map(|_| &*self.inner as &dyn crate::backend::DirectKv)
    }

    // ---- kv ----

    async fn kv_get_many(&self, keys: Vec<String>) -> Result<Vec<Option<KvEntry>>> {
        let now = now_ms();
        futures::future::try_join_all(keys.iter().map(|k| self.kv_live(k, now))).await
    }

    async fn kv_set(&self, set: KvSet) -> Result<KvEntry> {
        let stored_key = layout::kv(&set.key);
        let _guard = self.locks.lock(stored_key.clone()).await;
        if set.if_version == IfVersion::Any {
            return self.kv_write(set).await;
        }
        loop {
            let (current, seen) = self.kv_read(&set.key, now_ms()).await?;
            check_kv(current.as_ref(), &set.if_version, &set.key)?;
            let (entry, record) = new_kv_record(set.clone(), now_ms())?;
            if self.put_checked(&stored_key, record, seen).await? {
                return Ok(entry);
            }
            // Another client wrote in between: check the condition again against its value.
        }
    }

    async fn kv_set_many(&self, sets: Vec<KvSet>) -> Result<()> {
        // Lock every key (in a fixed order, so two setMany calls cannot deadlock), remember
        // what was there, write; on a failure put the previous values back. A repeated key
        // keeps its last value. Reads and writes go out IO_CONCURRENCY at a time: each is a
        // round trip to the adapter (a JS call, an S3 request).
        let mut last: HashMap<String, KvSet> = HashMap::with_capacity(sets.len());
        for set in sets {
            last.insert(layout::kv(&set.key), set);
        }
        let mut keys: Vec<String> = last.keys().cloned().collect();
        keys.sort();
        let mut guards = Vec::with_capacity(keys.len());
        for key in &keys {
            guards.push(self.locks.lock(key.clone()).await);
        }
        let previous: Vec<(String, Option<Stored>)> = stream::iter(keys.clone())
            .map(|key| async move {
                let old = self.store.get(&key).await?;
                Ok((key, old))
            })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        // Every write is let finish, failed or not, before anything is put back: a write still
        // in flight (an adapter call already made) could otherwise land after its key's old
        // value was restored. (A call that timed out is finished for us but may still land in
        // the adapter: JavaScript cannot cancel it; see the README.)
        let written: Vec<Result<KvEntry>> = stream::iter(last.into_values())
            .map(|set| self.kv_write(set))
            .buffer_unordered(IO_CONCURRENCY)
            .collect()
            .await;
        let Some(mut err) = written.into_iter().find_map(|r| r.err()) else {
            return Ok(());
        };
        let restored: Vec<Result<()>> = stream::iter(previous)
            .map(|(key, old)| async move {
                match old {
                    Some(value) => self.store.put(&key, value).await,
                    None => self.store.delete(&key).await,
                }
            })
            .buffer_unordered(IO_CONCURRENCY)
            .collect()
            .await;
        let unrestored = restored.iter().filter(|r| r.is_err()).count();
        if unrestored == 0 {
            return Err(err);
        }
        // Said, not hidden: the caller must not take the batch for rolled back.
        err.message = format!(
            "{} (and {unrestored} of its keys could not be put back as they were: they may hold the new value)",
            err.message
        );
        Err(err)
    }

    async fn kv_delete(&self, key: String, if_version: Option<String>) -> Result<bool> {
        let stored_key = layout::kv(&key);
        let _guard = self.locks.lock(stored_key.clone()).await;
        loop {
            let (current, seen) = self.kv_read(&key, now_ms()).await?;
            let Some(v) = &if_version else {
                self.store.delete(&stored_key).await?;
                return Ok(current.is_some());
            };
            check_kv(current.as_ref(), &IfVersion::Is(v.clone()), &key)?;
            if self.delete_checked(&stored_key, seen).await? {
                return Ok(current.is_some());
            }
        }
    }

    async fn kv_list_page(
        &self,
        range: KvRange,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        let prefix = layout::kv_prefix(&range.prefix);
        if limit == 0 {
            return Ok(Vec::new());
        }
        if !range.reverse {
            // Start as late as the range allows: just before the escaped `start` (inclusive),
            // or at the escaped `after` (exclusive); escaping keeps byte order.
            let mut start_after: Option<String> = range.start.as_ref().map(|s| {
                let mut k = layout::kv(s);
                k.pop();
                k
            });
            if let Some(a) = &after {
                let k = layout::kv(a);
                if start_after.as_ref().is_none_or(|s| k > *s) {
                    start_after = Some(k);
                }
            }
            let hint = limit.saturating_add(8);
            if let Some(mut lister) = self
                .store
                .list_ordered(&prefix, start_after.as_deref(), true, hint)
                .await?
            {
                let now = now_ms();
                let mut out = Vec::new();
                'pages: while let Some(page) = lister.next_page().await? {
                    for (stored_key, value) in page {
                        let Some(key) = layout::user_part(&stored_key, "kv/") else {
                            continue;
                        };
                        if range.end.as_ref().is_some_and(|e| key >= *e) {
                            break 'pages;
                        }
                        if !range.contains(&key) || after.as_ref().is_some_and(|a| key <= *a) {
                            continue;
                        }
                        let Some(value) = value else { continue };
                        let json = json_of(&stored_key, value)?;
                        if let Some(entry) = Inner::kv_entry(&key, &stored_key, &json, now)? {
                            out.push(entry);
                            if out.len() >= limit {
                                break 'pages;
                            }
                        }
                    }
                }
                return Ok(out);
            }
        }
        let order = range_order(range.reverse);
        let mut best = TopK::new(limit, |a: &KvEntry, b: &KvEntry| order(&a.key, &b.key));
        let now = now_ms();
        self.scan(&prefix, |stored_key, value| {
            let Some(key) = layout::user_part(&stored_key, "kv/") else {
                return Ok(());
            };
            if !range.contains(&key) {
                return Ok(());
            }
            if let Some(a) = &after {
                if order(&key, a) != Ordering::Greater {
                    return Ok(());
                }
            }
            let rec: KvRecord = parse(&stored_key, &json_of(&stored_key, value)?)?;
            if rec.expires_at.is_some_and(|at| at <= now) {
                return Ok(());
            }
            best.offer(KvEntry {
                key,
                value: rec.value.get().to_string(),
                version: rec.version,
                expires_at: rec.expires_at,
            });
            Ok(())
        })
        .await?;
        Ok(best.items)
    }

    // ---- records ----

    async fn rec_insert(&self, coll: String, id: String, data: String) -> Result<Doc> {
        self.rec_put(coll, id, data, IfVersion::Absent).await
    }

    async fn rec_put(
        &self,
        coll: String,
        id: String,
        data: String,
        if_version: IfVersion<u64>,
    ) -> Result<Doc> {
        let _guard = self.locks.lock(layout::record(&coll, &id)).await;
        loop {
            let (current, seen) = self.doc_read(&coll, &id).await?;
            check_record(current.as_ref().map(|d| d.version), &if_version, &coll, &id)?;
            let now = iso8601(now_ms());
            let doc = match current {
                Some(old) => Doc {
                    id: id.clone(),
                    version: old.version + 1,
                    created_at: old.created_at,
                    updated_at: now,
                    data: data.clone(),
                },
                None => Doc {
                    id: id.clone(),
                    version: 1,
                    created_at: now.clone(),
                    updated_at: now,
                    data: data.clone(),
                },
            };
            if self.write_doc_checked(&coll, &doc, seen).await? {
                return Ok(doc);
            }
        }
    }

    async fn rec_get(&self, coll: String, id: String) -> Result<Option<Doc>> {
        self.doc(&coll, &id).await
    }

    async fn rec_update(
        &self,
        coll: String,
        id: String,
        patch: String,
        if_version: Option<u64>,
    ) -> Result<Doc> {
        let _guard = self.locks.lock(layout::record(&coll, &id)).await;
        loop {
            let (current, seen) = self.doc_read(&coll, &id).await?;
            let current = current.ok_or_else(|| {
                PersistError::not_found(format!("record {coll}/{id} does not exist"))
            })?;
            if let Some(v) = if_version {
                check_record(Some(current.version), &IfVersion::Is(v), &coll, &id)?;
            }
            let doc = Doc {
                data: merge_patch(&current.data, &patch)?,
                version: current.version + 1,
                updated_at: iso8601(now_ms()),
                ..current
            };
            if self.write_doc_checked(&coll, &doc, seen).await? {
                return Ok(doc);
            }
        }
    }

    async fn rec_delete(&self, coll: String, id: String, if_version: Option<u64>) -> Result<bool> {
        let key = layout::record(&coll, &id);
        let _guard = self.locks.lock(key.clone()).await;
        loop {
            let (current, seen) = self.doc_read(&coll, &id).await?;
            let Some(v) = if_version else {
                self.store.delete(&key).await?;
                return Ok(current.is_some());
            };
            check_record(
                current.as_ref().map(|d| d.version),
                &IfVersion::Is(v),
                &coll,
                &id,
            )?;
            if self.delete_checked(&key, seen).await? {
                return Ok(current.is_some());
            }
        }
    }

    async fn rec_find_page(
        &self,
        coll: String,
        filter: Option<Filter>,
        order: Vec<SortKey>,
        after: Option<FindCursor>,
        limit: usize,
    ) -> Result<Vec<Doc>> {
        let cmp = |a: &(Doc, serde_json::Value), b: &(Doc, serde_json::Value)| {
            compare_docs(&order, &a.0.id, &a.1, &b.0.id, &b.1)
        };
        let mut best = TopK::new(limit, cmp);
        for item in self.matching_docs(&coll, filter.as_ref()).await? {
            let past_cursor = after.as_ref().is_none_or(|c| {
                compare_docs(&order, &item.0.id, &item.1, &c.id, &c.data) == Ordering::Greater
            });
            if past_cursor {
                best.offer(item);
            }
        }
        Ok(best.items.into_iter().map(|(doc, _)| doc).collect())
    }

    async fn rec_count(&self, coll: String, filter: Option<Filter>) -> Result<u64> {
        Ok(self.matching_docs(&coll, filter.as_ref()).await?.len() as u64)
    }

    /// Queries on a key-value store scan the collection; an index would change nothing but
    /// speed, and there is nowhere to keep one, so the call only checks its argument.
    async fn rec_ensure_index(&self, _coll: String, _path: FieldPath) -> Result<()> {
        Ok(())
    }

    // ---- blobs ----

    async fn blob_put(&self, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>> {
        if let Some(native) = self.store.native_blobs() {
            return native.blob_put(key, meta).await;
        }
        Ok(Box::new(Upload {
            backend: self.inner.clone(),
            key,
            meta,
            body: new_id(),
            chunker: Chunker::new(CHUNK),
            chunks: 0,
            size: 0,
            finished: false,
        }))
    }

    async fn blob_head(&self, key: String) -> Result<Option<BlobInfo>> {
        if let Some(native) = self.store.native_blobs() {
            return native.blob_head(key).await;
        }
        Ok(self.blob_record(&key).await?.map(|rec| info_of(key, rec)))
    }

    async fn blob_read(
        &self,
        key: String,
        range: ByteRange,
    ) -> Result<Option<Box<dyn BlobReader>>> {
        if let Some(native) = self.store.native_blobs() {
            return native.blob_read(key, range).await;
        }
        let Some(rec) = self.blob_record(&key).await? else {
            return Ok(None);
        };
        let end = range.end.unwrap_or(rec.size).min(rec.size);
        let pos = range.start.min(end);
        Ok(Some(Box::new(Reader {
            store: self.store.clone(),
            body: rec.body.clone(),
            info: info_of(key, rec),
            pos,
            end,
        })))
    }

    async fn blob_delete(&self, key: String) -> Result<bool> {
        if let Some(native) = self.store.native_blobs() {
            return native.blob_delete(key).await;
        }
        let stored_key = layout::blob(&key);
        let _guard = self.locks.lock(stored_key.clone()).await;
        let Some(rec) = self.blob_record(&key).await? else {
            return Ok(false);
        };
        self.store.delete(&stored_key).await?;
        self.drop_body(&rec.body, rec.chunks).await?;
        Ok(true)
    }

    async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        if let Some(native) = self.store.native_blobs() {
            return native.blob_list_page(prefix, after, limit).await;
        }
        let mut best = TopK::new(limit, |a: &BlobInfo, b: &BlobInfo| a.key.cmp(&b.key));
        self.scan(&layout::blob_prefix(&prefix), |stored_key, value| {
            let Some(key) = layout::user_part(&stored_key, "blobs/") else {
                return Ok(());
            };
            if after.as_ref().is_some_and(|a| key <= *a) {
                return Ok(());
            }
            let rec: BlobRecord = parse(&stored_key, &json_of(&stored_key, value)?)?;
            best.offer(info_of(key, rec));
            Ok(())
        })
        .await?;
        Ok(best.items)
    }

    // ---- events ----

    async fn ev_append(
        &self,
        stream: String,
        events: Vec<NewEvent>,
        expected_seq: Option<u64>,
    ) -> Result<u64> {
        let head_key = layout::stream_head(&stream);
        let _guard = self.locks.lock(head_key.clone()).await;
        if self.store.atomic_conditions() {
            return self.ev_append_claimed(&stream, events, expected_seq).await;
        }
        let last = self.last_seq(&stream).await?;
        if let Some(expected) = expected_seq {
            if expected != last {
                return Err(PersistError::conflict(format!(
                    "stream {stream:?}: expectedSeq is {expected} but the stream is at seq {last}"
                )));
            }
        }
        // Events first, the head last: readers stop at the head, so the whole array appears
        // at once; a crash in between leaves entries past the head that the next append reuses.
        let time = iso8601(now_ms());
        let mut seq = last;
        for event in events {
            seq += 1;
            let rec = EventRecord {
                kind: event.kind,
                data: raw(&event.data)?,
                time: time.clone(),
                id: new_id(),
                rest: None,
                first: None,
            };
            self.put_json(&layout::event(&stream, seq), to_json(&rec)?)
                .await?;
        }
        self.put_json(&head_key, to_json(&StreamHead { last_seq: seq })?)
            .await?;
        self.changed.send_modify(|n| *n += 1);
        Ok(seq)
    }

    async fn ev_read_page(
        &self,
        stream: String,
        from: u64,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        if self.store.atomic_conditions() {
            return self.ev_read_claimed(&stream, from, reverse, limit).await;
        }
        let last = self.last_seq(&stream).await?;
        let seqs: Vec<u64> = if reverse {
            let top = from.min(last);
            (1..=top).rev().take(limit).collect()
        } else {
            (from.max(1)..=last).take(limit).collect()
        };
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let key = layout::event(&stream, seq);
            let json = self
                .get_json(&key)
                .await?
                .ok_or_else(|| corrupt(&key, "an event below the stream head is missing"))?;
            let rec: EventRecord = parse(&key, &json)?;
            out.push(StoredEvent {
                stream: stream.clone(),
                seq,
                kind: rec.kind,
                data: rec.data.get().to_string(),
                time: rec.time,
                id: rec.id,
            });
        }
        Ok(out)
    }

    async fn ev_streams_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let start_after = after.as_ref().map(|a| layout::stream_head(a));
        if let Some(mut lister) = self
            .store
            .list_ordered(
                &layout::stream_prefix(&prefix),
                start_after.as_deref(),
                false,
                limit,
            )
            .await?
        {
            let mut out = Vec::new();
            while out.len() < limit {
                let Some(page) = lister.next_page().await? else {
                    break;
                };
                for (stored_key, _) in page {
                    if let Some(stream) = layout::user_part(&stored_key, "streams/") {
                        if out.len() < limit && after.as_ref().is_none_or(|a| stream > *a) {
                            out.push(stream);
                        }
                    }
                }
            }
            return Ok(out);
        }
        let mut best = TopK::new(limit, |a: &String, b: &String| a.cmp(b));
        self.scan(&layout::stream_prefix(&prefix), |stored_key, _| {
            if let Some(stream) = layout::user_part(&stored_key, "streams/") {
                if after.as_ref().is_none_or(|a| stream > *a) {
                    best.offer(stream);
                }
            }
            Ok(())
        })
        .await?;
        Ok(best.items)
    }

    async fn ev_wait(&self, stream: String, after_seq: u64, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        let atomic = self.store.atomic_conditions();
        loop {
            let appended = if atomic {
                // The head is only a hint there: look for the next event itself.
                self.event_member(&stream, after_seq + 1).await?.is_some()
            } else {
                self.last_seq(&stream).await? > after_seq
            };
            if appended {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until((now + EVENT_POLL).min(deadline)) => {}
            }
        }
    }

    async fn close(&self) -> Result<()> {
        self.store.close().await
    }
}

fn info_of(key: String, rec: BlobRecord) -> BlobInfo {
    BlobInfo {
        key,
        size: rec.size,
        content_type: rec.content_type,
        etag: rec.etag,
        metadata: rec.metadata,
        updated_at: rec.updated_at,
    }
}

struct Upload {
    backend: Arc<Inner>,
    key: String,
    meta: BlobMeta,
    body: String,
    chunker: Chunker,
    chunks: u64,
    size: u64,
    finished: bool,
}

impl Upload {
    async fn flush(&mut self, bytes: Vec<u8>) -> Result<()> {
        let key = layout::chunk(&self.body, self.chunks);
        self.chunks += 1;
        self.backend.store.put(&key, Stored::Bytes(bytes)).await
    }
}

#[async_trait]
impl BlobUpload for Upload {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        self.size += chunk.len() as u64;
        for full in self.chunker.push(chunk) {
            self.flush(full).await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<BlobInfo> {
        if let Some(last) = self.chunker.finish() {
            self.flush(last).await?;
        }
        let rec = BlobRecord {
            size: self.size,
            content_type: self.meta.content_type_or_default(),
            etag: new_version(),
            metadata: std::mem::take(&mut self.meta.metadata),
            updated_at: iso8601(now_ms()),
            body: self.body.clone(),
            chunks: self.chunks,
        };
        let backend = self.backend.clone();
        let stored_key = layout::blob(&self.key);
        let _guard = backend.locks.lock(stored_key.clone()).await;
        let previous = backend.blob_record(&self.key).await?;
        backend.put_json(&stored_key, to_json(&rec)?).await?;
        self.finished = true;
        if let Some(old) = previous {
            // The new blob is in place; a failure here only leaves unreachable chunks behind.
            let _ = backend.drop_body(&old.body, old.chunks).await;
        }
        Ok(info_of(self.key.clone(), rec))
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.finished = true;
        self.backend.drop_body(&self.body, self.chunks).await
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished && self.chunks > 0 {
            // Abandoned without commit or abort: discard the chunks written so far.
            let (backend, body, chunks) = (self.backend.clone(), self.body.clone(), self.chunks);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { backend.drop_body(&body, chunks).await });
            }
        }
    }
}

struct Reader {
    store: Arc<dyn KeyValue>,
    body: String,
    info: BlobInfo,
    pos: u64,
    end: u64,
}

#[async_trait]
impl BlobReader for Reader {
    fn info(&self) -> &BlobInfo {
        &self.info
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let (index, offset, want) = locate(self.pos, self.end, CHUNK);
        let key = layout::chunk(&self.body, index);
        let bytes = match self.store.get(&key).await? {
            Some(Stored::Bytes(bytes)) => bytes,
            Some(Stored::Json(_)) => {
                return Err(corrupt(&key, "JSON where blob bytes were stored"))
            }
            None => {
                return Err(PersistError::not_found(format!(
                    "blob {:?} was replaced or deleted while being read",
                    self.info.key
                )))
            }
        };
        if bytes.len() < offset + want {
            return Err(corrupt(&key, "a blob chunk is shorter than recorded"));
        }
        self.pos += want as u64;
        Ok(Some(bytes[offset..offset + want].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (Store, Arc<MemoryKeyValue>) {
        let kv = Arc::new(MemoryKeyValue::default());
        (
            Store::with_backend("t".into(), Arc::new(KeyspaceBackend::new(kv.clone()))),
            kv,
        )
    }

    #[tokio::test]
    async fn kv_lists_in_byte_order_across_pages_and_honours_ttl() {
        let (s, _) = store();
        for key in ["b", "a/x", "a.y", "é", "a", "c"] {
            s.kv_set(key.into(), "1".into(), None, IfVersion::Any)
                .await
                .unwrap();
        }
        s.kv_set("gone".into(), "1".into(), Some(1.0), IfVersion::Any)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .kv_list_page(KvRange::default(), after.clone(), 2)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|e| e.key.clone());
            seen.extend(page.into_iter().map(|e| e.key));
        }
        assert_eq!(seen, ["a", "a.y", "a/x", "b", "c", "é"]);
        let range = KvRange {
            prefix: "a".into(),
            reverse: true,
            ..Default::default()
        };
        let page = s.kv_list_page(range, None, 10).await.unwrap();
        assert_eq!(
            page.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["a/x", "a.y", "a"]
        );
    }

    #[tokio::test]
    async fn compare_and_set_and_versions() {
        let (s, _) = store();
        let first = s
            .kv_set("k".into(), "1".into(), None, IfVersion::Absent)
            .await
            .unwrap();
        let err = s
            .kv_set("k".into(), "2".into(), None, IfVersion::Absent)
            .await
            .unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::Conflict);
        let second = s
            .kv_set(
                "k".into(),
                "2".into(),
                None,
                IfVersion::Is(first.version.clone()),
            )
            .await
            .unwrap();
        assert_ne!(first.version, second.version);
        assert!(s.kv_delete("k".into(), Some(first.version)).await.is_err());
        assert!(s.kv_delete("k".into(), Some(second.version)).await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_appends_are_gapless() {
        let (s, _) = store();
        let s = Arc::new(s);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let e = NewEvent {
                        kind: "e".into(),
                        data: i.to_string(),
                    };
                    s.ev_append("st".into(), vec![e.clone(), e], None)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut lasts: Vec<u64> = Vec::new();
        for t in tasks {
            lasts.push(t.await.unwrap());
        }
        lasts.sort();
        assert_eq!(lasts, (1..=50).map(|i| i * 2).collect::<Vec<u64>>());
        let events = s.ev_read_page("st".into(), 1, false, 1000).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=100).collect::<Vec<u64>>()
        );
        // Both events of one append sit next to each other.
        for pair in events.chunks(2) {
            assert_eq!(pair[0].data, pair[1].data);
        }
    }

    #[tokio::test]
    async fn blobs_are_chunked_and_replaced_whole() {
        let (s, kv) = store();
        let body: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| (i % 251) as u8).collect();
        let mut up = s.blob_put("f".into(), BlobMeta::default()).await.unwrap();
        up.write(body[..1000].to_vec()).await.unwrap();
        up.write(body[1000..].to_vec()).await.unwrap();
        let info = up.commit().await.unwrap();
        assert_eq!(info.size as usize, body.len());
        assert_eq!(
            kv.keys()
                .iter()
                .filter(|k| k.starts_with("chunks/"))
                .count(),
            3
        );
        let mut reader = s
            .blob_read(
                "f".into(),
                ByteRange {
                    start: CHUNK as u64 - 5,
                    end: Some(CHUNK as u64 + 5),
                },
            )
            .await
            .unwrap()
            .unwrap();
        let mut got = Vec::new();
        while let Some(c) = reader.next_chunk().await.unwrap() {
            got.extend(c);
        }
        assert_eq!(got, body[CHUNK - 5..CHUNK + 5]);
        // An aborted replacement leaves the old blob and no stray chunks.
        let mut up = s.blob_put("f".into(), BlobMeta::default()).await.unwrap();
        up.write(vec![1; CHUNK + 1]).await.unwrap();
        up.abort().await.unwrap();
        assert_eq!(
            s.blob_head("f".into()).await.unwrap().unwrap().etag,
            info.etag
        );
        assert_eq!(
            kv.keys()
                .iter()
                .filter(|k| k.starts_with("chunks/"))
                .count(),
            3
        );
    }
}
