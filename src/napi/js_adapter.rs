//! A custom adapter written in JavaScript, as a `KeyValue` for the keyspace backend.
//!
//! Every call goes through one thread-safe function: index.js's dispatcher, which calls the
//! user's method (bound to its object), catches sync throws and rejections, checks result
//! types, and always resolves with an `AdapterReply`. So nothing the adapter does can throw
//! into Rust or crash the process; a call that never settles ends in TIMEOUT.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::error::{ErrorCode, PersistError, Result as CoreResult};
use crate::keyspace::{KeyLister, KeyValue, Stored};

#[napi(object)]
pub struct AdapterCall {
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
pub type Dispatch =
    ThreadsafeFunction<AdapterCall, Promise<AdapterReply>, AdapterCall, Status, false, true>;

pub struct JsKeyValue {
    dispatch: Arc<Dispatch>,
    timeout: Duration,
}

impl JsKeyValue {
    pub fn new(dispatch: Dispatch, timeout: Duration) -> Self {
        JsKeyValue {
            dispatch: Arc::new(dispatch),
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
        let call = AdapterCall {
            op: op.to_string(),
            key: key.to_string(),
            json,
            bytes: bytes.map(Buffer::from),
            list,
        };
        let dispatch = self.dispatch.clone();
        let settled = async move { dispatch.call_async(call).await?.await };
        let reply = match tokio::time::timeout(self.timeout, settled).await {
            Err(_) => {
                return Err(PersistError::new(
                    ErrorCode::Timeout,
                    format!(
                        "the custom adapter's {} did not settle within {} ms",
                        Self::describe(op, key),
                        self.timeout.as_millis()
                    ),
                ))
            }
            Ok(Err(err)) => {
                return Err(PersistError::new(
                    ErrorCode::Adapter,
                    format!(
                        "the custom adapter's {} could not be called: {err}",
                        Self::describe(op, key)
                    ),
                ))
            }
            Ok(Ok(reply)) => reply,
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
                dispatch: self.dispatch.clone(),
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
        let call = AdapterCall {
            op: "listClose".into(),
            key: self.prefix.clone(),
            json: None,
            bytes: None,
            list: Some(self.id),
        };
        let _ = self
            .adapter
            .dispatch
            .call(call, ThreadsafeFunctionCallMode::NonBlocking);
    }
}
