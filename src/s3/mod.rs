//! The S3 adapter: a [`KeyValue`] over one bucket and prefix, used through the generic
//! [`KeyspaceBackend`](crate::keyspace::KeyspaceBackend), with the optional capabilities
//! S3 has: conditional writes (`If-None-Match: *`, `If-Match`), listing in key order, and
//! blobs as real objects (`blobs.rs`).
//!
//! Objects under the prefix:
//! ```text
//! records/<collection>/<id>.json   the record, application/json
//! kv/<key>, events/<stream>/<seq>, streams/<stream>   as keyspace/layout.rs says, application/json
//! blobs/<key>                      the blob itself (key unescaped), its Content-Type and
//!                                  x-amz-meta-* metadata (see blobs.rs)
//! ```

mod blobs;
mod errors;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_runtime::auth::PayloadSigningOverride;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, RuntimeComponents,
};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::config::S3Config;
use crate::error::{PersistError, Result};
use crate::keyspace::{Condition, KeyLister, KeyValue, NativeBlobs, OrderedLister, Stored};

pub use errors::S3Errors;

const JSON_TYPE: &str = "application/json";
const BYTES_TYPE: &str = "application/octet-stream";
/// GETs in flight while a listing fetches values.
const FETCH_CONCURRENCY: usize = 16;

/// What every request needs: the client, where the objects live, how to word errors.
#[derive(Clone)]
pub(crate) struct Shared {
    client: Client,
    bucket: String,
    prefix: String,
    errors: Arc<S3Errors>,
    cache: Arc<ValueCache>,
}

/// JSON values by object key and S3 ETag (the MD5 of the content), so scans that list a
/// collection again only GET what changed. Correct by construction: a listed ETag that matches
/// the cached one means the same bytes. Bounded; cleared when full.
#[derive(Default)]
struct ValueCache {
    inner: std::sync::Mutex<(CacheMap, usize)>,
}

/// Object key -> (ETag, JSON).
type CacheMap = HashMap<String, (String, String)>;

const CACHE_BYTES: usize = 32 * 1024 * 1024;

impl ValueCache {
    fn get(&self, key: &str, etag: &str) -> Option<Stored> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match map.0.get(key) {
            Some((tag, json)) if tag == etag => Some(Stored::Json(json.clone())),
            _ => None,
        }
    }
    fn put(&self, key: &str, etag: &str, value: &Stored) {
        let Stored::Json(json) = value else { return };
        if etag.is_empty() || json.len() > 64 * 1024 {
            return;
        }
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.1 + json.len() > CACHE_BYTES {
            map.0.clear();
            map.1 = 0;
        }
        map.1 += json.len() + key.len();
        map.0
            .insert(key.to_string(), (etag.to_string(), json.clone()));
    }
    fn forget(&self, key: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.0.remove(key);
    }
}

impl Shared {
    /// The object key of a keyspace key: under the prefix; records end in `.json`.
    fn object_key(&self, key: &str) -> String {
        if key.starts_with("records/") {
            format!("{}{key}.json", self.prefix)
        } else {
            format!("{}{key}", self.prefix)
        }
    }

    /// The keyspace key of a listed object key (None for objects that are not ours).
    fn keyspace_key(&self, object_key: &str) -> Option<String> {
        let key = object_key.strip_prefix(&self.prefix)?;
        if key.starts_with("records/") {
            key.strip_suffix(".json").map(str::to_string)
        } else {
            Some(key.to_string())
        }
    }
}

pub struct S3KeyValue {
    shared: Shared,
}

impl std::fmt::Debug for S3KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3KeyValue")
            .field("bucket", &self.shared.bucket)
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

/// Hands SigV4 the SHA-256 of an in-memory request body computed by ring (assembly, fast in any
/// build) instead of letting the signer hash it (sha2, about 20 MiB/s in a debug build: most of a
/// multipart upload's time there). The same hash, so the body stays covered by the signature.
#[derive(Debug)]
struct PayloadHash;

impl Intercept for PayloadHash {
    fn name(&self) -> &'static str {
        "PayloadHash"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        // Streaming bodies (no bytes) and requests the SDK already signs otherwise are left alone.
        let Some(body) = context.request().body().bytes() else {
            return Ok(());
        };
        if body.is_empty() || cfg.load::<PayloadSigningOverride>().is_some() {
            return Ok(());
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, body);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        cfg.interceptor_state()
            .store_put(PayloadSigningOverride::Precomputed(hex));
        Ok(())
    }
}

/// The endpoint to use: the config's, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`.
fn endpoint_of(cfg: &S3Config) -> Option<String> {
    cfg.endpoint.clone().or_else(|| {
        ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
    })
}

