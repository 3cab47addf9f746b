//! `store.events` in SQL: rows keyed (store, stream, seq) and a per-stream row holding the last
//! seq. Appends run in the writer's IMMEDIATE transaction, so seqs are gapless across
//! processes too.

use rusqlite::{params, Connection, OptionalExtension};

use super::sql_err;
use crate::clock::{iso8601, new_id, now_ms};
use crate::error::{PersistError, Result};
use crate::model::{NewEvent, StoredEvent};
use crate::validate::prefix_successor;

pub fn last_seq(c: &Connection, store: i64, stream: &str) -> Result<u64> {
    let mut stmt = c
        .prepare_cached(
            "SELECT last_seq FROM persist_event_streams WHERE store_id = ? AND stream = ?",
        )
        .map_err(sql_err)?;
    let seq: Option<i64> = stmt
        .query_row(params![store, stream], |r| r.get(0))
        .optional()
        .map_err(sql_err)?;
    Ok(seq.unwrap_or(0) as u64)
}

pub fn append(
    c: &Connection,
    store: i64,
    stream: &str,
    events: Vec<NewEvent>,
    expected: Option<u64>,
) -> Result<u64> {
    let last = last_seq(c, store, stream)?;
    if let Some(expected) = expected {
        if expected != last {
            return Err(PersistError::conflict(format!(
                "stream {stream:?}: expectedSeq is {expected} but the stream is at seq {last}"
            )));
        }
    }
    let time = iso8601(now_ms());
    let mut insert = c
        .prepare_cached(
            "INSERT INTO persist_events (store_id, stream, seq, type, data, time, id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .map_err(sql_err)?;
    let mut seq = last;
    for event in events {
        seq += 1;
        insert
            .execute(params![
                store,
                stream,
                seq as i64,
                event.kind,
                event.data,
                time,
                new_id()
            ])
            .map_err(sql_err)?;
    }
    c.prepare_cached(
        "INSERT INTO persist_event_streams (store_id, stream, last_seq) VALUES (?, ?, ?)
         ON CONFLICT (store_id, stream) DO UPDATE SET last_seq = excluded.last_seq",
    )
    .map_err(sql_err)?
    .execute(params![store, stream, seq as i64])
    .map_err(sql_err)?;
    Ok(seq)
}

pub fn read_page(
    c: &Connection,
    store: i64,
    stream: &str,
    from: u64,
    reverse: bool,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let sql = if reverse {
        "SELECT seq, type, data, time, id FROM persist_events WHERE store_id = ? AND stream = ? AND seq <= ? ORDER BY seq DESC LIMIT ?"
    } else {
        "SELECT seq, type, data, time, id FROM persist_events WHERE store_id = ? AND stream = ? AND seq >= ? ORDER BY seq ASC LIMIT ?"
    };
    let mut stmt = c.prepare_cached(sql).map_err(sql_err)?;
    let from = from.min(i64::MAX as u64) as i64;
    let rows = stmt
        .query_map(params![store, stream, from, limit as i64], |r| {
            Ok(StoredEvent {
                stream: stream.to_string(),
                seq: r.get::<_, i64>(0)? as u64,
                kind: r.get(1)?,
                data: r.get(2)?,
                time: r.get(3)?,
                id: r.get(4)?,
            })
        })
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
}

pub fn streams_page(
    c: &Connection,
    store: i64,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let mut sql =
        "SELECT stream FROM persist_event_streams WHERE store_id = ? AND stream >= ?".to_string();
    let mut args: Vec<rusqlite::types::Value> = vec![store.into(), prefix.to_string().into()];
    if let Some(succ) = prefix_successor(prefix) {
        sql.push_str(" AND stream < ?");
        args.push(succ.into());
    }
    if let Some(a) = after {
        sql.push_str(" AND stream > ?");
        args.push(a.to_string().into());
    }
    sql.push_str(" ORDER BY stream LIMIT ?");
    args.push((limit as i64).into());
    let mut stmt = c.prepare_cached(&sql).map_err(sql_err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| r.get(0))
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
}
