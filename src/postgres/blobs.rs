//! `store.blobs` in SQL: a blob's bytes live in fixed-size `bytea` chunk rows under a body id;
//! the blob row points at its body. A put writes a new body chunk by chunk (never holding the
//! blob in memory) and swaps the pointer in one transaction at commit, so a failed put leaves
//! the previous blob whole. Bodies left by a crashed put are collected a day after their last
//! chunk was written.
//!
//! A body row's `started_at` is when it was last written, in the server's clock (so the clocks
//! of several processes need not agree): each chunk moves it on, so an upload that is slow but
//! alive is never taken for abandoned, and a chunk or commit whose body was collected fails
//! instead of committing a blob with missing chunks. A body that a commit or delete replaced
//! is marked uncommitted and a day old in the same transaction, so if dropping it afterwards
//! fails, the next put's collection takes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{pg_err, read, write, Inner};
use crate::backend::{BlobReader, BlobUpload};
use crate::chunks::{locate, Chunker};
use crate::clock::{iso8601, new_version, now_ms};
use crate::error::{ErrorCode, PersistError, Result};
use crate::model::{BlobInfo, BlobMeta, ByteRange};
use crate::validate::prefix_successor;

/// Bytes per chunk row.
pub const CHUNK: usize = 256 * 1024;
const ABANDONED_AFTER_MS: i64 = 24 * 3600 * 1000;
/// The server's clock in milliseconds.
const SERVER_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::int8";

/// The error of an upload whose body is gone.
fn body_collected() -> PersistError {
    PersistError::new(
        ErrorCode::Conflict,
        "the upload was idle for more than a day and its chunks were collected; put the blob again",
    )
}

const INFO_COLUMNS: &str = "key, size, content_type, etag, metadata, updated_at, body_id";

fn info_from_row(r: &Row) -> (BlobInfo, i64) {
    let metadata: String = r.get(4);
    let metadata: BTreeMap<String, String> = serde_json::from_str(&metadata).unwrap_or_default();
    (
        BlobInfo {
            key: r.get(0),
            size: r.get::<_, i64>(1) as u64,
            content_type: r.get(2),
            etag: r.get(3),
            metadata,
            updated_at: r.get(5),
        },
        r.get(6),
    )
}

pub async fn start(inner: &Arc<Inner>, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>> {
    let body_id: i64 = write!(inner, c => {
        // Collect bodies abandoned by crashed puts (cheap when there are none).
        let stale = c.prepare_cached(&format!(
            "WITH gone AS (DELETE FROM persist_blob_bodies WHERE NOT committed AND started_at < {SERVER_NOW_MS} - $1 RETURNING id)
             DELETE FROM persist_blob_chunks WHERE body_id IN (SELECT id FROM gone)",
        )).await.map_err(pg_err)?;
        c.execute(&stale, &[&ABANDONED_AFTER_MS]).await.map_err(pg_err)?;
        let stmt = c.prepare_cached(&format!(
            "INSERT INTO persist_blob_bodies (committed, started_at) VALUES (FALSE, {SERVER_NOW_MS}) RETURNING id",
        )).await.map_err(pg_err)?;
        Ok(c.query_one(&stmt, &[]).await.map_err(pg_err)?.get(0))
    })?;
    Ok(Box::new(Upload {
        inner: inner.clone(),
        key,
        meta,
        body_id,
        chunker: Chunker::new(CHUNK),
        next_idx: 0,
        size: 0,
        finished: false,
    }))
}

pub async fn head(inner: &Inner, key: String) -> Result<Option<(BlobInfo, i64)>> {
    let store = inner.store_id();
    let row = read!(inner, c => {
        let stmt = c.prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM persist_blobs WHERE store_id = $1 AND key = $2"
        )).await.map_err(pg_err)?;
        c.query_opt(&stmt, &[&store, &key]).await.map_err(pg_err)
    })?;
    Ok(row.as_ref().map(info_from_row))
}

async fn drop_body(inner: &Inner, body_id: i64) -> Result<()> {
    write!(inner, c => {
        let stmt = c.prepare_cached(
            "WITH gone AS (DELETE FROM persist_blob_bodies WHERE id = $1 RETURNING id)
             DELETE FROM persist_blob_chunks WHERE body_id = $1",
        ).await.map_err(pg_err)?;
        c.execute(&stmt, &[&body_id]).await.map_err(pg_err)?;
        Ok(())
    })
}

