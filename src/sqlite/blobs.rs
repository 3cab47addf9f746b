//! `store.blobs` in SQL: a blob's bytes live in fixed-size chunk rows under a body id; the blob
//! row points at its body. A put writes a new body chunk by chunk (never holding the blob in
//! memory) and swaps the pointer in one transaction at commit, so a failed put leaves the
//! previous blob whole. Bodies left by a crashed put are collected a day later (they may
//! belong to a slow put of another process until then).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{sql_err, Shared};
use crate::backend::{BlobReader, BlobUpload};
use crate::chunks::{locate, Chunker};
use crate::clock::{iso8601, new_version, now_ms};
use crate::error::{PersistError, Result};
use crate::model::{BlobInfo, BlobMeta, ByteRange};
use crate::validate::prefix_successor;

/// Bytes per chunk row.
pub const CHUNK: usize = 256 * 1024;
const ABANDONED_AFTER_MS: i64 = 24 * 3600 * 1000;

pub fn start_body(c: &Connection) -> Result<i64> {
    c.execute(
        "INSERT INTO persist_blob_bodies (committed, started_at) VALUES (0, ?1)",
        [now_ms()],
    )
    .map_err(sql_err)?;
    Ok(c.last_insert_rowid())
}

fn drop_body(c: &Connection, body_id: i64) -> Result<()> {
    c.execute(
        "DELETE FROM persist_blob_chunks WHERE body_id = ?1",
        [body_id],
    )
    .map_err(sql_err)?;
    c.execute("DELETE FROM persist_blob_bodies WHERE id = ?1", [body_id])
        .map_err(sql_err)?;
    Ok(())
}

pub fn collect_abandoned_bodies(c: &Connection) -> Result<()> {
    let cutoff = now_ms() - ABANDONED_AFTER_MS;
    let mut stmt = c
        .prepare("SELECT id FROM persist_blob_bodies WHERE committed = 0 AND started_at < ?1")
        .map_err(sql_err)?;
    let ids = stmt
        .query_map([cutoff], |r| r.get::<_, i64>(0))
        .map_err(sql_err)?;
    let ids = ids.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)?;
    for id in ids {
        drop_body(c, id)?;
    }
    Ok(())
}

const INFO_COLUMNS: &str = "key, size, content_type, etag, metadata, updated_at, body_id";

fn info_from_row(r: &rusqlite::Row) -> rusqlite::Result<(BlobInfo, i64)> {
    let metadata: String = r.get(4)?;
    let metadata: BTreeMap<String, String> = serde_json::from_str(&metadata).unwrap_or_default();
    Ok((
        BlobInfo {
            key: r.get(0)?,
            size: r.get::<_, i64>(1)? as u64,
            content_type: r.get(2)?,
            etag: r.get(3)?,
            metadata,
            updated_at: r.get(5)?,
        },
        r.get(6)?,
    ))
}

pub fn head(c: &Connection, store: i64, key: &str) -> Result<Option<(BlobInfo, i64)>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM persist_blobs WHERE store_id = ? AND key = ?"
        ))
        .map_err(sql_err)?;
    stmt.query_row(params![store, key], info_from_row)
        .optional()
        .map_err(sql_err)
}

pub fn delete(c: &Connection, store: i64, key: &str) -> Result<bool> {
    let Some((_, body_id)) = head(c, store, key)? else {
        return Ok(false);
    };
    c.execute(
        "DELETE FROM persist_blobs WHERE store_id = ?1 AND key = ?2",
        params![store, key],
    )
    .map_err(sql_err)?;
    drop_body(c, body_id)?;
    Ok(true)
}

pub fn list_page(
    c: &Connection,
    store: i64,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<BlobInfo>> {
    let mut sql =
        format!("SELECT {INFO_COLUMNS} FROM persist_blobs WHERE store_id = ? AND key >= ?");
    let mut args: Vec<rusqlite::types::Value> = vec![store.into(), prefix.to_string().into()];
    if let Some(succ) = prefix_successor(prefix) {
        sql.push_str(" AND key < ?");
        args.push(succ.into());
    }
    if let Some(a) = after {
        sql.push_str(" AND key > ?");
        args.push(a.to_string().into());
    }
    sql.push_str(" ORDER BY key LIMIT ?");
    args.push((limit as i64).into());
    let mut stmt = c.prepare_cached(&sql).map_err(sql_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), info_from_row)
        .map_err(sql_err)?;
    rows.map(|r| r.map(|(info, _)| info))
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql_err)
}

