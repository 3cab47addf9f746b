//! `store.records` in SQL: one row per document, `raw` (the JSON text as given) and `doc`
//! (jsonb, for queries and indexes); queries compiled by `query_sql`, falling back to the core's
//! Rust evaluator for what SQL cannot express exactly.

use std::collections::HashMap;

use futures::TryStreamExt;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::query_sql::{self, number_placeholders, SqlFragment};
use super::{beside_chains, pg_err, read, write, Inner, LOCK_CLASS};
use crate::clock::{iso8601, now_ms};
use crate::error::{ErrorCode, PersistError, Result};
use crate::model::{Doc, FindCursor, IfVersion, RecordPut};
use crate::query::{compare_docs, FieldPath, Filter, SortKey};
use crate::records::merge_patch;

const COLUMNS: &str = "id, version, created_ms, updated_ms, raw";

fn doc_from_row(r: &Row) -> Doc {
    Doc {
        id: r.get(0),
        version: r.get::<_, i64>(1) as u64,
        created_at: iso8601(r.get(2)),
        updated_at: iso8601(r.get(3)),
        data: r.get(4),
    }
}

/// The `jsonb` copy of a document, when it must differ from the raw text. `jsonb` cannot hold
/// U+0000, so its strings (and keys) are stored in the encoding of
/// [`query_sql::stored_string`]: U+0000 as U+0001 U+0001 and U+0001 as U+0001 U+0002, which keeps
/// equality, prefixes and byte order, so queries compare them in SQL exactly as the Rust
/// evaluator does (their string operands are encoded the same way). The raw text is kept
/// exactly and is what reads return. A lone UTF-16 surrogate escape (`\ud800`), which `jsonb`
/// refuses too, is stored as U+FFFD: index.js refuses such values before they get here, and
/// this keeps any other caller's document from failing its whole statement.
pub(crate) fn doc_text(raw: &str) -> Option<String> {
    if !raw.contains("\\u") {
        return None;
    }
    let b = raw.as_bytes();
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let mut out = String::with_capacity(raw.len());
    let mut copied = 0; // raw[..copied] is in `out`
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        // Every backslash of valid JSON starts an escape inside a string: `\uXXXX` or two bytes.
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let unit = hex(i + 2).unwrap_or(0xFFFD);
        let paired = (0xD800..0xDC00).contains(&unit)
            && b.get(i + 6..i + 8) == Some(b"\\u")
            && hex(i + 8).is_some_and(|low| (0xDC00..0xE000).contains(&low));
        let stored = match unit {
            0 => Some("\\u0001\\u0001"),
            1 => Some("\\u0001\\u0002"),
            0xD800..0xE000 if !paired => Some("\\ufffd"),
            _ => None,
        };
        if paired {
            i += 12;
        } else if let Some(stored) = stored {
            out.push_str(&raw[copied..i]);
            out.push_str(stored);
            i += 6;
            copied = i;
            changed = true;
        } else {
            i += 6;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&raw[copied..]);
    Some(out)
}

pub async fn get(inner: &Inner, coll: String, id: String) -> Result<Option<Doc>> {
    let store = inner.store_id();
    let row = read!(inner, c => {
        let stmt = c.prepare_cached(
            "SELECT id, version, created_ms, updated_ms, raw FROM persist_records
             WHERE store_id = $1 AND coll = $2 AND id = $3",
        ).await.map_err(pg_err)?;
        c.query_opt(&stmt, &[&store, &coll, &id]).await.map_err(pg_err)
    })?;
    Ok(row.as_ref().map(doc_from_row))
}

async fn version_conflict(inner: &Inner, coll: &str, id: &str) -> PersistError {
    let found = match get(inner, coll.to_string(), id.to_string()).await {
        Ok(Some(d)) => format!("at version {}", d.version),
        Ok(None) => "absent".into(),
        Err(_) => "unknown".into(),
    };
    PersistError::conflict(format!(
        "record {coll}/{id}: ifVersion does not match (the record is {found})"
    ))
}

