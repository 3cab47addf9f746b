//! Blobs as real S3 objects at `<prefix>blobs/<key>` (the user's key as is).
//!
//! The object carries the blob's Content-Type, and its metadata as `x-amz-meta-<name>` when
//! HTTP can carry the entry unchanged (lower-case token name, printable ASCII value). Three
//! more entries keep `BlobInfo` exactly as on the other adapters:
//! - `x-amz-meta-persist-etag`: the blob's etag (a new one on every put; S3's own ETag is the
//!   MD5 of the content and would repeat);
//! - `x-amz-meta-persist-updated`: updatedAt with milliseconds;
//! - `x-amz-meta-persist-metadata`: the whole metadata map as percent-encoded JSON, written only
//!   when some entry cannot travel as a header of its own (case, non-ASCII, empty values).
//!
//! Bodies up to one part go up in one PutObject; longer ones through a multipart upload of
//! 8 MiB parts, up to four uploading while the next fills (about 40 MiB held), aborted on
//! failure or when the upload is dropped, so a failed put never leaves a partial object.
//!
//! S3 listings carry neither Content-Type nor metadata, so `blob_list_page` HEADs every listed
//! blob (64 at a time, the next ListObjectsV2 page listed meanwhile).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::stream::{self, TryStreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{errors, Shared};
use crate::backend::{BlobReader, BlobUpload};
use crate::clock::{iso8601, new_version, now_ms};
use crate::error::{PersistError, Result};
use crate::keyspace::NativeBlobs;
use crate::model::*;
use crate::validate::percent_decode;

/// Bytes per multipart part.
pub const PART: usize = 8 * 1024 * 1024;
/// Parts uploading at once: with the part being filled, an upload holds at most 4 parts
/// (32 MiB). One fewer than @aws-sdk/lib-storage's default `queueSize` of 4: with 4, the 256 MiB
/// streamed-upload test peaked at 70-90 MiB of RSS growth against the 100 MiB bound.
const PARTS_IN_FLIGHT: usize = 3;
/// HEADs in flight while a listing fills in BlobInfo (the 64 requests in flight used elsewhere).
const HEAD_CONCURRENCY: usize = 64;
/// Bytes per chunk handed to a reader.
const READ_CHUNK: usize = 256 * 1024;
const META_ETAG: &str = "persist-etag";
const META_UPDATED: &str = "persist-updated";
const META_ALL: &str = "persist-metadata";

fn header_safe(name: &str, value: &str) -> bool {
    !name.is_empty()
        && !name.starts_with("persist-")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && value.trim() == value
}

fn pct_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A key of a listing made with `encoding-type=url` (`+` is a space there).
pub(super) fn url_decode(text: &str) -> Option<String> {
    percent_decode(&text.replace('+', " "))
}