pub struct Upload {
    shared: Arc<Shared>,
    key: String,
    meta: BlobMeta,
    body_id: i64,
    chunker: Chunker,
    next_idx: i64,
    size: u64,
    finished: bool,
}

impl Upload {
    pub(super) fn new(shared: Arc<Shared>, key: String, meta: BlobMeta, body_id: i64) -> Self {
        Upload {
            shared,
            key,
            meta,
            body_id,
            chunker: Chunker::new(CHUNK),
            next_idx: 0,
            size: 0,
            finished: false,
        }
    }

    async fn flush_chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        let (body_id, idx) = (self.body_id, self.next_idx);
        self.next_idx += 1;
        self.shared
            .write(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "INSERT INTO persist_blob_chunks (body_id, idx, data) VALUES (?, ?, ?)",
                    )
                    .map_err(sql_err)?;
                stmt.execute(params![body_id, idx, chunk])
                    .map_err(sql_err)?;
                Ok(())
            })
            .await
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
        let store = self.shared.store_id();
        let info = BlobInfo {
            key: self.key.clone(),
            size: self.size,
            content_type: self.meta.content_type_or_default(),
            etag: new_version(),
            metadata: std::mem::take(&mut self.meta.metadata),
            updated_at: iso8601(now_ms()),
        };
        let body_id = self.body_id;
        let row = info.clone();
        self.shared
            .write(move |c| {
                let previous = head(c, store, &row.key)?;
                let metadata = serde_json::to_string(&row.metadata).map_err(|e| PersistError::internal(e.to_string()))?;
                c.execute(
                    "INSERT INTO persist_blobs (store_id, key, body_id, size, content_type, etag, metadata, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (store_id, key) DO UPDATE SET body_id = excluded.body_id, size = excluded.size,
                     content_type = excluded.content_type, etag = excluded.etag, metadata = excluded.metadata,
                     updated_at = excluded.updated_at",
                    params![store, row.key, body_id, row.size as i64, row.content_type, row.etag, metadata, row.updated_at],
                )
                .map_err(sql_err)?;
                c.execute("UPDATE persist_blob_bodies SET committed = 1 WHERE id = ?1", [body_id]).map_err(sql_err)?;
                if let Some((_, old_body)) = previous {
                    drop_body(c, old_body)?;
                }
                Ok(())
            })
            .await?;
        Ok(info)
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.finished = true;
        let body_id = self.body_id;
        self.shared.write(move |c| drop_body(c, body_id)).await
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned without commit or abort (the caller went away): discard the body in the
            // background. If the store is closing this fails and the body is collected later.
            let body_id = self.body_id;
            let shared = self.shared.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { shared.write(move |c| drop_body(c, body_id)).await });
            }
        }
    }
}

pub struct Reader {
    shared: Arc<Shared>,
    info: BlobInfo,
    body_id: i64,
    pos: u64,
    end: u64,
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>, info: BlobInfo, body_id: i64, range: ByteRange) -> Self {
        let end = range.end.unwrap_or(info.size).min(info.size);
        let pos = range.start.min(end);
        Reader {
            shared,
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
        let idx = idx as i64;
        let body_id = self.body_id;
        let key = self.info.key.clone();
        let bytes = Shared::read(&self.shared, move |c| {
            let mut stmt = c
                .prepare_cached("SELECT substr(data, ?, ?) FROM persist_blob_chunks WHERE body_id = ? AND idx = ?")
                .map_err(sql_err)?;
            stmt.query_row(params![offset as i64 + 1, want as i64, body_id, idx], |r| r.get::<_, Vec<u8>>(0))
                .optional()
                .map_err(sql_err)?
                .ok_or_else(|| PersistError::not_found(format!("blob {key:?} was replaced or deleted while being read")))
        })
        .await?;
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
