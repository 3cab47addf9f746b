//! `Store`: the one entry point of the core. It validates every argument once, rejects calls
//! on a closed store, and routes to the backend. Backends never see unchecked input.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::backend::{Backend, BlobReader, BlobUpload, DirectKv, LaterSets, SetsNow};
use crate::clock::new_id;
use crate::config::{self, AdapterConfig, StoreConfig};
use crate::error::{PersistError, Result};
use crate::keyspace::direct::SetPlan;
use crate::keyspace::{KeyValue, KeyspaceBackend};
use crate::model::*;
use crate::query::{self, FieldPath};
use crate::sqlite::SqliteBackend;
use crate::validate;

/// The most entries one page may ask for.
pub const MAX_PAGE: usize = 10_000;

pub struct Store {
    name: String,
    backend: Arc<dyn Backend>,
    closed: AtomicBool,
    /// `store.sync` of p2p stores.
    sync: Option<Arc<dyn crate::p2p::SyncHandle>>,
}

fn unavailable(kind: &str) -> PersistError {
    PersistError::invalid_config(format!(
        "the \"{kind}\" adapter is not available in this build of @cuitty/persist {}; available: \"sqlite\", \"postgres\", \"s3\", \"p2p\"",
        env!("CARGO_PKG_VERSION")
    ))
}

fn parse_json(what: &str, json: &str) -> Result<Value> {
    serde_json::from_str(json)
        .map_err(|e| PersistError::invalid_value(format!("{what} is not valid JSON: {e}")))
}

impl Store {
    /// Validates the config and opens the backend. `config` is the JSON the binding serialised.
    pub async fn open(config_json: &str, cwd: &Path) -> Result<Store> {
        let config = parse_json("config", config_json)
            .map_err(|e| PersistError::invalid_config(e.message))
            .and_then(|v| config::parse(&v, cwd))?;
        Self::open_config(config).await
    }

    /// Opens a store over a custom adapter. `make` builds the `KeyValue` once the config is
    /// known to be a valid custom config; it receives the per-call timeout.
    pub async fn open_custom(
        config_json: &str,
        cwd: &Path,
        make: impl FnOnce(Duration) -> Arc<dyn KeyValue>,
    ) -> Result<Store> {
        let config = parse_json("config", config_json)
            .map_err(|e| PersistError::invalid_config(e.message))
            .and_then(|v| config::parse(&v, cwd))?;
        let AdapterConfig::Custom { timeout_ms } = config.adapter else {
            return Err(PersistError::invalid_config(
                "createStore: \"adapter\" must be an object implementing PersistAdapter",
            ));
        };
        let backend = KeyspaceBackend::new(make(Duration::from_millis(timeout_ms)));
        Ok(Store::with_backend(config.name, Arc::new(backend)))
    }

    pub async fn open_config(config: StoreConfig) -> Result<Store> {
        let StoreConfig { name, adapter } = config;
        let backend: Arc<dyn Backend> = match adapter {
            AdapterConfig::Sqlite { path } => {
                let store_name = name.clone();
                let backend =
                    tokio::task::spawn_blocking(move || SqliteBackend::open(&store_name, path))
                        .await
                        .map_err(|e| {
                            PersistError::internal(format!("opening the store failed: {e}"))
                        })??;
                Arc::new(backend)
            }
            AdapterConfig::Postgres(cfg) => {
                Arc::new(crate::postgres::PostgresBackend::open(&name, cfg).await?)
            }
            AdapterConfig::S3(cfg) => {
                let kv = crate::s3::S3KeyValue::connect(&cfg).await?;
                Arc::new(KeyspaceBackend::new(Arc::new(kv)))
            }
            AdapterConfig::P2p(cfg) => {
                let p2p = crate::p2p::P2pBackend::open(&name, cfg).await?;
                let sync = p2p.sync_handle();
                return Ok(Store {
                    name,
                    backend: Arc::new(p2p),
                    closed: AtomicBool::new(false),
                    sync,
                });
            }
            other => return Err(unavailable(other.kind())),
        };
        Ok(Store {
            name,
            backend,
            closed: AtomicBool::new(false),
            sync: None,
        })
    }

