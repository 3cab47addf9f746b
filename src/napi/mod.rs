//! The napi binding: converts JS arguments, calls [`Store`], converts results. No storage logic
//! lives here. index.js wraps these natives into the public API (async iterables, streams,
//! `PersistError`).
//!
//! Errors cross as a reason string `"\u{0}PERSIST" + {"code","message","causeRef"}` that
//! index.js turns into a `PersistError`; anything else reaching JS (a napi conversion failure, a
//! panic caught by napi) becomes `INTERNAL` there.

pub mod js_adapter;
mod json;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Mutex;

use crate::backend::{BlobReader, BlobUpload, LaterSets};
use crate::clock::iso8601;
use crate::error::{PersistError, Result as CoreResult};
use crate::model::{BlobMeta, ByteRange, IfVersion, KvRange, NewEvent, RecordPut};
use crate::store::{KvSetRequest, SetsDone, Store};

pub(crate) const ERROR_TAG: &str = "\u{0}PERSIST";

fn to_js(err: PersistError) -> Error {
    let mut reason = ERROR_TAG.to_string();
    json::error_body(&mut reason, &err);
    Error::new(Status::GenericFailure, reason)
}

trait IntoJs<T> {
    fn js(self) -> Result<T>;
}

impl<T> IntoJs<T> for CoreResult<T> {
    fn js(self) -> Result<T> {
        self.map_err(to_js)
    }
}

/// A JS number that must be a non-negative integer (seqs, versions, offsets).
fn whole(what: &str, value: f64) -> CoreResult<u64> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= 9_007_199_254_740_991.0
    {
        Ok(value as u64)
    } else {
        Err(PersistError::invalid_argument(format!(
            "{what} must be a non-negative integer, got {value}"
        )))
    }
}

fn record_version(value: Option<f64>) -> CoreResult<Option<u64>> {
    value
        .map(|v| match whole("ifVersion", v) {
            Ok(v) if v >= 1 => Ok(v),
            _ => Err(PersistError::invalid_argument(format!(
                "ifVersion must be a positive integer, got {v}"
            ))),
        })
        .transpose()
}

#[napi]
pub struct NativeStore {
    store: Arc<Store>,
    /// Set batches still running after `kvSetBatchNow` returned (see `SetsDone::Later`), by id.
    sets_later: std::sync::Mutex<(u32, std::collections::HashMap<u32, LaterSets>)>,
}

impl NativeStore {
    fn new(store: Store) -> Self {
        NativeStore {
            store: Arc::new(store),
            sets_later: std::sync::Mutex::new((0, std::collections::HashMap::new())),
        }
    }
}

/// Opens a store. `config` is the JSON of the user's config (a custom adapter replaced by
/// `{"$custom": {...}}`); `cwd` anchors relative paths.
#[napi]
pub async fn open_store(config: String, cwd: String) -> Result<NativeStore> {
    let store = Store::open(&config, std::path::Path::new(&cwd))
        .await
        .js()?;
    Ok(NativeStore::new(store))
}

/// Opens a store over a custom adapter: `dispatch` is index.js's dispatcher for the user's
/// object (see `js_adapter`).
#[napi]
pub async fn open_custom_store(
    config: String,
    cwd: String,
    dispatch: js_adapter::Dispatch,
) -> Result<NativeStore> {
    let store = Store::open_custom(&config, std::path::Path::new(&cwd), |timeout| {
        Arc::new(js_adapter::JsKeyValue::new(dispatch, timeout))
    })
    .await
    .js()?;
    Ok(NativeStore::new(store))
}

#[derive(Deserialize)]
struct EventIn {
    #[serde(rename = "type")]
    kind: String,
    data: Option<Box<RawValue>>,
}

