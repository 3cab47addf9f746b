//! A custom adapter written in JavaScript, as a `KeyValue` for the keyspace backend.
//!
//! Calls go to index.js's dispatcher through one thread-safe function, in batches: every call
//! made while a batch is being formed (64 concurrent gets, say) crosses to the JS thread in
//! one hop. The dispatcher calls the user's methods (bound to their object), catches sync
//! throws and rejections, checks result types, and reports each call's reply on its own
//! through `adapterReplies` as soon as it settles — so a slow or hanging call holds up no
//! other. Nothing the adapter does can throw into Rust or crash the process; a call that never
//! settles ends in TIMEOUT.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use tokio::sync::oneshot;

use crate::error::{ErrorCode, PersistError, Result as CoreResult};
use crate::keyspace::{KeyLister, KeyValue, Stored};

#[napi(object)]
pub struct AdapterCall {
    /// Where the reply goes (see `adapter_replies`); 0 for calls that want none.
    pub id: u32,
    /// `get`, `put`, `delete`, `listOpen`, `listNext`, `listClose`.
    pub op: String,
    pub key: String,
    pub json: Option<String>,
    pub bytes: Option<Buffer>,
    pub list: Option<u32>,
}

#[napi(object)]
pub struct AdapterReply {
    pub json: Option<String>,
    pub bytes: Option<Buffer>,
    /// Set when the adapter failed: what happened, and where index.js keeps the thrown value.
    pub error: Option<String>,
    pub cause_ref: Option<u32>,
    pub list: Option<u32>,
    /// `listNext`: JSON array of `[key, value]`.
    pub items: Option<String>,
    pub done: Option<bool>,
}

/// Weak: a store's adapter never keeps the Node process alive by itself.
pub type Dispatch = ThreadsafeFunction<Vec<AdapterCall>, (), Vec<AdapterCall>, Status, false, true>;

/// Calls waiting for their reply, by id, across every custom adapter of the process.
static WAITING: Mutex<Option<HashMap<u32, oneshot::Sender<AdapterReply>>>> = Mutex::new(None);
static NEXT_CALL_ID: AtomicU32 = AtomicU32::new(1);

fn waiting<R>(f: impl FnOnce(&mut HashMap<u32, oneshot::Sender<AdapterReply>>) -> R) -> R {
    let mut guard = WAITING.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// index.js reports settled adapter calls here, a tick's worth at a time.
#[napi]
pub fn adapter_replies(ids: Vec<u32>, replies: Vec<AdapterReply>) {
    waiting(|map| {
        for (id, reply) in ids.into_iter().zip(replies) {
            if let Some(tx) = map.remove(&id) {
                let _ = tx.send(reply);
            }
        }
    });
}

/// Forms batches: the first call of a batch schedules its send after the calls made in the
/// same turn have joined it.
struct Batcher {
    dispatch: Dispatch,
    queue: Mutex<Vec<AdapterCall>>,
}

impl Batcher {
    fn submit(self: &Arc<Self>, call: AdapterCall) {
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
        let status = self
            .dispatch
            .call(calls, ThreadsafeFunctionCallMode::NonBlocking);
        if status != Status::Ok {
            // The JS side is gone (the environment is shutting down): fail the calls now.
            waiting(|map| {
                for id in ids {
                    if let Some(tx) = map.remove(&id) {
                        let _ = tx.send(AdapterReply {
                            error: Some(format!("the adapter cannot be called ({status})")),
                            json: None,
                            bytes: None,
                            cause_ref: None,
                            list: None,
                            items: None,
                            done: None,
                        });
                    }
                }
            });
        }
    }
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
            _ => format!("{op}({key:?})"),
        }
    }

    async fn call(
        &self,
        op: &str,
        key: &str,
        json: Option<String>,
        bytes: Option<Vec<u8>>,
        list: Option<u32>,
    ) -> CoreResult<AdapterReply> {
        let id = loop {
            let id = NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                break id;
            }
        };
        let (tx, rx) = oneshot::channel();
        waiting(|map| map.insert(id, tx));
        self.batcher.submit(AdapterCall {
            id,
            op: op.to_string(),
            key: key.to_string(),
            json,
            bytes: bytes.map(Buffer::from),
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
                    format!(
                        "the custom adapter's {} did not settle within {} ms",
                        Self::describe(op, key),
                        self.timeout.as_millis()
                    ),
                ));
            }
        };
        if let Some(message) = &reply.error {
            let mut err = PersistError::new(
                ErrorCode::Adapter,
                format!(
                    "the custom adapter's {} failed: {message}",
                    Self::describe(op, key)
                ),
            );
            err.cause_ref = reply.cause_ref;
            return Err(err);
        }
        Ok(reply)
    }
}

#[async_trait]
impl KeyValue for JsKeyValue {
    fn kind(&self) -> &'static str {
        "custom"
    }

    async fn get(&self, key: &str) -> CoreResult<Option<Stored>> {
        let reply = self.call("get", key, None, None, None).await?;
        Ok(match (reply.json, reply.bytes) {
            (_, Some(bytes)) => Some(Stored::Bytes(bytes.to_vec())),
            (Some(json), None) => Some(Stored::Json(json)),
            (None, None) => None,
        })
    }

    async fn put(&self, key: &str, value: Stored) -> CoreResult<()> {
        match value {
            Stored::Json(json) => self.call("put", key, Some(json), None, None).await?,
            Stored::Bytes(bytes) => self.call("put", key, None, Some(bytes), None).await?,
        };
        Ok(())
    }

    async fn delete(&self, key: &str) -> CoreResult<()> {
        self.call("delete", key, None, None, None).await?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> CoreResult<Box<dyn KeyLister>> {
        let reply = self.call("listOpen", prefix, None, None, None).await?;
        let id = reply
            .list
            .ok_or_else(|| PersistError::internal("listOpen returned no list id"))?;
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
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                self.done = true;
                return Err(err);
            }
        };
        self.done = reply.done.unwrap_or(true);
        let items: Vec<(String, Box<serde_json::value::RawValue>)> =
            serde_json::from_str(reply.items.as_deref().unwrap_or("[]")).map_err(|e| {
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
        self.adapter.batcher.submit(AdapterCall {
            id: 0,
            op: "listClose".into(),
            key: self.prefix.clone(),
            json: None,
            bytes: None,
            list: Some(self.id),
        });
    }
}