/// Insert (`IfVersion::Absent`) and upsert.
pub async fn put(
    inner: &Inner,
    coll: String,
    id: String,
    data: String,
    cond: IfVersion<u64>,
) -> Result<Doc> {
    let store = inner.store_id();
    let now = now_ms();
    let scrubbed = doc_text(&data);
    let sql = match cond {
        IfVersion::Any => {
            "INSERT INTO persist_records (store_id, coll, id, doc, raw, version, created_ms, updated_ms)
             VALUES ($1, $2, $3, COALESCE($5::text, $4::text)::jsonb, $4, 1, $6, $6)
             ON CONFLICT (store_id, coll, id) DO UPDATE SET doc = excluded.doc, raw = excluded.raw,
             version = persist_records.version + 1, updated_ms = excluded.updated_ms
             RETURNING version, created_ms, updated_ms"
        }
        IfVersion::Absent => {
            "INSERT INTO persist_records (store_id, coll, id, doc, raw, version, created_ms, updated_ms)
             VALUES ($1, $2, $3, COALESCE($5::text, $4::text)::jsonb, $4, 1, $6, $6)
             ON CONFLICT (store_id, coll, id) DO NOTHING
             RETURNING version, created_ms, updated_ms"
        }
        IfVersion::Is(_) => {
            "UPDATE persist_records SET doc = COALESCE($5::text, $4::text)::jsonb, raw = $4,
             version = version + 1, updated_ms = $6
             WHERE store_id = $1 AND coll = $2 AND id = $3 AND version = $7
             RETURNING version, created_ms, updated_ms"
        }
    };
    let expected = match cond {
        IfVersion::Is(v) => v as i64,
        _ => 0,
    };
    let row = write!(inner, c => {
        let stmt = c.prepare_cached(sql).await.map_err(pg_err)?;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&store, &coll, &id, &data, &scrubbed, &now];
        if matches!(cond, IfVersion::Is(_)) {
            params.push(&expected);
        }
        c.query_opt(&stmt, &params).await.map_err(pg_err)
    })?;
    match row {
        Some(r) => Ok(Doc {
            id,
            version: r.get::<_, i64>(0) as u64,
            created_at: iso8601(r.get(1)),
            updated_at: iso8601(r.get(2)),
            data,
        }),
        None if cond == IfVersion::Absent => Err(PersistError::conflict(format!(
            "record {coll}/{id} already exists"
        ))),
        None => Err(version_conflict(inner, &coll, &id).await),
    }
}

/// The puts of one tick (see `Backend::rec_put_each`). The plain puts of ids that appear once
/// go in one statement, sorted by collection and id, which gives:
/// - one round trip for all of them;
/// - neighbouring ids on the same heap pages (single puts over the pool's connections land one
///   page per backend, and an index scan in id order then reads several times the buffers);
/// - row locks always taken in the same order, so two batches cannot deadlock each other.
///
/// A put with a condition, or to an id put more than once in the batch, runs alone, after the
/// earlier puts of its id.
pub async fn put_each(inner: &Inner, puts: Vec<RecordPut>) -> Vec<Result<Doc>> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for p in &puts {
        *seen.entry((p.coll.as_str(), p.id.as_str())).or_default() += 1;
    }
    let alone: Vec<bool> = puts
        .iter()
        .map(|p| p.if_version != IfVersion::Any || seen[&(p.coll.as_str(), p.id.as_str())] > 1)
        .collect();
    let mut plain: Vec<(usize, RecordPut)> = Vec::new();
    let mut chains: HashMap<(String, String), Vec<(usize, RecordPut)>> = HashMap::new();
    for (i, (put, alone)) in puts.into_iter().zip(alone).enumerate() {
        if alone {
            chains
                .entry((put.coll.clone(), put.id.clone()))
                .or_default()
                .push((i, put));
        } else {
            plain.push((i, put));
        }
    }
    let grouped = async {
        if plain.len() < 2 {
            let mut out = Vec::with_capacity(plain.len());
            for (i, p) in plain {
                out.push((i, put(inner, p.coll, p.id, p.data, p.if_version).await));
            }
            return out;
        }
        plain.sort_by(|(_, a), (_, b)| (&a.coll, &a.id).cmp(&(&b.coll, &b.id)));
        match put_all(inner, &plain).await {
            Ok(docs) => plain.iter().map(|(i, _)| *i).zip(docs).collect(),
            // The server is gone or the outcome unknown: every put fails with the error, as a
            // single put would.
            Err(e) if matches!(e.code, ErrorCode::Connection | ErrorCode::Timeout) => {
                plain.iter().map(|(i, _)| (*i, Err(e.clone()))).collect()
            }
            // A statement fails as a whole (one document the server refuses, a deadlock with
            // another client's transaction): each put is tried alone, to fail alone.
            Err(_) => {
                futures::future::join_all(plain.into_iter().map(|(i, p)| async move {
                    (i, put(inner, p.coll, p.id, p.data, p.if_version).await)
                }))
                .await
            }
        }
    };
    beside_chains(grouped, chains.into_values(), |p: RecordPut| {
        put(inner, p.coll, p.id, p.data, p.if_version)
    })
    .await
}

