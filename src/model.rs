//! The values that cross the `Backend` trait. JSON payloads travel as JSON text: the binding
//! produces them with `JSON.stringify` (so they are valid JSON) and backends store them as is,
//! which spares a parse and a re-serialisation on every read and write.

use std::collections::BTreeMap;

/// A compare-and-set condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfVersion<V> {
    /// No condition.
    Any,
    /// Only if the key/record does not exist (`ifVersion: null`).
    Absent,
    /// Only if the current version is exactly this.
    Is(V),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    /// JSON text.
    pub value: String,
    pub version: String,
    /// Milliseconds since the epoch.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct KvSet {
    pub key: String,
    pub value: String,
    pub ttl_ms: Option<u64>,
    pub if_version: IfVersion<String>,
}

/// Which keys `kv.list` visits: `prefix`, then `start` (inclusive) to `end` (exclusive),
/// in byte order, reversed on request.
#[derive(Debug, Clone, Default)]
pub struct KvRange {
    pub prefix: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub reverse: bool,
}

impl KvRange {
    pub fn contains(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && self.start.as_deref().is_none_or(|s| key >= s)
            && self.end.as_deref().is_none_or(|e| key < e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    pub id: String,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    /// JSON text of an object.
    pub data: String,
}

/// One `records.put` of a batch (see `Backend::rec_put_each`).
#[derive(Debug, Clone)]
pub struct RecordPut {
    pub coll: String,
    pub id: String,
    /// JSON text of an object.
    pub data: String,
    pub if_version: IfVersion<u64>,
}

/// Where a page of `find` resumes: strictly after this document in the query's order.
#[derive(Debug, Clone)]
pub struct FindCursor {
    pub id: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: String,
    /// JSON text (`null` when the caller gave no data).
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub stream: String,
    pub seq: u64,
    pub kind: String,
    pub data: String,
    pub time: String,
    pub id: String,
}

/// A page of a subscription (`Backend::ev_follow_page`).
#[derive(Debug, Clone, Default)]
pub struct FollowPage {
    pub events: Vec<StoredEvent>,
    /// Where the next page starts (opaque to callers).
    pub cursor: String,
    /// When `events` is empty: the seq to pass to `ev_wait` before asking again.
    pub wait_after: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlobMeta {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    pub content_type: String,
    pub etag: String,
    pub metadata: BTreeMap<String, String>,
    pub updated_at: String,
}

/// A byte range of a blob: `start` inclusive, `end` exclusive (to the end when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

impl BlobMeta {
    /// The content type a blob is stored with: the caller's, else `application/octet-stream`.
    pub fn content_type_or_default(&self) -> String {
        self.content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string())
    }
}
