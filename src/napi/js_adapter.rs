//! A custom adapter written in JavaScript, as a `KeyValue` for the keyspace backend.
//!
//! Calls go to index.js's dispatcher through one thread-safe function, in batches: every call
//! made while a batch is being formed (64 concurrent gets, say) crosses to the JS thread in
//! one hop, as one JSON text (values inside it as JSON, so the one `JSON.parse` of the batch
//! hands the adapter its objects) plus the blob chunks as Buffers. The dispatcher calls the
//! user's methods (bound to their object), catches sync throws and rejections, checks result
//! types, and reports each call's reply as soon as it settles — the replies of one tick go back
//! through `adapter_replies` as one JSON text — so a slow or hanging call holds up no other.
//! Nothing the adapter does can throw into Rust or crash the process; a call that never
//! settles ends in TIMEOUT.
//!
//! Calls, in the batch's JSON array: `[id, op, key]` plus, for `put`, the value (JSON) or, for
//! `putBytes`, the index of its Buffer; for `listNext`/`listClose`, the list id. Replies: `[id]`
//! (done, nothing to return), `[id, 1, value]`, `[id, 2, bufferIndex]`, `[id, 3, message,
//! causeRef]` (the adapter failed), `[id, 4, listId]`, `[id, 5, [[key, value], ...], done]`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::error::{ErrorCode, PersistError, Result as CoreResult};
use crate::keyspace::{KeyLister, KeyValue, Stored};

/// One batch of calls as it reaches the dispatcher.
#[napi(object)]
pub struct AdapterBatch {
    /// JSON array of calls (see the module docs).
    pub calls: String,
    /// The blob chunks the calls refer to by index.
    pub bytes: Vec<Buffer>,
}

/// Weak: a store's adapter never keeps the Node process alive by itself.
pub type Dispatch = ThreadsafeFunction<AdapterBatch, (), AdapterBatch, Status, false, true>;

/// What a call's reply carried.
enum Reply {
    Done,
    Json(String),
    Bytes(Vec<u8>),
    Failed {
        message: String,
        cause_ref: Option<u32>,
    },
    ListOpened(u32),
    ListPage {
        items: String,
        done: bool,
    },
}

/// Calls waiting for their reply, by id, across every custom adapter of the process.
static WAITING: Mutex<Option<HashMap<u32, oneshot::Sender<Reply>>>> = Mutex::new(None);
static NEXT_CALL_ID: AtomicU32 = AtomicU32::new(1);

fn waiting<R>(f: impl FnOnce(&mut HashMap<u32, oneshot::Sender<Reply>>) -> R) -> R {
    let mut guard = WAITING.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// index.js reports settled adapter calls here, a tick's worth at a time: `replies` is a JSON
/// array of replies (see the module docs), `bytes` the Buffers they refer to.
#[napi]
pub fn adapter_replies(replies: String, bytes: Vec<Buffer>) -> Result<()> {
    let parsed: Vec<Vec<&RawValue>> = serde_json::from_str(&replies)
        .map_err(|e| Error::from_reason(format!("adapterReplies: malformed replies: {e}")))?;
    let mut bytes: Vec<Option<Vec<u8>>> = bytes.into_iter().map(|b| Some(b.to_vec())).collect();
    let decoded: Vec<(u32, Reply)> = parsed
        .into_iter()
        .filter_map(|fields| decode_reply(&fields, &mut bytes))
        .collect();
    waiting(|map| {
        for (id, reply) in decoded {
            if let Some(tx) = map.remove(&id) {
                let _ = tx.send(reply);
            }
        }
    });
    Ok(())
}

fn decode_reply(fields: &[&RawValue], bytes: &mut [Option<Vec<u8>>]) -> Option<(u32, Reply)> {
    let number = |i: usize| -> Option<u64> { serde_json::from_str(fields.get(i)?.get()).ok() };
    let id = number(0)? as u32;
    let reply = match number(1) {
        None => Reply::Done,
        Some(1) => Reply::Json(fields.get(2)?.get().to_string()),
        Some(2) => Reply::Bytes(bytes.get_mut(number(2)? as usize)?.take()?),
        Some(3) => Reply::Failed {
            message: serde_json::from_str(fields.get(2)?.get()).unwrap_or_default(),
            cause_ref: number(3).map(|r| r as u32),
        },
        Some(4) => Reply::ListOpened(number(2)? as u32),
        Some(5) => Reply::ListPage {
            items: fields.get(2)?.get().to_string(),
            done: fields.get(3).is_none_or(|d| d.get() != "false"),
        },
        Some(_) => return None,
    };
    Some((id, reply))
}

/// A call waiting in the batch being formed.
struct Call {
    id: u32,
    op: &'static str,
    key: String,
    json: Option<String>,
    bytes: Option<Vec<u8>>,
    list: Option<u32>,
}

/// Forms batches: the first call of a batch schedules its send after the calls made in the
/// same turn have joined it.
struct Batcher {
    dispatch: Dispatch,
    queue: Mutex<Vec<Call>>,
}

impl Batcher {
    fn submit(self: &Arc<Self>, call: Call) {
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(call);
            queue.len() == 1
        };
        if first {
            let me = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        tokio::task::yield_now().await;
                        me.flush();
                    });
                }
                Err(_) => me.flush(),
            }
        }
    }

    fn flush(&self) {
        let calls = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        if calls.is_empty() {
            return;
        }
        let ids: Vec<u32> = calls.iter().map(|c| c.id).collect();
        let batch = encode_batch(calls);
        let status = self
            .dispatch
            .call(batch, ThreadsafeFunctionCallMode::NonBlocking);
        if status != Status::Ok {
            // The JS side is gone (the environment is shutting down): fail the calls now.
            waiting(|map| {
                for id in ids {
                    if let Some(tx) = map.remove(&id) {
                        let _ = tx.send(Reply::Failed {
                            message: format!("the adapter cannot be called ({status})"),
                            cause_ref: None,
                        });
                    }
                }
            });
        }
    }
}