impl S3KeyValue {
    /// Builds the client and checks that the bucket exists and answers to these credentials.
    pub async fn connect(cfg: &S3Config) -> Result<Self> {
        let endpoint = endpoint_of(cfg);
        let region = cfg
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_string());
        let errors = Arc::new(S3Errors::new(
            cfg.bucket.clone(),
            endpoint.clone(),
            cfg.secret_access_key.clone(),
            cfg.session_token.clone(),
        ));
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(region))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                cfg.session_token.clone(),
                None,
                "persist-config",
            ));
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .interceptor(PayloadHash);
        match &endpoint {
            Some(url) => {
                conf = conf
                    .endpoint_url(url.clone())
                    .force_path_style(cfg.force_path_style.unwrap_or(true));
            }
            None => conf = conf.force_path_style(cfg.force_path_style.unwrap_or(false)),
        }
        let client = Client::from_conf(conf.build());
        let shared = Shared {
            client,
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            errors,
            cache: Arc::default(),
        };
        shared
            .client
            .head_bucket()
            .bucket(&shared.bucket)
            .send()
            .await
            .map_err(|e| shared.errors.map("open the bucket", None, e))?;
        Ok(S3KeyValue { shared })
    }
}

fn content_type_of(value: &Stored) -> &'static str {
    match value {
        Stored::Json(_) => JSON_TYPE,
        Stored::Bytes(_) => BYTES_TYPE,
    }
}

fn into_body(value: Stored) -> ByteStream {
    match value {
        Stored::Json(json) => ByteStream::from(json.into_bytes()),
        Stored::Bytes(bytes) => ByteStream::from(bytes),
    }
}

impl Shared {
    async fn get_object(&self, key: &str) -> Result<Option<(Stored, String)>> {
        let object_key = self.object_key(key);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if errors::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.errors.map("get", Some(&object_key), e)),
        };
        let is_json = out.content_type().is_none_or(|t| t.starts_with(JSON_TYPE));
        let etag = out.e_tag().unwrap_or_default().to_string();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| self.errors.stream("get", &object_key, &e))?
            .into_bytes()
            .to_vec();
        let value = if is_json {
            Stored::Json(String::from_utf8(bytes).map_err(|_| {
                PersistError::new(
                    crate::error::ErrorCode::Adapter,
                    format!("s3 object {object_key:?} is not UTF-8 JSON"),
                )
            })?)
        } else {
            Stored::Bytes(bytes)
        };
        self.cache.put(key, &etag, &value);
        Ok(Some((value, etag)))
    }

    async fn put_object(
        &self,
        key: &str,
        value: Stored,
        condition: Option<Condition>,
    ) -> Result<Option<String>> {
        let object_key = self.object_key(key);
        let cached =
            matches!(&value, Stored::Json(j) if j.len() <= 64 * 1024).then(|| value.clone());
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .content_type(content_type_of(&value))
            .body(into_body(value));
        match condition {
            Some(Condition::Absent) => req = req.if_none_match("*"),
            Some(Condition::Etag(tag)) => req = req.if_match(tag),
            None => {}
        }
        match req.send().await {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                match cached {
                    Some(v) => self.cache.put(key, &etag, &v),
                    None => self.cache.forget(key),
                }
                Ok(Some(etag))
            }
            Err(e) if errors::is_precondition(&e) => Ok(None),
            Err(e) => Err(self.errors.map("put", Some(&object_key), e)),
        }
    }

    async fn delete_object(&self, key: &str, if_match: Option<&str>) -> Result<bool> {
        let object_key = self.object_key(key);
        let mut req = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&object_key);
        if let Some(tag) = if_match {
            req = req.if_match(tag);
        }
        self.cache.forget(key);
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if errors::is_precondition(&e) || errors::is_not_found(&e) => Ok(false),
            Err(e) => Err(self.errors.map("delete", Some(&object_key), e)),
        }
    }

    /// One ListObjectsV2 page: object keys and the next continuation token.
    async fn list_page(
        &self,
        object_prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> Result<(Vec<(String, String)>, Option<String>)> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(object_prefix)
            .max_keys(max_keys.clamp(1, 1000) as i32)
            // Keys may hold characters XML 1.0 cannot carry (U+0001): have them URL-encoded.
            .encoding_type(aws_sdk_s3::types::EncodingType::Url);
        // Some servers (moto) echo StartAfter into the XML as it is, which cannot be parsed
        // when it holds a character XML 1.0 cannot carry: then start after its longest prefix
        // without one (which sorts before it) and drop the keys up to it here.
        let mut not_after = None;
        if let Some(token) = token {
            req = req.continuation_token(token);
        } else if let Some(after) = start_after {
            match after.find(|c| !xml_char(c)) {
                None => req = req.start_after(after),
                Some(cut) => {
                    if cut > 0 {
                        req = req.start_after(&after[..cut]);
                    }
                    not_after = Some(after);
                }
            }
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.errors.map("list", Some(object_prefix), e))?;
        let keys = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key().and_then(blobs::url_decode)?;
                if not_after.is_some_and(|after| key.as_str() <= after) {
                    return None;
                }
                Some((key, o.e_tag().unwrap_or_default().to_string()))
            })
            .collect();
        let next = if out.is_truncated().unwrap_or(false) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok((keys, next))
    }
}

