//! `store.records` in SQL: one row per document, data as JSON text, queries compiled to SQL by
//! `query_sql` (falling back to the core's Rust evaluator for what SQL cannot express exactly).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::query_sql;
use super::sql_err;
use crate::clock::{iso8601, now_ms};
use crate::error::{PersistError, Result};
use crate::model::{Doc, FindCursor, IfVersion};
use crate::query::{compare_docs, FieldPath, Filter, SortKey};
use crate::records::merge_patch;
use crate::versions::check_record;

const COLUMNS: &str = "id, version, created_at, updated_at, data";

fn doc_from_row(r: &Row) -> rusqlite::Result<Doc> {
    Ok(Doc {
        id: r.get(0)?,
        version: r.get::<_, i64>(1)? as u64,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
        data: r.get(4)?,
    })
}

pub fn get(c: &Connection, store: i64, coll: &str, id: &str) -> Result<Option<Doc>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM persist_records WHERE store_id = ? AND coll = ? AND id = ?"
        ))
        .map_err(sql_err)?;
    stmt.query_row(params![store, coll, id], doc_from_row)
        .optional()
        .map_err(sql_err)
}

fn write_doc(c: &Connection, store: i64, coll: &str, doc: &Doc) -> Result<()> {
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO persist_records (store_id, coll, id, data, version, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (store_id, coll, id) DO UPDATE SET data = excluded.data,
             version = excluded.version, updated_at = excluded.updated_at",
        )
        .map_err(sql_err)?;
    stmt.execute(params![
        store,
        coll,
        doc.id,
        doc.data,
        doc.version as i64,
        doc.created_at,
        doc.updated_at
    ])
    .map_err(sql_err)?;
    Ok(())
}

/// Insert (`IfVersion::Absent`) and upsert.
pub fn put(
    c: &Connection,
    store: i64,
    coll: &str,
    id: &str,
    data: String,
    cond: IfVersion<u64>,
) -> Result<Doc> {
    let current = get(c, store, coll, id)?;
    check_record(current.as_ref().map(|d| d.version), &cond, coll, id)?;
    let now = iso8601(now_ms());
    let doc = match current {
        Some(old) => Doc {
            id: id.to_string(),
            version: old.version + 1,
            created_at: old.created_at,
            updated_at: now,
            data,
        },
        None => Doc {
            id: id.to_string(),
            version: 1,
            created_at: now.clone(),
            updated_at: now,
            data,
        },
    };
    write_doc(c, store, coll, &doc)?;
    Ok(doc)
}

pub fn update(
    c: &Connection,
    store: i64,
    coll: &str,
    id: &str,
    patch: &str,
    if_version: Option<u64>,
) -> Result<Doc> {
    let current = get(c, store, coll, id)?
        .ok_or_else(|| PersistError::not_found(format!("record {coll}/{id} does not exist")))?;
    if let Some(v) = if_version {
        check_record(Some(current.version), &IfVersion::Is(v), coll, id)?;
    }
    let doc = Doc {
        data: merge_patch(&current.data, patch)?,
        version: current.version + 1,
        updated_at: iso8601(now_ms()),
        ..current
    };
    write_doc(c, store, coll, &doc)?;
    Ok(doc)
}

pub fn delete(
    c: &Connection,
    store: i64,
    coll: &str,
    id: &str,
    if_version: Option<u64>,
) -> Result<bool> {
    let current = get(c, store, coll, id)?;
    if let Some(v) = if_version {
        check_record(
            current.as_ref().map(|d| d.version),
            &IfVersion::Is(v),
            coll,
            id,
        )?;
    }
    let mut stmt = c
        .prepare_cached("DELETE FROM persist_records WHERE store_id = ? AND coll = ? AND id = ?")
        .map_err(sql_err)?;
    Ok(stmt.execute(params![store, coll, id]).map_err(sql_err)? > 0)
}

