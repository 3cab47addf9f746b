//! `store.kv` in SQL: one row per key; expired rows are invisible to every read. Compare-and-set
//! is one conditional statement each (atomic without an explicit transaction).

use std::collections::HashMap;

use tokio_postgres::Row;

use super::{pg_err, read, write, Inner};
use crate::clock::{new_version, now_ms};
use crate::error::{PersistError, Result};
use crate::model::{IfVersion, KvEntry, KvRange, KvSet};
use crate::validate::prefix_successor;

fn entry(r: &Row) -> KvEntry {
    KvEntry {
        key: r.get(0),
        value: r.get(1),
        version: r.get(2),
        expires_at: r.get(3),
    }
}

pub async fn get_many(inner: &Inner, keys: Vec<String>) -> Result<Vec<Option<KvEntry>>> {
    let store = inner.store_id();
    let now = now_ms();
    if keys.len() == 1 {
        let row = read!(inner, c => {
            let stmt = c.prepare_cached(
                "SELECT key, value, version, expires_at FROM persist_kv
                 WHERE store_id = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)",
            ).await.map_err(pg_err)?;
            c.query_opt(&stmt, &[&store, &keys[0], &now]).await.map_err(pg_err)
        })?;
        return Ok(vec![row.as_ref().map(entry)]);
    }
    let rows = read!(inner, c => {
        let stmt = c.prepare_cached(
            "SELECT key, value, version, expires_at FROM persist_kv
             WHERE store_id = $1 AND key = ANY($2) AND (expires_at IS NULL OR expires_at > $3)",
        ).await.map_err(pg_err)?;
        c.query(&stmt, &[&store, &keys, &now]).await.map_err(pg_err)
    })?;
    let found: HashMap<String, KvEntry> = rows.iter().map(|r| (r.get(0), entry(r))).collect();
    Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
}

async fn current_version(inner: &Inner, key: &str) -> Result<Option<String>> {
    let got = get_many(inner, vec![key.to_string()]).await?;
    Ok(got.into_iter().next().flatten().map(|e| e.version))
}

async fn conflict(inner: &Inner, key: &str) -> PersistError {
    let found = match current_version(inner, key).await {
        Ok(Some(v)) => format!("version {v}"),
        Ok(None) => "absent".to_string(),
        Err(_) => "unknown".to_string(),
    };
    PersistError::conflict(format!(
        "kv key {key:?}: ifVersion does not match (the key is {found})"
    ))
}

pub async fn set(inner: &Inner, set: KvSet) -> Result<KvEntry> {
    let store = inner.store_id();
    let now = now_ms();
    let entry = KvEntry {
        key: set.key,
        value: set.value,
        version: new_version(),
        expires_at: set.ttl_ms.map(|ttl| now.saturating_add(ttl as i64)),
    };
    let sql = match &set.if_version {
        IfVersion::Any => {
            "INSERT INTO persist_kv (store_id, key, value, version, expires_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (store_id, key) DO UPDATE SET value = excluded.value, version = excluded.version,
             expires_at = excluded.expires_at"
        }
        // Only if absent: an expired row counts as absent and is replaced.
        IfVersion::Absent => {
            "INSERT INTO persist_kv (store_id, key, value, version, expires_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (store_id, key) DO UPDATE SET value = excluded.value, version = excluded.version,
             expires_at = excluded.expires_at
             WHERE persist_kv.expires_at IS NOT NULL AND persist_kv.expires_at <= $6"
        }
        IfVersion::Is(_) => {
            "UPDATE persist_kv SET value = $3, version = $4, expires_at = $5
             WHERE store_id = $1 AND key = $2 AND version = $7
             AND (expires_at IS NULL OR expires_at > $6)"
        }
    };
    let n = write!(inner, c => {
        let stmt = c.prepare_cached(sql).await.map_err(pg_err)?;
        match &set.if_version {
            IfVersion::Any => c.execute(&stmt, &[&store, &entry.key, &entry.value, &entry.version, &entry.expires_at]).await,
            IfVersion::Absent => c.execute(&stmt, &[&store, &entry.key, &entry.value, &entry.version, &entry.expires_at, &now]).await,
            IfVersion::Is(v) => c.execute(&stmt, &[&store, &entry.key, &entry.value, &entry.version, &entry.expires_at, &now, v]).await,
        }.map_err(pg_err)
    })?;
    if n == 0 {
        return Err(conflict(inner, &entry.key).await);
    }
    Ok(entry)
}

/// All or nothing: one statement over arrays (the last entry wins for a repeated key).
pub async fn set_many(inner: &Inner, sets: Vec<KvSet>) -> Result<()> {
    set_all(inner, sets).await.map(drop)
}