/// The x-amz-meta-* entries of a blob.
fn object_metadata(
    meta: &BTreeMap<String, String>,
    etag: &str,
    updated_at: &str,
) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = meta
        .iter()
        .filter(|(k, v)| header_safe(k, v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if out.len() != meta.len() {
        let json = serde_json::to_string(meta).unwrap_or_default();
        out.insert(META_ALL.to_string(), pct_encode(&json));
    }
    out.insert(META_ETAG.to_string(), etag.to_string());
    out.insert(META_UPDATED.to_string(), updated_at.to_string());
    out
}

/// BlobInfo from what HeadObject/GetObject return.
fn info_from(
    key: String,
    size: u64,
    content_type: Option<&str>,
    s3_etag: Option<&str>,
    last_modified: Option<&aws_sdk_s3::primitives::DateTime>,
    metadata: Option<&HashMap<String, String>>,
) -> BlobInfo {
    let empty = HashMap::new();
    let m = metadata.unwrap_or(&empty);
    let user = match m.get(META_ALL).and_then(|v| percent_decode(v)) {
        Some(json) => serde_json::from_str(&json).unwrap_or_default(),
        None => m
            .iter()
            .filter(|(k, _)| !k.starts_with("persist-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    BlobInfo {
        key,
        size,
        content_type: content_type
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_CONTENT_TYPE)
            .to_string(),
        etag: m
            .get(META_ETAG)
            .cloned()
            .unwrap_or_else(|| s3_etag.unwrap_or_default().trim_matches('"').to_string()),
        metadata: user,
        updated_at: m.get(META_UPDATED).cloned().unwrap_or_else(|| {
            last_modified
                .and_then(|t| t.to_millis().ok())
                .map(iso8601)
                .unwrap_or_else(|| iso8601(now_ms()))
        }),
    }
}

impl Shared {
    fn blob_object(&self, key: &str) -> String {
        format!("{}blobs/{key}", self.prefix)
    }

    async fn head_blob(&self, key: &str) -> Result<Option<BlobInfo>> {
        let object_key = self.blob_object(key);
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if errors::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(self.errors.map("head", Some(&object_key), e)),
        };
        Ok(Some(info_from(
            key.to_string(),
            out.content_length().unwrap_or(0).max(0) as u64,
            out.content_type(),
            out.e_tag(),
            out.last_modified(),
            out.metadata(),
        )))
    }
}

#[async_trait]
impl NativeBlobs for Shared {
    async fn blob_put(&self, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>> {
        Ok(Box::new(Upload {
            shared: self.clone(),
            object_key: self.blob_object(&key),
            key,
            content_type: meta.content_type_or_default(),
            metadata: meta.metadata,
            etag: new_version(),
            updated_at: iso8601(now_ms()),
            buf: Vec::new(),
            size: 0,
            upload_id: None,
            last_part: 0,
            parts: Vec::new(),
            in_flight: JoinSet::new(),
            spare: Vec::new(),
            finished: false,
        }))
    }

    async fn blob_head(&self, key: String) -> Result<Option<BlobInfo>> {
        self.head_blob(&key).await
    }

    async fn blob_read(
        &self,
        key: String,
        range: ByteRange,
    ) -> Result<Option<Box<dyn BlobReader>>> {
        if range.end.is_some_and(|e| e <= range.start) {
            return Ok(self.head_blob(&key).await?.map(empty_reader));
        }
        let object_key = self.blob_object(&key);
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object_key);
        let ranged = range.start > 0 || range.end.is_some();
        if ranged {
            req = req.range(match range.end {
                Some(end) => format!("bytes={}-{}", range.start, end - 1),
                None => format!("bytes={}-", range.start),
            });
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if errors::is_not_found(&e) => return Ok(None),
            // A range starting at or past the end: the blob exists, the range is empty.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                return Ok(self.head_blob(&key).await?.map(empty_reader))
            }
            Err(e) => return Err(self.errors.map("get", Some(&object_key), e)),
        };
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let size = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|total| total.parse::<u64>().ok())
            .unwrap_or(length);
        let info = info_from(
            key,
            size,
            out.content_type(),
            out.e_tag(),
            out.last_modified(),
            out.metadata(),
        );
        Ok(Some(Box::new(Reader {
            shared: self.clone(),
            object_key,
            info,
            body: Some(out.body),
            remaining: length,
        })))
    }

    async fn blob_delete(&self, key: String) -> Result<bool> {
        if self.head_blob(&key).await?.is_none() {
            return Ok(false);
        }
        let object_key = self.blob_object(&key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
            .map_err(|e| self.errors.map("delete", Some(&object_key), e))?;
        Ok(true)
    }

    async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        let base = format!("{}blobs/", self.prefix);
        let object_prefix = format!("{base}{prefix}");
        let mut start_after = after.map(|a| format!("{base}{a}"));
        let mut infos = Vec::new();
        // A blob deleted between its listing and its HEAD is skipped; list on past it, so a
        // short page still means the end of the listing.
        while infos.len() < limit {
            let want = limit - infos.len();
            let (found, listed, last) = self
                .list_with_info(&base, &object_prefix, start_after.take(), want)
                .await?;
            infos.extend(found);
            if listed < want {
                break;
            }
            start_after = last;
        }
        Ok(infos)
    }
}

impl Shared {
    /// BlobInfo of up to `limit` listed blobs, in key order, with how many keys were listed and
    /// the last one. Listings carry no content type or metadata: one HEAD per blob, 64 in
    /// flight, while a task lists the next ListObjectsV2 page.
    async fn list_with_info(
        &self,
        base: &str,
        object_prefix: &str,
        start_after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<BlobInfo>, usize, Option<String>)> {
        let pages = self.spawn_key_listing(object_prefix.to_string(), start_after, limit);
        let mut listed = 0;
        let mut last = None;
        let keys = stream::unfold(pages, |mut pages| async move {
            pages.recv().await.map(|page| (page, pages))
        })
        .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
        .try_flatten()
        .inspect_ok(|object_key: &String| {
            listed += 1;
            last = Some(object_key.clone());
        });
        let infos: Vec<Option<BlobInfo>> = keys
            .map_ok(|object_key| async move {
                match object_key.strip_prefix(base) {
                    Some(key) => self.head_blob(key).await,
                    None => Ok(None),
                }
            })
            .try_buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await?;
        Ok((infos.into_iter().flatten().collect(), listed, last))
    }