/// Plain puts of distinct ids in one statement; Err when the statement failed (nothing
/// written), else the documents in the order given.
async fn put_all(inner: &Inner, puts: &[(usize, RecordPut)]) -> Result<Vec<Result<Doc>>> {
    let store = inner.store_id();
    let now = now_ms();
    let scrubbed: Vec<Option<String>> = puts.iter().map(|(_, p)| doc_text(&p.data)).collect();
    let colls: Vec<&str> = puts.iter().map(|(_, p)| p.coll.as_str()).collect();
    let ids: Vec<&str> = puts.iter().map(|(_, p)| p.id.as_str()).collect();
    let raws: Vec<&str> = puts.iter().map(|(_, p)| p.data.as_str()).collect();
    let rows = write!(inner, c => {
        let stmt = c.prepare_cached(
            "INSERT INTO persist_records (store_id, coll, id, doc, raw, version, created_ms, updated_ms)
             SELECT $1, c, i, COALESCE(s, r)::jsonb, r, 1, $2, $2
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS t(c, i, r, s)
             ON CONFLICT (store_id, coll, id) DO UPDATE SET doc = excluded.doc, raw = excluded.raw,
             version = persist_records.version + 1, updated_ms = excluded.updated_ms
             RETURNING coll, id, version, created_ms, updated_ms",
        ).await.map_err(pg_err)?;
        c.query(&stmt, &[&store, &now, &colls, &ids, &raws, &scrubbed]).await.map_err(pg_err)
    })?;
    let mut written: HashMap<(String, String), (i64, i64, i64)> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4))))
        .collect();
    Ok(puts
        .iter()
        .map(|(_, p)| {
            let (version, created, updated) = written
                .remove(&(p.coll.clone(), p.id.clone()))
                .ok_or_else(|| {
                    PersistError::internal(format!("record {}/{}: no row returned", p.coll, p.id))
                })?;
            Ok(Doc {
                id: p.id.clone(),
                version: version as u64,
                created_at: iso8601(created),
                updated_at: iso8601(updated),
                data: p.data.clone(),
            })
        })
        .collect())
}

/// Shallow merge, done in Rust (to keep the stored key order) and written back only if the
/// record did not change meanwhile (retried otherwise).
pub async fn update(
    inner: &Inner,
    coll: String,
    id: String,
    patch: String,
    if_version: Option<u64>,
) -> Result<Doc> {
    let store = inner.store_id();
    loop {
        let current = get(inner, coll.clone(), id.clone())
            .await?
            .ok_or_else(|| PersistError::not_found(format!("record {coll}/{id} does not exist")))?;
        if let Some(v) = if_version {
            if current.version != v {
                return Err(PersistError::conflict(format!(
                    "record {coll}/{id}: ifVersion does not match (the record is at version {})",
                    current.version
                )));
            }
        }
        let data = merge_patch(&current.data, &patch)?;
        let scrubbed = doc_text(&data);
        let now = now_ms();
        let old = current.version as i64;
        let row = write!(inner, c => {
            let stmt = c.prepare_cached(
                "UPDATE persist_records SET doc = COALESCE($5::text, $4::text)::jsonb, raw = $4,
                 version = version + 1, updated_ms = $6
                 WHERE store_id = $1 AND coll = $2 AND id = $3 AND version = $7
                 RETURNING version, created_ms, updated_ms",
            ).await.map_err(pg_err)?;
            c.query_opt(&stmt, &[&store, &coll, &id, &data, &scrubbed, &now, &old]).await.map_err(pg_err)
        })?;
        if let Some(r) = row {
            return Ok(Doc {
                id,
                version: r.get::<_, i64>(0) as u64,
                created_at: iso8601(r.get(1)),
                updated_at: iso8601(r.get(2)),
                data,
            });
        }
        // Changed (or deleted) meanwhile: read again; an ifVersion now mismatches.
    }
}