/// Unconditional sets (`IfVersion::Any`) in one statement, all or nothing; each set gets its
/// own entry, as if they ran one after another (so for a repeated key the last one is stored).
pub async fn set_all(inner: &Inner, sets: Vec<KvSet>) -> Result<Vec<KvEntry>> {
    let store = inner.store_id();
    let now = now_ms();
    let entries: Vec<KvEntry> = sets
        .into_iter()
        .map(|s| KvEntry {
            key: s.key,
            value: s.value,
            version: new_version(),
            expires_at: s.ttl_ms.map(|ttl| now.saturating_add(ttl as i64)),
        })
        .collect();
    // The last set of each key, in key order: the statement locks rows in the order it
    // writes them, so two batches over the same keys (from this process or another) lock them
    // in the same order and cannot deadlock each other.
    let mut last: HashMap<&str, &KvEntry> = HashMap::with_capacity(entries.len());
    for e in &entries {
        last.insert(e.key.as_str(), e);
    }
    let mut rows: Vec<&KvEntry> = last.into_values().collect();
    rows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = rows.iter().map(|e| e.key.as_str()).collect();
    let values: Vec<&str> = rows.iter().map(|e| e.value.as_str()).collect();
    let versions: Vec<&str> = rows.iter().map(|e| e.version.as_str()).collect();
    let expires: Vec<Option<i64>> = rows.iter().map(|e| e.expires_at).collect();
    write!(inner, c => {
        let stmt = c.prepare_cached(
            "INSERT INTO persist_kv (store_id, key, value, version, expires_at)
             SELECT $1, k, v, ver, e FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[]) AS t(k, v, ver, e)
             ON CONFLICT (store_id, key) DO UPDATE SET value = excluded.value, version = excluded.version,
             expires_at = excluded.expires_at",
        ).await.map_err(pg_err)?;
        c.execute(&stmt, &[&store, &keys, &values, &versions, &expires]).await.map_err(pg_err)
    })?;
    Ok(entries)
}

pub async fn delete(inner: &Inner, key: String, if_version: Option<String>) -> Result<bool> {
    let store = inner.store_id();
    let now = now_ms();
    match if_version {
        Some(v) => {
            let n = write!(inner, c => {
                let stmt = c.prepare_cached(
                    "DELETE FROM persist_kv WHERE store_id = $1 AND key = $2 AND version = $3
                     AND (expires_at IS NULL OR expires_at > $4)",
                ).await.map_err(pg_err)?;
                c.execute(&stmt, &[&store, &key, &v, &now]).await.map_err(pg_err)
            })?;
            if n == 0 {
                return Err(conflict(inner, &key).await);
            }
            Ok(true)
        }
        None => {
            // An expired row is deleted too, but reported as absent.
            let row = write!(inner, c => {
                let stmt = c.prepare_cached(
                    "DELETE FROM persist_kv WHERE store_id = $1 AND key = $2
                     RETURNING (expires_at IS NULL OR expires_at > $3)",
                ).await.map_err(pg_err)?;
                c.query_opt(&stmt, &[&store, &key, &now]).await.map_err(pg_err)
            })?;
            Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
        }
    }
}

pub async fn list_page(
    inner: &Inner,
    range: KvRange,
    after: Option<String>,
    limit: usize,
) -> Result<Vec<KvEntry>> {
    let store = inner.store_id();
    // The bounds become one index range: [max(prefix, start), min(successor(prefix), end)),
    // narrowed by the cursor on the side the scan moves towards.
    let mut lower: Option<String> = Some(range.prefix.clone()).filter(|p| !p.is_empty());
    if let Some(start) = range.start.clone() {
        lower = Some(match lower {
            Some(l) if l > start => l,
            _ => start,
        });
    }
    let mut upper: Option<String> = prefix_successor(&range.prefix);
    if let Some(end) = range.end.clone() {
        upper = Some(match upper {
            Some(u) if u < end => u,
            _ => end,
        });
    }
    let now = now_ms();
    let limit = limit as i64;
    let mut sql = "SELECT key, value, version, expires_at FROM persist_kv \
                   WHERE store_id = $1 AND (expires_at IS NULL OR expires_at > $2)"
        .to_string();
    let mut bounds: Vec<String> = Vec::new();
    let mut bound = |sql: &mut String, op: &str, v: String| {
        bounds.push(v);
        sql.push_str(&format!(" AND key {op} ${}", bounds.len() + 2));
    };
    if let Some(l) = lower {
        bound(&mut sql, ">=", l);
    }
    if let Some(u) = upper {
        bound(&mut sql, "<", u);
    }
    if let Some(a) = after {
        bound(&mut sql, if range.reverse { "<" } else { ">" }, a);
    }
    sql.push_str(&format!(
        " ORDER BY key {} LIMIT ${}",
        if range.reverse { "DESC" } else { "ASC" },
        bounds.len() + 3
    ));
    let rows = read!(inner, c => {
        let stmt = c.prepare_cached(&sql).await.map_err(pg_err)?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&store, &now];
        for b in &bounds {
            params.push(b);
        }
        params.push(&limit);
        c.query(&stmt, &params).await.map_err(pg_err)
    })?;
    Ok(rows.iter().map(entry).collect())
}