    /// Up to `limit` object keys after `start_after`, page by page, from a task that lists the
    /// next page while the receiver works on this one (at most one page waits in the channel).
    /// The task ends at the last page, or when the receiver is dropped.
    fn spawn_key_listing(
        &self,
        object_prefix: String,
        start_after: Option<String>,
        limit: usize,
    ) -> mpsc::Receiver<Result<Vec<String>>> {
        let (pages, receiver) = mpsc::channel(1);
        let shared = self.clone();
        tokio::spawn(async move {
            let mut token = None;
            let mut left = limit;
            while left > 0 {
                let listed = shared
                    .list_page(&object_prefix, start_after.as_deref(), token.take(), left)
                    .await;
                let (keys, next) = match listed {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = pages.send(Err(e)).await;
                        return;
                    }
                };
                let keys: Vec<String> = keys.into_iter().take(left).map(|(k, _)| k).collect();
                left -= keys.len();
                if pages.send(Ok(keys)).await.is_err() {
                    return;
                }
                match next {
                    Some(t) => token = Some(t),
                    None => return,
                }
            }
        });
        receiver
    }
}

fn empty_reader(info: BlobInfo) -> Box<dyn BlobReader> {
    Box::new(EmptyReader(info))
}

struct EmptyReader(BlobInfo);

#[async_trait]
impl BlobReader for EmptyReader {
    fn info(&self) -> &BlobInfo {
        &self.0
    }
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

struct Reader {
    shared: Shared,
    object_key: String,
    info: BlobInfo,
    body: Option<ByteStream>,
    remaining: u64,
}

#[async_trait]
impl BlobReader for Reader {
    fn info(&self) -> &BlobInfo {
        &self.info
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        let mut out: Vec<u8> = Vec::new();
        while out.len() < READ_CHUNK {
            match body.next().await {
                Some(Ok(bytes)) => out.extend_from_slice(&bytes),
                Some(Err(e)) => return Err(self.shared.errors.stream("get", &self.object_key, &e)),
                None => {
                    self.body = None;
                    break;
                }
            }
        }
        self.remaining = self.remaining.saturating_sub(out.len() as u64);
        if self.body.is_none() && self.remaining > 0 {
            return Err(PersistError::new(
                crate::error::ErrorCode::Connection,
                format!(
                    "s3 get of {:?}: the body ended {} bytes early",
                    self.object_key, self.remaining
                ),
            ));
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}

struct Upload {
    shared: Shared,
    key: String,
    object_key: String,
    content_type: String,
    metadata: BTreeMap<String, String>,
    etag: String,
    updated_at: String,
    /// The part being filled.
    buf: Vec<u8>,
    size: u64,
    upload_id: Option<String>,
    /// Number of the last part started.
    last_part: i32,
    /// Parts uploaded, in completion order (sorted before CompleteMultipartUpload).
    parts: Vec<CompletedPart>,
    in_flight: JoinSet<Result<(CompletedPart, Option<Vec<u8>>)>>,
    /// Buffers of uploaded parts, filled again: freeing and allocating 8 MiB per part instead
    /// leaves the allocator holding tens of MiB more than the parts in flight.
    spare: Vec<Vec<u8>>,
    finished: bool,
}

impl Upload {
    fn info(&self) -> BlobInfo {
        BlobInfo {
            key: self.key.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            etag: self.etag.clone(),
            metadata: self.metadata.clone(),
            updated_at: self.updated_at.clone(),
        }
    }

    /// Waits for the next part upload to end (whichever ends first).
    async fn join_next_part(&mut self) -> Result<()> {
        if let Some(joined) = self.in_flight.join_next().await {
            let (part, buffer) = joined
                .map_err(|e| PersistError::internal(format!("a part upload failed: {e}")))??;
            self.parts.push(part);
            if let Some(mut buffer) = buffer.filter(|b| b.capacity() >= PART) {
                buffer.clear();
                self.spare.push(buffer);
            }
        }
        Ok(())
    }

    /// Starts uploading `bytes` as the next part, once fewer than PARTS_IN_FLIGHT are.
    async fn send_part(&mut self, bytes: Vec<u8>) -> Result<()> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.join_next_part().await?;
        }
        if self.upload_id.is_none() {
            let out = self
                .shared
                .client
                .create_multipart_upload()
                .bucket(&self.shared.bucket)
                .key(&self.object_key)
                .content_type(&self.content_type)
                .set_metadata(Some(object_metadata(
                    &self.metadata,
                    &self.etag,
                    &self.updated_at,
                )))
                .send()
                .await
                .map_err(|e| self.shared.errors.map("put", Some(&self.object_key), e))?;
            self.upload_id = out.upload_id().map(str::to_string);
        }
        self.last_part += 1;
        let number = self.last_part;
        let (shared, object_key) = (self.shared.clone(), self.object_key.clone());
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.in_flight.spawn(async move {
            let body = bytes::Bytes::from(bytes);
            let kept = body.clone();
            let out = shared
                .client
                .upload_part()
                .bucket(&shared.bucket)
                .key(&object_key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| shared.errors.map("put (part)", Some(&object_key), e))?;
            // The request is gone: the buffer is ours again unless something still holds it.
            let buffer = kept.try_into_mut().ok().map(Vec::from);
            let part = CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build();
            Ok((part, buffer))
        });
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = std::mem::take(&mut self.buf);
            self.shared
                .client
                .put_object()
                .bucket(&self.shared.bucket)
                .key(&self.object_key)
                .content_type(&self.content_type)
                .set_metadata(Some(object_metadata(
                    &self.metadata,
                    &self.etag,
                    &self.updated_at,
                )))
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| self.shared.errors.map("put", Some(&self.object_key), e))?;
            return Ok(());
        };
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            self.send_part(last).await?;
        }
        while !self.in_flight.is_empty() {
            self.join_next_part().await?;
        }
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.part_number());
        self.shared
            .client
            .complete_multipart_upload()
            .bucket(&self.shared.bucket)
            .key(&self.object_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.shared.errors.map("put", Some(&self.object_key), e))?;
        Ok(())
    }

    /// Aborts the multipart upload, if one was started: after every part upload still running
    /// has ended, since S3 may keep a part that arrives after the abort.
    fn abort_task(&mut self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let upload_id = self.upload_id.take()?;
        let mut in_flight = std::mem::take(&mut self.in_flight);
        let (shared, object_key) = (self.shared.clone(), self.object_key.clone());
        Some(async move {
            while in_flight.join_next().await.is_some() {}
            let _ = shared
                .client
                .abort_multipart_upload()
                .bucket(&shared.bucket)
                .key(&object_key)
                .upload_id(upload_id)
                .send()
                .await;
        })
    }
}

