//! The one trait every storage backend implements. `Store` validates input before it calls
//! any of these, so implementations may assume well-formed names, ranges and JSON.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::{PersistError, Result};
use crate::model::*;
use crate::query::{Filter, SortKey};

/// A seq past the end of any stream, for reading the last event backwards (the largest integer
/// JS numbers carry exactly, which every backend accepts).
const LAST_SEQ: u64 = (1 << 53) - 1;

/// What `kv_set_each_now` did with a batch.
pub enum SetsNow {
    /// Committed: one result per set.
    Done(Vec<Result<KvEntry>>),
    /// Not taken: call `kv_set_each`.
    NotNow(Vec<KvSet>),
    /// Sent, and still running past the caller's time budget (Postgres: the statement is on
    /// the wire, so it cannot be given back): the results arrive here.
    Pending(LaterSets),
}

/// The results of sets still running past the caller's time budget, one per set.
pub type LaterSets = futures::future::BoxFuture<'static, Vec<Result<KvEntry>>>;

/// Plain kv gets and sets the binding performs itself against a custom JS adapter, with every
/// rule still decided here (see `keyspace::direct`).
pub trait DirectKv: Send + Sync {
    /// The bound on each adapter call.
    fn timeout(&self) -> Duration;
    /// The adapter key of a (validated) user kv key.
    fn stored_key(&self, key: &str) -> String;
    /// What to write for each plain set of a batch, with its key locked until `sets_done`; the
    /// rest (conditions, keys locked meanwhile) is left to `kv_set_each`.
    fn plan_sets(&self, sets: Vec<(usize, KvSet)>) -> Result<crate::keyspace::direct::SetPlan>;
    fn sets_done(&self, ticket: u64, indexes: &[usize]);
    /// The value (JSON text) of a kv record the adapter returned, or None when it has expired.
    fn value(&self, stored_key: &str, record: &str) -> Result<Option<String>>;
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `"sqlite"`, `"postgres"`, ...
    fn kind(&self) -> &'static str;

    /// Some on custom adapters: plain kv gets and sets the binding may perform itself.
    fn direct_kv(&self) -> Option<&dyn DirectKv> {
        None
    }