fn encode_batch(calls: Vec<Call>) -> AdapterBatch {
    let mut text = String::with_capacity(
        2 + calls
            .iter()
            .map(|c| 32 + c.key.len() + c.json.as_ref().map_or(0, String::len))
            .sum::<usize>(),
    );
    let mut bytes = Vec::new();
    text.push('[');
    for (i, call) in calls.into_iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let key = serde_json::to_string(&call.key).unwrap_or_else(|_| "\"\"".into());
        let _ = write!(text, "[{},\"{}\",{key}", call.id, call.op);
        if let Some(json) = &call.json {
            text.push(',');
            text.push_str(json);
        } else if let Some(chunk) = call.bytes {
            let _ = write!(text, ",{}", bytes.len());
            bytes.push(Buffer::from(chunk));
        } else if let Some(list) = call.list {
            let _ = write!(text, ",{list}");
        }
        text.push(']');
    }
    text.push(']');
    AdapterBatch { calls: text, bytes }
}

pub struct JsKeyValue {
    batcher: Arc<Batcher>,
    timeout: Duration,
}

impl JsKeyValue {
    pub fn new(dispatch: Dispatch, timeout: Duration) -> Self {
        let batcher = Batcher {
            dispatch,
            queue: Mutex::new(Vec::new()),
        };
        JsKeyValue {
            batcher: Arc::new(batcher),
            timeout,
        }
    }

    fn describe(op: &str, key: &str) -> String {
        match op {
            "listOpen" | "listNext" => format!("list({key:?})"),
            "putBytes" => format!("put({key:?})"),
            _ => format!("{op}({key:?})"),
        }
    }

    async fn call(
        &self,
        op: &'static str,
        key: &str,
        json: Option<String>,
        bytes: Option<Vec<u8>>,
        list: Option<u32>,
    ) -> CoreResult<Reply> {
        let id = loop {
            let id = NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                break id;
            }
        };
        let (tx, rx) = oneshot::channel();
        waiting(|map| map.insert(id, tx));
        self.batcher.submit(Call {
            id,
            op,
            key: key.to_string(),
            json,
            bytes,
            list,
        });
        let reply = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => {
                return Err(PersistError::new(
                    ErrorCode::Adapter,
                    format!(
                        "the custom adapter's {} was dropped unanswered",
                        Self::describe(op, key)
                    ),
                ))
            }
            Err(_) => {
                waiting(|map| map.remove(&id));
                return Err(PersistError::new(
                    ErrorCode::Timeout,
                    timeout_message(op, key, self.timeout.as_millis() as f64),
                ));
            }
        };
        if let Reply::Failed { message, cause_ref } = reply {
            let mut err = PersistError::new(ErrorCode::Adapter, failure_message(op, key, &message));
            err.cause_ref = cause_ref;
            return Err(err);
        }
        Ok(reply)
    }
}