pub async fn delete(
    inner: &Inner,
    coll: String,
    id: String,
    if_version: Option<u64>,
) -> Result<bool> {
    let store = inner.store_id();
    let expected = if_version.map(|v| v as i64);
    let row = write!(inner, c => {
        let stmt = c.prepare_cached(
            "DELETE FROM persist_records WHERE store_id = $1 AND coll = $2 AND id = $3
             AND ($4::int8 IS NULL OR version = $4) RETURNING 1",
        ).await.map_err(pg_err)?;
        c.query_opt(&stmt, &[&store, &coll, &id, &expected]).await.map_err(pg_err)
    })?;
    match (row, if_version) {
        (Some(_), _) => Ok(true),
        (None, None) => Ok(false),
        (None, Some(_)) => Err(version_conflict(inner, &coll, &id).await),
    }
}

/// Runs `SELECT <what> FROM persist_records WHERE store_id = $1 AND coll = $2 AND (<parts>)
/// [ORDER BY <order>] [LIMIT n]`.
async fn query_records(
    inner: &Inner,
    what: &str,
    coll: &str,
    parts: Vec<SqlFragment>,
    order: Option<SqlFragment>,
    limit: Option<i64>,
) -> Result<Vec<Row>> {
    let store = inner.store_id();
    let (sql, fragment_params) = records_sql(what, parts, order, limit.is_some());
    let limit_value = limit.unwrap_or(0);
    read!(inner, c => {
        let stmt = c.prepare_cached(&sql).await.map_err(pg_err)?;
        let mut params = bound(&store, &coll, &fragment_params);
        if limit.is_some() {
            params.push(&limit_value);
        }
        c.query(&stmt, &params).await.map_err(pg_err)
    })
}

/// The parameters of a [`records_sql`] statement before its limit: the store, the collection,
/// the fragments'.
fn bound<'a>(
    store: &'a i32,
    coll: &'a &str,
    fragments: &'a [query_sql::SqlParam],
) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![store, coll];
    params.extend(fragments.iter().map(|p| p as &(dyn ToSql + Sync)));
    params
}

/// The statement of [`query_records`] and the parameters of its fragments.
fn records_sql(
    what: &str,
    parts: Vec<SqlFragment>,
    order: Option<SqlFragment>,
    limit: bool,
) -> (String, Vec<query_sql::SqlParam>) {
    let mut sql = format!("SELECT {what} FROM persist_records WHERE store_id = $1 AND coll = $2");
    let mut fragment_params: Vec<query_sql::SqlParam> = Vec::new();
    for part in parts {
        sql.push_str(" AND (");
        sql.push_str(&part.sql);
        sql.push(')');
        fragment_params.extend(part.params);
    }
    if let Some(o) = order {
        sql.push_str(" ORDER BY ");
        sql.push_str(&o.sql);
        fragment_params.extend(o.params);
    }
    if limit {
        sql.push_str(" LIMIT ?");
    }
    // $1 and $2 are the store and collection; the fragments' parameters follow; then the limit.
    let (sql, _) = number_placeholders(&sql, 3);
    (sql, fragment_params)
}

/// The [`query_sql::Form`] of a query, from the fields that have our indexes.
async fn query_form(inner: &Inner, filter: Option<&Filter>, order: &[SortKey]) -> query_sql::Form {
    let indexed = inner.indexed_fields().await;
    query_sql::form_for(
        filter,
        order,
        |p| indexed.value.contains(&index_hash(p)),
        |p| indexed.numeric.contains(&index_hash(p)),
    )
}

pub async fn find_page(
    inner: &Inner,
    coll: String,
    filter: Option<Filter>,
    order: Vec<SortKey>,
    after: Option<FindCursor>,
    limit: usize,
) -> Result<Vec<Doc>> {
    let form = query_form(inner, filter.as_ref(), &order).await;
    let where_part = filter.as_ref().map(|f| query_sql::where_sql(f, &form));
    let after_part = after
        .as_ref()
        .map(|a| query_sql::after_sql(&order, &a.id, &a.data));
    let order_part = query_sql::order_by_sql_for(&order, filter.as_ref(), &form);
    if matches!(where_part, Some(None)) || matches!(after_part, Some(None)) || order_part.is_none()
    {
        return find_page_in_rust(
            inner,
            &coll,
            filter.as_ref(),
            where_part.flatten(),
            &order,
            after.as_ref(),
            limit,
        )
        .await;
    }
    let parts: Vec<SqlFragment> = [where_part.flatten(), after_part.flatten()]
        .into_iter()
        .flatten()
        .collect();
    let rows = query_records(inner, COLUMNS, &coll, parts, order_part, Some(limit as i64)).await?;
    Ok(rows.iter().map(doc_from_row).collect())
}