    // kv
    /// Answers a point read at once on the calling thread when that is cheap and cannot block
    /// (SQLite: an uncontended local read of a few microseconds), or None to take the async
    /// path. Lets the binding resolve cheap reads without a thread hop.
    fn kv_get_many_now(&self, _keys: &[String]) -> Option<Result<Vec<Option<KvEntry>>>> {
        None
    }
    async fn kv_get_many(&self, keys: Vec<String>) -> Result<Vec<Option<KvEntry>>>;
    async fn kv_set(&self, set: KvSet) -> Result<KvEntry>;
    /// Independent sets issued together (each may fail alone, e.g. with CONFLICT); SQLite does
    /// them in one group commit. The default runs them concurrently.
    async fn kv_set_each(&self, sets: Vec<KvSet>) -> Vec<Result<KvEntry>> {
        futures::future::join_all(sets.into_iter().map(|set| self.kv_set(set))).await
    }
    /// Whether `kv_set_each_now` can ever take sets (lets the binding skip preparing them).
    fn sets_now(&self) -> bool {
        false
    }
    /// Like `kv_set_each`, committed on the calling thread before it returns when the backend
    /// can do so without waiting (SQLite: a small batch, nothing queued for the writer, the
    /// database not locked by another process; Postgres: on the lane of an idle store); else
    /// gives the sets back to take the async path.
    fn kv_set_each_now(&self, sets: Vec<KvSet>) -> SetsNow {
        SetsNow::NotNow(sets)
    }
    /// All or nothing.
    async fn kv_set_many(&self, sets: Vec<KvSet>) -> Result<()>;
    async fn kv_delete(&self, key: String, if_version: Option<String>) -> Result<bool>;
    /// Up to `limit` live entries in range order, strictly after `after` when given.
    async fn kv_list_page(
        &self,
        range: KvRange,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<KvEntry>>;

    /// A page of `kv_list_page` answered on the calling thread when that takes little time
    /// (SQLite: the scan is cut off past a small time budget and then redone off the thread);
    /// None to take the async path.
    fn kv_list_page_now(
        &self,
        _range: &KvRange,
        _after: Option<&str>,
        _limit: usize,
    ) -> Option<Result<Vec<KvEntry>>> {
        None
    }

    // records
    /// CONFLICT when the id is taken.
    async fn rec_insert(&self, coll: String, id: String, data: String) -> Result<Doc>;
    async fn rec_put(
        &self,
        coll: String,
        id: String,
        data: String,
        if_version: IfVersion<u64>,
    ) -> Result<Doc>;
    /// Whether the binding should send the puts of one tick together (`rec_put_each`).
    fn batches_rec_puts(&self) -> bool {
        false
    }
    /// Puts issued together: one result per put, in order; each may fail alone. The default
    /// runs them one after another (Postgres writes the plain ones in one statement).
    async fn rec_put_each(&self, puts: Vec<RecordPut>) -> Vec<Result<Doc>> {
        let mut out = Vec::with_capacity(puts.len());
        for p in puts {
            out.push(self.rec_put(p.coll, p.id, p.data, p.if_version).await);
        }
        out
    }
    async fn rec_get(&self, coll: String, id: String) -> Result<Option<Doc>>;
    /// Like `kv_get_many_now`, for one record.
    fn rec_get_now(&self, _coll: &str, _id: &str) -> Option<Result<Option<Doc>>> {
        None
    }
    /// Shallow merge of `patch` (a JSON object) into the stored data; NOT_FOUND when absent.
    async fn rec_update(
        &self,
        coll: String,
        id: String,
        patch: String,
        if_version: Option<u64>,
    ) -> Result<Doc>;
    async fn rec_delete(&self, coll: String, id: String, if_version: Option<u64>) -> Result<bool>;
    /// Up to `limit` documents matching `filter`, ordered by `order` then id, strictly after
    /// `after` when given.
    async fn rec_find_page(
        &self,
        coll: String,
        filter: Option<Filter>,
        order: Vec<SortKey>,
        after: Option<FindCursor>,
        limit: usize,
    ) -> Result<Vec<Doc>>;
    /// Like `kv_list_page_now`, for a page of a query.
    fn rec_find_page_now(
        &self,
        _coll: &str,
        _filter: Option<&Filter>,
        _order: &[SortKey],
        _after: Option<&FindCursor>,
        _limit: usize,
    ) -> Option<Result<Vec<Doc>>> {
        None
    }
    async fn rec_count(&self, coll: String, filter: Option<Filter>) -> Result<u64>;
    async fn rec_ensure_index(&self, coll: String, path: crate::query::FieldPath) -> Result<()>;

    // blobs
    /// Starts a put; nothing is visible until `commit`.
    async fn blob_put(&self, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>>;
    async fn blob_head(&self, key: String) -> Result<Option<BlobInfo>>;
    /// A reader over `range` of the blob as it is now, or None when absent.
    async fn blob_read(&self, key: String, range: ByteRange)
        -> Result<Option<Box<dyn BlobReader>>>;
    async fn blob_delete(&self, key: String) -> Result<bool>;
    async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>>;

    // events
    /// Appends atomically; returns the last seq. CONFLICT when `expected_seq` differs from the
    /// stream's current last seq.
    async fn ev_append(
        &self,
        stream: String,
        events: Vec<NewEvent>,
        expected_seq: Option<u64>,
    ) -> Result<u64>;
    /// Up to `limit` events from seq `from` (inclusive) onwards, or downwards when `reverse`.
    async fn ev_read_page(
        &self,
        stream: String,
        from: u64,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    async fn ev_streams_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>>;
    /// Returns once the stream may hold events after `after_seq` (another process included), or
    /// after `timeout`. Callers read again either way.
    async fn ev_wait(&self, stream: String, after_seq: u64, timeout: Duration) -> Result<()>;
    /// The next page of a subscription: the events after `cursor` (from the previous page), or,
    /// without one, from seq `from` (None: only events appended from now on). Every event is
    /// delivered once. The default follows seq order; a backend whose events can merge in
    /// behind ones already delivered (p2p) overrides it.
    async fn ev_follow_page(
        &self,
        stream: String,
        from: Option<u64>,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<FollowPage> {
        let next = match (cursor, from) {
            (Some(c), _) => c.parse::<u64>().map_err(|_| {
                PersistError::invalid_argument(format!("not a subscription cursor: {c:?}"))
            })?,
            (None, Some(from)) => from.max(1),
            (None, None) => {
                let last = self.ev_read_page(stream.clone(), LAST_SEQ, true, 1).await?;
                last.first().map_or(1, |e| e.seq + 1)
            }
        };
        let events = self.ev_read_page(stream, next, false, limit).await?;
        let next = events.last().map_or(next, |e| e.seq + 1);
        Ok(FollowPage {
            events,
            cursor: next.to_string(),
            wait_after: next - 1,
        })
    }

    /// Flushes and releases files, connections and sockets. Called once.
    async fn close(&self) -> Result<()>;
}

/// A blob being written. Chunks arrive in order; `commit` makes the blob visible atomically,
/// replacing any previous one; dropping it without commit (or `abort`) leaves no trace.
#[async_trait]
pub trait BlobUpload: Send {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<BlobInfo>;
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// A blob being read, chunk by chunk.
#[async_trait]
pub trait BlobReader: Send {
    fn info(&self) -> &BlobInfo;
    /// The next chunk, or None at the end of the range.
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>>;
}