fn failure_message(op: &str, key: &str, message: &str) -> String {
    format!(
        "the custom adapter's {} failed: {message}",
        JsKeyValue::describe(op, key)
    )
}

fn timeout_message(op: &str, key: &str, timeout_ms: f64) -> String {
    format!(
        "the custom adapter's {} did not settle within {timeout_ms} ms",
        JsKeyValue::describe(op, key)
    )
}

/// The message of a failed adapter call that index.js made itself (the direct kv path), in the
/// same words as the calls made through the core.
#[napi]
pub fn adapter_failure_message(op: String, key: String, message: String) -> String {
    failure_message(&op, &key, &message)
}

/// The message of an adapter call of index.js's direct kv path that did not settle in time.
#[napi]
pub fn adapter_timeout_message(op: String, key: String, timeout_ms: f64) -> String {
    timeout_message(&op, &key, timeout_ms)
}

fn unexpected(what: &str) -> PersistError {
    PersistError::internal(format!(
        "the adapter dispatcher gave an unexpected reply to {what}"
    ))
}

#[async_trait]
impl KeyValue for JsKeyValue {
    fn kind(&self) -> &'static str {
        "custom"
    }

    fn call_timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    async fn get(&self, key: &str) -> CoreResult<Option<Stored>> {
        match self.call("get", key, None, None, None).await? {
            Reply::Done => Ok(None),
            Reply::Json(json) => Ok(Some(Stored::Json(json))),
            Reply::Bytes(bytes) => Ok(Some(Stored::Bytes(bytes))),
            _ => Err(unexpected("get")),
        }
    }

    async fn put(&self, key: &str, value: Stored) -> CoreResult<()> {
        match value {
            Stored::Json(json) => self.call("put", key, Some(json), None, None).await?,
            Stored::Bytes(bytes) => self.call("putBytes", key, None, Some(bytes), None).await?,
        };
        Ok(())
    }

    async fn delete(&self, key: &str) -> CoreResult<()> {
        self.call("delete", key, None, None, None).await?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> CoreResult<Box<dyn KeyLister>> {
        let Reply::ListOpened(id) = self.call("listOpen", prefix, None, None, None).await? else {
            return Err(unexpected("listOpen"));
        };
        Ok(Box::new(JsLister {
            adapter: JsKeyValue {
                batcher: self.batcher.clone(),
                timeout: self.timeout,
            },
            prefix: prefix.to_string(),
            id,
            done: false,
        }))
    }
}

struct JsLister {
    adapter: JsKeyValue,
    prefix: String,
    id: u32,
    done: bool,
}

#[async_trait]
impl KeyLister for JsLister {
    async fn next_page(&mut self) -> CoreResult<Option<Vec<(String, Stored)>>> {
        if self.done {
            return Ok(None);
        }
        let reply = self
            .adapter
            .call("listNext", &self.prefix, None, None, Some(self.id))
            .await;
        let (items, done) = match reply {
            Ok(Reply::ListPage { items, done }) => (items, done),
            Ok(_) => {
                self.done = true;
                return Err(unexpected("listNext"));
            }
            Err(err) => {
                self.done = true;
                return Err(err);
            }
        };
        self.done = done;
        let items: Vec<(String, Box<RawValue>)> = serde_json::from_str(&items).map_err(|e| {
            PersistError::internal(format!("listNext returned malformed items: {e}"))
        })?;
        Ok(Some(
            items
                .into_iter()
                .map(|(k, v)| (k, Stored::Json(v.get().to_string())))
                .collect(),
        ))
    }
}

impl Drop for JsLister {
    fn drop(&mut self) {
        // Lets the adapter's iterator finish (its `return()`), whether or not we read it all.
        self.adapter.batcher.submit(Call {
            id: 0,
            op: "listClose",
            key: self.prefix.clone(),
            json: None,
            bytes: None,
            list: Some(self.id),
        });
    }
}