/// Evaluates in Rust what SQL cannot express exactly (the compiled part of the filter, if any,
/// still narrows the scan).
async fn find_page_in_rust(
    inner: &Inner,
    coll: &str,
    filter: Option<&Filter>,
    compiled: Option<SqlFragment>,
    order: &[SortKey],
    after: Option<&FindCursor>,
    limit: usize,
) -> Result<Vec<Doc>> {
    let by_order =
        |(a, ad): &(Doc, Value), (b, bd): &(Doc, Value)| compare_docs(order, &a.id, ad, &b.id, bd);
    // The first `limit` matches in order, kept as the rows stream in: at most a few pages of
    // documents in memory, whatever the size of the collection.
    let keep = limit.max(1) * 2 + 64;
    let mut best = scan_matching(
        inner,
        coll,
        filter,
        compiled,
        Vec::new,
        |best, doc, data| {
            if after.is_some_and(|cursor| {
                compare_docs(order, &doc.id, &data, &cursor.id, &cursor.data)
                    != std::cmp::Ordering::Greater
            }) {
                return;
            }
            best.push((doc, data));
            if best.len() >= keep {
                best.sort_by(by_order);
                best.truncate(limit);
            }
        },
    )
    .await?;
    best.sort_by(by_order);
    Ok(best.into_iter().take(limit).map(|(doc, _)| doc).collect())
}

/// Streams the collection's rows that `compiled` (if any) selects and folds the documents that
/// `filter` matches into an accumulator (`start` makes it, again if a lost connection makes the
/// read start over): one statement, one snapshot, rows taken as they arrive, so memory holds
/// what the accumulator keeps, not the collection.
async fn scan_matching<A>(
    inner: &Inner,
    coll: &str,
    filter: Option<&Filter>,
    compiled: Option<SqlFragment>,
    start: impl Fn() -> A,
    mut add: impl FnMut(&mut A, Doc, Value),
) -> Result<A> {
    let exact = compiled.is_some();
    let store = inner.store_id();
    let (sql, fragment_params) = records_sql(COLUMNS, compiled.into_iter().collect(), None, false);
    read!(inner, c => {
        let stmt = c.prepare_cached(&sql).await.map_err(pg_err)?;
        let params = bound(&store, &coll, &fragment_params);
        let rows = c.query_raw(&stmt, params).await.map_err(pg_err)?;
        futures::pin_mut!(rows);
        let mut acc = start();
        while let Some(row) = rows.try_next().await.map_err(pg_err)? {
            let doc = doc_from_row(&row);
            let data: Value = serde_json::from_str(&doc.data).map_err(|e| {
                PersistError::internal(format!("record {coll}/{} holds invalid JSON: {e}", doc.id))
            })?;
            if exact || filter.is_none_or(|f| f.matches(&data)) {
                add(&mut acc, doc, data);
            }
        }
        Ok(acc)
    })
}

pub async fn count(inner: &Inner, coll: String, filter: Option<Filter>) -> Result<u64> {
    let form = query_form(inner, filter.as_ref(), &[]).await;
    let part = match filter.as_ref().map(|f| query_sql::where_sql(f, &form)) {
        Some(None) => {
            return scan_matching(
                inner,
                &coll,
                filter.as_ref(),
                None,
                || 0u64,
                |n, _, _| {
                    *n += 1;
                },
            )
            .await;
        }
        Some(Some(part)) => Some(part),
        None => None,
    };
    let rows = query_records(
        inner,
        "COUNT(*)",
        &coll,
        part.into_iter().collect(),
        None,
        None,
    )
    .await?;
    Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
}

/// Expression indexes on the field, shared by every collection and store of the schema
/// (store and collection are the first columns): one on the jsonb value (equality, number and
/// boolean ranges) and one on its text in byte order (string ranges and prefixes), each followed
/// by the id so a sorted, limited query reads the index in order (ties break by id). Paths with
/// labels that cannot be inlined get none (their queries still work, by scan).
pub async fn ensure_index(inner: &Inner, path: FieldPath) -> Result<()> {
    if !query_sql::path_inlinable(&path) {
        return Ok(());
    }
    let value = query_sql::value_expr(&path).sql;
    let text = query_sql::text_expr(&path).sql;
    let numeric = query_sql::numeric_expr(&path).sql;
    let hash = index_hash(&path);
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS {VALUE_INDEX}{hash:016x} ON persist_records (store_id, coll, {value}, id);
         CREATE INDEX IF NOT EXISTS persist_rixt_{hash:016x} ON persist_records (store_id, coll, {text}, id);
         CREATE INDEX IF NOT EXISTS {NUMERIC_INDEX}{hash:016x} ON persist_records (store_id, coll, {numeric}, id);"
    );
    write!(inner, c => {
        c.batch_execute("BEGIN").await.map_err(pg_err)?;
        let res = async {
            c.execute("SELECT pg_advisory_xact_lock($1, 1)", &[&LOCK_CLASS]).await.map_err(pg_err)?;
            c.batch_execute(&sql).await.map_err(pg_err)
        }.await;
        match res {
            Ok(()) => c.batch_execute("COMMIT").await.map_err(pg_err),
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    })?;
    // Statistics of the new index expressions, so that the next query is planned with them
    // (an ordered index scan for a sorted, limited query). The index exists either way: a
    // failed ANALYZE leaves only the planner's older statistics, so it is not an error.
    let _ = inner.analyze_records(false).await;
    inner.forget_statements();
    inner.note_indexed(hash);
    Ok(())
}