pub fn find_page(
    c: &Connection,
    store: i64,
    coll: &str,
    filter: Option<&Filter>,
    order: &[SortKey],
    after: Option<&FindCursor>,
    limit: usize,
) -> Result<Vec<Doc>> {
    let where_part = filter.map(query_sql::where_sql);
    let after_part = after.map(|a| query_sql::after_sql(order, &a.id, &a.data));
    if matches!(where_part, Some(None)) || matches!(after_part, Some(None)) {
        return find_page_in_rust(c, store, coll, filter, order, after, limit);
    }
    let mut sql = format!("SELECT {COLUMNS} FROM persist_records WHERE store_id = ? AND coll = ?");
    let mut args: Vec<rusqlite::types::Value> = vec![store.into(), coll.to_string().into()];
    for part in [where_part.flatten(), after_part.flatten()]
        .into_iter()
        .flatten()
    {
        sql.push_str(" AND (");
        sql.push_str(&part.sql);
        sql.push(')');
        args.extend(part.params);
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(&query_sql::order_by_sql_for(order, filter));
    sql.push_str(" LIMIT ?");
    args.push((limit as i64).into());
    let mut stmt = c.prepare_cached(&sql).map_err(sql_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), doc_from_row)
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
}

/// Scans the collection and evaluates in Rust: for conditions SQL cannot express exactly
/// (equality or ordering on arrays and objects, field names SQLite's JSON paths cannot spell).
fn find_page_in_rust(
    c: &Connection,
    store: i64,
    coll: &str,
    filter: Option<&Filter>,
    order: &[SortKey],
    after: Option<&FindCursor>,
    limit: usize,
) -> Result<Vec<Doc>> {
    let mut matching = scan_matching(c, store, coll, filter)?;
    if let Some(cursor) = after {
        matching.retain(|(doc, data)| {
            compare_docs(order, &doc.id, data, &cursor.id, &cursor.data)
                == std::cmp::Ordering::Greater
        });
    }
    matching.sort_by(|(a, ad), (b, bd)| compare_docs(order, &a.id, ad, &b.id, bd));
    Ok(matching
        .into_iter()
        .take(limit)
        .map(|(doc, _)| doc)
        .collect())
}

fn scan_matching(
    c: &Connection,
    store: i64,
    coll: &str,
    filter: Option<&Filter>,
) -> Result<Vec<(Doc, serde_json::Value)>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM persist_records WHERE store_id = ? AND coll = ?"
        ))
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![store, coll], doc_from_row)
        .map_err(sql_err)?;
    let mut out = Vec::new();
    for row in rows {
        let doc = row.map_err(sql_err)?;
        let data: serde_json::Value = serde_json::from_str(&doc.data).map_err(|e| {
            PersistError::internal(format!("record {coll}/{} holds invalid JSON: {e}", doc.id))
        })?;
        if filter.is_none_or(|f| f.matches(&data)) {
            out.push((doc, data));
        }
    }
    Ok(out)
}

pub fn count(c: &Connection, store: i64, coll: &str, filter: Option<&Filter>) -> Result<u64> {
    let part = match filter.map(query_sql::where_sql) {
        Some(None) => return Ok(scan_matching(c, store, coll, filter)?.len() as u64),
        Some(Some(part)) => Some(part),
        None => None,
    };
    let mut sql =
        "SELECT COUNT(*) FROM persist_records WHERE store_id = ? AND coll = ?".to_string();
    let mut args: Vec<rusqlite::types::Value> = vec![store.into(), coll.to_string().into()];
    if let Some(part) = part {
        sql.push_str(" AND (");
        sql.push_str(&part.sql);
        sql.push(')');
        args.extend(part.params);
    }
    let mut stmt = c.prepare_cached(&sql).map_err(sql_err)?;
    let n: i64 = stmt
        .query_row(rusqlite::params_from_iter(args), |r| r.get(0))
        .map_err(sql_err)?;
    Ok(n as u64)
}

/// An expression index on the field, shared by every collection of the file (collections are
/// the index's second column). Paths SQLite's JSON paths cannot spell are answered in Rust and
/// need no index.
pub fn ensure_index(c: &Connection, path: &FieldPath) -> Result<()> {
    let Some(literal) = query_sql::json_path_literal(path) else {
        return Ok(());
    };
    let name = format!("persist_rix_{:016x}", fnv1a(literal.as_bytes()));
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS {name} ON persist_records (store_id, coll, json_extract(data, {literal}))"
    );
    c.execute_batch(&sql).map_err(sql_err)?;
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