#[napi]
impl NativeStore {
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.store.name().to_string()
    }

    #[napi(getter)]
    pub fn adapter(&self) -> String {
        self.store.adapter().to_string()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.store.is_closed()
    }

    #[napi]
    pub async fn close(&self) -> Result<()> {
        self.store.close().await.js()
    }

    // ---- kv ----

    /// `kvGetMany` answered on the JS thread, or null when the backend cannot answer at once
    /// (the caller then takes the async path).
    #[napi(catch_unwind)]
    pub fn kv_get_many_now(&self, keys: Vec<String>) -> Result<Option<String>> {
        match self.store.kv_get_many_now(&keys) {
            None => Ok(None),
            Some(found) => Ok(Some(kv_entries_json(&found.js()?))),
        }
    }

    /// `kv.get`'s fast path for the gets of one tick: a JSON array with, per key, `[value]` or
    /// `0` when absent, answered on this thread when the backend can (see `kvGetManyNow`); null
    /// to take the async path.
    #[napi(catch_unwind)]
    pub fn kv_get_values_now(&self, keys: Vec<String>) -> Result<Option<String>> {
        match self.store.kv_get_many_now(&keys) {
            None => Ok(None),
            Some(found) => Ok(Some(json::array(&found.js()?, |out, entry| match entry {
                Some(entry) => {
                    out.push('[');
                    out.push_str(&entry.value);
                    out.push(']');
                }
                None => out.push('0'),
            }))),
        }
    }

    /// JSON array: an entry or null per key.
    #[napi]
    pub async fn kv_get_many(&self, keys: Vec<String>) -> Result<String> {
        let found = self.store.kv_get_many(keys).await.js()?;
        Ok(kv_entries_json(&found))
    }

    /// Sets issued in the same tick, as one call: `ops` is a JSON array of
    /// `[key, value, ttl|null, ifVersion|null, ifAbsent]`. Returns a JSON array with, per set,
    /// `{"ok": entry}` or `{"err": {code, message, causeRef}}`.
    #[napi]
    pub async fn kv_set_batch(&self, ops: String) -> Result<String> {
        let sets = parse_set_batch(&ops)?;
        let results = self.store.kv_set_each(sets).await.js()?;
        Ok(set_results_json(&results))
    }

    /// `kvSetBatch` committed before it returns, on this thread, when the backend can do that
    /// without waiting (SQLite: a small batch and an idle writer; Postgres: the lane of an idle
    /// store); null: call `kvSetBatch`. A text starting with U+0001 followed by a number means
    /// the sets were sent and are still running: `kvSetBatchLater(number)` gives their results.
    #[napi(catch_unwind)]
    pub fn kv_set_batch_now(&self, ops: String) -> Result<Option<String>> {
        if !self.store.sets_now() {
            return Ok(None);
        }
        let sets = parse_set_batch(&ops)?;
        match self.store.kv_set_each_now(sets) {
            None => Ok(None),
            Some(done) => match done.js()? {
                SetsDone::Now(results) => Ok(Some(set_results_json(&results))),
                SetsDone::Later(later) => {
                    let mut guard = self.sets_later.lock().unwrap_or_else(|e| e.into_inner());
                    let (next, waiting) = &mut *guard;
                    *next = next.wrapping_add(1);
                    waiting.insert(*next, later);
                    Ok(Some(format!("\u{1}{next}")))
                }
            },
        }
    }

    /// The results of sets `kvSetBatchNow` left running (as `kvSetBatch` gives them).
    #[napi]
    pub async fn kv_set_batch_later(&self, id: u32) -> Result<String> {
        let later = self
            .sets_later
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .remove(&id);
        let Some(later) = later else {
            return Err(to_js(PersistError::internal(format!(
                "kvSetBatchLater: no sets under id {id}"
            ))));
        };
        Ok(set_results_json(&later.await))
    }

    // ---- kv on custom adapters, performed by index.js itself (see keyspace::direct) ----

    /// The adapter call bound in ms when index.js may call the adapter itself for plain kv
    /// gets and sets (custom adapters); null otherwise.
    #[napi]
    pub fn kv_direct_timeout_ms(&self) -> Result<Option<f64>> {
        Ok(self
            .store
            .direct_kv()
            .js()?
            .map(|d| d.timeout().as_millis() as f64))
    }

    /// Plans the sets of one tick for index.js to write itself. `ops` is a JSON array of
    /// `[key, ttl|null, ifVersion|null, ifAbsent]` (no values: index.js holds their JSON).
    /// JSON `[ticket, head, planned, deferred, invalid]`: planned `[index, adapterKey,
    /// tail, version, expiresAt|null]`, where `head` + the value's JSON + `tail` is the record
    /// to `put` (its key locked until `kvDirectSetsDone`); deferred the indexes to send
    /// through `kvSetBatch`; invalid `[index, {code, message}]`. Null when the store has no
    /// direct path.
    #[napi]
    pub fn kv_direct_set_plan(&self, ops: String) -> Result<Option<String>> {
        type Op = (String, Option<f64>, Option<String>, bool);
        let parsed: Vec<Op> = serde_json::from_str(&ops)
            .map_err(|e| to_js(PersistError::internal(format!("kvDirectSetPlan: {e}"))))?;
        let sets = parsed
            .into_iter()
            .map(|(key, ttl, if_version, if_absent)| (key, ttl, condition(if_absent, if_version)))
            .collect();
        let Some((invalid, plan)) = self.store.kv_direct_plan(sets).js()? else {
            return Ok(None);
        };
        let mut out = String::with_capacity(64 + plan.planned.len() * 96);
        out.push_str(&format!("[{},", plan.ticket));
        json::push_str(&mut out, crate::keyspace::KV_RECORD_HEAD);
        out.push_str(",[");
        for (n, p) in plan.planned.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&format!("[{},", p.index));
            json::push_str(&mut out, &p.stored_key);
            out.push(',');
            json::push_str(&mut out, &p.record_tail);
            out.push(',');
            json::push_str(&mut out, &p.entry.version);
            out.push(',');
            match p.entry.expires_at {
                Some(at) => json::push_str(&mut out, &iso8601(at)),
                None => out.push_str("null"),
            }
            out.push(']');
        }
        out.push_str("],");
        out.push_str(&serde_json::to_string(&plan.deferred).unwrap_or_default());
        out.push_str(",[");
        for (n, (i, e)) in invalid.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&format!("[{i},"));
            json::error_body(&mut out, e);
            out.push(']');
        }
        out.push_str("]]");
        Ok(Some(out))
    }

    /// The planned sets of `ticket` at these indexes have settled: their keys are unlocked.
    /// Harmless after `close()` or when repeated.
    #[napi]
    pub fn kv_direct_sets_done(&self, ticket: f64, indexes: Vec<u32>) {
        if let Ok(Some(direct)) = self.store.direct_kv() {
            let indexes: Vec<usize> = indexes.into_iter().map(|i| i as usize).collect();
            direct.sets_done(ticket as u64, &indexes);
        }
    }

    /// The adapter keys of `keys` (validated), joined by NUL (which no key holds: cheaper to
    /// split than JSON to parse); null when the store has no direct path.
    #[napi]
    pub fn kv_direct_keys(&self, keys: Vec<String>) -> Result<Option<String>> {
        Ok(self
            .store
            .kv_direct_keys(&keys)
            .js()?
            .map(|stored| stored.join("\0")))
    }

    /// What kv records the adapter returned mean: `keys` are their adapter keys joined by NUL,
    /// `records` a JSON array of the records; per item, `[value]`, `0` (expired) or `{code,
    /// message}` (not a kv record).
    #[napi]
    pub fn kv_direct_values(&self, keys: String, records: String) -> Result<String> {
        let Some(direct) = self.store.direct_kv().js()? else {
            return Err(to_js(PersistError::internal(
                "kvDirectValues: no direct path",
            )));
        };
        let parsed: Vec<&RawValue> = serde_json::from_str(&records)
            .map_err(|e| to_js(PersistError::internal(format!("kvDirectValues: {e}"))))?;
        let keys: Vec<&str> = keys.split('\0').collect();
        if keys.len() != parsed.len() {
            return Err(to_js(PersistError::internal(
                "kvDirectValues: one key per record expected",
            )));
        }
        let mut out = String::with_capacity(16 + records.len());
        out.push('[');
        for (n, (stored_key, record)) in keys.into_iter().zip(parsed).enumerate() {
            if n > 0 {
                out.push(',');
            }
            match direct.value(stored_key, record.get()) {
                Ok(Some(value)) => {
                    out.push('[');
                    out.push_str(&value);
                    out.push(']');
                }
                Ok(None) => out.push('0'),
                Err(e) => json::error_body(&mut out, &e),
            }
        }
        out.push(']');
        Ok(out)
    }

    /// `keys`: a JSON array of strings; `values`: the values' JSON texts joined by NUL (which
    /// JSON text never holds raw); `ttls`: null, or one ttl or null per entry. Two strings
    /// cross instead of two per entry.
    #[napi]
    pub async fn kv_set_many(
        &self,
        keys: String,
        values: String,
        ttls: Option<Vec<Option<f64>>>,
    ) -> Result<()> {
        let keys: Vec<String> = serde_json::from_str(&keys)
            .map_err(|e| to_js(PersistError::internal(format!("kvSetMany: keys: {e}"))))?;
        let values: Vec<&str> = values.split('\0').collect();
        if keys.len() != values.len() || ttls.as_ref().is_some_and(|t| t.len() != keys.len()) {
            return Err(to_js(PersistError::internal(
                "kvSetMany: mismatched argument lengths",
            )));
        }
        let mut ttls = ttls.map(Vec::into_iter);
        let entries = keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| {
                let ttl = ttls.as_mut().and_then(|t| t.next().flatten());
                (k, v.to_string(), ttl)
            })
            .collect();
        self.store.kv_set_many(entries).await.js()
    }

    #[napi]
    pub async fn kv_delete(&self, key: String, if_version: Option<String>) -> Result<bool> {
        self.store.kv_delete(key, if_version).await.js()
    }

    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub async fn kv_list_page(
        &self,
        prefix: String,
        start: Option<String>,
        end: Option<String>,
        reverse: bool,
        after: Option<String>,
        limit: u32,
    ) -> Result<String> {
        let range = KvRange {
            prefix,
            start,
            end,
            reverse,
        };
        let page = self
            .store
            .kv_list_page(range, after, limit as usize)
            .await
            .js()?;
        Ok(json::kv_page(&page))
    }

    /// `kvListPage` answered on this thread when that is quick (see `Store::kv_list_page_now`);
    /// null: call `kvListPage`.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn kv_list_page_now(
        &self,
        prefix: String,
        start: Option<String>,
        end: Option<String>,
        reverse: bool,
        after: Option<String>,
        limit: u32,
    ) -> Result<Option<String>> {
        let range = KvRange {
            prefix,
            start,
            end,
            reverse,
        };
        match self
            .store
            .kv_list_page_now(&range, after.as_deref(), limit as usize)
        {
            None => Ok(None),
            Some(page) => Ok(Some(json::kv_page(&page.js()?))),
        }
    }

    // ---- records ----

    #[napi]
    pub async fn rec_insert(
        &self,
        coll: String,
        data: String,
        id: Option<String>,
    ) -> Result<String> {
        let doc = self.store.rec_insert(coll, data, id).await.js()?;
        Ok(json::one(&doc, json::doc))
    }

    #[napi]
    pub async fn rec_put(
        &self,
        coll: String,
        id: String,
        data: String,
        if_version: Option<f64>,
        if_absent: bool,
    ) -> Result<String> {
        let cond = condition(if_absent, record_version(if_version).js()?);
        let doc = self.store.rec_put(coll, id, data, cond).await.js()?;
        Ok(json::one(&doc, json::doc))
    }

    /// Whether index.js should send the puts of one tick together (`recPutBatch`).
    #[napi]
    pub fn rec_puts_batched(&self) -> bool {
        self.store.batches_rec_puts()
    }

    /// The puts of one tick, as one array per argument of `recPut` (a document's JSON text
    /// arrives as written). Returns a JSON array with, per put, `{"ok": doc}` or `{"err":
    /// {code, message, causeRef}}`.
    #[napi]
    pub async fn rec_put_batch(
        &self,
        colls: Vec<String>,
        ids: Vec<String>,
        datas: Vec<String>,
        if_versions: Vec<Option<f64>>,
        if_absents: Vec<bool>,
    ) -> Result<String> {
        let n = colls.len();
        if [ids.len(), datas.len(), if_versions.len(), if_absents.len()] != [n; 4] {
            return Err(to_js(PersistError::internal(
                "recPutBatch: arrays of different lengths",
            )));
        }
        // A bad ifVersion fails its put alone, like any other invalid put of the batch.
        let puts = colls
            .into_iter()
            .zip(ids)
            .zip(datas)
            .zip(if_versions)
            .zip(if_absents)
            .map(|((((coll, id), data), if_version), if_absent)| {
                record_version(if_version).map(|v| RecordPut {
                    coll,
                    id,
                    data,
                    if_version: condition(if_absent, v),
                })
            })
            .collect();
        let results = self.store.rec_put_each(puts).await.js()?;
        Ok(results_json(&results, json::doc))
    }

    /// `recGet` answered on the JS thread: null = take the async path, "" = absent, else the
    /// document's JSON.
    #[napi(catch_unwind)]
    pub fn rec_get_now(&self, coll: String, id: String) -> Result<Option<String>> {
        match self.store.rec_get_now(&coll, &id) {
            None => Ok(None),
            Some(doc) => Ok(Some(
                doc.js()?
                    .map_or_else(String::new, |d| json::one(&d, json::doc)),
            )),
        }
    }

    #[napi]
    pub async fn rec_get(&self, coll: String, id: String) -> Result<Option<String>> {
        let doc = self.store.rec_get(coll, id).await.js()?;
        Ok(doc.map(|d| json::one(&d, json::doc)))
    }

    #[napi]
    pub async fn rec_update(
        &self,
        coll: String,
        id: String,
        patch: String,
        if_version: Option<f64>,
    ) -> Result<String> {
        let doc = self
            .store
            .rec_update(coll, id, patch, record_version(if_version).js()?)
            .await
            .js()?;
        Ok(json::one(&doc, json::doc))
    }

    #[napi]
    pub async fn rec_delete(
        &self,
        coll: String,
        id: String,
        if_version: Option<f64>,
    ) -> Result<bool> {
        self.store
            .rec_delete(coll, id, record_version(if_version).js()?)
            .await
            .js()
    }

    /// A page of documents, flat (`json::doc_page`).
    #[napi]
    pub async fn rec_find_page(
        &self,
        coll: String,
        query: String,
        resume_id: Option<String>,
        resume_data: Option<String>,
        limit: u32,
    ) -> Result<String> {
        let resume = resume_id.zip(resume_data);
        let docs = self
            .store
            .rec_find_page(coll, &query, resume, limit as usize)
            .await
            .js()?;
        Ok(json::doc_page(&docs))
    }

    /// `recFindPage` answered on this thread when that is quick (see
    /// `Store::rec_find_page_now`); null: call `recFindPage`.
    #[napi(catch_unwind)]
    pub fn rec_find_page_now(
        &self,
        coll: String,
        query: String,
        resume_id: Option<String>,
        resume_data: Option<String>,
        limit: u32,
    ) -> Result<Option<String>> {
        let resume = resume_id.zip(resume_data);
        match self
            .store
            .rec_find_page_now(&coll, &query, resume, limit as usize)
        {
            None => Ok(None),
            Some(docs) => Ok(Some(json::doc_page(&docs.js()?))),
        }
    }

    #[napi]
    pub async fn rec_count(&self, coll: String, filter: Option<String>) -> Result<f64> {
        Ok(self.store.rec_count(coll, filter.as_deref()).await.js()? as f64)
    }

    #[napi]
    pub async fn rec_ensure_index(&self, coll: String, field: String) -> Result<()> {
        self.store.rec_ensure_index(coll, field).await.js()
    }

    // ---- blobs ----

    #[napi]
    pub async fn blob_put(
        &self,
        key: String,
        content_type: Option<String>,
        metadata: Option<String>,
    ) -> Result<NativeBlobUpload> {
        let meta = blob_meta(content_type, metadata)?;
        let upload = self.store.blob_put(key, meta).await.js()?;
        Ok(NativeBlobUpload {
            upload: Arc::new(Mutex::new(Some(upload))),
        })
    }

    /// A whole small body (JS sends at most one write's worth) in one call instead of three
    /// (put, write, commit): each call is a task and a hop back to the JS thread.
    #[napi]
    pub async fn blob_put_bytes(
        &self,
        key: String,
        content_type: Option<String>,
        metadata: Option<String>,
        body: Buffer,
    ) -> Result<String> {
        let meta = blob_meta(content_type, metadata)?;
        let mut upload = self.store.blob_put(key, meta).await.js()?;
        let written = if body.is_empty() {
            Ok(())
        } else {
            upload.write(body.to_vec()).await
        };
        if let Err(e) = written {
            let _ = upload.abort().await;
            return Err(to_js(e));
        }
        let info = upload.commit().await.js()?;
        Ok(json::one(&info, json::blob_info))
    }

    /// A whole blob (or range) in one call, for `blobs.get`: null when absent.
    #[napi]
    pub async fn blob_get_bytes(
        &self,
        key: String,
        start: f64,
        end: Option<f64>,
    ) -> Result<Option<Buffer>> {
        let range = byte_range(start, end)?;
        let Some(mut reader) = self.store.blob_read(key, range).await.js()? else {
            return Ok(None);
        };
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.js()? {
            if body.is_empty() {
                body = chunk;
            } else {
                body.extend_from_slice(&chunk);
            }
        }
        Ok(Some(Buffer::from(body)))
    }

    #[napi]
    pub async fn blob_head(&self, key: String) -> Result<Option<String>> {
        let info = self.store.blob_head(key).await.js()?;
        Ok(info.map(|i| json::one(&i, json::blob_info)))
    }

    #[napi]
    pub async fn blob_open(
        &self,
        key: String,
        start: f64,
        end: Option<f64>,
    ) -> Result<Option<NativeBlobReader>> {
        let range = byte_range(start, end)?;
        let reader = self.store.blob_read(key, range).await.js()?;
        Ok(reader.map(|r| {
            let info = json::one(r.info(), json::blob_info);
            NativeBlobReader {
                reader: Arc::new(Mutex::new(r)),
                info,
            }
        }))
    }

    #[napi]
    pub async fn blob_delete(&self, key: String) -> Result<bool> {
        self.store.blob_delete(key).await.js()
    }

    #[napi]
    pub async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<String> {
        let page = self
            .store
            .blob_list_page(prefix, after, limit as usize)
            .await
            .js()?;
        Ok(json::array(&page, json::blob_info))
    }

    // ---- events ----

    /// `events`: JSON array of `{type, data?}`. Returns the last seq.
    #[napi]
    pub async fn ev_append(
        &self,
        stream: String,
        events: String,
        expected_seq: Option<f64>,
    ) -> Result<f64> {
        let parsed: Vec<EventIn> = serde_json::from_str(&events).map_err(|e| {
            to_js(PersistError::invalid_argument(format!(
                "events must be {{ type, data? }} objects: {e}"
            )))
        })?;
        let events = parsed
            .into_iter()
            .map(|e| NewEvent {
                kind: e.kind,
                data: e
                    .data
                    .map_or_else(|| "null".to_string(), |d| d.get().to_string()),
            })
            .collect();
        let expected = expected_seq
            .map(|s| whole("expectedSeq", s))
            .transpose()
            .js()?;
        Ok(self.store.ev_append(stream, events, expected).await.js()? as f64)
    }

    #[napi]
    pub async fn ev_read_page(
        &self,
        stream: String,
        from: f64,
        reverse: bool,
        limit: u32,
    ) -> Result<String> {
        let from = whole("from", from).js()?;
        let page = self
            .store
            .ev_read_page(stream, from, reverse, limit as usize)
            .await
            .js()?;
        Ok(json::array(&page, json::event))
    }

    #[napi]
    pub async fn ev_streams_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<String> {
        let page = self
            .store
            .ev_streams_page(prefix, after, limit as usize)
            .await
            .js()?;
        Ok(json::strings(&page))
    }

    /// A subscription's next page. JSON `{ events, cursor, waitAfter }`: `cursor` goes into the
    /// next call; when `events` is empty, wait with `evWait(stream, waitAfter)` first. `from`:
    /// the first seq (without a cursor), null for the end of the stream.
    #[napi]
    pub async fn ev_follow_page(
        &self,
        stream: String,
        from: Option<f64>,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<String> {
        let from = from.map(|f| whole("from", f)).transpose().js()?;
        let page = self
            .store
            .ev_follow_page(stream, from, cursor, limit as usize)
            .await
            .js()?;
        let mut out = String::from("{\"events\":");
        out.push_str(&json::array(&page.events, json::event));
        out.push_str(",\"cursor\":");
        out.push_str(&serde_json::Value::String(page.cursor).to_string());
        out.push_str(&format!(",\"waitAfter\":{}}}", page.wait_after));
        Ok(out)
    }

    #[napi]
    pub async fn ev_wait(&self, stream: String, after_seq: f64, timeout_ms: u32) -> Result<()> {
        let after = whole("seq", after_seq).js()?;
        self.store
            .ev_wait(stream, after, Duration::from_millis(timeout_ms.into()))
            .await
            .js()
    }
}