    /// A store over a backend built elsewhere (the binding's custom adapters, tests).
    pub fn with_backend(name: String, backend: Arc<dyn Backend>) -> Store {
        Store {
            name,
            backend,
            closed: AtomicBool::new(false),
            sync: None,
        }
    }

    /// `store.sync`: present on p2p stores only.
    pub fn sync(&self) -> Option<Arc<dyn crate::p2p::SyncHandle>> {
        self.sync.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn adapter(&self) -> &'static str {
        self.backend.kind()
    }

    fn open_backend(&self) -> Result<&Arc<dyn Backend>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(PersistError::closed());
        }
        Ok(&self.backend)
    }

    /// Idempotent: the second and later calls resolve at once.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.backend.close().await
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    // ---- kv ----

    pub async fn kv_get_many(&self, keys: Vec<String>) -> Result<Vec<Option<KvEntry>>> {
        let backend = self.open_backend()?;
        for key in &keys {
            validate::name("kv key", key)?;
        }
        backend.kv_get_many(keys).await
    }

    /// The fast path of `kv_get_many`: Some when the backend answered on this thread.
    pub fn kv_get_many_now(&self, keys: &[String]) -> Option<Result<Vec<Option<KvEntry>>>> {
        let backend = match self.open_backend() {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = keys
            .iter()
            .try_for_each(|key| validate::name("kv key", key))
        {
            return Some(Err(e));
        }
        backend.kv_get_many_now(keys)
    }

    pub async fn kv_set(
        &self,
        key: String,
        value: String,
        ttl: Option<f64>,
        if_version: IfVersion<String>,
    ) -> Result<KvEntry> {
        let backend = self.open_backend()?;
        let set = kv_set_checked(key, value, ttl, if_version)?;
        backend.kv_set(set).await
    }

    /// Independent sets issued together (the binding batches sets made in the same tick);
    /// one result per set, in order.
    pub async fn kv_set_each(&self, sets: Vec<KvSetRequest>) -> Result<Vec<Result<KvEntry>>> {
        let backend = self.open_backend()?;
        let (results, valid) = check_sets(sets);
        let done = backend.kv_set_each(valid).await;
        Ok(merge_results(results, done))
    }

    /// Whether `kv_set_each_now` may answer (false: it always returns None).
    pub fn sets_now(&self) -> bool {
        self.backend.sets_now()
    }

    /// `kv_set_each` committed on the calling thread, when the backend can (see
    /// `Backend::kv_set_each_now`); None: call `kv_set_each`.
    pub fn kv_set_each_now(&self, sets: Vec<KvSetRequest>) -> Option<Result<SetsDone>> {
        let backend = match self.open_backend() {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        let (results, valid) = check_sets(sets);
        match backend.kv_set_each_now(valid) {
            SetsNow::Done(done) => Some(Ok(SetsDone::Now(merge_results(results, done)))),
            SetsNow::NotNow(_) => None,
            SetsNow::Pending(later) => Some(Ok(SetsDone::Later(Box::pin(async move {
                merge_results(results, later.await)
            })))),
        }
    }

    /// The backend's direct kv path (custom adapters), or None; CLOSED after `close()`.
    pub fn direct_kv(&self) -> Result<Option<&dyn DirectKv>> {
        Ok(self.open_backend()?.direct_kv())
    }

    /// Plans the sets of a batch for the direct path: the sets that fail validation (by
    /// position), and the plan for the others (see `DirectKv::plan_sets`). None: no direct path.
    pub fn kv_direct_plan(
        &self,
        sets: Vec<(String, Option<f64>, IfVersion<String>)>,
    ) -> Result<Option<DirectSetPlan>> {
        let Some(direct) = self.direct_kv()? else {
            return Ok(None);
        };
        let mut invalid = Vec::new();
        let mut valid = Vec::with_capacity(sets.len());
        for (i, (key, ttl, cond)) in sets.into_iter().enumerate() {
            // No value: the caller holds its JSON text (see `PlannedSet`).
            let checked = validate::name("kv key", &key)
                .and_then(|()| ttl.map(validate::ttl).transpose())
                .map(|ttl_ms| KvSet {
                    key,
                    value: String::new(),
                    ttl_ms,
                    if_version: cond,
                });
            match checked {
                Ok(set) => valid.push((i, set)),
                Err(e) => invalid.push((i, e)),
            }
        }
        Ok(Some((invalid, direct.plan_sets(valid)?)))
    }

    /// The adapter keys of user kv keys for the direct path (validated); None: no direct path.
    pub fn kv_direct_keys(&self, keys: &[String]) -> Result<Option<Vec<String>>> {
        let Some(direct) = self.direct_kv()? else {
            return Ok(None);
        };
        keys.iter()
            .map(|key| {
                validate::name("kv key", key)?;
                Ok(direct.stored_key(key))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub async fn kv_set_many(&self, entries: Vec<(String, String, Option<f64>)>) -> Result<()> {
        let backend = self.open_backend()?;
        let sets = entries
            .into_iter()
            .map(|(key, value, ttl)| kv_set_checked(key, value, ttl, IfVersion::Any))
            .collect::<Result<Vec<_>>>()?;
        if sets.is_empty() {
            return Ok(());
        }
        backend.kv_set_many(sets).await
    }

    pub async fn kv_delete(&self, key: String, if_version: Option<String>) -> Result<bool> {
        let backend = self.open_backend()?;
        validate::name("kv key", &key)?;
        backend.kv_delete(key, if_version).await
    }

    pub async fn kv_list_page(
        &self,
        range: KvRange,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        let backend = self.open_backend()?;
        Self::check_kv_range(&range, after.as_deref())?;
        backend
            .kv_list_page(range, after, limit.clamp(1, MAX_PAGE))
            .await
    }

    /// `kv_list_page` answered on the calling thread when the backend can do it quickly (see
    /// `Backend::kv_list_page_now`); None: call `kv_list_page`.
    pub fn kv_list_page_now(
        &self,
        range: &KvRange,
        after: Option<&str>,
        limit: usize,
    ) -> Option<Result<Vec<KvEntry>>> {
        let checked = self
            .open_backend()
            .and_then(|b| Self::check_kv_range(range, after).map(|()| b));
        match checked {
            Ok(backend) => backend.kv_list_page_now(range, after, limit.clamp(1, MAX_PAGE)),
            Err(e) => Some(Err(e)),
        }
    }

    fn check_kv_range(range: &KvRange, after: Option<&str>) -> Result<()> {
        validate::bound("kv list prefix", &range.prefix)?;
        for bound in [range.start.as_deref(), range.end.as_deref(), after]
            .into_iter()
            .flatten()
        {
            validate::bound("kv list bound", bound)?;
        }
        Ok(())
    }

    // ---- records ----

    fn check_record(coll: &str, id: Option<&str>) -> Result<()> {
        validate::name("collection name", coll)?;
        if let Some(id) = id {
            validate::name("record id", id)?;
        }
        Ok(())
    }

    /// The checks of a record write: the names, and a document that is a JSON object.
    fn check_write(coll: &str, id: Option<&str>, data: &str) -> Result<()> {
        Self::check_record(coll, id)?;
        validate::document(data)
    }

    pub async fn rec_insert(&self, coll: String, data: String, id: Option<String>) -> Result<Doc> {
        let backend = self.open_backend()?;
        Self::check_write(&coll, id.as_deref(), &data)?;
        backend
            .rec_insert(coll, id.unwrap_or_else(new_id), data)
            .await
    }

    pub async fn rec_put(
        &self,
        coll: String,
        id: String,
        data: String,
        if_version: IfVersion<u64>,
    ) -> Result<Doc> {
        let backend = self.open_backend()?;
        Self::check_write(&coll, Some(&id), &data)?;
        backend.rec_put(coll, id, data, if_version).await
    }

    /// Whether the binding should send the puts of one tick together (`rec_put_each`).
    pub fn batches_rec_puts(&self) -> bool {
        self.backend.batches_rec_puts()
    }

    /// Puts issued together (the binding batches the puts of one tick); one result per put,
    /// in order, each failing alone: an invalid one (or one the binding could not convert,
    /// given as its error) without reaching the backend.
    pub async fn rec_put_each(&self, puts: Vec<Result<RecordPut>>) -> Result<Vec<Result<Doc>>> {
        let backend = self.open_backend()?;
        let (checked, valid) = split_checked(puts.into_iter().map(|put| {
            put.and_then(|p| Self::check_write(&p.coll, Some(&p.id), &p.data).map(|()| p))
        }));
        let done = if valid.is_empty() {
            Vec::new()
        } else {
            backend.rec_put_each(valid).await
        };
        Ok(merge_results(checked, done))
    }

    pub async fn rec_get(&self, coll: String, id: String) -> Result<Option<Doc>> {
        let backend = self.open_backend()?;
        Self::check_record(&coll, Some(&id))?;
        backend.rec_get(coll, id).await
    }

    /// The fast path of `rec_get`: Some when the backend answered on this thread.
    pub fn rec_get_now(&self, coll: &str, id: &str) -> Option<Result<Option<Doc>>> {
        let backend = match self.open_backend() {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = Self::check_record(coll, Some(id)) {
            return Some(Err(e));
        }
        backend.rec_get_now(coll, id)
    }

    pub async fn rec_update(
        &self,
        coll: String,
        id: String,
        patch: String,
        if_version: Option<u64>,
    ) -> Result<Doc> {
        let backend = self.open_backend()?;
        Self::check_record(&coll, Some(&id))?;
        if patch.as_bytes().first() != Some(&b'{') {
            return Err(PersistError::invalid_value(
                "an update patch must be a JSON object",
            ));
        }
        backend.rec_update(coll, id, patch, if_version).await
    }

    pub async fn rec_delete(
        &self,
        coll: String,
        id: String,
        if_version: Option<u64>,
    ) -> Result<bool> {
        let backend = self.open_backend()?;
        Self::check_record(&coll, Some(&id))?;
        backend.rec_delete(coll, id, if_version).await
    }

    /// One page of `find`. The first page starts after the query's own `after`; later pages
    /// resume after the previous page's last document (`resume`: id and data JSON), which needs
    /// no lookup and so survives that document being deleted meanwhile.
    /// The parsed query and where to resume; `Err(id)` inside when resuming after `id` needs
    /// that record's data (a non-id order) and it is yet to be read.
    fn plan_find(
        coll: &str,
        query_json: &str,
        resume: Option<(String, String)>,
    ) -> Result<(
        query::Query,
        std::result::Result<Option<FindCursor>, String>,
    )> {
        Self::check_record(coll, None)?;
        let mut query = query::parse_query(&parse_json("query", query_json)?)?;
        let after = match (resume, query.after.take()) {
            (Some((id, data)), _) => Ok(Some(FindCursor {
                id,
                data: parse_json("cursor", &data)?,
            })),
            (None, None) => Ok(None),
            (None, Some(id)) => {
                validate::name("after", &id)?;
                if query.order.is_empty() {
                    // Ordered by id alone: the cursor needs no document.
                    Ok(Some(FindCursor {
                        id,
                        data: Value::Null,
                    }))
                } else {
                    Err(id)
                }
            }
        };
        Ok((query, after))
    }

    fn cursor_from(coll: &str, id: String, doc: Option<Doc>) -> Result<FindCursor> {
        let doc = doc.ok_or_else(|| {
            PersistError::not_found(format!(
                "after: record {coll}/{id} does not exist (needed to resume a non-id order)"
            ))
        })?;
        Ok(FindCursor {
            id,
            data: parse_json("record", &doc.data)?,
        })
    }

    pub async fn rec_find_page(
        &self,
        coll: String,
        query_json: &str,
        resume: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<Doc>> {
        let backend = self.open_backend()?;
        let (query, after) = Self::plan_find(&coll, query_json, resume)?;
        let after = match after {
            Ok(after) => after,
            Err(id) => {
                let doc = backend.rec_get(coll.clone(), id.clone()).await?;
                Some(Self::cursor_from(&coll, id, doc)?)
            }
        };
        backend
            .rec_find_page(
                coll,
                query.filter,
                query.order,
                after,
                limit.clamp(1, MAX_PAGE),
            )
            .await
    }

    /// `rec_find_page` answered on the calling thread when the backend can do it quickly (see
    /// `Backend::rec_find_page_now`); None: call `rec_find_page`.
    pub fn rec_find_page_now(
        &self,
        coll: &str,
        query_json: &str,
        resume: Option<(String, String)>,
        limit: usize,
    ) -> Option<Result<Vec<Doc>>> {
        let backend = match self.open_backend() {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        let (query, after) = match Self::plan_find(coll, query_json, resume) {
            Ok(plan) => plan,
            Err(e) => return Some(Err(e)),
        };
        let after = match after {
            Ok(after) => after,
            Err(id) => match backend.rec_get_now(coll, &id)? {
                Ok(doc) => match Self::cursor_from(coll, id, doc) {
                    Ok(cursor) => Some(cursor),
                    Err(e) => return Some(Err(e)),
                },
                Err(e) => return Some(Err(e)),
            },
        };
        backend.rec_find_page_now(
            coll,
            query.filter.as_ref(),
            &query.order,
            after.as_ref(),
            limit.clamp(1, MAX_PAGE),
        )
    }

    pub async fn rec_count(&self, coll: String, where_json: Option<&str>) -> Result<u64> {
        let backend = self.open_backend()?;
        Self::check_record(&coll, None)?;
        let filter = match where_json {
            Some(json) => Some(query::parse_where(&parse_json("where", json)?)?),
            None => None,
        };
        backend.rec_count(coll, filter).await
    }

    pub async fn rec_ensure_index(&self, coll: String, field: String) -> Result<()> {
        let backend = self.open_backend()?;
        Self::check_record(&coll, None)?;
        let path = FieldPath::parse(&field)?;
        backend.rec_ensure_index(coll, path).await
    }

    // ---- blobs ----

    pub async fn blob_put(&self, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>> {
        let backend = self.open_backend()?;
        validate::name("blob key", &key)?;
        if let Some(ct) = &meta.content_type {
            if ct.is_empty() || ct.len() > 1024 || ct.chars().any(|c| c.is_control()) {
                return Err(PersistError::invalid_argument(
                    "contentType must be a non-empty string without control characters",
                ));
            }
        }
        for (k, v) in &meta.metadata {
            if k.is_empty()
                || k.chars().any(|c| c.is_control())
                || v.chars().any(|c| c.is_control())
            {
                return Err(PersistError::invalid_argument(format!(
                    "blob metadata {k:?}: keys must be non-empty and keys and values free of control characters"
                )));
            }
        }
        backend.blob_put(key, meta).await
    }

    pub async fn blob_head(&self, key: String) -> Result<Option<BlobInfo>> {
        let backend = self.open_backend()?;
        validate::name("blob key", &key)?;
        backend.blob_head(key).await
    }

    pub async fn blob_read(
        &self,
        key: String,
        range: ByteRange,
    ) -> Result<Option<Box<dyn BlobReader>>> {
        let backend = self.open_backend()?;
        validate::name("blob key", &key)?;
        if range.end.is_some_and(|end| end < range.start) {
            return Err(PersistError::invalid_argument(
                "range.end must not be less than range.start",
            ));
        }
        backend.blob_read(key, range).await
    }

    pub async fn blob_delete(&self, key: String) -> Result<bool> {
        let backend = self.open_backend()?;
        validate::name("blob key", &key)?;
        backend.blob_delete(key).await
    }

    pub async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        let backend = self.open_backend()?;
        validate::bound("blob list prefix", &prefix)?;
        backend
            .blob_list_page(prefix, after, limit.clamp(1, MAX_PAGE))
            .await
    }

    // ---- events ----

    pub async fn ev_append(
        &self,
        stream: String,
        events: Vec<NewEvent>,
        expected_seq: Option<u64>,
    ) -> Result<u64> {
        let backend = self.open_backend()?;
        validate::name("stream name", &stream)?;
        if events.is_empty() {
            return Err(PersistError::invalid_argument(
                "events.append needs at least one event",
            ));
        }
        for event in &events {
            validate::name("event type", &event.kind)?;
        }
        backend.ev_append(stream, events, expected_seq).await
    }

    pub async fn ev_read_page(
        &self,
        stream: String,
        from: u64,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let backend = self.open_backend()?;
        validate::name("stream name", &stream)?;
        backend
            .ev_read_page(stream, from, reverse, limit.clamp(1, MAX_PAGE))
            .await
    }

    pub async fn ev_streams_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let backend = self.open_backend()?;
        validate::bound("stream prefix", &prefix)?;
        backend
            .ev_streams_page(prefix, after, limit.clamp(1, MAX_PAGE))
            .await
    }

    pub async fn ev_follow_page(
        &self,
        stream: String,
        from: Option<u64>,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<FollowPage> {
        let backend = self.open_backend()?;
        validate::name("stream name", &stream)?;
        backend
            .ev_follow_page(stream, from, cursor, limit.clamp(1, MAX_PAGE))
            .await
    }

    pub async fn ev_wait(&self, stream: String, after_seq: u64, timeout: Duration) -> Result<()> {
        let backend = self.open_backend()?;
        validate::name("stream name", &stream)?;
        backend.ev_wait(stream, after_seq, timeout).await
    }
}

/// What `Store::kv_set_each_now` did: committed, or still running (one result per set).
pub enum SetsDone {
    Now(Vec<Result<KvEntry>>),
    Later(LaterSets),
}

/// Validates each set on its own (see `split_checked`).
fn check_sets(sets: Vec<KvSetRequest>) -> (Vec<Option<Result<KvEntry>>>, Vec<KvSet>) {
    split_checked(
        sets.into_iter()
            .map(|(key, value, ttl, cond)| kv_set_checked(key, value, ttl, cond)),
    )
}

/// The items of a batch that passed their checks, and per item a slot that is None for those
/// (filled by `merge_results`) or the item's own error.
fn split_checked<T, R>(
    checked: impl ExactSizeIterator<Item = Result<T>>,
) -> (Vec<Option<Result<R>>>, Vec<T>) {
    let mut slots = Vec::with_capacity(checked.len());
    let mut valid = Vec::with_capacity(checked.len());
    for item in checked {
        match item {
            Ok(item) => {
                slots.push(None);
                valid.push(item);
            }
            Err(e) => slots.push(Some(Err(e))),
        }
    }
    (slots, valid)
}

/// Fills the slots of the sets (or puts) that passed validation (None) with the backend's results, in order.
fn merge_results<T>(checked: Vec<Option<Result<T>>>, done: Vec<Result<T>>) -> Vec<Result<T>> {
    let mut done = done.into_iter();
    checked
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                done.next()
                    .unwrap_or_else(|| Err(PersistError::internal("missing result")))
            })
        })
        .collect()
}

/// The sets of a batch that failed validation (by position), and the plan for the others.
pub type DirectSetPlan = (Vec<(usize, PersistError)>, SetPlan);

/// A kv set as the binding receives it: key, value (JSON text), ttl, condition.
pub type KvSetRequest = (String, String, Option<f64>, IfVersion<String>);

fn kv_set_checked(
    key: String,
    value: String,
    ttl: Option<f64>,
    if_version: IfVersion<String>,
) -> Result<KvSet> {
    validate::name("kv key", &key)?;
    if value.is_empty() {
        return Err(PersistError::invalid_value("a kv value must be JSON"));
    }
    let ttl_ms = ttl.map(validate::ttl).transpose()?;
    Ok(KvSet {
        key,
        value,
        ttl_ms,
        if_version,
    })
}