pub async fn delete(inner: &Inner, key: String) -> Result<bool> {
    let store = inner.store_id();
    let row = write!(inner, c => {
        // The body is marked for collection in the same statement (see the module's comment).
        let stmt = c.prepare_cached(
            "WITH gone AS (DELETE FROM persist_blobs WHERE store_id = $1 AND key = $2 RETURNING body_id),
             marked AS (UPDATE persist_blob_bodies SET committed = FALSE, started_at = 0
                        WHERE id IN (SELECT body_id FROM gone))
             SELECT body_id FROM gone",
        ).await.map_err(pg_err)?;
        c.query_opt(&stmt, &[&store, &key]).await.map_err(pg_err)
    })?;
    match row {
        Some(r) => {
            // The blob is gone once the row is; if this fails, the next put collects the body.
            let _ = drop_body(inner, r.get(0)).await;
            Ok(true)
        }
        None => Ok(false),
    }
}

pub async fn list_page(
    inner: &Inner,
    prefix: String,
    after: Option<String>,
    limit: usize,
) -> Result<Vec<BlobInfo>> {
    let store = inner.store_id();
    let mut sql =
        format!("SELECT {INFO_COLUMNS} FROM persist_blobs WHERE store_id = $1 AND key >= $2");
    let mut texts: Vec<String> = vec![prefix.clone()];
    if let Some(succ) = prefix_successor(&prefix) {
        texts.push(succ);
        sql.push_str(&format!(" AND key < ${}", texts.len() + 1));
    }
    if let Some(a) = after {
        texts.push(a);
        sql.push_str(&format!(" AND key > ${}", texts.len() + 1));
    }
    sql.push_str(&format!(" ORDER BY key LIMIT ${}", texts.len() + 2));
    let limit = limit as i64;
    let rows = read!(inner, c => {
        let stmt = c.prepare_cached(&sql).await.map_err(pg_err)?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&store];
        for t in &texts {
            params.push(t);
        }
        params.push(&limit);
        c.query(&stmt, &params).await.map_err(pg_err)
    })?;
    Ok(rows.iter().map(|r| info_from_row(r).0).collect())
}

pub struct Upload {
    inner: Arc<Inner>,
    key: String,
    meta: BlobMeta,
    body_id: i64,
    chunker: Chunker,
    next_idx: i32,
    size: u64,
    finished: bool,
}

impl Upload {
    async fn flush_chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        let (body_id, idx) = (self.body_id, self.next_idx);
        self.next_idx += 1;
        let written = write!(self.inner, c => {
            // Only into a body still waiting for its commit, which this moves on.
            let stmt = c.prepare_cached(&format!(
                "WITH live AS (UPDATE persist_blob_bodies SET started_at = {SERVER_NOW_MS}
                               WHERE id = $1 AND NOT committed RETURNING id)
                 INSERT INTO persist_blob_chunks (body_id, idx, data) SELECT id, $2, $3 FROM live",
            )).await.map_err(pg_err)?;
            c.execute(&stmt, &[&body_id, &idx, &chunk]).await.map_err(pg_err)
        })?;
        if written == 0 {
            return Err(body_collected());
        }
        Ok(())
    }
}