/// BlobMeta from `blobs.put` options (metadata as a JSON object of strings).
fn blob_meta(content_type: Option<String>, metadata: Option<String>) -> Result<BlobMeta> {
    let metadata: BTreeMap<String, String> = match metadata {
        Some(m) => serde_json::from_str(&m).map_err(|_| {
            to_js(PersistError::invalid_argument(
                "blob metadata must be an object of string values",
            ))
        })?,
        None => BTreeMap::new(),
    };
    Ok(BlobMeta {
        content_type,
        metadata,
    })
}

fn kv_entries_json(found: &[Option<crate::model::KvEntry>]) -> String {
    json::array(found, |out, e| match e {
        Some(e) => json::kv_entry(out, e),
        None => out.push_str("null"),
    })
}

#[napi]
pub struct NativeBlobUpload {
    upload: Arc<Mutex<Option<Box<dyn BlobUpload>>>>,
}

#[napi]
impl NativeBlobUpload {
    #[napi]
    pub async fn write(&self, chunk: Buffer) -> Result<()> {
        let chunk: Vec<u8> = chunk.to_vec();
        let mut guard = self.upload.lock().await;
        let upload = guard.as_mut().ok_or_else(|| {
            to_js(PersistError::invalid_argument(
                "the blob upload is finished",
            ))
        })?;
        upload.write(chunk).await.js()
    }