#[async_trait]
impl BlobUpload for Upload {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < chunk.len() {
            // A body of more than one write may well be long: room for a whole part at once,
            // rather than growing (and copying) the buffer on the way up to PART.
            let room = if self.size > 0 { PART } else { chunk.len() };
            let wanted = room.max(self.buf.len() + chunk.len());
            self.buf.reserve_exact(wanted - self.buf.len());
        }
        self.size += chunk.len() as u64;
        self.buf.extend_from_slice(&chunk);
        while self.buf.len() >= PART {
            let mut rest = self.spare.pop().unwrap_or_default();
            rest.reserve_exact(PART.max(self.buf.len() - PART));
            rest.extend_from_slice(&self.buf[PART..]);
            self.buf.truncate(PART);
            let full = std::mem::replace(&mut self.buf, rest);
            if let Err(e) = self.send_part(full).await {
                if let Some(abort) = self.abort_task() {
                    abort.await;
                }
                self.finished = true;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<BlobInfo> {
        let result = self.finish().await;
        self.finished = true;
        match result {
            Ok(()) => Ok(self.info()),
            Err(e) => {
                if let Some(abort) = self.abort_task() {
                    abort.await;
                }
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.finished = true;
        if let Some(abort) = self.abort_task() {
            abort.await;
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(abort) = self.abort_task() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(abort);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_headers() {
        let mut meta = BTreeMap::new();
        meta.insert("owner".to_string(), "ada".to_string());
        let headers = object_metadata(&meta, "e1", "2026-01-01T00:00:00.000Z");
        assert!(!headers.contains_key(META_ALL));
        assert_eq!(
            info_from("k".into(), 1, None, None, None, Some(&headers)).metadata,
            meta
        );
        meta.insert("x-Note".to_string(), "héllo".to_string());
        meta.insert("empty".to_string(), String::new());
        let headers = object_metadata(&meta, "e1", "t");
        assert!(headers.contains_key(META_ALL));
        assert_eq!(headers.get("owner").map(String::as_str), Some("ada"));
        let info = info_from("k".into(), 1, None, None, None, Some(&headers));
        assert_eq!(info.metadata, meta);
        assert_eq!(info.etag, "e1");
        assert_eq!(info.content_type, DEFAULT_CONTENT_TYPE);
    }
}