/// Whether XML 1.0 can carry `c` in text.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Pages of keys in S3 order, with values fetched (concurrently, in order) when asked.
struct Lister {
    shared: Shared,
    object_prefix: String,
    start_after: Option<String>,
    token: Option<String>,
    started: bool,
    with_values: bool,
    page: usize,
}

impl Lister {
    async fn next(&mut self) -> Result<Option<Vec<(String, Option<Stored>)>>> {
        loop {
            if self.started && self.token.is_none() {
                return Ok(None);
            }
            let (keys, next) = self
                .shared
                .list_page(
                    &self.object_prefix,
                    self.start_after.as_deref(),
                    self.token.take(),
                    self.page,
                )
                .await?;
            self.started = true;
            self.token = next;
            let keys: Vec<(String, String)> = keys
                .into_iter()
                .filter_map(|(k, tag)| Some((self.shared.keyspace_key(&k)?, tag)))
                .collect();
            if keys.is_empty() {
                continue;
            }
            if !self.with_values {
                return Ok(Some(keys.into_iter().map(|(k, _)| (k, None)).collect()));
            }
            let shared = &self.shared;
            let fetched: Vec<(String, Option<Stored>)> = stream::iter(keys)
                .map(|(k, tag)| async move {
                    if let Some(v) = shared.cache.get(&k, &tag) {
                        return Ok((k, Some(v)));
                    }
                    let value = shared.get_object(&k).await?.map(|(v, _)| v);
                    Ok::<_, PersistError>((k, value))
                })
                .buffered(FETCH_CONCURRENCY)
                .try_collect()
                .await?;
            // An object deleted between list and get is simply gone.
            return Ok(Some(
                fetched.into_iter().filter(|(_, v)| v.is_some()).collect(),
            ));
        }
    }
}

#[async_trait]
impl OrderedLister for Lister {
    async fn next_page(&mut self) -> Result<Option<Vec<(String, Option<Stored>)>>> {
        self.next().await
    }
}

#[async_trait]
impl KeyLister for Lister {
    async fn next_page(&mut self) -> Result<Option<Vec<(String, Stored)>>> {
        Ok(self.next().await?.map(|page| {
            page.into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        }))
    }
}

impl S3KeyValue {
    fn lister(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        with_values: bool,
        page: usize,
    ) -> Lister {
        // Listing prefixes never take the records' `.json` suffix; a start key of a record
        // would, but the keyspace lists records unordered only.
        Lister {
            shared: self.shared.clone(),
            object_prefix: format!("{}{prefix}", self.shared.prefix),
            start_after: start_after.map(|a| self.shared.object_key(a)),
            token: None,
            started: false,
            with_values,
            page,
        }
    }
}

#[async_trait]
impl KeyValue for S3KeyValue {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn get(&self, key: &str) -> Result<Option<Stored>> {
        Ok(self.shared.get_object(key).await?.map(|(v, _)| v))
    }

    async fn put(&self, key: &str, value: Stored) -> Result<()> {
        self.shared.put_object(key, value, None).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.shared.delete_object(key, None).await.map(|_| ())
    }

    async fn list(&self, prefix: &str) -> Result<Box<dyn KeyLister>> {
        Ok(Box::new(self.lister(prefix, None, true, 1000)))
    }

    fn atomic_conditions(&self) -> bool {
        true
    }

    async fn get_with_etag(&self, key: &str) -> Result<Option<(Stored, String)>> {
        self.shared.get_object(key).await
    }

    async fn put_if(
        &self,
        key: &str,
        value: Stored,
        condition: Condition,
    ) -> Result<Option<String>> {
        self.shared.put_object(key, value, Some(condition)).await
    }

    async fn delete_if(&self, key: &str, etag: &str) -> Result<bool> {
        self.shared.delete_object(key, Some(etag)).await
    }

    async fn list_ordered(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        with_values: bool,
        page_hint: usize,
    ) -> Result<Option<Box<dyn OrderedLister>>> {
        let page = if with_values {
            page_hint.clamp(1, 1000)
        } else {
            1000
        };
        Ok(Some(Box::new(self.lister(
            prefix,
            start_after,
            with_values,
            page,
        ))))
    }

    fn native_blobs(&self) -> Option<&dyn NativeBlobs> {
        Some(&self.shared)
    }
}