    #[napi]
    pub async fn commit(&self) -> Result<String> {
        let upload = self.upload.lock().await.take();
        let upload = upload.ok_or_else(|| {
            to_js(PersistError::invalid_argument(
                "the blob upload is finished",
            ))
        })?;
        let info = upload.commit().await.js()?;
        Ok(json::one(&info, json::blob_info))
    }

    #[napi]
    pub async fn abort(&self) -> Result<()> {
        let upload = self.upload.lock().await.take();
        match upload {
            Some(upload) => upload.abort().await.js(),
            None => Ok(()),
        }
    }
}

#[napi]
pub struct NativeBlobReader {
    reader: Arc<Mutex<Box<dyn BlobReader>>>,
    info: String,
}

#[napi]
impl NativeBlobReader {
    #[napi(getter)]
    pub fn info(&self) -> String {
        self.info.clone()
    }

    /// The next chunk, or null at the end.
    #[napi]
    pub async fn next(&self) -> Result<Option<Buffer>> {
        let mut reader = self.reader.lock().await;
        Ok(reader.next_chunk().await.js()?.map(Buffer::from))
    }
}

// ---- store.sync (p2p stores) ----

fn sync_of(store: &Store) -> CoreResult<Arc<dyn crate::p2p::SyncHandle>> {
    if store.is_closed() {
        return Err(PersistError::closed());
    }
    store
        .sync()
        .ok_or_else(|| PersistError::invalid_argument("store.sync exists on p2p stores only"))
}