/// The name prefix of a field's value index; the name ends in [`index_hash`] as 16 hex digits.
const VALUE_INDEX: &str = "persist_rixv_";
/// The same for its numeric index ([`query_sql::numeric_expr`]; databases indexed before it
/// existed have the other two only, until `ensureIndex` runs again).
const NUMERIC_INDEX: &str = "persist_rixn_";

/// The name suffix of a field's expression indexes.
pub(crate) fn index_hash(path: &FieldPath) -> u64 {
    fnv1a(path.dotted().as_bytes())
}

/// The field hash of an index name, if it names one of our value indexes.
pub(crate) fn value_index_hash(name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix(VALUE_INDEX)?, 16).ok()
}

/// The field hash of an index name, if it names one of our numeric indexes.
pub(crate) fn numeric_index_hash(name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix(NUMERIC_INDEX)?, 16).ok()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::doc_text;

    #[test]
    fn jsonb_copy_replaces_what_jsonb_cannot_hold() {
        // Nothing to replace: no copy.
        assert_eq!(doc_text(r#"{"a":"x"}"#), None);
        assert_eq!(doc_text(r#"{"a":"\u00e9\n"}"#), None);
        assert_eq!(doc_text(r#"{"a":"\ud83d\ude00"}"#), None);
        // An escaped backslash followed by "u0000" is text, not an escape.
        assert_eq!(doc_text(r#"{"a":"\\u0000"}"#), None);
        // U+0000 and U+0001 in the encoding of `stored_string`, in values and keys.
        assert_eq!(
            doc_text(r#"{"a":"x\u0000y","\u0000":1,"b":"\u0001\u0000\u0002"}"#).as_deref(),
            Some(r#"{"a":"x\u0001\u0001y","\u0001\u0001":1,"b":"\u0001\u0002\u0001\u0001\u0002"}"#)
        );
        // The copy's strings are the stored form of the raw text's strings.
        let raw = r#"{"k\u0001":["\u0000a\u0001", "\\u0000", "\u00e9"]}"#;
        let copy: serde_json::Value =
            serde_json::from_str(&doc_text(raw).expect("a copy")).unwrap();
        let orig: serde_json::Value = serde_json::from_str(raw).unwrap();
        let (orig, copy) = (&orig.as_object().unwrap(), &copy.as_object().unwrap());
        let (k, v) = orig.iter().next().unwrap();
        let stored: Vec<serde_json::Value> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                super::query_sql::stored_string(s.as_str().unwrap())
                    .into_owned()
                    .into()
            })
            .collect();
        assert_eq!(
            copy.get(super::query_sql::stored_string(k).as_ref()),
            Some(&stored.into())
        );
        // Lone surrogates, high or low, at the end or before another escape.
        assert_eq!(
            doc_text(r#"{"a":"\ud800","b":"\udc00x","c":"\uD800\n","d":"\ud800\ud800\udc00"}"#)
                .as_deref(),
            Some(r#"{"a":"\ufffd","b":"\ufffdx","c":"\ufffd\n","d":"\ufffd\ud800\udc00"}"#)
        );
        assert_eq!(
            doc_text(r#"{"a":"\\\ud800"}"#).as_deref(),
            Some(r#"{"a":"\\\ufffd"}"#)
        );
        // Every copy is valid JSON that serde (as jsonb) accepts.
        for raw in [r#"{"a":"\ud800"}"#, r#"{"a":"\udfff\u0000"}"#] {
            let copy = doc_text(raw).expect("a copy");
            serde_json::from_str::<serde_json::Value>(&copy).expect("valid");
        }
    }
}