#[async_trait]
impl BlobUpload for Upload {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        self.size += chunk.len() as u64;
        for full in self.chunker.push(chunk) {
            self.flush_chunk(full).await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<BlobInfo> {
        if let Some(last) = self.chunker.finish() {
            self.flush_chunk(last).await?;
        }
        self.finished = true;
        let store = self.inner.store_id();
        let info = BlobInfo {
            key: self.key.clone(),
            size: self.size,
            content_type: self.meta.content_type_or_default(),
            etag: new_version(),
            metadata: std::mem::take(&mut self.meta.metadata),
            updated_at: iso8601(now_ms()),
        };
        let body_id = self.body_id;
        let metadata = serde_json::to_string(&info.metadata)
            .map_err(|e| PersistError::internal(e.to_string()))?;
        let size = info.size as i64;
        let old_body: Option<i64> = write!(self.inner, c => {
            c.batch_execute("BEGIN").await.map_err(pg_err)?;
            let res: Result<Option<i64>> = async {
                // Commits of one key take turns, so each one reads the body the one before it
                // put in place (without this, two first puts of a key both read no body and
                // the loser's would stay behind, referenced by nothing). A hash of the key as
                // a one-key advisory lock: other keys that share the hash only wait briefly.
                let turn = c.prepare_cached(
                    "SELECT pg_advisory_xact_lock(hashtextextended($2, $1))",
                ).await.map_err(pg_err)?;
                c.execute(&turn, &[&i64::from(store), &info.key]).await.map_err(pg_err)?;
                let old = c.prepare_cached(
                    "SELECT body_id FROM persist_blobs WHERE store_id = $1 AND key = $2 FOR UPDATE",
                ).await.map_err(pg_err)?;
                let old: Option<i64> = c.query_opt(&old, &[&store, &info.key]).await.map_err(pg_err)?.map(|r| r.get(0));
                let up = c.prepare_cached(
                    "INSERT INTO persist_blobs (store_id, key, body_id, size, content_type, etag, metadata, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (store_id, key) DO UPDATE SET body_id = excluded.body_id, size = excluded.size,
                     content_type = excluded.content_type, etag = excluded.etag, metadata = excluded.metadata,
                     updated_at = excluded.updated_at",
                ).await.map_err(pg_err)?;
                c.execute(&up, &[&store, &info.key, &body_id, &size, &info.content_type, &info.etag, &metadata, &info.updated_at]).await.map_err(pg_err)?;
                let mark = c.prepare_cached(
                    "UPDATE persist_blob_bodies SET committed = TRUE WHERE id = $1 AND NOT committed",
                ).await.map_err(pg_err)?;
                if c.execute(&mark, &[&body_id]).await.map_err(pg_err)? == 0 {
                    return Err(body_collected());
                }
                if let Some(old) = old.filter(|b| *b != body_id) {
                    let retire = c.prepare_cached(
                        "UPDATE persist_blob_bodies SET committed = FALSE, started_at = 0 WHERE id = $1",
                    ).await.map_err(pg_err)?;
                    c.execute(&retire, &[&old]).await.map_err(pg_err)?;
                }
                Ok(old)
            }.await;
            match res {
                Ok(old) => {
                    c.batch_execute("COMMIT").await.map_err(pg_err)?;
                    Ok(old)
                }
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        })?;
        if let Some(old) = old_body.filter(|b| *b != body_id) {
            let _ = drop_body(&self.inner, old).await;
        }
        Ok(info)
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.finished = true;
        drop_body(&self.inner, self.body_id).await
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned without commit or abort: discard the body in the background (collected
            // a day later if this fails).
            let body_id = self.body_id;
            let inner = self.inner.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { drop_body(&inner, body_id).await });
            }
        }
    }
}

pub struct Reader {
    inner: Arc<Inner>,
    info: BlobInfo,
    body_id: i64,
    pos: u64,
    end: u64,
}

impl Reader {
    pub(super) fn new(inner: Arc<Inner>, info: BlobInfo, body_id: i64, range: ByteRange) -> Self {
        let end = range.end.unwrap_or(info.size).min(info.size);
        let pos = range.start.min(end);
        Reader {
            inner,
            info,
            body_id,
            pos,
            end,
        }
    }
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
        let (idx, offset, want) = locate(self.pos, self.end, CHUNK);
        let (idx, offset) = (idx as i32, offset as i32);
        let want_i = want as i32;
        let body_id = self.body_id;
        let row = read!(self.inner, c => {
            let stmt = c.prepare_cached(
                "SELECT substring(data FROM $1 FOR $2) FROM persist_blob_chunks WHERE body_id = $3 AND idx = $4",
            ).await.map_err(pg_err)?;
            c.query_opt(&stmt, &[&(offset + 1), &want_i, &body_id, &idx]).await.map_err(pg_err)
        })?;
        let bytes: Vec<u8> = row.map(|r| r.get(0)).ok_or_else(|| {
            PersistError::not_found(format!(
                "blob {:?} was replaced or deleted while being read",
                self.info.key
            ))
        })?;
        if bytes.len() != want {
            return Err(PersistError::internal(format!(
                "blob {:?}: chunk {idx} is shorter than expected",
                self.info.key
            )));
        }
        self.pos += want as u64;
        Ok(Some(bytes))
    }
}