#[napi]
impl NativeStore {
    /// This peer's id (p2p stores), else null.
    #[napi]
    pub fn sync_peer_id(&self) -> Option<String> {
        self.store.sync().map(|s| s.peer_id())
    }

    /// JSON: `[{ peerId, addresses, connected, bytesSent, bytesReceived }]`.
    #[napi]
    pub async fn sync_peers(&self) -> Result<String> {
        let sync = sync_of(&self.store).js()?;
        let list: Vec<serde_json::Value> = sync
            .peers()
            .into_iter()
            .map(|p| {
                serde_json::json!({
                    "peerId": p.peer_id,
                    "addresses": p.addresses,
                    "connected": p.connected,
                    "bytesSent": p.bytes_sent,
                    "bytesReceived": p.bytes_received,
                })
            })
            .collect();
        Ok(serde_json::Value::Array(list).to_string())
    }

    #[napi]
    pub async fn sync_wait_for(&self, peers: f64, timeout_ms: f64) -> Result<()> {
        let sync = sync_of(&self.store).js()?;
        sync.wait_for(
            peers.max(0.0) as usize,
            std::time::Duration::from_millis(timeout_ms.max(0.0) as u64),
        )
        .await
        .js()
    }

    /// JSON `{ event: "peer" | "synced", peerId }`, or null when none came within `timeout_ms`.
    #[napi]
    pub async fn sync_next_event(&self, timeout_ms: f64) -> Result<Option<String>> {
        let sync = sync_of(&self.store).js()?;
        let ev = sync
            .next_event(std::time::Duration::from_millis(timeout_ms.max(0.0) as u64))
            .await;
        Ok(ev.map(|ev| {
            let (event, peer) = match ev {
                crate::p2p::SyncEvent::Peer(p) => ("peer", p),
                crate::p2p::SyncEvent::Synced(p) => ("synced", p),
            };
            serde_json::json!({ "event": event, "peerId": peer }).to_string()
        }))
    }
}

