//! `store.kv` in SQL: one row per key; expired rows are invisible to every read and purged
//! when the store opens.

use rusqlite::{params, Connection, OptionalExtension};

use super::sql_err;
use crate::clock::{new_version, now_ms};
use crate::error::Result;
use crate::model::{IfVersion, KvEntry, KvRange, KvSet};
use crate::validate::prefix_successor;
use crate::versions::check_kv;

const LIVE: &str = "(expires_at IS NULL OR expires_at > ?)";

pub fn purge_expired(c: &Connection, store: i64) -> Result<()> {
    c.execute(
        "DELETE FROM persist_kv WHERE store_id = ?1 AND expires_at <= ?2",
        params![store, now_ms()],
    )
    .map_err(sql_err)?;
    Ok(())
}

fn get_live(c: &Connection, store: i64, key: &str, now: i64) -> Result<Option<KvEntry>> {
    // A literal (not `format!` with LIVE): this runs once per get, and the statement cache is
    // keyed by the text anyway.
    let mut stmt = c
        .prepare_cached(
            "SELECT value, version, expires_at FROM persist_kv WHERE store_id = ? AND key = ? \
             AND (expires_at IS NULL OR expires_at > ?)",
        )
        .map_err(sql_err)?;
    stmt.query_row(params![store, key, now], |r| {
        Ok(KvEntry {
            key: key.to_string(),
            value: r.get(0)?,
            version: r.get(1)?,
            expires_at: r.get(2)?,
        })
    })
    .optional()
    .map_err(sql_err)
}

pub fn get_many(c: &Connection, store: i64, keys: &[String]) -> Result<Vec<Option<KvEntry>>> {
    let now = now_ms();
    // Several keys in one read transaction: one snapshot, and one round of WAL locking
    // instead of one per key.
    let own_transaction = keys.len() > 1 && c.is_autocommit();
    if own_transaction {
        c.prepare_cached("BEGIN")
            .and_then(|mut s| s.execute([]))
            .map_err(sql_err)?;
    }
    let found = keys
        .iter()
        .map(|key| get_live(c, store, key, now))
        .collect();
    if own_transaction {
        // A read transaction: ending it cannot lose anything, whatever `found` holds.
        let _ = c.prepare_cached("COMMIT").and_then(|mut s| s.execute([]));
    }
    found
}

/// Writes with one statement (after the `ifVersion` check, which writes nothing), so a failing
/// set leaves nothing behind inside a larger transaction: callers need no savepoint around it.
pub fn set(c: &Connection, store: i64, set: KvSet) -> Result<KvEntry> {
    let now = now_ms();
    if set.if_version != IfVersion::Any {
        let current = get_live(c, store, &set.key, now)?;
        check_kv(current.as_ref(), &set.if_version, &set.key)?;
    }
    let entry = KvEntry {
        key: set.key,
        value: set.value,
        version: new_version(),
        expires_at: set.ttl_ms.map(|ttl| now.saturating_add(ttl as i64)),
    };
    let mut stmt = c.prepare_cached(UPSERT).map_err(sql_err)?;
    stmt.execute(params![
        store,
        entry.key,
        entry.value,
        entry.version,
        entry.expires_at
    ])
    .map_err(sql_err)?;
    Ok(entry)
}

const UPSERT: &str =
    "INSERT INTO persist_kv (store_id, key, value, version, expires_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (store_id, key) DO UPDATE SET value = excluded.value, version = excluded.version,
     expires_at = excluded.expires_at";

/// `setMany`: the same writes as `set`, with the statement looked up once for the batch rather
/// than once per entry (a batch is typically 1,000 entries). Sets with `ifVersion` go to `set`.
pub fn set_many(c: &Connection, store: i64, sets: Vec<KvSet>) -> Result<()> {
    let now = now_ms();
    let mut stmt = c.prepare_cached(UPSERT).map_err(sql_err)?;
    for one in sets {
        if one.if_version != IfVersion::Any {
            set(c, store, one)?;
            continue;
        }
        let expires_at = one.ttl_ms.map(|ttl| now.saturating_add(ttl as i64));
        stmt.execute(params![
            store,
            one.key,
            one.value,
            new_version(),
            expires_at
        ])
        .map_err(sql_err)?;
    }
    Ok(())
}

pub fn delete(c: &Connection, store: i64, key: &str, if_version: Option<&str>) -> Result<bool> {
    let now = now_ms();
    let current = get_live(c, store, key, now)?;
    if let Some(v) = if_version {
        check_kv(current.as_ref(), &IfVersion::Is(v.to_string()), key)?;
    }
    // An expired row is deleted too, but reported as absent.
    let mut stmt = c
        .prepare_cached("DELETE FROM persist_kv WHERE store_id = ? AND key = ?")
        .map_err(sql_err)?;
    stmt.execute(params![store, key]).map_err(sql_err)?;
    Ok(current.is_some())
}

pub fn list_page(
    c: &Connection,
    store: i64,
    range: &KvRange,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<KvEntry>> {
    // The bounds become one index range: [max(prefix, start), min(successor(prefix), end)),
    // narrowed by the cursor on the side the scan moves towards.
    let mut lower: Option<&str> = Some(range.prefix.as_str()).filter(|p| !p.is_empty());
    if let Some(start) = range.start.as_deref() {
        lower = Some(lower.map_or(start, |l| l.max(start)));
    }
    let successor = prefix_successor(&range.prefix);
    let mut upper: Option<&str> = successor.as_deref();
    if let Some(end) = range.end.as_deref() {
        upper = Some(upper.map_or(end, |u| u.min(end)));
    }
    let mut sql = format!(
        "SELECT key, value, version, expires_at FROM persist_kv WHERE store_id = ? AND {LIVE}"
    );
    let mut args: Vec<rusqlite::types::Value> = vec![store.into(), now_ms().into()];
    if let Some(l) = lower {
        sql.push_str(" AND key >= ?");
        args.push(l.to_string().into());
    }
    if let Some(u) = upper {
        sql.push_str(" AND key < ?");
        args.push(u.to_string().into());
    }
    if let Some(a) = after {
        sql.push_str(if range.reverse {
            " AND key < ?"
        } else {
            " AND key > ?"
        });
        args.push(a.to_string().into());
    }
    sql.push_str(if range.reverse {
        " ORDER BY key DESC LIMIT ?"
    } else {
        " ORDER BY key ASC LIMIT ?"
    });
    args.push((limit as i64).into());
    let mut stmt = c.prepare_cached(&sql).map_err(sql_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok(KvEntry {
                key: r.get(0)?,
                value: r.get(1)?,
                version: r.get(2)?,
                expires_at: r.get(3)?,
            })
        })
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
}