/// The condition index.js sends as `ifAbsent` (the user's `ifVersion: null`) and `ifVersion`.
fn condition<V>(if_absent: bool, if_version: Option<V>) -> IfVersion<V> {
    match (if_absent, if_version) {
        (true, _) => IfVersion::Absent,
        (false, Some(v)) => IfVersion::Is(v),
        (false, None) => IfVersion::Any,
    }
}

/// `ops` of `kvSetBatch`: a JSON array of `[key, value, ttl|null, ifVersion|null, ifAbsent]`.
fn parse_set_batch(ops: &str) -> Result<Vec<KvSetRequest>> {
    type Op = (String, Box<RawValue>, Option<f64>, Option<String>, bool);
    let parsed: Vec<Op> = serde_json::from_str(ops)
        .map_err(|e| to_js(PersistError::internal(format!("kvSetBatch: {e}"))))?;
    Ok(parsed
        .into_iter()
        .map(|(key, value, ttl, if_version, if_absent)| {
            (
                key,
                value.get().to_string(),
                ttl,
                condition(if_absent, if_version),
            )
        })
        .collect())
}

/// Per set, `{"ok": entry}` or `{"err": {code, message, causeRef}}`.
fn set_results_json(results: &[CoreResult<crate::model::KvEntry>]) -> String {
    results_json(results, json::kv_entry)
}

/// Per operation of a batch, `{"ok": …}` (written by `ok`) or `{"err": {code, message,
/// causeRef}}`.
fn results_json<T>(results: &[CoreResult<T>], ok: fn(&mut String, &T)) -> String {
    json::array(results, |out, r| match r {
        Ok(value) => {
            out.push_str("{\"ok\":");
            ok(out, value);
            out.push('}');
        }
        Err(e) => {
            out.push_str("{\"err\":");
            json::error_body(out, e);
            out.push('}');
        }
    })
}

/// A `{ start, end }` range from JS numbers (whole, non-negative; `end` exclusive).
fn byte_range(start: f64, end: Option<f64>) -> Result<ByteRange> {
    Ok(ByteRange {
        start: whole("range.start", start).js()?,
        end: end.map(|e| whole("range.end", e)).transpose().js()?,
    })
}
